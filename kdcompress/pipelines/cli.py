"""`kdcompress run RECIPE [key=value ...]` and `kdcompress ls`."""
from __future__ import annotations

import time
from pathlib import Path

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def default_recipe_dir() -> Path:
    local = Path.cwd() / "recipes"
    return local if local.is_dir() else REPO_RECIPES


def add_parsers(verbs) -> None:
    run = verbs.add_parser("run", help="run a recipe end to end (recipes/NAME.yaml)")
    run.add_argument("recipe", help="recipe path, or a name from `kdcompress ls`")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. setting=small epochs=3")
    run.add_argument("--out", default=None, help="output folder (default out/<recipe>)")
    run.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(run=_run)
    ls = verbs.add_parser("ls", help="list the recipes")
    ls.add_argument("--dir", default=None, help="recipe folder (default ./recipes or the shipped one)")
    ls.set_defaults(run=_ls)


def resolve_recipe_path(text: str) -> Path:
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return default_recipe_dir() / f"{text}.yaml"


def _run(a) -> None:
    from .run import run_recipe
    start = time.perf_counter()
    path = resolve_recipe_path(a.recipe)
    out, markdown = run_recipe(path, a.overrides, out=a.out, seed=a.seed, quiet=a.quiet)
    print(markdown)
    print(f"results in {out}/results.json and {out}/results.md ({time.perf_counter() - start:.0f}s)")


def _ls(a) -> None:
    from ..config import recipe_summaries
    folder = Path(a.dir) if a.dir else default_recipe_dir()
    for path, name, description in recipe_summaries(folder):
        print(f"{name:<16} {description}  ({path})")
