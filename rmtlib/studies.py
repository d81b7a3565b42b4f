"""Multi-seed training studies with paired arms.

:func:`run_seeds` trains every :class:`Recipe` once per seed and returns a :class:`SeedStudy`
(one long history frame, the trained models, the pruning events).  For a seed ``s`` every recipe
builds its model with ``build(s)`` and :func:`~rmtlib.train.fit` shuffles with ``seed=s``: the
arms of a seed share their initialisation *and* the order of the mini-batches, so their
difference is the effect of the recipe alone (a paired design).  Reduce the result with
:mod:`rmtlib.stats`.  :meth:`SeedStudy.save_checkpoints` / :func:`load_checkpoints` keep the
trained networks for notebooks that analyse them later.

Accuracies are in percent, as in :class:`rmtlib.train.History`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from .parallel import map_tasks
from .spectra import analyze
from .train import HISTORY_COLUMNS, Callback, History, fit, load_checkpoint, save_checkpoint
from .validation import check_bool, check_frame, check_int

__all__ = ["Recipe", "SeedStudy", "analyze_models", "keyed", "load_checkpoints", "run_seeds"]


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
    callbacks: Callable[[], Sequence[Callback]] = tuple
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
    ``(recipe, seed)``; ``seconds`` is the total wall time.  ``records`` maps ``(recipe,
    seed)`` to the list of what the run's callbacks returned from
    :meth:`rmtlib.train.Callback.record` (those returning ``None`` left out), in the order of
    the recipe's callbacks: how measurements made during training come back from wherever the
    training ran.
    """

    frame: pd.DataFrame
    models: dict[tuple[str, int], nn.Module]
    histories: dict[tuple[str, int], History]
    seconds: float
    records: dict = field(default_factory=dict)

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
    check_frame(index, ["recipe", "seed", "file"])
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


def _train_one(task: tuple[int, int], *, recipes, train, test, epochs, fit_kwargs):
    """One ``(recipe index, seed)`` training of :func:`run_seeds` (a :func:`map_tasks` task):
    ``(model, history, seconds, records)`` (``records``: the callbacks' non-None
    :meth:`~rmtlib.train.Callback.record`)."""
    i, seed = task
    r = recipes[i]
    t0 = time.perf_counter()
    model = r.build(seed)
    if not isinstance(model, nn.Module):
        raise ValueError(f"recipe {r.name!r}: build({seed}) returned "
                         f"{type(model).__name__}, not an nn.Module")
    callbacks = list(r.callbacks())
    h = fit(model, train, test, epochs=epochs, seed=seed, callbacks=callbacks,
            **{**fit_kwargs, **r.fit_options, "progress": False})
    records = [rec for rec in (cb.record() for cb in callbacks) if rec is not None]
    return model, h, time.perf_counter() - t0, records


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
        Torch threads of each training (restored afterwards); see
        :func:`rmtlib._threads.torch_threads`.  One thread makes the numbers independent of
        the machine and of where the run executes.
    progress : bool
        Print ``training runs: k/n done`` as runs finish, then one line per run (recipe, seed,
        final test accuracy, seconds).

    The ``(recipe, seed)`` trainings are independent tasks of
    :func:`rmtlib.parallel.map_tasks`: in-process by default, spread over the runner's Dask
    cluster when there is one (the data sets are sent to each worker once); every task seeds
    itself from its seed, so the study is the same wherever it runs.
    **fit_kwargs
        Passed to :func:`rmtlib.train.fit` (``lr``, ``momentum``, ``batch_size``, ...).
    """
    recipes, seeds = _check_recipes(recipes), _check_seeds(seeds)
    progress = check_bool(progress, "progress")
    if threads is not None:
        threads = check_int(threads, "threads", minimum=1)
    start = time.perf_counter()
    tasks = [(i, seed) for seed in seeds for i in range(len(recipes))]
    opts = {**fit_kwargs, "progress": False}
    done = map_tasks(_train_one, tasks, label="training runs", progress=progress, threads=threads,
                     shared={"recipes": recipes, "train": train, "test": test, "epochs": epochs,
                             "fit_kwargs": opts})
    frames, models, histories, records = [], {}, {}, {}
    for (i, seed), (model, h, seconds, recs) in zip(tasks, done):
        r = recipes[i]
        models[r.name, seed], histories[r.name, seed] = model, h
        if recs:
            records[r.name, seed] = recs
        frames.append(h.frame.assign(recipe=r.name, seed=seed, **dict(r.tags)))
        if progress:
            print(f"{r.name} | seed {seed}: final test accuracy "
                  f"{h.final.test_acc:.2f}% ({seconds:.1f} s)")
    frame = pd.concat(frames, ignore_index=True)
    lead = ["recipe", "seed", *dict.fromkeys(k for r in recipes for k in r.tags)]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return SeedStudy(frame, models, histories, time.perf_counter() - start, records)


def keyed(models: Mapping, names: Sequence[str]):
    """Iterate over ``models`` (a mapping key -> nn.Module, keys tuples matching ``names``) as
    ``(dict(zip(names, key)), model)``; ``ValueError`` for anything else."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping key -> nn.Module")
    for key, model in models.items():
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != len(names):
            raise ValueError(f"key {key!r} does not match the column names {list(names)}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"models[{key!r}] is a {type(model).__name__}, not an nn.Module")
        yield dict(zip(names, key)), model


def analyze_models(models: Mapping, *, names: Sequence[str] = ("recipe", "seed"),
                   **kwargs) -> pd.DataFrame:
    """:func:`rmtlib.spectra.analyze` of each model, with the keys as columns ``names``."""
    parts = [analyze(m, **kwargs).assign(**cols) for cols, m in keyed(models, names)]
    out = pd.concat(parts, ignore_index=True)
    return out[list(names) + [c for c in out.columns if c not in names]]
