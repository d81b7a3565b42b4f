r"""Synthetic data for paper 3: laws whose doubling constants are known in closed form, and
labelled point sets that satisfy or violate the doubling condition.

**Laws** (each samples points, gives the mass of an open interval of its one-dimensional
marginals, and states its doubling constant over all slabs centred in its support, see
:mod:`rmtlib.stability`):

* :class:`UniformBall` -- uniform in the ball of radius ``r`` in ``R^d``.  Every marginal is
  ``r (2B - 1)`` with ``B ~ Beta(a, a)``, ``a = (d + 1)/2``, i.e. the density
  :math:`f(t) \propto (1 - t^2/r^2)^{k}` with ``k = (d - 1)/2``.  Since :math:`f^{1/k}` is
  concave (a quadratic), :math:`f(b + 2h) \le 2^k f(b + h)` for every centre ``b`` in
  ``[-r, r]`` and every ``h``; writing the outer slab as the image of the inner one under the
  dilation by 2 about ``b`` gives :math:`\mu(S_{2\delta}) \le 2^{k+1} \mu(S_\delta)`, and the
  ratio tends to :math:`2^{k+1}` for a slab at the edge as :math:`\delta \to 0`: the constant
  is **exactly** :math:`2^{(d+1)/2}` (2 for a segment, :math:`2\sqrt 2` for a disk, 4 for a
  ball in ``R^3``), a supremum that is not attained.
* :class:`Gaussian` -- ``N(0, sigma^2 I_d)``: every marginal is normal, the support is the
  whole line, and a slab far in a tail whose double reaches back towards the centre has an
  arbitrarily large ratio (about :math:`e^{|b|\delta - 3\delta^2/2}` for :math:`|b|` large):
  the constant is **infinite**, although it is finite at every resolution
  :math:`q > 0` and grows slowly as ``q`` decreases.
* :class:`FlatBall` -- the ball with a fraction ``p`` of its mass moved onto the flat disk
  ``{x_1 = c}`` (a *flat portion*).  Along its normal the marginal has an atom of mass ``p``
  at ``c``; a slab next to it (``delta <= |b - c| < 2 delta``) holds mass of order
  :math:`\delta` while its double holds the atom, so the ratio is about
  :math:`2 + p / \mu(S_\delta)`: the constant is **infinite**, and at resolution ``q`` about
  ``2 + p/q``.

**Labelled sets** for the training experiments: :func:`disk_classes` (a smooth law, the
condition holds) and :func:`plane_classes` (points on two parallel lines next to the class
boundary, or spread over two thin strips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .seeding import check_random_state
from .validation import check_float, check_int

__all__ = ["FlatBall", "Gaussian", "UniformBall", "disk_classes", "plane_classes"]


def _uniform_ball(n: int, d: int, r: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in the ball of radius ``r`` of ``R^d`` (direction times radius)."""
    G = rng.standard_normal((n, d))
    G /= np.maximum(np.linalg.norm(G, axis=1, keepdims=True), 1e-300)
    return G * (r * rng.random(n) ** (1.0 / d))[:, None]


def _ball_mass(lo, hi, d: int, r: float):
    """Mass of the open interval (lo, hi) under a one-dimensional marginal of the uniform law
    on the ball (radius r) of R^d, ``F(t) = I_{(1 + t/r)/2}(a, a)`` with ``a = (d + 1)/2``.
    An interval in the upper half uses the upper tail ``1 - F(t) = I_{(1 - t/r)/2}(a, a)``, so
    that thin slabs at either edge keep their relative precision."""
    from scipy.special import betainc

    a = (d + 1) / 2
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=np.float64) / r,
                                 np.asarray(hi, dtype=np.float64) / r)
    upper = lo >= 0
    x1 = np.clip(np.where(upper, (1 - hi) / 2, (1 + lo) / 2), 0.0, 1.0)
    x2 = np.clip(np.where(upper, (1 - lo) / 2, (1 + hi) / 2), 0.0, 1.0)
    return np.maximum(betainc(a, a, x2) - betainc(a, a, x1), 0.0)


def _check_law(dim, scale, name: str) -> None:
    check_int(dim, "dim", minimum=1)
    check_float(scale, name, low=0.0, low_open=True)


@dataclass(frozen=True)
class UniformBall:
    """The uniform law on the ball of radius ``radius`` in ``R^dim`` (module docstring)."""

    dim: int
    radius: float = 1.0

    def __post_init__(self):
        _check_law(self.dim, self.radius, "radius")

    @property
    def doubling_constant(self) -> float:
        """:math:`2^{(d+1)/2}`: the supremum over all slabs centred in the support."""
        return 2.0 ** ((self.dim + 1) / 2)

    @property
    def support(self) -> tuple[float, float]:
        """The support of every marginal, ``(-radius, radius)``."""
        return (-self.radius, self.radius)

    def sample(self, n: int, *, random_state=None) -> np.ndarray:
        """``n`` points, shape ``(n, dim)``."""
        return _uniform_ball(check_int(n, "n", minimum=1), self.dim, self.radius,
                             check_random_state(random_state))

    def interval_mass(self, lo, hi, direction=None):
        """Mass of the open interval ``(lo, hi)`` of the marginal along any unit direction
        (the law is rotation invariant; ``direction`` is ignored)."""
        return _ball_mass(lo, hi, self.dim, self.radius)


@dataclass(frozen=True)
class Gaussian:
    """``N(0, sigma^2 I_dim)`` (module docstring): infinite doubling constant."""

    dim: int
    sigma: float = 1.0

    def __post_init__(self):
        _check_law(self.dim, self.sigma, "sigma")

    doubling_constant = math.inf
    support = (-math.inf, math.inf)

    def sample(self, n: int, *, random_state=None) -> np.ndarray:
        rng = check_random_state(random_state)
        return self.sigma * rng.standard_normal((check_int(n, "n", minimum=1), self.dim))

    def interval_mass(self, lo, hi, direction=None):
        """Mass of ``(lo, hi)`` under the marginal ``N(0, sigma^2)`` (any unit direction)."""
        from scipy.special import ndtr

        lo = np.asarray(lo, dtype=np.float64) / self.sigma
        hi = np.asarray(hi, dtype=np.float64) / self.sigma
        # the upper tail as a difference of lower tails of -x: no cancellation for thin slabs
        return np.maximum(np.where(lo >= 0, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo)), 0.0)


@dataclass(frozen=True)
class FlatBall:
    """``(1 - p)`` times the uniform law on the unit ball of ``R^dim`` plus ``p`` times the
    uniform law on the flat disk ``{x : x_1 = level, |x| <= 1}`` (for ``dim = 1``: an atom at
    ``level``).  Infinite doubling constant (module docstring)."""

    dim: int
    flat_fraction: float = 0.1
    level: float = 0.0

    def __post_init__(self):
        check_int(self.dim, "dim", minimum=1)
        check_float(self.flat_fraction, "flat_fraction", low=0.0, high=1.0)
        check_float(self.level, "level", low=-1.0, high=1.0, low_open=True, high_open=True)

    doubling_constant = math.inf
    support = (-1.0, 1.0)

    @property
    def normal(self) -> np.ndarray:
        """The unit normal of the flat disk, ``e_1``."""
        e = np.zeros(self.dim)
        e[0] = 1.0
        return e

    @property
    def flat_radius(self) -> float:
        return math.sqrt(1.0 - self.level ** 2)

    def sample(self, n: int, *, random_state=None) -> np.ndarray:
        """``n`` points; the flat part are the last ``round(p n)`` rows."""
        n = check_int(n, "n", minimum=1)
        rng = check_random_state(random_state)
        n_flat = int(round(self.flat_fraction * n))
        bulk = _uniform_ball(n - n_flat, self.dim, 1.0, rng)
        flat = np.full((n_flat, self.dim), self.level)
        if self.dim > 1:
            flat[:, 1:] = _uniform_ball(n_flat, self.dim - 1, self.flat_radius, rng)
        return np.vstack([bulk, flat])

    def critical_offsets(self, deltas, direction=None) -> np.ndarray:
        """Centres ``c -+ 1.5 delta`` next to the atom ``c`` of the marginal along ``direction``
        (default the normal), for each half-width: the slabs that miss the atom while their
        doubles hold it.  Empty when the flat disk does not project to an atom."""
        w = self.normal if direction is None else np.asarray(direction, dtype=np.float64)
        if self.dim > 1 and self.flat_radius * float(np.linalg.norm(w[1:])) >= 1e-12:
            return np.empty(0)
        d = np.asarray(deltas, dtype=np.float64)
        return self.level * w[0] + np.concatenate([-1.5 * d, 1.5 * d])

    def interval_mass(self, lo, hi, direction=None):
        """Mass of the open interval ``(lo, hi)`` of the marginal along the unit ``direction``
        (default: the normal ``e_1``, along which the flat disk is an atom at ``level``)."""
        w = self.normal if direction is None else np.asarray(direction, dtype=np.float64)
        if w.shape != (self.dim,) or not np.isclose(np.linalg.norm(w), 1.0):
            raise ValueError(f"direction must be a unit vector of length {self.dim}")
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        ball = _ball_mass(lo, hi, self.dim, 1.0)
        centre, spread = self.level * w[0], self.flat_radius * float(np.linalg.norm(w[1:]))
        if self.dim == 1 or spread < 1e-12:
            flat = ((lo < centre) & (centre < hi)).astype(np.float64)
        else:
            flat = _ball_mass(lo - centre, hi - centre, self.dim - 1, spread)
        p = self.flat_fraction
        return (1 - p) * ball + p * flat


# ------------------------------------------------------------------------------ labelled sets


def disk_classes(n: int, *, random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in the unit disk labelled by the side of the curve
    ``x_2 = sin(pi x_1) / 4``: ``(X (n, 2), y (n,) in {0, 1})``.  A smooth law whose uniform
    doubling constant is that of the disk, :math:`2\\sqrt 2`."""
    X = _uniform_ball(check_int(n, "n", minimum=1), 2, 1.0, check_random_state(random_state))
    y = (X[:, 1] > np.sin(np.pi * X[:, 0]) / 4).astype(np.int64)
    return X, y


def plane_classes(n: int, *, width: float = 0.0, gap: float = 0.02,
                  fractions: tuple[float, float] = (0.2, 0.1),
                  random_state=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two classes split by the line ``x_2 = 0``, with two flat portions next to it.

    A fraction ``1 - sum(fractions)`` of the ``n`` points is uniform in the square
    ``[-1, 1]^2`` with label ``1[x_2 > 0]``; a fraction ``fractions[0]`` has label 1 and lies
    on the line ``x_2 = gap`` and ``fractions[1]`` has label 0 and lies on ``x_2 = -gap``
    (``x_1`` uniform in ``[-1, 1]``).  With ``width > 0`` these two groups are spread
    uniformly over the strips ``|x_2 -+ gap| < width / 2`` instead (``width <= 2 gap`` keeps
    each strip on its own side of the boundary).

    With ``width = 0`` the data violate the doubling condition (along ``e_2`` each line is an
    atom of the marginal); with ``width > 0`` the marginal has a bounded density and the
    constant is finite, larger the thinner the strips.

    Returns ``(X (n, 2), y (n,), group (n,))`` with ``group`` 0 for the square, 1 for the
    upper line / strip and 2 for the lower one.
    """
    n = check_int(n, "n", minimum=1)
    width = check_float(width, "width", low=0.0)
    gap = check_float(gap, "gap", low=0.0, low_open=True)
    if width > 2 * gap:
        raise ValueError(f"width must be at most 2 * gap = {2 * gap:g} (the strips would cross "
                         f"the class boundary), got {width:g}")
    f1, f2 = (check_float(f, "fractions", low=0.0, high=1.0) for f in fractions)
    if f1 + f2 > 1:
        raise ValueError(f"fractions must sum to at most 1, got {fractions!r}")
    rng = check_random_state(random_state)
    n1, n2 = int(round(f1 * n)), int(round(f2 * n))
    n0 = n - n1 - n2
    x0 = rng.uniform(-1, 1, (n0, 2))
    t1 = gap + width * (rng.random(n1) - 0.5)
    t2 = -gap + width * (rng.random(n2) - 0.5)
    X = np.vstack([x0, np.c_[rng.uniform(-1, 1, n1), t1], np.c_[rng.uniform(-1, 1, n2), t2]])
    y = np.concatenate([(x0[:, 1] > 0).astype(np.int64), np.ones(n1, np.int64),
                        np.zeros(n2, np.int64)])
    group = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64),
                            np.full(n2, 2, np.int64)])
    return X, y, group
