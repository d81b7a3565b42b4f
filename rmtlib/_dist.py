"""A small base class for the continuous laws of random-matrix theory, in the style of
:mod:`scipy.stats`: ``pdf``, ``logpdf``, ``cdf``, ``sf``, ``ppf``, ``isf``, ``rvs``,
``support``, ``mean``, ``var``, ``std``, ``median``, ``interval``.

Subclasses implement ``_pdf``, ``_cdf`` and ``_ppf`` on points inside the support (NumPy
arrays of float64) and ``support()``; the base class handles broadcasting, the parts of the
line outside the support, input checks and sampling (inverse transform of a uniform draw,
so a given ``random_state`` gives the same sample on every platform).
"""

from __future__ import annotations

import numpy as np

from .seeding import check_random_state

__all__ = ["ContinuousDistribution"]


class ContinuousDistribution:
    """Base class; see the module docstring."""

    # -- to implement -------------------------------------------------------------------
    def support(self) -> tuple[float, float]:
        raise NotImplementedError

    def _pdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _ppf(self, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self._pdf(x))

    # -- public API ---------------------------------------------------------------------
    @staticmethod
    def _as_points(x, what="x") -> np.ndarray:
        arr = np.asarray(x)
        if np.iscomplexobj(arr):
            raise ValueError(f"{what} must be real, got a complex array")
        try:
            return arr.astype(np.float64, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric, got {arr.dtype}") from exc

    @staticmethod
    def _finish(out: np.ndarray, like):
        return out[()] if np.ndim(like) == 0 else out

    def pdf(self, x):
        """Probability density at ``x`` (0 outside the support, NaN for NaN)."""
        x = self._as_points(x)
        a, b = self.support()
        out = np.zeros(x.shape)
        inside = (x > a) & (x < b)
        if inside.any():
            out[inside] = self._pdf(x[inside])
        out[np.isnan(x)] = np.nan
        return self._finish(out, x)

    def logpdf(self, x):
        """Log density at ``x`` (``-inf`` outside the support)."""
        x = self._as_points(x)
        a, b = self.support()
        out = np.full(x.shape, -np.inf)
        inside = (x > a) & (x < b)
        if inside.any():
            out[inside] = self._logpdf(x[inside])
        out[np.isnan(x)] = np.nan
        return self._finish(out, x)

    def cdf(self, x):
        """Cumulative distribution function ``P(X <= x)``."""
        x = self._as_points(x)
        a, b = self.support()
        out = np.where(x >= b, 1.0, 0.0)
        inside = (x > a) & (x < b)
        if inside.any():
            out[inside] = np.clip(self._cdf(x[inside]), 0.0, 1.0)
        out[np.isnan(x)] = np.nan
        return self._finish(out, x)

    def _sf(self, x: np.ndarray) -> np.ndarray:
        """Override for a survival function accurate in the upper tail."""
        return 1.0 - self._cdf(x)

    def sf(self, x):
        """Survival function ``P(X > x) = 1 - cdf(x)``."""
        x = self._as_points(x)
        a, b = self.support()
        out = np.where(x <= a, 1.0, 0.0)
        inside = (x > a) & (x < b)
        if inside.any():
            out[inside] = np.clip(self._sf(x[inside]), 0.0, 1.0)
        out[np.isnan(x)] = np.nan
        return self._finish(out, x)

    def ppf(self, q):
        """Quantile function (inverse of the CDF); ``q`` must lie in [0, 1]."""
        q = self._as_points(q, "q")
        if np.any(np.isnan(q)) or np.any((q < 0) | (q > 1)):
            bad = q[np.isnan(q) | (q < 0) | (q > 1)].ravel()[0]
            raise ValueError(f"probabilities must lie in [0, 1], got {bad!r}")
        a, b = self.support()
        out = np.empty(q.shape)
        out[q == 0] = a
        out[q == 1] = b
        inside = (q > 0) & (q < 1)
        if inside.any():
            out[inside] = self._ppf(q[inside])
        return self._finish(out, q)

    def isf(self, q):
        """Inverse survival function ``ppf(1 - q)``."""
        return self.ppf(1.0 - self._as_points(q, "q"))

    def rvs(self, size=None, random_state=None):
        """Independent draws by inverse transform: ``ppf(U)``, ``U ~ Uniform(0, 1)``."""
        rng = check_random_state(random_state)
        u = rng.random(size)
        # Uniform(0,1) may return exactly 0; map it to the smallest positive double.
        u = np.where(u == 0.0, np.nextafter(0.0, 1.0), u)
        return self.ppf(u)

    def median(self) -> float:
        return float(self.ppf(0.5))

    def mean(self) -> float:
        raise NotImplementedError

    def var(self) -> float:
        raise NotImplementedError

    def std(self) -> float:
        return float(np.sqrt(self.var()))

    def interval(self, confidence: float) -> tuple[float, float]:
        """Equal-tailed interval containing ``confidence`` of the mass."""
        if not 0 <= confidence <= 1:
            raise ValueError(f"confidence must lie in [0, 1], got {confidence!r}")
        lo = (1.0 - confidence) / 2.0
        return float(self.ppf(lo)), float(self.ppf(1.0 - lo))
