"""Quantization-aware training settings: bit widths of weights, activations, inputs and output."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import KDError


@dataclass(frozen=True)
class QuantConfig:
    """QKeras `quantized_bits(bits, integer)`: `integer` excludes the sign bit (ap_fixed<bits, integer+1>)."""
    bits: int = 8
    int_bits: int = 2
    relu_bits: int = 8
    relu_int_bits: int = 4
    input_bits: int = 16
    input_int_bits: int = 7
    output_bits: int = 16
    output_int_bits: int = 6
    input_signed: bool = True
    output_signed: bool = True

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 0:
                raise KDError(f"quantization setting {name} must be a non-negative integer, got {value!r}")
        for total, integer in (("bits", "int_bits"), ("relu_bits", "relu_int_bits"),
                               ("input_bits", "input_int_bits"), ("output_bits", "output_int_bits")):
            if getattr(self, total) < 2 or getattr(self, integer) > getattr(self, total):
                raise KDError(f"quantization: {integer} must not exceed {total} (>= 2)")
        for total, integer in (("bits", "int_bits"), ("relu_bits", "relu_int_bits")):
            if getattr(self, integer) >= getattr(self, total):
                raise KDError(f"quantization: {integer} must be smaller than {total}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        return cls(**d)

    def weight_quantizer(self):
        from ..tf_env import qkeras
        return qkeras().quantized_bits(self.bits, self.int_bits, alpha=1)

    def relu_quantizer(self):
        from ..tf_env import qkeras
        return qkeras().quantized_relu(self.relu_bits, self.relu_int_bits)

    def input_quantizer(self):
        from ..tf_env import qkeras
        return qkeras().quantized_bits(self.input_bits, self.input_int_bits, keep_negative=self.input_signed,
                                       alpha=1)

    # Energy head: an energy E ~ score / scale spans several decades, so its path is wider than the trunk's.
    def _projection_format(self):
        return self.relu_bits + 2, self.relu_int_bits + 2

    def projection_quantizer(self):
        """Signed projections before squaring: 2 bits wider (and 2 more integer bits) than the ReLUs."""
        from ..tf_env import qkeras
        bits, integer = self._projection_format()
        return qkeras().quantized_bits(bits, integer, alpha=1)

    def square_quantizer(self):
        """Squares of projections, exact: twice the projection's bits and integer bits, unsigned."""
        from ..tf_env import qkeras
        bits, integer = self._projection_format()
        return qkeras().quantized_bits(2 * bits, 2 * integer, keep_negative=False, alpha=1)

    def energy_output_quantizer(self):
        """Energy output: unsigned, 8 more bits than the regression output, all of them integer bits."""
        from ..tf_env import qkeras
        return qkeras().quantized_bits(self.output_bits + 8, self.output_int_bits + 10, keep_negative=False,
                                       alpha=1)

    def output_quantizer(self):
        from ..tf_env import qkeras
        return qkeras().quantized_bits(self.output_bits, self.output_int_bits, keep_negative=self.output_signed,
                                       alpha=1)
