r"""Multi-seed training studies, rank sweeps and comparisons with published numbers.

The loops behind the book's experiments live here, so that notebooks only choose settings
and draw results:

* :func:`run_seeds` trains every :class:`Recipe` once per seed and returns a
  :class:`SeedStudy` (one long history frame, the trained models, the pruning events).
  For a seed ``s`` every recipe builds its model with ``build(s)`` and :func:`~rmtlib.train.fit`
  shuffles with ``seed=s``: the arms of a seed share their initialisation *and* the order
  of the mini-batches, so their difference is the effect of the recipe alone (a paired
  design).
* :func:`epoch_summary`, :func:`final_rows`, :func:`final_summary` and
  :func:`paired_differences` reduce a long history frame over seeds (mean, sample
  standard deviation with ``ddof = 1``, minimum, maximum, count).
  :func:`paired_verdict` says in words whether an improvement holds across seeds;
  :func:`seed_record`, :func:`record_tree` and :func:`curve_tree` shape per-seed values for
  ``metrics.json``.
* :func:`truncation_curve` / :func:`truncation_curves` / :func:`saturation_k`: test accuracy
  after replacing one layer's weight by its best rank-``k`` approximation, for a list of
  ``k``, and where it levels off.
* :func:`class_recall`, :func:`output_activity`, :func:`lost_classes`: which classes a trained
  network fails on, and whether their output units are dead.
* :meth:`SeedStudy.save_checkpoints` / :func:`load_checkpoints`: the trained networks of a
  study, for notebooks that analyse them later.
* :func:`compare_value` / :func:`compare_curve` / :func:`comparison_table`: a published value
  next to ours (mean ± sd over seeds) and their difference.
* :func:`paper1_recipe`: the paper-1 network and pruning schedule, in the authors' version
  (``"paper_exact"``) or the corrected one.

Accuracies are in percent, as in :class:`rmtlib.train.History`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import MLP
from .prune import Factorized, PrunePolicy, get_layer
from .spectra import analyze, decompose, layer_matrix
from ._threads import torch_threads
from .train import (HISTORY_COLUMNS, Callback, History, RMTPruning, evaluate, fit, predict,
                    load_checkpoint, save_checkpoint)

__all__ = [
    "PAPER1_VARIANTS",
    "Recipe",
    "SeedStudy",
    "analyze_models",
    "class_recall",
    "compare_curve",
    "compare_value",
    "comparison_table",
    "curve_tree",
    "epoch_summary",
    "final_rows",
    "final_summary",
    "format_mean_sd",
    "load_checkpoints",
    "lost_classes",
    "output_activity",
    "paired_differences",
    "paired_verdict",
    "paper1_recipe",
    "record_tree",
    "run_seeds",
    "saturation_k",
    "seed_record",
    "torch_threads",
    "truncation_curve",
    "truncation_curves",
]

PAPER1_VARIANTS = ("paper_exact", "corrected")


def _no_callbacks() -> Sequence[Callback]:
    return ()


@dataclass(frozen=True)
class Recipe:
    """One arm of a study.

    Parameters
    ----------
    name : str
        Label of the arm (the ``recipe`` column of the study's frame).
    build : callable ``seed -> nn.Module``
        A fresh model for a seed (e.g. ``lambda s: MLP([784, 1000, 10], seed=s)``).
    callbacks : callable ``() -> sequence of Callback``
        Fresh callbacks for one run (e.g. an :class:`~rmtlib.train.RMTPruning`).
    fit_options : mapping
        Keyword arguments of :func:`~rmtlib.train.fit` for this arm only (they override
        the study's).
    tags : mapping
        Extra constant columns for the frame (e.g. ``{"variant": "corrected",
        "arm": "pruned"}``); they may not reuse the names of the history's columns.
    """

    name: str
    build: Callable[[int], nn.Module]
    callbacks: Callable[[], Sequence[Callback]] = _no_callbacks
    fit_options: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a recipe needs a non-empty name, got {self.name!r}")
        if not callable(self.build) or not callable(self.callbacks):
            raise ValueError(f"recipe {self.name!r}: build and callbacks must be callables")
        reserved = {"recipe", "seed", *HISTORY_COLUMNS} & set(self.tags)
        if reserved:
            raise ValueError(f"recipe {self.name!r}: tags may not be named {sorted(reserved)}")
        if {"epochs", "seed", "callbacks"} & set(self.fit_options):
            raise ValueError(f"recipe {self.name!r}: fit_options may not set epochs, seed or "
                             "callbacks (the study sets them)")


def _check_seeds(seeds) -> tuple[int, ...]:
    try:
        out = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a sequence of non-negative integers, got {seeds!r}") from None
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0]
    if not out or bad:
        raise ValueError(f"seeds must be a non-empty sequence of non-negative integers, got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {list(out)}")
    return tuple(int(s) for s in out)


def _check_recipes(recipes) -> tuple[Recipe, ...]:
    recipes = tuple(recipes)
    if not recipes or not all(isinstance(r, Recipe) for r in recipes):
        raise ValueError("recipes must be a non-empty sequence of Recipe objects")
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be distinct, got {names}")
    return recipes


@dataclass
class SeedStudy:
    """Result of :func:`run_seeds`.

    ``frame`` is the long history: one row per recipe, seed and epoch (0 = untrained) with
    the columns ``recipe``, ``seed``, the recipes' tags and
    :data:`rmtlib.train.HISTORY_COLUMNS`.  ``models`` and ``histories`` are keyed by
    ``(recipe, seed)``; ``seconds`` is the total wall time.
    """

    frame: pd.DataFrame
    models: dict[tuple[str, int], nn.Module]
    histories: dict[tuple[str, int], History]
    seconds: float

    def events(self) -> pd.DataFrame:
        """Every pruning event's per-layer rows (see :meth:`History.events_frame`) with
        ``recipe`` and ``seed`` columns."""
        parts = [h.events_frame().assign(recipe=r, seed=s)
                 for (r, s), h in self.histories.items() if h.events]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def analyze(self, **kwargs) -> pd.DataFrame:
        """:func:`rmtlib.spectra.analyze` of every trained model (``kwargs`` are passed
        on), with ``recipe`` and ``seed`` columns."""
        return analyze_models(self.models, **kwargs)

    def save_checkpoints(self, folder) -> pd.DataFrame:
        """Save every trained model with :func:`rmtlib.train.save_checkpoint` as
        ``<folder>/<recipe>_seed<seed>.pt`` (recipe name made file-safe; existing files are
        replaced) and return the index: columns ``recipe``, ``seed``, ``file`` (name within
        ``folder``).  Read them back with :func:`load_checkpoints`."""
        folder = Path(folder)
        rows = []
        for (recipe, seed), model in self.models.items():
            slug = "".join(c if c.isalnum() else "_" for c in recipe).strip("_")
            file = f"{slug}_seed{seed}.pt"
            save_checkpoint(model, folder / file, overwrite=True, recipe=recipe, seed=seed)
            rows.append({"recipe": recipe, "seed": seed, "file": file})
        return pd.DataFrame(rows, columns=["recipe", "seed", "file"])


def load_checkpoints(index: pd.DataFrame, folder, recipes: Iterable[Recipe]) -> dict:
    """Models saved by :meth:`SeedStudy.save_checkpoints`: for each row of ``index`` build
    the model with the recipe of that name (``recipe.build(seed)``) and load its weights
    (:func:`rmtlib.train.load_checkpoint`, which replays factorizations).  Returns
    ``{(recipe, seed): model}`` in eval mode."""
    _check_frame(index, ["recipe", "seed", "file"])
    by_name = {r.name: r for r in _check_recipes(recipes)}
    models = {}
    for row in index.itertuples():
        if row.recipe not in by_name:
            raise ValueError(f"checkpoint {row.file!r} was saved by recipe {row.recipe!r}, "
                             f"which is not among {sorted(by_name)}")
        model = by_name[row.recipe].build(int(row.seed))
        meta = load_checkpoint(Path(folder) / row.file, model)
        if meta.get("recipe") != row.recipe or meta.get("seed") != int(row.seed):
            raise ValueError(f"{row.file!r} holds recipe {meta.get('recipe')!r}, seed "
                             f"{meta.get('seed')!r}, not what the index says")
        models[row.recipe, int(row.seed)] = model.eval()
    return models


def run_seeds(recipes: Iterable[Recipe], seeds: Iterable[int], train, test, *, epochs: int,
              threads: int | None = 1, progress: bool = False, **fit_kwargs) -> SeedStudy:
    """Train every recipe once per seed (paired design, see the module docstring).

    Parameters
    ----------
    recipes : sequence of Recipe
    seeds : sequence of int
        Distinct non-negative seeds; ``recipe.build(seed)`` and ``fit(seed=seed)``.
    train, test : (x, y)
        Whole data sets as tensors (see :func:`rmtlib.train.fit`).
    epochs : int
        Training epochs of every run.
    threads : int or None
        Torch threads during the study (restored afterwards); see :func:`torch_threads`.
    progress : bool
        Print one line per finished run (recipe, seed, final test accuracy, seconds).
    **fit_kwargs
        Passed to :func:`rmtlib.train.fit` (``lr``, ``momentum``, ``batch_size``, ...).
    """
    recipes, seeds = _check_recipes(recipes), _check_seeds(seeds)
    frames, models, histories = [], {}, {}
    start = time.perf_counter()
    with torch_threads(threads):
        for seed in seeds:
            for r in recipes:
                t0 = time.perf_counter()
                model = r.build(seed)
                if not isinstance(model, nn.Module):
                    raise ValueError(f"recipe {r.name!r}: build({seed}) returned "
                                     f"{type(model).__name__}, not an nn.Module")
                opts = {**fit_kwargs, **r.fit_options, "progress": False}
                h = fit(model, train, test, epochs=epochs, seed=seed,
                        callbacks=list(r.callbacks()), **opts)
                models[r.name, seed], histories[r.name, seed] = model, h
                frames.append(h.frame.assign(recipe=r.name, seed=seed, **dict(r.tags)))
                if progress:
                    print(f"{r.name} | seed {seed}: final test accuracy "
                          f"{h.final.test_acc:.2f}% ({time.perf_counter() - t0:.1f} s)")
    frame = pd.concat(frames, ignore_index=True)
    lead = ["recipe", "seed", *dict.fromkeys(k for r in recipes for k in r.tags)]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return SeedStudy(frame, models, histories, time.perf_counter() - start)


# ------------------------------------------------------------------------ reductions


def _check_frame(frame, columns) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the column(s) {missing}; it has {list(frame.columns)}")
    return frame


def _stats(values: pd.Series) -> dict:
    v = values.dropna().to_numpy(dtype=np.float64)
    n = v.size
    return {"mean": v.mean() if n else np.nan, "sd": v.std(ddof=1) if n > 1 else np.nan,
            "min": v.min() if n else np.nan, "max": v.max() if n else np.nan, "n": n}


def epoch_summary(frame: pd.DataFrame, metric: str = "test_acc", by: str = "recipe") -> pd.DataFrame:
    """Mean, sample sd (ddof = 1), min, max and count of ``metric`` over seeds, per ``by``
    group and epoch (columns ``by, epoch, mean, sd, min, max, n``)."""
    _check_frame(frame, [by, "epoch", metric])
    rows = [{by: key, "epoch": epoch, **_stats(g[metric])}
            for (key, epoch), g in frame.groupby([by, "epoch"], sort=False)]
    return pd.DataFrame(rows, columns=[by, "epoch", "mean", "sd", "min", "max", "n"])


def final_rows(frame: pd.DataFrame, epoch: int | None = None) -> pd.DataFrame:
    """One row per ``(recipe, seed)``: the row of ``epoch`` (default: each run's last)."""
    _check_frame(frame, ["recipe", "seed", "epoch"])
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
    rows = final_rows(frame, epoch)
    _check_frame(rows, list(metrics))
    out = []
    for recipe, g in rows.groupby("recipe", sort=False):
        row = {"recipe": recipe, "n": int(g["seed"].nunique())}
        for m in metrics:
            st = _stats(g[m])
            row.update({f"{m}_{k}": st[k] for k in ("mean", "sd", "min", "max")})
        out.append(row)
    return pd.DataFrame(out).set_index("recipe")


def paired_differences(frame: pd.DataFrame, baseline: str, other: str, metric: str = "test_acc",
                       epoch: int | None = None) -> pd.DataFrame:
    """Per seed: ``metric`` of ``baseline`` and of ``other`` at the final (or given) epoch
    and ``difference = other - baseline``.  Only seeds run with both recipes are kept;
    ``ValueError`` if there are none."""
    rows = final_rows(frame, epoch)
    _check_frame(rows, [metric])
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


# ------------------------------------------------------------------------ rank sweeps


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


def _keyed(models: Mapping, names: Sequence[str]):
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping key -> nn.Module")
    for key, model in models.items():
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != len(names):
            raise ValueError(f"key {key!r} does not match the column names {list(names)}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"models[{key!r}] is a {type(model).__name__}, not an nn.Module")
        yield dict(zip(names, key)), model


def truncation_curves(models: Mapping, layer: str, ks, data, *,
                      names: Sequence[str] = ("recipe", "seed"),
                      threads: int | None = 1) -> pd.DataFrame:
    """:func:`truncation_curve` of each model; the keys of ``models`` (tuples) become the
    columns ``names``.  ``ks`` is one list of ranks for every model, or a mapping from the
    keys of ``models`` to their own lists (e.g. each model's predicted rank)."""
    per_model = isinstance(ks, Mapping)
    if per_model:
        missing = [k for k in models if k not in ks]
        if missing:
            raise ValueError(f"ks has no ranks for the model(s) {missing}")
    else:
        ks = list(ks)
    with torch_threads(threads):
        parts = [truncation_curve(m, layer, list(ks[key]) if per_model else ks, data).assign(**cols)
                 for (key, (cols, m)) in zip(models, _keyed(models, names))]
    out = pd.concat(parts, ignore_index=True)
    return out[list(names) + ["k", "test_loss", "test_acc"]]


def saturation_k(curves: pd.DataFrame, full_k: int, tolerance: float = 0.5, *,
                 keys: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    """Per curve (one per ``keys`` group of :func:`truncation_curves` output): the accuracy
    at ``k = full_k`` (``full_acc``) and the smallest other ``k`` of the curve whose
    accuracy is at least ``full_acc - tolerance`` (``k_saturation``; ``tolerance`` in
    percentage points; NaN if no other ``k`` gets that close)."""
    _check_frame(curves, [*keys, "k", "test_acc"])
    rows = []
    for key, g in curves.groupby(list(keys), sort=False):
        full = g.loc[g.k == full_k, "test_acc"]
        if full.empty:
            raise ValueError(f"curve {key} has no point at k = {full_k}")
        ok = g.loc[(g.k != full_k) & (g.test_acc >= full.iloc[0] - tolerance), "k"]
        rows.append({**dict(zip(keys, key)), "full_acc": float(full.iloc[0]),
                     "k_saturation": float(ok.min()) if len(ok) else math.nan})
    return pd.DataFrame(rows)


def analyze_models(models: Mapping, *, names: Sequence[str] = ("recipe", "seed"),
                   **kwargs) -> pd.DataFrame:
    """:func:`rmtlib.spectra.analyze` of each model, with the keys as columns ``names``."""
    parts = [analyze(m, **kwargs).assign(**cols) for cols, m in _keyed(models, names)]
    out = pd.concat(parts, ignore_index=True)
    return out[list(names) + [c for c in out.columns if c not in names]]


def seed_record(values: Mapping) -> dict:
    """Per-seed values and their summary, for ``metrics.json``: ``{"per_seed": {"<seed>":
    value}, "mean", "sd" (ddof = 1; NaN for one seed), "min", "max", "n"}``."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty mapping seed -> number")
    st = _stats(pd.Series([float(v) for v in values.values()]))
    return {"per_seed": {str(k): v for k, v in values.items()},
            **{k: st[k] for k in ("mean", "sd", "min", "max")}, "n": int(st["n"])}


def record_tree(frame: pd.DataFrame, value: str, keys: Sequence[str], *,
                seed: str = "seed") -> dict:
    """Nested dict ``{key1: {key2: ... seed_record}}`` of ``value`` (one row per seed at the
    leaves, e.g. :func:`final_rows`), for ``metrics.json``; keys become strings."""
    _check_frame(frame, [value, seed, *keys])
    if not keys:
        return seed_record(dict(zip(frame[seed], frame[value])))
    return {str(k): record_tree(g, value, keys[1:], seed=seed)
            for k, g in frame.groupby(keys[0], sort=False)}


def curve_tree(frame: pd.DataFrame, y: str, keys: Sequence[str], *, x: str = "epoch",
               seed: str = "seed", pairs: bool = False) -> dict:
    """Nested dict ``{key1: ... {"<seed>": [y ordered by x]}}`` (``pairs=True``: lists of
    ``[x, y]`` pairs), for ``metrics.json``."""
    _check_frame(frame, [x, y, seed, *keys])
    if not keys:
        out = {}
        for s, g in frame.groupby(seed, sort=False):
            g = g.sort_values(x)
            out[str(s)] = ([[v, w] for v, w in zip(g[x].tolist(), g[y].tolist())] if pairs
                           else g[y].tolist())
        return out
    return {str(k): curve_tree(g, y, keys[1:], x=x, seed=seed, pairs=pairs)
            for k, g in frame.groupby(keys[0], sort=False)}


def _check_inputs(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or len(x) == 0:
        raise ValueError("x must be a non-empty floating-point tensor of inputs")
    return x


@torch.no_grad()
def output_activity(model: MLP, x: torch.Tensor, *, batch_size: int = 4096) -> np.ndarray:
    """Fraction of the rows of ``x`` on which each output unit's pre-activation logit is
    positive, for an :class:`~rmtlib.models.MLP` (eval mode; the model is left as it was).

    With ``relu_on_logits`` (the paper-1 network) a unit with activity 0 outputs 0 on every
    input and receives no gradient: it is *dead*, its class wins only ties.
    """
    if not isinstance(model, MLP):
        raise ValueError(f"output_activity needs an rmtlib MLP, got {type(model).__name__}")
    x = _check_inputs(x)
    flag = model.relu_on_logits
    model.relu_on_logits = False  # read the logits before the activation
    try:
        pos = (predict(model, x, batch_size=batch_size) > 0).sum(0)
    finally:
        model.relu_on_logits = flag
    return (pos.double() / len(x)).numpy()


@torch.no_grad()
def class_recall(model: nn.Module, data, *, batch_size: int = 4096) -> np.ndarray:
    """Per-class recall (%) of the arg-max predictions of ``model`` on ``data = (x, y)``:
    the share of the images of class ``c`` classified as ``c`` (NaN for a class absent from
    ``y``; classes ``0 .. max(y, outputs - 1)``).  Eval mode; the model is left as it was."""
    x, y = data
    x = _check_inputs(x)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or len(y) != len(x):
        raise ValueError("y must be an int64 tensor of labels, one per row of x")
    pred = predict(model, x, batch_size=batch_size).argmax(1)
    n = max(int(y.max()) + 1, int(pred.max()) + 1)
    total = torch.bincount(y, minlength=n).double()
    hit = torch.bincount(y[pred == y], minlength=n).double()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (100.0 * hit / total).numpy()


def lost_classes(models: Mapping, data, *, threshold: float = 50.0,
                 names: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    """Per model (keys as columns ``names``): the classes whose recall on ``data`` is below
    ``threshold`` percent (``lost``, ``n_lost``), every class's recall (``recall``, %) and,
    for an :class:`~rmtlib.models.MLP`, the :func:`output_activity` of the lost classes'
    output units (``activity_of_lost``, fractions of the inputs)."""
    rows = []
    for cols, model in _keyed(models, names):
        recall = class_recall(model, data)
        lost = [int(c) for c in np.flatnonzero(recall < threshold)]
        act = output_activity(model, data[0])[lost].tolist() if isinstance(model, MLP) else []
        rows.append({**cols, "lost": lost, "n_lost": len(lost), "recall": recall.tolist(),
                     "activity_of_lost": act})
    return pd.DataFrame(rows, columns=[*names, "lost", "n_lost", "recall", "activity_of_lost"])


def paired_verdict(differences, digits: int = 2) -> str:
    """A plain sentence on per-seed paired differences (``other - baseline``): whether the
    improvement holds for all, some or none of the seeds, with mean ± sd and range, e.g.
    ``"holds for 3 of 5 seeds only: ... +0.41 ± 0.52 percentage points (from -0.20 to
    +1.10)"``."""
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


# ---------------------------------------------------------------- published numbers


def format_mean_sd(mean: float, sd: float = math.nan, digits: int = 2) -> str:
    """``"97.31 ± 0.12"``, or just the mean when ``sd`` is NaN (a single value)."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


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
    if isinstance(authors, bool) or not isinstance(authors, (int, float, np.number)) \
            or not np.isfinite(authors):
        raise ValueError(f"{quantity}: the authors' value must be a finite number, got {authors!r}")
    vals = np.atleast_1d(np.asarray(ours, dtype=np.float64))
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
    if not isinstance(per_seed, Mapping):
        raise ValueError("per_seed must be a mapping seed -> curve")
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
    df = pd.DataFrame(rows)
    if df["quantity"].duplicated().any():
        raise ValueError(f"duplicate quantities: {sorted(df.loc[df.quantity.duplicated(), 'quantity'])}")
    return df.set_index("quantity")


# ------------------------------------------------------------------------ paper 1


def paper1_recipe(variant: str = "paper_exact", prune: bool = False, *,
                  dims: Sequence[int] = (784, 1000, 10), keep_fraction: float = 0.45,
                  gof: float = 0.1, alpha: float = 0.2, beta: float = 0.1) -> Recipe:
    """The paper-1 network, trained without or with RMT pruning at every epoch.

    ``variant="paper_exact"`` reproduces the authors' code (Shmalo, Jenkins, Krupchytskyi
    2023, ``jtj5311/NN-RMT-SVD``): ReLU also on the output logits; when pruning, BEMA and
    the goodness of fit with their quirks and the one-too-many spike count
    (``PrunePolicy(paper_exact=True)``), a prune *before* every training epoch from epoch
    1 on (the first one acts on the random initialisation) and a fresh optimizer after
    every prune (momentum lost).

    ``variant="corrected"``: no activation on the logits; the correct BEMA, statistic and
    count; the first prune before epoch 2, i.e. after one epoch of training (a prune
    before epoch ``e`` is a prune after epoch ``e - 1``, so the recorded accuracy of every
    epoch is, as in the authors' runs, measured after training); the optimizer state
    (momentum) of the untouched parameters is kept.

    Both: ``keep = spikes + int(keep_fraction * bulk)`` components, at least the output
    width; a layer is split into two factors when that saves parameters, else truncated;
    a layer whose fit fails the goodness-of-fit cutoff ``gof`` is left alone.  The model
    of seed ``s`` is ``MLP(dims, seed=s)`` (the authors' initialisation for their seeds).
    Train with SGD, lr 0.08, momentum 0.9, batch 128 (:func:`rmtlib.train.fit`).
    """
    if variant not in PAPER1_VARIANTS:
        raise ValueError(f"variant must be one of {PAPER1_VARIANTS}, got {variant!r}")
    exact = variant == "paper_exact"
    dims = tuple(int(d) for d in dims)

    def build(seed: int) -> nn.Module:
        return MLP(dims, relu_on_logits=exact, seed=seed)

    callbacks = _no_callbacks
    if prune:
        policy = PrunePolicy(selector="bema", selector_opts={"alpha": alpha, "beta": beta},
                             keep_fraction=keep_fraction, action="factorize", gof=gof,
                             paper_exact=exact)

        def callbacks() -> Sequence[Callback]:
            return [RMTPruning(policy, optimizer="rebuild" if exact else "keep",
                               when="before_epoch", start_epoch=1 if exact else 2)]

    name = f"{variant.replace('_', '-')}, {'pruned' if prune else 'unpruned'}"
    return Recipe(name, build, callbacks,
                  tags={"variant": variant, "arm": "pruned" if prune else "unpruned"})
