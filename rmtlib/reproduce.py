"""Notebook runner: execute the book's notebooks with papermill and record their results.

Usage::

    python -m rmtlib.reproduce [--profile quick|default|paper] [--only NAME ...] [--force]
                               [--workers N | --scheduler ADDRESS] [--jobs J] [--retries R]
                               [--benchmark]

Runs are declared in ``notebooks/runs.yml``, one entry per run name::

    mp_law:
      notebook: theory/mp_law.ipynb        # path under notebooks/
      title: Marchenko-Pastur law
      depends_on: []                       # run names, or the word ``all`` (every other run)
      data: []                             # data sets it loads (rmtlib.data names; hashed)
      exclusive: false                     # true: on a cluster, no other notebook runs beside it
      params:
        base:    {seed: 0, n: 400}          # shared by every profile
        quick:   {n: 200}                   # quick    = base + quick
        default: {n: 1000}                  # default  = base + default
        paper:   {n: 4000}                  # paper    = base + default + paper

For each run (dependencies first) the runner

1. resolves the parameters of the profile and adds ``profile`` and ``results_dir``
   (absolute path of ``results/<profile>/<name>``); ``seed`` must be among the configured
   parameters. Every name must be assigned a literal default in the notebook's cell tagged
   ``parameters``, with a compatible type (an int where a float is expected is fine; a ``None``
   default accepts anything): otherwise it stops before executing anything;
2. computes the *input hash*: SHA-256 over the notebook's cells (type, source, tags; outputs and
   other metadata ignored), the resolved parameters without ``results_dir``, the run's config
   entry, every ``.py`` file of ``rmtlib/``, the installed versions of the packages that compute
   results (:data:`PACKAGES`), the MD5s of the data sets listed under ``data:`` (located and
   verified by :func:`rmtlib.data.prepare_dataset`, downloaded if missing), the files listed
   under ``inputs:`` and the input hashes of its dependencies (:func:`input_components`; they
   are kept in ``provenance.json``, so that a re-execution says which input changed,
   :func:`changed_inputs`);
3. if ``results/<profile>/<name>/provenance.json`` records that hash and the ``run_id`` of each
   dependency's current results, the run is up to date and is not executed; otherwise it
   executes the notebook with papermill (working directory: the notebook's folder; kernel: this
   interpreter) into ``results/<profile>/<name>/executed.ipynb``, the kernel's output into
   ``run.log`` and the task log of :mod:`rmtlib.parallel` into ``tasks.jsonl`` (its progress
   lines are printed as they come), and writes ``params.json`` and, last, ``provenance.json``
   (with where it ran, its task count and task time, and why it executed);
4. copies ``executed.ipynb`` to ``book/executed/<notebook path>`` when the bytes differ (unchanged
   files keep their mtime, so Sphinx rebuilds nothing).

A failing run exits non-zero with one line naming the notebook, the failing cell index and the
exception; its book copy is deleted (and so are those of the runs depending on it), the previous
results in ``results/<profile>/<name>/`` are left as they were (nothing is lost; they record the
inputs they came from, so they are not mistaken for current ones) and the failed attempt, with the
partial executed notebook, is kept in ``results/<profile>/<name>.failed/failed.ipynb``.

Scale-out (``--workers N``: a Dask ``LocalCluster`` started and stopped here; ``--scheduler
ADDRESS`` or ``$RMTLIB_SCHEDULER``: an existing cluster): independent notebooks execute
concurrently, each after its dependencies, in kernels on this machine that receive the
scheduler's address, so that their :func:`rmtlib.parallel.map_tasks` tasks go to the workers
(see ``book/scale_out.md``).  Ctrl-C stops the kernels and the cluster started here and leaves
the previous results of the interrupted runs as they were.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .parallel import DEFAULT_RETRIES, ENV_RETRIES, ENV_SCHEDULER, ENV_TASK_LOG
from .results import EXECUTED, FAILED, PARAMS, PROVENANCE, find_root, read_json, write_json
from .validation import check_int, check_str

__all__ = ["PROFILES", "INJECTED", "ConfigError", "Layout", "RunSpec", "Outcome", "load_config",
           "notebook_parameters", "validate_parameters", "input_hashes", "input_components",
           "changed_inputs", "package_versions", "data_checksums", "describe_executor", "kernel_name",
           "merge_parameters", "source_hash", "reproduce", "benchmark_scale_out", "main", "PACKAGES", "LOG", "TASK_LOG"]

PROFILES = ("quick", "default", "paper")
INJECTED = ("profile", "results_dir")
ENTRY_KEYS = {"notebook", "title", "depends_on", "inputs", "data", "params", "exclusive"}
#: Installed distributions whose versions are part of every run's input hash (they compute results).
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "matplotlib", "threadpoolctl",
            "mpmath", "powerlaw", "PyYAML", "papermill", "nbclient", "ipykernel", "jupyter-book")
LOG = "run.log"  # the kernel's stdout and stderr of a run, next to its results
TASK_LOG = "tasks.jsonl"  # rmtlib.parallel's progress and accounting lines of a run
HASH_FORMAT = 2
PARAM_LEVELS = ("base", "quick", "default", "paper")
QUICK_BUDGET_S = 60  # per run: CI executes every quick run (all of CI must stay under 25 min)
KERNEL_NAME = "python3"
PRIVATE_KERNEL_NAME = "rmtlib-venv"


class ConfigError(ValueError):
    """The run configuration or a notebook's ``parameters`` cell is invalid (nothing was executed)."""


@dataclass(frozen=True)
class Layout:
    """Where the runner reads and writes; every path can be overridden (tests use a tmp dir)."""

    root: Path
    config: Path | None = None  # default root/notebooks/runs.yml
    notebooks: Path | None = None  # default root/notebooks
    results: Path | None = None  # default root/results
    book: Path | None = None  # default root/book/executed
    package: Path | None = None  # default root/rmtlib (hashed, and put first on the kernel's path)

    def __post_init__(self):
        root = Path(self.root).resolve()
        defaults = {"config": root / "notebooks" / "runs.yml", "notebooks": root / "notebooks",
                    "results": root / "results", "book": root / "book" / "executed",
                    "package": root / "rmtlib"}
        object.__setattr__(self, "root", root)
        for key, default in defaults.items():
            value = getattr(self, key)
            object.__setattr__(self, key, default if value is None else Path(value).resolve())


@dataclass(frozen=True)
class RunSpec:
    """One run of a profile: ``params`` are the resolved configured parameters (with ``seed``)."""

    name: str
    notebook: Path  # relative to Layout.notebooks
    title: str
    depends_on: tuple[str, ...]
    params: dict
    inputs: tuple[Path, ...] = ()  # data files (relative to Layout.notebooks) the notebook reads
    data: tuple[str, ...] = ()  # data sets (rmtlib.data names) the notebook loads
    #: on a cluster, execute with no other notebook beside it (a notebook that measures times);
    #: it changes when a run executes, not what it computes, so it is not part of the input hash
    exclusive: bool = False

    def book_path(self, layout: Layout) -> Path:
        return layout.book / self.notebook

    def results_dir(self, layout: Layout, profile: str) -> Path:
        return layout.results / profile / self.name


@dataclass
class Outcome:
    """What happened to one run: ``status`` is executed, cached, failed or blocked."""

    name: str
    status: str
    message: str = ""
    seconds: float = 0.0
    input_hash: str = ""
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- configuration

def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


def load_config(layout: Layout, profile: str) -> dict[str, RunSpec]:
    """Read and check ``runs.yml``; return the runs of ``profile`` in dependency order."""
    import yaml

    _check_profile(profile)
    where = layout.config
    try:
        raw = yaml.safe_load(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"run configuration {where} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a mapping of run names to entries")
    specs: dict[str, RunSpec] = {}
    wants_all: set[str] = set()
    seen_notebooks: dict[Path, str] = {}
    for name, entry in raw.items():
        ctx = f"{where.name}: run {name!r}"
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{ctx}: run names may only use letters, digits, '_' and '-'")
        if not isinstance(entry, dict):
            raise ConfigError(f"{ctx}: expected a mapping with keys {sorted(ENTRY_KEYS)}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ConfigError(f"{ctx}: unknown key(s) {sorted(unknown)}; allowed: {sorted(ENTRY_KEYS)}")
        nb = entry.get("notebook")
        if (not isinstance(nb, str) or not nb.endswith(".ipynb") or Path(nb).is_absolute()
                or ".." in Path(nb).parts):
            raise ConfigError(f"{ctx}: 'notebook' must be a .ipynb path relative to {layout.notebooks}")
        if not (layout.notebooks / nb).is_file():
            raise ConfigError(f"{ctx}: notebook {layout.notebooks / nb} does not exist")
        if Path(nb) in seen_notebooks:
            raise ConfigError(f"{ctx}: notebook {nb} is already used by run {seen_notebooks[Path(nb)]!r}")
        seen_notebooks[Path(nb)] = name
        title = entry.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ConfigError(f"{ctx}: needs a non-empty 'title'")
        deps = entry.get("depends_on") or []
        if deps == "all":
            wants_all.add(name)
            deps = []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise ConfigError(f"{ctx}: 'depends_on' must be a list of run names or the word 'all'")
        inputs = entry.get("inputs") or []
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ConfigError(f"{ctx}: 'inputs' must be a list of file paths relative to {layout.notebooks}")
        for item in inputs:
            if Path(item).is_absolute() or ".." in Path(item).parts or not (layout.notebooks / item).is_file():
                raise ConfigError(f"{ctx}: input {item!r} is not a file under {layout.notebooks}")
        data = entry.get("data") or []
        if not isinstance(data, list):
            raise ConfigError(f"{ctx}: 'data' must be a list of data set names (mnist, fashion_mnist)")
        try:
            data = tuple(dict.fromkeys(_canonical_dataset(d) for d in data))
        except ValueError as exc:
            raise ConfigError(f"{ctx}: 'data': {exc}") from None
        exclusive = entry.get("exclusive", False)
        if not isinstance(exclusive, bool):
            raise ConfigError(f"{ctx}: 'exclusive' must be true or false, got {exclusive!r}")
        specs[name] = RunSpec(name, Path(nb), title.strip(), tuple(deps),
                              _resolve_params(ctx, entry.get("params"), profile),
                              tuple(Path(i) for i in inputs), data, exclusive)
    for name in wants_all:
        others = tuple(n for n in specs if n not in wants_all)
        specs[name] = replace(specs[name], depends_on=others)
    for spec in specs.values():
        for dep in spec.depends_on:
            if dep not in specs:
                raise ConfigError(f"{where.name}: run {spec.name!r} depends on unknown run {dep!r}")
    return {name: specs[name] for name in _topological(specs)}


def _resolve_params(ctx: str, params: Any, profile: str) -> dict:
    params = params or {}
    if not isinstance(params, dict) or set(params) - set(PARAM_LEVELS):
        raise ConfigError(f"{ctx}: 'params' must be a mapping with keys among {list(PARAM_LEVELS)}")
    chain = {"quick": ("base", "quick"), "default": ("base", "default"),
             "paper": ("base", "default", "paper")}[profile]
    resolved: dict = {}
    for level in chain:
        values = params.get(level) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{ctx}: params.{level} must be a mapping of parameter names to values")
        resolved.update(values)
    clash = set(resolved) & set(INJECTED)
    if clash:
        raise ConfigError(f"{ctx}: {sorted(clash)} are set by the runner; remove them from params")
    seed = resolved.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{ctx}: every run needs params.base.seed, a non-negative integer (got {seed!r})")
    return resolved


def _topological(specs: dict[str, RunSpec]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(f"dependency cycle: {' -> '.join(path + (name,))}")
        state[name] = 1
        for dep in specs[name].depends_on:
            visit(dep, path + (name,))
        state[name] = 2
        order.append(name)

    for name in specs:
        visit(name, ())
    return order


# ----------------------------------------------------------------------------- parameters

def _read_notebook(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read notebook ({exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ConfigError(f"{path}: not a Jupyter notebook (no 'cells' list)")
    return nb


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parameters_cell(nb: dict, path: Path) -> int:
    found = [i for i, c in enumerate(nb["cells"])
             if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise ConfigError(f"{path}: needs exactly one code cell tagged 'parameters', found {len(found)}")
    return found[0]


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Names and literal defaults of the notebook's ``parameters`` cell.

    The cell may only hold ``name = literal`` (or ``name: type = literal``) lines and comments.
    """
    path = Path(path)
    nb = _read_notebook(path)
    source = _source(nb["cells"][_parameters_cell(nb, path)])
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"{path}: parameters cell is not plain Python "
                          f"({exc.msg}, line {exc.lineno})") from None
    defaults: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            target, value = stmt.target.id, stmt.value
        else:
            raise ConfigError(f"{path}: parameters cell line {stmt.lineno}: only `name = literal` "
                              "assignments are allowed there")
        try:
            defaults[target] = ast.literal_eval(value)
        except ValueError:
            raise ConfigError(f"{path}: parameter {target!r} needs a literal default (number, string, "
                              f"bool, None, list, dict), got `{ast.unparse(value)}`") from None
    return defaults


def _compatible(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        kinds = {type(d) for d in default}
        return len(kinds) != 1 or all(_compatible(default[0], v) for v in value)
    return isinstance(value, type(default))


def validate_parameters(path: str | os.PathLike, params: dict) -> None:
    """Check that every name in ``params`` is a parameter of the notebook, with a compatible type."""
    defaults = notebook_parameters(path)
    for name, value in params.items():
        if name not in defaults:
            hint = " (the runner injects it: define it in the parameters cell)" if name in INJECTED else ""
            raise ConfigError(f"{path}: unknown parameter {name!r}{hint}; the parameters cell defines "
                              f"{', '.join(sorted(defaults)) or 'nothing'}")
        if not _compatible(defaults[name], value):
            raise ConfigError(f"{path}: parameter {name!r} = {value!r} has type {type(value).__name__}, "
                              f"but its default {defaults[name]!r} is a {type(defaults[name]).__name__}")


# ----------------------------------------------------------------------------- hashing

def _sha(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_hash(package: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and bytes of every ``.py`` file under ``package``, sorted."""
    package = Path(package)
    h = hashlib.sha256()
    for file in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


def _notebook_hash(path: Path) -> str:
    cells = [{"type": c.get("cell_type"), "source": _source(c), "tags": c.get("metadata", {}).get("tags", [])}
             for c in _read_notebook(path)["cells"]]
    return _sha(cells)


def _hashed_params(spec: RunSpec, profile: str) -> dict:
    return {**spec.params, "profile": profile}  # results_dir is machine specific: not hashed


def _canonical_dataset(name) -> str:
    from .data import canonical_name  # torch-free until a run declares data

    return canonical_name(name)


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None: not installed)."""
    return {n: _version(n) for n in names}


def data_checksums(names) -> dict[str, Any]:
    """Checksums of the files of each data set in ``names`` (see :mod:`rmtlib.data`).

    Each data set is located (and, if missing, downloaded) and verified by
    :func:`rmtlib.data.prepare_dataset`, which checks every file's size and MD5 (once; a stamp
    remembers it); the MD5s of its files are returned.  A data set that cannot be prepared
    gives the text of the error instead, so the key still changes when the data appears (the
    notebook then reports the error in its own cell)."""
    out: dict[str, Any] = {}
    for name in names:
        from .data import file_md5s, prepare_dataset

        try:
            prepare_dataset(name, download=True)
        except (OSError, ValueError) as exc:
            out[name] = f"unavailable: {_one_line(exc)}"
        else:
            out[name] = file_md5s(name)
    return out


def input_components(specs: dict[str, RunSpec], layout: Layout, profile: str) -> dict[str, dict]:
    """What each run's input hash is computed from (``specs`` in dependency order): SHA-256 of
    the notebook's cells, the hashed parameters, the config entry, the ``rmtlib`` source hash,
    :func:`package_versions`, :func:`data_checksums` of its ``data:``, the SHA-256 of each of
    its ``inputs:`` and the input hashes of its dependencies.  Recorded in ``provenance.json``
    so that :func:`changed_inputs` can say why a run executed again."""
    rmtlib_hash, versions = source_hash(layout.package), package_versions()
    checksums = data_checksums(dict.fromkeys(d for spec in specs.values() for d in spec.data))
    components: dict[str, dict] = {}
    hashes: dict[str, str] = {}
    for name, spec in specs.items():
        components[name] = {
            "format": HASH_FORMAT,
            "notebook": _notebook_hash(layout.notebooks / spec.notebook),
            "params": _hashed_params(spec, profile),
            "entry": {"notebook": spec.notebook.as_posix(), "title": spec.title,
                      "depends_on": list(spec.depends_on), "data": list(spec.data)},
            "rmtlib": rmtlib_hash,
            "packages": versions,
            "data": {d: checksums[d] for d in spec.data},
            "dependencies": {d: hashes[d] for d in spec.depends_on},
            "inputs": {i.as_posix(): hashlib.sha256((layout.notebooks / i).read_bytes()).hexdigest()
                       for i in spec.inputs},
        }
        hashes[name] = _sha(components[name])
    return components


def input_hashes(specs: dict[str, RunSpec], layout: Layout, profile: str,
                 components: dict[str, dict] | None = None) -> dict[str, str]:
    """Input hash of every run (``specs`` in dependency order): SHA-256 of its
    :func:`input_components`."""
    components = components or input_components(specs, layout, profile)
    return {name: _sha(components[name]) for name in specs}


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def changed_inputs(old: dict | None, new: dict) -> list[str]:
    """Plain-language differences between two :func:`input_components` of a run, e.g.
    ``["package torch 2.14.1 -> 2.15.0", "parameter n 1000 -> 2000"]``; ``old`` None (or of
    another format): ``["no previous results"]``."""
    if not isinstance(old, dict) or old.get("format") != new.get("format"):
        return ["no previous results" if not old else "previous results from an older runner"]
    out: list[str] = []
    plain = {"notebook": "notebook source changed", "entry": "run entry in runs.yml changed",
             "rmtlib": "rmtlib source changed"}
    named = {"packages": "package", "params": "parameter", "data": "data set", "inputs": "input file",
             "dependencies": "dependency"}
    for key, text in plain.items():
        if old.get(key) != new.get(key):
            out.append(text)
    for key, what in named.items():
        a, b = old.get(key) or {}, new.get(key) or {}
        for item in sorted(set(a) | set(b)):
            if a.get(item) == b.get(item):
                continue
            if key in ("packages", "params"):
                out.append(f"{what} {item} {_brief(a.get(item, 'absent'))} -> {_brief(b.get(item, 'absent'))}")
            elif key == "dependencies":
                out.append(f"{what} {item} has new inputs")
            else:
                out.append(f"{what} {item} changed")
    return out


# ----------------------------------------------------------------------------- execution

def kernel_name() -> str:
    """Name of a kernelspec that starts this interpreter (``sys.executable``).

    ``python3`` normally does (jupyter_client substitutes ``sys.executable`` for a bare
    ``python``). If it points elsewhere (e.g. a user-wide kernelspec of another Python), a private
    kernelspec is installed into this virtual environment -- never into user-wide folders.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def starts_us(name: str) -> bool:
        try:
            exe = KernelSpecManager().get_kernel_spec(name).argv[0]
        except NoSuchKernel:
            return False
        bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
        return exe in bare or os.path.abspath(exe) == os.path.abspath(sys.executable)

    for name in (KERNEL_NAME, PRIVATE_KERNEL_NAME):
        if starts_us(name):
            return name
    if sys.prefix == sys.base_prefix:
        raise RuntimeError(f"the Jupyter kernel {KERNEL_NAME!r} does not start {sys.executable}; run "
                           "inside the project's virtual environment (make setup)")
    from ipykernel.kernelspec import install

    install(kernel_name=PRIVATE_KERNEL_NAME, display_name="Python (rmtlib .venv)", prefix=sys.prefix)
    print(f"note: installed kernelspec {PRIVATE_KERNEL_NAME!r} into {sys.prefix} because "
          f"{KERNEL_NAME!r} does not start {sys.executable}", file=sys.stderr)
    return PRIVATE_KERNEL_NAME


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def merge_parameters(nb: dict, profile: str | None = None) -> dict:
    """The reader's version of an executed notebook: papermill's ``injected-parameters`` cell
    is removed and its values are written into the cell tagged ``parameters`` in place of the
    defaults (each assignment keeps its comment), so the page shows one parameters block, with
    the values the run used, under a first line saying so.  ``nb`` is not modified."""
    cells = nb.get("cells", [])
    injected = [i for i, c in enumerate(cells)
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    params = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"
              and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not injected or len(params) != 1:
        return nb
    values: dict[str, str] = {}
    injected_source = "".join(_source(cells[j]) for j in injected)
    for stmt in ast.parse(injected_source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            values[stmt.targets[0].id] = ast.get_source_segment(injected_source, stmt.value)
    source = _source(cells[params[0]])
    lines = source.splitlines()
    tree = ast.parse(source)
    for stmt in reversed(tree.body):  # right to left, so earlier offsets stay valid
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
        if not isinstance(target, ast.Name) or target.id not in values:
            continue
        v = stmt.value
        first, last = v.lineno - 1, v.end_lineno - 1
        head, tail = lines[first][:v.col_offset], lines[last][v.end_col_offset:]
        lines[first:last + 1] = [head + values[target.id] + tail]
    label = f"# The values this page was computed with{f' (profile {profile!r})' if profile else ''};"
    label += " defaults and meanings: the notebook's source in notebooks/"
    new_cells = []
    for i, c in enumerate(cells):
        if i in injected:
            continue
        if i == params[0]:
            c = {**c, "source": "\n".join([label, *lines])}
        new_cells.append(c)
    return {**nb, "cells": new_cells}


def _publish(src: Path, dst: Path, profile: str | None = None) -> bool:
    """Write the reader's version of the executed notebook ``src`` (:func:`merge_parameters`)
    to ``dst`` unless the bytes are identical; return whether it wrote."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    data = (json.dumps(merge_parameters(nb, profile), indent=1, ensure_ascii=False) + "\n").encode()
    if dst.is_file() and dst.read_bytes() == data:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    return True


def _provenance(folder: Path) -> dict | None:
    """The provenance of a complete run in ``folder`` (None if incomplete or unreadable)."""
    if not (folder / PROVENANCE).is_file() or not (folder / EXECUTED).is_file():
        return None
    try:
        return read_json(folder / PROVENANCE)
    except ValueError:
        return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass
class _Context:
    """What every execution of one :func:`reproduce` call shares."""

    layout: Layout
    profile: str
    kernel: str
    rmtlib_hash: str
    git: tuple
    executor: dict
    env: dict  # kernel environment: name -> value (None: removed)
    progress_bar: bool
    echo: Any  # callable(text) printing one line on the console
    stopping: threading.Event = field(default_factory=threading.Event)
    kernels: set = field(default_factory=set)  # kernel managers started (to stop them on Ctrl-C)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _kernel_manager_class(ctx: _Context, env: dict, cwd: Path, nice: int = 0):
    """A kernel manager that starts its kernel with ``env``, in ``cwd`` (papermill's own
    ``cwd`` changes the working directory of the whole process, which concurrent runs cannot
    share) and ``nice`` steps below the runner's CPU priority (``nice -n``, which execs the
    kernel: its process id stays the one Ctrl-C stops), and registers itself so that Ctrl-C
    can stop it."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return ["nice", "-n", str(nice), *cmd] if nice else cmd

        async def start_kernel(self, **kw):
            full = {**os.environ, **(kw.pop("env", None) or {})}
            for key, value in env.items():
                if value is None:
                    full.pop(key, None)
                else:
                    full[key] = value
            kw["env"], kw["cwd"] = full, str(cwd)
            with ctx.lock:
                ctx.kernels.add(self)
            return await super().start_kernel(**kw)

    return RunKernelManager


#: CPU priority steps (``nice``) below the runner of a kernel sharing the cores with the workers
KERNEL_NICE = 10


def _shared_core_settings(spec: RunSpec, ctx: _Context) -> tuple[dict[str, str], int]:
    """Kernel settings for a run whose kernel shares this machine's cores with the workers of a
    local cluster (not an ``exclusive`` run, which runs alone): its environment and its CPU
    priority steps (``nice``).

    - ``OMP_WAIT_POLICY=PASSIVE``, unless the environment sets it.  A kernel's torch (GNU
      OpenMP) threads otherwise spin between parallel regions on cores the busy workers need:
      beside a training process, a kernel's two-thread matrix work did 18 iterations/s spinning
      against 52 passive, and the training slowed 1.14x; alone, the spinning is the faster one
      (75 against 34 iterations/s), so sequential builds, exclusive runs and kernels of a
      remote cluster keep it.
    - :data:`KERNEL_NICE` (when ``nice`` is on the path): the workers' tasks come first, the
      kernels' own code (plots, evaluations) takes the cores they leave.  With a kernel's code
      preempting them, two workers' training tasks took 3.25-3.36 CPU-s each against
      3.05-3.06 with the kernel niced (cache refills after each preemption); the kernel's work
      per CPU-second was the same.  Nothing waits on a starved kernel while both workers are
      busy, and alone it runs at full speed.

    Neither changes a result: the threads split the work as before, and in the same order."""
    if ctx.executor.get("kind") != "local_cluster" or spec.exclusive:
        return {}, 0
    env = {} if "OMP_WAIT_POLICY" in os.environ else {"OMP_WAIT_POLICY": "PASSIVE"}
    return env, KERNEL_NICE if shutil.which("nice") else 0


def _stop_kernels(ctx: _Context) -> None:
    """Kill the kernels this call started that are still alive (by their process ids)."""
    with ctx.lock:
        managers = list(ctx.kernels)
    for km in managers:
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


class _Log:
    """The kernel's stdout and stderr of a run, written to ``run.log`` as they arrive."""

    def __init__(self, handle, lock):
        self.handle, self.lock = handle, lock

    def write(self, text: str) -> int:
        with self.lock:
            self.handle.write(text)
            self.handle.flush()
        return len(text)

    def flush(self) -> None:
        with self.lock:
            self.handle.flush()


def _task_totals(path: Path) -> tuple[int, float, float]:
    """Task count, summed task (wall) seconds and summed task CPU seconds of the ``batch`` lines
    of a run's task log."""
    count, seconds, cpu = 0, 0.0, 0.0
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                event = json.loads(line)
                if event.get("event") == "batch":
                    count += int(event["tasks"])
                    seconds += float(event["task_seconds"])
                    cpu += float(event.get("task_cpu_seconds") or 0)
    return count, round(seconds, 3), round(cpu, 3)


def _execute(spec: RunSpec, ctx: _Context, digest: str, components: dict, reasons: list[str],
             dependency_runs: dict) -> Outcome:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    layout, profile = ctx.layout, ctx.profile
    folder = spec.results_dir(layout, profile)
    nb_path = layout.notebooks / spec.notebook
    rel = nb_path.relative_to(layout.root) if nb_path.is_relative_to(layout.root) else nb_path
    # The previous results stay intact until this run succeeds: they are set aside, then
    # deleted on success or put back on failure (the failed attempt goes to <name>.failed/;
    # an interrupted one is deleted).
    previous = folder.with_name(f"{folder.name}.previous")
    failed_dir = folder.with_name(f"{folder.name}.failed")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    folder.mkdir(parents=True)

    def restore() -> None:
        if previous.exists():
            os.replace(previous, folder)

    # relative to the notebook's folder (its working directory), so that the executed
    # notebook shown in the book names no machine-specific path
    params = {**spec.params, "profile": profile,
              "results_dir": os.path.relpath(folder, nb_path.parent)}
    write_json(folder / PARAMS, params)
    settings, nice = _shared_core_settings(spec, ctx)  # the kernel's and its provenance
    env = {**ctx.env, ENV_TASK_LOG: str(folder / TASK_LOG), **settings}
    start = time.time()
    logging.getLogger("papermill").setLevel(logging.ERROR)  # its parameter warnings: validated above
    log_lock = threading.Lock()
    try:
        with open(folder / LOG, "w", encoding="utf-8") as handle:
            log = _Log(handle, log_lock)
            pm.execute_notebook(nb_path, folder / EXECUTED, parameters=params, kernel_name=ctx.kernel,
                                language="python", progress_bar=ctx.progress_bar,
                                stdout_file=log, stderr_file=log,
                                kernel_manager_class=_kernel_manager_class(ctx, env, nb_path.parent, nice),
                                config=Config({"KernelManager": {"transport_encryption": "auto"}}))
    except BaseException as exc:  # every failure is reported the same way
        if ctx.stopping.is_set() or isinstance(exc, KeyboardInterrupt):
            shutil.rmtree(folder, ignore_errors=True)  # no partial results; the previous back
            restore()
            if not isinstance(exc, Exception):
                raise
            return Outcome(spec.name, "interrupted", f"run {spec.name!r} interrupted", time.time() - start,
                           digest)
        if isinstance(exc, PapermillExecutionError):
            first = _parameters_cell(_read_notebook(nb_path), nb_path)
            index = exc.cell_index - (1 if exc.cell_index > first + 1 else 0)  # minus injected cell
            where = f"cell index {index}"
            error = f"{exc.ename}: {_one_line(exc.evalue)}" if exc.evalue else exc.ename
        elif isinstance(exc, Exception):
            where, error = "before or outside a cell", f"{type(exc).__name__}: {_one_line(exc)}"
        else:
            raise
        kept = ""
        if (folder / EXECUTED).exists():
            os.replace(folder / EXECUTED, folder / FAILED)
            kept = f" (partial notebook: {failed_dir / FAILED}; log: {failed_dir / LOG})"
        shutil.rmtree(failed_dir, ignore_errors=True)
        os.replace(folder, failed_dir)
        restore()
        return Outcome(spec.name, "failed", f"run {spec.name!r} failed in {rel}, {where}: {error}{kept}",
                       time.time() - start, digest)
    end = time.time()
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(failed_dir, ignore_errors=True)
    tasks, task_seconds, task_cpu = _task_totals(folder / TASK_LOG)
    git = ctx.git
    write_json(folder / PROVENANCE, {
        "name": spec.name, "title": spec.title, "profile": profile, "notebook": spec.notebook.as_posix(),
        "input_hash": digest, "rmtlib_source_hash": ctx.rmtlib_hash, "rmtlib_version": _rmtlib_version(),
        "git_commit": git[0], "git_dirty": git[1], "seed": spec.params["seed"],
        "start_utc": _utc(start), "end_utc": _utc(end), "wall_time_s": round(end - start, 3),
        "python": platform.python_version(), "torch": _version("torch"), "numpy": _version("numpy"),
        "papermill": _version("papermill"), "cpu_count": os.cpu_count(), "hostname": socket.gethostname(),
        "run_id": uuid.uuid4().hex, "dependency_run_ids": dependency_runs,
        "executor": ctx.executor, "kernel_settings": settings, "kernel_nice": nice, "tasks": tasks,
        "task_time_s": task_seconds, "task_cpu_s": task_cpu,
        "executed_because": reasons, "input_components": components,
    })
    return Outcome(spec.name, "executed", "", end - start, digest, {"because": reasons})


def describe_executor(executor: dict | None) -> str:
    """One line for a run's ``provenance["executor"]``: ``sequential``, ``local cluster, 2
    workers`` or ``scheduler tcp://host:port, 4 workers``."""
    if not isinstance(executor, dict) or executor.get("kind") in (None, "sequential"):
        return "sequential"
    n = executor.get("workers")
    workers = "" if n is None else f", {n} worker{'s' if n != 1 else ''}"
    if executor["kind"] == "local_cluster":
        return f"local cluster{workers}"
    return f"scheduler {executor.get('address')}{workers}"


def _prepare_worker() -> str:
    """Import what the book's tasks need (torch, pandas, :mod:`rmtlib.studies`) in this worker
    process; :func:`_cluster` submits it to every worker of a new cluster (one task each, not
    waited for), so that the imports overlap the start of the first notebooks instead of
    delaying their first tasks (a cold import of torch takes seconds on a loaded machine).
    Returns torch's version."""
    import torch

    from . import studies  # noqa: F401  (the import is the point)

    return torch.__version__


#: Variables of Dask's ``distributed.nanny.pre-spawn-environ`` that a local cluster started here
#: leaves out of its workers' environment.  Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` to hand
#: freed memory back to the system sooner; but setting any of glibc's malloc thresholds turns
#: off its *dynamic* mmap threshold, so every allocation above 128 KiB (a batch of activations)
#: becomes a fresh ``mmap`` whose pages fault in again: training 784-500-500-10 for 2 epochs on
#: 20,000 images took 4.3 s on a worker against 2.9 s in a plain process (3.4-3.9 s in a plain
#: process started with the variable), and 2.9 s on a worker without it.
MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_",)


#: Variables Dask's nanny writes into this process's environment besides its configured
#: ``pre-spawn-environ``: ``PYTHONHASHSEED`` (its workers' fixed hash seed) and
#: ``__DASK_PARENT_PID`` (for process titles).  They are undone as the configured ones are.
NANNY_VARIABLES = ("PYTHONHASHSEED", "__DASK_PARENT_PID")


#: Dask settings of a local cluster started here (its scheduler, nannies and workers).  Idle, a
#: 2-worker cluster's processes used 0.067 cores with Dask's defaults against 0.017 with these
#: (measured over 30 s): the 20 ms tick of every server's event-loop monitor (0.024 cores), the
#: workers' statistical profiler sampling their task threads every 10 ms (0.013, and 1-2 % more CPU
#: per training task), the 500 ms system monitor and the 100 ms memory monitor.  On a machine
#: whose cores the workers and kernels share, that is CPU taken from the tasks.  None of them
#: changes what runs or a result: they feed Dask's dashboard and its warnings (the memory limit is
#: still enforced, checked once a second).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _worker_malloc_settings() -> dict:
    """The glibc malloc variables of this (worker) process's environment that are set."""
    return {k: os.environ[k] for k in MALLOC_VARIABLES if k in os.environ}


@contextlib.contextmanager
def _cluster(workers: int | None, scheduler: str | None, echo=print):
    """The executor of a :func:`reproduce` call: ``(provenance record, scheduler address,
    kernel environment)``; a local cluster started here is closed on the way out (also on
    Ctrl-C or an error).  The workers import torch and rmtlib right away
    (:func:`_prepare_worker`).

    A local cluster's workers start without :data:`MALLOC_VARIABLES`, as the notebook kernels
    do.  Dask's nanny writes the variables it gives a worker into *this* process's environment
    before each spawn; the kernel environment returned undoes that for the kernels (and the
    environment is restored on the way out).  For an existing cluster, ``echo`` warns when
    its workers run with :data:`MALLOC_VARIABLES` set."""
    if not (workers or scheduler):
        yield {"kind": "sequential"}, None, {}
        return
    import dask
    from distributed import Client, LocalCluster

    spawned = list(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    spawned += NANNY_VARIABLES
    before = {k: os.environ.get(k) for k in spawned}
    cluster = None
    try:
        if scheduler:
            address = scheduler
        else:
            with dask.config.set({**{f"distributed.nanny.pre-spawn-environ.{k}": None
                                     for k in MALLOC_VARIABLES if k in spawned},
                                  **LOCAL_CLUSTER_CONFIG}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
            address = cluster.scheduler_address
        with Client(address, set_as_default=False, timeout="30s") as client:
            n = len(client.scheduler_info().get("workers", {}))
            if n == 0:
                raise RuntimeError(f"the Dask scheduler at {address} has no workers: start some "
                                   f"(`dask worker {address}`)")
            warm = [client.submit(_prepare_worker, key=f"prepare-worker-{uuid.uuid4().hex[:8]}",
                                  workers=[w], allow_other_workers=False, pure=False)
                    for w in client.scheduler_info()["workers"]]
            if cluster is None:
                settings = {s for v in client.run(_worker_malloc_settings).values()
                            for s in (f"{k}={x}" for k, x in v.items())}
                if settings:
                    echo(f"warning: workers of {address} run with {', '.join(sorted(settings))} "
                         "(Dask's nanny sets it): training there is up to 1.5x slower than in a "
                         "plain process; start them without it (book/scale_out.md)")
                yield {"kind": "scheduler", "address": scheduler, "workers": n}, address, {}
            else:
                yield ({"kind": "local_cluster", "workers": workers, "threads_per_worker": 1},
                       address, before)
            del warm
    finally:
        if cluster is not None:
            cluster.close()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rmtlib_version() -> str:
    from . import __version__

    return __version__


def _selection(specs: dict[str, RunSpec], only: list[str] | None) -> dict[str, RunSpec]:
    """The runs ``only`` names and their dependencies (all runs when ``only`` is empty), in
    dependency order."""
    if not only:
        return specs
    unknown = [n for n in only if n not in specs]
    if unknown:
        raise ConfigError(f"unknown run(s) {unknown}; known: {', '.join(specs)}")
    wanted: set[str] = set()
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(specs[name].depends_on)
    return {n: s for n, s in specs.items() if n in wanted}


def reproduce(profile: str = "default", only: list[str] | None = None, *, layout: Layout | None = None,
              force: bool = False, workers: int | None = None, scheduler: str | None = None,
              jobs: int | None = None, retries: int | None = None) -> list[Outcome]:
    """Bring the runs of ``profile`` up to date (``only``: these runs and their dependencies).

    ``force`` executes the selected runs (``only``, else all) even when their inputs are unchanged.

    Where: neither ``workers`` nor ``scheduler`` -- sequentially, every task in the notebook's
    kernel; ``workers=N`` -- a Dask ``LocalCluster`` of N single-threaded worker processes,
    started here and closed at the end (also on Ctrl-C); ``scheduler="tcp://host:port"`` -- an
    existing Dask cluster.  With a cluster, up to ``jobs`` notebooks (default: the number of
    workers) execute at once, each after its dependencies, in kernels on this machine; the
    tasks of their :func:`rmtlib.parallel.map_tasks` calls go to the cluster (retried
    ``retries`` times, default :data:`rmtlib.parallel.DEFAULT_RETRIES`).  The metrics do not
    depend on where they were computed.

    Raises :class:`ConfigError` before executing anything if the configuration or a notebook's
    parameters are invalid; execution failures are returned as outcomes with status ``failed``
    (their dependents: ``blocked``).  Ctrl-C stops the kernels and the cluster started here,
    deletes the interrupted runs' partial results (their previous results stay) and re-raises.
    """
    from tqdm.auto import tqdm

    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    if scheduler is not None:
        scheduler = check_str(scheduler, "scheduler")
        if workers is not None:
            raise ValueError(f"give workers ({workers}) or scheduler ({scheduler!r}), not both")
    if jobs is not None:
        jobs = check_int(jobs, "jobs", minimum=1)
    if retries is not None:
        retries = check_int(retries, "retries", minimum=0)
    layout = layout or Layout(find_root())
    specs = _selection(load_config(layout, profile), only)
    for spec in specs.values():
        validate_parameters(layout.notebooks / spec.notebook,
                            {**spec.params, "profile": profile, "results_dir": "<injected>"})
    forced = set(only or specs) if force else set()
    components = input_components(specs, layout, profile)
    hashes = input_hashes(specs, layout, profile, components)
    rmtlib_hash = source_hash(layout.package)
    outcomes: dict[str, Outcome] = {}
    run_ids: dict[str, str | None] = {}  # run_id of each dependency's current results
    bar = tqdm(total=len(specs), desc=f"runs ({profile})", unit="run", file=sys.stderr)

    def echo(text: str) -> None:
        bar.write(text, file=sys.stderr)

    def decide(spec: RunSpec) -> tuple[Outcome | None, list[str]]:
        """The outcome of a run that needs no execution (blocked, cached), or the reasons to
        execute it."""
        folder, digest = spec.results_dir(layout, profile), hashes[spec.name]
        bad = [d for d in spec.depends_on if outcomes[d].status not in ("executed", "cached")]
        if bad:
            return Outcome(spec.name, "blocked", f"run {spec.name!r} not executed: dependency "
                           f"{', '.join(map(repr, bad))} failed", 0.0, digest), []
        dependency_runs = {d: run_ids.get(d) for d in spec.depends_on}
        previous = _provenance(folder)
        if spec.name in forced:
            return None, ["forced (--force)"]
        if previous is None:
            return None, ["no previous results" if not folder.exists() else "previous results incomplete"]
        if previous.get("input_hash") != digest:
            return None, (changed_inputs(previous.get("input_components"), components[spec.name])
                          or ["inputs changed"])
        if previous.get("dependency_run_ids", {}) != dependency_runs:
            old = previous.get("dependency_run_ids", {})
            return None, [f"dependency {d} has new results" for d in spec.depends_on
                          if old.get(d) != dependency_runs[d]] or ["dependencies changed"]
        return Outcome(spec.name, "cached", "", 0.0, digest), []

    def finish(spec: RunSpec, outcome: Outcome) -> None:
        folder = spec.results_dir(layout, profile)
        if outcome.status in ("executed", "cached"):
            shutil.rmtree(folder.with_name(f"{folder.name}.failed"), ignore_errors=True)  # obsolete
            run_ids[spec.name] = (_provenance(folder) or {}).get("run_id")
            outcome.extra["copied"] = _publish(folder / EXECUTED, spec.book_path(layout), profile)
        else:
            spec.book_path(layout).unlink(missing_ok=True)
        outcomes[spec.name] = outcome
        bar.update(1)
        if outcome.status == "executed":
            echo(f"{spec.name}: executed in {outcome.seconds:.1f} s "
                 f"({'; '.join(outcome.extra.get('because', []))})")
            if profile == "quick" and outcome.seconds > QUICK_BUDGET_S:
                echo(f"warning: quick run {spec.name!r} took {outcome.seconds:.0f} s, over the "
                     f"{QUICK_BUDGET_S} s budget per quick run: make its quick parameters smaller")

    ctx = None
    pending = list(specs.values())  # dependency order
    expected = {n: float((_provenance(spec.results_dir(layout, profile)) or {}).get("wall_time_s") or 0)
                for n, spec in specs.items()}
    priority = _critical_path(specs, expected)
    running: dict[cf.Future, RunSpec] = {}
    offsets: dict[str, int] = {}
    try:
        with _cluster(workers, scheduler, echo) as (executor, address, kernel_env):
            slots = jobs or max(1, int(executor.get("workers") or 1))
            env = {**kernel_env,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(layout.package.parent),
                                                                os.environ.get("PYTHONPATH")])),
                   ENV_SCHEDULER: address,
                   ENV_RETRIES: None if retries is None else str(retries)}
            with cf.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="rmtlib-run") as pool:
                try:
                    while pending or running:
                        # the longest remaining chain first (see _critical_path), exclusive runs
                        # last: they start only when nothing else runs, and nothing starts beside them
                        alone = any(sp.exclusive for sp in running.values())
                        for spec in sorted(pending, key=lambda sp: (sp.exclusive, -priority[sp.name])):
                            if any(d not in outcomes for d in spec.depends_on):
                                continue
                            outcome, reasons = decide(spec)
                            if outcome is not None:
                                pending.remove(spec)
                                finish(spec, outcome)
                                continue
                            if len(running) >= slots or alone or (spec.exclusive and running):
                                continue
                            pending.remove(spec)
                            alone = spec.exclusive
                            if ctx is None:
                                ctx = _Context(layout, profile, kernel_name(), rmtlib_hash,
                                               _git_state(layout.root), executor, env, slots == 1, echo)
                            spec.book_path(layout).unlink(missing_ok=True)  # never a stale page
                            dependency_runs = {d: run_ids.get(d) for d in spec.depends_on}
                            running[pool.submit(_execute, spec, ctx, hashes[spec.name],
                                                components[spec.name], reasons, dependency_runs)] = spec
                            bar.set_postfix_str(", ".join(s.name for s in running.values()))
                        if not running:
                            continue
                        done, _ = cf.wait(list(running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                        _stream_progress(running.values(), layout, profile, offsets, echo)
                        for future in done:
                            finish(running.pop(future), future.result())
                        bar.set_postfix_str(", ".join(s.name for s in running.values()))
                except BaseException:
                    # Ctrl-C (or a bug): stop the kernels first, while the cluster still runs, so
                    # that the interrupted runs are recognised as such (their partial results are
                    # deleted, the previous ones put back); then the cluster is closed
                    if ctx is not None:
                        ctx.stopping.set()
                        _stop_kernels(ctx)
                    for future in list(running):
                        with contextlib.suppress(BaseException):
                            future.result(timeout=120)
                    raise
    finally:
        bar.close()
    return list(outcomes.values())


def _critical_path(specs: dict[str, RunSpec], expected: dict[str, float]) -> dict[str, float]:
    """Each run's priority on a cluster: the expected seconds of the longest chain of runs that
    starts with it and follows its dependents (its previous wall time, 1 s when it has none), so
    that a run which others wait for starts before an independent one of the same length, and
    that without any previous times the run heading the most levels of dependents starts first."""
    dependents: dict[str, list[str]] = {n: [] for n in specs}
    for spec in specs.values():
        for dep in spec.depends_on:
            if dep in dependents:
                dependents[dep].append(spec.name)
    chain: dict[str, float] = {}
    for name in reversed(list(specs)):  # specs are in dependency order: dependents come later
        chain[name] = (expected.get(name) or 1.0) + max((chain[d] for d in dependents[name]), default=0.0)
    return chain


def _stream_progress(specs, layout: Layout, profile: str, offsets: dict, echo) -> None:
    """Print the progress lines that the running runs' tasks logged since the last call."""
    for spec in specs:
        path = spec.results_dir(layout, profile) / TASK_LOG
        try:
            with open(path, encoding="utf-8") as handle:
                handle.seek(offsets.get(spec.name, 0))
                text = handle.read()
        except OSError:
            continue
        complete = text[:text.rfind("\n") + 1]
        offsets[spec.name] = offsets.get(spec.name, 0) + len(complete.encode())
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                event = json.loads(line)
                if event.get("event") == "progress":
                    echo(f"{spec.name}: {event['label']}: {event['done']}/{event['total']} done "
                         f"({float(event['seconds']):.0f} s)")


def _timed_name(key: str) -> bool:
    """A metric or field name that names a measured time."""
    key = key.lower()
    return (key == "seconds" or key.endswith(("_s", "_ms", "_seconds")) or "second" in key
            or "wall_time" in key)


def _timing_keys(layout: Layout, profile: str, name: str) -> set[str]:
    """Metrics of a run that are measured times (they differ between any two builds): those
    declared ``timing=True`` (:meth:`rmtlib.results.Run.log`), a key naming seconds,
    milliseconds or wall time, or a doc saying wall time or giving the unit as (s) / (ms) /
    seconds."""
    path = layout.results / profile / name / "metrics.json"
    metrics = read_json(path) if path.is_file() else {}
    docs = metrics.get("doc", {})

    def timed(key: str, doc: str) -> bool:
        doc = doc.lower().rstrip()
        return (_timed_name(key) or "wall time" in doc or "(seconds)" in doc
                or doc.endswith(("seconds)", "(s)", "(ms)", "milliseconds)")) or "; seconds)" in doc)

    return set(metrics.get("timing", [])) | {k for k, d in docs.items() if timed(k, str(d))}


def _untimed(value: Any) -> Any:
    """``value`` without the fields that name measured times, at any depth (e.g. the seconds
    column of a table recorded as a mapping of columns or a list of rows)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not _timed_name(str(k))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _all_metrics(layout: Layout, profile: str, names) -> dict[str, Any]:
    out = {}
    for name in names:
        path = layout.results / profile / name / "metrics.json"
        out[name] = read_json(path).get("values") if path.is_file() else None
    return out


def cpu_times() -> dict[str, float] | None:
    """The machine's core-seconds since boot from ``/proc/stat`` (its ``cpu`` line, summed over
    all cores): ``busy`` (user, nice, system, irq, softirq), ``idle`` (idle, iowait) and
    ``steal`` (taken by the hypervisor), and the number of ``cores`` it counts; None where there
    is no ``/proc/stat``.  The difference of two readings is the machine's use in between,
    whoever used it."""
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
        tick = float(os.sysconf("SC_CLK_TCK"))
        line = lines[0].split()
    except (OSError, ValueError, IndexError):
        return None
    if line[0] != "cpu" or len(line) < 9:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (float(x) / tick for x in line[1:9])
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal,
            "cores": sum(x.startswith("cpu") and x[3:4].isdigit() for x in lines)}


def _cpu_use(before: dict | None, after: dict | None) -> dict | None:
    """Core-seconds between two :func:`cpu_times` readings, and the busy fraction of all cores."""
    if before is None or after is None:
        return None
    used = {f"{k}_core_s": round(after[k] - before[k], 1) for k in ("busy", "idle", "steal")}
    used["cores"] = after["cores"]
    total = used["busy_core_s"] + used["idle_core_s"] + used["steal_core_s"]
    used["busy_fraction"] = round(used["busy_core_s"] / total, 3) if total > 0 else None
    return used


class _CpuSampler:
    """Reads :func:`cpu_times` every ``every`` seconds in a thread while the block runs; after it,
    ``samples`` is ``[[seconds since the start, busy cores], ...]`` (the mean number of busy
    cores over each interval) and ``use`` the :func:`_cpu_use` of the whole block."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples, self.use = every, [], None
        self._stop = threading.Event()

    def __enter__(self):
        self._start, self._first = time.time(), cpu_times()
        self._thread = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        last = self._first
        while last is not None and not self._stop.wait(self.every):
            now = cpu_times()
            use = _cpu_use(last, now)
            if use and use["busy_fraction"] is not None:
                self.samples.append([round(time.time() - self._start, 1),
                                     round(use["busy_fraction"] * use["cores"], 2)])
            last = now

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.use = _cpu_use(self._first, cpu_times())
        return False


def benchmark_scale_out(profile: str = "default", only: list[str] | None = None, *,
                        layout: Layout | None = None, workers: int = 2) -> dict:
    """Measure the scale-out: execute the selected runs (``only`` and their dependencies, else
    all) twice from empty results -- sequentially, then on a local cluster of ``workers`` -- and
    compare.  Returns (and writes to ``results/benchmarks/scale_out_<profile>.json``) the two
    wall times, their ratio, the summed task time (wall and CPU) of each build, the machine's
    busy, idle and stolen core-seconds during each build (:func:`cpu_times`: on a machine doing
    nothing else, the build's use of its cores; ``busy_cores``: the mean number of busy cores
    every 5 s), each run's start (seconds after the build's),
    wall time, task count and task time in each build, whether every run's
    ``metrics.json`` is identical and which runs differ (measured times -- see
    :func:`_timing_keys` -- are left out of the comparison and listed, and so are fields naming
    times inside tables and mappings, see :func:`_untimed`).

    Both builds start as ``make book`` does on a fresh clone: without the selected runs' results,
    so without their previous wall times (which order the runs on a cluster).  Nothing is
    deleted: the selected runs' previous results are moved to
    ``results/benchmarks/<profile>-<time>/before/`` and the sequential build's to
    ``.../sequential/``; the parallel build's are left in place (equal to the sequential ones
    when ``identical``).  If a build fails, the previous results are put back.  The record is
    also kept as ``.../record.json`` (the top-level file is the latest one)."""
    workers = check_int(workers, "workers", minimum=1)
    layout = layout or Layout(find_root())
    record: dict[str, Any] = {"profile": profile, "only": list(only or []), "workers": workers,
                              "cpu_count": os.cpu_count(), "start_utc": _utc(time.time())}
    with contextlib.suppress(OSError):
        record["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    selection = list(_selection(load_config(layout, profile), only))  # what reproduce executes
    current = layout.results / profile
    kept = layout.results / "benchmarks" / f"{profile}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    if kept.exists():
        raise RuntimeError(f"{kept} exists already; wait a second and run the benchmark again")

    def move(names, source: Path, target: Path) -> None:
        for n in names:
            if (source / n).exists():
                target.mkdir(parents=True, exist_ok=True)
                (source / n).rename(target / n)

    move(selection, current, kept / "before")
    builds = {}
    try:
        for label, kwargs in (("sequential", {}), ("parallel", {"workers": workers})):
            start = time.time()
            with _CpuSampler() as sampler:
                outcomes = reproduce(profile, only, layout=layout, **kwargs)  # from empty: all execute
            seconds = time.time() - start
            bad = [o.message or o.name for o in outcomes if o.status != "executed"]
            if bad:
                raise RuntimeError(f"{label} build failed: {'; '.join(bad)}")
            names = [o.name for o in outcomes]
            tasks = [(_provenance(current / n) or {}) for n in names]
            origin = datetime.fromtimestamp(int(start), timezone.utc)
            timeline = {n: {"start_s": (datetime.fromisoformat(t["start_utc"]) - origin).total_seconds(),
                            "wall_time_s": t.get("wall_time_s"), "tasks": t.get("tasks"),
                            "task_time_s": t.get("task_time_s"), "task_cpu_s": t.get("task_cpu_s")}
                        for n, t in zip(names, tasks) if t.get("start_utc")}
            builds[label] = {"wall_time_s": round(seconds, 3), "runs": names, "timeline": timeline,
                             "task_time_s": round(sum(t.get("task_time_s") or 0 for t in tasks), 1),
                             "task_cpu_s": round(sum(t.get("task_cpu_s") or 0 for t in tasks), 1),
                             "cpu": sampler.use, "busy_cores": sampler.samples,
                             "tasks": sum(t.get("tasks") or 0 for t in tasks),
                             "metrics": _all_metrics(layout, profile, names)}
            if label == "sequential":
                timings = {n: _timing_keys(layout, profile, n) for n in names}
                move(names, current, kept / "sequential")
    except BaseException:
        for n in selection:
            if (kept / "before" / n).exists():
                if (current / n).exists():
                    move([n], current, kept / "failed")
                move([n], kept / "before", current)
        raise
    seq, par = builds["sequential"], builds["parallel"]
    differ = {}
    for n in seq["runs"]:
        a, b = seq["metrics"][n] or {}, par["metrics"].get(n) or {}
        keys = sorted(k for k in set(a) | set(b)
                      if k not in timings[n] and _untimed(a.get(k)) != _untimed(b.get(k)))
        if keys:
            differ[n] = keys
    record["timing_metrics_not_compared"] = {n: sorted(t) for n, t in timings.items() if t}
    record.update({"sequential_s": seq["wall_time_s"], "parallel_s": par["wall_time_s"],
                   "ratio": round(par["wall_time_s"] / seq["wall_time_s"], 3),
                   "sequential_task_time_s": seq["task_time_s"], "parallel_task_time_s": par["task_time_s"],
                   "sequential_task_cpu_s": seq["task_cpu_s"], "parallel_task_cpu_s": par["task_cpu_s"],
                   "sequential_cpu": seq["cpu"], "parallel_cpu": par["cpu"],
                   "tasks": seq["tasks"], "runs": seq["runs"], "identical": not differ, "differ": differ,
                   "timelines": {"sequential": seq["timeline"], "parallel": par["timeline"]},
                   "busy_cores": {"sequential": seq["busy_cores"], "parallel": par["busy_cores"]},
                   "kept": str(kept), "end_utc": _utc(time.time())})
    with contextlib.suppress(OSError):
        record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(kept / "record.json", record)  # kept: a later benchmark replaces the latest one
    write_json(layout.results / "benchmarks" / f"scale_out_{profile}.json", record)
    return record


def _busy(cpu: dict | None) -> str:
    return "(no /proc/stat)" if not cpu or cpu.get("busy_fraction") is None else f"{cpu['busy_fraction']:.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmtlib.reproduce",
                                     description="Execute the book's notebooks (see notebooks/runs.yml).")
    parser.add_argument("--profile", default="default", choices=PROFILES,
                        help="parameter set: quick (CI), default (the book), paper (the papers' sizes)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these runs (and their dependencies)")
    parser.add_argument("--force", action="store_true",
                        help="execute the selected runs even if their inputs are unchanged")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="start a local Dask cluster of N single-threaded worker processes "
                             "(0: sequential)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help=f"use the Dask scheduler at ADDRESS (default: ${ENV_SCHEDULER}, if set)")
    parser.add_argument("--jobs", type=int, default=None, metavar="J",
                        help="notebooks executing at once on a cluster (default: its worker count)")
    parser.add_argument("--retries", type=int, default=None, metavar="R",
                        help=f"retries of a failed task on a cluster (default {DEFAULT_RETRIES})")
    parser.add_argument("--benchmark", action="store_true",
                        help="measure the scale-out: execute the selection from empty results sequentially, "
                             "then with --workers N (default 2), and compare metrics and wall times "
                             "(previous results are moved to results/benchmarks/, not deleted)")
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    start = time.time()
    if args.benchmark:
        try:
            record = benchmark_scale_out(args.profile, args.only, layout=Layout(args.root or find_root()),
                                         workers=args.workers or 2)
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"scale-out benchmark ({args.profile}, {len(record['runs'])} runs, {record['tasks']} tasks, "
              f"{record['cpu_count']} CPUs, load {record.get('load_average_before')}): sequential "
              f"{record['sequential_s']} s, {record['workers']} workers {record['parallel_s']} s, ratio "
              f"{record['ratio']}; cores busy {_busy(record.get('sequential_cpu'))} and "
              f"{_busy(record.get('parallel_cpu'))}; metrics {'identical' if record['identical'] else 'DIFFER: '}"
              f"{'; '.join(f'{n}: {k}' for n, k in record['differ'].items())} (timings not compared: "
              f"{sum(map(len, record['timing_metrics_not_compared'].values()))})")
        return 0 if record["identical"] else 1
    workers = args.workers or None
    scheduler = args.scheduler or (None if workers else os.environ.get(ENV_SCHEDULER) or None)
    try:
        layout = Layout(args.root or find_root())
        outcomes = reproduce(args.profile, args.only, layout=layout, force=args.force, workers=workers,
                             scheduler=scheduler, jobs=args.jobs, retries=args.retries)
    except KeyboardInterrupt:
        print("interrupted: the kernels and the cluster started by this command are stopped; "
              "interrupted runs keep their previous results", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("executed", "cached", "failed", "blocked")}
    for o in outcomes:
        if o.status in ("failed", "blocked"):
            print(f"error: {o.message}", file=sys.stderr)
    where = ("sequential" if not (workers or scheduler) else
             f"local cluster, {workers} workers" if workers else f"scheduler {scheduler}")
    print(f"reproduce --profile {args.profile}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f" ({time.time() - start:.1f} s, {where})")
    return 1 if counts["failed"] or counts["blocked"] else 0


if __name__ == "__main__":
    sys.exit(main())
