"""Float twin of a QKeras student: the same graph in plain Keras, carrying the quantized weights.

Post-training integer quantization works best from this twin (TFLite cannot re-quantize the QKeras
quantizer arithmetic). Mapping, layer by layer (tf.keras.models.clone_model keeps the topology):
  QDense / QConv2D            -> Dense / Conv2D with kernel and bias passed through their quantizers
  QActivation(quantized_relu) -> ReLU clipped at the quantizer's largest value
  QActivation(quantized_bits) -> identity (rounding and clipping are left to the integer calibration)
  plain Keras layers (Reshape, Flatten, pooling, Multiply, ...) -> copied from their configuration
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import KDError
from ..tf_env import tensorflow

WEIGHTED = {"QDense": ("units", "use_bias"),
            "QConv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "use_bias")}


def float_twin(model):
    """Plain-Keras model computing the student with float arithmetic and its quantized weights."""
    tf = tensorflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QKeras get_config warns about serialising its quantizers
        twin = tf.keras.models.clone_model(model, clone_function=lambda layer: _twin_layer(tf, layer))
    for layer in model.layers:
        if type(layer).__name__ in WEIGHTED:
            twin.get_layer(layer.name).set_weights(_quantized_weights(layer))
    return twin


def _twin_layer(tf, layer):
    kind = type(layer).__name__
    if kind in WEIGHTED:
        _check_linear(layer)
        config = {k: v for k, v in layer.get_config().items() if k in WEIGHTED[kind] or k == "name"}
        return getattr(tf.keras.layers, kind[1:]).from_config(config)
    if kind == "QActivation":
        return _twin_activation(tf, layer)
    if kind.startswith("Q") or not hasattr(tf.keras.layers, kind):
        raise KDError(f"layer '{layer.name}' ({kind}) has no float-twin equivalent for the quantized TFLite export")
    return type(layer).from_config(layer.get_config())


def _check_linear(layer) -> None:
    activation = layer.get_config().get("activation")
    if activation not in (None, "linear"):
        raise KDError(f"layer '{layer.name}' has a fused activation {activation!r}; the float twin supports "
                      f"separate QActivation layers only")


def _twin_activation(tf, layer):
    name = type(getattr(layer, "quantizer", None)).__name__
    if name == "quantized_bits":
        return tf.keras.layers.Activation("linear", name=layer.name)
    if name == "quantized_relu":
        largest = float(np.asarray(layer.quantizer(tf.constant([1e9], dtype=tf.float32)))[0])
        return tf.keras.layers.ReLU(max_value=largest, name=layer.name)
    raise KDError(f"activation '{layer.name}' ({name}) has no float-twin equivalent for the quantized TFLite export")


def _quantized_weights(layer) -> list:
    """Kernel and bias as the QKeras layer uses them in its forward pass."""
    weights = [np.asarray(layer.kernel_quantizer_internal(layer.kernel)
                          if layer.kernel_quantizer_internal else layer.kernel)]
    if layer.use_bias:
        weights.append(np.asarray(layer.bias_quantizer_internal(layer.bias)
                                  if layer.bias_quantizer_internal else layer.bias))
    return weights
