"""Statistics over seeds: reductions of a long history frame and paired comparisons.

A *history frame* has one row per run (``recipe``, ``seed``) and epoch, as produced by
:func:`rmtlib.studies.run_seeds`.  :func:`epoch_summary`, :func:`final_rows`,
:func:`final_summary` and :func:`paired_differences` reduce it over seeds (mean, sample standard
deviation with ``ddof = 1``, minimum, maximum, count); :func:`paired_verdict` says in words whether
an improvement holds across seeds; :func:`seed_record`, :func:`record_tree` and
:func:`curve_tree` shape per-seed values for ``metrics.json``; :func:`format_mean_sd` formats
"mean ± sd".  For two arms over seeds, :func:`paired_interval` (t interval of the paired
mean difference), :func:`variance_ratio` (F interval), :func:`brown_forsythe` (Levene's test
about medians) and :func:`pitman_morgan` (equal variances of *paired* samples) compare their
means and spreads; :func:`variance_comparison` gathers the three variance tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .validation import (ArgumentTypeError, check_bool, check_float, check_frame, check_int, check_names,
                         check_str, describe)

__all__ = [
    "curve_tree",
    "epoch_summary",
    "final_rows",
    "brown_forsythe",
    "final_summary",
    "format_mean_sd",
    "paired_differences",
    "paired_interval",
    "paired_verdict",
    "pitman_morgan",
    "record_tree",
    "seed_record",
    "summary_stats",
    "variance_comparison",
    "variance_ratio",
]


def summary_stats(values) -> dict:
    """``mean``, sample ``sd`` (ddof = 1; NaN for fewer than two values), ``min``, ``max`` and
    count ``n`` of the non-missing ``values`` (a sequence or pandas Series)."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise ArgumentTypeError(f"values must be a sequence of numbers, got {describe(values)}")
    try:
        v = pd.Series(values, dtype=np.float64).dropna().to_numpy()
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"values must be a sequence of numbers, got {describe(values)}") from None
    n = v.size
    return {"mean": v.mean() if n else np.nan, "sd": v.std(ddof=1) if n > 1 else np.nan,
            "min": v.min() if n else np.nan, "max": v.max() if n else np.nan, "n": n}


def epoch_summary(frame: pd.DataFrame, metric: str = "test_acc", by: str = "recipe") -> pd.DataFrame:
    """Mean, sample sd (ddof = 1), min, max and count of ``metric`` over seeds, per ``by``
    group and epoch (columns ``by, epoch, mean, sd, min, max, n``)."""
    check_frame(frame, [check_str(by, "by"), "epoch", check_str(metric, "metric")])
    rows = [{by: key, "epoch": epoch, **summary_stats(g[metric])}
            for (key, epoch), g in frame.groupby([by, "epoch"], sort=False)]
    return pd.DataFrame(rows, columns=[by, "epoch", "mean", "sd", "min", "max", "n"])


def final_rows(frame: pd.DataFrame, epoch: int | None = None) -> pd.DataFrame:
    """One row per ``(recipe, seed)``: the row of ``epoch`` (default: each run's last)."""
    check_frame(frame, ["recipe", "seed", "epoch"])
    if epoch is not None:
        epoch = check_int(epoch, "epoch", minimum=0)
    if epoch is None:
        idx = frame.groupby(["recipe", "seed"], sort=False)["epoch"].idxmax()
        return frame.loc[idx.to_numpy()].reset_index(drop=True)
    out = frame[frame["epoch"] == epoch]
    runs = frame[["recipe", "seed"]].drop_duplicates()
    if len(out) != len(runs):
        raise ValueError(f"epoch {epoch} is missing for some runs (epochs recorded: "
                         f"{sorted(frame['epoch'].unique())[:3]} ... {frame['epoch'].max()})")
    return out.reset_index(drop=True)


def final_summary(frame: pd.DataFrame, metrics: Sequence[str] = ("test_acc", "n_params"),
                  epoch: int | None = None) -> pd.DataFrame:
    """Per recipe, over seeds, of the final (or ``epoch``) rows: ``<metric>_mean``,
    ``_sd`` (ddof = 1), ``_min``, ``_max`` and the number of seeds ``n``."""
    metrics = check_names(list(metrics) if isinstance(metrics, tuple) else metrics, "metrics",
                          empty=False)
    rows = final_rows(frame, epoch)
    check_frame(rows, metrics)
    out = []
    for recipe, g in rows.groupby("recipe", sort=False):
        row = {"recipe": recipe, "n": int(g["seed"].nunique())}
        for m in metrics:
            st = summary_stats(g[m])
            row.update({f"{m}_{k}": st[k] for k in ("mean", "sd", "min", "max")})
        out.append(row)
    return pd.DataFrame(out).set_index("recipe")


def paired_differences(frame: pd.DataFrame, baseline: str, other: str, metric: str = "test_acc",
                       epoch: int | None = None) -> pd.DataFrame:
    """Per seed: ``metric`` of ``baseline`` and of ``other`` at the final (or given) epoch
    and ``difference = other - baseline``.  Only seeds run with both recipes are kept;
    ``ValueError`` if there are none."""
    for arg, name in ((baseline, "baseline"), (other, "other"), (metric, "metric")):
        check_str(arg, name)
    rows = final_rows(frame, epoch)
    check_frame(rows, [metric])
    names = set(rows["recipe"])
    for name in (baseline, other):
        if name not in names:
            raise ValueError(f"no recipe {name!r} in the frame; recipes: {sorted(names)}")
    a = rows[rows["recipe"] == baseline].set_index("seed")[metric]
    b = rows[rows["recipe"] == other].set_index("seed")[metric]
    seeds = [s for s in a.index if s in b.index]
    if not seeds:
        raise ValueError(f"no seed was run with both {baseline!r} and {other!r}")
    out = pd.DataFrame({"seed": seeds, baseline: a[seeds].to_numpy(), other: b[seeds].to_numpy()})
    out["difference"] = out[other] - out[baseline]
    return out


def paired_verdict(differences, digits: int = 2) -> str:
    """A plain sentence on per-seed paired differences (``other - baseline``): whether the
    improvement holds for all, some or none of the seeds, with mean ± sd and range, e.g.
    ``"holds for 3 of 5 seeds only: ... +0.41 ± 0.52 percentage points (from -0.20 to
    +1.10)"``."""
    digits = check_int(digits, "digits", minimum=0, maximum=12)
    if isinstance(differences, (str, bytes)):
        raise ArgumentTypeError(f"differences must be a list of numbers, got {describe(differences)}")
    d = np.asarray(list(differences.values()) if isinstance(differences, Mapping)
                   else differences, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be a non-empty list of finite numbers, got {differences!r}")
    n, up = d.size, int((d > 0).sum())
    how = (f"holds for all {n} seeds" if up == n else
           f"does not hold for any of the {n} seeds" if up == 0 else
           f"holds for {up} of {n} seeds only")
    sd = d.std(ddof=1) if n > 1 else math.nan
    return (f"{how}: difference {format_mean_sd(d.mean(), sd, digits)} "
            f"percentage points (from {d.min():+.{digits}f} to {d.max():+.{digits}f})")


def seed_record(values: Mapping) -> dict:
    """Per-seed values and their summary, for ``metrics.json``: ``{"per_seed": {"<seed>":
    value}, "mean", "sd" (ddof = 1; NaN for one seed), "min", "max", "n"}``."""
    if not isinstance(values, Mapping) or not values:
        raise ArgumentTypeError(f"values must be a non-empty mapping seed -> number, got {describe(values)}")
    bad = {k: v for k, v in values.items()
           if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number))}
    if bad:
        raise ArgumentTypeError(f"values must map seeds to numbers, got {bad!r}")
    st = summary_stats(pd.Series([float(v) for v in values.values()]))
    return {"per_seed": {str(k): v for k, v in values.items()},
            **{k: st[k] for k in ("mean", "sd", "min", "max")}, "n": int(st["n"])}


def record_tree(frame: pd.DataFrame, value: str, keys: Sequence[str], *,
                seed: str = "seed") -> dict:
    """Nested dict ``{key1: {key2: ... seed_record}}`` of ``value`` (one row per seed at the
    leaves, e.g. :func:`final_rows`), for ``metrics.json``; keys become strings."""
    keys = check_names(list(keys) if isinstance(keys, tuple) else keys, "keys")
    check_frame(frame, [check_str(value, "value"), check_str(seed, "seed"), *keys])
    if not keys:
        return seed_record(dict(zip(frame[seed], frame[value])))
    return {str(k): record_tree(g, value, keys[1:], seed=seed)
            for k, g in frame.groupby(keys[0], sort=False)}


def curve_tree(frame: pd.DataFrame, y: str, keys: Sequence[str], *, x: str = "epoch",
               seed: str = "seed", pairs: bool = False) -> dict:
    """Nested dict ``{key1: ... {"<seed>": [y ordered by x]}}`` (``pairs=True``: lists of
    ``[x, y]`` pairs), for ``metrics.json``."""
    keys = check_names(list(keys) if isinstance(keys, tuple) else keys, "keys")
    pairs = check_bool(pairs, "pairs")
    check_frame(frame, [check_str(x, "x"), check_str(y, "y"), check_str(seed, "seed"), *keys])
    if not keys:
        out = {}
        for s, g in frame.groupby(seed, sort=False):
            g = g.sort_values(x)
            out[str(s)] = ([[v, w] for v, w in zip(g[x].tolist(), g[y].tolist())] if pairs
                           else g[y].tolist())
        return out
    return {str(k): curve_tree(g, y, keys[1:], x=x, seed=seed, pairs=pairs)
            for k, g in frame.groupby(keys[0], sort=False)}


def format_mean_sd(mean: float, sd: float = math.nan, digits: int = 2) -> str:
    """``"97.31 ± 0.12"``, or just the mean when ``sd`` is NaN (a single value); ``"n/a"`` for a
    missing (None or NaN) mean."""
    digits = check_int(digits, "digits", minimum=0, maximum=12)
    for arg, name in ((mean, "mean"), (sd, "sd")):
        if arg is not None and (isinstance(arg, (bool, str)) or not isinstance(arg, (int, float, np.number))):
            raise ArgumentTypeError(f"{name} must be a number or None, got {describe(arg)}")
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


# ----------------------------------------------------------------- two arms over seeds


def _sample(values, name: str, minimum: int = 2) -> np.ndarray:
    """``values`` as a 1-D float array of at least ``minimum`` finite numbers."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise ArgumentTypeError(f"{name} must be a sequence of numbers, got {describe(values)}")
    try:
        v = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a sequence of numbers, got {describe(values)}") from None
    if v.ndim != 1 or v.size < minimum or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must hold at least {minimum} finite numbers, got {list(values)!r}")
    return v


def _pair(a, b, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _sample(a, "a", minimum), _sample(b, "b", minimum)
    if a.size != b.size:
        raise ValueError(f"paired samples a and b must have the same length, got {a.size} and {b.size}")
    return a, b


def _confidence(confidence) -> float:
    return check_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True,
                       what="a probability")


def paired_interval(differences, confidence: float = 0.95) -> dict:
    r"""Student-t interval of the mean of per-seed paired ``differences`` (``other -
    baseline``): ``mean``, ``sd`` (ddof = 1), ``n``, ``low``, ``high`` =
    :math:`\bar d \mp t_{n-1, (1+c)/2}\, s_d/\sqrt n`, and the two-sided ``p`` of
    :math:`H_0: E d = 0`.  Assumes independent, roughly normal differences (with 5 seeds the
    interval is wide; read it as such)."""
    d = _sample(differences, "differences")
    c = _confidence(confidence)
    from scipy import stats as st

    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    half = float(st.t.ppf((1 + c) / 2, n - 1)) * sd / math.sqrt(n)
    p = float(2 * st.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1)) if sd > 0 else \
        (1.0 if mean == 0 else 0.0)
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half,
            "confidence": c, "p": p}


def variance_ratio(a, b, confidence: float = 0.95) -> dict:
    r"""Ratio of the sample variances :math:`R = s_a^2 / s_b^2` (ddof = 1) with its F
    interval :math:`[R / F_{(1+c)/2}, R / F_{(1-c)/2}]` (``F`` with ``(n_a - 1, n_b - 1)``
    degrees of freedom) and the two-sided ``p`` of the F test of equal variances.  Assumes
    two *independent* normal samples; for paired arms see :func:`pitman_morgan`."""
    a, b = _sample(a, "a"), _sample(b, "b")
    c = _confidence(confidence)
    from scipy import stats as st

    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    if vb == 0:
        raise ValueError("b has zero variance: the ratio s_a^2 / s_b^2 is undefined")
    r, d1, d2 = va / vb, a.size - 1, b.size - 1
    low = r / float(st.f.ppf((1 + c) / 2, d1, d2))
    high = r / float(st.f.ppf((1 - c) / 2, d1, d2))
    p = float(min(1.0, 2 * min(st.f.cdf(r, d1, d2), st.f.sf(r, d1, d2))))
    return {"ratio": r, "low": low, "high": high, "confidence": c, "p": p,
            "var_a": va, "var_b": vb, "n_a": int(a.size), "n_b": int(b.size)}


def brown_forsythe(a, b) -> dict:
    r"""Brown--Forsythe test of equal spread (Levene's test about the medians): the one-way
    ANOVA F statistic of :math:`z_{ij} = |x_{ij} - \operatorname{median}_j|` over the two
    samples, with ``(1, n_a + n_b - 2)`` degrees of freedom.  Returns ``statistic`` and ``p``.
    Robust to non-normality; with a handful of seeds it has little power."""
    a, b = _sample(a, "a"), _sample(b, "b")
    from scipy import stats as st

    z = [np.abs(x - np.median(x)) for x in (a, b)]
    allz = np.concatenate(z)
    n, k = allz.size, 2
    between = sum(zi.size * (zi.mean() - allz.mean()) ** 2 for zi in z) / (k - 1)
    within = sum(((zi - zi.mean()) ** 2).sum() for zi in z) / (n - k)
    if within == 0:
        stat = math.inf if between > 0 else math.nan
        p = 0.0 if between > 0 else math.nan
    else:
        stat = float(between / within)
        p = float(st.f.sf(stat, k - 1, n - k))
    return {"statistic": stat, "p": p, "df": [k - 1, n - k]}


def pitman_morgan(a, b) -> dict:
    r"""Pitman--Morgan test of equal variances of two *paired* samples (the two arms of the
    same seeds): :math:`\operatorname{var} a = \operatorname{var} b` iff
    :math:`\operatorname{cov}(a + b, a - b) = 0`, so with :math:`r` the correlation of the
    sums and differences, :math:`t = r\sqrt{n-2}/\sqrt{1-r^2}` has a Student-t law with
    ``n - 2`` degrees of freedom.  Returns ``ratio`` (:math:`s_a^2/s_b^2`), ``r``,
    ``statistic`` (t), ``p`` (two-sided) and ``n``.  Assumes bivariate normal pairs; needs
    ``n >= 3``."""
    a, b = _pair(a, b, minimum=3)
    from scipy import stats as st

    s, d = a + b, a - b
    if s.std() == 0 or d.std() == 0:
        raise ValueError("the sums or differences of the pairs are constant: the test is undefined")
    n = a.size
    r = float(np.corrcoef(s, d)[0, 1])
    if abs(r) >= 1:
        t, p = math.copysign(math.inf, r), 0.0
    else:
        t = r * math.sqrt(n - 2) / math.sqrt(1 - r * r)
        p = float(2 * st.t.sf(abs(t), n - 2))
    vb = float(b.var(ddof=1))
    return {"ratio": float(a.var(ddof=1)) / vb if vb > 0 else math.inf, "r": r,
            "statistic": float(t), "p": p, "n": int(n)}


def variance_comparison(a, b, confidence: float = 0.95) -> dict:
    """The spread of arm ``a`` against arm ``b`` over the same seeds (paired): the
    :func:`variance_ratio` with its F interval (which treats the arms as independent), the
    :func:`brown_forsythe` p-value and the paired :func:`pitman_morgan` p-value, as one flat
    dict (``ratio``, ``low``, ``high``, ``confidence``, ``p_f``, ``p_brown_forsythe``,
    ``p_pitman_morgan``, ``sd_a``, ``sd_b``, ``n``)."""
    a, b = _pair(a, b, minimum=3)
    vr, bf, pm = variance_ratio(a, b, confidence), brown_forsythe(a, b), pitman_morgan(a, b)
    return {"ratio": vr["ratio"], "low": vr["low"], "high": vr["high"],
            "confidence": vr["confidence"], "p_f": vr["p"], "p_brown_forsythe": bf["p"],
            "p_pitman_morgan": pm["p"], "sd_a": math.sqrt(vr["var_a"]),
            "sd_b": math.sqrt(vr["var_b"]), "n": int(a.size)}
