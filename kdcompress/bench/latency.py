"""Latency and throughput of a model call, measured in bounded time.

Single event: the call is timed one event at a time (cycling over distinct events) after a warm-up;
p50 and p99 of the per-call wall time in microseconds. Batch: the call is timed on one batch
repeatedly after a warm-up; throughput = batch size / median call time (and / fastest call time,
the figure least disturbed by other processes). The garbage collector is off
while timing (as timeit does). Inputs are prepared beforehand (preprocessing and integer encoding are not
timed); outputs are not converted back.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import KDError


@dataclass(frozen=True)
class Budget:
    """Seconds spent per runtime and mode, and the batch size of the throughput measurement."""
    single_s: float = 0.8
    batch_s: float = 0.8
    warmup_s: float = 0.1
    batch_size: int = 4096
    min_calls: int = 5

    @classmethod
    def normal(cls) -> "Budget":
        return cls()

    @classmethod
    def quick(cls) -> "Budget":
        return cls(single_s=0.08, batch_s=0.08, warmup_s=0.02, batch_size=1024, min_calls=3)


def time_calls(call: Callable, inputs: Sequence, seconds: float, warmup_s: float, min_calls: int) -> np.ndarray:
    """Wall time (ns) of call(inputs[i % len(inputs)]) repeated for about `seconds` after a warm-up.

    At least `min_calls` timed calls are made unless that would take more than 3x `seconds`.
    """
    if not len(inputs):
        raise KDError("latency measurement needs at least one input")
    _run_for(call, inputs, warmup_s, min_calls=1)
    return _run_for(call, inputs, seconds, min_calls)


def _run_for(call: Callable, inputs: Sequence, seconds: float, min_calls: int) -> np.ndarray:
    times = []
    start = time.perf_counter()
    soft_end, hard_end = start + seconds, start + 3 * seconds
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            x = inputs[len(times) % len(inputs)]
            t0 = time.perf_counter_ns()
            call(x)
            times.append(time.perf_counter_ns() - t0)
            now = time.perf_counter()
            if now >= hard_end or (now >= soft_end and len(times) >= min_calls):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(times, dtype=np.float64)


def single_event_latency(call: Callable, events: np.ndarray, budget: Budget) -> dict:
    """p50/p99 (µs) of call(one event of shape (1, ...)) over distinct events."""
    singles = [np.ascontiguousarray(events[i:i + 1]) for i in range(min(len(events), 256))]
    ns = time_calls(call, singles, budget.single_s, budget.warmup_s, budget.min_calls)
    return {"p50_us": float(np.percentile(ns, 50) / 1e3), "p99_us": float(np.percentile(ns, 99) / 1e3),
            "single_calls": int(ns.size)}


def batch_throughput(call: Callable, events: np.ndarray, budget: Budget) -> dict:
    """Events per second of call(batch) with the batch tiled from `events` to budget.batch_size rows."""
    repeats = -(-budget.batch_size // len(events))
    batch = np.ascontiguousarray(np.concatenate([events] * repeats)[:budget.batch_size])
    ns = time_calls(call, [batch], budget.batch_s, budget.warmup_s, budget.min_calls)
    return {"events_per_s": float(len(batch) / (np.median(ns) / 1e9)),
            "events_per_s_best": float(len(batch) / (np.min(ns) / 1e9)),
            "batch_size": int(len(batch)), "batch_calls": int(ns.size)}
