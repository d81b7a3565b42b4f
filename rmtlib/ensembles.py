r"""Random-matrix ensembles used by the tests, the theory notebooks and the calibrated
goodness of fit: pure Gaussian noise and the additive spiked (signal-plus-noise) model.

Conventions as in :mod:`rmtlib.esd`: a matrix is ``m x n``, ``N = max(m, n)``,
``p = min(m, n)``, ``gamma = p/N``, eigenvalues ``lambda = s**2 / N``.

**Spiked model.**  ``W = R + S`` with ``R`` i.i.d. :math:`N(0, \sigma^2)` and
``S = sigma * sqrt(N) * sum_i theta_i u_i v_i^T`` (orthonormal ``u_i``, ``v_i``), so that
``theta_i`` is the signal strength measured in units of the noise.  As ``N -> inf``
(Benaych-Georges & Nadakuditi 2012; the BBP transition of Baik, Ben Arous & Peche 2005),
a spike with :math:`\theta > \gamma^{1/4}` produces an eigenvalue outside the bulk at

.. math::  \lambda(\theta) = \sigma^2 \frac{(1 + \theta^2)(\gamma + \theta^2)}{\theta^2}
           > \sigma^2 (1 + \sqrt\gamma)^2,

while a weaker spike sticks to the edge :math:`\sigma^2(1+\sqrt\gamma)^2`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import eigvalsh_tridiagonal

from .seeding import check_random_state

__all__ = [
    "bbp_outlier",
    "bbp_threshold",
    "noise_eigenvalues",
    "spiked_matrix",
    "low_rank_signal",
]


def _check_shape(shape) -> tuple[int, int]:
    try:
        m, n = (int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be a pair of integers (m, n), got {shape!r}") from exc
    if m < 2 or n < 2:
        raise ValueError(f"shape must have both sides >= 2, got {shape!r}")
    return m, n


def noise_eigenvalues(shape, n_draws: int | None = None, *, sigma2: float = 1.0,
                      random_state=None) -> np.ndarray:
    r"""Exact finite-size eigenvalues ``s**2 / N`` of ``m x n`` matrices with i.i.d.
    :math:`N(0, \sigma^2)` entries, sampled in :math:`O(p^2)` per draw.

    Uses the bidiagonal model (Silverstein 1985; Dumitriu & Edelman 2002): the singular
    values of a real Gaussian ``N x p`` matrix have the law of those of the ``p x p`` upper
    bidiagonal matrix with diagonal :math:`\chi_N, \chi_{N-1}, \dots, \chi_{N-p+1}` and
    super-diagonal :math:`\chi_{p-1}, \dots, \chi_1` (independent), obtained by Householder
    bidiagonalisation.  The eigenvalues of ``B^T B`` (tridiagonal) are then computed with
    LAPACK's tridiagonal solver instead of a dense ``p x p`` eigendecomposition.

    Returns an array of shape ``(p,)`` (``n_draws=None``) or ``(n_draws, p)``, ascending.
    """
    m, n = _check_shape(shape)
    if not (isinstance(sigma2, (int, float)) and math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be positive and finite, got {sigma2!r}")
    if n_draws is not None and (int(n_draws) != n_draws or n_draws < 1):
        raise ValueError(f"n_draws must be a positive integer or None, got {n_draws!r}")
    rng = check_random_state(random_state)
    N, p = max(m, n), min(m, n)
    k = 1 if n_draws is None else int(n_draws)
    dof_d = N - np.arange(p)            # chi_N, ..., chi_{N-p+1}
    dof_e = p - 1 - np.arange(p - 1)    # chi_{p-1}, ..., chi_1
    d2 = rng.chisquare(dof_d, size=(k, p))
    e2 = rng.chisquare(dof_e, size=(k, p - 1))
    out = np.empty((k, p))
    for i in range(k):  # one O(p^2) tridiagonal solve per draw
        diag = d2[i].copy()
        diag[1:] += e2[i]
        off = np.sqrt(d2[i, :-1] * e2[i])
        out[i] = eigvalsh_tridiagonal(diag, off, check_finite=False)
    out = np.maximum(out, 0.0) * (sigma2 / N)
    return out[0] if n_draws is None else out


def spiked_matrix(shape, thetas=(), *, sigma: float = 1.0, random_state=None,
                  dtype=np.float64) -> np.ndarray:
    r"""Draw ``W = R + sigma*sqrt(N) * sum_i theta_i u_i v_i^T`` (see the module docstring).

    ``R`` has i.i.d. :math:`N(0, \sigma^2)` entries; ``u_i``, ``v_i`` are Haar-random
    orthonormal vectors, independent of ``R``.  ``thetas`` are the signal strengths in noise
    units; the BBP detectability level is ``bbp_threshold(gamma) = gamma**(1/4)``.
    """
    m, n = _check_shape(shape)
    thetas = np.atleast_1d(np.asarray(thetas, dtype=np.float64))
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    rng = check_random_state(random_state)
    W = sigma * rng.standard_normal((m, n))
    if thetas.size:
        W += low_rank_signal((m, n), thetas, sigma=sigma, random_state=rng)
    return W.astype(dtype, copy=False)


def low_rank_signal(shape, thetas, *, sigma: float = 1.0, random_state=None) -> np.ndarray:
    r"""The signal part ``S = sigma * sqrt(N) * sum_i theta_i u_i v_i^T`` of the spiked model,
    alone, to add to noise of any kind (``sigma`` is the noise scale ``theta`` is measured in).

    ``u_i`` (then ``v_i``) are the Q factors of Gaussian matrices: Haar-random orthonormal
    columns.
    """
    m, n = _check_shape(shape)
    thetas = np.atleast_1d(np.asarray(thetas, dtype=np.float64))
    if thetas.ndim != 1 or np.any(~np.isfinite(thetas)) or np.any(thetas < 0):
        raise ValueError(f"thetas must be finite and non-negative, got {thetas!r}")
    if thetas.size > min(m, n):
        raise ValueError(f"at most min(m, n) = {min(m, n)} spikes fit in a {m}x{n} matrix")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    rng = check_random_state(random_state)
    U, _ = np.linalg.qr(rng.standard_normal((m, thetas.size)))
    V, _ = np.linalg.qr(rng.standard_normal((n, thetas.size)))
    return (U * (sigma * math.sqrt(max(m, n)) * thetas)) @ V.T


def bbp_threshold(gamma: float) -> float:
    """Signal strength ``theta = gamma**(1/4)`` above which a spike leaves the bulk."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
    return gamma**0.25


def bbp_outlier(theta, gamma: float, sigma2: float = 1.0):
    r"""Limit of the eigenvalue ``s**2/N`` produced by a spike of strength ``theta``.

    :math:`\sigma^2(1+\theta^2)(\gamma+\theta^2)/\theta^2` above the BBP threshold,
    the bulk edge :math:`\sigma^2(1+\sqrt\gamma)^2` below it (vectorized in ``theta``).
    """
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
    th = np.asarray(theta, dtype=np.float64)
    if np.any(th < 0) or not np.all(np.isfinite(th)):
        raise ValueError("theta must be finite and non-negative")
    edge = (1 + math.sqrt(gamma)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (1 + th**2) * (gamma + th**2) / th**2
    out = sigma2 * np.where(th > gamma**0.25, lam, edge)
    return out[()] if out.ndim == 0 else out
