"""Argument checks shared by every public function of rmtlib.

Each check returns the value converted to its canonical type (``int``, ``float``, ``bool``, ...)
or raises with a message that names the argument, shows what was given and says what is
allowed::

    >>> check_int(3.0, "epochs", minimum=0)
    Traceback (most recent call last):
    ...
    rmtlib.validation.ArgumentTypeError: epochs must be an integer >= 0, got 3.0 (float)

A value of the wrong *type* (a string, a bool where a number is expected, a float where an
integer is expected, ...) raises :class:`ArgumentTypeError`, which is both a ``TypeError`` and a
``ValueError``, so callers may catch either; a value of the right type but out of range raises
``ValueError``.  Numeric strings such as ``"0.5"`` are rejected, never parsed, and booleans are
never numbers.

This module imports neither torch nor pandas at import time (:func:`check_module` and
:func:`check_frame` import them when called).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "ArgumentTypeError",
    "TINY",
    "check_array",
    "check_bool",
    "check_choice",
    "check_float",
    "check_frame",
    "check_int",
    "check_module",
    "check_points",
    "check_probability",
    "check_names",
    "check_seed",
    "check_shape",
    "check_str",
    "check_tail_probability",
    "describe",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` that is also a ``ValueError``)."""


def describe(value: Any) -> str:
    """``repr`` of ``value`` (shortened) followed by its type, for error messages."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_real_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (Python or NumPy integers; not bools, floats or strings) within
    ``[minimum, maximum]``."""
    allowed = "an integer"
    if minimum is not None and maximum is not None:
        allowed += f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        allowed += f" >= {minimum}"
    elif maximum is not None:
        allowed += f" <= {maximum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(value)}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise ValueError(f"{name} must be {allowed}, got {out}")
    return out


def _interval(low, high, low_open, high_open) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_float(value, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, finite: bool = True,
                what: str = "a number") -> float:
    """``value`` as a ``float`` (any real number but a bool) within the interval given by
    ``low``/``high`` (closed unless ``low_open``/``high_open``); NaN is always rejected and
    infinities unless ``finite=False``."""
    allowed = what + _interval(low, high, low_open, high_open)
    if finite:
        allowed = allowed.replace("a number", "a finite number", 1)
    if not _is_real_number(value):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(value)}")
    out = float(value)
    bad = math.isnan(out) or (finite and math.isinf(out))
    if low is not None:
        bad = bad or out < low or (low_open and out == low)
    if high is not None:
        bad = bad or out > high or (high_open and out == high)
    if bad:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return out


def check_probability(value, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """A probability in ``[0, 1]`` (ends excluded as asked)."""
    return check_float(value, name, low=0.0, high=1.0, low_open=open_low, high_open=open_high,
                       what="a probability")


def check_bool(value, name: str) -> bool:
    """``value`` as a ``bool``: only ``True``/``False`` (and NumPy bools) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_choice(value, name: str, choices: Iterable) -> Any:
    """``value`` if it is one of ``choices`` (compared with ``==``; strings only match strings)."""
    choices = tuple(choices)
    ok = any(type(value) is type(c) and value == c for c in choices) or (
        not isinstance(value, str) and any(not isinstance(c, str) and value == c for c in choices))
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {describe(value)}")
    return value


def check_str(value, name: str, *, empty: bool = False) -> str:
    """``value`` if it is a string (non-empty unless ``empty``)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a string, got {describe(value)}")
    if not empty and not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def check_names(values, name: str, *, empty: bool = True) -> list[str]:
    """A list or tuple of strings (a bare string is rejected: wrap it in a list)."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list of strings, got {describe(values)}")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise ArgumentTypeError(f"{name} must be a list of strings, got the item(s) {bad!r}")
    if not empty and not values:
        raise ValueError(f"{name} must not be empty")
    return list(values)


def check_seed(value, name: str = "seed") -> int:
    """A non-negative integer seed."""
    return check_int(value, name, minimum=0)


def check_module(model, name: str = "model"):
    """``model`` if it is a ``torch.nn.Module``."""
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")
    return model


def check_frame(frame, columns: Iterable[str] = (), name: str = "frame"):
    """``frame`` if it is a pandas ``DataFrame`` holding every column of ``columns``."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ArgumentTypeError(f"{name} must be a pandas DataFrame, got {describe(frame)}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")
    return frame


# -- arrays, shapes and probabilities of the math modules -----------------------------------
#: Smallest positive normal double: below it a probability has fewer than 53 significant bits.
TINY = float(np.finfo(np.float64).tiny)


def check_points(value, name: str = "x") -> np.ndarray:
    """``value`` as a float64 NumPy array of evaluation points (any shape, empty allowed).

    Elementwise functions (``cdf``, ``pdf``, ...) take these: NaN gives NaN and infinities their
    limits, as in :mod:`scipy.stats`.  Integer and floating arrays (and Python / NumPy scalars)
    are accepted; strings, bytes, booleans, complex numbers, ``None`` and other objects raise
    :class:`ArgumentTypeError`.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise ArgumentTypeError(f"{name} must be a real number or an array of real numbers, "
                                f"got {describe(value)}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise ArgumentTypeError(f"{name} must be a real number or an array of real numbers, "
                                f"got {describe(value)}") from exc
    if arr.dtype.kind not in "iuf":
        kind = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes",
                "O": "Python objects"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise ArgumentTypeError(f"{name} must be a real number or an array of real numbers, "
                                f"got {kind} ({describe(value)})")
    return arr.astype(np.float64, copy=False)


def check_array(value, name: str, *, ndim: int | None = None, min_size: int = 1,
                finite: bool = True, nonnegative: bool = False) -> np.ndarray:
    """``value`` as a float64 array of data: real (see :func:`check_points`), with ``ndim``
    dimensions if given, at least ``min_size`` entries, finite unless ``finite=False`` and
    ``>= 0`` if ``nonnegative``."""
    arr = check_points(value, name)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got {arr.ndim}-D with shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} must hold at least {min_size} value(s), got {arr.size}")
    if finite and not np.all(np.isfinite(arr)):
        nbad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite, got {nbad} NaN or infinite value(s)")
    if nonnegative and np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got a minimum of {float(np.min(arr))!r}")
    return arr


def check_shape(value, name: str = "shape", *, minimum: int = 1) -> tuple[int, int]:
    """A matrix shape: a pair ``(m, n)`` of integers (not bools, floats or strings), each
    ``>= minimum``."""
    allowed = f"a pair (m, n) of integers >= {minimum}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(value)}")
    dims = tuple(value)
    if len(dims) != 2:
        raise ValueError(f"{name} must be {allowed}, got {len(dims)} entries: {value!r}")
    if any(isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) for d in dims):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(value)}")
    m, n = (int(d) for d in dims)
    if m < minimum or n < minimum:
        raise ValueError(f"{name} must be {allowed}, got {(m, n)}")
    return m, n


def check_tail_probability(value, name: str, *, open_low: bool = True,
                           open_high: bool = True) -> float:
    """A probability in ``(0, 1)`` (ends included if asked) that is either 0 or at least
    :data:`TINY`, the smallest normal double: a subnormal tail probability carries fewer than
    53 significant bits, so nothing computed from it can have full relative accuracy."""
    p = check_probability(value, name, open_low=open_low, open_high=open_high)
    if 0.0 < p < TINY:
        raise ValueError(f"{name} must be 0 or at least {TINY:.5g}, the smallest normal double "
                         f"(a smaller probability has lost its relative precision), got {p!r}")
    return p
