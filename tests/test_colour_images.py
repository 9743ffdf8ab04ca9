"""Colour images: MVTec-layout folders and .npz tables read with their channels, and every image path
(queries, feature-level detectors, CNN students, exports) taking rows flattened channels last."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcompress.errors import KDError

REPO = Path(__file__).resolve().parents[1]
RECIPES = {name: REPO / "recipes" / f"{name}.yaml" for name in ("urd-mnist", "dskd-mnist")}


def _folders(tmp_path, side=16, n_train=12, n_test=3):
    from kdcompress.data.images import write_synthetic_image_folder
    colour = write_synthetic_image_folder(tmp_path / "cloth", side=side, n_train=n_train, n_test=n_test, color=True)
    grey = write_synthetic_image_folder(tmp_path / "weave", side=side, n_train=n_train, n_test=n_test)
    return colour, grey


def test_a_colour_folder_keeps_its_channels_and_a_grey_one_stays_grey(tmp_path):
    from PIL import Image
    from kdcompress.data import load_dataset
    from kdcompress.data.images import COLOUR_DEFECTS, load_image_folder
    colour, grey = _folders(tmp_path)
    data = load_image_folder(colour)
    assert data.channels == 3 and data.pixel_shape == (16, 16, 3) and data.n_features == 768
    assert sorted(data.signals) == sorted(COLOUR_DEFECTS)
    assert data.feature_names[:4] == ["px0_0_r", "px0_0_g", "px0_0_b", "px0_1_r"]
    assert "16x16x3 images" in data.describe()
    first = np.asarray(Image.open(sorted((colour / "test" / "good").iterdir())[0]), dtype=np.float32) / 255
    assert np.array_equal(data.test[0], first.ravel())  # row = (height, width, channel), channels last
    assert load_dataset(str(colour)).fingerprint() == data.fingerprint()  # `kdcompress distill --data FOLDER`
    as_grey = load_image_folder(colour, color=False)
    assert as_grey.channels == 1 and as_grey.n_features == 256
    grey_first = np.asarray(Image.open(sorted((colour / "test" / "good").iterdir())[0]).convert("L")) / 255
    assert np.allclose(as_grey.test[0], grey_first.ravel())
    plain = load_image_folder(grey)
    assert plain.channels == 1 and plain.pixel_shape == (16, 16, 1) and plain.feature_names[0] == "px0_0"
    assert load_image_folder(grey, color=False).fingerprint() == plain.fingerprint()
    forced = load_image_folder(grey, color=True)  # grey files read as RGB: three equal channels
    assert forced.channels == 3 and np.array_equal(forced.train[:, 0::3], plain.train)
    assert np.array_equal(forced.train[:, 1::3], plain.train)
    with pytest.raises(KDError, match="color must be true, false or null"):
        load_image_folder(grey, color="yes")


def test_a_grey_image_saved_as_rgb_is_read_as_grey(tmp_path):
    from PIL import Image
    from kdcompress.data.images import load_image_folder
    _, grey = _folders(tmp_path)
    for f in (grey / "train" / "good").iterdir():
        Image.open(f).convert("RGB").save(f)
    assert load_image_folder(grey).channels == 1  # R = G = B everywhere: no colour to keep


def test_tint_changes_the_hue_at_the_same_grey_level():
    from PIL import Image
    from kdcompress.data import images
    rng = np.random.default_rng(0)

    def grey(a):
        return np.asarray(Image.fromarray(np.round(a * 255).astype(np.uint8), mode="RGB").convert("L")) / 255.0

    for _ in range(20):
        base = images._coloured(images._surface(rng, 24))
        tinted, mask = images._tint(rng, base)
        assert mask.any() and np.abs(tinted - base)[mask].max() > 0.05  # seen in colour
        assert np.abs(grey(tinted) - grey(base)).max() <= 1.5 / 255  # lost in grey (8-bit rounding only)
    with pytest.raises(KDError, match="'tint' needs color"):
        images.write_synthetic_image_folder("/nonexistent/x", side=16, n_train=2, n_test=1, defects=("tint",))


@pytest.mark.parametrize("stored", ["channels-last", "channels-first"])
def test_npz_colour_images_are_flattened_channels_last(tmp_path, stored):
    from kdcompress.data import load_dataset
    images = np.random.default_rng(0).random((40, 5, 4, 3)).astype(np.float32)
    x = images if stored == "channels-last" else np.moveaxis(images, 3, 1)
    np.savez(tmp_path / "img.npz", X=x, y=np.r_[np.zeros(30), np.ones(10)])
    data = load_dataset(tmp_path / "img.npz")
    assert data.image_shape == (5, 4) and data.channels == 3 and data.n_features == 60
    assert data.feature_names[:4] == ["px0_0_r", "px0_0_g", "px0_0_b", "px0_1_r"]
    assert np.array_equal(data.signals["anomaly"], images[30:].reshape(10, 60))
    assert "5x4x3 images" in data.describe()
    np.savez(tmp_path / "bad.npz", X=np.zeros((40, 2, 3, 2)))
    with pytest.raises(KDError, match="images must have 1 or 3 channels .* found shape \\(40, 2, 3, 2\\)"):
        load_dataset(tmp_path / "bad.npz")



def test_npz_image_layouts_that_could_be_read_two_ways(tmp_path):
    from kdcompress.data import load_dataset
    y = np.r_[np.zeros(30), np.ones(10)]
    grey = np.random.default_rng(0).random((40, 1, 5, 3))  # PyTorch layout, grey, 3 pixels wide
    np.savez(tmp_path / "g.npz", X=grey, y=y)
    data = load_dataset(tmp_path / "g.npz")
    assert data.channels == 1 and data.image_shape == (5, 3)
    np.savez(tmp_path / "k.npz", X=grey.reshape(40, 5, 3, 1), y=y)  # Keras layout, the same images
    assert load_dataset(tmp_path / "k.npz").fingerprint() == data.fingerprint()
    np.savez(tmp_path / "amb.npz", X=np.zeros((40, 3, 5, 3)), y=y)
    with pytest.raises(KDError, match="could hold their 3 channels first or last"):
        load_dataset(tmp_path / "amb.npz")


def _cloth_rows(n=30, side=8, seed=0):
    """Images whose channels are fixed multiples of one grey pattern: (n, side*side*3) rows and the pattern."""
    pattern = np.random.default_rng(seed).random((n, side, side))
    return (pattern[..., None] * np.array([0.2, 0.5, 0.9])).reshape(n, -1), pattern


def test_flips_of_colour_images_move_pixels_not_channels():
    from kdcompress.distill.queries import flips
    x, pattern = _cloth_rows()
    q, template = flips(x, 50, np.random.default_rng(1), image_shape=(8, 8, 3))
    assert q.shape == (50, 192) and template.shape == (50, 192)
    images = q.reshape(50, 8, 8, 3)
    assert np.allclose(images[..., 1] / 0.5, images[..., 0] / 0.2)  # each pixel keeps its colour
    sources = template.reshape(50, 8, 8, 3)[..., 0]
    assert all(np.allclose(np.sort(a.ravel()), np.sort(b.ravel())) for a, b in zip(images[..., 0], sources))
    assert not np.allclose(images[..., 0], sources)  # but the pixels moved


def test_patches_on_colour_images_are_local_and_in_range():
    from kdcompress.distill.queries import patches
    x, _ = _cloth_rows()
    q, template = patches(x, 40, np.random.default_rng(2), image_shape=(8, 8, 3))
    assert q.shape == (40, 192) and np.isfinite(q).all() and x.min() - 1e-6 <= q.min() and q.max() <= x.max() + 1e-6
    changed = np.abs(q - template).reshape(40, 64, 3).max(axis=2) > 1e-6
    assert changed.any(axis=1).all() and (~changed).any(axis=1).all()  # local: some pixels changed, some kept


def test_detector_rows_are_read_channels_last():
    from kdcompress.teachers.feature_kd import FeatureKD, image_side, rows_to_images
    rows = torch.arange(2 * 8 * 8 * 3, dtype=torch.float32).reshape(2, -1)
    images = rows_to_images(rows, 8, 3)
    assert images.shape == (2, 3, 8, 8)
    assert images[1, 2, 3, 5] == rows[1, (3 * 8 + 5) * 3 + 2]
    assert torch.equal(rows_to_images(rows[:, :64], 8, 1), rows[:, :64].reshape(2, 1, 8, 8))
    assert image_side(768, 3) == 16
    with pytest.raises(KDError, match="square one-channel images"):
        image_side(768)
    with pytest.raises(KDError, match="grey \\(1\\) or colour \\(3\\)"):
        image_side(512, 2)
    model = FeatureKD(768, method="urd", width=2, channels=3).eval()
    assert model.anomaly_map(torch.rand(4, 768)).shape == (4, 1, 16, 16) and model(torch.rand(4, 768)).shape == (4,)
    with pytest.raises(KDError, match="rows of 768 values"):
        model(torch.rand(4, 256))


@pytest.mark.parametrize("method", ["rd", "urd", "dskd"])
def test_every_detector_trains_on_colour_rows(method):
    from kdcompress.distill import reverse as rv
    from kdcompress.distill.dual_student import train_dskd
    from kdcompress.teachers.feature_kd import ConvBackbone
    x, _ = _cloth_rows(n=12, side=8)
    x = x.astype(np.float32)
    torch.manual_seed(0)
    expert = ConvBackbone(2, channels=3).eval()
    model = rv.detector(x.shape[1], method, expert)
    assert model.channels == 3 and model.encoder.channels == 3
    rng = np.random.default_rng(0)
    common = dict(x=x[:8], val=x[8:], epochs=1, batch=4, lr=1e-3, rng=rng, quiet=True)
    if method == "rd":
        history = rv.train_rd(model, **common)
    elif method == "urd":
        history = rv.train_urd(model, expert, teacher_lr=1e-4, **common)
    else:
        history = train_dskd(model, **common)
    assert all(np.isfinite(v).all() for v in history.values())
    maps = rv.anomaly_maps(model, x)
    assert maps.shape == (12, 8, 8) and np.isfinite(maps).all()
    with pytest.raises(KDError, match="have 64 features per image, the model takes 192"):
        rv.check_images(x[:8, :64], "training images", model.n_features, model.channels)


def test_a_grey_backbone_file_does_not_fit_colour_images(tmp_path):
    from kdcompress.distill import reverse as rv
    from kdcompress.teachers.feature_kd import ConvBackbone
    rv.save_backbone(ConvBackbone(4), tmp_path / "bb.pt")
    assert rv.load_backbone(tmp_path / "bb.pt", 4)["backbone"].channels == 1
    with pytest.raises(KDError, match="does not fit a width-4 ConvBackbone for colour images"):
        rv.load_backbone(tmp_path / "bb.pt", 4, channels=3)


def test_urd_synthetic_anomalies_paste_colour_patches():
    from kdcompress.distill.reverse import synthetic_anomalies
    x, _ = _cloth_rows(n=6, side=16)
    images = x.reshape(6, 16, 16, 3).astype(np.float32)
    aug, masks = synthetic_anomalies(images, np.random.default_rng(0))
    assert aug.shape == images.shape and masks.shape == (6, 16, 16)
    outside = masks[..., None].repeat(3, axis=3) == 0
    assert np.allclose(aug[outside], images[outside]) and not np.allclose(aug, images)


def test_distill_on_a_colour_folder_gives_the_cnn_student_three_channels(tmp_path):
    from kdcompress.api import distill, train_teacher
    from kdcompress.students import load_student
    colour, _ = _folders(tmp_path, side=12, n_train=40, n_test=4)
    train_teacher(colour, tmp_path / "t.pt", hidden=[16], latent=4, epochs=2, seed=0, quiet=True)
    result = distill(tmp_path / "t.pt", colour, tmp_path / "s", student="cnn", hidden=[4], epochs=1, seed=0,
                     quiet=True, min_queries=100)
    meta = json.loads((tmp_path / "s" / "student.json").read_text())
    assert meta["channels"] == 3 and meta["config"]["student_kwargs"]["input_shape"] == [12, 12, 3]
    assert meta["config"]["queries"] == {"pixel-noise": 1.0, "patches": 1.0} and "tint" in result["student"]
    student = load_student(tmp_path / "s")
    assert student.model.get_layer("image").output_shape[1:] == (12, 12, 3)


def test_a_teacher_trained_on_the_grey_reading_is_followed_by_distill_and_export(tmp_path):
    from kdcompress.api import distill
    from kdcompress.cli import main
    from kdcompress.export import export
    colour, _ = _folders(tmp_path, side=12, n_train=40, n_test=4)
    assert main(["train-teacher", "--data", str(colour), "--color", "no", "--hidden", "16", "--latent", "4",
                 "--epochs", "2", "--out", str(tmp_path / "t.pt"), "--quiet"]) == 0
    distill(tmp_path / "t.pt", colour, tmp_path / "s", hidden=[4], epochs=1, seed=0, quiet=True, min_queries=100)
    assert json.loads((tmp_path / "s" / "student.json").read_text())["n_features"] == 144
    (artefact,) = export(tmp_path / "s", ["onnx"], data=colour, out=tmp_path / "e", quiet=True)["artefacts"]
    assert artefact["agreement"]["max_abs_diff"] == 0 and artefact["agreement"]["events"] == 24


def test_color_is_refused_where_it_means_nothing(tmp_path):
    from kdcompress.cli import main
    from kdcompress.pipelines.run import run_recipe
    with pytest.raises(KDError, match="MNIST images are grey"):
        run_recipe(RECIPES["urd-mnist"], ["setting=small", "color=true"], out=tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    assert main(["data", "synth", "adc2021", "--color", "--events", "10", "--out", str(tmp_path / "a")]) != 0
    assert not (tmp_path / "a").exists()
    np.savez(tmp_path / "t.npz", X=np.random.default_rng(0).random((50, 4)))
    assert main(["train-teacher", "--data", str(tmp_path / "t.npz"), "--color", "yes", "--epochs", "1",
                 "--out", str(tmp_path / "t.pt"), "--quiet"]) != 0
    assert not (tmp_path / "t.pt").exists()


@pytest.mark.slow
def test_colour_folder_end_to_end_with_bit_exact_student_firmware(tmp_path):
    from kdcompress.cli import main
    from kdcompress.export import export
    from kdcompress.pipelines.run import run_recipe
    from kdcompress.teachers import load_teacher
    assert main(["data", "synth", "images", "--color", "--side", "16", "--events", "40", "--signal-events", "6",
                 "--seed", "0", "--out", str(tmp_path / "cloth")]) == 0
    out, markdown = run_recipe(RECIPES["dskd-mnist"], ["setting=small", f"images={tmp_path / 'cloth'}",
                                                       "pretext=inpaint"], out=tmp_path / "run", quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["channels"] == 3
    checkpoint = results["checkpoints"]["cloth"]["dskd"]
    assert load_teacher(checkpoint).arch["kwargs"]["channels"] == 3
    assert results["exports"]["cloth"]["dskd"]["onnx"]["max_rel_diff"] < 1e-3
    assert "tint" in results["localization"]["dskd"]["cloth"]["per_signal"]
    assert (out / "cloth" / "maps_dskd.png").stat().st_size > 0
    student = out / "cloth" / "student_dskd"
    (artefact,) = export(student, "fpga", data=tmp_path / "cloth", out=tmp_path / "fpga", quiet=True)["artefacts"]
    agreement = artefact["agreement"]
    assert agreement["bit_exact_fraction"] == 1.0 and agreement["events"] == 36  # 6 normal + 5 defects x 6


def test_a_folder_is_read_the_way_the_model_was_trained_on_it(tmp_path):
    from kdcompress.data import load_dataset
    colour, grey = _folders(tmp_path)
    assert load_dataset(str(colour)).channels == 3
    assert load_dataset(str(colour), n_features=256).channels == 1  # a student of the grey reading
    assert load_dataset(str(grey), n_features=768).channels == 3
    assert load_dataset(str(colour), n_features=999).n_features == 768  # no reading fits: the caller names it
