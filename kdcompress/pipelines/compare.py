"""The seed method (score regression, Pol et al.) as the comparison student of the image recipes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import KDError


def check_compare(variant: Optional[str], epochs: int) -> None:
    from ..students.paper_cnn import VARIANTS
    if variant is not None and variant not in VARIANTS:
        raise KDError(f"compare_student must be one of {', '.join(VARIANTS)} or null, got {variant!r}")
    if epochs < 1:
        raise KDError(f"compare_epochs must be at least 1, got {epochs}")


def compare_config(out: Path, variant: str, epochs: int, seed: int):
    """kd4ad-mnist's score regression (L1 on log1p, noise and outlier exposure) with paper CNN `variant`."""
    from dataclasses import replace
    from .kd4ad import _distill_config, _outlier_file
    config = _distill_config(("noise", "outliers"), 1.0, _outlier_file(out, None, 2000, seed), epochs, None, 8,
                             "avg", "none", None, seed)
    config = replace(config, student_kwargs={**config.student_kwargs, "variant": variant})
    config.validate()
    return config


def score_regression(checkpoint, data, folder: Path, config, quiet: bool) -> dict:
    """Distil the teacher checkpoint's score into a QKeras student in `folder`; its AUROC, rank agreement, size."""
    from ..bench.metrics import auroc, spearman
    from ..data.mnist import ANOMALY_SIGNAL
    from ..distill import distill
    from ..students import load_student
    from ..teachers import load_teacher
    from .kd4ad import _torch_threads
    teacher = load_teacher(checkpoint)
    with _torch_threads(1):
        result = distill(teacher, data, folder, config, quiet=quiet)
    student = load_student(folder)
    test, anomalies = data.test, data.signals[ANOMALY_SIGNAL]
    scores = np.concatenate([student.score(test), student.score(anomalies)])
    reference = np.concatenate([teacher.score(test), teacher.score(anomalies)])
    return {"auroc": auroc(scores[:len(test)], scores[len(test):]), "spearman": spearman(reference, scores),
            "params": result["params"]["student"], "macs": result["macs"]["student"]}
