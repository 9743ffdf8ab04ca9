"""TFLite export of a QKeras student: a float32 model and a full-integer (int8 in/out) model.

- float32: TFLiteConverter on the QKeras model itself; the graph keeps the quantizer arithmetic
  (Round/Minimum/Maximum), so it must agree with QKeras to FLOAT_TOLERANCE.
- int8: post-training quantization of the student's float twin (export/twin.py) calibrated on
  REPRESENTATIVE_EVENTS background *training* events; int8 input and output. It is an approximation:
  it passes when its AUROC is within INT8_AUROC_TOLERANCE of the QKeras student's on every signal.
Both take preprocessed features (x' = (x - offset) * 2**shift, see the manifest `input`).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..errors import KDError
from ..fileio import sha256_file
from ..registry import EXPORTERS
from ..tf_env import tensorflow
from .context import STUDENT, ExportContext
from .verify import (BACKGROUND, agreement, auroc_gaps, auroc_per_signal, library_output_silenced,
                     max_abs_diff, model_output)

FLOAT_TOLERANCE = 1e-5
INT8_AUROC_TOLERANCE = 0.01
REPRESENTATIVE_EVENTS = 5000
CHUNK = 65536
FLOAT_FILE = "student_float32.tflite"
INT8_FILE = "student_int8.tflite"


@EXPORTERS.register("tflite")
def export_tflite(ctx: ExportContext, folder) -> list:
    if ctx.source.kind != STUDENT:
        raise KDError("the tflite target exports students only (teachers: onnx)")
    student = ctx.source.model
    z = {name: student.preprocessing.apply(x) for name, x in ctx.events().items()}
    reference = {name: model_output(student, v) for name, v in z.items()}
    return [_float_artefact(ctx, folder, z, reference), _int8_artefact(ctx, folder, z, reference)]


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


def _int8_artefact(ctx: ExportContext, folder, z, reference) -> dict:
    from .twin import float_twin
    ctx.note(f"tflite: int8 post-training quantization ({REPRESENTATIVE_EVENTS} background training events)")
    path = folder / INT8_FILE
    path.write_bytes(_convert(_int8_converter(float_twin(ctx.source.model.model), _representative(ctx))))
    scores = _scores(path, z)
    check = agreement(reference, scores)
    if BACKGROUND in reference:
        check["max_abs_diff_background"] = max_abs_diff(reference[BACKGROUND], scores[BACKGROUND])
    check["source_auroc"] = auroc_per_signal(reference)
    gaps = auroc_gaps(reference, scores)
    worst = min(gaps.items(), key=lambda kv: kv[1], default=None)
    if worst is not None and worst[1] < -INT8_AUROC_TOLERANCE:
        raise KDError(f"tflite int8 loses {-worst[1]:.4f} AUROC on signal '{worst[0]}' against the QKeras "
                      f"student (allowed {INT8_AUROC_TOLERANCE}); train the student longer, or export without tflite")
    tolerance = (f"AUROC >= QKeras AUROC - {INT8_AUROC_TOLERANCE} on every signal" if gaps
                 else "not checked: the data has no signal to measure AUROC on")
    return _artefact("tflite-int8", path, _io(ctx, path), check, tolerance)


def _representative(ctx: ExportContext) -> np.ndarray:
    """Preprocessed background training events plus as many queries around them (never test data or signals).

    Background alone calibrates the output range to normal scores, so anomalies would saturate the int8
    output and every low-rate threshold would be lost; the queries widen the calibrated range."""
    from ..distill.queries import make_queries
    from ..distill.score_regression import default_queries
    dataset = ctx.data.dataset
    rng = np.random.default_rng(ctx.seed)
    half = min(REPRESENTATIVE_EVENTS // 2, len(dataset.train))
    background = dataset.train[np.sort(rng.choice(len(dataset.train), size=half, replace=False))]
    queries = make_queries(background, default_queries(dataset.layout), rng, dataset.layout)
    return ctx.source.model.preprocessing.apply(np.concatenate([background, queries]))


def _int8_converter(twin, representative: np.ndarray):
    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(twin)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None, :]] for row in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
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
    if detail["dtype"] != np.int8:
        return z.astype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    return np.clip(np.round(z / scale) + zero_point, -128, 127).astype(np.int8)


def _decode(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] != np.int8:
        return values.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float64) - zero_point) * scale


def _io(ctx: ExportContext, path) -> tuple:
    """Manifest `input` and `output` of a TFLite file, with the int8 scale and zero point when quantized."""
    from .describe import student_input, student_output
    interpreter = _interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    described_in = student_input(ctx.source.model, name=inp["name"], dtype=np.dtype(inp["dtype"]).name)
    described_out = student_output(ctx.source.model, name=out["name"], dtype=np.dtype(out["dtype"]).name)
    if inp["dtype"] == np.int8:
        scale, zero_point = inp["quantization"]
        described_in["int8"] = {"scale": float(scale), "zero_point": int(zero_point),
                                "encode": "q = clip(round(x' / scale) + zero_point, -128, 127)"}
        scale, zero_point = out["quantization"]
        described_out["int8"] = {"scale": float(scale), "zero_point": int(zero_point),
                                 "decode": "score = (q - zero_point) * scale",
                                 "note": "range calibrated on background training events; higher scores "
                                         "saturate at q = 127 (max_abs_diff is dominated by them)"}
    return described_in, described_out


def _artefact(target: str, path, io: tuple, check: dict, tolerance: str) -> dict:
    return {"target": target, "path": path.name, "sha256": sha256_file(path), "input": io[0], "output": io[1],
            "agreement": {**check, "tolerance": tolerance}}
