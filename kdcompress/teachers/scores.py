"""Anomaly scores computed from a teacher's outputs; each returns (N,), higher = more anomalous."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import KDError
from ..registry import SCORES


def _reconstruction(outputs) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _latent(outputs, name: str):
    if not (isinstance(outputs, (tuple, list)) and len(outputs) >= 3):
        raise KDError(f"score '{name}' needs a model returning (reconstruction, mu, logvar)")
    return outputs[1], outputs[2]


def object_mask(x: torch.Tensor, layout: Optional[dict]) -> torch.Tensor:
    """1 for features of present objects (first feature of the object non-zero), 0 for zero padding."""
    if not layout:
        return torch.ones_like(x)
    per = int(layout["per_object"])
    present = (x.reshape(-1, x.shape[1] // per, per)[:, :, :1] != 0).to(x.dtype)
    return present.expand(-1, -1, per).reshape(x.shape)


@SCORES.register("mse")
def mse(outputs, x, layout=None) -> torch.Tensor:
    recon = _reconstruction(outputs)
    return ((recon - x) ** 2).mean(dim=1)


@SCORES.register("masked_mse")
def masked_mse(outputs, x, layout=None) -> torch.Tensor:
    recon = _reconstruction(outputs)
    return (object_mask(x, layout) * (recon - x) ** 2).mean(dim=1)


@SCORES.register("mu2")
def mu_squared(outputs, x, layout=None) -> torch.Tensor:
    mu, _ = _latent(outputs, "mu2")
    return (mu ** 2).sum(dim=1)


@SCORES.register("kl")
def kl_divergence(outputs, x, layout=None) -> torch.Tensor:
    mu, logvar = _latent(outputs, "kl")
    return -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)


@SCORES.register("output")
def model_output(outputs, x, layout=None) -> torch.Tensor:
    out = _reconstruction(outputs)
    if out.dim() == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.dim() != 1:
        raise KDError(f"score 'output' needs a model returning (N,) or (N,1), got shape {tuple(out.shape)}")
    return out
