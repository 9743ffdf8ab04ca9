"""Benchmark report rendering: figures (PNG), Markdown and a self-contained HTML page (plots as base64)."""
from __future__ import annotations

import base64
import html as html_lib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from .. import plots
from . import figures, metrics, tracking

FIGURE_DIR = "plots"
PRIMARY_RUNTIME = {"teacher": "torch", "student": "keras", "baseline": "torch"}
DASH = "—"
CHOSEN_MARK = "★"
FIDELITY_COLUMNS = [("spearman", "Spearman"), ("spearman_normal", "Spearman (normal events)"),
                    ("top_1pct_auroc", "top-1% AUROC"),
                    ("top_0.1pct_auroc", "top-0.1% AUROC")]


@dataclass
class Table:
    header: List[str]
    rows: List[List[str]]
    caption: str = ""


@dataclass
class Section:
    title: str
    text: List[str]
    tables: List[Table]
    images: List[dict]


# ---------------------------------------------------------------- number formats

def _fmt(value, spec: str = ".4f", suffix: str = "") -> str:
    return DASH if value is None else f"{value:{spec}}{suffix}"


def _count(value) -> str:
    return DASH if value is None else f"{int(value):,}"


def _ratio(value) -> str:
    return DASH if value is None else f"{value:.3g}×"


def _percent(fraction) -> str:
    return DASH if fraction is None else f"{100 * fraction:.3g} %"


def _label(row: dict) -> List[str]:
    runtime = row["runtime"] + ("" if row["for_speed"] else " †")
    return [row["model"], runtime]


def _signals(report: dict) -> List[str]:
    return list(report["rows"][0]["auroc"]) if report["rows"] else []


# ---------------------------------------------------------------- figures

SAME_MODEL_REL_DIFF = 1e-3  # artefacts closer than this to their model's scores are not drawn again


def _primary_and_differing(report: dict) -> List[dict]:
    """Rows worth a curve: each model's reference runtime, and artefacts whose scores differ from it."""
    chosen = []
    for row in report["rows"]:
        agreement = row.get("agreement")
        if PRIMARY_RUNTIME[row["model"]] == row["runtime"]:
            chosen.append(row)
        elif agreement and agreement["max_rel_diff"] > SAME_MODEL_REL_DIFF:
            chosen.append(row)
    return chosen


def _key(row: dict) -> str:
    """The scores' key of a row (Runtime.label)."""
    return f"{row['model']} / {row['runtime']}"


def draw_figures(report: dict, scores: Dict[str, Dict[str, np.ndarray]], folder: Path) -> List[dict]:
    """ROC overlay per signal and score histogram per model; returns [{file, caption}] relative to the report."""
    folder.mkdir(parents=True, exist_ok=True)
    rate = report["rate"]
    marks = {"FPR 1e-5": 1e-5, "FPR 1e-4": 1e-4, f"{rate['target_khz']:g} kHz": rate["pass_fraction"]}
    drawn = []
    curves_rows = _primary_and_differing(report)
    for signal in _signals(report):
        name = f"roc_{figures.file_stem(signal)}.png"
        curves = [(f"{r['model']} ({r['runtime']})", scores[_key(r)]["background"], scores[_key(r)][signal])
                  for r in curves_rows]
        figures.roc_overlay(folder / name, signal, curves, rate["background_test_events"], marks)
        drawn.append({"file": f"{folder.name}/{name}", "caption": f"ROC curves for {signal}", "kind": "roc"})
    for row in report["rows"]:
        if PRIMARY_RUNTIME[row["model"]] != row["runtime"]:
            continue
        model_scores = scores[_key(row)]
        name = f"scores_{row['model']}.png"
        signals = {k: v for k, v in model_scores.items() if k != "background"}
        figures.score_histogram(folder / name, f"{row['model']} ({row['runtime']}) anomaly score",
                                _score_axis(report, row["model"]), model_scores["background"], signals,
                                row["rate"]["threshold"], f"threshold at {rate['target_khz']:g} kHz")
        drawn.append({"file": f"{folder.name}/{name}", "caption": f"{row['model']} score distributions",
                      "kind": "scores"})
    return drawn + _tracking_figure(report, scores, folder) + _selection_figure(report, folder)


def _tracking_figure(report: dict, scores: Dict[str, Dict[str, np.ndarray]], folder: Path) -> List[dict]:
    """Mean student - teacher against teacher score for the background and each signal."""
    if not report.get("tracking"):
        return []
    teacher = scores[f"teacher / {PRIMARY_RUNTIME['teacher']}"]
    student = scores[f"student / {PRIMARY_RUNTIME['student']}"]
    pairs = tracking.pairs_in_target_space(teacher, student, report["models"]["student"])
    every = np.concatenate([t for t, _ in pairs.values()])
    edges = np.unique(np.quantile(every, np.linspace(0.0, 1.0, 2 * tracking.BINS + 1)))
    curves = {name: tracking.binned_residuals(t, s, edges) for name, (t, s) in pairs.items()}
    axis = f"teacher score as the student's target ({report['models']['student'].get('score_transform')})"
    top = report["tracking"]["background"]["top_teacher_score"]
    figures.tracking_plot(folder / "tracking.png", curves, top, axis)
    return [{"file": f"{folder.name}/tracking.png", "kind": "tracking",
             "caption": "student minus teacher at equal teacher score, background and each signal"}]


def _selection_figure(report: dict, folder: Path) -> List[dict]:
    """`distill --auto`'s settings tried, fidelity rank against non-zero MACs (when recorded)."""
    record = report.get("distillation") or {}
    trials = [t for t in record.get("ablation", []) if _is_number(t.get("macs")) and _is_number(t.get("rank"))
              and isinstance(t.get("queries"), str)]
    if not trials:
        return []
    budget = (record.get("selection") or {}).get("budget")
    macs = budget.get("macs") if isinstance(budget, dict) and _is_number(budget.get("macs")) else None
    plots.selection_map(folder / "selection.png", trials, macs)
    return [{"file": f"{folder.name}/selection.png", "caption": "distill --auto: fidelity rank of each setting "
             "tried against its non-zero MACs (star: chosen)", "kind": "selection"}]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _score_axis(report: dict, model: str) -> str:
    models = report["models"]
    if model == "student":
        return f"student output = {models['student'].get('score_transform')}(teacher score)"
    if model == "baseline":
        return f"baseline reconstruction error ({models['baseline']['score']})"
    return f"teacher score ({models['teacher']['score']})"


# ---------------------------------------------------------------- sections

def sections(report: dict) -> List[Section]:
    return [_headline(report), _detection(report), _rate(report), _size(report), _latency(report),
            _plots(report, "roc", "ROC curves"), _plots(report, "scores", "Score distributions"),
            _baseline(report), _distillation(report), _environment(report), _notes(report)]


def _headline(report: dict) -> Section:
    signals = _signals(report)
    header = ["model", "runtime"] + [f"AUROC {s}" for s in signals] + ["params", "bytes", "BOPs", "p50 µs",
                                                                        "events/s"]
    rows = [_label(r) + [_fmt(r["auroc"][s]) for s in signals]
            + [_count(r["params"]), _count(r["bytes"]), _count(r["bops"]), _fmt(r["p50_us"], ".1f"),
               _fmt(r["events_per_s"], ",.0f")] for r in report["rows"]]
    data = report["data"]
    text = [f"Teacher `{Path(report['models']['teacher']['path']).name}` against student "
            f"`{Path(report['models']['student']['path']).name}` on {data['kind']} data `{data['source']}` "
            f"(fingerprint `{data['fingerprint']}`, {data['background_test_events']:,} background test events). "
            f"† = measured for agreement, not speed."]
    return Section("Summary", text, [Table(header, rows)], [])


def _per_signal_table(report: dict, pick: Callable[[dict], Dict[str, float]], caption: str) -> Table:
    signals = _signals(report)
    return Table(["model", "runtime"] + signals,
                 [_label(r) + [_fmt(pick(r).get(s)) for s in signals] for r in report["rows"]], caption)


def _detection(report: dict) -> Section:
    tables = [_per_signal_table(report, lambda r: r["auroc"], "AUROC")]
    text = ["AUROC (background test split against each signal), then TPR at FPR = 1e-5 and 1e-4 "
            "(fraction of signal above the threshold that lets that fraction of background through)."]
    for fpr in (1e-5, 1e-4):
        tables.append(_per_signal_table(report, lambda r, k=metrics.fpr_key(fpr): r[k], f"TPR at FPR = {fpr:g}"))
    if report.get("tracking"):
        text.append(TRACKING_TEXT)
        tables.append(_tracking_table(report["tracking"]))
    return Section("Detection", text, tables, _figures_of(report, "tracking"))


TRACKING_TEXT = ("Where the student departs from its teacher: each signal's student-minus-teacher score (in the "
                 "student's target units) minus the background's at the same teacher score. Negative within the "
                 "background's range (up to its 99th percentile of teacher score) costs AUROC: the student ranks "
                 "those events below normal events the teacher scored the same.")


def _tracking_table(record: dict) -> Table:
    rows = []
    for name, entry in record["signals"].items():
        within, above = entry["within"], entry["above"]
        rows.append([name, _percent(within["fraction"]), _fmt(within["bias"], "+.3f"),
                     _percent(above["fraction"]), _fmt(above["bias"], "+.3f")])
    caption = (f"Student minus teacher at equal teacher score (background: mean |student - teacher| "
               f"{record['background']['mean_abs_residual']:.3f})")
    return Table(["signal", "events within background range", "bias there", "events above it",
                  "bias there (against the top bin)"],
                 rows, caption)


def _rate(report: dict) -> Section:
    rate, signals = report["rate"], _signals(report)
    header = ["model", "runtime", "threshold", "background kHz"] + [f"eff. {s}" for s in signals]
    rows = [_label(r) + [_fmt(r["rate"]["threshold"], ".6g"), _fmt(r["rate"]["background_rate_khz"], ".3g")]
            + [_fmt(r["rate"]["efficiency"][s]) for s in signals] for r in report["rows"]]
    text = [f"Threshold for a {rate['target_khz']:g} kHz trigger rate at a {rate['bx_mhz']:g} MHz effective "
            f"bunch-crossing rate (pass fraction {rate['pass_fraction']:.3g}: "
            f"{rate['background_events_passing_at_target']:.3g} of the {rate['background_test_events']:,} background "
            f"test events), the background rate it gives on the test split, and the signal efficiency there. "
            f"Thresholds are in each runtime's own score units."]
    return Section("Trigger rate", text, [Table(header, rows)], [])


def _size(report: dict) -> Section:
    header = ["model", "runtime", "params", "non-zero", "bytes", "MACs", "BOPs", "BOPs basis",
              "params ×", "bytes ×", "MACs ×", "BOPs ×"]
    rows = []
    for r in report["rows"]:
        ratios = r["ratios_vs_teacher"]
        rows.append(_label(r) + [_count(r["params"]), _count(r["nonzero_params"]), _count(r["bytes"]),
                                 _count(r["macs"]), _count(r["bops"]), r["bops_basis"], _ratio(ratios["params"]),
                                 _ratio(ratios["bytes"]), _ratio(ratios["macs"]), _ratio(ratios["bops"])])
    text = ["Per event. Bytes: the artefact on disk (teacher checkpoint, student model.h5, exported file; for "
            "hls4ml the whole C++ project). × = compression against the torch teacher (teacher / row)."]
    return Section("Size and arithmetic cost", text, [Table(header, rows)], [])


def _latency(report: dict) -> Section:
    settings, machine = report["settings"], report["machine"]
    header = ["model", "runtime", "p50 µs", "p99 µs", "events/s", "best events/s", "batch", "threads (1 / batch)",
              "p50 speed-up", "throughput ×", "of matmul FLOP/s"]
    rows = []
    for r in report["rows"]:
        ratios, threads = r["ratios_vs_teacher"], r["threads"]
        rows.append(_label(r) + [_fmt(r["p50_us"], ".1f"), _fmt(r["p99_us"], ".1f"), _fmt(r["events_per_s"], ",.0f"),
                                 _fmt(r["events_per_s_best"], ",.0f"), _count(r["batch_size"]),
                                 f"{threads['single_event'] or 'TF'} / {threads['batch'] or 'TF'}",
                                 _ratio(ratios["p50_speedup"]), _ratio(ratios["throughput"]),
                                 _percent(r["matmul_fraction"])])
    latency = settings["latency"]
    text = [f"On this CPU ({machine['cpu']}, {machine['usable_cores']} usable cores), in the same run: single "
            f"event p50/p99 over ~{latency['single_event_s']:g} s of calls with 1 thread, throughput at batch "
            f"{latency['batch_size']} over ~{latency['batch_s']:g} s with {settings['threads']['batch']} "
            f"thread(s) (after "
            f"{latency['warmup_s']:g} s warm-up each): events/s from the median call, best events/s from the "
            f"fastest. Ratios (median figures) against the torch teacher. Last column: "
            f"2 x MACs x events/s divided by the measured numpy float32 matmul rate "
            f"({machine['matmul_gflops']:.1f} GFLOP/s). TF = TensorFlow's own thread pools."]
    return Section("Latency and throughput", text, [Table(header, rows)], [])


def _figures_of(report: dict, kind: str) -> List[dict]:
    return [f for f in report.get("figures", []) if f["kind"] == kind]


def _plots(report: dict, kind: str, title: str) -> Section:
    images = _figures_of(report, kind)
    text = ([f"Log FPR axis; dotted lines at FPR 1e-5, 1e-4 and the target trigger rate where the background "
             f"sample resolves them. Artefacts whose scores equal their model's within a relative "
             f"{SAME_MODEL_REL_DIFF:g} are not drawn again."] if kind == "roc" else
            ["Normalised per sample, log counts; dashed line: threshold at the target trigger rate."])
    return Section(title, text, [], images)


def _baseline(report: dict) -> Section:
    baseline = report["models"]["baseline"]
    if not baseline:
        return Section("Baseline without distillation", ["Not trained (baseline disabled)."], [], [])
    student = next((r for r in report["rows"] if (r["model"], r["runtime"]) == ("student", "keras")), None)
    base = next((r for r in report["rows"] if r["model"] == "baseline"), None)
    signals = _signals(report)
    rows = [[s, _fmt(student["auroc"][s]), _fmt(base["auroc"][s]), _fmt(student["auroc"][s] - base["auroc"][s], "+.4f"),
             _fmt(student["rate"]["efficiency"][s]), _fmt(base["rate"]["efficiency"][s])] for s in signals]
    text = [f"{baseline['arch']} ({baseline['params']:,} parameters; student {baseline['student_params']:,}), "
            f"trained on background only ({baseline['trained_on']}), {baseline['epochs_run']} epochs, scored by "
            f"its reconstruction error ({baseline['score']}), float32. The gain is what distillation adds at "
            f"the same parameter budget."]
    header = ["signal", "AUROC student", "AUROC baseline", "gain", "eff. @ rate student", "eff. @ rate baseline"]
    return Section("Baseline without distillation", text, [Table(header, rows)], [])


def _distillation(report: dict) -> Section:
    """What `distill` recorded in the student folder (report['distillation']), for reports that have it."""
    record = report.get("distillation")
    if not record:
        return Section("Distillation", ["No readable metrics.json in the student folder: nothing recorded at "
                                        "distillation time to show."], [], [])
    text, tables = [], []
    if record.get("fidelity"):
        text.append("Fidelity of the student to the teacher, measured when it was distilled, without labels: on "
                    "held-out teacher-labelled probe points (background validation events and broad queries "
                    "around them), the Spearman rank correlation of the two scores (on all probes and on the "
                    "normal events alone) and the AUROC of the student at finding the teacher's top 1% and "
                    "top 0.1% (1 for a perfect copy).")
        tables.append(_fidelity_table(record["fidelity"]))
    if record.get("teacher_memorisation"):
        text.append(_memorisation_text(record["teacher_memorisation"]))
    selection = record.get("selection")
    text.append(_selection_text(selection) if selection else
                "Settings given by hand (not chosen by `distill --auto`): no search, no ablation.")
    if record.get("ablation"):
        text.append(_ablation_text(record["ablation"]))
        tables.append(_ablation_table(record["ablation"]))
    if record.get("active_rounds"):
        text.append("Active query rounds: teacher-labelled points added where the student disagreed most, then "
                    "more training; gap = mean |student output - target| on the points added in that round, "
                    "before and after that training.")
        tables.append(_active_rounds_table(record["active_rounds"]))
    return Section("Distillation", text, tables, _figures_of(report, "selection"))


def _memorisation_text(memo: dict) -> str:
    ratio = memo.get("ratio")
    figures = (f"median teacher score {_fmt(memo.get('median_train'))} on its training events, "
               f"{_fmt(memo.get('median_val'))} on held-out ones (ratio {_fmt(ratio, '.2f')})")
    if memo.get("memorised"):
        return (f"Teacher memorisation check (label-free): {figures}. The teacher memorised its training "
                "events; the student is trained on those low scores, so compare the two on held-out events, as "
                "this report does.")
    return f"Teacher memorisation check (label-free): {figures}: no sign of memorisation."


def _fidelity_table(fidelity: dict) -> Table:
    return Table([title for _, title in FIDELITY_COLUMNS], [[_fmt(fidelity.get(k)) for k, _ in FIDELITY_COLUMNS]],
                 "Fidelity to the teacher")


def _selection_text(selection: dict) -> str:
    chosen = selection.get("chosen") or {}
    setting = (f"head `{chosen.get('head', DASH)}`, queries `{_queries_label(chosen.get('queries'))}`, hidden "
               f"{_hidden_label(chosen.get('hidden'))}, active rounds `{chosen.get('active', DASH)}`, "
               f"{_sparsity_label(chosen.get('sparsity'))} ({_count(chosen.get('macs'))} MACs, "
               f"{_count(chosen.get('bops'))} BOPs)")
    count = selection.get("search_events")
    events = f"{count:,} background training events" if count is not None else "background training events"
    return (f"Chosen by `distill --auto` (budget: {_budget_label(selection.get('budget'))}): {setting}. "
            f"Criterion: {selection.get('criterion', DASH)}. Candidates were trained on {events} (and their "
            f"teacher-labelled queries) with a shorter schedule; the chosen setting was then trained again on all "
            f"the training data, so the final student's fidelity can differ from its row in the search table.")


def _sparsity_label(sparsity) -> str:
    return f"{sparsity:.0%} of the weights pruned" if sparsity else "not pruned"


def _ablation_text(trials: List[dict]) -> str:
    text = (f"One row per candidate of the search; {CHOSEN_MARK} = chosen; rank = the criterion's value "
            f"(higher is better).")
    if _trial_signals(trials):
        text += (" AUROC columns: each candidate scored on the labelled signals after the search, for evaluation "
                 "only: these AUROCs were never used in the choice.")
    return text


def _ablation_table(trials: List[dict]) -> Table:
    signals = _trial_signals(trials)
    header = (["chosen", "head", "queries", "hidden", "active", "pruned", "MACs", "BOPs"]
              + [title for _, title in FIDELITY_COLUMNS] + ["rank"] + [f"AUROC {s} (evaluation only)" for s in signals])
    rows = []
    for t in trials:
        fidelity, auroc = t.get("fidelity") or {}, t.get("auroc") or {}
        rows.append([CHOSEN_MARK if t.get("chosen") else "", str(t.get("head", DASH)), _queries_label(t.get("queries")),
                     _hidden_label(t.get("hidden")), str(t.get("active", DASH)), _fmt(t.get("sparsity"), ".0%"),
                     _count(t.get("macs")),
                     _count(t.get("bops"))]
                    + [_fmt(fidelity.get(k)) for k, _ in FIDELITY_COLUMNS] + [_fmt(t.get("rank"))]
                    + [_fmt(auroc.get(s)) for s in signals])
    return Table(header, rows, "Search (ablation)")


def _active_rounds_table(rounds: List[dict]) -> Table:
    rows = [[_count(r.get("round")), str(r.get("method", DASH)), _count(r.get("added")),
             _fmt(r.get("mean_gap_before")), _fmt(r.get("mean_gap_after"))] for r in rounds]
    return Table(["round", "method", "points added", "gap before", "gap after"], rows, "Active query rounds")


def _trial_signals(trials: List[dict]) -> List[str]:
    """Signals with an AUROC in any trial, in first-seen order."""
    return list(dict.fromkeys(s for t in trials for s in (t.get("auroc") or {})))


def _queries_label(queries) -> str:
    """A strategy name as is; explicit query fractions as 'noise 0.5 + mixup 0.5' ('none' when empty)."""
    if queries is None:
        return DASH
    if isinstance(queries, dict):
        return " + ".join(f"{name} {fraction:g}" for name, fraction in queries.items()) or "none"
    return str(queries)


def _hidden_label(hidden) -> str:
    if isinstance(hidden, (list, tuple)):
        return "-".join(str(h) for h in hidden) or DASH
    return DASH if hidden is None else str(hidden)


def _budget_label(budget) -> str:
    budget = budget or {}
    limits = [f"{_count(budget[k])} {name}" for k, name in (("macs", "MACs"), ("bops", "BOPs"))
              if budget.get(k) is not None]
    return " and ".join(limits) if limits else "none recorded"


def _environment(report: dict) -> Section:
    machine, versions, settings, data = report["machine"], report["versions"], report["settings"], report["data"]
    machine_rows = [[k, str(v)] for k, v in machine.items()]
    version_rows = [[k, str(v) if v is not None else "not installed"] for k, v in versions.items()]
    setting_rows = [["seed", str(settings["seed"])], ["quick", str(settings["quick"])],
                    ["data fingerprint", data["fingerprint"]],
                    ["data matches student training", str(data["matches_student_training"])],
                    ["signals", ", ".join(f"{k} ({v:,})" for k, v in data["signal_events"].items())],
                    ["created (UTC)", report["created_utc"]]]
    return Section("Machine, versions, settings", [],
                   [Table(["machine", ""], machine_rows), Table(["package", "version"], version_rows),
                    Table(["setting", ""], setting_rows)], [])


def _notes(report: dict) -> Section:
    return Section("Notes", [f"- {n}" for n in report.get("notes", [])], [], [])


# ---------------------------------------------------------------- Markdown

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> List[str]:
    numeric = [all(_looks_numeric(row[i]) for row in table.rows) for i in range(len(table.header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines


def _looks_numeric(text: str) -> bool:
    stripped = str(text).replace(",", "").replace("×", "").replace("%", "").replace("+", "").strip()
    if stripped == DASH:
        return True
    try:
        float(stripped)
        return True
    except ValueError:
        return False


def markdown(report: dict, image_prefix: str = "") -> str:
    """The report as Markdown; images link to `image_prefix` + their path inside the report folder."""
    lines = ["# kdcompress benchmark", ""]
    for section in sections(report):
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""] if not paragraph.startswith("- ") else [paragraph]
        if section.text and section.text[-1].startswith("- "):
            lines.append("")
        for table in section.tables:
            lines += ([f"**{table.caption}**", ""] if table.caption else []) + _md_table(table) + [""]
        for image in section.images:
            lines += [f"![{image['caption']}]({image_prefix}{image['file']})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; }
caption { font-weight: bold; text-align: left; padding: 2px 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.4em; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _html_text(paragraph: str) -> str:
    escaped = html_lib.escape(paragraph)
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html_lib.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = "".join(f'<td class="num">{html_lib.escape(c)}</td>' if _looks_numeric(c)
                        else f"<td>{html_lib.escape(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{html_lib.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_image(image: dict, folder: Path) -> str:
    data = base64.b64encode((folder / image["file"]).read_bytes()).decode("ascii")
    caption = html_lib.escape(image["caption"])
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}" width="560">'
            f"<figcaption>{caption}</figcaption></figure>")


def html(report: dict, folder: Path) -> str:
    """Self-contained HTML page; the PNGs named in report['figures'] are read from `folder` and embedded."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>kdcompress benchmark</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>kdcompress benchmark</h1>"]
    for section in sections(report):
        parts.append(f"<h2>{html_lib.escape(section.title)}</h2>")
        bullets = [p[2:] for p in section.text if p.startswith("- ")]
        parts += [f"<p>{_html_text(p)}</p>" for p in section.text if not p.startswith("- ")]
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{_html_text(b)}</li>" for b in bullets) + "</ul>")
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_image(i, folder) for i in section.images]
    parts.append("</body></html>")
    return "\n".join(parts)


def headline(report: dict) -> str:
    """The summary table as Markdown (for terminals and CI logs)."""
    return "\n".join(_md_table(_headline(report).tables[0]))
