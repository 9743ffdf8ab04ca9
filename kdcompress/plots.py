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
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
