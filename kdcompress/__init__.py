"""kdcompress: distil anomaly-detection teachers into tiny quantized students for FPGA, TFLite and ONNX."""
from .api import distill, synth_adc2021, train_teacher  # noqa: F401
from .data import load_dataset  # noqa: F401
from .errors import KDError  # noqa: F401

__version__ = "0.1.0"
