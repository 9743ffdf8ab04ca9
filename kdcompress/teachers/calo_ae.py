"""CICADA-style teacher: a convolutional autoencoder on the 18x14 calorimeter-region image.

The module takes the flat 252 raw ET values (no preprocessing; the teacher's Preprocessing is the identity)
and returns its reconstruction in the same raw ET units, so the teacher score 'mse' is the mean squared
error of ET (counts^2), as in CICADA. Inside, ET is divided by a fixed `et_scale` for the convolutions.

    encoder: conv3x3(1 -> c0) -> avg-pool 2x2 (18x14 -> 9x7) -> conv3x3(c0 -> c1) -> dense -> latent
    decoder: dense -> (c1, 9, 7) -> conv3x3(c1 -> c0) -> upsample x2 -> conv3x3(c0 -> 1)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .. import plots
from ..data import Dataset
from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..progress import EpochProgress, auto_batch
from ..registry import TEACHERS

DEFAULT_IMAGE_SHAPE = (18, 14)
SCORE = "mse"


@TEACHERS.register("calo-ae")
class CaloConvAE(nn.Module):
    """Convolutional autoencoder on a (H, W) image given as flat (N, H*W); forward returns the reconstruction."""

    def __init__(self, n_features: int = 252, hidden: Sequence[int] = (8, 16), latent: int = 16,
                 image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE, et_scale: float = 16.0):
        super().__init__()
        height, width = (int(v) for v in image_shape[:2])
        if height * width != n_features or height % 2 or width % 2:
            raise KDError(f"calo-ae: image {height}x{width} (even sides) must hold the {n_features} features")
        if len(hidden) != 2:
            raise KDError(f"calo-ae: hidden must be two channel counts (c0, c1), got {list(hidden)}")
        c0, c1 = (int(c) for c in hidden)
        self.image_shape, self.et_scale = (height, width), float(et_scale)
        self.pooled = (c1, height // 2, width // 2)
        pooled_size = c1 * (height // 2) * (width // 2)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
            nn.Conv2d(c0, c1, 3, padding=1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(pooled_size, int(latent)))
        self.expand = nn.Sequential(nn.Linear(int(latent), pooled_size), nn.LeakyReLU(0.1))
        self.decoder = nn.Sequential(
            nn.Conv2d(c1, c0, 3, padding=1), nn.LeakyReLU(0.1), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c0, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # -1 batch axes, so that traced exports (ONNX) keep the batch size dynamic
        image = (x / self.et_scale).reshape(-1, 1, *self.image_shape)
        hidden = self.expand(self.encoder(image)).reshape(-1, *self.pooled)
        return self.decoder(hidden).flatten(1) * self.et_scale


def train_calo_teacher(data: Dataset, out, hidden: Sequence[int] = (8, 16), latent: int = 16,
                       et_scale: float = 16.0, epochs: int = 40, batch: Optional[int] = None, lr: float = 1e-3,
                       patience: int = 6, seed: int = 0, quiet: bool = False):
    """Train CaloConvAE on the zero-bias events of `data` (raw ET, MSE loss); save it to `out` and return it.

    Unlike train_teacher, no per-feature standardisation: the score stays the MSE of ET.
    """
    from . import Teacher, build_module, save_teacher
    from .scores import mse
    from .train import _fit, training_meta

    if epochs < 1:
        raise KDError("--epochs must be at least 1")
    torch.manual_seed(seed)
    image_shape = list(data.extra.get("image_shape", DEFAULT_IMAGE_SHAPE))[:2]
    arch = {"name": "calo-ae", "kwargs": {"n_features": data.n_features, "hidden": [int(h) for h in hidden],
                                          "latent": int(latent), "image_shape": image_shape,
                                          "et_scale": float(et_scale)}}
    module = build_module(arch)
    history = _fit(module, lambda outputs, x: mse(outputs, x).mean(), data.train, data.val, epochs,
                   auto_batch(len(data.train), batch), lr, patience, seed,
                   EpochProgress("teacher calo-ae", epochs, quiet))
    teacher = Teacher(module=module.eval(), score_name=SCORE, preprocessing=Preprocessing.identity(data.n_features),
                      arch=arch, meta=training_meta(data, seed, history))
    save_teacher(teacher, out)
    plots.loss_curve(Path(out).with_suffix(".loss.png"), history, "teacher calo-ae (MSE of ET)")
    return teacher
