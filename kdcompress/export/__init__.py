"""Export a student to ONNX, TFLite and hls4ml FPGA firmware (a teacher to ONNX), each verified against its source.

Every artefact is written into a temporary folder beside `out` and checked on held-out events (background
test split and signals); the folder, with manifest.json, replaces `out` only when every artefact passes.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, List, Union

from ..errors import KDError
from ..fileio import atomic_dir, write_json
from ..registry import EXPORTERS
from . import fpga, onnx, tflite  # noqa: F401  (register the targets)
from .context import STUDENT, TEACHER, ExportContext, load_source, resolve_data
from .fpga import FpgaOptions
from .verify import versions

TARGETS = ("onnx", "tflite", "fpga")
TARGETS_BY_KIND = {STUDENT: TARGETS, TEACHER: ("onnx",)}
ALL = "all"
MANIFEST = "manifest.json"


def export(source, targets: Union[str, Iterable[str]], out=None, data=None, seed: int = 0, hls_config=None,
           backend: str = "Vitis", part=None, clock_period: float = 5.0, reuse_factor: int = 1,
           strategy: str = "Latency", synth: bool = False, quiet: bool = False) -> dict:
    """Export `source` (student folder or teacher file) to `targets`; returns the manifest written to OUT.

    targets: names from onnx, tflite, fpga, all (a list, or a comma-separated string).
    data: Dataset or path; default the data recorded in student.json. out: default <student>/export
    (<teacher>_export for a teacher). hls_config: hls4ml HLSConfig mapping merged over the generated one.
    """
    requested = parse_targets(targets)
    options = FpgaOptions(backend=backend, part=part, clock_period=clock_period, reuse_factor=reuse_factor,
                          strategy=strategy, hls_config=hls_config, synth=synth)
    src = load_source(source)
    names = targets_for(src.kind, requested)
    if synth and "fpga" in names:
        options.require_vendor_tools()
    final = output_folder(source, out)
    _check_output(final, src.path)
    ctx = ExportContext(src, resolve_data(src, data), seed=seed, quiet=quiet, options={"fpga": options},
                        destination=final.resolve())
    if ctx.data.matches_training is False:
        ctx.note(f"warning: {ctx.data.dataset.source} differs from the {src.kind}'s training data; "
                 f"held-out events may have been seen in training")
    with atomic_dir(final) as tmp:
        artefacts = _run_exporters(ctx, names, tmp)
        manifest = {"artefacts": artefacts, "versions": versions(),
                    "source": {**src.describe(), "data": ctx.data.describe(), "seed": seed}}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def parse_targets(targets) -> List[str]:
    """Target names in the order given, duplicates removed; unknown names are a KDError naming them."""
    items = [targets] if isinstance(targets, str) else list(targets or [])
    names = [n.strip().lower() for item in items for n in str(item).split(",") if n.strip()]
    if not names:
        raise KDError(f"no export target given (choose from {', '.join(TARGETS)}, {ALL})")
    unknown = [n for n in names if n not in TARGETS and n != ALL]
    if unknown:
        raise KDError(f"unknown export target(s) {', '.join(repr(n) for n in unknown)} "
                      f"(known: {', '.join(TARGETS)}, {ALL})")
    return list(dict.fromkeys(names))


def targets_for(kind: str, requested: List[str]) -> List[str]:
    allowed = TARGETS_BY_KIND[kind]
    if ALL in requested:
        return list(allowed)
    refused = [n for n in requested if n not in allowed]
    if refused:
        raise KDError(f"a {kind} exports to {', '.join(allowed)} only, not {', '.join(refused)}")
    return requested


def output_folder(source, out=None) -> Path:
    """`out`, else <student folder>/export or <teacher file without suffix>_export."""
    if out is not None:
        return Path(out)
    source = Path(source)
    return source / "export" if source.is_dir() else source.with_name(f"{source.stem}_export")


def _check_output(final: Path, source: Path) -> None:
    """Refuse outputs that would replace something that is not an earlier export, or cannot be written."""
    if final.exists() and not final.is_dir():
        raise KDError(f"output {final} exists and is not a folder")
    blocking = next((p for p in final.absolute().parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise KDError(f"cannot write the export to {final}: {blocking} is a file, not a folder")
    if source.resolve() == final.resolve() or final.resolve() in source.resolve().parents:
        raise KDError(f"output folder {final} would replace the export source {source}")
    if final.is_dir() and any(final.iterdir()) and not (final / MANIFEST).is_file():
        raise KDError(f"output folder {final} is not empty and holds no {MANIFEST}; refusing to replace it")
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{final.name}.probe-", dir=parent))
    except OSError as exc:
        raise KDError(f"cannot write the export to {final}: {exc.strerror or exc}") from None


def _run_exporters(ctx: ExportContext, names: List[str], folder: Path) -> list:
    artefacts = []
    for name in names:
        start = time.perf_counter()
        produced = EXPORTERS.get(name)(ctx, folder)
        ctx.note(f"{name}: done in {time.perf_counter() - start:.1f}s")
        artefacts.extend(produced)
    return artefacts
