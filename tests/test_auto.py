import dataclasses
import json

import numpy as np
import pytest

from kdcompress import KDError, load_dataset
from kdcompress.distill import auto
from kdcompress.distill.fidelity import fidelity, fidelity_rank, probe_set, teacher_memorisation
from kdcompress.teachers import load_teacher


def test_fidelity_by_hand():
    t = np.arange(1000, dtype=float)
    perfect = fidelity(t, 3 * t + 1)
    assert perfect == {"spearman": 1.0, "top_1pct_auroc": 1.0, "top_0.1pct_auroc": 1.0}
    reversed_ = fidelity(t, -t)
    assert reversed_["spearman"] == -1.0 and reversed_["top_1pct_auroc"] == 0.0
    # student ranks the teacher's top 10 (top 1%) below 5 of the 990 others: AUROC = 1 - 5*10/(10*990)
    s = t.copy()
    s[:5] = 2000.0
    assert fidelity(t, s)["top_1pct_auroc"] == pytest.approx(1 - 50 / 9900)
    assert fidelity_rank(perfect) == 1.0
    # Spearman on the normal events alone: the first 100 points ranked backwards, the rest in order
    s = t.copy()
    s[:100] = -t[:100]
    both = fidelity(t, s, n_normal=100)
    assert both["spearman_normal"] == -1.0 and both["spearman"] > 0.9
    assert fidelity_rank(both) == pytest.approx(np.mean([both[k] for k in both]))


def test_teacher_memorisation_by_hand():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=(400, 3)), rng.normal(size=(300, 3))

    def memorising(x):  # distance to the nearest training event, plus a floor
        return 0.1 + np.sqrt(((x[:, None, :] - train[None]) ** 2).sum(-1)).min(axis=1)

    memo = teacher_memorisation(memorising, train, val)
    assert memo["median_train"] == pytest.approx(0.1)
    assert memo["median_val"] == pytest.approx(np.median(memorising(val)))
    assert memo["ratio"] == pytest.approx(memo["median_val"] / 0.1) and memo["ratio"] > 2 and memo["memorised"]
    smooth = teacher_memorisation(lambda x: (x ** 2).sum(axis=1), train, val)
    assert 0.8 < smooth["ratio"] < 1.25 and not smooth["memorised"]
    flat = teacher_memorisation(lambda x: np.zeros(len(x)), train, val)
    assert flat["ratio"] is None and not flat["memorised"]


def test_probe_set_is_fixed_and_broad(tabular_file):
    data = load_dataset(tabular_file)
    a, b = probe_set(data.val, None), probe_set(data.val, None)
    assert np.array_equal(a.points, b.points) and len(a.points) >= len(data.val) + 10_000
    assert a.n_normal == len(data.val)
    assert np.array_equal(np.sort(a.points[:a.n_normal], axis=0), np.sort(data.val, axis=0))
    assert a.points[a.n_normal:].std() > data.val.std()


def test_surface_images_get_patch_probes_and_candidates(tabular_file, tmp_path):
    from kdcompress.data.images import write_synthetic_image_folder
    from kdcompress.distill.fidelity import data_probe
    folder = load_dataset(write_synthetic_image_folder(tmp_path / "weave", side=12, n_train=40, n_test=2))
    plain, surface = probe_set(folder.val, None), data_probe(folder)
    assert np.array_equal(surface.points, data_probe(folder).points) and surface.n_normal == plain.n_normal
    extra = surface.points[len(plain.points):]  # pixel noise, then patches: local changes of normal images
    assert len(extra) == int(round(0.75 * (len(plain.points) - plain.n_normal)))
    changed = (np.abs(extra[-100:, None, :] - folder.val[None]) > 1e-6).mean(axis=2).min(axis=1)
    assert np.median(changed) < 0.25  # each patch probe differs from some validation image in few pixels
    tabular = load_dataset(tabular_file)
    assert np.array_equal(data_probe(tabular).points, probe_set(tabular.val, None).points)
    assert "pixel-noise+patches" in auto.strategies_for(None, "images")
    assert "pixel-noise+patches" not in auto.strategies_for(None, "tabular")


@pytest.fixture
def small_search(monkeypatch):
    monkeypatch.setattr(auto, "STRATEGIES", {"none": {}, "noise": {"noise": 1.0}})
    monkeypatch.setattr(auto, "OBJECT_STRATEGIES", {"noise+objects": {"noise": 1.0, "objects": 0.5}})
    monkeypatch.setattr(auto, "WIDTHS", ((4, 2), (8, 4)))
    monkeypatch.setattr(auto, "SEARCH_EPOCHS", 3)


def _shuffled_labels(data):
    """Same normal training data; the evaluation 'anomalies' replaced by a shuffle of test and anomaly rows."""
    pool = np.concatenate([data.test, data.signals["anomaly"]])
    rng = np.random.default_rng(7)
    pool = pool[rng.permutation(len(pool))]
    n = len(data.signals["anomaly"])
    return dataclasses.replace(data, test=pool[n:], signals={"anomaly": pool[:n]})


def test_auto_choice_ignores_labels(small_search, tiny_teacher, tabular_file, tmp_path, capsys):
    from kdcompress.distill import DistillConfig
    teacher = load_teacher(tiny_teacher)
    data = load_dataset(tabular_file)
    base = DistillConfig(epochs=4, seed=0)
    a = auto.auto_distill(teacher, data, tmp_path / "a", base, budget_macs=10_000, quiet=False)
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[auto] tried")]
    assert len(progress) == len(a["selection"]["tried"])
    assert all(f"trial {k}/" in line and "ETA ~" in line for k, line in enumerate(progress, 1))
    b = auto.auto_distill(teacher, _shuffled_labels(data), tmp_path / "b", base, budget_macs=10_000, quiet=True)
    assert a["selection"]["chosen"] == b["selection"]["chosen"]
    assert [t["rank"] for t in a["selection"]["tried"]] == [t["rank"] for t in b["selection"]["tried"]]
    assert a["ablation"][0]["auroc"] != b["ablation"][0]["auroc"]  # the labels did change the evaluation
    tried = {(t["head"], t["queries"]) for t in a["selection"]["tried"]}
    assert tried >= {("mlp", "none"), ("mlp", "noise"), ("energy", "none"), ("energy", "noise")}
    assert all("objects" not in q for _, q in tried)  # flat tables have no object groups
    assert {t["active"] for t in a["selection"]["tried"]} == {"none", "sampled", "ascent"}
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["selection"]["chosen"]["head"] in ("mlp", "energy")
    chosen_active = saved["selection"]["chosen"]["active"]
    config = json.loads((tmp_path / "a" / "student.json").read_text())["config"]
    assert config["active_rounds"] == (0 if chosen_active == "none" else auto.ACTIVE_ROUNDS)
    assert len(saved["training"].get("active_rounds", [])) == config["active_rounds"]
    assert set(saved["fidelity"]) == {"spearman", "spearman_normal", "top_1pct_auroc", "top_0.1pct_auroc"}
    flagged = [row for row in saved["ablation"] if row["chosen"]]
    chosen = saved["selection"]["chosen"]
    assert len(flagged) == 1 and {k: flagged[0][k] for k in chosen} == chosen
    assert _is_png(tmp_path / "a" / "selection.png") and _is_png(tmp_path / "a" / "fidelity.png")


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_default_budget_is_fifty_times_below_teacher(small_search, tiny_teacher, tabular_file, tmp_path):
    from kdcompress.distill import DistillConfig
    teacher = load_teacher(tiny_teacher)  # ~1.9k MACs: /50 leaves no room even for the 12-4-2-1 student
    with pytest.raises(KDError, match="no student fits the budget"):
        auto.auto_distill(teacher, load_dataset(tabular_file), tmp_path / "s", DistillConfig(epochs=1), quiet=True)


def test_auto_respects_budget(small_search, tiny_teacher, tabular_file, tmp_path):
    from kdcompress.distill import DistillConfig
    teacher = load_teacher(tiny_teacher)
    data = load_dataset(tabular_file)
    budget = 12 * 4 + 4 * 2 + 2
    result = auto.auto_distill(teacher, data, tmp_path / "s", DistillConfig(epochs=2), budget_macs=budget,
                               quiet=True)
    tried = result["selection"]["tried"]
    assert all(t["macs"] <= budget for t in tried)
    assert {tuple(t["hidden"]) for t in tried if not t["sparsity"]} == {(4, 2)}
    pruned = {tuple(t["hidden"]): t["sparsity"] for t in tried if t["sparsity"]}
    assert set(pruned) == {(8, 4), (16, 8)}  # 2x and 4x wider, pruned to fit
    assert 0 < pruned[(8, 4)] < pruned[(16, 8)] <= 0.95
    first = [t for t in tried if not t["sparsity"] and t["active"] == "none"]  # (4, 2) is the only width
    widened = [t for t in tried if t["sparsity"]]
    head = widened[0]["head"]
    assert {t["queries"] for t in widened} == set(auto._close_strategies(first, head))
    assert all(t["head"] == head for t in widened) and len(widened) == 2 * len({t["queries"] for t in widened})
    with pytest.raises(KDError, match="no student fits the budget"):
        auto.auto_distill(teacher, data, tmp_path / "t", DistillConfig(epochs=2), budget_macs=10, quiet=True)
    assert not (tmp_path / "t").exists()


def test_energy_head_trains_and_reports_log1p(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.api import distill
    from kdcompress.students import load_student
    result = distill(tiny_teacher, tabular_file, tmp_path / "e", student="energy", hidden=[16, 8], epochs=20,
                     quiet=True)
    student = load_student(tmp_path / "e")
    assert student.meta["output_transform"] == "log1p"
    data = load_dataset(tabular_file)
    z = student.preprocessing.apply(data.test[:100])
    raw = student.raw_output(z)
    assert np.all(raw >= 0)
    assert np.allclose(student.score(data.test[:100]), np.log1p(raw))
    assert result["student"]["anomaly"]["auroc"] > 0.75
    assert result["macs"]["student"] == 12 * 16 + 16 * 8 + 8 + 8  # trunk, projections, squares, sum


@pytest.mark.slow
def test_energy_head_is_bit_exact_through_hls4ml(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.api import distill
    from kdcompress.export import export
    distill(tiny_teacher, tabular_file, tmp_path / "e", student="energy", hidden=[8, 4], epochs=3, quiet=True)
    manifest = export(tmp_path / "e", ["fpga", "onnx"], out=tmp_path / "x", quiet=True)
    by_target = {a["target"]: a for a in manifest["artefacts"]}
    assert by_target["fpga"]["agreement"]["bit_exact_fraction"] == 1.0
    assert by_target["fpga"]["agreement"]["events"] >= 600  # every held-out row of the tiny data set
    assert by_target["onnx"]["agreement"]["max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_pruned_energy_head_is_bit_exact_through_hls4ml(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.api import distill
    from kdcompress.export import export
    distill(tiny_teacher, tabular_file, tmp_path / "e", student="energy", hidden=[16, 8], sparsity=0.6, epochs=6,
            quiet=True)
    manifest = export(tmp_path / "e", ["fpga", "onnx"], out=tmp_path / "x", quiet=True)
    by_target = {a["target"]: a for a in manifest["artefacts"]}
    assert by_target["fpga"]["agreement"]["bit_exact_fraction"] == 1.0
    assert by_target["onnx"]["agreement"]["max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_trigger_pipeline_with_auto_reports_the_search(small_search, tmp_path):
    from kdcompress.pipelines.run import run_recipe_args
    args = {"events": 3000, "hidden": [32, 16], "latent": 4, "teacher_epochs": 2, "student_epochs": 3,
            "auto": True, "budget_macs": 20_000, "export": [], "quick_benchmark": True, "baseline_epochs": 1}
    run_recipe_args("auto-test", "trigger", args, tmp_path, description="auto in the trigger pipeline", quiet=True)
    results = json.loads((tmp_path / "results.json").read_text())
    chosen = results["distill"]["selection"]["chosen"]
    assert {t["queries"] for t in results["distill"]["selection"]["tried"]} >= {"none", "noise", "noise+objects"}
    distillation = results["report"]["distillation"]
    assert [row for row in distillation["ablation"] if row["chosen"]][0]["hidden"] == chosen["hidden"]
    assert set(distillation["ablation"][0]["auroc"]) == set(results["distill"]["student"]) - {"background"}
    assert "Search (ablation)" in (tmp_path / "report" / "report.md").read_text()


def test_sparsity_to_fit_is_the_least_that_fits():
    from kdcompress.distill import DistillConfig
    budget = {"macs": 60, "bops": None}
    kernels = 12 * 8 + 8 * 4 + 4 * 1  # mlp 8-4 on 12 features, all prunable
    sparsity = auto._sparsity_to_fit(12, "mlp", [8, 4], DistillConfig(), budget)
    kept = lambda s: sum(n - int(np.floor(s * n + 1e-9)) for n in (12 * 8, 8 * 4, 4))  # noqa: E731
    assert kept(sparsity) <= 60 < kept(round(sparsity - 0.01, 2))
    assert kept(0.0) == kernels
    assert auto._sparsity_to_fit(12, "mlp", [4, 2], DistillConfig(), budget) is None  # fits unpruned
    assert auto._sparsity_to_fit(12, "mlp", [8, 4], DistillConfig(), {"macs": 3, "bops": None}) is None


def test_near_ties_go_to_the_larger_student():
    trials = [{"rank": 0.9262, "macs": 3936}, {"rank": 0.9261, "macs": 5824}, {"rank": 0.9200, "macs": 9000}]
    assert auto._best(trials)["macs"] == 5824
    trials[1]["rank"] = 0.9240  # no longer a tie
    assert auto._best(trials)["macs"] == 3936


def test_strategies_close_to_the_best_are_widened_too():
    first = [{"head": "energy", "queries": "noise", "rank": 0.9664},
             {"head": "energy", "queries": "broad", "rank": 0.9566},
             {"head": "energy", "queries": "none", "rank": 0.9293},
             {"head": "mlp", "queries": "noise+mixup", "rank": 0.9660}]
    assert auto._close_strategies(first, "energy") == ["noise", "broad"]  # none is 0.037 behind; mlp not asked
    assert auto._close_strategies(first, "mlp") == ["noise+mixup"]
    near = [{"head": "energy", "queries": f"q{k}", "rank": 0.96 - 0.001 * k} for k in range(5)]
    assert auto._close_strategies(near[::-1], "energy") == ["q0", "q1", "q2"]  # best first, PRUNED_MAX_STRATEGIES


def test_pruned_trial_over_budget_after_training_is_dropped_and_said(monkeypatch):
    notes = []

    class FakeSearch:
        data = type("D", (), {"n_features": 12})()
        base = auto.DistillConfig()
        log = type("L", (), {"note": staticmethod(notes.append)})()

        def trial(self, strategy, head, hidden, active, sparsity):
            return {"queries": strategy, "macs": 70 if strategy == "broad" else 50, "bops": 1}

    best = {"hidden": [8, 4], "head": "mlp", "active": "none"}
    monkeypatch.setattr(auto, "PRUNED_WIDENING", (2,))
    kept = auto._pruned_trials(FakeSearch(), best, ["noise", "broad"], {"macs": 60, "bops": None})
    assert [t["queries"] for t in kept] == ["noise"]
    assert len(notes) == 1 and "70 MACs" in notes[0] and "exceed the budget" in notes[0]
