import dataclasses

import numpy as np
import pytest

from kdcompress.api import distill
from kdcompress.data.preprocess import Preprocessing, fit_preprocessing
from kdcompress.distill.hint import HINT_LAYER, ResidualHint
from kdcompress.errors import KDError
from kdcompress.students import load_student
from kdcompress.teachers import load_teacher


@pytest.fixture(scope="module")
def teacher_and_rows(tiny_teacher, tabular_file):
    rows = np.load(tabular_file)["X"][:500]
    return load_teacher(tiny_teacher, n_features=rows.shape[1]), rows


def test_residual_squares_average_to_the_score(teacher_and_rows):
    teacher, rows = teacher_and_rows
    residual = teacher.residual(rows)
    assert residual.shape == rows.shape
    assert np.allclose((residual ** 2).mean(axis=1), teacher.score(rows), rtol=1e-5)


def test_masked_residual_is_zero_on_padding_and_averages_to_the_score(teacher_and_rows):
    teacher, rows = teacher_and_rows
    masked = dataclasses.replace(teacher, score_name="masked_mse", layout={"per_object": 3},
                                 preprocessing=Preprocessing.identity(rows.shape[1]))  # raw zeros stay zero
    rows = rows.copy()
    rows[::2, 3:6] = 0.0  # object 1 absent in every other event
    residual = masked.residual(rows)
    assert np.all(residual[::2, 3:6] == 0.0) and np.any(residual[1::2, 3:6] != 0.0)
    assert np.allclose((residual ** 2).mean(axis=1), masked.score(rows), rtol=1e-5)


def test_hint_targets_stack_score_and_unit_rms_residual(teacher_and_rows):
    teacher, rows = teacher_and_rows
    prep = fit_preprocessing(rows, centre=True)
    hint = ResidualHint(teacher, prep, 0.1, rows)
    y = np.arange(len(rows), dtype=np.float32)
    stacked = hint.targets(prep.apply(rows), y)
    assert stacked.shape == (len(rows), 1 + rows.shape[1])
    assert np.array_equal(stacked[:, 0], y)
    assert np.sqrt(np.mean(stacked[:, 1:] ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert np.allclose(stacked[:, 1:] * hint.rms, teacher.residual(rows), atol=1e-4)


def test_hint_needs_a_reconstruction_teacher(teacher_and_rows):
    teacher, rows = teacher_and_rows
    latent = dataclasses.replace(teacher, score_name="mu2")
    with pytest.raises(KDError, match="reconstruction error .* scores 'mu2'"):
        ResidualHint(latent, fit_preprocessing(rows, centre=True), 0.1, rows)


def test_hint_trains_a_side_task_and_ships_the_same_student(tiny_teacher, tabular_file, tmp_path):
    kwargs = dict(student="energy", hidden=[16, 8], epochs=15, seed=2, quiet=True, min_queries=2000)
    plain = distill(tiny_teacher, tabular_file, tmp_path / "plain", **kwargs)
    hinted = distill(tiny_teacher, tabular_file, tmp_path / "hint", hint_weight=0.3, **kwargs)
    again = distill(tiny_teacher, tabular_file, tmp_path / "again", hint_weight=0.3, **kwargs)
    models = {name: load_student(tmp_path / name).model for name in ("plain", "hint", "again")}
    assert [layer.name for layer in models["hint"].layers] == [layer.name for layer in models["plain"].layers]
    assert HINT_LAYER not in [layer.name for layer in models["hint"].layers]
    assert hinted["macs"] == plain["macs"]
    weights = {name: model.get_weights() for name, model in models.items()}
    assert all(np.array_equal(a, b) for a, b in zip(weights["hint"], weights["again"]))  # seeded
    assert not all(np.array_equal(a, b) for a, b in zip(weights["hint"], weights["plain"]))
    assert load_student(tmp_path / "hint").meta["config"]["hint_weight"] == 0.3
    assert hinted["student"]["anomaly"]["auroc"] > 0.75 and hinted["fidelity"]["spearman"] > 0.8


def test_hint_works_with_pruning_refresh_and_active_rounds(tiny_teacher, tabular_file, tmp_path):
    result = distill(tiny_teacher, tabular_file, tmp_path / "all", student="mlp", hidden=[16, 8], epochs=6,
                     seed=0, quiet=True, min_queries=1000, queries={"noise": 1.0}, hint_weight=0.1,
                     sparsity=0.5, refresh_queries=2, active_rounds=1)
    assert result["training"]["zero_weight_fraction"] >= 0.5
    assert result["training"]["query_draws"] >= 2
    assert np.isfinite(result["student"]["anomaly"]["auroc"])


def test_bad_hint_weight_is_refused(tiny_teacher, tabular_file, tmp_path):
    with pytest.raises(KDError, match="--hint-weight must be in"):
        distill(tiny_teacher, tabular_file, tmp_path / "bad", hint_weight=-1.0, quiet=True)
    assert not (tmp_path / "bad").exists()
