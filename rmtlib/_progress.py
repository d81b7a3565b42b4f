"""One progress-bar helper (tqdm, plain text on stderr: ``tqdm.auto`` needs ipywidgets in
notebooks)."""

from __future__ import annotations


def bar(iterable, enabled: bool, desc: str, unit: str = "layer", total: int | None = None):
    """``iterable`` wrapped in a tqdm bar when ``enabled``, else unchanged."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, leave=False)
