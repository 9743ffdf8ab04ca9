"""The seed method (score regression, Pol et al.) as the comparison student of the image recipes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import KDError


def check_compare(variant: Optional[str], epochs: int, side: int = 28) -> None:
    from ..students.paper_cnn import VARIANTS, min_side
    if variant is not None and variant not in VARIANTS:
        raise KDError(f"compare_student must be one of {', '.join(VARIANTS)} or null, got {variant!r}")
    if epochs < 1:
        raise KDError(f"compare_epochs must be at least 1, got {epochs}")
    if variant is not None and side < min_side(variant):
        raise KDError(f"compare_student {variant} needs images of side >= {min_side(variant)}, got {side}; "
                      f"resize them (side=) or choose another variant")


def compare_config(out: Path, variant: str, epochs: int, seed: int, side: int = 28, mnist: bool = True,
                   channels: int = 1):
    """kd4ad-mnist's score regression (L1 on log1p, noise and outlier exposure) with paper CNN `variant`.
    Other images than MNIST get pixel noise and local patches (pasted blobs) instead of the outlier shapes, which
    are drawn for digits: without patches, students of texture detectors learned nothing of local defects."""
    from dataclasses import replace
    from .kd4ad import _distill_config, _outlier_file
    exposure = ("noise", "outliers") if mnist else ("noise", "patches")
    outliers = _outlier_file(out, None, 2000, seed) if "outliers" in exposure else None
    config = _distill_config(exposure, 1.0, outliers, epochs, None, 8, "avg", "none", None, seed)
    config = replace(config, student_kwargs={**config.student_kwargs, "variant": variant,
                                             "image_shape": [side, side, int(channels)]})
    config.validate()
    return config


def score_regression(checkpoint, data, folder: Path, config, quiet: bool) -> dict:
    """Distil the teacher checkpoint's score into a QKeras student in `folder`; its AUROC, rank agreement, size."""
    from ..bench.metrics import auroc, spearman
    from ..distill import distill
    from ..students import load_student
    from ..teachers import load_teacher
    from .kd4ad import _torch_threads
    teacher = load_teacher(checkpoint)
    with _torch_threads(1):
        result = distill(teacher, data, folder, config, quiet=quiet)
    student = load_student(folder)
    test = data.test
    anomalies = np.concatenate([data.signals[k] for k in sorted(data.signals)])
    scores = np.concatenate([student.score(test), student.score(anomalies)])
    reference = np.concatenate([teacher.score(test), teacher.score(anomalies)])
    return {"auroc": auroc(scores[:len(test)], scores[len(test):]), "spearman": spearman(reference, scores),
            "params": result["params"]["student"], "macs": result["macs"]["student"]}
