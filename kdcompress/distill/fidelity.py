"""Label-free fidelity of a student to its teacher, on held-out teacher-labelled points.

The probe set is the background validation split plus broad queries drawn from it (every strategy, with
a fixed seed independent of training), so it covers both the normal manifold and the space around it.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..bench.metrics import spearman, top_fraction_auroc
from .queries import make_queries

PROBE_STRATEGIES = {"noise": 0.5, "mixup": 0.25, "box": 0.125, "marginals": 0.125}
PROBE_SEED = 20231  # fixed: the probe set must not depend on the training seed
MAX_PROBE_BASE = 20_000
MIN_PROBE_QUERIES = 10_000  # so that the top 0.1% holds at least 10 points even for small data sets


def probe_set(val: np.ndarray, layout: Optional[dict]) -> np.ndarray:
    """Held-out points for fidelity: validation events and as many broad queries around them."""
    rng = np.random.default_rng(PROBE_SEED)
    base = val[rng.permutation(len(val))[:MAX_PROBE_BASE]]
    factor = max(1.0, MIN_PROBE_QUERIES / max(1, len(base)))
    strategies = {name: fraction * factor for name, fraction in PROBE_STRATEGIES.items()}
    return np.concatenate([base, make_queries(base, strategies, rng, layout)])


def fidelity(teacher_scores: np.ndarray, student_scores: np.ndarray) -> dict:
    """Spearman rank correlation and top-q agreement (AUROC of the student at finding the teacher's top q)."""
    return {"spearman": _finite(spearman(teacher_scores, student_scores)),
            "top_1pct_auroc": _finite(top_fraction_auroc(teacher_scores, student_scores, 0.01)),
            "top_0.1pct_auroc": _finite(top_fraction_auroc(teacher_scores, student_scores, 0.001))}


def fidelity_of(teacher_score: Callable, student_score: Callable, probe: np.ndarray) -> dict:
    return fidelity(teacher_score(probe), student_score(probe))


def fidelity_rank(f: dict) -> float:
    """One number to choose by: mean of the three figures (each 1.0 for a perfect copy)."""
    return float(np.mean([f["spearman"], f["top_1pct_auroc"], f["top_0.1pct_auroc"]]))


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0
