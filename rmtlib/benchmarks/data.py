"""Benchmark of :mod:`rmtlib.data`: first extraction, later (stamped) loads, full verification.

Works on a temporary copy (symlinks to the ``.gz`` files) of the data root found by
:func:`rmtlib.data.resolve_root` (``$RMTLIB_DATA``), with a temporary cache, so nothing of
the user's is written.  Target (foundation issue): loading both data sets after the first
extraction < 2 s.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._timing import median_time


def bench_load(quick: bool = False) -> dict:
    """Extraction once, then repeated loads of MNIST and Fashion-MNIST."""
    from ..data import DATASETS, DataNotFoundError, load_dataset, prepare_dataset, resolve_root

    src = resolve_root()
    missing = [n for n in ("MNIST", "FashionMNIST") if not (Path(src) / n / "raw").is_dir()]
    if missing:
        raise DataNotFoundError(
            f"the data benchmark needs MNIST and Fashion-MNIST under {src} (missing {missing}); "
            "set RMTLIB_DATA"
        )
    repeats = 2 if quick else 5
    old_cache = os.environ.get("RMTLIB_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        os.environ["RMTLIB_CACHE"] = str(Path(tmp) / "cache")
        try:
            for folder in ("MNIST", "FashionMNIST"):
                raw = root / folder / "raw"
                raw.mkdir(parents=True)
                for gz in (Path(src) / folder / "raw").glob("*.gz"):
                    (raw / gz.name).symlink_to(gz.resolve())
            first = median_time(lambda: [prepare_dataset(k, root) for k in DATASETS])
            load = median_time(lambda: [load_dataset(k, root) for k in DATASETS], repeats)
            verify = median_time(lambda: [prepare_dataset(k, root, verify=True) for k in DATASETS])
        finally:
            if old_cache is None:
                os.environ.pop("RMTLIB_CACHE", None)
            else:
                os.environ["RMTLIB_CACHE"] = old_cache
    return {
        "first_extraction_seconds": first,
        "load_both_seconds": load,
        "repeats": repeats,
        "verify_both_seconds": verify,
        "target_seconds": 2.0,
    }
