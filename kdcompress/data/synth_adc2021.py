"""Seeded synthetic events written in the ADC2021 format (see adc2021.py).

A toy of the real data set: Standard-Model background (W, QCD, Z, ttbar) and the four benchmark signals,
each generated as truth four-vectors (resonance production, two-body decays, collinear tau decays,
hadronic recoil, pile-up), passed through a simple L1-like detector (pT resolution, lepton efficiency,
eta acceptance, thresholds) and the single-lepton filter of the real sample (leading e or mu > 23 GeV).
Units are GeV. Everything is vectorised numpy and driven only by the given generator.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import KDError
from .adc2021 import BACKGROUND_FILES, N_OBJECTS, SIGNALS, SLOTS, write_particles

# Selection and detector
TRIGGER_LEPTON_PT = 23.0
TRUTH_LEPTON_PT_MIN = 15.0
PT_MIN = {"egamma": 3.0, "muon": 3.0, "jet": 15.0}
ETA_MAX = {"egamma": 3.0, "muon": 2.1, "jet": 4.0}
CLASS_ID = {"met": 1, "egamma": 2, "muon": 3, "jet": 4}
PT_RESOLUTION = {"egamma": (0.03, 0.25), "muon": (0.10, 0.0), "jet": (0.10, 0.7)}  # sigma = a*pT + b*sqrt(pT)
OBJECT_KINDS = ("egamma", "muon", "jet")
PHI_LIMIT = np.nextafter(np.float32(np.pi), np.float32(0))  # largest float32 inside (-pi, pi]

# Masses and widths
M_W, WIDTH_W = 80.4, 2.1
M_Z, WIDTH_Z = 91.19, 2.5
M_TOP, M_B, M_TAU = 172.5, 4.8, 1.777
M_A, M_LQ, M_H0, M_HCH = 50.0, 80.0, 60.0, 60.0
TAU_TO_LEPTON = 0.35

# Background composition after the single-lepton filter
BACKGROUND_MIX = {"w_lnu": 0.585, "qcd": 0.305, "z_ll": 0.085, "ttbar": 0.025}

_MAX_BATCH = 200_000  # events per generation batch, bounds memory
_MAX_TRIED_PER_EVENT = 1000  # gives up below 0.1% filter efficiency


# ---------------------------------------------------------------- four-vectors (E, px, py, pz)

def _p4(pt, y, phi, mass=0.0) -> np.ndarray:
    """Four-vectors from pT, rapidity, phi and mass (rapidity = eta when massless)."""
    pt, y, phi, mass = np.broadcast_arrays(pt, y, phi, mass)
    mt = np.sqrt(pt ** 2 + mass ** 2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=-1)


def _pt_eta_phi(p4: np.ndarray):
    pt = np.hypot(p4[..., 1], p4[..., 2])
    eta = np.arcsinh(p4[..., 3] / np.maximum(pt, 1e-9))
    phi = np.arctan2(p4[..., 2], p4[..., 1])
    return pt, eta, phi


def _mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p4[:, 0] ** 2 - (p4[:, 1:] ** 2).sum(axis=1), 0.0))


def _boost_to_lab(rest: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Boost four-vectors given in the parent's rest frame into the lab frame."""
    beta = parent[:, 1:] / parent[:, :1]
    beta2 = (beta ** 2).sum(axis=1)
    gamma = 1.0 / np.sqrt(1.0 - beta2)
    beta_dot_p = (beta * rest[:, 1:]).sum(axis=1)
    coefficient = np.where(beta2 > 1e-12, (gamma - 1.0) / np.maximum(beta2, 1e-12), 0.5)
    momentum = rest[:, 1:] + (coefficient * beta_dot_p + gamma * rest[:, 0])[:, None] * beta
    return np.column_stack([gamma * (rest[:, 0] + beta_dot_p), momentum])


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    cos_theta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta ** 2)
    return np.column_stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta])


def _two_body_decay(rng: np.random.Generator, parent: np.ndarray, m1, m2):
    """Isotropic two-body decay of `parent` into daughters of masses m1, m2 (lab four-vectors)."""
    n = len(parent)
    mass = _mass(parent)
    m1, m2 = np.broadcast_to(m1, (n,)), np.broadcast_to(m2, (n,))
    p2 = (mass ** 2 - (m1 + m2) ** 2) * (mass ** 2 - (m1 - m2) ** 2)
    p = np.sqrt(np.maximum(p2, 0.0)) / (2.0 * mass)
    direction = p[:, None] * _isotropic(rng, n)
    first = np.column_stack([np.sqrt(p ** 2 + m1 ** 2), direction])
    second = np.column_stack([np.sqrt(p ** 2 + m2 ** 2), -direction])
    return _boost_to_lab(first, parent), _boost_to_lab(second, parent)


# ---------------------------------------------------------------- spectra

def _breit_wigner(rng: np.random.Generator, n: int, mass: float, width: float, low: float, high: float):
    """Cauchy line shape truncated to [low, high] (inverse-CDF sampling)."""
    cdf_low, cdf_high = (np.arctan(2.0 * (edge - mass) / width) for edge in (low, high))
    return mass + 0.5 * width * np.tan(rng.uniform(cdf_low, cdf_high, n))


def _power_law(rng: np.random.Generator, n: int, pt_min: float, index: float) -> np.ndarray:
    """dN/dpT ~ pT^-index above pt_min."""
    return pt_min * rng.random(n) ** (-1.0 / (index - 1.0))


def _recoil_pt(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Transverse momentum of a produced system: soft core plus a power-law tail from hard ISR."""
    core = rng.gamma(1.3, mean / 1.3, n)
    tail = mean * (1.0 + rng.pareto(2.5, n))
    return np.where(rng.random(n) < 0.15, tail, core)


def _produce(rng: np.random.Generator, n: int, mass, pt_mean: float, y_sigma: float = 1.8) -> np.ndarray:
    """Four-vector of a system of given mass produced with a recoil pT spectrum."""
    y = np.clip(rng.normal(0.0, y_sigma, n), -5.0, 5.0)
    return _p4(_recoil_pt(rng, n, pt_mean), y, rng.uniform(-np.pi, np.pi, n), mass)


def _momentum_fraction(rng: np.random.Generator, n: int, a: float, b: float) -> np.ndarray:
    return rng.beta(a, b, n)[:, None]


# ---------------------------------------------------------------- truth-level event record

class _Event:
    """Truth objects of a batch of n events: per kind a list of (n, 3) arrays (pT, eta, phi), pT 0 = absent."""

    def __init__(self, n: int):
        self.n = n
        self.objects = {kind: [] for kind in OBJECT_KINDS}
        self.invisible = np.zeros((n, 2))  # summed (px, py) of neutrinos

    def _mask(self, present) -> np.ndarray:
        return np.broadcast_to(np.asarray(present, dtype=bool), (self.n,))

    def add(self, kind: str, p4: np.ndarray, present=True) -> None:
        pt, eta, phi = _pt_eta_phi(p4)
        self.objects[kind].append(np.column_stack([np.where(self._mask(present), pt, 0.0), eta, phi]))

    def add_invisible(self, p4: np.ndarray, present=True) -> None:
        self.invisible += np.where(self._mask(present)[:, None], p4[:, 1:3], 0.0)

    def add_lepton(self, rng: np.random.Generator, p4: np.ndarray, present=True) -> None:
        """An electron or a muon with equal probability."""
        present = self._mask(present)
        is_muon = rng.random(self.n) < 0.5
        self.add("muon", p4, present & is_muon)
        self.add("egamma", p4, present & ~is_muon)

    def add_lepton_pair(self, rng: np.random.Generator, first: np.ndarray, second: np.ndarray) -> None:
        """Same-flavour pair (ee or mumu)."""
        is_muon = rng.random(self.n) < 0.5
        for p4 in (first, second):
            self.add("muon", p4, is_muon)
            self.add("egamma", p4, ~is_muon)

    def add_tau(self, rng: np.random.Generator, p4: np.ndarray, present=True) -> None:
        """Collinear tau decay: a lepton (35%) or a tau jet, the rest of the momentum to neutrinos."""
        present = self._mask(present)
        leptonic = rng.random(self.n) < TAU_TO_LEPTON
        visible_fraction = np.where(leptonic[:, None], _momentum_fraction(rng, self.n, 1.0, 1.9),
                                    _momentum_fraction(rng, self.n, 1.6, 1.3))
        visible = p4 * visible_fraction
        self.add_lepton(rng, visible, present & leptonic)
        self.add("jet", visible, present & ~leptonic)
        self.add_invisible(p4 - visible, present)

    def add_parton(self, rng: np.random.Generator, p4: np.ndarray, present=True,
                   semileptonic=0.01, fake_electron=0.03) -> None:
        """A jet. With the given probabilities it carries a non-isolated lepton from a heavy-flavour
        decay (plus a neutrino) or a fake electron (pi0 / conversion) that take part of its momentum."""
        present = self._mask(present)
        draw = rng.random(self.n)
        is_semileptonic = draw < semileptonic
        is_fake = ~is_semileptonic & (draw < semileptonic + fake_electron)
        lepton = p4 * _momentum_fraction(rng, self.n, 2.5, 2.5)
        neutrino = (p4 - lepton) * _momentum_fraction(rng, self.n, 1.5, 4.0)
        self.add_lepton(rng, lepton, present & is_semileptonic)
        self.add("egamma", lepton, present & is_fake)
        self.add_invisible(neutrino, present & is_semileptonic)
        jet = p4 - np.where(is_semileptonic[:, None], lepton + neutrino, np.where(is_fake[:, None], lepton, 0.0))
        self.add("jet", jet, present)

    def add_recoil(self, rng: np.random.Generator, system: np.ndarray) -> None:
        """One or two ISR jets whose transverse momenta balance `system`, except for a part carried by
        unclustered soft radiation (measured only through the MET soft term)."""
        recoil = -system[:, 1:3] * rng.uniform(0.6, 1.0, self.n)[:, None]
        split = np.where(rng.random(self.n) < 0.35, rng.uniform(0.5, 0.9, self.n), 1.0)
        angle = np.where(split < 1.0, rng.normal(0.0, 0.6, self.n), 0.0)
        cos, sin = np.cos(angle), np.sin(angle)
        first = split[:, None] * np.column_stack([cos * recoil[:, 0] - sin * recoil[:, 1],
                                                  sin * recoil[:, 0] + cos * recoil[:, 1]])
        for transverse in (first, recoil - first):
            pt = np.hypot(transverse[:, 0], transverse[:, 1])
            phi = np.arctan2(transverse[:, 1], transverse[:, 0])
            self.add_parton(rng, _p4(pt, rng.normal(0.0, 1.8, self.n), phi), pt > 0.5)

    def leading_lepton_pt(self) -> np.ndarray:
        """Highest truth pT among electrons and muons (0 if none)."""
        lepton_pts = [obj[:, 0] for kind in ("egamma", "muon") for obj in self.objects[kind]]
        return np.max(lepton_pts, axis=0) if lepton_pts else np.zeros(self.n)

    def select(self, keep: np.ndarray) -> "_Event":
        """The sub-batch of events where `keep` is true."""
        chosen = _Event(int(keep.sum()))
        chosen.objects = {kind: [obj[keep] for obj in objs] for kind, objs in self.objects.items()}
        chosen.invisible = self.invisible[keep]
        return chosen

    def add_pileup(self, rng: np.random.Generator) -> None:
        """Jets and soft e/gamma from other collisions of the bunch crossing (balanced by their own
        soft activity, so they enter MET only through their mismeasurement)."""
        n_jets = rng.poisson(0.6, self.n)
        for i in range(3):
            pt = 10.0 + rng.exponential(7.0, self.n)
            self.add("jet", _p4(pt, rng.uniform(-4.5, 4.5, self.n), rng.uniform(-np.pi, np.pi, self.n)), n_jets > i)
        pt = 3.0 + rng.exponential(4.0, self.n)
        soft_photon = rng.random(self.n) < 0.15
        self.add("egamma", _p4(pt, rng.uniform(-3.2, 3.2, self.n), rng.uniform(-np.pi, np.pi, self.n)), soft_photon)


# ---------------------------------------------------------------- detector and filter

def _smear_pt(rng: np.random.Generator, kind: str, pt: np.ndarray) -> np.ndarray:
    relative, stochastic = PT_RESOLUTION[kind]
    sigma = relative * pt + stochastic * np.sqrt(pt)
    return np.maximum(pt + sigma * rng.standard_normal(pt.shape), 0.0)


def _lepton_efficiency(pt: np.ndarray) -> np.ndarray:
    """L1 e/mu reconstruction efficiency: about 50% at 5 GeV, 90% above 15 GeV."""
    return 0.95 * (1.0 - np.exp(-np.maximum(pt - 2.0, 0.0) / 4.0))


def _transverse(pt: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Summed (px, py) over the object axis."""
    return np.column_stack([(pt * np.cos(phi)).sum(axis=1), (pt * np.sin(phi)).sum(axis=1)])


def _fill_slots(out: np.ndarray, kind: str, pt, eta, phi, recorded) -> None:
    """Write the recorded objects of one kind into its rows, by decreasing pT, zero padded."""
    rows = SLOTS[kind]
    capacity = rows.stop - rows.start
    order = np.argsort(-np.where(recorded, pt, -1.0), axis=1, kind="stable")[:, :capacity]
    kept = np.take_along_axis(recorded, order, axis=1)
    columns = [np.take_along_axis(a, order, axis=1) for a in (pt, eta, phi)] + [np.full(kept.shape, CLASS_ID[kind])]
    block = np.where(kept[..., None], np.stack(columns, axis=-1), 0.0)
    out[:, rows.start:rows.start + block.shape[1]] = block


def _detect(event: _Event, rng: np.random.Generator) -> np.ndarray:
    """Reconstruct truth objects into the (n, 19, 4) float32 layout, with MET from everything unseen."""
    event.add_pileup(rng)
    out = np.zeros((event.n, N_OBJECTS, 4))
    missing = event.invisible.copy()
    scalar_sum = np.zeros(event.n)
    for kind in OBJECT_KINDS:
        truth = np.stack(event.objects[kind], axis=1)
        pt, eta, phi = truth[..., 0], truth[..., 1], truth[..., 2]
        present = pt > 0
        measured = _smear_pt(rng, kind, pt)
        in_acceptance = np.abs(eta) < ETA_MAX[kind]
        found = rng.random(pt.shape) < (_lepton_efficiency(pt) if kind != "jet" else 1.0)
        # out-of-acceptance objects and unreconstructed muons escape; the rest is measured with resolution
        escapes = ~in_acceptance | ((kind == "muon") & ~found)
        seen = np.where(present & ~escapes, measured, 0.0)
        missing += _transverse(pt - seen, phi)
        scalar_sum += seen.sum(axis=1)
        _fill_slots(out, kind, measured, eta, phi, present & in_acceptance & found & (measured > PT_MIN[kind]))
    soft_term = 5.0 + 0.5 * np.sqrt(scalar_sum)
    missing += soft_term[:, None] * rng.standard_normal((event.n, 2))
    out[:, 0, 0] = np.hypot(missing[:, 0], missing[:, 1])
    out[:, 0, 2] = np.arctan2(missing[:, 1], missing[:, 0])
    out[:, 0, 3] = CLASS_ID["met"]
    out = out.astype(np.float32)
    out[..., 2] = np.clip(out[..., 2], -PHI_LIMIT, PHI_LIMIT)
    return out


def passes_single_lepton_filter(particles: np.ndarray) -> np.ndarray:
    """True for events whose leading e/gamma or leading muon has pT > 23 GeV."""
    leading = np.maximum(particles[:, SLOTS["egamma"].start, 0], particles[:, SLOTS["muon"].start, 0])
    return leading > TRIGGER_LEPTON_PT


def _generate_passing(make_event: Callable, n: int, rng: np.random.Generator) -> np.ndarray:
    """Generate batches of `make_event` until n events pass the single-lepton filter."""
    kept, have, tried = [], 0, 0
    batch = min(max(256, 2 * n), _MAX_BATCH)
    while have < n:
        if tried > _MAX_TRIED_PER_EVENT * n + _MAX_BATCH:
            raise RuntimeError(f"{make_event.__name__}: filter efficiency too low to reach {n} events")
        event = make_event(batch, rng)
        # cheap truth-level preselection, far looser than the filter (muon resolution is 10%)
        particles = _detect(event.select(event.leading_lepton_pt() > TRUTH_LEPTON_PT_MIN), rng)
        passing = particles[passes_single_lepton_filter(particles)]
        kept.append(passing)
        have, tried = have + len(passing), tried + batch
        efficiency = max(have / tried, 1e-3)
        batch = min(int((n - have) / efficiency * 1.2) + 256, _MAX_BATCH)
    return np.concatenate(kept)[:n] if kept else np.zeros((0, N_OBJECTS, 4), np.float32)


# ---------------------------------------------------------------- background processes

def _w_to_lepton_neutrino(n: int, rng: np.random.Generator) -> _Event:
    event = _Event(n)
    w = _produce(rng, n, _breit_wigner(rng, n, M_W, WIDTH_W, 50.0, 150.0), pt_mean=12.0)
    charged, neutrino = _two_body_decay(rng, w, 0.0, 0.0)
    to_tau = rng.random(n) < 1.0 / 3.0
    event.add_lepton(rng, charged, ~to_tau)
    event.add_tau(rng, charged, to_tau)
    event.add_invisible(neutrino)
    event.add_recoil(rng, w)
    return event


def _qcd_multijet(n: int, rng: np.random.Generator) -> _Event:
    """Dijet events in which one jet carries a non-isolated or fake lepton."""
    event = _Event(n)
    leading_pt = _power_law(rng, n, 30.0, 4.5)
    leading_phi = rng.uniform(-np.pi, np.pi, n)
    leading = _p4(leading_pt, rng.normal(0.0, 1.5, n), leading_phi)
    second = _p4(leading_pt * rng.uniform(0.6, 1.0, n), rng.normal(0.0, 1.5, n),
                 leading_phi + np.pi + rng.normal(0.0, 0.25, n))
    lepton_in_leading = rng.random(n) < 0.6
    for jet, has_lepton in ((leading, lepton_in_leading), (second, ~lepton_in_leading)):
        event.add_parton(rng, jet, semileptonic=np.where(has_lepton, 0.6, 0.02),
                         fake_electron=np.where(has_lepton, 0.4, 0.03))
    event.add_recoil(rng, leading + second)
    return event


def _z_to_leptons(n: int, rng: np.random.Generator) -> _Event:
    event = _Event(n)
    z = _produce(rng, n, _breit_wigner(rng, n, M_Z, WIDTH_Z, 60.0, 130.0), pt_mean=12.0)
    event.add_lepton_pair(rng, *_two_body_decay(rng, z, 0.0, 0.0))
    event.add_recoil(rng, z)
    return event


def _ttbar(n: int, rng: np.random.Generator) -> _Event:
    event = _Event(n)
    pair = _produce(rng, n, 2 * M_TOP + rng.exponential(90.0, n), pt_mean=30.0, y_sigma=1.0)
    for top in _two_body_decay(rng, pair, M_TOP, M_TOP):
        w, b = _two_body_decay(rng, top, _breit_wigner(rng, n, M_W, WIDTH_W, 60.0, 100.0), M_B)
        event.add_parton(rng, b, semileptonic=0.2, fake_electron=0.03)
        first, second = _two_body_decay(rng, w, 0.0, 0.0)
        mode = rng.random(n)
        to_lepton, to_tau = mode < 2.0 / 9.0, (mode >= 2.0 / 9.0) & (mode < 3.0 / 9.0)
        hadronic = ~(to_lepton | to_tau)
        event.add_lepton(rng, first, to_lepton)
        event.add_tau(rng, first, to_tau)
        event.add_invisible(second, ~hadronic)
        event.add_parton(rng, first, hadronic)
        event.add_parton(rng, second, hadronic)
    event.add_recoil(rng, pair)
    return event


_BACKGROUND_PROCESSES = {"w_lnu": _w_to_lepton_neutrino, "qcd": _qcd_multijet,
                         "z_ll": _z_to_leptons, "ttbar": _ttbar}


# ---------------------------------------------------------------- signals

def _a_to_four_leptons(n: int, rng: np.random.Generator) -> _Event:
    """Neutral scalar A (50 GeV) -> Z* Z* -> 4 leptons."""
    event = _Event(n)
    a = _produce(rng, n, M_A, pt_mean=35.0)
    first_mass = rng.uniform(5.0, 44.0, n)
    second_mass = rng.uniform(0.3, 0.95, n) * (M_A - first_mass)
    for z in _two_body_decay(rng, a, first_mass, second_mass):
        event.add_lepton_pair(rng, *_two_body_decay(rng, z, 0.0, 0.0))
    event.add_recoil(rng, a)
    return event


def _leptoquark(n: int, rng: np.random.Generator) -> _Event:
    """Leptoquark (80 GeV) -> b tau."""
    event = _Event(n)
    lq = _produce(rng, n, M_LQ, pt_mean=30.0)
    b, tau = _two_body_decay(rng, lq, M_B, M_TAU)
    event.add_parton(rng, b, semileptonic=0.2, fake_electron=0.03)
    event.add_tau(rng, tau)
    event.add_recoil(rng, lq)
    return event


def _h0_to_tau_tau(n: int, rng: np.random.Generator) -> _Event:
    """Neutral scalar h0 (60 GeV) -> tau tau."""
    event = _Event(n)
    h = _produce(rng, n, M_H0, pt_mean=30.0)
    for tau in _two_body_decay(rng, h, M_TAU, M_TAU):
        event.add_tau(rng, tau)
    event.add_recoil(rng, h)
    return event


def _hch_to_tau_nu(n: int, rng: np.random.Generator) -> _Event:
    """Charged scalar h+ (60 GeV) -> tau nu."""
    event = _Event(n)
    h = _produce(rng, n, M_HCH, pt_mean=85.0)
    tau, neutrino = _two_body_decay(rng, h, M_TAU, 0.0)
    event.add_tau(rng, tau)
    event.add_invisible(neutrino)
    event.add_recoil(rng, h)
    return event


_SIGNAL_PROCESSES = {"Ato4l": _a_to_four_leptons, "leptoquark": _leptoquark,
                     "hToTauTau": _h0_to_tau_tau, "hChToTauNu": _hch_to_tau_nu}
assert tuple(_SIGNAL_PROCESSES) == SIGNALS


# ---------------------------------------------------------------- public API

def generate_background(n: int, rng: np.random.Generator) -> np.ndarray:
    """n Standard-Model events (float32 (n, 19, 4)) mixed as BACKGROUND_MIX, in random order."""
    rng = np.random.default_rng(rng)
    _check_count("n", n, minimum=0)
    counts = rng.multinomial(n, list(BACKGROUND_MIX.values()))
    parts = [_generate_passing(_BACKGROUND_PROCESSES[name], count, rng)
             for name, count in zip(BACKGROUND_MIX, counts)]
    events = np.concatenate(parts)
    return events[rng.permutation(len(events))]


def generate_signal(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n events (float32 (n, 19, 4)) of the benchmark signal `name` (one of SIGNALS)."""
    if name not in _SIGNAL_PROCESSES:
        raise KDError(f"unknown ADC2021 signal '{name}' (known: {', '.join(SIGNALS)})")
    _check_count("n", n, minimum=0)
    return _generate_passing(_SIGNAL_PROCESSES[name], n, np.random.default_rng(rng))


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise KDError(f"{name} must be an integer >= {minimum}, got {value!r}")


def write_dataset(out_dir: str | os.PathLike, events: int = 200_000, seed: int = 0,
                  signal_events: int | None = None) -> dict[str, Path]:
    """Write background_{train,val,test}.h5 (50/25/25 of `events`) and one <signal>.h5 per signal.

    Returns {"train": path, "val": path, "test": path, "<signal>": path, ...}. Each file draws from its
    own stream spawned from `seed`, so a given seed always gives identical arrays.
    """
    _check_count("events", events, minimum=4)  # every split needs at least one event
    signal_events = max(1000, events // 10) if signal_events is None else signal_events
    _check_count("signal_events", signal_events, minimum=1)
    out_dir = Path(out_dir)
    background_stream, *signal_streams = np.random.SeedSequence(seed).spawn(1 + len(SIGNALS))
    background = generate_background(events, np.random.default_rng(background_stream))
    n_train, n_val = events // 2, events // 4
    splits = np.split(background, [n_train, n_train + n_val])
    paths = {}
    for split, particles in zip(BACKGROUND_FILES, splits):
        paths[split] = out_dir / BACKGROUND_FILES[split]
        write_particles(paths[split], particles)
    for name, stream in zip(SIGNALS, signal_streams):
        paths[name] = out_dir / f"{name}.h5"
        write_particles(paths[name], generate_signal(name, signal_events, np.random.default_rng(stream)))
    return paths
