"""The runtimes a benchmark measures, behind one interface.

Each runtime turns raw events into its own input (`prepare`: preprocessing, integer encoding or firmware
input rounding, never timed), runs its model (`calls(threads)`: a context giving a call pinned to that
many threads) and turns outputs into scores (`decode`). Thread pinning:
- torch: torch.set_num_threads(k) for the duration of the context;
- ONNX Runtime: one session per thread count (intra_op_num_threads=k, inter_op_num_threads=1, sequential);
- TFLite: one interpreter per thread count (num_threads=k);
- Keras: TensorFlow's thread pools are fixed when TensorFlow starts (default: all cores) and are not
  changed by the benchmark; the model runs inside a tf.function (graph mode, as served);
- hls4ml C simulation: single-threaded C++ called per event through ctypes; its speed is that of a
  bit-accurate simulation on this CPU, not of the FPGA.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..data.preprocess import Preprocessing
from ..errors import KDError, MissingDependency

CHUNK = 65536


class Runtime:
    """One model on one runtime. Subclasses set `model`, `name` and implement prepare/calls/decode."""
    model: str
    name: str
    artefact: Optional[Path] = None
    for_speed: bool = True
    note: str = ""

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def calls(self, threads: int) -> contextlib.AbstractContextManager:
        """Context yielding call(prepared batch) -> raw output, pinned to `threads` threads."""
        raise NotImplementedError

    def decode(self, output) -> np.ndarray:
        return np.asarray(output, dtype=np.float64).reshape(-1)

    def threads(self, requested: int) -> Optional[int]:
        """Threads the runtime actually uses when `requested` are asked for (None: not controlled)."""
        return requested

    def scores(self, raw: np.ndarray, threads: int) -> np.ndarray:
        """Scores (N,) float64 of raw events, in chunks."""
        prepared = self.prepare(raw)
        with self.calls(threads) as call:
            parts = [self.decode(call(np.ascontiguousarray(prepared[s:s + CHUNK])))
                     for s in range(0, len(prepared), CHUNK)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def close(self) -> None:
        """Release scratch files and libraries."""

    @property
    def label(self) -> str:
        return f"{self.model} / {self.name}"


# ---------------------------------------------------------------- torch (teacher, baseline)

class TorchRuntime(Runtime):
    """A kdcompress Teacher: preprocessing outside, module + score function timed."""
    name = "torch"

    def __init__(self, model: str, teacher, artefact: Path):
        self.model, self.teacher, self.artefact = model, teacher, Path(artefact)

    def prepare(self, raw):
        return self.teacher.preprocessing.apply(raw)

    @contextlib.contextmanager
    def calls(self, threads: int) -> Iterator[Callable]:
        import torch
        from ..registry import SCORES
        score_fn, module, layout = SCORES.get(self.teacher.score_name), self.teacher.module, self.teacher.layout
        module.eval()

        def call(z):
            with torch.inference_mode():
                x = torch.from_numpy(z)
                return score_fn(module(x), x, layout)

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield call
        finally:
            torch.set_num_threads(previous)

    def decode(self, output):
        return output.double().numpy().reshape(-1)


# ---------------------------------------------------------------- Keras / QKeras student

class KerasRuntime(Runtime):
    model, name = "student", "keras"
    note = "TensorFlow thread pools as set at start-up (not pinned)"

    def __init__(self, student, artefact: Path):
        from ..tf_env import tensorflow
        tf = tensorflow()
        self.student, self.artefact = student, Path(artefact)
        n_features = student.preprocessing.n_features
        keras_model = student.model
        self._call = tf.function(lambda x: keras_model(x, training=False),
                                 input_signature=[tf.TensorSpec((None, n_features), tf.float32)])

    def prepare(self, raw):
        return self.student.preprocessing.apply(raw)

    @contextlib.contextmanager
    def calls(self, threads: int):
        yield self._call

    def threads(self, requested: int) -> Optional[int]:
        from ..tf_env import tensorflow
        configured = tensorflow().config.threading.get_intra_op_parallelism_threads()
        return configured or None  # 0 = TensorFlow's default (all cores)


# ---------------------------------------------------------------- ONNX Runtime

def _preprocessing_from(described: dict) -> Preprocessing:
    prep = described.get("preprocessing") or {}
    if "shift" not in prep:
        raise KDError("the manifest input of a preprocessed artefact does not give its preprocessing (shift, offset)")
    return Preprocessing(shift=[int(s) for s in prep["shift"]], offset=[float(o) for o in prep.get("offset", [])])


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnxruntime==1.20.1", "benchmarking ONNX artefacts") from None
    return onnxruntime


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, model: str, artefact: Path, described_input: dict):
        self.model, self.artefact = model, Path(artefact)
        self.raw_input = described_input.get("kind") == "raw"
        self.preprocessing = None if self.raw_input else _preprocessing_from(described_input)
        self._sessions = {}

    def prepare(self, raw):
        raw = np.asarray(raw, dtype=np.float32)
        return raw if self.raw_input else self.preprocessing.apply(raw)

    def _session(self, threads: int):
        if threads not in self._sessions:
            ort = _onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 4  # failures are reported by the benchmark itself
            self._sessions[threads] = ort.InferenceSession(str(self.artefact), sess_options=options,
                                                           providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    @contextlib.contextmanager
    def calls(self, threads: int):
        session = self._session(threads)
        input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
        yield lambda x: session.run([output_name], {input_name: x})[0]


# ---------------------------------------------------------------- TFLite

class TFLiteRuntime(Runtime):
    """float32, int8 or int16x8 TFLite file; integer inputs are encoded in prepare and outputs decoded (untimed)."""

    def __init__(self, name: str, artefact: Path, described_input: dict):
        self.model, self.name, self.artefact = "student", name, Path(artefact)
        self.preprocessing = _preprocessing_from(described_input)
        self._interpreters = {}
        probe = self._interpreter(1)
        self.input_detail, self.output_detail = probe.get_input_details()[0], probe.get_output_details()[0]

    def _interpreter(self, threads: int):
        if threads not in self._interpreters:
            from ..tf_env import tensorflow
            self._interpreters[threads] = tensorflow().lite.Interpreter(model_path=str(self.artefact),
                                                                        num_threads=threads)
        return self._interpreters[threads]

    def prepare(self, raw):
        from ..export.tflite import _encode  # the encoding the export was verified with
        return _encode(self.preprocessing.apply(raw), self.input_detail)

    def decode(self, output):
        from ..export.tflite import _decode
        return _decode(np.asarray(output), self.output_detail).reshape(-1)

    @contextlib.contextmanager
    def calls(self, threads: int):
        from ..export.verify import library_output_silenced
        interpreter = self._interpreter(threads)
        input_index, output_index = self.input_detail["index"], self.output_detail["index"]
        allocated = [None]

        def call(x):
            if allocated[0] != x.shape:  # resizing is setup, done once per batch shape (in the warm-up)
                with library_output_silenced():  # the XNNPACK delegate announces itself on stderr
                    interpreter.resize_tensor_input(input_index, list(x.shape))
                    interpreter.allocate_tensors()
                allocated[0] = x.shape
            interpreter.set_tensor(input_index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output_index)

        yield call


# ---------------------------------------------------------------- hls4ml C simulation

class HlsCsimRuntime(Runtime):
    """The exported hls4ml project, compiled in a scratch copy (the export folder is left untouched)."""
    model, name = "student", "hls4ml-csim"
    for_speed = False
    note = "C simulation for agreement, not speed: says nothing about FPGA latency"

    def __init__(self, student, artefact: Path):
        self.student, self.artefact = student, Path(artefact)
        self._scratch = Path(tempfile.mkdtemp(prefix="kdcompress-bench-hls-"))
        try:
            self.hls_model = _linked_project(self.artefact, self._scratch / "project")
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def prepare(self, raw):
        from ..export.fpga import quantized_inputs
        return np.ascontiguousarray(quantized_inputs(self.student, raw))

    @contextlib.contextmanager
    def calls(self, threads: int):
        yield self.hls_model.predict

    def decode(self, output):
        values = np.asarray(output, dtype=np.float64)
        return values.reshape(len(values), -1)[:, 0] if values.ndim else values.reshape(-1)

    def threads(self, requested: int) -> Optional[int]:
        return 1

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def _linked_project(project: Path, scratch: Path):
    """hls4ml model linked to a copy of `project` at `scratch`, C simulation compiled there."""
    from ..export.verify import library_output_silenced
    if not (project / "hls4ml_config.yml").is_file():
        raise KDError(f"{project} is not an hls4ml project (no hls4ml_config.yml)")
    shutil.copytree(project, scratch, ignore=shutil.ignore_patterns("*.so"))
    try:
        with library_output_silenced():
            import hls4ml
            hls_model = hls4ml.converters.link_existing_project(str(scratch))
            hls_model.config.config["OutputDir"] = str(scratch)
            hls_model.compile()
    except ImportError:
        raise MissingDependency("hls4ml==1.3.0", "benchmarking the FPGA C simulation") from None
    except Exception as exc:  # hls4ml raises plain Exceptions (missing files, g++ failures)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise KDError(f"cannot compile the hls4ml project {project} for C simulation: {first}") from None
    return hls_model
