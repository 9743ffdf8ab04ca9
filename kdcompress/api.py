"""Public functions: each CLI verb is a thin wrapper over one of these."""
from __future__ import annotations

from typing import Optional, Sequence

from .data import Dataset, load_dataset
from .errors import KDError


def _dataset(data, split_seed: int = 0, n_features: Optional[int] = None) -> Dataset:
    """Tabular splits use a fixed seed so that every training seed is judged on the same test rows.
    `n_features`: a model's input width, which picks the grey or colour reading of an image folder."""
    return data if isinstance(data, Dataset) else load_dataset(data, seed=split_seed, n_features=n_features)


def _image_reading(data, color: Optional[bool]) -> Dataset:
    if color is None or isinstance(data, Dataset):
        return _dataset(data)
    from .data.images import load_image_folder
    return load_image_folder(data, color=color)  # refuses anything but an MVTec-layout folder


def synth_adc2021(out, events: int = 200_000, seed: int = 0, signal_events: Optional[int] = None) -> dict:
    """Write a seeded synthetic ADC2021-format folder (background splits + one file per signal)."""
    from .data.synth_adc2021 import write_dataset
    if events < 40:
        raise KDError("--events must be at least 40")
    return write_dataset(out, events=events, seed=seed, signal_events=signal_events)


def synth_calo(out, events: int = 200_000, seed: int = 0, signal_events: Optional[int] = None) -> dict:
    """Write a seeded synthetic CaloRegions folder (zero-bias splits + one file per anomaly class)."""
    from .data.synth_calo import write_dataset
    if events < 40:
        raise KDError("--events must be at least 40")
    return write_dataset(out, events=events, seed=seed, anomaly_events=signal_events)


def train_teacher(data, out, arch: str = "dense-ae", hidden: Optional[Sequence[int]] = None,
                  latent: Optional[int] = None, epochs: int = 40, seed: int = 0, quiet: bool = False,
                  color: Optional[bool] = None, **kwargs):
    """Train a teacher on the normal events of `data` and save it as a kdcompress checkpoint at `out`.
    `color` (image folders): True reads them in colour, False in grey, None as their train/good images are.
    `hidden` and `latent` default per architecture (512,256,128 and 8; conv-ae: channels 16,32 and 20)."""
    from .teachers.train import train_teacher as _train
    return _train(_image_reading(data, color), out, arch=arch, hidden=hidden, latent=latent, epochs=epochs,
                  seed=seed, quiet=quiet, **kwargs)


def distill(teacher, data, out, score: Optional[str] = None, quiet: bool = False, auto: bool = False,
            budget_macs: Optional[int] = None, budget_bops: Optional[int] = None, **config) -> dict:
    """Distil `teacher` (path or Teacher) into a quantized student folder at `out`; returns metrics.

    `auto=True` picks query strategy, head and width under the MAC/BOP budget by label-free fidelity."""
    from .distill import DistillConfig, distill as _distill
    from .quant import QuantConfig
    from .teachers import Teacher, load_teacher
    dataset = _dataset(data)
    if not isinstance(teacher, Teacher):
        teacher = load_teacher(teacher, score=score, n_features=dataset.n_features)
    if teacher.n_features != dataset.n_features:  # an image folder the teacher saw in the other reading
        dataset = _dataset(data, n_features=teacher.n_features)
    quant = config.pop("quant", None)
    if not isinstance(quant, QuantConfig):
        quant = QuantConfig(**(quant or {}))
    try:
        cfg = DistillConfig(quant=quant, **config)
    except TypeError as exc:
        raise KDError(f"distill: {exc}") from None
    if auto:
        from .distill.auto import auto_distill
        return auto_distill(teacher, dataset, out, cfg, budget_macs=budget_macs, budget_bops=budget_bops,
                            quiet=quiet)
    return _distill(teacher, dataset, out, cfg, quiet=quiet)
