"""Where rmtlib keeps derived files on disk."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "RMTLIB_CACHE"
DEFAULT_CACHE = "~/.cache/rmtlib"


def cache_dir() -> Path:
    """rmtlib's cache (extracted data of read-only roots, simulated GoF nulls):
    ``$RMTLIB_CACHE``, default ``~/.cache/rmtlib``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser().absolute()
