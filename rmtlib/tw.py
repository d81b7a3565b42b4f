r"""The Tracy--Widom laws :math:`F_1` (real / GOE) and :math:`F_2` (complex / GUE).

These are the *standard* Tracy--Widom laws, the limits of the centred and scaled largest
eigenvalue.  For the largest eigenvalue of :math:`X^\top X` with ``X`` an ``n x p`` real
Gaussian matrix, Johnstone (2001) centres by :math:`\mu_{np}` and scales by
:math:`\sigma_{np}` (:func:`johnstone_scaling`) to get :math:`F_1`; applying such a
centring/scaling is the caller's job (e.g. BEMA's edge uses the TW1 ``1 - beta`` quantile,
see :mod:`rmtlib.bema`).

**Fredholm determinants** (Bornemann 2010).  With :math:`\operatorname{Ai}` the Airy
function,

.. math::

    F_2(s) = \det(I - K_s), \qquad
    K(x, y) = \frac{\operatorname{Ai}(x)\operatorname{Ai}'(y)
                    - \operatorname{Ai}'(x)\operatorname{Ai}(y)}{x - y}, \quad
    K(x, x) = \operatorname{Ai}'(x)^2 - x \operatorname{Ai}(x)^2,

    F_1(s) = \det(I - A_s), \qquad A(x, y) = \tfrac12 \operatorname{Ai}\big(\tfrac{x+y}{2}\big),

both operators acting on :math:`L^2(s, \infty)`.  Following Bornemann, the determinant is
computed by the Nyström method: with an ``m``-point Gauss--Legendre rule
:math:`(x_i, w_i)` on a truncation :math:`[s, s + L(s)]` of the half line,
:math:`F(s) \approx \det(\delta_{ij} - w_i^{1/2} K(x_i, x_j) w_j^{1/2})`.  The symmetric
matrix is diagonalised and :math:`-\log F = -\sum_i \log(1 - \lambda_i)`, which keeps full
*relative* accuracy in the right tail (where ``1 - F`` is tiny).  The truncation drops
kernel values below ~1e-18 of the retained ones: :math:`[s, \max(s, 0) + 10]` for
:math:`F_2` (the kernel decays like :math:`\operatorname{Ai}(y)`); for :math:`F_1` the
coupling :math:`\operatorname{Ai}((s + y)/2)` to the left end decays only half as fast, so
:math:`[s, s + 2\max(14 - s, 8)]`.  The rule converges exponentially in ``m``; the
defaults ``m = 48`` (:math:`F_1`) and ``40`` (:math:`F_2`) agree with ``2m`` to ~3e-14 on
[-8, 6] (:func:`tracy_widom_cdf_fredholm`).  In the left tail the *relative* accuracy of
any double-precision evaluation degrades, because :math:`1 - \lambda_{\max}` approaches
the rounding level: about 1e-6 at ``s = -8`` and 1e-3 at ``s = -10`` (absolute errors
stay ~1e-16).

**Fast evaluation.**  Once per ``beta`` (lazily, ~0.03 s for :math:`F_2`, ~0.1 s for
:math:`F_1`) the function :math:`h(s) = \log(-\log F(s))` is sampled at Chebyshev points
on a left piece ``[-8, -5]`` (24 points) and a main piece ``[-5, b]`` (96 points;
``b = 8`` for :math:`F_2`, ``14`` for :math:`F_1`, beyond which ``1 - F < 1e-16``) and kept
as Chebyshev series; the split keeps the rounding noise of the left end out of the main
piece.  Then :math:`F = \exp(-e^h)`, the density :math:`f = -F e^h h'` is the exact
derivative of the interpolated CDF (positive everywhere), and ``logpdf`` and ``sf`` keep
relative accuracy in the tails.  Beyond the grid, tail expansions are continued from the
grid ends (continuous there):

* left, :math:`u = -s > 8` (Tracy--Widom 1994, 1996; the constants, not needed here, are
  due to Deift--Its--Krasovsky 2008 and Baik--Buckingham--DiFranco 2008; the correction
  terms follow from :math:`q(x) = \sqrt{-x/2}\,(1 + x^{-3}/8 + O(x^{-6}))`):

  .. math::

      -\log F_2 = \tfrac{u^3}{12} + \tfrac18 \log u - \tfrac{3}{64 u^3} + c_2 + O(u^{-6}),

      -\log F_1 = \tfrac{u^3}{24} + \tfrac{u^{3/2}}{3\sqrt2} + \tfrac1{16}\log u
                  + \tfrac{u^{-3/2}}{24\sqrt2} - \tfrac{3}{128 u^3} + c_1 + O(u^{-9/2}),

  with :math:`c_\beta` fixed by the grid value at -8
  (:math:`F_1(-8) \approx 1.8\cdot10^{-12}`, :math:`F_2(-8) \approx 2\cdot10^{-19}`);
* right, :math:`s > b`: :math:`-\log F` is the trace of the kernel up to its square;
  with :math:`z = \tfrac23 s^{3/2}` and the asymptotic series of
  :math:`\operatorname{Ai}, \operatorname{Ai}'`,

  .. math::

      -\log F_2 \simeq \frac{e^{-2z}}{16\pi s^{3/2}}
                       \Big(1 - \frac{35}{36 z} + \frac{3745}{2592 z^2}\Big), \qquad
      -\log F_1 \simeq \frac{e^{-z}}{4\sqrt\pi\, s^{3/4}}
                       \Big(1 - \frac{41}{72 z} + \frac{9241}{10368 z^2}\Big),

  scaled to match the grid value at ``b`` (relative error of ``sf`` beyond ``b`` below
  1e-3 for :math:`F_2`, 1e-4 for :math:`F_1`).

The quantile function solves :math:`h(x) = \log(-\log q)` by Newton's method bracketed by
a monotone table, so it is vectorized, monotone and defined for every double
``q in (0, 1)`` (``ppf(5e-324)`` is about -25 for :math:`F_1`).

**Accuracy** (checked in ``tests/test_tw.py``): the interpolated CDF agrees with the direct
determinant to ~1e-14 and with an independent Painlevé II (Hastings--McLeod) integration
to ~1e-13 on [-8, 6]; ``sf`` agrees with the determinant's ``1 - F`` to relative ~1e-11 up
to ``b``; the left tail agrees with the asymptotic series with the known constants to
relative ~3e-6 (1e-5 at -6); the mean and variance (Gauss--Legendre quadrature of the
density) match the published values to ~1e-12.

References: F. Bornemann, "On the numerical evaluation of Fredholm determinants",
Math. Comp. 79 (2010) 871--915; F. Bornemann, "On the numerical evaluation of distributions
in random matrix theory: a review", Markov Process. Related Fields 16 (2010) 803--866;
C. A. Tracy, H. Widom, Comm. Math. Phys. 159 (1994) 151--174 and 177 (1996) 727--754;
I. M. Johnstone, "On the distribution of the largest eigenvalue in principal components
analysis", Ann. Statist. 29 (2001) 295--327.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numpy.polynomial import chebyshev as cheb
from scipy.special import airy, kv

from ._dist import ContinuousDistribution

__all__ = ["TracyWidom", "tracy_widom_cdf_fredholm", "johnstone_scaling"]

_DEFAULT_M = {1: 48, 2: 40}  # Gauss-Legendre nodes of the Nystrom rule
_BREAKS = {1: (-8.0, -5.0, 14.0), 2: (-8.0, -5.0, 8.0)}  # left end, split, right end
_DEGREES = {1: (24, 96), 2: (24, 96)}  # Chebyshev points on the (left, main) piece
_CHUNK = 256  # determinants per batched eigvalsh call


def _check_beta(beta) -> int:
    ok = isinstance(beta, (int, float, np.integer, np.floating)) and not isinstance(beta, bool)
    if not ok or beta not in (1, 2):
        raise ValueError(
            f"beta must be 1 (real / GOE, Tracy-Widom F1) or 2 (complex / GUE, F2), got {beta!r}"
        )
    return int(beta)


# --------------------------------------------------------------------------- determinant
def _airy_ai(z: np.ndarray) -> np.ndarray:
    """``Ai(z)``; for ``z > 5`` via ``sqrt(z/3) K_{1/3}(2 z**1.5 / 3) / pi`` (same accuracy,
    ~8x faster than :func:`scipy.special.airy`, which also computes ``Bi`` there)."""
    out = np.empty_like(z)
    big = z > 5.0
    out[~big] = airy(z[~big])[0]
    zb = z[big]
    out[big] = np.sqrt(zb / 3.0) / np.pi * kv(1.0 / 3.0, 2.0 / 3.0 * zb**1.5)
    return out


@cache
def _gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(m)


def _nystrom(s: np.ndarray, beta: int, m: int) -> np.ndarray:
    """Symmetrised Nyström matrices ``sqrt(w_i) K(x_i, x_j) sqrt(w_j)``, ``(len(s), m, m)``."""
    t, w = _gauss_legendre(m)
    s = s[:, None]
    half = 0.5 * (np.maximum(s, 0.0) + 10.0 - s) if beta == 2 else np.maximum(14.0 - s, 8.0)
    x = s + half * (t + 1.0)
    sw = np.sqrt(half * w)
    if beta == 2:
        ai, aip, _, _ = airy(x)
        i = np.arange(m)
        dx = x[:, :, None] - x[:, None, :]
        dx[:, i, i] = 1.0
        k = (ai[:, :, None] * aip[:, None, :] - aip[:, :, None] * ai[:, None, :]) / dx
        k[:, i, i] = aip**2 - x * ai**2
    else:  # symmetric: evaluate Ai on the upper triangle only
        iu, ju = np.triu_indices(m)
        k = np.empty((len(s), m, m))
        k[:, iu, ju] = 0.5 * _airy_ai(0.5 * (x[:, iu] + x[:, ju]))
        k[:, ju, iu] = k[:, iu, ju]
    return sw[:, :, None] * k * sw[:, None, :]


def _neglog_det(s: np.ndarray, beta: int, m: int) -> np.ndarray:
    """``-log F_beta(s) = -sum log(1 - lambda_i)`` of the Nyström matrices, 1-d ``s``."""
    out = np.empty(len(s))
    for start in range(0, len(s), _CHUNK):  # loop over blocks of points, bounded memory
        block = s[start : start + _CHUNK]
        lam = np.minimum(np.linalg.eigvalsh(_nystrom(block, beta, m)), 1.0)
        with np.errstate(divide="ignore"):
            out[start : start + _CHUNK] = -np.log1p(-lam).sum(axis=-1)
    return out


def tracy_widom_cdf_fredholm(s, beta: int, m: int | None = None):
    r"""Tracy--Widom CDF :math:`F_\beta(s)` by direct Nyström evaluation of the determinant.

    No interpolation: each point costs one ``m x m`` symmetric eigenvalue problem (see the
    module docstring for the kernels and the truncation of the half line).

    Parameters
    ----------
    s : array_like
        Points (any shape; NaN gives NaN).
    beta : {1, 2}
        1 for :math:`F_1` (GOE), 2 for :math:`F_2` (GUE).
    m : int, optional
        Gauss--Legendre nodes; default 48 (``beta=1``) / 40 (``beta=2``): ``m`` and ``2m``
        agree to ~3e-14 for ``s >= -8``.  Further left ``F < 2e-12`` and the *relative*
        accuracy is limited by rounding (about 1e-3 at -10), whatever ``m``; the absolute
        error stays ~1e-16.

    Returns
    -------
    float or ndarray
        :math:`F_\beta(s)`, shaped like ``s``.
    """
    beta = _check_beta(beta)
    if m is None:
        m = _DEFAULT_M[beta]
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
        raise ValueError(f"m (number of quadrature nodes) must be an integer >= 2, got {m!r}")
    x = ContinuousDistribution._as_points(s, "s")
    out = np.where(x > 0, 1.0, 0.0)  # the limits at +-inf
    fin = np.isfinite(x)
    out[fin] = np.exp(-_neglog_det(x[fin], beta, int(m)))
    out[np.isnan(x)] = np.nan
    return ContinuousDistribution._finish(out, x)


# --------------------------------------------------------------------------- interpolant
def _left_tail(u: np.ndarray, beta: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-tail expansion ``P(u)`` of ``-log F(-u) - c`` and ``P'(u)``, ``u > 0``.

    Remainders: ``O(u**-6)`` for ``beta = 2``, ``O(u**-4.5)`` for ``beta = 1``.
    """
    v = 1.0 / u
    if beta == 2:
        return u**3 / 12 + np.log(u) / 8 - 3 / 64 * v**3, u**2 / 4 + v / 8 + 9 / 64 * v**4
    r, k = np.sqrt(u), 1 / (24 * math.sqrt(2))
    return (u**3 / 24 + 8 * k * u * r + np.log(u) / 16 + k * v / r - 3 / 128 * v**3,
            u**2 / 8 + 12 * k * r + v / 16 - 1.5 * k * v * v / r + 9 / 128 * v**4)


def _right_tail(x: np.ndarray, beta: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-tail expansion ``R(x)`` of ``log(-log F(x)) - c`` and ``R'(x)``, ``x > 0``.

    ``-log F`` is the trace of the kernel up to its square; with ``z = 2 x**1.5 / 3``,
    ``tr K = e^{-2z} / (16 pi x^{3/2}) S_2(z)`` and
    ``tr A = e^{-z} / (4 sqrt(pi) x^{3/4}) S_1(z)``, ``S(z) = 1 + s1/z + s2/z^2 + O(z^-3)``
    (from the asymptotic series of Ai and Ai').
    """
    if beta == 2:
        c, p, s1, s2 = 2, 1.5, -35 / 36, 3745 / 2592
    else:
        c, p, s1, s2 = 1, 0.75, -41 / 72, 9241 / 10368
    r = np.sqrt(x)
    v = 1.5 / (x * r)  # 1 / z
    ser = 1 + s1 * v + s2 * v * v
    return (-c / v - p * np.log(x) + np.log(ser),
            r * (-c - (s1 + 2 * s2 * v) * v * v / ser) - p / x)


class _LogLogCDF:
    """``h(x) = log(-log F_beta(x))`` on the whole line (decreasing), with ``h'(x)``."""

    def __init__(self, beta: int):
        self.beta = beta
        a, c, b = self.breaks = _BREAKS[beta]
        self.pieces = []
        for (lo, hi), n in zip(((a, c), (c, b)), _DEGREES[beta]):
            series = cheb.Chebyshev.interpolate(
                lambda s: np.log(_neglog_det(s, beta, _DEFAULT_M[beta])), n - 1, domain=[lo, hi]
            )
            self.pieces.append((series, series.deriv()))
        # tails continued from the grid ends: -log F = c_left + P(-x), log(-log F) = c_right + R(x)
        self.c_left = math.exp(self.pieces[0][0](a)) - _left_tail(np.array([-a]), beta)[0][0]
        self.c_right = self.pieces[1][0](b) - _right_tail(np.array([b]), beta)[0][0]
        # monotone table bracketing every root of h(x) = log(-log q), q a double in (0, 1)
        self.table_x = np.linspace(a - 30.0, b + 6.0, 4097)
        self.table_h = self(self.table_x, deriv=False)[0]
        if not np.all(np.diff(self.table_h) < 0):
            raise RuntimeError("Tracy-Widom interpolant is not monotone; this is a bug")

    def __call__(self, x: np.ndarray, deriv: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``h(x)`` and (if ``deriv``) ``h'(x)`` for a float array ``x``."""
        a, c, b = self.breaks
        x = np.clip(x, -1e100, 1e100)  # no overflow; F, f are 0/1 and 0 long before
        h, dh = np.empty_like(x), np.empty_like(x)
        for mask, (f, df) in zip(((x >= a) & (x < c), (x >= c) & (x <= b)), self.pieces):
            if mask.any():
                h[mask] = f(x[mask])
                if deriv:
                    dh[mask] = df(x[mask])
        lo = x < a
        if lo.any():
            p, dp = _left_tail(-x[lo], self.beta)
            e = self.c_left + p
            h[lo], dh[lo] = np.log(e), -dp / e
        hi = x > b
        if hi.any():
            r, dr = _right_tail(x[hi], self.beta)
            h[hi], dh[hi] = self.c_right + r, dr
        return h, (dh if deriv else None)

    def solve(self, target: np.ndarray) -> np.ndarray:
        """The ``x`` with ``h(x) = target``: bracketed Newton from the table."""
        tx, th = self.table_x, self.table_h
        k = np.clip(np.searchsorted(-th, -target), 1, len(tx) - 1)
        lo, hi = tx[k - 1], tx[k]
        x = lo + (hi - lo) * (th[k - 1] - target) / (th[k - 1] - th[k])
        for _ in range(30):
            h, dh = self(x)
            lo, hi = np.where(h > target, x, lo), np.where(h > target, hi, x)
            new = x - (h - target) / dh
            bad = (new < lo) | (new > hi)
            new[bad] = 0.5 * (lo[bad] + hi[bad])
            # quadratic convergence: after a step below 1e-9 the error is at rounding level
            done = not bad.any() and np.all(np.abs(new - x) <= 1e-9 * (1 + np.abs(x)))
            x = new
            if done:
                break
        return x


@cache
def _loglog_cdf(beta: int) -> _LogLogCDF:
    return _LogLogCDF(beta)


@cache
def _moments(beta: int) -> tuple[float, float]:
    """Mean and variance by composite Gauss--Legendre quadrature of the density."""
    a, c, b = _BREAKS[beta]
    t, w = _gauss_legendre(80)
    edges = np.array([a - 6.0, a, c, 0.5 * (c + b), b, b + 6.0])
    half = np.diff(edges)[:, None] / 2
    x = (edges[:-1, None] + half * (t + 1)).ravel()
    wx = (half * w).ravel() * TracyWidom(beta).pdf(x)
    mean = float(wx @ x)
    return mean, float(wx @ (x - mean) ** 2)


# --------------------------------------------------------------------------- public law
class TracyWidom(ContinuousDistribution):
    r"""Standard Tracy--Widom law :math:`F_\beta`, ``beta`` in {1, 2}.

    ``cdf``, ``pdf``, ``logpdf``, ``sf`` (relative accuracy in the right tail), ``ppf``,
    ``rvs`` (inverse transform), ``mean``, ``var`` and the rest of
    :class:`~rmtlib._dist.ContinuousDistribution`.  See the module docstring for the
    formulas, the method and the accuracy.  Johnstone's centring and scaling of a largest
    eigenvalue is left to the caller (:func:`johnstone_scaling`).

    Parameters
    ----------
    beta : {1, 2}
        1: real (GOE, Wishart) case :math:`F_1`; 2: complex (GUE) case :math:`F_2`.

    Examples
    --------
    >>> tw1 = TracyWidom(1)
    >>> round(float(tw1.ppf(0.95)), 4)
    0.9793
    """

    def __init__(self, beta: int):
        self.beta = _check_beta(beta)

    def __repr__(self) -> str:
        return f"TracyWidom(beta={self.beta})"

    def support(self) -> tuple[float, float]:
        return -math.inf, math.inf

    @property
    def _h(self) -> _LogLogCDF:
        return _loglog_cdf(self.beta)

    def _cdf(self, x):
        return np.exp(-np.exp(self._h(x, deriv=False)[0]))

    def _pdf(self, x):
        h, dh = self._h(x)
        e = np.exp(h)
        return np.exp(-e) * e * -dh

    def _logpdf(self, x):
        h, dh = self._h(x)
        return -np.exp(h) + h + np.log(-dh)

    def _ppf(self, q):
        return self._h.solve(np.log(-np.log(q)))

    def _sf(self, x):
        """Survival function ``1 - F(x) = -expm1(log F(x))``, accurate in the right tail."""
        return -np.expm1(-np.exp(self._h(x, deriv=False)[0]))

    def mean(self) -> float:
        return _moments(self.beta)[0]

    def var(self) -> float:
        return _moments(self.beta)[1]


def johnstone_scaling(n: int, p: int) -> tuple[float, float]:
    r"""Johnstone's (2001) centring and scaling of the largest eigenvalue of :math:`X^\top X`.

    For ``X`` an ``n x p`` matrix of i.i.d. standard real Gaussians (``n`` samples, ``p``
    variables) and :math:`\ell_1` the largest eigenvalue of :math:`X^\top X`,
    :math:`(\ell_1 - \mu_{np}) / \sigma_{np} \to F_1` as ``n, p -> inf`` with
    ``n / p -> c in (0, inf)``, where

    .. math::

        \mu_{np} = (\sqrt{n-1} + \sqrt{p})^2, \qquad
        \sigma_{np} = (\sqrt{n-1} + \sqrt{p})
                      \Big(\frac{1}{\sqrt{n-1}} + \frac{1}{\sqrt{p}}\Big)^{1/3}.

    Entries of variance :math:`\sigma^2` multiply both by :math:`\sigma^2`; eigenvalues in
    rmtlib's ``lambda = s**2 / N`` units divide both by ``N``.

    Returns
    -------
    (mu, sigma) : tuple of float
    """
    for name, val, low in (("n", n, 2), ("p", p, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(
                f"{name} must be an integer >= {low} (X is an n x p matrix), got {val!r}"
            )
    rn, rp = math.sqrt(n - 1), math.sqrt(p)
    return (rn + rp) ** 2, (rn + rp) * (1 / rn + 1 / rp) ** (1 / 3)
