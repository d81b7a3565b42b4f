"""One seed drives Python's ``random``, NumPy and PyTorch."""

from __future__ import annotations

import numbers
import random

import numpy as np

from .validation import ArgumentTypeError, check_seed, describe

__all__ = ["check_random_state", "seed_everything"]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed ``random``, NumPy's legacy global state and PyTorch; return a NumPy ``Generator``.

    ``seed`` is a non-negative integer (not a bool, float or string).  PyTorch is seeded only
    if it is importable (the math modules do not need it).
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global state, for code that uses it
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but the math does not need it
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def check_random_state(random_state=None, name: str = "random_state") -> np.random.Generator:
    """Turn ``None``, a non-negative int, a ``SeedSequence`` or a ``Generator`` into a
    ``Generator``.

    ``None`` gives fresh OS entropy (non-deterministic), as in SciPy.  A ``Generator`` is
    returned as is (so it is advanced, not re-seeded); a legacy ``RandomState`` is wrapped so
    that it is advanced too.  Booleans, floats, strings and other objects raise
    :class:`~rmtlib.validation.ArgumentTypeError`; a negative int raises ``ValueError``.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.Generator(random_state._bit_generator)  # shares its state
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        return np.random.default_rng(check_seed(random_state, name))
    raise ArgumentTypeError(
        f"{name} must be None, a non-negative int, a numpy SeedSequence, Generator or "
        f"RandomState, got {describe(random_state)}"
    )
