"""CICADA-style calorimeter data (reader, writer, generator), the conv-AE teacher and the calo/AXOL1TL recipes."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from kdcompress.data import load_dataset
from kdcompress.data import synth_calo as synth
from kdcompress.data.calo import (BACKGROUND_FILES, ET_MAX, IMAGE_SHAPE, feature_names, read_regions, to_features,
                                  write_regions)
from kdcompress.errors import KDError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module")
def zero_bias() -> np.ndarray:
    return synth.generate_zero_bias(3000, np.random.default_rng(7))


@pytest.fixture(scope="module")
def anomalies() -> dict:
    streams = np.random.SeedSequence(8).spawn(len(synth.ANOMALIES))
    return {name: synth.generate_anomaly(name, 1000, np.random.default_rng(stream))
            for name, stream in zip(synth.ANOMALIES, streams)}


@pytest.fixture(scope="module")
def calo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calo")
    synth.write_dataset(folder, events=1200, seed=1, anomaly_events=200)
    return folder


def _write_raw(path, **datasets) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)
    return path


# ---------------------------------------------------------------- reader and writer

def test_write_read_round_trip(tmp_path, zero_bias):
    write_regions(tmp_path / "zb.h5", zero_bias)
    back = read_regions(tmp_path / "zb.h5")
    assert back.dtype == np.uint16 and back.shape == (3000, 18, 14)
    np.testing.assert_array_equal(back, zero_bias)
    with h5py.File(tmp_path / "zb.h5", "r") as handle:
        assert handle["CaloRegions"].dtype == np.uint16 and handle["CaloRegions"].compression == "gzip"
    assert [p.name for p in tmp_path.iterdir()] == ["zb.h5"]  # no temporary file left behind


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.float32, np.float64])
def test_read_accepts_integer_valued_dtypes(tmp_path, zero_bias, dtype):
    path = _write_raw(tmp_path / "typed.h5", CaloRegions=zero_bias[:40].astype(dtype))
    np.testing.assert_array_equal(read_regions(path), zero_bias[:40])


def test_features_and_names(zero_bias):
    features = to_features(zero_bias[:5])
    assert features.shape == (5, 252) and features.dtype == np.float32
    assert features[2, 14 * 3 + 5] == zero_bias[2, 3, 5]
    names = feature_names()
    assert len(names) == 252 and names[14 * 3 + 5] == "et_phi3_eta5"


def test_folder_loads_as_dataset(calo_folder):
    data = load_dataset(str(calo_folder))
    assert data.kind == "calo" and data.n_features == 252 and data.layout is None
    assert data.extra["image_shape"] == IMAGE_SHAPE == (18, 14, 1)
    assert (len(data.train), len(data.val), len(data.test)) == (600, 300, 300)
    assert sorted(data.signals) == sorted(synth.ANOMALIES)
    assert all(len(x) == 200 for x in data.signals.values())
    assert data.train.dtype == np.float32 and (data.train == np.round(data.train)).all()


def test_folder_missing_split(tmp_path, calo_folder):
    for name in BACKGROUND_FILES.values():
        if name != BACKGROUND_FILES["val"]:
            (tmp_path / name).write_bytes((calo_folder / name).read_bytes())
    with pytest.raises(KDError, match="not a calorimeter data folder: missing zero_bias_val.h5"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------- bad inputs, one line each

def _bad_regions():
    good = np.zeros((6, 18, 14), np.float64)
    nan, negative, large, fraction = good.copy(), good.copy(), good.copy(), good.copy()
    nan[1, 2, 3] = np.nan
    negative[[0, 4], 0, 0] = -1
    large[2, 17, 13] = 1024
    fraction[3, 5, 5] = 2.5
    return {"nan": (nan, r"1 of 6 events contain NaN or inf values"),
            "negative": (negative, r"2 of 6 events have negative ET values"),
            "too_large": (large, r"1 of 6 events have ET values above 1023"),
            "not_integer": (fraction, r"1 of 6 events have non-integer ET values")}


@pytest.mark.parametrize("case", ["nan", "negative", "too_large", "not_integer"])
def test_read_rejects_bad_values(tmp_path, case):
    regions, message = _bad_regions()[case]
    path = _write_raw(tmp_path / f"{case}.h5", CaloRegions=regions)
    with pytest.raises(KDError, match=rf"{case}\.h5: {message}") as info:
        read_regions(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["nan", "negative", "too_large", "not_integer"])
def test_write_rejects_bad_values(tmp_path, case):
    regions, message = _bad_regions()[case]
    with pytest.raises(KDError, match=message):
        write_regions(tmp_path / "out.h5", regions)
    assert not list(tmp_path.iterdir())


def test_read_missing_file(tmp_path):
    with pytest.raises(KDError, match=r"nothere\.h5: file not found"):
        read_regions(tmp_path / "nothere.h5")


def test_read_not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not an HDF5 file\x00\x01" * 20)
    with pytest.raises(KDError, match=r"junk\.h5: not a readable HDF5 file \("):
        read_regions(path)


def test_read_truncated_hdf5(tmp_path, zero_bias):
    path = tmp_path / "cut.h5"
    write_regions(path, zero_bias)
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(KDError, match=r"cut\.h5: not a readable HDF5 file"):
        read_regions(path)


def test_read_missing_key(tmp_path):
    path = _write_raw(tmp_path / "keys.h5", Particles=np.zeros((3, 19, 4)), Other=np.zeros(2))
    with pytest.raises(KDError, match=r"no 'CaloRegions' dataset \(keys found: Other, Particles\)"):
        read_regions(path)


def test_read_group_instead_of_dataset(tmp_path):
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("CaloRegions")
    with pytest.raises(KDError, match="'CaloRegions' is a group, expected a dataset"):
        read_regions(path)


@pytest.mark.parametrize("shape", [(5, 14, 18), (5, 252), (5, 18, 14, 1)])
def test_read_wrong_shape(tmp_path, shape):
    path = _write_raw(tmp_path / "shape.h5", CaloRegions=np.zeros(shape, np.uint16))
    with pytest.raises(KDError, match=r"shape \(.*\), expected \(N, 18, 14\)"):
        read_regions(path)


def test_read_empty(tmp_path):
    path = _write_raw(tmp_path / "empty.h5", CaloRegions=np.zeros((0, 18, 14), np.uint16))
    with pytest.raises(KDError, match=r"empty\.h5: 'CaloRegions' is empty \(0 events\)"):
        read_regions(path)


@pytest.mark.parametrize("values", [np.zeros((2, 18, 14), bool), np.full((2, 18, 14), b"x")])
def test_read_wrong_dtype(tmp_path, values):
    path = _write_raw(tmp_path / "dtype.h5", CaloRegions=values)
    with pytest.raises(KDError, match="has dtype .*, expected integers"):
        read_regions(path)


def test_write_wrong_shape(tmp_path):
    with pytest.raises(KDError, match=r"expected \(N, 18, 14\)"):
        write_regions(tmp_path / "x.h5", np.zeros((3, 18, 13)))


# ---------------------------------------------------------------- generator

def test_generator_reproducible():
    first = synth.generate_zero_bias(200, np.random.default_rng(3))
    assert first.tobytes() == synth.generate_zero_bias(200, np.random.default_rng(3)).tobytes()
    assert not np.array_equal(first, synth.generate_zero_bias(200, np.random.default_rng(4)))
    anomaly = synth.generate_anomaly("wide_shower", 50, 5)
    assert anomaly.tobytes() == synth.generate_anomaly("wide_shower", 50, 5).tobytes()


def test_write_dataset_same_seed_identical(tmp_path):
    first = synth.write_dataset(tmp_path / "a", events=100, seed=2, anomaly_events=20)
    second = synth.write_dataset(tmp_path / "b", events=100, seed=2, anomaly_events=20)
    assert set(first) == set(BACKGROUND_FILES) | set(synth.ANOMALIES)
    for key in first:
        np.testing.assert_array_equal(read_regions(first[key]), read_regions(second[key]))
    assert len(read_regions(first["train"])) == 50 and len(read_regions(first["multijet"])) == 20


@pytest.mark.parametrize("name", ("zero_bias",) + synth.ANOMALIES)
def test_format_invariants(zero_bias, anomalies, name):
    regions = zero_bias if name == "zero_bias" else anomalies[name]
    assert regions.dtype == np.uint16 and regions.shape[1:] == (18, 14)
    assert regions.min() >= 0 and regions.max() <= ET_MAX


def test_noise_grows_towards_forward_eta(zero_bias):
    mean_per_eta = zero_bias.mean(axis=(0, 1))
    central, forward = mean_per_eta[6:8].mean(), mean_per_eta[[0, 13]].mean()
    assert forward > 4 * central
    assert (np.diff(mean_per_eta[:7]) < 0).all() and (np.diff(mean_per_eta[7:]) > 0).all()
    np.testing.assert_allclose(mean_per_eta, mean_per_eta[::-1], rtol=0.1)  # symmetric in eta
    mean_per_phi = zero_bias.mean(axis=(0, 2))
    assert mean_per_phi.max() < 1.15 * mean_per_phi.min()  # no phi preference


def test_anomaly_classes_have_their_signatures(zero_bias, anomalies):
    def et_sum(x):
        return x.reshape(len(x), -1).sum(axis=1)

    def hottest(x):
        return x.reshape(len(x), -1).max(axis=1)
    assert np.median(et_sum(anomalies["multijet"])) > 1.4 * np.median(et_sum(zero_bias))
    assert np.median(hottest(anomalies["narrow_deposit"])) > 3 * np.median(hottest(zero_bias))
    # the wide shower is spread out: its hottest region is hardly hotter than in zero bias
    assert np.median(hottest(anomalies["wide_shower"])) < 1.5 * np.median(hottest(zero_bias))


def test_generator_errors(tmp_path):
    with pytest.raises(KDError, match="unknown calorimeter anomaly 'monopole'"):
        synth.generate_anomaly("monopole", 10, 0)
    with pytest.raises(KDError, match="events must be an integer >= 4"):
        synth.write_dataset(tmp_path, events=2)
    with pytest.raises(KDError, match="n must be an integer >= 0"):
        synth.generate_zero_bias(-1, 0)


# ---------------------------------------------------------------- teacher

def test_conv_ae_shapes_and_errors():
    import torch

    from kdcompress.registry import TEACHERS
    from kdcompress.teachers.calo_ae import CaloConvAE
    module = TEACHERS.get("calo-ae")(n_features=252, hidden=[4, 8], latent=6)
    assert isinstance(module, CaloConvAE)
    assert module(torch.zeros(3, 252)).shape == (3, 252)
    with pytest.raises(KDError, match="must hold the 250 features"):
        CaloConvAE(n_features=250)
    with pytest.raises(KDError, match="two channel counts"):
        CaloConvAE(hidden=[4, 8, 16])


def test_teacher_train_save_load_round_trip(calo_folder, tmp_path):
    import torch

    from kdcompress.teachers import load_teacher
    from kdcompress.teachers.calo_ae import train_calo_teacher
    data = load_dataset(str(calo_folder))
    teacher = train_calo_teacher(data, tmp_path / "teacher.pt", hidden=[4, 8], latent=6, epochs=2, quiet=True)
    loaded = load_teacher(tmp_path / "teacher.pt")
    assert loaded.arch["name"] == "calo-ae" and loaded.score_name == "mse"
    assert loaded.preprocessing.shift == [0] * 252 and loaded.preprocessing.offset == [0.0] * 252
    x = data.signals["narrow_deposit"]
    np.testing.assert_array_equal(loaded.score(x), teacher.score(x))
    with torch.no_grad():  # the score is the MSE of raw ET (counts^2)
        recon = loaded.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded.score(x), ((recon - x) ** 2).mean(axis=1), rtol=1e-5)
    assert (tmp_path / "teacher.loss.png").is_file()


# ---------------------------------------------------------------- recipes

@pytest.mark.parametrize("name", ["cicada-calo", "axol1tl-vae"])
@pytest.mark.parametrize("setting", ["small", "full"])
def test_recipes_validate(name, setting):
    from kdcompress.config import read_recipe, resolve
    recipe = read_recipe(RECIPES / f"{name}.yaml")
    chosen, args = resolve(recipe, {"setting": setting})
    assert chosen == setting and args["export"]


def _manifest_artefact(folder: Path, target: str) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    return next(a for a in manifest["artefacts"] if a["target"] == target)


@pytest.mark.slow
def test_cicada_calo_small_end_to_end(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    out, markdown = run_recipe(RECIPES / "cicada-calo.yaml", ["setting=small"], out=str(tmp_path), quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["recipe"] == "cicada-calo" and results["setting"] == "small"
    teacher, student = results["distill"]["teacher"], results["distill"]["student"]
    assert sorted(teacher) == sorted(student) == sorted(synth.ANOMALIES)
    assert all(0.5 < teacher[name]["auroc"] <= 1.0 for name in teacher)
    assert results["student_beats_et_sum"], "the student should beat the summed-ET score on some class"
    fpga = _manifest_artefact(out / "exports" / "student", "fpga")
    assert fpga["agreement"]["bit_exact_fraction"] == 1.0
    assert fpga["agreement"]["events"] == 1500 + 3 * 1000  # every held-out event of the small setting
    assert fpga["input"]["fixed_point"]["cpp"].startswith("ap_ufixed<10,10")
    assert fpga["output"]["fixed_point"]["cpp"].startswith("ap_ufixed<16,8")
    assert "| narrow_deposit |" in markdown


@pytest.mark.slow
def test_axol1tl_vae_small_end_to_end(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    out, _ = run_recipe(RECIPES / "axol1tl-vae.yaml", ["setting=small"], out=str(tmp_path), quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["args"]["arch"] == "vae" and results["args"]["score"] == "mu2"
    teacher, student = results["distill"]["teacher"], results["distill"]["student"]
    assert len(teacher) == 4 and sorted(teacher) == sorted(student)
    assert all(0.5 < row["auroc"] <= 1.0 for row in teacher.values())
    assert _manifest_artefact(out / "exports" / "student", "fpga")["agreement"]["bit_exact_fraction"] == 1.0
