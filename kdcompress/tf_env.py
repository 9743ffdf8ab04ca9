"""Lazy, quiet TensorFlow/QKeras import with a clear error when missing."""
from __future__ import annotations

import os

from .errors import MissingDependency


def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependency("tensorflow-cpu==2.15.1", "the QKeras student") from None
    tf.get_logger().setLevel("ERROR")
    return tf


def qkeras():
    tensorflow()
    try:
        import qkeras as qk
    except ImportError:
        raise MissingDependency("qkeras==0.9.0", "the QKeras student") from None
    return qk


def custom_objects() -> dict:
    qk = qkeras()
    from qkeras.utils import _add_supported_quantized_objects
    objects: dict = {}
    _add_supported_quantized_objects(objects)
    objects.update({"QDense": qk.QDense, "QActivation": qk.QActivation})
    return objects


def seed_everything(seed: int) -> None:
    tf = tensorflow()
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled or unsupported: determinism stays best-effort
        pass
