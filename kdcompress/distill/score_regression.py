"""Score regression (Pol et al. 2023; CICADA, AXOL1TL): a small quantized student regresses the teacher's score."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from .. import plots
from ..data import Dataset
from ..data.preprocess import Preprocessing, fit_preprocessing
from ..errors import KDError
from ..evaluate import score_sets, student_size, summarise_scores, teacher_size, tracking_record
from ..fileio import atomic_dir, write_json
from ..progress import EpochProgress, auto_batch
from ..quant import QuantConfig
from ..registry import METHODS, STUDENTS
from ..students import Student, save_student
from ..teachers import Teacher
from . import pruning
from .active import ACTIVE_METHODS, disagreement_queries, gap_gradient, teacher_gradient
from .fidelity import data_probe, fidelity, teacher_memorisation
from .queries import load_outliers, make_queries, plus_physics
from .sampling import inverse_density_weights, tail_indices
from .targets import TARGETS

LOSSES = {"mae": "mean_absolute_error", "mse": "mean_squared_error"}
OUTPUT_TRANSFORMS = {"energy": "log1p"}  # students whose raw output is an energy, not the target itself
REWEIGHTS = ("none", "inverse-density")
DEFAULT_QUERIES = {"noise": 0.5, "mixup": 0.5}  # teacher-labelled points off the normal manifold
# `objects` and `harder` queries added by default where the layout has object groups (ADC2021): harder ones
# took the student's hChToTauNu AUROC from 0.022 above the teacher's to 0.008 (benchmarks/README.md).
PHYSICS_FRACTION = 0.5
# Image folders (inspected surfaces): pixel noise and pasted local patches. With the default above, QKeras
# students of texture detectors ranked images against their detector (Spearman -0.09); with these, 0.63.
IMAGE_FOLDER_QUERIES = {"pixel-noise": 1.0, "patches": 1.0}
# Training queries at least: on the digits / MNIST tables 100k (vs 20k) cut the AUROC lost to the teacher by 1/2 / 1/3.
MIN_QUERIES = 100_000
# float32 training query rows fit in this many bytes (validation a quarter): wide images get fewer queries
# (32x32 RGB keeps 100k; 256x256 RGB gets 2,730) instead of exhausting memory (100k 32x32 RGB rows peaked at 8 GB)
QUERY_BYTES = 2 ** 31
MIN_QUERY_CAP = 1000
MAX_SPARSITY = 0.95


@dataclass
class DistillConfig:
    student: str = "mlp"
    hidden: Sequence[int] = (32, 16)
    student_kwargs: Dict[str, object] = field(default_factory=dict)
    preprocess: str = "auto"
    quant: QuantConfig = field(default_factory=QuantConfig)
    target: str = "log1p"
    score_scale: Optional[float] = None
    loss: str = "mae"
    reweight: str = "inverse-density"
    reweight_cap: float = 10.0
    tail_quantile: float = 0.99
    tail_factor: int = 1
    queries: Optional[Dict[str, float]] = None  # None: default_queries(layout) for the data
    outliers: Optional[str] = None
    min_queries: int = MIN_QUERIES
    active_rounds: int = 0
    active: str = "sampled"
    active_fraction: float = 0.1
    sparsity: float = 0.0  # fraction of each trainable kernel pruned to zero after training
    prune_steps: int = pruning.PRUNE_STEPS  # pruning steps up to `sparsity`, each fine-tuned epochs // 4
    refresh_queries: int = 0  # redraw the training queries every N epochs (0: one draw for the whole fit)
    epochs: int = 100
    batch: Optional[int] = None
    lr: float = 3e-3
    patience: int = 12
    seed: int = 0

    def validate(self) -> None:
        STUDENTS.get(self.student)
        TARGETS.get(self.target)
        if self.loss not in LOSSES:
            raise KDError(f"unknown loss '{self.loss}' (known: {', '.join(LOSSES)})")
        if self.preprocess not in ("auto", "none"):
            raise KDError(f"preprocess must be 'auto' or 'none', got '{self.preprocess}'")
        if self.reweight not in REWEIGHTS:
            raise KDError(f"unknown reweighting '{self.reweight}' (known: {', '.join(REWEIGHTS)})")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise KDError("--hidden needs one or more positive layer widths, e.g. 32,16")
        if self.epochs < 1 or (self.batch is not None and self.batch < 1) or self.lr <= 0:
            raise KDError("--epochs and --batch must be >= 1 and --lr > 0")
        if self.active not in ACTIVE_METHODS:
            raise KDError(f"unknown active method '{self.active}' (known: {', '.join(ACTIVE_METHODS)})")
        if self.min_queries < 0:
            raise KDError("--min-queries must be >= 0")
        if self.active_rounds < 0 or not 0.0 < self.active_fraction <= 10.0:
            raise KDError("--active-rounds must be >= 0 and --active-fraction in (0, 10]")
        if self.refresh_queries < 0:
            raise KDError("--refresh-queries must be >= 0 (0: one fixed draw)")
        if self.prune_steps < 1:
            raise KDError(f"--prune-steps must be >= 1, got {self.prune_steps}")
        if not 0.0 <= self.sparsity <= MAX_SPARSITY:
            raise KDError(f"--sparsity must be in [0, {MAX_SPARSITY}], got {self.sparsity}")
        if not 0.0 < self.tail_quantile <= 1.0 or self.tail_factor < 1:
            raise KDError("--tail-quantile must be in (0, 1] and --tail-factor >= 1")


@METHODS.register("score-regression")
def distill(teacher: Teacher, data: Dataset, out, config: Optional[DistillConfig] = None,
            quiet: bool = False, extra: Optional[dict] = None) -> dict:
    """Train the student on teacher-labelled data, evaluate both, write the student folder to `out`."""
    config = config or DistillConfig()
    student, history = fit_student(teacher, data, config, quiet)
    result = evaluate_pair(teacher, student, data)
    probe = data_probe(data)
    on_probe = teacher.score(probe.points), student.score(probe.points)
    result["fidelity"] = fidelity(*on_probe, probe.n_normal)
    result["teacher_memorisation"] = teacher_memorisation(teacher.score, data.train, data.val)
    result["training"] = {"epochs_run": len(history["loss"]), "best_val_loss": min(history["val_loss"])}
    if "active" in history:
        result["training"]["active_rounds"] = history["active"]
    if "query_draws" in history:
        result["training"]["query_draws"] = history["query_draws"]
    if config.sparsity:
        result["training"]["zero_weight_fraction"] = pruning.kernel_sparsity(student.model)
    result.update(extra or {})
    with atomic_dir(out) as tmp:
        save_student(student, tmp)
        write_json(tmp / "metrics.json", result)
        plots.loss_curve(tmp / "training.png", {"train": history["loss"], "val": history["val_loss"]},
                         f"student regressing {config.target}(teacher score)", ylabel=config.loss)
        teacher_targets = TARGETS.get(config.target)(on_probe[0] / student.meta["score_scale"])
        plots.fidelity_scatter(tmp / "fidelity.png", teacher_targets, on_probe[1], probe.n_normal,
                               _fidelity_title(result["fidelity"]))
        if "ablation" in result:
            plots.selection_map(tmp / "selection.png", result["ablation"], result["selection"]["budget"]["macs"])
    return result


def _fidelity_title(fid: dict) -> str:
    normal = fid.get("spearman_normal", float("nan"))
    return (f"held-out probes: Spearman {fid['spearman']:.3f} (normal events {normal:.3f}),\n"
            f"top-1% AUROC {fid['top_1pct_auroc']:.3f}")


def default_queries(layout: Optional[dict], kind: Optional[str] = None) -> Dict[str, float]:
    """noise + mixup; plus extra-object and harder-event queries where the layout names object groups; pixel
    noise and local patches for image folders (`kind` 'images')."""
    if kind == "images":
        return dict(IMAGE_FOLDER_QUERIES)
    return plus_physics(DEFAULT_QUERIES, PHYSICS_FRACTION, layout)


def fit_student(teacher: Teacher, data: Dataset, config: DistillConfig, quiet: bool = False):
    """Train one student (no files written): returns (Student, training history)."""
    if config.queries is None:
        config = replace(config, queries=default_queries(data.layout, data.kind))
    config = _with_image_shape(config, data)
    config.validate()
    _check_width(teacher, data)
    progress = EpochProgress(f"student {config.student}", config.epochs, quiet)
    progress.note("scoring training data with the teacher")
    gradient = teacher_gradient(teacher, progress.note) if "uphill" in (config.queries or {}) else None
    sample = _query_sampler(data, config, gradient)
    x_train, x_val = _with_queries(data, config, sample, progress.note)
    s_train, s_val = teacher.score(x_train), teacher.score(x_val)
    scale = config.score_scale or auto_score_scale(s_train[:len(data.train)], config.target)
    transform = TARGETS.get(config.target)
    label = lambda x: transform(teacher.score(x) / scale)  # noqa: E731
    y_train, y_val = transform(s_train / scale), transform(s_val / scale)
    prep = (Preprocessing.identity(data.n_features) if config.preprocess == "none"
            else fit_preprocessing(data.train, centre=data.layout is None))
    model = _build(data.n_features, config)
    sets = (prep.apply(x_train), y_train, prep.apply(x_val), y_val)
    refresh = _refresh(data, config, sample, label, prep, len(x_train))
    history = _fit(model, *sets, config, progress, config.epochs, refresh=refresh)
    masks = _prune(model, sets, config, history, progress, refresh) if config.sparsity else None
    meta = _student_meta(teacher, data, prep, config, history)
    meta["score_scale"] = scale
    student = Student(model=model, meta=meta)
    if config.active_rounds:
        history["active"] = _active_rounds(teacher, student, data, config, label, (x_train, y_train, x_val, y_val),
                                           history, progress, masks, refresh)
    if refresh:
        history["query_draws"] = refresh.draws
    return student, history


class QueryRefresh:
    """Fresh teacher-labelled training queries every `every` epochs: the training rows `rows` (the first
    draw's queries) are replaced by a new seeded draw of the same strategies; normal events and active points
    stay. A fixed draw leaves the student to fit one sample of the space off the data; a fresh one each time
    shows it the teacher's score wherever the strategies reach."""

    def __init__(self, draw, label, prep, rows: slice, every: int, seed: int):
        self.draw, self.label, self.prep, self.rows, self.every = draw, label, prep, rows, every
        self.rng = np.random.default_rng([seed, 2])
        self.latest = None  # (z, y) of the newest draw's query rows
        self.draws = 1

    def redraw(self) -> None:
        q = self.draw(self.rng)
        self.latest = (self.prep.apply(q), self.label(q))
        self.draws += 1

    def current(self, z: np.ndarray, y: np.ndarray):
        """(z, y) with the query rows of the newest draw (copies; unchanged before the first redraw)."""
        if self.latest is None:
            return z, y
        z, y = z.copy(), y.copy()
        z[self.rows], y[self.rows] = self.latest
        return z, y


def _refresh(data: Dataset, config: DistillConfig, sample, label, prep, n_train: int) -> Optional[QueryRefresh]:
    if not config.refresh_queries or n_train == len(data.train):
        return None
    draw = lambda rng: sample(data.train, config.min_queries, rng, max_queries(data.n_features))  # noqa: E731
    return QueryRefresh(draw, label, prep, slice(len(data.train), n_train), config.refresh_queries, config.seed)


def _prune(model, sets, config: DistillConfig, history, progress, refresh=None) -> dict:
    """Gradual magnitude pruning to `config.sparsity`, fine-tuning under each mask; returns the final masks."""
    epochs = max(2, config.epochs // 4)
    for sparsity in pruning.schedule(config.sparsity, config.prune_steps):
        masks = pruning.magnitude_masks(model, sparsity)
        pruning.apply_masks(model, masks)
        more = _fit(model, *sets, config, EpochProgress(f"student {config.student} (pruned to {sparsity:.0%})",
                                                        epochs, progress.quiet), epochs, masks, refresh)
        for key, values in more.items():
            history.setdefault(key, []).extend(values)
    progress.note(f"pruned: {pruning.kernel_sparsity(model):.1%} of the trainable weights are zero")
    return masks


def _active_rounds(teacher, student, data: Dataset, config: DistillConfig, label, sets, history, progress,
                   masks=None, refresh=None) -> list:
    """Disagreement-driven rounds: add teacher-labelled points where the student is worst, train on (warm)."""
    x_train, y_train, x_val, y_val = sets
    rng_train, rng_val = (np.random.default_rng(s) for s in np.random.SeedSequence([config.seed, 1]).spawn(2))
    gradients = (gap_gradient(teacher, student, config.target, student.meta["score_scale"], progress.note)
                 if config.active == "ascent" else None)
    method = config.active if gradients is not None else "sampled"
    prep, rounds = student.preprocessing, []
    epochs = max(5, config.epochs // 4)
    counts = [max(1, int(config.active_fraction * len(points))) for points in (x_train, x_val)]
    for r in range(config.active_rounds):
        new = [disagreement_queries(x, count, label, student, rng, data.layout, method, gradients)
               for x, count, rng in ((data.train, counts[0], rng_train), (data.val, counts[1], rng_val))]
        y_new = [label(q) for q in new]
        gap = float(np.mean(np.abs(student.score(new[0]) - y_new[0])))
        progress.note(f"active round {r + 1}/{config.active_rounds} ({method}): {len(new[0])} points, "
                      f"mean |student - teacher| {gap:.4f} before training")
        x_train, y_train = np.concatenate([x_train, new[0]]), np.concatenate([y_train, y_new[0]])
        x_val, y_val = np.concatenate([x_val, new[1]]), np.concatenate([y_val, y_new[1]])
        more = _fit(student.model, prep.apply(x_train), y_train, prep.apply(x_val), y_val, config,
                    EpochProgress(f"student {config.student} (active {r + 1})", epochs, progress.quiet), epochs, masks,
                    refresh)
        for key, values in more.items():
            history.setdefault(key, []).extend(values)
        after = float(np.mean(np.abs(student.score(new[0]) - y_new[0])))
        rounds.append({"round": r + 1, "method": method, "added": int(len(new[0])), "mean_gap_before": gap,
                       "mean_gap_after": after})
    return rounds


def evaluate_pair(teacher: Teacher, student: Student, data: Dataset) -> dict:
    teacher_scores, student_scores = score_sets(teacher.score, data), score_sets(student.score, data)
    t_size, s_size = teacher_size(teacher), student_size(student.model)
    return {"teacher": summarise_scores(teacher_scores), "student": summarise_scores(student_scores),
            "macs": {"teacher": t_size["macs"], "student": s_size["macs"]},
            "params": {"teacher": t_size["params"], "student": s_size["params"]},
            "bops": {"student": s_size["bops"]},
            "background_test_events": int(len(data.test)),
            "tracking": tracking_record(teacher_scores, student_scores, student.meta)}


def auto_score_scale(background_scores: np.ndarray, target: str) -> float:
    """Power of two near the median background score, so log1p targets span O(1) whatever the score's units.

    CICADA's target fixes its own range, so it keeps the raw score (scale 1)."""
    if target == "cicada":
        return 1.0
    median = float(np.median(background_scores))
    if not np.isfinite(median) or median <= 0:
        return 1.0
    return float(2.0 ** np.round(np.log2(median)))


def _query_sampler(data: Dataset, config: DistillConfig, teacher_gradient=None):
    """sample(events, min_queries, rng, cap): the configured queries drawn around `events` (raw, unlabelled),
    at least `min_queries` and at most `cap` of them."""
    outliers = load_outliers(config.outliers, data.n_features) if config.outliers else None

    def sample(events: np.ndarray, min_queries: int, rng: np.random.Generator, cap: int) -> np.ndarray:
        fractions = query_fractions(config.queries, len(events), min_queries, cap)
        return make_queries(events, fractions, rng, data.layout, outliers, teacher_gradient, data.pixel_shape)
    return sample


def _with_queries(data: Dataset, config: DistillConfig, sample, note):
    """Background train/val plus teacher-labelled queries drawn from each split (seeded).

    Small data sets get proportionally more queries: at least `min_queries` for training (a quarter as many
    for validation), so that the space around a few hundred events is still covered densely. Wide rows get
    at most max_queries (a quarter for validation)."""
    if not config.queries:
        return data.train, data.val
    cap = max_queries(data.n_features)
    wanted = sum(query_fractions(config.queries, len(data.train), config.min_queries).values()) * len(data.train)
    if wanted > cap:
        note(f"queries capped at {cap:,} of {round(wanted):,}: {data.n_features:,} features per row, "
             f"{QUERY_BYTES / 2 ** 30:g} GiB of float32 rows at most")
    rng_train, rng_val = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(2))
    q_train = sample(data.train, config.min_queries, rng_train, cap)
    q_val = sample(data.val, config.min_queries // 4, rng_val, cap // 4)
    return np.concatenate([data.train, q_train]), np.concatenate([data.val, q_val])


def max_queries(n_features: int) -> int:
    """The most training queries whose float32 rows fit in QUERY_BYTES (never fewer than MIN_QUERY_CAP)."""
    return max(MIN_QUERY_CAP, QUERY_BYTES // (4 * max(1, n_features)))


def query_fractions(queries: Dict[str, float], n_events: int, min_queries: int,
                    cap: Optional[int] = None) -> Dict[str, float]:
    """The query fractions, scaled (same proportions) up to give at least `min_queries` points, and down to
    give at most `cap`."""
    total = sum(queries.values()) * n_events
    factor = min_queries / total if 0 < total < min_queries else 1.0
    if cap is not None and total * factor > cap:
        factor = cap / total
    return {name: fraction * factor for name, fraction in queries.items()}


def _check_width(teacher: Teacher, data: Dataset) -> None:
    if teacher.n_features != data.n_features:
        raise KDError(f"the teacher expects {teacher.n_features} features but the data has {data.n_features}")


def _with_image_shape(config: DistillConfig, data: Dataset) -> DistillConfig:
    """A CNN student on image data reads the images' own (height, width, channels) unless told otherwise."""
    if config.student != "cnn" or not data.image_shape or "input_shape" in config.student_kwargs:
        return config
    return replace(config, student_kwargs={**config.student_kwargs, "input_shape": list(data.pixel_shape)})


def _build(n_features: int, config: DistillConfig):
    from ..tf_env import seed_everything
    seed_everything(config.seed)
    return STUDENTS.get(config.student)(n_features, hidden=tuple(int(h) for h in config.hidden),
                                        quant=config.quant, seed=config.seed, **config.student_kwargs)


def _fit(model, z_train, y_train, z_val, y_val, config: DistillConfig, progress, epochs: int,
         masks: Optional[dict] = None, refresh: Optional[QueryRefresh] = None) -> dict:
    """(Re)compile and train `model` in place, pruned weights (`masks`) held at zero; returns the history.

    With `refresh` the training queries are redrawn every `refresh.every` epochs (validation stays fixed)."""
    from ..tf_env import tensorflow
    tf = tensorflow()
    rng = np.random.default_rng([config.seed, len(y_train)])
    model.compile(optimizer=tf.keras.optimizers.Adam(config.lr), loss=_loss(tf, config))
    callbacks = [
        tf.keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
        tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(2, config.patience // 3), min_lr=1e-5),
        _ProgressCallback(tf, progress),
    ] + ([pruning.mask_callback(tf, model, masks)] if masks else [])
    validation = (z_val, y_val.astype(np.float32))
    if refresh is not None:
        batches = _RefreshingBatches(tf, z_train, y_train, config, rng, refresh)
        hist = model.fit(batches, validation_data=validation, epochs=epochs, verbose=0, callbacks=callbacks)
    else:
        z, y, weights = _weighted_rows(z_train, y_train, config, rng)
        hist = model.fit(z, y, sample_weight=weights, validation_data=validation, epochs=epochs,
                         batch_size=auto_batch(len(y), config.batch), shuffle=True, verbose=0, callbacks=callbacks)
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def _weighted_rows(z: np.ndarray, y: np.ndarray, config: DistillConfig, rng: np.random.Generator):
    """The training rows with the tail oversampled and their inverse-density weights (None when off)."""
    idx = tail_indices(y, config.tail_quantile, config.tail_factor, rng)
    weights = inverse_density_weights(y, config.reweight_cap)[idx] if config.reweight == "inverse-density" else None
    return z[idx], y[idx].astype(np.float32), weights


def _RefreshingBatches(tf, z_train, y_train, config: DistillConfig, rng, refresh: QueryRefresh):
    """Shuffled weighted batches of the training rows; every `refresh.every` epochs the queries are redrawn.
    The number of batches stays that of the first epoch (tail oversampling may change the row count)."""
    class RefreshingBatches(tf.keras.utils.Sequence):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.n_batches = -(-len(_weighted_rows(z_train, y_train, config, rng)[1]) //
                               auto_batch(len(y_train), config.batch))
            self._use()

        def _use(self):
            self.z, self.y, w = _weighted_rows(*refresh.current(z_train, y_train), config, rng)
            self.w = np.ones(len(self.y), np.float32) if w is None else w.astype(np.float32)
            self.batches = np.array_split(rng.permutation(len(self.y)), self.n_batches)

        def __len__(self):
            return self.n_batches

        def __getitem__(self, i):
            take = self.batches[i]
            return self.z[take], self.y[take], self.w[take]

        def on_epoch_end(self):
            self.epoch += 1
            if self.epoch % refresh.every == 0:
                refresh.redraw()
            self._use()
    return RefreshingBatches()


def _loss(tf, config: DistillConfig):
    """L1/L2 on the target; heads that output an energy E are compared as log1p(E)."""
    if OUTPUT_TRANSFORMS.get(config.student) != "log1p":
        return LOSSES[config.loss]
    power = 1 if config.loss == "mae" else 2

    def energy_loss(y_true, energy):
        diff = tf.math.log1p(tf.nn.relu(energy)) - y_true
        return tf.reduce_mean(tf.abs(diff) ** power, axis=-1)
    return energy_loss


def _ProgressCallback(tf, progress):
    class ProgressCallback(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress.update(epoch, loss=logs.get("loss", float("nan")), val_loss=logs.get("val_loss", float("nan")))
    return ProgressCallback()


def _student_meta(teacher: Teacher, data: Dataset, prep, config: DistillConfig, history) -> dict:
    return {
        "method": "score-regression",
        "student": config.student,
        "n_features": data.n_features,
        "feature_names": list(data.feature_names),
        "layout": data.layout,
        "image_shape": list(data.image_shape) if data.image_shape else None,
        "channels": data.channels,
        "preprocessing": prep.to_dict(),
        "score_transform": config.target,
        "output_transform": OUTPUT_TRANSFORMS.get(config.student, "none"),
        "quant": config.quant.to_dict(),
        "config": {k: v for k, v in asdict(config).items() if k != "quant"},
        "teacher_fingerprint": teacher_fingerprint(teacher),
        "teacher_score": teacher.score_name,
        "data_fingerprint": data.fingerprint(),
        "data_source": str(Path(data.source).resolve()),
        "seed": config.seed,
    }


def teacher_fingerprint(teacher: Teacher) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
