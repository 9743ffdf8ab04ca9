"""Recorded, invertible input transform: x' = (x - offset) * 2**shift per feature.

Power-of-two scales are bit shifts in firmware; physics data keeps offset 0 so zero padding stays zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np


@dataclass
class Preprocessing:
    shift: List[int]
    offset: List[float] = field(default_factory=list)

    def __post_init__(self):
        if not self.offset:
            self.offset = [0.0] * len(self.shift)

    @property
    def n_features(self) -> int:
        return len(self.shift)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        scale = np.exp2(np.asarray(self.shift, dtype=np.float32))
        return ((x - np.asarray(self.offset, dtype=np.float32)) * scale).astype(np.float32)

    def invert(self, z: np.ndarray) -> np.ndarray:
        scale = np.exp2(-np.asarray(self.shift, dtype=np.float32))
        return (np.asarray(z, dtype=np.float32) * scale + np.asarray(self.offset, dtype=np.float32))

    def to_dict(self) -> dict:
        return {"kind": "shift", "shift": [int(s) for s in self.shift], "offset": [float(o) for o in self.offset]}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(shift=[int(s) for s in d["shift"]], offset=[float(o) for o in d.get("offset", [])])

    @classmethod
    def identity(cls, n_features: int) -> "Preprocessing":
        return cls(shift=[0] * n_features)


def fit_preprocessing(x: np.ndarray, centre: bool) -> Preprocessing:
    """Per feature: shift so that the spread of non-zero values is about 1; offset = median if `centre`."""
    x = np.asarray(x, dtype=np.float64)
    offsets = np.median(x, axis=0) if centre else np.zeros(x.shape[1])
    shifts = [_shift_for(x[:, j] - offsets[j], skip_zeros=not centre) for j in range(x.shape[1])]
    return Preprocessing(shift=shifts, offset=[float(o) for o in offsets])


def _shift_for(column: np.ndarray, skip_zeros: bool) -> int:
    values = column[column != 0] if skip_zeros else column
    if values.size == 0:
        return 0
    spread = float(np.std(values))
    if not np.isfinite(spread) or spread <= 0:
        return 0
    return int(-np.round(np.log2(spread)))
