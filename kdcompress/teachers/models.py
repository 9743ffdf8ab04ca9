"""Teacher architectures: plain nn.Modules (training loops live in train.py)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..registry import TEACHERS


def _mlp(sizes: Sequence[int], final_activation: bool) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


@TEACHERS.register("dense-ae")
class DenseAE(nn.Module):
    """Dense autoencoder; forward returns the reconstruction."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (512, 256, 128), latent: int = 8):
        super().__init__()
        self.encoder = _mlp([n_features, *hidden, latent], final_activation=False)
        self.decoder = _mlp([latent, *reversed(hidden), n_features], final_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@TEACHERS.register("vae")
class VAE(nn.Module):
    """AXOL1TL-style VAE; forward returns (reconstruction, mu, logvar), decoding mu in eval mode."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (512, 256, 128), latent: int = 8):
        super().__init__()
        self.encoder = _mlp([n_features, *hidden], final_activation=True)
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)
        self.decoder = _mlp([latent, *reversed(hidden), n_features], final_activation=False)

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-12.0, 12.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


DEFAULT_SCORE = {"dense-ae": "mse", "vae": "mu2"}
