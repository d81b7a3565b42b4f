"""Benchmarks of :mod:`rmtlib.stability`.

``bench_doubling_mnist``
    :func:`rmtlib.stability.doubling_constant` on 60,000 x 784 inputs (MNIST's training images
    when ``$RMTLIB_DATA`` is set, else uniform random pixels) with 1,000 random directions
    (quick: 10,000 images, 200 directions), against its irreducible part measured in the same
    run: the projections ``X @ D.T`` alone, and the projections plus sorting them.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..stability import doubling_constant, sphere_directions

__all__ = ["bench_doubling_mnist"]


def _images(n: int) -> tuple[np.ndarray, str]:
    if os.environ.get("RMTLIB_DATA"):
        from ..data import load_dataset

        x = load_dataset("mnist").train_x[:n].flatten(1).numpy()
        return x, "MNIST training images"
    rng = np.random.default_rng(0)
    return rng.random((n, 784), dtype=np.float32), "uniform random pixels (set RMTLIB_DATA for MNIST)"


def bench_doubling_mnist(quick: bool = False) -> dict:
    """Time of the doubling-constant estimate on MNIST-size data against projecting and
    sorting alone (all three measured in this run, one after the other)."""
    n, k = (10_000, 200) if quick else (60_000, 1000)
    X, source = _images(n)
    D = sphere_directions(k, X.shape[1], random_state=0)
    Dx = D.astype(X.dtype)
    t0 = time.perf_counter()
    for s in range(0, k, 128):
        _ = Dx[s:s + 128] @ X.T
    project = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, k, 128):
        (Dx[s:s + 128] @ X.T).sort(axis=1)
    project_sort = time.perf_counter() - t0
    est = doubling_constant(X, directions=D)
    total = est.seconds
    per = {"estimate": total, "project + sort": project_sort, "project": project}
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {
        "title": "Doubling constant on MNIST-size data",
        "what": (f"`rmtlib.stability.doubling_constant` on {n:,} x 784 inputs ({source}) with "
                 f"{k:,} directions uniform on the sphere and the default grid ({est.n_slabs:,} "
                 f"slabs: 128 offsets, and centres next to repeated values, times "
                 f"{est.deltas.shape[1]} half-widths per direction, each counted at delta and "
                 "2 delta), against the projections `X @ D.T` alone and the projections plus "
                 "sorting them, all timed in this run (one-minute load average "
                 f"{load} on {os.cpu_count()} cores)."),
        "target": "well under 60 s for 60,000 x 784 and 1,000 directions",
        "metrics": {
            "seconds": {"value": total, "doc": "wall time of the estimate (s)"},
            "project_seconds": {"value": project, "doc": "wall time of the projections alone (s)"},
            "project_sort_seconds": {"value": project_sort,
                                     "doc": "wall time of the projections plus sorting them (s)"},
            "ratio_to_project_sort": {"value": total / project_sort,
                                      "doc": "estimate / (projections + sort) (dimensionless)"},
            "slabs_per_second": {"value": est.n_slabs / total,
                                 "doc": "slabs counted per second (1/s)"},
            "constant": {"value": est.constant, "doc": "the estimated constant (dimensionless)"},
            "n_points": {"value": n, "doc": "inputs (count)"},
            "n_directions": {"value": k, "doc": "directions (count)"},
        },
        "headline": "seconds",
        "table": [{"step": name, "seconds": round(sec, 3), "share of the estimate": round(sec / total, 3)}
                  for name, sec in per.items()],
    }
