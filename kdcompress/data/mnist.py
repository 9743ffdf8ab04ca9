"""MNIST in the standard idx format (gzip or plain), one-class splits, and synthetic non-digit outliers.

One-class protocol (Pol et al. 2023): one digit is normal. Its test set holds the digit's test images plus as
many random images of the other digits. Two protocols, chosen by the files present in the folder:
- "train-test-files": train/val from the train file's digit (val = VAL_OF_TRAIN of it), test from the test file;
- "test-file-split": only the test file exists; every digit's images are split (seeded) into train/val/test
  by TEST_FILE_SPLIT, and anomalies come from the other digits' *test* parts only.
Images become flat (N, 784) float32 features in [0, 1].
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import KDError
from . import Dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FOLDER = REPO_ROOT.parent / "shared" / "data" / "mnist"
IMAGE_SIDE = 28
N_FEATURES = IMAGE_SIDE * IMAGE_SIDE
DIGITS = tuple(range(10))
TEST_FILE_SPLIT = (0.6, 0.1, 0.3)  # train, val, test fractions per digit when only the test file exists
VAL_OF_TRAIN = 0.1  # val fraction of the train file's digit when it exists
ANOMALY_SIGNAL = "other digits"

# idx header: two zero bytes, a type code, the number of dimensions; then one big-endian uint32 per dimension
IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {dtype.newbyteorder(">"): code for code, dtype in IDX_TYPES.items()}
FILE_STEMS = {("train", "images"): "train-images", ("train", "labels"): "train-labels",
              ("test", "images"): "t10k-images", ("test", "labels"): "t10k-labels"}
GZIP_MAGIC = b"\x1f\x8b"


# ---------------------------------------------------------------- idx files

def read_idx(path, ndim: Optional[int] = None) -> np.ndarray:
    """The array stored in an idx file (gzip or plain); KDError if the header or the size is wrong."""
    raw = _read_bytes(Path(path))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise KDError(f"{path} is not an idx file (bad magic number {raw[:4].hex() or 'none'})")
    dtype, dims = IDX_TYPES[raw[2]], raw[3]
    if ndim is not None and dims != ndim:
        raise KDError(f"{path}: expected an idx file with {ndim} dimension(s), found {dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise KDError(f"{path} is truncated: the header needs {header} bytes, the file has {len(raw)}")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise KDError(f"{path} is {problem}: shape {shape} needs {expected} bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array: np.ndarray, compress: Optional[bool] = None) -> Path:
    """Write `array` as an idx file; gzip when `compress` (default: the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">")
    if big_endian not in IDX_CODES:
        raise KDError(f"idx files cannot hold {array.dtype} values")
    header = bytes([0, 0, IDX_CODES[big_endian], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.astype(big_endian).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise KDError(f"idx file {path} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise KDError(f"{path} is a damaged or truncated gzip file ({exc.__class__.__name__})") from None


def read_images_labels(images_path, labels_path) -> Tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of a matching pair of MNIST idx files."""
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise KDError(f"{images_path}: MNIST images are {IMAGE_SIDE}x{IMAGE_SIDE}, found "
                      f"{images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise KDError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise KDError(f"{labels_path}: labels must be digits 0-9, found {labels.min()}..{labels.max()}")
    return images.astype(np.uint8), labels.astype(np.int64)


def find_idx_file(folder: Path, part: str, kind: str) -> Optional[Path]:
    """The standard file for (train|test, images|labels) in `folder`, plain or .gz, '-' or '.' before idx."""
    stem = FILE_STEMS[(part, kind)]
    suffix = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    for name in (f"{stem}-{suffix}", f"{stem}.{suffix}"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


# ---------------------------------------------------------------- the folder and its one-class splits

@dataclass
class MnistFiles:
    """The images and labels found in a folder; `train` is None when only the test file is there."""
    folder: Path
    test: Tuple[np.ndarray, np.ndarray]
    train: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def protocol(self) -> str:
        return "train-test-files" if self.train is not None else "test-file-split"


def default_folder() -> Path:
    """../shared/data/mnist beside the repository checkout."""
    return DEFAULT_FOLDER


def load_mnist_folder(folder=None) -> MnistFiles:
    """Read the test pair (required) and the train pair (optional) from an MNIST folder."""
    folder = Path(folder) if folder is not None else default_folder()
    if not folder.is_dir():
        raise KDError(f"MNIST folder {folder} does not exist (it needs t10k-images-idx3-ubyte[.gz] and "
                      f"t10k-labels-idx1-ubyte[.gz]; pass data=PATH)")
    pairs = {part: (find_idx_file(folder, part, "images"), find_idx_file(folder, part, "labels"))
             for part in ("train", "test")}
    if None in pairs["test"]:
        raise KDError(f"{folder} has no MNIST test files: need t10k-images-idx3-ubyte[.gz] and "
                      f"t10k-labels-idx1-ubyte[.gz]")
    if (pairs["train"][0] is None) != (pairs["train"][1] is None):
        raise KDError(f"{folder} has only one of the two MNIST train files (images and labels go together)")
    train = read_images_labels(*pairs["train"]) if pairs["train"][0] is not None else None
    return MnistFiles(folder=folder, test=read_images_labels(*pairs["test"]), train=train)


def to_features(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> flat float32 (N, 784) in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0).reshape(len(images), -1)


def split_per_class(labels: np.ndarray, fractions, seed: int) -> Dict[int, Dict[str, np.ndarray]]:
    """Per digit: disjoint sorted index arrays for each named part, sized by `fractions` (last part takes the rest)."""
    names = ("train", "val", "test")[:len(fractions)]
    rng = np.random.default_rng(seed)
    out = {}
    for digit in DIGITS:
        order = rng.permutation(np.flatnonzero(labels == digit))
        cuts = np.round(np.cumsum(fractions[:-1]) * len(order)).astype(int)
        out[digit] = {name: np.sort(part) for name, part in zip(names, np.split(order, cuts))}
    return out


def make_splits(files: MnistFiles, seed: int = 0) -> dict:
    """Index splits of every digit: train/val into the fit images, test into the test file."""
    test_labels = files.test[1]
    if files.train is None:
        parts = split_per_class(test_labels, TEST_FILE_SPLIT, seed)
        fractions = list(TEST_FILE_SPLIT)
    else:
        fit = split_per_class(files.train[1], (1 - VAL_OF_TRAIN, VAL_OF_TRAIN), seed)
        parts = {d: {**fit[d], "test": np.flatnonzero(test_labels == d)} for d in DIGITS}
        fractions = [1 - VAL_OF_TRAIN, VAL_OF_TRAIN]
    return {"protocol": files.protocol, "seed": seed, "fractions": fractions, "indices": parts}


def one_class_dataset(files: MnistFiles, splits: dict, digit: int) -> Dataset:
    """Normal = `digit`; test anomalies = as many random other-digit test images (seeded by split seed, digit)."""
    if digit not in DIGITS:
        raise KDError(f"digit must be 0-9, got {digit!r}")
    fit_images = files.train[0] if files.train is not None else files.test[0]
    test_images = files.test[0]
    parts = splits["indices"][digit]
    anomalies = _anomaly_indices(splits, digit)
    return Dataset(
        source=str(files.folder), kind="mnist",
        train=to_features(fit_images[parts["train"]]), val=to_features(fit_images[parts["val"]]),
        test=to_features(test_images[parts["test"]]), signals={ANOMALY_SIGNAL: to_features(test_images[anomalies])},
        feature_names=[f"px{r}_{c}" for r in range(IMAGE_SIDE) for c in range(IMAGE_SIDE)],
        extra={"normal_digit": digit, "protocol": splits["protocol"], "split_seed": splits["seed"],
               "anomaly_indices": anomalies})


def _anomaly_indices(splits: dict, digit: int) -> np.ndarray:
    pool = np.concatenate([splits["indices"][d]["test"] for d in DIGITS if d != digit])
    count = min(len(splits["indices"][digit]["test"]), len(pool))
    rng = np.random.default_rng([splits["seed"], digit])
    return np.sort(rng.choice(pool, size=count, replace=False))


def split_summary(splits: dict) -> dict:
    """Counts per digit and part, plus the protocol and seed (for results.json)."""
    counts = {str(d): {name: int(len(idx)) for name, idx in parts.items()}
              for d, parts in splits["indices"].items()}
    return {"protocol": splits["protocol"], "seed": splits["seed"], "fractions": splits["fractions"],
            "counts": counts}


# ---------------------------------------------------------------- outlier exposure images

def synthetic_outliers(count: int, seed: int = 0) -> np.ndarray:
    """Seeded structured non-digit images (N, 784) in [0, 1]: strokes, boxes, rings, blobs, gratings, speckle."""
    rng = np.random.default_rng(seed)
    painters = (_strokes, _box, _ring, _blobs, _grating, _speckle)
    images = np.stack([painters[i % len(painters)](rng) for i in range(count)]) if count else \
        np.zeros((0, IMAGE_SIDE, IMAGE_SIDE))
    return images.reshape(count, -1).astype(np.float32)


def _grid():
    return np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64)


def _soft(distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside `width`, fading to 0 over one pixel: anti-aliased pen strokes."""
    return np.clip(width + 1.0 - distance, 0.0, 1.0)


def _segment_distance(p0, p1) -> np.ndarray:
    rows, cols = _grid()
    d = np.subtract(p1, p0)
    t = np.clip(((rows - p0[0]) * d[0] + (cols - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(rows - p0[0] - t * d[0], cols - p0[1] - t * d[1])


def _strokes(rng) -> np.ndarray:
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    for _ in range(rng.integers(2, 5)):
        p0, p1 = rng.uniform(0, IMAGE_SIDE - 1, 2), rng.uniform(0, IMAGE_SIDE - 1, 2)
        image = np.maximum(image, _soft(_segment_distance(p0, p1), rng.uniform(0.5, 2.0)))
    return image


def _box(rng) -> np.ndarray:
    rows, cols = _grid()
    r0, c0 = rng.uniform(2, 12, 2)
    r1, c1 = r0 + rng.uniform(6, 14), c0 + rng.uniform(6, 14)
    inside = np.maximum(np.maximum(r0 - rows, rows - r1), np.maximum(c0 - cols, cols - c1))
    filled = rng.random() < 0.3
    return _soft(np.maximum(inside, 0.0) if filled else np.abs(inside), rng.uniform(0.5, 1.5))


def _ring(rng) -> np.ndarray:
    rows, cols = _grid()
    centre, radii = rng.uniform(8, 20, 2), rng.uniform(3, 11, 2)
    radius = np.hypot((rows - centre[0]) / radii[0], (cols - centre[1]) / radii[1])
    return _soft(np.abs(radius - 1.0) * radii.min(), rng.uniform(0.5, 1.5))


def _blobs(rng) -> np.ndarray:
    rows, cols = _grid()
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    for _ in range(rng.integers(1, 5)):
        centre, sigma = rng.uniform(3, 25, 2), rng.uniform(1.5, 5.0)
        image += np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.clip(image, 0.0, 1.0)


def _grating(rng) -> np.ndarray:
    rows, cols = _grid()
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (rows * np.cos(angle) + cols * np.sin(angle)) / period)
    window = _soft(np.hypot(rows - 13.5, cols - 13.5), rng.uniform(5, 13))
    return wave * window


def _speckle(rng) -> np.ndarray:
    image = (rng.random((IMAGE_SIDE, IMAGE_SIDE)) < rng.uniform(0.03, 0.15)).astype(np.float64)
    return image * rng.uniform(0.5, 1.0, (IMAGE_SIDE, IMAGE_SIDE))


def read_outlier_images(path) -> np.ndarray:
    """User outlier images: an idx file of 28x28 images (uint8 0-255) or a .npy of (N, 784)/(N, 28, 28) in [0, 1]."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise KDError(f"outlier file {path} does not exist")
        try:
            array = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise KDError(f"{path} is not a numeric .npy array: {exc}") from None
        if array.ndim not in (2, 3) or array[0].size != N_FEATURES:
            raise KDError(f"{path}: outlier images must be (N, 784) or (N, 28, 28), found {array.shape}")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise KDError(f"{path}: outlier pixel values must be finite and in [0, 1]")
        return array.reshape(len(array), -1)
    images = read_idx(path, ndim=3)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise KDError(f"{path}: outlier images must be {IMAGE_SIDE}x{IMAGE_SIDE}, found {images.shape[1:]}")
    return to_features(images)
