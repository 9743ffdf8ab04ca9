"""Disagreement-driven (active) query rounds: selection, gradient ascent, structure, and the training loop."""
import json

import numpy as np
import pytest

from kdcompress import KDError, load_dataset
from kdcompress.api import distill
from kdcompress.distill.active import GapGradient, TeacherGradient, ascend, disagreement_queries
from kdcompress.students import load_student
from kdcompress.teachers import load_teacher


class _ZeroStudent:
    def score(self, x):
        return np.zeros(len(x))


def _physics_events(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(n, 9))).astype(np.float32)
    x[:, 1] = 0.0  # MET eta
    x[: n // 2, 6:9] = 0.0  # object 2 absent in half the events
    x[:, 2] = rng.uniform(-3, 3, n)
    return x


def test_sampled_rounds_keep_the_largest_disagreements():
    x = np.random.default_rng(0).normal(size=(400, 5)).astype(np.float32)
    label = lambda q: np.square(q).sum(axis=1)  # noqa: E731  the "teacher"; the student says 0 everywhere
    chosen = disagreement_queries(x, 50, label, _ZeroStudent(), np.random.default_rng(3))
    again = disagreement_queries(x, 50, label, _ZeroStudent(), np.random.default_rng(3))
    other = disagreement_queries(x, 50, label, _ZeroStudent(), np.random.default_rng(4))
    assert chosen.shape == (50, 5) and chosen.dtype == np.float32
    assert np.array_equal(chosen, again) and not np.array_equal(chosen, other)
    # the same pool, rebuilt: the chosen points are exactly its 50 largest gaps
    from kdcompress.distill.active import POOL_FACTOR, POOL_STRATEGIES
    from kdcompress.distill.queries import make_queries
    pool = make_queries(x, {k: v * POOL_FACTOR * 50 / 400 for k, v in POOL_STRATEGIES.items()},
                        np.random.default_rng(3))
    assert np.sort(label(chosen))[::-1] == pytest.approx(np.sort(label(pool))[::-1][:50])
    assert label(chosen).min() >= np.quantile(label(pool), 0.7)


def test_ascent_raises_the_gap_and_keeps_physics_structure():
    x = _physics_events()
    layout = {"objects": 3, "per_object": 3}
    gradient = lambda q: 2.0 * q  # noqa: E731  d|0 - sum q^2|/dq
    spread = x.std(axis=0) + 1e-3
    constant = (x == x[:1]).all(axis=0)
    start = x[:40].copy()
    pushed = ascend(start, gradient, spread, layout, constant, steps=5, step=0.2)
    assert pushed.shape == start.shape
    assert np.all(np.square(pushed).sum(axis=1) >= np.square(start).sum(axis=1) - 1e-5)
    assert np.square(pushed).sum() > 1.5 * np.square(start).sum()
    objs, before = pushed.reshape(-1, 3, 3), start.reshape(-1, 3, 3)
    assert np.all(objs[:, :, 0] >= 0) and np.all(np.abs(objs[:, :, 2]) <= np.pi)
    assert np.all(pushed[:, 1] == 0.0)
    assert np.all(objs[before[:, :, 0] == 0] == 0.0)


def test_teacher_gradient_matches_finite_differences(tiny_teacher):
    teacher = load_teacher(tiny_teacher)
    x = np.random.default_rng(0).normal(size=(3, teacher.n_features)).astype(np.float32)
    value, analytic = TeacherGradient(teacher, "log1p", 2.0)(x)
    target = lambda q: np.log1p(teacher.score(q) / 2.0)  # noqa: E731
    assert value == pytest.approx(target(x), rel=1e-4)
    eps = 1e-2
    for j in (0, 5, 11):
        step = np.zeros_like(x)
        step[:, j] = eps
        numeric = (target(x + step) - target(x - step)) / (2 * eps)
        assert analytic[:, j] == pytest.approx(numeric, rel=0.05, abs=1e-3)


@pytest.fixture(scope="module")
def tiny_student_for_active(tiny_teacher, tabular_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("active") / "student"
    distill(tiny_teacher, tabular_file, out, hidden=[8], epochs=5, seed=0, quiet=True, queries={})
    return out


def test_small_data_gets_at_least_min_queries():
    from kdcompress.distill.score_regression import query_fractions
    assert query_fractions({"noise": 0.5, "mixup": 0.5}, 100_000, 20_000) == {"noise": 0.5, "mixup": 0.5}
    scaled = query_fractions({"noise": 0.5, "mixup": 0.25}, 400, 20_000)
    assert scaled["noise"] * 400 + scaled["mixup"] * 400 == pytest.approx(20_000)
    assert scaled["noise"] == pytest.approx(2 * scaled["mixup"])
    assert query_fractions({}, 400, 20_000) == {} and query_fractions({"noise": 1.0}, 400, 0) == {"noise": 1.0}


def test_wide_rows_get_at_most_the_memory_cap_of_queries():
    from kdcompress.distill.score_regression import MIN_QUERY_CAP, QUERY_BYTES, max_queries, query_fractions
    assert max_queries(57) == QUERY_BYTES // (4 * 57) > 1_000_000  # tabular and physics data: no cap in practice
    assert max_queries(32 * 32 * 3) >= 100_000 > max_queries(64 * 64 * 3)  # the default min_queries fits 32x32 RGB
    assert max_queries(256 * 256 * 3) * 256 * 256 * 3 * 4 <= QUERY_BYTES
    assert max_queries(10 ** 9) == MIN_QUERY_CAP
    capped = query_fractions({"noise": 0.5, "mixup": 0.25}, 400, 20_000, cap=3_000)
    assert capped["noise"] * 400 + capped["mixup"] * 400 == pytest.approx(3_000)
    assert capped["noise"] == pytest.approx(2 * capped["mixup"])
    assert query_fractions({"noise": 1.0}, 400, 20_000, cap=50_000) == {"noise": 50.0}  # under the cap: unchanged


def test_distill_caps_queries_and_says_so(tiny_teacher, tabular_file, tmp_path, monkeypatch, capsys):
    from kdcompress.data import load_dataset
    from kdcompress.distill import score_regression
    n_features = load_dataset(str(tabular_file)).n_features
    monkeypatch.setattr(score_regression, "QUERY_BYTES", 4 * n_features * 1_500)
    drawn = []
    original = score_regression.make_queries
    monkeypatch.setattr(score_regression, "make_queries", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    distill(tiny_teacher, tabular_file, tmp_path / "s", hidden=[8], epochs=1, seed=0, min_queries=20_000)
    assert "queries capped at 1,500 of 20,000" in capsys.readouterr().err
    assert [len(q) for q in drawn] == [pytest.approx(1_500, abs=10), pytest.approx(375, abs=10)]  # train, val


@pytest.mark.parametrize("method", ["sampled", "ascent"])
def test_active_rounds_train_on_the_points_they_add(tiny_teacher, tabular_file, tmp_path, method):
    out = tmp_path / method
    result = distill(tiny_teacher, tabular_file, out, hidden=[8], epochs=10, seed=2, quiet=True,
                     queries={"noise": 0.5}, min_queries=0, active_rounds=2, active=method, active_fraction=0.2)
    rounds = result["training"]["active_rounds"]
    n_train = len(load_dataset(tabular_file).train)
    assert [r["round"] for r in rounds] == [1, 2] and all(r["method"] == method for r in rounds)
    assert all(r["added"] == int(0.2 * (n_train + round(0.5 * n_train))) for r in rounds)
    assert all(r["mean_gap_after"] < r["mean_gap_before"] for r in rounds)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["training"]["active_rounds"] == rounds
    assert json.loads((out / "student.json").read_text())["config"]["active_rounds"] == 2


def test_active_rounds_are_reproducible(tiny_teacher, tabular_file, tmp_path):
    kwargs = dict(hidden=[8], epochs=4, seed=5, quiet=True, queries={}, active_rounds=1, active="ascent")
    a = distill(tiny_teacher, tabular_file, tmp_path / "a", **kwargs)
    b = distill(tiny_teacher, tabular_file, tmp_path / "b", **kwargs)
    assert a["training"]["active_rounds"] == b["training"]["active_rounds"]
    x = load_dataset(tabular_file).test
    assert np.array_equal(load_student(tmp_path / "a").score(x), load_student(tmp_path / "b").score(x))


def test_bad_active_settings_are_clear_errors(tiny_teacher, tabular_file, tmp_path):
    with pytest.raises(KDError, match="active method"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", active_rounds=1, active="gradient", quiet=True)
    with pytest.raises(KDError, match="active-rounds"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", active_rounds=-1, quiet=True)
    assert not (tmp_path / "s").exists()


def test_cli_flags_reach_the_student(tiny_teacher, tabular_file, tmp_path, capsys):
    from kdcompress.cli import main
    out = tmp_path / "cli"
    code = main(["distill", str(tiny_teacher), "--data", str(tabular_file), "--out", str(out), "--hidden", "8",
                 "--epochs", "3", "--active-rounds", "1", "--active", "ascent", "--active-fraction", "0.05",
                 "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rounds = metrics["training"]["active_rounds"]
    assert len(rounds) == 1 and rounds[0]["method"] == "ascent"
    hinted = "hint: the student ranks held-out normal events unlike its teacher" in capsys.readouterr().out
    assert hinted == (metrics["fidelity"]["spearman_normal"] < 0.9)
    assert main(["distill", str(tiny_teacher), "--data", str(tabular_file), "--out", str(tmp_path / "x"),
                 "--active-fraction", "0", "--quiet"]) == 2
    assert "active-fraction" in capsys.readouterr().err
