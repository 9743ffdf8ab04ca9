import json

import numpy as np
import pytest
import torch

from kdcompress import KDError, load_dataset
from kdcompress.api import distill
from kdcompress.data.images import DEFECTS
from kdcompress.distill.queries import IMAGE_SYMMETRIES, make_queries, parse_queries, repair_structure
from kdcompress.distill.sampling import inverse_density_weights, tail_indices
from kdcompress.students import load_student


@pytest.fixture(scope="module")
def tiny_student(tiny_teacher, tabular_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "student"
    result = distill(tiny_teacher, tabular_file, out, hidden=[8], epochs=15, seed=1, quiet=True,
                     queries={"noise": 1.0})
    return out, result


def test_student_folder_contract(tiny_student):
    out, result = tiny_student
    assert {p.name for p in out.iterdir()} == {"model.h5", "student.json", "metrics.json", "training.png",
                                               "fidelity.png"}  # selection.png only with --auto
    assert (out / "fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    for who in ("teacher", "student"):
        assert set(metrics[who]) == {"anomaly"}
        assert {"auroc", "tpr_at_fpr_1e-5"} <= set(metrics[who]["anomaly"])
    assert metrics["macs"]["student"] == 12 * 8 + 8 * 1
    assert metrics["macs"]["teacher"] > 10 * metrics["macs"]["student"]
    assert metrics["params"]["student"] == 12 * 8 + 8 + 8 + 1
    parts = metrics["tracking"]["signals"]["anomaly"]
    assert parts["within"]["fraction"] + parts["above"]["fraction"] == pytest.approx(1.0)
    memo = metrics["teacher_memorisation"]
    assert memo["median_train"] > 0 and memo["ratio"] == pytest.approx(memo["median_val"] / memo["median_train"])
    meta = json.loads((out / "student.json").read_text())
    assert meta["score_transform"] == "log1p" and meta["seed"] == 1
    assert meta["quant"]["bits"] == 8 and len(meta["preprocessing"]["shift"]) == 12
    assert meta["teacher_fingerprint"] and meta["data_fingerprint"]


def test_tracking_record_takes_student_scores_as_already_in_target_space():
    from kdcompress.evaluate import comparison_table, tracking_record
    rng = np.random.default_rng(0)
    teacher = {"background": rng.exponential(2.0, 5000), "sig": rng.exponential(2.0, 500)}
    meta = {"score_scale": 2.0, "score_transform": "log1p", "output_transform": "log1p"}
    student = {"background": np.log1p(teacher["background"] / 2.0),
               "sig": np.log1p(teacher["sig"] / 2.0) - 0.1}  # what Student.score returns: log1p applied
    record = tracking_record(teacher, student, meta)
    within = record["signals"]["sig"]["within"]
    assert within["bias"] == pytest.approx(-0.1) and record["background"]["mean_abs_residual"] == pytest.approx(0.0)
    assert tracking_record({"background": teacher["background"]}, {"background": student["background"]},
                           meta) is None
    table = comparison_table({"teacher": {}, "student": {}, "macs": {"teacher": 10, "student": 1},
                              "params": {"teacher": 10, "student": 1}, "tracking": record})
    row = next(line for line in table.splitlines() if line.startswith("sig "))
    assert f"{within['fraction']:.1%}" in row and "-0.100" in row


def test_reloaded_student_scores_match_metrics(tiny_student, tabular_file):
    from kdcompress.bench.metrics import auroc
    out, result = tiny_student
    data = load_dataset(tabular_file)
    student = load_student(out)
    got = auroc(student.score(data.test), student.score(data.signals["anomaly"]))
    assert got == pytest.approx(result["student"]["anomaly"]["auroc"], abs=1e-9)


def test_student_tracks_teacher_with_queries(tiny_student):
    _, result = tiny_student
    assert result["student"]["anomaly"]["auroc"] > result["teacher"]["anomaly"]["auroc"] - 0.05


def test_same_seed_same_student(tiny_teacher, tabular_file, tmp_path):
    a = distill(tiny_teacher, tabular_file, tmp_path / "a", hidden=[4], epochs=2, seed=5, quiet=True)
    b = distill(tiny_teacher, tabular_file, tmp_path / "b", hidden=[4], epochs=2, seed=5, quiet=True)
    wa = load_student(tmp_path / "a").model.get_weights()
    wb = load_student(tmp_path / "b").model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert a["student"] == b["student"]


def test_bad_settings_are_clear_errors(tiny_teacher, tabular_file, tmp_path):
    with pytest.raises(KDError, match="unknown score transform 'cube'"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", target="cube", quiet=True)
    with pytest.raises(KDError, match="unexpected keyword argument 'colour'"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", colour="red", quiet=True)
    with pytest.raises(KDError, match="int_bits must"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", quant={"bits": 2, "int_bits": 4}, quiet=True)
    assert not (tmp_path / "s").exists()


def test_width_mismatch_is_refused(tiny_teacher, tmp_path):
    np.savez(tmp_path / "narrow.npz", X=np.random.default_rng(0).normal(size=(100, 5)))
    with pytest.raises(KDError, match="expects 12 features but the data has 5"):
        distill(tiny_teacher, tmp_path / "narrow.npz", tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()


def test_inverse_density_weights_favour_rare_targets():
    rng = np.random.default_rng(0)
    target = np.r_[rng.normal(0, 0.1, 9900), rng.normal(5, 0.1, 100)]
    w = inverse_density_weights(target, cap=1000.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[-100:].mean() > 20 * w[:9900].mean()
    capped = inverse_density_weights(target, cap=2.0)
    assert capped.max() / np.median(capped) <= 2.0 + 1e-9


def test_tail_oversampling_copies_the_tail():
    target = np.arange(1000, dtype=float)
    idx = tail_indices(target, 0.99, 5, np.random.default_rng(0))
    assert len(idx) == 1000 + 10 * 4
    counts = np.bincount(idx, minlength=1000)
    assert set(counts[990:]) == {5} and set(counts[:990]) == {1}


def test_queries_shapes_seeds_and_structure():
    layout = {"objects": 3, "per_object": 3}
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(200, 9))).astype(np.float32)
    x[:, 1] = 0.0  # object 0 eta is always 0 (like MET)
    x[:100, 6:9] = 0.0  # object 2 absent in half the events
    x[:, 2] = rng.uniform(-3, 3, 200)
    strategies = {"noise": 1.0, "mixup": 0.5, "box": 0.5, "marginals": 0.5}
    q = make_queries(x, strategies, np.random.default_rng(1), layout)
    again = make_queries(x, strategies, np.random.default_rng(1), layout)
    other = make_queries(x, strategies, np.random.default_rng(2), layout)
    assert q.shape == (500, 9) and np.array_equal(q, again) and not np.array_equal(q, other)
    objs = q.reshape(-1, 3, 3)
    assert np.all(objs[:, :, 0] >= 0)
    assert np.all(np.abs(objs[:, :, 2]) <= np.pi)
    assert np.all(q[:, 1] == 0.0)
    absent = objs[:, :, 0] == 0
    assert np.all(objs[absent] == 0.0)
    assert absent[:, 2].any() and not absent[:, 2].all()


def test_inrange_queries_stay_within_each_features_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(300, 4)), rng.exponential(size=(300, 2))], axis=1).astype(np.float32)
    q = make_queries(x, {"inrange": 1.0}, np.random.default_rng(1))
    again = make_queries(x, {"inrange": 1.0}, np.random.default_rng(1))
    assert q.shape == (300, 6) and np.array_equal(q, again)
    assert np.all(q >= x.min(axis=0)) and np.all(q <= x.max(axis=0))
    at_bound = (q == x.min(axis=0)) | (q == x.max(axis=0))
    assert 0.05 < at_bound.mean() < 0.6  # clipped, not collapsed onto the bounds
    copies = np.mean([np.any(np.all(row == x, axis=1)) for row in q])
    assert copies < 0.02  # off the data: only mixup of an event with itself gives it back
    layout = {"objects": 2, "per_object": 3}
    x = np.abs(rng.normal(size=(200, 6))).astype(np.float32)
    x[:100, 3:] = 0.0
    objs = make_queries(x, {"inrange": 1.0}, np.random.default_rng(2), layout).reshape(-1, 2, 3)
    absent = objs[:, 1, 0] == 0
    assert absent.any() and np.all(objs[absent, 1] == 0.0) and np.all(objs[:, :, 0] >= 0)


def test_uphill_queries_climb_the_teachers_score_within_range(tiny_teacher, tabular_file):
    from kdcompress.distill.active import teacher_gradient
    from kdcompress.distill.queries import in_range, uphill
    from kdcompress.teachers import load_teacher
    teacher, x = load_teacher(tiny_teacher), load_dataset(tabular_file).train[:400]
    gradient = teacher_gradient(teacher, note=print)
    q, base = uphill(x, 400, np.random.default_rng(3), gradient)
    again, _ = uphill(x, 400, np.random.default_rng(3), gradient)
    assert q.shape == x.shape and np.array_equal(q, again)
    assert np.all(q >= x.min(axis=0) - 1e-6) and np.all(q <= x.max(axis=0) + 1e-6)
    assert np.mean(teacher.score(q.astype(np.float32)) > teacher.score(base)) > 0.9
    nearby, _ = in_range(x, 400, np.random.default_rng(3))
    assert np.median(teacher.score(q.astype(np.float32))) > np.median(teacher.score(nearby.astype(np.float32)))
    through = make_queries(x, {"uphill": 1.0}, np.random.default_rng(3), teacher_gradient=gradient)
    assert np.allclose(through, q, atol=1e-5)
    without = make_queries(x, {"uphill": 1.0}, np.random.default_rng(3))  # no gradient: drawn as `inrange`
    assert np.array_equal(without, in_range(x, 400, np.random.default_rng(3))[0].astype(np.float32))


def test_distill_draws_uphill_queries_with_the_teachers_gradient(tiny_teacher, tabular_file, tmp_path, capsys):
    distill(tiny_teacher, tabular_file, tmp_path / "s", hidden=[4], epochs=1, seed=0, quiet=False, min_queries=200,
            queries={"inrange": 0.5, "uphill": 0.5})
    assert "unavailable" not in capsys.readouterr().err
    recorded = json.loads((tmp_path / "s" / "student.json").read_text())["config"]["queries"]
    assert recorded == {"inrange": 0.5, "uphill": 0.5}


def test_undifferentiable_teacher_falls_back_with_a_note(tiny_teacher):
    from kdcompress.distill.active import teacher_gradient
    from kdcompress.teachers import load_teacher
    teacher, notes = load_teacher(tiny_teacher), []
    teacher.module.requires_grad_(False)
    for p in teacher.module.parameters():
        p.data = p.data.to(torch.float16)  # float32 inputs into float16 weights: autograd fails
    assert teacher_gradient(teacher, notes.append) is None
    assert len(notes) == 1 and "`uphill` queries drawn as `inrange`" in notes[0]


def test_objects_queries_add_objects_of_the_same_group():
    layout = {"objects": 5, "per_object": 3, "groups": [[1, 3], [3, 5]]}
    rng = np.random.default_rng(0)
    x = np.zeros((300, 5, 3), dtype=np.float32)
    x[:, 0] = np.c_[rng.uniform(1, 50, 300), np.zeros(300), rng.uniform(-3, 3, 300)]  # MET-like, always there
    x[:150, 1] = np.c_[rng.uniform(10, 20, 150), rng.normal(size=150), rng.uniform(-3, 3, 150)]  # 0 or 1 of group A
    x[:, 3] = np.c_[rng.uniform(30, 40, 300), rng.normal(size=300), rng.uniform(-3, 3, 300)]  # always 1 of group B
    flat = x.reshape(300, -1)
    q = make_queries(flat, {"objects": 2.0}, np.random.default_rng(1), layout)
    assert q.shape == (600, 15) and np.array_equal(q, make_queries(flat, {"objects": 2.0}, np.random.default_rng(1),
                                                                     layout))
    objs = q.reshape(-1, 5, 3)
    counts = (objs[:, :, 0] > 0).sum(axis=1)
    assert counts.mean() > (x[:, :, 0] > 0).sum(axis=1).mean() + 0.5  # every query gains >= 1 object
    assert (objs[:, 2, 0] > 0).any() and (objs[:, 4, 0] > 0).any()  # slots the data never fills get filled
    for lo, hi in layout["groups"]:
        pt = objs[:, lo:hi, 0]
        assert np.all(np.diff(pt, axis=1) <= 0)  # ordered by decreasing pT, empty slots last
        pool = {tuple(row[:2]) for row in x[:, lo:hi].reshape(-1, 3) if row[0] > 0}  # (pT, eta); phi is re-wrapped
        assert {tuple(row[:2]) for row in objs[:, lo:hi].reshape(-1, 3) if row[0] > 0} <= pool  # same group's objects
    assert {tuple(row[:2]) for row in objs[:, 0]} <= {tuple(row[:2]) for row in x[:, 0]}  # MET untouched
    with pytest.raises(KDError, match="needs object groups"):
        make_queries(flat, {"objects": 1.0}, rng, {"objects": 5, "per_object": 3})


def test_harder_queries_scale_pt_only_and_keep_structure():
    layout = {"objects": 5, "per_object": 3, "groups": [[1, 3], [3, 5]]}
    rng = np.random.default_rng(0)
    x = np.zeros((400, 5, 3), dtype=np.float32)
    x[:, 0] = np.c_[rng.uniform(1, 50, 400), np.zeros(400), rng.uniform(-3, 3, 400)]  # MET-like
    x[:200, 1] = np.c_[rng.uniform(10, 20, 200), rng.normal(size=200), rng.uniform(-3, 3, 200)]
    x[:, 3:5] = np.stack([rng.uniform(30, 40, (400, 2)), rng.normal(size=(400, 2)), rng.uniform(-3, 3, (400, 2))], -1)
    x[:, 3:5] = np.take_along_axis(x[:, 3:5], np.argsort(-x[:, 3:5, :1], axis=1), axis=1)
    flat = x.reshape(400, -1)
    q = make_queries(flat, {"harder": 2.0}, np.random.default_rng(1), layout)
    assert q.shape == (800, 15) and np.array_equal(q, make_queries(flat, {"harder": 2.0}, np.random.default_rng(1),
                                                                     layout))
    objs = q.reshape(-1, 5, 3)
    assert set(objs[:, :, 1].ravel()) <= set(x[:, :, 1].ravel())  # eta untouched (phi only re-wrapped)
    assert np.all(objs[objs[:, :, 0] == 0] == 0)  # absent objects stay all zero
    assert set((objs[:, :, 0] > 0).sum(axis=1)) <= set((x[:, :, 0] > 0).sum(axis=1))  # no object added or lost
    for lo, hi in layout["groups"]:
        assert np.all(np.diff(objs[:, lo:hi, 0], axis=1) <= 0)  # re-sorted by pT
    ht, ht_data = objs[:, :, 0].sum(axis=1), x[:, :, 0].sum(axis=1)
    assert ht.max() > 2 * ht_data.max() and ht.max() <= 4 * ht_data.max() + 1e-3  # up to 4x harder
    assert objs[:, 0, 0].max() > 1.5 * x[:, 0, 0].max()  # MET scaled too
    with pytest.raises(KDError, match="needs a layout"):
        make_queries(flat, {"harder": 1.0}, rng, None)


def test_default_queries_follow_the_layout(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.data.adc2021 import LAYOUT
    from kdcompress.distill.score_regression import default_queries
    assert default_queries(None) == {"noise": 0.5, "mixup": 0.5}
    assert default_queries(LAYOUT) == {"noise": 0.5, "mixup": 0.5, "objects": 0.5, "harder": 0.5}
    distill(tiny_teacher, tabular_file, tmp_path / "s", hidden=[4], epochs=1, seed=0, quiet=True, min_queries=100)
    recorded = json.loads((tmp_path / "s" / "student.json").read_text())["config"]["queries"]
    assert recorded == {"noise": 0.5, "mixup": 0.5}


def test_image_folders_get_pixel_noise_and_patch_queries_by_default(tmp_path):
    from kdcompress.api import train_teacher
    from kdcompress.data.images import write_synthetic_image_folder
    from kdcompress.distill.score_regression import default_queries
    assert default_queries(None, "images") == {"pixel-noise": 1.0, "patches": 1.0}
    root = write_synthetic_image_folder(tmp_path / "weave", side=12, n_train=40, n_test=4)
    train_teacher(root, tmp_path / "t.pt", hidden=[16], latent=4, epochs=2, seed=0, quiet=True)
    result = distill(tmp_path / "t.pt", root, tmp_path / "s", hidden=[4], epochs=1, seed=0, quiet=True,
                     min_queries=100)
    recorded = json.loads((tmp_path / "s" / "student.json").read_text())["config"]["queries"]
    assert recorded == {"pixel-noise": 1.0, "patches": 1.0} and set(result["student"]) == set(DEFECTS)


def test_repair_keeps_template_pattern():
    layout = {"objects": 2, "per_object": 3}
    template = np.array([[5.0, 1.0, 0.5, 0.0, 0.0, 0.0]])
    q = np.array([[-2.0, 0.3, 7.0, 3.0, 3.0, 3.0]])
    fixed = repair_structure(q, template, layout)
    assert fixed[0, 0] == 2.0 and fixed[0, 2] == pytest.approx(7.0 - 2 * np.pi)
    assert np.all(fixed[0, 3:] == 0.0)


def test_parse_queries():
    assert parse_queries("none") == {}
    assert parse_queries("noise:0.5,mixup") == {"noise": 0.5, "mixup": 1.0}
    assert parse_queries("inrange:0.3,uphill:0.6") == {"inrange": 0.3, "uphill": 0.6}
    with pytest.raises(KDError, match="unknown query strategy 'magic'"):
        parse_queries("magic")
    with pytest.raises(KDError, match="must be a number"):
        parse_queries("noise:lots")


def test_pruned_student_keeps_zeros_and_counts_only_the_rest(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.distill.pruning import prunable_layers
    result = distill(tiny_teacher, tabular_file, tmp_path / "p", student="energy", hidden=[16, 8], sparsity=0.75,
                     epochs=12, quiet=True)
    student = load_student(tmp_path / "p")
    kernels = {layer.name: layer.kernel.numpy() for layer in prunable_layers(student.model)}
    assert set(kernels) == {"dense0", "projections"}  # the fixed all-ones energy sum is not pruned
    for kernel in kernels.values():
        assert kernel.size - np.count_nonzero(kernel) >= int(0.75 * kernel.size)
    assert np.all(student.model.get_layer("energy_sum").kernel.numpy() == 1.0)
    nonzero = sum(int(np.count_nonzero(k)) for k in kernels.values())
    assert result["macs"]["student"] == nonzero + 8 + 8  # kept weights, squares, sum
    assert result["training"]["zero_weight_fraction"] >= 0.75
    assert student.meta["config"]["sparsity"] == 0.75
    assert result["student"]["anomaly"]["auroc"] > 0.75


def test_pruning_schedule_takes_equal_steps_to_the_exact_target(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.distill.pruning import prunable_layers, schedule
    assert schedule(0.8, 4) == pytest.approx([0.2, 0.4, 0.6, 0.8]) and schedule(0.8, 4)[-1] == 0.8
    assert schedule(0.82, 1) == [0.82] and len(schedule(0.82)) == 3
    result = distill(tiny_teacher, tabular_file, tmp_path / "p1", student="energy", hidden=[16, 8], sparsity=0.6,
                     prune_steps=1, epochs=6, quiet=True)
    student = load_student(tmp_path / "p1")
    for layer in prunable_layers(student.model):  # one step straight to the target, per kernel
        kernel = layer.kernel.numpy()
        assert kernel.size - np.count_nonzero(kernel) >= int(0.6 * kernel.size)
    assert student.meta["config"]["prune_steps"] == 1 and result["training"]["zero_weight_fraction"] > 0.55
    with pytest.raises(KDError, match="--prune-steps must be >= 1"):
        distill(tiny_teacher, tabular_file, tmp_path / "p0", sparsity=0.5, prune_steps=0, quiet=True)
    assert not (tmp_path / "p0").exists()


def test_sparsity_out_of_range_is_refused(tiny_teacher, tabular_file, tmp_path):
    with pytest.raises(KDError, match="--sparsity must be in"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", sparsity=1.0, quiet=True)
    assert not (tmp_path / "s").exists()


def test_query_refresh_replaces_only_the_query_rows_with_a_seeded_labelled_draw():
    from kdcompress.data.preprocess import Preprocessing
    from kdcompress.distill.score_regression import QueryRefresh
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(50, 3))
    draw = lambda r: make_queries(normal, {"noise": 0.4}, r)  # noqa: E731
    label = lambda q: np.abs(q).sum(axis=1)  # noqa: E731
    first = draw(np.random.default_rng(9))
    z, y = np.concatenate([normal, first]), np.concatenate([label(normal), label(first)])
    refresh = QueryRefresh(draw, label, Preprocessing.identity(3), slice(50, 70), every=1, seed=4)
    same_z, same_y = refresh.current(z, y)
    assert same_z is z and same_y is y and refresh.draws == 1
    refresh.redraw()
    new_z, new_y = refresh.current(z, y)
    assert refresh.draws == 2 and new_z.shape == z.shape
    assert np.array_equal(new_z[:50], normal) and np.array_equal(z[50:], first)  # inputs left as they were
    assert not np.allclose(new_z[50:], first)
    assert np.allclose(new_y, label(new_z))  # every row carries the teacher's label of its own point
    twin = QueryRefresh(draw, label, Preprocessing.identity(3), slice(50, 70), every=1, seed=4)
    twin.redraw()
    assert np.array_equal(twin.current(z, y)[0], new_z)
    refresh.redraw()
    assert not np.allclose(refresh.current(z, y)[0][50:], new_z[50:])


def test_refreshed_queries_are_redrawn_every_n_epochs_and_seeded(tiny_teacher, tabular_file, tmp_path):
    kwargs = dict(hidden=[4], epochs=5, quiet=True, queries={"noise": 1.0}, min_queries=500)
    a = distill(tiny_teacher, tabular_file, tmp_path / "a", refresh_queries=2, seed=3, **kwargs)
    distill(tiny_teacher, tabular_file, tmp_path / "b", refresh_queries=2, seed=3, **kwargs)
    distill(tiny_teacher, tabular_file, tmp_path / "fixed", seed=3, **kwargs)
    assert a["training"]["epochs_run"] == 5 and a["training"]["query_draws"] == 3  # drawn at epochs 0, 2, 4
    weights = {name: load_student(tmp_path / name).model.get_weights() for name in ("a", "b", "fixed")}
    assert all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["b"]))
    assert not all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["fixed"]))
    meta = json.loads((tmp_path / "a" / "student.json").read_text())
    assert meta["config"]["refresh_queries"] == 2
    with pytest.raises(KDError, match="--refresh-queries must be >= 0"):
        distill(tiny_teacher, tabular_file, tmp_path / "bad", refresh_queries=-1, **kwargs)


def test_fresh_queries_teach_more_of_the_teachers_score_than_one_small_draw(tiny_teacher, tabular_file, tmp_path):
    kwargs = dict(hidden=[16, 8], epochs=30, seed=0, quiet=True, queries={"noise": 0.1}, min_queries=0)
    fixed = distill(tiny_teacher, tabular_file, tmp_path / "fixed", **kwargs)
    fresh = distill(tiny_teacher, tabular_file, tmp_path / "fresh", refresh_queries=1, **kwargs)
    assert fresh["training"]["query_draws"] > 20
    assert fresh["fidelity"]["spearman"] > fixed["fidelity"]["spearman"] + 0.01


def _symmetries_of(images: np.ndarray, transforms) -> dict:
    """Every transform of every image, flattened: bytes -> transform index."""
    return {t(images[i:i + 1]).tobytes(): k for i in range(len(images)) for k, t in enumerate(transforms)}


def test_flips_are_symmetries_of_normal_images_seeded():
    rng = np.random.default_rng(0)
    square = rng.random((30, 4, 4)).astype(np.float32)
    square[:, :, 0] = 0.0  # a column never lit in the normal images: flips may light it
    q = make_queries(square.reshape(30, 16), {"flips": 4.0}, np.random.default_rng(1), image_shape=(4, 4))
    again = make_queries(square.reshape(30, 16), {"flips": 4.0}, np.random.default_rng(1), image_shape=(4, 4))
    other = make_queries(square.reshape(30, 16), {"flips": 4.0}, np.random.default_rng(2), image_shape=(4, 4))
    assert q.shape == (120, 16) and np.array_equal(q, again) and not np.array_equal(q, other)
    known = _symmetries_of(square, IMAGE_SYMMETRIES)
    kinds = [known.get(row.reshape(1, 4, 4).tobytes()) for row in q]
    assert None not in kinds and set(kinds) == set(range(7))  # all 7 non-trivial symmetries of the square
    assert (q.reshape(-1, 4, 4)[:, :, 0] != 0).any()
    identity = {square[i:i + 1].tobytes() for i in range(30)}
    assert not any(row.reshape(1, 4, 4).tobytes() in identity for row in q)

    wide = rng.random((30, 2, 5)).astype(np.float32)
    q = make_queries(wide.reshape(30, 10), {"flips": 2.0}, np.random.default_rng(1), image_shape=(2, 5))
    known = _symmetries_of(wide, IMAGE_SYMMETRIES[:3])
    assert {known.get(row.reshape(1, 2, 5).tobytes()) for row in q} == {0, 1, 2}


def test_patches_change_one_local_region_of_a_normal_image_seeded():
    from kdcompress.distill.queries import patches
    rng = np.random.default_rng(0)
    x = (0.2 + 0.6 * rng.random((40, 24 * 20))).astype(np.float32)
    q = make_queries(x, {"patches": 2.0}, np.random.default_rng(1), image_shape=(24, 20))
    assert q.shape == (80, 480) and q.dtype == np.float32
    assert np.array_equal(q, make_queries(x, {"patches": 2.0}, np.random.default_rng(1), image_shape=(24, 20)))
    assert not np.array_equal(q, make_queries(x, {"patches": 2.0}, np.random.default_rng(2), image_shape=(24, 20)))
    q, templates = patches(x, 200, np.random.default_rng(3), image_shape=(24, 20))
    assert all(any(np.array_equal(t, row) for row in x) for t in templates[:10])  # each starts from a normal image
    changed = (np.abs(q - templates) > 1e-6).mean(axis=1)
    assert 0 < changed.min() and changed.max() <= 0.25 and 0.02 < np.median(changed) < 0.2  # local, not global
    assert x.min() <= q.min() and q.max() <= x.max()  # fills stay in the data's range
    with pytest.raises(KDError, match="'patches' needs image data"):
        make_queries(x, {"patches": 1.0}, np.random.default_rng(0))


def test_flips_need_images(tiny_teacher, tabular_file, tmp_path):
    x = np.random.default_rng(0).random((20, 16)).astype(np.float32)
    with pytest.raises(KDError, match="'flips' needs image data"):
        make_queries(x, {"flips": 1.0}, np.random.default_rng(0))
    with pytest.raises(KDError, match="'flips' needs image data"):
        distill(tiny_teacher, tabular_file, tmp_path / "s", queries={"flips": 0.5}, epochs=1, quiet=True)
    assert not (tmp_path / "s").exists()


def test_distill_on_images_with_flips(tiny_teacher, tabular_file, tmp_path):
    raw = np.load(tabular_file)
    np.savez(tmp_path / "img.npz", X=raw["X"].reshape(len(raw["X"]), 3, 4), y=raw["y"])
    result = distill(tiny_teacher, tmp_path / "img.npz", tmp_path / "s", queries={"noise": 0.5, "flips": 0.5},
                     hidden=[8, 4], epochs=3, min_queries=2000, quiet=True)
    flat = distill(tiny_teacher, tabular_file, tmp_path / "f", hidden=[8, 4], epochs=3, min_queries=2000, quiet=True)
    assert result["teacher"]["anomaly"]["auroc"] == pytest.approx(flat["teacher"]["anomaly"]["auroc"])
    meta = json.loads((tmp_path / "s" / "student.json").read_text())
    assert meta["config"]["queries"] == {"noise": 0.5, "flips": 0.5} and meta["image_shape"] == [3, 4]
    assert json.loads((tmp_path / "f" / "student.json").read_text())["image_shape"] is None


def test_cnn_student_reads_images_in_their_own_shape(tiny_teacher, tabular_file, tmp_path):
    raw = np.load(tabular_file)
    images = raw["X"].reshape(len(raw["X"]), 3, 4)
    np.savez(tmp_path / "img.npz", X=images, y=raw["y"])
    distill(tiny_teacher, tmp_path / "img.npz", tmp_path / "s", student="cnn", hidden=[4], epochs=1,
            min_queries=500, quiet=True)
    model = load_student(tmp_path / "s").model
    assert model.get_layer("image").output_shape == (None, 3, 4, 1)  # the flat default would be 4 x 3
    reshaped = model.get_layer("image")(images[:2].reshape(2, 12)).numpy()[..., 0]
    assert np.array_equal(reshaped, images[:2])
    meta = json.loads((tmp_path / "s" / "student.json").read_text())
    assert meta["config"]["student_kwargs"]["input_shape"] == [3, 4, 1]
