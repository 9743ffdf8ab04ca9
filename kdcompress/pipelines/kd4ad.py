"""kd4ad: the one-class MNIST experiment of Pol et al. 2023, "Knowledge Distillation for Anomaly Detection".

Per normal digit: a convolutional autoencoder teacher (about 19k parameters) learns the digit; QKeras CNN students
A..G (about 7.2k down to 77 parameters) regress log1p(teacher MSE / scale) with an L1 loss, optionally with noise
exposure (x + 0.1 N(0, 1) clipped to [0, 1]) and outlier exposure (the teacher's score on non-digit images);
teacher and students are scored by AUROC on the digit's test images against as many other-digit test images.
Co-learning (training teacher and student together) is not implemented.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import PIPELINES
from ..errors import KDError

PAPER_AUROC = {"teacher": 0.948, "A": 0.936, "B": 0.935, "C": 0.918, "D": 0.882, "E": 0.869, "F": 0.784,
               "G": 0.818}  # mean over digits, baseline MNIST (no exposure)
PAPER_TEACHER_PARAMS = 19_000
EXPOSURES = {"noise": "pixel-noise", "outliers": "outliers", "patches": "patches"}  # recipe name -> query strategy
KD4AD_MIN_QUERIES = 20_000  # images through a CNN: the tabular floor (100k) would cost 5x the time
ALL_DIGITS = tuple(range(10))
ALL_STUDENTS = tuple("ABCDEFG")


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


@PIPELINES.register("kd4ad")
def kd4ad(out: Path, data: Optional[str] = None, digits: List[int] = ALL_DIGITS,
          students: List[str] = ALL_STUDENTS, exposure: List[str] = ("noise", "outliers"),
          exposure_fraction: float = 1.0, outliers: Optional[str] = None, outlier_count: int = 2000,
          teacher_epochs: int = 100, student_epochs: int = 60, batch: Optional[int] = None, bits: int = 8,
          pool: str = "avg", reweight: str = "none", score_scale: Optional[float] = None,
          export: List[str] = ("onnx", "tflite"), export_digits: Optional[List[int]] = None,
          split_seed: int = 0, seed: int = 0, quiet: bool = False):
    """Run the experiment in `out`; `data` = a folder of MNIST idx files (default ../shared/data/mnist)."""
    from ..data.mnist import load_mnist_folder, make_splits, split_summary
    start = time.perf_counter()
    out = Path(out)
    digits, students = _check_choices(digits, students, exposure, export, export_digits, exposure_fraction,
                                      pool)
    if outliers and "outliers" not in exposure:
        raise KDError("outliers is given but exposure does not include 'outliers'")
    files = load_mnist_folder(data)
    splits = make_splits(files, seed=split_seed)
    _write_split(out / "split.json", splits)
    _say(f"[kd4ad] MNIST from {files.folder} ({splits['protocol']}); digits {digits}, students {students}", quiet)
    outlier_file = _outlier_file(out, outliers, outlier_count, seed) if "outliers" in exposure else None
    config = _distill_config(exposure, exposure_fraction, outlier_file, student_epochs, batch, bits, pool,
                             reweight, score_scale, seed)
    config.validate()
    runs = {}
    for digit in digits:
        exported = list(export) if export_digits is None or digit in export_digits else []
        runs[digit] = _run_digit(files, splits, digit, out / f"digit{digit}", students, config, teacher_epochs,
                                 exported, seed, quiet)
    results = _results(runs, students, exposure, config, split_summary(splits), files.folder, outlier_file)
    results["runtime_s"] = {"total": round(time.perf_counter() - start, 1),
                            **{str(d): round(r["seconds"], 1) for d, r in runs.items()}}
    return results, _markdown(results, students)


def _check_choices(digits, students, exposure, export, export_digits, exposure_fraction, pool):
    from ..export import parse_targets
    from ..students.paper_cnn import POOLS, VARIANTS
    bad = [d for d in list(digits) + list(export_digits or []) if d not in ALL_DIGITS]
    if bad or not digits or len(set(digits)) != len(digits):
        raise KDError(f"digits must be distinct values 0-9, got {list(digits)} (export_digits {export_digits})")
    unknown = [s for s in students if s not in VARIANTS]
    if unknown or not students:
        raise KDError(f"students must be among {', '.join(VARIANTS)}, got {list(students)}")
    odd = [e for e in exposure if e not in EXPOSURES]
    if odd:
        raise KDError(f"exposure must be among {', '.join(EXPOSURES)}, got {odd}")
    if exposure and exposure_fraction <= 0:
        raise KDError(f"exposure_fraction must be > 0, got {exposure_fraction}")
    if pool not in POOLS:
        raise KDError(f"pool must be one of {', '.join(POOLS)}, got '{pool}'")
    if export:
        parse_targets(list(export))
    return list(digits), list(students)


def _write_split(path: Path, splits: dict) -> None:
    """Every digit's train/val/test indices (into the fit and test files), so the split can be checked."""
    from ..fileio import write_json
    indices = {str(d): {k: v.tolist() for k, v in parts.items()} for d, parts in splits["indices"].items()}
    write_json(path, {k: v for k, v in splits.items() if k != "indices"} | {"indices": indices})


def _outlier_file(out: Path, path: Optional[str], count: int, seed: int) -> Path:
    """The outlier-exposure images as an .npz (X) that distillation reads: the user's file or synthetic shapes."""
    from ..data.mnist import read_outlier_images, synthetic_outliers
    images = read_outlier_images(path) if path else synthetic_outliers(count, seed=seed)
    if len(images) == 0:
        raise KDError("the outlier-exposure set is empty")
    from ..fileio import atomic_file
    target = out / "outliers.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        np.savez(tmp, X=images)
    return target


def _distill_config(exposure, fraction, outlier_file, epochs, batch, bits, pool, reweight, score_scale, seed):
    """Score regression with L1 loss on log1p(score / scale); inputs stay raw [0, 1] pixels (preprocess 'none')."""
    from ..distill import DistillConfig
    from ..quant import QuantConfig
    return DistillConfig(student="paper-cnn", student_kwargs={"pool": pool}, preprocess="none",
                         quant=QuantConfig(bits=bits, relu_bits=bits), target="log1p", score_scale=score_scale,
                         loss="mae", reweight=reweight, queries={EXPOSURES[e]: float(fraction) for e in exposure},
                         outliers=str(outlier_file) if outlier_file else None, min_queries=KD4AD_MIN_QUERIES,
                         epochs=epochs, batch=batch, seed=seed)


def _run_digit(files, splits, digit, folder: Path, students, config, teacher_epochs, export, seed, quiet) -> dict:
    """Teacher, then every student for one normal digit: AUROCs, sizes, export manifests."""
    from dataclasses import replace
    from ..data.mnist import ANOMALY_SIGNAL, one_class_dataset
    from ..distill import distill
    from ..teachers.conv_ae import train_conv_ae
    start = time.perf_counter()
    data = one_class_dataset(files, splits, digit)
    _say(f"[kd4ad] digit {digit}: {data.describe()}", quiet)
    with _torch_threads(1):
        teacher = train_conv_ae(data, folder / "teacher.pt", epochs=teacher_epochs, seed=seed, quiet=quiet)
    run = {"auroc": {}, "spearman": {}, "params": {}, "macs": {}, "exports": {}}
    for variant in students:
        cfg = replace(config, student_kwargs={**config.student_kwargs, "variant": variant})
        _say(f"[kd4ad] digit {digit}: student {variant}", quiet)
        result = distill(teacher, data, folder / f"student_{variant}", cfg, quiet=quiet)
        run["auroc"]["teacher"] = result["teacher"][ANOMALY_SIGNAL]["auroc"]
        run["auroc"][variant] = result["student"][ANOMALY_SIGNAL]["auroc"]
        run["spearman"][variant] = result["fidelity"]["spearman"]
        run["params"].update(teacher=result["params"]["teacher"], **{variant: result["params"]["student"]})
        run["macs"].update(teacher=result["macs"]["teacher"], **{variant: result["macs"]["student"]})
        if export:
            run["exports"][variant] = _export(folder / f"student_{variant}", folder / f"export_{variant}", export,
                                              data, seed, quiet)
    run["seconds"] = time.perf_counter() - start
    return run


@contextlib.contextmanager
def _torch_threads(count: int):
    """Small conv nets on small batches run faster single-threaded, and far faster on a busy machine."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _export(student_dir: Path, out: Path, targets, data, seed, quiet) -> dict:
    """Export one student, one folder per target: a failed verification is recorded, and keeps the other targets."""
    from ..export import export
    artefacts = {}
    for target in targets:
        try:
            manifest = export(student_dir, [target], out=out / target, data=data, seed=seed, quiet=True)
        except KDError as exc:
            _say(f"[kd4ad] {target} export of {student_dir.name} failed: {exc}", quiet)
            artefacts[target] = {"error": str(exc)}
            continue
        artefacts.update({art["target"]: {"path": str(out / target / art["path"]), **_agreement(art)}
                          for art in manifest["artefacts"]})
    return artefacts


def _agreement(artefact: dict) -> dict:
    from ..data.mnist import ANOMALY_SIGNAL
    agree = artefact.get("agreement", {})
    kept = {k: agree[k] for k in ("max_abs_diff", "tolerance") if k in agree}
    if ANOMALY_SIGNAL in agree.get("auroc", {}):
        kept["auroc"] = agree["auroc"][ANOMALY_SIGNAL]
    return kept


def _results(runs: Dict[int, dict], students, exposure, config, split, folder, outlier_file) -> dict:
    models = ["teacher", *students]
    ours = {m: {str(d): r["auroc"][m] for d, r in runs.items()} for m in models}
    mean = {m: float(np.mean(list(ours[m].values()))) for m in models}
    gap = {s: mean["teacher"] - mean[s] for s in students}
    paper_gap = {s: PAPER_AUROC["teacher"] - PAPER_AUROC[s] for s in students}
    first = next(iter(runs.values()))
    return {
        "paper": dict(PAPER_AUROC),
        "ours": ours,
        "mean": mean,
        "gap": {**gap, "mean": float(np.mean(list(gap.values())))},
        "fidelity_spearman": {s: {str(d): r["spearman"][s] for d, r in runs.items()} for s in students},
        "paper_gap": {**paper_gap, "mean": float(np.mean(list(paper_gap.values())))},
        "params": first["params"],
        "macs": first["macs"],
        "exposure": list(exposure),
        "queries": dict(config.queries),
        "outliers": str(outlier_file) if outlier_file else None,
        "data": str(Path(folder).resolve()),
        "split": split,
        "exports": {str(d): r["exports"] for d, r in runs.items() if r["exports"]},
        "co_learning": "not implemented",
    }


def _markdown(results: dict, students) -> str:
    from ..students.paper_cnn import VARIANTS
    models = ["teacher", *students]
    ours, mean = results["ours"], results["mean"]
    lines = ["## AUROC per normal digit (test: the digit's test images vs as many other-digit test images)", "",
             "| digit | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for digit in ours["teacher"]:
        lines.append(f"| {digit} | " + " | ".join(f"{ours[m][digit]:.3f}" for m in models) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[m]:.3f}**" for m in models) + " |")
    lines.append("| paper (mean, baseline) | " + " | ".join(f"{results['paper'][m]:.3f}" for m in models) + " |")
    lines.append("| gap to teacher | – | " + " | ".join(f"{results['gap'][s]:+.3f}" for s in students) + " |")
    lines.append("| paper gap | – | " + " | ".join(f"{results['paper_gap'][s]:+.3f}" for s in students) + " |")
    spearman = {s: np.mean(list(results["fidelity_spearman"][s].values())) for s in students}
    lines.append("| Spearman to teacher (probe set, mean) | – | " + " | ".join(f"{spearman[s]:.3f}" for s in students)
                 + " |")
    params = results["params"]
    lines.append("| parameters | " + " | ".join(f"{params[m]:,}" for m in models) + " |")
    budgets = [f"~{PAPER_TEACHER_PARAMS:,}"] + [f"{VARIANTS[s].budget:,}" for s in students]
    lines.append("| paper parameters | " + " | ".join(budgets) + " |")
    lines += ["", f"Mean student gap (teacher mean AUROC - student mean AUROC, students {', '.join(students)}): "
              f"ours {results['gap']['mean']:.4f}, paper {results['paper_gap']['mean']:.4f}.",
              f"Exposure: {', '.join(results['exposure']) or 'none (baseline)'}; queries {results['queries']}. "
              f"Co-learning: not implemented.",
              f"Data: {results['data']} ({results['split']['protocol']}, split seed {results['split']['seed']}, "
              f"fractions {results['split']['fractions']}); runtime {results['runtime_s']['total']:.0f} s."]
    return "\n".join(lines + _export_lines(results["exports"]))


def _export_lines(exports: dict) -> list:
    if not exports:
        return []
    lines = ["", "## Exports (ONNX / TFLite, verified against the QKeras student)", "",
             "| digit | student | artefacts |", "|---|---|---|"]
    for digit, per_student in exports.items():
        for variant, arts in per_student.items():
            lines.append(f"| {digit} | {variant} | " + ", ".join(_artefact_text(t, a) for t, a in arts.items()) + " |")
    return lines


def _artefact_text(target: str, info: dict) -> str:
    if "error" in info:
        return f"{target} FAILED: {info['error']}"
    auroc, diff = info.get("auroc", float("nan")), info.get("max_abs_diff", float("nan"))
    return f"{target} AUROC {auroc:.3f} (max diff {diff:.2g})"
