"""The machine a benchmark ran on: CPU, cores, memory, measured matmul FLOP/s, package versions."""
from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def memory_gb() -> float | None:
    """Total memory in GB (10^9 bytes) from /proc/meminfo; None when unknown."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) * 1024 / 1e9, 1)
    return None


def matmul_flops(n: int = 1024, repeats: int = 20) -> float:
    """Best FLOP/s of a numpy float32 n x n matmul (2 n^3 FLOPs) over `repeats` timed runs after one warm-up."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


def load_average() -> float | None:
    """1-minute load average (runnable processes), None where unavailable."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def describe_machine(matmul_size: int = 1024, matmul_repeats: int = 20) -> dict:
    load = load_average()
    flops = matmul_flops(matmul_size, matmul_repeats)
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": memory_gb(),
        "platform": platform.platform(),
        "matmul_gflops": round(flops / 1e9, 3),
        "matmul": f"numpy float32 {matmul_size}x{matmul_size} @ {matmul_size}x{matmul_size}, "
                  f"best of {matmul_repeats}, 2*n^3 FLOPs, numpy's BLAS threads",
        "load_average_at_start": load,
    }


def versions() -> dict:
    """Python, numpy, Keras and the export toolchain's versions (None when a package is absent)."""
    from ..export.verify import versions as toolchain_versions
    found = {"python": sys.version.split()[0], "numpy": np.__version__, "keras": _installed("keras")}
    found.update(toolchain_versions())
    return found


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
