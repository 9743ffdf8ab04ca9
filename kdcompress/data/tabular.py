"""Generic tabular anomaly data: .npz with `X` (and optional `y`) or .csv with an optional `y`/`label` column.

An .npz `X` of shape (rows, height, width) holds images, (rows, height, width, 3) or (rows, 3, height, width)
colour images: they are flattened row-major, channels last, and the image shape is kept, so that image-aware
query strategies (`flips`, `patches`) and the CNN student can use it."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..errors import KDError
from . import Dataset, check_finite

SPLIT = (0.6, 0.2, 0.2)
LABEL_COLUMNS = ("y", "label", "labels", "anomaly", "target")


def load_tabular(path: Path, seed: int = 0) -> Dataset:
    x, y, names, pixels = _read_npz(path) if path.suffix.lower() == ".npz" else (*_read_csv(path), None)
    _validate(path, x, y)
    normal = x[y == 0] if y is not None else x
    train, val, test = _split(normal, seed)
    signals = {"anomaly": x[y == 1]} if y is not None and (y == 1).any() else {}
    return Dataset(source=str(path), kind="tabular", train=train, val=val, test=test, signals=signals,
                   feature_names=names, extra={"split_seed": seed, "split": list(SPLIT)},
                   image_shape=pixels[:2] if pixels else None, channels=pixels[2] if pixels else 1)


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            if "X" not in f.files:
                raise KDError(f"{path} has no array 'X' (found: {', '.join(f.files) or 'none'})")
            x = np.asarray(f["X"])
            y = np.asarray(f["y"]) if "y" in f.files else None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, KDError):
            raise
        raise KDError(f"{path} is not a readable .npz file ({exc.__class__.__name__})") from None
    if x.dtype == object:
        raise KDError(f"{path}: 'X' must be numeric")
    x = _channels_last(path, x)
    if x.ndim == 4 and min(x.shape[1:3]) > 0:  # images: flattened row-major, channels last, shape kept
        height, width, channels = (int(v) for v in x.shape[1:])
        names = [f"px{r}_{c}" + (f"_{'rgb'[k]}" if channels > 1 else "") for r in range(height)
                 for c in range(width) for k in range(channels)]
        return x.reshape(len(x), -1), y, names, (height, width, channels)
    names = [f"x{i}" for i in range(x.shape[1])] if x.ndim == 2 else []
    return x, y, names, None


def _channels_last(path: Path, x: np.ndarray) -> np.ndarray:
    """Images as (N, H, W, C) with C 1 or 3: grey (N, H, W), Keras (N, H, W, C) or PyTorch (N, C, H, W)."""
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        return x
    first, last = x.shape[1], x.shape[3]
    if last == 1 or (last == 3 and first not in (1, 3)):
        return x
    if first == 1 or (first == 3 and last not in (1, 3)):
        return np.moveaxis(x, 1, 3)
    if first == last == 3:
        raise KDError(f"{path}: images of shape {x.shape} could hold their 3 channels first or last; store them "
                      f"as (N, H, W, 3) with H, W != 3, or flatten them into a 2-D table")
    raise KDError(f"{path}: images must have 1 or 3 channels (first or last axis), found shape {x.shape}")


def _read_csv(path: Path):
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            rows = [(reader.line_num, r) for r in reader if any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise KDError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise KDError(f"{path} is empty")
    header = rows[0][1] if not _is_numeric_row(rows[0][1]) else None
    body = rows[1:] if header else rows
    names = [n.strip() for n in header] if header else [f"x{i}" for i in range(len(rows[0][1]))]
    if not body:
        raise KDError(f"{path} has a header but no data rows")
    table = _numeric_table(path, body, names)
    label_idx = next((i for i, n in enumerate(names) if n.lower() in LABEL_COLUMNS), None)
    if label_idx is None:
        return table, None, names
    y = table[:, label_idx]
    x = np.delete(table, label_idx, axis=1)
    return x, y, [n for i, n in enumerate(names) if i != label_idx]


def _numeric_table(path: Path, body, names) -> np.ndarray:
    try:
        table = np.array([r for _, r in body], dtype=np.float64)
        if table.shape[1] == len(names):
            return table
    except ValueError:
        pass
    for line, row in body:  # slow pass, only to name the first bad line and column
        _check_row(path, line, row, names)
    raise KDError(f"{path} holds values that are not numbers")


def _check_row(path: Path, line: int, row, names) -> None:
    """A wrong length, an empty cell or text is an error naming the line and column."""
    if len(row) != len(names):
        raise KDError(f"{path} line {line} has {len(row)} values, expected {len(names)} like the first row")
    for name, text in zip(names, row):
        try:
            float(text)
        except ValueError:
            what = "is empty" if not text.strip() else f"holds {text.strip()[:40]!r}, not a number"
            raise KDError(f"{path} line {line}, column '{name}' {what}") from None


def _is_numeric_row(row) -> bool:
    try:
        [float(v) for v in row]
        return True
    except ValueError:
        return False


def _validate(path: Path, x: np.ndarray, y):
    if x.ndim != 2:
        raise KDError(f"{path}: features must be a 2-D table (rows, features) or images (rows, height, width"
                      f"[, 1 or 3]), found shape {x.shape}")
    if len(x) == 0 or x.shape[1] == 0:
        raise KDError(f"{path} holds no rows or no features")
    check_finite(x.astype(np.float64), str(path))
    if y is not None:
        if y.shape != (len(x),):
            raise KDError(f"{path}: labels must have shape ({len(x)},), found {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise KDError(f"{path}: labels must be 0 (normal) or 1 (anomaly)")
    n_normal = len(x) if y is None else int((y == 0).sum())
    if n_normal < 10:
        raise KDError(f"{path} has only {n_normal} normal rows; at least 10 are needed")


def _split(normal: np.ndarray, seed: int):
    order = np.random.default_rng(seed).permutation(len(normal))
    n_train = int(SPLIT[0] * len(normal))
    n_val = int(SPLIT[1] * len(normal))
    parts = np.split(order, [n_train, n_train + n_val])
    return tuple(normal[idx].astype(np.float32) for idx in parts)
