"""Datasets: ADC2021-format and calorimeter folders, MVTec-layout image folders, tabular files (.npz / .csv)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import KDError
from ..fileio import fingerprint_arrays


@dataclass
class Dataset:
    """Normal-only train/val/test splits plus one array per anomaly class (raw features)."""
    source: str
    kind: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    signals: Dict[str, np.ndarray]
    feature_names: List[str]
    layout: Optional[dict] = None
    extra: dict = field(default_factory=dict)
    image_shape: Optional[Tuple[int, int]] = None  # (height, width) when each row is a flattened image
    channels: int = 1  # colour channels per pixel; rows are flattened (height, width, channels), channels last

    @property
    def n_features(self) -> int:
        return self.train.shape[1]

    @property
    def pixel_shape(self) -> Optional[Tuple[int, int, int]]:
        """(height, width, channels) of image rows, None for other data."""
        return (*self.image_shape, self.channels) if self.image_shape else None

    def fingerprint(self) -> str:
        arrays = [self.train, self.val, self.test] + [self.signals[k] for k in sorted(self.signals)]
        return fingerprint_arrays(*arrays)

    def describe(self) -> str:
        sig = ", ".join(f"{k} {len(v)}" for k, v in self.signals.items()) or "none"
        colour = f"x{self.channels}" if self.channels > 1 else ""
        shape = f" ({self.image_shape[0]}x{self.image_shape[1]}{colour} images)" if self.image_shape else ""
        return (f"{self.kind} data from {self.source}: {self.n_features} features{shape}; background "
                f"train {len(self.train)}, val {len(self.val)}, test {len(self.test)}; signals: {sig}")


def load_dataset(path: str, seed: int = 0, n_features: Optional[int] = None) -> Dataset:
    """An ADC2021-format, calorimeter or MVTec-layout image folder, or a tabular .npz/.csv file (normal rows split
    by `seed`). `n_features`, a model's input width: an image folder is read in grey or colour to match it
    (a model trained on a colour folder read as grey, or the other way round)."""
    p = Path(path)
    if not p.exists():
        raise KDError(f"data path {p} does not exist")
    if p.is_dir():
        from . import calo, images
        if images.is_image_folder(p):  # MVTec layout: train/good, test/good, test/<defect>
            return _image_folder_for(p, seed, n_features)
        if calo.is_calo_folder(p):  # CICADA calorimeter regions (zero_bias_train.h5, ...)
            return calo.load_folder(p)
        return _load_adc2021_folder(p)
    if p.suffix.lower() in (".npz", ".csv"):
        from .tabular import load_tabular
        return load_tabular(p, seed=seed)
    raise KDError(f"data path {p} is neither an ADC2021 folder nor a .npz/.csv file")


def _image_folder_for(path: Path, seed: int, n_features: Optional[int]) -> Dataset:
    from .images import colour_for_width, load_image_folder
    color = None if n_features is None else colour_for_width(path, n_features)
    return load_image_folder(path, seed=seed, color=color)


def check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        rows = int(bad.reshape(len(x), -1).any(axis=1).sum())
        raise KDError(f"{what} holds NaN or inf values in {rows} rows")


def _is_mnist_folder(folder: Path) -> bool:
    from .mnist import find_idx_file
    return any(find_idx_file(folder, part, "images") is not None for part in ("test", "train"))


def _load_adc2021_folder(folder: Path) -> Dataset:
    from . import adc2021
    missing = [n for n in adc2021.BACKGROUND_FILES.values() if not (folder / n).is_file()]
    if missing and _is_mnist_folder(folder):
        raise KDError(f"{folder} holds MNIST idx files, which say nothing of what is normal: pass an .npz with X "
                      f"(images) and y (1 = anomaly), or run a recipe (kd4ad-mnist, urd-mnist, dskd-mnist)")
    if missing:
        raise KDError(f"{folder} is not an ADC2021 data folder: missing {', '.join(missing)}")
    parts = {k: adc2021.to_features(adc2021.read_particles(folder / n))
             for k, n in adc2021.BACKGROUND_FILES.items()}
    background = set(adc2021.BACKGROUND_FILES.values())
    signal_files = sorted(f for f in folder.glob("*.h5") if f.name not in background)
    signals = {f.stem: adc2021.to_features(adc2021.read_particles(f)) for f in signal_files}
    return Dataset(source=str(folder), kind="adc2021", train=parts["train"], val=parts["val"],
                   test=parts["test"], signals=signals, feature_names=adc2021.feature_names(),
                   layout=dict(adc2021.LAYOUT))
