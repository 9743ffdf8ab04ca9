"""Hand-computed checks of kdcompress.bench.metrics and kdcompress.bench.size."""
import os

import numpy as np
import pytest

from kdcompress.bench import metrics, size
from kdcompress.errors import KDError


# ---------------------------------------------------------------- AUROC

def test_auroc_hand_computed():
    # background beaten per signal: 1.5 -> 2, 2.5 -> 3, 3.5 -> 4, 4.5 -> 4, so 13 of 16 pairs
    assert metrics.auroc([0, 1, 2, 3], [1.5, 2.5, 3.5, 4.5]) == pytest.approx(13 / 16, abs=1e-15)


def test_auroc_ties_count_half():
    assert metrics.auroc([1, 1], [1, 1]) == 0.5
    # pairs: (0,1) win, (1,1) half, (2,1) loss -> 1.5 / 3
    assert metrics.auroc([0, 1, 2], [1]) == pytest.approx(0.5)
    # (0,1) win, (1,1) half, (0,2) win, (1,2) win -> 3.5 / 4
    assert metrics.auroc([0, 1], [1, 2]) == pytest.approx(3.5 / 4)


def test_auroc_perfect_and_reversed():
    assert metrics.auroc([0, 1, 2], [3, 4]) == 1.0
    assert metrics.auroc([3, 4], [0, 1, 2]) == 0.0


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    background = np.round(rng.normal(0.0, 1.0, 5000), 1)
    signal = np.round(rng.normal(0.7, 1.2, 3000), 1)
    labels = np.r_[np.zeros(background.size), np.ones(signal.size)]
    expected = roc_auc_score(labels, np.r_[background, signal])
    assert metrics.auroc(background, signal) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("background, signal", [([], [1.0]), ([1.0], []), ([0.0, np.nan], [1.0]), ([0.0], [np.nan])])
def test_auroc_rejects_empty_and_nan(background, signal):
    with pytest.raises(KDError):
        metrics.auroc(background, signal)


# ---------------------------------------------------------------- thresholds

BACKGROUND = np.arange(100_000, dtype=np.float64)


def test_threshold_at_fpr_lets_exactly_fpr_through():
    threshold = metrics.threshold_at_fpr(BACKGROUND, 1e-4)
    assert threshold == 99989.0
    assert np.sum(BACKGROUND > threshold) == 10
    assert np.sum(BACKGROUND > threshold - 1) == 11  # any lower threshold lets 11 through


def test_threshold_is_max_background_when_sample_too_small():
    assert metrics.threshold_at_fpr(np.arange(1000.0), 1e-5) == 999.0
    assert metrics.tpr_at_fpr(np.arange(1000.0), [998.5, 999.0, 999.5, 2000.0], 1e-5) == 0.5


def test_threshold_with_tied_background_passes_at_most_fpr():
    background = np.r_[np.zeros(95), np.ones(5)]
    threshold = metrics.threshold_at_fpr(background, 0.03)
    assert threshold == 1.0 and np.mean(background > threshold) <= 0.03


def test_tpr_at_fpr_known_signal():
    signal = np.array([99988.0, 99989.0, 99989.5, 99995.0, 1e6])  # strictly above 99989: last three
    assert metrics.tpr_at_fpr(BACKGROUND, signal, 1e-4) == pytest.approx(3 / 5)


def test_threshold_for_rate_and_efficiency():
    # 2.861 kHz out of 28.61 MHz = 1e-4 pass fraction
    threshold = metrics.threshold_for_rate(BACKGROUND, 2.861)
    assert threshold == 99989.0
    assert metrics.efficiency_at_threshold(BACKGROUND, threshold) == pytest.approx(1e-4)
    assert metrics.threshold_for_rate(BACKGROUND, 1.0, bunch_crossing_mhz=1.0) == 99899.0  # 1e-3
    with pytest.raises(KDError):
        metrics.threshold_for_rate(BACKGROUND, 40_000.0)


def test_fpr_out_of_range():
    with pytest.raises(KDError):
        metrics.threshold_at_fpr(BACKGROUND, 1.5)


# ---------------------------------------------------------------- ROC curve

def test_roc_curve_unthinned_matches_sklearn():
    from sklearn.metrics import roc_curve as sk_roc_curve
    rng = np.random.default_rng(1)
    background, signal = np.round(rng.normal(0, 1, 300), 1), np.round(rng.normal(1, 1, 200), 1)
    labels = np.r_[np.zeros(300), np.ones(200)]
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, np.r_[background, signal], drop_intermediate=False)
    fpr, tpr = metrics.roc_curve(background, signal)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_roc_curve_thinned_keeps_low_fpr_end():
    rng = np.random.default_rng(2)
    background, signal = rng.normal(0, 1, 50_000), rng.normal(2, 1, 20_000)
    fpr, tpr = metrics.roc_curve(background, signal, max_points=200)
    assert fpr.size <= 200
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert fpr[fpr > 0].min() == pytest.approx(1 / background.size)
    best_at_lowest = metrics.tpr_at_fpr(background, signal, 1 / background.size)
    assert tpr[fpr == fpr[fpr > 0].min()].max() == pytest.approx(best_at_lowest)


# ---------------------------------------------------------------- agreement

def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(3)
    a = rng.integers(0, 20, 2000)
    b = a + rng.integers(0, 15, 2000)
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))


def test_top_fraction_auroc():
    rng = np.random.default_rng(4)
    teacher = rng.normal(size=20_000)
    assert metrics.top_fraction_auroc(teacher, np.exp(3 * teacher) - 7, 0.01) == 1.0
    noise = rng.normal(size=20_000)
    assert metrics.top_fraction_auroc(teacher, noise, 0.05) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(KDError):
        metrics.top_fraction_auroc(teacher, noise[:10], 0.05)


def test_summarise_keys():
    assert metrics.fpr_key(1e-5) == "tpr_at_fpr_1e-5"
    assert metrics.fpr_key(1e-4) == "tpr_at_fpr_1e-4"
    assert metrics.fpr_key(2.5e-4) == "tpr_at_fpr_2.5e-4"
    summary = metrics.summarise(BACKGROUND, {"A": [1e6, 0.0], "B": [-1.0]})
    assert set(summary) == {"A", "B"}
    assert set(summary["A"]) == {"auroc", "tpr_at_fpr_1e-5", "tpr_at_fpr_1e-4"}
    assert summary["A"]["tpr_at_fpr_1e-4"] == 0.5 and summary["B"]["auroc"] == 0.0


# ---------------------------------------------------------------- size: torch

def test_torch_mlp_macs_and_params():
    torch = pytest.importorskip("torch")
    mlp = torch.nn.Sequential(torch.nn.Linear(57, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 1))
    example = torch.zeros(8, 57)
    assert size.torch_macs(mlp, example) == 57 * 32 + 32 * 16 + 16 * 1
    assert size.torch_param_count(mlp) == 57 * 32 + 32 + 32 * 16 + 16 + 16 + 1
    assert size.torch_bops(mlp, example) == (57 * 32 + 32 * 16 + 16) * 32 * 32
    with torch.no_grad():
        mlp[0].weight.zero_()
    assert size.torch_nonzero_params(mlp) == size.torch_param_count(mlp) - 57 * 32 - 32 + int((mlp[0].bias != 0).sum())


def test_torch_conv_macs():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 2, 3, stride=2),
                              torch.nn.ConvTranspose2d(2, 3, 2, stride=2))
    macs = size.torch_macs(net, torch.zeros(1, 1, 18, 14))
    conv1 = 18 * 14 * 4 * (1 * 9)           # same padding: 18x14 output
    conv2 = 8 * 6 * 2 * (4 * 9)             # (18-3)//2+1 = 8, (14-3)//2+1 = 6
    deconv = (2 * 8 * 6) * (3 * 4)          # each input element x out_channels x kernel taps
    assert macs == conv1 + conv2 + deconv


# ---------------------------------------------------------------- size: keras / qkeras

@pytest.fixture(scope="module")
def qkeras_mlp():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    qkeras = pytest.importorskip("qkeras")
    quantizer = "quantized_bits(8,2,alpha=1)"
    inputs = tf.keras.Input((57,))
    x = qkeras.QActivation("quantized_bits(16,6,alpha=1)")(inputs)
    x = qkeras.QDense(32, kernel_quantizer=quantizer, bias_quantizer=quantizer)(x)
    x = qkeras.QActivation("quantized_relu(8,3)")(x)
    outputs = qkeras.QDense(1, kernel_quantizer=quantizer, bias_quantizer=quantizer)(x)
    return tf.keras.Model(inputs, outputs)


def test_keras_macs_params_bops(qkeras_mlp):
    assert size.keras_macs(qkeras_mlp) == 57 * 32 + 32 * 1
    assert size.keras_param_count(qkeras_mlp) == 57 * 32 + 32 + 32 + 1
    assert size.keras_bops(qkeras_mlp) == 57 * 32 * 8 * 16 + 32 * 1 * 8 * 8
    assert 0 < size.keras_nonzero_params(qkeras_mlp) <= size.keras_param_count(qkeras_mlp)


def test_zero_weights_cost_no_macs(qkeras_mlp):
    first = qkeras_mlp.layers[2]
    kernel = first.kernel.numpy()
    try:
        first.kernel.assign(np.where(np.arange(kernel.size).reshape(kernel.shape) % 4 == 0, kernel, 0.0))
        kept = int(np.count_nonzero(first.kernel.numpy()))
        assert kept == 57 * 32 // 4
        assert size.keras_macs(qkeras_mlp) == kept + 32 * 1
        assert size.keras_bops(qkeras_mlp) == kept * 8 * 16 + 32 * 1 * 8 * 8
        assert size.keras_dense_macs(qkeras_mlp) == 57 * 32 + 32 * 1  # what a CPU matmul does
    finally:
        first.kernel.assign(kernel)
    assert size.keras_macs(qkeras_mlp) == 57 * 32 + 32 * 1


def test_keras_float_conv_macs_and_bops():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    L = tf.keras.layers
    inputs = tf.keras.Input((18, 14, 1))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.DepthwiseConv2D(3)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(2)(x)
    model = tf.keras.Model(inputs, outputs)
    conv, depthwise, dense = 18 * 14 * 4 * 9, 16 * 12 * 4 * 9, 16 * 12 * 4 * 2
    assert size.keras_macs(model) == conv + depthwise + dense
    assert size.keras_bops(model) == (conv + depthwise + dense) * 32 * 32


def test_keras_macs_refuses_layers_without_a_rule():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    model = tf.keras.Sequential([tf.keras.Input((5, 3)), tf.keras.layers.LSTM(4)])
    with pytest.raises(KDError, match="no MAC rule"):
        size.keras_macs(model)


def test_file_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert size.file_bytes(tmp_path / "a.bin") == 10
    assert size.file_bytes(tmp_path) == 15
    with pytest.raises(KDError):
        size.file_bytes(tmp_path / "missing")


# ---------------------------------------------------------------- student against teacher per signal

def test_tracking_bias_is_against_the_background_at_equal_teacher_score():
    from kdcompress.bench import tracking
    t_bg = np.arange(100) / 10.0  # 0.0 .. 9.9, 20 bins of 5 events
    s_bg = t_bg + np.where(t_bg < 5.0, 0.2, 0.0)  # the student is 0.2 high on the lower half only
    low, high = np.array([2.0, 2.1]), np.array([7.0, 7.1])
    record = tracking.signal_bias((t_bg, s_bg), {
        "like_background": (np.r_[low, high], np.r_[low + 0.2, high]),
        "under_scored": (low, low),  # 0.2 below the background's residual there
        "half_above": (np.array([3.0, 12.0]), np.array([3.2, 13.0])),  # 12 is above: +1 against the top bin's 0
    })
    assert record["background"] == {"events": 100, "mean_abs_residual": pytest.approx(0.1),
                                    "top_teacher_score": pytest.approx(9.801)}  # its 99th percentile
    signals = record["signals"]
    assert signals["like_background"]["within"] == {"fraction": 1.0, "bias": pytest.approx(0.0, abs=1e-12)}
    assert signals["like_background"]["above"] == {"fraction": 0.0, "bias": None}
    assert signals["under_scored"]["within"]["bias"] == pytest.approx(-0.2)
    assert signals["half_above"]["within"] == {"fraction": 0.5, "bias": pytest.approx(0.0, abs=1e-12)}
    assert signals["half_above"]["above"] == {"fraction": 0.5, "bias": pytest.approx(1.0)}


def test_tracking_puts_both_scores_in_the_students_target_space():
    from kdcompress.bench import tracking
    meta = {"score_transform": "log1p", "score_scale": 0.125, "output_transform": "log1p"}
    teacher, student = tracking.to_target_space(np.array([0.125 * (np.e - 1)]), np.array([np.e ** 2 - 1]), meta)
    assert teacher == pytest.approx([1.0]) and student == pytest.approx([2.0])
    teacher, student = tracking.to_target_space(np.array([3.0]), np.array([-0.5]), {"score_transform": "identity"})
    assert teacher == pytest.approx([3.0]) and student == pytest.approx([-0.5])  # MLP heads: output as is


def test_tracking_curve_skips_sparse_bins():
    from kdcompress.bench import tracking
    teacher = np.r_[np.full(tracking.MIN_BIN_EVENTS, 0.5), np.full(tracking.MIN_BIN_EVENTS - 1, 1.5)]
    centres, means = tracking.binned_residuals(teacher, teacher + 0.3, np.array([0.0, 1.0, 2.0]))
    assert centres == pytest.approx([0.5]) and means == pytest.approx([0.3])
