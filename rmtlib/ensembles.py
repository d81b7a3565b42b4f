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
from .validation import ArgumentTypeError, check_array, check_float, check_int, check_shape, describe

__all__ = [
    "bbp_outlier",
    "bbp_threshold",
    "noise_eigenvalues",
    "spiked_matrix",
    "low_rank_signal",
]


def _check_shape(shape) -> tuple[int, int]:
    return check_shape(shape, minimum=2)


def _check_positive(value, name: str) -> float:
    return check_float(value, name, low=0.0, low_open=True)


def _check_gamma(gamma) -> float:
    return check_float(gamma, "gamma (the aspect ratio p/N)", low=0.0, high=1.0, low_open=True)


def _check_thetas(thetas, name: str = "thetas") -> np.ndarray:
    """Signal strengths: a number or a 1-D array (possibly empty) of finite values >= 0."""
    th = np.atleast_1d(check_array(thetas, name, min_size=0, nonnegative=True))
    if th.ndim != 1:
        raise ValueError(f"{name} must be a number or a 1-D array, got shape {th.shape}")
    return th


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
    sigma2 = _check_positive(sigma2, "sigma2")
    if n_draws is not None:
        n_draws = check_int(n_draws, "n_draws (None or a positive integer)", minimum=1)
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
    ``dtype`` is ``numpy.float64`` (default) or ``numpy.float32``.
    """
    m, n = _check_shape(shape)
    thetas = _check_thetas(thetas)
    sigma = _check_positive(sigma, "sigma")
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise ArgumentTypeError(f"dtype must be numpy.float32 or numpy.float64, got "
                                f"{describe(dtype)}") from exc
    if out_dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {out_dtype}")
    rng = check_random_state(random_state)
    W = sigma * rng.standard_normal((m, n))
    if thetas.size:
        W += low_rank_signal((m, n), thetas, sigma=sigma, random_state=rng)
    return W.astype(out_dtype, copy=False)


def low_rank_signal(shape, thetas, *, sigma: float = 1.0, random_state=None) -> np.ndarray:
    r"""The signal part ``S = sigma * sqrt(N) * sum_i theta_i u_i v_i^T`` of the spiked model,
    alone, to add to noise of any kind (``sigma`` is the noise scale ``theta`` is measured in).

    ``u_i`` (then ``v_i``) are the Q factors of Gaussian matrices: Haar-random orthonormal
    columns.
    """
    m, n = _check_shape(shape)
    thetas = _check_thetas(thetas)
    if thetas.size > min(m, n):
        raise ValueError(f"thetas must hold at most min(m, n) = {min(m, n)} spikes for a {m}x{n} "
                         f"matrix, got {thetas.size}")
    sigma = _check_positive(sigma, "sigma")
    rng = check_random_state(random_state)
    U, _ = np.linalg.qr(rng.standard_normal((m, thetas.size)))
    V, _ = np.linalg.qr(rng.standard_normal((n, thetas.size)))
    return (U * (sigma * math.sqrt(max(m, n)) * thetas)) @ V.T


def bbp_threshold(gamma: float) -> float:
    """Signal strength ``theta = gamma**(1/4)`` above which a spike leaves the bulk."""
    return _check_gamma(gamma) ** 0.25


def bbp_outlier(theta, gamma: float, sigma2: float = 1.0):
    r"""Limit of the eigenvalue ``s**2/N`` produced by a spike of strength ``theta``.

    :math:`\sigma^2(1+\theta^2)(\gamma+\theta^2)/\theta^2` above the BBP threshold,
    the bulk edge :math:`\sigma^2(1+\sqrt\gamma)^2` below it (vectorized in ``theta``).
    """
    gamma = _check_gamma(gamma)
    sigma2 = _check_positive(sigma2, "sigma2")
    th = check_array(theta, "theta", min_size=0, nonnegative=True)
    edge = (1 + math.sqrt(gamma)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (1 + th**2) * (gamma + th**2) / th**2
    out = sigma2 * np.where(th > gamma**0.25, lam, edge)
    return out[()] if out.ndim == 0 else out
