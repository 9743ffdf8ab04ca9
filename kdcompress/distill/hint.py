"""Residual hint: a training-only side task that shows the student *why* the teacher scores as it does.

A reconstruction teacher's score is the mean of its per-feature residuals squared. During training a float
dense layer on the student's last hidden layer regresses that residual vector (scaled to unit RMS on the
normal training events) next to the score itself: F targets per event instead of one. The side layer is
dropped after training, so the deployed student (and every export of it) is unchanged in size and form.
On the MNIST table it cut the AUROC lost to the teacher from -0.020 / -0.019 to -0.013 / -0.012 (student
seeds 1 and 2, same teacher and setting; benchmarks/README.md).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..teachers import Teacher

HINT_LAYER = "residual_hint"
MAX_REFERENCE_EVENTS = 20_000


class ResidualHint:
    """Targets, training model and loss of the residual hint for one student fit."""

    def __init__(self, teacher: Teacher, prep: Preprocessing, weight: float, reference: np.ndarray):
        if not teacher.has_residual():
            raise KDError(f"--hint-weight needs a teacher scored by reconstruction error (mse, masked_mse); "
                          f"this one scores '{teacher.score_name}'")
        self.teacher, self.prep, self.weight = teacher, prep, float(weight)
        rms = float(np.sqrt(np.mean(teacher.residual(reference[:MAX_REFERENCE_EVENTS]) ** 2)))
        self.rms = rms if np.isfinite(rms) and rms > 0 else 1.0
        self.models = {}  # id(student model) -> its training model (the side layer persists across fits)

    def targets(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(N, 1 + F): the score target, then the teacher's residual of the same (preprocessed) events."""
        residual = self.teacher.residual(self.prep.invert(z)) / self.rms
        return np.concatenate([np.asarray(y, np.float32)[:, None], residual.astype(np.float32)], axis=1)

    def training_model(self, tf, model):
        """`model` with the side layer's output appended to its score (layers shared: training it trains `model`)."""
        if id(model) not in self.models:
            hidden = _last_hidden(model).output
            if len(hidden.shape) > 2:
                hidden = tf.keras.layers.Flatten()(hidden)
            side = tf.keras.layers.Dense(self.teacher.n_features, name=HINT_LAYER)(hidden)
            self.models[id(model)] = tf.keras.Model(model.input, tf.keras.layers.Concatenate()([model.output, side]))
        return self.models[id(model)]

    def loss(self, tf, score_loss) -> Callable:
        """The score's loss (a keras loss or its name) on column 0 plus `weight` x the hint's mean squared error."""
        weight, score_loss = self.weight, tf.keras.losses.get(score_loss)

        def loss_with_hint(y_true, out):
            hint = tf.reduce_mean(tf.square(out[:, 1:] - y_true[:, 1:]), axis=-1)
            return score_loss(y_true[:, :1], out[:, :1]) + weight * hint
        return loss_with_hint


def _last_hidden(model):
    hidden = [layer for layer in model.layers if layer.name.startswith("relu")]
    if not hidden:
        raise KDError(f"--hint-weight needs a student with hidden ReLU layers; '{model.name}' has none")
    return hidden[-1]
