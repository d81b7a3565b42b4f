"""MNIST and Fashion-MNIST as in-memory tensors: local files first, else torchvision's download.

:func:`load_dataset` returns a :class:`Dataset` holding the whole train and test splits as
tensors: images ``(n, 1, 28, 28)`` scaled to ``[0, 1]`` exactly as torchvision's ``ToTensor``
does (``x / 255``), optionally normalized as ``(x - mean) / std``, and ``int64`` labels.
The files are read by torchvision's own dataset classes (``download=False``); whole tensors are
converted at once, never sample by sample.

Where the data is looked for (:func:`resolve_root`): the ``root`` argument, else the environment
variable ``RMTLIB_DATA``, else the default ``./data``, which inside a checkout of this repository
means the repository's ``data/`` folder whatever the working directory (the root is found as
:func:`rmtlib.results.find_root` finds it: the nearest folder holding ``_config.yml`` and
``rmtlib/``), and elsewhere ``data/`` in the working directory.  The root uses torchvision's
layout ``<root>/<Name>/raw/`` with ``Name`` = ``MNIST`` or ``FashionMNIST``, holding either the
uncompressed IDX files or only their ``.gz`` archives.

Download (``load_dataset(download=True)``, the default; ``prepare_dataset(download=True)``; the
command line's ``--download``), when a file is missing:

* torchvision's own ``MNIST`` / ``FashionMNIST`` download fetches the four ``.gz`` files from the
  class's ``mirrors`` (torchvision's, checked against torchvision's MD5s of the archives), or from
  ``$RMTLIB_DATA_MIRROR`` if set: a base URL laid out like a data root, ``<URL>/MNIST/raw/*.gz``
  and ``<URL>/FashionMNIST/raw/*.gz`` (``python -m http.server -d DATA_ROOT`` serves one; its
  archives may be re-compressed copies, so only their content is checked);
* it downloads into a hidden staging folder ``<root>/.rmtlib-download-<Name>-...`` and checks the
  *uncompressed* size and MD5 of every archive (the table below) before moving the ``.gz`` files
  into ``<root>/<Name>/raw/``; then they are extracted as below.  A failed or corrupt download
  leaves nothing behind (the staging folder and any folder it created are removed; a staging
  folder of a killed process on this host is removed by the next attempt), so the next attempt
  starts clean; existing files are never replaced;
* sockets time out after ``DOWNLOAD_TIMEOUT_S`` seconds without data, so an unreachable network
  fails instead of hanging; the error is one :class:`DataNotFoundError` naming the root, the
  mirrors tried and the ways to get the data.

Extraction of a root with only ``.gz`` files (done once, by :func:`prepare_dataset`):

* each archive is decompressed and its *uncompressed* size and MD5 are checked against the
  table below (gzip headers differ between copies, so the ``.gz`` bytes themselves are not);
* the four files of a dataset are written all-or-nothing: each to a temporary file in the
  target folder, renamed into place only after all four verified, so an interrupted or failed
  run never leaves a half-written file;
* the target is ``<root>/<Name>/raw/`` when that folder is writable, else the same layout under
  the cache directory (``RMTLIB_CACHE``, default ``~/.cache/rmtlib``).  A folder without any
  write permission bit counts as read-only even for the superuser;
* a stamp ``<file>.rmtlib-stamp.json`` (size, ``mtime_ns``, MD5) is kept next to each verified
  file (under ``<cache>/stamps/`` when its folder is read-only); later loads trust a file whose
  size and mtime match its stamp instead of re-hashing ~110 MB;
* an existing uncompressed file is never overwritten: if it has the wrong size or MD5, a
  :class:`CorruptDataError` names it and it is left untouched.

Errors: :class:`DataNotFoundError` (a ``FileNotFoundError``) when files are missing (and could
not be downloaded), with where it looked and how to get the data; :class:`CorruptDataError` (a
``ValueError``) for a truncated, non-gzip or wrong-content archive (local or downloaded) or a
wrong extracted file; ``ValueError`` for bad arguments (``ArgumentTypeError`` for a wrong type).

Command line: ``python -m rmtlib.data [--root DIR] [--name mnist|fashion_mnist|all] [--verify]
[--download]`` prints where the data was found and its status (it downloads only with
``--download``); on failure it prints a one-line error to stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import numbers
import os
import secrets
import shutil
import socket
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rmtlib._paths import cache_dir
from rmtlib.results import find_root
from rmtlib.seeding import check_random_state
from rmtlib.validation import ArgumentTypeError, check_bool, describe

__all__ = [
    "DATASETS",
    "DOWNLOAD_TIMEOUT_S",
    "ENV_DATA",
    "ENV_MIRROR",
    "CorruptDataError",
    "DataNotFoundError",
    "DataStatus",
    "Dataset",
    "cache_dir",
    "canonical_name",
    "file_md5s",
    "load_dataset",
    "main",
    "prepare_dataset",
    "resolve_root",
]

ENV_DATA = "RMTLIB_DATA"
ENV_MIRROR = "RMTLIB_DATA_MIRROR"
DATASETS = ("mnist", "fashion_mnist")
#: Seconds a download socket may wait for data before the attempt fails.
DOWNLOAD_TIMEOUT_S = 60

# Size in bytes and MD5 of the *uncompressed* IDX files, as tabulated in the project's data
# README.  MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
# digits" (CC BY-SA 3.0).  Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a
# novel image dataset for benchmarking machine learning algorithms", arXiv:1708.07747
# (Zalando Research, MIT licence).
_FILES: dict[str, tuple[str, tuple[tuple[str, int, str], ...]]] = {
    "mnist": ("MNIST", (
        ("train-images-idx3-ubyte", 47040016, "6bbc9ace898e44ae57da46a324031adb"),
        ("train-labels-idx1-ubyte", 60008, "a25bea736e30d166cdddb491f175f624"),
        ("t10k-images-idx3-ubyte", 7840016, "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte", 10008, "27ae3e4e09519cfbb04c329615203637"),
    )),
    "fashion_mnist": ("FashionMNIST", (
        ("train-images-idx3-ubyte", 47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        ("train-labels-idx1-ubyte", 60008, "9018921c3c673c538a1fc5bad174d6f9"),
        ("t10k-images-idx3-ubyte", 7840016, "8181f5470baa50b63fa0f6fddb340f0a"),
        ("t10k-labels-idx1-ubyte", 10008, "15d484375f8d13e6eb1aabb0c3f46965"),
    )),
}
_ALIASES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "fashionmnist": "fashion_mnist"}
_STAMP_SUFFIX = ".rmtlib-stamp.json"
_STAGING = ".rmtlib-download-"
_CHUNK = 1 << 22
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class DataNotFoundError(FileNotFoundError):
    """The dataset files are not where they were looked for (or could not be downloaded)."""


class CorruptDataError(ValueError):
    """A data file is truncated, not gzip, or has the wrong size or MD5.  Subclass of
    ``ValueError``; the message names the file, which is never modified."""


def canonical_name(name: str) -> str:
    """Return ``"mnist"`` or ``"fashion_mnist"`` for a case-insensitive name or alias
    (``"fashion-mnist"``, ``"FashionMNIST"``); raise ``ValueError`` otherwise."""
    valid = "valid names: 'mnist', 'fashion_mnist' (also 'fashion-mnist', 'FashionMNIST'; case-insensitive)"
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a dataset name (a string), got {describe(name)}; {valid}")
    key = name.lower().replace("-", "_")
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; {valid}")
    return _ALIASES[key]


def _resolve(root) -> tuple[Path, str]:
    """The data root as an absolute path and the rule that chose it."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise ArgumentTypeError(f"root must be a path (str or os.PathLike), got {describe(root)}")
        if not os.fspath(root):
            raise ValueError(f"root must be a non-empty path, got {root!r}")
        return Path(root).expanduser().absolute(), "the root argument"
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser().absolute(), f"${ENV_DATA}"
    try:
        repo = find_root()
    except ValueError:
        return Path.cwd() / "data", f"the default ./data (no root argument, ${ENV_DATA} unset)"
    return repo / "data", (f"the default ./data, i.e. data/ of the repository {repo} (no root argument, "
                           f"${ENV_DATA} unset)")


def resolve_root(root=None) -> Path:
    """Data root: ``root`` if given, else ``$RMTLIB_DATA`` if set and non-empty, else the
    default ``./data``: ``<repo>/data`` when the working directory is inside a checkout
    ``<repo>`` of this repository (found by :func:`rmtlib.results.find_root`), else ``data``
    in the working directory.  Always absolute (``~`` expanded, symlinks of ``root`` and
    ``$RMTLIB_DATA`` kept)."""
    return _resolve(root)[0]


def _writable(folder: Path) -> bool:
    """True if ``folder`` exists, we may write in it, and it has a write permission bit
    (so a folder made read-only with chmod stays untouched even when running as root)."""
    try:
        return bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        return False


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _create(path: Path):
    """Open a new file exclusively for binary writing (mode 0o666 minus the umask)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


# ---------------------------------------------------------------- stamps and verification

def _stamp_paths(path: Path) -> tuple[Path, Path]:
    """Sidecar next to ``path``, and its fallback in the cache for read-only folders."""
    key = hashlib.sha1(os.fsencode(path)).hexdigest()
    return path.with_name(path.name + _STAMP_SUFFIX), cache_dir() / "stamps" / f"{key}.json"


def _stamp_record(path: Path, md5: str) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}


def _stamp_ok(path: Path, md5: str) -> bool:
    want = _stamp_record(path, md5)
    for stamp in _stamp_paths(path):
        try:
            if json.loads(stamp.read_text()) == want:
                return True
        except (OSError, ValueError):
            continue
    return False


def _write_stamp(path: Path, md5: str) -> None:
    """Record a verified file (atomically); a stamp is only a speed-up, so failures are ignored."""
    side, cached = _stamp_paths(path)
    stamp = side if _writable(path.parent) else cached
    tmp = _tmp_name(stamp)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with _create(tmp) as out:
            out.write(json.dumps(_stamp_record(path, md5)).encode())
        os.replace(tmp, stamp)
    except OSError:
        tmp.unlink(missing_ok=True)


def _check_file(path: Path, size: int, md5: str, gz_name: str, verify: bool) -> str:
    """Check an uncompressed file (trusting a matching stamp unless ``verify``)."""
    fix = (f"it was left untouched: delete it so that it is re-extracted from {gz_name}, "
           "or re-download the dataset")
    got_size = path.stat().st_size
    if got_size != size:
        raise CorruptDataError(f"{path} has {got_size} bytes, expected {size}; {fix}")
    if not verify and _stamp_ok(path, md5):
        return "ok (stamp)"
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    got = h.hexdigest()
    if got != md5:
        raise CorruptDataError(f"{path} has MD5 {got}, expected {md5}; {fix}")
    _write_stamp(path, md5)
    return "ok (hashed)"


def _copy_verified(src: Path, size: int, md5: str, out=None, *,
                   fix: str = "replace it with a fresh copy of the original file", label=None) -> None:
    """Stream ``src`` (gunzipped if it ends in ``.gz``) into ``out`` (if given), checking the
    size and MD5 of the uncompressed bytes; raise :class:`CorruptDataError` naming ``label``
    (default: ``src``) and saying how to ``fix`` it."""
    name = src if label is None else label
    h, n = hashlib.md5(), 0
    with (gzip.open if src.suffix == ".gz" else open)(src, "rb") as f:
        while True:
            try:
                chunk = f.read(_CHUNK)
            except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                raise CorruptDataError(f"{name} is not a valid gzip stream ({exc}); {fix}") from exc
            if not chunk:
                break
            n += len(chunk)
            if n > size:
                raise CorruptDataError(f"{name} decompresses to more than the expected {size} "
                                       f"bytes; {fix}")
            h.update(chunk)
            if out is not None:
                out.write(chunk)
    if n != size:
        raise CorruptDataError(f"{name} decompresses to {n} bytes, expected {size}; {fix}")
    if h.hexdigest() != md5:
        raise CorruptDataError(f"{name}: MD5 of the uncompressed bytes is {h.hexdigest()}, "
                               f"expected {md5}; {fix}")


# ---------------------------------------------------------------- locating / extracting

@dataclass(frozen=True)
class DataStatus:
    """Outcome of :func:`prepare_dataset`.

    ``root`` is the data root and ``rule`` the rule that chose it; ``load_root`` is the folder
    handed to torchvision (``root`` itself, or the cache when ``root`` is read-only) and
    ``files`` pairs each IDX file with what was done to it.
    """

    name: str
    root: Path
    rule: str
    load_root: Path
    files: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        raw = self.load_root / _FILES[self.name][0] / "raw"
        files = "; ".join(f"{f}: {s}" for f, s in self.files)
        return f"{self.name}: root {self.root} (from {self.rule}); files in {raw}: {files}"


def _missing_message(key: str, root: Path, rule: str, missing: list[str], *, exists: bool | None = None,
                     download_error: str | None = None) -> str:
    """One line: where the data was looked for, what is missing, why a download failed (if one
    was tried) and the ways to get the data."""
    folder = _FILES[key][0]
    exists = root.is_dir() if exists is None else exists
    where = f"{root / folder / 'raw'}" + ("" if exists else f" ({root} does not exist)")
    head = (f"{folder} data not found: looked in {where}, the data root chosen by {rule}; "
            f"missing {', '.join(missing)} (.gz or uncompressed)")
    if download_error is None:
        return (f"{head}. To fix, download it with internet access (load_dataset(..., download=True), the "
                f"default, or `python -m rmtlib.data --download [--root DIR]`), set {ENV_DATA} to a folder "
                f"containing {folder}/raw/*.gz, or pass root=...")
    return (f"{head}; {download_error}. To fix, retry with internet access, set {ENV_MIRROR} to a URL "
            f"serving <URL>/{folder}/raw/*.gz, set {ENV_DATA} to a folder containing {folder}/raw/*.gz, "
            "or pass root=...")


def _missing(key: str, raw: Path, present) -> list[str]:
    return [f for f, _, _ in _FILES[key][1] if f not in present and not (raw / f"{f}.gz").is_file()]


def file_md5s(name: str) -> dict[str, str]:
    """MD5 of each uncompressed IDX file of the data set ``name`` (aliases as in
    :func:`canonical_name`): the values :func:`prepare_dataset` checks every file against, hence
    the checksums of the files a verified load reads."""
    return {f: md5 for f, _, md5 in _FILES[canonical_name(name)][1]}


def prepare_dataset(name: str, root=None, *, verify: bool = False, download: bool = False) -> DataStatus:
    """Locate a dataset, verify it and, if needed, download it and extract its ``.gz`` files once.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
    root : path-like, optional
        Data root (see :func:`resolve_root`), laid out as ``<root>/<Name>/raw/``.
    verify : bool
        Re-hash every uncompressed file even if its stamp matches, and also decompress and
        check every ``.gz`` present.
    download : bool
        If files are missing, fetch the four ``.gz`` files with torchvision's download (from
        ``$RMTLIB_DATA_MIRROR`` if set) into ``<root>/<Name>/raw/``, checked before they are
        kept (see the module docstring).  Default ``False``: never touch the network.

    Returns
    -------
    DataStatus
        Where the data was found and the folder from which torchvision can load it.

    Raises
    ------
    DataNotFoundError
        A file is neither uncompressed nor ``.gz`` in ``<root>/<Name>/raw/`` (and, with
        ``download``, the download failed).
    CorruptDataError
        An archive is truncated / not gzip / has the wrong uncompressed size or MD5 (local or
        downloaded), or an existing uncompressed file is wrong.  Nothing is written or modified
        in that case.
    """
    key = canonical_name(name)
    verify = check_bool(verify, "verify")
    download = check_bool(download, "download")
    folder, files = _FILES[key]
    root, rule = _resolve(root)
    raw = root / folder / "raw"
    status: dict[str, str] = {}
    for f, size, md5 in files:  # existing extracted files first, so that they are never replaced
        if (raw / f).is_file():
            status[f] = _check_file(raw / f, size, md5, f + ".gz", verify)
    missing = _missing(key, raw, status)
    fetched = set()
    if missing and download:
        _fetch(key, root, rule, missing)
        fetched, missing = set(missing), _missing(key, raw, status)
    if missing:
        raise DataNotFoundError(_missing_message(key, root, rule, missing))
    load_root = root if len(status) == len(files) or _writable(raw) else cache_dir()
    target = load_root / folder / "raw"
    todo = []
    for f, size, md5 in sorted(files, key=lambda t: t[1]):  # small files first: fail fast
        if target != raw:  # read-only root: the cache must hold all four files
            if (target / f).is_file():
                status[f] = _check_file(target / f, size, md5, f + ".gz", verify)
            else:
                todo.append((f, size, md5))
        elif f not in status:
            todo.append((f, size, md5))
    if verify:
        extracting = {f for f, _, _ in todo}
        for f, size, md5 in files:
            if f not in extracting and (raw / f"{f}.gz").is_file():
                _copy_verified(raw / f"{f}.gz", size, md5)
                status[f] += ", .gz ok"
    if todo:
        _extract_all(raw, target, todo)
        for f, _, md5 in todo:
            _write_stamp(target / f, md5)
            status[f] = "downloaded, extracted" if f in fetched else "extracted"
    return DataStatus(key, root, rule, load_root, tuple((f, status[f]) for f, _, _ in files))


def _extract_all(raw: Path, target: Path, todo) -> None:
    """Write each file of ``todo`` into ``target`` all-or-nothing (temp files + rename)."""
    target.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        for f, size, md5 in todo:
            src = raw / f if (raw / f).is_file() else raw / f"{f}.gz"
            tmp = _tmp_name(target / f)
            temps.append((tmp, target / f))
            with _create(tmp) as out:
                _copy_verified(src, size, md5, out)
                out.flush()
                os.fsync(out.fileno())
        for tmp, dst in temps:
            os.replace(tmp, dst)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- download

def _make_folders(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created, outermost first."""
    todo = []
    while not path.exists():
        todo.append(path)
        path = path.parent
    for folder in reversed(todo):
        folder.mkdir(exist_ok=True)
    return todo[::-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_staging(root: Path, folder: str) -> None:
    """Remove staging folders left in ``root`` by killed downloads of this host."""
    host, prefix = socket.gethostname(), f"{_STAGING}{folder}-"
    for path in root.glob(f"{prefix}*"):
        try:
            owner, pid, _ = path.name[len(prefix):].rsplit("-", 2)
            if owner == host and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
        except ValueError:
            continue


@contextmanager
def _socket_timeout(seconds: float):
    """Give sockets opened without a timeout (urllib's, in torchvision) one, for this block."""
    old = socket.getdefaulttimeout()
    if old is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _mirrors(key: str) -> tuple[list[str], list[tuple[str, str | None]]]:
    """Mirrors and ``(archive, md5)`` resources for torchvision: its own, or ``$RMTLIB_DATA_MIRROR``
    (whose archives may be re-compressed, so torchvision's MD5 of the archive is not applied)."""
    cls = _torchvision_class(key)
    base = os.environ.get(ENV_MIRROR, "").strip()
    if not base:
        return list(cls.mirrors), list(cls.resources)
    folder, files = _FILES[key]
    return [f"{base.rstrip('/')}/{folder}/raw/"], [(f"{f}.gz", None) for f, _, _ in files]


def _fetch(key: str, root: Path, rule: str, missing: list[str]) -> None:
    """Download the ``.gz`` files of ``key`` with torchvision into a staging folder of ``root``,
    check their uncompressed size and MD5, and move the missing ones into ``<root>/<Name>/raw``;
    on any failure remove everything this call created."""
    import http.client

    folder, files = _FILES[key]
    cls = _torchvision_class(key)
    mirrors, resources = _mirrors(key)
    source = ", ".join(mirrors)
    existed = root.is_dir()

    def not_found(reason: str) -> DataNotFoundError:
        return DataNotFoundError(_missing_message(key, root, rule, missing, exists=existed,
                                                  download_error=" ".join(reason.split())))

    try:
        created = _make_folders(root)
    except OSError as exc:
        raise not_found(f"cannot create {root} to download into ({exc})") from exc
    staging, kept = root / f"{_STAGING}{folder}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}", False
    try:
        if not _writable(root):
            raise not_found(f"cannot download into {root}: it is not writable")
        _remove_stale_staging(root, folder)
        staging.mkdir()
        # torchvision's own MNIST.download() on a subclass of the same name (torchvision names the
        # folder after the class) with our mirrors; called without __init__, which would also
        # parse the files before they are checked
        fetcher = object.__new__(type(cls.__name__, (cls,), {"mirrors": mirrors, "resources": resources}))
        fetcher.root = str(staging)
        print(f"rmtlib.data: {folder} is missing in {root / folder / 'raw'}; downloading it with "
              f"torchvision from {source}", file=sys.stderr, flush=True)
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                fetcher.download()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise CorruptDataError(f"an archive of {folder} downloaded from {source} is not a valid gzip "
                                   f"stream ({exc}); nothing was kept in {root}; try again, or check "
                                   "the mirror") from exc
        except (RuntimeError, OSError, http.client.HTTPException) as exc:
            raise not_found(f"downloading it with torchvision from {source} failed: {exc}") from exc
        got = staging / folder / "raw"
        for f, size, md5 in files:
            _copy_verified(got / f"{f}.gz", size, md5, label=f"{f}.gz downloaded from {source}",
                           fix=f"nothing was kept in {root}; try again, or check the mirror")
        raw = root / folder / "raw"
        created += _make_folders(raw)
        for f, _, _ in files:  # never replace a file that is there (e.g. a concurrent download's)
            if not (raw / f).exists() and not (raw / f"{f}.gz").exists():
                os.replace(got / f"{f}.gz", raw / f"{f}.gz")
        kept = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not kept:
            for made in reversed(created):
                try:
                    made.rmdir()
                except OSError:
                    break


def _torchvision_class(key: str):
    from torchvision import datasets  # imported lazily: it costs ~1.5 s

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[key]


# ---------------------------------------------------------------- in-memory dataset

def _check_n(n, total: int, what: str) -> int:
    if n is None:
        return total
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= total:
        raise ValueError(f"{what} must be None or an integer in [1, {total}], got {n!r}")
    return int(n)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset held in memory.

    Attributes
    ----------
    train_x, test_x : torch.Tensor
        Images ``(n, 1, 28, 28)``: pixel / 255 in ``[0, 1]`` (as ``ToTensor``), or
        ``(pixel / 255 - mean) / std`` when ``normalize = (mean, std)``.
    train_y, test_y : torch.Tensor
        ``int64`` labels in ``0..9``.
    classes : tuple of str
        Class names (torchvision's).
    name : str
        ``"mnist"`` or ``"fashion_mnist"``.
    root : pathlib.Path or None
        The data root the files were found in.
    normalize : (float, float) or None
        The ``(mean, std)`` applied, if any.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    name: str
    root: Path | None = None
    normalize: tuple[float, float] | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{split}_x must be (n, C, H, W) and {split}_y (n,), got "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")

    def subset(self, n_train=None, n_test=None, seed=0) -> Dataset:
        """A deterministic random subset (for quick runs).

        The training rows kept are the first ``n_train`` entries of a random permutation of
        ``range(len(train_x))`` drawn from ``check_random_state(seed)``, sorted ascending so
        the original order is kept; the test rows likewise from a second permutation drawn
        from the same generator.  Hence a fixed seed gives nested subsets (the rows kept for
        ``n`` are among those kept for any larger ``n``).  ``None`` keeps a split whole.
        """
        n_train = _check_n(n_train, len(self.train_x), "n_train")
        n_test = _check_n(n_test, len(self.test_x), "n_test")
        rng = check_random_state(seed)
        perms = [rng.permutation(len(self.train_x)), rng.permutation(len(self.test_x))]
        i, j = (torch.from_numpy(np.sort(p[:n])) for p, n in zip(perms, (n_train, n_test)))
        return replace(self, train_x=self.train_x[i], train_y=self.train_y[i],
                       test_x=self.test_x[j], test_y=self.test_y[j])

    def describe(self) -> str:
        """A few lines: sizes, dtype, value range, classes and where the data came from."""
        x = self.train_x
        return "\n".join([
            repr(self),
            f"  train: x {tuple(x.shape)} {x.dtype} in [{x.min().item():.4g}, "
            f"{x.max().item():.4g}], y {tuple(self.train_y.shape)} {self.train_y.dtype}",
            f"  test:  x {tuple(self.test_x.shape)}, y {tuple(self.test_y.shape)}",
            f"  classes: {', '.join(self.classes)}",
        ])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_x)}, test={len(self.test_x)}, "
                f"x={tuple(self.train_x.shape[1:])} {self.train_x.dtype}, "
                f"normalize={self.normalize}, root={str(self.root) if self.root else None!r})")


def _check_normalize(normalize):
    if normalize is None:
        return None
    try:
        mean, std = (float(v) for v in normalize)
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be None or a pair (mean, std) of numbers, "
                         f"got {normalize!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"normalize=(mean, std) needs finite values and std > 0, got {normalize!r}")
    return mean, std


def _images(u8: torch.Tensor, dtype: torch.dtype, normalize) -> torch.Tensor:
    """uint8 ``(n, 28, 28)`` -> ``(n, 1, 28, 28)``: ``x / 255`` (as ``ToTensor``), then
    ``(x - mean) / std`` (as ``Normalize``), in one vectorized pass."""
    x = u8.to(dtype).div_(255)
    if normalize is not None:
        x.sub_(normalize[0]).div_(normalize[1])
    return x.unsqueeze(1)


def load_dataset(name: str, root=None, *, download: bool = True, normalize=None,
                 dtype: torch.dtype = torch.float32) -> Dataset:
    """Load MNIST or Fashion-MNIST as in-memory tensors.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion_mnist"`` (also ``"fashion-mnist"``, ``"FashionMNIST"``;
        case-insensitive).
    root : path-like, optional
        Data root; default ``$RMTLIB_DATA``, else ``./data`` -- the repository's ``data/``
        inside a checkout (see :func:`resolve_root`).
    download : bool
        If files are missing, fetch them with torchvision's download into the root (needs
        internet, or ``$RMTLIB_DATA_MIRROR``), verified before they are kept; see
        :func:`prepare_dataset`.  Existing files are used as they are.  ``False``: never touch
        the network.
    normalize : (float, float), optional
        ``(mean, std)``: images become ``(x - mean) / std`` with ``x = pixel / 255``, e.g.
        ``(0.5, 0.5)`` maps to ``[-1, 1]``.  Default: no normalization (``[0, 1]``).
    dtype : torch.dtype
        Floating dtype of the images (default ``float32``, as ``ToTensor``).

    Returns
    -------
    Dataset
        ``train_x`` ``(60000, 1, 28, 28)``, ``test_x`` ``(10000, 1, 28, 28)``, ``int64``
        labels.  The first call on a ``.gz``-only root extracts and verifies the files (see the
        module docstring); later calls only check sizes and mtimes against stamps.

    Raises
    ------
    DataNotFoundError, CorruptDataError, ValueError
        See :func:`prepare_dataset`; ``ValueError`` for a bad name, ``normalize`` or ``dtype``.
    """
    key = canonical_name(name)
    download = check_bool(download, "download")
    normalize = _check_normalize(normalize)
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be a floating torch dtype {_FLOAT_DTYPES}, got {dtype!r}")
    status = prepare_dataset(key, root, download=download)
    cls = _torchvision_class(key)
    train, test = (cls(str(status.load_root), train=t, download=False) for t in (True, False))
    return Dataset(
        train_x=_images(train.data, dtype, normalize), train_y=train.targets.to(torch.int64),
        test_x=_images(test.data, dtype, normalize), test_y=test.targets.to(torch.int64),
        classes=tuple(cls.classes), name=key, root=status.root, normalize=normalize,
    )


# ---------------------------------------------------------------- command line

def main(argv=None) -> int:
    """``python -m rmtlib.data``: report where the data is and its status (exit 2 on error)."""
    parser = argparse.ArgumentParser(
        prog="python -m rmtlib.data",
        description="Locate, verify, (with --download) download and (once) extract MNIST / Fashion-MNIST.",
    )
    parser.add_argument("--root", help=f"data root (default: ${ENV_DATA}, else ./data: the "
                                       "repository's data/ inside a checkout)")
    parser.add_argument("--name", default="all", choices=[*DATASETS, "all"])
    parser.add_argument("--verify", action="store_true",
                        help="re-hash every file and check every .gz, ignoring stamps")
    parser.add_argument("--download", action="store_true",
                        help=f"download missing data with torchvision (needs internet, or ${ENV_MIRROR})")
    args = parser.parse_args(argv)
    try:
        for key in DATASETS if args.name == "all" else (args.name,):
            print(prepare_dataset(key, args.root, verify=args.verify, download=args.download))
            print(load_dataset(key, args.root, download=False))
    except (DataNotFoundError, CorruptDataError, ValueError, OSError, RuntimeError) as exc:
        print(f"rmtlib.data: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
