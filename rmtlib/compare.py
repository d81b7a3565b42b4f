r"""rmtlib next to WeightWatcher (Martin & Mahoney), layer by layer, on the same weights.

The only module importing ``weightwatcher`` -- lazily, inside the functions: it is an optional
extra (``pip install "rmtlib[compare]"``, pinned to ``weightwatcher==0.7.7``).

:func:`compare_layers` runs, for each matrix layer of a model, WeightWatcher's
``analyze(mp_fit=True, layers=[id])`` (its Marchenko--Pastur fit, spike count and power-law
exponent of the ESD's tail) and rmtlib's analysis of the same layer: BEMA's
:math:`\hat\sigma^2`, edge :math:`\hat\lambda_+` and spike count (:func:`rmtlib.spectra.analyze`),
the power-law exponent (:func:`rmtlib.heavytails.fit_power_law`) and rmtlib's re-implementation
of WeightWatcher's MP fit (:func:`rmtlib.rank.weightwatcher_mp`), each timed (wall clock, one
thread).  Convolutions are read as WeightWatcher reads them by default: the pooled spectrum of
the ``kh*kw`` per-tap ``C_out x C_in`` matrices (``conv="taps"`` in :func:`~rmtlib.spectra.analyze`).

Units: rmtlib's eigenvalues are :math:`s_i^2/N`; WeightWatcher's ESD holds :math:`s_i^2`
(``lambda_max`` is compared as ``N * lambda_max`` of rmtlib's); its ``sigma_mp`` is in the units
of the ESD rescaled to mean 1 (so is ``sigma_mp`` of :func:`rmtlib.rank.weightwatcher_mp`), while
BEMA's :math:`\hat\sigma^2` is the entry variance of ``W``.  Spike counts and exponents are
scale free.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn

from ._threads import torch_threads
from .heavytails import fit_power_law
from .rank import weightwatcher_mp
from .spectra import analyze
from .validation import ArgumentTypeError, check_bool, check_int, check_module, describe

__all__ = ["COMPARE_COLUMNS", "compare_layers", "require_weightwatcher", "versions"]

EXTRA_MESSAGE = ("rmtlib.compare needs the optional package weightwatcher (pinned 0.7.7): "
                 'install the extra with `pip install "rmtlib[compare]"`')

#: Columns of :func:`compare_layers`.
COMPARE_COLUMNS = [
    "name", "type", "shape", "n_evals", "ww_num_spikes", "ww_sigma_mp", "ww_alpha",
    "ww_lambda_max", "ww_seconds", "bema_sigma2", "bema_lambda_plus", "bema_spikes",
    "alpha", "lambda_max", "rmt_seconds", "re_num_spikes", "re_sigma_mp",
]


def require_weightwatcher():
    """Import and return the ``weightwatcher`` module, or raise ``ImportError`` naming the
    ``[compare]`` extra."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import weightwatcher
    except ImportError as exc:
        raise ImportError(f"{EXTRA_MESSAGE} ({exc})") from exc
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    return weightwatcher


def versions() -> dict:
    """Installed versions of the packages behind the comparison (``None`` if not installed)."""
    from importlib import metadata

    out = {}
    for pkg in ("rmtlib", "weightwatcher", "torch", "torchvision", "numpy", "scipy", "powerlaw"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _ww_rows(watcher, layer_id: int) -> tuple[pd.DataFrame, float]:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        df = watcher.analyze(mp_fit=True, plot=False, layers=[int(layer_id)])
        return df, time.perf_counter() - t0


def compare_layers(model: nn.Module, *, max_layers: int | None = None,
                   layers: Sequence[str] | None = None, alpha: float = 0.2, beta: float = 0.1,
                   skip_small: bool = True) -> pd.DataFrame:
    """One row per matrix layer of ``model`` analysed by both WeightWatcher and rmtlib (see the
    module docstring); columns :data:`COMPARE_COLUMNS`.

    ``ww_*``: WeightWatcher's ``num_spikes``, ``sigma_mp``, ``alpha``, ``lambda_max`` and the wall
    time of its one-layer ``analyze`` call (seconds); ``bema_*``: BEMA's fit (``alpha``, ``beta``
    its options; eigenvalue units :math:`s^2/N`); ``alpha`` and ``lambda_max``: rmtlib's power-law
    exponent and largest eigenvalue of the same ESD; ``rmt_seconds``: the wall time of rmtlib's
    BEMA analysis plus power-law fit of the layer; ``re_*``: :func:`rmtlib.rank.weightwatcher_mp`
    on rmtlib's eigenvalues.

    ``layers`` restricts to these qualified names, ``max_layers`` to the first ones (in
    WeightWatcher's order); ``skip_small`` leaves out layers WeightWatcher does not fit (fewer
    than its minimum number of eigenvalues: its ``status`` is not ``"success"``).  One untimed
    WeightWatcher call on the first layer comes first (its one-off set-up costs seconds).
    """
    ww = require_weightwatcher()
    check_module(model)
    if max_layers is not None:
        max_layers = check_int(max_layers, "max_layers", minimum=1)
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence)):
        raise ArgumentTypeError(f"layers must be None or a list of layer names, got {describe(layers)}")
    skip_small = check_bool(skip_small, "skip_small")
    model = model.eval()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        watcher = ww.WeightWatcher(model=model)
        listing = watcher.describe()
    listing = listing[listing.longname.astype(str).str.len() > 0]
    if layers is not None:
        unknown = sorted(set(layers) - set(listing.longname))
        if unknown:
            raise ValueError(f"layers {unknown} are not among WeightWatcher's layers of the model: "
                             f"{list(listing.longname)[:8]} ...")
        listing = listing[listing.longname.isin(list(layers))]
    rows = []
    with torch_threads(1):
        if len(listing):  # WeightWatcher's first call pays one-off set-up costs: not timed
            _ww_rows(watcher, listing.layer_id.iloc[0])
        for rec in listing.itertuples():
            if max_layers is not None and len(rows) >= max_layers:
                break
            df, ww_s = _ww_rows(watcher, rec.layer_id)
            if df.empty or (skip_small and str(df.iloc[0].get("status", "success")) != "success"):
                continue
            w = df.iloc[0]
            name = str(w.longname)
            fits = {}
            t0 = time.perf_counter()
            ours = analyze(model, conv="taps", alpha=alpha, beta=beta, gof=0.1, layers=[name],
                           fits=fits)
            ours = ours[ours.name == name]
            if name not in fits or ours.empty:
                continue
            fit = fits[name]
            pl = fit_power_law(fit.eigenvalues, min_tail=min(10, max(2, fit.p // 4)))
            rmt_s = time.perf_counter() - t0
            re = weightwatcher_mp(fit.eigenvalues, fit.shape)
            row = ours.iloc[0]
            rows.append({
                "name": name, "type": row["type"], "shape": tuple(row["shape"]),
                "n_evals": int(fit.p), "ww_num_spikes": int(w.num_spikes),
                "ww_sigma_mp": float(w.sigma_mp), "ww_alpha": float(w.alpha),
                "ww_lambda_max": float(w.lambda_max), "ww_seconds": ww_s,
                "bema_sigma2": fit.sigma2, "bema_lambda_plus": fit.lambda_plus,
                "bema_spikes": int(fit.n_spikes), "alpha": pl.alpha,
                "lambda_max": float(np.max(fit.eigenvalues)) * fit.N, "rmt_seconds": rmt_s,
                "re_num_spikes": int(re.details["num_spikes"]), "re_sigma_mp": re.details["sigma_mp"],
            })
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
