"""P-KDGAN (Zhang, Chen and Sun, IJCAI 2020): progressive distillation from a large EDE-GAN to a small one.

Every GAN trains as in GANomaly: the discriminator separates images from reconstructions (binary cross-entropy);
the generator minimises w_adv * feature matching on the discriminator's features + w_con * L1 reconstruction
+ w_enc * L2 between z and the code of the reconstruction. Distillation ties two generators by their three
outputs: kd = kd_z * L2(z) + kd_recon * L1(reconstruction) + kd_z * L2(code of the reconstruction), plus (ours,
not in the paper; kd_score = 0 drops it) kd_score * L2 between the latent residuals z - z', whose square is the
score: matching z and z' separately leaves errors in z - z' as large as the score itself.
  step 1  the student GAN learns with its own losses + kd_weight * kd towards the trained teacher, whose
          weights stay fixed (eval mode);
  step 2  teacher and student are fine-tuned jointly: each adds kd_weight * kd towards the other (detached,
          in train mode: with eval-mode targets the student fell from 0.908 to 0.807 mean AUROC on MNIST).
The student alone (same epochs, no teacher) is the baseline the paper's improvement is measured against.
The last epoch is kept: no choice is made on anomaly labels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import KDError
from ..progress import EpochProgress
from ..teachers.edegan import EDEDiscriminator, EDEGenerator

DISC_RESET_BELOW = 1e-5  # GANomaly re-initialises a discriminator that has won outright


@dataclass
class GANWeights:
    adv: float = 1.0
    con: float = 50.0
    enc: float = 1.0
    kd_z: float = 1.0
    kd_recon: float = 50.0
    kd_score: float = 10.0  # ours, not in the paper: L2 between the two latent residuals z - z'
    kd: float = 1.0

    def validate(self) -> None:
        bad = {k: v for k, v in vars(self).items() if not (np.isfinite(v) and v >= 0)}
        if bad:
            raise KDError(f"P-KDGAN loss weights must be finite and >= 0, got {bad}")


class GANPair:
    """A generator, its discriminator and their Adam optimisers."""

    def __init__(self, n_features: int, width: int, latent: int, lr: float):
        self.generator = EDEGenerator(n_features, width=width, latent=latent)
        self.discriminator = EDEDiscriminator(n_features, width=width)
        self.lr = lr
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def train(self) -> None:
        self.generator.train()
        self.discriminator.train()

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def reset_discriminator(self) -> None:
        for layer in self.discriminator.modules():
            if hasattr(layer, "reset_parameters") and layer is not self.discriminator:
                layer.reset_parameters()


def kd_loss(outputs, targets, w: GANWeights) -> torch.Tensor:
    """Distillation loss between two generators' (reconstruction, z, code of reconstruction); targets detached."""
    recon, z, z2 = outputs
    t_recon, t_z, t_z2 = (t.detach() for t in targets)
    loss = w.kd_z * F.mse_loss(z, t_z) + w.kd_recon * F.l1_loss(recon, t_recon) + w.kd_z * F.mse_loss(z2, t_z2)
    if w.kd_score:
        loss = loss + w.kd_score * F.mse_loss(z - z2, t_z - t_z2)
    return loss


def _generator_loss(pair: GANPair, x: torch.Tensor, outputs, w: GANWeights) -> Dict[str, torch.Tensor]:
    recon, z, z2 = outputs
    _, real_features = pair.discriminator(x)
    _, fake_features = pair.discriminator(recon)
    return {"adv": F.mse_loss(fake_features, real_features.detach()), "con": F.l1_loss(recon, x),
            "enc": F.mse_loss(z2, z)}


def _weighted(parts: Dict[str, torch.Tensor], w: GANWeights) -> torch.Tensor:
    return w.adv * parts["adv"] + w.con * parts["con"] + w.enc * parts["enc"]


def _discriminator_step(pair: GANPair, x: torch.Tensor, recon: torch.Tensor) -> float:
    real, _ = pair.discriminator(x)
    fake, _ = pair.discriminator(recon.detach())
    loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))) / 2
    pair.opt_d.zero_grad()
    loss.backward()
    pair.opt_d.step()
    if loss.item() < DISC_RESET_BELOW:
        pair.reset_discriminator()
    return float(loss.item())


def _gan_step(pair: GANPair, x: torch.Tensor, w: GANWeights, kd_target=None) -> Dict[str, float]:
    """One generator step (plus kd towards `kd_target` outputs) and one discriminator step."""
    outputs = pair.generator(x)
    parts = _generator_loss(pair, x, outputs, w)
    loss = _weighted(parts, w)
    kd = kd_loss(outputs, kd_target, w) if kd_target is not None else torch.zeros(())
    pair.opt_g.zero_grad()
    (loss + w.kd * kd).backward()
    pair.opt_g.step()
    d_loss = _discriminator_step(pair, x, outputs[0])
    return {"g": float(loss.item()), "kd": float(kd.item()), "d": d_loss}


def _batches(n: int, batch: int, rng: np.random.Generator) -> List[np.ndarray]:
    order = rng.permutation(n)
    return [order[s:s + batch] for s in range(0, n, batch)]


def _mean_logs(logs: List[Dict[str, float]]) -> Dict[str, float]:
    return {k: float(np.mean([log[k] for log in logs])) for k in logs[0]}


@torch.no_grad()
def latent_scores(generator: EDEGenerator, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The generator's anomaly score mean((z - E2(D(z)))^2), eval mode, float64."""
    generator.eval()
    out = []
    for start in range(0, len(x), batch):
        _, z, z2 = generator(torch.from_numpy(np.ascontiguousarray(x[start:start + batch], dtype=np.float32)))
        out.append(((z - z2) ** 2).mean(dim=1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def train_alone(pair: GANPair, x: np.ndarray, val: np.ndarray, epochs: int, batch: int, w: GANWeights,
                rng: np.random.Generator, name: str, quiet: bool) -> Dict[str, list]:
    """GANomaly training of one GAN on normal images; history of losses and the mean validation score."""
    return _run_epochs(lambda xb: {"": _gan_step(pair, xb, w)}, [pair], x, val, epochs, batch, rng, name, quiet)


def distill_step1(student: GANPair, teacher: EDEGenerator, x: np.ndarray, val: np.ndarray, epochs: int,
                  batch: int, w: GANWeights, rng: np.random.Generator, quiet: bool) -> Dict[str, list]:
    """Step 1: the student learns with kd towards the teacher, whose weights and statistics stay fixed."""
    teacher.eval()
    trainable = [p.requires_grad for p in teacher.parameters()]
    for p in teacher.parameters():
        p.requires_grad_(False)

    def step(xb):
        return {"": _gan_step(student, xb, w, kd_target=targets(teacher, xb))}

    try:
        return _run_epochs(step, [student], x, val, epochs, batch, rng, "P-KDGAN step 1", quiet)
    finally:
        for p, flag in zip(teacher.parameters(), trainable):
            p.requires_grad_(flag)


def joint_finetune(teacher: GANPair, student: GANPair, x: np.ndarray, val: np.ndarray, epochs: int, batch: int,
                   w: GANWeights, rng: np.random.Generator, quiet: bool) -> Dict[str, list]:
    """Step 2: teacher and student each learn with kd towards the other's current outputs."""

    def step(xb):  # targets in train mode: both move, so their running statistics lag their weights
        with torch.no_grad():
            student_out = student.generator(xb)
        teacher_log = _gan_step(teacher, xb, w, kd_target=student_out)
        with torch.no_grad():
            teacher_out = teacher.generator(xb)
        return {"teacher ": teacher_log, "": _gan_step(student, xb, w, kd_target=teacher_out)}

    return _run_epochs(step, [teacher, student], x, val, epochs, batch, rng, "P-KDGAN step 2", quiet,
                       watch=student)


@torch.no_grad()
def targets(generator: EDEGenerator, xb: torch.Tensor):
    """A generator's outputs as distillation targets: eval mode, so its batch-norm statistics stay as they are."""
    was_training = generator.training
    generator.eval()
    try:
        return generator(xb)
    finally:
        generator.train(was_training)


def _run_epochs(step, pairs: List[GANPair], x: np.ndarray, val: np.ndarray, epochs: int, batch: int,
                rng: np.random.Generator, name: str, quiet: bool, watch: Optional[GANPair] = None):
    if epochs < 1:
        raise KDError(f"{name}: epochs must be at least 1")
    watch = watch or pairs[-1]
    progress = EpochProgress(name, epochs, quiet)
    history: Dict[str, list] = {}
    for epoch in range(epochs):
        for pair in pairs:
            pair.train()
        logs = [_prefixed(step(torch.from_numpy(x[idx]))) for idx in _batches(len(x), batch, rng)]
        values = _mean_logs(logs)
        values["val score"] = float(latent_scores(watch.generator, val).mean())
        for key, value in values.items():
            history.setdefault(key, []).append(value)
        progress.update(epoch, **values)
    return history


def _prefixed(logs: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    return {f"{prefix}{key}": value for prefix, log in logs.items() for key, value in log.items()}


def frozen_copy(generator: EDEGenerator) -> EDEGenerator:
    """An eval-mode copy, so later fine-tuning of the original leaves it as it was."""
    return copy.deepcopy(generator).eval()


def check_images(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim != 2 or not len(x):
        raise KDError(f"{what} must be a non-empty (N, side*side) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise KDError(f"{what} holds NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def parameter_count(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))
