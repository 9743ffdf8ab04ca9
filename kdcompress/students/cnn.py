"""QKeras CNN student: flat quantized input -> image -> QConv2D -> quantized ReLU -> [max pool] -> QDense* -> score.

The input stays a flat (N, H*W*C) table so the student shares preprocessing, data handling and export with
the MLP; the first layer after the input quantizer reshapes it to (H, W, C).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

from ..errors import KDError
from ..quant import QuantConfig
from ..registry import STUDENTS
from ..tf_env import qkeras, tensorflow


def default_image_shape(n_features: int) -> Tuple[int, int, int]:
    """(H, W, 1) with W the largest divisor of n_features not above its square root (57 -> 19 x 3)."""
    width = max(d for d in range(1, math.isqrt(n_features) + 1) if n_features % d == 0)
    return n_features // width, width, 1


def _check_shape(n_features: int, input_shape) -> Tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise KDError(f"cnn student: input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    if math.prod(shape) != n_features:
        raise KDError(f"cnn student: input_shape {shape} holds {math.prod(shape)} values, "
                      f"but the data has {n_features} features")
    return shape


@STUDENTS.register("cnn")
def build_cnn(n_features: int, hidden: Sequence[int] = (8,), quant: QuantConfig = QuantConfig(), seed: int = 0,
              input_shape: Optional[Sequence[int]] = None, filters: int = 4, kernel: int = 3, pool: bool = True):
    """Small QKeras CNN (a few hundred parameters for 18x14 inputs with the defaults).

    Pooling (2x2 max) is used only when both conv output sides are at least 4.
    """
    tf, qk = tensorflow(), qkeras()
    height, width, channels = _check_shape(n_features, input_shape or default_image_shape(n_features))
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    kernel_size = (min(kernel, height), min(kernel, width))
    inputs = tf.keras.Input(shape=(n_features,), name="inputs")
    x = qk.QActivation(quant.input_quantizer(), name="input_quant")(inputs)
    x = tf.keras.layers.Reshape((height, width, channels), name="image")(x)
    x = qk.QConv2D(int(filters), kernel_size, kernel_quantizer=quant.weight_quantizer(),
                   bias_quantizer=quant.weight_quantizer(), kernel_initializer=init, name="conv0")(x)
    x = qk.QActivation(quant.relu_quantizer(), name="conv0_relu")(x)
    conv_height, conv_width = height - kernel_size[0] + 1, width - kernel_size[1] + 1
    if pool and min(conv_height, conv_width) >= 4:
        x = tf.keras.layers.MaxPooling2D((2, 2), name="pool0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hidden):
        x = qk.QDense(int(units), kernel_quantizer=quant.weight_quantizer(),
                      bias_quantizer=quant.weight_quantizer(), kernel_initializer=init, name=f"dense{i}")(x)
        x = qk.QActivation(quant.relu_quantizer(), name=f"relu{i}")(x)
    x = qk.QDense(1, kernel_quantizer=quant.weight_quantizer(), bias_quantizer=quant.weight_quantizer(),
                  kernel_initializer=init, name="score_dense")(x)
    outputs = qk.QActivation(quant.output_quantizer(), name="score")(x)
    return tf.keras.Model(inputs, outputs, name="student_cnn")
