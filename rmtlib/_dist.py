"""A small base class for the continuous laws of random-matrix theory, in the style of
:mod:`scipy.stats`: ``pdf``, ``logpdf``, ``cdf``, ``logcdf``, ``sf``, ``logsf``, ``ppf``,
``isf``, ``rvs``, ``support``, ``mean``, ``var``, ``std``, ``median``, ``interval``.

Subclasses implement ``support()`` and, on points strictly inside the support (float64
NumPy arrays), ``_pdf``, ``_cdf`` and ``_ppf``; they override ``_sf`` / ``_isf`` (defaults
``1 - _cdf`` and ``_ppf(1 - q)``, which lose the upper tail), ``_logpdf``, ``_logcdf`` and
``_logsf`` (defaults: logs of the above) where they can do better.  ``_pdf`` / ``_logpdf``
are also called at finite ends of the support.  The base class handles the rest as
:mod:`scipy.stats` does:

* arguments are checked by :func:`rmtlib.validation.check_points` (real numbers or arrays of
  them; strings, booleans, complex numbers raise :class:`~rmtlib.validation.ArgumentTypeError`);
* NaN in gives NaN out, everywhere (also in ``ppf`` / ``isf``);
* outside the support ``cdf`` is 0 or 1, ``pdf`` is 0, ``logpdf`` is ``-inf``;
* ``ppf(0)`` / ``isf(1)`` are the lower end of the support, ``ppf(1)`` / ``isf(0)`` the upper
  end; a probability outside [0, 1] raises ``ValueError`` naming ``q``;
* scalars in give Python floats out, arrays give arrays of the same shape;
* ``rvs`` samples by inverse transform of a uniform draw, so a given ``random_state`` gives
  the same sample on every platform.
"""

from __future__ import annotations

import numbers

import numpy as np

from .seeding import check_random_state
from .validation import ArgumentTypeError, check_points, check_probability, describe

__all__ = ["ContinuousDistribution", "scalar_or_array"]


def scalar_or_array(out: np.ndarray):
    """``out`` itself, or its single element (a float) if ``out`` is 0-dimensional."""
    return out[()] if out.ndim == 0 else out


def _check_size(size):
    """``rvs``'s ``size``: None, a non-negative int or a tuple of them."""
    dims = size if isinstance(size, tuple) else (size,)
    if size is not None and any(isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral)
                                or d < 0 for d in dims):
        raise ArgumentTypeError(f"size must be None, a non-negative int or a tuple of them, "
                                f"got {describe(size)}")
    return size


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

    # -- hooks with defaults --------------------------------------------------------------
    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self._pdf(x))

    def _sf(self, x: np.ndarray) -> np.ndarray:
        """Override for a survival function accurate in the upper tail."""
        return 1.0 - self._cdf(x)

    def _isf(self, q: np.ndarray) -> np.ndarray:
        """Override for an inverse survival function accurate for tiny ``q``."""
        return self._ppf(1.0 - q)

    def _logcdf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self._cdf(x))

    def _logsf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self._sf(x))

    # -- evaluation helpers -----------------------------------------------------------------
    def _on_points(self, x, kernel, below: float, above: float, *, closed: bool = False):
        """``kernel`` inside the support (its ends too if ``closed``), ``below`` / ``above``
        outside it, NaN for NaN."""
        x = check_points(x, "x")
        a, b = self.support()
        out = np.where(x <= a, below, np.where(x >= b, above, np.nan))
        inside = (x >= a) & (x <= b) & np.isfinite(x) if closed else (x > a) & (x < b)
        if inside.any():
            out[inside] = kernel(x[inside])
        return scalar_or_array(out)

    def _on_probabilities(self, q, kernel, at_zero: float, at_one: float):
        """``kernel`` for ``0 < q < 1``, the given ends at 0 and 1, NaN for NaN."""
        q = check_points(q, "q")
        bad = (q < 0) | (q > 1)
        if bad.any():
            raise ValueError(f"q must hold probabilities in [0, 1], got {q[bad].ravel()[0]!r}")
        out = np.where(q == 0, at_zero, np.where(q == 1, at_one, np.nan))
        inside = (q > 0) & (q < 1)
        if inside.any():
            out[inside] = kernel(q[inside])
        return scalar_or_array(out)

    # -- public API ---------------------------------------------------------------------
    def pdf(self, x):
        """Probability density at ``x`` (0 outside the support, NaN for NaN)."""
        return self._on_points(x, self._pdf, 0.0, 0.0, closed=True)

    def logpdf(self, x):
        """Log density at ``x`` (``-inf`` outside the support, NaN for NaN)."""
        return self._on_points(x, self._logpdf, -np.inf, -np.inf, closed=True)

    def cdf(self, x):
        """Cumulative distribution function ``P(X <= x)``."""
        return self._on_points(x, lambda t: np.clip(self._cdf(t), 0.0, 1.0), 0.0, 1.0)

    def sf(self, x):
        """Survival function ``P(X > x) = 1 - cdf(x)``, computed directly where the law allows
        (relative accuracy in the upper tail)."""
        return self._on_points(x, lambda t: np.clip(self._sf(t), 0.0, 1.0), 1.0, 0.0)

    def logcdf(self, x):
        """``log cdf(x)``, finite where ``cdf`` underflows if the law implements it."""
        return self._on_points(x, lambda t: np.minimum(self._logcdf(t), 0.0), -np.inf, 0.0)

    def logsf(self, x):
        """``log sf(x)``, finite where ``sf`` underflows if the law implements it."""
        return self._on_points(x, lambda t: np.minimum(self._logsf(t), 0.0), 0.0, -np.inf)

    def ppf(self, q):
        """Quantile function (inverse of ``cdf``): ``q`` in [0, 1]; NaN gives NaN."""
        a, b = self.support()
        return self._on_probabilities(q, self._ppf, a, b)

    def isf(self, q):
        """Inverse survival function (inverse of ``sf``): the ``x`` with ``P(X > x) = q``,
        accurate for tiny ``q`` where the law implements it."""
        a, b = self.support()
        return self._on_probabilities(q, self._isf, b, a)

    def rvs(self, size=None, random_state=None):
        """Independent draws by inverse transform: ``ppf(U)``, ``U ~ Uniform(0, 1)``."""
        size = _check_size(size)
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
        tail = (1.0 - check_probability(confidence, "confidence")) / 2.0
        return float(self.ppf(tail)), float(self.isf(tail))
