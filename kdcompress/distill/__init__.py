"""Distillation methods; score regression (Pol et al. 2023) is the default."""
from .score_regression import DistillConfig, distill  # noqa: F401
