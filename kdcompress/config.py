"""Recipes: YAML files naming a registered pipeline and its real keyword arguments.

    recipe: NAME                # shown by `kdcompress ls`
    description: one line
    pipeline: REGISTERED_NAME   # a function in kdcompress.pipelines
    args: {...}                 # its keyword arguments (shared by every setting)
    settings:                   # `setting=small|full` picks one; its args override `args`
      small: {...}
      full: {...}

Overrides on the command line are `key=value` (YAML values): `setting=small epochs=3 digits=[0,1]`.
"""
from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

from .errors import KDError
from .registry import Registry

PIPELINES = Registry("pipeline")
TOP_KEYS = {"recipe", "description", "pipeline", "args", "settings"}
SETTINGS = ("small", "full")


def read_recipe(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KDError(f"recipe {path} does not exist")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise KDError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(recipe, dict):
        raise KDError(f"recipe {path} must be a mapping of keys to values")
    unknown = sorted(set(recipe) - TOP_KEYS)
    if unknown:
        raise KDError(f"recipe {path}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in ("recipe", "pipeline"):
        if not isinstance(recipe.get(key), str):
            raise KDError(f"recipe {path}: '{key}' must be a name")
    settings = recipe.get("settings") or {}
    if set(settings) != set(SETTINGS):
        raise KDError(f"recipe {path}: 'settings' must define exactly: {', '.join(SETTINGS)}")
    return recipe


def parse_overrides(items: List[str]) -> Dict[str, object]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KDError(f"override '{item}' must look like key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            raise KDError(f"override '{item}': value is not valid YAML") from None
    return out


def resolve(recipe: dict, overrides: Dict[str, object]) -> Tuple[str, dict]:
    """The setting name and the validated keyword arguments for the recipe's pipeline."""
    overrides = dict(overrides)
    setting = overrides.pop("setting", "full")
    if setting not in SETTINGS:
        raise KDError(f"setting must be one of {', '.join(SETTINGS)}, got '{setting}'")
    args = {**(recipe.get("args") or {}), **(recipe["settings"].get(setting) or {}), **overrides}
    validate_args(recipe["pipeline"], args, recipe["recipe"])
    return setting, args


def validate_args(pipeline_name: str, args: dict, where: str) -> None:
    import kdcompress.pipelines  # noqa: F401  (registers pipelines)
    fn = PIPELINES.get(pipeline_name)
    params = inspect.signature(fn).parameters
    hints = typing.get_type_hints(fn)
    for key, value in args.items():
        if key not in params or key in ("out", "quiet"):
            allowed = ", ".join(k for k in params if k not in ("out", "quiet"))
            raise KDError(f"{where}: unknown key '{key}' (allowed: {allowed})")
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            raise KDError(f"{where}: key '{key}' must be {_type_name(expected)}, got {value!r}")


def _matches(value, expected) -> bool:
    origin = typing.get_origin(expected)
    if origin is typing.Union:
        return any(_matches(value, t) for t in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, typing.List, tuple, typing.Tuple):
        inner = typing.get_args(expected)
        return isinstance(value, (list, tuple)) and (not inner or all(_matches(v, inner[0]) for v in value))
    if origin in (dict, typing.Dict):
        return isinstance(value, dict)
    return isinstance(value, expected) if isinstance(expected, type) else True


def _type_name(expected) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def recipe_summaries(folder) -> List[Tuple[str, str, str]]:
    """(path, name, description) of every recipe in `folder`."""
    rows = []
    for path in sorted(Path(folder).glob("*.yaml")):
        recipe = read_recipe(path)
        rows.append((str(path), recipe["recipe"], recipe.get("description", "")))
    return rows
