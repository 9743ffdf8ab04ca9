"""conv-ae teacher on any images: shapes, padding, colour, pixel ranges, old checkpoints, train-teacher CLI."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kdcompress.errors import KDError  # noqa: E402
from kdcompress.teachers.conv_ae import ConvAE, image_preprocessing  # noqa: E402


def _calorimeter_npz(path, n=1200, m=150, seed=0):
    """Seeded 18x14 deposits (sparse exponential ET, not in [0, 1]); anomalies add a hot 3x3 cluster."""
    rng = np.random.default_rng(seed)

    def deposits(k):
        return rng.exponential(2.0, size=(k, 18, 14)) * (rng.random((k, 18, 14)) < 0.3)
    background, signal = deposits(n), deposits(m)
    rows, cols = rng.integers(1, 17, m), rng.integers(1, 13, m)
    for i in range(m):
        signal[i, rows[i] - 1:rows[i] + 2, cols[i] - 1:cols[i] + 2] += rng.uniform(5, 20)
    np.savez(path, X=np.concatenate([background, signal]).astype(np.float32), y=np.r_[np.zeros(n), np.ones(m)])
    return path


@pytest.mark.parametrize("shape", [(18, 14, 1), (16, 16, 3), (5, 7, 2)])
def test_any_image_shape_is_padded_in_and_cropped_out(shape):
    """The encoder sees the image zero-padded on the bottom and right to multiples of 4; the output has the
    input's shape (padding cropped) and is a sigmoid."""
    torch.manual_seed(0)
    h, w, c = shape
    model = ConvAE(h * w * c, image_shape=shape).eval()
    x = torch.rand(4, h * w * c)
    seen = []
    model.encoder[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    (padded,) = seen
    assert padded.shape == (4, c, -(-h // 4) * 4, -(-w // 4) * 4)
    assert torch.equal(padded[:, :, :h, :w], x.reshape(4, h, w, c).permute(0, 3, 1, 2))
    assert float(padded[:, :, h:, :].abs().sum()) == 0 and float(padded[:, :, :, w:].abs().sum()) == 0


def test_channels_last_rows_reach_the_right_channel():
    """Rows are (height, width, channels) flattened: one red value reaches the red input plane only."""
    model = ConvAE(4 * 4 * 3, image_shape=(4, 4, 3))
    seen = []
    model.encoder[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.zeros(1, 48)
    x[0, 3 * 5 + 0] = 1.0  # pixel (1, 1), channel 0
    with torch.no_grad():
        model(x)
    assert float(seen[0][0, 0, 1, 1]) == 1.0 and float(seen[0].sum()) == 1.0
    assert model.encoder[0].in_channels == 3 and model.decoder[-2].out_channels == 3


def test_old_square_grey_checkpoints_load_and_agree():
    """Checkpoints written before image_shape existed (kwargs n_features, latent) build the same module."""
    torch.manual_seed(0)
    old = ConvAE(784, latent=20).eval()
    new = ConvAE(784, latent=20, image_shape=(28, 28, 1)).eval()
    new.load_state_dict(old.state_dict())
    x = torch.rand(3, 784)
    with torch.no_grad():
        assert torch.equal(old(x), new(x))
    with pytest.raises(KDError, match="no square grey image"):
        ConvAE(300)
    with pytest.raises(KDError, match="does not hold 300 features"):
        ConvAE(300, image_shape=(10, 10, 2))


def test_pixel_ranges_map_into_the_sigmoid_range():
    rng = np.random.default_rng(0)
    unit = rng.random((50, 12)).astype(np.float32)
    assert image_preprocessing(unit).shift == [0] * 12 and image_preprocessing(unit).offset == [0.0] * 12
    energies = (unit * 37.0 - 3.0).astype(np.float32)
    prep = image_preprocessing(energies)
    z = prep.apply(energies)
    assert len(set(prep.shift)) == 1 and len(set(prep.offset)) == 1  # one affine map for every pixel
    assert z.min() == 0.0 and 0.5 < z.max() <= 1.0  # power-of-two scale: the range fills at least half of [0, 1]


def test_train_teacher_conv_ae_on_calorimeter_images_finds_hot_clusters(tmp_path):
    from kdcompress.api import train_teacher
    from kdcompress.bench.metrics import auroc
    from kdcompress.data import load_dataset
    path = _calorimeter_npz(tmp_path / "calo.npz")
    a = train_teacher(path, tmp_path / "a.pt", arch="conv-ae", epochs=8, seed=1, quiet=True)
    b = train_teacher(path, tmp_path / "b.pt", arch="conv-ae", epochs=8, seed=1, quiet=True)
    assert a.arch["kwargs"]["image_shape"] == [18, 14, 1] and a.arch["kwargs"]["channels"] == [16, 32]
    assert all(torch.equal(p, q) for p, q in zip(a.module.state_dict().values(), b.module.state_dict().values()))
    assert (tmp_path / "a.loss.png").stat().st_size > 0
    data = load_dataset(str(path))
    assert auroc(a.score(data.test), a.score(data.signals["anomaly"])) > 0.9


def test_conv_ae_refuses_what_it_cannot_take(tmp_path):
    from kdcompress.api import train_teacher
    from kdcompress.cli import main
    np.savez(tmp_path / "table.npz", X=np.random.default_rng(0).random((60, 16)).astype(np.float32))
    with pytest.raises(KDError, match="conv-ae needs images"):
        train_teacher(tmp_path / "table.npz", tmp_path / "t.pt", arch="conv-ae", epochs=1, quiet=True)
    path = _calorimeter_npz(tmp_path / "calo.npz", n=100, m=10)
    with pytest.raises(KDError, match="two numbers"):
        train_teacher(path, tmp_path / "t.pt", arch="conv-ae", hidden=[8, 8, 8], epochs=1, quiet=True)
    assert main(["train-teacher", "--data", str(path), "--arch", "conv-ae", "--score", "mu2", "--epochs", "1",
                 "--out", str(tmp_path / "t.pt"), "--quiet"]) == 2
    assert not (tmp_path / "t.pt").exists()


@pytest.mark.slow
def test_colour_folder_conv_ae_teacher_to_student_and_exports(tmp_path):
    """CLI path on a colour folder: conv-ae teacher -> distilled student -> teacher ONNX and student exports."""
    import json
    from kdcompress.cli import main
    folder, teacher = tmp_path / "cloth", tmp_path / "teacher.pt"
    assert main(["data", "synth", "images", "--color", "--side", "12", "--events", "80", "--signal-events", "10",
                 "--out", str(folder)]) == 0
    assert main(["train-teacher", "--data", str(folder), "--arch", "conv-ae", "--hidden", "8,16", "--latent", "8",
                 "--epochs", "5", "--out", str(teacher), "--quiet"]) == 0
    assert main(["distill", str(teacher), "--data", str(folder), "--student", "cnn", "--hidden", "4",
                 "--epochs", "2", "--out", str(tmp_path / "student"), "--quiet"]) == 0
    assert json.loads((tmp_path / "student" / "student.json").read_text())["channels"] == 3
    assert main(["export", str(teacher), "--target", "onnx", "--out", str(tmp_path / "te"), "--quiet"]) == 0
    teacher_onnx = json.loads((tmp_path / "te" / "manifest.json").read_text())["artefacts"][0]
    assert teacher_onnx["agreement"]["max_abs_diff"] <= 1e-5 and teacher_onnx["agreement"]["events"] == 60
    assert main(["export", str(tmp_path / "student"), "--target", "onnx", "--out", str(tmp_path / "se"),
                 "--quiet"]) == 0
