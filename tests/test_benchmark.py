"""`kdcompress benchmark`: report contract, rate threshold end to end, sizes, exports, bad inputs, atomicity."""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from kdcompress import KDError, load_dataset
from kdcompress.bench import metrics
from kdcompress.bench.baseline import autoencoder_params, matching_shape
from kdcompress.bench.latency import Budget, batch_throughput, single_event_latency, time_calls
from kdcompress.bench.report import benchmark

BX_MHZ = 28.61
TEST_EVENTS = 600  # conftest tabular file: 3000 normal rows, 60/20/20 split
PASSING = 5  # the rate below lets exactly 5 of the 600 background test events through
RATE_KHZ = PASSING / TEST_EVENTS * BX_MHZ * 1e3
ROW_KEYS = {"model", "runtime", "params", "nonzero_params", "bytes", "macs", "bops", "p50_us", "p99_us",
            "events_per_s", "auroc", "tpr_at_fpr_1e-5", "tpr_at_fpr_1e-4", "rate", "ratios_vs_teacher"}


def _strict_json(path):
    """Parse JSON, refusing NaN / Infinity."""
    def refuse(constant):
        raise AssertionError(f"{path} contains {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_student(tiny_teacher, tabular_file, tmp_path_factory):
    from kdcompress.api import distill
    out = tmp_path_factory.mktemp("bench_student") / "student"
    distill(tiny_teacher, tabular_file, out, hidden=[8], epochs=15, seed=1, quiet=True, queries={"noise": 1.0})
    return out


@pytest.fixture(scope="module")
def quick_report(tiny_teacher, tiny_student, tabular_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report"
    report = benchmark(tiny_teacher, tiny_student, tabular_file, out, rate_khz=RATE_KHZ, bx_mhz=BX_MHZ, quick=True,
                       baseline_epochs=2, quiet=True)
    return out, report


# ---------------------------------------------------------------- report contract

def test_report_files_and_json_contract(quick_report):
    out, report = quick_report
    assert {"report.json", "report.md", "report.html", "plots", "baseline.pt"} <= {p.name for p in out.iterdir()}
    on_disk = _strict_json(out / "report.json")
    assert on_disk["rows"] == json.loads(json.dumps(report["rows"]))
    assert on_disk["machine"]["matmul_gflops"] > 0
    assert {"python", "torch", "tensorflow", "qkeras", "hls4ml", "onnxruntime", "numpy", "kdcompress"} <= set(
        on_disk["versions"])
    assert on_disk["data"]["fingerprint"] == load_dataset(str(on_disk["data"]["source"])).fingerprint()
    pairs = [(r["model"], r["runtime"]) for r in on_disk["rows"]]
    assert pairs == [("teacher", "torch"), ("student", "keras"), ("baseline", "torch")]
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row), row["model"]
        assert set(row["auroc"]) == {"anomaly"} and 0 <= row["auroc"]["anomaly"] <= 1
        assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"] and row["events_per_s"] > 0
    tracked = on_disk["tracking"]
    assert tracked["background"]["events"] == TEST_EVENTS and set(tracked["signals"]) == {"anomaly"}
    within, above = tracked["signals"]["anomaly"]["within"], tracked["signals"]["anomaly"]["above"]
    assert within["fraction"] + above["fraction"] == pytest.approx(1.0)


def test_detection_section_shows_how_the_student_tracks_the_teacher(quick_report):
    out, report = quick_report
    text = (out / "report.md").read_text()
    header, rows = _md_table_rows(text, "Student minus teacher at equal teacher score (background: mean "
                                  f"|student - teacher| {report['tracking']['background']['mean_abs_residual']:.3f})")
    assert [row[0] for row in rows] == ["anomaly"] and "bias there" in header
    assert [f["file"] for f in report["figures"] if f["kind"] == "tracking"] == ["plots/tracking.png"]
    assert text.index("plots/tracking.png") < text.index("## Trigger rate")  # drawn in the Detection section


def test_sizes_and_ratios(quick_report, tiny_student, tiny_teacher):
    _, report = quick_report
    rows = {(r["model"], r["runtime"]): r for r in report["rows"]}
    teacher, student = rows["teacher", "torch"], rows["student", "keras"]
    # student 12 -> QDense(8) -> QDense(1); 16-bit input quantizer, 8-bit weights and 8-bit ReLU
    assert student["params"] == 12 * 8 + 8 + 8 + 1 and student["macs"] == 12 * 8 + 8 * 1
    assert student["bops"] == 12 * 8 * 8 * 16 + 8 * 1 * 8 * 8 and student["bops_basis"] == "quantizers"
    assert student["bytes"] == (tiny_student / "model.h5").stat().st_size
    assert teacher["bytes"] == tiny_teacher.stat().st_size
    assert teacher["bops"] == teacher["macs"] * 32 * 32
    assert student["ratios_vs_teacher"]["params"] == pytest.approx(teacher["params"] / student["params"])
    assert teacher["ratios_vs_teacher"]["p50_speedup"] == 1.0
    baseline = report["models"]["baseline"]
    assert rows["baseline", "torch"]["params"] == baseline["params"]
    assert abs(baseline["params"] - student["params"]) <= 12 * 2 + 2 * 4 + 2  # within one hidden unit
    assert student["matmul_fraction"] == pytest.approx(
        2 * student["macs"] * student["events_per_s"] / (report["machine"]["matmul_gflops"] * 1e9))


def test_rate_threshold_end_to_end(quick_report, tiny_teacher, tabular_file):
    from kdcompress.teachers import load_teacher
    _, report = quick_report
    data = load_dataset(tabular_file)
    assert len(data.test) == TEST_EVENTS and report["rate"]["resolved"]
    background = load_teacher(tiny_teacher).score(data.test)
    signal = load_teacher(tiny_teacher).score(data.signals["anomaly"])
    teacher = next(r for r in report["rows"] if (r["model"], r["runtime"]) == ("teacher", "torch"))
    threshold = teacher["rate"]["threshold"]
    assert threshold == pytest.approx(metrics.threshold_for_rate(background, RATE_KHZ, BX_MHZ), rel=1e-6)
    assert int(np.sum(background > threshold)) == PASSING
    assert teacher["rate"]["background_rate_khz"] == pytest.approx(RATE_KHZ)
    assert teacher["rate"]["efficiency"]["anomaly"] == pytest.approx(np.mean(signal > threshold), abs=1e-9)
    for row in report["rows"]:  # no model exceeds the rate (ties at a quantized threshold pass fewer)
        assert row["rate"]["background_rate_khz"] <= RATE_KHZ * (1 + 1e-9)


def test_html_is_self_contained_and_markdown_has_tables(quick_report):
    out, report = quick_report
    page = (out / "report.html").read_text()
    n_figures = len(report["figures"])
    assert n_figures == 1 + 3 + 1  # ROC overlay for the one signal, score histogram per model, tracking
    assert page.count('<img src="data:image/png;base64,') == n_figures
    assert 'src="plots/' not in page and "<table>" in page
    text = (out / "report.md").read_text()
    assert "| model | runtime |" in text and "|---|---|" in text
    assert all(f"]({f['file']})" in text for f in report["figures"])
    assert all((out / f["file"]).is_file() for f in report["figures"])


# ---------------------------------------------------------------- distillation record

@pytest.fixture(scope="module")
def auto_student(tiny_teacher, tabular_file, tmp_path_factory):
    """A student chosen by `distill --auto` over a shrunk search (2 strategies x 2 heads, then a smaller width)."""
    from kdcompress.api import distill
    from kdcompress.distill import auto
    out = tmp_path_factory.mktemp("bench_auto") / "student"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auto, "STRATEGIES", {"none": {}, "noise": {"noise": 1.0}})
        patch.setattr(auto, "WIDTHS", ((4, 2), (8, 4)))
        patch.setattr(auto, "SEARCH_EPOCHS", 2)
        distill(tiny_teacher, tabular_file, out, auto=True, budget_macs=10_000, epochs=3, min_queries=2000, seed=0,
                quiet=True)
    return out


FIDELITY_KEYS = ("spearman", "spearman_normal", "top_1pct_auroc", "top_0.1pct_auroc")


def _md_table_rows(text, caption):
    """The body rows (as cell lists) of the Markdown table under **caption**."""
    lines = text.splitlines()
    start = lines.index(f"**{caption}**") + 2  # caption, blank line, header
    rows = []
    for line in lines[start + 2:]:  # after the header and the alignment line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return lines[start], rows


def test_distillation_section_shows_auto_selection_and_ablation(tiny_teacher, auto_student, tabular_file, tmp_path):
    recorded = json.loads((auto_student / "metrics.json").read_text())
    report = benchmark(tiny_teacher, auto_student, tabular_file, tmp_path / "report", quick=True, baseline=False,
                       quiet=True)
    on_disk = _strict_json(tmp_path / "report" / "report.json")["distillation"]
    assert on_disk == json.loads(json.dumps(report["distillation"]))
    assert on_disk["fidelity"] == recorded["fidelity"]
    assert on_disk["selection"] == {k: recorded["selection"][k] for k in ("criterion", "budget", "search_events",
                                                                          "chosen")}
    assert on_disk["selection"]["budget"] == {"macs": 10_000, "bops": None}
    assert on_disk.get("active_rounds") == recorded["training"].get("active_rounds")
    ablation = on_disk["ablation"]
    assert len(ablation) == len(recorded["ablation"]) == 7  # 2 strategies x 2 heads, the best at (4, 2), 2 active
    assert ablation == recorded["ablation"]  # `distill --auto` flags the chosen row itself
    chosen = recorded["selection"]["chosen"]
    marked = [row for row in ablation if row["chosen"]]
    assert len(marked) == 1
    assert ([marked[0][k] for k in ("head", "queries", "hidden", "active")]
            == [chosen[k] for k in ("head", "queries", "hidden", "active")])
    assert marked[0]["rank"] == max(row["rank"] for row in ablation)

    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Distillation" in text
    fidelity_header, fidelity_rows = _md_table_rows(text, "Fidelity to the teacher")
    assert fidelity_header == "| Spearman | Spearman (normal events) | top-1% AUROC | top-0.1% AUROC |"
    assert fidelity_rows == [[f"{recorded['fidelity'][k]:.4f}" for k in FIDELITY_KEYS]]
    assert (f"head `{chosen['head']}`, queries `{chosen['queries']}`, hidden "
            f"{'-'.join(map(str, chosen['hidden']))}, active rounds `{chosen['active']}`, not pruned "
            f"({chosen['macs']:,} MACs") in text
    assert "(budget: 10,000 MACs)" in text and recorded["selection"]["criterion"] in text
    assert "for evaluation only: these AUROCs were never used in the choice" in text
    header, rows = _md_table_rows(text, "Search (ablation)")
    assert header == ("| chosen | head | queries | hidden | active | pruned | MACs | BOPs | Spearman "
                      "| Spearman (normal events) "
                      "| top-1% AUROC | top-0.1% AUROC "
                      "| rank | AUROC anomaly (evaluation only) |")
    expected = [["★" if mine["chosen"] else "", row["head"], row["queries"], "-".join(map(str, row["hidden"])),
                 row["active"], "0%", f"{row['macs']:,}", f"{row['bops']:,}"]
                + [f"{row['fidelity'][k]:.4f}" for k in FIDELITY_KEYS]
                + [f"{row['rank']:.4f}", f"{row['auroc']['anomaly']:.4f}"]
                for row, mine in zip(recorded["ablation"], ablation)]
    assert rows == expected
    assert sum(row[0] == "★" for row in rows) == 1
    assert ("Active query rounds" in text) == (chosen["active"] != "none")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Distillation</h2>" in page and "<caption>Search (ablation)</caption>" in page
    assert page.count("<td>★</td>") == 1
    figure = tmp_path / "report" / "plots" / "selection.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "plots/selection.png" in text
    assert page.count('<img src="data:image/png;base64,') == len(report["figures"])


def test_distillation_section_without_auto_has_fidelity_only(quick_report, tiny_student):
    out, report = quick_report
    recorded = json.loads((tiny_student / "metrics.json").read_text())
    assert "selection" not in recorded and "ablation" not in recorded
    distillation = _strict_json(out / "report.json")["distillation"]
    assert distillation == {"source": str(tiny_student / "metrics.json"), "fidelity": recorded["fidelity"],
                            "teacher_memorisation": recorded["teacher_memorisation"]}
    text = (out / "report.md").read_text()
    _, fidelity_rows = _md_table_rows(text, "Fidelity to the teacher")
    assert fidelity_rows == [[f"{recorded['fidelity'][k]:.4f}" for k in FIDELITY_KEYS]]
    assert "not chosen by `distill --auto`" in text
    memo = recorded["teacher_memorisation"]
    assert f"ratio {memo['ratio']:.2f}" in text and ("memorised its training events" in text) == memo["memorised"]
    assert "**Search (ablation)**" not in text and "| chosen |" not in text and "evaluation only" not in text
    assert "Search (ablation)" not in (out / "report.html").read_text()
    assert not (out / "plots" / "selection.png").exists()


def test_distillation_record_tolerates_missing_and_partial_metrics(quick_report, tmp_path):
    from kdcompress.bench import render
    from kdcompress.bench.report import _describe_distillation
    assert _describe_distillation(tmp_path) is None  # no metrics.json
    (tmp_path / "metrics.json").write_text("{not json")
    assert _describe_distillation(tmp_path) is None
    rounds = [{"round": 1, "method": "sampled", "added": 180, "mean_gap_before": 0.31, "mean_gap_after": 0.12}]
    trial = {"head": "mlp", "queries": {"noise": 0.5, "mixup": 0.5}, "hidden": [8, 4], "macs": 140}
    partial = {"training": {"epochs_run": 3, "active_rounds": rounds},  # no fidelity; a trial with few keys
               "selection": {"chosen": trial, "tried": [trial, {**trial, "head": "energy"}]}}
    (tmp_path / "metrics.json").write_text(json.dumps(partial))
    record = _describe_distillation(tmp_path)
    assert set(record) == {"source", "selection", "ablation", "active_rounds"}
    assert record["active_rounds"] == rounds and record["selection"] == {"chosen": trial}
    assert [r["chosen"] for r in record["ablation"]] == [True, False]  # "tried" stands in for the ablation

    _, report = quick_report
    text = render.markdown({**report, "distillation": record})
    _, rows = _md_table_rows(text, "Search (ablation)")
    # records from before pruning
    assert rows[0][:8] == ["★", "mlp", "noise 0.5 + mixup 0.5", "8-4", "—", "—", "140", "—"]
    assert rows[1][:2] == ["", "energy"] and "evaluation only" not in text
    assert "(budget: none recorded)" in text
    assert _md_table_rows(text, "Active query rounds")[1] == [["1", "sampled", "180", "0.3100", "0.1200"]]
    assert "**Fidelity to the teacher**" not in text
    assert "No readable metrics.json" in render.markdown({**report, "distillation": None})
    assert "No readable metrics.json" in render.markdown({k: v for k, v in report.items() if k != "distillation"})


# ---------------------------------------------------------------- exported artefacts

def test_exported_artefacts_are_rows_beside_their_model(tiny_teacher, tiny_student, tabular_file, tmp_path):
    from kdcompress.export import export
    export(tiny_student, ["all"], out=tmp_path / "exports" / "student", data=tabular_file, quiet=True)
    export(tiny_teacher, ["onnx"], out=tmp_path / "exports" / "teacher", data=tabular_file, quiet=True)
    report = benchmark(tiny_teacher, tiny_student, tabular_file, tmp_path / "report", exports=[tmp_path / "exports"],
                       quick=True, baseline=False, batch_threads=1, quiet=True)
    rows = {(r["model"], r["runtime"]): r for r in report["rows"]}
    assert rows["student", "onnxruntime"]["threads"] == {"single_event": 1, "batch": 1}
    assert list(rows) == [("teacher", "torch"), ("teacher", "onnxruntime"), ("student", "keras"),
                          ("student", "onnxruntime"), ("student", "tflite-float"), ("student", "tflite-int8"),
                          ("student", "hls4ml-csim")]
    for key in [("teacher", "onnxruntime"), ("student", "onnxruntime"), ("student", "tflite-float")]:
        assert rows[key]["agreement"]["max_rel_diff"] <= 1e-4, key
        assert rows[key]["auroc"]["anomaly"] == pytest.approx(rows[key[0], "torch" if key[0] == "teacher" else "keras"]
                                                              ["auroc"]["anomaly"], abs=1e-3)
    int8 = rows["student", "tflite-int8"]
    assert int8["bops"] == int8["macs"] * 64 and int8["nonzero_params"] is None
    assert int8["bytes"] == (tmp_path / "exports" / "student" / "student_int8.tflite").stat().st_size
    csim = rows["student", "hls4ml-csim"]
    assert csim["for_speed"] is False and csim["agreement"]["identical_fraction"] == 1.0  # bit-exact firmware
    assert report["models"]["baseline"] is None
    _strict_json(tmp_path / "report" / "report.json")


def test_energy_student_int16x8_artefact_is_a_row(tiny_teacher, tabular_file, tmp_path):
    from kdcompress.api import distill
    from kdcompress.export import export
    student = tmp_path / "energy"
    distill(tiny_teacher, tabular_file, student, student="energy", hidden=[8, 4], epochs=3, quiet=True)
    export(student, ["tflite"], out=tmp_path / "exports", data=tabular_file, quiet=True)
    report = benchmark(tiny_teacher, student, tabular_file, tmp_path / "report", exports=[tmp_path / "exports"],
                       quick=True, baseline=False, batch_threads=1, quiet=True)
    rows = {(r["model"], r["runtime"]): r for r in report["rows"]}
    assert [key for key in rows if key[0] == "student"] == [("student", "keras"), ("student", "tflite-float"),
                                                             ("student", "tflite-int16x8")]
    quantized = rows["student", "tflite-int16x8"]
    assert quantized["bops"] == quantized["macs"] * 8 * 16 and quantized["bops_basis"] == "int16x8"
    assert quantized["bytes"] == (tmp_path / "exports" / "student_int16x8.tflite").stat().st_size
    assert quantized["auroc"]["anomaly"] == pytest.approx(rows["student", "keras"]["auroc"]["anomaly"], abs=0.01)


def test_exports_of_another_student_are_refused(tiny_teacher, tiny_student, tabular_file, tmp_path):
    (tmp_path / "exports").mkdir()
    manifest = {"artefacts": [], "source": {"kind": "student", "sha256": "0" * 64}}
    (tmp_path / "exports" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KDError, match="different student"):
        benchmark(tiny_teacher, tiny_student, tabular_file, tmp_path / "report", exports=tmp_path / "exports",
                  quick=True, baseline=False, quiet=True)
    assert not (tmp_path / "report").exists()


# ---------------------------------------------------------------- bad inputs, atomicity

@pytest.mark.parametrize("broken, message", [("student", "student folder"), ("data", "data path"),
                                             ("teacher", "teacher file"), ("exports", "exports folder")])
def test_bad_inputs_are_one_line_errors(broken, message, tiny_teacher, tiny_student, tabular_file, tmp_path):
    paths = {"teacher": tiny_teacher, "student": tiny_student, "data": tabular_file, "exports": None}
    paths[broken] = tmp_path / "missing"
    with pytest.raises(KDError, match=message) as info:
        benchmark(paths["teacher"], paths["student"], paths["data"], tmp_path / "report", exports=paths["exports"],
                  quick=True, quiet=True)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the report's parent


@pytest.mark.parametrize("rate, bx", [(0.0, 28.61), (-1.0, 28.61), (40_000.0, 28.61), (1.0, 0.0), (math.nan, 28.61)])
def test_bad_rates_are_refused(rate, bx, tiny_teacher, tiny_student, tabular_file, tmp_path):
    with pytest.raises(KDError):
        benchmark(tiny_teacher, tiny_student, tabular_file, tmp_path / "report", rate_khz=rate, bx_mhz=bx, quiet=True)


def test_failure_leaves_nothing_half_written(tiny_teacher, tiny_student, tabular_file, tmp_path, monkeypatch):
    from kdcompress.bench import render
    previous = tmp_path / "report"
    previous.mkdir()
    (previous / "report.json").write_text("{}")

    def broken_markdown(report, image_prefix=""):
        raise KDError("simulated failure while writing the report")

    monkeypatch.setattr(render, "markdown", broken_markdown)
    with pytest.raises(KDError, match="simulated"):
        benchmark(tiny_teacher, tiny_student, tabular_file, previous, quick=True, baseline_epochs=1, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folder left beside it
    assert [p.name for p in previous.iterdir()] == ["report.json"]  # the earlier report is untouched


def test_cli_parser_and_one_line_error(tiny_teacher, tabular_file, tmp_path, capsys):
    from kdcompress.bench.cli import add_parser
    parser = argparse.ArgumentParser(prog="kdcompress")
    add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["benchmark", "--teacher", str(tiny_teacher), "--student", str(tmp_path / "nope"),
                              "--data", str(tabular_file), "--out", str(tmp_path / "r"), "--rate-khz", "2.5",
                              "--bx-mhz", "40", "--quick", "--exports", "a", "--exports", "b", "--batch-threads", "1"])
    assert (args.rate_khz, args.bx_mhz, args.quick) == (2.5, 40.0, True)
    assert (args.exports, args.batch_threads) == (["a", "b"], 1)
    with pytest.raises(KDError, match="student folder"):
        args.run(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--teacher", "t", "--student", "s", "--data", "d", "--out", "o",
                           "--rate-khz", "-1"])


# ---------------------------------------------------------------- pieces

def test_baseline_shape_matches_budget_and_torch_count():
    from kdcompress.bench.size import torch_param_count
    from kdcompress.teachers.models import DenseAE
    assert autoencoder_params(57, 18, 8) == torch_param_count(DenseAE(57, hidden=[18], latent=8))
    shape = matching_shape(57, 2401)
    assert (shape.hidden, shape.latent, shape.params) == (18, 8, 2441)
    for hidden in (shape.hidden - 1, shape.hidden + 1):
        assert abs(autoencoder_params(57, hidden, 8) - 2401) >= abs(shape.params - 2401)
    tiny = matching_shape(12, 40, latent=8)  # one hidden unit with latent 8 is over budget: latent shrinks
    assert tiny.latent < 8 and tiny.hidden == 1


def test_latency_measurement_is_bounded():
    start = time.perf_counter()
    ns = time_calls(lambda x: time.sleep(0.02), [0], seconds=0.05, warmup_s=0.01, min_calls=1000)
    assert time.perf_counter() - start < 0.5  # min_calls gives way to the 3x time cap
    assert ns.size >= 2 and np.all(ns >= 0.02e9)
    events = np.zeros((10, 3), dtype=np.float32)
    single = single_event_latency(lambda x: x.sum(), events, Budget.quick())
    assert 0 < single["p50_us"] <= single["p99_us"]
    batch = batch_throughput(lambda x: x.sum(), events, Budget.quick())
    assert batch["batch_size"] == Budget.quick().batch_size and batch["events_per_s"] > 0


def test_suite_gate(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives at the repo root
    from benchmarks.run import auroc_failures
    from benchmarks.suites import SUITES
    assert {"ci", "full"} <= set(SUITES) and SUITES["ci"].events < SUITES["full"].events
    report = {"rows": [{"model": "teacher", "runtime": "torch", "auroc": {"A": 0.90, "B": 0.80}},
                       {"model": "student", "runtime": "keras", "auroc": {"A": 0.86, "B": 0.74}}]}
    assert auroc_failures(report, 0.05) == [
        "B: student AUROC 0.74 vs teacher 0.8 (allowed drop 0.05)"]
    assert auroc_failures({"rows": []}, 0.05)


def _tabular_row(gap, ratio, memo_ratio=1.0, memorised=False):
    student = {"teacher_auroc": 0.9, "student_auroc": 0.9 + gap, "gap": gap, "mac_ratio": ratio,
               "fidelity": {"spearman": 0.95}, "teacher_memorisation": {"ratio": memo_ratio, "memorised": memorised},
               "chosen": {"head": "energy", "queries": "broad", "hidden": [64, 32]}}
    return {"description": "d", "rows": 100, "anomalies": 10, "features": 4, "seconds": 1.0,
            "students": {"naive": student, "default": student, "auto": student}}


def test_tabular_benchmark_target_and_table():
    from benchmarks import tabular
    rows = {"ok": _tabular_row(-0.01, 80.0), "lost": _tabular_row(-0.03, 80.0), "big": _tabular_row(0.0, 20.0),
            "better": _tabular_row(0.03, 80.0)}
    bad = tabular.failures(rows)
    assert [line.split(":")[0] for line in bad] == ["lost", "big", "better"]
    text = tabular.markdown(rows, seed=3)
    assert "| ok | 100 (10) | 0.900 | 0.890 (-0.010) | 0.890 (-0.010) | 0.890 (-0.010) | 80x fewer |" in text
    assert "missed: lost" in text and "energy / broad / 64-32" in text
    assert tabular.main(["--sets", "nope", "--out", "unused"]) == 2



def test_tabular_table_shows_teacher_memorisation():
    from benchmarks import tabular
    rows = {"ok": _tabular_row(-0.01, 60.0, 1.05), "memo": _tabular_row(-0.03, 60.0, 1.6, True),
            "flat": _tabular_row(0.0, 60.0, None)}
    table = [line for line in tabular.markdown(rows, seed=3).splitlines() if line.startswith("| ")]
    assert table[1].endswith("| 1.05 |") and table[2].endswith("| 1.60 (memorised) |") and table[3].endswith("| - |")


def test_pruned_weights_are_free_only_in_the_quantized_design():
    from types import SimpleNamespace
    from kdcompress.bench.report import _row_size
    sizes = {"params": 100, "nonzero_params": 40, "macs": 40, "dense_macs": 100, "quantizer_bops": 40 * 64}
    firmware = _row_size(SimpleNamespace(name="hls4ml-csim", artefact=None), sizes)
    cpu = _row_size(SimpleNamespace(name="onnxruntime", artefact=None), sizes)
    int8 = _row_size(SimpleNamespace(name="tflite-int8", artefact=None), sizes)
    int16x8 = _row_size(SimpleNamespace(name="tflite-int16x8", artefact=None), sizes)
    assert (int16x8["macs"], int16x8["bops"], int16x8["nonzero_params"]) == (100, 100 * 8 * 16, None)
    assert (firmware["macs"], firmware["bops"]) == (40, 40 * 64)
    assert (cpu["macs"], cpu["bops"]) == (100, 100 * 32 * 32)
    assert (int8["macs"], int8["bops"]) == (100, 100 * 8 * 8)


def test_tabular_benchmark_runs_a_subset_of_students_and_judges_auto(capsys):
    from benchmarks import tabular
    rows = {name: _tabular_row(gap, 60.0) for name, gap in (("a", -0.01), ("b", -0.03))}
    for row in rows.values():
        row["students"] = {"auto": row["students"]["auto"]}  # as with --students auto
    text = tabular.markdown(rows, seed=0)
    assert "| a | 100 (10) | 0.900 | - | - | 0.890 (-0.010) | 60x fewer | energy / broad / 64-32 |" in text
    assert "missed: b: auto gap -0.030" in text and "a: auto" not in text
    assert tabular.main(["--students", "auto,bogus", "--sets", "wine"]) == 2
    assert "unknown student(s) bogus" in capsys.readouterr().err
    assert tabular.main(["--students", "naive", "--sets", "wine"]) == 2
    assert "--students must include auto" in capsys.readouterr().err


def test_tabular_gap_plot_and_its_place_in_the_table(tmp_path):
    from benchmarks import tabular
    rows = {"ok": _tabular_row(-0.01, 80.0), "lost": _tabular_row(-0.03, 80.0)}
    tabular.plot_gaps(rows, seed=3, path=tmp_path / "gaps.png")
    assert (tmp_path / "gaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = tabular.markdown(rows, seed=3, plot="gaps.png").splitlines()
    assert lines.index("![student minus teacher AUROC per set, seed 3](gaps.png)") < lines.index(
        next(line for line in lines if line.startswith("Result: ")))
    assert not any("![" in line for line in tabular.markdown(rows, seed=3).splitlines())


def test_tabular_benchmark_runs_a_users_table(tmp_path, monkeypatch, capsys):
    from benchmarks import tabular
    from kdcompress import api
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = (np.arange(120) % 6 == 0).astype(np.int64)
    np.savez(tmp_path / "mine.npz", X=x, y=y)
    seen = []
    monkeypatch.setattr(api, "train_teacher", lambda data, out, **kw: seen.append(("teacher", Path(data))))

    def fake_distill(teacher, data, out, **kw):
        seen.append(("student", Path(data)))
        return {"teacher": {"anomaly": {"auroc": 0.8}}, "student": {"anomaly": {"auroc": 0.79}},
                "macs": {"teacher": 1000, "student": 10}, "fidelity": {"spearman": 0.9},
                "teacher_memorisation": {"ratio": 1.0, "memorised": False}}
    monkeypatch.setattr(api, "distill", fake_distill)
    code = tabular.main(["--sets", "", "--table", f"mine={tmp_path / 'mine.npz'}", "--students", "auto",
                         "--out", str(tmp_path / "out")])
    assert code == 0 and seen == [("teacher", tmp_path / "mine.npz"), ("student", tmp_path / "mine.npz")]
    assert "| mine | 120 (20) | 0.800 | - | - | 0.790 (-0.010) | 100x fewer |" in capsys.readouterr().out


@pytest.mark.parametrize("given, message", [
    (["mine"], "--table takes NAME=FILE"), (["=x.npz"], "--table takes NAME=FILE"),
    (["wine=x.npz"], "'wine' is already taken"), (["a=x.npz", "a=y.npz"], "'a' is already taken")])
def test_tabular_benchmark_refuses_bad_table_names(given, message, capsys):
    from benchmarks import tabular
    argv = ["--sets", ""] + [arg for item in given for arg in ("--table", item)]
    assert tabular.main(argv + ["--out", "unused"]) == 2
    assert message in capsys.readouterr().err


def test_tabular_benchmark_refuses_a_table_without_anomalies(tmp_path, capsys):
    from benchmarks import tabular
    np.savez(tmp_path / "normal.npz", X=np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32), y=np.zeros(50, np.int64))
    assert tabular.main(["--sets", "", "--table", f"n={tmp_path / 'normal.npz'}", "--out", str(tmp_path / "o")]) == 2
    assert "has no anomaly rows" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert tabular.main(["--sets", "", "--out", str(tmp_path / "o")]) == 2


def _river_like(folder: Path) -> None:
    import gzip
    import zipfile
    folder.mkdir()
    with gzip.open(folder / "shuttle.csv.gz", "wt") as f:
        f.write("f1,f2,anomaly\n1,2,0\n3,4,1\n5,6,0\n")
    with zipfile.ZipFile(folder / "segment.csv.zip", "w") as z:
        z.writestr("segment.csv", "a,b,category\n1,2,sky\n3,4,grass\n5,6,cement\n")
    with gzip.open(folder / "phishing.csv.gz", "wt") as f:
        f.write("u,v,is_phishing\n0.5,1,1\n0,0,0\n")


def test_river_tables_become_labelled_npz(tmp_path):
    from benchmarks import river_tables
    _river_like(tmp_path / "datasets")
    assert river_tables.main([str(tmp_path / "datasets"), "--out", str(tmp_path / "out")]) == 0
    shuttle, segment, phishing = (np.load(tmp_path / "out" / f"{n}.npz") for n in ("shuttle", "segment", "phishing"))
    assert shuttle["X"].tolist() == [[1, 2], [3, 4], [5, 6]] and shuttle["y"].tolist() == [0, 1, 0]
    assert segment["y"].tolist() == [1, 0, 0] and phishing["y"].tolist() == [1, 0]
    assert phishing["X"].dtype == np.float32 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "phishing.npz", "segment.npz", "shuttle.npz"]


def test_river_tables_refuse_a_missing_file_and_write_nothing(tmp_path, capsys):
    from benchmarks import river_tables
    _river_like(tmp_path / "datasets")
    (tmp_path / "datasets" / "phishing.csv.gz").unlink()
    assert river_tables.main([str(tmp_path / "datasets"), "--out", str(tmp_path / "out")]) == 2
    assert "phishing.csv.gz" in capsys.readouterr().err and not (tmp_path / "out").exists()
