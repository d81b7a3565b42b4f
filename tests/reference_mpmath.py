"""Independent high-precision references (mpmath) for the tests of rmtlib.tw and rmtlib.mp.

Nothing here calls rmtlib: the Tracy--Widom values come from the Fredholm determinants and
the kernel traces evaluated in mpmath, the Marchenko--Pastur values from the closed form and
from quadrature of the density, all at 40 or more digits.
"""

from __future__ import annotations

from functools import cache

import mpmath


# --------------------------------------------------------------------------- Airy function
@cache
def _airy_at_centre(c2: int, dps: int):
    with mpmath.workdps(dps + 10):
        c = mpmath.mpf(c2) / 2
        return mpmath.airyai(c), mpmath.airyai(c, 1)


def airy(x, terms: int = 80):
    """``(Ai(x), Ai'(x))`` at the working precision.

    Taylor series of ``y'' = x y`` about the nearest half-integer ``c`` (``|x - c| <= 1/4``),
    started from ``mpmath.airyai`` at ``c``: the recurrence ``a_{k+2} = (c a_k + a_{k-1}) /
    ((k+1)(k+2))`` makes each value ~50x cheaper than ``mpmath.airyai`` itself.
    """
    c2 = int(mpmath.nint(2 * x))
    c = mpmath.mpf(c2) / 2
    a0, a1 = _airy_at_centre(c2, mpmath.mp.dps)
    h = x - c
    prev = [mpmath.mpf(0), a0, a1]  # a_{k-1}, a_k, a_{k+1}
    val, der, hp = a0 + a1 * h, a1, h  # hp = h**(k+1)
    tol = mpmath.mpf(10) ** (-mpmath.mp.dps - 5) * (abs(a0) + abs(a1))
    for k in range(terms):
        nxt = (c * prev[1] + prev[0]) / ((k + 1) * (k + 2))  # a_{k+2}
        der += (k + 2) * nxt * hp
        hp *= h
        term = nxt * hp
        val += term
        prev = [prev[1], prev[2], nxt]
        if k > 4 and abs(term) < tol and abs(prev[1] * hp) < tol:
            break
    return val, der


# --------------------------------------------------------------------------- Tracy--Widom
@cache
def _legendre(m: int, dps: int):
    with mpmath.workdps(dps):
        return mpmath.gauss_quadrature(m, "legendre")


def tw_fredholm(s, beta: int, m: int = 56, dps: int = 40):
    """``F_beta(s) = det(I - K_s)`` by the Nyström method in mpmath: ``m``-point
    Gauss--Legendre rule on ``[s, s + L]`` at ``dps`` digits (``L`` long enough for the kernel
    to fall below 1e-40 of its values at ``s``)."""
    with mpmath.workdps(dps):
        X, W = _legendre(m, dps)
        s = mpmath.mpf(s)
        length = (max(s, 0) + 12 - s) if beta == 2 else 21 - 2 * min(s, 0) - s
        x = [s + length * (t + 1) / 2 for t in X]
        sw = [mpmath.sqrt(length * w / 2) for w in W]
        M = mpmath.matrix(m, m)
        if beta == 2:
            ai = [airy(v) for v in x]
            for i in range(m):
                for j in range(m):
                    if i == j:
                        k = ai[i][1] ** 2 - x[i] * ai[i][0] ** 2
                    else:
                        k = (ai[i][0] * ai[j][1] - ai[i][1] * ai[j][0]) / (x[i] - x[j])
                    M[i, j] = (i == j) - sw[i] * k * sw[j]
        else:
            for i in range(m):
                for j in range(i, m):
                    M[i, j] = M[j, i] = (i == j) - sw[i] * airy((x[i] + x[j]) / 2)[0] / 2 * sw[j]
        return mpmath.det(M)


def _right_integral(s, beta: int, integrand, dps: int):
    """``int_s^inf integrand`` for a kernel that decays like ``exp(-beta sqrt(s) (t - s))``:
    mpmath quadrature split at multiples of the decay length ``d = 1/(beta sqrt(s))`` and
    stopped at ``s + 160 d`` (the rest is below ``e**-160`` of the total).  The integrand is
    divided by ``Ai(s)**beta`` first: mpmath's error control is absolute, and the values
    themselves can be as small as 1e-300."""
    with mpmath.workdps(dps):
        s = mpmath.mpf(s)
        d = 1 / (beta * mpmath.sqrt(s))
        pts = [s + k * d for k in (0, 0.5, 1, 2, 4, 8, 16, 32, 64, 160)]
        scale = airy(s)[0] ** beta
        return scale * mpmath.quad(lambda t: integrand(t) / scale, pts)


def tw_log_trace(s, beta: int, dps: int = 30):
    """``log tr`` of the kernel on ``L^2(s, inf)``, ``s > 0``, from the plain integrals
    ``tr A_s = 1/2 int_s^inf Ai`` (beta 1) and ``tr K_s = int_s^inf (t - s) Ai(t)^2 dt``
    (beta 2).  Right of the Tracy--Widom grid ``-log F = tr (1 + O(tr))``."""
    with mpmath.workdps(dps):
        s = mpmath.mpf(s)
        if beta == 1:
            return mpmath.log(_right_integral(s, 1, lambda t: airy(t)[0], dps) / 2)
        return mpmath.log(_right_integral(s, 2, lambda t: (t - s) * airy(t)[0] ** 2, dps))


def tw_log_density_right(s, beta: int, dps: int = 30):
    """``log f(s)`` right of the grid: ``f = F d/ds(-log F)`` with ``F = 1`` to 1e-16 and
    ``-d/ds log F = Ai(s) / 2`` (beta 1) or ``int_s^inf Ai^2`` (beta 2)."""
    with mpmath.workdps(dps):
        s = mpmath.mpf(s)
        if beta == 1:
            return mpmath.log(airy(s)[0] / 2)
        return mpmath.log(_right_integral(s, 2, lambda t: airy(t)[0] ** 2, dps))


# --------------------------------------------------------------------------- Marchenko--Pastur
def mp_edges(gamma):
    """The exact edges ``(1 -/+ sqrt(gamma))**2`` of MP(gamma, 1) at the working precision."""
    r = mpmath.sqrt(mpmath.mpf(gamma))
    return (1 - r) ** 2, (1 + r) ** 2


def mp_tail(gamma, x, upper: bool = False):
    """``F(x)`` (``upper``: ``1 - F(x)``) of MP(gamma, 1) at the point ``x``, from the closed form
    ``F = (2/pi) [sin(t)/(2 r) + (1+g) t/(4 g) - (1-g)/(2g) atan(k tan(t/2))]``,
    ``tan^2(t/2) = (x - a)/(b - x)``, ``r = sqrt(g)``, ``k = (1+r)/(1-r)``, evaluated with
    enough digits to absorb its cancellation near the edges (it loses ~2 log10(1/t) digits)."""
    x = mpmath.mpf(x)
    a, b = mp_edges(gamma)
    if x <= a or x >= b:
        inside = 0 if x <= a else 1
        return mpmath.mpf(1 - inside if upper else inside)
    near = min(x - a, b - x) / (b - a)
    extra = int(2 * max(0, -mpmath.log10(near))) + int(max(0, -mpmath.log10(gamma))) + 20
    with mpmath.workdps(mpmath.mp.dps + extra):
        g = mpmath.mpf(gamma)
        r = mpmath.sqrt(g)
        a, b = mp_edges(g)
        t = 2 * mpmath.atan(mpmath.sqrt((x - a) / (b - x)))
        if g == 1:
            F = (mpmath.sin(t) + t) / mpmath.pi
        else:
            k = (1 + r) / (1 - r)
            F = 2 / mpmath.pi * (mpmath.sin(t) / (2 * r) + (1 + g) * t / (4 * g)
                                 - (1 - g) / (2 * g) * mpmath.atan(k * mpmath.tan(t / 2)))
        out = 1 - F if upper else F
    return +out


def mp_tail_by_quadrature(gamma, x, upper: bool = False):
    """The same as :func:`mp_tail` by mpmath quadrature of the density (tanh-sinh, which
    handles the square-root edges)."""
    g = mpmath.mpf(gamma)
    a, b = mp_edges(g)
    x = mpmath.mpf(x)
    f = lambda t: mpmath.sqrt((b - t) * (t - a)) / (2 * mpmath.pi * g * t)
    return mpmath.quad(f, [x, b]) if upper else mpmath.quad(f, mpmath.linspace(a, x, 4))


def mp_quantile(gamma, q, upper: bool = False, dps: int = 60):
    """The exact ``x`` with ``F(x) = q`` (``upper``: ``1 - F(x) = q``) of MP(gamma, 1), by
    bisection on the log of the angle ``t`` (``x = 1 + g - 2 sqrt(g) cos t``)."""
    q = mpmath.mpf(q)
    with mpmath.workdps(dps + 2 * int(-mpmath.log10(q)) + 20):
        g = mpmath.mpf(gamma)
        r = mpmath.sqrt(g)

        def tail(t):  # F at angle t (upper: 1 - F at angle pi - t), t in (0, pi)
            x = (1 + g - 2 * r * mpmath.cos(mpmath.pi - t if upper else t))
            return mp_tail(g, x, upper)

        lo, hi = mpmath.log(mpmath.mpf(10) ** (-mpmath.mp.dps)), mpmath.log(mpmath.pi)
        for _ in range(120):  # the bracket (width < 2000 in log t) shrinks to 1e-33
            mid = (lo + hi) / 2
            if tail(mpmath.exp(mid)) < q:
                lo = mid
            else:
                hi = mid
        t = mpmath.exp((lo + hi) / 2)
        out = 1 + g - 2 * r * mpmath.cos(mpmath.pi - t if upper else t)
    return +out
