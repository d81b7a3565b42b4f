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
the rounding level: measured against mpmath, about 5e-10 at ``s = -6.3``, 1e-8 at -7.1,
2e-7 at -7.9 and 3e-5 at -9.3 for :math:`F_2` (whatever ``m``; absolute errors stay
~1e-16), which is why the left tail uses its asymptotic series instead.

**Fast evaluation.** Once per ``beta`` (lazily; 0.13 s for :math:`F_2`, 0.25 s for
:math:`F_1` measured on a loaded 2-core machine) the function :math:`h(s) = \log(-\log
F(s))` is sampled at Chebyshev points on a left piece ``[a, -5]`` (24 points, ``a = -6.6``)
and a main piece ``[-5, b + 1]`` (96 points; ``b = 8`` for :math:`F_2`, ``14`` for
:math:`F_1`, beyond which ``1 - F < 1e-16``; the piece is used up to ``b`` only, away from
its least accurate end) and kept as Chebyshev series. Then :math:`F = \exp(-e^h)`,
``logcdf`` :math:`= -e^h`, ``sf`` :math:`= -\operatorname{expm1}(-e^h)`, ``logsf`` :math:`=
\log(-\operatorname{expm1}(-e^h))` (:math:`h - e^h/2` once :math:`e^h < 10^{-8}`), the
density :math:`f = -F e^h h'` is the exact derivative of the CDF (positive everywhere) and
``logpdf`` stays finite where ``f`` underflows.  Outside the pieces:

* **right**, :math:`s > b`: :math:`-\log F` is the trace of the kernel to double precision
  (the next term, :math:`\tfrac12\operatorname{tr}K^2 \le \tfrac12(\operatorname{tr}K)^2`,
  is below 1e-16 of it there), and the traces have integral forms without cancellation,
  :math:`\operatorname{tr}A_s = \tfrac12\int_s^\infty\operatorname{Ai}` and
  :math:`\operatorname{tr}K_s = \int_s^\infty (t-s)\operatorname{Ai}(t)^2\,dt`.  With the
  scaled Airy function and the exponent :math:`\zeta = \tfrac23 s^{3/2}` factored out they
  are computed by 16-point Gauss--Laguerre quadrature directly in log space
  (:func:`_log_trace`): ``sf`` and ``logsf`` keep relative accuracy with no underflow of
  the log (``logsf(1e3)`` is about ``-2.1e4`` for :math:`F_1`);
* **left**, :math:`u = -s > -a`: the asymptotic expansion with the known constants
  (Tracy--Widom 1994, 1996; the constants are due to Deift--Its--Krasovsky 2008 for
  :math:`F_2` and Baik--Buckingham--DiFranco 2008 for :math:`F_1`),

  .. math::

      -\log F_2(-u) = \tfrac{u^3}{12} + \tfrac18\log u - \log\tau_2
                      + \sum_{n=2}^{9} e_n u^{3-3n},
      \qquad \log\tau_2 = \tfrac1{24}\log 2 + \zeta'(-1),

      -\log F_1(-u) = -\tfrac12\log F_2(-u) + \tfrac1{2\sqrt2}\sum_{k=0}^{9} w_k u^{3/2-3k}
                      - \log\tau_1 + \tfrac12\log\tau_2,
      \qquad \log\tau_1 = -\tfrac{11}{48}\log 2 + \tfrac12\zeta'(-1),

  (:math:`e_2 = -3/64`, :math:`w_0 = 2/3`, :math:`w_1 = 1/12`, ...), whose coefficients
  follow from the Hastings--McLeod asymptotics :math:`q(x) = \sqrt{-x/2}\sum_k c_k x^{-3k}`
  of Painlevé II, computed in exact rational arithmetic (:func:`_left_coefficients`).

Where the pieces meet the values jump by about 3e-12 (right, relative to :math:`-\log F`)
and 2.5e-9 (left, relative to :math:`F`); a clamp keeps ``h`` monotone across the joins.

The quantile functions solve :math:`h(x) = \log(-\log q)` (``ppf``) or
:math:`\log(-\operatorname{log1p}(-q))` (``isf``) by Newton's method bracketed by a
monotone table reaching from ``a - 32`` to where ``1 - F < 5e-324``, so they are vectorized,
monotone and defined for every double ``q in (0, 1)`` (``ppf(5e-324)`` is about -25 and
``isf(5e-324)`` about 106 for :math:`F_1`); a point that has not converged raises
``RuntimeError`` instead of returning an unconverged value.

**Accuracy** (checked in ``tests/test_tw.py`` against independent 40-digit mpmath
computations at points on no grid: the Fredholm determinant by a Nyström rule in mpmath and
mpmath quadrature of the traces; measured maxima in brackets):

* right of ``b``: ``logsf`` to relative 1e-14 (2e-16), so ``sf`` to about
  :math:`(|\log \mathrm{sf}| + 1)\cdot 2^{-52}` relative (1e-13 at ``sf = 1e-300``, the
  conditioning of ``sf`` itself), until ``sf`` leaves the normal range; ``isf(q)`` finite
  for ``q`` down to 1e-300 and beyond, and the mpmath ``sf`` at it equal to ``q`` to
  relative :math:`4(|\log q| + 1)\cdot 2^{-52}` (6e-13 at ``q = 1e-300``: one ulp of
  ``x`` moves ``sf`` by about that much);
* on ``[-5, b]``: ``cdf`` to relative 2e-12 (4e-13) and ``sf`` to relative 5e-12 (1e-13 at
  interior points, 3e-12 next to ``b``); the mean and variance (Gauss--Legendre quadrature of
  the density) match the published values to ~1e-12, and an independent Painlevé II
  integration to ~1e-13 on [-8, 6];
* left of -5: ``cdf`` and ``ppf``'s probability to relative 3e-9 (2.2e-9 just right of
  ``a = -6.6``, the end of the left piece, whose samples come from double-precision
  determinants that lose about ``eps / F`` there), falling to 3e-12 by -7.9 and 1e-13 by
  -9.3 (truncation of the series); ``logcdf`` to the same absolute error, and finite down
  to ``s = -1e100``.

References: F. Bornemann, "On the numerical evaluation of Fredholm determinants",
Math. Comp. 79 (2010) 871--915; F. Bornemann, "On the numerical evaluation of distributions
in random matrix theory: a review", Markov Process. Related Fields 16 (2010) 803--866;
C. A. Tracy, H. Widom, Comm. Math. Phys. 159 (1994) 151--174 and 177 (1996) 727--754;
I. M. Johnstone, "On the distribution of the largest eigenvalue in principal components
analysis", Ann. Statist. 29 (2001) 295--327.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from functools import cache

import numpy as np
from numpy.polynomial import chebyshev as cheb
from scipy.special import airy, airye, kv

from ._dist import ContinuousDistribution, scalar_or_array
from .validation import ArgumentTypeError, check_int, check_points, describe

__all__ = ["TracyWidom", "tracy_widom_cdf_fredholm", "johnstone_scaling"]

_DEFAULT_M = {1: 48, 2: 40}  # Gauss-Legendre nodes of the Nystrom rule
_BREAKS = {1: (-6.6, -5.0, 14.0), 2: (-6.6, -5.0, 8.0)}  # left end, split, right end
_DEGREES = {1: (24, 96), 2: (24, 96)}  # Chebyshev points on the (left, main) piece
_CHUNK = 256  # determinants per batched eigvalsh call
_LAGUERRE = 16  # Gauss-Laguerre nodes of the right-tail traces
_LEFT_TERMS = 9  # terms u**(3 - 3n), n = 2.._LEFT_TERMS, of the left-tail series
_NEWTON_STEPS = 40  # iterations allowed to the quantile solver
# zeta'(-1) = 1/12 - log(Glaisher's constant)
_ZETA_PRIME_M1 = -0.16542114370045092921391966024278
# -log F(-u) = series(u) + C: Deift-Its-Krasovsky (beta 2), Baik-Buckingham-DiFranco (beta 1)
_LEFT_CONSTANT = {2: -math.log(2.0) / 24 - _ZETA_PRIME_M1,
                  1: 11 / 48 * math.log(2.0) - _ZETA_PRIME_M1 / 2}


def _check_beta(beta) -> int:
    allowed = "1 (real / GOE, Tracy-Widom F1) or 2 (complex / GUE, F2)"
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise ArgumentTypeError(f"beta must be {allowed}, got {describe(beta)}")
    if beta not in (1, 2):
        raise ValueError(f"beta must be {allowed}, got {beta!r}")
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
        Points (any shape; NaN gives NaN, ``-inf`` 0 and ``inf`` 1).
    beta : {1, 2}
        1 for :math:`F_1` (GOE), 2 for :math:`F_2` (GUE).
    m : int >= 2, optional
        Gauss--Legendre nodes; default 48 (``beta=1``) / 40 (``beta=2``): ``m`` and ``2m``
        agree to ~3e-14 for ``s >= -8``.  In the left tail the *relative* accuracy is limited
        by rounding, whatever ``m`` (module docstring: about 1e-8 at -7.1, 3e-5 at -9.3
        for :math:`F_2`); the absolute error stays ~1e-16.

    Returns
    -------
    float or ndarray
        :math:`F_\beta(s)`, shaped like ``s``.
    """
    beta = _check_beta(beta)
    m = _DEFAULT_M[beta] if m is None else check_int(m, "m (number of quadrature nodes)", minimum=2)
    x = check_points(s, "s")
    out = np.where(x > 0, 1.0, 0.0)  # the limits at +-inf
    fin = np.isfinite(x)
    out[fin] = np.exp(-_neglog_det(x[fin], beta, m))
    out[np.isnan(x)] = np.nan
    return scalar_or_array(out)


# --------------------------------------------------------------------------- left tail
@cache
def _left_coefficients() -> tuple[np.ndarray, np.ndarray]:
    r"""Coefficients of the left-tail series, from the Hastings--McLeod asymptotics.

    :math:`q(x) = \sqrt{-x/2}\,\sum_k c_k x^{-3k}` (:math:`c_0 = 1`) solves Painlevé II
    :math:`q'' = xq + 2q^3` order by order:
    :math:`c_n = -\tfrac12\big[(9(n-1)^2 - \tfrac14)c_{n-1} + \sum' c_ic_jc_l\big]`, the sum
    over :math:`i + j + l = n` with every index below ``n``.  With :math:`u = -x`,
    :math:`s_k = (-1)^k c_k` and :math:`-\log F_2(-u) = E_2(u)`, :math:`E_2'' = q(-u)^2` gives
    the coefficients ``e[n]`` of :math:`u^{3-3n}` (``n >= 2``) of :math:`E_2`, and
    :math:`\int_{-u}^\infty q = 2^{-1/2}\sum_k w_k u^{3/2 - 3k}` the ``w[k]``.  Exact
    rational arithmetic, then rounded to doubles.
    """
    n_max = _LEFT_TERMS
    c = [Fraction(1)]
    for n in range(1, n_max + 1):
        rest = sum(c[i] * c[j] * c[n - i - j] for i in range(n) for j in range(n - i + 1)
                   if j < n and n - i - j < n)
        c.append(-((9 * (n - 1) ** 2 - Fraction(1, 4)) * c[n - 1] + rest) / 2)
    s = [ck * (-1) ** k for k, ck in enumerate(c)]
    e = np.zeros(n_max + 1)
    for n in range(2, n_max + 1):
        t_n = sum(s[i] * s[n - i] for i in range(n + 1))
        e[n] = float(t_n / (2 * (2 - 3 * n) * (3 - 3 * n)))
    w = np.array([float(sk / Fraction(3 - 6 * k, 2)) for k, sk in enumerate(s)])
    return e, w


def _left_tail(u: np.ndarray, beta: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``-log F_beta(-u)`` and its ``u``-derivative from the asymptotic series, ``u > 0``.

    .. math::

        -\log F_2(-u) = \tfrac{u^3}{12} + \tfrac18\log u + C_2 + \sum_{n\ge2} e_n u^{3-3n},
        \qquad
        -\log F_1(-u) = \tfrac12\big(-\log F_2(-u)\big)
                      + \tfrac{1}{2\sqrt2}\sum_{k\ge0} w_k u^{3/2-3k} + C_1 - \tfrac{C_2}2,

    with the constants :math:`C_2 = -\tfrac1{24}\log2 - \zeta'(-1)`,
    :math:`C_1 = \tfrac{11}{48}\log2 - \tfrac12\zeta'(-1)` (:func:`_left_coefficients`).
    """
    e, w = _left_coefficients()
    n = np.arange(2, len(e))
    pw = u[:, None] ** (3.0 - 3.0 * n)
    val = u**3 / 12 + np.log(u) / 8 + _LEFT_CONSTANT[2] + pw @ e[2:]
    der = u**2 / 4 + 1 / (8 * u) + (pw / u[:, None]) @ (e[2:] * (3.0 - 3.0 * n))
    if beta == 2:
        return val, der
    k = np.arange(len(w))
    pk = u[:, None] ** (1.5 - 3.0 * k)
    r2 = 2.0 * math.sqrt(2.0)
    return (0.5 * val + (pk @ w) / r2 + _LEFT_CONSTANT[1] - 0.5 * _LEFT_CONSTANT[2],
            0.5 * der + ((pk / u[:, None]) @ (w * (1.5 - 3.0 * k))) / r2)


# --------------------------------------------------------------------------- right tail
@cache
def _gauss_laguerre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.laguerre.laggauss(n)


def _scaled_ai(x: np.ndarray) -> np.ndarray:
    r""":math:`e^{\zeta(x)}\operatorname{Ai}(x)`, :math:`\zeta = \tfrac23 x^{3/2}`, ``x > 0``:
    :func:`scipy.special.airye`, and beyond ``1e5`` (airye gives NaN past ~1e7) the asymptotic
    series :math:`(1 - \tfrac{5}{72\zeta} + \tfrac{385}{10368\zeta^2}) / (2\sqrt\pi x^{1/4})`
    (next term below 1e-22 there)."""
    out = np.empty_like(x)
    small = x <= 1e5
    out[small] = airye(x[small])[0]
    xb = x[~small]
    with np.errstate(over="ignore"):
        v = 1.0 / (2.0 / 3.0 * xb**1.5)
    out[~small] = (1.0 - 5.0 / 72.0 * v + 385.0 / 10368.0 * v * v) / (2.0 * math.sqrt(math.pi)
                                                                        * xb**0.25)
    return out


def _log_trace(s: np.ndarray, beta: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``log`` of the trace of the kernel on :math:`L^2(s, \infty)` and its ``s``-derivative,
    ``s > 0``, by Gauss--Laguerre quadrature without underflow.

    :math:`\operatorname{tr}A_s = \tfrac12\int_s^\infty \operatorname{Ai}` (:math:`F_1`) and
    :math:`\operatorname{tr}K_s = \int_s^\infty (t - s)\operatorname{Ai}(t)^2\,dt`
    (:math:`F_2`, from :math:`K(x, x) = \int_x^\infty \operatorname{Ai}^2`).  With
    :math:`c = \beta`, :math:`z = c\,\zeta(s)` and the new variable
    :math:`v = c\,(\zeta(t) - \zeta(s))`, i.e. :math:`t = s\,(1 + v/z)^{2/3}` (no
    cancellation), both become :math:`e^{-z}\int_0^\infty e^{-v} g(v)\,dv` with ``g`` smooth
    and slowly varying, built from :math:`e^{\zeta}\operatorname{Ai}`:
    :math:`g = \operatorname{eAi}(t)/(2\sqrt t)` (:math:`F_1`),
    :math:`g = (t - s)\operatorname{eAi}(t)^2/(2\sqrt t)` (:math:`F_2`).  The derivative is
    :math:`-\tfrac12\operatorname{Ai}(s)/\operatorname{tr}A_s` resp.
    :math:`-\int_s^\infty\operatorname{Ai}^2/\operatorname{tr}K_s` (the latter by the same
    rule, avoiding the cancellation in :math:`\operatorname{Ai}'^2 - s\operatorname{Ai}^2`).
    """
    v, w = _gauss_laguerre(_LAGUERRE)
    s = s[:, None]
    with np.errstate(over="ignore"):
        z = beta * (2.0 / 3.0) * s**1.5
    r = (2.0 / 3.0) * np.log1p(v / z)  # log(t / s)
    t = s * np.exp(r)
    g = w * _scaled_ai(t) ** beta / (2.0 * np.sqrt(t))
    if beta == 1:
        total = g.sum(axis=-1)
        return -z[:, 0] + np.log(total), -_scaled_ai(s[:, 0]) / (2.0 * total)
    total = (g * (s * np.expm1(r))).sum(axis=-1)
    return -z[:, 0] + np.log(total), -g.sum(axis=-1) / total


# --------------------------------------------------------------------------- interpolant
class _LogLogCDF:
    """``h(x) = log(-log F_beta(x))`` on the whole line (decreasing), with ``h'(x)``."""

    def __init__(self, beta: int):
        self.beta = beta
        a, c, b = self.breaks = _BREAKS[beta]
        self.pieces = []
        # the main piece reaches 1 beyond b, so that b is not at its (least accurate) end
        for (lo, hi), n in zip(((a, c), (c, b + 1.0)), _DEGREES[beta]):
            series = cheb.Chebyshev.interpolate(
                lambda s: np.log(_neglog_det(s, beta, _DEFAULT_M[beta])), n - 1, domain=[lo, hi]
            )
            self.pieces.append((series, series.deriv()))
        # the tails meet the grid with jumps at rounding level: clamp so that h stays monotone
        self.h_a = float(self.pieces[0][0](a))
        self.h_b = float(self.pieces[1][0](b))
        # monotone table bracketing every root of h(x) = log(-log q) or log(-log1p(-q)),
        # q a double in (0, 1): targets in [log(5e-324), log(-log(5e-324))] = [-744.5, 6.62]
        x_right = (1.5 * 760.0 / beta) ** (2.0 / 3.0)
        self.table_x = np.concatenate([np.linspace(a - 32.0, b, 2049),
                                       np.linspace(b, x_right, 513)[1:]])
        self.table_h = self(self.table_x, deriv=False)[0]
        if not (np.all(np.diff(self.table_h) < 0) and self.table_h[0] > 6.7
                and self.table_h[-1] < -745.0):
            raise RuntimeError("Tracy-Widom interpolant is not monotone; this is a bug")

    def __call__(self, x: np.ndarray, deriv: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``h(x)`` and (if ``deriv``) ``h'(x)`` for a float array ``x``."""
        a, c, b = self.breaks
        h, dh = np.empty_like(x), np.empty_like(x)
        for mask, (f, df) in zip(((x >= a) & (x < c), (x >= c) & (x <= b)), self.pieces):
            if mask.any():
                h[mask] = f(x[mask])
                if deriv:
                    dh[mask] = df(x[mask])
        lo = x < a
        if lo.any():
            with np.errstate(over="ignore"):
                e, de = _left_tail(-x[lo], self.beta)
            h[lo], dh[lo] = np.maximum(np.log(e), self.h_a), -de / e
        hi = x > b
        if hi.any():
            lt, dlt = _log_trace(x[hi], self.beta)
            h[hi], dh[hi] = np.minimum(lt, self.h_b), dlt
        return h, (dh if deriv else None)

    def solve(self, target: np.ndarray) -> np.ndarray:
        """The ``x`` with ``h(x) = target``: Newton's method bracketed by the table.

        Raises ``RuntimeError`` if some point has not converged after ``_NEWTON_STEPS``
        iterations (never observed: the bracket halves at least every other step).
        """
        tx, th = self.table_x, self.table_h
        k = np.clip(np.searchsorted(-th, -target), 1, len(tx) - 1)
        lo, hi = tx[k - 1], tx[k]
        x = lo + (hi - lo) * (th[k - 1] - target) / (th[k - 1] - th[k])
        for _ in range(_NEWTON_STEPS):
            h, dh = self(x)
            lo, hi = np.where(h > target, x, lo), np.where(h > target, hi, x)
            new = x - (h - target) / dh
            bad = ~((new >= lo) & (new <= hi))  # also NaN steps
            new[bad] = 0.5 * (lo[bad] + hi[bad])
            # quadratic convergence: after a Newton step below 1e-9 the error is at rounding level
            done = not bad.any() and np.all(np.abs(new - x) <= 1e-9 * (1 + np.abs(x)))
            x = new
            if done:
                return x
        raise RuntimeError(
            f"Tracy-Widom quantile: Newton's method did not converge in {_NEWTON_STEPS} steps "
            f"(largest last step {np.max(np.abs(new - x)):.3g}); this is a bug, please report it"
        )


@cache
def _loglog_cdf(beta: int) -> _LogLogCDF:
    return _LogLogCDF(beta)


@cache
def _moments(beta: int) -> tuple[float, float]:
    """Mean and variance by composite Gauss--Legendre quadrature of the density."""
    a, c, b = _BREAKS[beta]
    t, w = _gauss_legendre(80)
    edges = np.array([a - 7.0, a, c, 0.5 * (c + b), b, b + 6.0])
    half = np.diff(edges)[:, None] / 2
    x = (edges[:-1, None] + half * (t + 1)).ravel()
    wx = (half * w).ravel() * TracyWidom(beta).pdf(x)
    mean = float(wx @ x)
    return mean, float(wx @ (x - mean) ** 2)


# --------------------------------------------------------------------------- public law
class TracyWidom(ContinuousDistribution):
    r"""Standard Tracy--Widom law :math:`F_\beta`, ``beta`` in {1, 2}.

    ``cdf``, ``logcdf``, ``pdf``, ``logpdf``, ``sf`` and ``logsf`` (relative accuracy in
    the right tail, finite logs where the values underflow), ``ppf``, ``isf`` (accurate for
    tiny tail probabilities), ``rvs`` (inverse transform), ``mean``, ``var`` and the rest of
    :class:`~rmtlib._dist.ContinuousDistribution`.  See the module docstring for the
    formulas, the method and the measured accuracy.  Johnstone's centring and scaling of a
    largest eigenvalue is left to the caller (:func:`johnstone_scaling`).

    Parameters
    ----------
    beta : {1, 2}
        1: real (GOE, Wishart) case :math:`F_1`; 2: complex (GUE) case :math:`F_2`.

    Examples
    --------
    >>> tw1 = TracyWidom(1)
    >>> round(float(tw1.ppf(0.95)), 4)
    0.9793
    >>> round(float(tw1.isf(1e-300)), 2)
    101.86
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

    def _loglog(self, x):
        return self._h(x, deriv=False)[0]

    def _cdf(self, x):
        return np.exp(-np.exp(self._loglog(x)))

    def _logcdf(self, x):
        with np.errstate(over="ignore"):
            return -np.exp(self._loglog(x))

    def _sf(self, x):
        """``1 - F = -expm1(-exp(h))``: relative accuracy in the right tail."""
        return -np.expm1(-np.exp(self._loglog(x)))

    def _logsf(self, x):
        """``log(1 - F) = log(-expm1(-y))``, ``y = exp(h)``; ``= h - y/2 + ...`` for tiny y."""
        h = self._loglog(x)
        y = np.exp(h)
        with np.errstate(divide="ignore"):
            return np.where(y < 1e-8, h - 0.5 * y, np.log(-np.expm1(-y)))

    def _pdf(self, x):
        h, dh = self._h(x)
        e = np.exp(h)
        return np.exp(-e) * e * -dh

    def _logpdf(self, x):
        h, dh = self._h(x)
        with np.errstate(over="ignore"):
            return -np.exp(h) + h + np.log(-dh)

    def _ppf(self, q):
        return self._h.solve(np.log(-np.log(q)))

    def _isf(self, q):
        return self._h.solve(np.log(-np.log1p(-q)))

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

    Parameters
    ----------
    n : int >= 2
        Rows (samples) of ``X``.
    p : int >= 1
        Columns (variables) of ``X``.

    Returns
    -------
    (mu, sigma) : tuple of float
    """
    n = check_int(n, "n (rows of the n x p matrix X)", minimum=2)
    p = check_int(p, "p (columns of the n x p matrix X)", minimum=1)
    rn, rp = math.sqrt(n - 1), math.sqrt(p)
    return (rn + rp) ** 2, (rn + rp) * (1 / rn + 1 / rp) ** (1 / 3)
