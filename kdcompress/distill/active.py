"""Disagreement-driven (active) query rounds: add the points where the student is furthest from its teacher.

Each round draws a broad candidate pool around the normal events (noise, mixup, box, marginals), keeps the
candidates with the largest |student - teacher| in target space, optionally pushes them further by signed
gradient ascent on that gap, labels them with the teacher and trains on. Labels of anomalies are never read.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

from ..registry import SCORES
from .queries import feature_spread, make_queries, plus_physics, repair_structure

ACTIVE_METHODS = ("sampled", "ascent")
POOL_FACTOR = 4  # candidates scored per point kept
POOL_STRATEGIES = {"noise": 0.4, "mixup": 0.3, "box": 0.15, "marginals": 0.15}
POOL_PHYSICS = 0.15  # fraction of `objects` and of `harder` candidates where the layout has object groups
ASCENT_STEPS = 10
ASCENT_STEP = 0.1  # per step, in units of each feature's standard deviation


def disagreement_queries(x: np.ndarray, count: int, label: Callable, student, rng: np.random.Generator,
                         layout: Optional[dict] = None, method: str = "sampled",
                         gradients: Optional["GapGradient"] = None) -> np.ndarray:
    """`count` points near `x` where |student - label| is largest: the top of a sampled pool, then ascended."""
    if count <= 0 or len(x) == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    pool_fraction = POOL_FACTOR * count / len(x)
    mix = plus_physics(POOL_STRATEGIES, POOL_PHYSICS, layout)
    pool = make_queries(x, {k: v * pool_fraction for k, v in mix.items()}, rng, layout)
    gap = np.abs(student.score(pool) - label(pool))
    top = pool[np.argsort(-gap, kind="stable")[:count]]
    if method == "ascent" and gradients is not None:
        top = ascend(top, gradients, feature_spread(x), layout, constant=(x == x[:1]).all(axis=0))
    return top.astype(np.float32)


def ascend(x: np.ndarray, gradients: "GapGradient", spread: np.ndarray, layout: Optional[dict],
           constant: np.ndarray, steps: int = ASCENT_STEPS, step: float = ASCENT_STEP) -> np.ndarray:
    """Signed gradient ascent on |student - teacher|, in standardised units, keeping the physics structure."""
    template = x.copy()
    q = x.astype(np.float64).copy()
    for _ in range(steps):
        q = q + step * spread * np.sign(gradients(q.astype(np.float32)))
        q = repair_structure(q, template, layout) if layout else q
        q[:, constant] = template[:1, constant]
    return q.astype(np.float32)


class TeacherGradient:
    """The teacher's score in target space and its gradient with respect to raw inputs (torch autograd)."""

    def __init__(self, teacher, target: str = "identity", scale: float = 1.0):
        self.teacher, self.target, self.scale = teacher, target, scale

    def __call__(self, x: np.ndarray):
        import torch
        prep = self.teacher.preprocessing
        xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        with torch.enable_grad():
            z = (xt - torch.tensor(prep.offset, dtype=torch.float32)) * torch.exp2(
                torch.tensor(prep.shift, dtype=torch.float32))
            score = SCORES.get(self.teacher.score_name)(self.teacher.module(z), z, self.teacher.layout)
            target = TORCH_TARGETS[self.target](torch, score.double() / self.scale)
            (grad,) = torch.autograd.grad(target.sum(), xt)
        return target.detach().numpy(), grad.numpy().astype(np.float64)

    def gradient(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        parts = [self(x[s:s + batch])[1] for s in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.zeros_like(x, dtype=np.float64)


class GapGradient:
    """d|student - teacher|/dx for raw inputs: torch autograd for the teacher, a TF tape for the student."""

    def __init__(self, teacher, student, target: str, scale: float):
        self.teacher, self.student = TeacherGradient(teacher, target, scale), student

    def __call__(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        parts = [self._batch(x[s:s + batch]) for s in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.zeros_like(x)

    def _batch(self, x: np.ndarray) -> np.ndarray:
        t, grad_t = self.teacher(x)
        s, grad_s = self._student(x)
        return np.sign(s - t)[:, None] * (grad_s - grad_t)

    def _student(self, x: np.ndarray):
        from ..tf_env import tensorflow
        tf = tensorflow()
        prep = self.student.preprocessing
        z = tf.constant(prep.apply(x))
        with tf.GradientTape() as tape:
            tape.watch(z)
            raw = tf.reshape(self.student.model(z, training=False), [-1])
            out = tf.math.log1p(tf.nn.relu(raw)) if self.student.meta.get("output_transform") == "log1p" else raw
        grad = tape.gradient(out, z).numpy() * np.exp2(np.asarray(prep.shift, dtype=np.float64))
        return out.numpy().astype(np.float64), grad


TORCH_TARGETS: Dict[str, Callable] = {
    "log1p": lambda torch, s: torch.log1p(torch.clamp(s, min=0.0)),
    "cicada": lambda torch, s: torch.clamp(32.0 * torch.log(torch.clamp(s, min=1e-30)), 0.0, 256.0),
    "identity": lambda torch, s: s,
}


def gap_gradient(teacher, student, target: str, scale: float, note: Callable[[str], None]):
    """A GapGradient if both models can be differentiated on a probe point, else None (sampled rounds only)."""
    return _if_differentiable(GapGradient(teacher, student, target, scale), teacher.n_features, note,
                              "using sampled active rounds")


def teacher_gradient(teacher, note: Callable[[str], None]):
    """d teacher score / d raw input (a callable) if the teacher can be differentiated, else None."""
    gradients = TeacherGradient(teacher)
    return _if_differentiable(gradients.gradient, teacher.n_features, note, "`uphill` queries drawn as `inrange`")


def _if_differentiable(gradients: Callable, n_features: int, note: Callable[[str], None], fallback: str):
    try:
        probe = np.zeros((2, n_features), dtype=np.float32)
        if not np.all(np.isfinite(gradients(probe))):
            raise ValueError("non-finite gradient")
    except Exception as exc:  # e.g. a torch.export teacher frozen for inference
        note(f"gradient ascent unavailable ({type(exc).__name__}: {exc}); {fallback}")
        return None
    return gradients
