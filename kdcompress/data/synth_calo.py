"""Seeded synthetic calorimeter regions in the CICADA format (see calo.py).

A toy of the L1 calorimeter-region input of CMS CICADA, in ET counts (LSB 0.5 GeV):
- zero bias: pile-up noise in every region whose mean grows towards the forward eta columns and with the
  event's number of pile-up interactions, plus a few soft jets (and, rarely, a back-to-back dijet);
- jets: energy clusters of a few regions, most of the energy in one region, the rest in its neighbours;
- anomaly classes, each drawn on top of a fresh zero-bias event:
    multijet        many (5-10) moderate jets;
    narrow_deposit  one large deposit almost entirely in a single region (no neighbour sharing);
    wide_shower     a displaced-like shower: moderate energy spread smoothly over many regions.
Everything is vectorised numpy driven only by the given generator; values are integers 0..1023.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import KDError
from .calo import BACKGROUND_FILES, ET_MAX, N_ETA, N_PHI, write_regions

GEV = 2.0  # ET counts per GeV
ANOMALIES = ("multijet", "narrow_deposit", "wide_shower")

# pile-up
PILEUP_RANGE = (35.0, 65.0)  # mean interactions per crossing over a fill (luminosity decays)
PILEUP_NOMINAL = 50.0
NOISE_CENTRAL, NOISE_FORWARD = 0.35, 3.0  # mean ET counts per region at nominal pile-up
NOISE_SHAPE = 1.5  # gamma shape of the region-to-region fluctuation (lower = burstier)

# zero-bias jets
JETS_PER_EVENT = 0.25  # mean soft jets at nominal pile-up
JET_PT_MIN, JET_PT_INDEX = 5.0, 3.5  # GeV, dN/dpT ~ pT^-index
DIJET_FRACTION = 0.05
DIJET_PT_MIN = 15.0
CORE_FRACTION = (7.0, 3.0)  # Beta parameters: mean share of a jet's ET in its central region = 0.7

# anomalies
MULTIJET_COUNT = (5, 11)  # [low, high)
MULTIJET_PT_MIN, MULTIJET_PT_INDEX = 8.0, 3.0
NARROW_PT = (10.0, 150.0)  # log-uniform GeV
NARROW_CORE = (60.0, 1.5)  # Beta parameters: about 97.5% in one region
SHOWER_PT = (20.0, 120.0)  # log-uniform GeV
SHOWER_WIDTH = (1.2, 2.5)  # Gaussian sigma in regions

_MAX_BATCH = 50_000  # events generated at once, bounds memory


# ---------------------------------------------------------------- geometry

def eta_noise_profile() -> np.ndarray:
    """Mean pile-up ET counts per eta column at nominal pile-up: flat centre, steep rise forward."""
    distance = np.abs(np.arange(N_ETA) - (N_ETA - 1) / 2.0) / ((N_ETA - 1) / 2.0)  # 0 centre .. 1 edge
    return NOISE_CENTRAL + (NOISE_FORWARD - NOISE_CENTRAL) * distance ** 3


def _neighbourhood(centre_phi: np.ndarray, centre_eta: np.ndarray):
    """(n, 9) phi and eta indices of the 3x3 block around each centre (phi wraps; eta clamped at the edges)."""
    offsets = np.array([(dp, de) for dp in (-1, 0, 1) for de in (-1, 0, 1)])
    phi = (centre_phi[:, None] + offsets[None, :, 0]) % N_PHI
    eta = np.clip(centre_eta[:, None] + offsets[None, :, 1], 0, N_ETA - 1)
    return phi, eta


def _gaussian_weights(centre_phi: np.ndarray, centre_eta: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(n, 18, 14) normalised Gaussian profiles (periodic distance in phi), one per event."""
    dphi = np.abs(np.arange(N_PHI)[None, :] - centre_phi[:, None])
    dphi = np.minimum(dphi, N_PHI - dphi)
    deta = np.arange(N_ETA)[None, :] - centre_eta[:, None]
    r2 = dphi[:, :, None] ** 2 + deta[:, None, :] ** 2
    weights = np.exp(-0.5 * r2 / width[:, None, None] ** 2)
    return weights / weights.sum(axis=(1, 2), keepdims=True)


# ---------------------------------------------------------------- spectra and splitting

def _power_law(rng: np.random.Generator, n: int, minimum: float, index: float) -> np.ndarray:
    return minimum * rng.random(n) ** (-1.0 / (index - 1.0))


def _log_uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def _counts(pt_gev: np.ndarray) -> np.ndarray:
    return np.round(pt_gev * GEV).astype(np.int64)


def _split_counts(rng: np.random.Generator, total: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Integer split of each row's `total` by its `shares` (rows sum to 1): multinomial, exact totals."""
    return rng.multinomial(total, shares)


def _cluster_shares(rng: np.random.Generator, n: int, core: tuple) -> np.ndarray:
    """(n, 9) shares of a 3x3 cluster: Beta-distributed core (index 4), the rest spread over the neighbours."""
    core_share = rng.beta(*core, n)
    ring = rng.dirichlet(np.ones(8), n) * (1.0 - core_share)[:, None]
    return np.insert(ring, 4, core_share, axis=1)


def _add_clusters(rng, regions, event, pt_gev, core=CORE_FRACTION, centre_phi=None, centre_eta=None) -> None:
    """Add one 3x3 cluster of `pt_gev` per entry to regions[event] (uniform position unless given)."""
    n = len(event)
    if n == 0:
        return
    centre_phi = rng.integers(0, N_PHI, n) if centre_phi is None else centre_phi
    centre_eta = rng.integers(0, N_ETA, n) if centre_eta is None else centre_eta
    phi, eta = _neighbourhood(centre_phi, centre_eta)
    counts = _split_counts(rng, _counts(pt_gev), _cluster_shares(rng, n, core))
    np.add.at(regions, (np.repeat(event, 9), phi.ravel(), eta.ravel()), counts.ravel())


# ---------------------------------------------------------------- zero bias

def _pileup_noise(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(regions int64 (n, 18, 14), pile-up per event): Poisson counts of gamma-fluctuating means."""
    pileup = rng.poisson(rng.uniform(*PILEUP_RANGE, n)).astype(np.float64)
    mean = (pileup / PILEUP_NOMINAL)[:, None, None] * eta_noise_profile()[None, None, :]
    fluctuation = rng.gamma(NOISE_SHAPE, 1.0 / NOISE_SHAPE, (n, N_PHI, N_ETA))
    return rng.poisson(mean * fluctuation).astype(np.int64), pileup


def _add_soft_jets(rng: np.random.Generator, regions: np.ndarray, pileup: np.ndarray) -> None:
    n_jets = rng.poisson(JETS_PER_EVENT * pileup / PILEUP_NOMINAL)
    event = np.repeat(np.arange(len(regions)), n_jets)
    _add_clusters(rng, regions, event, _power_law(rng, len(event), JET_PT_MIN, JET_PT_INDEX))


def _add_dijets(rng: np.random.Generator, regions: np.ndarray) -> None:
    """A rare hard scatter: two jets back to back in phi with balanced ET."""
    event = np.flatnonzero(rng.random(len(regions)) < DIJET_FRACTION)
    pt = _power_law(rng, len(event), DIJET_PT_MIN, JET_PT_INDEX)
    phi = rng.integers(0, N_PHI, len(event))
    _add_clusters(rng, regions, event, pt, centre_phi=phi)
    _add_clusters(rng, regions, event, pt * rng.uniform(0.7, 1.0, len(event)),
                  centre_phi=(phi + N_PHI // 2 + rng.integers(-1, 2, len(event))) % N_PHI)


def _zero_bias(rng: np.random.Generator, n: int) -> np.ndarray:
    regions, pileup = _pileup_noise(rng, n)
    _add_soft_jets(rng, regions, pileup)
    _add_dijets(rng, regions)
    return regions


# ---------------------------------------------------------------- anomalies

def _add_multijet(rng: np.random.Generator, regions: np.ndarray) -> None:
    n_jets = rng.integers(*MULTIJET_COUNT, len(regions))
    event = np.repeat(np.arange(len(regions)), n_jets)
    _add_clusters(rng, regions, event, _power_law(rng, len(event), MULTIJET_PT_MIN, MULTIJET_PT_INDEX))


def _add_narrow_deposit(rng: np.random.Generator, regions: np.ndarray) -> None:
    event = np.arange(len(regions))
    _add_clusters(rng, regions, event, _log_uniform(rng, len(event), *NARROW_PT), core=NARROW_CORE)


def _add_wide_shower(rng: np.random.Generator, regions: np.ndarray) -> None:
    n = len(regions)
    width = rng.uniform(*SHOWER_WIDTH, n)
    shares = _gaussian_weights(rng.integers(0, N_PHI, n), rng.uniform(0, N_ETA - 1, n), width)
    counts = _split_counts(rng, _counts(_log_uniform(rng, n, *SHOWER_PT)), shares.reshape(n, -1))
    regions += counts.reshape(regions.shape)


_ANOMALY_PROCESSES = {"multijet": _add_multijet, "narrow_deposit": _add_narrow_deposit,
                      "wide_shower": _add_wide_shower}
assert tuple(_ANOMALY_PROCESSES) == ANOMALIES


# ---------------------------------------------------------------- public API

def _batched(rng: np.random.Generator, n: int, make) -> np.ndarray:
    """Events from `make(rng, count)` in bounded batches, saturated to 10 bits, as uint16 (n, 18, 14)."""
    out = np.empty((n, N_PHI, N_ETA), dtype=np.uint16)
    for start in range(0, n, _MAX_BATCH):
        count = min(_MAX_BATCH, n - start)
        out[start:start + count] = np.minimum(make(rng, count), ET_MAX)
    return out


def generate_zero_bias(n: int, rng) -> np.ndarray:
    """n zero-bias events, uint16 (n, 18, 14)."""
    _check_count("n", n, minimum=0)
    return _batched(np.random.default_rng(rng), n, _zero_bias)


def generate_anomaly(name: str, n: int, rng) -> np.ndarray:
    """n events of anomaly class `name` (one of ANOMALIES) on top of zero bias, uint16 (n, 18, 14)."""
    if name not in _ANOMALY_PROCESSES:
        raise KDError(f"unknown calorimeter anomaly '{name}' (known: {', '.join(ANOMALIES)})")
    _check_count("n", n, minimum=0)

    def make(rng, count):
        regions = _zero_bias(rng, count)
        _ANOMALY_PROCESSES[name](rng, regions)
        return regions
    return _batched(np.random.default_rng(rng), n, make)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise KDError(f"{name} must be an integer >= {minimum}, got {value!r}")


def write_dataset(out_dir: str | os.PathLike, events: int = 200_000, seed: int = 0,
                  anomaly_events: int | None = None) -> dict[str, Path]:
    """Write zero_bias_{train,val,test}.h5 (50/25/25 of `events`) and one <anomaly>.h5 per anomaly class.

    Returns {"train": path, "val": path, "test": path, "<anomaly>": path, ...}. Each file draws from its own
    stream spawned from `seed`, so a given seed always gives identical arrays.
    """
    _check_count("events", events, minimum=4)  # every split needs at least one event
    anomaly_events = max(1000, events // 10) if anomaly_events is None else anomaly_events
    _check_count("anomaly_events", anomaly_events, minimum=1)
    out_dir = Path(out_dir)
    zero_bias_stream, *anomaly_streams = np.random.SeedSequence(seed).spawn(1 + len(ANOMALIES))
    zero_bias = generate_zero_bias(events, np.random.default_rng(zero_bias_stream))
    n_train, n_val = events // 2, events // 4
    paths = {}
    for split, regions in zip(BACKGROUND_FILES, np.split(zero_bias, [n_train, n_train + n_val])):
        paths[split] = out_dir / BACKGROUND_FILES[split]
        write_regions(paths[split], regions)
    for name, stream in zip(ANOMALIES, anomaly_streams):
        paths[name] = out_dir / f"{name}.h5"
        write_regions(paths[name], generate_anomaly(name, anomaly_events, np.random.default_rng(stream)))
    return paths
