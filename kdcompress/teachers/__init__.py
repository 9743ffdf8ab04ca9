"""Teachers: PyTorch anomaly detectors with a `score(x) -> (N,)` interface on raw features."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data.preprocess import Preprocessing
from ..registry import SCORES, TEACHERS
from . import models, scores  # noqa: F401  (registers architectures and scores)
from . import conv_ae  # noqa: F401
from . import calo_ae  # noqa: F401
from . import edegan  # noqa: F401
from . import feature_kd  # noqa: F401


@dataclass
class Teacher:
    module: nn.Module
    score_name: str
    preprocessing: Preprocessing
    layout: Optional[dict] = None
    arch: Optional[dict] = None
    meta: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.preprocessing.n_features

    def score(self, x: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Anomaly score of raw events (N, F) -> (N,) float64."""
        return self.score_preprocessed(self.preprocessing.apply(x), batch)

    @torch.no_grad()
    def score_preprocessed(self, z: np.ndarray, batch: int = 8192) -> np.ndarray:
        fn = SCORES.get(self.score_name)
        _set_eval(self.module)
        out = []
        for start in range(0, len(z), batch):
            xb = torch.from_numpy(np.ascontiguousarray(z[start:start + batch], dtype=np.float32))
            out.append(fn(self.module(xb), xb, self.layout).double().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def _set_eval(module) -> None:
    try:
        module.eval()
    except NotImplementedError:  # torch.export modules are fixed in inference form already
        pass


def build_module(arch: dict) -> nn.Module:
    return TEACHERS.get(arch["name"])(**arch["kwargs"])


from .checkpoint import load_teacher, save_teacher  # noqa: E402,F401
