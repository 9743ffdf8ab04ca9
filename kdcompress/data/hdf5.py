"""HDF5 plumbing shared by the ADC2021 and calorimeter readers: one-line errors and atomic writes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from ..errors import KDError
from ..fileio import atomic_file

T = TypeVar("T")


def require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise KDError(f"{path}: file not found")
    if not path.is_file():
        raise KDError(f"{path}: not a file")
    return path


def read_with(path: Path, reader: Callable[[object], T]) -> T:
    """Open `path` and return reader(handle); library errors become one-line KDErrors."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return reader(handle)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise KDError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None


def named_dataset(handle, key: str, path: Path):
    """handle[key], which must exist and be a dataset (not a group)."""
    import h5py

    if key not in handle:
        keys = ", ".join(sorted(handle.keys())) or "none"
        raise KDError(f"{path}: no '{key}' dataset (keys found: {keys})")
    dataset = handle[key]
    if not isinstance(dataset, h5py.Dataset):
        raise KDError(f"{path}: '{key}' is a group, expected a dataset")
    return dataset


def write_dataset(path: Path, key: str, array: np.ndarray, chunks: tuple) -> None:
    """Write `array` as one gzip-compressed dataset `key`, atomically."""
    import h5py

    try:
        with atomic_file(path) as tmp:
            with h5py.File(tmp, "w") as handle:
                handle.create_dataset(key, data=array, compression="gzip", compression_opts=4, shuffle=True,
                                      chunks=chunks)
    except OSError as exc:
        raise KDError(f"{path}: cannot write HDF5 file ({one_line(exc)})") from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
