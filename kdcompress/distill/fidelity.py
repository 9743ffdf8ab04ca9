"""Label-free fidelity of a student to its teacher, on held-out teacher-labelled points.

The probe set is the background validation split plus broad queries drawn from it (every strategy, with
a fixed seed independent of training), so it covers both the normal manifold and the space around it.
Spearman is reported on the whole probe set and on its normal events alone: the broad queries spread the
scores so widely that the whole-set figure stays high even when the student ranks the normal events poorly,
and that ranking is what decides near-manifold anomalies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..bench.metrics import spearman, top_fraction_auroc
from .queries import make_queries, plus_physics

PROBE_STRATEGIES = {"noise": 0.5, "mixup": 0.25, "box": 0.125, "marginals": 0.125}
PROBE_PHYSICS = 0.25  # fraction of `objects` and of `harder` probes where the layout has object groups
PROBE_SURFACE = {"pixel-noise": 0.25, "patches": 0.5}  # added for image folders of inspected surfaces
PROBE_SEED = 20231  # fixed: the probe set must not depend on the training seed
MAX_PROBE_BASE = 20_000
MIN_PROBE_QUERIES = 10_000  # so that the top 0.1% holds at least 10 points even for small data sets


@dataclass
class Probe:
    points: np.ndarray  # the normal events first, then the queries
    n_normal: int


def probe_set(val: np.ndarray, layout: Optional[dict], surface_shape: Optional[tuple] = None) -> Probe:
    """Held-out points for fidelity: validation events and as many broad queries around them; for images of
    inspected surfaces (`surface_shape` (height, width[, channels]): MVTec-layout folders) also pixel noise and local
    patches, where their defects lie."""
    rng = np.random.default_rng(PROBE_SEED)
    base = val[rng.permutation(len(val))[:MAX_PROBE_BASE]]
    factor = max(1.0, MIN_PROBE_QUERIES / max(1, len(base)))
    mix = plus_physics(PROBE_STRATEGIES, PROBE_PHYSICS, layout)
    if surface_shape:
        mix.update(PROBE_SURFACE)
    strategies = {name: fraction * factor for name, fraction in mix.items()}
    return Probe(np.concatenate([base, make_queries(base, strategies, rng, layout, image_shape=surface_shape)]),
                 len(base))


def data_probe(data) -> Probe:
    """The probe set for a Dataset: surface probes for MVTec-layout image folders (kind 'images')."""
    return probe_set(data.val, data.layout, data.pixel_shape if data.kind == "images" else None)


def fidelity(teacher_scores: np.ndarray, student_scores: np.ndarray, n_normal: Optional[int] = None) -> dict:
    """Spearman rank correlation and top-q agreement (AUROC of the student at finding the teacher's top q);
    with `n_normal`, also Spearman on the first `n_normal` points (the normal events) alone."""
    out = {"spearman": _finite(spearman(teacher_scores, student_scores)),
           "top_1pct_auroc": _finite(top_fraction_auroc(teacher_scores, student_scores, 0.01)),
           "top_0.1pct_auroc": _finite(top_fraction_auroc(teacher_scores, student_scores, 0.001))}
    if n_normal:
        out["spearman_normal"] = _finite(spearman(teacher_scores[:n_normal], student_scores[:n_normal]))
    return out


def fidelity_of(teacher_score: Callable, student_score: Callable, probe: Probe) -> dict:
    return fidelity(teacher_score(probe.points), student_score(probe.points), probe.n_normal)


RANK_KEYS = ("spearman", "spearman_normal", "top_1pct_auroc", "top_0.1pct_auroc")


def fidelity_rank(f: dict) -> float:
    """One number to choose by: mean of the figures present (each 1.0 for a perfect copy)."""
    return float(np.mean([f[k] for k in RANK_KEYS if k in f]))


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


MEMORISATION_RATIO = 1.25  # held-out / training median score above this: the teacher memorised its events
MAX_MEMORISATION_EVENTS = 20_000


def teacher_memorisation(teacher_score: Callable, train: np.ndarray, val: np.ndarray) -> dict:
    """Label-free check: the teacher's median score on the training split against the held-out split.

    A teacher trained on `train` that scores those events clearly lower than unseen ones has memorised them;
    the student is trained on those low scores. (Students of such teachers on the breast and wine tables
    still matched them on held-out rows: the flag says to judge on held-out data, it is not a verdict.)
    (Only meaningful when the teacher was trained on this training split, as `train-teacher` does.)"""
    medians = [float(np.median(teacher_score(x[:MAX_MEMORISATION_EVENTS]))) for x in (train, val)]
    ratio = medians[1] / medians[0] if medians[0] > 0 and np.isfinite(medians[1]) else None
    return {"median_train": medians[0], "median_val": medians[1], "ratio": ratio,
            "memorised": ratio is not None and ratio > MEMORISATION_RATIO}
