"""One seed drives Python's ``random``, NumPy and PyTorch."""

from __future__ import annotations

import random

import numpy as np

__all__ = ["check_random_state", "seed_everything"]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed ``random``, NumPy's legacy global state and PyTorch; return a NumPy ``Generator``.

    PyTorch is seeded only if it is importable (the math modules do not need it).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global state, for code that uses it
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but the math does not need it
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def check_random_state(random_state=None) -> np.random.Generator:
    """Turn ``None``, an int, a ``SeedSequence`` or a ``Generator`` into a ``Generator``.

    ``None`` gives fresh OS entropy (non-deterministic), as in SciPy.
    A legacy ``RandomState`` is accepted and wrapped so that it is advanced.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.Generator(random_state._bit_generator)  # shares its state
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.SeedSequence)):
        if isinstance(random_state, (int, np.integer)) and random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, a SeedSequence or a numpy Generator, "
        f"got {type(random_state).__name__}"
    )
