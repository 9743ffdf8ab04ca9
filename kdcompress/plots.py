"""Matplotlib plots written atomically as PNG (headless backend)."""
from __future__ import annotations

from typing import Dict, Sequence

from .fileio import atomic_file


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def loss_curve(path, curves: Dict[str, Sequence[float]], title: str, ylabel: str = "loss") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    _save(fig, path, plt)


def fidelity_scatter(path, teacher: Sequence[float], student: Sequence[float], n_normal: int, title: str) -> None:
    """Student against teacher on the probe points, in target units: the normal events over the queries."""
    import numpy as np
    plt = _pyplot()
    teacher, student = np.asarray(teacher, dtype=float), np.asarray(student, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(teacher[n_normal:], student[n_normal:], s=2, alpha=0.3, color="grey", label="queries",
               rasterized=True)
    ax.scatter(teacher[:n_normal], student[:n_normal], s=2, alpha=0.4, color="tab:blue",
               label="normal (validation) events", rasterized=True)
    both = np.concatenate([teacher, student])
    low, high = np.nanmin(both), np.nanmax(both)
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="student = teacher")
    ax.set_xlabel("teacher (target units)")
    ax.set_ylabel("student")
    ax.set_title(title)
    ax.legend(loc="upper left", markerscale=4)
    _save(fig, path, plt)


def selection_map(path, trials: Sequence[dict], budget_macs=None) -> None:
    """`--auto`: each trial's label-free fidelity rank against its non-zero MACs; the one flagged `chosen`
    starred."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    strategies = sorted({t["queries"] for t in trials})
    colours = {q: plt.get_cmap("tab10")(i % 10) for i, q in enumerate(strategies)}
    markers = {"mlp": "o", "energy": "s"}
    for t in trials:
        ax.scatter(t["macs"], t["rank"], color=colours[t["queries"]], marker=markers.get(t["head"], "^"),
                   edgecolors="black" if t.get("sparsity") else "none", s=40)
    pick = [t for t in trials if t.get("chosen")]
    if pick:
        ax.scatter(pick[0]["macs"], pick[0]["rank"], marker="*", s=300, facecolors="none", edgecolors="red",
                   label="chosen")
    if budget_macs:
        ax.axvline(budget_macs, color="red", linestyle="--", linewidth=1, label="MAC budget")
    for q in strategies:
        ax.scatter([], [], color=colours[q], label=f"queries {q}")
    for head, marker in markers.items():
        ax.scatter([], [], color="grey", marker=marker, label=f"head {head}")
    ax.set_xscale("log")
    ax.set_xlabel("non-zero MACs (black edge: pruned)")
    ax.set_ylabel("fidelity rank (label-free)")
    ax.set_title("distill --auto: settings tried")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path, plt)


def gap_bars(path, gaps: Dict[str, Dict[str, float]], labels: Dict[str, str], band: float, title: str) -> None:
    """Grouped bars of student minus teacher AUROC: `gaps[group][student]`, one group per data set (x label
    `labels[group]`), each bar labelled with its value ("n/a" when missing), the target band +-`band` shaded.
    The axis is linear within +-0.05 and logarithmic beyond, so a miss of 0.03 stays visible beside one of 0.6."""
    import numpy as np
    plt = _pyplot()
    groups = list(gaps)
    students = list(dict.fromkeys(k for g in groups for k in gaps[g]))
    width = 0.8 / max(1, len(students))
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 3.5, 4.5))
    ax.axhspan(-band, band, color="tab:green", alpha=0.15, label=f"target: within {band}")
    ax.axhline(0, color="black", linewidth=0.8)
    for i, student in enumerate(students):
        values = np.array([gaps[g].get(student, np.nan) for g in groups], dtype=float)
        bars = ax.bar(np.arange(len(groups)) + (i - (len(students) - 1) / 2) * width, np.nan_to_num(values),
                      width, label=student)
        ax.bar_label(bars, ["n/a" if np.isnan(v) else f"{v:+.3f}" for v in values], fontsize=7, padding=2)
    ax.set_yscale("symlog", linthresh=0.05)
    low, high = ax.get_ylim()
    ticks = [t for t in (-0.5, -0.2, -0.1, -0.05, -band, 0, band, 0.05, 0.1, 0.2, 0.5) if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:+g}" if t else "0" for t in ticks])
    ax.minorticks_off()
    ax.set_xticks(np.arange(len(groups)), [labels.get(g, g) for g in groups])
    ax.set_ylabel("student - teacher AUROC")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path, plt)


def stage_panels(path, panels: Dict[str, Dict[str, tuple]], title: str) -> None:
    """Side-by-side panels of curves `panels[panel][label] = (epochs, values)`, log y axis; stages that follow
    each other share a label and continue along the epoch axis."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, (epochs, values) in curves.items():
            ax.plot(epochs, values, label=label, marker="o" if len(values) < 3 else None)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path, plt)


def grouped_bars(path, values: Dict[str, Dict[str, float]], xlabel: str, ylabel: str, title: str) -> None:
    """`values[series][group]` as grouped bars, one group per x position, with the series' means in the legend."""
    import numpy as np
    plt = _pyplot()
    series = list(values)
    groups = list(dict.fromkeys(g for s in series for g in values[s]))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(0.9 * len(groups) * max(1, len(series)) / 3 + 4.5, 4.5))
    for i, name in enumerate(series):
        heights = np.array([values[name].get(g, np.nan) for g in groups], dtype=float)
        mean = np.nanmean(heights) if np.isfinite(heights).any() else np.nan
        ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width, np.nan_to_num(heights), width,
               label=f"{name} (mean {mean:.3f})")
    finite = [v for s in series for v in values[s].values() if np.isfinite(v)]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.02) if max(finite) <= 1 else None)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path, plt)


def map_panels(path, rows: Sequence[tuple], title: str) -> None:
    """One row per example `(label, image, mask, anomaly map)`: the image (grey (H, W) or RGB (H, W, 3)), the image
    with the mask's outline, and the map on one colour scale shared by all rows."""
    import numpy as np
    plt = _pyplot()
    top = max(float(np.max(m)) for *_, m in rows)
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.0, 1.9 * len(rows) + 0.6), squeeze=False,
                             layout="constrained")
    for ax, (label, image, mask, anomaly_map) in zip(axes, rows):
        pixels = np.clip(image, 0, 1)
        ax[0].imshow(pixels, cmap="gray", vmin=0, vmax=1)
        ax[0].set_ylabel(label, fontsize=8)
        ax[1].imshow(pixels, cmap="gray", vmin=0, vmax=1)
        if mask.any():
            ax[1].contour(mask.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        shown = ax[2].imshow(anomaly_map, cmap="inferno", vmin=0, vmax=top)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    for a, name in zip(axes[0], ("image", "defect mask", "anomaly map")):
        a.set_title(name, fontsize=9)
    fig.colorbar(shown, ax=axes[:, 2].tolist(), shrink=0.6, label="anomaly map")
    fig.suptitle(title, fontsize=10)
    _save(fig, path, plt, tight=False)


def _save(fig, path, plt, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
