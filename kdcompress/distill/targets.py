"""Monotone transforms of the teacher score that the student regresses."""
from __future__ import annotations

import numpy as np

from ..registry import Registry

TARGETS = Registry("score transform")


@TARGETS.register("log1p")
def log1p(score: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(score, 0.0))


@TARGETS.register("cicada")
def cicada(score: np.ndarray) -> np.ndarray:
    """CICADA: clip(32 * ln(score), 0, 256)."""
    return np.clip(32.0 * np.log(np.maximum(score, 1e-30)), 0.0, 256.0)


@TARGETS.register("identity")
def identity(score: np.ndarray) -> np.ndarray:
    return np.asarray(score, dtype=np.float64)
