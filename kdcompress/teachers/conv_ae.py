"""Convolutional autoencoder teacher for 28x28 images (Pol et al. 2023): LeakyReLU(0.3), latent 20, sigmoid output.

Takes and returns flat (N, H*W) rows so it shares Teacher.score and the 'mse' score with every other teacher.
About 19k parameters with the defaults:
  encoder  conv3x3/2 1->16, conv3x3/2 16->32, conv3x3 32->4, dense 196->20
  decoder  dense 20->196, conv1x1 4->32, convT3x3/2 32->16, convT3x3/2 16->1, sigmoid
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..data import Dataset
from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..progress import EpochProgress, auto_batch
from ..registry import TEACHERS

SLOPE = 0.3


@TEACHERS.register("conv-ae")
class ConvAE(nn.Module):
    """Two stride-2 convolutions down to (side/4)^2 x `bottleneck`, a dense latent, and the mirror up."""

    def __init__(self, n_features: int = 784, latent: int = 20, channels: Sequence[int] = (16, 32),
                 bottleneck: int = 4):
        super().__init__()
        side = math.isqrt(n_features)
        if side * side != n_features or side % 4:
            raise KDError(f"conv-ae needs square grey images with a side divisible by 4, got {n_features} features")
        first, second = (int(c) for c in channels)
        self.side, self.small = side, side // 4
        flat = bottleneck * self.small * self.small
        self.encoder = nn.Sequential(
            nn.Conv2d(1, first, 3, stride=2, padding=1), nn.LeakyReLU(SLOPE),
            nn.Conv2d(first, second, 3, stride=2, padding=1), nn.LeakyReLU(SLOPE),
            nn.Conv2d(second, bottleneck, 3, padding=1), nn.LeakyReLU(SLOPE),
            nn.Flatten(), nn.Linear(flat, int(latent)))
        self.expand = nn.Sequential(nn.Linear(int(latent), flat), nn.LeakyReLU(SLOPE))
        self.decoder = nn.Sequential(
            nn.Conv2d(bottleneck, second, 1), nn.LeakyReLU(SLOPE),
            nn.ConvTranspose2d(second, first, 3, stride=2, padding=1, output_padding=1), nn.LeakyReLU(SLOPE),
            nn.ConvTranspose2d(first, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x.reshape(-1, 1, self.side, self.side))
        h = self.expand(z).reshape(-1, self.bottleneck, self.small, self.small)
        return self.decoder(h).reshape(x.shape[0], -1)


def train_conv_ae(data: Dataset, out, latent: int = 20, epochs: int = 60, batch: Optional[int] = None,
                  lr: float = 1e-3, patience: int = 8, seed: int = 0, quiet: bool = False):
    """Train a ConvAE on the normal images (MSE, early stopping on val), save it to `out`, return the Teacher."""
    from . import Teacher, build_module, save_teacher
    from .scores import mse
    from .train import _fit
    if epochs < 1:
        raise KDError("teacher epochs must be at least 1")
    torch.manual_seed(seed)
    arch = {"name": "conv-ae", "kwargs": {"n_features": data.n_features, "latent": int(latent)}}
    module = build_module(arch)
    history = _fit(module, lambda outputs, x: mse(outputs, x).mean(), data.train, data.val, epochs,
                   auto_batch(len(data.train), batch), lr, patience, seed, EpochProgress("teacher conv-ae", epochs,
                                                                                         quiet))
    teacher = Teacher(module=module.eval(), score_name="mse", preprocessing=Preprocessing.identity(data.n_features),
                      arch=arch, meta={"data_fingerprint": data.fingerprint(), "seed": seed,
                                       "epochs_run": len(history["train"]), "best_val_loss": min(history["val"])})
    save_teacher(teacher, Path(out))
    return teacher
