"""hls4ml FPGA firmware of a QKeras student (io_parallel), verified bit-exact by C simulation.

How bit-exactness is obtained (see /work/shared/STACK.md):
- the firmware input type is the student's input quantizer type, and the C simulation is fed events that
  are already quantized to it (by the QKeras quantizer itself);
- every layer's precision comes from its QKeras quantizer (config_from_keras_model, granularity='name'),
  except unsigned quantized_bits (keep_negative=False), which hls4ml 1.3 maps to a signed type with one
  fractional bit less: it becomes ufixed<bits, integer, RND_CONV, SAT>;
- an average pool of 2**k values gets k more fractional (result) and integer (accumulator) bits than its
  input type: with 'auto' hls4ml kept the input type and truncated the averages;
- a quantized_bits QActivation right after a QDense/QConv2D is pinned onto that layer's result type.
  hls4ml 1.3's merge_linear_activation pass otherwise drops it (it only copies a `quantizer` attribute,
  which QKeras activations do not set), so the firmware would neither round nor saturate there.
A mismatch fails the export and names the first differing layer (hls4ml tracing on both sides).
synth=True runs hls_model.build() (HLS synthesis) only when the backend's program is on PATH (vitis-run
for Vitis, vivado_hls for Vivado); without it the export fails with a KDError before doing any work,
since a requested synthesis that silently did not happen would be misleading.
The artefact's sha256 covers the generated firmware/ sources (verify.sha256_tree), not the compiled
C-simulation library, which depends on the machine's compiler.
"""
from __future__ import annotations

import copy
import numbers
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import KDError, MissingDependency
from ..registry import EXPORTERS
from .context import STUDENT, ExportContext
from .describe import student_input, student_output
from .verify import agreement, library_output_silenced, model_output, sha256_tree

BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
# the program each backend's build() runs (hls4ml 1.3: Vitis calls vitis-run, Vivado calls vivado_hls)
VENDOR_TOOLS = {"Vitis": ("vitis-run",), "Vivado": ("vivado_hls",)}
HLS_CONFIG_KEYS = ("Model", "LayerName", "LayerType", "Optimizers", "SkipOptimizers", "Flows")
PROJECT_DIR = "fpga"
PROJECT_NAME = "kdcompress_student"
FPGA_EVENTS = 20_000  # C-simulation events shared over background test and signals
TRACE_EVENTS = 64  # mismatching events traced layer by layer
HASH_EXCLUDES = (".so",)


@dataclass
class FpgaOptions:
    backend: str = "Vitis"
    part: Optional[str] = None
    clock_period: float = 5.0
    reuse_factor: int = 1
    strategy: str = "Latency"
    hls_config: Optional[dict] = None
    synth: bool = False

    def __post_init__(self):
        self.backend = _choice(self.backend, BACKENDS, "backend")
        self.strategy = _choice(self.strategy, STRATEGIES, "strategy")
        if not isinstance(self.reuse_factor, numbers.Integral) or self.reuse_factor < 1:
            raise KDError(f"reuse factor must be a positive integer, got {self.reuse_factor!r}")
        self.reuse_factor = int(self.reuse_factor)
        if not isinstance(self.clock_period, numbers.Real) or not self.clock_period > 0:
            raise KDError(f"clock period must be a number > 0 (ns), got {self.clock_period!r}")
        self.clock_period = float(self.clock_period)
        self.hls_config = user_hls_config(self.hls_config)

    def require_vendor_tools(self) -> None:
        """synth=True needs the backend's HLS program on PATH; fail before any work otherwise."""
        tools = VENDOR_TOOLS[self.backend]
        if not any(shutil.which(tool) for tool in tools):
            raise KDError(f"synthesis needs the vendor tools: {' or '.join(tools)} is not on PATH for the "
                          f"{self.backend} backend (export without synth to get the verified C-simulation project)")


def _choice(value: str, allowed, what: str) -> str:
    for option in allowed:
        if str(value).lower() == option.lower():
            return option
    raise KDError(f"unknown {what} '{value}' (known: {', '.join(allowed)})")


def user_hls_config(config) -> Optional[dict]:
    """A user hls4ml config: the HLSConfig mapping (Model, LayerName, ...) or a whole hls4ml YAML with HLSConfig."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise KDError(f"the hls4ml config must be a mapping, got {type(config).__name__}")
    config = config.get("HLSConfig", config)
    unknown = sorted(set(config) - set(HLS_CONFIG_KEYS))
    if unknown:
        raise KDError(f"unknown hls4ml config key(s) {', '.join(unknown)} (known: {', '.join(HLS_CONFIG_KEYS)})")
    return copy.deepcopy(config)


def _hls4ml():
    try:
        with library_output_silenced():
            import hls4ml
    except ImportError:
        raise MissingDependency("hls4ml==1.3.0", "the FPGA export") from None
    return hls4ml


# ---------------------------------------------------------------- configuration

def generated_config(model, options: FpgaOptions) -> dict:
    """hls4ml HLSConfig from the QKeras quantizers, with the input and linear-quantizer types pinned."""
    hls4ml = _hls4ml()
    with library_output_silenced():
        config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=options.backend,
                                                      default_reuse_factor=options.reuse_factor)
    config["Model"]["Strategy"] = options.strategy
    config["Model"]["ReuseFactor"] = options.reuse_factor
    _fix_unsigned_types(model, config["LayerName"])
    _pin_input_type(model, config["LayerName"])
    _pin_linear_quantizers(model, config["LayerName"])
    _widen_average_pools(model, config["LayerName"])
    return config


def _result(layers: dict, name: str) -> str:
    return layers[name]["Precision"]["result"]


def _set_result(layers: dict, name: str, precision: str) -> None:
    layers[name]["Precision"]["result"] = precision


def _fix_unsigned_types(model, layers: dict) -> None:
    for layer in model.layers:
        if _is_unsigned_bits(layer):
            _set_result(layers, layer.name, _unsigned_type(layer.quantizer))


def _pin_input_type(model, layers: dict) -> None:
    input_layer, input_quant = _input_layers(model)
    _set_result(layers, input_layer.name, _result(layers, input_quant.name))


def _pin_linear_quantizers(model, layers: dict) -> None:
    """A layer followed by QActivation(quantized_bits) gets that type on its result and its `_linear` twin,
    so hls4ml's optimizers find nothing to merge away."""
    for layer, quantizer_layer in _linear_quantizers_after_layers(model):
        for name in (layer.name, f"{layer.name}_linear"):
            if name in layers:
                _set_result(layers, name, _result(layers, quantizer_layer.name))


FIXED_TYPE = re.compile(r"^(u?fixed)<\s*(\d+)\s*,\s*(-?\d+)")
SHAPE_ONLY = ("Reshape", "Flatten", "InputLayer")


def _widen_average_pools(model, layers: dict) -> None:
    """An average pool of n = 2**k inputs gets k more fractional bits on its result and k more integer bits on
    its accumulator, so the firmware's average equals Keras's float one exactly ('auto' truncated it)."""
    previous = None
    for layer in model.layers:
        if "AveragePooling" in type(layer).__name__ and previous is not None:
            n = int(np.prod(layer.pool_size))
            match = FIXED_TYPE.match(previous)
            if match and n & (n - 1) == 0:
                kind, width, integer = match.group(1), int(match.group(2)), int(match.group(3))
                k = n.bit_length() - 1
                layers[layer.name]["Precision"]["result"] = f"{kind}<{width + k},{integer}>"
                layers[layer.name]["Precision"]["accum"] = f"{kind}<{width + 2 * k},{integer + k}>"
        result = layers.get(layer.name, {}).get("Precision", {}).get("result", "auto")
        if result != "auto" or type(layer).__name__ not in SHAPE_ONLY:
            previous = result if result != "auto" else None


def _is_unsigned_bits(layer) -> bool:
    return (type(layer).__name__ == "QActivation" and _quantizer_name(layer) == "quantized_bits"
            and not layer.quantizer.keep_negative)


def _unsigned_type(quantizer) -> str:
    """QKeras quantized_bits(bits, integer, keep_negative=False) keeps bits - integer fractional bits and
    saturates to [0, 2**integer); hls4ml 1.3 maps it to a signed fixed<bits, integer + 1>, one fractional
    bit short, so it is replaced by the matching unsigned type."""
    return f"ufixed<{int(quantizer.bits)},{int(quantizer.integer)},RND_CONV,SAT>"


def _input_layers(model):
    """(InputLayer, the QActivation quantizing it): its type is the firmware input type."""
    first, second = model.layers[0], model.layers[1] if len(model.layers) > 1 else None
    if second is None or type(second).__name__ != "QActivation" or _quantizer_name(second) != "quantized_bits":
        raise KDError("the student has no input quantizer (a QActivation(quantized_bits) right after the "
                      "input); the firmware input type cannot be fixed")
    return first, second


def _quantizer_name(layer) -> str:
    return type(getattr(layer, "quantizer", None)).__name__


def _linear_quantizers_after_layers(model):
    """(layer, QActivation(quantized_bits) that directly follows it) for weighted layers."""
    pairs = []
    for layer, following in zip(model.layers[:-1], model.layers[1:]):
        if (layer.weights and type(following).__name__ == "QActivation"
                and _quantizer_name(following) == "quantized_bits" and following.input is layer.output):
            pairs.append((layer, following))
    return pairs


def merged_config(generated: dict, user: Optional[dict]) -> dict:
    """`user` merged over `generated` (nested mappings merge, other values replace); unknown layers refused."""
    if not user:
        return generated
    known = set(generated.get("LayerName", {}))
    unknown = sorted(set(user.get("LayerName", {})) - known)
    if unknown:
        raise KDError(f"hls4ml config names unknown layer(s) {', '.join(unknown)} (layers: {', '.join(sorted(known))})")
    return _deep_merge(generated, user)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---------------------------------------------------------------- conversion and C simulation

def convert(model, config: dict, folder: Path, options: FpgaOptions, compile: bool = True):
    """hls4ml model for `folder` (which must not exist yet), compiled for C simulation unless told not to."""
    hls4ml = _hls4ml()
    extra = {"part": options.part} if options.part else {}
    try:
        with library_output_silenced():
            hls_model = hls4ml.converters.convert_from_keras_model(
                model, hls_config=config, output_dir=str(folder), project_name=PROJECT_NAME,
                backend=options.backend, io_type="io_parallel", clock_period=options.clock_period, **extra)
            if compile:
                hls_model.compile()
    except Exception as exc:  # hls4ml raises plain Exceptions (bad precision strings, g++ failures, ...)
        raise KDError(f"hls4ml could not convert or compile the student: {_first_line(exc)}") from None
    return hls_model


def quantized_inputs(student, x: np.ndarray) -> np.ndarray:
    """Raw events -> preprocessed -> rounded/saturated by the student's own input quantizer (float64)."""
    _, input_quant = _input_layers(student.model)
    z = student.preprocessing.apply(x)
    return np.asarray(input_quant.quantizer(z), dtype=np.float64)


def c_simulation(hls_model, x: np.ndarray) -> np.ndarray:
    with library_output_silenced():
        return np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float64).reshape(len(x), -1)[:, 0]


def first_differing_layer(model, config: dict, options: FpgaOptions, x: np.ndarray) -> str:
    """Name of the first layer whose hls4ml output differs from the QKeras one on events `x`.

    Uses hls_model.trace (a traced copy compiled in a scratch folder) and, for the Keras side,
    hls4ml.model.profiling.get_ymodel_keras when it imports (it needs pandas and seaborn). An hls4ml layer
    also matches when it equals the output of the Keras layers merged into it (a quantizer whose type was
    pinned on the layer's result).
    """
    traced = copy.deepcopy(config)
    for layer_config in traced["LayerName"].values():
        layer_config["Trace"] = True
    with tempfile.TemporaryDirectory(prefix="kdcompress-trace-") as scratch:
        hls_model = convert(model, traced, Path(scratch) / "trace", options, compile=False)  # trace() compiles
        try:
            with library_output_silenced():
                _, hls_outputs = hls_model.trace(np.ascontiguousarray(x))
                keras_outputs = keras_layer_outputs(model, x)
        except Exception as exc:  # tracing is a diagnosis: its failure must not hide the mismatch itself
            return f"unknown (hls4ml tracing failed: {_first_line(exc)})"
        hls_layers = {layer.name for layer in hls_model.get_layers()}
    return _first_difference(model, hls_layers, hls_outputs, keras_outputs, len(x))


def keras_layer_outputs(model, x: np.ndarray) -> dict:
    """Output of every Keras layer on `x`, keyed by layer name."""
    try:
        from hls4ml.model.profiling import get_ymodel_keras
    except ImportError:  # hls4ml's profiling module imports pandas and seaborn, which are optional
        return _layer_outputs(model, x)
    return get_ymodel_keras(model, x)


def _layer_outputs(model, x: np.ndarray) -> dict:
    """What get_ymodel_keras computes for models without fused activations (ours have none)."""
    from ..tf_env import tensorflow
    tf = tensorflow()
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    probe = tf.keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe(x.astype(np.float32), training=False)
    return {layer.name: np.asarray(out) for layer, out in zip(layers, outputs)}


def _first_difference(model, hls_layers, hls_outputs, keras_outputs, n: int) -> str:
    names = [layer.name for layer in model.layers]
    for i, name in enumerate(names):
        if name not in hls_outputs:
            continue
        candidates = [name]
        for follower in names[i + 1:]:  # Keras layers merged into this hls4ml layer
            if follower in hls_layers:
                break
            candidates.append(follower)
        hls_values = np.asarray(hls_outputs[name], dtype=np.float64).reshape(n, -1)
        if not any(_same(hls_values, keras_outputs.get(c), n) for c in candidates):
            return name
    return names[-1]


def _same(hls_values: np.ndarray, keras_values, n: int) -> bool:
    if keras_values is None:
        return False
    keras_values = np.asarray(keras_values, dtype=np.float64).reshape(n, -1)
    return keras_values.shape == hls_values.shape and bool(np.array_equal(keras_values, hls_values))


# ---------------------------------------------------------------- exporter

@EXPORTERS.register("fpga")
def export_fpga(ctx: ExportContext, folder) -> list:
    if ctx.source.kind != STUDENT:
        raise KDError("the fpga target exports students only (teachers: onnx)")
    options: FpgaOptions = ctx.options.get("fpga") or FpgaOptions()
    model = ctx.source.model.model
    config = merged_config(generated_config(model, options), options.hls_config)
    project = Path(folder) / PROJECT_DIR
    ctx.note(f"fpga: hls4ml {options.backend} project, compiling the C simulation")
    hls_model = convert(model, config, project, options)
    check = _verify(ctx, hls_model, config, options)
    synthesis = _synthesise(ctx, hls_model, options)
    artefact = _finish_project(ctx, hls_model, project, config, options, check)
    return [{**artefact, "synthesis": synthesis}]


def _finish_project(ctx: ExportContext, hls_model, project: Path, config: dict, options: FpgaOptions,
                    check: dict) -> dict:
    """Write README.md and the final-location hls4ml_config.yml, drop the simulation library; manifest entry."""
    from .fpga_readme import fixed_point_type, write_final_config, write_readme
    student = ctx.source.model
    write_final_config(hls_model, project, Path(ctx.destination or project.parent) / PROJECT_DIR)
    port_in, port_out = hls_model.get_input_variables()[0], hls_model.get_output_variables()[0]
    input_type = fixed_point_type(project, port_in)
    output_type = fixed_point_type(project, port_out)
    settings = _settings(hls_model, options)
    _remove_simulation_library(project)
    write_readme(project, hls_model, student, ctx.source, config, settings, input_type, output_type, check)
    return {"target": "fpga", "path": PROJECT_DIR, "sha256": sha256_tree(project / "firmware", HASH_EXCLUDES),
            "sha256_of": "firmware/: sorted relative paths with each file's sha256; compiled *.so excluded",
            "input": student_input(student, port_in.name, input_type["cpp"], fixed_point=input_type),
            "output": student_output(student, port_out.name, output_type["cpp"], fixed_point=output_type),
            "agreement": check, "hls": settings}


def _remove_simulation_library(project: Path) -> None:
    """The compiled C-simulation library is machine-specific and built for the staging path: not shipped."""
    for library in (project / "firmware").glob("*.so"):
        library.unlink()


def _verify(ctx: ExportContext, hls_model, config: dict, options: FpgaOptions) -> dict:
    student = ctx.source.model
    events = ctx.events(total=FPGA_EVENTS)
    x = {name: quantized_inputs(student, values) for name, values in events.items()}
    ctx.note(f"fpga: C simulation of {sum(len(v) for v in x.values())} held-out events")
    reference = {name: model_output(student, v.astype(np.float32)) for name, v in x.items()}
    firmware = {name: c_simulation(hls_model, v) for name, v in x.items()}
    check = agreement(reference, firmware)
    all_x = np.concatenate(list(x.values()))
    differs = np.concatenate([firmware[k] != reference[k] for k in x])
    check["bit_exact_fraction"] = float(1.0 - differs.mean()) if differs.size else 1.0
    check["tolerance"] = "bit-exact (every output identical)"
    if differs.any():
        ctx.note("fpga: outputs differ, tracing layer by layer")
        layer = first_differing_layer(student.model, config, options, all_x[differs][:TRACE_EVENTS])
        raise KDError(f"hls4ml C simulation is not bit-exact with the QKeras student: {int(differs.sum())} of "
                      f"{differs.size} events differ (max |diff| {check['max_abs_diff']:.6g}); first differing "
                      f"layer: '{layer}' (check its precision: {_layer_precision(config, layer)})")
    return check


def _layer_precision(config: dict, layer: str) -> str:
    precision = config.get("LayerName", {}).get(layer, {}).get("Precision", {})
    return ", ".join(f"{k}={v}" for k, v in precision.items()) or "not set"


def _settings(hls_model, options: FpgaOptions) -> dict:
    return {"backend": options.backend, "part": hls_model.config.get_config_value("Part"),
            "clock_period_ns": options.clock_period, "io_type": "io_parallel", "strategy": options.strategy,
            "reuse_factor": options.reuse_factor, "project_name": PROJECT_NAME,
            "config_file": f"{PROJECT_DIR}/hls4ml_config.yml", "readme": f"{PROJECT_DIR}/README.md",
            "user_config": bool(options.hls_config)}


def _synthesise(ctx: ExportContext, hls_model, options: FpgaOptions):
    """None unless synth was asked for (the tools were checked before any work); else the HLS report."""
    if not options.synth:
        return None
    options.require_vendor_tools()
    ctx.note(f"fpga: running {options.backend} HLS synthesis (this takes minutes)")
    try:
        with library_output_silenced():
            report = hls_model.build(csim=False, synth=True)
    except Exception as exc:
        raise KDError(f"HLS synthesis failed: {_first_line(exc)}") from None
    return report


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return re.sub(r"\s+", " ", lines[0])[:300] if lines else exc.__class__.__name__
