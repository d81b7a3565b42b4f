r"""BEMA: bulk eigenvalue matching analysis (Ke, Ma & Lin 2023).

Given the eigenvalues :math:`\lambda_{(1)} \le \dots \le \lambda_{(p)}` (``s**2 / N``) of an
``m x n`` matrix (``N = max``, ``p = min``, :math:`\gamma = p/N`), BEMA estimates the noise
level from the *bulk* and puts the noise edge where pure noise would almost never reach:

1. window of ranks :math:`k = \lceil\alpha p\rceil, \dots, \lfloor(1-\alpha)p\rfloor`;
2. :math:`q_k` = quantile of MP(:math:`\gamma`, 1) at level :math:`k/p`;
3. :math:`\hat\sigma^2 = \sum_k q_k\lambda_{(k)} / \sum_k q_k^2` (least squares through 0);
4. :math:`\hat\lambda_+ = \hat\sigma^2\big[(1+\sqrt\gamma)^2
   + t_{1-\beta}\,N^{-2/3}\gamma^{-1/6}(1+\sqrt\gamma)^{4/3}\big]`, with :math:`t_{1-\beta}`
   the :math:`(1-\beta)` quantile of Tracy--Widom :math:`\beta=1` (Johnstone's scaling of
   the largest noise eigenvalue);
5. spikes: :math:`\hat K = \#\{\lambda_i > \hat\lambda_+\}`.

In singular-value units the edge is :math:`\hat s_+ = \sqrt{N\hat\lambda_+}`.

**Finite-size behaviour** (measured in the book's BEMA notebook).  Matching the ``k``-th
smallest eigenvalue to the MP quantile at level ``k/p`` (rather than a mid-step level such as
``(k - 1/2)/p``) biases :math:`\hat\sigma^2` low by about 0.5% at ``p = 250``, which is of the
order of the Tracy--Widom margin itself; pure noise therefore shows a spike somewhat more often
than the nominal ``beta`` (about 0.14 instead of 0.10 at 500 x 250).  We keep the published
definition.

``paper_exact=True`` reproduces the authors' code (paper 1, ``jtj5311/NN-RMT-SVD``):
the TW term uses :math:`(1+\sqrt\gamma)^4/3` instead of :math:`(1+\sqrt\gamma)^{4/3}`, the
window is ``int(alpha p) <= i < int((1-alpha) p)`` (0-based) matched to levels ``i/p``, and
the goodness of fit is their statistic (see :mod:`rmtlib.gof`).  Their spike count used for
*pruning* is one too large; that quirk belongs to the pruning policy
(:mod:`rmtlib.prune`), not to the fit: ``n_spikes`` is always the number of eigenvalues
above the fitted edge, as in the authors' own ``computePredictedRank``.  Their code divides
the Gram matrix by the column count instead of ``N``; this rescales their printed
:math:`\hat\sigma^2` and :math:`\hat\lambda_+` for tall layers but cancels in every decision
(spike count and :math:`\hat s_+`), so it is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .esd import spectrum
from .mp import MarchenkoPastur
from .validation import (check_array, check_bool, check_float, check_int,
                         check_tail_probability)

__all__ = ["BemaFit", "bema_window", "check_alpha", "check_beta", "fit_bema", "fit_sigma2",
           "gof_statistic", "tw_edge_factor", "window_quantiles"]


def check_alpha(alpha) -> float:
    """Validate BEMA's trimming fraction ``alpha`` (in (0, 0.5)) and return it as a float."""
    return check_float(alpha, "alpha (the fraction trimmed at each end of the spectrum)",
                       low=0.0, high=0.5, low_open=True, high_open=True)


def check_beta(beta) -> float:
    """Validate BEMA's edge tail probability ``beta`` and return it as a float: in (0, 1) and
    not below the smallest normal double (2.2e-308), where it would have lost its relative
    precision."""
    return check_tail_probability(beta, "beta (the Tracy-Widom tail probability of the edge)")


def _check_gamma(gamma) -> float:
    return check_float(gamma, "gamma (the aspect ratio p/N)", low=0.0, high=1.0, low_open=True)


@lru_cache(maxsize=64)
def _tw1_upper_quantile(beta: float) -> float:
    """:math:`t_{1-\beta}`, computed as ``isf(beta)``: accurate for tiny ``beta`` too (``1 -
    beta`` would round to 1 below 1.1e-16)."""
    from .tw import TracyWidom

    return float(TracyWidom(1).isf(beta))


def tw_edge_factor(gamma: float, N: int, beta: float = 0.1, *, paper_exact: bool = False) -> float:
    r"""The bracket of step 4: :math:`\hat\lambda_+ / \hat\sigma^2
    = (1+\sqrt\gamma)^2 + t_{1-\beta} N^{-2/3}\gamma^{-1/6}(1+\sqrt\gamma)^{4/3}`
    (``paper_exact``: :math:`(1+\sqrt\gamma)^4/3` for the last factor).

    ``gamma`` in (0, 1], ``N >= 1`` the larger side, ``beta`` as in :func:`check_beta`;
    :math:`t_{1-\beta}` is ``TracyWidom(1).isf(beta)``, so ``beta = 1e-300`` gives a finite
    edge (:math:`t \approx 101.9`).
    """
    gamma = _check_gamma(gamma)
    N = check_int(N, "N (the larger side of the matrix)", minimum=1)
    t = _tw1_upper_quantile(check_beta(beta))
    sg = 1.0 + math.sqrt(gamma)
    tw_shape = sg**4 / 3 if check_bool(paper_exact, "paper_exact") else sg ** (4.0 / 3.0)
    return sg**2 + t * N ** (-2.0 / 3.0) * gamma ** (-1.0 / 6.0) * tw_shape


def bema_window(p: int, alpha: float, paper_exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices into the ascending eigenvalues used by BEMA, and the MP quantile
    levels matched to them.

    Correct version: 1-based ranks ``k = ceil(alpha p) .. floor((1 - alpha) p)`` matched to
    the levels ``k / p``.  ``paper_exact``: the authors' ``i = int(alpha p) ..
    int((1 - alpha) p) - 1`` (0-based) matched to ``i / p``.
    """
    p = check_int(p, "p (the number of eigenvalues)", minimum=1)
    alpha = check_alpha(alpha)
    if check_bool(paper_exact, "paper_exact"):
        idx = np.arange(int(alpha * p), int((1 - alpha) * p))
        levels = idx / p
    else:
        eps = 1e-12  # alpha * p may be an integer up to round-off
        k = np.arange(math.ceil(alpha * p - eps), math.floor((1 - alpha) * p + eps) + 1)
        idx, levels = k - 1, k / p
    if idx.size == 0:
        raise ValueError(
            f"BEMA's window is empty for p = {p} eigenvalues and alpha = {alpha}: "
            "use a larger matrix or a smaller alpha"
        )
    return idx, levels


def gof_statistic(eigenvalues, sigma2, gamma: float, alpha: float, *,
                  paper_exact: bool = False) -> np.ndarray | float:
    """L-infinity distance between the fitted MP CDF and the empirical CDF on BEMA's window.

    ``eigenvalues`` is ascending, shape ``(p,)`` or ``(draws, p)`` with ``sigma2`` a positive
    scalar or one value per draw (vectorized for the null simulation); ``gamma`` in (0, 1].
    """
    lam = check_array(eigenvalues, "eigenvalues", nonnegative=True)
    if lam.ndim not in (1, 2):
        raise ValueError(f"eigenvalues must be 1-D (p,) or 2-D (draws, p), got shape {lam.shape}")
    s2 = check_array(sigma2, "sigma2")
    if np.any(s2 <= 0) or s2.shape not in ((), lam.shape[:-1]):
        raise ValueError(f"sigma2 must be positive, a scalar or one value per draw "
                         f"(shape {lam.shape[:-1]}), got shape {s2.shape}, minimum {s2.min()!r}")
    gamma = _check_gamma(gamma)
    p = lam.shape[-1]
    idx, _ = bema_window(p, alpha, paper_exact)
    u = lam[..., idx] / (s2[..., None] if s2.ndim else s2)  # in units of sigma2
    F = np.asarray(MarchenkoPastur(gamma).cdf(u))
    if paper_exact:
        F = np.where(u >= (1 + math.sqrt(gamma)) ** 2, 0.0, F)  # the authors' CDF: 0 above the edge
        emp = alpha + (1 - 2 * alpha) * np.arange(idx.size) / idx.size
        D = np.max(np.abs(F - emp), axis=-1)
    else:
        k = idx + 1
        D = np.maximum(np.abs(F - k / p), np.abs(F - (k - 1) / p)).max(axis=-1)
    return float(D) if np.ndim(D) == 0 else D




@lru_cache(maxsize=256)
def _window_quantiles(p: int, gamma: float, alpha: float, paper_exact: bool):
    idx, levels = bema_window(p, alpha, paper_exact)
    q = MarchenkoPastur(gamma).ppf(levels)
    idx.setflags(write=False)
    q.setflags(write=False)
    return idx, q


def window_quantiles(p: int, gamma: float, alpha: float, paper_exact: bool = False):
    """Step 2: BEMA's window (0-based indices, :func:`bema_window`) and the MP(``gamma``, 1)
    quantiles ``q_k`` matched to it, as read-only arrays.  Cached (``window_quantiles.cache_clear()``
    empties the cache): BEMA asks for the same ones again and again during training."""
    return _window_quantiles(check_int(p, "p (the number of eigenvalues)", minimum=1),
                             _check_gamma(gamma), check_alpha(alpha),
                             check_bool(paper_exact, "paper_exact"))


window_quantiles.cache_clear = _window_quantiles.cache_clear
window_quantiles.cache_info = _window_quantiles.cache_info


def fit_sigma2(eigenvalues, gamma: float, alpha: float, paper_exact: bool = False):
    r"""Step 3, :math:`\hat\sigma^2 = \sum_k q_k\lambda_{(k)} / \sum_k q_k^2`, vectorized over
    the leading axes of ``eigenvalues`` (ascending on the last axis, finite, non-negative)."""
    lam = check_array(eigenvalues, "eigenvalues", nonnegative=True)
    if lam.ndim == 0:
        raise ValueError("eigenvalues must be an array of at least one dimension, got a scalar")
    idx, q = window_quantiles(int(lam.shape[-1]), gamma, alpha, paper_exact)
    return lam[..., idx] @ q / (q @ q)


@dataclass(frozen=True, eq=False)
class BemaFit:
    """Result of :func:`fit_bema`; eigenvalue units are ``s**2 / N`` throughout."""

    sigma2: float           #: fitted noise variance per entry
    lambda_plus: float      #: fitted edge (with the Tracy--Widom margin)
    lambda_plus_mp: float   #: asymptotic MP edge sigma2 * (1 + sqrt(gamma))**2
    edge_singular: float    #: s_+ = sqrt(N * lambda_plus), in singular-value units
    n_spikes: int           #: number of eigenvalues above lambda_plus
    gof: float              #: L-infinity CDF distance on the window (rmtlib.gof)
    gamma: float
    shape: tuple[int, int]
    N: int
    p: int
    alpha: float
    beta: float
    tw_quantile: float      #: t_{1-beta}
    paper_exact: bool
    eigenvalues: np.ndarray  #: ascending, float64

    @property
    def n_bulk(self) -> int:
        """Eigenvalues at or below the edge (``p - n_spikes``)."""
        return self.p - self.n_spikes

    @property
    def spikes(self) -> np.ndarray:
        """The eigenvalues above the edge, descending."""
        return self.eigenvalues[self.eigenvalues > self.lambda_plus][::-1]

    def mp(self) -> MarchenkoPastur:
        """The fitted Marchenko--Pastur law."""
        return MarchenkoPastur(self.gamma, self.sigma2)

    def summary(self) -> dict:
        """Scalar fields as a JSON-friendly dict."""
        keys = ("sigma2", "lambda_plus", "lambda_plus_mp", "edge_singular", "n_spikes", "gof",
                "gamma", "N", "p", "alpha", "beta", "tw_quantile", "paper_exact")
        out = {k: getattr(self, k) for k in keys}
        out["shape"] = list(self.shape)
        return out


def fit_bema(x, *, shape=None, alpha: float = 0.2, beta: float = 0.1,
             paper_exact: bool = False) -> BemaFit:
    """Fit BEMA to a weight matrix or to its eigenvalues.

    Parameters
    ----------
    x : array_like or torch.Tensor
        A real ``m x n`` matrix (NumPy or torch, float32 or float64), or its eigenvalues
        ``s_i**2 / N`` (1-D, any order) with ``shape`` given.
    shape : (m, n), optional
        Required when ``x`` holds eigenvalues.
    alpha : float in (0, 0.5), default 0.2
        Fraction of the spectrum trimmed at each end before fitting.
    beta : float in (0, 1), default 0.1
        Probability that the largest pure-noise eigenvalue exceeds the edge; any double down
        to 2.2e-308 (the edge uses ``TracyWidom(1).isf(beta)``, finite and accurate there).
    paper_exact : bool, default False
        Reproduce the authors' formula and window quirks (module docstring).

    Returns
    -------
    BemaFit

    Raises
    ------
    ValueError
        Bad ``alpha``/``beta``/``paper_exact``/``shape``; NaN/Inf, complex, empty or
        1-row/1-column input; negative eigenvalues; a window too small to fit; an all-zero
        bulk.  Wrong types raise :class:`~rmtlib.validation.ArgumentTypeError` (also a
        ``ValueError``).
    """
    alpha, beta = check_alpha(alpha), check_beta(beta)
    paper_exact = check_bool(paper_exact, "paper_exact")
    spec = spectrum(x, shape)
    lam, gamma, N, p = spec.eigenvalues, spec.gamma, spec.N, spec.p
    sigma2 = float(fit_sigma2(lam, gamma, alpha, paper_exact))
    if not sigma2 > spec.roundoff:
        raise ValueError(
            "the bulk of the spectrum is zero (BEMA's window holds only zero eigenvalues): "
            "the matrix has low rank, so there is no noise bulk to fit"
        )
    lambda_plus = sigma2 * tw_edge_factor(gamma, N, beta, paper_exact=paper_exact)
    return BemaFit(
        sigma2=sigma2,
        lambda_plus=float(lambda_plus),
        lambda_plus_mp=float(sigma2 * (1 + math.sqrt(gamma)) ** 2),
        edge_singular=float(math.sqrt(N * lambda_plus)),
        n_spikes=int(np.count_nonzero(lam > lambda_plus)),
        gof=float(gof_statistic(lam, sigma2, gamma, alpha, paper_exact=paper_exact)),
        gamma=float(gamma),
        shape=spec.shape,
        N=N,
        p=p,
        alpha=alpha,
        beta=beta,
        tw_quantile=_tw1_upper_quantile(beta),
        paper_exact=bool(paper_exact),
        eigenvalues=lam,
    )
