"""Training of the feature-level detectors (teachers/feature_kd.py): backbone, RD4AD, URD.

backbone  No pretrained weights are downloaded. The encoder comes from a user-given state_dict file (sha256
          checked) or is pretrained here, self-supervised (no labels of any kind): by predicting which of four
          rotations an image was given, or, for images that look alike when turned, by inpainting.
rd        The encoder stays fixed; bottleneck and decoder learn to restore its three scales from normal
          images: loss sum_k mean_n (1 - cos(flat e_k, flat d_k)), the image-wide cosine of the authors' code
          (the paper writes the per-position mean, `pixel_cosine_loss`).
urd       The expert is the fixed encoder; the teacher starts as its copy and is trained too. On each batch a
          copy with synthetic anomalies (mask m from thresholded smooth noise, filled with another image of
          the batch, rotated, mixed with noise; the paper pastes texture photographs) is made. Teacher loss:
          pixel-wise 1 - cos(T(x), E(x)) (stay like the expert on normal images) + L1 between
          1 - cos(T(x~), E(x)) and m (move away exactly where the anomaly is) + image-wide
          1 - cos(T(x~), E(x~)). Student loss (decoder with guided injection, fed by the teacher): image-wide
          cosine of S(x) and of S(x~) to both T(x) and E(x) (restore normal features even from anomalous
          images).
The last epoch is kept: no choice is made on anomaly labels.
"""
from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import KDError
from ..fileio import atomic_file
from ..progress import EpochProgress
from ..teachers.feature_kd import ConvBackbone, FeatureKD, image_side, rows_to_images

ADAM_BETAS = (0.5, 0.999)


def batches(n: int, batch: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Shuffled index batches; a last batch of one joins the one before (batch norm needs two images)."""
    if int(batch) < 1:
        raise KDError(f"batch must be at least 1, got {batch}")
    order = rng.permutation(n)
    parts = [order[s:s + batch] for s in range(0, n, batch)]
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [np.concatenate(parts[-2:])]
    return parts


def check_images(x: np.ndarray, what: str, n_features: Optional[int] = None, channels: int = 1) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or len(x) < 2:
        raise KDError(f"{what} must be an (N, side*side*channels) array of at least 2 images, got shape "
                      f"{getattr(x, 'shape', None)}")
    if n_features is not None and x.shape[1] != n_features:
        raise KDError(f"{what} have {x.shape[1]} features per image, the model takes {n_features}")
    if not np.all(np.isfinite(x)):
        raise KDError(f"{what} holds NaN or infinite values")
    image_side(x.shape[1], channels)
    return np.ascontiguousarray(x, dtype=np.float32)


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ---------------------------------------------------------------- backbone

PRETEXTS = ("rotation", "inpaint")
CHANCE_MARGIN = 0.15  # rotation accuracy below 0.25 + this: the images look alike when turned


def pretrain_backbone(x: np.ndarray, width: int, epochs: int, batch: int, lr: float, rng: np.random.Generator,
                      quiet: bool = False, pretext: str = "rotation", channels: int = 1) -> Dict:
    """Self-supervised encoder training on unlabelled images; returns the backbone and its history.

    rotation  predict which of 0/90/180/270 degrees an image was turned by (history: loss, accuracy);
    inpaint   restore images whose random 1/4-side squares were blanked (history: loss), for images that
              look the same when turned (textures), where rotation stays at chance.
    """
    if pretext not in PRETEXTS:
        raise KDError(f"pretext must be one of {', '.join(PRETEXTS)}, got {pretext!r}")
    if int(epochs) < 1:
        raise KDError(f"backbone epochs must be at least 1, got {epochs}")
    x = check_images(x, "backbone images", channels=channels)
    side = image_side(x.shape[1], channels)
    backbone = ConvBackbone(width, channels)
    head = _rotation_head(width) if pretext == "rotation" else _inpaint_head(width, side, channels)
    optimiser = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=lr)
    step = _rotation_step if pretext == "rotation" else _inpaint_step
    progress = EpochProgress(f"backbone ({pretext})", epochs, quiet)
    history: Dict[str, list] = {}
    images = rows_to_images(torch.from_numpy(x), side, channels)
    for epoch in range(epochs):
        backbone.train()
        logs = [step(backbone, head, images[idx], rng, optimiser) for idx in batches(len(x), batch, rng)]
        sizes = np.array([n for _, n in logs], dtype=float)
        for key in logs[0][0]:
            history.setdefault(key, []).append(float(np.average([log[key] for log, _ in logs], weights=sizes)))
        progress.update(epoch, **{k: v[-1] for k, v in history.items()})
    if pretext == "rotation" and history["accuracy"][-1] < 0.25 + CHANCE_MARGIN:
        progress.note(f"rotation accuracy {history['accuracy'][-1]:.2f} is near chance (0.25): these images look "
                      f"alike when turned; pretext=inpaint or a backbone file will give a better encoder")
    return {"backbone": freeze(backbone), "history": history, "pretext": pretext}


def _rotation_head(width: int) -> nn.Module:
    return nn.Linear(4 * int(width), 4)


def _inpaint_head(width: int, side: int, channels: int = 1) -> nn.Module:
    """Deepest features -> image: upsample to full size, conv3x3 4w->w, ReLU, conv3x3 w->channels, sigmoid."""
    w = int(width)
    return nn.Sequential(nn.Upsample(size=(side, side), mode="bilinear", align_corners=False),
                         nn.Conv2d(4 * w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, int(channels), 3, padding=1),
                         nn.Sigmoid())


def _rotation_step(backbone, head, images, rng, optimiser):
    turns = torch.from_numpy(rng.integers(0, 4, size=len(images)))
    rotated = torch.stack([torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(images, turns)])
    logits = head(backbone(rotated)[-1].mean(dim=(2, 3)))
    loss = F.cross_entropy(logits, turns)
    _descend(optimiser, loss)
    return {"loss": float(loss.item()), "accuracy": float((logits.argmax(1) == turns).float().mean())}, len(images)


def _inpaint_step(backbone, head, images, rng, optimiser):
    side = images.shape[-1]
    patch = max(2, side // 4)
    keep = torch.ones_like(images)
    for i in range(len(images)):
        for _ in range(2):
            r, c = (int(v) for v in rng.integers(0, side - patch + 1, size=2))
            keep[i, :, r:r + patch, c:c + patch] = 0
    loss = F.mse_loss(head(backbone(images * keep)[-1]), images)
    _descend(optimiser, loss)
    return {"loss": float(loss.item())}, len(images)


def _descend(optimiser, loss) -> None:
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


def load_backbone(path, width: int, sha256: Optional[str] = None, channels: int = 1) -> Dict:
    """A ConvBackbone state_dict saved with torch.save -> {"backbone", "sha256"}; the bytes are hashed and loaded
    once. Refuses a wrong hash, pickled code, a corrupt file, non-finite weights or another shape."""
    path = Path(path)
    if not path.is_file():
        raise KDError(f"backbone file not found: {path}")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != str(sha256).lower():
        raise KDError(f"backbone {path}: sha256 {digest} does not match the given {sha256}")
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickled code, corrupt file)
        raise KDError(f"backbone {path} is not a plain state_dict file: "
                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise KDError(f"backbone {path} must hold a state_dict (parameter names -> tensors)")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise KDError(f"backbone {path}: non-finite values in {bad[0]}")
    if channels not in (1, 3):
        raise KDError(f"backbone channels must be 1 (grey) or 3 (colour), got {channels}")
    backbone = ConvBackbone(width, channels)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        kind = "colour" if int(channels) == 3 else "grey"
        raise KDError(f"backbone {path} does not fit a width-{width} ConvBackbone for {kind} images: "
                      f"{str(exc).splitlines()[0]}") from None
    return {"backbone": freeze(backbone), "sha256": digest}


def save_backbone(backbone: ConvBackbone, path) -> str:
    """Atomic write of the state_dict; returns its sha256. Serialised in memory first: torch.save names the
    archive after the file, and the temporary name would change the bytes (and the hash) from run to run."""
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def detector(n_features: int, method: str, backbone: ConvBackbone, reduce: str = "max") -> FeatureKD:
    """A FeatureKD whose encoder starts as a copy of `backbone`, fixed unless the method trains it (urd)."""
    model = FeatureKD(n_features, method=method, width=backbone.width, reduce=reduce, channels=backbone.channels)
    model.encoder.load_state_dict(backbone.state_dict())
    freeze(model.encoder)
    return model


# ---------------------------------------------------------------- losses

def image_cosine_loss(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_k mean_n (1 - cos(a_k[n].flatten(), b_k[n].flatten()))."""
    return sum((1 - F.cosine_similarity(fa.flatten(1), fb.flatten(1), dim=1)).mean() for fa, fb in zip(a, b))


def pixel_cosine_loss(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_k mean over images and positions of 1 - cos(a_k, b_k) along channels."""
    return sum((1 - F.cosine_similarity(fa, fb, dim=1)).mean() for fa, fb in zip(a, b))


def mask_loss(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """sum_k mean |(1 - cos(a_k, b_k)) - mask at scale k (bilinear, then binarised at 0.5)|."""
    total = 0
    for fa, fb in zip(a, b):
        m = (F.interpolate(mask, size=fa.shape[-2:], mode="bilinear", align_corners=False) > 0.5).float()
        total = total + (1 - F.cosine_similarity(fa, fb, dim=1).unsqueeze(1) - m).abs().mean()
    return total


# ---------------------------------------------------------------- synthetic anomalies (URD)

def _smooth_noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    coarse = torch.from_numpy(rng.random((1, 1, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=side, mode="bicubic", align_corners=False)[0, 0].numpy()


def synthetic_anomalies(images: np.ndarray, rng: np.random.Generator):
    """(N, s, s[, channels]) in [0, 1] -> (images with pasted anomalies, masks (N, s, s) in {0, 1}).

    Mask: smooth noise on a 3-6 cell grid above its 80-92th percentile. Fill: another image of the batch
    rotated by 90/180/270 degrees, mixed with uniform noise. Label-free: only the normal images are used.
    """
    n, side = images.shape[0], images.shape[1]
    out, masks = images.copy(), np.zeros(images.shape[:3], dtype=images.dtype)
    for i in range(n):
        noise = _smooth_noise(rng, side, int(rng.integers(3, 7)))
        mask = (noise > np.quantile(noise, rng.uniform(0.80, 0.92))).astype(images.dtype)
        source = (i + int(rng.integers(1, n))) % n if n > 1 else i  # another image when there is one
        other = np.rot90(images[source], int(rng.integers(1, 4)))
        blend = rng.uniform(0.3, 1.0)
        fill = blend * other + (1 - blend) * rng.random(images.shape[1:])
        over = mask[..., None] if images.ndim == 4 else mask
        out[i] = images[i] * (1 - over) + fill * over
        masks[i] = mask
    return out.astype(np.float32), masks.astype(np.float32)


# ---------------------------------------------------------------- training loops

def _optimiser(modules: Sequence[nn.Module], lr: float) -> torch.optim.Optimizer:
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS)


@torch.no_grad()
def mean_score(model: FeatureKD, x: np.ndarray, batch: int = 512) -> float:
    return float(np.mean(scores(model, x, batch)))


def scores(model: FeatureKD, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Image scores (N,), float64."""
    return _evaluate(model, model, x, batch).astype(np.float64)


def anomaly_maps(model: FeatureKD, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Smoothed anomaly maps (N, side, side), float32; the image score is their max (or mean)."""
    return _evaluate(model, model.anomaly_map, x, batch).reshape(len(x), model.side, model.side)


def _evaluate(model: FeatureKD, function, x: np.ndarray, batch: int) -> np.ndarray:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = [function(torch.from_numpy(np.ascontiguousarray(x[s:s + batch], dtype=np.float32))).numpy()
               for s in range(0, len(x), batch)]
    if was:
        _train_mode(model)  # the fixed encoder stays in eval mode
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def run_epochs(step, model: FeatureKD, x: np.ndarray, val: np.ndarray, epochs: int, batch: int,
               rng: np.random.Generator, name: str, quiet: bool) -> Dict[str, list]:
    """`step(indices)` -> {loss name: value} per batch; history of the mean losses and validation score."""
    if epochs < 1:
        raise KDError(f"{name}: epochs must be at least 1")
    val = check_images(val, "validation images", model.n_features, model.channels)
    progress = EpochProgress(name, epochs, quiet)
    history: Dict[str, list] = {}
    for epoch in range(epochs):
        logs = [step(idx) for idx in batches(len(x), batch, rng)]
        values = {k: float(np.mean([log[k] for log in logs])) for k in logs[0]}
        values["val score"] = mean_score(model, val)
        for key, value in values.items():
            history.setdefault(key, []).append(value)
        progress.update(epoch, **values)
    return history


def _train_mode(model: FeatureKD) -> None:
    model.train()
    if model.method != "urd":
        model.encoder.eval()  # fixed: its batch-norm statistics stay the backbone's


def train_rd(model: FeatureKD, x: np.ndarray, val: np.ndarray, epochs: int, batch: int, lr: float,
             rng: np.random.Generator, quiet: bool = False) -> Dict[str, list]:
    """RD4AD: bottleneck and decoder restore the fixed encoder's features of normal images."""
    if model.method != "rd":
        raise KDError(f"train_rd trains method 'rd', got {model.method!r}")
    x = check_images(x, "training images", model.n_features, model.channels)
    optimiser = _optimiser([model.bottleneck, model.decoder], lr)

    def step(idx):
        _train_mode(model)
        images = model.images(torch.from_numpy(x[idx]))
        with torch.no_grad():
            encoded = model.encoder(images)
        loss = image_cosine_loss(model.decoder(model.bottleneck(encoded)), encoded)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return {"loss": float(loss.item())}

    return run_epochs(step, model, x, val, epochs, batch, rng, "RD4AD", quiet)


def train_urd(model: FeatureKD, expert: ConvBackbone, x: np.ndarray, val: np.ndarray, epochs: int, batch: int,
              lr: float, teacher_lr: float, rng: np.random.Generator, quiet: bool = False) -> Dict[str, list]:
    """URD: the teacher (model.encoder, from the expert) and the student (bottleneck + guided decoder)."""
    if model.method != "urd":
        raise KDError(f"train_urd trains method 'urd', got {model.method!r}")
    x = check_images(x, "training images", model.n_features, model.channels)
    if expert.width != model.width:
        raise KDError(f"the expert has width {expert.width}, the detector {model.width}")
    if expert.channels != model.channels:
        raise KDError(f"the expert takes {expert.channels}-channel images, the detector {model.channels}")
    expert = freeze(copy.deepcopy(expert))
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    opt_t = _optimiser([model.encoder], teacher_lr)
    opt_s = _optimiser([model.bottleneck, model.decoder], lr)
    side = model.side
    grid = (side, side) if model.channels == 1 else (side, side, model.channels)

    def to_images(a: np.ndarray) -> torch.Tensor:
        return rows_to_images(torch.from_numpy(a).reshape(len(a), -1), side, model.channels)

    def step(idx):
        normal = x[idx].reshape(-1, *grid)
        aug, mask = synthetic_anomalies(normal, rng)
        xn, xa = to_images(normal), to_images(aug)
        m = torch.from_numpy(mask).reshape(-1, 1, side, side)
        with torch.no_grad():
            en, ea = expert(xn), expert(xa)
        model.train()
        tn, ta = model.encoder(xn), model.encoder(xa)
        loss_t = pixel_cosine_loss(tn, en) + mask_loss(ta, en, m) + image_cosine_loss(ta, ea)
        opt_t.zero_grad()
        loss_t.backward()
        opt_t.step()
        model.encoder.eval()
        with torch.no_grad():
            tn, ta = model.encoder(xn), model.encoder(xa)
        sn = model.decoder(model.bottleneck(tn), tn)
        sa = model.decoder(model.bottleneck(ta), ta)
        loss_s = (image_cosine_loss(sn, tn) + image_cosine_loss(sa, tn) + image_cosine_loss(sn, en)
                  + image_cosine_loss(sa, en))
        opt_s.zero_grad()
        loss_s.backward()
        opt_s.step()
        return {"teacher loss": float(loss_t.item()), "student loss": float(loss_s.item())}

    try:
        return run_epochs(step, model, x, val, epochs, batch, rng, "URD", quiet)
    finally:
        freeze(model.encoder)
