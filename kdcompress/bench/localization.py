"""Pixel-level localisation metrics on anomaly maps (higher = more anomalous), as in MVTec AD evaluations.

- pixel AUROC: every pixel of every test image is a sample, its mask value the label;
- PRO (per-region overlap, Bergmann et al. 2021): at a threshold t, the mean over connected defect regions of
  the fraction of the region's pixels above t; plotted against the false positive rate of the defect-free
  pixels and integrated up to `max_fpr` (0.3 by convention), divided by `max_fpr` so a perfect map gives 1.
Maps and masks are (N, H, W) or flat (N, H*W) with `shape`; regions are 8-connected within one image.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ..errors import KDError
from .metrics import auroc

MAX_THRESHOLDS = 20000  # PRO curve points beyond this are thinned to quantiles of the pixel values


def _as_images(maps, masks, shape: Optional[Tuple[int, int]]) -> Tuple[np.ndarray, np.ndarray]:
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks)
    if shape is not None:
        maps, masks = maps.reshape(len(maps), *shape), masks.reshape(len(masks), *shape)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise KDError(f"anomaly maps {maps.shape} and masks {masks.shape} must both be (images, height, width)")
    if np.isnan(maps).any():
        raise KDError(f"anomaly maps contain NaN ({int(np.isnan(maps).sum())} of {maps.size} pixels)")
    return maps, masks.astype(bool)


def pixel_auroc(maps, masks, shape: Optional[Tuple[int, int]] = None) -> float:
    """AUROC of defect pixels against defect-free pixels over all images."""
    maps, masks = _as_images(maps, masks, shape)
    if not masks.any() or masks.all():
        raise KDError("pixel AUROC needs both defect and defect-free pixels in the masks")
    return auroc(maps[~masks], maps[masks])


def defect_regions(masks) -> List[Tuple[int, np.ndarray]]:
    """(image index, flat pixel indices) of each 8-connected defect region of each image."""
    from scipy import ndimage
    regions = []
    for i, mask in enumerate(np.asarray(masks, dtype=bool)):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        flat = labels.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(1, count + 2))
        regions += [(i, order[bounds[k]:bounds[k + 1]]) for k in range(count)]
    return regions


def pro_curve(maps, masks, shape: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(false positive rate, mean per-region overlap) as the threshold falls from +inf to -inf."""
    maps, masks = _as_images(maps, masks, shape)
    regions = defect_regions(masks)
    if not regions or masks.all():
        raise KDError("PRO needs at least one defect region and some defect-free pixels in the masks")
    normal = np.sort(maps[~masks])
    thresholds = _thresholds(maps)
    fpr = 1.0 - np.searchsorted(normal, thresholds, side="right") / normal.size
    overlap = np.zeros(thresholds.size)
    for image, pixels in regions:
        inside = np.sort(maps[image].ravel()[pixels])
        overlap += 1.0 - np.searchsorted(inside, thresholds, side="right") / inside.size
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, overlap / len(regions), 1.0]


def _thresholds(maps: np.ndarray) -> np.ndarray:
    """Descending thresholds at every distinct pixel value (pixels pass when strictly above)."""
    values = np.unique(maps)
    if values.size > MAX_THRESHOLDS:
        values = np.unique(np.quantile(values, np.linspace(0, 1, MAX_THRESHOLDS)))
    return values[::-1]


def pro_auc(maps, masks, shape: Optional[Tuple[int, int]] = None, max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for false positive rates up to `max_fpr`, divided by `max_fpr`."""
    if not 0.0 < float(max_fpr) <= 1.0:
        raise KDError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = pro_curve(maps, masks, shape)
    keep = fpr <= max_fpr
    cut = int(np.argmax(~keep)) if not keep.all() else fpr.size
    x, y = fpr[:cut], pro[:cut]
    if cut < fpr.size:  # the curve's value at max_fpr, between the last point inside and the first beyond
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        x, y = np.r_[x, max_fpr], np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / max_fpr)
