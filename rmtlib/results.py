"""Recorded runs: what a notebook writes (metrics, figures, tables) and how to read it back.

Every notebook of the book writes its results through a :class:`Run`::

    from rmtlib.results import Run
    run = Run(results_dir, name="mp_law")           # results_dir: the injected parameter
    run.log("ks_gamma_0.5", 0.012, doc="sup |ECDF - MP CDF| at gamma = 0.5 (dimensionless)")
    run.savefig(fig, "esd")                          # -> <run.dir>/esd.png
    run.save_table(df, "per_ratio")                  # -> <run.dir>/per_ratio.csv

A metric is declared once: :meth:`Run.log` records it in ``metrics.json`` with its doc *and*, in a
notebook, glues it under the same key for the prose (``{glue:text}`ks_gamma_0.5:.3f```): numbers as
numbers, a per-seed record as "mean ± sd" (:func:`format_metric`), unless ``text=`` says otherwise.
:meth:`Run.text` glues prose-only values that are not results (e.g. the authors' numbers, typed
once in a reference-values file).  A notebook that aggregates other runs reads them with
:func:`load_run`.

Notebooks run by hand (in JupyterLab: ``make lab``) keep their parameters cell's defaults, among
them ``results_dir = None``: ``Run(None, name=...)`` then writes to ``results/manual/<name>/``
(never read by the book) and starts a *by-hand run* there: a fresh ``metrics.json`` and a
``provenance.json`` with ``"mode": "manual"``; in a notebook kernel, a cell that fails records
its error in that ``provenance.json``.  In a process that has started a by-hand run (or with
``profile="manual"``), :func:`load_run` reads a dependency where the reader has it:
``results/manual/<name>`` if that notebook was run by hand (and did not stop at an error), else
the book's ``results/<profile>/<name>`` (``profile="manual"`` meaning ``default``), else it fails
with one message saying what to run.

Layout of a results directory (``results/<profile>/<name>/``, written by
:mod:`rmtlib.reproduce` and the notebook):

``metrics.json``
    ``{"values": {key: value}, "doc": {key: "what it is, units"}}``; every key has a doc.
``params.json``
    the parameters the notebook was executed with (written by the runner).
``provenance.json``
    how the run came about (written by the runner, last: a directory without it is incomplete).
``executed.ipynb`` / ``failed.ipynb``
    the executed notebook (the cache the book copies) or, after a failure, the partial one.
``*.png``, ``*.csv``
    figures and tables saved through :class:`Run`.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .validation import ArgumentTypeError, check_bool, describe

__all__ = ["Run", "RunRecord", "load_run", "find_root", "format_metric", "to_json", "write_json",
           "read_json", "METRICS", "PARAMS", "PROVENANCE", "EXECUTED", "FAILED", "MANUAL", "BOOK_PROFILE"]

METRICS = "metrics.json"
PARAMS = "params.json"
PROVENANCE = "provenance.json"
EXECUTED = "executed.ipynb"
FAILED = "failed.ipynb"
FIGURE_DPI = 150
MANUAL = "manual"  # results/manual/<name>: notebooks run by hand
BOOK_PROFILE = "default"  # the profile `make book` builds: what a by-hand run falls back to

# The provenance.json of the by-hand run this process started last (None: no Run(None) yet).
_by_hand: Path | None = None
_hook_registered = False


def find_root(start: str | os.PathLike | None = None) -> Path:
    """Return the repository root: the nearest folder at or above ``start`` (default: the
    current directory) that holds both ``_config.yml`` and a ``rmtlib/`` folder."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "rmtlib").is_dir():
            return folder
    raise ValueError(
        f"no repository root (a folder holding _config.yml and rmtlib/) at or above {here}; "
        "run from inside the repository or pass the directory explicitly"
    )


def to_json(value: Any) -> Any:
    """Convert ``value`` to plain JSON types.

    NumPy scalars and arrays, PyTorch tensors (anything with ``.detach()`` and ``.tolist()``),
    tuples and paths are converted; dict keys must be strings. Non-finite floats are kept
    (written as ``NaN`` / ``Infinity``, which Python's and pandas' JSON readers accept).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"JSON object keys must be strings, got {bad[0]!r}; convert the keys first")
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch.Tensor
        return to_json(value.detach().cpu().tolist())
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy array or scalar
        return to_json(value.tolist())
    raise ValueError(
        f"cannot store a {type(value).__name__} as JSON; log numbers, strings, bools, None, "
        "lists/dicts of them, or NumPy/PyTorch scalars and arrays"
    )


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json(data), indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a malformed file raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and re-run") from None


def format_metric(value: Any, digits: int | None = None) -> str | float | int | None:
    """What :meth:`Run.log` glues for ``value``, or None when it has no one-line form (a list, a
    nested mapping).

    A per-seed record (a mapping with ``mean`` and ``sd``, e.g. :func:`rmtlib.stats.seed_record`)
    becomes the string ``"mean ± sd"`` with ``digits`` decimals (default 2); a number is glued as
    the number itself (the prose chooses the format: ``{glue:text}`key:.3f```) unless ``digits``
    is given, then as a string with that many decimals; strings and bools as they are.
    """
    from .stats import format_mean_sd

    if isinstance(value, (str, bool)) or value is None:
        return value if isinstance(value, str) else str(value)
    if isinstance(value, dict) and "mean" in value and "sd" in value:
        return format_mean_sd(value["mean"], value["sd"], 2 if digits is None else digits)
    if isinstance(value, (int, float)):
        return value if digits is None else f"{float(value):.{digits}f}"
    return None


def _glue(key: str, value: str | float | int) -> None:
    """Glue ``value`` under ``key`` when running in a notebook kernel (myst-nb); a no-op elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book extra
        return
    if get_ipython() is None:
        return
    from myst_nb import glue

    glue(key, value, display=False)


def _filename(name: str, suffix: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"file name must be a plain non-empty name without folders, got {name!r}")
    return name if name.endswith(suffix) else name + suffix


def _start_by_hand(run: Run) -> None:
    """Begin a by-hand run in ``run.dir`` and make this process read dependencies by hand."""
    global _by_hand
    from . import __version__

    (run.dir / METRICS).unlink(missing_ok=True)
    _by_hand = write_json(run.dir / PROVENANCE, {
        "mode": MANUAL, "name": run.name, "run_id": uuid.uuid4().hex,
        "start_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.executable, "rmtlib_version": __version__, "cwd": os.getcwd(), "error": None,
    })
    _watch_cells()


def _watch_cells() -> None:
    """In an IPython kernel, record the first failing cell of the current by-hand run."""
    global _hook_registered
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book extra
        return
    shell = get_ipython()
    if shell is None or _hook_registered:
        return

    def after_cell(result) -> None:
        error = result.error_in_exec or result.error_before_exec
        if error is None or _by_hand is None or not _by_hand.is_file():
            return
        prov = read_json(_by_hand)
        if not prov.get("error"):
            first = (str(error).strip().splitlines() or [""])[0]
            prov.update(error=f"{type(error).__name__}: {first}".rstrip(": "), error_cell=result.execution_count)
            write_json(_by_hand, prov)

    shell.events.register("post_run_cell", after_cell)
    _hook_registered = True


class Run:
    """The results directory of one notebook run.

    Parameters
    ----------
    results_dir : str, path or None
        Where to write (the runner injects ``results/<profile>/<name>`` as the notebook parameter
        ``results_dir``). ``None`` -- a reader executing the notebook by hand -- means
        ``<repo>/results/manual/<name>``, the repository root being found from the current
        directory by :func:`find_root`.
    name : str, optional
        Run name; required when ``results_dir`` is None, else defaults to its last component.

    The directory is created if needed; existing files are kept (the runner starts every run in
    an empty directory).  ``Run(None, name=...)`` starts a by-hand run: ``metrics.json`` of the
    previous by-hand run of that notebook is removed, ``provenance.json`` records ``"mode":
    "manual"``, the run id, start time (UTC), Python and working directory, and -- in an IPython
    kernel -- the first error of a cell executed afterwards (``"error"``, ``"error_cell"``), so
    that :func:`load_run` does not take a failed by-hand run for a result.
    """

    def __init__(self, results_dir: str | os.PathLike | None = None, name: str | None = None):
        if results_dir is not None and not isinstance(results_dir, (str, os.PathLike)):
            raise ArgumentTypeError(f"results_dir must be a path or None, got {describe(results_dir)}")
        if name is not None and not isinstance(name, str):
            raise ArgumentTypeError(f"name must be a run name (a string) or None, got {describe(name)}")
        by_hand = results_dir is None
        if by_hand:
            if not name:
                raise ValueError("Run(None, name=...) needs a name to build results/manual/<name>")
            results_dir = find_root() / "results" / MANUAL / _filename(name, "")
        self.dir = Path(results_dir).resolve()
        self.name = name or self.dir.name
        self.dir.mkdir(parents=True, exist_ok=True)
        if by_hand:
            _start_by_hand(self)

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, name={self.name!r})"

    def log(self, key: str, value: Any, doc: str, *, text: str | None = None,
            digits: int | None = None, timing: bool = False) -> Any:
        """Declare a metric: record ``metrics["values"][key] = value`` with its description
        ``doc`` (what it is, units) in ``metrics.json`` and, in a notebook, glue it under ``key``
        for the prose.

        ``timing=True`` declares a measured time or a ratio of times (listed under
        ``metrics["timing"]``): such a metric differs between any two builds, so comparisons of
        builds (:func:`rmtlib.reproduce.benchmark_scale_out`) leave it out.  Keys and docs that
        name seconds or milliseconds are recognised without it; a dimensionless ratio of times is
        not, and needs it.

        What is glued is ``text`` if given, else :func:`format_metric` of the value (numbers as
        numbers, per-seed records as "mean ± sd"); values with no one-line form (lists, nested
        mappings) are recorded but glued only when ``text`` is given.  The file is rewritten atomically; NumPy/PyTorch
        scalars and arrays are converted to JSON numbers and lists.  Returns the JSON value.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric key must be a non-empty string, got {key!r}")
        if not isinstance(doc, str) or not doc.strip():
            raise ValueError(f"metric {key!r} needs a doc string saying what it is and its units")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"metric {key!r}: text must be a string or None, got {type(text).__name__}")
        if digits is not None and (isinstance(digits, bool) or not isinstance(digits, int) or digits < 0):
            raise ValueError(f"metric {key!r}: digits must be a non-negative integer, got {digits!r}")
        if not isinstance(timing, bool):
            raise ValueError(f"metric {key!r}: timing must be true or false, got {timing!r}")
        path = self.dir / METRICS
        metrics = read_json(path) if path.exists() else {"values": {}, "doc": {}}
        value = to_json(value)
        metrics["values"][key] = value
        metrics["doc"][key] = doc.strip()
        timed = set(metrics.get("timing", [])) - {key} | ({key} if timing else set())
        if timed or "timing" in metrics:
            metrics["timing"] = sorted(timed)
        write_json(path, metrics)
        shown = text if text is not None else format_metric(value, digits)
        if shown is not None:
            _glue(key, shown)
        return value

    def text(self, key: str, text: str) -> None:
        """Glue a prose-only value that is not a result of this run (e.g. an authors' number from
        a reference-values file, or a setting) under ``key``; nothing is recorded."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"glue key must be a non-empty string, got {key!r}")
        if not isinstance(text, str):
            raise ValueError(f"text for {key!r} must be a string, got {type(text).__name__}")
        _glue(key, text)

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a Matplotlib figure as ``<dir>/<name>.png`` (150 dpi, tight bounding box) and
        return the path; the figure is left open so the notebook still displays it."""
        path = self.dir / _filename(name, ".png")
        fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
        return path

    def save_table(self, df: Any, name: str) -> Path:
        """Save a pandas DataFrame as ``<dir>/<name>.csv`` and return the path; the index is
        written unless it is the default unnamed ``0 .. n-1``."""
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"save_table needs a pandas DataFrame, got {type(df).__name__}")
        path = self.dir / _filename(name, ".csv")
        default = all(n is None for n in df.index.names) and df.index.equals(pd.RangeIndex(len(df)))
        df.to_csv(path, index=not default)
        return path


@dataclass(frozen=True)
class RunRecord:
    """A completed run read back from disk: ``metrics`` (the ``values`` of metrics.json),
    ``params`` (params.json), ``provenance`` (provenance.json) and its directory ``dir``."""

    name: str
    profile: str
    dir: Path
    metrics: dict
    params: dict
    provenance: dict


def _record(name: str, profile: str, folder: Path) -> RunRecord:
    metrics = read_json(folder / METRICS) if (folder / METRICS).exists() else {"values": {}}
    params = read_json(folder / PARAMS) if (folder / PARAMS).exists() else {}
    return RunRecord(name, profile, folder, metrics["values"], params, read_json(folder / PROVENANCE))


def _notebook_of(root: Path, name: str) -> str:
    """``notebooks/<path>`` of run ``name`` as declared in ``notebooks/runs.yml`` (for messages)."""
    import yaml

    try:
        return f"notebooks/{yaml.safe_load((root / 'notebooks' / 'runs.yml').read_text())[name]['notebook']}"
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return f"the notebook of run {name!r} (see notebooks/runs.yml)"


def load_run(name: str, profile: str, root: str | os.PathLike | None = None, *,
             by_hand: bool | None = None) -> RunRecord:
    """Read a completed run: ``results/<profile>/<name>`` (``root`` defaults to :func:`find_root`).

    By hand (``by_hand=True``; ``None``, the default, means: when ``profile`` is ``"manual"`` or
    this process has started a by-hand run with ``Run(None, name=...)``), a dependency is read
    where a reader has it, the first of

    1. ``results/manual/<name>`` -- that notebook run by hand; refused with a message if its
       by-hand run stopped at an error;
    2. ``results/<profile>/<name>`` -- the book's results (``profile="manual"`` reads
       ``results/default``, what ``make book`` builds);

    printing one line that says which was read.  ``by_hand=False`` reads exactly
    ``results/<profile>/<name>`` (the runner guarantees it; the run-status page tabulates one
    profile).  The record's ``profile`` is the folder read (``"manual"`` for a by-hand run,
    whose ``params`` are empty: it ran with its notebook's defaults).

    Raises ``ValueError`` if the run is missing or incomplete (no ``provenance.json``), with the
    command or notebook to run.
    """
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError(f"name must be a run name (a non-empty string), got {describe(name)}")
    if not isinstance(profile, str) or not profile:
        raise ArgumentTypeError(f"profile must be a profile name (a non-empty string), got {describe(profile)}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ArgumentTypeError(f"root must be a path or None, got {describe(root)}")
    by_hand = (profile == MANUAL or _by_hand is not None) if by_hand is None else check_bool(by_hand, "by_hand")
    root = find_root() if root is None else Path(root)
    folder = Path(root) / "results" / profile / name
    if not by_hand:
        if not (folder / PROVENANCE).is_file():
            raise ValueError(
                f"no completed run {name!r} for profile {profile!r} in {folder}; create it with "
                f"`python -m rmtlib.reproduce --profile {profile} --only {name}`"
            )
        return _record(name, profile, folder)
    book = BOOK_PROFILE if profile == MANUAL else profile
    manual, folder = Path(root) / "results" / MANUAL / name, Path(root) / "results" / book / name
    notebook = _notebook_of(Path(root), name)
    if (manual / PROVENANCE).is_file():
        error = read_json(manual / PROVENANCE).get("error")
        if error:
            raise ValueError(
                f"the by-hand run of {name!r} in {manual} stopped at an error ({error}); run {notebook} "
                f"again by hand, or delete {manual} to read the book's results in {folder}"
            )
        print(f"load_run: {name!r} from {manual} (run by hand)")
        return _record(name, MANUAL, manual)
    if (folder / PROVENANCE).is_file():
        print(f"load_run: {name!r} from {folder} (profile {book!r}; {name!r} was not run by hand)")
        return _record(name, book, folder)
    raise ValueError(
        f"no results of run {name!r} for a notebook run by hand: neither {manual} (written when "
        f"{notebook} is run by hand) nor {folder} (written by `python -m rmtlib.reproduce --profile "
        f"{book}`, i.e. `make book`) holds a completed run; run {notebook} by hand first, or "
        f"`python -m rmtlib.reproduce --profile {book} --only {name}`"
    )
