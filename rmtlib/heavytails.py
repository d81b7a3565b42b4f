r"""Heavy-tailed spectra and goodness-of-fit nulls that respect a layer's own entries.

Trained layers are heavy-tailed (Martin & Mahoney): the top of their empirical spectral density
(ESD) decays like a power law :math:`\rho(\lambda) \propto \lambda^{-\alpha}` rather than ending
at a Marchenko--Pastur edge, and their entries are far from Gaussian.  Two consequences for RMT
pruning are measured with this module.

**Power-law tail of a spectrum.**  :func:`fit_power_law` fits the continuous power law

.. math::  p(x) = \frac{\alpha - 1}{x_{\min}} \Big(\frac{x}{x_{\min}}\Big)^{-\alpha},
           \qquad x \ge x_{\min},

to the values at or above :math:`x_{\min}` by maximum likelihood,
:math:`\hat\alpha = 1 + n \big/ \sum_{i} \ln(x_i / x_{\min})` with standard error
:math:`(\hat\alpha - 1)/\sqrt n`, and chooses :math:`x_{\min}` among the sample values by
minimising the Kolmogorov--Smirnov distance between the tail's empirical CDF and the fitted one
(Clauset, Shalizi & Newman 2009) -- the estimator WeightWatcher reports as ``alpha`` for an ESD.
All candidate :math:`x_{\min}` are evaluated at once (cumulative sums for :math:`\hat\alpha`, a
blocked broadcast for the KS distances).  :func:`hill_estimator` is the classical Hill estimate
from the top ``k`` order statistics, a cross-check.

**Nulls for the goodness of fit.**  :func:`rmtlib.gof.gof_null` simulates the BEMA statistic
under i.i.d. *Gaussian* noise.  Heavy-tailed entries move the bulk away from MP even without any
signal, so a Gaussian null rejects such layers although nothing in them is structured.
:func:`permutation_null` keeps the layer's own entries and destroys only their arrangement: each
draw permutes the entries of ``W`` uniformly at random (WeightWatcher's randomisation idea), so
the null has the layer's marginal distribution and no low-rank structure.
:func:`student_t_null` draws i.i.d. Student-t entries whose degrees of freedom match the entries'
excess kurtosis.  Both return a :class:`rmtlib.gof.GofNull`, so
:meth:`~rmtlib.gof.GofNull.quantile` and :meth:`~rmtlib.gof.GofNull.pvalue` apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bema import check_alpha, fit_sigma2, gof_statistic
from .esd import as_matrix
from .gof import GofNull
from .linalg import gram_eigenvalues
from .seeding import check_random_state
from .validation import ArgumentTypeError, check_int

__all__ = ["PowerLawFit", "fit_power_law", "hill_estimator", "kurtosis_df", "permutation_null",
           "student_t_null"]


def _positive_sample(x, name: str = "x") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ArgumentTypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-empty array of finite numbers")
    return arr


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`."""

    alpha: float      #: exponent of the density, p(x) ~ x**-alpha (> 1)
    xmin: float       #: lower end of the fitted tail
    n_tail: int       #: sample values >= xmin used in the fit
    n: int            #: positive sample values considered
    ks: float         #: Kolmogorov-Smirnov distance of the tail fit
    alpha_se: float   #: standard error (alpha - 1) / sqrt(n_tail)


def fit_power_law(x, *, xmin: float | None = None, min_tail: int = 10,
                  max_candidates: int = 2000) -> PowerLawFit:
    """Maximum-likelihood power-law fit of the upper tail of ``x`` (see the module docstring).

    Parameters
    ----------
    x : array_like
        Positive sample (e.g. the eigenvalues of a layer); values <= 0 are dropped.
    xmin : float, optional
        Fix the lower end of the tail instead of choosing it by KS minimisation.
    min_tail : int
        Fewest values a candidate tail may hold (default 10).
    max_candidates : int
        At most this many candidate ``xmin`` (evenly spaced in rank) are tried.
    """
    vals = _positive_sample(x)
    min_tail = check_int(min_tail, "min_tail", minimum=2)
    max_candidates = check_int(max_candidates, "max_candidates", minimum=1)
    vals = np.sort(vals[vals > 0])
    n = vals.size
    if n < min_tail:
        raise ValueError(f"x has {n} positive values; a power-law tail needs at least "
                         f"min_tail = {min_tail}")
    logs = np.log(vals)
    suffix = np.cumsum(logs[::-1])[::-1]  # sum_{i >= j} log x_i
    if xmin is not None:
        if isinstance(xmin, bool) or not isinstance(xmin, (int, float, np.floating)) \
                or not math.isfinite(xmin) or xmin <= 0:
            raise ValueError(f"xmin must be a positive finite number, got {xmin!r}")
        j = int(np.searchsorted(vals, xmin, side="left"))
        if n - j < 2:
            raise ValueError(f"only {n - j} values are >= xmin = {xmin:g}; need at least 2")
        candidates = np.array([j])
        xmins = np.array([float(xmin)])
    else:
        last = n - min_tail  # the tail x[j:] holds n - j >= min_tail values
        candidates = np.unique(np.linspace(0, last, min(max_candidates, last + 1)).round().astype(int))
        # equal values: use the first occurrence, so the tail holds every value >= xmin
        candidates = np.unique(np.searchsorted(vals, vals[candidates], side="left"))
        xmins = vals[candidates]
    n_tail = n - candidates
    denom = suffix[candidates] - n_tail * np.log(xmins)
    with np.errstate(divide="ignore"):
        alphas = np.where(denom > 0, 1.0 + n_tail / np.where(denom > 0, denom, 1.0), np.inf)
    ks = np.full(candidates.size, np.inf)
    block = max(1, 2_000_000 // n)
    for start in range(0, candidates.size, block):
        sl = slice(start, start + block)
        j, a, xm = candidates[sl], alphas[sl], xmins[sl]
        idx = np.arange(n)
        inside = idx[None, :] >= j[:, None]
        k = idx[None, :] - j[:, None]  # 0-based rank within the tail
        ok = np.isfinite(a)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            F = 1.0 - (vals[None, :] / xm[:, None]) ** (1.0 - a[:, None])
            nt = (n - j)[:, None]
            d = np.maximum(np.abs(F - (k + 1) / nt), np.abs(F - k / nt))
        d = np.where(inside, d, -np.inf).max(axis=1)
        ks[sl] = np.where(ok, d, np.inf)
    best = int(np.argmin(ks))
    a, nt = float(alphas[best]), int(n_tail[best])
    return PowerLawFit(alpha=a, xmin=float(xmins[best]), n_tail=nt, n=n, ks=float(ks[best]),
                       alpha_se=(a - 1.0) / math.sqrt(nt))


def hill_estimator(x, k: int) -> float:
    """Hill's estimate of the density exponent from the ``k`` largest values of ``x``:
    ``1 + k / sum_{i<k} log(x_(i) / x_(k))`` (``x_(0)`` the largest; the tail index of the
    survival function plus one, comparable with :func:`fit_power_law`'s ``alpha``)."""
    vals = _positive_sample(x)
    vals = np.sort(vals[vals > 0])[::-1]
    k = check_int(k, "k", minimum=1, maximum=max(1, vals.size - 1))
    s = float(np.sum(np.log(vals[:k] / vals[k])))
    if s <= 0:
        raise ValueError("the top k + 1 values are all equal: the Hill estimate is undefined")
    return 1.0 + k / s


def kurtosis_df(values) -> float:
    """Degrees of freedom of the Student-t law whose excess kurtosis, ``6 / (df - 4)``, equals
    that of ``values``; ``inf`` (Gaussian) when the excess kurtosis is not positive."""
    v = _positive_sample(values, "values")  # finite reals (the sign is irrelevant here)
    v = v - v.mean()
    m2 = float(np.mean(v**2))
    if m2 == 0:
        raise ValueError("values are constant: no kurtosis")
    excess = float(np.mean(v**4)) / m2**2 - 3.0
    return math.inf if excess <= 0 else 4.0 + 6.0 / excess


def _null(lam_draws: np.ndarray, shape, alpha: float, seed: int) -> GofNull:
    p, N = min(shape), max(shape)
    s2 = fit_sigma2(lam_draws, p / N, alpha)
    stats = np.asarray(gof_statistic(lam_draws, s2, p / N, alpha))
    samples = np.sort(stats)
    samples.setflags(write=False)
    return GofNull(shape=tuple(shape), alpha=alpha, paper_exact=False, samples=samples, seed=seed)


def permutation_null(W, *, n_sim: int = 200, alpha: float = 0.2, random_state: int = 0) -> GofNull:
    """Null distribution of BEMA's goodness-of-fit statistic for matrices with the entries of ``W``
    in uniformly random positions (``n_sim`` permutations; one Gram eigen-solve each)."""
    W = as_matrix(W, "W")
    alpha = check_alpha(alpha)
    n_sim = check_int(n_sim, "n_sim", minimum=20)
    seed = check_int(random_state, "random_state", minimum=0)
    rng = check_random_state(seed)
    flat = np.asarray(W, dtype=np.float64).ravel()
    lam = np.stack([gram_eigenvalues(rng.permutation(flat).reshape(W.shape))[0]
                    for _ in range(n_sim)])
    return _null(lam, W.shape, alpha, seed)


def student_t_null(shape, df: float, *, n_sim: int = 200, alpha: float = 0.2,
                   random_state: int = 0) -> GofNull:
    """Null distribution of BEMA's statistic for ``m x n`` matrices of i.i.d. Student-t entries
    with ``df`` degrees of freedom (``df = inf``: Gaussian); the statistic is scale invariant."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (m, n), got {shape!r}")
    m, n = (check_int(d, "shape", minimum=2) for d in shape)
    if isinstance(df, bool) or not isinstance(df, (int, float, np.floating)) or not df > 2:
        raise ValueError(f"df must be a number > 2 (finite variance) or inf, got {df!r}")
    alpha = check_alpha(alpha)
    n_sim = check_int(n_sim, "n_sim", minimum=20)
    seed = check_int(random_state, "random_state", minimum=0)
    rng = check_random_state(seed)
    draw = (lambda: rng.standard_normal((m, n))) if math.isinf(df) else \
        (lambda: rng.standard_t(df, size=(m, n)))
    lam = np.stack([gram_eigenvalues(draw())[0] for _ in range(n_sim)])
    return _null(lam, (m, n), alpha, seed)
