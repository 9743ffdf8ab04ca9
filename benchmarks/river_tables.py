"""Labelled .npz tables from the real data files bundled in the `river` package, for `benchmarks.tabular --table`.

    python -m benchmarks.river_tables DATASETS_DIR --out DIR

DATASETS_DIR is the `river/datasets` folder of an installed or unpacked river wheel (river is not a dependency;
nothing is downloaded here). Writes, each with X (float32) and y (1 = anomaly):
  shuttle.npz   Statlog shuttle, as river ships it (49,097 rows, 9 features; its `anomaly` column, 7%)
  segment.npz   image segments (2,310 rows, 18 features): brickface, cement, foliage, grass normal;
                path, sky, window anomalous
  phishing.npz  web pages (1,250 rows, 9 features): legitimate normal, phishing anomalous
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SEGMENT_NORMAL = ("brickface", "cement", "foliage", "grass")


def _rows(path: Path) -> list:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", newline="") as f:
            return list(csv.reader(f))
    with zipfile.ZipFile(path) as z:
        with z.open(z.namelist()[0]) as f:
            return list(csv.reader(io.TextIOWrapper(f, newline="")))


def _table(path: Path, label: str, is_anomaly) -> tuple:
    header, *body = _rows(path)
    if header[-1] != label:
        raise ValueError(f"{path}: last column is {header[-1]!r}, expected {label!r}")
    x = np.array([row[:-1] for row in body], dtype=np.float32)
    y = np.array([is_anomaly(row[-1]) for row in body], dtype=np.int64)
    return x, y


TABLES = {
    "shuttle": ("shuttle.csv.gz", "anomaly", lambda v: v == "1"),
    "segment": ("segment.csv.zip", "category", lambda v: v not in SEGMENT_NORMAL),
    "phishing": ("phishing.csv.gz", "is_phishing", lambda v: v == "1"),
}


def write_tables(datasets: Path, out: Path) -> dict:
    """Reads every table first, so a missing or malformed file writes nothing."""
    tables = {name: _table(datasets / file, label, is_anomaly) for name, (file, label, is_anomaly) in TABLES.items()}
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (x, y) in tables.items():
        tmp = out / f".{name}.tmp.npz"
        np.savez(tmp, X=x, y=y)
        tmp.replace(out / f"{name}.npz")
        written[name] = (x.shape, int(y.sum()))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.river_tables", description=__doc__.split("\n")[0])
    p.add_argument("datasets", help="the river/datasets folder of a river wheel")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        written = write_tables(Path(args.datasets), Path(args.out))
    except (OSError, ValueError, zipfile.BadZipFile, IndexError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    for name, (shape, anomalies) in written.items():
        print(f"{args.out}/{name}.npz: {shape[0]} rows x {shape[1]} features, {anomalies} anomalies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
