r"""Goodness of fit of a BEMA Marchenko--Pastur fit, and its calibrated null distribution.

**Statistic** (computed for every fit by :func:`rmtlib.bema.gof_statistic`).  BEMA fits the
MP law only on the trimmed window of the ascending eigenvalues :math:`\lambda_{(k)}`,
:math:`\lceil\alpha p\rceil \le k \le \lfloor(1-\alpha)p\rfloor`.
The statistic is the Kolmogorov (L-infinity) distance between the fitted MP CDF
:math:`\hat F` and the empirical CDF, restricted to that window:

.. math::  D = \max_k \max\big(|\hat F(\lambda_{(k)}) - k/p|,\ |\hat F(\lambda_{(k)}) - (k-1)/p|\big).

``paper_exact=True`` computes the authors' version instead: window indices
``int(alpha p) <= i < int((1-alpha) p)`` (0-based), empirical value
``alpha + (1 - 2 alpha) j / len(window)`` at window position ``j``, and their MP CDF, which
returns 0 (not 1) above the fitted edge :math:`\hat\sigma^2(1+\sqrt\gamma)^2`.

**Calibration.**  The authors accept a fit when the distance is below a fixed cutoff
(0.1 in paper 1).  A fixed cutoff means different things for different shapes: under pure
noise the statistic shrinks like :math:`p^{-1/2}`.  :func:`gof_null` estimates the
statistic's null distribution for a given shape and ``alpha`` by simulating pure Gaussian
noise matrices (exact finite-size eigenvalues through
:func:`rmtlib.ensembles.noise_eigenvalues`, refitting BEMA's scale on each draw); the
statistic is scale invariant, so one null serves every noise level.  Nulls are cached in
memory and on disk (``$RMTLIB_CACHE`` or ``~/.cache/rmtlib``).  :func:`accept` applies
either rule.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._paths import cache_dir
from .bema import BemaFit, check_alpha, fit_sigma2, gof_statistic
from .ensembles import noise_eigenvalues
from .validation import (ArgumentTypeError, check_bool, check_float, check_int,
                         check_probability, check_seed, check_shape, describe)

__all__ = ["GofNull", "GofVerdict", "accept", "gof_null"]

_NULL_VERSION = 1  # bump when the statistic or the simulation changes (invalidates caches)


@dataclass(frozen=True, eq=False)
class GofNull:
    """Simulated null distribution of :func:`gof_statistic` for one shape and ``alpha``."""

    shape: tuple[int, int]
    alpha: float
    paper_exact: bool
    samples: np.ndarray  # sorted statistics of pure-noise fits
    seed: int

    @property
    def n_sim(self) -> int:
        return int(self.samples.size)

    def quantile(self, level: float) -> float:
        """Empirical ``level`` quantile of the null statistic (the acceptance cutoff)."""
        level = check_probability(level, "level", open_low=True, open_high=True)
        return float(np.quantile(self.samples, level))

    def pvalue(self, statistic: float) -> float:
        """Monte-Carlo p-value ``(1 + #{null >= D}) / (n_sim + 1)``."""
        statistic = check_float(statistic, "statistic", low=0.0)
        n_ge = self.samples.size - np.searchsorted(self.samples, statistic, side="left")
        return float((1 + n_ge) / (self.samples.size + 1))


_MEMORY: dict[tuple, GofNull] = {}


def gof_null(shape, alpha: float = 0.2, *, paper_exact: bool = False, n_sim: int = 400,
             random_state: int = 0, cache: bool = True) -> GofNull:
    """Null distribution of the GoF statistic for ``m x n`` pure-noise matrices.

    Each of ``n_sim`` draws samples exact Gaussian-noise eigenvalues, fits BEMA's
    :math:`\\hat\\sigma^2` on the window and records the statistic.  Results are cached in
    memory and, when ``cache`` is true, on disk keyed by every argument.
    Cost: about ``n_sim`` tridiagonal eigensolves of size ``p`` (1000 x 784: ~4 s for 400).
    """
    m, n = check_shape(shape, minimum=2)
    shape_key = (min(m, n), max(m, n))  # transpose invariant
    alpha = check_alpha(alpha)
    paper_exact = check_bool(paper_exact, "paper_exact")
    n_sim = check_int(n_sim, "n_sim", minimum=20)
    random_state = check_seed(random_state, "random_state (an int: the null is cached by seed)")
    cache = check_bool(cache, "cache")
    key = (shape_key, float(alpha), bool(paper_exact), int(n_sim), int(random_state), _NULL_VERSION)
    if key in _MEMORY:
        return _MEMORY[key]
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
    path = cache_dir() / "gof_null" / f"{digest}.npy"
    samples = None
    if cache and path.exists():
        try:
            samples = np.load(path)
        except (OSError, ValueError):
            samples = None  # unreadable cache entry: recompute and replace it
        if samples is not None and samples.shape != (int(n_sim),):
            samples = None
    if samples is None:
        samples = _simulate_null(shape_key, alpha, paper_exact, int(n_sim), int(random_state))
        if cache:
            _atomic_save(path, samples)
    samples = np.sort(samples)
    samples.setflags(write=False)
    null = GofNull(shape=(m, n), alpha=alpha, paper_exact=bool(paper_exact), samples=samples,
                   seed=int(random_state))
    _MEMORY[key] = null
    return null


def _simulate_null(shape, alpha, paper_exact, n_sim, seed) -> np.ndarray:
    p, N = shape
    lam = noise_eigenvalues((p, N), n_sim, random_state=seed)
    gamma = p / N
    s2 = fit_sigma2(lam, gamma, alpha, paper_exact)
    return np.asarray(gof_statistic(lam, s2, gamma, alpha, paper_exact=paper_exact))


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error: the null is simply recomputed next time


@dataclass(frozen=True)
class GofVerdict:
    """Outcome of :func:`accept`; truthy when the fit is accepted."""

    accepted: bool
    statistic: float
    cutoff: float
    rule: str
    pvalue: float | None = None

    def __bool__(self) -> bool:
        return self.accepted


def accept(fit, rule: float | str = 0.1, *, level: float = 0.99, n_sim: int = 400,
           random_state: int = 0) -> GofVerdict:
    """Accept or reject a :class:`rmtlib.bema.BemaFit`.

    ``rule`` is either a fixed cutoff (a float in (0, 1]; the authors use 0.1) -- accepted
    when ``fit.gof < rule`` -- or ``"calibrated"``: accepted when ``fit.gof`` is below the
    ``level`` quantile of the simulated pure-noise null for the fit's shape and ``alpha``.
    """
    if not isinstance(fit, BemaFit):
        raise ArgumentTypeError(f"fit must be a rmtlib.bema.BemaFit (from fit_bema), got "
                                f"{describe(fit)}")
    if isinstance(rule, str):
        if rule != "calibrated":
            raise ValueError(f"rule must be a float cutoff or 'calibrated', got {rule!r}")
        level = check_probability(level, "level", open_low=True, open_high=True)
        null = gof_null(fit.shape, fit.alpha, paper_exact=fit.paper_exact, n_sim=n_sim,
                        random_state=random_state)
        cutoff = null.quantile(level)
        return GofVerdict(fit.gof <= cutoff, fit.gof, cutoff, f"calibrated@{level:g}",
                          null.pvalue(fit.gof))
    rule = check_float(rule, "rule (a fixed GoF cutoff, or 'calibrated')", low=0.0, high=1.0,
                       low_open=True)
    return GofVerdict(fit.gof < rule, fit.gof, rule, f"cutoff@{rule:g}")
