"""Students: a QKeras model plus student.json (preprocessing, score transform, quantization, provenance)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..fileio import read_json
from ..quant import QuantConfig
from . import energy, mlp  # noqa: F401  (registers builders)
from . import cnn  # noqa: F401
from . import paper_cnn  # noqa: F401

MODEL_FILE = "model.h5"
META_FILE = "student.json"
FORMAT_TAG = "kdcompress-student/1"


@dataclass
class Student:
    model: object
    meta: dict

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.meta["preprocessing"])

    @property
    def quant(self) -> QuantConfig:
        return QuantConfig.from_dict(self.meta["quant"])

    def score(self, x: np.ndarray, batch: int = 16384) -> np.ndarray:
        """Student output (the transformed teacher score) for raw events (N, F) -> (N,)."""
        return self.score_preprocessed(self.preprocessing.apply(x), batch)

    def score_preprocessed(self, z: np.ndarray, batch: int = 16384) -> np.ndarray:
        """In the target space: the raw model output, or log1p of it for heads that output an energy."""
        raw = self.raw_output(z, batch)
        return np.log1p(np.maximum(raw, 0.0)) if self.meta.get("output_transform") == "log1p" else raw

    def raw_output(self, z: np.ndarray, batch: int = 16384) -> np.ndarray:
        """What the model (and its firmware) outputs for preprocessed inputs."""
        out = [np.asarray(self.model(z[s:s + batch], training=False)).reshape(-1)
               for s in range(0, len(z), batch)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def save_student(student: Student, folder: Path) -> None:
    """Write model + student.json into an (already temporary) folder."""
    import warnings
    from ..fileio import write_json
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' legacy-HDF5 and quantizer-serialisation notices
        student.model.save(folder / MODEL_FILE, include_optimizer=False)
    write_json(folder / META_FILE, {"format": FORMAT_TAG, **student.meta})


def load_student(folder) -> Student:
    from ..tf_env import custom_objects, tensorflow
    folder = Path(folder)
    if not folder.is_dir():
        raise KDError(f"student folder {folder} does not exist")
    meta = read_json(folder / META_FILE)
    if meta.get("format") != FORMAT_TAG:
        raise KDError(f"{folder / META_FILE} is not a kdcompress student description")
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise KDError(f"student folder {folder} has no {MODEL_FILE}")
    tf = tensorflow()
    try:
        model = tf.keras.models.load_model(model_path, custom_objects=custom_objects(), compile=False)
    except (OSError, ValueError) as exc:
        raise KDError(f"cannot load {model_path}: {str(exc).splitlines()[0][:200]}") from None
    return Student(model=model, meta=meta)
