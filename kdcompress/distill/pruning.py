"""Magnitude pruning of a trained student: a wider network with most weights at zero.

hls4ml's fully unrolled firmware (Latency strategy, reuse factor 1: weights are constants) drops every
multiply by a zero weight at synthesis, so a pruned student costs only its non-zero multiply-accumulates
(`bench.size` counts those). At a fixed MAC budget a wider
network pruned to fit keeps the teacher's ranking better than a dense narrow one (measured on the digits
and MNIST tables; benchmarks/README.md). Pruning is gradual: the smallest weights of each trainable kernel
are zeroed in steps (PRUNE_STEPS by default) up to the target sparsity, with fine-tuning under the mask after
each step.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..bench.size import flat_layers

PRUNE_STEPS = 3


def prunable_layers(model) -> List:
    """Layers with a trainable kernel (dense and convolution weights; fixed sums like the energy head's stay)."""
    return [layer for layer in flat_layers(model)
            if getattr(layer, "kernel", None) is not None and layer.trainable
            and any(w is layer.kernel for w in layer.trainable_weights)]


def magnitude_masks(model, sparsity: float) -> Dict[str, np.ndarray]:
    """Per prunable layer: 1 for the weights kept, 0 for the floor(sparsity * size) smallest by magnitude."""
    masks = {}
    for layer in prunable_layers(model):
        w = np.abs(layer.kernel.numpy()).ravel()
        drop = int(np.floor(sparsity * w.size + 1e-9))  # 0.35 * 100 is 34.99999...
        keep = np.ones(w.size, dtype=np.float32)
        keep[np.argsort(w, kind="stable")[:drop]] = 0.0
        masks[layer.name] = keep.reshape(layer.kernel.shape)
    return masks


def apply_masks(model, masks: Dict[str, np.ndarray]) -> None:
    for layer in prunable_layers(model):
        if layer.name in masks:
            layer.kernel.assign(layer.kernel * masks[layer.name])


def mask_callback(tf, model, masks: Dict[str, np.ndarray]):
    """Keras callback re-applying `masks` after every batch, so pruned weights stay exactly zero."""
    pairs = [(layer.kernel, tf.constant(masks[layer.name])) for layer in prunable_layers(model)
             if layer.name in masks]

    class KeepPruned(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for kernel, mask in pairs:
                kernel.assign(kernel * mask)

    return KeepPruned()


def schedule(sparsity: float, steps: int = PRUNE_STEPS) -> List[float]:
    """The sparsity after each of `steps` pruning steps: equal steps, the last exactly `sparsity`."""
    return [sparsity * step / steps for step in range(1, steps)] + [sparsity]


def kernel_sparsity(model) -> float:
    """Fraction of zero weights over all prunable kernels."""
    sizes = [(int(np.count_nonzero(layer.kernel.numpy())), int(np.prod(layer.kernel.shape)))
             for layer in prunable_layers(model)]
    total = sum(size for _, size in sizes)
    return 1.0 - sum(nonzero for nonzero, _ in sizes) / total if total else 0.0
