import numpy as np
import pytest
import torch
from torch import nn

from kdcompress import KDError, load_dataset
from kdcompress.teachers import load_teacher
from kdcompress.teachers.models import VAE, DenseAE
from kdcompress.teachers.scores import kl_divergence, masked_mse, mu_squared, object_mask


def test_checkpoint_round_trip_gives_identical_scores(tiny_teacher, tabular_file):
    data = load_dataset(tabular_file)
    a, b = load_teacher(tiny_teacher), load_teacher(tiny_teacher)
    assert a.arch["name"] == "dense-ae" and a.score_name == "mse"
    assert np.array_equal(a.score(data.test), b.score(data.test))
    assert tiny_teacher.with_suffix(".loss.png").stat().st_size > 1000


def test_teacher_scores_anomalies_higher(tiny_teacher, tabular_file):
    from kdcompress.bench.metrics import auroc
    data = load_dataset(tabular_file)
    teacher = load_teacher(tiny_teacher)
    assert auroc(teacher.score(data.test), teacher.score(data.signals["anomaly"])) > 0.9


def test_training_is_reproducible(tabular_file, tmp_path):
    from kdcompress.api import train_teacher
    a = train_teacher(tabular_file, tmp_path / "a.pt", hidden=[8], latent=2, epochs=2, seed=3, quiet=True)
    b = train_teacher(tabular_file, tmp_path / "b.pt", hidden=[8], latent=2, epochs=2, seed=3, quiet=True)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_vae_teacher_trains_and_scores(tabular_file, tmp_path):
    from kdcompress.api import train_teacher
    teacher = train_teacher(tabular_file, tmp_path / "vae.pt", arch="vae", hidden=[16], latent=3, epochs=2,
                            quiet=True)
    loaded = load_teacher(tmp_path / "vae.pt")
    assert loaded.score_name == "mu2"
    data = load_dataset(tabular_file)
    s = loaded.score(data.test[:64])
    assert s.shape == (64,) and np.all(s >= 0)
    assert np.array_equal(s, teacher.score(data.test[:64]))


def test_torchscript_teacher_needs_and_uses_score(tiny_teacher, tabular_file, tmp_path):
    data = load_dataset(tabular_file)
    native = load_teacher(tiny_teacher)
    scripted = tmp_path / "ts.pt"
    torch.jit.script(native.module).save(str(scripted))
    with pytest.raises(KDError, match="--score"):
        load_teacher(scripted)
    foreign = load_teacher(scripted, score="mse", n_features=data.n_features)
    z = native.preprocessing.apply(data.test)
    assert np.allclose(foreign.score(z), native.score(data.test), rtol=1e-5, atol=1e-7)


def test_torch_export_teacher(tmp_path):
    module = DenseAE(6, hidden=[8], latent=2).eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (torch.zeros(4, 6),), dynamic_shapes=({0: batch},))
    path = tmp_path / "teacher.pt2"
    torch.export.save(program, str(path))
    teacher = load_teacher(path, score="mse")
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    expected = ((module(torch.from_numpy(x)) - torch.from_numpy(x)) ** 2).mean(1).detach().numpy()
    assert np.allclose(teacher.score(x), expected, rtol=1e-5)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(nn.Linear(3, 3), path)
    with pytest.raises(KDError, match="pickled code.*torch.jit.script"):
        load_teacher(path)


def test_plain_state_dict_and_junk_are_refused(tmp_path):
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(KDError, match="not a kdcompress teacher checkpoint"):
        load_teacher(tmp_path / "sd.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(KDError, match="not a readable teacher file"):
        load_teacher(tmp_path / "junk.pt")
    with pytest.raises(KDError, match="does not exist"):
        load_teacher(tmp_path / "missing.pt")


def test_truncated_checkpoint_is_named(tiny_teacher, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_teacher.read_bytes()[:300])
    with pytest.raises(KDError, match="cut.pt is not a readable teacher file: truncated or corrupt archive"):
        load_teacher(cut)


def test_masked_mse_ignores_padded_objects():
    layout = {"objects": 2, "per_object": 3}
    x = torch.tensor([[1.0, 0.5, 0.2, 0.0, 0.0, 0.0]])
    recon = torch.tensor([[1.0, 0.5, 0.2, 9.0, 9.0, 9.0]])
    assert object_mask(x, layout).tolist() == [[1, 1, 1, 0, 0, 0]]
    assert float(masked_mse(recon, x, layout)) == 0.0
    assert float(masked_mse(recon + 1.0, x, layout)) == pytest.approx(3.0 / 6.0)


def test_latent_scores_by_hand():
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)
    outputs = (None, mu, logvar)
    assert float(mu_squared(outputs, None)) == 5.0
    assert float(kl_divergence(outputs, None)) == pytest.approx(2.5)
    with pytest.raises(KDError, match="reconstruction, mu, logvar"):
        mu_squared(torch.zeros(1, 2), None)


def test_vae_eval_is_deterministic():
    vae = VAE(5, hidden=[8], latent=2).eval()
    x = torch.randn(3, 5)
    assert torch.equal(vae(x)[0], vae(x)[0])


@pytest.mark.parametrize("arch", ["ede-gan", "calo-ae", "feature-kd"])
def test_architectures_with_their_own_training_are_named(tabular_file, tmp_path, arch):
    from kdcompress.api import train_teacher
    with pytest.raises(KDError, match=f"'{arch}' is trained by its own function or recipe"):
        train_teacher(tabular_file, tmp_path / "t.pt", arch=arch, epochs=1, quiet=True)
    assert not (tmp_path / "t.pt").exists()
