"""Benchmarks of rmtlib, run with ``python -m rmtlib.benchmarks [--out results.json]``.

Every module of this package (names not starting with ``_``) is a benchmark module.  It
defines functions named ``bench_*``, or else one function ``run``; each takes
``quick: bool`` and returns a dict of numbers or short strings (possibly with nested
dicts and lists of per-case dicts, e.g. ``{"rows": [{"shape": ..., "seconds": ...}]}``).
Timings in seconds are medians over repeats.  The runner imports every module, runs every
such function, prints a table (benchmark, metric, value) and, with ``--out``, writes JSON:
``{"environment": {...}, "results": {"module.function": {...}}}``.

Timings are taken on whatever machine runs them; the environment block (CPU, threads,
library versions, load average) says what that was.  Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["discover", "environment", "format_table", "main", "run"]


def discover() -> list[tuple[str, Callable]]:
    """``(qualified name, function)`` for every ``bench_*`` function of every module of
    this package, sorted by name."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        own = [(attr, obj) for attr, obj in vars(mod).items()
               if callable(obj) and getattr(obj, "__module__", None) == mod.__name__]
        benches = [(a, f) for a, f in own if a.startswith("bench_")]
        if not benches:
            benches = [(a, f) for a, f in own if a == "run"]
        found += [(f"{info.name}.{a}", f) for a, f in benches]
    return sorted(found, key=lambda t: t[0])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Machine and library facts recorded next to the timings."""
    import numpy as np
    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if hasattr(os, "getloadavg"):
        env["loadavg_1min"] = round(os.getloadavg()[0], 2)
    return env


def run(only: str | None = None, quick: bool = False, echo: bool = True) -> dict:
    """Run the benchmarks whose qualified name contains ``only`` (all if None)."""
    benches = [(n, f) for n, f in discover() if only is None or only in n]
    if not benches:
        raise ValueError(f"no benchmark matches {only!r}; available: {[n for n, _ in discover()]}")
    results = {}
    for name, func in benches:
        if echo:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = func(quick=quick)
    return {"environment": environment(), "results": results}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _flatten(res, prefix: str = "") -> list[tuple[str, str]]:
    """(metric, value) pairs of a result: nested dicts give ``a.b``; a list of dicts gives
    one block per entry, labelled by its ``name`` or ``shape`` (else its index)."""
    out = []
    for k, v in res.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        elif isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            for i, entry in enumerate(v):
                label = next((f"{lk}={entry[lk]}" for lk in ("name", "shape") if lk in entry),
                             str(i))
                rest = {kk: vv for kk, vv in entry.items() if f"{kk}={vv}" != label}
                out += _flatten(rest, f"{key}[{label}].")
        else:
            out.append((key, _fmt(v)))
    return out


def format_table(report: dict) -> str:
    """The results as a plain-text table: benchmark | metric | value."""
    rows = [("benchmark", "metric", "value")]
    for name, res in report["results"].items():
        pairs = _flatten(res) if isinstance(res, dict) else [("result", _fmt(res))]
        for i, (k, v) in enumerate(pairs):
            rows.append((name if i == 0 else "", k, v))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(rows[0], widths)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[1:]]
    env = report["environment"]
    out.append("")
    out.append("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmtlib.benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this path")
    parser.add_argument("--quick", action="store_true", help="fewer repeats / smaller data")
    parser.add_argument("--only", help="run only benchmarks whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(n for n, _ in discover()))
        return 0
    try:
        report = run(args.only, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    print(format_table(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"\nwrote {args.out}")
    return 0
