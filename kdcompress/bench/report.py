"""`kdcompress benchmark`: teacher beside student, beside every exported artefact and a baseline trained
without distillation: detection (AUROC, TPR at fixed FPR, efficiency at a trigger rate), size, cost and
latency, written as report.json (machines), report.md and a self-contained report.html (people)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..data import Dataset, load_dataset
from ..errors import KDError
from ..fileio import atomic_dir, read_json, sha256_file, write_json
from . import metrics, size, tracking
from .latency import Budget, batch_throughput, single_event_latency
from .machine import describe_machine, load_average, usable_cores, versions
from .runtimes import HlsCsimRuntime, KerasRuntime, OnnxRuntime, Runtime, TFLiteRuntime, TorchRuntime

DEFAULT_RATE_KHZ = 1.0
DEFAULT_BX_MHZ = 28.61
FPRS = (1e-5, 1e-4)
FORMAT_TAG = "kdcompress-benchmark/1"
MANIFEST = "manifest.json"
PLOT_DIR = "plots"
BASELINE_FILE = "baseline.pt"
BASELINE_EPOCHS = {"normal": 40, "quick": 3}
ROW_ORDER = [("teacher", "torch"), ("teacher", "onnxruntime"), ("student", "keras"), ("student", "onnxruntime"),
             ("student", "tflite-float"), ("student", "tflite-int8"), ("student", "tflite-int16x8"),
             ("student", "hls4ml-csim"),
             ("baseline", "torch")]
REFERENCE_RUNTIME = {"teacher": "torch", "student": "keras", "baseline": "torch"}
STUDENT_METRICS = "metrics.json"  # written into the student folder by `distill`
SELECTION_KEYS = ("criterion", "budget", "search_events", "chosen")  # `distill --auto`; "tried" = ablation rows
SETTING_KEYS = ("head", "queries", "hidden", "active", "sparsity")  # what identifies one candidate of the search
TARGET_RUNTIME = {"onnx": "onnxruntime", "tflite-float": "tflite-float", "tflite-int8": "tflite-int8",
                  "tflite-int16x8": "tflite-int16x8", "fpga": "hls4ml-csim"}
# bit widths the runtime computes with: (kernel bits, activation bits); None = the model's quantizers
BOPS_BASIS = {"torch": ("float32", (32, 32)), "onnxruntime": ("float32", (32, 32)),
              "tflite-float": ("float32", (32, 32)), "tflite-int8": ("int8", (8, 8)),
              "tflite-int16x8": ("int16x8", (8, 16)),
              "keras": ("quantizers", None), "hls4ml-csim": ("quantizers", None)}
REQUANTIZED = ("tflite-int8", "tflite-int16x8")  # post-training quantization re-rounds the weights


@dataclass
class Settings:
    rate_khz: float = DEFAULT_RATE_KHZ
    bx_mhz: float = DEFAULT_BX_MHZ
    seed: int = 0
    quick: bool = False
    baseline: bool = True
    baseline_epochs: Optional[int] = None
    cores: int = field(default_factory=usable_cores)  # threads of the batch measurement and of scoring

    @property
    def budget(self) -> Budget:
        return Budget.quick() if self.quick else Budget.normal()

    @property
    def pass_fraction(self) -> float:
        return self.rate_khz * 1e3 / (self.bx_mhz * 1e6)

    def check(self) -> None:
        if not (math.isfinite(self.bx_mhz) and self.bx_mhz > 0):
            raise KDError(f"--bx-mhz must be a positive number, got {self.bx_mhz}")
        if not (math.isfinite(self.rate_khz) and 0 < self.rate_khz < self.bx_mhz * 1e3):
            raise KDError(f"--rate-khz must be above 0 and below the crossing rate "
                          f"({self.bx_mhz * 1e3:g} kHz), got {self.rate_khz}")
        if not isinstance(self.cores, int) or self.cores < 1:
            raise KDError(f"batch threads must be a positive integer, got {self.cores!r}")
        if self.baseline_epochs is not None and self.baseline_epochs < 1:
            raise KDError(f"baseline epochs must be at least 1, got {self.baseline_epochs}")

    def describe(self) -> dict:
        budget = self.budget
        return {"rate_khz": self.rate_khz, "bx_mhz": self.bx_mhz, "pass_fraction": self.pass_fraction,
                "fprs": list(FPRS), "seed": self.seed, "quick": self.quick, "baseline": self.baseline,
                "threads": {"single_event": 1, "batch": self.cores},
                "latency": {"single_event_s": budget.single_s, "batch_s": budget.batch_s,
                            "warmup_s": budget.warmup_s, "batch_size": budget.batch_size}}


@dataclass
class Inputs:
    teacher_path: Path
    teacher: object
    student_path: Path
    student: object
    dataset: Dataset
    data_matches_student: Optional[bool]
    manifests: List[Path]


class _Say:
    def __init__(self, quiet: bool):
        self.quiet, self.start = quiet, time.perf_counter()

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[benchmark {time.perf_counter() - self.start:5.0f}s] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- public function

def benchmark(teacher, student, data, out, exports: Union[None, str, Path, Sequence] = None,
              rate_khz: float = DEFAULT_RATE_KHZ, bx_mhz: float = DEFAULT_BX_MHZ, seed: int = 0,
              quick: bool = False, baseline: bool = True, baseline_epochs: Optional[int] = None,
              score: Optional[str] = None, batch_threads: Optional[int] = None, quiet: bool = False) -> dict:
    """Benchmark `teacher` (file) against `student` (folder) on `data` (path or Dataset); write `out`.

    exports: export folders (or manifest.json files); each folder's manifest.json, or those one level
    below it, name the artefacts to measure. rate_khz / bx_mhz: target trigger rate and effective
    bunch-crossing rate for the rate threshold. quick: much shorter timing and baseline training.
    baseline: train the no-distillation autoencoder with the student's parameter budget.
    batch_threads: threads of the batch throughput measurement (default: every usable core); single-event
    latency always uses one thread.
    Writes report.json, report.md, report.html, plots/ and baseline.pt into `out` (all or nothing);
    returns the report.json content.
    """
    settings = Settings(rate_khz=float(rate_khz), bx_mhz=float(bx_mhz), seed=int(seed), quick=bool(quick),
                        baseline=bool(baseline), baseline_epochs=baseline_epochs)
    if batch_threads is not None:
        settings.cores = batch_threads
    settings.check()
    say = _Say(quiet)
    inputs = load_inputs(teacher, student, data, exports, score)
    say(inputs.dataset.describe())
    from . import render
    with atomic_dir(out) as tmp:
        report, scores = measure(inputs, settings, tmp, say)
        say("drawing figures and writing the report")
        report["figures"] = render.draw_figures(report, scores, tmp / PLOT_DIR)
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(render.markdown(report))
        (tmp / "report.html").write_text(render.html(report, tmp))
    say(f"report written to {out}")
    return report


# ---------------------------------------------------------------- inputs

def load_inputs(teacher, student, data, exports, score: Optional[str] = None) -> Inputs:
    """Check every path first (cheap), then load the models and the data."""
    from ..students import load_student
    from ..teachers import load_teacher
    student_path, teacher_path = Path(student), Path(teacher)
    if not student_path.is_dir():
        raise KDError(f"student folder {student_path} does not exist")
    if not teacher_path.is_file():
        raise KDError(f"teacher file {teacher_path} does not exist")
    if not isinstance(data, Dataset) and not Path(data).exists():
        raise KDError(f"data path {data} does not exist")
    manifests = find_manifests(exports)
    loaded_student = load_student(student_path)
    dataset, matches = _load_data(data, loaded_student.meta)
    loaded_teacher = load_teacher(teacher_path, score=score, n_features=dataset.n_features)
    widths = {"teacher": loaded_teacher.n_features, "student": loaded_student.preprocessing.n_features,
              "data": dataset.n_features}
    if len(set(widths.values())) != 1:
        raise KDError("feature counts differ: " + ", ".join(f"{k} {v}" for k, v in widths.items()))
    if not dataset.signals:
        raise KDError(f"{dataset.source} holds no signal (anomaly) events: AUROC cannot be measured")
    if len(dataset.test) == 0:
        raise KDError(f"{dataset.source} holds no background test events")
    return Inputs(teacher_path, loaded_teacher, student_path, loaded_student, dataset, matches, manifests)


def _load_data(data, meta: dict):
    """The data set, split like the student's training data when it is a tabular file."""
    expected = meta.get("data_fingerprint")
    if isinstance(data, Dataset):
        return data, None if expected is None else data.fingerprint() == expected
    first = None
    for split_seed in dict.fromkeys([0, meta.get("seed", 0)]):
        dataset = load_dataset(data, seed=split_seed, n_features=meta.get("n_features"))
        if expected is None:
            return dataset, None
        if dataset.fingerprint() == expected:
            return dataset, True
        first = first or dataset
        if dataset.kind != "tabular":  # only tabular splits depend on the seed
            break
    return first, False


def find_manifests(exports) -> List[Path]:
    """manifest.json files: given directly, in a given folder, or one level below it."""
    if exports is None:
        return []
    items = [exports] if isinstance(exports, (str, Path)) else list(exports)
    found: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file() and path.name == MANIFEST:
            candidates = [path]
        elif path.is_dir():
            candidates = [path / MANIFEST] if (path / MANIFEST).is_file() else sorted(path.glob(f"*/{MANIFEST}"))
        else:
            raise KDError(f"exports folder {path} does not exist")
        if not candidates:
            raise KDError(f"no {MANIFEST} in {path} or its sub-folders: is it a `kdcompress export` folder?")
        found.extend(c for c in candidates if c not in found)
    return found


# ---------------------------------------------------------------- runtimes

def _add_export_runtimes(inputs: Inputs, runtimes: List[Runtime], say) -> None:
    """Append a runtime per artefact in the manifests (to `runtimes`, so that all get closed on failure)."""
    for manifest_path in inputs.manifests:
        manifest = read_json(manifest_path)
        kind = _manifest_kind(manifest, inputs, manifest_path)
        for artefact in manifest.get("artefacts", []):
            target = artefact.get("target")
            if target not in TARGET_RUNTIME:
                say(f"skipping unknown export target '{target}' in {manifest_path}")
                continue
            if any(r.model == kind and r.name == TARGET_RUNTIME[target] for r in runtimes):
                say(f"skipping a second {kind} {target} artefact in {manifest_path}")
                continue
            path = _artefact_path(manifest_path, artefact)
            say(f"loading {kind} {target} artefact {path}")
            runtimes.append(_artefact_runtime(kind, target, path, artefact, inputs))


def _manifest_kind(manifest: dict, inputs: Inputs, manifest_path: Path) -> str:
    """'teacher' or 'student': from the manifest's source, which must be the benchmarked model."""
    from ..students import MODEL_FILE
    source = manifest.get("source") or {}
    kind = source.get("kind")
    if kind is None:  # older manifests: teacher artefacts take raw features
        raw = [a.get("input", {}).get("kind") == "raw" for a in manifest.get("artefacts", [])]
        kind = "teacher" if raw and all(raw) else "student"
    if kind not in ("teacher", "student"):
        raise KDError(f"{manifest_path}: unknown export source kind '{kind}'")
    model_file = inputs.teacher_path if kind == "teacher" else inputs.student_path / MODEL_FILE
    expected = source.get("sha256")
    if expected and expected != sha256_file(model_file):
        raise KDError(f"{manifest_path} was exported from a different {kind} than {model_file} "
                      f"(sha256 differs): export this {kind} again or leave these exports out")
    return kind


def _artefact_path(manifest_path: Path, artefact: dict) -> Path:
    path = manifest_path.parent / str(artefact.get("path", ""))
    if not artefact.get("path") or not path.exists():
        raise KDError(f"{manifest_path} names the artefact '{artefact.get('path')}', which does not exist")
    if path.is_file() and artefact.get("sha256") and sha256_file(path) != artefact["sha256"]:
        raise KDError(f"{path} changed after export (sha256 differs from {manifest_path})")
    return path


def _artefact_runtime(kind: str, target: str, path: Path, artefact: dict, inputs: Inputs) -> Runtime:
    described = artefact.get("input") or {}
    if target == "onnx":
        return OnnxRuntime(kind, path, described)
    if kind != "student":
        raise KDError(f"a {target} artefact of a {kind} cannot be benchmarked (students only)")
    if target == "fpga":
        return HlsCsimRuntime(inputs.student, path)
    return TFLiteRuntime(target, path, described)


def _baseline_runtime(inputs: Inputs, settings: Settings, folder: Path, say):
    from .baseline import train_baseline
    target = size.keras_param_count(inputs.student.model)
    arch = inputs.teacher.arch or {}
    latent = int(arch.get("kwargs", {}).get("latent", 8))
    epochs = settings.baseline_epochs or BASELINE_EPOCHS["quick" if settings.quick else "normal"]
    say(f"training the baseline autoencoder ({target} parameters budget, up to {epochs} epochs)")
    model, shape = train_baseline(inputs.dataset, folder / BASELINE_FILE, target, teacher_latent=latent,
                                  teacher_score=inputs.teacher.score_name, epochs=epochs, seed=settings.seed,
                                  quiet=True)
    described = {"arch": f"dense autoencoder {inputs.dataset.n_features}-{shape.hidden}-{shape.latent}-"
                         f"{shape.hidden}-{inputs.dataset.n_features}",
                 "hidden": shape.hidden, "latent": shape.latent, "params": shape.params,
                 "student_params": shape.target_params, "score": model.score_name,
                 "epochs_run": model.meta.get("epochs_run"), "max_epochs": epochs, "seed": settings.seed,
                 "file": BASELINE_FILE, "trained_on": "background training split, no teacher"}
    return TorchRuntime("baseline", model, folder / BASELINE_FILE), described


# ---------------------------------------------------------------- measuring

def measure(inputs: Inputs, settings: Settings, folder: Path, say):
    """(report dict without figures, scores per row label and set); writes baseline.pt into `folder`."""
    say("measuring the machine (matmul FLOP/s)")
    machine = describe_machine(matmul_repeats=3 if settings.quick else 20)
    from ..students import MODEL_FILE
    runtimes: List[Runtime] = [TorchRuntime("teacher", inputs.teacher, inputs.teacher_path),
                               KerasRuntime(inputs.student, inputs.student_path / MODEL_FILE)]
    baseline_info = None
    try:
        _add_export_runtimes(inputs, runtimes, say)
        if settings.baseline:
            baseline, baseline_info = _baseline_runtime(inputs, settings, folder, say)
            runtimes.append(baseline)
        runtimes.sort(key=lambda r: ROW_ORDER.index((r.model, r.name)))
        sizes = _model_sizes(inputs, runtimes)
        rows, scores = [], {}
        for runtime in runtimes:
            row, row_scores = _measure_runtime(runtime, inputs.dataset, sizes[runtime.model], settings, say)
            rows.append(row)
            scores[runtime.label] = row_scores
    finally:
        for runtime in runtimes:
            runtime.close()
    _add_agreement(rows, scores)
    _add_ratios(rows, machine)
    tracking_record = _tracking(inputs.student.meta, scores)
    machine["load_average_at_end"] = load_average()
    report = {"format": FORMAT_TAG, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": settings.describe(), "machine": machine, "versions": versions(),
              "data": _describe_data(inputs), "models": _describe_models(inputs, baseline_info),
              "distillation": _describe_distillation(inputs.student_path),
              "rate": _describe_rate(inputs.dataset, settings), "rows": rows, "tracking": tracking_record}
    report["notes"] = _notes(report, inputs)
    return _json_safe(report), scores


def _measure_runtime(runtime: Runtime, data: Dataset, model_size: dict, settings: Settings, say):
    sets = {"background": data.test, **data.signals}
    say(f"{runtime.label}: scoring {sum(len(x) for x in sets.values()):,} events")
    scores = {name: runtime.scores(x, settings.cores) for name, x in sets.items()}
    for name, values in scores.items():
        if not np.isfinite(values).all():
            raise KDError(f"{runtime.label} gives non-finite scores on '{name}' events")
    say(f"{runtime.label}: timing ({'quick' if settings.quick else 'normal'} budget)")
    row = {"model": runtime.model, "runtime": runtime.name,
           "artefact": str(runtime.artefact) if runtime.artefact else None,
           "for_speed": runtime.for_speed, "note": runtime.note or None}
    row.update(_row_size(runtime, model_size))
    row.update(_timing(runtime, data.test, settings, say))
    row.update(_detection(scores, settings))
    return row, scores


def _timing(runtime: Runtime, background: np.ndarray, settings: Settings, say) -> dict:
    """Single-event and batch timing; a mode whose call fails is reported as null with the error."""
    budget = settings.budget
    prepared = runtime.prepare(background[:max(256, budget.batch_size)])
    single = {"p50_us": None, "p99_us": None, "single_calls": 0}
    batch = {"events_per_s": None, "events_per_s_best": None, "batch_size": budget.batch_size, "batch_calls": 0}
    errors = []
    for mode, threads, measure_fn, result in (("single event", 1, single_event_latency, single),
                                               ("batch", settings.cores, batch_throughput, batch)):
        try:
            with runtime.calls(threads) as call:
                result.update(measure_fn(call, prepared, budget))
        except Exception as exc:  # a runtime that cannot run this shape: report it, never a number
            message = f"{mode} call failed: {_first_line(exc)}"
            say(f"{runtime.label}: {message}")
            errors.append(message)
    return {**single, **batch, "timing_errors": errors or None,
            "threads": {"single_event": runtime.threads(1), "batch": runtime.threads(settings.cores)}}


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _detection(scores: Dict[str, np.ndarray], settings: Settings) -> dict:
    background = scores["background"]
    signals = {k: v for k, v in scores.items() if k != "background"}
    summary = metrics.summarise(background, signals, FPRS)
    out = {"auroc": {name: s["auroc"] for name, s in summary.items()}}
    for fpr in FPRS:
        key = metrics.fpr_key(fpr)
        out[key] = {name: s[key] for name, s in summary.items()}
    threshold = metrics.threshold_for_rate(background, settings.rate_khz, settings.bx_mhz)
    background_pass = metrics.efficiency_at_threshold(background, threshold)
    out["rate"] = {"rate_khz": settings.rate_khz, "threshold": threshold,
                   "background_rate_khz": background_pass * settings.bx_mhz * 1e3,
                   "background_at_threshold": int(np.sum(background == threshold)),
                   "efficiency": {name: metrics.efficiency_at_threshold(v, threshold) for name, v in signals.items()}}
    return out


# ---------------------------------------------------------------- size

def _model_sizes(inputs: Inputs, runtimes: List[Runtime]) -> dict:
    """params, nonzero params, MACs and (for the student) quantizer BOPs of each model."""
    import torch
    sizes = {}
    for runtime in runtimes:
        if runtime.model in sizes:
            continue
        if isinstance(runtime, TorchRuntime):
            module = runtime.teacher.module
            example = torch.zeros(1, runtime.teacher.n_features)
            sizes[runtime.model] = {"params": size.torch_param_count(module),
                                    "nonzero_params": size.torch_nonzero_params(module),
                                    "macs": size.torch_macs(module, example), "quantizer_bops": None}
    model = inputs.student.model
    sizes["student"] = {"params": size.keras_param_count(model), "nonzero_params": size.keras_nonzero_params(model),
                        "macs": size.keras_macs(model), "dense_macs": size.keras_dense_macs(model),
                        "quantizer_bops": size.keras_bops(model)}
    return sizes


def _row_size(runtime: Runtime, model_size: dict) -> dict:
    basis, bits = BOPS_BASIS[runtime.name]
    # Zero weights are free only in the quantized design (unrolled firmware); CPU runtimes multiply densely.
    macs = model_size["macs"] if bits is None else model_size.get("dense_macs", model_size["macs"])
    bops = model_size["quantizer_bops"] if bits is None else macs * bits[0] * bits[1]
    nonzero = model_size["nonzero_params"] if runtime.name not in REQUANTIZED else None
    return {"params": model_size["params"], "nonzero_params": nonzero,
            "bytes": size.file_bytes(runtime.artefact) if runtime.artefact else None,
            "macs": macs, "bops": bops, "bops_basis": basis}


# ---------------------------------------------------------------- comparisons

def _find(rows: List[dict], model: str, runtime: str) -> Optional[dict]:
    return next((r for r in rows if r["model"] == model and r["runtime"] == runtime), None)


def _add_agreement(rows: List[dict], scores: Dict[str, Dict[str, np.ndarray]]) -> None:
    """Artefact rows: difference of their scores from their model's reference runtime, same events."""
    for row in rows:
        reference_runtime = REFERENCE_RUNTIME[row["model"]]
        reference = scores.get(f"{row['model']} / {reference_runtime}")
        if row["runtime"] == reference_runtime or reference is None:
            row["agreement"] = None
            continue
        mine = scores[f"{row['model']} / {row['runtime']}"]
        ref_all = np.concatenate([reference[k] for k in reference])
        mine_all = np.concatenate([mine[k] for k in reference])
        diff = np.abs(mine_all - ref_all)
        row["agreement"] = {"reference": f"{row['model']} / {reference_runtime}", "events": int(diff.size),
                            "max_abs_diff": float(diff.max()),
                            "max_rel_diff": float(np.max(diff / np.maximum(np.abs(ref_all), 1e-12))),
                            "identical_fraction": float(np.mean(diff == 0))}


def _tracking(meta: dict, scores: Dict[str, Dict[str, np.ndarray]]) -> Optional[dict]:
    """Student minus teacher at equal teacher score, per signal (tracking.signal_bias); None without signals."""
    teacher = scores[f"teacher / {REFERENCE_RUNTIME['teacher']}"]
    student = scores[f"student / {REFERENCE_RUNTIME['student']}"]
    return tracking.record(teacher, student, meta)


def _ratio(numerator, denominator) -> Optional[float]:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def _add_ratios(rows: List[dict], machine: dict) -> None:
    """Compression and speed ratios against the torch teacher; throughput as a fraction of matmul FLOP/s."""
    teacher = _find(rows, "teacher", "torch")
    peak = machine["matmul_gflops"] * 1e9
    for row in rows:
        row["ratios_vs_teacher"] = {
            "params": _ratio(teacher["params"], row["params"]),
            "bytes": _ratio(teacher["bytes"], row["bytes"]),
            "macs": _ratio(teacher["macs"], row["macs"]),
            "bops": _ratio(teacher["bops"], row["bops"]),
            "p50_speedup": _ratio(teacher["p50_us"], row["p50_us"]),
            "throughput": _ratio(row["events_per_s"], teacher["events_per_s"]),
        }
        row["flops_per_s"] = None if row["events_per_s"] is None else 2.0 * row["macs"] * row["events_per_s"]
        row["matmul_fraction"] = _ratio(row["flops_per_s"], peak)


# ---------------------------------------------------------------- descriptions

def _describe_data(inputs: Inputs) -> dict:
    data = inputs.dataset
    return {"source": data.source, "kind": data.kind, "fingerprint": data.fingerprint(),
            "n_features": data.n_features, "background_test_events": int(len(data.test)),
            "background_train_events": int(len(data.train)),
            "signal_events": {name: int(len(x)) for name, x in data.signals.items()},
            "matches_student_training": inputs.data_matches_student,
            "student_training_fingerprint": inputs.student.meta.get("data_fingerprint")}


def _describe_models(inputs: Inputs, baseline: Optional[dict]) -> dict:
    from ..distill.score_regression import teacher_fingerprint
    from ..students import MODEL_FILE
    teacher, student = inputs.teacher, inputs.student
    fingerprint = teacher_fingerprint(teacher)
    return {
        "teacher": {"path": str(inputs.teacher_path), "sha256": sha256_file(inputs.teacher_path),
                    "arch": teacher.arch, "score": teacher.score_name, "fingerprint": fingerprint},
        "student": {"path": str(inputs.student_path), "sha256": sha256_file(inputs.student_path / MODEL_FILE),
                    "student": student.meta.get("student"), "hidden": student.meta.get("config", {}).get("hidden"),
                    "quant": student.meta.get("quant"), "score_transform": student.meta.get("score_transform"),
                    "score_scale": student.meta.get("score_scale"),
                    "output_transform": student.meta.get("output_transform"),
                    "method": student.meta.get("method"),
                    "distilled_from_this_teacher": student.meta.get("teacher_fingerprint") == fingerprint},
        "baseline": baseline,
        "exports": [str(p) for p in inputs.manifests],
    }


def _describe_distillation(student_path: Path) -> Optional[dict]:
    """What `distill` recorded in the student's metrics.json: fidelity, the `--auto` selection and its
    ablation (each row flagged `chosen`), active query rounds. Only the parts present; None without a
    readable metrics.json."""
    path = Path(student_path) / STUDENT_METRICS
    try:
        recorded = read_json(path)
    except KDError:  # missing or not JSON: the report goes on without it
        return None
    if not isinstance(recorded, dict):
        return None
    selection = _as_dict(recorded.get("selection"))
    trials = _dicts(recorded.get("ablation")) or _dicts(selection.get("tried"))  # "tried": same rows, no AUROC
    parts = {"fidelity": _as_dict(recorded.get("fidelity")),
             "teacher_memorisation": _as_dict(recorded.get("teacher_memorisation")),
             "selection": {k: selection[k] for k in SELECTION_KEYS if k in selection},
             "ablation": _mark_chosen(trials, _as_dict(selection.get("chosen"))),
             "active_rounds": _dicts(_as_dict(recorded.get("training")).get("active_rounds"))}
    return {"source": str(path), **{k: v for k, v in parts.items() if v}}


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _dicts(value) -> List[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _mark_chosen(trials: List[dict], chosen: dict) -> List[dict]:
    """Copies of the trials, the first with the chosen setting flagged `chosen`: True (the others False)."""
    same = [bool(chosen) and all(t.get(k) == chosen.get(k) for k in SETTING_KEYS) for t in trials]
    first = same.index(True) if True in same else None
    return [{**t, "chosen": i == first} for i, t in enumerate(trials)]


def _describe_rate(data: Dataset, settings: Settings) -> dict:
    n = len(data.test)
    return {"target_khz": settings.rate_khz, "bx_mhz": settings.bx_mhz, "pass_fraction": settings.pass_fraction,
            "background_test_events": n,
            "background_events_passing_at_target": settings.pass_fraction * n,
            "smallest_resolvable_rate_khz": settings.bx_mhz * 1e3 / n,
            "resolved": settings.pass_fraction * n >= 1.0}


def _notes(report: dict, inputs: Inputs) -> List[str]:
    notes = []
    rate, data = report["rate"], report["data"]
    if not rate["resolved"]:
        notes.append(f"{rate['background_test_events']:,} background test events resolve trigger rates down to "
                     f"{rate['smallest_resolvable_rate_khz']:.3g} kHz only: at {rate['target_khz']:g} kHz the "
                     f"threshold is the highest background score (no background event passes), so the "
                     f"efficiencies there are conservative.")
    for fpr in FPRS:
        if fpr * rate["background_test_events"] < 1:
            notes.append(f"TPR at FPR {fpr:g}: fewer than 1/{fpr:g} background test events, so the threshold is "
                         f"the highest background score.")
    if data["matches_student_training"] is False:
        notes.append("the data differ from the student's training data (fingerprints differ): the background "
                     "test split may include events seen in training.")
    if not report["models"]["student"]["distilled_from_this_teacher"]:
        notes.append("the student was not distilled from this teacher (teacher fingerprints differ).")
    baseline = report["models"]["baseline"]
    if baseline and abs(baseline["params"] - baseline["student_params"]) > 0.1 * baseline["student_params"]:
        notes.append(f"the closest baseline autoencoder has {baseline['params']} parameters against the "
                     f"student's {baseline['student_params']}.")
    machine = report["machine"]
    loads = [v for v in (machine.get("load_average_at_start"), machine.get("load_average_at_end")) if v is not None]
    if loads and max(loads) > 0.75 * machine["usable_cores"]:  # this run alone keeps about one core busy
        notes.append(f"other processes were running (1-minute load average up to {max(loads):g} on "
                     f"{machine['usable_cores']} cores): latencies and throughputs are noisy, multi-thread "
                     f"figures most of all.")
    for row in report["rows"]:
        tied = row["rate"]["background_at_threshold"]
        if tied > 1:
            notes.append(f"{row['model']} / {row['runtime']}: {tied:,} background test events score exactly the "
                         f"rate threshold {row['rate']['threshold']:.6g} (coarse or saturated output): fewer "
                         f"background events pass than the target rate allows, and so do signal events at that score.")
        for error in row.get("timing_errors") or []:
            notes.append(f"{row['model']} / {row['runtime']}: {error} (its latency is left empty).")
    notes.append("BOPs = MACs x weight bits x activation bits, with the bits the runtime computes with: the "
                 "QKeras quantizer widths for keras and the hls4ml C simulation, 32x32 for float32 runtimes "
                 "(ONNX Runtime and TFLite-float compute the student's quantized values in float32), 8x8 for "
                 "TFLite int8 and 8x16 for TFLite int16x8 (energy heads).")
    batch_threads = report["settings"]["threads"]["batch"]
    notes.append("Latency: model call only (preprocessing and integer encoding are done beforehand); single event "
                 f"with 1 thread, batch throughput with {batch_threads} thread(s); Keras uses TensorFlow's own "
                 "thread pools; hls4ml C simulation is for agreement only, its speed says nothing about the FPGA.")
    return notes


def _json_safe(value):
    """NaN and infinities become None (JSON null); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
