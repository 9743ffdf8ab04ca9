"""`kdcompress <verb>`: thin wrappers over kdcompress.api; errors are one line and a non-zero exit."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import KDError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _int_list(text: str):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def _add_seed(p):
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdcompress", description="Distil anomaly-detection teachers into "
                                     "tiny quantized students for FPGA (hls4ml), TFLite and ONNX.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _data_parser(verbs)
    _teacher_parser(verbs)
    _distill_parser(verbs)
    _demo_parser(verbs)
    _plugin_parsers(verbs)
    return parser


def _plugin_parsers(verbs) -> None:
    """Verbs defined beside their code: export, benchmark, run, ls (heavy imports stay lazy)."""
    from .pipelines.cli import add_parsers as add_recipe_parsers
    add_recipe_parsers(verbs)
    from .bench.cli import add_parser as add_benchmark_parser
    from .export.cli import add_parser as add_export_parser
    add_export_parser(verbs)
    add_benchmark_parser(verbs)


def _data_parser(verbs):
    p = verbs.add_parser("data", help="make synthetic data sets")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    synth = sub.add_parser("synth", help="write a seeded synthetic data set in a real format")
    synth.add_argument("format", choices=["adc2021", "calo", "images"],
                       help="adc2021 (Particles), calo (CaloRegions) or images (MVTec layout with defect masks)")
    synth.add_argument("--events", type=int, default=None,
                       help="background events (split 50/25/25; default 200000), or train/good images (default 200)")
    synth.add_argument("--signal-events", type=int, default=None,
                       help="events per signal file, or test images per class (default 50)")
    synth.add_argument("--side", type=int, default=32, help="images: side in pixels")
    synth.add_argument("--color", action="store_true",
                       help="images: RGB cloth, with a 'tint' defect (hue changed at equal grey level)")
    synth.add_argument("--out", required=True, help="output folder")
    _add_seed(synth)
    synth.set_defaults(run=_run_synth)


def _teacher_parser(verbs):
    p = verbs.add_parser("train-teacher", help="train an unsupervised teacher on normal events")
    p.add_argument("--data", required=True, help="ADC2021 folder, tabular .npz/.csv, or an image folder")
    p.add_argument("--color", choices=["auto", "yes", "no"], default="auto",
                   help="image folders: read in colour (yes), grey (no) or as their train/good images are (auto); "
                        "distill, export and benchmark then read the folder as the teacher did")
    p.add_argument("--arch", default="dense-ae", choices=["dense-ae", "vae", "conv-ae"],
                   help="conv-ae: convolutional autoencoder for images (image folders, .npz images)")
    p.add_argument("--hidden", type=_int_list, default=None,
                   help="encoder widths (dense-ae, vae; default 512,256,128) or the channels of conv-ae's two "
                        "stride-2 convolutions (default 16,32)")
    p.add_argument("--latent", type=int, default=None, help="latent width (default 8; conv-ae 20)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1024, smaller for small data)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--score", default=None, help="scoring function (default: masked_mse/mse for AE, mu2 for VAE)")
    p.add_argument("--out", required=True, help="teacher checkpoint path, e.g. teacher.pt")
    _add_seed(p)
    p.set_defaults(run=_run_train_teacher)


def _distill_parser(verbs):
    p = verbs.add_parser("distill", help="distil a teacher into a quantized student (score regression)")
    p.add_argument("teacher", help="teacher.pt: kdcompress checkpoint, TorchScript or torch.export archive")
    p.add_argument("--data", required=True, help="ADC2021 folder or tabular .npz/.csv")
    p.add_argument("--score", default=None, help="scoring for TorchScript/export teachers (e.g. mse)")
    p.add_argument("--student", "--head", dest="student", default="mlp", choices=["mlp", "energy", "cnn"],
                   help="student head: mlp, energy (log1p of a sum of squared projections), cnn")
    p.add_argument("--hidden", type=_int_list, default=[32, 16])
    p.add_argument("--bits", type=int, default=8, help="weight and activation bits")
    p.add_argument("--target", default="log1p", choices=["log1p", "cicada", "identity"])
    p.add_argument("--loss", default="mae", choices=["mae", "mse"])
    p.add_argument("--reweight", default="inverse-density", choices=["none", "inverse-density"],
                   help="weight events by 1/density of their target (default), capped")
    p.add_argument("--reweight-cap", type=float, default=10.0)
    p.add_argument("--tail-quantile", type=float, default=0.99, help="tail start for --tail-factor")
    p.add_argument("--tail-factor", type=int, default=1, help="copies of each tail event (1 = off)")
    p.add_argument("--queries", default=None,
                   help="teacher-labelled queries off the data, NAME[:FRACTION],... of noise, mixup, box, "
                        "marginals, inrange, uphill (up the teacher's score), objects, harder, pixel-noise, flips, "
                        "patches (images), outliers, or 'none' (default noise:0.5,mixup:0.5, plus "
                        "objects:0.5,harder:0.5 for data with object groups such as ADC2021; "
                        "pixel-noise:1,patches:1 for image folders)")
    p.add_argument("--outliers", default=None, help="outlier-exposure data (.npz/.csv/.h5) for --queries outliers:F")
    p.add_argument("--min-queries", type=int, default=100_000,
                   help="at least this many training queries: small data sets get proportionally more")
    p.add_argument("--refresh-queries", type=int, default=0, metavar="N",
                   help="redraw the training queries (teacher-labelled afresh) every N epochs; 0: one draw")
    p.add_argument("--active-rounds", type=int, default=0,
                   help="disagreement-driven rounds: add the points where |student - teacher| is largest, train on")
    p.add_argument("--active", default="sampled", choices=["sampled", "ascent"],
                   help="active rounds pick the worst of a sampled pool, or push them further by gradient ascent")
    p.add_argument("--active-fraction", type=float, default=0.1,
                   help="points added per active round, as a fraction of the training events")
    p.add_argument("--sparsity", type=float, default=0.0,
                   help="prune this fraction of the student's weights to zero after training (gradually, with "
                        "fine-tuning); zero weights cost no MACs in hls4ml firmware, so a wider pruned student "
                        "fits the same budget")
    p.add_argument("--prune-steps", type=int, default=3,
                   help="with --sparsity: prune in this many equal steps, fine-tuning epochs/4 after each")
    p.add_argument("--auto", action="store_true",
                   help="choose queries, head and width under the budget by label-free fidelity")
    p.add_argument("--budget-macs", type=int, default=None, help="--auto: max student MACs (default teacher/50)")
    p.add_argument("--budget-bops", type=int, default=None, help="--auto: max student bit operations")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1024, smaller for small data)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", required=True, help="student folder")
    _add_seed(p)
    p.set_defaults(run=_run_distill)


def _demo_parser(verbs):
    p = verbs.add_parser("demo", help="synthetic ADC2021 data -> teacher -> student -> exports -> report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--events", type=int, default=200_000)
    _add_seed(p)
    p.set_defaults(run=_run_demo)


def _run_synth(a):
    from .api import synth_adc2021, synth_calo
    if a.format == "images":
        return _synth_images(a)
    if a.color:
        raise KDError("--color applies to synthetic images only")
    make = synth_adc2021 if a.format == "adc2021" else synth_calo
    events = 200_000 if a.events is None else a.events
    paths = make(a.out, events=events, seed=a.seed, signal_events=a.signal_events)
    print(f"wrote {len(paths)} files to {a.out}")


def _synth_images(a):
    from .data.images import write_synthetic_image_folder
    from .fileio import atomic_dir
    n_train = 200 if a.events is None else a.events
    n_test = 50 if a.signal_events is None else a.signal_events
    with atomic_dir(a.out) as tmp:
        write_synthetic_image_folder(tmp, side=a.side, n_train=n_train, n_test=n_test, seed=a.seed, color=a.color)
    colour = " RGB" if a.color else ""
    print(f"wrote an MVTec-layout folder to {a.out} ({n_train} train/good, {n_test} per test class, "
          f"{a.side}x{a.side}{colour})")


def _run_train_teacher(a):
    from .api import train_teacher
    train_teacher(a.data, a.out, arch=a.arch, hidden=a.hidden, latent=a.latent, epochs=a.epochs,
                  batch=a.batch, lr=a.lr, score=a.score, seed=a.seed, quiet=a.quiet,
                  color={"auto": None, "yes": True, "no": False}[a.color])
    print(f"teacher written to {a.out} (loss curve {Path(a.out).with_suffix('.loss.png')})")


def _distill_kwargs(a) -> dict:
    from .distill.queries import parse_queries
    quant = {"bits": a.bits, "relu_bits": a.bits}
    return dict(student=a.student, hidden=a.hidden, quant=quant, target=a.target, loss=a.loss,
                reweight=a.reweight, reweight_cap=a.reweight_cap, tail_quantile=a.tail_quantile,
                tail_factor=a.tail_factor, queries=None if a.queries is None else parse_queries(a.queries),
                outliers=a.outliers, min_queries=a.min_queries, refresh_queries=a.refresh_queries,
                active_rounds=a.active_rounds, active=a.active, active_fraction=a.active_fraction,
                sparsity=a.sparsity, prune_steps=a.prune_steps, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed)


HINT_SPEARMAN_NORMAL = 0.9  # --auto students reached 0.91-0.94 on real tables where hand settings had 0.58-0.83


def auto_hint(result: dict) -> str:
    """A label-free nudge towards --auto when a hand-set student ranks normal events unlike its teacher."""
    normal = result["fidelity"].get("spearman_normal", float("nan"))
    if "selection" in result or not normal < HINT_SPEARMAN_NORMAL:
        return ""
    return (f"hint: the student ranks held-out normal events unlike its teacher (Spearman {normal:.2f} < "
            f"{HINT_SPEARMAN_NORMAL}); --auto chooses head, queries and width by fidelity and may keep more of "
            f"its AUROC (benchmarks/TABULAR*.md)")


def _run_distill(a):
    from .api import distill
    from .evaluate import comparison_table
    result = distill(a.teacher, a.data, a.out, score=a.score, quiet=a.quiet, auto=a.auto,
                     budget_macs=a.budget_macs, budget_bops=a.budget_bops, **_distill_kwargs(a))
    print(comparison_table(result))
    fid = result["fidelity"]
    print(f"fidelity (label-free): spearman {fid['spearman']:.4f} (normal events "
          f"{fid.get('spearman_normal', float('nan')):.4f}), top-1% AUROC {fid['top_1pct_auroc']:.4f}, "
          f"top-0.1% AUROC {fid['top_0.1pct_auroc']:.4f}")
    hint = auto_hint(result)
    if hint:
        print(hint)
    memo = result["teacher_memorisation"]
    if memo["memorised"]:
        print(f"warning: the teacher scores its training events lower than held-out ones (median ratio "
              f"{memo['ratio']:.2f}): it has memorised them, and the student is trained on those "
              f"scores; judge the student on held-out events")
    if "selection" in result:
        chosen = result["selection"]["chosen"]
        print(f"--auto chose head {chosen['head']}, queries {chosen['queries']}, hidden {chosen['hidden']}, "
              f"active rounds {chosen['active']}, {chosen.get('sparsity', 0):.0%} of the weights pruned")
    plots = "training.png, fidelity.png" + (", selection.png" if "selection" in result else "")
    print(f"student written to {a.out} (metrics.json, student.json, model.h5, {plots})")


def _run_demo(a):
    from .pipelines.run import run_recipe_args
    start = time.perf_counter()
    out, markdown = run_recipe_args("demo", "trigger", {"events": a.events, "seed": a.seed}, Path(a.out),
                                    quiet=a.quiet)
    print(markdown)
    print(f"[demo] done in {time.perf_counter() - start:.0f}s; artefacts in {out} "
          f"(results.md, teacher.pt, student/, exports/, report/report.html)")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except KDError as exc:
        print(f"kdcompress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdcompress: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen library failure: still one line unless --debug
        if args.debug or os.environ.get("KDCOMPRESS_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"kdcompress: error: {exc.__class__.__name__}: {first} (rerun with --debug for details)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
