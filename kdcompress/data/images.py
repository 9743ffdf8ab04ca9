"""Image folders in the MVTec AD layout, read as grey or colour images flattened to rows in [0, 1].

    ROOT/train/good/*.png           normal training images (10% held out as validation, seeded)
    ROOT/test/good/*.png            normal test images
    ROOT/test/<defect>/*.png        one anomaly class per folder (a signal named after the folder)
    ROOT/ground_truth/<defect>/     optional pixel masks: <name>_mask.png (or <name>.png) per test/<defect>/<name>
                                    image, read by `load_image_masks` for pixel AUROC and PRO

Colour (`color`): None (default) keeps colour when any train/good image has pixels whose red, green and blue
differ, and reads grey images (or colour files holding grey pixels) as one channel; True reads three channels
(RGB), False converts to grey (PIL mode 'L'). Colour rows are flattened (height, width, channel), channels
last. With `side` images are resized to side x side (bilinear); without it every image must already be square
and of one size. Masks are resized by area (a pixel is defective when
at least half of it is covered). `write_synthetic_image_folder` writes a seeded folder
in this layout (textured surfaces with scratches, spots, warped patches and faint stains; in colour also tints,
a hue change at the same grey level) for tests and demos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import KDError
from . import Dataset

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VAL_FRACTION = 0.1


def is_image_folder(path) -> bool:
    return (Path(path) / "train" / "good").is_dir()


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _read(path: Path, side: Optional[int], resample: str = "BILINEAR", mode: str = "L") -> np.ndarray:
    """(H, W) for mode 'L', (H, W, 3) for 'RGB', in [0, 1]."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            converted = img.convert(mode)
            if side is not None and converted.size != (side, side):
                converted = converted.resize((side, side), getattr(Image, resample))
            return np.asarray(converted, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise KDError(f"cannot read image {path}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _has_colour(path: Path) -> bool:
    """True when the file's pixels are not all grey (some red, green and blue differ)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return False
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise KDError(f"cannot read image {path}: {_first_line(exc)}") from None
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def image_mode(root, color: Optional[bool] = None) -> str:
    """PIL mode the folder's images are read in: 'RGB' or 'L' (see the module text for `color`)."""
    if color is not None:
        if not isinstance(color, bool):
            raise KDError(f"color must be true, false or null (decide from the images), got {color!r}")
        return "RGB" if color else "L"
    files = _image_files(Path(root) / "train" / "good")
    return "RGB" if any(_has_colour(f) for f in files) else "L"


def colour_for_width(root, n_features: int) -> Optional[bool]:
    """The reading that gives rows of `n_features` values (True colour, False grey), judged from one image's
    header; None when neither does (the caller then names the mismatch)."""
    files = _image_files(Path(root) / "train" / "good")
    if not files:
        return None  # load_image_folder names the empty folder
    width, height = _size(files[0])
    return {width * height * 3: True, width * height: False}.get(int(n_features))


def _size(path: Path) -> tuple:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:  # reads the header only
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise KDError(f"cannot read image {path}: {_first_line(exc)}") from None


def _read_folder(folder: Path, side: Optional[int], mode: str = "L") -> np.ndarray:
    files = _image_files(folder)
    if not files:
        raise KDError(f"no images ({', '.join(sorted(SUFFIXES))}) in {folder}")
    images = [_read(f, side, mode=mode) for f in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise KDError(f"images in {folder} differ in size ({sorted(shapes)[:3]}); give side= to resize them")
    shape = images[0].shape[:2]
    if shape[0] != shape[1]:
        raise KDError(f"images in {folder} are {shape[0]}x{shape[1]}, not square; give side= to resize them")
    return np.stack(images).reshape(len(images), -1)


def load_image_folder(root, side: Optional[int] = None, seed: int = 0, color: Optional[bool] = None) -> Dataset:
    """An MVTec-layout folder -> Dataset (normal train/val/test, one signal per defect folder; grey or colour as
    `color` says, by default as the train/good images are)."""
    root = Path(root)
    if side is not None and int(side) < 8:
        raise KDError(f"side must be at least 8 pixels, got {side}")
    if not is_image_folder(root):
        raise KDError(f"{root} is not an image folder in the MVTec layout: missing train/good/")
    if not (root / "test" / "good").is_dir():
        raise KDError(f"{root}: missing test/good/ (normal test images)")
    if not _image_files(root / "train" / "good"):
        raise KDError(f"no images ({', '.join(sorted(SUFFIXES))}) in {root / 'train' / 'good'}")
    mode = image_mode(root, color)
    fit = _read_folder(root / "train" / "good", side, mode)
    test = _read_folder(root / "test" / "good", side, mode)
    defects = sorted(p for p in (root / "test").iterdir() if p.is_dir() and p.name != "good")
    if not defects:
        raise KDError(f"{root}: no anomaly folders beside test/good/")
    signals: Dict[str, np.ndarray] = {p.name: _read_folder(p, side, mode) for p in defects}
    sizes = {fit.shape[1], test.shape[1], *(s.shape[1] for s in signals.values())}
    if len(sizes) > 1:
        raise KDError(f"{root}: train and test images differ in size; give side= to resize them")
    if len(fit) < 2:
        raise KDError(f"{root}: train/good/ needs at least 2 images, has {len(fit)}")
    order = np.random.default_rng(seed).permutation(len(fit))
    n_val = max(1, int(round(VAL_FRACTION * len(fit))))
    channels = 3 if mode == "RGB" else 1
    edge = int(round(np.sqrt(fit.shape[1] // channels)))
    names = [f"px{r}_{c}" + (f"_{'rgb'[k]}" if channels > 1 else "") for r in range(edge) for c in range(edge)
             for k in range(channels)]
    return Dataset(source=str(root), kind="images", train=fit[np.sort(order[n_val:])], val=fit[np.sort(order[:n_val])],
                   test=test, signals=signals, feature_names=names,
                   extra={"category": root.name, "split_seed": seed}, image_shape=(edge, edge), channels=channels)


# ---------------------------------------------------------------- pixel masks

def _mask_file(folder: Path, image: Path) -> Path:
    for name in (f"{image.stem}_mask", image.stem):
        for suffix in sorted(SUFFIXES):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    raise KDError(f"no mask for {image} in {folder} (expected {image.stem}_mask.png)")


def load_image_masks(root, side: Optional[int] = None) -> Optional[Dict[str, np.ndarray]]:
    """Boolean pixel masks (N, side*side) per defect, aligned with the defect's test images; 'good' is all False.
    None when the folder has no ground_truth/ (image-level evaluation only)."""
    root = Path(root)
    truth = root / "ground_truth"
    if not truth.is_dir():
        return None
    masks: Dict[str, np.ndarray] = {}
    for defect in sorted(p for p in (root / "test").iterdir() if p.is_dir() and p.name != "good"):
        if not (truth / defect.name).is_dir():
            raise KDError(f"{truth} has no folder for the defect {defect.name!r} (masks are read for every defect)")
        images = _image_files(defect)
        rows = []
        for image in images:
            mask_path = _mask_file(truth / defect.name, image)
            mask_size, image_size = _size(mask_path), _size(image)
            if mask_size != image_size:
                raise KDError(f"mask {mask_path} is {mask_size}, its image {image} {image_size} (width, height): "
                              f"they must match")
            rows.append(_read(mask_path, side, resample="BOX").ravel() >= 0.5)
        masks[defect.name] = np.stack(rows)
    good = _image_files(root / "test" / "good")
    width = next(iter(masks.values())).shape[1] if masks else 0
    masks["good"] = np.zeros((len(good), width), dtype=bool)
    return masks


# ---------------------------------------------------------------- seeded synthetic folder

def _surface(rng: np.random.Generator, side: int) -> np.ndarray:
    """A woven texture: two crossed gratings with random phase, plus a little noise."""
    r, c = np.mgrid[0:side, 0:side].astype(np.float64)
    period = side / 4
    a, b = rng.uniform(0, 2 * np.pi, size=2)
    texture = 0.5 + 0.2 * np.sin(2 * np.pi * r / period + a) * np.sin(2 * np.pi * c / period + b)
    return np.clip(texture + rng.normal(0, 0.03, size=(side, side)), 0, 1)


COLOUR_GAIN, COLOUR_OFFSET = np.array([0.9, 0.75, 0.5]), np.array([0.08, 0.1, 0.2])
LUMA = np.array([0.299, 0.587, 0.114])  # PIL's grey conversion (ITU-R 601-2)
TINT = np.array([LUMA[1], -LUMA[0], 0.0]) / np.hypot(LUMA[0], LUMA[1])  # redder or greener at equal grey level


def _coloured(texture: np.ndarray) -> np.ndarray:
    """The grey weave as an (H, W, 3) tan cloth."""
    return np.clip(texture[..., None] * COLOUR_GAIN + COLOUR_OFFSET, 0, 1)


def _per_pixel(values: np.ndarray, image: np.ndarray) -> np.ndarray:
    """An (H, W) mask or field shaped to broadcast over `image`'s channels when it has them."""
    return values[..., None] if image.ndim == 3 else values


def _scratch(rng: np.random.Generator, image: np.ndarray) -> tuple:
    side = image.shape[0]
    r, c = np.mgrid[0:side, 0:side].astype(np.float64)
    r0, c0 = rng.uniform(0.2 * side, 0.8 * side, size=2)
    angle = rng.uniform(0, np.pi)
    distance = np.abs((r - r0) * np.cos(angle) - (c - c0) * np.sin(angle))
    along = np.abs((r - r0) * np.sin(angle) + (c - c0) * np.cos(angle))
    mask = (distance < 0.8) & (along < side * 0.3)
    out = image.copy()
    out[mask] = 0.95
    return out, mask


def _spot(rng: np.random.Generator, image: np.ndarray) -> tuple:
    side = image.shape[0]
    r, c = np.mgrid[0:side, 0:side].astype(np.float64)
    r0, c0 = rng.uniform(0.25 * side, 0.75 * side, size=2)
    radius = rng.uniform(0.06, 0.12) * side
    mask = (r - r0) ** 2 + (c - c0) ** 2 < radius ** 2
    return np.where(_per_pixel(mask, image), 0.05, image), mask


def _ellipse(rng: np.random.Generator, side: int, low: float, high: float) -> tuple:
    """Row and column grids, and the normalised squared distance to a random ellipse (< 1 inside)."""
    r, c = np.mgrid[0:side, 0:side].astype(np.float64)
    r0, c0 = rng.uniform(0.25 * side, 0.75 * side, size=2)
    ar, ac = rng.uniform(low, high, size=2) * side
    return ((r - r0) / ar) ** 2 + ((c - c0) / ac) ** 2


def _warp(rng: np.random.Generator, image: np.ndarray) -> tuple:
    """A patch of the weave shifted by half a period along the rows: its own values, wrong structure."""
    side = image.shape[0]
    mask = _ellipse(rng, side, 0.10, 0.18) < 1
    shifted = np.roll(image, max(1, int(round(side / 8))), axis=0)
    return np.where(_per_pixel(mask, image), shifted, image), mask


def _stain(rng: np.random.Generator, image: np.ndarray) -> tuple:
    """A faint soft-edged stain (+-0.10 to 0.15 at its centre), mostly inside the normal intensity range."""
    side = image.shape[0]
    blob = np.exp(-0.5 * _ellipse(rng, side, 0.06, 0.12))
    amplitude = rng.choice([-1.0, 1.0]) * rng.uniform(0.10, 0.15)
    return np.clip(image + amplitude * _per_pixel(blob, image), 0, 1), blob > 0.5


def _tint(rng: np.random.Generator, image: np.ndarray) -> tuple:
    """A soft-edged patch turned redder or greener at the same grey level: seen in colour, lost in grey."""
    side = image.shape[0]
    blob = np.exp(-0.5 * _ellipse(rng, side, 0.10, 0.18))
    amplitude = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.18)
    return np.clip(image + amplitude * blob[..., None] * TINT, 0, 1), blob > 0.5


# scratch and spot lie outside the weave's intensities (easy for any detector); warp and stain do not;
# tint (colour folders only) changes the hue alone
DEFECTS = {"scratch": _scratch, "spot": _spot, "warp": _warp, "stain": _stain}
COLOUR_DEFECTS = {**DEFECTS, "tint": _tint}


def write_synthetic_image_folder(root, side: int = 32, n_train: int = 200, n_test: int = 50, seed: int = 0,
                                 defects=None, color: bool = False) -> Path:
    """Seeded MVTec-layout folder of PNG images: textured surfaces (grey, or tan RGB cloth with `color`); test
    `defects` (of 'scratch', 'spot', 'warp', 'stain' and, in colour, 'tint'; by default all) with their masks in
    ground_truth/<defect>/<name>_mask.png."""
    from PIL import Image
    known = COLOUR_DEFECTS if color else DEFECTS
    defects = tuple(known) if defects is None else tuple(defects)
    unknown = sorted(set(defects) - set(known))
    if unknown or not defects:
        hint = " ('tint' needs color)" if "tint" in unknown else ""
        raise KDError(f"defects must be among {', '.join(known)}, got {list(defects)}{hint}")
    if side < 8 or n_train < 2 or n_test < 1:
        raise KDError(f"images need side >= 8, at least 2 train and 1 test image, got side {side}, {n_train} "
                      f"and {n_test}")
    root = Path(root)
    rng = np.random.default_rng(seed)

    def save(folder: Path, images, suffix: str = "") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            pixels = np.round(image * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L").save(folder / f"{i:03d}{suffix}.png")

    def surface():
        texture = _surface(rng, side)
        return _coloured(texture) if color else texture

    save(root / "train" / "good", [surface() for _ in range(n_train)])
    save(root / "test" / "good", [surface() for _ in range(n_test)])
    for name, paint in ((k, v) for k, v in known.items() if k in defects):
        painted = [paint(rng, surface()) for _ in range(n_test)]
        save(root / "test" / name, [image for image, _ in painted])
        save(root / "ground_truth" / name, [mask.astype(np.float64) for _, mask in painted], suffix="_mask")
    return root
