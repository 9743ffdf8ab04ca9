"""Feature-level detectors (RD4AD, URD, DSKD): modules, losses, synthetic anomalies, training, backbone files,
checkpoints and the recipes end to end."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from image_helpers import bar_images, same, state
from kdcompress import KDError
from kdcompress.data.images import DEFECTS
from kdcompress.distill import reverse as rv
from kdcompress.distill.dual_student import train_dskd
from kdcompress.teachers.feature_kd import (FeatureKD, ConvBackbone, discrepancy, gaussian_kernel, stage_sizes)

REPO = Path(__file__).resolve().parents[1]
RECIPES = {name: REPO / "recipes" / f"{name}.yaml" for name in ("urd-mnist", "dskd-mnist")}
SIDE = 16


def _images(count: int, seed: int, anomalous: bool = False) -> np.ndarray:
    return bar_images(count, seed, SIDE, anomalous, low=3, high_margin=5)


def _weights(module) -> dict:
    """Trainable weights only: batch-norm running statistics move without any optimiser step."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _backbone(seed: int = 0, width: int = 4) -> ConvBackbone:
    """Rotation prediction on the normal bar images (a rotated normal bar looks like the anomaly)."""
    torch.manual_seed(seed)
    return rv.pretrain_backbone(_images(256, 7), width, 5, 32, 3e-3, np.random.default_rng(seed), quiet=True)[
        "backbone"]


def _train(method: str, backbone: ConvBackbone, epochs: int = 2, seed: int = 0) -> FeatureKD:
    torch.manual_seed(seed)
    model = rv.detector(SIDE * SIDE, method, backbone)
    x, val, rng = _images(64, 0), _images(16, 1), np.random.default_rng(seed)
    if method == "rd":
        rv.train_rd(model, x, val, epochs, 16, 5e-3, rng, quiet=True)
    elif method == "urd":
        rv.train_urd(model, backbone, x, val, epochs, 16, 5e-3, 1e-4, rng, quiet=True)
    else:
        train_dskd(model, x, val, epochs, 16, 5e-3, rng, quiet=True)
    return model.eval()


# ---------------------------------------------------------------- modules

@pytest.mark.parametrize("method", ["rd", "urd", "dskd"])
def test_every_method_scores_each_image(method):
    model = FeatureKD(SIDE * SIDE, method=method, width=4).eval()
    with torch.no_grad():
        score = model(torch.rand(5, SIDE * SIDE))
        amap = model.anomaly_map(torch.rand(3, SIDE * SIDE))
    assert score.shape == (5,) and torch.all(score >= 0)
    assert amap.shape == (3, 1, SIDE, SIDE)
    assert hasattr(model, "forward_student") == (method == "dskd")


def test_backbone_pyramid_sizes():
    features = ConvBackbone(4)(torch.rand(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in features] == [(4, 14, 14), (8, 7, 7), (16, 4, 4)]
    assert stage_sizes(28) == [14, 7, 4] and stage_sizes(16) == [8, 4, 2]


@pytest.mark.parametrize("kwargs,message", [({"method": "rd2"}, "method must be one of"),
                                            ({"reduce": "median"}, "reduce must be one of"),
                                            ({"width": 0}, "width must be at least 1"),
                                            ({"n_features": 300}, "square one-channel images")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(KDError, match=message):
        FeatureKD(**{"n_features": SIDE * SIDE, **kwargs})


def test_discrepancy_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    a[:, 0] = 1.0  # every position points along channel 0
    same, orthogonal, opposite = a.clone(), torch.zeros_like(a), -a
    orthogonal[:, 1] = 3.0
    assert torch.allclose(discrepancy([a], [same], 4), torch.zeros(1, 1, 4, 4))
    assert torch.allclose(discrepancy([a], [orthogonal], 4), torch.ones(1, 1, 4, 4))
    assert torch.allclose(discrepancy([a, a], [opposite, same], 4), torch.full((1, 1, 4, 4), 2.0))


def test_smoothing_keeps_a_flat_map_and_spreads_a_peak(monkeypatch):
    import kdcompress.teachers.feature_kd as fk
    k = gaussian_kernel(1.0)
    assert abs(float(k.sum()) - 1) < 1e-6 and k.shape[-1] % 2 == 1
    model = FeatureKD(SIDE * SIDE, method="rd", width=4).eval()
    raw = {"map": torch.full((1, 1, SIDE, SIDE), 0.3)}
    monkeypatch.setattr(fk, "discrepancy", lambda a, b, side: raw["map"])
    with torch.no_grad():
        flat = model.anomaly_map(torch.rand(1, SIDE * SIDE))
        assert torch.allclose(flat, raw["map"], atol=1e-6)  # replicate padding: no dark border
        raw["map"] = torch.zeros(1, 1, SIDE, SIDE)
        raw["map"][..., 7, 7] = 1.0
        peak = model.anomaly_map(torch.rand(1, SIDE * SIDE))
    assert 0.05 < float(peak.max()) < 1.0 and abs(float(peak.sum()) - 1) < 1e-5
    assert float(model(torch.rand(1, SIDE * SIDE))) == pytest.approx(float(peak.max()))  # reduce "max"


def test_wrong_row_width_is_named():
    with pytest.raises(KDError, match="takes rows of 256 values"):
        FeatureKD(SIDE * SIDE, method="rd", width=2)(torch.rand(3, 512))


# ---------------------------------------------------------------- losses

def test_cosine_losses_by_hand():
    a = torch.zeros(2, 2, 1, 2)
    a[:, 0] = 1.0
    b = a.clone()
    b[1, :, 0, 1] = torch.tensor([0.0, 1.0])  # second image: one of two positions orthogonal
    assert float(rv.pixel_cosine_loss([a], [a])) == pytest.approx(0, abs=1e-6)
    assert float(rv.pixel_cosine_loss([a], [b])) == pytest.approx(1 / 4)
    # image-wide: image 2 flattened (channel-major) is (1, 1, 0, 0) against (1, 0, 0, 1): cos 1/2; mean of 0 and 1/2
    assert float(rv.image_cosine_loss([a], [b])) == pytest.approx(1 / 4)
    assert float(rv.image_cosine_loss([a, a], [b, a])) == pytest.approx(1 / 4)  # summed over scales
    mask = torch.zeros(2, 1, 1, 2)
    mask[1, 0, 0, 1] = 1.0  # the mask marks exactly where the features differ: no loss
    assert float(rv.mask_loss([b], [a], mask)) == pytest.approx(0, abs=1e-6)
    assert float(rv.mask_loss([a], [a], mask)) == pytest.approx(1 / 4)


# ---------------------------------------------------------------- synthetic anomalies

def test_synthetic_anomalies_paste_only_inside_the_mask():
    images = _images(20, 3).reshape(-1, SIDE, SIDE)
    aug, masks = rv.synthetic_anomalies(images, np.random.default_rng(5))
    again, masks_again = rv.synthetic_anomalies(images, np.random.default_rng(5))
    other, _ = rv.synthetic_anomalies(images, np.random.default_rng(6))
    assert aug.shape == masks.shape == images.shape and aug.dtype == np.float32
    assert np.array_equal(aug, again) and np.array_equal(masks, masks_again) and not np.array_equal(aug, other)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    covered = masks.reshape(len(masks), -1).mean(axis=1)
    assert np.all(covered > 0.03) and np.all(covered < 0.3)
    assert np.array_equal(aug[masks == 0], images[masks == 0])
    assert not np.allclose(aug[masks == 1], images[masks == 1])
    assert aug.min() >= 0 and aug.max() <= 1
    assert np.array_equal(images, _images(20, 3).reshape(-1, SIDE, SIDE))  # input untouched


# ---------------------------------------------------------------- training

def test_rd_and_dskd_keep_the_teacher_fixed():
    backbone = _backbone()
    for method in ("rd", "dskd"):
        torch.manual_seed(0)
        model = rv.detector(SIDE * SIDE, method, backbone)
        encoder, decoder = state(model.encoder), _weights(model.decoder)
        (rv.train_rd if method == "rd" else train_dskd)(model, _images(32, 0), _images(8, 1), 1, 16, 5e-3,
                                                        np.random.default_rng(0), quiet=True)
        assert same(encoder, state(model.encoder)), method  # weights and batch-norm statistics
        assert same(state(backbone), state(model.encoder)), method
        assert not same(decoder, _weights(model.decoder)), method
        assert not model.encoder.training, method  # left in eval mode, so later passes keep its statistics


@pytest.mark.parametrize("method", ["rd", "urd", "dskd"])
def test_a_last_batch_of_one_image_trains(method):
    """17 images in batches of 16 at side 16 (1x1 bottleneck): the single image joins the batch before."""
    torch.manual_seed(0)
    backbone = rv.pretrain_backbone(_images(17, 7), 2, 1, 16, 1e-3, np.random.default_rng(0), quiet=True)["backbone"]
    model = rv.detector(SIDE * SIDE, method, backbone)
    x, val, rng = _images(17, 0), _images(5, 1), np.random.default_rng(0)
    if method == "urd":
        history = rv.train_urd(model, backbone, x, val, 1, 16, 1e-3, 1e-4, rng, quiet=True)
    else:
        history = (rv.train_rd if method == "rd" else train_dskd)(model, x, val, 1, 16, 1e-3, rng, quiet=True)
    assert np.isfinite(history["val score"][0])
    assert [len(b) for b in rv.batches(17, 16, np.random.default_rng(0))] == [17]
    assert [len(b) for b in rv.batches(33, 16, np.random.default_rng(0))] == [16, 17]
    assert [len(b) for b in rv.batches(34, 16, np.random.default_rng(0))] == [16, 16, 2]


def test_urd_trains_the_teacher_and_leaves_the_expert_alone():
    backbone = _backbone()
    expert = state(backbone)
    torch.manual_seed(0)
    model = rv.detector(SIDE * SIDE, "urd", backbone)
    history = rv.train_urd(model, backbone, _images(32, 0), _images(8, 1), 2, 16, 5e-3, 1e-3,
                           np.random.default_rng(0), quiet=True)
    assert same(expert, state(backbone))
    assert not same(_weights(backbone), _weights(model.encoder))
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen again after training
    assert set(history) == {"teacher loss", "student loss", "val score"} and len(history["val score"]) == 2


def test_training_is_reproducible_by_seed():
    backbone = _backbone()
    a, b, c = _train("dskd", backbone, 1, seed=3), _train("dskd", backbone, 1, seed=3), _train("dskd", backbone, 1,
                                                                                                seed=4)
    assert same(state(a), state(b)) and not same(state(a), state(c))


def test_backbone_pretraining_is_reproducible_and_learns_rotations():
    from kdcompress.data.mnist import load_mnist_folder, to_features
    images = to_features(load_mnist_folder(None).test[0][:600])
    runs = [rv.pretrain_backbone(images, 4, 3, 64, 3e-3, np.random.default_rng(0), quiet=True)
            for _ in range(2) if torch.manual_seed(0) is not None]
    assert same(state(runs[0]["backbone"]), state(runs[1]["backbone"]))
    assert runs[0]["history"]["accuracy"][-1] > 0.6  # chance is 0.25


@pytest.mark.parametrize("method", ["rd", "urd", "dskd"])
def test_trained_detectors_rank_anomalies_higher(method):
    from kdcompress.bench.metrics import auroc
    model = _train(method, _backbone(), epochs=4)
    normal, anomalous = rv.scores(model, _images(40, 11)), rv.scores(model, _images(40, 12, anomalous=True))
    assert auroc(normal, anomalous) > 0.9


def test_check_images_names_the_problem():
    bad = _images(4, 0)
    bad[1, 3] = np.nan
    with pytest.raises(KDError, match="NaN"):
        rv.check_images(bad, "training images")
    with pytest.raises(KDError, match="at least 2 images"):
        rv.check_images(np.zeros((1, 256)), "training images")
    with pytest.raises(KDError, match="have 256 features per image, the model takes 784"):
        rv.check_images(_images(4, 0), "validation images", 784)
    with pytest.raises(KDError, match="square"):
        rv.check_images(np.zeros((3, 300)), "training images")
    with pytest.raises(KDError, match="trains method 'rd'"):
        rv.train_rd(FeatureKD(256, method="dskd", width=2), _images(4, 0), _images(4, 1), 1, 4, 1e-3,
                    np.random.default_rng(0), quiet=True)


# ---------------------------------------------------------------- backbone files and checkpoints

def test_backbone_file_round_trip_and_refusals(tmp_path):
    backbone = _backbone()
    digest = rv.save_backbone(backbone, tmp_path / "bb.pt")
    loaded = rv.load_backbone(tmp_path / "bb.pt", 4, sha256=digest.upper())
    assert same(state(backbone), state(loaded["backbone"])) and loaded["sha256"] == digest
    with pytest.raises(KDError, match="does not match"):
        rv.load_backbone(tmp_path / "bb.pt", 4, sha256="0" * 64)
    with pytest.raises(KDError, match="does not fit a width-8"):
        rv.load_backbone(tmp_path / "bb.pt", 8)
    with pytest.raises(KDError, match="not found"):
        rv.load_backbone(tmp_path / "missing.pt", 4)
    torch.save(backbone, tmp_path / "pickled.pt")  # a whole pickled module, not a state_dict
    with pytest.raises(KDError, match="not a plain state_dict"):
        rv.load_backbone(tmp_path / "pickled.pt", 4)
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    with pytest.raises(KDError, match="not a plain state_dict"):
        rv.load_backbone(tmp_path / "corrupt.pt", 4)
    torch.save({0: torch.zeros(2)}, tmp_path / "int_keys.pt")
    with pytest.raises(KDError, match="must hold a state_dict"):
        rv.load_backbone(tmp_path / "int_keys.pt", 4)
    weights = backbone.state_dict()
    weights["stem.0.0.weight"] = weights["stem.0.0.weight"] * float("nan")
    torch.save(weights, tmp_path / "nan.pt")
    with pytest.raises(KDError, match="non-finite values in stem.0.0.weight"):
        rv.load_backbone(tmp_path / "nan.pt", 4)


def test_detector_checkpoint_round_trip(tmp_path):
    from kdcompress.data.preprocess import Preprocessing
    from kdcompress.teachers import Teacher, load_teacher, save_teacher
    model = _train("urd", _backbone(), epochs=1)
    arch = {"name": "feature-kd", "kwargs": {"n_features": SIDE * SIDE, "method": "urd", "width": 4,
                                             "reduce": "max"}}
    save_teacher(Teacher(module=model, score_name="output", preprocessing=Preprocessing.identity(SIDE * SIDE),
                         arch=arch), tmp_path / "urd.pt")
    loaded = load_teacher(tmp_path / "urd.pt")
    x = _images(20, 4)
    assert np.allclose(loaded.score(x), rv.scores(model, x), rtol=1e-6)


# ---------------------------------------------------------------- recipes

def test_recipes_refuse_bad_choices(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    cases = [("digits=[12]", "digits must be distinct"), ("methods=[rd, gan]", "methods must be distinct"),
             ("methods=[]", "methods must be distinct"), ("export=[tflite]", "export must be"),
             ("backbone=/no/such/file.pt", "existing state_dict file"), ("reduce=median", "reduce must be one of"),
             ("backbone_sha256=abc", "backbone_sha256 checks a backbone file"), ("lr=0", "must be numbers > 0"),
             ("epochs=0", "epochs must be at least 1"), ("width=0", "width and batch must be at least 1"),
             ("compare_student=Z", "compare_student must be one of"), ("batch=x", "key 'batch' must be int"),
             ("pretext=jigsaw", "pretext must be one of"), ("side=16", "side resizes an images folder"),
             ("images=/no/such/folder", "missing train/good")]
    for override, message in cases:
        with pytest.raises(KDError, match=message):
            run_recipe(RECIPES["urd-mnist"], ["setting=small", override], out=tmp_path / "bad", quiet=True)
        assert not (tmp_path / "bad" / "split.json").exists(), override  # refused before anything is written


def test_recipe_takes_a_backbone_file_checked_by_sha256(tmp_path):
    from kdcompress.pipelines.feature_kd import _given_backbone
    from kdcompress.pipelines.run import run_recipe
    digest = rv.save_backbone(_backbone(width=4), tmp_path / "bb.pt")
    given = _given_backbone(str(tmp_path / "bb.pt"), 4, digest, quiet=True)
    assert given["sha256"] == digest and given["source"] == "file"
    assert _given_backbone("pool", 4, None, quiet=True) is None
    for override, message in ((f"backbone_sha256={'f' * 64}", "does not match"), ("width=8", "does not fit")):
        with pytest.raises(KDError, match=message):
            run_recipe(RECIPES["dskd-mnist"], ["setting=small", f"backbone={tmp_path / 'bb.pt'}", override],
                       out=tmp_path / "bad", quiet=True)
        assert not (tmp_path / "bad" / "split.json").exists(), override


def test_too_small_images_for_the_comparison_student_are_refused_first(tmp_path):
    from kdcompress.data.images import write_synthetic_image_folder
    from kdcompress.pipelines.run import run_recipe
    from kdcompress.students.paper_cnn import min_side
    assert (min_side("B"), min_side("G")) == (10, 16)
    root = write_synthetic_image_folder(tmp_path / "weave", side=12, n_train=6, n_test=2)
    for override in ("side=12", None):
        args = ["setting=small", f"images={root}", "compare_student=G"] + ([override] if override else [])
        with pytest.raises(KDError, match="compare_student G needs images of side >= 16, got 12"):
            run_recipe(RECIPES["dskd-mnist"], args, out=tmp_path / "bad", quiet=True)
        assert not any((tmp_path / "bad").iterdir())  # refused before anything is written


@pytest.mark.slow
@pytest.mark.parametrize("name", ["urd-mnist", "dskd-mnist"])
def test_small_setting_end_to_end(tmp_path, name):
    from kdcompress.pipelines.run import run_recipe
    from kdcompress.teachers import load_teacher
    out, markdown = run_recipe(RECIPES[name], ["setting=small"], out=tmp_path / "run", quiet=True)
    results = json.loads((out / "results.json").read_text())
    methods = ["rd", "urd"] if name == "urd-mnist" else ["dskd"]
    assert results["setting"] == "small" and results["methods"] == methods
    for m in methods:
        assert set(results["detector"][m]) == {"0"} and 0 <= results["detector"][m]["0"] <= 1
        assert 0 <= results["student"][m]["0"] <= 1 and -1 <= results["student_spearman"][m] <= 1
        onnx = results["exports"]["0"][m]["onnx"]
        assert Path(onnx["path"]).is_file() and onnx["max_rel_diff"] < 1e-3
        assert abs(onnx["auroc"]["other digits"] - results["detector"][m]["0"]) < 1e-3
        teacher = load_teacher(results["checkpoints"]["0"][m])
        assert teacher.arch["kwargs"]["method"] == m and teacher.score_name == "output"
        assert results["macs"][m] > results["student_macs"] > 0
        assert (out / "digit0" / f"student_{m}" / "student.json").is_file()
        assert (out / "digit0" / f"training_{m}.png").stat().st_size > 0
    assert Path(results["backbone"]["path"]).is_file() and len(results["backbone"]["sha256"]) == 64
    assert (out / "auroc.png").stat().st_size > 0 and (out / "results.md").is_file()
    assert "QKeras B" in markdown
    if name == "dskd-mnist":  # the student to ship: bit-exact firmware (its average pools need wider types)
        _student_firmware_is_bit_exact(out / "digit0" / "student_dskd", tmp_path)


def _student_firmware_is_bit_exact(student, tmp_path):
    from kdcompress.data.mnist import ANOMALY_SIGNAL, load_mnist_folder, make_splits, one_class_dataset
    from kdcompress.export import export
    data = one_class_dataset(*(lambda f: (f, make_splits(f, seed=0)))(load_mnist_folder(None)), 0)
    x = np.concatenate([data.train, data.val, data.test, data.signals[ANOMALY_SIGNAL]])
    y = np.r_[np.zeros(len(x) - len(data.signals[ANOMALY_SIGNAL])), np.ones(len(data.signals[ANOMALY_SIGNAL]))]
    np.savez(tmp_path / "digit0.npz", X=x.reshape(-1, 28, 28), y=y)
    (artefact,) = export(student, "fpga", data=tmp_path / "digit0.npz", out=tmp_path / "fpga", quiet=True)[
        "artefacts"]
    assert artefact["agreement"]["bit_exact_fraction"] == 1.0 and artefact["agreement"]["events"] > 100


# ---------------------------------------------------------------- MVTec-layout image folders

def test_image_folder_is_read_in_the_mvtec_layout(tmp_path):
    from kdcompress.data import load_dataset
    from kdcompress.data.images import load_image_folder, write_synthetic_image_folder
    root = write_synthetic_image_folder(tmp_path / "weave", side=20, n_train=30, n_test=6, seed=1)
    data = load_image_folder(root, seed=0)
    assert data.kind == "images" and data.image_shape == (20, 20) and data.n_features == 400
    assert len(data.train) == 27 and len(data.val) == 3 and len(data.test) == 6
    assert sorted(data.signals) == sorted(DEFECTS) and all(len(v) == 6 for v in data.signals.values())
    assert 0 <= data.train.min() and data.train.max() <= 1
    assert not np.array_equal(load_image_folder(root, seed=1).val, data.val)  # the held-out part follows the seed
    assert load_image_folder(root, side=12).n_features == 144
    assert load_dataset(str(root)).fingerprint() == data.fingerprint()  # `kdcompress distill --data FOLDER`
    with pytest.raises(KDError, match="defects must be among"):
        write_synthetic_image_folder(tmp_path / "bad", side=20, n_train=4, n_test=1, defects=("crack",))
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    again = write_synthetic_image_folder(tmp_path / "again", side=20, n_train=30, n_test=6, seed=1)
    assert load_image_folder(again).fingerprint() == data.fingerprint()


def test_image_folder_problems_are_named(tmp_path):
    from PIL import Image
    from kdcompress.data.images import load_image_folder, write_synthetic_image_folder
    with pytest.raises(KDError, match="missing train/good"):
        load_image_folder(tmp_path)
    root = write_synthetic_image_folder(tmp_path / "a", side=16, n_train=4, n_test=2)
    (root / "test" / "spot" / "000.png").write_bytes(b"not a png")
    with pytest.raises(KDError, match="cannot read image .*000.png"):
        load_image_folder(root)
    root = write_synthetic_image_folder(tmp_path / "b", side=16, n_train=4, n_test=2)
    Image.fromarray(np.zeros((16, 24), dtype=np.uint8)).save(root / "test" / "spot" / "000.png")
    with pytest.raises(KDError, match="differ in size"):
        load_image_folder(root)
    assert load_image_folder(root, side=16).n_features == 256  # resizing fixes it
    root = write_synthetic_image_folder(tmp_path / "c", side=16, n_train=4, n_test=2)
    for defect in DEFECTS:
        for f in (root / "test" / defect).iterdir():
            f.unlink()
        (root / "test" / defect).rmdir()
    with pytest.raises(KDError, match="no anomaly folders"):
        load_image_folder(root)


def test_masks_are_read_beside_their_images(tmp_path):
    from kdcompress.data.images import load_image_folder, load_image_masks, write_synthetic_image_folder
    root = write_synthetic_image_folder(tmp_path / "weave", side=20, n_train=4, n_test=5, seed=2)
    data, masks = load_image_folder(root), load_image_masks(root)
    assert sorted(masks) == sorted(["good", *DEFECTS]) and not masks["good"].any()
    for defect, painted in (("scratch", 0.95), ("spot", 0.05)):
        assert masks[defect].shape == data.signals[defect].shape and masks[defect].any(axis=1).all()
        inside = data.signals[defect][masks[defect]]  # the painted pixels, exactly where the mask is
        assert np.allclose(inside, round(painted * 255) / 255)
    assert load_image_masks(root, side=10)["spot"].shape == (5, 100)
    (root / "ground_truth" / "spot" / "001_mask.png").rename(root / "ground_truth" / "spot" / "001.png")
    assert np.array_equal(load_image_masks(root)["spot"], masks["spot"])  # <name>.png is accepted too
    shutil.rmtree(root / "ground_truth")
    assert load_image_masks(root) is None  # image-level evaluation only


def test_mask_problems_are_named(tmp_path):
    from PIL import Image
    from kdcompress.data.images import load_image_masks, write_synthetic_image_folder
    root = write_synthetic_image_folder(tmp_path / "a", side=16, n_train=4, n_test=2)
    (root / "ground_truth" / "spot" / "001_mask.png").unlink()
    with pytest.raises(KDError, match="no mask for .*spot/001.png .*expected 001_mask.png"):
        load_image_masks(root)
    root = write_synthetic_image_folder(tmp_path / "b", side=16, n_train=4, n_test=2)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "ground_truth" / "spot" / "000_mask.png")
    with pytest.raises(KDError, match="must match"):
        load_image_masks(root, side=16)
    shutil.rmtree(root / "ground_truth" / "scratch")
    with pytest.raises(KDError, match="no folder for the defect 'scratch'"):
        load_image_masks(root)


def test_anomaly_maps_give_the_scores_and_localise_defects(tmp_path):
    from kdcompress.data.images import load_image_folder, load_image_masks, write_synthetic_image_folder
    from kdcompress.pipelines.feature_kd import _localization, _score
    root = write_synthetic_image_folder(tmp_path / "weave", side=SIDE, n_train=64, n_test=12, seed=0,
                                        defects=("scratch", "spot"))  # the clear ones: a test of the maps
    data = load_image_folder(root)
    data.extra["masks"] = load_image_masks(root)
    torch.manual_seed(0)
    backbone = rv.pretrain_backbone(data.train, 8, 5, 32, 3e-3, np.random.default_rng(0), quiet=True,
                                    pretext="inpaint")["backbone"]
    model = rv.detector(data.n_features, "rd", backbone)
    rv.train_rd(model, data.train, data.val, 8, 16, 5e-3, np.random.default_rng(0), quiet=True)
    normal, scored, local = _score(model.eval(), data, tmp_path / "maps.png", "weave: RD4AD")
    assert np.allclose(normal, rv.scores(model, data.test), rtol=1e-6)  # the largest map value is the score
    assert np.allclose(scored["spot"], rv.scores(model, data.signals["spot"]), rtol=1e-6)
    assert rv.anomaly_maps(model, data.test[:3]).shape == (3, SIDE, SIDE)
    assert set(local["per_signal"]) == {"scratch", "spot"} and (tmp_path / "maps.png").stat().st_size > 0
    # the maps point at the defects: against masks flipped left-right (wrong places) they score lower
    maps = {"good": rv.anomaly_maps(model, data.test)}
    maps.update({k: rv.anomaly_maps(model, v) for k, v in data.signals.items()})
    flipped = {k: m.reshape(-1, SIDE, SIDE)[:, ::-1].reshape(len(m), -1) for k, m in data.extra["masks"].items()}
    elsewhere = _localization(maps, flipped)
    assert local["pixel_auroc"] > 0.7 and local["pixel_auroc"] > elsewhere["pixel_auroc"] + 0.05
    assert local["pro"] > elsewhere["pro"] + 0.05
    logical = _localization(maps, {**data.extra["masks"], "spot": np.zeros_like(data.extra["masks"]["spot"])})
    assert logical["per_signal"]["spot"] == {"pixel_auroc": None, "pro": None}  # no defect pixel: not scored
    assert logical["pixel_auroc"] is not None and logical["per_signal"]["scratch"] == local["per_signal"]["scratch"]
    data.extra.pop("masks")
    assert _score(model, data, tmp_path / "none.png", "x")[2] is None and not (tmp_path / "none.png").exists()


def test_inpainting_pretext_learns_and_a_bad_pretext_is_named():
    torch.manual_seed(0)
    trained = rv.pretrain_backbone(_images(128, 2), 4, 4, 32, 3e-3, np.random.default_rng(0), quiet=True,
                                   pretext="inpaint")
    loss = trained["history"]["loss"]
    assert trained["pretext"] == "inpaint" and loss[-1] < 0.5 * loss[0]
    with pytest.raises(KDError, match="pretext must be one of"):
        rv.pretrain_backbone(_images(8, 2), 4, 1, 4, 1e-3, np.random.default_rng(0), quiet=True, pretext="jigsaw")


@pytest.mark.slow
def test_pipeline_on_an_image_folder(tmp_path):
    from kdcompress.data.images import write_synthetic_image_folder
    from kdcompress.pipelines.run import run_recipe
    root = write_synthetic_image_folder(tmp_path / "weave", side=16, n_train=60, n_test=10, seed=0)
    out, markdown = run_recipe(RECIPES["dskd-mnist"], ["setting=small", f"images={root}", "pretext=inpaint",
                                                       "methods=[rd, dskd]"], out=tmp_path / "run", quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert set(results["detector"]["rd"]) == {"weave"} and results["backbone"]["pretext"] == "inpaint"
    assert set(results["detector_per_signal"]["dskd"]["weave"]) == set(DEFECTS)
    assert (out / "weave" / "dskd.pt").is_file() and (out / "weave" / "student_rd" / "student.json").is_file()
    assert results["student_macs"] > 0 and "AUROC per anomaly class" in markdown
    local = results["localization"]["dskd"]["weave"]  # the synthetic folder has masks
    assert 0 <= local["pixel_auroc"] <= 1 and set(local["per_signal"]) == set(DEFECTS)
    assert "pixel AUROC" in markdown and (out / "weave" / "maps_rd.png").stat().st_size > 0
    assert not (out / "outliers.npz").exists()  # 28x28 outlier shapes are not used for 16x16 images


def test_an_mnist_folder_as_distillation_data_says_what_to_pass():
    from kdcompress.data import load_dataset
    from kdcompress.data.mnist import default_folder
    with pytest.raises(KDError, match="holds MNIST idx files.*pass an .npz with X"):
        load_dataset(str(default_folder()))


def test_a_saved_backbone_has_the_same_hash_every_time(tmp_path):
    backbone = _backbone()
    first = rv.save_backbone(backbone, tmp_path / "a.pt")
    assert rv.save_backbone(backbone, tmp_path / "b.pt") == first == rv.save_backbone(backbone, tmp_path / "a.pt")
    from kdcompress.fileio import sha256_file
    assert sha256_file(tmp_path / "a.pt") == first
