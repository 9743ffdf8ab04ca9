from pathlib import Path

import pytest

from kdcompress import KDError
from kdcompress.cli import main
from kdcompress.config import SETTINGS, parse_overrides, read_recipe, resolve

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert {"kd4ad-mnist", "cicada-calo", "axol1tl-vae", "pkdgan-mnist", "urd-mnist", "dskd-mnist"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("setting", SETTINGS)
def test_every_recipe_validates(path, setting):
    recipe = read_recipe(path)
    assert recipe["recipe"] == path.stem and recipe["description"]
    chosen, args = resolve(recipe, {"setting": setting})
    assert chosen == setting and isinstance(args, dict)
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "setting=small" in header.replace("small|full", "small") and "full" in header  # documented


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = "recipe: r\ndescription: d\npipeline: trigger\nsettings: {small: {events: 100}, full: {}}\n"


def test_unknown_top_key_is_named(tmp_path):
    with pytest.raises(KDError, match="unknown key 'colour'"):
        read_recipe(_write(tmp_path, BASE + "colour: red\n"))


def test_unknown_argument_is_named(tmp_path):
    recipe = read_recipe(_write(tmp_path, BASE + "args: {epochz: 3}\n"))
    with pytest.raises(KDError, match="unknown key 'epochz'"):
        resolve(recipe, {})


@pytest.mark.parametrize("override,message", [
    ("events=lots", "key 'events' must be int"),
    ("student_hidden=32", "key 'student_hidden' must be"),
    ("benchmark=3", "key 'benchmark' must be bool"),
    ("sparsity=half", "key 'sparsity' must be float"),
    ("setting=medium", "setting must be one of small, full"),
])
def test_wrong_types_are_named(tmp_path, override, message):
    recipe = read_recipe(_write(tmp_path, BASE))
    with pytest.raises(KDError, match=message):
        resolve(recipe, parse_overrides([override]))


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a=3", "b=[1,2]", "c=x", "d=0.5"]) == {"a": 3, "b": [1, 2], "c": "x", "d": 0.5}
    with pytest.raises(KDError, match="key=value"):
        parse_overrides(["novalue"])


def test_bad_yaml_and_missing_settings(tmp_path):
    with pytest.raises(KDError, match="not valid YAML"):
        read_recipe(_write(tmp_path, "recipe: [unclosed\n"))
    with pytest.raises(KDError, match="exactly: small, full"):
        read_recipe(_write(tmp_path, "recipe: r\npipeline: trigger\nsettings: {small: {}}\n"))
    with pytest.raises(KDError, match="does not exist"):
        read_recipe(tmp_path / "missing.yaml")


def test_ls_lists_every_recipe(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for path in RECIPES:
        assert path.stem in out


def test_run_with_bad_override_is_one_line(capsys):
    code = main(["run", str(RECIPES[0]), "nonsense_key=1", "--out", "/tmp/never-written"])
    assert code == 2
    assert "unknown key 'nonsense_key'" in capsys.readouterr().err
    assert not Path("/tmp/never-written/results.json").exists()
