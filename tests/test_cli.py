import subprocess
import sys

import pytest

from kdcompress.cli import main

VERBS = [["data", "synth"], ["train-teacher"], ["distill"], ["demo"], ["export"], ["benchmark"], ["run"], ["ls"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_help_of_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(verb + ["--help"])
    assert exit_info.value.code == 0
    assert "--seed" in capsys.readouterr().out or verb == ["ls"]


def test_missing_teacher_is_one_line_error(tmp_path, tabular_file, capsys):
    code = main(["distill", str(tmp_path / "nope.pt"), "--data", str(tabular_file), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "nope.pt does not exist" in err
    assert not (tmp_path / "s").exists()


def test_bad_data_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,nan\n")
    code = main(["train-teacher", "--data", str(bad), "--out", str(tmp_path / "t.pt")])
    assert code == 2 and "NaN" in capsys.readouterr().err
    assert not (tmp_path / "t.pt").exists()


def test_console_script_runs_end_to_end(tabular_file, tmp_path):
    teacher = tmp_path / "t.pt"
    run = [sys.executable, "-m", "kdcompress.cli"]
    subprocess.run(run + ["train-teacher", "--data", str(tabular_file), "--out", str(teacher), "--hidden", "16",
                          "--latent", "2", "--epochs", "2", "--quiet"], check=True, capture_output=True)
    done = subprocess.run(run + ["distill", str(teacher), "--data", str(tabular_file), "--out",
                                 str(tmp_path / "s"), "--hidden", "4", "--epochs", "2", "--queries", "noise:0.5",
                                 "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "AUROC teacher" in done.stdout and "anomaly" in done.stdout
    assert (tmp_path / "s" / "metrics.json").is_file()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fmt,expected", [("adc2021", "background_train.h5"), ("calo", "zero_bias_train.h5")])
def test_data_synth_writes_loadable_folders(fmt, expected, tmp_path, capsys):
    from kdcompress import load_dataset
    assert main(["data", "synth", fmt, "--events", "400", "--signal-events", "50", "--out", str(tmp_path)]) == 0
    assert (tmp_path / expected).is_file()
    data = load_dataset(tmp_path)
    assert len(data.train) == 200 and data.signals and all(len(v) == 50 for v in data.signals.values())


def test_data_synth_writes_an_image_folder_with_masks(tmp_path, capsys):
    from kdcompress import load_dataset
    from kdcompress.data.images import load_image_masks
    out = tmp_path / "weave"
    assert main(["data", "synth", "images", "--events", "20", "--signal-events", "3", "--side", "12", "--seed", "4",
                 "--out", str(out)]) == 0
    data, masks = load_dataset(out), load_image_masks(out)
    assert data.image_shape == (12, 12) and len(data.train) + len(data.val) == 20
    assert {k: v.shape for k, v in masks.items()} == {k: (3, 144) for k in ("good", "scratch", "spot", "stain", "warp")}
    assert main(["data", "synth", "images", "--side", "4", "--out", str(tmp_path / "small")]) == 2
    assert "images need side >= 8" in capsys.readouterr().err and not (tmp_path / "small").exists()


def test_distill_flag_defaults_are_the_library_defaults():
    from kdcompress.cli import _distill_kwargs, _parser
    from kdcompress.distill import DistillConfig
    args = _parser().parse_args(["distill", "t.pt", "--data", "d.npz", "--out", "s"])
    kwargs, config = _distill_kwargs(args), DistillConfig()
    for key in ("min_queries", "reweight", "target", "loss", "active_rounds", "sparsity", "prune_steps",
                "refresh_queries", "epochs", "lr"):
        assert kwargs[key] == getattr(config, key), key


@pytest.mark.parametrize("fidelity, selection, hinted", [
    ({"spearman_normal": 0.83}, False, True), ({"spearman_normal": 0.93}, False, False),
    ({"spearman_normal": 0.83}, True, False), ({"spearman_normal": float("nan")}, False, False), ({}, False, False)])
def test_hand_set_students_far_from_their_teacher_get_an_auto_hint(fidelity, selection, hinted):
    from kdcompress.cli import auto_hint
    result = {"fidelity": {"spearman": 0.98, **fidelity}, **({"selection": {}} if selection else {})}
    hint = auto_hint(result)
    assert bool(hint) == hinted
    assert not hint or ("Spearman 0.83 < 0.9" in hint and "--auto" in hint)
