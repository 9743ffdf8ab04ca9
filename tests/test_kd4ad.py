"""kd4ad-mnist: MNIST idx reader, one-class splits, conv-AE teacher, paper-cnn students, the recipe end to end."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from kdcompress import KDError
from kdcompress.data import mnist

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "kd4ad-mnist.yaml"
LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def real_mnist():
    return mnist.load_mnist_folder()  # ../shared/data/mnist beside the checkout


@pytest.fixture(scope="module")
def real_splits(real_mnist):
    return mnist.make_splits(real_mnist, seed=0)


# ---------------------------------------------------------------- idx files

def test_real_test_file_shapes_and_label_counts(real_mnist):
    images, labels = real_mnist.test
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == LABEL_COUNTS
    assert real_mnist.train is None and real_mnist.protocol == "test-file-split"
    assert mnist.default_folder() == REPO.parent / "shared" / "data" / "mnist"


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    mnist.write_idx(tmp_path / name, images)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    assert np.array_equal(mnist.read_idx(tmp_path / name, ndim=3), images)
    floats = rng.normal(size=(3, 4)).astype(np.float32)
    mnist.write_idx(tmp_path / "f.idx", floats)
    assert np.array_equal(mnist.read_idx(tmp_path / "f.idx"), floats)


def _write_folder(folder: Path, with_train: bool, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    parts = [("t10k", 200)] + ([("train", 500)] if with_train else [])
    for stem, n in parts:
        mnist.write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        mnist.write_idx(folder / f"{stem}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))


def test_full_mnist_folder_uses_train_and_test_files(tmp_path):
    _write_folder(tmp_path, with_train=True)
    files = mnist.load_mnist_folder(tmp_path)
    assert files.protocol == "train-test-files" and len(files.train[0]) == 500
    splits = mnist.make_splits(files, seed=1)
    data = mnist.one_class_dataset(files, splits, 3)
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 20)
    assert len(data.signals[mnist.ANOMALY_SIGNAL]) == 20
    assert data.train.shape[1] == 784 and 0.0 <= data.train.min() and data.train.max() <= 1.0


def _idx_bytes(array: np.ndarray, tmp_path: Path) -> bytes:
    return mnist.write_idx(tmp_path / "ok.idx", array).read_bytes()


def test_bad_idx_files_are_clear_errors(tmp_path):
    raw = _idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8), tmp_path)
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(KDError, match="bad magic number"):
        mnist.read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(KDError, match="truncated"):
        mnist.read_idx(tmp_path / "short")
    (tmp_path / "header").write_bytes(raw[:9])
    with pytest.raises(KDError, match="truncated: the header"):
        mnist.read_idx(tmp_path / "header")
    (tmp_path / "long").write_bytes(raw + b"\x00")
    with pytest.raises(KDError, match="longer than its header"):
        mnist.read_idx(tmp_path / "long")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(KDError, match="damaged or truncated gzip"):
        mnist.read_idx(tmp_path / "cut.gz")
    with pytest.raises(KDError, match="does not exist"):
        mnist.read_idx(tmp_path / "missing-idx3-ubyte")
    with pytest.raises(KDError, match="expected an idx file with 1 dimension"):
        mnist.read_images_labels(tmp_path / "ok.idx", tmp_path / "ok.idx")


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(KDError, match="does not exist"):
        mnist.load_mnist_folder(tmp_path / "nowhere")
    with pytest.raises(KDError, match="no MNIST test files"):
        mnist.load_mnist_folder(tmp_path)
    _write_folder(tmp_path, with_train=False)
    mnist.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(199, dtype=np.uint8))
    with pytest.raises(KDError, match="200 images but .* 199 labels"):
        mnist.load_mnist_folder(tmp_path)


# ---------------------------------------------------------------- one-class splits

def test_split_is_reproducible_disjoint_and_complete(real_mnist, real_splits):
    labels = real_mnist.test[1]
    again = mnist.make_splits(real_mnist, seed=0)["indices"]
    other = mnist.make_splits(real_mnist, seed=1)["indices"]
    for digit, parts in real_splits["indices"].items():
        assert all(np.array_equal(parts[k], again[digit][k]) for k in parts)
        assert not np.array_equal(parts["train"], other[digit]["train"])
        joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
        assert len(np.unique(joined)) == len(joined) == LABEL_COUNTS[digit]
        assert np.all(labels[joined] == digit)
        assert abs(len(parts["train"]) - 0.6 * LABEL_COUNTS[digit]) <= 1


def test_anomalies_are_other_digits_test_images(real_mnist, real_splits):
    labels = real_mnist.test[1]
    fitted = np.concatenate([p[k] for p in real_splits["indices"].values() for k in ("train", "val")])
    data = mnist.one_class_dataset(real_mnist, real_splits, 7)
    anomalies = data.extra["anomaly_indices"]
    assert len(anomalies) == len(data.test) == len(real_splits["indices"][7]["test"])
    assert np.all(labels[anomalies] != 7) and len(np.unique(labels[anomalies])) == 9
    assert not np.isin(anomalies, fitted).any()
    assert data.n_features == 784 and data.train.dtype == np.float32
    with pytest.raises(KDError, match="digit must be 0-9"):
        mnist.one_class_dataset(real_mnist, real_splits, 10)


# ---------------------------------------------------------------- exposure data

def test_synthetic_outliers_are_seeded_images():
    a, b = mnist.synthetic_outliers(30, seed=4), mnist.synthetic_outliers(30, seed=4)
    assert a.shape == (30, 784) and a.dtype == np.float32 and np.array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0 and np.all(a.max(axis=1) > 0.3)
    assert not np.array_equal(a, mnist.synthetic_outliers(30, seed=5))


def test_pixel_noise_queries_light_constant_pixels(real_mnist, real_splits):
    from kdcompress.distill.queries import make_queries
    x = mnist.one_class_dataset(real_mnist, real_splits, 1).train
    dark = (x == 0).all(axis=0)
    q = make_queries(x, {"pixel-noise": 1.0}, np.random.default_rng(0))
    assert q.shape == x.shape and 0.0 <= q.min() and q.max() <= 1.0
    assert (q[:, dark] > 0).mean() == pytest.approx(0.5, abs=0.05)  # half of N(0, 0.1) survives the clip at 0
    assert np.array_equal(q, make_queries(x, {"pixel-noise": 1.0}, np.random.default_rng(0)))


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("variant", list("ABCDEFG"))
def test_student_parameter_budgets(variant):
    from kdcompress.quant import QuantConfig
    from kdcompress.registry import STUDENTS
    from kdcompress.students.paper_cnn import budget
    model = STUDENTS.get("paper-cnn")(784, quant=QuantConfig(), seed=0, variant=variant)
    assert abs(model.count_params() / budget(variant) - 1) <= 0.15
    assert model.input_shape == (None, 784) and model.output_shape == (None, 1)


def test_student_rejects_unknown_variant():
    from kdcompress.students.paper_cnn import build_paper_cnn
    with pytest.raises(KDError, match="unknown variant 'Z'"):
        build_paper_cnn(784, variant="Z")
    with pytest.raises(KDError, match="does not hold the 57"):
        build_paper_cnn(57, variant="A")


def test_conv_ae_teacher_size_and_round_trip(real_mnist, real_splits, tmp_path):
    import torch
    from kdcompress.teachers import load_teacher
    from kdcompress.teachers.conv_ae import ConvAE, train_conv_ae
    module = ConvAE()
    assert 18_000 <= sum(p.numel() for p in module.parameters()) <= 20_000
    with torch.no_grad():
        out = module(torch.rand(5, 784))
    assert out.shape == (5, 784) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    data = mnist.one_class_dataset(real_mnist, real_splits, 0)
    teacher = train_conv_ae(data, tmp_path / "teacher.pt", epochs=1, seed=0, quiet=True)
    loaded = load_teacher(tmp_path / "teacher.pt")
    assert loaded.arch["name"] == "conv-ae" and loaded.score_name == "mse"
    assert np.array_equal(loaded.score(data.test[:50]), teacher.score(data.test[:50]))


# ---------------------------------------------------------------- the recipe

def test_recipe_validates_and_refuses_bad_choices(tmp_path):
    from kdcompress.config import read_recipe, resolve
    from kdcompress.pipelines.run import run_recipe
    recipe = read_recipe(RECIPE)
    for setting in ("small", "full"):
        assert resolve(recipe, {"setting": setting})[0] == setting
    with pytest.raises(KDError, match="students must be among"):
        run_recipe(RECIPE, ["setting=small", "students=[Z]"], out=tmp_path / "bad", quiet=True)
    with pytest.raises(KDError, match="exposure must be among"):
        run_recipe(RECIPE, ["setting=small", "exposure=[mixup]"], out=tmp_path / "bad", quiet=True)
    with pytest.raises(KDError, match="pool must be one of"):
        run_recipe(RECIPE, ["setting=small", "pool=median"], out=tmp_path / "bad", quiet=True)
    with pytest.raises(KDError, match="key 'digits' must be"):
        run_recipe(RECIPE, ["setting=small", "digits=3"], out=tmp_path / "bad", quiet=True)


@pytest.mark.slow
def test_small_setting_end_to_end(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    out, markdown = run_recipe(RECIPE, ["setting=small"], out=tmp_path / "run", quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "small"
    assert results["paper"] == {"teacher": 0.948, "A": 0.936, "B": 0.935, "C": 0.918, "D": 0.882,
                                "E": 0.869, "F": 0.784, "G": 0.818}
    assert set(results["ours"]) == {"teacher", "A", "G"}
    for model, per_digit in results["ours"].items():
        assert set(per_digit) == {"0", "1"} and all(0.5 < v <= 1.0 for v in per_digit.values()), model
    assert results["split"]["protocol"] == "test-file-split"
    exported = results["exports"]["0"]
    assert set(exported["A"]) == {"onnx", "tflite-float", "tflite-int8"} and set(exported) == {"A", "G"}
    assert Path(exported["G"]["onnx"]["path"]).is_file()
    table = (out / "results.md").read_text()
    assert "| digit | teacher | A | G |" in table and "paper (mean, baseline)" in table
    assert (out / "digit1" / "teacher.pt").is_file() and (out / "split.json").is_file()
