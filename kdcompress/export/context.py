"""What every exporter works from: the source model, the held-out events and the call's options."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..data import Dataset, load_dataset
from ..errors import KDError
from ..fileio import sha256_file
from .verify import BACKGROUND

STUDENT = "student"
TEACHER = "teacher"
MAX_EVENTS_PER_SET = 200_000  # ONNX/TFLite verification: all held-out events up to this many per set


@dataclass
class Source:
    """A student folder or a teacher file, loaded."""
    kind: str
    path: Path
    model: object  # kdcompress.students.Student or kdcompress.teachers.Teacher

    @property
    def meta(self) -> dict:
        return self.model.meta or {}

    @property
    def n_features(self) -> int:
        return int(self.model.preprocessing.n_features)

    def model_file(self) -> Path:
        from ..students import MODEL_FILE
        return self.path / MODEL_FILE if self.kind == STUDENT else self.path

    def describe(self) -> dict:
        info = {"kind": self.kind, "path": str(self.path.resolve()), "model_file": self.model_file().name,
                "sha256": sha256_file(self.model_file()), "n_features": self.n_features}
        if self.kind == STUDENT:
            info.update(student=self.meta.get("student"), score_transform=self.meta.get("score_transform"),
                        quant=self.meta.get("quant"), teacher_fingerprint=self.meta.get("teacher_fingerprint"))
        else:
            info.update(score=self.model.score_name, arch=self.model.arch)
        return info


def load_source(source) -> Source:
    """A directory is a student folder; a file is a teacher (.pt checkpoint, TorchScript, torch.export)."""
    path = Path(source)
    if path.is_dir():
        from ..students import load_student
        return Source(STUDENT, path, load_student(path))
    if path.is_file():
        from ..teachers import load_teacher
        return Source(TEACHER, path, load_teacher(path))
    raise KDError(f"export source {path} does not exist (expected a student folder or a teacher file)")


@dataclass
class DataChoice:
    dataset: Dataset
    matches_training: Optional[bool]

    def describe(self) -> dict:
        return {"source": self.dataset.source, "fingerprint": self.dataset.fingerprint(),
                "matches_training": self.matches_training}


def resolve_data(source: Source, data) -> DataChoice:
    """`data` (Dataset or path), else the data the source was trained on (student.json data_source).

    Tabular files are split by a seed; the split whose fingerprint equals the training data's is taken,
    so the background test split really is held out.
    """
    expected = source.meta.get("data_fingerprint")
    if isinstance(data, Dataset):
        choice = DataChoice(data, None if expected is None else data.fingerprint() == expected)
    else:
        path = data or source.meta.get("data_source")
        if not path:
            raise KDError(f"the {source.kind} {source.path} does not record its training data: pass data= "
                          f"(--data) to verify the export on held-out events")
        choice = _load_matching(path, expected, _split_seeds(source.meta), source.n_features)
    if choice.dataset.n_features != source.n_features:
        raise KDError(f"the {source.kind} expects {source.n_features} features but the data "
                      f"{choice.dataset.source} has {choice.dataset.n_features}")
    return choice


def _split_seeds(meta: dict) -> list:
    seeds = [meta.get("split_seed"), 0, meta.get("seed")]
    return [s for i, s in enumerate(seeds) if s is not None and s not in seeds[:i]]


def _load_matching(path, expected: Optional[str], seeds: list, n_features: Optional[int] = None) -> DataChoice:
    first = None
    for seed in seeds:
        dataset = load_dataset(path, seed=seed, n_features=n_features)
        if expected is None:
            return DataChoice(dataset, None)
        if dataset.fingerprint() == expected:
            return DataChoice(dataset, True)
        first = first or dataset
        if dataset.kind != "tabular":  # only tabular splits depend on the seed
            break
    return DataChoice(first, False)


def held_out_sets(dataset: Dataset) -> Dict[str, np.ndarray]:
    """Background test split plus every signal, raw features."""
    if BACKGROUND in dataset.signals:
        raise KDError(f"a signal in {dataset.source} is named '{BACKGROUND}', which names the background test split")
    sets = {BACKGROUND: dataset.test, **dataset.signals}
    return {name: x for name, x in sets.items() if len(x)}


def share_events(sizes: Dict[str, int], total: int) -> Dict[str, int]:
    """Split `total` events over the sets as equally as their sizes allow (unused shares move on)."""
    counts = {name: 0 for name in sizes}
    open_sets = [name for name in sizes if sizes[name] > 0]
    remaining = total
    while open_sets and remaining > 0:
        share = max(1, remaining // len(open_sets))
        for name in list(open_sets):
            take = min(share, sizes[name] - counts[name], remaining)
            counts[name] += take
            remaining -= take
            if counts[name] == sizes[name]:
                open_sets.remove(name)
    return counts


def subsample(sets: Dict[str, np.ndarray], counts: Dict[str, int], seed: int) -> Dict[str, np.ndarray]:
    """Seeded subsample of each set (all rows, in order, when the count covers the set)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, x in sets.items():
        n = counts.get(name, len(x))
        out[name] = x if n >= len(x) else x[np.sort(rng.choice(len(x), size=n, replace=False))]
    return out


@dataclass
class ExportContext:
    source: Source
    data: DataChoice
    seed: int = 0
    quiet: bool = False
    options: dict = field(default_factory=dict)  # per target, e.g. options["fpga"] = FpgaOptions
    destination: Optional[Path] = None  # where the export folder lands once verified (absolute)

    def events(self, total: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Held-out raw events per set: `total` shared over the sets, else up to MAX_EVENTS_PER_SET each."""
        sets = held_out_sets(self.data.dataset)
        if total is None:
            counts = {name: min(len(x), MAX_EVENTS_PER_SET) for name, x in sets.items()}
        else:
            counts = share_events({name: len(x) for name, x in sets.items()}, total)
        return subsample(sets, counts, self.seed)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"[export] {text}", file=sys.stderr, flush=True)
