"""Energy-head student: a ReLU trunk, then E = sum_k (w_k . h + b_k)^2, shaped like a reconstruction error.

The model outputs E (quantized); training fits log1p(E) to the target, so E tracks score / scale.
In firmware the squares are multiplies and the sum is a fixed all-ones dense layer.
"""
from __future__ import annotations

from typing import Sequence

from ..quant import QuantConfig
from ..registry import STUDENTS
from ..tf_env import qkeras, tensorflow

OUTPUT_TRANSFORM = "log1p"


@STUDENTS.register("energy")
def build_energy(n_features: int, hidden: Sequence[int] = (32, 16), quant: QuantConfig = QuantConfig(),
                 seed: int = 0, components: int = 0):
    """`hidden[:-1]` is the trunk; `components` (default hidden[-1]) is the number of squared projections."""
    tf, qk = tensorflow(), qkeras()
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    trunk, k = list(hidden[:-1]) or [int(hidden[0])], int(components or hidden[-1])
    inputs = tf.keras.Input(shape=(n_features,), name="inputs")
    x = qk.QActivation(quant.input_quantizer(), name="input_quant")(inputs)
    for i, width in enumerate(trunk):
        x = qk.QDense(int(width), kernel_quantizer=quant.weight_quantizer(),
                      bias_quantizer=quant.weight_quantizer(), kernel_initializer=init, name=f"dense{i}")(x)
        x = qk.QActivation(quant.relu_quantizer(), name=f"relu{i}")(x)
    x = qk.QDense(k, kernel_quantizer=quant.weight_quantizer(), bias_quantizer=quant.weight_quantizer(),
                  kernel_initializer=init, name="projections")(x)
    x = qk.QActivation(quant.projection_quantizer(), name="projections_quant")(x)
    squares = tf.keras.layers.Multiply(name="squares")([x, x])
    squares = qk.QActivation(quant.square_quantizer(), name="squares_quant")(squares)
    total = qk.QDense(1, use_bias=False, trainable=False, kernel_initializer="ones",
                      kernel_quantizer=quant.weight_quantizer(), name="energy_sum")(squares)
    outputs = qk.QActivation(quant.energy_output_quantizer(), name="score")(total)
    return tf.keras.Model(inputs, outputs, name="student_energy")
