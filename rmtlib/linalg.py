r"""The one Gram-matrix eigensolver behind every spectrum in rmtlib.

For an ``m x n`` matrix ``W`` (``N = max(m, n)``, ``p = min(m, n)``) the eigenvalues
``lambda_i = s_i**2 / N`` are those of the smaller Gram matrix (``W^T W`` when ``n <= m``,
else ``W W^T``) divided by ``N``.  :func:`gram_eigenvalues` returns them (and, for a stack of
matrices ``(..., m, n)``, one row per matrix); :func:`gram_eigh` also returns the eigenvectors,
i.e. the singular vectors of the smaller side, for truncation and factorization
(:func:`rmtlib.spectra.decompose`).  :mod:`rmtlib.esd`, :mod:`rmtlib.spectra` and
:mod:`rmtlib.prune` all go through these two functions, so they share one rule for each of:

**Precision.**  The Gram matrix is formed and diagonalised in :func:`compute_dtype`: float64 for
float64 input and, where that is affordable (``p <= F64_MAX_P``), for float32, float16 and
bfloat16 input too; float32 above that size (a ``4096 x 4096`` float64 solve costs about twice
the float32 one).  Half-precision weights are therefore never solved in half precision.  The
machine epsilon of the dtype actually used is returned with the eigenvalues, so round-off
guards (:attr:`rmtlib.esd.Spectrum.roundoff`) use the precision of the computation, not of the
input.

**Threads.**  Below :data:`rmtlib._threads.SMALL` the CPU solve runs on one thread (it is
several times faster on a loaded machine, see :mod:`rmtlib._threads`); larger problems use
every core.  NumPy input is solved with NumPy below ``SMALL`` and with PyTorch's (MKL) solver
above it, 5-8x faster than OpenBLAS's at ``p = 4096`` (measured here).

**Device.**  A torch tensor is solved where it lives: on a CUDA device with the GPU solver; on
Apple's MPS (no symmetric eigensolver there) on the CPU.

**Memory.**  A large 2-D matrix of another dtype than the compute dtype (float32, float16 or
bfloat16 weights solved in float64) is converted block by block while the Gram matrix is formed
(:data:`GRAM_BLOCK`), so the solve holds the ``p x p`` Gram matrix, its eigenvectors and the
solver's workspace, never a full-precision copy of ``W``.

Tiny negative round-off eigenvalues are clipped to 0.  Neither torch nor pandas is imported at
import time: NumPy input below ``SMALL`` never imports torch.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ._threads import SMALL, single_threaded
from .validation import ArgumentTypeError, check_bool, check_int, describe

__all__ = ["F64_MAX_P", "GRAM_BLOCK", "compute_dtype", "gram_eigenvalues", "gram_eigh"]

#: Largest ``p = min(m, n)`` for which float32/16 matrices are solved in float64.
F64_MAX_P = 2048


def _is_tensor(x) -> bool:
    return hasattr(x, "detach") and hasattr(x, "is_floating_point")  # torch.Tensor, no import


def _check_matrix(W, name: str = "W", *, stack: bool = True, tensor_only: bool = False):
    """``W`` if it is a real floating NumPy array or torch tensor of shape ``(m, n)`` (or a
    stack ``(..., m, n)`` if ``stack``) with finite entries; raises otherwise."""
    allowed = "a real floating torch tensor" if tensor_only else \
        "a real floating NumPy array or torch tensor"
    if _is_tensor(W):
        real = W.is_floating_point()
    elif tensor_only or not isinstance(W, np.ndarray):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(W)}")
    else:
        real = W.dtype.kind == "f"
    if not real:
        raise ArgumentTypeError(f"{name} must be {allowed}, got dtype {W.dtype}")
    if W.ndim < 2 or (not stack and W.ndim != 2):
        want = "(m, n) or a stack (..., m, n)" if stack else "(m, n)"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(W.shape)}")
    if min(W.shape[-2:]) < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {tuple(W.shape)}")
    finite = bool(W.isfinite().all()) if _is_tensor(W) else bool(np.isfinite(W).all())
    if not finite:
        raise ValueError(f"{name} must be finite, got non-finite (NaN or Inf) entries")
    return W


def compute_dtype(input_is_float64: bool, p: int) -> str:
    """``"float64"`` or ``"float32"``: the precision of the Gram solve for a matrix whose smaller
    side is ``p`` (see the module docstring)."""
    input_is_float64 = check_bool(input_is_float64, "input_is_float64")
    p = check_int(p, "p (the smaller side)", minimum=1)
    return "float64" if input_is_float64 or p <= F64_MAX_P else "float32"


#: Elements of ``W`` converted to the compute dtype at a time when forming the Gram matrix.
GRAM_BLOCK = 1 << 22


def _gram(W, right: bool, dtype):
    """``W^T W`` (``right``) or ``W W^T`` in ``dtype``.  A 2-D ``W`` of another dtype is converted
    in blocks of rows (or columns) of about :data:`GRAM_BLOCK` elements, so no full-size copy of
    ``W`` in the compute dtype is ever held (lean memory for float32 weights solved in float64)."""
    if W.dtype == dtype or W.dim() != 2 or W.numel() <= GRAM_BLOCK:
        A = W.to(dtype)
        return A.mT @ A if right else A @ A.mT
    import torch

    m, n = W.shape
    p = n if right else m
    G = torch.zeros(p, p, dtype=dtype, device=W.device)
    step = max(1, GRAM_BLOCK // p)
    for i in range(0, m if right else n, step):
        if right:
            B = W[i:i + step].to(dtype)
            G.addmm_(B.mT, B)
        else:
            B = W[:, i:i + step].to(dtype)
            G.addmm_(B, B.mT)
    return G


def _torch_solve(W, vectors: bool):
    """Gram eigen-solve of a torch tensor ``(..., m, n)``; returns (evals, evecs|None, eps, right)."""
    import torch

    m, n = W.shape[-2:]
    p = min(m, n)
    dtype = getattr(torch, compute_dtype(W.dtype == torch.float64, p))
    if W.device.type == "mps":  # no eigh on MPS
        W = W.cpu()
    W = W.detach()
    right = n <= m
    on_cpu = W.device.type == "cpu"
    with single_threaded(p) if on_cpu else nullcontext():
        G = _gram(W, right, dtype)
        if vectors:
            evals, evecs = torch.linalg.eigh(G)
        else:
            evals, evecs = torch.linalg.eigvalsh(G), None
    return evals, evecs, float(torch.finfo(dtype).eps), right


def gram_eigenvalues(W) -> tuple[np.ndarray, float]:
    """Ascending eigenvalues ``s_i**2 / N`` of ``W`` and the machine epsilon of the solve.

    ``W`` is a real floating NumPy array or torch tensor (any device) of shape ``(m, n)`` or a
    stack ``(..., m, n)``, with finite entries (checked; :func:`rmtlib.esd.as_matrix` also
    converts other input).  Returns a float64 NumPy array of shape ``(p,)`` or ``(..., p)``
    (clipped at 0) and ``eps``.
    """
    _check_matrix(W)
    m, n = W.shape[-2:]
    N, p = max(m, n), min(m, n)
    if _is_tensor(W):
        evals, _, eps, _ = _torch_solve(W, vectors=False)
        lam = evals.double().cpu().numpy()
    elif p >= SMALL:
        import torch

        evals, _, eps, _ = _torch_solve(torch.from_numpy(np.ascontiguousarray(W)), vectors=False)
        lam = evals.double().numpy()
    else:
        dtype = np.dtype(compute_dtype(W.dtype == np.float64, p))
        A = np.asarray(W, dtype=dtype)
        At = np.swapaxes(A, -1, -2)
        with single_threaded(p):
            lam = np.linalg.eigvalsh(At @ A if n <= m else A @ At)
        eps = float(np.finfo(dtype).eps)
    return np.maximum(lam.astype(np.float64, copy=False) / N, 0.0), eps


def gram_eigh(W):
    """Eigen-decomposition of the smaller Gram matrix of a 2-D torch tensor ``W``.

    Returns ``(evals, evecs, right, eps)``: ``evals`` ascending (torch, the compute dtype, on the
    solve's device; *not* divided by ``N``), ``evecs`` their orthonormal eigenvectors as columns
    -- the right singular vectors ``v_i`` when ``right`` (``n <= m``), else the left ones
    ``u_i`` -- and the machine epsilon of the solve.  ``W`` must be real, floating and finite.
    """
    _check_matrix(W, stack=False, tensor_only=True)
    evals, evecs, eps, right = _torch_solve(W, vectors=True)
    return evals, evecs, right, eps
