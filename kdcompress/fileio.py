"""Atomic outputs, hashes and JSON helpers: nothing half-written is ever left in place."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import KDError


def _check_writable_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KDError(f"cannot create output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise KDError(f"output folder {parent} is not writable")


def _fresh_path(final: Path, create, suffix: str = "") -> Path:
    """A new path beside `final` made by `create(path)`. Unlike mkstemp/mkdtemp (always 0600/0700), `create`
    lets the kernel apply the umask, so outputs get the mode a plain open or mkdir would give."""
    for _ in range(100):
        path = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}{suffix}")
        try:
            create(path)
            return path
        except FileExistsError:
            continue
    raise KDError(f"cannot create a temporary path beside {final}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _keep_mode(tmp: Path, final: Path) -> None:
    """Replacing an existing output keeps its mode, as writing over it would (best effort)."""
    try:
        os.chmod(tmp, stat.S_IMODE(final.stat().st_mode))
    except OSError:
        pass


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; move it into place only if the block succeeds."""
    final = Path(final)
    _check_writable_parent(final)
    tmp = _fresh_path(final, lambda path: os.mkdir(path, 0o777))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        _keep_mode(tmp, final)
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `final`; rename it over `final` on success."""
    final = Path(final)
    _check_writable_parent(final)
    tmp = _fresh_path(final, _new_file, suffix=final.suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if final.exists():
        _keep_mode(tmp, final)
    os.replace(tmp, final)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KDError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KDError(f"{path} is not valid JSON: {exc}") from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """Short, stable hash of array contents and shapes (data and model fingerprints)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
