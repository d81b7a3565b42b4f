"""Rank sweeps: test accuracy after truncating one layer to rank ``k``, for a list of ``k``.

:func:`truncation_curve` (one model) and :func:`truncation_curves` (a mapping of models) replace
one layer's weight by its best rank-``k`` approximation; :func:`saturation_k` finds where such a
curve levels off.  Accuracies are in percent.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._threads import torch_threads
from .layers import get_layer, layer_matrix
from .prune import Factorized
from .spectra import decompose
from .studies import keyed
from .train import evaluate
from .validation import check_float, check_frame, check_int, check_module, check_names, check_str

__all__ = ["saturation_k", "truncation_curve", "truncation_curves"]


def truncation_curve(model: nn.Module, layer: str, ks: Iterable[int], data, *,
                     batch_size: int = 2048) -> pd.DataFrame:
    """Test loss and accuracy after truncating ``layer`` to rank ``k``, for each ``k``.

    The layer's weight ``W`` (read as a matrix) is replaced, in a copy of ``model`` (the model
    itself is untouched), by its best rank-``k`` approximation
    ``W_k = sum_{i <= k} s_i u_i v_i^T`` -- the matrix :func:`rmtlib.prune.truncate` writes,
    from one decomposition (:func:`rmtlib.spectra.decompose`) shared by all ``k``.  When
    ``k (m + n) < m n`` the copy computes ``W_k x`` as two factors (``W_k = B A``, as
    :func:`rmtlib.prune.factorize`), which is the same map up to rounding and cheaper to
    evaluate.  ``k = 0`` gives the zero matrix (the bias is kept, as in the authors' code)
    and ``k = p = min(m, n)`` the unchanged layer.

    Returns
    -------
    pandas.DataFrame
        Columns ``k``, ``test_loss`` (nats/sample), ``test_acc`` (%), in the order of ``ks``.
    """
    check_module(model)
    check_str(layer, "layer")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    get_layer(model, layer)  # validates the name and the layer type
    m = copy.deepcopy(model)
    mod = get_layer(m, layer)
    dec = decompose(layer_matrix(mod).clone())  # clone: the weight is overwritten below
    p, (rows_, cols_) = dec.p, dec.shape
    ks = list(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer))
           or not 0 <= k <= p]
    if not ks or bad:
        raise ValueError(f"ks must be a non-empty list of integers in [0, {p}] (the rank of "
                         f"layer {layer!r}), got {ks!r}")
    parent_name, _, child = layer.rpartition(".")
    parent = m.get_submodule(parent_name) if parent_name else m
    original = mod.weight.detach().clone()
    rows = []
    for k in ks:
        with torch.no_grad():
            if 0 < k < p and k * (rows_ + cols_) < rows_ * cols_:
                A, B = dec.factors(torch.arange(int(k)))
                pair = Factorized.empty_like(mod, int(k))
                pair[0].weight.copy_(A.reshape(pair[0].weight.shape))
                pair[1].weight.copy_(B.reshape(pair[1].weight.shape))
                if mod.bias is not None:
                    pair[1].bias.copy_(mod.bias)
                setattr(parent, child, pair)
            else:
                Wk = original if k == p else dec.truncated(torch.arange(int(k)))
                mod.weight.copy_(Wk.reshape(original.shape).to(original.dtype))
                setattr(parent, child, mod)
        loss, acc = evaluate(m, data, batch_size=batch_size)
        rows.append({"k": int(k), "test_loss": loss, "test_acc": acc})
    return pd.DataFrame(rows, columns=["k", "test_loss", "test_acc"])


def truncation_curves(models: Mapping, layer: str, ks, data, *,
                      names: Sequence[str] = ("recipe", "seed"),
                      threads: int | None = 1) -> pd.DataFrame:
    """:func:`truncation_curve` of each model; the keys of ``models`` (tuples) become the
    columns ``names``.  ``ks`` is one list of ranks for every model, or a mapping from the
    keys of ``models`` to their own lists (e.g. each model's predicted rank)."""
    check_str(layer, "layer")
    names = check_names(list(names) if isinstance(names, tuple) else names, "names", empty=False)
    per_model = isinstance(ks, Mapping)
    if per_model:
        missing = [k for k in models if k not in ks]
        if missing:
            raise ValueError(f"ks has no ranks for the model(s) {missing}")
    else:
        ks = list(ks)
    with torch_threads(threads):
        parts = [truncation_curve(m, layer, list(ks[key]) if per_model else ks, data).assign(**cols)
                 for (key, (cols, m)) in zip(models, keyed(models, names))]
    out = pd.concat(parts, ignore_index=True)
    return out[list(names) + ["k", "test_loss", "test_acc"]]


def saturation_k(curves: pd.DataFrame, full_k: int, tolerance: float = 0.5, *,
                 keys: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    """Per curve (one per ``keys`` group of :func:`truncation_curves` output): the accuracy
    at ``k = full_k`` (``full_acc``) and the smallest other ``k`` of the curve whose
    accuracy is at least ``full_acc - tolerance`` (``k_saturation``; ``tolerance`` in
    percentage points; NaN if no other ``k`` gets that close)."""
    keys = check_names(list(keys) if isinstance(keys, tuple) else keys, "keys", empty=False)
    full_k = check_int(full_k, "full_k", minimum=0)
    tolerance = check_float(tolerance, "tolerance", low=0.0)
    check_frame(curves, [*keys, "k", "test_acc"])
    rows = []
    for key, g in curves.groupby(list(keys), sort=False):
        full = g.loc[g.k == full_k, "test_acc"]
        if full.empty:
            raise ValueError(f"curve {key} has no point at k = {full_k}")
        ok = g.loc[(g.k != full_k) & (g.test_acc >= full.iloc[0] - tolerance), "k"]
        rows.append({**dict(zip(keys, key)), "full_acc": float(full.iloc[0]),
                     "k_saturation": float(ok.min()) if len(ok) else math.nan})
    return pd.DataFrame(rows)
