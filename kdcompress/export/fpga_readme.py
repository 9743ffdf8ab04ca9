"""Files written beside the hls4ml project: README.md (types, feature encoding, score) and hls4ml_config.yml."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .describe import PREPROCESSING_FORMULA, SCORE_INVERSES


def fixed_point_type(project: Path, variable) -> dict:
    """The C++ type of a top-level port (as typedef'd in firmware/defines.h) and its fixed-point layout."""
    precision = variable.type.precision
    fractional = int(precision.width) - int(precision.integer)
    signed = bool(precision.signed)
    lowest = -(2 ** (precision.width - 1)) if signed else 0
    highest = 2 ** (precision.width - 1) - 1 if signed else 2 ** precision.width - 1
    return {"cpp": _typedef(project, variable.type.name) or str(precision),
            "width": int(precision.width), "integer": int(precision.integer), "fractional": fractional,
            "signed": signed, "rounding": str(precision.rounding_mode), "saturation": str(precision.saturation_mode),
            "code_range": [lowest, highest],
            "encoding": f"value = code * 2**-{fractional}, code an integer in [{lowest}, {highest}]"}


def _typedef(project: Path, name: str):
    defines = project / "firmware" / "defines.h"
    if not defines.is_file():
        return None
    match = re.search(rf"typedef\s+(.+?)\s+{re.escape(name)}\s*;", defines.read_text())
    return match.group(1) if match else None


class _KerasModelFile(str):
    """Marks the keras model entry so it is written with hls4ml's !keras_model tag."""


class _ConfigDumper(yaml.SafeDumper):
    pass


_ConfigDumper.add_representer(_KerasModelFile, lambda dumper, path: dumper.represent_scalar("!keras_model", path))


def write_final_config(hls_model, project: Path, final_project: Path) -> None:
    """Rewrite hls4ml's hls4ml_config.yml so its paths name the project's final location, not the staging
    folder (hls4ml.utils.link.FilesystemModelGraph reads OutputDir, relative paths would follow the cwd)."""
    config = dict(hls_model.config.config)
    config["OutputDir"] = str(final_project)
    config["KerasModel"] = _KerasModelFile(str(final_project / "keras_model.keras"))
    (project / "hls4ml_config.yml").write_text(yaml.dump(config, Dumper=_ConfigDumper, sort_keys=True))


def _feature_table(student, input_type: dict) -> list:
    prep = student.preprocessing
    names = student.meta.get("feature_names") or [f"x{i}" for i in range(prep.n_features)]
    frac = input_type["fractional"]
    rows = ["| # | feature | offset | shift | code = round((x - offset) * 2**k), k = |",
            "|---|---|---|---|---|"]
    for i, (name, offset, shift) in enumerate(zip(names, prep.offset, prep.shift)):
        rows.append(f"| {i} | {name} | {offset:.9g} | {shift} | {shift + frac} |")
    return rows


def layer_types(hls_model) -> list:
    """Markdown rows: every hls4ml layer with its resolved types ('auto' replaced by what hls4ml inferred)."""
    rows = ["| layer | kind | types |", "|---|---|---|"]
    for layer in hls_model.get_layers():
        types = ", ".join(f"`{name}` {precision.precision}" for name, precision in layer.get_layer_precision().items())
        rows.append(f"| {layer.name} | {layer.class_name} | {types} |")
    return rows


def _settings_yaml(settings: dict, config: dict) -> str:
    full = {"Backend": settings["backend"], "Part": settings["part"], "ClockPeriod": settings["clock_period_ns"],
            "IOType": settings["io_type"], "ProjectName": settings["project_name"], "HLSConfig": config}
    return yaml.safe_dump(full, sort_keys=False)


def _output_lines(student, output_type: dict) -> list:
    transform = student.meta.get("score_transform", "identity")
    output_transform = student.meta.get("output_transform", "none")
    scale = f"code * 2**-{output_type['fractional']}"
    if output_transform in (None, "none"):
        return [f"One value of type `{output_type['cpp']}`: score `s = {scale}`.",
                f"The student regresses `{transform}(teacher score)`; higher = more anomalous. "
                f"{SCORE_INVERSES.get(transform, '')}. Trigger thresholds can be applied to the code directly."]
    return [f"One value of type `{output_type['cpp']}`: `E = {scale}`, and the score is "
            f"`s = {output_transform}(E)`, which regresses `{transform}(teacher score)`; higher = more anomalous. "
            f"{SCORE_INVERSES.get(transform, '')}.",
            "Both maps are monotone, so trigger thresholds can be applied to the code directly."]


def write_readme(project: Path, hls_model, student, source, config: dict, settings: dict, input_type: dict,
                 output_type: dict, check: dict) -> None:
    n_features = student.preprocessing.n_features
    lines = [
        f"# FPGA firmware of the kdcompress student `{source.path.name}`",
        "",
        f"hls4ml {settings['backend']} project (`{settings['project_name']}`), io_parallel, part "
        f"`{settings['part']}`, clock {settings['clock_period_ns']} ns, strategy {settings['strategy']}, "
        f"reuse factor {settings['reuse_factor']}. Generated by `kdcompress export` from `{source.path}`.",
        "",
        "## Input",
        "",
        f"{n_features} values of type `{input_type['cpp']}` "
        f"({input_type['width']} bits, {input_type['integer']} integer bits including the sign, "
        f"{input_type['fractional']} fractional bits, rounding {input_type['rounding']}, "
        f"saturation {input_type['saturation']}).",
        "",
        f"Each raw feature x is first preprocessed, `{PREPROCESSING_FORMULA}`, then quantized to the input type:",
        f"`code = clip(round_half_even(x' * 2**{input_type['fractional']}), {input_type['code_range'][0]}, "
        f"{input_type['code_range'][1]})`, i.e. the integer on the wire is "
        f"`round((x - offset) * 2**k)` with `k = shift + {input_type['fractional']}` (a bit shift when offset is 0).",
        "This is exactly what the QKeras student's input quantizer does, so firmware and QKeras see the same input.",
        "",
        *_feature_table(student, input_type),
        "",
        "## Output",
        "",
        *_output_lines(student, output_type),
        "",
        "## Verification",
        "",
        f"C simulation (`hls_model.predict`) against the QKeras student on {check['events']} held-out events "
        f"(background test split and signals), inputs quantized as above: bit-exact fraction "
        f"{check['bit_exact_fraction']:.6f}, max |diff| {check['max_abs_diff']:.3g}.",
        "",
        "## Types per layer (after hls4ml's optimizers)",
        "",
        *layer_types(hls_model),
        "",
        "## Build",
        "",
        "Synthesis needs the vendor tools: `vitis-run --tcl build_prj.tcl --mode hls` (Vitis) or "
        "`vivado_hls -f build_prj.tcl` (Vivado), or `hls4ml.utils.link.FilesystemModelGraph(<this folder>).build()`",
        "(`.compile()` then `.predict(x)` rebuilds the C simulation library, which is not shipped).",
        "",
        "## hls4ml configuration used (also in hls4ml_config.yml)",
        "",
        "```yaml",
        _settings_yaml(settings, config).rstrip(),
        "```",
        "",
    ]
    (project / "README.md").write_text("\n".join(lines))
