"""Convolutional autoencoder teacher for images (Pol et al. 2023): LeakyReLU(0.3), latent 20, sigmoid output.

Takes and returns flat (N, H*W*C) rows (channels last) so it shares Teacher.score and the 'mse' score with
every other teacher. Any (height, width, channels): the image is zero-padded on the bottom and right to
multiples of 4 and the reconstruction cropped back, so the loss and the score see only real pixels.
About 19k parameters with the defaults on 28x28 grey images:
  encoder  conv3x3/2 C->16, conv3x3/2 16->32, conv3x3 32->4, dense (H/4 * W/4 * 4)->20
  decoder  dense 20->(H/4 * W/4 * 4), conv1x1 4->32, convT3x3/2 32->16, convT3x3/2 16->C, sigmoid
The sigmoid wants inputs in [0, 1]: image_preprocessing maps other pixel ranges there with one offset and
one power-of-two scale for every pixel (spatial structure kept).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data import Dataset
from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..progress import EpochProgress, auto_batch
from ..registry import TEACHERS

SLOPE = 0.3
STRIDE = 4  # two stride-2 convolutions


@TEACHERS.register("conv-ae")
class ConvAE(nn.Module):
    """Two stride-2 convolutions down to (H/4 x W/4) x `bottleneck`, a dense latent, and the mirror up.
    `image_shape` (height, width, channels); None: a square grey image of `n_features` pixels."""

    def __init__(self, n_features: int = 784, latent: int = 20, channels: Sequence[int] = (16, 32),
                 bottleneck: int = 4, image_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.height, self.width, self.colours = conv_ae_shape(n_features, image_shape)
        first, second = (int(c) for c in channels)
        self.pad = (-self.width % STRIDE, -self.height % STRIDE)
        self.small = ((self.height + self.pad[1]) // STRIDE, (self.width + self.pad[0]) // STRIDE)
        flat = bottleneck * self.small[0] * self.small[1]
        self.encoder = nn.Sequential(
            nn.Conv2d(self.colours, first, 3, stride=2, padding=1), nn.LeakyReLU(SLOPE),
            nn.Conv2d(first, second, 3, stride=2, padding=1), nn.LeakyReLU(SLOPE),
            nn.Conv2d(second, bottleneck, 3, padding=1), nn.LeakyReLU(SLOPE),
            nn.Flatten(), nn.Linear(flat, int(latent)))
        self.expand = nn.Sequential(nn.Linear(int(latent), flat), nn.LeakyReLU(SLOPE))
        self.decoder = nn.Sequential(
            nn.Conv2d(bottleneck, second, 1), nn.LeakyReLU(SLOPE),
            nn.ConvTranspose2d(second, first, 3, stride=2, padding=1, output_padding=1), nn.LeakyReLU(SLOPE),
            nn.ConvTranspose2d(first, self.colours, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, self.height, self.width, self.colours).permute(0, 3, 1, 2)
        z = self.encoder(nn.functional.pad(images, (0, self.pad[0], 0, self.pad[1])))
        h = self.expand(z).reshape(-1, self.bottleneck, *self.small)
        out = self.decoder(h)[:, :, :self.height, :self.width]
        return out.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def conv_ae_shape(n_features: int, image_shape: Optional[Sequence[int]]) -> Tuple[int, int, int]:
    """(height, width, channels) holding `n_features`; without a shape, the square grey image."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise KDError(f"conv-ae needs images: {n_features} features are no square grey image and no image "
                          f"shape was given")
        return side, side, 1
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != n_features:
        raise KDError(f"conv-ae: image shape {list(image_shape)} does not hold {n_features} features")
    return shape


def _data_image_shape(data: Dataset) -> Tuple[int, int, int]:
    if data.pixel_shape is not None:
        return data.pixel_shape
    if data.kind == "mnist":
        return conv_ae_shape(data.n_features, None)
    raise KDError(f"conv-ae needs images (an image folder, MNIST, or .npz images); got {data.describe()}")


def image_preprocessing(train: np.ndarray) -> Preprocessing:
    """Identity for pixels in [0, 1]; else one offset (the smallest pixel) and one power-of-two scale for all
    pixels, taking the training pixels into [0, 1] (test pixels beyond it score as large errors)."""
    low, high = float(np.min(train)), float(np.max(train))
    n_features = train.shape[1]
    if low >= 0.0 and high <= 1.0:
        return Preprocessing.identity(n_features)
    shift = -math.ceil(math.log2(high - low)) if high > low else 0
    return Preprocessing(shift=[shift] * n_features, offset=[low] * n_features)


def train_conv_ae(data: Dataset, out, latent: int = 20, channels: Sequence[int] = (16, 32), epochs: int = 60,
                  batch: Optional[int] = None, lr: float = 1e-3, patience: int = 8, seed: int = 0,
                  quiet: bool = False):
    """Train a ConvAE on the normal images (MSE, early stopping on val), save it to `out` with its loss
    curve (`out` with suffix .loss.png), return the Teacher."""
    from .. import plots
    from . import Teacher, build_module, save_teacher
    from .scores import mse
    from .train import _fit, training_meta
    if epochs < 1:
        raise KDError("teacher epochs must be at least 1")
    torch.manual_seed(seed)
    prep = image_preprocessing(data.train)
    arch = {"name": "conv-ae", "kwargs": {"n_features": data.n_features, "latent": int(latent),
                                          "channels": [int(c) for c in channels],
                                          "image_shape": list(_data_image_shape(data))}}
    module = build_module(arch)
    history = _fit(module, lambda outputs, x: mse(outputs, x).mean(), prep.apply(data.train), prep.apply(data.val),
                   epochs, auto_batch(len(data.train), batch), lr, patience, seed,
                   EpochProgress("teacher conv-ae", epochs, quiet))
    teacher = Teacher(module=module.eval(), score_name="mse", preprocessing=prep, arch=arch,
                      meta=training_meta(data, seed, history))
    save_teacher(teacher, Path(out))
    plots.loss_curve(Path(out).with_suffix(".loss.png"), history, "teacher conv-ae")
    return teacher
