"""Benchmark: the cost of :func:`rmtlib.bema.fit_bema` relative to the eigendecomposition
it needs (:func:`rmtlib.linalg.gram_eigenvalues` of a float32 matrix: the smaller Gram matrix
and ``eigvalsh`` of it, in the precision rule of :mod:`rmtlib.linalg`).

Target (issue "math core"): total time of ``fit_bema(W)`` <= 1.15 x the eigendecomposition.
Also reported: BEMA's own work on given eigenvalues, warm (window quantiles cached, the
situation during training) and cold (first call for a shape).
"""

from __future__ import annotations


import numpy as np

from ..bema import fit_bema, window_quantiles
from ..ensembles import spiked_matrix
from ..linalg import gram_eigenvalues
from ._timing import median_time

SHAPES = ((1000, 784), (4096, 4096))


def run(quick: bool = False) -> dict:
    """Time fit_bema against its eigendecomposition; returns one record per shape."""
    shapes = ((1000, 784), (1024, 1024)) if quick else SHAPES
    rows = []
    for shape in shapes:
        W = spiked_matrix(shape, [3.0, 4.0, 6.0], random_state=0, dtype=np.float32)
        big = max(shape) >= 4096
        repeats = 3 if big or quick else 9
        fit_bema(W)  # warm up BLAS/LAPACK and the quantile cache
        # interleave the two measurements so that load changes hit both alike
        eig_t, bema_t = [], []
        for _ in range(repeats):
            eig_t.append(median_time(lambda W=W: gram_eigenvalues(W), 1))
            bema_t.append(median_time(lambda W=W: fit_bema(W), 1))
        lam = gram_eigenvalues(W)[0]
        warm = median_time(lambda lam=lam, shape=shape: fit_bema(lam, shape=shape), 25)

        def cold(lam=lam, shape=shape):
            window_quantiles.cache_clear()
            fit_bema(lam, shape=shape)

        cold_t = median_time(cold, 5)
        eig, tot = float(np.median(eig_t)), float(np.median(bema_t))
        rows.append({
            "shape": list(shape),
            "dtype": "float32",
            "repeats": repeats,
            "eig_seconds": eig,
            "fit_bema_seconds": tot,
            "ratio": tot / eig,
            "bema_on_eigenvalues_warm_ms": 1e3 * warm,
            "bema_on_eigenvalues_cold_ms": 1e3 * cold_t,
            "target_ratio": 1.15,
        })
    return {"name": "fit_bema vs eigendecomposition", "rows": rows}


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=2))
