import numpy as np
import pytest

from kdcompress import KDError, load_dataset
from kdcompress.data.preprocess import Preprocessing, fit_preprocessing


def test_npz_split_uses_normal_rows_only(tabular_file):
    data = load_dataset(tabular_file, seed=0)
    assert data.kind == "tabular"
    assert len(data.train) + len(data.val) + len(data.test) == 3000
    assert list(data.signals) == ["anomaly"] and len(data.signals["anomaly"]) == 200
    raw = np.load(tabular_file)
    normal = {tuple(r) for r in raw["X"][raw["y"] == 0]}
    assert all(tuple(r) in normal for r in data.train[:50])


def test_split_is_seeded(tabular_file):
    a, b, c = (load_dataset(tabular_file, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_csv_with_header_and_label(tmp_path):
    rows = ["f1,f2,label"] + [f"{i},{2 * i},{int(i >= 40)}" for i in range(50)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows))
    data = load_dataset(path)
    assert data.feature_names == ["f1", "f2"]
    assert data.n_features == 2 and len(data.signals["anomaly"]) == 10


def test_csv_without_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\n".join(f"{i},{i * i}" for i in range(30)))
    data = load_dataset(path)
    assert data.signals == {} and data.n_features == 2


@pytest.mark.parametrize("content,message", [
    ("a,b\n1,x\n", "line 2, column 'b' holds 'x', not a number"),
    ("a,b\n1,2\n3,\n", "line 3, column 'b' is empty"),
    ("a,b,label\n1,2,0\n3,4\n", "line 3 has 2 values, expected 3"),
    ("a,b\n1,2,3\n4,5,6\n", "line 2 has 3 values, expected 2"),
    ("a,b\n\n", "header but no data rows"),
    ("\n\n", "empty"),
    ("", "empty"),
])
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(KDError, match=message):
        load_dataset(path)


def test_bad_npz_cases(tmp_path):
    nan = np.ones((20, 3))
    nan[4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=nan)
    np.savez(tmp_path / "nox.npz", Z=np.ones((20, 3)))
    np.savez(tmp_path / "flat.npz", X=np.ones(20))
    np.savez(tmp_path / "labels.npz", X=np.ones((20, 3)), y=np.full(20, 2))
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file at all")
    cases = {"nan.npz": "NaN", "nox.npz": "no array 'X'", "flat.npz": "2-D", "labels.npz": "0 \\(normal\\)",
             "corrupt.npz": "not a readable"}
    for name, message in cases.items():
        with pytest.raises(KDError, match=message):
            load_dataset(tmp_path / name)


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(KDError, match="does not exist"):
        load_dataset(tmp_path / "nothing.npz")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(KDError, match="neither"):
        load_dataset(tmp_path / "x.txt")
    with pytest.raises(KDError, match="not an ADC2021 data folder"):
        load_dataset(tmp_path)


def test_preprocessing_is_power_of_two_and_invertible():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 40, 1000), rng.normal(5, 0.1, 1000)].astype(np.float32)
    x[:100, 0] = 0.0
    prep = fit_preprocessing(x, centre=False)
    assert prep.offset == [0.0, 0.0]
    assert prep.shift[0] == -5  # std ~40 -> 2**-5
    z = prep.apply(x)
    assert np.all(z[:100, 0] == 0.0)  # zero padding stays zero
    assert np.allclose(prep.invert(z), x, rtol=1e-6, atol=1e-5)
    again = Preprocessing.from_dict(prep.to_dict())
    assert np.array_equal(again.apply(x), z)
    centred = fit_preprocessing(x, centre=True)
    assert abs(centred.offset[1] - 5.0) < 0.05


def test_npz_images_are_flattened_row_major_and_keep_their_shape(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((40, 3, 4)).astype(np.float32)
    np.savez(tmp_path / "img.npz", X=images, y=np.r_[np.zeros(30), np.ones(10)])
    data = load_dataset(tmp_path / "img.npz")
    assert data.image_shape == (3, 4) and data.n_features == 12
    assert data.feature_names[:5] == ["px0_0", "px0_1", "px0_2", "px0_3", "px1_0"]
    assert np.array_equal(data.signals["anomaly"], images[30:].reshape(10, 12))
    assert "3x4 images" in data.describe()
    np.savez(tmp_path / "flat.npz", X=images.reshape(40, 12))
    assert load_dataset(tmp_path / "flat.npz").image_shape is None
    np.savez(tmp_path / "4d.npz", X=images.reshape(40, 2, 3, 2))
    with pytest.raises(KDError, match="images must have 1 or 3 channels .* found shape \\(40, 2, 3, 2\\)"):
        load_dataset(tmp_path / "4d.npz")
    np.savez(tmp_path / "5d.npz", X=images.reshape(40, 3, 2, 2, 1))
    with pytest.raises(KDError, match="2-D table .* or images"):
        load_dataset(tmp_path / "5d.npz")


@pytest.mark.parametrize("stored", [(40, 3, 4, 1), (40, 1, 3, 4)], ids=["channels-last", "channels-first"])
def test_npz_single_channel_images_are_read_as_images(tmp_path, stored):
    images = np.random.default_rng(1).random((40, 3, 4)).astype(np.float32)
    np.savez(tmp_path / "img.npz", X=images.reshape(stored), y=np.r_[np.zeros(30), np.ones(10)])
    data = load_dataset(tmp_path / "img.npz")
    assert data.image_shape == (3, 4)
    assert np.array_equal(data.signals["anomaly"], images[30:].reshape(10, 12))
