r"""The Marchenko--Pastur law.

Let ``X`` be a ``p x N`` matrix (``p <= N``) with i.i.d. real entries of mean 0 and
variance :math:`\sigma^2`.  As ``p, N -> inf`` with ``p / N -> gamma in (0, 1]``, the
empirical distribution of the eigenvalues of :math:`X X^\top / N` converges to the
Marchenko--Pastur (MP) law with ratio :math:`\gamma` and scale :math:`\sigma^2`:

.. math::

    f(x) = \frac{\sqrt{(\lambda_+ - x)(x - \lambda_-)}}{2\pi\sigma^2\gamma x},
    \qquad \lambda_\pm = \sigma^2 (1 \pm \sqrt{\gamma})^2,
    \qquad x \in [\lambda_-, \lambda_+].

In rmtlib's conventions (a weight matrix ``W`` of shape ``m x n``, ``N = max(m, n)``,
``p = min(m, n)``) these are the eigenvalues :math:`\lambda_i = s_i^2 / N` of ``W``.

**Ratios above one.**  For ``p > N`` the ``p x p`` Gram matrix has ``p - N`` zero
eigenvalues (an atom at 0 of mass ``1 - 1/gamma``) and its non-zero part is the MP law of
the transpose.  rmtlib always works with the smaller Gram matrix, so ``ratio`` must lie
in ``(0, 1]``; a ratio above one raises ``ValueError`` telling you to transpose (use
``1/ratio``).

**The CDF in an angle.**  With :math:`\rho = \sqrt\gamma` and
:math:`x = \sigma^2(1 + \gamma - 2\rho\cos\theta)`, :math:`\theta \in [0, \pi]`
(:math:`\theta = 0` at :math:`\lambda_-`), one has :math:`\sqrt{(\lambda_+-x)(x-\lambda_-)}
= 2\rho\sigma^2\sin\theta` and

.. math::

    F(x) = \frac2\pi\int_0^\theta \frac{\sin^2\varphi\,d\varphi}
                                    {(1-\rho)^2 + 4\rho\sin^2(\varphi/2)},
    \qquad
    1 - F(x) = \frac2\pi\int_0^{\pi-\theta} \frac{\sin^2\chi\,d\chi}
                                              {(1-\rho)^2 + 4\rho\cos^2(\chi/2)},

positive integrands without cancellation.  The angle comes from the distances to the edges,
:math:`\tan^2(\theta/2) = (x - \lambda_-)/(\lambda_+ - x)`, and those distances are computed
with full relative accuracy: the edges are carried to ~32 digits (as ``hi + lo`` pairs of
doubles), so ``cdf(x)`` is the value of *this* law (ratio exactly the double given) at the
double ``x``, however close ``x`` is to an edge, and not that of a law with edges rounded to
doubles.  ``F`` is evaluated on the lower half (:math:`\theta \le \pi/2`) and ``1 - F`` on
the upper half, each by a 16-point Gauss--Legendre rule, except the lower half for
:math:`\gamma > 0.09`, whose integrand has poles near :math:`\theta = 0` (the density grows
like :math:`x^{-1/2}` at :math:`\lambda_- = 0` when :math:`\gamma = 1`); there the closed form
in :math:`\tan(\theta/2)`, rearranged so that at most one bit cancels (see
``MarchenkoPastur._mass``), is used.  ``cdf``, ``logcdf`` are the lower half's value (or ``1 - `` the upper one's) and
``sf``, ``logsf`` the converse, so ``cdf`` keeps its relative accuracy as
:math:`x \to \lambda_-` (:math:`F \sim \delta^{3/2}`, or :math:`\delta^{1/2}` at
:math:`\gamma = 1`) and ``sf`` as :math:`x \to \lambda_+`.

**Quantiles.**  ``ppf(q)`` and ``isf(q)`` solve for the angle of the half the probability
falls in (Newton's method on the log of the tail mass against the log of the angle,
bracketed, multiplicative updates so tiny angles keep their relative precision) and map back
with :math:`x = \lambda_- + 4\rho\sigma^2\sin^2(\theta/2)` or
:math:`\lambda_+ - 4\rho\sigma^2\sin^2(\psi/2)`: every ``q`` in (0, 1), down to the smallest
subnormal, gives a finite quantile within the support (``ppf(0) = lambda_-``,
``ppf(1) = lambda_+``); a solver that has not converged raises ``RuntimeError``.

**Accuracy** (``tests/test_mp.py``, against the closed form in mpmath at 40+ digits and
mpmath quadrature of the density, with the exact edges, at distances to the edge from 3e-15
to 0.5 of the support and ratios from 1e-5 to 1): ``cdf`` at the lower and ``sf`` at the
upper edge (and either in the bulk) to relative 4e-15 (16 ulps; the largest error seen in
1500 random cases was 2e-15 -- the mass grows like :math:`\delta^{3/2}`, so the rounding of
the angle counts 1.5 times), ``logcdf`` / ``logsf`` likewise; ``ppf`` and ``isf`` to
relative 4 ulps in ``x`` for every ``q`` down to 1e-300.  Near an edge the quantile is the
double nearest to :math:`\lambda_\pm` plus an accurate distance, so ``cdf(ppf(q)) = q``
holds only up to the rounding of ``x`` (a relative ``1.5 ulp(x) / (x - lambda_-)``); at
:math:`\gamma = 1`, where :math:`\lambda_- = 0`, it holds to 16 ulps down to where the
quantile :math:`\approx (\pi q/2)^2` underflows.  The one double at which the law departs
from the exact one is an edge itself: ``cdf(lambda_-) = 0`` even when the exact edge lies a
fraction of an ulp below the double ``lambda_-``.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np

from ._dist import ContinuousDistribution
from .validation import check_float, check_shape

__all__ = ["MarchenkoPastur", "mp_edges"]

_GL_T, _GL_W = np.polynomial.legendre.leggauss(16)  # Gauss-Legendre rule of the tail integrals
_GL_MAX_RHO = 0.3  # lower half by the rule for sqrt(gamma) <= this (poles >= log(1/0.3) away)
_EPS = float(np.finfo(np.float64).eps)
_SOLVER_STEPS = 100  # iterations allowed to the quantile solver (bisection needs < 60)


def _check_ratio(ratio) -> float:
    g = check_float(ratio, "ratio (gamma = p/N)", low=0.0, high=math.inf, low_open=True,
                    what="a number")
    if g > 1:
        raise ValueError(
            f"ratio must lie in (0, 1], got {g:g}: rmtlib uses gamma = p/N = min(m, n)/max(m, n). "
            f"For a p x N matrix with p > N, transpose it (ratio {1 / g:g}); the extra "
            "p - N eigenvalues of the larger Gram matrix are exact zeros."
        )
    return g


def _check_sigma2(sigma2) -> float:
    return check_float(sigma2, "sigma2 (the entry variance)", low=0.0, low_open=True)


def _edges_exact(g: float, s: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``s * (1 -/+ sqrt(g))**2`` as unevaluated sums ``hi + lo`` of doubles (50 digits)."""
    with localcontext() as ctx:
        ctx.prec = 50
        root, scale = Decimal(g).sqrt(), Decimal(s)
        out = []
        for edge in (scale * (1 - root) ** 2, scale * (1 + root) ** 2):
            hi = float(edge)
            out.append((hi, float(edge - Decimal(hi))))
    return out[0], out[1]


def _x_minus_arctan(y: np.ndarray) -> np.ndarray:
    """``y - arctan(y)`` for ``y >= 0`` with full relative accuracy.

    Directly for ``y > 2``.  Below, the half-angle step ``arctan y = 2 arctan y'``,
    ``y' = y / (1 + sqrt(1 + y**2))``, gives ``f(y) = y**3 / (1 + sqrt(1 + y**2))**2 + 2 f(y')``
    (positive terms), five times, then the series ``y**3/3 - y**5/5 + ...`` at ``y' < 0.035``.
    """
    out = np.empty_like(y)
    big = y > 2.0
    out[big] = y[big] - np.arctan(y[big])
    z = y[~big]
    acc, scale = np.zeros_like(z), 1.0
    for _ in range(5):
        root = 1.0 + np.sqrt(1.0 + z * z)
        acc += scale * (z / root) ** 2 * z
        z = z / root
        scale *= 2.0
    z2 = z * z
    out[~big] = acc + scale * z * z2 * (1 / 3 - z2 * (1 / 5 - z2 * (1 / 7 - z2 * (1 / 9 - z2 / 11))))
    return out


def mp_edges(ratio: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Bulk edges ``(lambda_-, lambda_+) = sigma2 * (1 -/+ sqrt(ratio))**2``, each the double
    nearest to the exact value."""
    (a, _), (b, _) = _edges_exact(_check_ratio(ratio), _check_sigma2(sigma2))
    return a, b


class MarchenkoPastur(ContinuousDistribution):
    r"""Marchenko--Pastur law with ratio ``gamma = p/N`` in (0, 1] and scale ``sigma2``.

    Parameters
    ----------
    ratio : float
        :math:`\gamma = p/N \in (0, 1]` (see the module docstring for ratios above one).
    sigma2 : float, default 1
        Entry variance :math:`\sigma^2 > 0` of the noise matrix.

    Notes
    -----
    Support :math:`[\sigma^2(1-\sqrt\gamma)^2, \sigma^2(1+\sqrt\gamma)^2]`, mean
    :math:`\sigma^2`, variance :math:`\gamma\sigma^4`.  ``cdf`` and ``logcdf`` keep relative
    accuracy at the lower edge, ``sf``, ``logsf`` and ``isf`` at the upper edge (module
    docstring).  ``rvs`` draws i.i.d. from the limit law (inverse transform); for eigenvalues
    of finite noise matrices use :func:`rmtlib.ensembles.noise_eigenvalues`.

    Examples
    --------
    >>> mp = MarchenkoPastur(0.25)
    >>> mp.support()
    (0.25, 2.25)
    >>> float(mp.cdf(2.25))
    1.0
    """

    def __init__(self, ratio: float, sigma2: float = 1.0):
        self.ratio = g = _check_ratio(ratio)
        self.sigma2 = _check_sigma2(sigma2)
        self._lower, self._upper = _edges_exact(g, self.sigma2)
        self._rho = rho = math.sqrt(g)
        self._gap = (1.0 - g) / (1.0 + rho)  # 1 - rho without cancellation (1 - g is exact)
        self._kappa = self._gap / (1.0 + rho)  # lower-edge poles of the T-integrand: +-i kappa
        self._scale = 16.0 / (math.pi * (1.0 + rho) ** 2)
        self._mid = float(self._mass(np.array([0.5 * np.pi]), False)[0])  # F at theta = pi/2

    @classmethod
    def from_shape(cls, shape: tuple[int, int], sigma2: float = 1.0) -> MarchenkoPastur:
        """The MP law for the eigenvalues ``s**2 / N`` of an ``m x n`` noise matrix."""
        m, n = check_shape(shape)
        return cls(min(m, n) / max(m, n), sigma2)

    def __repr__(self) -> str:
        return f"MarchenkoPastur(ratio={self.ratio:g}, sigma2={self.sigma2:g})"

    def support(self) -> tuple[float, float]:
        return self._lower[0], self._upper[0]

    def mean(self) -> float:
        return self.sigma2

    def var(self) -> float:
        return self.ratio * self.sigma2**2

    # -- distances to the edges, in units of sigma2 -----------------------------------------
    def _distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x - lambda_-) / sigma2`` and ``(lambda_+ - x) / sigma2``, >= 0, each with full
        relative accuracy (the edges are carried as ``hi + lo`` pairs)."""
        (a, a_lo), (b, b_lo) = self._lower, self._upper
        lo = np.maximum((x - a) - a_lo, 0.0) / self.sigma2
        up = np.maximum((b - x) + b_lo, 0.0) / self.sigma2
        return lo, up

    # -- the two tail masses as functions of the angle -----------------------------------------
    def _angle_density(self, phi: np.ndarray, upper: bool) -> np.ndarray:
        r"""Density of the law in the angle: with :math:`x = 1 + \gamma - 2\rho\cos\theta`
        (:math:`\rho = \sqrt\gamma`, :math:`\theta = 0` at the lower edge),
        :math:`dF/d\theta = \frac2\pi\sin^2\theta / ((1-\rho)^2 + 4\rho\sin^2(\theta/2))`;
        ``upper``: the same in :math:`\psi = \pi - \theta` (``cos`` for ``sin`` in the
        denominator).  Both terms of the denominator are positive: no cancellation."""
        rho = self._rho
        half, other = (np.cos(0.5 * phi), np.sin(0.5 * phi)) if upper else \
            (np.sin(0.5 * phi), np.cos(0.5 * phi))
        if rho == 1.0:  # sin^2 / (4 sin^2(phi/2)) without 0/0 at phi = 0
            return (2.0 / np.pi) * other**2
        return (8.0 / np.pi) * (half * other) ** 2 / (self._gap**2 + 4.0 * rho * half**2)

    def _mass(self, angle: np.ndarray, upper: bool) -> np.ndarray:
        r"""``F`` at angle ``theta`` (``upper``: ``1 - F`` at ``psi``), angles in ``[0, pi/2]``.

        By a 16-point Gauss--Legendre rule on ``[0, angle]`` (a positive integrand: relative
        accuracy), except on the lower half for :math:`\rho > 0.3`, where the integrand's
        poles :math:`\pm i\log(1/\rho)` come close to :math:`\theta = 0`.  There, with
        :math:`T = \tan(\theta/2)`, :math:`\kappa = (1-\rho)/(1+\rho)` and
        :math:`f(y) = y - \arctan y` (:func:`_x_minus_arctan`, no cancellation),

        .. math::

            F = \frac{16}{\pi(1+\rho)^2}\int_0^T \frac{\tau^2\,d\tau}{(1+\tau^2)^2(\kappa^2+\tau^2)}
              = \frac{16}{\pi(1+\rho)^2}\Big[\frac{\kappa f(T/\kappa) - \kappa^2 f(T)}{(1-\kappa^2)^2}
                - \frac{f(T)}{2(1-\kappa^2)} - \frac{T^3}{2(1+T^2)(1-\kappa^2)}\Big],

        the closed form rearranged so that its positive first term exceeds the others by a
        factor of at least :math:`1/(\kappa^2(2-\kappa^2)) \ge 2` (:math:`\kappa < 0.54`):
        at most one bit cancels, at every ``T`` (the textbook arcsine form loses
        :math:`\log_2(1/\delta)` bits at a distance :math:`\delta` from the edge).  Poles at
        :math:`\pi \pm i\log(1/\rho)` keep the upper-half rule converged for every ratio.
        """
        if upper or self._rho <= _GL_MAX_RHO:
            phi = 0.5 * angle[:, None] * (_GL_T + 1.0)
            return 0.5 * angle * (self._angle_density(phi, upper) @ _GL_W)
        k = self._kappa
        t = np.tan(0.5 * angle)
        k2 = 1.0 - k * k
        ft = _x_minus_arctan(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            pole = k * _x_minus_arctan(t / k) if k > 0 else t  # k f(T/k) -> T as k -> 0
        return self._scale * ((pole - k * k * ft) / k2**2 - ft / (2.0 * k2)
                              - t**3 / (2.0 * (1.0 + t * t) * k2))

    def _tails(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lower, F_lower, S_upper)``: which points lie on the lower half (``theta <= pi/2``),
        ``F`` there and ``1 - F`` on the upper half, each accurate relative to itself."""
        lo, up = self._distances(x)
        lower = lo <= up
        f_lo, s_up = np.zeros_like(x), np.zeros_like(x)
        if lower.any():
            f_lo[lower] = self._mass(2.0 * np.arctan2(np.sqrt(lo[lower]), np.sqrt(up[lower])), False)
        if (~lower).any():
            s_up[~lower] = self._mass(2.0 * np.arctan2(np.sqrt(up[~lower]), np.sqrt(lo[~lower])), True)
        return lower, f_lo, s_up

    # -- kernels on the support ----------------------------------------------------------------
    def _pdf(self, x):
        lo, up = self._distances(x)
        u = x / self.sigma2
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sqrt(lo * up) / (2.0 * np.pi * self.ratio * u) / self.sigma2
        return np.where(u > 0, out, np.inf if self.ratio == 1.0 else 0.0)  # gamma = 1: x**-1/2 at 0

    def _logpdf(self, x):
        lo, up = self._distances(x)
        u = x / self.sigma2
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 0.5 * np.log(lo) + 0.5 * np.log(up) - np.log(2.0 * np.pi * self.ratio * u * self.sigma2)
        return np.where(u > 0, out, np.inf if self.ratio == 1.0 else -np.inf)

    def _cdf(self, x):
        lower, f_lo, s_up = self._tails(x)
        return np.where(lower, f_lo, 1.0 - s_up)

    def _sf(self, x):
        lower, f_lo, s_up = self._tails(x)
        return np.where(lower, 1.0 - f_lo, s_up)

    def _logcdf(self, x):
        lower, f_lo, s_up = self._tails(x)
        with np.errstate(divide="ignore"):
            return np.where(lower, np.log(f_lo), np.log1p(-s_up))

    def _logsf(self, x):
        lower, f_lo, s_up = self._tails(x)
        with np.errstate(divide="ignore"):
            return np.where(lower, np.log1p(-f_lo), np.log(s_up))

    # -- quantiles: solve for the angle of the half the probability falls in ---------------------
    def _ppf(self, q):
        return self._quantile(q, upper_tail=False)

    def _isf(self, q):
        return self._quantile(q, upper_tail=True)

    def _quantile(self, q: np.ndarray, upper_tail: bool) -> np.ndarray:
        """``x`` with ``F(x) = q`` (``upper_tail``: ``1 - F(x) = q``), ``0 < q < 1``."""
        lower = (q <= self._mid) if not upper_tail else (q > 1.0 - self._mid)
        mass = np.where(lower, q, 1.0 - q) if not upper_tail else np.where(lower, 1.0 - q, q)
        out = np.empty_like(q)
        (a, a_lo), (b, b_lo) = self._lower, self._upper
        w = 4.0 * self._rho * self.sigma2  # x = a + w sin^2(theta/2) = b - w sin^2(psi/2)
        if lower.any():
            theta = self._solve_angle(mass[lower], upper=False)
            out[lower] = a + (a_lo + w * np.sin(0.5 * theta) ** 2)
        if (~lower).any():
            psi = self._solve_angle(mass[~lower], upper=True)
            out[~lower] = b + (b_lo - w * np.sin(0.5 * psi) ** 2)
        return np.clip(out, a, b)

    def _solve_angle(self, target: np.ndarray, upper: bool) -> np.ndarray:
        """The angle in ``(0, pi/2]`` with ``_mass(angle, upper) = target``.

        Newton's method on ``log mass`` against ``log theta`` (nearly linear: the mass grows
        like ``theta**3``, or ``theta`` at a singular edge), the iterate updated
        multiplicatively so that tiny angles keep full relative precision, inside a bracket
        that bisects (geometrically) whenever a step would leave it.  Raises
        ``RuntimeError`` if a point has not converged after ``_SOLVER_STEPS`` iterations.
        """
        lo = np.full(target.shape, 5e-324)
        hi = np.full(target.shape, 0.5 * np.pi)
        at_mid = self._mid if not upper else 1.0 - self._mid
        start = 0.5 * np.pi * np.exp((np.log(target) - math.log(at_mid)) / 3.0)
        theta = np.clip(start, 1e-300, 0.5 * np.pi)
        active = np.arange(target.size)
        for _ in range(_SOLVER_STEPS):
            th, tg = theta[active], target[active]
            m = self._mass(th, upper)
            below = m < tg
            lo_a = np.where(below, th, lo[active])
            hi_a = np.where(below, hi[active], th)
            # slope d log m / d log theta = theta * (dm/dtheta) / m; log(m / tg) keeps full
            # precision near the root (log m - log tg would lose ulp(|log tg|))
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step = np.log(m / tg) * m / (th * self._angle_density(th, upper))
                new = th * np.exp(-step)
            exact = m == tg
            ok = np.isfinite(new) & (new >= lo_a) & (new <= hi_a)
            new = np.where(exact, th, np.where(ok, new, np.sqrt(lo_a) * np.sqrt(hi_a)))
            # a step below 16 eps is applied and ends the iteration: quadratic convergence puts
            # the result at rounding level (and a noisier mass cannot do better anyway)
            done = exact | (ok & (np.abs(step) <= 16 * _EPS)) | (hi_a <= lo_a * (1 + 16 * _EPS))
            theta[active], lo[active], hi[active] = new, lo_a, hi_a
            active = active[~done]
            if active.size == 0:
                return theta
        raise RuntimeError(
            f"Marchenko-Pastur quantile: the solver did not converge in {_SOLVER_STEPS} steps "
            f"for {active.size} of {target.size} probabilities (ratio={self.ratio!r}); "
            "this is a bug, please report it"
        )
