"""Run a recipe: resolve setting and overrides, call the pipeline, write results.json and results.md."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from .. import __version__
from ..config import PIPELINES, parse_overrides, read_recipe, resolve
from ..fileio import write_json, write_text


def run_recipe(path, overrides: List[str], out: Optional[str] = None, seed: int = 0, quiet: bool = False):
    """Returns (output folder, results markdown). Artefacts are each written atomically inside `out`."""
    recipe = read_recipe(path)
    setting, args = resolve(recipe, parse_overrides(overrides))
    args.setdefault("seed", seed)
    out = Path(out or Path("out") / recipe["recipe"])
    return run_recipe_args(recipe["recipe"], recipe["pipeline"], args, out, setting=setting, quiet=quiet,
                           description=recipe.get("description", ""), source=str(path))


def run_recipe_args(name: str, pipeline: str, args: dict, out: Path, setting: str = "full", quiet: bool = False,
                    description: str = "", source: str = "built-in"):
    out.mkdir(parents=True, exist_ok=True)
    results, markdown = PIPELINES.get(pipeline)(out=out, quiet=quiet, **args)
    header = (f"# {name} ({setting} setting)\n\n{description}\n\n"
              f"kdcompress {__version__}, seed {args.get('seed', 0)}, recipe {source}\n\n")
    write_json(out / "results.json", {"recipe": name, "setting": setting, "args": args, **results})
    write_text(out / "results.md", header + markdown + "\n")
    return out, markdown
