r"""Rank selectors: how many singular values of a weight matrix are signal.

Every selector answers with a :class:`RankDecision`: ``rank`` (number of singular values
kept), ``threshold`` in **singular-value units of W** with the rule *keep* :math:`s_i >`
``threshold``, the ``method`` name and a ``details`` dict of method-specific numbers.

Conventions (as everywhere in rmtlib): ``W`` is ``m x n``, ``N = max(m, n)``,
``p = min(m, n)``, :math:`\gamma = p/N \le 1` (Gavish--Donoho's :math:`\beta`);
eigenvalues :math:`\lambda_i = s_i^2/N`.  A selector accepts a matrix (NumPy array or
torch tensor, float32/float64, any orientation), its eigenvalues together with
``shape=(m, n)``, or an :class:`rmtlib.esd.Spectrum`; validation is
:func:`rmtlib.esd.spectrum`'s (NaN/Inf, complex, fewer than 2 rows, ... raise
``ValueError``).

Methods (``select_rank(x, method, **opts)`` or the functions of the same name):

``bema``
    Spikes above BEMA's bulk edge :math:`\hat\lambda_+` (Ke, Ma & Lin 2023), via
    :func:`rmtlib.bema.fit_bema`.
``gavish_donoho``
    The optimal hard threshold of Gavish & Donoho (2014) for white noise, known or
    unknown noise level.
``screenot``
    ScreeNOT (Donoho, Gavish & Romanov 2023): the optimal hard threshold for an
    unknown, possibly correlated noise, estimated from the spectrum itself given an
    upper bound ``k`` on the signal rank.
``energy``
    Smallest rank capturing a fraction ``t`` of :math:`\|W\|_F^2`.
``weightwatcher_mp``
    WeightWatcher's MP-fit bulk edge (Martin & Mahoney), for comparison.

:data:`METHODS` maps each name to its function; :func:`compare_selectors` runs several
on one matrix and returns a :class:`pandas.DataFrame`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy import optimize

from .esd import Spectrum, spectrum
from .mp import MarchenkoPastur
from .validation import (ArgumentTypeError, check_array, check_bool, check_choice, check_float,
                         describe)

__all__ = [
    "RankDecision",
    "select_rank",
    "compare_selectors",
    "available_methods",
    "METHODS",
    "bema",
    "gavish_donoho",
    "gd_lambda_star",
    "gd_omega",
    "screenot",
    "screenot_threshold",
    "energy",
    "weightwatcher_mp",
]


@dataclass(frozen=True)
class RankDecision:
    """Outcome of a rank selector.

    Attributes
    ----------
    rank : int
        Number of singular values kept.
    threshold : float
        Singular-value threshold in the units of ``W``: keep :math:`s_i >` ``threshold``
        (for ``energy`` with tied singular values see :func:`energy`).
    method : str
        Name of the selector (a key of :data:`METHODS`).
    details : dict
        Method-specific numbers (noise-level estimates, fitted edges, ...).
    """

    rank: int
    threshold: float
    method: str
    details: dict = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------
def _as_spectrum(x, shape) -> Spectrum:
    if isinstance(x, Spectrum):
        if shape is not None and tuple(shape) != x.shape:
            raise ValueError(f"shape={tuple(shape)} contradicts the Spectrum's shape {x.shape}")
        return x
    return spectrum(x, shape)


def _count_above(s: np.ndarray, threshold: float) -> int:
    return int(np.count_nonzero(s > threshold))


def _positive_float(value, name: str) -> float:
    return check_float(value, name, low=0.0, low_open=True)


_BETA = "beta (the aspect ratio p/N = min(m, n)/max(m, n))"


def _check_beta(beta) -> np.ndarray:
    """Aspect ratios in (0, 1]: a number or a non-empty array of numbers."""
    b = check_array(beta, _BETA)
    if np.any((b <= 0) | (b > 1)):
        raise ValueError(f"{_BETA} must lie in (0, 1], got {beta!r}")
    return b


# -- BEMA ---------------------------------------------------------------------------------
def bema(x, shape=None, *, alpha: float = 0.2, beta: float = 0.1, paper_exact: bool = False):
    r"""Number of spikes above BEMA's bulk edge (Ke, Ma & Lin 2023, arXiv:2006.00436).

    Delegates to :func:`rmtlib.bema.fit_bema` on the eigenvalues :math:`s_i^2/N`:
    ``rank = fit.n_spikes`` (eigenvalues above :math:`\hat\lambda_+`) and
    ``threshold = fit.edge_singular`` :math:`= \sqrt{N\hat\lambda_+}`.  ``alpha``
    (trimmed fraction), ``beta`` (Tracy--Widom tail) and ``paper_exact`` (the authors'
    formula quirks) are :func:`~rmtlib.bema.fit_bema`'s.

    ``details``: ``sigma2``, ``lambda_plus`` and ``lambda_plus_mp`` (eigenvalue units, with
    and without the Tracy--Widom margin), ``gof``, ``gamma``, ``alpha``, ``beta``,
    ``tw_quantile``, ``paper_exact``.
    """
    spec = _as_spectrum(x, shape)
    from .bema import fit_bema  # lazy: rmtlib.bema pulls in rmtlib.tw and rmtlib.gof

    fit = fit_bema(spec.eigenvalues, shape=spec.shape, alpha=alpha, beta=beta,
                   paper_exact=paper_exact)
    keys = ("sigma2", "lambda_plus", "lambda_plus_mp", "gof", "gamma", "alpha", "beta",
            "tw_quantile", "paper_exact")
    details = {k: getattr(fit, k) for k in keys}
    return RankDecision(int(fit.n_spikes), float(fit.edge_singular), "bema", details)


# -- Gavish & Donoho ----------------------------------------------------------------------
def gd_lambda_star(beta):
    r"""Gavish--Donoho optimal threshold coefficient for a *known* noise level.

    .. math::

        \lambda^*(\beta) = \sqrt{2(\beta+1)
            + \frac{8\beta}{(\beta+1) + \sqrt{\beta^2 + 14\beta + 1}}},

    so that :math:`\tau = \lambda^*(\beta)\sqrt{N}\sigma` (Gavish & Donoho 2014,
    arXiv:1305.5870); :math:`\lambda^*(1) = 4/\sqrt3`.  ``beta`` in (0, 1], scalar or array.
    """
    b = _check_beta(beta)
    out = np.sqrt(2.0 * (b + 1.0) + 8.0 * b / ((b + 1.0) + np.sqrt(b * b + 14.0 * b + 1.0)))
    return float(out) if out.ndim == 0 else out


def gd_omega(beta, exact: bool = True):
    r"""Gavish--Donoho threshold coefficient for an *unknown* noise level.

    :math:`\tau = \omega(\beta)\, s_{\rm med}` with :math:`s_{\rm med}` the median singular
    value and

    .. math:: \omega(\beta) = \lambda^*(\beta) / \sqrt{\mu_\beta},

    :math:`\mu_\beta` the median of the Marchenko--Pastur law with ratio :math:`\beta` and
    :math:`\sigma^2 = 1` (computed exactly with :class:`rmtlib.mp.MarchenkoPastur`).
    ``exact=False`` gives the paper's cubic fit
    :math:`\omega(\beta) \approx 0.56\beta^3 - 0.95\beta^2 + 1.82\beta + 1.43`.
    """
    b = _check_beta(beta)
    if check_bool(exact, "exact"):
        values, inverse = np.unique(b, return_inverse=True)
        mu = np.array([MarchenkoPastur(v).median() for v in values])[inverse].reshape(b.shape)
        out = np.asarray(gd_lambda_star(b)) / np.sqrt(mu)
    else:
        out = 0.56 * b**3 - 0.95 * b**2 + 1.82 * b + 1.43
    return float(out) if np.ndim(out) == 0 else out


def gavish_donoho(x, shape=None, *, sigma: float | None = None, omega: str = "exact"):
    r"""Optimal hard threshold for singular values (Gavish & Donoho 2014, "The optimal
    hard threshold for singular values is :math:`4/\sqrt3`", IEEE Trans. Inf. Theory
    60(8), arXiv:1305.5870).

    Model :math:`W = X + \sigma Z` with :math:`Z` i.i.d. N(0, 1) (any finite-variance
    white noise asymptotically) and a low-rank :math:`X`; :math:`\beta = \gamma = p/N`.

    * known ``sigma`` (entry standard deviation of the noise):
      :math:`\tau = \lambda^*(\beta)\sqrt{N}\sigma` (:func:`gd_lambda_star`);
    * ``sigma=None``: :math:`\tau = \omega(\beta)\, s_{\rm med}` with
      ``omega="exact"`` (:math:`\lambda^*/\sqrt{\mu_\beta}`, MP median) or ``"approx"``
      (the paper's cubic fit), see :func:`gd_omega`.  This amounts to the noise-level
      estimate :math:`\hat\sigma = s_{\rm med}/\sqrt{N\mu_\beta}`.

    ``rank`` :math:`= \#\{s_i > \tau\}`.  ``details``: ``beta``, ``lambda_star``,
    ``sigma`` (given, or the estimate implied by the median), ``sigma_known``,
    ``omega`` and ``omega_kind`` (unknown-sigma case), ``median_singular_value``.
    """
    omega = check_choice(omega, "omega", ("exact", "approx"))
    spec = _as_spectrum(x, shape)
    s = spec.singular_values
    beta = spec.gamma
    lam_star = gd_lambda_star(beta)
    details = {"beta": beta, "lambda_star": lam_star}
    if sigma is not None:
        sigma = _positive_float(sigma, "sigma")
        tau = lam_star * math.sqrt(spec.N) * sigma
        details.update(sigma=sigma, sigma_known=True)
    else:
        s_med = float(np.median(s))
        w = gd_omega(beta, exact=(omega == "exact"))
        tau = w * s_med
        mu = MarchenkoPastur(beta).median()
        details.update(
            sigma=s_med / math.sqrt(spec.N * mu), sigma_known=False, omega=w,
            omega_kind=omega, median_singular_value=s_med,
        )
    return RankDecision(_count_above(s, tau), float(tau), "gavish_donoho", details)


# -- ScreeNOT -----------------------------------------------------------------------------
_STRATEGIES = ("impute", "winsorize", "zero")


def _pseudo_noise(s: np.ndarray, k: int, strategy: str) -> np.ndarray:
    """Replace the top ``k`` of the descending singular values ``s`` by noise surrogates."""
    z = s.copy()
    if strategy == "zero":
        z[:k] = 0.0
    elif strategy == "winsorize":
        z[:k] = z[k]
    else:  # impute: the top of a square-root edge, z_(j) ~ edge - c j^(2/3)
        j = np.arange(k)  # l - 1 for the l-th largest, l = 1..k
        a = (1.0 - (j / k) ** (2.0 / 3.0)) / (2.0 ** (2.0 / 3.0) - 1.0)
        z[:k] = z[k] + a * (z[k] - z[2 * k])
    return np.sort(z)[::-1]


def _psi(y, z: np.ndarray, gamma: float):
    r""":math:`\Psi(y) = y D'(y)/D(y)` for the counting measure on ``z`` (``y > max z``)."""
    y = np.asarray(y, dtype=np.float64)[..., None]
    d = y * y - z * z
    phi = np.mean(y / d, axis=-1)
    dphi = -np.mean((y * y + z * z) / d**2, axis=-1)
    y = y[..., 0]
    inner = gamma * phi + (1.0 - gamma) / y
    D = phi * inner
    dD = dphi * inner + phi * (gamma * dphi - (1.0 - gamma) / y**2)
    return y * dD / D


def screenot_threshold(noise_singular_values, gamma: float) -> float:
    r"""Optimal hard threshold for a given noise singular-value distribution (ScreeNOT).

    For the counting measure on the noise singular values :math:`z_j` and
    :math:`\gamma = p/N`, let

    .. math::

        \varphi(y) = \frac1p\sum_j \frac{y}{y^2 - z_j^2}, \qquad
        D(y) = \varphi(y)\Big[\gamma\varphi(y) + \frac{1-\gamma}{y}\Big], \qquad
        \Psi(y) = \frac{y D'(y)}{D(y)}

    (:math:`D` is the D-transform of Benaych-Georges & Nadakuditi).  The asymptotically
    MSE-optimal hard threshold is the unique root :math:`\theta^*` of
    :math:`\Psi(\theta) = -4` on :math:`(\max_j z_j, \infty)` (Donoho, Gavish & Romanov
    2023, Ann. Statist. 51(1), arXiv:2009.12297, and their reference code): :math:`\Psi`
    rises from :math:`-\infty` at the edge to :math:`-2` at infinity.  Scale-equivariant: ``z -> c z`` gives
    ``theta -> c theta``.  For the Marchenko--Pastur law it equals Gavish--Donoho's
    :math:`\lambda^*(\gamma)\sqrt N\sigma`.
    """
    z = check_array(noise_singular_values, "noise_singular_values", ndim=1, min_size=2,
                    nonnegative=True)
    z = np.sort(z)[::-1]
    g = check_float(gamma, "gamma (the aspect ratio p/N, Gavish-Donoho's beta)", low=0.0, high=1.0,
                    low_open=True)
    scale = z[0]
    if scale == 0.0:
        return 0.0  # no noise at all: keep every non-zero singular value
    z = z / scale  # work at unit scale
    f = lambda y: float(_psi(y, z, g)) + 4.0
    lo, hi = 1.0 + 1e-12, 2.0
    while f(hi) < 0:  # Psi -> -2 > -4 as y -> inf, so this stops
        lo, hi = hi, 2.0 * hi
    return scale * optimize.brentq(f, lo, hi, xtol=1e-14, rtol=1e-13)


def screenot(x, shape=None, *, k: int | None = None, strategy: str = "impute"):
    r"""ScreeNOT: adaptive optimal hard threshold in unknown, possibly correlated noise.

    Donoho, Gavish & Romanov (2023), "ScreeNOT: Exact MSE-optimal singular value
    thresholding in correlated noise", Ann. Statist. 51(1), arXiv:2009.12297.  Our own
    implementation of the procedure as the authors define it in their reference code
    (``adaptiveHardThresholding``, ``createPseudoNoise``, ``computeOptThreshold`` in
    github.com/eladromanov/ScreeNOT, Python/R/Matlab, MIT licence); vectorized, with a
    bracketed Brent root instead of their bisection to 1e-5.

    1. ``k`` is an upper bound on the number of signal components (required).  The top
       ``k`` singular values are replaced by noise surrogates; ``strategy``:

       * ``"impute"`` (default, the paper's recommendation): the :math:`l`-th largest
         becomes :math:`z_{k+1} + a_l (z_{k+1} - z_{2k+1})`,
         :math:`a_l = (1 - ((l-1)/k)^{2/3}) / (2^{2/3} - 1)`, which extrapolates a
         square-root density edge (:math:`z_{(j)} \approx z_+ - c\,j^{2/3}`); needs
         :math:`2k + 1 < p`;
       * ``"winsorize"``: set to :math:`z_{k+1}`; ``"zero"``: set to 0 (need :math:`k < p`).

    2. The empirical measure of these pseudo-noise singular values estimates the noise
       distribution, hence its D-transform and :math:`\Psi`.
    3. The threshold is the root of :math:`\hat\Psi(\theta) = -4`
       (:func:`screenot_threshold`), the estimated AMSE-optimal hard threshold.
       :math:`\hat\Psi` is increasing above the pseudo-noise edge, so keeping
       :math:`s_i > \theta` is the same decision as keeping those observed singular values
       above that edge with :math:`\hat\Psi(s_i) > -4`.

    ``rank`` :math:`= \#\{s_i > \theta\}`.  ``details``: ``k``, ``strategy``, ``gamma``,
    ``noise_edge`` (largest pseudo-noise singular value).
    """
    strategy = check_choice(strategy, "strategy", _STRATEGIES)
    spec = _as_spectrum(x, shape)
    s, p = spec.singular_values, spec.p
    k_max = (p - 2) // 2 if strategy == "impute" else p - 1
    if k is None:
        raise ValueError(
            "screenot needs k (k must be given), an upper bound on the number of signal components "
            f"(1 <= k <= {k_max} for this {spec.shape[0]}x{spec.shape[1]} matrix and "
            f"strategy={strategy!r})"
        )
    need = "2k + 1 < p" if strategy == "impute" else "k < p"
    msg = f"k must be an integer with 1 <= k <= {k_max} ({need}, p = {p}), got {describe(k)}"
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ArgumentTypeError(msg)
    if not 1 <= k <= k_max:
        raise ValueError(msg)
    k = int(k)
    z = _pseudo_noise(s, k, strategy)
    theta = screenot_threshold(z, spec.gamma)
    details = {"k": k, "strategy": strategy, "gamma": spec.gamma, "noise_edge": float(z[0])}
    return RankDecision(_count_above(s, theta), float(theta), "screenot", details)


# -- energy -------------------------------------------------------------------------------
def energy(x, shape=None, *, t: float = 0.9):
    r"""Smallest rank capturing a fraction ``t`` of the energy :math:`\|W\|_F^2 = \sum s_i^2`.

    ``rank`` :math:`= \min\{k : \sum_{i \le k} s_i^2 \ge t \sum_i s_i^2\}` (descending
    :math:`s_i`), ``t`` in (0, 1].  ``threshold`` is the geometric midpoint
    :math:`\sqrt{s_k s_{k+1}}` of the last kept and the first dropped singular value
    (0 if nothing is dropped), so that "keep :math:`s_i >` threshold" keeps exactly
    ``rank`` values -- except when :math:`s_k = s_{k+1}`, where no threshold can separate
    them; then ``threshold`` :math:`= s_k` and ``details["tie"]`` is True.  A zero matrix
    gives rank 0.  ``details``: ``t``, ``captured`` (energy fraction of the kept values),
    ``tie``.
    """
    t = check_float(t, "t (the energy fraction to keep)", low=0.0, high=1.0, low_open=True)
    s = _as_spectrum(x, shape).singular_values
    cum = np.cumsum(s * s)
    total = cum[-1]
    if total == 0.0:
        return RankDecision(0, 0.0, "energy", {"t": t, "captured": 1.0, "tie": False})
    k = int(np.searchsorted(cum, t * total, side="left")) + 1  # first index with cum >= t*total
    k = min(k, s.size)
    if k == s.size:
        threshold, tie = 0.0, False
    else:
        tie = bool(s[k - 1] == s[k])
        threshold = float(s[k - 1]) if tie else float(np.sqrt(s[k - 1] * s[k]))
    details = {"t": t, "captured": float(cum[k - 1] / total), "tie": tie}
    return RankDecision(k, threshold, "energy", details)


# -- WeightWatcher ------------------------------------------------------------------------
_WW_GRID = 1000  # KDE evaluation points on [0, max + 0.5]
_WW_DENSITY_FLOOR = 0.01  # grid points with a KDE density below this are ignored
_WW_PENALTY = 1000.0


def _triangular_kde(points: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """Density of the linear (triangular) kernel estimate, ``(1/nh) sum (1 - |x - x_i|/h)_+``."""
    out = np.empty(grid.size)
    for lo in range(0, grid.size, 256):  # chunked to bound memory at large p
        u = np.abs(grid[lo:lo + 256, None] - points[None, :]) / h
        out[lo:lo + 256] = np.maximum(1.0 - u, 0.0).sum(axis=1)
    return out / (points.size * h)


def weightwatcher_mp(x, shape=None, *, bandwidth: float = 0.1, tw: bool = True):
    r"""WeightWatcher's Marchenko--Pastur fit and spike count (Martin & Mahoney), for comparison.

    Re-implemented from ``WeightWatcher.mp_fit`` (``weightwatcher/weightwatcher.py``) and
    ``fit_density_with_range`` / ``resid_mp`` (``weightwatcher/RMT_Util.py``) of
    github.com/CalculatedContent/WeightWatcher, 0.7.x sources (the formula behind the
    ``num_spikes``, ``sigma_mp`` and ``mp_softrank`` columns of ``analyze(mp_fit=True)``):

    1. ``Q = N/p``; the ESD is rescaled to mean 1, :math:`e_i = \lambda_i/\bar\lambda`
       (WeightWatcher's ``Wscale``, any overall scale of W drops out).
    2. A linear-kernel density estimate of the :math:`e_i` (bandwidth ``bandwidth`` = 0.1)
       on 1000 points of :math:`[0, \max e + 0.5]`; points with density <= 0.01 are dropped.
    3. :math:`\sigma` minimises :math:`\sum(\rho_{MP}(x;\sigma) - \hat\rho(x))^2` with
       :math:`\rho_{MP}` the MP density of ratio :math:`1/Q` and scale :math:`\sigma^2`; a fit
       whose edges :math:`\sigma^2(1 \mp 1/\sqrt Q)^2` do not straddle the KDE mode, or whose
       upper edge lies beyond the grid, is penalised (residual 1000 per point).  Search: the
       grid :math:`\sigma \in [0.05 s_c, 2 s_c)` in steps :math:`0.01 s_c`,
       :math:`s_c = \sqrt{\max e}/(1 + 1/\sqrt Q)`, polished by Nelder--Mead
       (``scipy.optimize.brute`` with its default ``finish=fmin``).
    4. Bulk edge :math:`\lambda_+ = \sigma^2(1 + 1/\sqrt Q)^2`, Tracy--Widom margin
       :math:`\sqrt{Q^{-1/2}\lambda_+^{2/3} p^{-2/3}}` (WeightWatcher's ``bulk_max_TW``; the
       margin is dropped with ``tw=False``, as in releases before it was added);
       ``num_spikes`` counts :math:`e_i` above it; ``mp_softrank`` :math:`= \lambda_+/\max e`.

    Choice made here: WeightWatcher fits square matrices (``Q == 1``) with a quarter-circle
    law for the singular values whose support does not scale with :math:`\sigma`; we use the
    equivalent MP law for the eigenvalues for every shape.

    ``threshold`` :math:`= \sqrt{N \bar\lambda\, e_{\rm thr}}` (the edge, with margin, in
    singular-value units of W); ``rank`` :math:`= \#\{s_i > \text{threshold}\}`.
    ``details``: ``sigma_mp`` (WeightWatcher's, rescaled units), ``sigma2`` (entry variance
    in W's units), ``lambda_plus`` and ``lambda_plus_tw`` (eigenvalue units, without and
    with the margin), ``mp_softrank``, ``num_spikes``, ``Q``.
    """
    bandwidth = _positive_float(bandwidth, "bandwidth")
    tw = check_bool(tw, "tw")
    spec = _as_spectrum(x, shape)
    lam, N, p = spec.eigenvalues, spec.N, spec.p
    mean = float(lam.mean())
    if mean == 0.0:
        raise ValueError("all singular values are zero: there is no spectrum to fit an MP law to")
    e = lam / mean
    Q = N / p
    rq = 1.0 / math.sqrt(Q)

    grid = np.linspace(0.0, e.max() + 0.5, _WW_GRID)
    dens = _triangular_kde(e, grid, bandwidth)
    keep = dens > _WW_DENSITY_FLOOR
    xg, yg = grid[keep], dens[keep]
    x_mode, x_top = xg[np.argmax(yg)], xg.max()

    def loss(sig):
        sig = np.atleast_1d(np.asarray(sig, dtype=np.float64))
        s2 = sig[:, None] ** 2
        a, b = s2 * (1.0 - rq) ** 2, s2 * (1.0 + rq) ** 2
        inside = (xg > a) & (xg < b) & (xg > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(inside, np.sqrt((b - xg) * (xg - a)) * Q / (2.0 * np.pi * s2 * xg), 0.0)
        sse = np.sum((rho - yg) ** 2, axis=1)
        bad = (b[:, 0] < x_mode) | (b[:, 0] > x_top) | (a[:, 0] > x_mode)
        return np.where(bad, _WW_PENALTY**2 * xg.size, sse)

    s_c = math.sqrt(e.max()) / (1.0 + rq)
    sigmas = np.mgrid[slice(0.05 * s_c, 2.0 * s_c, 0.01 * s_c)]
    sig0 = sigmas[np.argmin(loss(sigmas))]
    sig = float(optimize.fmin(lambda v: float(loss(v[0])[0]), [sig0], disp=False)[0])

    bulk_max = (sig * (1.0 + rq)) ** 2
    edge = bulk_max + (math.sqrt(rq * bulk_max ** (2.0 / 3.0) * p ** (-2.0 / 3.0)) if tw else 0.0)
    threshold = math.sqrt(N * mean * edge)
    details = {
        "sigma_mp": sig,
        "sigma2": sig * sig * mean,
        "lambda_plus": bulk_max * mean,
        "lambda_plus_tw": edge * mean,
        "mp_softrank": bulk_max / float(e.max()),
        "num_spikes": int(np.count_nonzero(e > edge)),
        "Q": Q,
    }
    rank = _count_above(spec.singular_values, threshold)
    return RankDecision(rank, threshold, "weightwatcher_mp", details)


# -- registry and front door --------------------------------------------------------------
METHODS = MappingProxyType({
    "bema": bema,
    "gavish_donoho": gavish_donoho,
    "screenot": screenot,
    "energy": energy,
    "weightwatcher_mp": weightwatcher_mp,
})
"""Read-only mapping: method name -> selector function ``f(x, shape=None, **opts)``."""

_OPTIONS = {  # a selector's options are its keyword-only parameters
    name: tuple(n for n, prm in inspect.signature(fn).parameters.items()
                if prm.kind is prm.KEYWORD_ONLY)
    for name, fn in METHODS.items()
}


def available_methods() -> tuple[str, ...]:
    """Names accepted by :func:`select_rank` (the keys of :data:`METHODS`)."""
    return tuple(METHODS)


def _check_method(method) -> str:
    if not isinstance(method, str):
        raise ArgumentTypeError(f"method must be the name of a rank selector "
                                f"({', '.join(METHODS)}), got {describe(method)}")
    if method not in METHODS:
        raise ValueError(f"unknown rank selector {method!r}; valid methods: {', '.join(METHODS)}")
    return method


def select_rank(x, method: str = "bema", *, shape=None, **opts) -> RankDecision:
    """Run the rank selector ``method`` on ``x``.

    Parameters
    ----------
    x : array_like, torch.Tensor or Spectrum
        A weight matrix, or its eigenvalues :math:`s_i^2/N` with ``shape``.
    method : str
        One of :func:`available_methods` (see the module docstring).
    shape : (m, n), optional
        Required when ``x`` holds eigenvalues.
    **opts
        Options of that method (e.g. ``k`` for ``screenot``, ``sigma`` for
        ``gavish_donoho``); an unknown option raises ``ValueError`` naming it.

    Returns
    -------
    RankDecision
        ``rank``, ``threshold`` (singular-value units, keep :math:`s_i >` threshold),
        ``method``, ``details``.
    """
    _check_method(method)
    unknown = sorted(set(opts) - set(_OPTIONS[method]))
    if unknown:
        valid = ", ".join(_OPTIONS[method]) or "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                         f"{method!r}; valid options: {valid}")
    return METHODS[method](x, shape, **opts)


def compare_selectors(x, methods=None, shape=None, **per_method_opts):
    """Run several selectors on one matrix; one row per method.

    Parameters
    ----------
    x, shape
        As in :func:`select_rank`; the spectrum is computed once.
    methods : sequence of str, optional
        Default: every method in :data:`METHODS` (``screenot`` then needs its ``k``).
    **per_method_opts
        ``method_name={option: value}``, e.g. ``screenot={"k": 10}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``rank``, ``threshold`` (singular-value units), in the order of
        ``methods``.
    """
    import pandas as pd

    if methods is None:
        methods = tuple(METHODS)
    if not isinstance(methods, (str, list, tuple)):
        raise ArgumentTypeError(f"methods must be a method name or a list of them "
                                f"({', '.join(METHODS)}), got {describe(methods)}")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    for m in methods:
        _check_method(m)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must name each method once (no duplicates), got {methods}")
    stray = sorted(set(per_method_opts) - set(methods))
    if stray:
        raise ValueError(f"options given for {', '.join(map(repr, stray))}, "
                         f"which is not among methods {methods}")
    for m, o in per_method_opts.items():
        if not isinstance(o, dict):
            raise ValueError(f"options for {m!r} must be a dict such as {{'k': 10}}, got {o!r}")
    if "screenot" in methods and "k" not in per_method_opts.get("screenot", {}):
        raise ValueError(
            "screenot needs an upper bound k on the signal rank: pass screenot={'k': ...} "
            "or leave 'screenot' out of methods"
        )
    spec = _as_spectrum(x, shape)
    rows = []
    for m in methods:
        d = select_rank(spec, m, **per_method_opts.get(m, {}))
        rows.append({"method": m, "rank": d.rank, "threshold": d.threshold})
    return pd.DataFrame(rows, columns=["method", "rank", "threshold"])
