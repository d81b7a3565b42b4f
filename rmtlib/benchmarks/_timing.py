"""Timing helper shared by the benchmark modules (not itself a benchmark module)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(func: Callable, repeats: int = 1, setup: Callable | None = None) -> float:
    """Median wall time (s) of ``repeats`` calls; with ``setup``, each call is ``func(setup())``
    and only ``func`` is timed."""
    times = []
    for _ in range(repeats):
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        func(arg) if setup is not None else func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
