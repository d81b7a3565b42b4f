"""A published number next to ours: rows of a reproduction table.

:func:`compare_value` (one number), :func:`compare_curve` (every point of a published curve) and
:func:`comparison_table` (the rows as a DataFrame).  Our side is a list of per-seed values,
summarised as mean ± sd (ddof = 1) with the difference and how many sd it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .stats import format_mean_sd
from .validation import ArgumentTypeError, check_int, check_str, describe

__all__ = ["compare_curve", "compare_value", "comparison_table"]


def compare_value(quantity: str, authors: float, ours, *, same_seed: float | None = None,
                  unit: str = "", digits: int = 2, note: str = "") -> dict:
    """One row of a reproduction table.

    ``ours`` is a number or a sequence of per-seed values (empty: not computed in this
    run, the row says "not run"); the row holds the authors' value, our mean, sample sd
    (ddof = 1; NaN for one value) and count, the difference ``mean - authors``, how many
    standard deviations that is (``z``, NaN without an sd),
    ``ours`` formatted as "mean ± sd" with ``digits`` decimals (kept in the row for
    formatting the other columns alike), and ``same_seed``: our value for the authors' own
    seed, if given (NaN otherwise).
    """
    check_str(quantity, "quantity")
    check_str(unit, "unit", empty=True)
    check_str(note, "note", empty=True)
    digits = check_int(digits, "digits", minimum=0, maximum=12)
    if same_seed is not None and (isinstance(same_seed, (bool, str))
                                  or not isinstance(same_seed, (int, float, np.number))):
        raise ArgumentTypeError(f"{quantity}: same_seed must be a number or None, got {describe(same_seed)}")
    if isinstance(ours, (str, bytes, Mapping)):
        raise ArgumentTypeError(f"{quantity}: ours must be a number or a list of numbers, got {describe(ours)}")
    if isinstance(authors, bool) or not isinstance(authors, (int, float, np.number)) \
            or not np.isfinite(authors):
        raise ValueError(f"{quantity}: the authors' value must be a finite number, got {authors!r}")
    try:
        vals = np.atleast_1d(np.asarray(ours, dtype=np.float64))
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{quantity}: ours must be a number or a list of numbers, "
                                f"got {describe(ours)}") from None
    if vals.ndim != 1 or not np.all(np.isfinite(vals)):
        raise ValueError(f"{quantity}: ours must be a finite number or a list of them, "
                         f"got {ours!r}")
    if vals.size == 0:  # not computed in this run (e.g. fewer epochs): shown, never dropped
        return {"quantity": quantity, "unit": unit, "authors": float(authors),
                "ours_same_seed": math.nan, "ours_mean": math.nan, "ours_sd": math.nan, "n": 0,
                "difference": math.nan, "z": math.nan, "ours": "not run", "digits": digits,
                "note": note}
    mean = float(vals.mean())
    sd = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
    diff = mean - float(authors)
    z = diff / sd if np.isfinite(sd) and sd > 0 else math.nan
    same = math.nan if same_seed is None else float(same_seed)
    return {"quantity": quantity, "unit": unit, "authors": float(authors), "ours_same_seed": same,
            "ours_mean": mean, "ours_sd": sd, "n": int(vals.size), "difference": diff, "z": z,
            "ours": format_mean_sd(mean, sd, digits), "digits": digits, "note": note}


def compare_curve(label: str, authors: Sequence[float], per_seed: Mapping, *,
                  x: Sequence | None = None, same_seed=None, unit: str = "", digits: int = 2,
                  note: str = "") -> list[dict]:
    """:func:`compare_value` rows for every point of a published curve.

    ``per_seed`` maps a seed to our curve: a list aligned with ``authors`` by position
    (``x`` None), or a list of ``[x, y]`` pairs matched to the published ``x`` values.
    Seeds whose curve is shorter (fewer epochs) do not contribute to that point.  The row
    names are ``label.format(x=...)`` (position or x value); ``same_seed`` is the key of
    ``per_seed`` holding the authors' own seed, if any.
    """
    check_str(label, "label")
    if not isinstance(per_seed, Mapping):
        raise ArgumentTypeError(f"per_seed must be a mapping seed -> curve, got {describe(per_seed)}")
    if isinstance(authors, (str, bytes)) or not hasattr(authors, "__len__"):
        raise ArgumentTypeError(f"{label}: authors must be a list of numbers, got {describe(authors)}")
    if x is not None and len(x) != len(authors):
        raise ValueError(f"{label}: x has {len(x)} values but authors has {len(authors)}")
    lookup = {}
    for key, curve in per_seed.items():
        if x is None:
            lookup[key] = dict(enumerate(curve))
        else:
            lookup[key] = {float(px): py for px, py in curve}
    points = range(len(authors)) if x is None else [float(v) for v in x]
    rows = []
    for i, (point, value) in enumerate(zip(points, authors)):
        ours = [c[point] for c in lookup.values() if point in c]
        same = lookup.get(same_seed, {}).get(point) if same_seed is not None else None
        name = label.format(x=(x[i] if x is not None else point))
        rows.append(compare_value(name, value, ours, same_seed=same, unit=unit, digits=digits,
                                  note=note))
    return rows


def comparison_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows of :func:`compare_value` as a DataFrame indexed by quantity."""
    rows = list(rows)
    if not rows:
        raise ValueError("comparison_table needs at least one row")
    bad = [r for r in rows if not isinstance(r, Mapping) or "quantity" not in r]
    if bad:
        raise ArgumentTypeError(f"rows must be dicts made by compare_value, got {describe(bad[0])}")
    df = pd.DataFrame(rows)
    if df["quantity"].duplicated().any():
        raise ValueError(f"duplicate quantities: {sorted(df.loc[df.quantity.duplicated(), 'quantity'])}")
    return df.set_index("quantity")
