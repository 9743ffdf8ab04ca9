"""Benchmark figures (PNG, headless matplotlib): ROC overlays per signal and score histograms per model."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics

LINE_STYLES = ("-", "--", "-.", ":")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def file_stem(text: str) -> str:
    """`text` reduced to a safe file name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def roc_overlay(path: Path, signal: str, curves: Sequence[Tuple[str, np.ndarray, np.ndarray]],
                n_background: int, marks: Dict[str, float]) -> None:
    """TPR against FPR on a log axis, one curve per (label, background scores, signal scores).

    `marks`: label -> FPR drawn as vertical dotted lines (those below 1/n_background are not resolvable
    and are left out).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (label, background, signal_scores) in enumerate(curves):
        fpr, tpr = metrics.roc_curve(background, signal_scores)
        keep = fpr > 0
        auc = metrics.auroc(background, signal_scores)
        ax.step(fpr[keep], tpr[keep], where="post", linestyle=LINE_STYLES[i // 10 % len(LINE_STYLES)],
                label=f"{label}  (AUROC {auc:.3f})")
    lowest = 1.0 / max(1, n_background)
    for label, fpr in marks.items():
        if fpr >= lowest:
            ax.axvline(fpr, color="grey", linestyle=":", linewidth=1)
            ax.annotate(label, (fpr, 0.98), rotation=90, va="top", ha="right", fontsize=7, color="grey")
    ax.plot([lowest, 1], [lowest, 1], color="lightgrey", linewidth=1, label="random")
    ax.set_xscale("log")
    ax.set_xlim(lowest, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(f"background efficiency (FPR), {n_background:,} background test events")
    ax.set_ylabel(f"signal efficiency (TPR): {signal}")
    ax.set_title(f"ROC: {signal}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _bins(values: List[np.ndarray], n_bins: int = 80) -> Tuple[np.ndarray, bool]:
    """Bin edges covering every set; log-spaced when all scores are positive and span > 2 decades."""
    joined = np.concatenate([v[np.isfinite(v)] for v in values])
    lo, hi = float(joined.min()), float(joined.max())
    if lo > 0 and hi / lo > 100:
        return np.geomspace(lo, hi, n_bins + 1), True
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1), False


def score_histogram(path: Path, title: str, xlabel: str, background: np.ndarray, signals: Dict[str, np.ndarray],
                    threshold: Optional[float], threshold_label: str) -> None:
    """Normalised score distributions of background and each signal, log counts, threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    edges, log_x = _bins([background, *signals.values()])
    ax.hist(background, bins=edges, density=True, histtype="stepfilled", alpha=0.3, color="grey",
            label=f"background test ({len(background):,})")
    for name, values in signals.items():
        ax.hist(values, bins=edges, density=True, histtype="step", linewidth=1.4, label=f"{name} ({len(values):,})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=threshold_label)
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("normalised events")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def tracking_plot(path: Path, curves: Dict[str, Tuple[np.ndarray, np.ndarray]], background_top: float,
                  xlabel: str) -> None:
    """Mean student - teacher against teacher score, one line per set (background first)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (name, (centres, means)) in enumerate(curves.items()):
        style = {"color": "grey", "linewidth": 2.0} if i == 0 else {"linewidth": 1.2}
        ax.plot(centres, means, marker="o", markersize=3, label=name, **style)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(background_top, color="grey", linestyle=":", linewidth=1,
               label="background's 99th percentile of teacher score")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean student - teacher (same units)")
    ax.set_title("Student against teacher at equal teacher score")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
