"""ONNX export, checked with onnx.checker and run with onnxruntime.

- student: tf2onnx from the QKeras model (quantizers become Round/Min/Max ops); input preprocessed
  features x', output the student score; must agree with QKeras to STUDENT_TOLERANCE.
- teacher (any torch scorer file; the ONNX is named after it): one graph raw features -> preprocessing ->
  model -> score function -> score (N,), exported with torch.onnx (TorchScript tracing, dynamo=False),
  dynamic batch axis; must agree with Teacher.score to
  |onnx - torch| <= TEACHER_RTOL * |torch| + TEACHER_ATOL (the absolute floor covers scores near zero).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import KDError, MissingDependency
from ..fileio import sha256_file
from ..registry import EXPORTERS
from .context import STUDENT, ExportContext
from .describe import student_input, student_output, teacher_input, teacher_output
from .verify import agreement, concatenated, library_output_silenced, model_output

STUDENT_TOLERANCE = 1e-5
TEACHER_RTOL, TEACHER_ATOL = 1e-4, 1e-6
STUDENT_OPSET = 13
TEACHER_OPSET = 17
CHUNK = 65536
STUDENT_FILE = "student.onnx"
TEACHER_FILE = "teacher.onnx"  # when the torch file's name has no stem


@EXPORTERS.register("onnx")
def export_onnx(ctx: ExportContext, folder) -> list:
    if ctx.source.kind == STUDENT:
        return [_student_artefact(ctx, folder)]
    return [_teacher_artefact(ctx, folder)]


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnx==1.17.0 onnxruntime==1.20.1", "the ONNX export") from None
    return onnx, onnxruntime


# ---------------------------------------------------------------- student

def _student_artefact(ctx: ExportContext, folder) -> dict:
    student = ctx.source.model
    ctx.note("onnx: converting the QKeras student with tf2onnx")
    path = folder / STUDENT_FILE
    _save_checked(_student_proto(student.model, student.preprocessing.n_features), path)
    z = {name: student.preprocessing.apply(x) for name, x in ctx.events().items()}
    reference = {name: model_output(student, v) for name, v in z.items()}
    session = _session(path)
    check = agreement(reference, {name: _run(session, v) for name, v in z.items()})
    if not check["max_abs_diff"] <= STUDENT_TOLERANCE:
        raise KDError(f"ONNX student disagrees with the QKeras model: max |diff| {check['max_abs_diff']:.3g} "
                      f"> {STUDENT_TOLERANCE:g} on {check['events']} events")
    check["tolerance"] = f"max_abs_diff <= {STUDENT_TOLERANCE:g}"
    return {"target": "onnx", "path": path.name, "sha256": sha256_file(path),
            "input": student_input(student, session.get_inputs()[0].name, "float32"),
            "output": student_output(student, session.get_outputs()[0].name, "float32"),
            "agreement": check}


def _student_proto(model, n_features: int):
    from ..tf_env import tensorflow
    tf = tensorflow()
    try:
        import tf2onnx
    except ImportError:
        raise MissingDependency("tf2onnx==1.17.0", "the ONNX export of a QKeras student") from None
    signature = [tf.TensorSpec((None, n_features), tf.float32, name="inputs")]
    try:
        with library_output_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=STUDENT_OPSET)
    except Exception as exc:  # tf2onnx raises many types
        raise KDError(f"tf2onnx could not convert the student: {str(exc).strip().splitlines()[0][:200]}") from None
    return proto


# ---------------------------------------------------------------- teacher

def _teacher_artefact(ctx: ExportContext, folder) -> dict:
    teacher = ctx.source.model
    ctx.note("onnx: exporting the teacher with its preprocessing and score function")
    path = folder / teacher_onnx_name(ctx.source.path)
    _export_teacher(teacher, path)
    _check(str(path))
    events = ctx.events()
    reference = {name: teacher.score(x) for name, x in events.items()}
    session = _session(path)
    scores = {name: _run(session, x.astype(np.float32)) for name, x in events.items()}
    check = agreement(reference, scores)
    check.update(_relative_check(reference, scores))
    return {"target": "onnx", "path": path.name, "sha256": sha256_file(path),
            "input": teacher_input(teacher, session.get_inputs()[0].name),
            "output": teacher_output(teacher, session.get_outputs()[0].name), "agreement": check}


def teacher_onnx_name(source) -> str:
    """The ONNX file is named after the torch file: teacher.pt -> teacher.onnx, student.pt -> student.onnx."""
    stem = Path(source).stem
    return f"{stem}.onnx" if stem else TEACHER_FILE


def teacher_score_module(teacher):
    """nn.Module: raw features (N, F) -> teacher score (N,), preprocessing and score function included."""
    import torch
    from ..registry import SCORES

    class TeacherScore(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = teacher.module.eval()
            self.register_buffer("offset", torch.tensor(teacher.preprocessing.offset, dtype=torch.float32))
            self.register_buffer("scale", torch.exp2(torch.tensor(teacher.preprocessing.shift, dtype=torch.float32)))
            self.score = SCORES.get(teacher.score_name)

        def forward(self, x):
            z = (x - self.offset) * self.scale
            return self.score(self.model(z), z, teacher.layout)

    return TeacherScore().eval()


def _export_teacher(teacher, path) -> None:
    import torch
    module = teacher_score_module(teacher)
    example = torch.zeros(2, teacher.n_features)
    try:
        with library_output_silenced(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), input_names=["features"], output_names=["score"],
                              dynamic_axes={"features": {0: "batch"}, "score": {0: "batch"}},
                              opset_version=TEACHER_OPSET, dynamo=False)
    except Exception as exc:  # torch.onnx raises many types
        raise KDError(f"torch.onnx could not export the teacher: {str(exc).strip().splitlines()[0][:200]}") from None


def _relative_check(reference: Dict[str, np.ndarray], scores: Dict[str, np.ndarray]) -> dict:
    ref, got = concatenated(reference), concatenated(scores)
    diff = np.abs(got - ref)
    allowed = TEACHER_RTOL * np.abs(ref) + TEACHER_ATOL
    worst = float(np.max(diff / np.maximum(np.abs(ref), TEACHER_ATOL))) if diff.size else 0.0
    if not np.all(diff <= allowed):
        raise KDError(f"ONNX teacher disagrees with Teacher.score on {int((diff > allowed).sum())} of {diff.size} "
                      f"events (largest relative difference {worst:.3g}, allowed {TEACHER_RTOL:g})")
    return {"max_rel_diff": worst,
            "tolerance": f"|onnx - torch| <= {TEACHER_RTOL:g} * |torch| + {TEACHER_ATOL:g}"}


# ---------------------------------------------------------------- shared

def _check(model) -> None:
    """onnx.checker on a ModelProto or a file path."""
    onnx, _ = _onnx()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise KDError(f"the exported ONNX graph is invalid: {str(exc).strip().splitlines()[0][:200]}") from None


def _save_checked(proto, path) -> None:
    _check(proto)
    _onnx()[0].save(proto, str(path))


def _session(path):
    _, ort = _onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run(session, x: np.ndarray) -> np.ndarray:
    """Scores in chunks; a single event goes first, so a batch size frozen at export time is caught."""
    name = session.get_inputs()[0].name
    try:
        single = [session.run(None, {name: np.ascontiguousarray(x[:1], dtype=np.float32)})[0].reshape(-1)]
        out = [session.run(None, {name: np.ascontiguousarray(x[s:s + CHUNK], dtype=np.float32)})[0].reshape(-1)
               for s in range(0, len(x), CHUNK)]
    except Exception as exc:  # onnxruntime raises its own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise KDError(f"onnxruntime cannot run the exported model: {first}") from None
    if len(x) and not np.allclose(single[0], out[0][:1], rtol=1e-4, atol=1e-6):
        raise KDError("the exported ONNX model gives a different score for a single event than in a batch")
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
