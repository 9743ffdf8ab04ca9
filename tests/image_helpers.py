"""Seeded bar images and model-state helpers shared by the image-detector tests."""
import numpy as np
import torch


def bar_images(count: int, seed: int, side: int = 16, anomalous: bool = False, low: int = 4,
               high_margin: int = 4) -> np.ndarray:
    """Seeded side x side images in [0, 1]: a bright vertical bar (normal) or a horizontal bar (anomalous), at a
    position drawn from [low, side - high_margin)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, size=(count, side, side)).astype(np.float32)
    for i, pos in enumerate(rng.integers(low, side - high_margin, size=count)):
        if anomalous:
            x[i, pos:pos + 2, 2:-2] = 1.0
        else:
            x[i, 2:-2, pos:pos + 2] = 1.0
    return x.reshape(count, -1)


def state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
