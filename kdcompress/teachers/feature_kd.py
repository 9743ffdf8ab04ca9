"""Feature-level distillation detectors for square grey or colour images: RD4AD, URD and DSKD as plain modules.

All three compare multi-scale feature maps of a fixed encoder with those of a student and score an image by
the largest value of the smoothed anomaly map sum_k upsample(1 - cos(teacher_k, student_k)) (or its mean).
  rd    Reverse distillation (Deng and Li, CVPR 2022): a one-class bottleneck fuses the encoder's three scales
        into a small embedding; a decoder (the student) restores the three scales from it.
  urd   RD with expert (Liu et al., AAAI 2025): as rd, but the encoder is a trained copy of the expert and the
        decoder gets guided information injection: at each finer scale the encoder's feature is mixed in where
        it agrees with the decoder's (cosine similarity), the decoder's own feature where it does not. Ours
        injects the same-scale encoder feature only (the authors' code also adds the next finer scale).
  dskd  Dual-student KD (Yao and Gao, 2024): two students of inverted structure, a forward encoder (same layout
        as the teacher) and a reverse decoder fed by an embedding of the forward student's features; the map
        sums both students' discrepancies.

Rows are flat (N, side*side*channels) in [0, 1], channels last (1 grey, 3 RGB). The encoder (`ConvBackbone`,
width w): stem conv3x3 channels->w, then three
residual stages of stride 2 with w, 2w, 4w channels (side/2, side/4, side/8 rounded up). The decoder upsamples
bilinearly, each step followed by a residual block (the papers use transposed convolutions).
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import KDError
from ..registry import TEACHERS

METHODS = ("rd", "urd", "dskd")
REDUCTIONS = ("max", "mean")
SMOOTH_SIGMA = 1.0  # pixels of the anomaly map's Gaussian smoothing (the papers use 4 at 256 pixels)


def image_side(n_features: int, channels: int = 1) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in (1, 3):
        raise KDError(f"feature-kd takes grey (1) or colour (3) channels, got {channels}")
    side = math.isqrt(int(n_features) // channels)
    if side * side * channels != n_features or side < 8:
        kind = "colour" if channels == 3 else "one-channel"
        raise KDError(f"feature-kd needs square {kind} images of side >= 8, got {n_features} features")
    return side


def rows_to_images(x: torch.Tensor, side: int, channels: int) -> torch.Tensor:
    """Rows (N, side*side*channels), channels last -> images (N, channels, side, side)."""
    return x.reshape(-1, side, side, channels).permute(0, 3, 1, 2)


def stage_sizes(side: int) -> List[int]:
    sizes, s = [], side
    for _ in range(3):
        s = (s + 1) // 2
        sizes.append(s)
    return sizes


def _conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class ResBlock(nn.Module):
    """conv3x3/stride, BN, ReLU, conv3x3, BN, plus a projected shortcut when the shape changes; ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(c_in, c_out, stride), nn.ReLU(), _conv_bn(c_out, c_out))
        self.shortcut = nn.Identity() if (c_in == c_out and stride == 1) else _conv_bn(c_in, c_out, stride, 1)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class ConvBackbone(nn.Module):
    """Images (N, channels, s, s) -> [f1 (w, s/2), f2 (2w, s/4), f3 (4w, s/8)]."""

    def __init__(self, width: int = 16, channels: int = 1):
        super().__init__()
        w = int(width)
        self.width, self.channels = w, int(channels)
        self.stem = nn.Sequential(_conv_bn(self.channels, w), nn.ReLU())
        self.stages = nn.ModuleList([ResBlock(w, w, 2), ResBlock(w, 2 * w, 2), ResBlock(2 * w, 4 * w, 2)])

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x, features = self.stem(images), []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def channels(width: int) -> List[int]:
    return [width, 2 * width, 4 * width]


class Bottleneck(nn.Module):
    """One-class embedding: the three scales brought to the coarsest, concatenated, one stride-2 stage (8w)."""

    def __init__(self, width: int):
        super().__init__()
        c = channels(width)
        self.down1 = nn.Sequential(_conv_bn(c[0], c[2], 2), nn.ReLU(), _conv_bn(c[2], c[2], 2), nn.ReLU())
        self.down2 = nn.Sequential(_conv_bn(c[1], c[2], 2), nn.ReLU())
        self.fuse = ResBlock(3 * c[2], 2 * c[2], 2)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = features
        size = f3.shape[-2:]
        parts = [F.interpolate(self.down1(f1), size=size), F.interpolate(self.down2(f2), size=size), f3]
        return self.fuse(torch.cat(parts, dim=1))


class ReverseDecoder(nn.Module):
    """Embedding (8w) -> [d1, d2, d3] at the encoder's sizes; with `guided`, encoder features injected (URD)."""

    def __init__(self, width: int, sizes: Sequence[int], guided: bool = False):
        super().__init__()
        c = channels(width)
        self.sizes, self.guided = [int(s) for s in sizes], bool(guided)
        self.up3, self.up2, self.up1 = ResBlock(2 * c[2], c[2]), ResBlock(c[2], c[1]), ResBlock(c[1], c[0])
        if self.guided:
            self.inject = nn.ModuleList([nn.Sequential(_conv_bn(c[k], c[k]), nn.ReLU()) for k in (1, 2)])
            self.fuse = nn.ModuleList([nn.Sequential(_conv_bn(2 * c[k], c[k]), nn.ReLU()) for k in (1, 2)])

    def forward(self, embedding: torch.Tensor, encoder: Sequence[torch.Tensor] = ()) -> List[torch.Tensor]:
        d3 = self.up3(F.interpolate(embedding, size=self.sizes[2], mode="bilinear", align_corners=False))
        d2 = self.up2(F.interpolate(self._guide(d3, encoder, 2), size=self.sizes[1], mode="bilinear",
                                    align_corners=False))
        d1 = self.up1(F.interpolate(self._guide(d2, encoder, 1), size=self.sizes[0], mode="bilinear",
                                    align_corners=False))
        return [d1, d2, d3]

    def _guide(self, decoded: torch.Tensor, encoder: Sequence[torch.Tensor], k: int) -> torch.Tensor:
        """Guided information injection at scale k (0-based index k): agreement-weighted encoder detail."""
        if not self.guided:
            return decoded
        target = encoder[k]
        with torch.no_grad():
            agree = F.cosine_similarity(decoded, target, dim=1).clamp(min=0).unsqueeze(1)
        mixed = self.inject[k - 1](target * agree + decoded * (1 - agree))
        return self.fuse[k - 1](torch.cat([decoded, mixed], dim=1))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def discrepancy(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], side: int) -> torch.Tensor:
    """sum_k upsample(1 - cos(a_k, b_k)) -> (N, 1, side, side)."""
    total = 0
    for fa, fb in zip(a, b):
        d = (1 - F.cosine_similarity(fa, fb, dim=1)).unsqueeze(1)
        total = total + F.interpolate(d, size=side, mode="bilinear", align_corners=False)
    return total


@TEACHERS.register("feature-kd")
class FeatureKD(nn.Module):
    """x (N, s*s*channels) -> anomaly score (N,): the trained detector of one method (score 'output')."""

    def __init__(self, n_features: int = 784, method: str = "rd", width: int = 16, reduce: str = "max",
                 channels: int = 1):
        super().__init__()
        if method not in METHODS:
            raise KDError(f"feature-kd method must be one of {', '.join(METHODS)}, got {method!r}")
        if reduce not in REDUCTIONS:
            raise KDError(f"feature-kd reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        if int(width) < 1:
            raise KDError(f"feature-kd width must be at least 1, got {width}")
        self.side, self.method, self.width, self.reduce = image_side(n_features, channels), method, int(width), reduce
        self.channels = int(channels)
        sizes = stage_sizes(self.side)
        self.encoder = ConvBackbone(self.width, self.channels)
        self.bottleneck = Bottleneck(self.width)
        self.decoder = ReverseDecoder(self.width, sizes, guided=(method == "urd"))
        if method == "dskd":
            self.forward_student = ConvBackbone(self.width, self.channels)
        self.register_buffer("smooth", gaussian_kernel(SMOOTH_SIGMA), persistent=False)

    @property
    def n_features(self) -> int:
        return self.side * self.side * self.channels

    def images(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise KDError(f"feature-kd takes rows of {self.n_features} values, got shape {tuple(x.shape)}")
        return rows_to_images(x, self.side, self.channels)

    def students(self, images: torch.Tensor, encoded: Sequence[torch.Tensor]) -> List[List[torch.Tensor]]:
        """The student feature pyramids compared with `encoded` (the fixed encoder's features)."""
        if self.method == "dskd":
            forward = self.forward_student(images)
            return [forward, self.decoder(self.bottleneck(forward))]
        return [self.decoder(self.bottleneck(encoded), encoded)]

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        images = self.images(x)
        encoded = self.encoder(images)
        raw = sum(discrepancy(encoded, s, self.side) for s in self.students(images, encoded))
        pad = self.smooth.shape[-1] // 2
        return F.conv2d(F.pad(raw, (pad, pad, pad, pad), mode="replicate"), self.smooth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.anomaly_map(x).flatten(1)
        return flat.amax(dim=1) if self.reduce == "max" else flat.mean(dim=1)
