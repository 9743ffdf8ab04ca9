"""Teacher-labelled query points off the normal manifold, so the student learns the teacher's score there.

Every strategy maps (normal events, count, rng) -> (queries, templates): new raw events and, per query, a
normal event whose object pattern it keeps. The teacher labels the queries afterwards.
Physics layouts keep their structure: zero-padded objects stay zero, pT >= 0, phi wrapped to (-pi, pi].
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

from ..errors import KDError
from ..registry import Registry

QUERIES = Registry("query strategy")
NOISE_SCALES = (0.25, 0.5, 1.0, 2.0)
IN_RANGE_NOISE_SCALES = (1.0, 2.0, 4.0)
UPHILL_STEPS = 16
UPHILL_STEP = 0.25  # standard deviations per step


def has_object_groups(layout: Optional[dict]) -> bool:
    """True for layouts that name groups of object slots (the `objects` strategy needs them)."""
    return bool((layout or {}).get("groups"))


PHYSICS_STRATEGIES = ("objects", "harder")  # queries for layouts of physics objects in groups (ADC2021)


def plus_physics(mix: Dict[str, float], fraction: float, layout: Optional[dict]) -> Dict[str, float]:
    """`mix` with `objects` and `harder` queries, `fraction` each, added where the layout has object groups,
    else `mix` unchanged."""
    return {**mix, **{name: fraction for name in PHYSICS_STRATEGIES}} if has_object_groups(layout) else dict(mix)


def feature_spread(x: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation, 1 where a feature is constant."""
    s = x.std(axis=0)
    return np.where(s > 0, s, 1.0)


@QUERIES.register("noise")
def gaussian_noise(x: np.ndarray, n: int, rng: np.random.Generator, scales=NOISE_SCALES) -> np.ndarray:
    """x + s * N(0, 1) in standardised units, s cycling over several scales."""
    base = x[rng.integers(0, len(x), n)]
    s = np.asarray(scales, dtype=np.float64)[np.arange(n) % len(scales)][:, None]
    return base + s * rng.standard_normal(base.shape) * feature_spread(x), base


@QUERIES.register("mixup")
def mixup(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """a + t (b - a) with t in [-1, 2]: interpolation and extrapolation between pairs of events."""
    a, b = x[rng.integers(0, len(x), n)], x[rng.integers(0, len(x), n)]
    t = rng.uniform(-1.0, 2.0, size=(n, 1))
    return a + t * (b - a), np.where(np.abs(a) > 0, a, b)


@QUERIES.register("inrange")
def in_range(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Two thirds mixup/extrapolation, one third noise at 1-4 sd, every feature clipped to the data's
    [min, max]: points off the manifold made of values the normal events take (61% of MNIST's anomalies)."""
    n_mixed = (2 * n) // 3
    mixed, mix_templates = mixup(x, n_mixed, rng)
    noisy, noise_templates = gaussian_noise(x, n - n_mixed, rng, scales=IN_RANGE_NOISE_SCALES)
    lo, hi = x.min(axis=0), x.max(axis=0)
    return np.clip(np.concatenate([mixed, noisy]), lo, hi), np.concatenate([mix_templates, noise_templates])


def uphill(x: np.ndarray, n: int, rng: np.random.Generator, gradient: Callable[[np.ndarray], np.ndarray],
           steps: int = UPHILL_STEPS, step: float = UPHILL_STEP) -> np.ndarray:
    """Normal events pushed up the teacher's score by signed gradient steps (1 to `steps` of them, `step` sd
    each, from a start jittered by `step` sd), clipped to the data's [min, max] at every step."""
    base = x[rng.integers(0, len(x), n)].astype(np.float64)
    lo, hi, spread = x.min(axis=0), x.max(axis=0), feature_spread(x)
    moves = rng.integers(1, steps + 1, n)
    q = np.clip(base + step * spread * rng.standard_normal(base.shape), lo, hi)
    for k in range(steps):
        moving = moves > k
        q[moving] = np.clip(q[moving] + step * spread * np.sign(gradient(q[moving].astype(np.float32))), lo, hi)
    return q, base


@QUERIES.register("box")
def bounding_box(x: np.ndarray, n: int, rng: np.random.Generator, expand: float = 0.5) -> np.ndarray:
    """Uniform samples in the data's bounding box widened by `expand` of its width on each side."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    q = rng.uniform(lo - expand * width, hi + expand * width, size=(n, x.shape[1]))
    return q, x[rng.integers(0, len(x), n)]


@QUERIES.register("marginals")
def product_of_marginals(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each feature drawn from its own marginal independently: breaks the correlations."""
    q = np.stack([x[rng.integers(0, len(x), n), j] for j in range(x.shape[1])], axis=1)
    return q, x[rng.integers(0, len(x), n)]


@QUERIES.register("objects")
def extra_objects(x: np.ndarray, n: int, rng: np.random.Generator, layout: Optional[dict] = None) -> np.ndarray:
    """Events with more objects: in one object group per query (e.g. muons), 1..all of its empty slots get
    objects of that group taken from other events, then the group is re-ordered by decreasing pT.

    Many new-physics signatures are extra objects (multi-lepton final states) that the normal data barely
    holds; this shows the student the teacher's score there. Needs a layout with `groups` of object slots."""
    if not has_object_groups(layout):
        raise KDError("query strategy 'objects' needs object groups in the data layout (ADC2021 data has them)")
    groups, per = layout["groups"], int(layout["per_object"])
    events = x.reshape(len(x), -1, per)
    q = events[rng.integers(0, len(x), n)].copy()
    chosen = rng.integers(0, len(groups), n)
    for g, (lo, hi) in enumerate(groups):
        rows = np.flatnonzero(chosen == g)
        pool = events[:, lo:hi][events[:, lo:hi, 0] > 0]
        if len(rows) and len(pool):
            q[rows, lo:hi] = _fill_empty_slots(q[rows, lo:hi], pool, rng)
    q = q.reshape(n, -1)
    return q, q


HARDER_MAX_FACTOR = 4.0


@QUERIES.register("harder")
def harder_objects(x: np.ndarray, n: int, rng: np.random.Generator, layout: Optional[dict] = None) -> np.ndarray:
    """Harder events: pT scaled up by a factor log-uniform in [1, HARDER_MAX_FACTOR], for every object of
    the event (half the queries) or for one of its objects, MET included (the other half); groups re-sorted.

    Heavy new particles give harder objects and more missing energy than the normal data reaches, out where
    Gaussian noise in standardised units rarely goes. Needs a (pT, eta, phi) layout."""
    if not layout or int(layout.get("per_object", 0)) < 1:
        raise KDError("query strategy 'harder' needs a layout of objects with pT first (ADC2021 data has one)")
    per = int(layout["per_object"])
    q = x[rng.integers(0, len(x), n)].reshape(n, -1, per).copy()
    factor = np.exp(rng.uniform(0.0, np.log(HARDER_MAX_FACTOR), n))
    present = q[:, :, 0] > 0
    whole = rng.random(n) < 0.5
    one = _one_present_slot(present, rng)
    scale = np.where(whole[:, None] | (np.arange(q.shape[1]) == one[:, None]), factor[:, None], 1.0)
    q[:, :, 0] *= scale
    for lo, hi in layout.get("groups", []):
        q[:, lo:hi] = _sorted_by_pt(q[:, lo:hi])
    q = q.reshape(n, -1)
    return q, q


def _one_present_slot(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per event, the index of one slot drawn uniformly among its present ones (0 when none is)."""
    keys = np.where(present, rng.random(present.shape), -1.0)
    return np.argmax(keys, axis=1)


def _fill_empty_slots(block: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill the first k of each event's empty slots (k uniform in 1..#empty) from `pool`; sort by pT."""
    empty = block[:, :, 0] == 0
    n_empty = empty.sum(axis=1)
    k = np.floor(rng.random(len(block)) * n_empty).astype(int) + 1
    fill = empty & (np.cumsum(empty, axis=1) <= k[:, None])
    donors = pool[rng.integers(0, len(pool), block.shape[:2])]
    return _sorted_by_pt(np.where(fill[:, :, None], donors, block))


def _sorted_by_pt(block: np.ndarray) -> np.ndarray:
    """Each event's slots (events, slots, features) in decreasing pT (feature 0), ties in slot order."""
    order = np.argsort(-block[:, :, 0], axis=1, kind="stable")
    return np.take_along_axis(block, order[:, :, None], axis=1)


@QUERIES.register("pixel-noise")
def pixel_noise(x: np.ndarray, n: int, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """Noise exposure for images (Pol et al. 2023): x + sigma * N(0, 1) in raw units, clipped to the data's range."""
    base = x[rng.integers(0, len(x), n)]
    return np.clip(base + sigma * rng.standard_normal(base.shape), x.min(), x.max()), base


@QUERIES.register("flips")
def flips(x: np.ndarray, n: int, rng: np.random.Generator, image_shape: Optional[tuple] = None) -> np.ndarray:
    """Images flipped or rotated (every symmetry of the square but the identity; of the rectangle when
    height != width): the local statistics of normal images (stroke width, texture, brightness) in shapes the
    normal data need not hold, so the student has to learn the teacher's judgement of shape."""
    if not image_shape:
        raise KDError("query strategy 'flips' needs image data: an image folder, or an .npz whose X has shape "
                      "(rows, height, width[, 3])")
    one = _one_image(image_shape)
    transforms = IMAGE_SYMMETRIES if one[0] == one[1] else IMAGE_SYMMETRIES[:3]
    pick = rng.integers(0, len(x), n)
    kind = rng.integers(0, len(transforms), n)
    images = x[pick].reshape(n, *one)
    q = np.empty_like(images)
    for k, transform in enumerate(transforms):
        q[kind == k] = transform(images[kind == k])
    return q.reshape(n, -1), x[pick]


@QUERIES.register("patches")
def patches(x: np.ndarray, n: int, rng: np.random.Generator, image_shape: Optional[tuple] = None) -> np.ndarray:
    """Local defects pasted on normal images (as in DRAEM or CutPaste): a blob mask from thresholded smooth noise
    (2-20% of the image) filled, blended by 0.3-1, with one of: another normal image flipped or turned, uniform
    noise, a constant in the data's range, or the image itself brightened or darkened. Defects on inspected
    surfaces are local; these teach the student how the teacher scores them, without any anomaly example."""
    if not image_shape:
        raise KDError("query strategy 'patches' needs image data: an image folder, or an .npz whose X has shape "
                      "(rows, height, width[, 3])")
    one = _one_image(image_shape)
    lo, hi = float(x.min()), float(x.max())
    pick, donors = rng.integers(0, len(x), n), rng.integers(0, len(x), n)
    q = np.empty((n, x.shape[1]), dtype=np.float32)  # one image at a time: no float64 copies of the batch
    for i in range(n):
        image = x[pick[i]].reshape(one).astype(np.float64)
        mask = _blob_mask(rng, one[0], one[1])
        fill = _patch_fill(rng, image, x[donors[i]].reshape(one), lo, hi)
        blend = rng.uniform(0.3, 1.0) * (mask[..., None] if image.ndim == 3 else mask)
        q[i] = (image * (1 - blend) + fill * blend).ravel()
    return q, x[pick]


def _one_image(image_shape) -> tuple:
    """(height, width) for grey images, (height, width, channels) for colour ones (rows flattened channels last)."""
    shape = tuple(int(v) for v in image_shape)
    return shape[:2] if len(shape) == 2 or shape[2] == 1 else shape


def _blob_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    field = smooth_field(rng, height, width, int(rng.integers(3, 9)))
    return (field > np.quantile(field, rng.uniform(0.80, 0.98))).astype(np.float64)


def _patch_fill(rng: np.random.Generator, image: np.ndarray, donor: np.ndarray, lo: float, hi: float):
    kind = int(rng.integers(0, 4))
    if kind == 0:
        turns = IMAGE_SYMMETRIES if image.shape[0] == image.shape[1] else IMAGE_SYMMETRIES[:3]
        return turns[int(rng.integers(0, len(turns)))](donor[None])[0]
    if kind == 1:
        return rng.uniform(lo, hi, size=image.shape)
    if kind == 2:  # one grey level, or one colour
        level = rng.uniform(lo, hi, size=image.shape[2]) if image.ndim == 3 else rng.uniform(lo, hi)
        return np.full(image.shape, level)
    return np.clip(image + rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.5) * (hi - lo), lo, hi)


def smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Uniform noise on a (cells+1)^2 grid, bilinearly interpolated to height x width."""
    grid = rng.random((cells + 1, cells + 1))
    r, c = np.linspace(0, cells, height), np.linspace(0, cells, width)
    r0, c0 = np.minimum(r.astype(int), cells - 1), np.minimum(c.astype(int), cells - 1)
    dr, dc = (r - r0)[:, None], (c - c0)[None, :]
    top = grid[r0][:, c0] * (1 - dc) + grid[r0][:, c0 + 1] * dc
    bottom = grid[r0 + 1][:, c0] * (1 - dc) + grid[r0 + 1][:, c0 + 1] * dc
    return top * (1 - dr) + bottom * dr


IMAGE_SYMMETRIES = (  # batches (n, h, w) or (n, h, w, channels); the first three keep a rectangle's shape
    lambda b: b[:, :, ::-1], lambda b: b[:, ::-1, :], lambda b: b[:, ::-1, ::-1],
    lambda b: np.rot90(b, 1, (1, 2)), lambda b: np.rot90(b, 3, (1, 2)),
    lambda b: np.swapaxes(b, 1, 2), lambda b: np.swapaxes(np.rot90(b, 2, (1, 2)), 1, 2))


# Drawn outside the registry: from a user-given data set, or with the teacher's gradient.
UNREGISTERED_STRATEGIES = ("outliers", "uphill")
# Outliers are real data, pixel noise lights every pixel, flips and patches move ink onto pixels the normal
# images may never light and `objects` fills slots the normal data may never fill, by design: their features
# are never reset, even those constant in the normal data.
KEEPS_CONSTANT_FEATURES_FREE = ("pixel-noise", "objects", "flips", "patches")
NEEDS_LAYOUT = ("objects", "harder")
NEEDS_IMAGE_SHAPE = ("flips", "patches")


def make_queries(x: np.ndarray, strategies: Dict[str, float], rng: np.random.Generator,
                 layout: Optional[dict] = None, outliers: Optional[np.ndarray] = None,
                 teacher_gradient: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 image_shape: Optional[tuple] = None) -> np.ndarray:
    """Queries for each strategy, `strategies[name]` x len(x) of them, structure-repaired for `layout`.

    `uphill` needs `teacher_gradient` (d teacher score / d raw input); without it those become `inrange`."""
    parts = []
    constant = (x == x[:1]).all(axis=0)  # e.g. MET eta: never perturbed
    for name, fraction in strategies.items():
        count = int(round(fraction * len(x)))
        if count <= 0:
            continue
        if name == "outliers":
            parts.append(_outlier_sample(outliers, count, rng))
            continue
        if name == "uphill":
            q, template = (uphill(x, count, rng, teacher_gradient) if teacher_gradient is not None
                           else in_range(x, count, rng))
        else:
            extra = {"layout": layout} if name in NEEDS_LAYOUT else {}
            if name in NEEDS_IMAGE_SHAPE:
                extra["image_shape"] = image_shape
            q, template = QUERIES.get(name)(x, count, rng, **extra)
        q = repair_structure(q, template, layout) if layout else q
        if name not in KEEPS_CONSTANT_FEATURES_FREE:
            q[:, constant] = x[0, constant]
        parts.append(q)
    if not parts:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def _outlier_sample(outliers, count, rng):
    if outliers is None or len(outliers) == 0:
        raise KDError("query strategy 'outliers' needs an outlier data set (--outliers PATH)")
    return outliers[rng.integers(0, len(outliers), count)]


def repair_structure(q: np.ndarray, template: np.ndarray, layout: dict) -> np.ndarray:
    """Zero the objects absent in `template` events, make pT >= 0 and wrap phi, for (pT, eta, phi) layouts."""
    per = int(layout["per_object"])
    q = q.reshape(len(q), -1, per).copy()
    present = (template.reshape(len(template), -1, per)[:, :, :1] != 0) & (q[:, :, :1] != 0)
    q *= present
    q[:, :, 0] = np.abs(q[:, :, 0])
    if per >= 3:
        q[:, :, 2] = np.where(present[:, :, 0], _wrap_phi(q[:, :, 2]), 0.0)
    return q.reshape(len(q), -1)


def _wrap_phi(phi: np.ndarray) -> np.ndarray:
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def parse_queries(text: str) -> Dict[str, float]:
    """'noise:1,mixup:0.5' -> {'noise': 1.0, 'mixup': 0.5}; 'none' -> {}; a bare name means fraction 1."""
    if not text or text.strip() == "none":
        return {}
    out = {}
    for item in text.split(","):
        name, _, frac = item.strip().partition(":")
        if name not in UNREGISTERED_STRATEGIES:
            QUERIES.get(name)
        try:
            out[name] = float(frac) if frac else 1.0
        except ValueError:
            raise KDError(f"query fraction for '{name}' must be a number, got '{frac}'") from None
        if out[name] < 0:
            raise KDError(f"query fraction for '{name}' must be >= 0")
    return out


def load_outliers(path: str, n_features: int) -> np.ndarray:
    """Outlier-exposure events: every row of a .npz/.csv (labels ignored) or an ADC2021 .h5 file."""
    from pathlib import Path
    p = Path(path)
    if p.suffix.lower() in (".h5", ".hdf5"):
        from ..data.adc2021 import read_particles, to_features
        x = to_features(read_particles(p))
    else:
        from ..data import load_dataset
        d = load_dataset(p, n_features=n_features)
        x = np.concatenate([d.train, d.val, d.test, *d.signals.values()])
    if x.shape[1] != n_features:
        raise KDError(f"outlier data {p} has {x.shape[1]} features, the data has {n_features}")
    return x.astype(np.float32)
