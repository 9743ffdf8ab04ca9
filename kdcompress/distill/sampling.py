"""Sample weights and tail oversampling so the student learns the rare high-score region."""
from __future__ import annotations

import numpy as np


def inverse_density_weights(target: np.ndarray, cap: float = 10.0, bins: int = 50) -> np.ndarray:
    """Weight each event by 1/density of its target value (histogram), capped at `cap` x the median, mean 1."""
    hist, edges = np.histogram(target, bins=bins)
    idx = np.clip(np.digitize(target, edges[1:-1]), 0, bins - 1)
    w = 1.0 / hist[idx].astype(np.float64)
    w = np.minimum(w, cap * np.median(w))
    return w / w.mean()


def tail_indices(target: np.ndarray, quantile: float, factor: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of all events plus (factor - 1) extra copies of those above the `quantile` of the target."""
    base = np.arange(len(target))
    if factor <= 1 or quantile >= 1.0:
        return base
    tail = base[target > np.quantile(target, quantile)]
    extra = np.repeat(tail, factor - 1)
    return rng.permutation(np.concatenate([base, extra]))
