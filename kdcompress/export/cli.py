"""`kdcompress export SOURCE --target ...`: the main CLI registers it with `add_parser(verbs)`."""
from __future__ import annotations

from pathlib import Path

from ..errors import KDError

PRECISION_HELP = ("per-layer hls4ml type, LAYER=TYPE (result type) or LAYER.FIELD=TYPE (FIELD: result, accum, "
                  "weight, bias, ...), e.g. dense0.accum=ap_fixed<18,8>; repeatable; applied over --hls-config")


def add_parser(verbs):
    """Add the `export` verb to an argparse subparsers object; `args.run(args)` runs it."""
    p = verbs.add_parser("export", help="export a student (onnx, tflite, fpga) or a teacher (onnx), each verified")
    p.add_argument("source", help="student folder, or teacher file (.pt checkpoint) for --target onnx")
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="onnx, tflite, fpga or all; repeat the option or give a comma list")
    p.add_argument("--out", default=None, help="output folder (default: <student>/export, <teacher>_export)")
    p.add_argument("--data", default=None,
                   help="ADC2021 folder or tabular .npz/.csv for the verification events "
                        "(default: the student's training data, from student.json)")
    p.add_argument("--backend", default="Vitis", choices=["Vitis", "Vivado"], help="hls4ml backend (fpga)")
    p.add_argument("--part", default=None, help="FPGA part (default: the backend's)")
    p.add_argument("--clock-period", type=float, default=5.0, metavar="NS", help="clock period in ns (fpga)")
    p.add_argument("--reuse-factor", type=int, default=1, metavar="N", help="hls4ml reuse factor (fpga)")
    p.add_argument("--strategy", default="Latency", choices=["Latency", "Resource"], help="hls4ml strategy (fpga)")
    p.add_argument("--precision", action="append", default=[], metavar="LAYER[.FIELD]=TYPE", help=PRECISION_HELP)
    p.add_argument("--hls-config", default=None, metavar="FILE.yml",
                   help="hls4ml config (HLSConfig mapping, or a whole hls4ml YAML) merged over the generated one")
    p.add_argument("--synth", action="store_true",
                   help="also run HLS synthesis (needs vitis-run or vivado_hls on PATH; refused otherwise)")
    p.add_argument("--seed", type=int, default=0, help="seed of the event subsamples (same seed, same result)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)
    return p


def run(args) -> None:
    from . import MANIFEST, export, output_folder
    hls_config = hls_config_from_args(args.hls_config, args.precision)
    manifest = export(args.source, args.target, out=args.out, data=args.data, seed=args.seed,
                      hls_config=hls_config, backend=args.backend, part=args.part, clock_period=args.clock_period,
                      reuse_factor=args.reuse_factor, strategy=args.strategy, synth=args.synth, quiet=args.quiet)
    for artefact in manifest["artefacts"]:
        print(summary_line(artefact))
    print(f"manifest: {output_folder(args.source, args.out) / MANIFEST}")


def summary_line(artefact: dict) -> str:
    check = artefact["agreement"]
    parts = [f"{artefact['target']:<12} {artefact['path']:<24} {check['events']} events",
             f"max |diff| {check['max_abs_diff']:.3g}"]
    if "bit_exact_fraction" in check:
        parts.append(f"bit-exact {check['bit_exact_fraction']:.6f}")
    parts.extend(f"AUROC {name} {value:.4f}" for name, value in check.get("auroc", {}).items())
    return ", ".join(parts)


def hls_config_from_args(path, precisions) -> dict | None:
    """--hls-config file (if any) with every --precision entry set on top of it."""
    from .fpga import user_hls_config
    config = user_hls_config(read_hls_yaml(path)) if path else {}
    for item in precisions or []:
        layer, field, type_name = parse_precision(item)
        config.setdefault("LayerName", {}).setdefault(layer, {}).setdefault("Precision", {})[field] = type_name
    return config or None


def parse_precision(item: str):
    """'dense0=ap_fixed<8,3>' -> ('dense0', 'result', 'ap_fixed<8,3>'); 'dense0.accum=...' sets accum."""
    target, sep, type_name = item.partition("=")
    layer, _, field = target.strip().partition(".")
    if not sep or not layer or not type_name.strip():
        raise KDError(f"--precision expects LAYER=TYPE or LAYER.FIELD=TYPE, got '{item}'")
    return layer, field.strip() or "result", type_name.strip()


def read_hls_yaml(path) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # hls4ml's own hls4ml_config.yml tags the Keras model file; it is not needed here
    Loader.add_multi_constructor("!keras_model", lambda loader, suffix, node: None)
    path = Path(path)
    if not path.is_file():
        raise KDError(f"hls4ml config file {path} does not exist")
    try:
        config = yaml.load(path.read_text(), Loader=Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KDError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise KDError(f"{path} must hold a mapping (hls4ml HLSConfig), found {type(config).__name__}")
    return config
