"""Model size and arithmetic cost: parameters, non-zero parameters, MACs and BOPs per event, bytes on disk.

MACs count the multiply-accumulates of dense and convolution layers only; bias additions, activations,
pooling, normalisation and other elementwise operations are not counted.
BOPs follow the simple form of Baskin et al. used in the hls4ml/QKeras literature:
BOPs = sum over layers of MACs * b_w * b_a (kernel bits times input-activation bits; float = 32 bits).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import KDError, MissingDependency

FLOAT_BITS = 32


# ---------------------------------------------------------------- files

def file_bytes(path) -> int:
    """Size of a file, or the summed size of every file below a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    raise KDError(f"cannot measure size: {path} does not exist")


# ---------------------------------------------------------------- torch

def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependency("torch", "measuring a PyTorch model") from None
    return torch


def torch_param_count(module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return int(sum(p.numel() for p in module.parameters()))


def torch_nonzero_params(module) -> int:
    """Number of parameters that are not exactly zero (e.g. after pruning)."""
    return int(sum(int(p.detach().count_nonzero()) for p in module.parameters()))


def _torch_layer_macs(layer, inputs, output) -> int:
    """MACs of one call of a Linear / Conv / ConvTranspose layer, or 0 for other modules."""
    nn = _torch().nn
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    if isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        per_input_element = layer.out_channels // layer.groups * math.prod(layer.kernel_size)
        return inputs[0].numel() * per_input_element
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        per_output_element = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        return output.numel() * per_output_element
    return 0


def torch_macs(module, example_input) -> int:
    """MACs of Linear and Conv1d/2d/3d/ConvTranspose layers for one event, from forward hooks.

    `example_input` is a batch (tensor or tuple of tensors); only its first event is run.
    Elementwise operations (bias, activations, pooling, normalisation) are not counted.
    """
    torch = _torch()
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    one_event = tuple(x[:1] for x in inputs)
    total = [0]

    def count(layer, layer_inputs, output):
        total[0] += _torch_layer_macs(layer, layer_inputs, output)

    handles = [m.register_forward_hook(count) for m in module.modules()]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(*one_event)
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return int(total[0])


def torch_bops(module, example_input) -> int:
    """BOPs of a float model: MACs * 32 * 32."""
    return torch_macs(module, example_input) * FLOAT_BITS * FLOAT_BITS


# ---------------------------------------------------------------- keras / qkeras

def _keras_layers_module():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependency("tensorflow-cpu", "measuring a Keras model") from None
    return tf.keras.layers


def flat_layers(model) -> list:
    """All layers of `model`, descending into nested models."""
    layers = []
    for layer in model.layers:
        layers.extend(flat_layers(layer) if hasattr(layer, "layers") else [layer])
    return layers


def _event_shape(shape, layer, which: str) -> tuple[int, ...]:
    """Per-event shape (batch axis dropped); every axis must be known."""
    if isinstance(shape, list):
        raise KDError(f"layer '{layer.name}' has several {which}s: not supported for MAC counting")
    event = tuple(shape[1:])
    if any(d is None for d in event):
        raise KDError(f"layer '{layer.name}' has an unknown {which} shape {tuple(shape)}: build with fixed sizes")
    return event


def _layer_shapes(layer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input, output) per-event shapes of the layer's first call."""
    try:
        input_shape, output_shape = layer.get_input_shape_at(0), layer.get_output_shape_at(0)
    except (RuntimeError, ValueError, AttributeError):
        raise KDError(f"layer '{layer.name}' has not been called: build the model on an Input first") from None
    return _event_shape(input_shape, layer, "input"), _event_shape(output_shape, layer, "output")


def _keras_layer_macs(layer) -> int:
    """MACs per event of Dense / Conv / ConvTranspose / DepthwiseConv layers (and QKeras twins), else 0.
    Only multiplies by a non-zero weight count: fully unrolled firmware drops the others (pruned students)."""
    dense = _dense_layer_macs(layer)
    kernel = getattr(layer, "kernel", None) if dense else None
    if kernel is None:
        return dense
    values = kernel.numpy()
    return dense * int(np.count_nonzero(values)) // values.size


def _dense_layer_macs(layer) -> int:
    """MACs per event of the layer as if every weight were non-zero."""
    L = _keras_layers_module()
    if isinstance(layer, L.Multiply):
        return math.prod(_event_shape(layer.get_output_shape_at(0), layer, "output"))
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        raise KDError(f"layer '{layer.name}' ({type(layer).__name__}): separable convolutions are not counted yet")
    if not isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)):
        if any("kernel" in w.name for w in layer.weights):
            raise KDError(f"layer '{layer.name}' ({type(layer).__name__}) has weights but no MAC rule")
        return 0
    input_shape, output_shape = _layer_shapes(layer)
    kernel_taps = int(np.prod(layer.kernel_size)) if hasattr(layer, "kernel_size") else 1
    if isinstance(layer, L.Dense):
        return math.prod(output_shape) * input_shape[-1]
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return math.prod(input_shape) * layer.filters * kernel_taps
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return math.prod(output_shape) * kernel_taps
    return math.prod(output_shape) * (input_shape[-1] // layer.groups) * kernel_taps


def keras_macs(model) -> int:
    """MACs per event of a Keras/QKeras model (dense and convolution layers; channels-last), counting only
    multiplies by a non-zero weight."""
    return int(sum(_keras_layer_macs(layer) for layer in flat_layers(model)))


def keras_dense_macs(model) -> int:
    """MACs per event as a dense matrix multiply does them, zero weights included (CPU runtimes)."""
    return int(sum(_dense_layer_macs(layer) for layer in flat_layers(model)))


def _quantized_weights(layer) -> list[np.ndarray]:
    """The layer's weights as used at inference: QKeras kernels and biases pass through their quantizers."""
    weights = {id(w): w.numpy() for w in layer.weights}
    for weight_name, quantizer_name in (("kernel", "kernel_quantizer_internal"),
                                        ("depthwise_kernel", "depthwise_quantizer_internal"),
                                        ("bias", "bias_quantizer_internal")):
        weight, quantizer = getattr(layer, weight_name, None), getattr(layer, quantizer_name, None)
        if weight is not None and quantizer is not None and id(weight) in weights:
            weights[id(weight)] = np.asarray(quantizer(weight))
    return list(weights.values())


def keras_param_count(model) -> int:
    """Number of weights stored in the model (trainable or not)."""
    return int(model.count_params())


def keras_nonzero_params(model) -> int:
    """Number of non-zero weights, QKeras kernels and biases counted after quantization."""
    return int(sum(np.count_nonzero(w) for layer in flat_layers(model) for w in _quantized_weights(layer)))


def _quantizer_bits(quantizer) -> int:
    """Bit width of a QKeras quantizer; 32 for anything without `bits` (float activations, None)."""
    bits = getattr(quantizer, "bits", None)
    return int(bits) if bits is not None else FLOAT_BITS


_PASS_THROUGH = ("Flatten", "Reshape", "Dropout", "Permute", "ZeroPadding1D", "ZeroPadding2D",
                 "Cropping1D", "Cropping2D", "MaxPooling1D", "MaxPooling2D", "GlobalMaxPooling1D",
                 "GlobalMaxPooling2D", "UpSampling1D", "UpSampling2D", "SpatialDropout1D", "SpatialDropout2D")


def _producer(layer):
    """The single layer whose output feeds `layer`, or None (model input or several inputs)."""
    nodes = getattr(layer, "inbound_nodes", None) or []
    inbound = nodes[0].inbound_layers if nodes else []
    return inbound if not isinstance(inbound, (list, tuple)) else None


def _input_activation_bits(layer) -> int:
    """Bits of the activation entering `layer`: the nearest QActivation or quantized layer activation,
    looking through value-preserving layers (Flatten, pooling by max, ...); 32 when unquantized."""
    producer = _producer(layer)
    while producer is not None and type(producer).__name__ in _PASS_THROUGH:
        producer = _producer(producer)
    if producer is None:
        return FLOAT_BITS
    if type(producer).__name__ == "QActivation":
        return _quantizer_bits(producer.quantizer)
    return _quantizer_bits(getattr(producer, "activation", None))


def _kernel_bits(layer) -> int:
    """Bits of the kernel quantizer (QDense/QConv: kernel, QDepthwiseConv2D: depthwise); 32 if float."""
    quantizer = (getattr(layer, "kernel_quantizer_internal", None)
                 or getattr(layer, "depthwise_quantizer_internal", None))
    return _quantizer_bits(quantizer)


def _multiply_operand_bits(layer) -> int:
    """Product of the operand bit widths of an elementwise Multiply (e.g. squares in an energy head)."""
    nodes = getattr(layer, "inbound_nodes", None) or []
    operands = nodes[0].inbound_layers if nodes else []
    bits = [_quantizer_bits(getattr(op, "quantizer", None)) for op in operands] or [FLOAT_BITS, FLOAT_BITS]
    return int(math.prod(bits))


def keras_bops(model) -> int:
    """Bit operations per event: sum over MAC layers of MACs * kernel bits * input-activation bits."""
    total = 0
    for layer in flat_layers(model):
        macs = _keras_layer_macs(layer)
        if macs and type(layer).__name__ == "Multiply":
            total += macs * _multiply_operand_bits(layer)
        elif macs:
            total += macs * _kernel_bits(layer) * _input_activation_bits(layer)
    return int(total)
