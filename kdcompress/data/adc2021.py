"""ADC2021 ("LHC Anomaly Detection Challenge 2021", Govorkova et al.) HDF5 files.

Each file holds a dataset `Particles` of shape (N, 19, 4); the last axis is (pT, eta, phi, class).
Rows: 0 = MET (eta 0, class 1), 1-4 = e/gamma (class 2), 5-8 = muons (class 3), 9-18 = jets (class 4).
Missing objects are all-zero rows; objects of one type are ordered by decreasing pT.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import KDError
from .hdf5 import named_dataset, read_with, require_file, write_dataset

N_OBJECTS = 19
SLOTS = {"met": slice(0, 1), "egamma": slice(1, 5), "muon": slice(5, 9), "jet": slice(9, 19)}
LAYOUT = {"objects": 19, "per_object": 3, "groups": [[1, 5], [5, 9], [9, 19]]}  # groups: e/gamma, muon, jet slots
SIGNALS = ("Ato4l", "leptoquark", "hToTauTau", "hChToTauNu")
BACKGROUND_FILES = {"train": "background_train.h5", "val": "background_val.h5", "test": "background_test.h5"}

DATASET_KEY = "Particles"
FIELDS = ("pt", "eta", "phi")
_CHUNK_EVENTS = 1 << 20  # events checked per block, bounds temporary memory on multi-GB files


def read_particles(path: str | os.PathLike) -> np.ndarray:
    """Read and validate the `Particles` array of one ADC2021 file as float32 (N, 19, 4)."""
    path = require_file(path)
    particles = read_with(path, lambda handle: _read_dataset(handle, path))
    _check_values(particles, path)
    return particles


def write_particles(path: str | os.PathLike, particles: np.ndarray) -> None:
    """Write `particles` as a gzip-compressed float32 `Particles` dataset, atomically."""
    path = Path(path)
    particles = np.asarray(particles)
    _check_shape(particles.shape, path)
    try:
        particles = particles.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise KDError(f"{path}: particles have dtype {particles.dtype}, expected numbers") from None
    _check_values(particles, path)
    write_dataset(path, DATASET_KEY, particles, chunks=(min(len(particles), 2048), N_OBJECTS, 4))


def to_features(particles: np.ndarray) -> np.ndarray:
    """(N, 19, 4) particles -> (N, 57) float32 features: (pT, eta, phi) of each object in row order."""
    particles = np.asarray(particles)
    if particles.ndim != 3 or particles.shape[1:] != (N_OBJECTS, 4):
        raise KDError(f"particles have shape {particles.shape}, expected (N, {N_OBJECTS}, 4)")
    features = particles[:, :, :3].astype(np.float32)
    return features.reshape(len(particles), N_OBJECTS * 3)


def feature_names() -> list[str]:
    """The 57 column names of `to_features`: met_pt, met_eta, met_phi, egamma0_pt, ..., jet9_phi."""
    return [f"{obj}_{field}" for obj in _object_names() for field in FIELDS]


def _object_names() -> list[str]:
    names = []
    for kind, rows in SLOTS.items():
        count = rows.stop - rows.start
        names += [kind] if kind == "met" else [f"{kind}{i}" for i in range(count)]
    return names


def _read_dataset(handle, path: Path) -> np.ndarray:
    dataset = named_dataset(handle, DATASET_KEY, path)
    _check_shape(dataset.shape, path)
    if not (np.issubdtype(dataset.dtype, np.floating) or np.issubdtype(dataset.dtype, np.integer)):
        raise KDError(f"{path}: '{DATASET_KEY}' has dtype {dataset.dtype}, expected float32 or float64")
    return dataset.astype(np.float32)[()]


def _check_shape(shape: tuple, path: Path) -> None:
    if len(shape) != 3 or tuple(shape[1:]) != (N_OBJECTS, 4):
        raise KDError(f"{path}: '{DATASET_KEY}' has shape {tuple(shape)}, expected (N, {N_OBJECTS}, 4)")
    if shape[0] == 0:
        raise KDError(f"{path}: '{DATASET_KEY}' is empty (0 events)")


def _check_values(particles: np.ndarray, path: Path) -> None:
    not_finite = _count_events(particles, lambda block: ~np.isfinite(block).all(axis=(1, 2)))
    if not_finite:
        raise KDError(f"{path}: {not_finite} of {len(particles)} events contain NaN or inf values")
    negative_pt = _count_events(particles, lambda block: (block[:, :, 0] < 0).any(axis=1))
    if negative_pt:
        raise KDError(f"{path}: {negative_pt} of {len(particles)} events have negative pT")


def _count_events(particles: np.ndarray, is_bad) -> int:
    """Number of events flagged by `is_bad`, evaluated block by block."""
    return sum(int(is_bad(particles[start:start + _CHUNK_EVENTS]).sum())
               for start in range(0, len(particles), _CHUNK_EVENTS))
