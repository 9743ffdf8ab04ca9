"""ADC2021 reader/writer and the synthetic ADC2021 generator."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from kdcompress.data import synth_adc2021 as synth
from kdcompress.data.adc2021 import (BACKGROUND_FILES, LAYOUT, N_OBJECTS, SIGNALS, SLOTS, feature_names,
                                     read_particles, to_features, write_particles)
from kdcompress.errors import KDError

CLASS_OF = {"met": 1, "egamma": 2, "muon": 3, "jet": 4}
ETA_MAX = {"egamma": 3.0, "muon": 2.1, "jet": 4.0}
PT_MIN = {"egamma": 3.0, "muon": 3.0, "jet": 15.0}


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    """Background and every signal, generated once for the physics checks."""
    streams = np.random.SeedSequence(11).spawn(1 + len(SIGNALS))
    out = {"background": synth.generate_background(4000, np.random.default_rng(streams[0]))}
    for name, stream in zip(SIGNALS, streams[1:]):
        out[name] = synth.generate_signal(name, 1000, np.random.default_rng(stream))
    return out


def _write_raw(path, **datasets) -> None:
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)


# ---------------------------------------------------------------- layout and features

def test_layout_constants():
    rows = [row for rows in SLOTS.values() for row in range(rows.start, rows.stop)]
    assert rows == list(range(N_OBJECTS)) and LAYOUT["objects"] == 19 and LAYOUT["per_object"] == 3
    assert [list(range(lo, hi)) for lo, hi in LAYOUT["groups"]] == [list(range(SLOTS[k].start, SLOTS[k].stop))
                                                                    for k in ("egamma", "muon", "jet")]
    assert SIGNALS == ("Ato4l", "leptoquark", "hToTauTau", "hChToTauNu")
    assert set(BACKGROUND_FILES) == {"train", "val", "test"}


def test_feature_names():
    names = feature_names()
    assert len(names) == 57 and len(set(names)) == 57
    assert names[:6] == ["met_pt", "met_eta", "met_phi", "egamma0_pt", "egamma0_eta", "egamma0_phi"]
    assert names[3 * 5] == "muon0_pt" and names[3 * 9] == "jet0_pt" and names[-1] == "jet9_phi"


def test_to_features_shape_and_order():
    particles = np.random.default_rng(0).random((7, 19, 4)).astype(np.float32)
    features = to_features(particles)
    assert features.shape == (7, 57) and features.dtype == np.float32
    for obj in range(19):
        for field in range(3):
            np.testing.assert_array_equal(features[:, 3 * obj + field], particles[:, obj, field])


def test_to_features_rejects_wrong_shape():
    with pytest.raises(KDError, match=r"expected \(N, 19, 4\)"):
        to_features(np.zeros((3, 18, 4)))


# ---------------------------------------------------------------- files

def test_write_read_round_trip(tmp_path, samples):
    for name, particles in samples.items():
        path = tmp_path / f"{name}.h5"
        write_particles(path, particles)
        back = read_particles(path)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, particles)
        with h5py.File(path, "r") as handle:
            assert handle["Particles"].compression == "gzip"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.h5" for name in samples)


def test_read_accepts_float64(tmp_path, samples):
    particles = samples["background"][:50]
    _write_raw(tmp_path / "f64.h5", Particles=particles.astype(np.float64))
    back = read_particles(tmp_path / "f64.h5")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, particles)


def test_write_dataset_files_and_splits(tmp_path):
    paths = synth.write_dataset(tmp_path, events=400, seed=3, signal_events=30)
    assert set(paths) == set(BACKGROUND_FILES) | set(SIGNALS)
    for split, filename in BACKGROUND_FILES.items():
        assert paths[split] == tmp_path / filename
    sizes = {key: len(read_particles(path)) for key, path in paths.items()}
    assert sizes == {"train": 200, "val": 100, "test": 100, **{name: 30 for name in SIGNALS}}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_write_dataset_same_seed_identical(tmp_path):
    first = synth.write_dataset(tmp_path / "a", events=200, seed=5, signal_events=20)
    second = synth.write_dataset(tmp_path / "b", events=200, seed=5, signal_events=20)
    for key in first:
        np.testing.assert_array_equal(read_particles(first[key]), read_particles(second[key]))


def test_generators_seeded():
    def background(seed):
        return synth.generate_background(300, np.random.default_rng(seed))

    def signal(seed):
        return synth.generate_signal("hToTauTau", 100, np.random.default_rng(seed))

    for generate in (background, signal):
        assert generate(1).tobytes() == generate(1).tobytes()
        assert not np.array_equal(generate(1), generate(2))


# ---------------------------------------------------------------- physics invariants

@pytest.mark.parametrize("name", ("background",) + SIGNALS)
def test_physics_invariants(samples, name):
    particles = samples[name]
    assert particles.dtype == np.float32 and particles.shape[1:] == (19, 4)
    assert np.isfinite(particles).all()
    pt, eta, phi, cls = (particles[..., i] for i in range(4))

    leading_lepton = np.maximum(pt[:, SLOTS["egamma"].start], pt[:, SLOTS["muon"].start])
    assert (leading_lepton > 23.0).all()

    assert (pt[:, 0] >= 0).all() and (eta[:, 0] == 0).all() and (cls[:, 0] == 1).all()
    phi64 = phi.astype(np.float64)  # compare against pi exactly, not its float32 rounding
    assert ((phi64 > -np.pi) & (phi64 <= np.pi)).all()

    for kind in ("egamma", "muon", "jet"):
        rows = SLOTS[kind]
        present = pt[:, rows] > 0
        block = particles[:, rows]
        assert (np.diff(pt[:, rows], axis=1) <= 0).all(), f"{kind} not ordered by decreasing pT"
        assert (np.abs(eta[:, rows][present]) <= ETA_MAX[kind]).all()
        assert (pt[:, rows][present] >= PT_MIN[kind]).all()
        assert (cls[:, rows][present] == CLASS_OF[kind]).all()
        assert (block[~present] == 0).all(), f"{kind} padding rows not all zero"
        assert (np.diff(present.astype(int), axis=1) <= 0).all(), f"{kind} padding not at the end"


def test_background_looks_like_single_lepton_data(samples):
    background = samples["background"]
    n_jets = (background[:, SLOTS["jet"], 0] > 0).sum(axis=1)
    assert 0.3 < np.mean(n_jets == 0) < 0.8 and np.mean(n_jets <= 4) > 0.98
    assert 15.0 < np.median(background[:, 0, 0]) < 50.0  # W events carry real MET
    assert np.abs(background[..., 2][background[..., 0] > 0]).mean() == pytest.approx(np.pi / 2, abs=0.1)


def test_signals_have_their_characteristic_features(samples):
    def n_leptons(p):
        return (p[:, SLOTS["egamma"], 0] > 0).sum(axis=1) + (p[:, SLOTS["muon"], 0] > 0).sum(axis=1)

    background = samples["background"]
    assert np.mean(n_leptons(samples["Ato4l"]) >= 3) > 0.4 > 10 * np.mean(n_leptons(background) >= 3)
    assert np.median(samples["hChToTauNu"][:, 0, 0]) > 1.5 * np.median(background[:, 0, 0])
    # the tau signals overlap the background: their MET is not far above it
    for name in ("leptoquark", "hToTauTau"):
        assert np.median(samples[name][:, 0, 0]) < 1.5 * np.median(background[:, 0, 0])


def test_unknown_signal():
    with pytest.raises(KDError, match="unknown ADC2021 signal 'Zprime'"):
        synth.generate_signal("Zprime", 10, np.random.default_rng(0))


# ---------------------------------------------------------------- bad inputs

def test_read_missing_file(tmp_path):
    with pytest.raises(KDError, match=r"nothere\.h5: file not found"):
        read_particles(tmp_path / "nothere.h5")


def test_read_not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not an HDF5 file\x00\x01\x02" * 10)
    with pytest.raises(KDError, match=r"junk\.h5: not a readable HDF5 file"):
        read_particles(path)


def test_read_truncated_hdf5(tmp_path, samples):
    path = tmp_path / "cut.h5"
    write_particles(path, samples["background"])
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(KDError, match=r"cut\.h5: not a readable HDF5 file"):
        read_particles(path)


def test_read_missing_key(tmp_path):
    path = tmp_path / "keys.h5"
    _write_raw(path, jetConstituents=np.zeros((3, 19, 4)), Other=np.zeros(2))
    with pytest.raises(KDError, match=r"no 'Particles' dataset \(keys found: Other, jetConstituents\)"):
        read_particles(path)


def test_read_wrong_shape(tmp_path):
    path = tmp_path / "shape.h5"
    _write_raw(path, Particles=np.zeros((5, 19, 3), np.float32))
    with pytest.raises(KDError, match=r"shape \(5, 19, 3\), expected \(N, 19, 4\)"):
        read_particles(path)


def test_read_empty(tmp_path):
    path = tmp_path / "empty.h5"
    _write_raw(path, Particles=np.zeros((0, 19, 4), np.float32))
    with pytest.raises(KDError, match=r"empty \(0 events\)"):
        read_particles(path)


def test_read_nan(tmp_path, samples):
    particles = samples["background"][:20].copy()
    particles[3, 9, 1] = np.nan
    particles[7, 0, 0] = np.inf
    _write_raw(tmp_path / "nan.h5", Particles=particles)
    with pytest.raises(KDError, match=r"nan\.h5: 2 of 20 events contain NaN or inf"):
        read_particles(tmp_path / "nan.h5")


def test_read_negative_pt(tmp_path, samples):
    particles = samples["background"][:20].copy()
    particles[4, 1, 0] = -5.0
    _write_raw(tmp_path / "neg.h5", Particles=particles)
    with pytest.raises(KDError, match=r"neg\.h5: 1 of 20 events have negative pT"):
        read_particles(tmp_path / "neg.h5")


@pytest.mark.parametrize("particles, problem", [
    (np.zeros((4, 19)), r"expected \(N, 19, 4\)"),
    (np.zeros((0, 19, 4)), r"empty"),
    (np.full((2, 19, 4), np.nan), r"NaN"),
    (-np.ones((2, 19, 4)), r"negative pT"),
])
def test_write_rejects_bad_arrays_and_leaves_nothing(tmp_path, particles, problem):
    with pytest.raises(KDError, match=problem):
        write_particles(tmp_path / "out.h5", particles)
    assert list(tmp_path.iterdir()) == []


def test_write_dataset_rejects_tiny_counts(tmp_path):
    with pytest.raises(KDError, match="events must be an integer >= 4"):
        synth.write_dataset(tmp_path, events=3)
