"""ADC2021-style L1 trigger (Pol et al.; AXOL1TL): dense AE or VAE teacher -> QKeras MLP -> firmware."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..config import PIPELINES
from ..evaluate import comparison_table


class Steps:
    """Runs named steps with a progress line each, and keeps their timings."""

    def __init__(self, name: str, quiet: bool):
        self.name, self.quiet, self.seconds = name, quiet, {}

    def run(self, step: str, description: str, fn: Callable):
        if not self.quiet:
            print(f"[{self.name}] {step}: {description}", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        result = fn()
        self.seconds[step] = round(time.perf_counter() - begin, 1)
        return result


@PIPELINES.register("trigger")
def trigger(out: Path, data: Optional[str] = None, events: int = 200_000, arch: str = "dense-ae",
            hidden: List[int] = (512, 256, 128), latent: int = 8, score: Optional[str] = None,
            teacher_epochs: int = 40, student: str = "mlp", student_hidden: List[int] = (32, 16), bits: int = 8,
            queries: Optional[Dict[str, float]] = None, reweight: str = "inverse-density",
            active_rounds: int = 0, sparsity: float = 0.0, auto: bool = False, budget_macs: Optional[int] = None,
            student_epochs: int = 100, export: List[str] = ("onnx", "tflite", "fpga"), benchmark: bool = True,
            quick_benchmark: bool = False, rate_khz: float = 1.0, bx_mhz: float = 28.61,
            baseline_epochs: Optional[int] = None, seed: int = 0, quiet: bool = False):
    """Run the whole trigger chain in `out`; `data` = an ADC2021 folder or .npz/.csv (default: synthetic).

    `sparsity`: fraction of the student's weights pruned to zero after training (zero weights cost no MACs).
    `auto`: head, queries, width, active rounds and pruning chosen by label-free fidelity under `budget_macs`
    (default teacher MACs / 50); `student`, `student_hidden`, `queries`, `active_rounds` and `sparsity` are
    then searched."""
    from .. import api
    out, steps = Path(out), Steps("trigger", quiet)
    if data is None:
        data = out / "data"
        steps.run("data", f"synthetic ADC2021, {events:,} background events -> {data}",
                  lambda: api.synth_adc2021(data, events=events, seed=seed))
    teacher_path, student_dir = out / "teacher.pt", out / "student"
    steps.run("teacher", f"{arch} {list(hidden)}, latent {latent}, {teacher_epochs} epochs -> {teacher_path}",
              lambda: api.train_teacher(data, teacher_path, arch=arch, hidden=list(hidden), latent=latent,
                                        epochs=teacher_epochs, score=score, seed=seed, quiet=quiet))
    distill_kwargs = {} if queries is None else {"queries": dict(queries)}
    what = (f"--auto (budget {budget_macs or 'teacher/50'} MACs)" if auto
            else f"{student} {'-'.join(map(str, student_hidden))}-1" + (f", {sparsity:.0%} pruned" if sparsity else ""))
    result = steps.run(
        "distill", f"{what}, {bits} bits -> {student_dir}",
        lambda: api.distill(teacher_path, data, student_dir, student=student, hidden=list(student_hidden),
                            quant={"bits": bits, "relu_bits": bits}, reweight=reweight, epochs=student_epochs,
                            active_rounds=active_rounds, sparsity=sparsity, auto=auto, budget_macs=budget_macs,
                            seed=seed, quiet=quiet, **distill_kwargs))
    results = {"distill": result, "artefacts": {"teacher": str(teacher_path), "student": str(student_dir)}}
    markdown = ["## Teacher vs student", "", "```", comparison_table(result), "```", ""]
    if export:
        manifest = steps.run("export", f"{', '.join(export)} (student), onnx (teacher) -> {out / 'exports'}",
                             lambda: _export(teacher_path, student_dir, data, list(export), out, seed, quiet))
        results["export"] = manifest
        markdown += _export_lines(manifest)
    if benchmark:
        report = out / "report"
        results["report"] = steps.run(
            "benchmark", f"report -> {report}",
            lambda: _benchmark(teacher_path, student_dir, data, out / "exports" if export else None, report, seed,
                               quick_benchmark, rate_khz, bx_mhz, baseline_epochs, quiet))
        results["artefacts"]["report"] = str(report)
        from ..bench.render import headline
        markdown += ["", "## Benchmark (headline)", "", headline(results["report"]), "",
                     f"Benchmark report: {report}/report.md (HTML: {report}/report.html)"]
    results["timings_s"] = steps.seconds
    return results, "\n".join(markdown)


def _export(teacher_path, student_dir, data, targets, out, seed, quiet) -> dict:
    from ..export import export
    manifest = export(student_dir, targets, out=out / "exports" / "student", data=data, seed=seed, quiet=quiet)
    export(teacher_path, ["onnx"], out=out / "exports" / "teacher", data=data, seed=seed, quiet=quiet)
    return manifest


def _export_lines(manifest: dict) -> list:
    lines = ["## Exports (student)", "", "| target | path | agreement |", "|---|---|---|"]
    for art in manifest.get("artefacts", []):
        agree = art.get("agreement", {})
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in agree.items() if not isinstance(v, (dict, list)))
        lines.append(f"| {art['target']} | {art['path']} | {shown} |")
    return lines


def _benchmark(teacher_path, student_dir, data, exports, report, seed, quick, rate_khz, bx_mhz, baseline_epochs,
               quiet) -> dict:
    """`exports`: the folder this run exported to, or None when it exported nothing."""
    from ..bench.report import benchmark
    return benchmark(teacher=teacher_path, student=student_dir, data=data, exports=[exports] if exports else None,
                     out=report,
                     rate_khz=rate_khz, bx_mhz=bx_mhz, seed=seed, quick=quick, baseline_epochs=baseline_epochs,
                     quiet=quiet)
