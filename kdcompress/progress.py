"""Epoch progress lines with loss and ETA, written to stderr."""
from __future__ import annotations

import sys
import time


class EpochProgress:
    def __init__(self, name: str, epochs: int, quiet: bool = False):
        self.name, self.epochs, self.quiet = name, epochs, quiet
        self.start = time.perf_counter()

    def update(self, epoch: int, **values: float) -> None:
        if self.quiet:
            return
        done = epoch + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.epochs - done)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"[{self.name}] epoch {done}/{self.epochs}  {shown}  {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
              file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.name}] {text}", file=sys.stderr, flush=True)


def auto_batch(n_rows: int, requested=None) -> int:
    """`requested`, or 1024 capped so that small data sets still get >= 32 steps per epoch."""
    if requested:
        return int(requested)
    return int(max(32, min(1024, n_rows // 32)))
