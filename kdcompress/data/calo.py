"""CICADA-style calorimeter regions (CMS L1 CICADA): HDF5 files holding `CaloRegions` (N, 18, 14).

Axis 1 is phi (18 regions of 20 degrees, periodic), axis 2 is eta (14 regions; columns 0 and 13 are the
most forward). Values are the regions' transverse energies as 10-bit trigger integers (LSB 0.5 GeV),
saturated at 1023. Files may store them as unsigned or signed integers, or as floats holding integers.

A data folder holds the zero-bias splits (zero_bias_train.h5, zero_bias_val.h5, zero_bias_test.h5) and one
file per anomaly class (<class>.h5); it loads as a Dataset of 252 flattened ET values per event.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import KDError
from .hdf5 import named_dataset, read_with, require_file, write_dataset

N_PHI, N_ETA = 18, 14
N_REGIONS = N_PHI * N_ETA
IMAGE_SHAPE = (N_PHI, N_ETA, 1)
ET_MAX = 1023  # 10-bit saturation
DATASET_KEY = "CaloRegions"
BACKGROUND_FILES = {"train": "zero_bias_train.h5", "val": "zero_bias_val.h5", "test": "zero_bias_test.h5"}
_CHUNK_EVENTS = 1 << 16  # events validated per block, bounds temporary memory on large files


def read_regions(path: str | os.PathLike) -> np.ndarray:
    """Read and validate the `CaloRegions` array of one file as uint16 (N, 18, 14)."""
    path = require_file(path)
    return read_with(path, lambda handle: _read_checked(handle, path))


def write_regions(path: str | os.PathLike, regions: np.ndarray) -> None:
    """Write `regions` as a gzip-compressed uint16 `CaloRegions` dataset, atomically (values validated)."""
    path = Path(path)
    regions = np.asarray(regions)
    _check_shape(regions.shape, path)
    _check_dtype(regions.dtype, path)
    _check_values(regions, path)
    write_dataset(path, DATASET_KEY, regions.astype(np.uint16), chunks=(min(len(regions), 4096), N_PHI, N_ETA))


def to_features(regions: np.ndarray) -> np.ndarray:
    """(N, 18, 14) regions -> (N, 252) float32, phi-major (feature = 14 * phi + eta)."""
    regions = np.asarray(regions)
    if regions.ndim != 3 or regions.shape[1:] != (N_PHI, N_ETA):
        raise KDError(f"calorimeter regions have shape {regions.shape}, expected (N, {N_PHI}, {N_ETA})")
    return regions.reshape(len(regions), N_REGIONS).astype(np.float32)


def feature_names() -> list[str]:
    return [f"et_phi{phi}_eta{eta}" for phi in range(N_PHI) for eta in range(N_ETA)]


def is_calo_folder(folder: Path) -> bool:
    """A folder with a zero-bias training file is read as calorimeter data."""
    return (Path(folder) / BACKGROUND_FILES["train"]).is_file()


def load_folder(folder: str | os.PathLike):
    """Zero-bias splits + one anomaly class per other .h5 file, as a Dataset (kind 'calo')."""
    from . import Dataset
    folder = Path(folder)
    missing = [name for name in BACKGROUND_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise KDError(f"{folder} is not a calorimeter data folder: missing {', '.join(missing)}")
    parts = {split: to_features(read_regions(folder / name)) for split, name in BACKGROUND_FILES.items()}
    background = set(BACKGROUND_FILES.values())
    anomaly_files = sorted(f for f in folder.glob("*.h5") if f.name not in background)
    signals = {f.stem: to_features(read_regions(f)) for f in anomaly_files}
    return Dataset(source=str(folder), kind="calo", train=parts["train"], val=parts["val"], test=parts["test"],
                   signals=signals, feature_names=feature_names(), extra={"image_shape": IMAGE_SHAPE})


# ---------------------------------------------------------------- validation

def _read_checked(handle, path: Path) -> np.ndarray:
    dataset = named_dataset(handle, DATASET_KEY, path)
    _check_shape(dataset.shape, path)
    _check_dtype(dataset.dtype, path)
    out = np.empty(dataset.shape, dtype=np.uint16)
    bad = {"not_finite": 0, "negative": 0, "too_large": 0, "not_integer": 0}
    for start in range(0, len(dataset), _CHUNK_EVENTS):
        block = dataset[start:start + _CHUNK_EVENTS]
        _count_bad(block, bad)
        out[start:start + len(block)] = np.clip(np.nan_to_num(block), 0, ET_MAX)
    _raise_if_bad(bad, len(out), path)
    return out


def _check_shape(shape: tuple, path: Path) -> None:
    if len(shape) != 3 or tuple(shape[1:]) != (N_PHI, N_ETA):
        raise KDError(f"{path}: '{DATASET_KEY}' has shape {tuple(shape)}, expected (N, {N_PHI}, {N_ETA})")
    if shape[0] == 0:
        raise KDError(f"{path}: '{DATASET_KEY}' is empty (0 events)")


def _check_dtype(dtype, path: Path) -> None:
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise KDError(f"{path}: '{DATASET_KEY}' has dtype {dtype}, expected integers (e.g. uint16) or floats")


def _check_values(regions: np.ndarray, path: Path) -> None:
    bad = {"not_finite": 0, "negative": 0, "too_large": 0, "not_integer": 0}
    for start in range(0, len(regions), _CHUNK_EVENTS):
        _count_bad(regions[start:start + _CHUNK_EVENTS], bad)
    _raise_if_bad(bad, len(regions), path)


def _count_bad(block: np.ndarray, bad: dict) -> None:
    """Add the number of events of `block` with each kind of invalid ET value to `bad`."""
    per_event = block.reshape(len(block), -1)
    if np.issubdtype(per_event.dtype, np.floating):
        finite = np.isfinite(per_event)
        bad["not_finite"] += int((~finite).any(axis=1).sum())
        per_event = np.where(finite, per_event, 0)
        bad["not_integer"] += int((per_event != np.round(per_event)).any(axis=1).sum())
    bad["negative"] += int((per_event < 0).any(axis=1).sum())
    bad["too_large"] += int((per_event > ET_MAX).any(axis=1).sum())


_MESSAGES = {"not_finite": "contain NaN or inf values", "negative": "have negative ET values",
             "too_large": f"have ET values above {ET_MAX} (10-bit saturation)",
             "not_integer": "have non-integer ET values (expected 10-bit trigger integers)"}


def _raise_if_bad(bad: dict, n_events: int, path: Path) -> None:
    for kind, message in _MESSAGES.items():
        if bad[kind]:
            raise KDError(f"{path}: {bad[kind]} of {n_events} events {message}")
