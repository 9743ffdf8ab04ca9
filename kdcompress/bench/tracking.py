"""How the student tracks its teacher per signal: student minus teacher at equal teacher score.

Both scores are put in the student's target space (the teacher's score transformed as in training). The
background's mean residual in each bin of teacher score is the reference; a signal's bias is its residual
minus that reference, averaged over its events. A negative bias within the background's range is what costs
AUROC: the student ranks those signal events below normal events the teacher scored the same. Events above
the background's 99th percentile of teacher score (where its bins thin out) are reported apart, against the
top bin's reference.
Labels are read here for evaluation only, as everywhere in the report.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..distill.targets import TARGETS

BINS = 20
TOP_QUANTILE = 0.99  # the background's range compared bin by bin ends here
MIN_BIN_EVENTS = 10  # bins of the figure with fewer events are not drawn


def to_target_space(teacher: np.ndarray, student_raw: np.ndarray, meta: dict) -> Tuple[np.ndarray, np.ndarray]:
    """(teacher, student) in the space the student was trained in."""
    scale = float(meta.get("score_scale") or 1.0)
    teacher = TARGETS.get(meta.get("score_transform") or "identity")(np.asarray(teacher, np.float64) / scale)
    student = np.asarray(student_raw, np.float64)
    if meta.get("output_transform") == "log1p":
        student = np.log1p(np.maximum(student, 0.0))
    return teacher, student


def pairs_in_target_space(teacher: Dict[str, np.ndarray], student: Dict[str, np.ndarray],
                          meta: dict) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Per set (background and each signal): (teacher, student) in target space."""
    return {name: to_target_space(teacher[name], student[name], meta) for name in teacher}


def record(teacher: Dict[str, np.ndarray], student: Dict[str, np.ndarray], meta: dict) -> Optional[dict]:
    """signal_bias of every signal against the background ('background' key); None without signals."""
    pairs = pairs_in_target_space(teacher, student, meta)
    background = pairs.pop("background")
    return signal_bias(background, pairs) if pairs else None


def signal_bias(background: Tuple[np.ndarray, np.ndarray], signals: Dict[str, Tuple[np.ndarray, np.ndarray]],
                bins: int = BINS) -> dict:
    """Per signal: share and mean bias of events within / above the background's teacher-score range
    (up to its TOP_QUANTILE).

    `background` and each signal are (teacher, student) arrays in target space."""
    t_bg, s_bg = (np.asarray(a, np.float64) for a in background)
    edges = np.unique(np.quantile(t_bg, np.linspace(0.0, TOP_QUANTILE, bins + 1)))
    reference = _bin_means(t_bg, s_bg - t_bg, edges)
    out = {"background": {"events": int(t_bg.size), "mean_abs_residual": float(np.mean(np.abs(s_bg - t_bg))),
                          "top_teacher_score": float(edges[-1])},
           "signals": {}}
    for name, (t, s) in signals.items():
        t, s = np.asarray(t, np.float64), np.asarray(s, np.float64)
        relative = (s - t) - reference[_bin_of(t, edges)]
        above = t > edges[-1]
        out["signals"][name] = {"events": int(t.size), "within": _part(relative, ~above),
                                "above": _part(relative, above)}
    return out


def binned_residuals(teacher: np.ndarray, student: np.ndarray, edges: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(bin centres, mean student - teacher) over bins with at least MIN_BIN_EVENTS events."""
    index = _bin_of(teacher, edges)
    centres, means = [], []
    for b in range(len(edges) - 1):
        inside = index == b
        if inside.sum() >= MIN_BIN_EVENTS:
            centres.append(0.5 * (edges[b] + edges[b + 1]))
            means.append(float(np.mean(student[inside] - teacher[inside])))
    return np.asarray(centres), np.asarray(means)


def _bin_of(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, t, side="right") - 1, 0, max(0, len(edges) - 2))


def _bin_means(t: np.ndarray, residual: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = _bin_of(t, edges)
    n_bins = max(1, len(edges) - 1)
    sums = np.bincount(index, weights=residual, minlength=n_bins)
    counts = np.bincount(index, minlength=n_bins)
    return sums / np.maximum(counts, 1)


def _part(relative: np.ndarray, mask: np.ndarray) -> dict:
    n = int(mask.sum())
    return {"fraction": float(n / max(1, mask.size)), "bias": float(np.mean(relative[mask])) if n else None}
