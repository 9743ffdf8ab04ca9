"""EDE-GAN (encoder-decoder-encoder GAN, as in GANomaly and P-KDGAN) for square one-channel images.

The generator is the anomaly detector: E1 maps an image to a latent code z, D reconstructs the image from z and
E2 encodes the reconstruction again; the anomaly score is mean((z - E2(D(z)))^2) over the latent dimensions
(score 'latent_mse'). The discriminator only shapes training and is not part of a saved teacher.

Rows are flat (N, side*side) in [0, 1], like every other teacher. With `width` w and side s (s % 4 == 0):
  E1, E2  conv4x4/2 1->w, LeakyReLU(0.2); conv4x4/2 w->2w, BatchNorm, LeakyReLU(0.2); conv (s/4)x(s/4) 2w->latent
  D       convT (s/4)x(s/4) latent->2w, BatchNorm, ReLU; convT4x4/2 2w->w, BatchNorm, ReLU; convT4x4/2 w->1, sigmoid
  disc.   the E1 stack up to 2w x s/4 x s/4 (its features), then conv (s/4)x(s/4) 2w->1 (logit)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import KDError
from ..registry import SCORES, TEACHERS

SLOPE = 0.2


def image_side(n_features: int) -> int:
    side = math.isqrt(int(n_features))
    if side * side != n_features or side % 4 or side < 8:
        raise KDError(f"ede-gan needs square grey images with a side divisible by 4 (at least 8), "
                      f"got {n_features} features")
    return side


def _check_sizes(width: int, latent: int) -> None:
    if int(width) < 1 or int(latent) < 1:
        raise KDError(f"ede-gan width and latent must be at least 1, got width {width}, latent {latent}")


def _features(width: int) -> nn.Sequential:
    """Two stride-2 convolutions: (1, s, s) -> (2w, s/4, s/4)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(SLOPE),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
        nn.LeakyReLU(SLOPE))


def _encoder(side: int, width: int, latent: int) -> nn.Sequential:
    return nn.Sequential(_features(width), nn.Conv2d(2 * width, latent, side // 4, bias=False), nn.Flatten())


def _decoder(side: int, width: int, latent: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Unflatten(1, (latent, 1, 1)),
        nn.ConvTranspose2d(latent, 2 * width, side // 4, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1, bias=False), nn.Sigmoid())


@TEACHERS.register("ede-gan")
class EDEGenerator(nn.Module):
    """x (N, s*s) -> (reconstruction (N, s*s), z (N, latent), z of the reconstruction (N, latent))."""

    def __init__(self, n_features: int = 784, width: int = 32, latent: int = 32):
        super().__init__()
        _check_sizes(width, latent)
        self.side = image_side(n_features)
        self.width, self.latent = int(width), int(latent)
        self.encoder = _encoder(self.side, self.width, self.latent)
        self.decoder = _decoder(self.side, self.width, self.latent)
        self.reencoder = _encoder(self.side, self.width, self.latent)

    def forward(self, x: torch.Tensor):
        images = x.reshape(-1, 1, self.side, self.side)
        z = self.encoder(images)
        recon = self.decoder(z)
        return recon.reshape(x.shape[0], -1), z, self.reencoder(recon)


class EDEDiscriminator(nn.Module):
    """x (N, s*s) -> (logit (N,), features (N, 2w, s/4, s/4)) for the feature-matching loss."""

    def __init__(self, n_features: int = 784, width: int = 32):
        super().__init__()
        _check_sizes(width, 1)
        self.side = image_side(n_features)
        self.features = _features(int(width))
        self.classify = nn.Conv2d(2 * int(width), 1, self.side // 4, bias=False)

    def forward(self, x: torch.Tensor):
        features = self.features(x.reshape(-1, 1, self.side, self.side))
        return self.classify(features).reshape(-1), features


@SCORES.register("latent_mse")
def latent_mse(outputs, x, layout=None) -> torch.Tensor:
    """Mean squared distance between the code of the input and the code of its reconstruction."""
    if not (isinstance(outputs, (tuple, list)) and len(outputs) >= 3):
        raise KDError("score 'latent_mse' needs a model returning (reconstruction, z, z of the reconstruction)")
    return ((outputs[1] - outputs[2]) ** 2).mean(dim=1)
