"""Empirical spectra of weight matrices.

Conventions (as everywhere in rmtlib): ``W`` is ``m x n``, ``N = max(m, n)``,
``p = min(m, n)``, ``gamma = p / N <= 1``.  The *eigenvalues* of ``W`` are those of the
smaller Gram matrix divided by ``N``: ``lambda_i = s_i**2 / N`` where ``s_i`` are the
singular values of ``W``.  For pure noise with entry variance ``sigma**2`` they follow the
Marchenko--Pastur law with ratio ``gamma`` and scale ``sigma**2``.

:func:`spectrum` accepts a matrix (NumPy array or torch tensor, float32 or float64) or the
eigenvalues themselves together with the shape of the matrix they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linalg import gram_eigenvalues
from .validation import ArgumentTypeError, check_array, check_shape, describe

__all__ = ["Spectrum", "as_matrix", "spectrum"]


def _to_numpy(x, what: str) -> np.ndarray:
    """Convert a NumPy array, torch tensor or nested sequence to NumPy without copying
    when possible; reject complex, non-numeric and non-finite input."""
    if isinstance(x, (str, bytes)) or x is None:
        raise ArgumentTypeError(f"{what} must be a numeric array or tensor, got {describe(x)}")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        if x.is_complex():
            raise ArgumentTypeError(f"{what} must be real, got a complex torch tensor ({x.dtype})")
        if str(x.dtype) == "torch.bool":
            raise ArgumentTypeError(f"{what} must be a numeric tensor, got a boolean one")
        x = x.detach().cpu()
        if x.dtype not in _TORCH_OK_DTYPES():
            x = x.double()
        x = x.numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise ArgumentTypeError(f"{what} must be a numeric array, got {describe(x)}") from exc
    if np.iscomplexobj(arr):
        raise ArgumentTypeError(f"{what} must be real, got a complex array ({arr.dtype})")
    if arr.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16:
        arr = arr.astype(np.float64)
    return arr


def _TORCH_OK_DTYPES():
    import torch

    return (torch.float32, torch.float64)


def as_matrix(x, what: str = "weight matrix") -> np.ndarray:
    """Validate ``x`` as a real, finite, 2-D matrix with at least 2 rows and 2 columns and
    return it as a float32/float64 NumPy array (no copy for NumPy/CPU-tensor input)."""
    arr = _to_numpy(x, what)
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D (a matrix), got {arr.ndim}-D with shape {arr.shape}; "
            "reshape convolution kernels to (C_out, C_in*kh*kw) first "
            "(rmtlib.spectra.layer_matrix does this)"
        )
    m, n = arr.shape
    if m < 2 or n < 2:
        raise ValueError(
            f"{what} must have at least 2 rows and 2 columns to have a spectrum, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        nbad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{what} must be finite, got {nbad} non-finite (NaN or Inf) entries")
    return arr


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Eigenvalues ``lambda_i = s_i**2 / N`` (ascending, float64) of an ``m x n`` matrix."""

    eigenvalues: np.ndarray
    shape: tuple[int, int]
    #: machine epsilon of the precision the eigenvalues were computed in (see rmtlib.linalg)
    eps: float = float(np.finfo(np.float64).eps)
    N: int = field(init=False)
    p: int = field(init=False)
    gamma: float = field(init=False)

    def __post_init__(self):
        m, n = self.shape
        object.__setattr__(self, "N", max(m, n))
        object.__setattr__(self, "p", min(m, n))
        object.__setattr__(self, "gamma", min(m, n) / max(m, n))

    @property
    def roundoff(self) -> float:
        """Size below which an eigenvalue is indistinguishable from 0 (``p * eps * max``)."""
        return self.p * self.eps * float(self.eigenvalues[-1])

    @property
    def singular_values(self) -> np.ndarray:
        """Singular values ``s_i = sqrt(N * lambda_i)``, in *descending* order."""
        return np.sqrt(self.N * self.eigenvalues[::-1])

    def to_singular(self, lam):
        """Convert eigenvalue units to singular-value units: ``s = sqrt(N * lambda)``
        (``lam`` finite and non-negative, any shape)."""
        return np.sqrt(self.N * check_array(lam, "lam", min_size=0, nonnegative=True))


def spectrum(x, shape: tuple[int, int] | None = None) -> Spectrum:
    """Spectrum of a matrix, or of eigenvalues given with the ``shape`` of their matrix.

    Parameters
    ----------
    x : array_like or torch.Tensor
        Either a real 2-D matrix ``W`` (``shape`` must then be omitted or equal ``W.shape``),
        or 1-D eigenvalues ``s_i**2 / N`` (any order; ``shape`` required, ``len(x) == p``).
    shape : (m, n), optional
        Shape of the matrix the eigenvalues come from.

    Raises
    ------
    ValueError
        NaN/Inf entries, complex or non-numeric input, fewer than 2 rows or columns,
        negative eigenvalues, or eigenvalues inconsistent with ``shape``.
    """
    arr = _to_numpy(x, "input")
    if shape is not None:
        shape = check_shape(shape, minimum=2)
    if arr.ndim == 2:
        W = as_matrix(arr)
        if shape is not None and shape != W.shape:
            raise ValueError(f"shape={tuple(shape)} contradicts the matrix shape {W.shape}")
        lam, eps = gram_eigenvalues(W)
        return Spectrum(lam, tuple(int(d) for d in W.shape), eps)
    if arr.ndim != 1:
        raise ValueError(f"input must be a matrix (2-D) or eigenvalues (1-D), got shape {arr.shape}")
    if shape is None:
        raise ValueError(
            "shape must be given with eigenvalues: pass shape=(m, n) of their matrix "
            "(needed for gamma = p/N and the Tracy-Widom scaling), got shape=None"
        )
    m, n = shape
    p = min(m, n)
    if arr.size != p:
        raise ValueError(
            f"eigenvalues do not fit shape={(m, n)}: got {arr.size} of them, but a {m}x{n} "
            f"matrix has min(m, n) = {p}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("eigenvalues contain NaN or Inf")
    lam = np.sort(arr.astype(np.float64))
    if lam[0] < 0:
        scale = max(abs(lam[-1]), np.finfo(np.float64).tiny)
        if lam[0] < -1e-6 * scale:
            raise ValueError(
                f"eigenvalues must be non-negative (they are s_i**2/N), got {lam[0]:.6g}"
            )
        lam = np.maximum(lam, 0.0)  # round-off from an eigensolver
    return Spectrum(lam, (m, n), float(np.finfo(arr.dtype).eps))
