"""feature-kd: feature-level distillation detectors (RD4AD, URD, DSKD) on images, then to the edge.

These methods distil features, not size: the detector keeps the full encoder and adds a decoder (and for DSKD
a second encoder). To deploy one on a small device, its image score is distilled into a small QKeras student
(the seed method, paper CNN `compare_student`), which exports to ONNX, TFLite and hls4ml like any student.

Data: one-class MNIST (one run per normal digit, tested against as many other-digit test images) or an
MVTec-layout folder (`images`: train/good, test/good, test/<defect>; image-level AUROC of test/good against every
defect; with ground_truth/<defect>/ masks also pixel AUROC and PRO of the detectors' anomaly maps, and a plot).
Per run and method: the detector (AUROC), its checkpoint (<run>/<method>.pt, a teacher file) with a verified ONNX
export, and the QKeras student distilled from it (AUROC, rank agreement with the detector, MACs). The encoder is
the same for all methods: loaded from `backbone` (a state_dict path, with `backbone_sha256`) or pretrained here
by rotation prediction on unlabelled images: `pool` (MNIST: every digit's training images, no labels, the role
ImageNet plays for the papers; an image folder: its train/good images) or `normal` (each run's normal training
images).
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
ENCODER_TEXT = {"pool": "pretrained here on the unlabelled training images of every class (MNIST: all digits, "
                        "anomalous ones included, without labels; an image folder: train/good)",
                "normal": "pretrained here per run on its normal training images only",
                "file": "the given state_dict file"}


@PIPELINES.register("feature-kd")
def feature_kd(out: Path, data: Optional[str] = None, images: Optional[str] = None, side: Optional[int] = None,
               digits: List[int] = ALL_DIGITS, methods: List[str] = ("rd", "urd", "dskd"), width: int = 16,
               backbone: str = "pool", backbone_sha256: Optional[str] = None, pretext: str = "rotation",
               backbone_epochs: int = 10,
               epochs: int = 30, batch: int = 32, lr: float = 0.005, teacher_lr: float = 0.0001, reduce: str = "max",
               export: List[str] = ("onnx",), compare_student: Optional[str] = "B", compare_epochs: int = 30,
               split_seed: int = 0, seed: int = 0, color: Optional[bool] = None, quiet: bool = False):
    """Run the experiment in `out`: one-class MNIST (`data` = a folder of MNIST idx files, default
    ../shared/data/mnist; one run per digit) or `images` = an MVTec-layout folder (one run, `side` to resize,
    `color` true/false to read it in colour or grey, null to follow its train/good images)."""
    start = time.perf_counter()
    out = Path(out)
    methods = _check(digits, methods, width, backbone, backbone_sha256, (backbone_epochs, epochs), batch,
                     (lr, teacher_lr), reduce, export, pretext)
    check_compare(compare_student, compare_epochs, int(side) if side else 28)
    if images is not None and data is not None:
        raise KDError("give data (MNIST idx folder) or images (MVTec-layout folder), not both")
    if images is not None:
        datasets, pool, split = _image_dataset(images, side, split_seed, color)
        check_compare(compare_student, compare_epochs, next(iter(datasets.values())).image_shape[0])
    elif color:
        raise KDError("color reads an images folder in colour; MNIST images are grey")
    channels = next(iter(datasets.values())).channels if images is not None else 1
    given = _given_backbone(backbone, width, backbone_sha256, channels, quiet)
    if images is None:
        datasets, pool, split = _mnist_datasets(out, data, side, digits, split_seed, quiet)
    _say(f"[feature-kd] {', '.join(datasets)}; methods {methods}", quiet)
    settings = dict(width=width, backbone=backbone, pretext=pretext, backbone_epochs=backbone_epochs,
                    epochs=epochs, batch=batch, lr=lr, teacher_lr=teacher_lr, reduce=reduce, channels=channels)
    shared = given or _shared_backbone(out, backbone, pool, settings, seed, quiet)
    first = next(iter(datasets.values()))
    side_of = first.image_shape[0] if first.image_shape else int(np.sqrt(first.n_features))  # MNIST: 28
    compare = (compare_config(out, compare_student, compare_epochs, seed, side_of, mnist=images is None,
                              channels=channels)
               if compare_student else None)
    runs = {}
    for name, dataset in datasets.items():
        folder = out / _folder_name(name)
        _say(f"[feature-kd] {_label(name)}: {dataset.describe()}", quiet)
        with _torch_threads(1):
            encoder = shared["backbone"] if shared else _own_backbone(folder, dataset, settings, seed, quiet)
            runs[name] = {m: _run_method(m, encoder, dataset, folder, name, settings, list(export), seed, quiet)
                          for m in methods}
        if compare:
            for method, run in runs[name].items():
                _say(f"[feature-kd] {_label(name)}: QKeras student {compare_student} from {METHOD_LABELS[method]}",
                     quiet)
                run["student"] = score_regression(run["checkpoint"], dataset, folder / f"student_{method}", compare,
                                                  quiet)
    results = _results(runs, methods, settings, shared, split, compare_student)
    results["runtime_s"] = round(time.perf_counter() - start, 1)
    _plot(out / "auroc.png", results)
    return results, _markdown(results)


def _folder_name(name: str) -> str:
    return f"digit{name}" if name.isdigit() else name


def _label(name: str) -> str:
    return f"digit {name}" if name.isdigit() else name


def _mnist_datasets(out: Path, data, side, digits, split_seed: int, quiet: bool):
    """One dataset per normal digit; the pool is every digit's training images (unlabelled)."""
    from ..data.mnist import load_mnist_folder, make_splits, one_class_dataset, split_summary
    if side is not None:
        raise KDError("side resizes an images folder; MNIST images stay 28x28")
    files = load_mnist_folder(data)
    splits = make_splits(files, seed=split_seed)
    _write_split(out / "split.json", splits)
    datasets = {str(d): one_class_dataset(files, splits, d) for d in digits}
    pool = np.concatenate([one_class_dataset(files, splits, d).train for d in ALL_DIGITS])
    return datasets, pool, {"data": str(Path(files.folder).resolve()), **split_summary(splits)}


def _image_dataset(images, side, split_seed: int, color: Optional[bool] = None):
    """One dataset from an MVTec-layout folder; the pool is its own normal training images."""
    from ..data.images import load_image_folder, load_image_masks
    dataset = load_image_folder(images, side=side, seed=split_seed, color=color)
    masks = load_image_masks(images, side=side)
    if masks is not None:
        dataset.extra["masks"] = masks  # pixel AUROC and PRO of every detector
    return ({dataset.extra["category"]: dataset}, dataset.train,
            {"data": str(Path(images).resolve()), "protocol": "MVTec layout (10% of train/good held out)",
             "seed": split_seed})


def _check(digits, methods, width, backbone, sha256, epochs, batch, lrs, reduce, export, pretext) -> List[str]:
    from ..distill.reverse import PRETEXTS
    from ..teachers.feature_kd import METHODS, REDUCTIONS
    if pretext not in PRETEXTS:
        raise KDError(f"pretext must be one of {', '.join(PRETEXTS)}, got {pretext!r}")
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


def _given_backbone(source: str, width: int, sha256, channels: int = 1, quiet: bool = False):
    """A user's backbone file, loaded and checked before anything is written; None when trained here."""
    from ..distill.reverse import load_backbone
    if source in BACKBONE_SOURCES:
        return None
    _say(f"[feature-kd] backbone from {source}", quiet)
    return {**load_backbone(source, width, sha256, channels), "source": "file", "path": str(Path(source).resolve()),
            "history": None}


def _shared_backbone(out: Path, source: str, pool: np.ndarray, s: dict, seed: int, quiet: bool):
    """backbone=pool: the encoder every run shares, pretrained on the unlabelled pool; None for normal."""
    if source == "normal":
        return None
    _say(f"[feature-kd] backbone: {s['pretext']} pretext on {len(pool)} unlabelled training images", quiet)
    with _torch_threads(1):
        return {**_pretrained(pool, out, s, [seed, 100], seed, quiet), "source": "pool"}


def _own_backbone(folder: Path, data, s: dict, seed: int, quiet: bool):
    """backbone=normal: the pretext on this run's normal training images only."""
    rng_key = [seed, 100, data.extra.get("normal_digit", 0)]
    return _pretrained(data.train, folder, s, rng_key, seed, quiet)["backbone"]


def _pretrained(images: np.ndarray, folder: Path, s: dict, rng_key: list, seed: int, quiet: bool) -> dict:
    """Self-supervised encoder on `images`, saved as folder/backbone.pt (path and sha256 returned)."""
    import torch
    from ..distill.reverse import pretrain_backbone, save_backbone
    torch.manual_seed(seed)
    trained = pretrain_backbone(images, s["width"], s["backbone_epochs"], 64, 1e-3, np.random.default_rng(rng_key),
                                quiet, s["pretext"], s["channels"])
    folder.mkdir(parents=True, exist_ok=True)
    digest = save_backbone(trained["backbone"], folder / "backbone.pt")
    return {**trained, "path": str(folder / "backbone.pt"), "sha256": digest}


def _run_method(method: str, encoder, data, folder: Path, name: str, s: dict, export, seed: int, quiet: bool) -> dict:
    """Train one detector on the digit; its AUROC, size, checkpoint and ONNX export."""
    import torch
    from ..bench.metrics import auroc
    from ..bench.size import torch_macs
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
    normal, scored, localization = _score(model, data, folder / f"maps_{method}.png", f"{_label(name)}: "
                                          f"{METHOD_LABELS[method]}")
    checkpoint = _save(folder / f"{method}.pt", model, data, seed)
    run = {"auroc": auroc(normal, np.concatenate(list(scored.values()))), "localization": localization,
           "auroc_per_signal": {k: auroc(normal, v) for k, v in scored.items()},
           "params": parameter_count(model),
           "macs": torch_macs(model, torch.zeros(1, data.n_features)), "checkpoint": checkpoint,
           "history": history, "exports": _export(checkpoint, folder / f"export_{method}", export, data, seed,
                                                  quiet)}
    _plot_history(folder / f"training_{method}.png", history, method, name)
    run["seconds"] = time.perf_counter() - start
    _say(f"[feature-kd] {_label(name)}: {METHOD_LABELS[method]} AUROC {run['auroc']:.4f} ({run['seconds']:.0f} s)",
         quiet)
    return run


def _score(model, data, plot: Path, title: str):
    """Image scores of the normal test images and of each anomaly class (each image scored once); with pixel
    masks, the scores come from the anomaly maps, which also give pixel AUROC and PRO (and a plot)."""
    import torch
    from ..distill import reverse as rv
    masks = data.extra.get("masks")
    if masks is None:
        return rv.scores(model, data.test), {k: rv.scores(model, v) for k, v in sorted(data.signals.items())}, None
    maps = {"good": rv.anomaly_maps(model, data.test)}
    maps.update({k: rv.anomaly_maps(model, v) for k, v in sorted(data.signals.items())})
    reduce = (lambda m: torch.from_numpy(m).flatten(1).amax(1)) if model.reduce == "max" else \
        (lambda m: torch.from_numpy(m).flatten(1).mean(1))
    scores = {k: reduce(v).double().numpy() for k, v in maps.items()}
    _plot_maps(plot, data, maps, masks, title)
    return scores.pop("good"), scores, _localization(maps, masks)


def _localization(maps: Dict[str, np.ndarray], masks: Dict[str, np.ndarray]) -> dict:
    """Pixel AUROC and PRO (FPR <= 0.3) over all test images, and per defect with the normal test images."""
    from ..bench.localization import pixel_auroc, pro_auc

    def measure(names) -> dict:
        m = np.concatenate([maps[k] for k in names])
        t = np.concatenate([masks[k] for k in names]).reshape(m.shape)
        if not t.any():  # no defect pixel in these masks (e.g. logical anomalies): nothing to localise
            return {"pixel_auroc": None, "pro": None}
        return {"pixel_auroc": pixel_auroc(m, t), "pro": pro_auc(m, t)}

    defects = [k for k in maps if k != "good"]
    return {**measure(list(maps)), "per_signal": {k: measure(["good", k]) for k in defects}}


def _plot_maps(path: Path, data, maps: dict, masks: dict, title: str, per_class: int = 2) -> None:
    """The first `per_class` test images of each class (no selection by score): image, mask, anomaly map."""
    from ..plots import map_panels
    side = data.image_shape[0]
    shown = (side, side) if data.channels == 1 else (side, side, data.channels)
    sources = {"good": data.test, **data.signals}
    rows = [(f"{k} {i}", sources[k][i].reshape(shown), masks[k][i].reshape(side, side), maps[k][i])
            for k in maps for i in range(min(per_class, len(maps[k])))]
    map_panels(path, rows, f"{title} anomaly maps")


def _save(path: Path, model, data, seed: int) -> str:
    from ..data.preprocess import Preprocessing
    from ..teachers import Teacher, save_teacher
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = {"name": "feature-kd", "kwargs": {"n_features": data.n_features, "method": model.method,
                                              "width": model.width, "reduce": model.reduce,
                                              "channels": model.channels}}
    save_teacher(Teacher(module=model.eval(), score_name="output",
                         preprocessing=Preprocessing.identity(data.n_features), arch=arch,
                         meta={"data_fingerprint": data.fingerprint(), "seed": seed, "role": model.method}), path)
    return str(path)


def _export(checkpoint: str, out: Path, targets, data, seed: int, quiet: bool) -> dict:
    """The verified ONNX of a detector; a failed verification is recorded and the run goes on."""
    from ..export import export
    if not targets:
        return {}
    try:
        manifest = export(checkpoint, list(targets), out=out, data=data, seed=seed, quiet=True)
    except KDError as exc:
        _say(f"[feature-kd] ONNX export of {checkpoint} failed: {exc}", quiet)
        return {"onnx": {"error": str(exc)}}
    art = manifest["artefacts"][0]
    agree = art.get("agreement", {})
    _say(f"[feature-kd] ONNX: {out / art['path']} (largest relative difference "
         f"{agree.get('max_rel_diff', float('nan')):.2g})", quiet)
    return {"onnx": {"path": str(out / art["path"]), "max_rel_diff": agree.get("max_rel_diff"),
                     "auroc": agree.get("auroc", {})}}


def _results(runs: dict, methods, settings: dict, shared, split: dict, compare_student) -> dict:
    first = next(iter(runs.values()))
    detector = {m: {d: r[m]["auroc"] for d, r in runs.items()} for m in methods}
    results = {"methods": list(methods), "compare_student": compare_student, "settings": settings,
               "detector": detector, "mean": {m: float(np.mean(list(v.values()))) for m, v in detector.items()},
               "detector_per_signal": {m: {d: r[m]["auroc_per_signal"] for d, r in runs.items()} for m in methods},
               "params": {m: first[m]["params"] for m in methods}, "macs": {m: first[m]["macs"] for m in methods},
               "checkpoints": {d: {m: r[m]["checkpoint"] for m in methods} for d, r in runs.items()},
               "exports": {d: {m: r[m]["exports"] for m in methods if r[m]["exports"]} for d, r in runs.items()},
               "backbone": _backbone_summary(shared), "data": split.pop("data"), "split": split}
    local = {m: {d: r[m]["localization"] for d, r in runs.items() if r[m]["localization"]} for m in methods}
    if any(local.values()):
        results["localization"] = local
    if compare_student:
        results["student"] = {m: {d: r[m]["student"]["auroc"] for d, r in runs.items()} for m in methods}
        results["student_mean"] = {m: float(np.mean(list(v.values()))) for m, v in results["student"].items()}
        results["student_spearman"] = {m: float(np.mean([r[m]["student"]["spearman"] for r in runs.values()]))
                                       for m in methods}
        results["student_macs"] = first[methods[0]]["student"]["macs"]
        results["student_params"] = first[methods[0]]["student"]["params"]
    return results


def _backbone_summary(shared) -> dict:
    if shared is None:
        return {"source": "normal", "note": "pretrained per run on its normal training images (backbone.pt)"}
    summary = {k: shared[k] for k in ("source", "path", "sha256", "pretext") if k in shared}
    if shared.get("history"):
        summary["final"] = {k: v[-1] for k, v in shared["history"].items()}
    return summary


def _markdown(results: dict) -> str:
    methods, det = results["methods"], results["detector"]
    student = results.get("student")
    head = [METHOD_LABELS[m] for m in methods]
    if student:
        head += [f"{METHOD_LABELS[m]} -> QKeras {results['compare_student']}" for m in methods]
    names = list(det[methods[0]])
    kind = "normal digit" if all(n.isdigit() for n in names) else "data"
    lines = [f"## AUROC per {kind} (normal test images against every anomaly)", "",
             f"| {kind} | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in names:
        row = [det[m][name] for m in methods] + ([student[m][name] for m in methods] if student else [])
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    if len(names) > 1:
        means = [results["mean"][m] for m in methods] + ([results["student_mean"][m] for m in methods]
                                                         if student else [])
        lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    lines += _per_signal_lines(results) + _localization_lines(results) + _size_lines(results)
    b = results["backbone"]
    final = ", ".join(f"{k} {v:.3f}" for k, v in b.get("final", {}).items())
    lines += ["", f"Encoder: {ENCODER_TEXT.get(b['source'], b['source'])}"
              + (f" ({b['pretext']} pretext: {final})" if final else "")
              + (f", sha256 {b['sha256'][:16]}..." if "sha256" in b else "") + ".",
              f"Settings: {results['settings']}. Data: {results['data']} ({results['split']['protocol']}, split seed "
              f"{results['split']['seed']}); runtime {results['runtime_s']:.0f} s. The last epoch is kept: no choice "
              f"uses anomaly labels.", "", "![AUROC](auroc.png)"]
    return "\n".join(lines + _export_lines(results["exports"]))


def _per_signal_lines(results: dict) -> list:
    per = results["detector_per_signal"]
    rows = [(m, name, aurocs) for m, by_name in per.items() for name, aurocs in by_name.items() if len(aurocs) > 1]
    if not rows:
        return []
    lines = ["", "| method | data | AUROC per anomaly class |", "|---|---|---|"]
    for m, name, aurocs in rows:
        lines.append(f"| {METHOD_LABELS[m]} | {name} | " + ", ".join(f"{k} {v:.3f}" for k, v in aurocs.items())
                     + " |")
    return lines


def _localization_lines(results: dict) -> list:
    rows = [(m, name, v) for m, by_name in results.get("localization", {}).items() for name, v in by_name.items()]
    if not rows:
        return []
    text = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["", "## Localisation: pixel AUROC and PRO (FPR <= 0.3) of the detectors' anomaly maps", "",
             "The QKeras students distil the image score only; localisation stays with the detectors.", "",
             "| method | data | pixel AUROC | PRO | per defect (pixel AUROC / PRO) |", "|---|---|---|---|---|"]
    for m, name, v in rows:
        per = ", ".join(f"{k} {text(p['pixel_auroc'])} / {text(p['pro'])}" for k, p in v["per_signal"].items())
        lines.append(f"| {METHOD_LABELS[m]} | {name} | {text(v['pixel_auroc'])} | {text(v['pro'])} | {per} |")
    return lines + ["", "Anomaly maps of the first test images of each class: `<data>/maps_<method>.png`."]


def _size_lines(results: dict) -> list:
    student = results.get("student")
    lines = ["", "| detector | parameters | MACs |" + (" student MACs | fewer MACs | student Spearman to detector |"
                                                       if student else ""),
             "|---|---|---|" + ("---|---|---|" if student else "")]
    for m in results["methods"]:
        row = f"| {METHOD_LABELS[m]} | {results['params'][m]:,} | {results['macs'][m]:,} |"
        if student:
            row += (f" {results['student_macs']:,} | {results['macs'][m] / results['student_macs']:.0f}x | "
                    f"{results['student_spearman'][m]:.3f} |")
        lines.append(row)
    return lines


def _export_lines(exports: dict) -> list:
    rows = [(d, m, a["onnx"]) for d, per in exports.items() for m, a in per.items()]
    if not rows:
        return []
    failed = [f"{d} {METHOD_LABELS[m]}: {onnx['error']}" for d, m, onnx in rows if "error" in onnx]
    rows = [row for row in rows if "error" not in row[2]]
    lines = ["", "## ONNX export of the detectors (verified against the torch model)", "",
             "| data | method | file | AUROC | largest relative difference |", "|---|---|---|---|---|"]
    for name, method, onnx in rows:
        aurocs = ", ".join(f"{v:.3f}" for v in (onnx["auroc"] or {}).values()) or "-"
        inside_run = Path(*Path(onnx["path"]).parts[-3:])
        lines.append(f"| {name} | {METHOD_LABELS[method]} | {inside_run} | {aurocs} | {onnx['max_rel_diff']:.2g} |")
    return lines + [f"- ONNX export failed for {text}" for text in failed]


def _plot(path: Path, results: dict) -> None:
    from ..plots import grouped_bars
    series = {METHOD_LABELS[m]: results["detector"][m] for m in results["methods"]}
    for m in results["methods"] if results.get("student") else ():
        series[f"{METHOD_LABELS[m]} -> QKeras {results['compare_student']}"] = results["student"][m]
    names = list(next(iter(series.values())))
    grouped_bars(path, series, "normal digit" if all(n.isdigit() for n in names) else "data", "AUROC",
                 "Feature-level distillation detectors and their QKeras students")


def _plot_history(path: Path, history: Dict[str, list], method: str, name: str) -> None:
    from ..plots import stage_panels
    span = lambda values: (list(range(1, len(values) + 1)), values)  # noqa: E731
    losses = {k: span(v) for k, v in history.items() if k != "val score"}
    stage_panels(path, {"training loss": losses, "mean score, validation images": {"val": span(history["val score"])}},
                 f"{_label(name)}: {METHOD_LABELS[method]} training")
