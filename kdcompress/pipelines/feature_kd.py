"""feature-kd: feature-level distillation detectors (RD4AD, URD, DSKD) on one-class MNIST, then to the edge.

These methods distil features, not size: the detector keeps the full encoder and adds a decoder (and for DSKD
a second encoder). To deploy one on a small device, its image score is distilled into a small QKeras student
(the seed method, paper CNN `compare_student`), which exports to ONNX, TFLite and hls4ml like any student.

Per normal digit and method: the detector (AUROC on the digit's test images against as many other-digit test
images), its checkpoint (digitN/<method>.pt, a teacher file) with a verified ONNX export, and the QKeras
student distilled from it (AUROC, rank agreement with the detector, MACs). The encoder is the same for all
methods: loaded from `backbone` (a state_dict path, with `backbone_sha256`) or pretrained here by rotation
prediction on unlabelled images: `pool` (every digit's training images, no labels: the role ImageNet plays
for the papers) or `normal` (the normal digit's training images only).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import PIPELINES
from ..errors import KDError
from .compare import check_compare, compare_config, score_regression
from .kd4ad import ALL_DIGITS, _say, _torch_threads, _write_split

BACKBONE_SOURCES = ("pool", "normal")
METHOD_LABELS = {"rd": "RD4AD", "urd": "URD", "dskd": "DSKD"}


@PIPELINES.register("feature-kd")
def feature_kd(out: Path, data: Optional[str] = None, digits: List[int] = ALL_DIGITS,
               methods: List[str] = ("rd", "urd", "dskd"), width: int = 16, backbone: str = "pool",
               backbone_sha256: Optional[str] = None, backbone_epochs: int = 10, epochs: int = 30,
               batch: int = 32, lr: float = 0.005, teacher_lr: float = 0.0001, reduce: str = "max",
               export: List[str] = ("onnx",), compare_student: Optional[str] = "B", compare_epochs: int = 30,
               split_seed: int = 0, seed: int = 0, quiet: bool = False):
    """Run the experiment in `out`; `data` = a folder of MNIST idx files (default ../shared/data/mnist)."""
    from ..data.mnist import load_mnist_folder, make_splits, one_class_dataset, split_summary
    start = time.perf_counter()
    out = Path(out)
    methods = _check(digits, methods, width, backbone, backbone_sha256, (backbone_epochs, epochs), batch,
                     (lr, teacher_lr), reduce, export)
    check_compare(compare_student, compare_epochs)
    files = load_mnist_folder(data)
    splits = make_splits(files, seed=split_seed)
    _write_split(out / "split.json", splits)
    _say(f"[feature-kd] MNIST from {files.folder} ({splits['protocol']}); digits {list(digits)}, "
         f"methods {methods}", quiet)
    datasets = {d: one_class_dataset(files, splits, d) for d in digits}
    settings = dict(width=width, backbone=backbone, backbone_epochs=backbone_epochs, epochs=epochs, batch=batch,
                    lr=lr, teacher_lr=teacher_lr, reduce=reduce)
    shared = _shared_backbone(out, backbone, backbone_sha256, files, splits, settings, seed, quiet)
    compare = compare_config(out, compare_student, compare_epochs, seed) if compare_student else None
    runs = {}
    for digit in digits:
        data_d = datasets[digit]
        _say(f"[feature-kd] digit {digit}: {data_d.describe()}", quiet)
        with _torch_threads(1):
            encoder = shared["backbone"] if shared else _digit_backbone(out / f"digit{digit}", data_d, settings,
                                                                       seed, quiet)
            runs[digit] = {m: _run_method(m, encoder, data_d, out / f"digit{digit}", settings, list(export), seed,
                                          quiet) for m in methods}
        if compare:
            for method, run in runs[digit].items():
                _say(f"[feature-kd] digit {digit}: QKeras student {compare_student} from {METHOD_LABELS[method]}",
                     quiet)
                run["student"] = score_regression(run["checkpoint"], data_d,
                                                  out / f"digit{digit}" / f"student_{method}", compare, quiet)
    results = _results(runs, methods, settings, shared, split_summary(splits), files.folder, compare_student)
    results["runtime_s"] = round(time.perf_counter() - start, 1)
    _plot(out / "auroc.png", results)
    return results, _markdown(results)


def _check(digits, methods, width, backbone, sha256, epochs, batch, lrs, reduce, export) -> List[str]:
    from ..teachers.feature_kd import METHODS, REDUCTIONS
    bad = [d for d in digits if d not in ALL_DIGITS]
    if bad or not digits or len(set(digits)) != len(digits):
        raise KDError(f"digits must be distinct values 0-9, got {list(digits)}")
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise KDError(f"methods must be distinct values of {', '.join(METHODS)}, got {methods}")
    if min(int(width), int(batch)) < 1:
        raise KDError(f"width and batch must be at least 1, got {width} and {batch}")
    if min(epochs) < 1:
        raise KDError(f"backbone_epochs and epochs must be at least 1, got {list(epochs)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in lrs):
        raise KDError(f"lr and teacher_lr must be numbers > 0, got {list(lrs)}")
    if reduce not in REDUCTIONS:
        raise KDError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    if backbone not in BACKBONE_SOURCES and not Path(backbone).is_file():
        raise KDError(f"backbone must be {' or '.join(BACKBONE_SOURCES)} or an existing state_dict file, "
                      f"got {backbone!r}")
    if sha256 is not None and backbone in BACKBONE_SOURCES:
        raise KDError("backbone_sha256 checks a backbone file; the backbone is trained here")
    odd = [t for t in export if t != "onnx"]
    if odd:
        raise KDError(f"feature-kd detectors are float torch models: export must be [onnx] or [], got {odd}; "
                      f"their QKeras students export to tflite and fpga with `kdcompress export`")
    return methods


def _shared_backbone(out: Path, source: str, sha256, files, splits, s: dict, seed: int, quiet: bool):
    """The encoder every digit shares: a user's file, or rotation prediction on all training images (pool)."""
    from ..data.mnist import one_class_dataset
    from ..distill.reverse import load_backbone, pretrain_backbone, save_backbone
    if source == "normal":
        return None
    if source != "pool":
        _say(f"[feature-kd] backbone from {source}", quiet)
        return {"backbone": load_backbone(source, s["width"], sha256), "source": str(source), "history": None}
    images = np.concatenate([one_class_dataset(files, splits, d).train for d in ALL_DIGITS])
    _say(f"[feature-kd] backbone: rotation prediction on {len(images)} unlabelled training images", quiet)
    with _torch_threads(1):
        import torch
        torch.manual_seed(seed)
        trained = pretrain_backbone(images, s["width"], s["backbone_epochs"], 64, 1e-3,
                                    np.random.default_rng([seed, 100]), quiet)
    digest = save_backbone(trained["backbone"], out / "backbone.pt")
    return {**trained, "source": "pool", "path": str(out / "backbone.pt"), "sha256": digest}


def _digit_backbone(folder: Path, data, s: dict, seed: int, quiet: bool):
    from ..distill.reverse import pretrain_backbone, save_backbone
    import torch
    torch.manual_seed(seed)
    trained = pretrain_backbone(data.train, s["width"], s["backbone_epochs"], 64, 1e-3,
                                np.random.default_rng([seed, 100, data.extra.get("normal_digit", 0)]), quiet)
    folder.mkdir(parents=True, exist_ok=True)
    save_backbone(trained["backbone"], folder / "backbone.pt")
    return trained["backbone"]


def _run_method(method: str, encoder, data, folder: Path, s: dict, export, seed: int, quiet: bool) -> dict:
    """Train one detector on the digit; its AUROC, size, checkpoint and ONNX export."""
    import torch
    from ..bench.metrics import auroc
    from ..bench.size import torch_macs
    from ..data.mnist import ANOMALY_SIGNAL
    from ..distill import reverse as rv
    from ..distill.dual_student import train_dskd
    from ..distill.pkdgan import parameter_count
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = rv.detector(data.n_features, method, encoder, s["reduce"])
    rng = np.random.default_rng([seed, list(METHOD_LABELS).index(method)])
    common = dict(x=data.train, val=data.val, epochs=s["epochs"], batch=s["batch"], lr=s["lr"], rng=rng,
                  quiet=quiet)
    if method == "rd":
        history = rv.train_rd(model, **common)
    elif method == "urd":
        history = rv.train_urd(model, encoder, teacher_lr=s["teacher_lr"], **common)
    else:
        history = train_dskd(model, **common)
    model.eval()
    normal, anomalies = rv.scores(model, data.test), rv.scores(model, data.signals[ANOMALY_SIGNAL])
    checkpoint = _save(folder / f"{method}.pt", model, data, seed)
    run = {"auroc": auroc(normal, anomalies), "params": parameter_count(model),
           "macs": torch_macs(model, torch.zeros(1, data.n_features)), "checkpoint": checkpoint,
           "history": history, "exports": _export(checkpoint, folder / f"export_{method}", export, data, seed,
                                                  quiet)}
    _plot_history(folder / f"training_{method}.png", history, method, data.extra.get("normal_digit"))
    run["seconds"] = time.perf_counter() - start
    _say(f"[feature-kd] digit {data.extra.get('normal_digit')}: {METHOD_LABELS[method]} AUROC {run['auroc']:.4f} "
         f"({run['seconds']:.0f} s)", quiet)
    return run


def _save(path: Path, model, data, seed: int) -> str:
    from ..data.preprocess import Preprocessing
    from ..teachers import Teacher, save_teacher
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = {"name": "feature-kd", "kwargs": {"n_features": data.n_features, "method": model.method,
                                              "width": model.width, "reduce": model.reduce}}
    save_teacher(Teacher(module=model.eval(), score_name="output",
                         preprocessing=Preprocessing.identity(data.n_features), arch=arch,
                         meta={"data_fingerprint": data.fingerprint(), "seed": seed, "role": model.method}), path)
    return str(path)


def _export(checkpoint: str, out: Path, targets, data, seed: int, quiet: bool) -> dict:
    from ..data.mnist import ANOMALY_SIGNAL
    from ..export import export
    if not targets:
        return {}
    manifest = export(checkpoint, list(targets), out=out, data=data, seed=seed, quiet=True)
    art = manifest["artefacts"][0]
    agree = art.get("agreement", {})
    _say(f"[feature-kd] ONNX: {out / art['path']} (largest relative difference "
         f"{agree.get('max_rel_diff', float('nan')):.2g})", quiet)
    return {"onnx": {"path": str(out / art["path"]), "max_rel_diff": agree.get("max_rel_diff"),
                     "auroc": agree.get("auroc", {}).get(ANOMALY_SIGNAL)}}


def _results(runs: dict, methods, settings: dict, shared, split: dict, folder, compare_student) -> dict:
    first = next(iter(runs.values()))
    detector = {m: {str(d): r[m]["auroc"] for d, r in runs.items()} for m in methods}
    results = {"methods": list(methods), "compare_student": compare_student, "settings": settings,
               "detector": detector, "mean": {m: float(np.mean(list(v.values()))) for m, v in detector.items()},
               "params": {m: first[m]["params"] for m in methods}, "macs": {m: first[m]["macs"] for m in methods},
               "checkpoints": {str(d): {m: r[m]["checkpoint"] for m in methods} for d, r in runs.items()},
               "exports": {str(d): {m: r[m]["exports"] for m in methods if r[m]["exports"]} for d, r in runs.items()},
               "backbone": _backbone_summary(shared, settings), "data": str(Path(folder).resolve()), "split": split}
    if compare_student:
        results["student"] = {m: {str(d): r[m]["student"]["auroc"] for d, r in runs.items()} for m in methods}
        results["student_mean"] = {m: float(np.mean(list(v.values()))) for m, v in results["student"].items()}
        results["student_spearman"] = {m: float(np.mean([r[m]["student"]["spearman"] for r in runs.values()]))
                                       for m in methods}
        results["student_macs"] = first[methods[0]]["student"]["macs"]
        results["student_params"] = first[methods[0]]["student"]["params"]
    return results


def _backbone_summary(shared, settings: dict) -> dict:
    if shared is None:
        return {"source": "normal", "note": "pretrained per digit on its training images (digitN/backbone.pt)"}
    summary = {k: shared[k] for k in ("source", "path", "sha256") if k in shared}
    if shared.get("history"):
        summary["final_rotation_accuracy"] = shared["history"]["accuracy"][-1]
    return summary


def _markdown(results: dict) -> str:
    methods, det = results["methods"], results["detector"]
    student = results.get("student")
    head = [METHOD_LABELS[m] for m in methods]
    if student:
        head += [f"{METHOD_LABELS[m]} -> QKeras {results['compare_student']}" for m in methods]
    lines = ["## AUROC per normal digit (test: the digit's test images vs as many other-digit test images)", "",
             "| digit | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for digit in det[methods[0]]:
        row = [det[m][digit] for m in methods] + ([student[m][digit] for m in methods] if student else [])
        lines.append(f"| {digit} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    means = [results["mean"][m] for m in methods] + ([results["student_mean"][m] for m in methods] if student else [])
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    lines += ["", "| detector | parameters | MACs |" + (" student MACs | fewer MACs | student Spearman to detector |"
                                                          if student else ""),
              "|---|---|---|" + ("---|---|---|" if student else "")]
    for m in methods:
        row = f"| {METHOD_LABELS[m]} | {results['params'][m]:,} | {results['macs'][m]:,} |"
        if student:
            row += (f" {results['student_macs']:,} | {results['macs'][m] / results['student_macs']:.0f}x | "
                    f"{results['student_spearman'][m]:.3f} |")
        lines.append(row)
    b = results["backbone"]
    lines += ["", f"Encoder: {b['source']}" + (f" (rotation accuracy {b['final_rotation_accuracy']:.3f})"
                                               if "final_rotation_accuracy" in b else "")
              + (f", sha256 {b['sha256'][:16]}..." if "sha256" in b else "") + ".",
              f"Settings: {results['settings']}. Data: {results['data']} ({results['split']['protocol']}, split seed "
              f"{results['split']['seed']}); runtime {results['runtime_s']:.0f} s. The last epoch is kept: no choice "
              f"uses anomaly labels.", "", "![AUROC per digit](auroc.png)"]
    return "\n".join(lines + _export_lines(results["exports"]))


def _export_lines(exports: dict) -> list:
    rows = [(d, m, a["onnx"]) for d, per in exports.items() for m, a in per.items()]
    if not rows:
        return []
    lines = ["", "## ONNX export of the detectors (verified against the torch model)", "",
             "| digit | method | file | AUROC | largest relative difference |", "|---|---|---|---|---|"]
    for digit, method, onnx in rows:
        auroc = onnx["auroc"] if onnx["auroc"] is not None else float("nan")
        inside_run = Path(*Path(onnx["path"]).parts[-3:])
        lines.append(f"| {digit} | {METHOD_LABELS[method]} | {inside_run} | {auroc:.3f} | "
                     f"{onnx['max_rel_diff']:.2g} |")
    return lines


def _plot(path: Path, results: dict) -> None:
    from ..plots import grouped_bars
    series = {METHOD_LABELS[m]: results["detector"][m] for m in results["methods"]}
    for m in results["methods"] if results.get("student") else ():
        series[f"{METHOD_LABELS[m]} -> QKeras {results['compare_student']}"] = results["student"][m]
    grouped_bars(path, series, "normal digit", "AUROC", "Feature-level distillation on one-class MNIST")


def _plot_history(path: Path, history: Dict[str, list], method: str, digit) -> None:
    from ..plots import stage_panels
    span = lambda values: (list(range(1, len(values) + 1)), values)  # noqa: E731
    losses = {k: span(v) for k, v in history.items() if k != "val score"}
    stage_panels(path, {"training loss": losses, "mean score, validation images": {"val": span(history["val score"])}},
                 f"digit {digit}: {METHOD_LABELS[method]} training")
