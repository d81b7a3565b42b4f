"""Map independent tasks onto the cluster the runner provides, or run them in-process.

The heavy work inside notebooks -- each ``(recipe, seed)`` training of
:func:`rmtlib.studies.run_seeds`, Monte Carlo batches, selector sweeps -- goes through
:func:`map_tasks`::

    results = map_tasks(train_one, [(recipe, seed) for ...], shared={"train": train}, label="runs")

``func(task, **shared)`` is called once per task and the results come back in the order of
``tasks``.  ``shared`` holds the large inputs every task needs (data sets); they are sent to each
worker once, not once per task.  Each task must seed itself from its own inputs (e.g. its seed),
so that results do not depend on where or in which order tasks run; ``threads`` fixes the torch
thread count of every task (the order of floating-point reductions depends on it).

Where the tasks run:

* ``$RMTLIB_SCHEDULER`` unset (plain library use, the runner's sequential mode): here, one after
  another, and nothing of Dask is imported.
* ``$RMTLIB_SCHEDULER=tcp://host:port`` (set by ``python -m rmtlib.reproduce --workers N`` or
  ``--scheduler ADDRESS`` in the environment of the notebook kernels it starts): a
  ``distributed.Client`` connects to that scheduler (once per process), ``shared`` is scattered
  to every worker (``broadcast=True``), the tasks are submitted with ``pure=False`` and
  ``retries=$RMTLIB_TASK_RETRIES`` (default :data:`DEFAULT_RETRIES`) and gathered in order.  A
  task whose worker dies is re-run elsewhere; a task that still fails raises
  :class:`TaskError` naming the batch, the task's index and the task.

The notebook kernels themselves never run on the workers (the runner executes them on its own
machine), so a kernel waiting for its tasks never holds a worker: no deadlock.  A
``map_tasks`` called *inside* a task runs in-process, on that worker.

Progress: with ``progress=True``, ``label: k/n done (s)`` lines on stderr as tasks finish.
Whatever ``progress`` says, when ``$RMTLIB_TASK_LOG`` names a file (the runner sets it to
``results/<profile>/<run>/tasks.jsonl``), one JSON line is appended per finished task
(``event: progress``, ``done``/``total``) and one per batch (``event: batch``: label, task
count, summed task wall and CPU seconds, where they ran): the runner streams the former to its console and
adds the latter up in the run's ``provenance.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any

from .validation import ArgumentTypeError, check_bool, check_int, check_str, describe

__all__ = ["DEFAULT_RETRIES", "ENV_RETRIES", "ENV_SCHEDULER", "ENV_TASK_LOG", "TaskError",
           "close_client", "map_tasks", "scheduler_address", "task_retries"]

#: Environment variable holding the Dask scheduler address the tasks go to.
ENV_SCHEDULER = "RMTLIB_SCHEDULER"
#: Environment variable: how many times a failed task is retried (Dask's ``retries=``).
ENV_RETRIES = "RMTLIB_TASK_RETRIES"
#: Environment variable: a file to which each batch appends one JSON line of accounting.
ENV_TASK_LOG = "RMTLIB_TASK_LOG"
DEFAULT_RETRIES = 2

_CLIENT: Any = None  # (address, distributed.Client) of this process
_IN_TASK = False  # True while this process executes a task: nested batches run in-process


class TaskError(RuntimeError):
    """A task failed (past its retries): the message names the batch, the task and the cause."""


def scheduler_address() -> str | None:
    """The scheduler address tasks go to (``$RMTLIB_SCHEDULER``), or None: run in-process."""
    address = os.environ.get(ENV_SCHEDULER, "").strip()
    return address or None


def task_retries() -> int:
    """Retries of a failed task on a cluster (``$RMTLIB_TASK_RETRIES``, default 2)."""
    raw = os.environ.get(ENV_RETRIES, "").strip()
    if not raw:
        return DEFAULT_RETRIES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"${ENV_RETRIES} must be a non-negative integer, got {raw!r}")
    return value


def _client(address: str):
    global _CLIENT
    if _CLIENT is not None and _CLIENT[0] == address and _CLIENT[1].status == "running":
        return _CLIENT[1]
    from distributed import Client

    close_client()
    client = Client(address, set_as_default=False, timeout="60s")
    _CLIENT = (address, client)
    return client


def close_client() -> None:
    """Close this process's connection to the scheduler, if any (the next batch reconnects)."""
    global _CLIENT
    if _CLIENT is not None:
        try:
            _CLIENT[1].close()
        finally:
            _CLIENT = None


def _short(task: Any, limit: int = 120) -> str:
    text = repr(task)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_ALIGN = 64  # bytes: the alignment of fresh allocations (NumPy and PyTorch on x86-64)


def _aligned(value: Any) -> Any:
    """``value`` with its arrays at :data:`_ALIGN`-byte aligned addresses.

    Data received over the network may land at any address, and BLAS kernels (MKL, OpenBLAS)
    take other code paths -- with other rounding -- for unaligned operands: on a worker, an
    unaligned copy of the training set changed a loss in its 8th digit.  A tensor is re-seated
    in place on an aligned copy (``Tensor.set_``, so later tasks on this worker find it done);
    an array is copied; tuples, lists and dicts are walked."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.data_ptr() % _ALIGN and value.numel() and value.is_contiguous():
            with torch.no_grad():
                value.set_(value.detach().clone())
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        if value.ctypes.data % _ALIGN and value.size:
            import numpy as np

            buf = np.empty(value.nbytes + _ALIGN, dtype=np.uint8)  # malloc aligns to 16 only
            start = -buf.ctypes.data % _ALIGN
            out = buf[start:start + value.nbytes].view(value.dtype).reshape(value.shape)
            out[...] = value
            return out
        return value
    if isinstance(value, (tuple, list)):
        items = [_aligned(v) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items) if type(value) in (tuple, list) else value
    if isinstance(value, dict) and type(value) is dict:
        items = {k: _aligned(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    return value


def _run_task(func: Callable, task: Any, threads: int | None, shared: Mapping[str, Any]):
    """One task, wherever it runs: ``(func(task, **shared), seconds, cpu_seconds)`` -- its wall
    time and the CPU time of the executing process meanwhile (all its threads: a task using two
    BLAS threads has about twice its wall time) -- with ``threads`` torch threads (None: as the
    process has them) and the shared arrays aligned (see :func:`_aligned`); nested batches run
    in-process."""
    global _IN_TASK
    from ._threads import torch_threads

    shared = {k: _aligned(v) for k, v in shared.items()}
    outer, _IN_TASK = _IN_TASK, True
    start, cpu = time.perf_counter(), time.process_time()
    try:
        with torch_threads(threads) if threads is not None else nullcontext():
            result = func(task, **shared)
    finally:
        _IN_TASK = outer
    return result, time.perf_counter() - start, time.process_time() - cpu


def _log_event(**event) -> None:
    path = os.environ.get(ENV_TASK_LOG, "").strip()
    if not path or _IN_TASK:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def _report(label: str, done: int, total: int, start: float, progress: bool) -> None:
    seconds = time.perf_counter() - start
    if progress:
        print(f"{label}: {done}/{total} done ({seconds:.0f} s)", file=sys.stderr, flush=True)
    _log_event(event="progress", label=label, done=done, total=total, seconds=round(seconds, 3))


def _record(label: str, count: int, task_seconds: float, task_cpu: float, wall: float,
            where: str) -> None:
    _log_event(event="batch", label=label, tasks=count, task_seconds=round(task_seconds, 3),
               task_cpu_seconds=round(task_cpu, 3), wall_seconds=round(wall, 3), where=where)


def _in_process(func, tasks, shared, label, progress, threads, start):
    out, seconds, cpu = [], 0.0, 0.0
    for i, task in enumerate(tasks, 1):
        result, s, c = _run_task(func, task, threads, shared)
        out.append(result)
        seconds, cpu = seconds + s, cpu + c
        _report(label, i, len(tasks), start, progress)
    return out, seconds, cpu


def _lost(exc: BaseException) -> bool:
    """Whether a future failed because the cluster lost it (its worker died, or the scattered
    data it needs was forgotten), not because the task raised."""
    from asyncio import CancelledError

    return isinstance(exc, CancelledError) or type(exc).__name__ == "FutureCancelledError"


def _on_cluster(address, func, tasks, shared, label, progress, threads, start):
    from distributed import as_completed

    client = _client(address)
    retries = task_retries()
    names = list(shared)
    futures: list = []

    def scatter() -> dict:
        # one future per shared value, on every worker; random keys (hash=False): two notebooks
        # sharing the cluster never collide, and nothing is tokenized
        new = client.scatter([shared[k] for k in names], broadcast=True, hash=False) if names else []
        futures.extend(new)
        return dict(zip(names, new))

    remote = scatter()
    tag = f"{''.join(c if c.isalnum() else '-' for c in label)[:40]}"

    def submit(i: int, data: dict):
        return client.submit(_run_task, func, tasks[i], threads, data, pure=False,
                             retries=retries, key=f"{tag}-{i}-{os.urandom(6).hex()}")

    submitted = [submit(i, remote) for i in range(len(tasks))]
    index = {f.key: i for i, f in enumerate(submitted)}
    out: list = [None] * len(tasks)
    seconds, cpu, done, resubmitted = 0.0, 0.0, 0, 0
    try:
        with client.as_current():  # as_completed finds its client there
            completed = as_completed(submitted)
        for fut in completed:
            i = index[fut.key]
            try:
                result, s, c = fut.result()
            except Exception as exc:
                # lost with a dying worker (not raised by the task): send the shared data
                # again and resubmit, at most `retries` times per task on average
                if _lost(exc) and resubmitted < max(retries, 1) * len(tasks):
                    resubmitted += 1
                    remote = scatter()
                    again = submit(i, remote)
                    index[again.key] = i
                    submitted.append(again)
                    completed.add(again)
                    continue
                raise TaskError(
                    f"task {i + 1}/{len(tasks)} of {label!r} ({_short(tasks[i])}) failed on the "
                    f"cluster at {address} after {retries} retr{'y' if retries == 1 else 'ies'}: "
                    f"{type(exc).__name__}: {exc}") from exc
            out[i] = result
            seconds, cpu = seconds + s, cpu + c
            done += 1
            _report(label, done, len(tasks), start, progress)
    finally:
        client.cancel([f for f in submitted if not f.done()])
        for f in futures:
            f.release()
    return out, seconds, cpu


def map_tasks(func: Callable[..., Any], tasks: Iterable, *, shared: Mapping[str, Any] | None = None,
              label: str = "tasks", progress: bool = True, threads: int | None = None) -> list:
    """``[func(task, **shared) for task in tasks]``, in order, here or on the runner's cluster
    (see the module docstring).

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
        Name of the batch in progress and error messages.
    progress : bool
        Print ``label: k/n done`` lines to stderr as tasks finish.
    threads : int or None
        Torch threads while each task runs (restored afterwards); None leaves the setting as the
        executing process has it.

    Raises
    ------
    TaskError
        On a cluster, a task failed after its retries (the message names it).  In-process, a
        task's exception propagates unchanged.
    """
    if not callable(func):
        raise ArgumentTypeError(f"func must be callable, got {describe(func)}")
    tasks = list(tasks)
    if shared is not None and not isinstance(shared, Mapping):
        raise ArgumentTypeError(f"shared must be a mapping of argument names to values, got "
                                f"{describe(shared)}")
    shared = dict(shared or {})
    bad = [k for k in shared if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise ValueError(f"shared must map keyword-argument names to values, got keys {bad!r}")
    label = check_str(label, "label")
    progress = check_bool(progress, "progress")
    if threads is not None:
        threads = check_int(threads, "threads", minimum=1)
    start = time.perf_counter()
    address = None if _IN_TASK else scheduler_address()
    if address is None or not tasks:
        out, seconds, cpu = _in_process(func, tasks, shared, label, progress, threads, start)
        where = "in-process"
    else:
        out, seconds, cpu = _on_cluster(address, func, tasks, shared, label, progress, threads, start)
        where = address
    _record(label, len(tasks), seconds, cpu, time.perf_counter() - start, where)
    return out
