"""Run small dense eigenproblems on one thread.

On a machine with few cores and other work running, multi-threaded BLAS/LAPACK (OpenBLAS
behind NumPy/SciPy, OpenMP behind PyTorch) is dramatically slower on small matrices: on the
2-core machine that builds the book, ``eigvalsh`` of a 784 x 784 Gram matrix took 0.17 s with
two threads under load and 0.04 s on one; a 500 x 500 ``torch.linalg.eigh`` 0.38 s versus
0.016 s.  Below :data:`SMALL` we therefore solve on one thread; large problems keep every core.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

#: side length below which eigenproblems run single-threaded
SMALL = 1500

_CONTROLLER = None


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous value.

    ``None`` leaves the setting alone.  One thread makes CPU results independent of the
    machine's core count (the order of floating-point reductions depends on it) and is the
    fastest choice for small networks on a busy machine.
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"threads must be a positive integer or None, got {n!r}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


_DEPTH = 0  # nesting of single_threaded blocks (an inner block has nothing left to limit)


@contextmanager
def single_threaded(size: int):
    """Limit BLAS/LAPACK and PyTorch's intra-op pool to one thread when ``size < SMALL``
    (a block nested in another one is free: the limits are already in place)."""
    global _DEPTH
    if size >= SMALL or _DEPTH:
        yield
        return
    with torch_threads(1), _controller().limit(limits=1, user_api="blas"):
        _DEPTH += 1
        try:
            yield
        finally:
            _DEPTH -= 1
