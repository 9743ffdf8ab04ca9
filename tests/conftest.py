import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_tabular(path, n_normal=3000, n_anomaly=200, n_features=12, seed=0):
    """Normal rows on a low-dimensional subspace plus noise; anomalies isotropic (off the manifold)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(4, n_features))
    normal = rng.normal(size=(n_normal, 4)) @ mixing + 0.1 * rng.normal(size=(n_normal, n_features))
    anomaly = 1.5 * rng.normal(size=(n_anomaly, n_features))
    x = np.vstack([normal, anomaly]).astype(np.float32)
    y = np.r_[np.zeros(n_normal), np.ones(n_anomaly)].astype(np.int64)
    np.savez(path, X=x, y=y)
    return path


@pytest.fixture(scope="session")
def tabular_file(tmp_path_factory):
    return make_tabular(tmp_path_factory.mktemp("data") / "tab.npz")


@pytest.fixture(scope="session")
def tiny_teacher(tabular_file, tmp_path_factory):
    from kdcompress.api import train_teacher
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    train_teacher(tabular_file, path, hidden=[32, 16], latent=4, epochs=30, seed=0, quiet=True)
    return path
