"""DSKD (Yao and Gao, 2024): two students of inverted structure distilled from one fixed teacher encoder.

The forward student has the teacher's layout and sees the image; the reverse student (bottleneck + decoder)
restores the pyramid from an embedding of the forward student's features, so the two interact through that
embedding (our reading of the paper's deep feature embedding module; its full text was not available here).
Pyramid matching: loss = sum_k mean over positions of (1 - cos(T_k, F_k)) + (1 - cos(T_k, R_k)), on normal
images. The anomaly map sums both students' discrepancies (teachers/feature_kd.py). The last epoch is kept.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ..errors import KDError
from ..teachers.feature_kd import FeatureKD
from .reverse import _optimiser, _train_mode, check_images, pixel_cosine_loss, run_epochs


def train_dskd(model: FeatureKD, x: np.ndarray, val: np.ndarray, epochs: int, batch: int, lr: float,
               rng: np.random.Generator, quiet: bool = False) -> Dict[str, list]:
    if model.method != "dskd":
        raise KDError(f"train_dskd trains method 'dskd', got {model.method!r}")
    x = check_images(x, "training images", model.n_features, model.channels)
    optimiser = _optimiser([model.forward_student, model.bottleneck, model.decoder], lr)

    def step(idx):
        _train_mode(model)
        images = model.images(torch.from_numpy(x[idx]))
        with torch.no_grad():
            encoded = model.encoder(images)
        forward, reverse = model.students(images, encoded)
        loss_f, loss_r = pixel_cosine_loss(forward, encoded), pixel_cosine_loss(reverse, encoded)
        optimiser.zero_grad()
        (loss_f + loss_r).backward()
        optimiser.step()
        return {"forward loss": float(loss_f.item()), "reverse loss": float(loss_r.item())}

    return run_epochs(step, model, x, val, epochs, batch, rng, "DSKD", quiet)
