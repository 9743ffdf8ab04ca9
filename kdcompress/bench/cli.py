"""`kdcompress benchmark`: registered on the main CLI's sub-commands with add_parser(verbs)."""
from __future__ import annotations

import argparse

from .report import DEFAULT_BX_MHZ, DEFAULT_RATE_KHZ


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def add_parser(verbs) -> argparse.ArgumentParser:
    """Add the `benchmark` sub-command to an argparse sub-parsers object."""
    p = verbs.add_parser("benchmark",
                         help="teacher vs student (and exports, and a baseline): AUROC, rate, size, latency",
                         description="Write report.json, report.md and report.html (plots embedded) to --out.")
    p.add_argument("--teacher", required=True, help="teacher.pt (kdcompress checkpoint, TorchScript or torch.export)")
    p.add_argument("--student", required=True, help="student folder (model.h5 + student.json)")
    p.add_argument("--data", required=True, help="ADC2021 folder or tabular .npz/.csv with signal/anomaly events")
    p.add_argument("--exports", action="append", default=None, metavar="DIR",
                   help="`kdcompress export` folder (its manifest.json, or those one level below); repeatable")
    p.add_argument("--out", required=True, help="report folder (replaced as a whole on success)")
    p.add_argument("--rate-khz", type=_positive_float, default=DEFAULT_RATE_KHZ,
                   help=f"target trigger rate for the threshold (default {DEFAULT_RATE_KHZ:g} kHz)")
    p.add_argument("--bx-mhz", type=_positive_float, default=DEFAULT_BX_MHZ,
                   help=f"effective bunch-crossing rate (default {DEFAULT_BX_MHZ:g} MHz)")
    p.add_argument("--score", default=None, help="scoring for TorchScript/export teachers (e.g. mse)")
    p.add_argument("--quick", action="store_true", help="short timing and baseline training (smoke tests)")
    p.add_argument("--no-baseline", action="store_true", help="skip the autoencoder trained without distillation")
    p.add_argument("--baseline-epochs", type=_positive_int, default=None,
                   help="baseline training epochs (default 40, 3 with --quick; early stopping applies)")
    p.add_argument("--batch-threads", type=_positive_int, default=None,
                   help="threads for the batch throughput (default: all usable cores; single events use 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (baseline training)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)
    return p


def run(args) -> None:
    from .render import headline
    from .report import benchmark
    report = benchmark(args.teacher, args.student, args.data, args.out, exports=args.exports,
                       rate_khz=args.rate_khz, bx_mhz=args.bx_mhz, seed=args.seed, quick=args.quick,
                       baseline=not args.no_baseline, baseline_epochs=args.baseline_epochs, score=args.score,
                       batch_threads=args.batch_threads, quiet=args.quiet)
    print(headline(report))
    print(f"report written to {args.out} (report.json, report.md, report.html)")
