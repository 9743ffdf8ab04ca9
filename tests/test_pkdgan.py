"""P-KDGAN: EDE-GAN generator and score, distillation loss, the two steps, checkpoints, the recipe end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from image_helpers import bar_images, same, state
from kdcompress import KDError
from kdcompress.distill import pkdgan as pk
from kdcompress.teachers.edegan import EDEDiscriminator, EDEGenerator, latent_mse

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "pkdgan-mnist.yaml"
SIDE = 16


def _images(count: int, seed: int, anomalous: bool = False) -> np.ndarray:
    return bar_images(count, seed, SIDE, anomalous, low=4, high_margin=4)


def _trained_pair(width: int, seed: int, epochs: int = 2) -> pk.GANPair:
    torch.manual_seed(seed)
    pair = pk.GANPair(SIDE * SIDE, width, 8, 2e-4)
    pk.train_alone(pair, _images(64, 0), _images(16, 1), epochs, 16, pk.GANWeights(), np.random.default_rng(seed),
                   "test", quiet=True)
    return pair


# ---------------------------------------------------------------- model and score

def test_generator_and_discriminator_shapes():
    g, d = EDEGenerator(SIDE * SIDE, width=4, latent=8), EDEDiscriminator(SIDE * SIDE, width=4)
    with torch.no_grad():
        recon, z, z2 = g(torch.rand(5, SIDE * SIDE))
        logit, features = d(torch.rand(5, SIDE * SIDE))
    assert recon.shape == (5, SIDE * SIDE) and z.shape == z2.shape == (5, 8)
    assert float(recon.min()) >= 0 and float(recon.max()) <= 1  # sigmoid output, like the [0, 1] pixels
    assert logit.shape == (5,) and features.shape == (5, 8, SIDE // 4, SIDE // 4)


@pytest.mark.parametrize("features,message", [(100, "side divisible by 4"), (300, "square grey images"),
                                              (16, "at least 8")])
def test_generator_refuses_images_it_cannot_take(features, message):
    with pytest.raises(KDError, match=message):
        EDEGenerator(features)


def test_generator_refuses_zero_width():
    with pytest.raises(KDError, match="width and latent must be at least 1"):
        EDEGenerator(SIDE * SIDE, width=0)


def test_latent_mse_by_hand():
    z = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    z2 = torch.tensor([[1.0, 0.0], [3.0, -1.0]])
    assert torch.allclose(latent_mse((None, z, z2), None), torch.tensor([2.0, 5.0]))  # (0+4)/2, (9+1)/2
    with pytest.raises(KDError, match="needs a model returning"):
        latent_mse(torch.zeros(2, 3), None)


def test_latent_scores_match_the_registered_score():
    g = EDEGenerator(SIDE * SIDE, width=2, latent=4).eval()
    x = _images(10, 3)
    with torch.no_grad():
        expected = latent_mse(g(torch.from_numpy(x)), None).double().numpy()
    assert np.allclose(pk.latent_scores(g, x, batch=3), expected)


# ---------------------------------------------------------------- distillation

def test_kd_loss_is_zero_against_itself_and_never_moves_the_target():
    torch.manual_seed(0)
    a, b = EDEGenerator(SIDE * SIDE, 4, 8), EDEGenerator(SIDE * SIDE, 2, 8)
    x = torch.from_numpy(_images(8, 0))
    w = pk.GANWeights()
    assert float(pk.kd_loss(a(x), a(x), w).detach()) == 0.0
    loss = pk.kd_loss(b(x), a(x), w)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is None for p in a.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in b.parameters())


def test_kd_loss_weights_each_term():
    z, r = torch.zeros(2, 3), torch.zeros(2, 4)
    outputs = (r + 1, z + 2, z)  # recon off by 1 (L1 1), z off by 2 (L2 4), code of recon exact
    w = pk.GANWeights(kd_z=0.5, kd_recon=3.0, kd_score=0.0)
    assert float(pk.kd_loss(outputs, (r, z, z), w)) == pytest.approx(0.5 * 4 + 3.0 * 1)
    w = pk.GANWeights(kd_z=0.0, kd_recon=0.0, kd_score=10.0)  # residual z - z' is 2 where the target's is 0
    assert float(pk.kd_loss(outputs, (r, z, z), w)) == pytest.approx(10.0 * 4)
    shifted = (r, z + 2, z + 2)  # both codes off by 2: same residual, so only the z terms see it
    assert float(pk.kd_loss(shifted, (r, z, z), w)) == 0.0


def test_bad_weights_are_named():
    with pytest.raises(KDError, match="finite and >= 0"):
        pk.GANWeights(kd=-1).validate()


def test_step1_keeps_the_teacher_fixed_and_trains_the_student():
    teacher = _trained_pair(4, seed=0).generator.train()  # step 1 itself must switch it to eval mode
    next(teacher.parameters()).requires_grad_(False)  # a caller's frozen parameter stays frozen
    before = state(teacher)
    torch.manual_seed(1)
    student = pk.GANPair(SIDE * SIDE, 2, 8, 2e-4)
    start = state(student.generator)
    history = pk.distill_step1(student, teacher, _images(64, 0), _images(16, 1), 2, 16, pk.GANWeights(),
                               np.random.default_rng(0), quiet=True)
    assert same(before, state(teacher))  # weights and batch-norm statistics
    flags = [p.requires_grad for p in teacher.parameters()]
    assert not flags[0] and all(flags[1:])  # handed back as it came
    assert not teacher.training
    assert not same(start, state(student.generator))
    assert len(history["kd"]) == 2 and all(v > 0 for v in history["kd"])


def test_step2_fine_tunes_teacher_and_student_together():
    teacher, student = _trained_pair(4, seed=0), _trained_pair(2, seed=1)
    t0, s0 = state(teacher.generator), state(student.generator)
    history = pk.joint_finetune(teacher, student, _images(64, 0), _images(16, 1), 1, 16, pk.GANWeights(),
                                np.random.default_rng(0), quiet=True)
    assert not same(t0, state(teacher.generator)) and not same(s0, state(student.generator))
    assert {"teacher kd", "kd", "val score"} <= set(history)


def test_targets_leave_batch_norm_statistics_and_mode_alone():
    g = EDEGenerator(SIDE * SIDE, 4, 8).train()
    before = state(g)
    out = pk.targets(g, torch.from_numpy(_images(8, 0)))
    assert g.training and same(before, state(g))
    assert not any(t.requires_grad for t in out)


def test_training_is_reproducible_by_seed():
    a, b, c = (_trained_pair(2, seed=s).generator for s in (5, 5, 6))
    assert same(state(a), state(b))
    assert not same(state(a), state(c))


def test_trained_gan_scores_anomalies_higher():
    pair = _trained_pair(4, seed=0, epochs=15)
    normal, odd = pk.latent_scores(pair.generator, _images(64, 7)), pk.latent_scores(pair.generator,
                                                                                     _images(64, 8, True))
    from kdcompress.bench.metrics import auroc
    assert auroc(normal, odd) > 0.8


def test_check_images_names_the_problem():
    with pytest.raises(KDError, match="NaN"):
        pk.check_images(np.full((3, 64), np.nan), "training images")
    with pytest.raises(KDError, match="non-empty"):
        pk.check_images(np.zeros((0, 64)), "training images")


# ---------------------------------------------------------------- checkpoints and composition

def _save_generator(generator, path):
    from kdcompress.data.preprocess import Preprocessing
    from kdcompress.teachers import Teacher, save_teacher
    arch = {"name": "ede-gan", "kwargs": {"n_features": SIDE * SIDE, "width": generator.width,
                                          "latent": generator.latent}}
    save_teacher(Teacher(module=generator.eval(), score_name="latent_mse",
                         preprocessing=Preprocessing.identity(SIDE * SIDE), arch=arch), path)


def test_generator_checkpoint_round_trip(tmp_path):
    from kdcompress.teachers import load_teacher
    g = _trained_pair(2, seed=0).generator
    _save_generator(g, tmp_path / "student.pt")
    loaded = load_teacher(tmp_path / "student.pt")
    x = _images(20, 4)
    assert np.allclose(loaded.score(x), pk.latent_scores(g, x), rtol=1e-6)


@pytest.mark.slow
def test_gan_student_distils_further_into_a_qkeras_student(tmp_path):
    """A P-KDGAN student is a teacher file, so score regression can take it on to a quantized student."""
    from kdcompress.api import distill
    g = _trained_pair(4, seed=0, epochs=10).generator
    _save_generator(g, tmp_path / "student.pt")
    np.savez(tmp_path / "normal.npz", X=_images(600, 9).reshape(-1, SIDE, SIDE))
    metrics = distill(tmp_path / "student.pt", tmp_path / "normal.npz", tmp_path / "qkeras", epochs=5,
                      hidden=[16, 8], seed=0, quiet=True)
    assert (tmp_path / "qkeras" / "student.json").is_file()
    assert metrics["fidelity"]["spearman"] > 0.3


# ---------------------------------------------------------------- recipe

def test_recipe_refuses_bad_choices(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    cases = [("digits=[12]", "digits must be distinct"), ("student_width=64", "must not exceed teacher_width"),
             ("export=[tflite]", "export must be"), ("weights={kd_zz: 1}", "unknown P-KDGAN loss weight"),
             ("weights={kd: -1}", "finite and >= 0"), ("lr=0", "lr and step2_lr_factor must be > 0"),
             ("teacher_epochs=0", "epochs must be at least 1"), ("batch=x", "key 'batch' must be int"),
             ("compare_student=Z", "compare_student must be one of"), ("compare_epochs=0", "compare_epochs must"),
             ("step2_epochs=0", "step2_epochs must be at least 1"), ("weights={kd: x}", "must be numbers")]
    for override, message in cases:
        with pytest.raises(KDError, match=message):
            run_recipe(RECIPE, ["setting=small", override], out=tmp_path / "bad", quiet=True)
        assert not (tmp_path / "bad" / "split.json").exists(), override  # refused before anything is written


@pytest.mark.slow
def test_small_setting_end_to_end(tmp_path):
    from kdcompress.pipelines.run import run_recipe
    from kdcompress.teachers import load_teacher
    out, markdown = run_recipe(RECIPE, ["setting=small"], out=tmp_path / "run", quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "small"
    assert set(results["ours"]) == {"teacher", "alone", "step1", "student", "teacher_joint", "score_regression"}
    for model, per_digit in results["ours"].items():
        assert set(per_digit) == {"0"} and all(0.0 <= v <= 1.0 for v in per_digit.values()), model
    assert results["compression_macs"] > 5 and results["macs"]["teacher"] > results["macs"]["student"]
    onnx = results["exports"]["0"]["onnx"]
    assert Path(onnx["path"]).is_file() and Path(onnx["path"]).name == "student.onnx"
    assert onnx["max_rel_diff"] < 1e-3
    assert abs(onnx["auroc"] - results["ours"]["student"]["0"]) < 1e-3
    student = load_teacher(results["checkpoints"]["0"]["student"])
    assert student.score_name == "latent_mse" and student.arch["kwargs"]["width"] == 2
    assert (out / "auroc.png").stat().st_size > 0 and (out / "digit0" / "training.png").is_file()
    assert "P-KDGAN student" in markdown and (out / "results.md").is_file()
    assert (out / "digit0" / "student_score_regression" / "student.json").is_file()
    assert results["macs"]["score_regression"] > 0 and -1 <= results["spearman_to_teacher"]["score_regression"]["0"] <= 1
