"""Baseline without distillation: a dense autoencoder with the student's parameter budget, trained
directly on background and scored by its reconstruction error (the teacher's own score function)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data import Dataset
from ..errors import KDError

DEFAULT_LATENT = 8
RECONSTRUCTION_SCORES = ("mse", "masked_mse")


def autoencoder_params(n_features: int, hidden: int, latent: int) -> int:
    """Parameters of DenseAE(n_features, hidden=[hidden], latent): F->h->L->h->F, weights and biases."""
    return 2 * (n_features * hidden + hidden * latent) + 2 * hidden + latent + n_features


@dataclass(frozen=True)
class BaselineShape:
    hidden: int
    latent: int
    params: int
    target_params: int


def matching_shape(n_features: int, target_params: int, latent: int = DEFAULT_LATENT) -> BaselineShape:
    """One-hidden-layer autoencoder whose parameter count is closest to `target_params`.

    The latent width is `latent`, lowered (down to 1) while even one hidden unit is over budget; the
    hidden width is then the one that brings the count closest to the target.
    """
    if target_params < 1:
        raise KDError(f"the baseline needs a positive parameter budget, got {target_params}")
    latent = max(1, int(latent))
    while latent > 1 and autoencoder_params(n_features, 1, latent) > target_params:
        latent -= 1
    per_hidden_unit = autoencoder_params(n_features, 1, latent) - autoencoder_params(n_features, 0, latent)
    estimate = (target_params - autoencoder_params(n_features, 0, latent)) / per_hidden_unit
    candidates = {max(1, int(estimate)), max(1, int(estimate) + 1)}
    hidden = min(sorted(candidates), key=lambda h: abs(autoencoder_params(n_features, h, latent) - target_params))
    return BaselineShape(hidden, latent, autoencoder_params(n_features, hidden, latent), int(target_params))


def train_baseline(data: Dataset, out: Path, target_params: int, teacher_latent: int = DEFAULT_LATENT,
                   teacher_score: Optional[str] = None, epochs: int = 40, seed: int = 0, quiet: bool = False):
    """Train the matched autoencoder on background, save it at `out` (teacher checkpoint format).

    Returns (Teacher, BaselineShape). Scored like the teacher when the teacher's score is a reconstruction
    error, else by train_teacher's default for the data (masked MSE for ADC2021 objects, MSE otherwise).
    """
    from ..teachers.train import train_teacher
    shape = matching_shape(data.n_features, target_params, min(DEFAULT_LATENT, teacher_latent))
    score = teacher_score if teacher_score in RECONSTRUCTION_SCORES else None
    model = train_teacher(data, out, arch="dense-ae", hidden=[shape.hidden], latent=shape.latent, epochs=epochs,
                          score=score, seed=seed, quiet=quiet)
    return model, shape
