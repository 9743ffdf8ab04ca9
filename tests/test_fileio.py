import os
import stat

import pytest

from kdcompress.fileio import atomic_dir, atomic_file, write_json


@pytest.fixture
def umask():
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_get_the_mode_a_plain_write_would(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "student") as folder:
        (folder / "model.h5").write_bytes(b"h5")
    assert _mode(tmp_path / "a.json") == file_mode  # mkstemp alone gives 0600
    assert _mode(tmp_path / "student") == dir_mode  # mkdtemp alone gives 0700
    assert (tmp_path / "student" / "model.h5").read_bytes() == b"h5"


def test_replacing_an_output_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "a.json").chmod(0o600)
    write_json(tmp_path / "a.json", {"x": 2})
    assert _mode(tmp_path / "a.json") == 0o600 and '"x": 2' in (tmp_path / "a.json").read_text()
    with atomic_dir(tmp_path / "student"):
        pass
    (tmp_path / "student").chmod(0o750)
    with atomic_dir(tmp_path / "student") as folder:
        (folder / "new").write_text("1")
    assert _mode(tmp_path / "student") == 0o750 and (tmp_path / "student" / "new").exists()


def test_failed_writes_leave_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "student") as folder:
            (folder / "x").write_text("half")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
