"""Feature-level detectors (RD4AD, URD, DSKD): modules, losses, synthetic anomalies, training, backbone files,
checkpoints and the recipes end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcompress import KDError
from kdcompress.distill import reverse as rv
from kdcompress.distill.dual_student import train_dskd
from kdcompress.teachers.feature_kd import (FeatureKD, ConvBackbone, discrepancy, gaussian_kernel, stage_sizes)

REPO = Path(__file__).resolve().parents[1]
RECIPES = {name: REPO / "recipes" / f"{name}.yaml" for name in ("urd-mnist", "dskd-mnist")}
SIDE = 16


def _images(count: int, seed: int, anomalous: bool = False) -> np.ndarray:
    """Seeded 16x16 images in [0, 1]: a bright vertical bar (normal) or a horizontal bar (anomalous)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, size=(count, SIDE, SIDE)).astype(np.float32)
    for i, pos in enumerate(rng.integers(3, SIDE - 5, size=count)):
        if anomalous:
            x[i, pos:pos + 2, 2:-2] = 1.0
        else:
            x[i, 2:-2, pos:pos + 2] = 1.0
    return x.reshape(count, -1)


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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


def test_smoothing_keeps_a_flat_map_and_spreads_a_peak():
    k = gaussian_kernel(1.0)
    assert abs(float(k.sum()) - 1) < 1e-6 and k.shape[-1] % 2 == 1
    model = FeatureKD(SIDE * SIDE, method="rd", width=4)
    model.reduce = "max"
    peak = torch.zeros(1, 1, 9, 9)
    peak[..., 4, 4] = 1.0
    spread = torch.nn.functional.conv2d(peak, k, padding=k.shape[-1] // 2)
    assert float(spread.max()) < 1.0 and abs(float(spread.sum()) - 1) < 1e-6


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
        encoder, decoder = _state(model.encoder), _state(model.decoder)
        (rv.train_rd if method == "rd" else train_dskd)(model, _images(32, 0), _images(8, 1), 1, 16, 5e-3,
                                                        np.random.default_rng(0), quiet=True)
        assert _same(encoder, _state(model.encoder)), method  # weights and batch-norm statistics
        assert _same(_state(backbone), _state(model.encoder)), method
        assert not _same(decoder, _state(model.decoder)), method


def test_urd_trains_the_teacher_and_leaves_the_expert_alone():
    backbone = _backbone()
    expert = _state(backbone)
    torch.manual_seed(0)
    model = rv.detector(SIDE * SIDE, "urd", backbone)
    history = rv.train_urd(model, backbone, _images(32, 0), _images(8, 1), 2, 16, 5e-3, 1e-3,
                           np.random.default_rng(0), quiet=True)
    assert _same(expert, _state(backbone))
    assert not _same(expert, _state(model.encoder))
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen again after training
    assert set(history) == {"teacher loss", "student loss", "val score"} and len(history["val score"]) == 2


def test_training_is_reproducible_by_seed():
    backbone = _backbone()
    a, b, c = _train("dskd", backbone, 1, seed=3), _train("dskd", backbone, 1, seed=3), _train("dskd", backbone, 1,
                                                                                                seed=4)
    assert _same(_state(a), _state(b)) and not _same(_state(a), _state(c))


def test_backbone_pretraining_is_reproducible_and_learns_rotations():
    from kdcompress.data.mnist import load_mnist_folder, to_features
    images = to_features(load_mnist_folder(None).test[0][:600])
    runs = [rv.pretrain_backbone(images, 4, 3, 64, 3e-3, np.random.default_rng(0), quiet=True)
            for _ in range(2) if torch.manual_seed(0) is not None]
    assert _same(_state(runs[0]["backbone"]), _state(runs[1]["backbone"]))
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
    with pytest.raises(KDError, match="non-empty"):
        rv.check_images(np.zeros((0, 256)), "training images")
    with pytest.raises(KDError, match="square"):
        rv.check_images(np.zeros((3, 300)), "training images")
    with pytest.raises(KDError, match="trains method 'rd'"):
        rv.train_rd(FeatureKD(256, method="dskd", width=2), _images(4, 0), _images(4, 1), 1, 4, 1e-3,
                    np.random.default_rng(0), quiet=True)


# ---------------------------------------------------------------- backbone files and checkpoints

def test_backbone_file_round_trip_and_refusals(tmp_path):
    backbone = _backbone()
    digest = rv.save_backbone(backbone, tmp_path / "bb.pt")
    loaded = rv.load_backbone(tmp_path / "bb.pt", 4, sha256=digest)
    assert _same(_state(backbone), _state(loaded))
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
             ("compare_student=Z", "compare_student must be one of"), ("batch=x", "key 'batch' must be int")]
    for override, message in cases:
        with pytest.raises(KDError, match=message):
            run_recipe(RECIPES["urd-mnist"], ["setting=small", override], out=tmp_path / "bad", quiet=True)
        assert not (tmp_path / "bad" / "split.json").exists(), override  # refused before anything is written


def test_recipe_takes_a_backbone_file_checked_by_sha256(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    digest = rv.save_backbone(_backbone(width=4), tmp_path / "bb.pt")
    with pytest.raises(KDError, match="does not match"):
        run_recipe(RECIPES["dskd-mnist"], ["setting=small", f"backbone={tmp_path / 'bb.pt'}",
                                           "backbone_sha256=" + "f" * 64], out=tmp_path / "bad", quiet=True)
    assert digest != "f" * 64


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
        assert abs(onnx["auroc"] - results["detector"][m]["0"]) < 1e-3
        teacher = load_teacher(results["checkpoints"]["0"][m])
        assert teacher.arch["kwargs"]["method"] == m and teacher.score_name == "output"
        assert results["macs"][m] > results["student_macs"] > 0
        assert (out / "digit0" / f"student_{m}" / "student.json").is_file()
        assert (out / "digit0" / f"training_{m}.png").stat().st_size > 0
    assert Path(results["backbone"]["path"]).is_file() and len(results["backbone"]["sha256"]) == 64
    assert (out / "auroc.png").stat().st_size > 0 and (out / "results.md").is_file()
    assert "QKeras B" in markdown
