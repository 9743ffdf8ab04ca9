"""Teacher beside student on the background test split and every signal: AUROC, TPR@FPR, size."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .bench import metrics, size
from .data import Dataset


def score_sets(score: Callable[[np.ndarray], np.ndarray], data: Dataset) -> Dict[str, np.ndarray]:
    """Scores of the background test split ('background') and of each signal."""
    out = {"background": score(data.test)}
    out.update({name: score(x) for name, x in data.signals.items()})
    return out


def summarise_scores(scores: Dict[str, np.ndarray]) -> dict:
    signals = {k: v for k, v in scores.items() if k != "background"}
    return metrics.summarise(scores["background"], signals) if signals else {}


def tracking_record(teacher_scores: Dict[str, np.ndarray], student_scores: Dict[str, np.ndarray],
                    meta: dict) -> Optional[dict]:
    """Student minus teacher at equal teacher score per signal (bench.tracking); None without signals.

    `student_scores` come from Student.score, already in the target space."""
    from .bench import tracking  # imports distill.targets, and distill imports this module
    return tracking.record(teacher_scores, student_scores, {**meta, "output_transform": "none"})


def teacher_size(teacher) -> dict:
    example = torch.zeros(1, teacher.n_features)
    return {"params": size.torch_param_count(teacher.module),
            "macs": size.torch_macs(teacher.module, example)}


def student_size(model) -> dict:
    return {"params": size.keras_param_count(model), "macs": size.keras_macs(model),
            "bops": size.keras_bops(model)}


def comparison_table(result: dict) -> str:
    """Plain-text table: AUROC and TPR@1e-5 of teacher and student per signal, then size."""
    t, s = result["teacher"], result["student"]
    lines = [f"{'signal':<14}{'AUROC teacher':>15}{'AUROC student':>15}{'diff':>8}"
             f"{'TPR@1e-5 T':>12}{'TPR@1e-5 S':>12}"]
    for name in t:
        a, b = t[name]["auroc"], s[name]["auroc"]
        lines.append(f"{name:<14}{a:>15.4f}{b:>15.4f}{b - a:>+8.4f}"
                     f"{t[name]['tpr_at_fpr_1e-5']:>12.4f}{s[name]['tpr_at_fpr_1e-5']:>12.4f}")
    macs, params = result["macs"], result["params"]
    lines.append(f"MACs: teacher {macs['teacher']:,}  student {macs['student']:,}  "
                 f"({macs['teacher'] / max(1, macs['student']):.0f}x fewer); params: teacher "
                 f"{params['teacher']:,}  student {params['student']:,}")
    if result.get("tracking"):
        lines += _tracking_lines(result["tracking"])
    return "\n".join(lines)


def _tracking_lines(record: dict) -> List[str]:
    """Per signal: share of events within / above the background's teacher-score range and the bias there."""
    lines = ["student minus teacher at equal teacher score, target units (negative within range costs AUROC):",
             f"{'signal':<14}{'within':>8}{'bias':>9}{'above':>8}{'bias':>9}"]
    for name, entry in record["signals"].items():
        cells = [f"{part['fraction']:>8.1%}" + (f"{part['bias']:>+9.3f}" if part["bias"] is not None else f"{'-':>9}")
                 for part in (entry["within"], entry["above"])]
        lines.append(f"{name:<14}" + "".join(cells))
    return lines
