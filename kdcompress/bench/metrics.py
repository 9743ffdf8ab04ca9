"""Detection metrics on anomaly scores (higher = more anomalous): AUROC, TPR at fixed FPR, trigger rates.

Conventions used everywhere in this module:
- an event *passes* a threshold t when its score is strictly greater than t;
- ties between a background and a signal score count one half (Mann-Whitney U);
- scores must be finite or +-inf, never NaN, and no sample may be empty (else KDError).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..errors import KDError


def _as_scores(values, what: str) -> np.ndarray:
    """Return `values` as a flat float64 array, refusing empty input and NaN."""
    scores = np.asarray(values, dtype=np.float64).ravel()
    if scores.size == 0:
        raise KDError(f"{what} is empty: need at least one score")
    if np.isnan(scores).any():
        raise KDError(f"{what} contains NaN ({int(np.isnan(scores).sum())} of {scores.size} scores)")
    return scores


def _check_fraction(value: float, what: str) -> float:
    """Return `value` as float if 0 <= value < 1, else raise KDError."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise KDError(f"{what} must be in [0, 1), got {value}")
    return value


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank_per_group = (starts + 1 + ends) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank_per_group, ends - starts)
    return ranks


def auroc(background_scores, signal_scores) -> float:
    """Area under the ROC curve: P(signal > background) + P(tie) / 2, from ranks in O(n log n)."""
    background = _as_scores(background_scores, "background scores")
    signal = _as_scores(signal_scores, "signal scores")
    ranks = _average_ranks(np.concatenate([background, signal]))
    signal_rank_sum = ranks[background.size:].sum()
    mann_whitney_u = signal_rank_sum - signal.size * (signal.size + 1) / 2.0
    return float(mann_whitney_u / (background.size * signal.size))


def threshold_at_fpr(background_scores, fpr: float) -> float:
    """Smallest threshold t with fraction(background > t) <= fpr.

    With n background events at most floor(fpr * n) may pass; when n < 1/fpr none may, so the
    threshold is the maximum background score (the sample limits the reachable FPR: report n beside it).
    """
    background = np.sort(_as_scores(background_scores, "background scores"))
    fpr = _check_fraction(fpr, "fpr")
    allowed_to_pass = int(math.floor(fpr * background.size + 1e-9))
    return float(background[background.size - 1 - allowed_to_pass])


def efficiency_at_threshold(scores, threshold: float) -> float:
    """Fraction of `scores` strictly above `threshold`."""
    return float(np.mean(_as_scores(scores, "scores") > threshold))


def tpr_at_fpr(background_scores, signal_scores, fpr: float) -> float:
    """Fraction of signal above threshold_at_fpr(background, fpr) (the maximum background score
    when the background has fewer than 1/fpr events)."""
    threshold = threshold_at_fpr(background_scores, fpr)
    return efficiency_at_threshold(_as_scores(signal_scores, "signal scores"), threshold)


def threshold_for_rate(background_scores, rate_khz: float, bunch_crossing_mhz: float = 28.61) -> float:
    """Trigger threshold letting background through at `rate_khz` out of `bunch_crossing_mhz` collisions."""
    if rate_khz < 0 or bunch_crossing_mhz <= 0:
        raise KDError(f"rate must be >= 0 kHz and crossing rate > 0 MHz, got {rate_khz} kHz, {bunch_crossing_mhz} MHz")
    pass_fraction = rate_khz * 1e3 / (bunch_crossing_mhz * 1e6)
    if pass_fraction >= 1:
        raise KDError(f"a rate of {rate_khz} kHz is not below the crossing rate of {bunch_crossing_mhz} MHz")
    return threshold_at_fpr(background_scores, pass_fraction)


def _full_roc(background: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1), fpr non-decreasing."""
    scores = np.concatenate([background, signal])
    is_signal = np.r_[np.zeros(background.size), np.ones(signal.size)]
    order = np.argsort(-scores, kind="mergesort")
    descending = scores[order]
    last_of_each_value = np.r_[np.flatnonzero(descending[1:] != descending[:-1]), scores.size - 1]
    signal_passing = np.cumsum(is_signal[order])[last_of_each_value]
    background_passing = last_of_each_value + 1 - signal_passing
    return np.r_[0.0, background_passing / background.size], np.r_[0.0, signal_passing / signal.size]


def roc_curve(background_scores, signal_scores, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) thinned to at most `max_points` on a log-spaced fpr grid from 1/n_background.

    Each grid point keeps the best tpr reachable at that fpr, so the low-fpr end is exact; the
    (0, 0) start, the best point at fpr = 0 and the (1, 1) end are always kept (mask fpr = 0 on log axes).
    """
    background = _as_scores(background_scores, "background scores")
    signal = _as_scores(signal_scores, "signal scores")
    if max_points < 10:
        raise KDError(f"max_points must be at least 10, got {max_points}")
    fpr, tpr = _full_roc(background, signal)
    if fpr.size <= max_points:
        return fpr, tpr
    grid = np.logspace(np.log10(1.0 / background.size), 0.0, max_points - 3)
    at_grid = np.searchsorted(fpr, grid, side="right") - 1
    best_at_zero = np.searchsorted(fpr, 0.0, side="right") - 1
    keep = np.unique(np.r_[0, best_at_zero, at_grid, fpr.size - 1])
    return fpr[keep], tpr[keep]


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either input is constant."""
    first = _as_scores(a, "first scores")
    second = _as_scores(b, "second scores")
    if first.size != second.size:
        raise KDError(f"rank correlation needs equal lengths, got {first.size} and {second.size}")
    first_dev = _average_ranks(first) - (first.size + 1) / 2.0
    second_dev = _average_ranks(second) - (second.size + 1) / 2.0
    denominator = math.sqrt(float(np.dot(first_dev, first_dev)) * float(np.dot(second_dev, second_dev)))
    if denominator == 0.0:
        return float("nan")
    return float(np.dot(first_dev, second_dev) / denominator)


def top_fraction_auroc(teacher_scores, student_scores, q: float) -> float:
    """AUROC of the student at separating the teacher's top-q fraction of events (same pass
    convention as threshold_at_fpr) from the rest: label-free fidelity of student to teacher."""
    teacher = _as_scores(teacher_scores, "teacher scores")
    student = _as_scores(student_scores, "student scores")
    if teacher.size != student.size:
        raise KDError(f"teacher and student scores differ in length: {teacher.size} vs {student.size}")
    if not 0.0 < q < 1.0:
        raise KDError(f"q must be in (0, 1), got {q}")
    in_top = teacher > threshold_at_fpr(teacher, q)
    if not in_top.any():
        raise KDError(f"no event is in the teacher's top {q} of {teacher.size} events: raise q or add events")
    return auroc(student[~in_top], student[in_top])


def fpr_key(fpr: float) -> str:
    """Report key for a TPR at `fpr`, e.g. 1e-5 -> 'tpr_at_fpr_1e-5', 2.5e-4 -> 'tpr_at_fpr_2.5e-4'."""
    mantissa, exponent = f"{float(fpr):e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"tpr_at_fpr_{mantissa}e{int(exponent)}"


def summarise(background_scores, signals: Mapping[str, object],
              fprs: Sequence[float] = (1e-5, 1e-4)) -> dict[str, dict[str, float]]:
    """Per signal name: {'auroc': ..., fpr_key(f): tpr_at_fpr(...) for f in fprs}."""
    background = _as_scores(background_scores, "background scores")
    summary = {}
    for name, scores in signals.items():
        signal = _as_scores(scores, f"signal '{name}' scores")
        row = {"auroc": auroc(background, signal)}
        row.update({fpr_key(f): tpr_at_fpr(background, signal, f) for f in fprs})
        summary[name] = row
    return summary
