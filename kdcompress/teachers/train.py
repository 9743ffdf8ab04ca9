"""Teacher training on normal (background) events only, early stopping on the validation split."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .. import plots
from ..data import Dataset
from ..data.preprocess import fit_preprocessing
from ..errors import KDError
from ..progress import EpochProgress, auto_batch
from ..registry import TEACHERS
from . import Teacher, build_module, save_teacher
from .models import DEFAULT_SCORE
from .scores import kl_divergence, masked_mse

GENERIC_ARCHS = ("dense-ae", "vae")  # built from hidden sizes and a latent width
IMAGE_ARCHS = ("conv-ae",)  # image data only; hidden = channels of its two stride-2 convolutions
DEFAULT_HIDDEN = {"dense-ae": (512, 256, 128), "vae": (512, 256, 128), "conv-ae": (16, 32)}
DEFAULT_LATENT = {"dense-ae": 8, "vae": 8, "conv-ae": 20}


def train_teacher(data: Dataset, out, arch: str = "dense-ae", hidden: Optional[Sequence[int]] = None,
                  latent: Optional[int] = None, epochs: int = 40, batch: Optional[int] = None, lr: float = 1e-3,
                  patience: int = 6, beta: float = 0.5, score: Optional[str] = None, seed: int = 0,
                  quiet: bool = False) -> Teacher:
    """Train a registered teacher architecture, save it to `out` (+ loss curve PNG) and return it.
    `hidden` and `latent` default per architecture (DEFAULT_HIDDEN, DEFAULT_LATENT)."""
    TEACHERS.get(arch)
    if arch not in GENERIC_ARCHS + IMAGE_ARCHS:
        raise KDError(f"train_teacher trains {', '.join(GENERIC_ARCHS + IMAGE_ARCHS)}; '{arch}' is trained by its "
                      f"own function or recipe (calo-ae: cicada-calo, ede-gan: pkdgan-mnist, "
                      f"feature-kd: urd-mnist and dskd-mnist)")
    hidden = DEFAULT_HIDDEN[arch] if hidden is None else hidden
    latent = DEFAULT_LATENT[arch] if latent is None else latent
    if arch == "conv-ae":
        return _train_conv_ae(data, out, hidden, latent, epochs, batch, lr, patience, score, seed, quiet)
    if epochs < 1:
        raise KDError("--epochs must be at least 1")
    torch.manual_seed(seed)
    prep = fit_preprocessing(data.train, centre=data.layout is None)
    z_train, z_val = prep.apply(data.train), prep.apply(data.val)
    arch_cfg = {"name": arch, "kwargs": {"n_features": data.n_features, "hidden": list(hidden),
                                         "latent": int(latent)}}
    module = build_module(arch_cfg)
    loss_fn = _loss_for(arch, data.layout, beta)
    history = _fit(module, loss_fn, z_train, z_val, epochs, auto_batch(len(z_train), batch), lr, patience, seed,
                   EpochProgress(f"teacher {arch}", epochs, quiet))
    default_score = DEFAULT_SCORE[arch] if arch != "dense-ae" or data.layout is None else "masked_mse"
    teacher = Teacher(module=module.eval(), score_name=score or default_score, preprocessing=prep,
                      layout=data.layout, arch=arch_cfg,
                      meta=training_meta(data, seed, history))
    save_teacher(teacher, out)
    plots.loss_curve(Path(out).with_suffix(".loss.png"), history, f"teacher {arch}")
    return teacher


def training_meta(data: Dataset, seed: int, history: dict) -> dict:
    """What a teacher checkpoint records of its training; `data_source` lets export find held-out events."""
    return {"data_fingerprint": data.fingerprint(), "data_source": str(Path(data.source).resolve()), "seed": seed,
            "epochs_run": len(history["train"]), "best_val_loss": min(history["val"])}


def _train_conv_ae(data, out, hidden, latent, epochs, batch, lr, patience, score, seed, quiet) -> Teacher:
    from .conv_ae import train_conv_ae
    if len(hidden) != 2:
        raise KDError(f"conv-ae: --hidden gives the channels of its two stride-2 convolutions (two numbers, "
                      f"default 16,32), got {list(hidden)}")
    if score not in (None, "mse"):
        raise KDError(f"conv-ae scores by the mean squared reconstruction error ('mse'), not '{score}'")
    return train_conv_ae(data, out, latent=latent, channels=hidden, epochs=epochs, batch=batch, lr=lr,
                         patience=patience, seed=seed, quiet=quiet)


def _loss_for(arch: str, layout, beta: float):
    if arch == "vae":
        def vae_loss(outputs, x):
            recon = masked_mse(outputs, x, layout) * x.shape[1]
            return (recon + beta * kl_divergence(outputs, x)).mean()
        return vae_loss
    return lambda outputs, x: masked_mse(outputs, x, layout).mean()


def _fit(module, loss_fn, z_train, z_val, epochs, batch, lr, patience, seed, progress) -> dict:
    x_train, x_val = torch.from_numpy(z_train), torch.from_numpy(z_val)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, patience // 2))
    gen = torch.Generator().manual_seed(seed)
    history = {"train": [], "val": []}
    best, best_state, stale = float("inf"), None, 0
    for epoch in range(epochs):
        history["train"].append(_train_epoch(module, loss_fn, opt, x_train, batch, gen))
        history["val"].append(_evaluate(module, loss_fn, x_val, batch))
        sched.step(history["val"][-1])
        progress.update(epoch, loss=history["train"][-1], val_loss=history["val"][-1])
        if history["val"][-1] < best - 1e-7:
            best, best_state, stale = history["val"][-1], copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                progress.note(f"early stop: no val improvement in {patience} epochs")
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    return history


def _train_epoch(module, loss_fn, opt, x, batch, gen) -> float:
    module.train()
    order = torch.randperm(len(x), generator=gen)
    total = 0.0
    for start in range(0, len(x), batch):
        xb = x[order[start:start + batch]]
        loss = loss_fn(module(xb), xb)
        if not torch.isfinite(loss):
            raise KDError("teacher loss became NaN/inf; lower --lr or check the input scaling")
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(xb)
    return total / len(x)


@torch.no_grad()
def _evaluate(module, loss_fn, x, batch) -> float:
    module.eval()
    total = sum(float(loss_fn(module(x[s:s + batch]), x[s:s + batch])) * len(x[s:s + batch])
                for s in range(0, len(x), batch))
    return total / max(1, len(x))
