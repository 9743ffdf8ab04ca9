"""TFLite export of a QKeras student: a float32 model and an integer (int8, or int16x8 for energy heads) model.

- float32: TFLiteConverter on the QKeras model itself; the graph keeps the quantizer arithmetic
  (Round/Minimum/Maximum), so it must agree with QKeras to FLOAT_TOLERANCE.
- quantized: post-training quantization of the student's float twin (export/twin.py) calibrated on
  background *training* events and queries around them. int8: where the student allows it (plain chains
  of 8-bit ReLUs), the grid twin puts every ReLU output on its QKeras grid instead of a calibrated scale
  (manifest `agreement.activation_scales`). An approximation that passes when its AUROC is
  within QUANTIZED_AUROC_TOLERANCE of the QKeras student's on every signal; on data without signals, when it
  ranks the held-out background events like the QKeras student (Spearman >= MIN_BACKGROUND_SPEARMAN).
  MLP/CNN heads (output on the log scale): full int8, int8 input and output.
  Energy heads output E = expm1(score), which spans several decades: 256 linear levels leave the normal
  events on a handful of values (AUROC loss 0.2-0.3 measured), so they get int16 activations with int8
  weights (TFLite's 16x8 mode, int16 input and output), calibrated up to ENERGY_HEADROOM x the largest
  E of the background training split, above which E saturates.
Both take preprocessed features (x' = (x - offset) * 2**shift, see the manifest `input`).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..bench.metrics import spearman
from ..errors import KDError
from ..fileio import sha256_file
from ..registry import EXPORTERS
from ..tf_env import tensorflow
from .context import STUDENT, ExportContext
from .verify import (BACKGROUND, agreement, auroc_gaps, auroc_per_signal, library_output_silenced,
                     max_abs_diff, model_output)

FLOAT_TOLERANCE = 1e-5
QUANTIZED_AUROC_TOLERANCE = 0.01
# Label-free check where there are no signals. Measured on ADC2021: passing files 0.987-0.988; full-int8
# energy files that lost 0.04 and 0.29 AUROC: 0.85 and 0.24.
MIN_BACKGROUND_SPEARMAN = 0.95
REPRESENTATIVE_EVENTS = 5000
ENERGY_HEADROOM = 4.0
CHUNK = 65536
FLOAT_FILE = "student_float32.tflite"
INT8, INT16X8 = "int8", "int16x8"
INTEGER_IO = (np.int8, np.int16)
QUANTIZED_FILES = {INT8: "student_int8.tflite", INT16X8: "student_int16x8.tflite"}


@EXPORTERS.register("tflite")
def export_tflite(ctx: ExportContext, folder) -> list:
    if ctx.source.kind != STUDENT:
        raise KDError("the tflite target exports students only (teachers: onnx)")
    student = ctx.source.model
    z = {name: student.preprocessing.apply(x) for name, x in ctx.events().items()}
    reference = {name: model_output(student, v) for name, v in z.items()}
    return [_float_artefact(ctx, folder, z, reference), _quantized_artefact(ctx, folder, z, reference)]


def quantized_mode(student) -> str:
    """int16x8 for heads whose output is an energy (log1p applied outside the model), else int8."""
    return INT16X8 if student.meta.get("output_transform") == "log1p" else INT8


def _float_artefact(ctx: ExportContext, folder, z, reference) -> dict:
    ctx.note("tflite: converting the QKeras student to float32")
    path = folder / FLOAT_FILE
    path.write_bytes(_convert(tensorflow().lite.TFLiteConverter.from_keras_model(ctx.source.model.model)))
    scores = _scores(path, z)
    check = agreement(reference, scores)
    if not check["max_abs_diff"] <= FLOAT_TOLERANCE:
        raise KDError(f"tflite float32 disagrees with the QKeras student: max |diff| {check['max_abs_diff']:.3g} "
                      f"> {FLOAT_TOLERANCE:g} on {check['events']} events")
    return _artefact("tflite-float", path, _io(ctx, path), check, f"max_abs_diff <= {FLOAT_TOLERANCE:g}")


def _quantized_artefact(ctx: ExportContext, folder, z, reference) -> dict:
    mode = quantized_mode(ctx.source.model)
    ctx.note(f"tflite: {mode} post-training quantization (background training events and queries)")
    path = folder / QUANTIZED_FILES[mode]
    representative = _representative(ctx, mode)
    twin, scales = _twin_and_scales(ctx.source.model.model, representative, mode)
    path.write_bytes(_convert(_quantized_converter(twin, representative, mode)))
    scores = _scores(path, z)
    check = {**agreement(reference, scores), "activation_scales": scales}
    if BACKGROUND in reference:
        check["max_abs_diff_background"] = max_abs_diff(reference[BACKGROUND], scores[BACKGROUND])
        check["spearman_background"] = _spearman_or_none(reference[BACKGROUND], scores[BACKGROUND])
    check["source_auroc"] = auroc_per_signal(reference)
    gaps = auroc_gaps(reference, scores)
    worst = min(gaps.items(), key=lambda kv: kv[1], default=None)
    if worst is not None and worst[1] < -QUANTIZED_AUROC_TOLERANCE:
        raise KDError(f"tflite {mode} loses {-worst[1]:.4f} AUROC on signal '{worst[0]}' against the QKeras "
                      f"student (allowed {QUANTIZED_AUROC_TOLERANCE}); train the student longer, or export "
                      f"without tflite")
    if ctx.data.dataset.signals:
        tolerance = (f"AUROC >= QKeras AUROC - {QUANTIZED_AUROC_TOLERANCE} on every signal" if gaps
                     else "not checked: no held-out background events to measure AUROC against")
    else:
        tolerance = _check_background_ranking(mode, reference.get(BACKGROUND), scores.get(BACKGROUND), check)
    return _artefact(f"tflite-{mode}", path, _io(ctx, path), check, tolerance)


def _twin_and_scales(model, representative: np.ndarray, mode: str) -> tuple:
    """The float model to convert and how its activation scales are set (export/twin.py)."""
    from .twin import float_twin, grid_twin, grid_twin_unsupported
    if mode == INT8:
        reason = grid_twin_unsupported(model)
        if reason is None:
            return grid_twin(model, representative), {"method": "qkeras-grid"}
    else:
        reason = f"{mode} keeps calibrated scales"
    return float_twin(model), {"method": "calibrated", "reason": reason}


def _check_background_ranking(mode: str, reference, scores, check: dict) -> str:
    """Without signals: the quantized file must rank the held-out background like the QKeras student."""
    if reference is None or len(reference) < 2 or np.ptp(reference) == 0:
        return "not checked: no signals, and fewer than 2 held-out background events or a constant QKeras output"
    if np.ptp(scores) == 0:
        raise KDError(f"tflite {mode} gives every held-out background event the same output (the QKeras student "
                      f"does not); train the student longer, or export without tflite")
    value = check["spearman_background"]
    if value < MIN_BACKGROUND_SPEARMAN:
        raise KDError(f"tflite {mode} ranks the held-out background events unlike the QKeras student: Spearman "
                      f"{value:.3f} < {MIN_BACKGROUND_SPEARMAN}; train the student longer, or export without tflite")
    return f"no signals: Spearman with the QKeras student on held-out background >= {MIN_BACKGROUND_SPEARMAN}"


def _spearman_or_none(reference: np.ndarray, scores: np.ndarray):
    """None where it is undefined (fewer than 2 events, or either output constant)."""
    value = spearman(reference, scores) if len(reference) >= 2 else float("nan")
    return float(value) if np.isfinite(value) else None


def _representative(ctx: ExportContext, mode: str) -> np.ndarray:
    """Preprocessed background training events plus as many queries around them (never test data or signals).

    Background alone calibrates the output range to normal scores, so anomalies would saturate the output
    and every low-rate threshold would be lost; the queries widen the calibrated range. For an energy output
    (int16x8) queries far beyond the background would stretch the range over decades and cost resolution
    where background and signals overlap: those above ENERGY_HEADROOM x the largest E of the background
    training split are left out (measured on ADC2021: 4x keeps AUROC within 0.002, the full query range
    loses 0.02)."""
    from ..distill.queries import make_queries
    from ..distill.score_regression import default_queries
    dataset = ctx.data.dataset
    rng = np.random.default_rng(ctx.seed)
    half = min(REPRESENTATIVE_EVENTS // 2, len(dataset.train))
    background = dataset.train[np.sort(rng.choice(len(dataset.train), size=half, replace=False))]
    queries = make_queries(background, default_queries(dataset.layout), rng, dataset.layout)
    student = ctx.source.model
    background, queries = student.preprocessing.apply(background), student.preprocessing.apply(queries)
    if mode == INT16X8:
        limit = ENERGY_HEADROOM * _largest_output(student, dataset.train)
        queries = queries[model_output(student, queries) <= limit]
    return np.concatenate([background, queries])


def _largest_output(student, raw: np.ndarray) -> float:
    """Largest model output over the raw events, in chunks (training splits can hold millions of events)."""
    if not len(raw):
        raise KDError("the data has no background training events to calibrate the quantized TFLite file on")
    return max(float(np.max(model_output(student, student.preprocessing.apply(raw[i:i + CHUNK]))))
               for i in range(0, len(raw), CHUNK))


def _quantized_converter(twin, representative: np.ndarray, mode: str):
    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(twin)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None, :]] for row in representative)
    if mode == INT16X8:
        ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        converter.target_spec.supported_ops = [ops]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter


def _convert(converter) -> bytes:
    try:
        with library_output_silenced():
            return converter.convert()
    except Exception as exc:  # the converter raises many types; one line is enough for the user
        raise KDError(f"TFLite conversion failed: {str(exc).strip().splitlines()[0][:200]}") from None


def _interpreter(path):
    with library_output_silenced():
        interpreter = tensorflow().lite.Interpreter(model_path=str(path))
    return interpreter


def _scores(path, z: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    interpreter = _interpreter(path)
    with library_output_silenced():  # the XNNPACK delegate announces itself on first allocation
        return {name: _run(interpreter, values) for name, values in z.items()}


def _run(interpreter, z: np.ndarray) -> np.ndarray:
    """Scores (N,) float64 of preprocessed events, quantizing int8 inputs/outputs as the model states."""
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scores = []
    for start in range(0, len(z), CHUNK):
        batch = z[start:start + CHUNK]
        interpreter.resize_tensor_input(inp["index"], [len(batch), *z.shape[1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], _encode(batch, inp))
        interpreter.invoke()
        scores.append(_decode(interpreter.get_tensor(out["index"]), out).reshape(-1))
    return np.concatenate(scores) if scores else np.zeros(0)


def _encode(z: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] not in INTEGER_IO:
        return z.astype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(z / scale) + zero_point, limits.min, limits.max).astype(detail["dtype"])


def _decode(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] not in INTEGER_IO:
        return values.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float64) - zero_point) * scale


def _io(ctx: ExportContext, path) -> tuple:
    """Manifest `input` and `output` of a TFLite file, with the integer scale and zero point when quantized."""
    from .describe import student_input, student_output
    interpreter = _interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    described_in = student_input(ctx.source.model, name=inp["name"], dtype=np.dtype(inp["dtype"]).name)
    described_out = student_output(ctx.source.model, name=out["name"], dtype=np.dtype(out["dtype"]).name)
    if inp["dtype"] in INTEGER_IO:
        kind, limits = np.dtype(inp["dtype"]).name, np.iinfo(inp["dtype"])
        scale, zero_point = inp["quantization"]
        described_in[kind] = {"scale": float(scale), "zero_point": int(zero_point),
                              "encode": f"q = clip(round(x' / scale) + zero_point, {limits.min}, {limits.max})"}
        scale, zero_point = out["quantization"]
        described_out[kind] = {"scale": float(scale), "zero_point": int(zero_point),
                               "decode": "output = (q - zero_point) * scale",
                               "note": "range calibrated on background training events and queries; higher "
                                       f"scores saturate at q = {limits.max} (max_abs_diff is dominated by them)"}
    return described_in, described_out


def _artefact(target: str, path, io: tuple, check: dict, tolerance: str) -> dict:
    return {"target": target, "path": path.name, "sha256": sha256_file(path), "input": io[0], "output": io[1],
            "agreement": {**check, "tolerance": tolerance}}
