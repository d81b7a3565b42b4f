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

__all__ = ["BemaFit", "bema_window", "check_alpha", "check_beta", "fit_bema", "fit_sigma2",
           "gof_statistic", "tw_edge_factor", "window_quantiles"]


def check_alpha(alpha) -> float:
    """Validate BEMA's trimming fraction ``alpha`` (in (0, 0.5)) and return it as a float."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) \
            or not math.isfinite(alpha) or not 0 < alpha < 0.5:
        raise ValueError(
            f"alpha (the fraction trimmed at each end of the spectrum) must lie in (0, 0.5), "
            f"got {alpha!r}"
        )
    return float(alpha)


def check_beta(beta) -> float:
    """Validate BEMA's edge tail probability ``beta`` (in (0, 1)) and return it as a float."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) \
            or not math.isfinite(beta) or not 0 < beta < 1:
        raise ValueError(
            f"beta (the Tracy-Widom tail probability of the edge) must lie in (0, 1), got {beta!r}"
        )
    return float(beta)


@lru_cache(maxsize=64)
def _tw1_quantile(level: float) -> float:
    from .tw import TracyWidom

    return float(TracyWidom(1).ppf(level))


def tw_edge_factor(gamma: float, N: int, beta: float = 0.1, *, paper_exact: bool = False) -> float:
    r"""The bracket of step 4: :math:`\hat\lambda_+ / \hat\sigma^2`."""
    t = _tw1_quantile(1.0 - check_beta(beta))
    sg = 1.0 + math.sqrt(gamma)
    tw_shape = sg**4 / 3 if paper_exact else sg ** (4.0 / 3.0)
    return sg**2 + t * N ** (-2.0 / 3.0) * gamma ** (-1.0 / 6.0) * tw_shape


def bema_window(p: int, alpha: float, paper_exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices into the ascending eigenvalues used by BEMA, and the MP quantile
    levels matched to them.

    Correct version: 1-based ranks ``k = ceil(alpha p) .. floor((1 - alpha) p)`` matched to
    the levels ``k / p``.  ``paper_exact``: the authors' ``i = int(alpha p) ..
    int((1 - alpha) p) - 1`` (0-based) matched to ``i / p``.
    """
    if paper_exact:
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

    ``eigenvalues`` is ascending, shape ``(p,)`` or ``(draws, p)`` with ``sigma2`` a scalar
    or one value per draw (vectorized for the null simulation).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
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
def window_quantiles(p: int, gamma: float, alpha: float, paper_exact: bool = False):
    """Step 2: BEMA's window (0-based indices, :func:`bema_window`) and the MP(``gamma``, 1)
    quantiles ``q_k`` matched to it, as read-only arrays.  Cached (``window_quantiles.cache_clear()``
    empties the cache): BEMA asks for the same ones again and again during training."""
    idx, levels = bema_window(p, alpha, paper_exact)
    q = MarchenkoPastur(gamma).ppf(levels)
    idx.setflags(write=False)
    q.setflags(write=False)
    return idx, q


def fit_sigma2(eigenvalues, gamma: float, alpha: float, paper_exact: bool = False):
    r"""Step 3, :math:`\hat\sigma^2 = \sum_k q_k\lambda_{(k)} / \sum_k q_k^2`, vectorized over
    the leading axes of ``eigenvalues`` (ascending on the last axis)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    idx, q = window_quantiles(int(lam.shape[-1]), float(gamma), float(alpha), bool(paper_exact))
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
        Probability that the largest pure-noise eigenvalue exceeds the edge.
    paper_exact : bool, default False
        Reproduce the authors' formula and window quirks (module docstring).

    Returns
    -------
    BemaFit

    Raises
    ------
    ValueError
        Bad ``alpha``/``beta``; NaN/Inf, complex, empty or 1-row/1-column input; negative
        eigenvalues; a window too small to fit; an all-zero bulk.
    """
    alpha, beta = check_alpha(alpha), check_beta(beta)
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
        tw_quantile=_tw1_quantile(1.0 - beta),
        paper_exact=bool(paper_exact),
        eigenvalues=lam,
    )
