"""pkdgan: P-KDGAN (Zhang, Chen and Sun, IJCAI 2020) on one-class MNIST.

Per normal digit: a wide EDE-GAN teacher learns the digit (GANomaly losses); a narrow EDE-GAN student is distilled
from it in two steps (step 1 teacher fixed, step 2 joint fine-tuning); the same student trained alone for as many
epochs is the baseline. All are scored by AUROC on the digit's test images against as many other-digit test
images; the distilled student is saved as a teacher-format checkpoint and exported to ONNX (verified).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import PIPELINES
from ..errors import KDError
from .compare import check_compare, compare_config
from .kd4ad import ALL_DIGITS, _say, _torch_threads, _write_split

# From the paper's abstract: on MNIST the student gains 1.77 AUROC points from distillation at 311:1 less computation.
PAPER = {"student_gain": 0.0177, "compression": 311.11}
MODELS = ("teacher", "alone", "step1", "student", "teacher_joint")
MODEL_LABELS = {"teacher": "teacher", "alone": "student alone", "step1": "P-KDGAN step 1",
                "student": "P-KDGAN student", "teacher_joint": "teacher after step 2",
                "score_regression": "score regression"}


@PIPELINES.register("pkdgan")
def pkdgan(out: Path, data: Optional[str] = None, digits: List[int] = ALL_DIGITS, teacher_width: int = 32,
           student_width: int = 4, latent: int = 32, teacher_epochs: int = 15, step1_epochs: int = 15,
           step2_epochs: int = 5, step2_lr_factor: float = 0.2, batch: int = 64, lr: float = 2e-4,
           weights: Optional[Dict[str, float]] = None, export: List[str] = ("onnx",),
           compare_student: Optional[str] = "B", compare_epochs: int = 60, split_seed: int = 0, seed: int = 0,
           quiet: bool = False):
    """Run the experiment in `out`; `data` = a folder of MNIST idx files (default ../shared/data/mnist)."""
    from ..data.mnist import load_mnist_folder, make_splits, one_class_dataset, split_summary
    start = time.perf_counter()
    out = Path(out)
    gan_weights = _check(digits, teacher_width, student_width, latent, (teacher_epochs, step1_epochs, step2_epochs),
                         batch, lr, step2_lr_factor, weights, export)
    check_compare(compare_student, compare_epochs)
    files = load_mnist_folder(data)
    splits = make_splits(files, seed=split_seed)
    _write_split(out / "split.json", splits)
    _say(f"[pkdgan] MNIST from {files.folder} ({splits['protocol']}); digits {list(digits)}", quiet)
    settings = dict(teacher_width=teacher_width, student_width=student_width, latent=latent,
                    teacher_epochs=teacher_epochs, step1_epochs=step1_epochs, step2_epochs=step2_epochs,
                    step2_lr_factor=step2_lr_factor, batch=batch, lr=lr)
    compare = compare_config(out, compare_student, compare_epochs, seed) if compare_student else None
    runs = {}
    for digit in digits:
        dataset = one_class_dataset(files, splits, digit)
        _say(f"[pkdgan] digit {digit}: {dataset.describe()}", quiet)
        with _torch_threads(1):
            runs[digit] = _run_digit(dataset, out / f"digit{digit}", settings, gan_weights, list(export), seed,
                                     quiet)
        if compare:
            _add_score_regression(runs[digit], dataset, out / f"digit{digit}", compare, quiet)
    results = _results(runs, settings, gan_weights, split_summary(splits), files.folder, compare_student)
    results["runtime_s"] = {"total": round(time.perf_counter() - start, 1),
                            **{str(d): round(r["seconds"], 1) for d, r in runs.items()}}
    _plot(out / "auroc.png", results)
    return results, _markdown(results)


def _check(digits, teacher_width, student_width, latent, epochs, batch, lr, step2_lr_factor, weights, export):
    from ..distill.pkdgan import GANWeights
    bad = [d for d in digits if d not in ALL_DIGITS]
    if bad or not digits or len(set(digits)) != len(digits):
        raise KDError(f"digits must be distinct values 0-9, got {list(digits)}")
    if min(teacher_width, student_width, latent, batch) < 1:
        raise KDError("teacher_width, student_width, latent and batch must be at least 1")
    if min(epochs) < 1:
        raise KDError(f"teacher_epochs, step1_epochs and step2_epochs must be at least 1, got {list(epochs)}")
    if student_width > teacher_width:
        raise KDError(f"student_width ({student_width}) must not exceed teacher_width ({teacher_width})")
    if not (lr > 0 and step2_lr_factor > 0):
        raise KDError(f"lr and step2_lr_factor must be > 0, got {lr} and {step2_lr_factor}")
    odd = [t for t in export if t != "onnx"]
    if odd:
        raise KDError(f"P-KDGAN students are float torch generators: export must be [onnx] or [], got {odd}")
    known = set(vars(GANWeights()))
    unknown = sorted(set(weights or {}) - known)
    if unknown:
        raise KDError(f"unknown P-KDGAN loss weight(s) {unknown} (known: {', '.join(sorted(known))})")
    odd = {k: v for k, v in (weights or {}).items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if odd:
        raise KDError(f"P-KDGAN loss weights must be numbers, got {odd}")
    gan_weights = GANWeights(**{k: float(v) for k, v in (weights or {}).items()})
    gan_weights.validate()
    return gan_weights


def _add_score_regression(run: dict, data, folder: Path, config, quiet: bool) -> None:
    """The QKeras student of the seed method (Pol et al.) distilled from the same trained teacher, for comparison."""
    from .compare import score_regression
    _say(f"[pkdgan] digit {data.extra.get('normal_digit')}: score-regression student "
         f"{config.student_kwargs['variant']} from the same teacher", quiet)
    result = score_regression(run["checkpoints"]["teacher"], data, folder / "student_score_regression", config,
                              quiet)
    run["auroc"]["score_regression"] = result["auroc"]
    run["spearman_to_teacher"]["score_regression"] = result["spearman"]
    run["params"]["score_regression"] = result["params"]
    run["macs"]["score_regression"] = result["macs"]


def _run_digit(data, folder: Path, s: dict, w, export, seed: int, quiet: bool) -> dict:
    """Teacher, baseline student, P-KDGAN steps 1 and 2 for one digit: AUROCs, sizes, checkpoints, exports."""
    import torch
    from ..distill import pkdgan as pk
    start = time.perf_counter()
    x, val = pk.check_images(data.train, "training images"), pk.check_images(data.val, "validation images")
    n, rng = data.n_features, lambda k: np.random.default_rng([seed, k])
    torch.manual_seed(seed)
    teacher = pk.GANPair(n, s["teacher_width"], s["latent"], s["lr"])
    history = {"teacher": pk.train_alone(teacher, x, val, s["teacher_epochs"], s["batch"], w, rng(1),
                                         "teacher EDE-GAN", quiet)}
    trained_teacher = pk.frozen_copy(teacher.generator)
    generators = {"teacher": trained_teacher}
    torch.manual_seed(seed + 1)
    alone = pk.GANPair(n, s["student_width"], s["latent"], s["lr"])
    student = pk.GANPair(n, s["student_width"], s["latent"], s["lr"])
    student.generator.load_state_dict(alone.generator.state_dict())  # same start and lr schedule as the baseline
    student.discriminator.load_state_dict(alone.discriminator.state_dict())
    history["alone"] = _train_baseline(alone, x, val, s, w, rng(2), quiet)
    generators["alone"] = alone.generator
    history["step1"] = pk.distill_step1(student, trained_teacher, x, val, s["step1_epochs"], s["batch"], w,
                                        rng(3), quiet)
    generators["step1"] = pk.frozen_copy(student.generator)
    for pair in (teacher, student):
        pair.set_lr(s["lr"] * s["step2_lr_factor"])
    history["step2"] = pk.joint_finetune(teacher, student, x, val, s["step2_epochs"], s["batch"], w, rng(4), quiet)
    generators.update(student=student.generator, teacher_joint=teacher.generator)
    run = _evaluate(data, generators)
    run["checkpoints"] = _save(folder, data, generators, seed)
    run["exports"] = _export(run["checkpoints"]["student"], folder / "export", export, data, seed, quiet)
    _plot_history(folder / "training.png", history, data.extra.get("normal_digit"))
    run["seconds"] = time.perf_counter() - start
    return run


def _train_baseline(alone, x, val, s: dict, w, rng, quiet: bool) -> dict:
    """The student alone on the distilled student's schedule: step 1's epochs at lr, step 2's at the lower lr."""
    from ..distill import pkdgan as pk
    first = pk.train_alone(alone, x, val, s["step1_epochs"], s["batch"], w, rng, "student alone", quiet)
    alone.set_lr(s["lr"] * s["step2_lr_factor"])
    second = pk.train_alone(alone, x, val, s["step2_epochs"], s["batch"], w, rng, "student alone, lower lr", quiet)
    return {key: first[key] + second[key] for key in first}


def _evaluate(data, generators: dict) -> dict:
    """AUROC per model; parameters and MACs of each deployed generator; student-teacher rank agreement."""
    import torch
    from ..bench.metrics import auroc, spearman
    from ..bench.size import torch_macs
    from ..data.mnist import ANOMALY_SIGNAL
    from ..distill.pkdgan import latent_scores, parameter_count
    test, anomalies = data.test, data.signals[ANOMALY_SIGNAL]
    scores = {m: (latent_scores(g, test), latent_scores(g, anomalies)) for m, g in generators.items()}
    example = torch.zeros(1, data.n_features)
    both = {m: np.concatenate(v) for m, v in scores.items()}
    return {"auroc": {m: auroc(*v) for m, v in scores.items()},
            "spearman_to_teacher": {m: spearman(both["teacher"], both[m]) for m in generators if m != "teacher"},
            "params": {m: parameter_count(g) for m, g in generators.items()},
            "macs": {m: torch_macs(g.eval(), example) for m, g in generators.items()}}


def _save(folder: Path, data, generators: dict, seed: int) -> Dict[str, str]:
    """The trained teacher and the distilled student as kdcompress teacher checkpoints (score latent_mse)."""
    from ..data.preprocess import Preprocessing
    from ..teachers import Teacher, save_teacher
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for model, name in (("teacher", "teacher.pt"), ("student", "student.pt"), ("alone", "student_alone.pt")):
        g = generators[model]
        arch = {"name": "ede-gan", "kwargs": {"n_features": data.n_features, "width": g.width, "latent": g.latent}}
        save_teacher(Teacher(module=g.eval(), score_name="latent_mse",
                             preprocessing=Preprocessing.identity(data.n_features), arch=arch,
                             meta={"data_fingerprint": data.fingerprint(), "seed": seed, "role": model}),
                     folder / name)
        paths[model] = str(folder / name)
    return paths


def _export(checkpoint: str, out: Path, targets, data, seed: int, quiet: bool) -> dict:
    from ..data.mnist import ANOMALY_SIGNAL
    from ..export import export
    if not targets:
        return {}
    manifest = export(checkpoint, list(targets), out=out, data=data, seed=seed, quiet=True)
    art = manifest["artefacts"][0]
    agree = art.get("agreement", {})
    _say(f"[pkdgan] ONNX of the student: {out / art['path']} (largest relative difference "
         f"{agree.get('max_rel_diff', float('nan')):.2g})", quiet)
    return {"onnx": {"path": str(out / art["path"]), "max_rel_diff": agree.get("max_rel_diff"),
                     "auroc": agree.get("auroc", {}).get(ANOMALY_SIGNAL)}}


def _results(runs: dict, settings: dict, w, split: dict, folder, compare_student: Optional[str]) -> dict:
    models = MODELS + (("score_regression",) if compare_student else ())
    ours = {m: {str(d): r["auroc"][m] for d, r in runs.items()} for m in models}
    mean = {m: float(np.mean(list(v.values()))) for m, v in ours.items()}
    first = next(iter(runs.values()))
    sizes = ("teacher", "student") + (("score_regression",) if compare_student else ())
    return {
        "paper": dict(PAPER),
        "models": list(models),
        "compare_student": compare_student,
        "ours": ours,
        "mean": mean,
        "student_gain": mean["student"] - mean["alone"],
        "gap_to_teacher": mean["teacher"] - mean["student"],
        "compression_macs": first["macs"]["teacher"] / first["macs"]["student"],
        "compression_params": first["params"]["teacher"] / first["params"]["student"],
        "params": {m: first["params"][m] for m in sizes},
        "macs": {m: first["macs"][m] for m in sizes},
        "spearman_to_teacher": {m: {str(d): r["spearman_to_teacher"][m] for d, r in runs.items()}
                                for m in models if m != "teacher"},
        "settings": settings,
        "weights": vars(w),
        "checkpoints": {str(d): r["checkpoints"] for d, r in runs.items()},
        "exports": {str(d): r["exports"] for d, r in runs.items() if r["exports"]},
        "data": str(Path(folder).resolve()),
        "split": split,
    }


def _markdown(results: dict) -> str:
    ours, mean, models = results["ours"], results["mean"], results["models"]
    lines = ["## AUROC per normal digit (test: the digit's test images vs as many other-digit test images)", "",
             "| digit | " + " | ".join(MODEL_LABELS[m] for m in models) + " |", "|---" * (len(models) + 1) + "|"]
    for digit in ours["teacher"]:
        lines.append(f"| {digit} | " + " | ".join(f"{ours[m][digit]:.3f}" for m in models) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[m]:.3f}**" for m in models) + " |")
    rank = {m: np.mean(list(v.values())) for m, v in results["spearman_to_teacher"].items()}
    lines.append("| Spearman to teacher (mean) | – | " + " | ".join(f"{rank[m]:.3f}" for m in models[1:]) + " |")
    macs, params = results["macs"], results["params"]
    lines += ["", f"Distillation gain (P-KDGAN student - student alone, mean AUROC): "
              f"{results['student_gain']:+.4f}; the paper reports +{PAPER['student_gain']:.4f} on MNIST.",
              f"Teacher - P-KDGAN student: {results['gap_to_teacher']:+.4f}.",
              f"Size: teacher generator {params['teacher']:,} parameters, {macs['teacher']:,} MACs; student "
              f"{params['student']:,} parameters, {macs['student']:,} MACs "
              f"({results['compression_macs']:.0f}x fewer MACs; the paper's MNIST student {PAPER['compression']:.0f}x).",
              *_compare_lines(results),
              f"Settings: {results['settings']}; loss weights {results['weights']}.",
              f"Data: {results['data']} ({results['split']['protocol']}, split seed {results['split']['seed']}); "
              f"runtime {results['runtime_s']['total']:.0f} s. The last epoch of every stage is kept "
              f"(no choice uses anomaly labels).", "", "![AUROC per digit](auroc.png)"]
    return "\n".join(lines + _export_lines(results["exports"]))


def _compare_lines(results: dict) -> list:
    if not results["compare_student"]:
        return []
    macs, params, mean = results["macs"], results["params"], results["mean"]
    return [f"Score regression (the seed method, Pol et al.): QKeras paper CNN {results['compare_student']} "
            f"({params['score_regression']:,} parameters, {macs['score_regression']:,} MACs, 8-bit) trained on "
            f"log1p of the same teacher's score with noise and outlier exposure: mean AUROC "
            f"{mean['score_regression']:.3f} against the P-KDGAN student's {mean['student']:.3f}; it also "
            f"exports to TFLite and hls4ml (digitN/student_score_regression)."]


def _export_lines(exports: dict) -> list:
    if not exports:
        return []
    lines = ["", "## ONNX export of the P-KDGAN student (verified against the torch generator)", "",
             "| digit | file | AUROC | largest relative difference |", "|---|---|---|---|"]
    for digit, arts in exports.items():
        onnx = arts["onnx"]
        auroc = onnx["auroc"] if onnx["auroc"] is not None else float("nan")
        inside_run = Path(*Path(onnx["path"]).parts[-3:])  # digitN/export/student.onnx
        lines.append(f"| {digit} | {inside_run} | {auroc:.3f} | {onnx['max_rel_diff']:.2g} |")
    return lines


def _plot(path: Path, results: dict) -> None:
    from ..plots import grouped_bars
    grouped_bars(path, {MODEL_LABELS[m]: results["ours"][m] for m in results["models"]}, "normal digit", "AUROC",
                 "P-KDGAN on one-class MNIST")


def _plot_history(path: Path, history: dict, digit) -> None:
    """Generator loss, distillation loss and mean validation score of every stage, step 2 after step 1."""
    from ..plots import stage_panels
    teacher, alone, step1, step2 = (history[k] for k in ("teacher", "alone", "step1", "step2"))
    t_end, s_end = len(teacher["g"]), len(step1["g"])

    def span(values, offset=0):
        return list(range(offset + 1, offset + len(values) + 1)), values

    panels = {}
    for key, name in (("g", "generator loss (GAN terms)"), ("kd", "distillation loss"),
                      ("val score", "mean score, validation images")):
        curves = {}
        if key != "kd":
            curves["teacher"] = span(teacher[key])
            curves["student alone"] = span(alone[key])
        curves["P-KDGAN student"] = span(step1[key] + step2[key])
        curves["teacher, step 2"] = span(step2[f"teacher {key}"] if key != "val score" else [], t_end)
        panels[name] = {label: c for label, c in curves.items() if c[1]}
    stage_panels(path, panels, f"digit {digit}: P-KDGAN training (step 2 from epoch {s_end + 1} of the student)")
