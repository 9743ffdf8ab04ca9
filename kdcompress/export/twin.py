"""Float twin of a QKeras student: the same graph in plain Keras, carrying the quantized weights.

Post-training integer quantization works best from this twin (TFLite cannot re-quantize the QKeras
quantizer arithmetic). Mapping, layer by layer (tf.keras.models.clone_model keeps the topology):
  QDense / QConv2D            -> Dense / Conv2D with kernel and bias passed through their quantizers
  QActivation(quantized_relu) -> ReLU clipped at the quantizer's largest value
  QActivation(quantized_bits) -> identity (rounding and clipping are left to the integer calibration)
  plain Keras layers (Reshape, Flatten, pooling, Multiply, ...) -> copied from their configuration

grid_twin: the same, but every activation carries a fake-quant range, so the int8 TFLite converter puts
each tensor on the grid QKeras rounds it to instead of a calibrated one (students trained with coarse
activations rely on that rounding: texture students lost 0.04-0.08 AUROC calibrated, see FEATURE_KD.md):
  QActivation(quantized_relu(8, i))   -> fake quant [0, 255 * 2**(i-8)]: exactly the QKeras grid and clip
  QActivation(quantized_bits)         -> fake quant over the range seen on the calibration events
  AveragePooling2D after such a ReLU  -> a fixed averaging depthwise convolution on a grid `area` times
      finer (coarser by powers of 2 until the largest pooled value seen fits in int8): TFLite keeps an
      average pool on its input's scale, which would round the averages back to the ReLU grid
Other students (ReLUs of other widths, branches, energy heads) keep the calibrated float_twin.
"""
from __future__ import annotations

import warnings
from typing import Optional

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


INT8_LEVELS = 255
PROBE_CHUNK = 1024
PLAIN_CHAIN_LAYERS = ("InputLayer", "Reshape", "Flatten", "MaxPooling2D", "AveragePooling2D")


def grid_twin(model, representative: np.ndarray):
    """Float model whose int8 conversion rounds activations on the QKeras grids (see grid_twin_unsupported)."""
    reason = grid_twin_unsupported(model)
    if reason:
        raise KDError(f"no grid twin: {reason}")
    tf = tensorflow()
    ranges = _activation_ranges(model, representative)
    x = inputs = tf.keras.Input(shape=model.input_shape[1:], name=model.layers[0].name)
    previous = None
    for layer in model.layers[1:]:
        x = _grid_layer(tf, layer, previous, x, ranges)
        previous = layer
    twin = tf.keras.Model(inputs, x, name=f"{model.name}_grid_twin")
    for layer in model.layers:
        if type(layer).__name__ in WEIGHTED:
            twin.get_layer(layer.name).set_weights(_quantized_weights(layer))
    return twin


def grid_twin_unsupported(model) -> Optional[str]:
    """Why `model` has no grid twin (branches, layers or ReLU widths int8 cannot hold exactly), else None."""
    for i, layer in enumerate(model.layers):
        inbound = [node.inbound_layers for node in layer._inbound_nodes]
        if i and (len(inbound) != 1 or inbound[0] is not model.layers[i - 1]):
            return f"layer '{layer.name}' does not follow the previous layer in a plain chain"
        kind = type(layer).__name__
        if kind == "QActivation":
            reason = _activation_unsupported(layer)
            if reason:
                return reason
        elif kind not in WEIGHTED and kind not in PLAIN_CHAIN_LAYERS:
            return f"layer '{layer.name}' ({kind}) has no int8 grid equivalent"
    return None


def _activation_unsupported(layer) -> Optional[str]:
    quantizer = layer.quantizer
    name = type(quantizer).__name__
    if name == "quantized_bits":
        return None
    if name == "quantized_relu" and _relu_step(quantizer) is not None:
        return None
    return f"activation '{layer.name}' ({name}) has no exact int8 grid (8-bit quantized_relu only)"


def _relu_step(quantizer) -> Optional[float]:
    """Grid step of an 8-bit plain quantized_relu (256 levels from 0: exactly int8 with zero point -128)."""
    plain = (quantizer.bits == 8 and not getattr(quantizer, "negative_slope", 0.0)
             and not getattr(quantizer, "use_stochastic_rounding", False))
    return 2.0 ** (quantizer.integer - quantizer.bits) if plain else None


def _grid_layer(tf, layer, previous, x, ranges: dict):
    kind = type(layer).__name__
    if kind == "QActivation" and type(layer.quantizer).__name__ == "quantized_relu":
        return _fake_quant(tf, 0.0, INT8_LEVELS * _relu_step(layer.quantizer), layer.name)(x)
    if kind == "QActivation":
        low, high = ranges[layer.name]
        return _fake_quant(tf, low, high, layer.name)(x)
    if kind == "AveragePooling2D" and _after_grid_relu(previous) and layer.padding == "valid":
        return _grid_average(tf, layer, _relu_step(previous.quantizer), ranges[layer.name][1], x)
    return _twin_layer(tf, layer)(x)


def _after_grid_relu(layer) -> bool:
    return type(layer).__name__ == "QActivation" and type(layer.quantizer).__name__ == "quantized_relu"


def _needs_range(layer, before) -> bool:
    """quantized_bits activations and average pools after a ReLU get their int8 range from data."""
    kind = type(layer).__name__
    return ((kind == "QActivation" and type(layer.quantizer).__name__ == "quantized_bits")
            or (kind == "AveragePooling2D" and _after_grid_relu(before)))


def _grid_average(tf, layer, step: float, largest: float, x):
    """Average pool as a depthwise convolution with fixed weights 1/area, rounded on the finest grid that
    holds both the exact averages (step / area) and the largest pooled value seen (within int8)."""
    pool = tuple(layer.pool_size)
    area = int(np.prod(pool))
    fine = step / area
    while fine < step and INT8_LEVELS * fine < largest:
        fine *= 2
    if fine >= step:  # no finer grid fits: a plain pool on the ReLU's grid
        return _twin_layer(tf, layer)(x)
    channels = int(x.shape[-1])
    average = tf.keras.layers.DepthwiseConv2D(pool, strides=layer.strides, padding="valid", use_bias=False,
                                              name=layer.name)
    y = average(x)
    average.set_weights([np.full((*pool, channels, 1), 1.0 / area, dtype=np.float32)])
    return _fake_quant(tf, 0.0, INT8_LEVELS * fine, f"{layer.name}_grid")(y)


def _fake_quant(tf, low: float, high: float, name: str):
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high - low <= 0:
        high = low + 1.0  # a constant tensor: any range holds it
    return tf.keras.layers.Lambda(
        lambda t: tf.quantization.fake_quant_with_min_max_args(t, min=low, max=high, num_bits=8), name=name)


def _activation_ranges(model, representative: np.ndarray) -> dict:
    """(min, max) over `representative` of every layer output the grid twin needs a range for."""
    tf = tensorflow()
    names = [layer.name for layer, before in zip(model.layers[1:], model.layers) if _needs_range(layer, before)]
    probe = tf.keras.Model(model.input, [model.get_layer(name).output for name in names])
    ranges = {name: (np.inf, -np.inf) for name in names}
    for start in range(0, len(representative), PROBE_CHUNK):
        outputs = probe(representative[start:start + PROBE_CHUNK], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, values in zip(names, outputs):
            values = np.asarray(values)
            low, high = ranges[name]
            ranges[name] = (min(low, float(values.min())), max(high, float(values.max())))
    return ranges

