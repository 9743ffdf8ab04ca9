"""Numerical agreement of an exported artefact with its source model, plus manifest helpers.

Every exporter scores the same held-out events with the source model and with the artefact, then
reports `agreement`: number of events, largest absolute difference and the artefact's AUROC per signal
(background test split against each signal, kdcompress.bench.metrics.auroc).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterator, Mapping

import numpy as np

from ..bench import metrics

BACKGROUND = "background"

# distribution names tried in order for each reported package
VERSION_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "qkeras": ("qkeras",),
    "hls4ml": ("hls4ml",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime",),
    "tf2onnx": ("tf2onnx",),
    "torch": ("torch",),
}


def model_output(student, z: np.ndarray) -> np.ndarray:
    """What an exported student computes for preprocessed events: the model's own output (Student.raw_output),
    before any output transform the student applies on top (the energy head's log1p)."""
    raw_output = getattr(student, "raw_output", None)
    return raw_output(z) if raw_output else student.score_preprocessed(z)


def concatenated(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """All sets of `scores` as one flat float64 array, in the order of the mapping."""
    parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in scores.values()]
    return np.concatenate(parts) if parts else np.zeros(0)


def auroc_per_signal(scores: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """AUROC of background against each signal; empty without background or signals."""
    if BACKGROUND not in scores or len(scores[BACKGROUND]) == 0:
        return {}
    return {name: metrics.auroc(scores[BACKGROUND], values)
            for name, values in scores.items() if name != BACKGROUND and len(values)}


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    diff = np.abs(np.asarray(candidate, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    return float(diff.max()) if diff.size else 0.0


def agreement(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> dict:
    """Events, max |candidate - reference| and the candidate's AUROC per signal."""
    ref, cand = concatenated(reference), concatenated(candidate)
    return {"events": int(ref.size), "max_abs_diff": max_abs_diff(ref, cand), "auroc": auroc_per_signal(candidate)}


def auroc_gaps(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Per signal: AUROC(candidate) - AUROC(reference)."""
    ref, cand = auroc_per_signal(reference), auroc_per_signal(candidate)
    return {name: cand[name] - ref[name] for name in ref}


def versions() -> dict:
    """Installed versions of the export toolchain (None when a package is absent)."""
    from .. import __version__
    found = {name: _installed_version(dists) for name, dists in VERSION_DISTRIBUTIONS.items()}
    found["kdcompress"] = __version__
    return found


def _installed_version(distributions) -> str | None:
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def sha256_tree(folder: Path, exclude_suffixes=()) -> str:
    """sha256 over the files below `folder` in sorted relative-path order, each hashed as
    `relative/path` NUL `sha256(content)` newline; files ending in `exclude_suffixes` are skipped."""
    from ..fileio import sha256_file
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.endswith(tuple(exclude_suffixes)):
            continue
        h.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def library_output_silenced() -> Iterator[None]:
    """Send fd 1 and 2 (and Python's sys.stdout/stderr and warnings) to a scratch file: hls4ml, g++, Keras
    progress bars and the TFLite converter print, partly below Python."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
