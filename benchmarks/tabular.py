"""Real tabular data: does `distill --auto` keep the teacher's AUROC, as a new user would run it?

    python -m benchmarks.tabular [--out DIR] [--sets breast,wine,digits,mnist] [--mnist DIR] [--seed N]
        [--students naive,default,auto] [--table NAME=FILE ...] [--publish]

Data (no download): the tables bundled with scikit-learn (breast cancer, wine, digits) and the MNIST test set
beside the repo (../shared/data/mnist, 2x2-pooled to 196 features). Each becomes a .npz (X, y: 1 = anomaly)
and runs: default dense-AE teacher -> three students (or those given by --students, auto always among them),
each judged against the same teacher:
  naive   32-16 MLP, no queries, no reweighting (what a new user tries first);
  default the `distill` defaults;
  auto    `distill --auto` (head, queries, width chosen by label-free fidelity under teacher MACs / 50).
--table NAME=FILE adds a labelled table of your own (.npz with X and y, or .csv with a y/label column; 1 =
anomaly), run the same way; give --sets '' to run only your tables.
Writes results.json, results.md and gaps.png (each student's AUROC minus its teacher's, per set) to --out;
--publish writes them to benchmarks/TABULAR.md and benchmarks/TABULAR_files/gaps_seed<N>.png.
Exit 0 when every `auto` student is within 0.02 AUROC of its teacher at >= 50x fewer MACs, else 1; 2 on error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parent.parent / "shared" / "data" / "mnist"
MAX_GAP = 0.02
MIN_MAC_RATIO = 50
STUDENTS = {
    "naive": dict(hidden=[32, 16], queries={}, reweight="none"),
    "default": {},
    "auto": dict(auto=True),
}


def _sklearn(loader: str, normal: Callable[[np.ndarray], np.ndarray]):
    def build(_args):
        import sklearn.datasets
        bunch = getattr(sklearn.datasets, loader)()
        return bunch.data.astype(np.float32), (~normal(bunch.target)).astype(np.int64)
    return build


def _mnist(args):
    from kdcompress.data.mnist import read_images_labels
    images, labels = read_images_labels(Path(args.mnist) / "t10k-images-idx3-ubyte.gz",
                                        Path(args.mnist) / "t10k-labels-idx1-ubyte.gz")
    pooled = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(images), -1)
    return pooled.astype(np.float32), (labels >= 5).astype(np.int64)


SETS: Dict[str, tuple] = {
    "breast": ("breast cancer (sklearn): benign normal, malignant anomalous; 30 features",
               _sklearn("load_breast_cancer", lambda t: t == 1)),
    "wine": ("wine (sklearn): cultivars 0-1 normal, cultivar 2 anomalous; 13 features",
             _sklearn("load_wine", lambda t: t < 2)),
    "digits": ("digits 8x8 (sklearn): 0-4 normal, 5-9 anomalous; 64 features",
               _sklearn("load_digits", lambda t: t < 5)),
    "mnist": ("MNIST test set, 2x2-pooled: 0-4 normal, 5-9 anomalous; 196 features", _mnist),
}


def _say(text: str) -> None:
    print(f"[tabular] {text}", file=sys.stderr, flush=True)


def _bundled(name: str, folder: Path, args):
    x, y = SETS[name][1](args)
    data = folder / f"{name}.npz"
    np.savez(data, X=x, y=y)
    return data, SETS[name][0], (int(len(x)), int(y.sum()), int(x.shape[1]))


def _given(path: Path) -> tuple:
    """A user's table, read once by the loader of `distill --data`: (path, description, (rows, anomalies,
    features)). It must hold anomalies to score."""
    from kdcompress.data.tabular import load_tabular
    from kdcompress.errors import KDError
    d = load_tabular(path)
    if "anomaly" not in d.signals:
        raise KDError(f"{path} has no anomaly rows (y == 1) to evaluate on")
    anomalies, features = len(d.signals["anomaly"]), d.train.shape[1]
    rows = len(d.train) + len(d.val) + len(d.test) + anomalies
    return path, f"{path.name}: your table; {features} features", (rows, anomalies, features)


def run_set(name: str, out: Path, args) -> dict:
    from kdcompress import api
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    data, description, (rows, anomalies, features) = args.tables.get(name) or _bundled(name, folder, args)
    start = time.perf_counter()
    api.train_teacher(data, folder / "teacher.pt", seed=args.seed, quiet=True)
    row = {"description": description, "rows": rows, "anomalies": anomalies, "features": features,
           "students": {}}
    for student in args.students:
        _say(f"{name}: student {student}")
        result = api.distill(folder / "teacher.pt", data, folder / student, seed=args.seed, quiet=True,
                             **STUDENTS[student])
        row["students"][student] = _summary(result)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _summary(result: dict) -> dict:
    teacher, student = result["teacher"]["anomaly"]["auroc"], result["student"]["anomaly"]["auroc"]
    summary = {"teacher_auroc": teacher, "student_auroc": student, "gap": student - teacher,
               "mac_ratio": result["macs"]["teacher"] / max(1, result["macs"]["student"]),
               "fidelity": result["fidelity"], "teacher_memorisation": result["teacher_memorisation"]}
    if "selection" in result:
        chosen = result["selection"]["chosen"]
        summary["chosen"] = {k: chosen.get(k) for k in ("head", "queries", "hidden", "sparsity")}
    return summary


def failures(rows: Dict[str, dict]) -> list:
    bad = []
    for name, row in rows.items():
        auto = row["students"]["auto"]
        if abs(auto["gap"]) > MAX_GAP or auto["mac_ratio"] < MIN_MAC_RATIO:
            bad.append(f"{name}: auto gap {auto['gap']:+.3f}, {auto['mac_ratio']:.0f}x fewer MACs")
    return bad


def _cell(summary) -> str:
    return "-" if summary is None else f"{summary['student_auroc']:.3f} ({summary['gap']:+.3f})"


def _pruned(choice: dict) -> str:
    return f" pruned {choice['sparsity']:.0%}" if choice.get("sparsity") else ""


def _ratio(memo: dict) -> str:
    ratio = memo.get("ratio")
    return "-" if ratio is None else f"{ratio:.2f}" + (" (memorised)" if memo.get("memorised") else "")


def plot_gaps(rows: Dict[str, dict], seed: int, path: Path) -> None:
    from kdcompress.plots import gap_bars
    gaps = {name: {k: v["gap"] for k, v in row["students"].items()} for name, row in rows.items()}
    labels = {name: f"{name}\nteacher {row['students']['auto']['teacher_auroc']:.3f}" for name, row in rows.items()}
    gap_bars(path, gaps, labels, MAX_GAP, f"Real tabular data, seed {seed}: students against their teacher")


def markdown(rows: Dict[str, dict], seed: int, plot: str = "") -> str:
    lines = ["# Real tabular data: teacher vs distilled students", "",
             f"Seed {seed}. Default dense-AE teacher per set; AUROC on the held-out normal rows and all anomalies. "
             f"Target: `auto` within {MAX_GAP} of the teacher at >= {MIN_MAC_RATIO}x fewer MACs. "
             "Anomaly labels are used only here, for evaluation.", "",
             "| data | rows (anomalies) | teacher | naive | default | auto | auto MACs | auto choice | "
             "auto Spearman | teacher held-out/train median |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        s = row["students"]
        auto = s["auto"]
        choice = auto.get("chosen", {})
        lines.append(
            f"| {name} | {row['rows']} ({row['anomalies']}) | {s['auto']['teacher_auroc']:.3f} | "
            + " | ".join(_cell(s.get(k)) for k in STUDENTS)
            + f" | {auto['mac_ratio']:.0f}x fewer | {choice.get('head')} / {choice.get('queries')} / "
            f"{'-'.join(map(str, choice.get('hidden', [])))}{_pruned(choice)} | {auto['fidelity']['spearman']:.3f} | "
            f"{_ratio(auto['teacher_memorisation'])} |")
    lines += ["", *[f"- {name}: {row['description']} ({row['seconds']:.0f} s)" for name, row in rows.items()]]
    lines += ["", "Teacher held-out/train median: the teacher's median score on held-out normal rows over that on its "
              "own training rows (label-free; `metrics.json` `teacher_memorisation`). Above 1.25 the teacher has "
              "memorised its training rows, on whose scores the student is trained."]
    if plot:
        lines += ["", f"![student minus teacher AUROC per set, seed {seed}]({plot})"]
    bad = failures(rows)
    lines += ["", "Result: " + ("all `auto` students within target." if not bad else "missed: " + "; ".join(bad))]
    return "\n".join(lines) + "\n"


def _names(text: str) -> list:
    return [n.strip() for n in text.split(",") if n.strip()]


def _tables(given: list) -> Dict[str, Path]:
    tables = {}
    for item in given:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--table takes NAME=FILE, got {item!r}")
        if name.strip() in SETS or name.strip() in tables:
            raise ValueError(f"--table name {name.strip()!r} is already taken")
        tables[name.strip()] = Path(path.strip())
    return tables


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tabular", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out/benchmarks/tabular")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--mnist", default=str(DEFAULT_MNIST), help="folder with the MNIST t10k idx files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--students", default=",".join(STUDENTS), help="which students to train (default all)")
    p.add_argument("--table", action="append", default=[], metavar="NAME=FILE",
                   help="also run a labelled table of your own (.npz or .csv; y = 1 anomaly); repeatable")
    p.add_argument("--publish", action="store_true",
                   help="write results.md to benchmarks/TABULAR.md and gaps.png to benchmarks/TABULAR_files/")
    args = p.parse_args(argv)
    from kdcompress.errors import KDError
    from kdcompress.fileio import write_json, write_text
    out = Path(args.out)
    names, args.students = _names(args.sets), _names(args.students)
    try:
        args.tables = _tables(args.table)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for given, known, what in ((names, SETS, "set"), (args.students, STUDENTS, "student")):
        unknown = [n for n in given if n not in known]
        if unknown:
            print(f"error: unknown {what}(s) {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr)
            return 2
    if "auto" not in args.students:
        print("error: --students must include auto (the benchmark's target)", file=sys.stderr)
        return 2
    names += [n for n in args.tables if n not in names]
    if not names:
        print("error: nothing to run (give --sets or --table)", file=sys.stderr)
        return 2
    try:
        args.tables = {name: _given(path) for name, path in args.tables.items()}  # checked before any run
        rows = {name: run_set(name, out, args) for name in names}
    except KDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(out / "results.json", {"seed": args.seed, "sets": rows})
    text = markdown(rows, args.seed, plot="gaps.png")
    write_text(out / "results.md", text)
    plot_gaps(rows, args.seed, out / "gaps.png")
    if args.publish:
        published = f"TABULAR_files/gaps_seed{args.seed}.png"
        plot_gaps(rows, args.seed, HERE / published)
        write_text(HERE / "TABULAR.md", markdown(rows, args.seed, plot=published))
    print(text)
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
