"""Benchmark of :mod:`rmtlib.tw`: building the Tracy--Widom interpolants (Bornemann's
Fredholm determinants on a Chebyshev grid) and evaluating cdf / ppf on 10^5 points."""

from __future__ import annotations

import statistics
import time

import numpy as np


def bench_tracy_widom(quick: bool = False) -> dict:
    from .. import tw

    out = {}
    x = np.linspace(-8.0, 6.0, 100_000)
    q = np.random.default_rng(0).random(100_000)
    repeats = 3 if quick else 7
    for beta in (1, 2):
        tw._loglog_cdf.cache_clear()  # time the construction, not a cached copy
        t0 = time.perf_counter()
        dist = tw.TracyWidom(beta)
        dist.cdf(0.0)  # the interpolant is built lazily, on first use
        build = time.perf_counter() - t0
        cdf_t, ppf_t = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dist.cdf(x)
            cdf_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dist.ppf(q)
            ppf_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tw.tracy_widom_cdf_fredholm(np.linspace(-6, 4, 20), beta)
        direct = (time.perf_counter() - t0) / 20
        out[f"beta{beta}"] = {
            "build_seconds": build,
            "cdf_1e5_seconds": statistics.median(cdf_t),
            "ppf_1e5_seconds": statistics.median(ppf_t),
            "fredholm_per_point_seconds": direct,
        }
    return out
