"""export/twin.grid_twin: int8 TFLite activations on the QKeras grids (seeded paper-CNN students, random images)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kdcompress.errors import KDError  # noqa: E402
from kdcompress.quant import QuantConfig  # noqa: E402

SIDE = 16
STEP = 2.0 ** (QuantConfig().relu_int_bits - QuantConfig().relu_bits)  # default quantized_relu(8, 4): 1/16


def _images(n=256, seed=0):
    """Seeded smooth images in [0, 1], flattened (rows of SIDE * SIDE)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(size=(n, 4, 4))
    return np.kron(coarse, np.ones((SIDE // 4, SIDE // 4))).reshape(n, -1).astype(np.float32)


def _student(variant="B", quant=QuantConfig(), pool="avg", seed=0):
    from kdcompress.students.paper_cnn import build_paper_cnn
    return build_paper_cnn(SIDE * SIDE, quant=quant, variant=variant, pool=pool, seed=seed,
                           image_shape=(SIDE, SIDE, 1))


def test_relu_outputs_sit_on_the_qkeras_grid():
    """Each ReLU of the grid twin rounds and clips as QKeras does; the whole twin is closer to QKeras than the
    float twin, which does not round."""
    from kdcompress.export.twin import float_twin, grid_twin
    model, x = _student(), _images()
    twin = grid_twin(model, x)
    pre = np.random.default_rng(1).normal(scale=6.0, size=(1000, 8)).astype(np.float32)  # below 0 and above the clip
    for name in ("conv0_relu", "conv1_relu", "relu0"):
        expected, got = np.asarray(model.get_layer(name)(pre)), np.asarray(twin.get_layer(name)(pre))
        assert np.array_equal(got, expected), name
        assert got.min() == 0 and got.max() == 255 * STEP and np.array_equal(got / STEP, np.round(got / STEP))
    reference = model.predict(x, verbose=0)
    grid_error = np.abs(twin.predict(x, verbose=0) - reference).mean()
    float_error = np.abs(float_twin(model).predict(x, verbose=0) - reference).mean()
    assert grid_error < 0.5 * float_error


def test_int8_file_keeps_the_relu_grid_and_exact_averages(tmp_path):
    """In the converted file every ReLU output has scale = QKeras step and zero point -128, and the average
    pools (fixed depthwise convolutions) hold the exact averages of their grid inputs."""
    from kdcompress.export.tflite import INT8, _quantized_converter, _convert
    from kdcompress.export.twin import grid_twin
    from kdcompress.tf_env import tensorflow
    model, x = _student(), _images()
    path = tmp_path / "grid.tflite"
    path.write_bytes(_convert(_quantized_converter(grid_twin(model, x), x, INT8)))
    interpreter = tensorflow().lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    details = interpreter.get_input_details()[0]
    scale, zero = details["quantization"]
    interpreter.resize_tensor_input(details["index"], [8, SIDE * SIDE])
    interpreter.allocate_tensors()
    interpreter.set_tensor(details["index"], np.clip(np.round(x[:8] / scale) + zero, -128, 127).astype(np.int8))
    interpreter.invoke()
    values = {}
    for tensor in interpreter.get_tensor_details():
        if tensor["dtype"] == np.int8 and len(tensor["shape"]) == 4 and tensor["shape"][0] == 8:
            q_scale, q_zero = tensor["quantization"]
            values[tensor["name"]] = (interpreter.get_tensor(tensor["index"]).astype(float) - q_zero) * q_scale, \
                q_scale, q_zero
    pools = [v for name, v in values.items() if "depthwise" in name]
    relus = [v for name, v in values.items() if "BiasAdd" in name and "depthwise" not in name]  # conv + ReLU
    assert len(relus) == 2 and len(pools) == 2
    for (relu, relu_scale, relu_zero), (pool, pool_scale, _) in zip(relus, pools):
        assert relu_scale == pytest.approx(STEP) and relu_zero == -128
        assert pool_scale <= STEP / 2  # finer than the ReLU grid: averages are not rounded back
        n, h, w, c = relu.shape
        exact = relu[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        assert np.allclose(pool, exact, atol=1e-9)


def test_average_pool_grid_coarsens_until_the_largest_value_fits():
    from kdcompress.export.twin import INT8_LEVELS, _grid_average
    from kdcompress.tf_env import tensorflow
    tf = tensorflow()
    pool = tf.keras.layers.AveragePooling2D(2, name="pool0")
    for largest, expected in ((1.0, STEP / 4), (255 * STEP / 4 + 0.01, STEP / 2), (8.0, None)):
        x = tf.keras.Input(shape=(4, 4, 2))
        y = _grid_average(tf, pool, STEP, largest, x)
        kinds = [type(layer).__name__ for layer in tf.keras.Model(x, y).layers[1:]]
        if expected is None:
            assert kinds == ["AveragePooling2D"]
        else:
            assert kinds == ["DepthwiseConv2D", "Lambda"]
            grid = tf.keras.Model(x, y)(np.full((1, 4, 4, 2), expected * INT8_LEVELS, np.float32))
            assert np.allclose(np.asarray(grid), expected * INT8_LEVELS)  # the top of the range is held


def test_students_without_an_exact_int8_grid_are_named():
    from kdcompress.export.twin import grid_twin, grid_twin_unsupported
    from kdcompress.students.energy import build_energy
    from kdcompress.students.mlp import build_mlp
    assert grid_twin_unsupported(build_mlp(10, hidden=(8,))) is None
    assert grid_twin_unsupported(_student(pool="max")) is None
    assert "8-bit quantized_relu" in grid_twin_unsupported(_student(quant=QuantConfig(relu_bits=6, relu_int_bits=2)))
    assert "8-bit quantized_relu" in grid_twin_unsupported(build_mlp(10, hidden=(8,), quant=QuantConfig(
        relu_bits=10, relu_int_bits=4)))
    assert "plain chain" in grid_twin_unsupported(build_energy(10, hidden=(8,)))  # branches: squares of projections
    with pytest.raises(KDError, match="no grid twin"):
        grid_twin(build_energy(10, hidden=(8,)), np.zeros((4, 10), np.float32))
