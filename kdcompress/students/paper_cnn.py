"""QKeras CNN students A..G for 28x28 images, sized to the parameter budgets of Pol et al. 2023.

The budgets (about 7.2k, 2.2k, 1.1k, 409, 225, 133, 77 parameters) are the paper's; the layer layouts are ours:
flat input -> input quantizer -> 28x28x1 -> [input average pool] -> (QConv2D 3x3 valid -> quantized ReLU -> 2x2 pool)*
-> flatten -> (QDense -> quantized ReLU)* -> QDense(1) -> output quantizer. A plain layer chain, so the
float twin (int8 TFLite) and hls4ml can take it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..errors import KDError
from ..quant import QuantConfig
from ..registry import STUDENTS
from ..tf_env import qkeras, tensorflow

IMAGE_SHAPE = (28, 28, 1)
KERNEL = 3


@dataclass(frozen=True)
class Layout:
    budget: int  # the paper's parameter count for this student
    conv_filters: Tuple[int, ...]
    dense_units: Tuple[int, ...]
    input_pool: int = 1  # >1: average-pool the input by this factor first


VARIANTS = {
    "A": Layout(7200, (8, 16), (15,)),
    "B": Layout(2200, (4, 8), (9,)),
    "C": Layout(1100, (4, 4), (9,)),
    "D": Layout(409, (4, 4), (2,)),
    "E": Layout(225, (2, 3), (2,)),
    "F": Layout(133, (3, 2), ()),
    "G": Layout(77, (4,), (2,), input_pool=4),  # 7x7 input: sturdier than two 2-filter convs (no dead starts)
}
POOLS = ("max", "avg")


def budget(variant: str) -> int:
    return _layout(variant).budget


def min_side(variant: str) -> int:
    """The smallest square image `variant` can take (each conv 3x3 valid needs >= 3 pixels, each pool halves)."""
    layout = _layout(variant)
    side = 1
    for _ in layout.conv_filters:
        side = 2 * side + KERNEL - 1
    return side * layout.input_pool


def _layout(variant: str) -> Layout:
    if variant not in VARIANTS:
        raise KDError(f"paper-cnn: unknown variant '{variant}' (known: {', '.join(VARIANTS)})")
    return VARIANTS[variant]


@STUDENTS.register("paper-cnn")
def build_paper_cnn(n_features: int, hidden: Optional[Sequence[int]] = None, quant: QuantConfig = QuantConfig(),
                    seed: int = 0, variant: str = "A", pool: str = "avg",
                    image_shape: Sequence[int] = IMAGE_SHAPE):
    """Student `variant` (A largest .. G smallest). `hidden` is not used: the variant fixes every layer."""
    tf, qk = tensorflow(), qkeras()
    layout = _layout(variant)
    shape = _check_shape(n_features, image_shape)
    if pool not in POOLS:
        raise KDError(f"paper-cnn: pool must be one of {', '.join(POOLS)}, got '{pool}'")
    pooling = tf.keras.layers.MaxPooling2D if pool == "max" else tf.keras.layers.AveragePooling2D
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    inputs = tf.keras.Input(shape=(n_features,), name="inputs")
    x = qk.QActivation(quant.input_quantizer(), name="input_quant")(inputs)
    x = tf.keras.layers.Reshape(shape, name="image")(x)
    if layout.input_pool > 1:
        x = tf.keras.layers.AveragePooling2D(layout.input_pool, name="input_pool")(x)
    for i, filters in enumerate(layout.conv_filters):
        x = qk.QConv2D(filters, KERNEL, kernel_quantizer=quant.weight_quantizer(),
                       bias_quantizer=quant.weight_quantizer(), kernel_initializer=init, name=f"conv{i}")(x)
        x = qk.QActivation(quant.relu_quantizer(), name=f"conv{i}_relu")(x)
        x = pooling(2, name=f"pool{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(layout.dense_units):
        x = qk.QDense(units, kernel_quantizer=quant.weight_quantizer(), bias_quantizer=quant.weight_quantizer(),
                      kernel_initializer=init, name=f"dense{i}")(x)
        x = qk.QActivation(quant.relu_quantizer(), name=f"relu{i}")(x)
    x = qk.QDense(1, kernel_quantizer=quant.weight_quantizer(), bias_quantizer=quant.weight_quantizer(),
                  kernel_initializer=init, name="score_dense")(x)
    outputs = qk.QActivation(quant.output_quantizer(), name="score")(x)
    return tf.keras.Model(inputs, outputs, name=f"student_paper_cnn_{variant}")


def _check_shape(n_features: int, image_shape) -> Tuple[int, int, int]:
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != n_features:
        raise KDError(f"paper-cnn: image_shape {tuple(image_shape)} does not hold the {n_features} input features")
    return shape
