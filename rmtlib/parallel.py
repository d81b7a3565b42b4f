"""Map independent tasks onto the cluster the runner provides, or run them in-process.

The heavy work inside notebooks -- each ``(recipe, seed)`` training of
:func:`rmtlib.studies.run_seeds`, Monte Carlo batches, selector sweeps -- goes through
:func:`map_tasks`::

    results = map_tasks(train_one, [(recipe, seed) for ...], shared={"train": train}, label="runs")

``func(task, **shared)`` is called once per task and the results come back in the order of
``tasks``.  ``shared`` holds the large inputs every task needs (data sets); they are sent to each
worker once, not once per task.  Each task must seed itself from its own inputs (e.g. its seed),
so that results do not depend on where or in which order tasks run.

Without a cluster (plain library use, and the runner's sequential mode) the tasks run here, one
after another, and nothing of Dask is imported.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["map_tasks"]


def map_tasks(func: Callable[..., Any], tasks: Iterable, *, shared: Mapping[str, Any] | None = None,
              label: str = "tasks", progress: bool = True) -> list:
    """``[func(task, **shared) for task in tasks]``, in order (see the module docstring).

    Parameters
    ----------
    func : callable
        ``func(task, **shared) -> result``; picklable (a module-level function, or one defined in
        a notebook) when a cluster is used.
    tasks : iterable
        The tasks (picklable values, e.g. tuples of settings).
    shared : mapping of str to object, optional
        Keyword arguments passed to every call, sent to each worker once.
    label : str
        Name of the batch in progress messages.
    progress : bool
        Print ``label: k/n done`` lines to stderr as tasks finish.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    tasks = list(tasks)
    shared = dict(shared or {})
    bad = [k for k in shared if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise ValueError(f"shared must map keyword-argument names to values, got keys {bad!r}")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    out = []
    start = time.perf_counter()
    for i, task in enumerate(tasks, 1):
        out.append(func(task, **shared))
        if progress:
            print(f"{label}: {i}/{len(tasks)} done ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return out
