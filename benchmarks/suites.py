"""Suite definitions: data size, teacher and distillation settings, and the pass criterion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    events: int  # background events (split 50/25/25 into train/val/test); signals get events // 10 each
    teacher_hidden: Tuple[int, ...] = (512, 256, 128)
    teacher_latent: int = 8
    teacher_epochs: int = 40
    student_hidden: Tuple[int, ...] = (32, 16)
    distill_epochs: int = 100
    rate_khz: float = 1.0
    bx_mhz: float = 28.61
    baseline_epochs: Optional[int] = None  # None: the benchmark's default (40, early stopping)
    quick: bool = False  # short latency measurements
    max_auroc_drop: float = 0.05  # the student may lose at most this much AUROC against the teacher, per signal


SUITES = {
    "ci": Suite(
        name="ci",
        description="CI size: 60k background events, teacher trained for 15 epochs; about 3-4 minutes on 2 cores",
        events=60_000,
        teacher_epochs=15,
    ),
    "full": Suite(
        name="full",
        description="demo size: 200k background events, default teacher (40 epochs) and distillation (100 epochs)",
        events=200_000,
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite '{name}' (known: {', '.join(SUITES)})")
    return SUITES[name]
