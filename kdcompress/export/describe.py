"""Manifest `input` / `output` descriptions: what an artefact takes and how to read what it returns."""
from __future__ import annotations

PREPROCESSING_FORMULA = "x' = (x - offset) * 2**shift, per feature"

# how to get the teacher's anomaly score back from the student's output s
SCORE_INVERSES = {
    "log1p": "teacher_score = expm1(s)",
    "cicada": "teacher_score = exp(s / 32) for 0 < s < 256 (s is clipped to [0, 256])",
    "identity": "teacher_score = s",
}


def preprocessing(prep, feature_names=None) -> dict:
    described = {"formula": PREPROCESSING_FORMULA, "shift": [int(s) for s in prep.shift],
                 "offset": [float(o) for o in prep.offset]}
    if feature_names:
        described["feature_names"] = list(feature_names)
    return described


def student_input(student, name: str, dtype: str, **extra) -> dict:
    """Preprocessed features: every student artefact takes x', not raw x."""
    return {"name": name, "shape": [None, int(student.preprocessing.n_features)], "dtype": dtype,
            "kind": "preprocessed",
            "preprocessing": preprocessing(student.preprocessing, student.meta.get("feature_names")), **extra}


def student_output(student, name: str, dtype: str, **extra) -> dict:
    transform = student.meta.get("score_transform", "identity")
    described = {"name": name, "shape": [None, 1], "dtype": dtype,
                 "meaning": f"anomaly score s = {transform}(teacher score); higher = more anomalous",
                 "score_transform": transform, "inverse": SCORE_INVERSES.get(transform, "see student.json")}
    output_transform = student.meta.get("output_transform", "none")
    if output_transform not in (None, "none"):
        described["meaning"] = (f"model output E, with s = {output_transform}(E) = {transform}(teacher score); "
                                f"higher = more anomalous")
        described["output_transform"] = output_transform
    return {**described, **extra}


def teacher_input(teacher, name: str) -> dict:
    """Raw features: the teacher's preprocessing is folded into the ONNX graph."""
    return {"name": name, "shape": [None, int(teacher.n_features)], "dtype": "float32", "kind": "raw",
            "preprocessing": {**preprocessing(teacher.preprocessing), "folded_into_model": True}}


def teacher_output(teacher, name: str) -> dict:
    return {"name": name, "shape": [None], "dtype": "float32",
            "meaning": f"teacher anomaly score '{teacher.score_name}' (Teacher.score); higher = more anomalous"}
