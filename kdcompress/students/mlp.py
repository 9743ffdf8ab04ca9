"""QKeras MLP student: quantized input -> [QDense -> quantized ReLU]* -> QDense(1) -> quantized output."""
from __future__ import annotations

from typing import Sequence

from ..quant import QuantConfig
from ..registry import STUDENTS
from ..tf_env import qkeras, tensorflow


@STUDENTS.register("mlp")
def build_mlp(n_features: int, hidden: Sequence[int] = (32, 16), quant: QuantConfig = QuantConfig(),
              seed: int = 0):
    tf, qk = tensorflow(), qkeras()
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    inputs = tf.keras.Input(shape=(n_features,), name="inputs")
    x = qk.QActivation(quant.input_quantizer(), name="input_quant")(inputs)
    for i, width in enumerate(hidden):
        x = qk.QDense(int(width), kernel_quantizer=quant.weight_quantizer(),
                      bias_quantizer=quant.weight_quantizer(), kernel_initializer=init, name=f"dense{i}")(x)
        x = qk.QActivation(quant.relu_quantizer(), name=f"relu{i}")(x)
    x = qk.QDense(1, kernel_quantizer=quant.weight_quantizer(), bias_quantizer=quant.weight_quantizer(),
                  kernel_initializer=init, name="score_dense")(x)
    outputs = qk.QActivation(quant.output_quantizer(), name="score")(x)
    return tf.keras.Model(inputs, outputs, name="student_mlp")
