"""CICADA-style calorimeter trigger: conv-AE teacher on 18x14 regions -> QKeras CNN/MLP student -> firmware.

The student reads the raw 10-bit ET integers (unsigned 10-bit input, no preprocessing) and outputs
clip(32 ln(teacher MSE), 0, 256) as an unsigned 16-bit number with 8 integer bits, as CICADA does.
Trivial scores (summed ET, hottest region) are reported beside teacher and student for every class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..config import PIPELINES
from ..evaluate import comparison_table, score_sets, summarise_scores
from .trigger import Steps, _export_lines

# firmware interface: raw ET integers in, CICADA score out
CALO_QUANT = {"input_bits": 10, "input_int_bits": 10, "input_signed": False,
              "output_bits": 16, "output_int_bits": 8, "output_signed": False}
TRIVIAL_SCORES = {"et_sum": lambda x: x.sum(axis=1), "max_region": lambda x: x.max(axis=1)}


@PIPELINES.register("cicada-calo")
def cicada_calo(out: Path, data: Optional[str] = None, events: int = 200_000, anomaly_events: Optional[int] = None,
                teacher_hidden: List[int] = (8, 16), latent: int = 16, et_scale: float = 16.0,
                teacher_epochs: int = 20, student: str = "cnn", student_hidden: List[int] = (16,), filters: int = 4,
                bits: int = 8, int_bits: int = 2, relu_bits: int = 8, relu_int_bits: int = 4,
                queries: Optional[Dict[str, float]] = None, reweight: str = "inverse-density",
                student_epochs: int = 60, export: List[str] = ("fpga", "onnx"), benchmark: bool = False,
                quick_benchmark: bool = False, seed: int = 0, quiet: bool = False):
    """Run the calorimeter chain in `out`; `data` = a CaloRegions folder (default: synthetic, `events` zero bias).

    queries: teacher-labelled extra training points (default none: the generic ones leave the integer
    ET lattice that the student's unsigned 10-bit input sees).
    """
    from ..data import load_dataset
    out, steps = Path(out), Steps("cicada-calo", quiet)
    folder = Path(data) if data is not None else out / "data"
    if data is None:
        steps.run("data", f"synthetic calorimeter regions, {events:,} zero-bias events -> {folder}",
                  lambda: _write_synthetic(folder, events, anomaly_events, seed))
    dataset = steps.run("load", f"calorimeter regions from {folder}", lambda: load_dataset(folder))
    teacher_path, student_dir = out / "teacher.pt", out / "student"
    teacher = steps.run(
        "teacher", f"conv-AE {list(teacher_hidden)}, latent {latent}, {teacher_epochs} epochs -> {teacher_path}",
        lambda: _train_teacher(dataset, teacher_path, teacher_hidden, latent, et_scale, teacher_epochs, seed, quiet))
    quant = {**CALO_QUANT, "bits": bits, "int_bits": int_bits, "relu_bits": relu_bits, "relu_int_bits": relu_int_bits}
    result = steps.run(
        "distill", f"{student} {'-'.join(map(str, student_hidden))}-1, unsigned 10-bit ET in, 16-bit score out "
                   f"-> {student_dir}",
        lambda: _distill(teacher, dataset, student_dir, student, student_hidden, filters, quant, queries, reweight,
                         student_epochs, seed, quiet))
    trivial = {name: summarise_scores(score_sets(fn, dataset)) for name, fn in TRIVIAL_SCORES.items()}
    results = {"distill": result, "trivial": trivial, "student_beats_et_sum": _beats(result["student"], trivial),
               "artefacts": {"data": str(folder), "teacher": str(teacher_path), "student": str(student_dir)}}
    markdown = ["## Teacher vs student", "", "```", comparison_table(result), "```", "",
                *_auroc_table(result, trivial), ""]
    if export:
        results["export"] = steps.run(
            "export", f"{', '.join(export)} (student), onnx (teacher) -> {out / 'exports'}",
            lambda: _export(teacher_path, student_dir, dataset, list(export), out, seed, quiet))
        markdown += _export_lines(results["export"])
    if benchmark:
        from ..bench.render import headline
        report = out / "report"
        results["report"] = steps.run(
            "benchmark", f"report -> {report}",
            lambda: _benchmark(teacher_path, student_dir, dataset, out, report, seed, quick_benchmark, quiet))
        results["artefacts"]["report"] = str(report)
        markdown += ["", "## Benchmark (headline)", "", headline(results["report"]), "",
                     f"Benchmark report: {report}/report.md (HTML: {report}/report.html)"]
    results["timings_s"] = steps.seconds
    markdown += ["", "Run time: " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.seconds.items())]
    return results, "\n".join(markdown)


def _write_synthetic(folder: Path, events: int, anomaly_events: Optional[int], seed: int) -> None:
    from ..data.synth_calo import write_dataset
    write_dataset(folder, events=events, seed=seed, anomaly_events=anomaly_events)


def _train_teacher(dataset, path, hidden, latent, et_scale, epochs, seed, quiet):
    from ..teachers.calo_ae import train_calo_teacher
    return train_calo_teacher(dataset, path, hidden=list(hidden), latent=latent, et_scale=et_scale, epochs=epochs,
                              seed=seed, quiet=quiet)


def _distill(teacher, dataset, folder, student, hidden, filters, quant, queries, reweight, epochs, seed, quiet):
    from .. import api
    kwargs = ({"input_shape": list(dataset.extra.get("image_shape", (18, 14, 1))), "filters": filters}
              if student == "cnn" else {})
    return api.distill(teacher, dataset, folder, student=student, hidden=list(hidden), student_kwargs=kwargs,
                       preprocess="none", target="cicada", quant=quant, queries=dict(queries or {}),
                       reweight=reweight, epochs=epochs, seed=seed, quiet=quiet)


def _beats(student: dict, trivial: dict) -> List[str]:
    """Classes on which the student's AUROC is above the summed-ET score's."""
    return [name for name, row in student.items() if row["auroc"] > trivial["et_sum"][name]["auroc"]]


def _auroc_table(result: dict, trivial: dict) -> list:
    lines = ["## AUROC per anomaly class", "", "| class | teacher | student | ET sum | hottest region |",
             "|---|---|---|---|---|"]
    for name in result["teacher"]:
        values = [result["teacher"][name], result["student"][name], trivial["et_sum"][name],
                  trivial["max_region"][name]]
        lines.append(f"| {name} | " + " | ".join(f"{v['auroc']:.4f}" for v in values) + " |")
    return lines


def _export(teacher_path, student_dir, dataset, targets, out, seed, quiet) -> dict:
    """Student to `targets` (fpga: bit-exact C simulation required) and the teacher to ONNX."""
    from ..export import export
    manifest = export(student_dir, targets, out=out / "exports" / "student", data=dataset, seed=seed, quiet=quiet)
    export(teacher_path, ["onnx"], out=out / "exports" / "teacher", data=dataset, seed=seed, quiet=quiet)
    return manifest


def _benchmark(teacher_path, student_dir, dataset, out, report, seed, quick, quiet) -> dict:
    from ..bench.report import benchmark
    return benchmark(teacher=teacher_path, student=student_dir, data=dataset, exports=[out / "exports"], out=report,
                     seed=seed, quick=quick, quiet=quiet)
