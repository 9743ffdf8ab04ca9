"""ADC2021-style L1 trigger (Pol et al.; AXOL1TL): dense AE or VAE teacher -> QKeras MLP -> firmware."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..config import PIPELINES
from ..evaluate import comparison_table


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


@PIPELINES.register("trigger")
def trigger(out: Path, data: Optional[str] = None, events: int = 200_000, arch: str = "dense-ae",
            hidden: List[int] = (512, 256, 128), latent: int = 8, score: Optional[str] = None,
            teacher_epochs: int = 40, student_hidden: List[int] = (32, 16), bits: int = 8,
            queries: Optional[Dict[str, float]] = None, reweight: str = "inverse-density",
            student_epochs: int = 100, export: List[str] = ("onnx", "tflite", "fpga"), benchmark: bool = True,
            quick_benchmark: bool = False, seed: int = 0, quiet: bool = False):
    """Run the whole trigger chain in `out`; `data` = an ADC2021 folder or .npz/.csv (default: synthetic)."""
    from .. import api
    out = Path(out)
    if data is None:
        data = out / "data"
        _say(f"[trigger] synthetic ADC2021 data, {events} background events -> {data}", quiet)
        api.synth_adc2021(data, events=events, seed=seed)
    teacher_path = out / "teacher.pt"
    _say(f"[trigger] teacher {arch} -> {teacher_path}", quiet)
    api.train_teacher(data, teacher_path, arch=arch, hidden=list(hidden), latent=latent, epochs=teacher_epochs,
                      score=score, seed=seed, quiet=quiet)
    student_dir = out / "student"
    _say(f"[trigger] student MLP {'-'.join(map(str, student_hidden))}-1, {bits} bits -> {student_dir}", quiet)
    distill_kwargs = {} if queries is None else {"queries": dict(queries)}
    result = api.distill(teacher_path, data, student_dir, hidden=list(student_hidden), quant={"bits": bits,
                         "relu_bits": bits}, reweight=reweight, epochs=student_epochs, seed=seed, quiet=quiet,
                         **distill_kwargs)
    results = {"distill": result, "artefacts": {"teacher": str(teacher_path), "student": str(student_dir)}}
    markdown = ["## Teacher vs student", "", "```", comparison_table(result), "```", ""]
    if export:
        results["export"] = _export(teacher_path, student_dir, data, list(export), out, seed, quiet)
        markdown += _export_lines(results["export"])
    if benchmark:
        report = _benchmark(teacher_path, student_dir, data, out, seed, quick_benchmark, quiet)
        results["artefacts"]["report"] = str(report)
        markdown += ["", f"Benchmark report: {report}/report.md (HTML: {report}/report.html)"]
    return results, "\n".join(markdown)


def _export(teacher_path, student_dir, data, targets, out, seed, quiet) -> dict:
    from ..export import export
    exports = out / "exports"
    _say(f"[trigger] export {', '.join(targets)} -> {exports}", quiet)
    manifest = export(student_dir, targets, out=exports, data=data, seed=seed, quiet=quiet)
    export(teacher_path, ["onnx"], out=out / "teacher_onnx", data=data, seed=seed, quiet=quiet)
    return manifest


def _export_lines(manifest: dict) -> list:
    lines = ["## Exports", "", "| target | path | agreement |", "|---|---|---|"]
    for art in manifest.get("artefacts", []):
        agree = art.get("agreement", {})
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in agree.items() if k != "auroc")
        lines.append(f"| {art['target']} | {art['path']} | {shown} |")
    return lines


def _benchmark(teacher_path, student_dir, data, out, seed, quick, quiet) -> Path:
    from ..bench.report import benchmark
    report = out / "report"
    _say(f"[trigger] benchmark report -> {report}", quiet)
    benchmark(teacher=teacher_path, student=student_dir, data=data, exports=out / "exports", out=report,
              seed=seed, quick=quick, quiet=quiet)
    return report
