"""teacher.pt formats: kdcompress checkpoint, TorchScript archive, torch.export program.

Nothing is ever unpickled as code: checkpoints load with weights_only=True.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Optional

import torch

from ..data.preprocess import Preprocessing
from ..errors import KDError
from ..fileio import atomic_file
from ..registry import SCORES
from . import Teacher, build_module

FORMAT_TAG = "kdcompress-teacher/1"
PICKLE_HELP = ("convert it with torch.jit.script(model).save(PATH) (TorchScript) or save a kdcompress "
               "checkpoint with kdcompress.teachers.save_teacher")


def save_teacher(teacher: Teacher, path) -> None:
    """Write a kdcompress checkpoint (architecture config + state_dict + score + preprocessing)."""
    payload = {
        "format": FORMAT_TAG,
        "arch": teacher.arch,
        "state_dict": teacher.module.state_dict(),
        "score": teacher.score_name,
        "preprocessing": teacher.preprocessing.to_dict(),
        "layout": teacher.layout,
        "meta": teacher.meta,
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_teacher(path, score: Optional[str] = None, n_features: Optional[int] = None) -> Teacher:
    """Load any accepted teacher format; `score` overrides/sets the scoring function."""
    path = Path(path)
    if not path.is_file():
        raise KDError(f"teacher file {path} does not exist")
    kind = _archive_kind(path)
    if kind == "torchscript":
        return _foreign_teacher(path, _load_torchscript(path), score, n_features, "torchscript")
    if kind == "export":
        return _foreign_teacher(path, _load_exported(path), score, n_features, "torch.export")
    return _load_checkpoint(path, score)


def _archive_kind(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        return "other"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any("serialized_exported_program" in n or n.endswith("models/model.json") or "/models/" in n
           for n in names):
        return "export"
    return "checkpoint"


def _load_torchscript(path: Path):
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises many types for broken archives
        raise KDError(f"{path} is not a loadable TorchScript archive: {_first_line(exc)}") from None


def _load_exported(path: Path):
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise KDError(f"{path} is not a loadable torch.export program: {_first_line(exc)}") from None


def _foreign_teacher(path, module, score, n_features, kind) -> Teacher:
    if score is None:
        raise KDError(f"{path} is a {kind} model: say how to score it with --score "
                      f"({', '.join(SCORES.names())}; 'mse' when it returns a reconstruction)")
    SCORES.get(score)
    n = n_features or _guess_n_features(module)
    if n is None:
        raise KDError(f"cannot tell the input width of {path}; pass n_features")
    return Teacher(module=module, score_name=score, preprocessing=Preprocessing.identity(n),
                   meta={"source": kind})


def _guess_n_features(module) -> Optional[int]:
    for p in module.parameters():
        if p.dim() == 2:
            return int(p.shape[1])
    return None


def _load_checkpoint(path: Path, score: Optional[str]) -> Teacher:
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise KDError(f"{path} is not a readable teacher file (corrupt or not a torch file)") from None
        raise KDError(f"{path} holds pickled code (e.g. a whole nn.Module), which is never loaded; "
                      f"{PICKLE_HELP}") from None
    except Exception as exc:
        reason = "truncated or corrupt archive" if "central directory" in str(exc) else _first_line(exc)
        raise KDError(f"{path} is not a readable teacher file: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        raise KDError(f"{path} is a plain torch file, not a kdcompress teacher checkpoint; {PICKLE_HELP}")
    module = build_module(payload["arch"])
    try:
        module.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise KDError(f"{path}: weights do not fit the architecture: {_first_line(exc)}") from None
    name = score or payload["score"]
    SCORES.get(name)
    return Teacher(module=module.eval(), score_name=name,
                   preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
                   layout=payload.get("layout"), arch=payload["arch"], meta=payload.get("meta", {}))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
