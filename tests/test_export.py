"""kdcompress.export: ONNX, TFLite and hls4ml artefacts of tiny students (MLP, CNN) and a tiny teacher,
each verified against its source; refusals; manifest contents; nothing left behind on failure."""
import argparse
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kdcompress.errors import KDError  # noqa: E402
from kdcompress.export import export, parse_targets  # noqa: E402
from kdcompress.fileio import sha256_file  # noqa: E402

N_FEATURES = 36  # 6 x 6 x 1 images for the CNN
IMAGE = (6, 6, 1)
VERSION_KEYS = {"tensorflow", "qkeras", "hls4ml", "onnx", "onnxruntime", "tf2onnx", "torch", "kdcompress"}


# ---------------------------------------------------------------- fixtures (trained once per module)

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def data_path(workdir):
    """Seeded Gaussian background with per-feature scales and offsets; anomalies are shifted and wider."""
    rng = np.random.default_rng(0)
    scale, offset = np.linspace(0.5, 8.0, N_FEATURES), np.linspace(-2.0, 30.0, N_FEATURES)
    normal = rng.normal(size=(6000, N_FEATURES)) * scale + offset
    anomalous = (rng.normal(size=(2000, N_FEATURES)) * 1.5 + 1.5) * scale + offset
    path = workdir / "data.npz"
    np.savez(path, X=np.concatenate([normal, anomalous]).astype(np.float32),
             y=np.r_[np.zeros(len(normal)), np.ones(len(anomalous))])
    return path


@pytest.fixture(scope="module")
def teacher_path(workdir, data_path):
    from kdcompress.api import train_teacher
    path = workdir / "teacher.pt"
    train_teacher(data_path, path, hidden=[32, 16], latent=4, epochs=2, quiet=True)
    return path


@pytest.fixture(scope="module")
def mlp_dir(workdir, data_path, teacher_path):
    from kdcompress.api import distill
    out = workdir / "mlp"
    distill(teacher_path, data_path, out, hidden=[16, 8], epochs=5, quiet=True)
    return out


@pytest.fixture(scope="module")
def cnn_dir(workdir, data_path, teacher_path, mlp_dir):
    """A QKeras CNN student regressing log1p(teacher score), saved like a distilled student."""
    from kdcompress.data import load_dataset
    from kdcompress.students import Student, load_student, save_student
    from kdcompress.students.cnn import build_cnn
    from kdcompress.teachers import load_teacher
    from kdcompress.tf_env import seed_everything, tensorflow
    mlp = load_student(mlp_dir)
    data = load_dataset(str(data_path))
    z, y = mlp.preprocessing.apply(data.train), np.log1p(load_teacher(teacher_path).score(data.train))
    seed_everything(0)
    model = build_cnn(N_FEATURES, hidden=(8,), quant=mlp.quant, input_shape=IMAGE)
    model.compile(optimizer=tensorflow().keras.optimizers.Adam(3e-3), loss="mae")
    model.fit(z, y.astype(np.float32), epochs=4, batch_size=128, verbose=0)
    meta = {k: v for k, v in mlp.meta.items() if k != "format"}
    meta.update(student="cnn", config={**meta["config"], "student": "cnn", "input_shape": list(IMAGE)})
    out = workdir / "cnn"
    out.mkdir()
    save_student(Student(model=model, meta=meta), out)
    return out


@pytest.fixture(scope="module")
def exported(mlp_dir, cnn_dir):
    """Every target of both students, exported once: {kind: (out folder, manifest)}."""
    results = {}
    for kind, folder in (("mlp", mlp_dir), ("cnn", cnn_dir)):
        manifest = export(folder, "all", quiet=True)
        results[kind] = (folder / "export", manifest)
    return results


def _artefact(manifest: dict, target: str) -> dict:
    return next(a for a in manifest["artefacts"] if a["target"] == target)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- refusals (no model needed)

def test_unknown_targets_are_named(tmp_path):
    with pytest.raises(KDError, match="'bitstream'.*'gguf'"):
        parse_targets(["onnx", "bitstream,gguf"])
    with pytest.raises(KDError, match="unknown export target"):
        export(tmp_path, ["tflite", "tensorrt"], quiet=True)


def test_targets_parse_comma_lists_and_all():
    assert parse_targets("onnx, fpga") == ["onnx", "fpga"]
    assert parse_targets(["tflite", "onnx,tflite"]) == ["tflite", "onnx"]
    assert "all" in parse_targets(["all"])
    with pytest.raises(KDError, match="no export target"):
        parse_targets([])


def test_precision_option_parsing():
    from kdcompress.export.cli import hls_config_from_args, parse_precision
    assert parse_precision("dense0=ap_fixed<8,3>") == ("dense0", "result", "ap_fixed<8,3>")
    assert parse_precision("conv0.accum=ap_fixed<18,8>") == ("conv0", "accum", "ap_fixed<18,8>")
    with pytest.raises(KDError, match="LAYER=TYPE"):
        parse_precision("dense0")
    config = hls_config_from_args(None, ["dense0=ap_fixed<8,3>", "dense0.accum=ap_fixed<12,4>"])
    assert config == {"LayerName": {"dense0": {"Precision": {"result": "ap_fixed<8,3>", "accum": "ap_fixed<12,4>"}}}}


def test_cnn_builder_is_small_and_checks_its_shape():
    from kdcompress.students.cnn import build_cnn, default_image_shape
    model = build_cnn(18 * 14, input_shape=(18, 14, 1))
    assert model.count_params() <= 2000
    assert any(type(layer).__name__ == "MaxPooling2D" for layer in model.layers)
    assert default_image_shape(57) == (19, 3, 1)
    with pytest.raises(KDError, match="holds 30 values"):
        build_cnn(36, input_shape=(5, 6, 1))


# ---------------------------------------------------------------- refusals with a student

def test_unwritable_output_is_one_line_error(mlp_dir, tmp_path):
    with pytest.raises(KDError, match="is a file") as err:
        export(mlp_dir, "onnx", out=mlp_dir / "model.h5" / "export", quiet=True)
    assert "\n" not in str(err.value)
    with pytest.raises(KDError, match="cannot write"):
        export(mlp_dir, "onnx", out="/proc/kdcompress-export", quiet=True)


def test_foreign_output_folder_is_not_replaced(mlp_dir, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(KDError, match="refusing to replace"):
        export(mlp_dir, "onnx", out=foreign, quiet=True)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(KDError, match="would replace the export source"):
        export(mlp_dir, "onnx", out=mlp_dir.parent, quiet=True)


def test_teacher_exports_to_onnx_only(teacher_path, data_path, tmp_path):
    with pytest.raises(KDError, match="onnx only, not fpga"):
        export(teacher_path, ["onnx", "fpga"], data=data_path, out=tmp_path / "t", quiet=True)
    assert not (tmp_path / "t").exists()


def test_teacher_export_finds_its_training_data(teacher_path, data_path, tmp_path):
    """Without --data the teacher's recorded data source is used, and its split is the training one."""
    manifest = export(teacher_path, "onnx", out=tmp_path / "t", quiet=True)
    data = manifest["source"]["data"]
    assert data["source"] == str(data_path.resolve()) and data["matches_training"] is True
    assert manifest["artefacts"][0]["agreement"]["events"] == 1200 + 2000  # background test split + anomalies


def test_synth_without_vendor_tools_fails_before_any_work(mlp_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KDError, match="vitis-run"):
        export(mlp_dir, "fpga", out=tmp_path / "synth", synth=True, quiet=True)
    with pytest.raises(KDError, match="vivado_hls"):
        export(mlp_dir, "fpga", out=tmp_path / "synth", synth=True, backend="Vivado", quiet=True)
    assert not (tmp_path / "synth").exists()


# ---------------------------------------------------------------- artefacts

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_onnx_student_matches_qkeras(exported, kind):
    import onnx
    out, manifest = exported[kind]
    artefact = _artefact(manifest, "onnx")
    onnx.checker.check_model(str(out / artefact["path"]))
    check = artefact["agreement"]
    assert check["max_abs_diff"] <= 1e-5
    assert check["events"] == 1200 + 2000  # background test split + signal
    assert set(check["auroc"]) == {"anomaly"}
    assert artefact["input"]["kind"] == "preprocessed" and len(artefact["input"]["preprocessing"]["shift"]) == 36


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_tflite_float_exact_and_int8_close(exported, kind):
    out, manifest = exported[kind]
    floating, int8 = _artefact(manifest, "tflite-float"), _artefact(manifest, "tflite-int8")
    assert floating["agreement"]["max_abs_diff"] <= 1e-5
    assert int8["input"]["dtype"] == "int8" and int8["output"]["dtype"] == "int8"
    assert int8["input"]["int8"]["scale"] > 0
    assert int8["agreement"]["activation_scales"] == {"method": "qkeras-grid"}  # plain chains of 8-bit ReLUs
    for signal, value in int8["agreement"]["source_auroc"].items():
        assert abs(int8["agreement"]["auroc"][signal] - value) <= 0.01


def test_integer_encoding_round_trips_and_saturates():
    from kdcompress.export.tflite import _decode, _encode
    for dtype, top in ((np.int8, 127), (np.int16, 32767)):
        detail = {"dtype": dtype, "quantization": (0.5, 3)}
        q = _encode(np.array([0.0, 1.0, -2.5, 1e9]), detail)
        assert q.dtype == dtype and q.tolist() == [3, 5, -2, top]
        assert _decode(q[:3], detail).tolist() == [0.0, 1.0, -2.5]


@pytest.mark.slow
def test_energy_head_exports_int16x8_within_tolerance(workdir, data_path, teacher_path):
    """An energy output spans decades: the quantized TFLite file keeps int16 activations, calibrated up to
    ENERGY_HEADROOM x the largest background E, and must keep the student's AUROC."""
    from kdcompress.api import distill
    from kdcompress.data import load_dataset
    from kdcompress.export.tflite import ENERGY_HEADROOM
    from kdcompress.export.twin import float_twin
    from kdcompress.students import load_student
    folder = workdir / "energy"
    distill(teacher_path, data_path, folder, hidden=[16, 8], student="energy", epochs=5, quiet=True)
    manifest = export(folder, "tflite", quiet=True)
    assert [a["target"] for a in manifest["artefacts"]] == ["tflite-float", "tflite-int16x8"]
    quantized = _artefact(manifest, "tflite-int16x8")
    assert quantized["path"] == "student_int16x8.tflite" and (folder / "export" / quantized["path"]).exists()
    assert quantized["input"]["dtype"] == quantized["output"]["dtype"] == "int16"
    assert quantized["agreement"]["activation_scales"]["method"] == "calibrated"
    for signal, value in quantized["agreement"]["source_auroc"].items():
        assert abs(quantized["agreement"]["auroc"][signal] - value) <= 0.01
    student = load_student(folder)
    z = student.preprocessing.apply(load_dataset(str(data_path)).train)
    largest = float(float_twin(student.model).predict(z, verbose=0).max())
    assert quantized["output"]["int16"]["scale"] * 32767 <= 1.05 * ENERGY_HEADROOM * largest


def test_background_ranking_check_edge_cases():
    from kdcompress.export.tflite import _check_background_ranking, _spearman_or_none
    ramp = np.arange(10.0)
    assert _spearman_or_none(ramp, np.ones(10)) is None and _spearman_or_none(ramp[:1], ramp[:1]) is None
    for reference in (None, ramp[:1], np.ones(10)):  # nothing to rank: not checked, not refused
        assert _check_background_ranking("int8", reference, ramp, {}).startswith("not checked")
    with pytest.raises(KDError, match="same output"):
        _check_background_ranking("int8", ramp, np.ones(10), {"spearman_background": None})
    with pytest.raises(KDError, match="Spearman -1.000"):
        _check_background_ranking("int8", ramp, -ramp, {"spearman_background": _spearman_or_none(ramp, -ramp)})
    assert _check_background_ranking("int8", ramp, 2 * ramp, {"spearman_background": 1.0}).startswith("no signals")


@pytest.mark.slow
def test_without_signals_the_quantized_file_must_rank_the_background_alike(teacher_path, data_path, tmp_path,
                                                                            monkeypatch):
    from kdcompress.api import distill
    from kdcompress.export import tflite
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, X=np.load(data_path)["X"][:6000])  # the normal rows, no labels
    folder = tmp_path / "student"
    distill(teacher_path, unlabelled, folder, hidden=[16, 8], epochs=5, quiet=True)
    check = _artefact(export(folder, "tflite", quiet=True), "tflite-int8")["agreement"]
    assert check["source_auroc"] == {} and check["tolerance"].startswith("no signals")
    assert check["spearman_background"] >= tflite.MIN_BACKGROUND_SPEARMAN
    # calibrated on one near-constant point, the int8 output saturates: refused, nothing written
    monkeypatch.setattr(tflite, "_representative", lambda ctx, mode: np.full((4, N_FEATURES), 0.01, np.float32))
    with pytest.raises(KDError, match="Spearman"):
        export(folder, "tflite", out=tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists() and not _leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_fpga_is_bit_exact_and_documented(exported, kind):
    from kdcompress.export.cli import read_hls_yaml
    out, manifest = exported[kind]
    artefact = _artefact(manifest, "fpga")
    check = artefact["agreement"]
    assert check["bit_exact_fraction"] == 1.0 and check["max_abs_diff"] == 0.0
    assert check["events"] == 1200 + 2000
    assert artefact["input"]["dtype"].startswith("ap_fixed<16,8")  # quantized_bits(16, 7): 7 integer + sign
    project = out / artefact["path"]
    readme = (project / "README.md").read_text()
    assert artefact["input"]["dtype"] in readme and artefact["output"]["dtype"] in readme
    assert "| 35 | x35 |" in readme and "expm1" in readme and "ReuseFactor" in readme
    config = read_hls_yaml(project / "hls4ml_config.yml")
    assert config["OutputDir"] == str(project.resolve()) and config["IOType"] == "io_parallel"
    assert config["Backend"] == "Vitis" and not list((project / "firmware").glob("*.so"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_manifest_contents(exported, kind):
    from kdcompress.export.verify import sha256_tree
    out, manifest = exported[kind]
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    assert {a["target"] for a in manifest["artefacts"]} == {"onnx", "tflite-float", "tflite-int8", "fpga"}
    for artefact in manifest["artefacts"]:
        path = out / artefact["path"]
        assert path.exists()
        expected = sha256_tree(path / "firmware", (".so",)) if path.is_dir() else sha256_file(path)
        assert artefact["sha256"] == expected
        assert {"input", "output", "agreement"} <= set(artefact)
    assert set(manifest["versions"]) == VERSION_KEYS and all(manifest["versions"].values())
    source = manifest["source"]
    assert source["kind"] == "student" and source["data"]["matches_training"] is True
    assert _leftovers(out.parent) == []


@pytest.mark.slow
def test_wrong_precision_fails_and_names_the_layer(mlp_dir, tmp_path):
    out = tmp_path / "out"
    export(mlp_dir, "onnx", out=out, quiet=True)
    before = (out / "manifest.json").read_text()
    narrow = {"LayerName": {"dense0": {"Precision": {"accum": "ap_fixed<8,2>", "result": "ap_fixed<8,2>"}}}}
    with pytest.raises(KDError, match="not bit-exact.*first differing layer: 'dense0'"):
        export(mlp_dir, ["onnx", "fpga"], out=out, hls_config=narrow, quiet=True)
    assert (out / "manifest.json").read_text() == before  # the earlier export is untouched
    assert not (out / "fpga").exists() and _leftovers(tmp_path) == []
    with pytest.raises(KDError, match="unknown layer"):
        export(mlp_dir, "fpga", out=tmp_path / "typo", hls_config={"LayerName": {"dense9": {}}}, quiet=True)
    assert not (tmp_path / "typo").exists()


@pytest.mark.slow
@pytest.mark.parametrize("variant,pools", [("B", {"pool0": 4, "pool1": 4}), ("G", {"input_pool": 16, "pool0": 4})])
def test_average_pools_get_the_bits_of_an_exact_average(variant, pools):
    """hls4ml's 'auto' kept the input type on average pools and truncated the averages (not bit-exact)."""
    from kdcompress.export.fpga import FpgaOptions, generated_config
    from kdcompress.quant import QuantConfig
    from kdcompress.students.paper_cnn import build_paper_cnn
    model = build_paper_cnn(256, quant=QuantConfig(bits=8, relu_bits=8), variant=variant, image_shape=(16, 16, 1))
    layers = generated_config(model, FpgaOptions())["LayerName"]
    names = [layer.name for layer in model.layers]
    for pool, n in pools.items():
        k = n.bit_length() - 1
        before = layers[names[names.index(pool) - 1]]["Precision"]["result"]
        if before == "auto":  # the input pool follows the reshape of the input quantizer's output
            before = layers["input_quant"]["Precision"]["result"]
        kind, rest = before.split("<")
        width, integer = (int(v) for v in rest.split(",")[:2])
        assert layers[pool]["Precision"]["result"] == f"{kind}<{width + k},{integer}>", pool
        assert layers[pool]["Precision"]["accum"] == f"{kind}<{width + 2 * k},{integer + k}>", pool


def test_unsigned_quantizers_stay_bit_exact(mlp_dir, tmp_path):
    """hls4ml maps quantized_bits(keep_negative=False) to a signed type one fractional bit short: corrected."""
    from kdcompress.quant import QuantConfig
    from kdcompress.students import Student, load_student, save_student
    from kdcompress.students.mlp import build_mlp
    mlp = load_student(mlp_dir)
    quant = QuantConfig(input_signed=False, output_signed=False)
    meta = {**{k: v for k, v in mlp.meta.items() if k != "format"}, "quant": quant.to_dict()}
    folder = tmp_path / "unsigned"
    folder.mkdir()
    save_student(Student(model=build_mlp(N_FEATURES, hidden=(8,), quant=quant, seed=1), meta=meta), folder)
    (artefact,) = export(folder, "fpga", quiet=True)["artefacts"]
    assert artefact["input"]["dtype"].startswith("ap_ufixed<16,7,AP_RND_CONV,AP_SAT")
    assert artefact["output"]["dtype"].startswith("ap_ufixed<16,6,AP_RND_CONV,AP_SAT")
    assert artefact["agreement"]["bit_exact_fraction"] == 1.0


@pytest.mark.slow
def test_teacher_onnx_matches_teacher_score(teacher_path, data_path, tmp_path):
    manifest = export(teacher_path, "all", data=data_path, out=tmp_path / "teacher", quiet=True)
    (artefact,) = manifest["artefacts"]
    assert artefact["target"] == "onnx" and artefact["input"]["kind"] == "raw"
    assert artefact["agreement"]["max_rel_diff"] <= 1e-4
    assert artefact["sha256"] == sha256_file(tmp_path / "teacher" / "teacher.onnx")
    assert manifest["source"]["kind"] == "teacher"


@pytest.mark.slow
def test_cli_export_prints_one_line_per_artefact(mlp_dir, tmp_path, capsys):
    from kdcompress.export.cli import add_parser
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["export", str(mlp_dir), "--target", "onnx,tflite", "--out", str(tmp_path / "cli"),
                              "--quiet"])
    args.run(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["onnx", "tflite-float", "tflite-int8", "manifest:"]
    assert "AUROC anomaly" in lines[0] and lines[-1].endswith(str(tmp_path / "cli" / "manifest.json"))
    shutil.rmtree(tmp_path / "cli")
