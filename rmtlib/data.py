"""MNIST and Fashion-MNIST as in-memory tensors, offline first.

:func:`load_dataset` returns a :class:`Dataset` holding the whole train and test splits as
tensors: images ``(n, 1, 28, 28)`` scaled to ``[0, 1]`` exactly as torchvision's ``ToTensor``
does (``x / 255``), optionally normalized as ``(x - mean) / std``, and ``int64`` labels.
The files are read by torchvision's own dataset classes (``download=False``); whole tensors are
converted at once, never sample by sample.

Where the data is looked for (:func:`resolve_root`): the ``root`` argument, else the environment
variable ``RMTLIB_DATA``, else ``./data`` in the current working directory.  The root uses
torchvision's layout ``<root>/<Name>/raw/`` with ``Name`` = ``MNIST`` or ``FashionMNIST``,
holding either the uncompressed IDX files or only their ``.gz`` archives.

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

Errors: :class:`DataNotFoundError` (a ``FileNotFoundError``) when files are missing, with where
it looked and how to get the data; :class:`CorruptDataError` (a ``ValueError``) for a truncated,
non-gzip or wrong-content archive or a wrong extracted file; ``ValueError`` for bad arguments.

Command line: ``python -m rmtlib.data [--root DIR] [--name mnist|fashion_mnist|all] [--verify]
[--download]`` prints where the data was found and its status; on failure it prints a one-line
error to stderr and exits with code 2.
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
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rmtlib._paths import cache_dir
from rmtlib.seeding import check_random_state

__all__ = [
    "DATASETS",
    "CorruptDataError",
    "DataNotFoundError",
    "DataStatus",
    "Dataset",
    "cache_dir",
    "canonical_name",
    "load_dataset",
    "main",
    "prepare_dataset",
    "resolve_root",
]

ENV_DATA = "RMTLIB_DATA"
DATASETS = ("mnist", "fashion_mnist")

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
    key = name.lower().replace("-", "_") if isinstance(name, str) else None
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: 'mnist', 'fashion_mnist' "
            "(also 'fashion-mnist', 'FashionMNIST'; case-insensitive)"
        )
    return _ALIASES[key]


def _resolve(root) -> tuple[Path, str]:
    """The data root as an absolute path and the rule that chose it."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
            raise ValueError(f"root must be a non-empty path, got {root!r}")
        return Path(root).expanduser().absolute(), "the root argument"
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser().absolute(), f"${ENV_DATA}"
    return Path.cwd() / "data", f"the default ./data (no root argument, ${ENV_DATA} unset)"


def resolve_root(root=None) -> Path:
    """Data root: ``root`` if given, else ``$RMTLIB_DATA`` if set and non-empty, else
    ``./data`` relative to the current working directory; always absolute (``~`` expanded,
    symlinks kept)."""
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


def _copy_verified(src: Path, size: int, md5: str, out=None) -> None:
    """Stream ``src`` (gunzipped if it ends in ``.gz``) into ``out`` (if given), checking the
    size and MD5 of the uncompressed bytes; raise :class:`CorruptDataError` naming ``src``."""
    fix = "replace it with a fresh copy of the original file"
    h, n = hashlib.md5(), 0
    with (gzip.open if src.suffix == ".gz" else open)(src, "rb") as f:
        while True:
            try:
                chunk = f.read(_CHUNK)
            except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                raise CorruptDataError(f"{src} is not a valid gzip stream ({exc}); {fix}") from exc
            if not chunk:
                break
            n += len(chunk)
            if n > size:
                raise CorruptDataError(f"{src} decompresses to more than the expected {size} "
                                       f"bytes; {fix}")
            h.update(chunk)
            if out is not None:
                out.write(chunk)
    if n != size:
        raise CorruptDataError(f"{src} decompresses to {n} bytes, expected {size}; {fix}")
    if h.hexdigest() != md5:
        raise CorruptDataError(f"{src}: MD5 of the uncompressed bytes is {h.hexdigest()}, "
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


def _missing_message(key: str, root: Path, rule: str, missing: list[str]) -> str:
    folder = _FILES[key][0]
    where = f"{root / folder / 'raw'}" + ("" if root.is_dir() else f" ({root} does not exist)")
    return (f"{folder} data not found: looked in {where}, the data root chosen by {rule}; "
            f"missing {', '.join(missing)} (.gz or uncompressed). To fix, set {ENV_DATA} to a "
            f"folder containing {folder}/raw/*.gz, pass root=..., or run `python -m rmtlib.data "
            "--download --root DIR` on a machine with internet")


def prepare_dataset(name: str, root=None, *, verify: bool = False) -> DataStatus:
    """Locate a dataset, verify it and, if needed, extract its ``.gz`` files once.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
    root : path-like, optional
        Data root (see :func:`resolve_root`), laid out as ``<root>/<Name>/raw/``.
    verify : bool
        Re-hash every uncompressed file even if its stamp matches, and also decompress and
        check every ``.gz`` present.

    Returns
    -------
    DataStatus
        Where the data was found and the folder from which torchvision can load it.

    Raises
    ------
    DataNotFoundError
        A file is neither uncompressed nor ``.gz`` in ``<root>/<Name>/raw/``.
    CorruptDataError
        An archive is truncated / not gzip / has the wrong uncompressed size or MD5, or an
        existing uncompressed file is wrong.  Nothing is written or modified in that case.
    """
    key = canonical_name(name)
    folder, files = _FILES[key]
    root, rule = _resolve(root)
    raw = root / folder / "raw"
    status: dict[str, str] = {}
    for f, size, md5 in files:  # existing extracted files first, so that they are never replaced
        if (raw / f).is_file():
            status[f] = _check_file(raw / f, size, md5, f + ".gz", verify)
    missing = [f for f, _, _ in files if f not in status and not (raw / f"{f}.gz").is_file()]
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
            status[f] = "extracted"
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


def _download(key: str, root) -> DataStatus:
    """Use the local data if complete, else torchvision's ``download=True`` into the root."""
    try:
        return prepare_dataset(key, root)
    except DataNotFoundError:
        pass
    path = resolve_root(root)
    try:
        _torchvision_class(key)(str(path), train=True, download=True)
    except (RuntimeError, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise DataNotFoundError(f"could not download {_FILES[key][0]} into {path}: {reason}") from exc
    return prepare_dataset(key, root)


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


def load_dataset(name: str, root=None, *, download: bool = False, normalize=None,
                 dtype: torch.dtype = torch.float32) -> Dataset:
    """Load MNIST or Fashion-MNIST as in-memory tensors.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion_mnist"`` (also ``"fashion-mnist"``, ``"FashionMNIST"``;
        case-insensitive).
    root : path-like, optional
        Data root; default ``$RMTLIB_DATA``, else ``./data`` (see :func:`resolve_root`).
    download : bool
        If the files are missing, fetch them with torchvision's ``download=True`` into the
        root (needs internet).  Existing files are used as they are.
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
    normalize = _check_normalize(normalize)
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be a floating torch dtype {_FLOAT_DTYPES}, got {dtype!r}")
    status = _download(key, root) if download else prepare_dataset(key, root)
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
        description="Locate, verify and (once) extract MNIST / Fashion-MNIST for rmtlib.",
    )
    parser.add_argument("--root", help=f"data root (default: ${ENV_DATA}, else ./data)")
    parser.add_argument("--name", default="all", choices=[*DATASETS, "all"])
    parser.add_argument("--verify", action="store_true",
                        help="re-hash every file and check every .gz, ignoring stamps")
    parser.add_argument("--download", action="store_true",
                        help="download missing data with torchvision (needs internet)")
    args = parser.parse_args(argv)
    try:
        for key in DATASETS if args.name == "all" else (args.name,):
            if args.download:
                _download(key, args.root)
            print(prepare_dataset(key, args.root, verify=args.verify))
            print(load_dataset(key, args.root))
    except (DataNotFoundError, CorruptDataError, ValueError, OSError, RuntimeError) as exc:
        print(f"rmtlib.data: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
