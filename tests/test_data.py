"""Tests for rmtlib.data (MNIST / Fashion-MNIST: local files, else torchvision's download).

The source ``.gz`` files come from ``$RMTLIB_TEST_DATA`` (default ``<repo>/../shared/data``, else
the checkout's ``data/`` once the book has downloaded it);
every test works on copies or symlinks under ``tmp_path`` and on a private cache directory.
Downloads never leave the machine: the tests serve the ``.gz`` files from a loopback HTTP server
and point ``$RMTLIB_DATA_MIRROR`` (or torchvision's own ``mirrors``) at it; every other test has
the mirror pointed at a closed loopback port, so an unexpected download fails at once.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from rmtlib.data import (
    ENV_MIRROR,
    CorruptDataError,
    DataNotFoundError,
    Dataset,
    canonical_name,
    load_dataset,
    prepare_dataset,
    resolve_root,
)

# the source archives: $RMTLIB_TEST_DATA, else ../shared/data, else the checkout's data/ (downloaded)
_REPO = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("RMTLIB_TEST_DATA")
           or next((d for d in (_REPO.parent / "shared" / "data", _REPO / "data") if d.is_dir()),
                   _REPO.parent / "shared" / "data"))
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
SIZES = {"train-images-idx3-ubyte": 47040016, "train-labels-idx1-ubyte": 60008,
         "t10k-images-idx3-ubyte": 7840016, "t10k-labels-idx1-ubyte": 10008}
HAVE_DATA = all((SRC / d / "raw" / f"{f}.gz").is_file() for d in FOLDERS.values() for f in NAMES)
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"MNIST/Fashion-MNIST .gz files not found under {SRC}; set "
    "RMTLIB_TEST_DATA to a folder with MNIST/raw/*.gz and FashionMNIST/raw/*.gz")


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """A private cache, no RMTLIB_DATA, and downloads pointed at a closed loopback port, so the
    user's setup never leaks in or out and no test reaches the internet."""
    monkeypatch.setenv("RMTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RMTLIB_DATA", raising=False)
    monkeypatch.setenv(ENV_MIRROR, closed_port_url())


def link_gz(root: Path, key: str = "mnist", skip=()) -> Path:
    """``root/<Name>/raw/*.gz`` as symlinks to the source archives; return the raw folder."""
    raw = root / FOLDERS[key] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in NAMES:
        if f not in skip:
            (raw / f"{f}.gz").symlink_to(SRC / FOLDERS[key] / "raw" / f"{f}.gz")
    return raw


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` with (size, mtime) for files and links (not folders)."""
    return {str(p.relative_to(folder)): None if p.is_dir() and not p.is_symlink()
            else (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A writable root with both datasets as .gz symlinks, extracted once for the module."""
    root = tmp_path_factory.mktemp("data")
    for key in FOLDERS:
        link_gz(root, key)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMTLIB_CACHE", str(root / "unused-cache"))
        yield root, {key: load_dataset(key, root) for key in FOLDERS}


# ---------------------------------------------------------------- loading real data

@pytest.mark.parametrize("key, first, counts_train, counts_test", [
    ("mnist", [5, 0, 4, 1, 9],
     [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
     [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    ("fashion_mnist", [9, 0, 0, 3, 0], [6000] * 10, [1000] * 10),
])
@pytest.mark.data
@needs_data
def test_datasets_load(data_root, key, first, counts_train, counts_test):
    root, loaded = data_root
    ds = loaded[key]
    assert ds.name == key and ds.root == root and ds.normalize is None
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    for x in (ds.train_x, ds.test_x):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert ds.train_y[:5].tolist() == first
    assert torch.bincount(ds.train_y, minlength=10).tolist() == counts_train
    assert torch.bincount(ds.test_y, minlength=10).tolist() == counts_test
    assert len(ds.classes) == 10
    raw = root / FOLDERS[key] / "raw"
    for f in NAMES:  # torchvision's layout, stamps next to the files
        assert (raw / f).stat().st_size == SIZES[f]
        assert (raw / f"{f}.rmtlib-stamp.json").is_file()
    assert not (root / "unused-cache").exists()  # a writable root is extracted in place


@pytest.mark.data
@needs_data
def test_matches_totensor_and_normalize(data_root):
    from torchvision import datasets, transforms

    root, loaded = data_root
    ds = loaded["mnist"]
    idx = [0, 1, 777, 59999]
    tv = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    assert torch.equal(torch.stack([tv[i][0] for i in idx]), ds.train_x[idx])
    tv.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    norm = load_dataset("mnist", root, normalize=(0.5, 0.5))
    assert norm.normalize == (0.5, 0.5)
    assert torch.equal(torch.stack([tv[i][0] for i in idx]), norm.train_x[idx])
    assert norm.train_x.min().item() == -1.0 and norm.train_x.max().item() == 1.0
    assert torch.equal(norm.test_x, (ds.test_x - 0.5) / 0.5)
    d64 = load_dataset("mnist", root, dtype=torch.float64)
    assert d64.train_x.dtype == torch.float64
    assert torch.equal(d64.train_x, ds.train_x.double().mul(255).round().div(255))


@pytest.mark.data
@needs_data
def test_stamps_trusted_then_rehashed(data_root, tmp_path):
    root, _ = data_root
    first = prepare_dataset("mnist", root)
    assert all(s == "ok (stamp)" for _, s in first.files) and first.load_root == root
    verified = prepare_dataset("mnist", root, verify=True)
    assert all(s == "ok (hashed), .gz ok" for _, s in verified.files)
    # a copy with stamps and mtimes preserved is trusted; after an edit it is re-hashed
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for p in (root / "MNIST" / "raw").glob("*-ubyte*"):
        if not p.name.endswith(".gz"):
            shutil.copy2(p, raw / p.name)
    assert all(s == "ok (stamp)" for _, s in prepare_dataset("mnist", tmp_path).files)
    bad = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(bad.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    bad.write_bytes(bytes(data))
    before = snapshot(tmp_path)
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte has MD5") as exc:
        prepare_dataset("mnist", tmp_path)
    assert str(bad) in str(exc.value) and snapshot(tmp_path) == before


@pytest.mark.data
@needs_data
def test_download_flag_uses_local_data_offline(data_root):
    root, loaded = data_root
    ds = load_dataset("FashionMNIST", root, download=True)
    assert ds.name == "fashion_mnist" and torch.equal(ds.test_y, loaded["fashion_mnist"].test_y)


# ---------------------------------------------------------------- where the data is looked for

def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_root() == tmp_path / "data"
    monkeypatch.setenv("RMTLIB_DATA", "")
    assert resolve_root() == tmp_path / "data"
    monkeypatch.setenv("RMTLIB_DATA", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root("rel") == tmp_path / "rel"
    with pytest.raises(ValueError, match="root must be a non-empty path"):
        resolve_root("")


@pytest.mark.data
@needs_data
def test_load_follows_precedence(data_root, tmp_path, monkeypatch):
    root, _ = data_root
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.setenv("RMTLIB_DATA", str(root))
    assert load_dataset("mnist", None).root == root  # env beats ./data
    monkeypatch.setenv("RMTLIB_DATA", str(empty))
    assert load_dataset("mnist", root).root == root  # argument beats env
    with pytest.raises(DataNotFoundError, match=r"\$RMTLIB_DATA"):
        load_dataset("mnist", None)
    monkeypatch.delenv("RMTLIB_DATA")
    (empty / "data").symlink_to(root)
    assert load_dataset("mnist", None).root == empty / "data"  # default ./data


@pytest.mark.parametrize("rule", ["argument", "env", "default"])
def test_missing_data_message(tmp_path, monkeypatch, rule):
    where = tmp_path / "nowhere"
    monkeypatch.chdir(tmp_path)
    if rule == "env":
        monkeypatch.setenv("RMTLIB_DATA", str(where))
    elif rule == "default":
        where = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as exc:
        load_dataset("fashion-mnist", where if rule == "argument" else None, download=False)
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError) and "\n" not in msg
    assert str(where / "FashionMNIST" / "raw") in msg and f"{where} does not exist" in msg
    assert {"argument": "the root argument", "env": "$RMTLIB_DATA",
            "default": "the default ./data"}[rule] in msg
    assert "set RMTLIB_DATA to a folder containing FashionMNIST/raw/*.gz" in msg
    assert "load_dataset(..., download=True)" in msg and "python -m rmtlib.data --download" in msg
    assert not (tmp_path / "cache").exists() and not where.exists()


def test_partly_missing_names_the_missing_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in NAMES[:3]:
        (raw / f"{f}.gz").write_bytes(b"not checked before the missing file is reported")
    with pytest.raises(DataNotFoundError, match="missing t10k-labels-idx1-ubyte ") as exc:
        prepare_dataset("MNIST", tmp_path)
    assert "train-images" not in str(exc.value).split("missing")[1]


# ---------------------------------------------------------------- read-only roots, corruption

@pytest.mark.data
@needs_data
def test_read_only_root_extracts_into_cache(tmp_path):
    root = tmp_path / "ro"
    raw = link_gz(root)
    folders = [raw, raw.parent, root]
    before = snapshot(root)
    for d in folders:
        d.chmod(0o555)
    try:
        ds = load_dataset("mnist", root)
        again = prepare_dataset("mnist", root)
        assert snapshot(root) == before
    finally:
        for d in folders:
            d.chmod(0o755)
    cache_raw = tmp_path / "cache" / "MNIST" / "raw"
    assert ds.root == root and ds.train_y[:5].tolist() == [5, 0, 4, 1, 9]
    assert again.load_root == tmp_path / "cache"
    assert all(s == "ok (stamp)" for _, s in again.files)
    assert sorted(p.name for p in cache_raw.iterdir() if not p.name.endswith(".json")) == sorted(NAMES)


@pytest.mark.data
@needs_data
def test_read_only_root_with_extracted_files_keeps_stamps_in_cache(data_root, tmp_path):
    src = data_root[0] / "MNIST" / "raw"
    root = tmp_path / "ro"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in NAMES:
        shutil.copy2(src / f, raw / f)
    folders = [raw, raw.parent, root]
    before = snapshot(root)
    for d in folders:
        d.chmod(0o555)
    try:
        first = prepare_dataset("mnist", root)
        second = prepare_dataset("mnist", root)
        assert snapshot(root) == before
    finally:
        for d in folders:
            d.chmod(0o755)
    assert first.load_root == root and all(s == "ok (hashed)" for _, s in first.files)
    assert all(s == "ok (stamp)" for _, s in second.files)
    assert len(list((tmp_path / "cache" / "stamps").glob("*.json"))) == 4


def _labels(key="mnist", f="train-labels-idx1-ubyte") -> bytes:
    return gzip.decompress((SRC / FOLDERS[key] / "raw" / f"{f}.gz").read_bytes())


CORRUPTIONS = {
    "truncated": (lambda: (SRC / "MNIST/raw/train-labels-idx1-ubyte.gz").read_bytes()[:15000],
                  "not a valid gzip stream"),
    "not_gzip": (lambda: b"this is not gzip data\n" * 100, "not a valid gzip stream"),
    "wrong_size": (lambda: gzip.compress(_labels() + b"\0"), "more than the expected 60008"),
    "short": (lambda: gzip.compress(_labels()[:-1]), "decompresses to 60007 bytes"),
    "wrong_md5": (lambda: gzip.compress(_labels("fashion_mnist")), "MD5 of the uncompressed"),
}


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_gz_is_named_and_nothing_written(tmp_path, kind):
    make, match = CORRUPTIONS[kind]
    raw = link_gz(tmp_path / "root", skip={"train-labels-idx1-ubyte"})
    bad = raw / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(make())
    before = snapshot(tmp_path)
    # t10k-labels (smaller) is extracted first: the failure must also discard it
    with pytest.raises(CorruptDataError, match=match) as exc:
        load_dataset("mnist", tmp_path / "root")
    assert isinstance(exc.value, ValueError) and str(bad) in str(exc.value)
    assert snapshot(tmp_path) == before


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("content, match", [
    (b"\0" * 100, "has 100 bytes, expected 60008"),
    (b"\0" * 60008, "has MD5 "),
])
def test_existing_wrong_extracted_file_is_left_untouched(tmp_path, content, match):
    raw = link_gz(tmp_path)
    bad = raw / "train-labels-idx1-ubyte"
    bad.write_bytes(content)
    before = snapshot(tmp_path)
    with pytest.raises(CorruptDataError, match=match) as exc:
        load_dataset("mnist", tmp_path)
    msg = str(exc.value)
    assert str(bad) in msg and "left untouched" in msg and "delete it" in msg
    assert snapshot(tmp_path) == before and bad.read_bytes() == content


# ---------------------------------------------------------------- argument checks, subsets

def test_names_and_arguments(tmp_path):
    assert [canonical_name(n) for n in ("MNIST", "fashion-mnist", "FashionMNIST",
                                        "Fashion_MNIST")] == ["mnist"] + ["fashion_mnist"] * 3
    for bad in ("cifar10", "", None, 3):
        with pytest.raises(ValueError, match="valid names: 'mnist', 'fashion_mnist'") as exc:
            load_dataset(bad, tmp_path)
        assert isinstance(exc.value, TypeError) == (not isinstance(bad, str))
    for kw in ({"download": "yes"}, {"download": 1}):
        with pytest.raises(TypeError, match="download must be True or False"):
            load_dataset("mnist", tmp_path, **kw)
    with pytest.raises(TypeError, match="verify must be True or False"):
        prepare_dataset("mnist", tmp_path, verify=None)
    with pytest.raises(TypeError, match=r"root must be a path \(str or os.PathLike\), got 3 \(int\)"):
        resolve_root(3)
    for bad in ((0.5,), (0.5, 0.0), (0.5, -1), "ab", (float("nan"), 1.0), 0.5):
        with pytest.raises(ValueError, match="normalize"):
            load_dataset("mnist", tmp_path, normalize=bad)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        load_dataset("mnist", tmp_path, dtype=torch.int64)


def _toy(n_train=100, n_test=30) -> Dataset:
    """Row i of x holds the value i, so subsets can be checked row by row."""
    def x(n):
        return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return Dataset(x(n_train), torch.arange(n_train) % 10, x(n_test), torch.arange(n_test) % 10,
                   classes=tuple("0123456789"), name="mnist")


def test_subset_deterministic_nested_and_consistent():
    ds = _toy()
    a, b = ds.subset(20, 5, seed=3), ds.subset(20, 5, seed=3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    rows = a.train_x[:, 0, 0, 0].long()
    assert len(rows) == 20 and rows.unique().numel() == 20 and torch.all(rows.diff() > 0)
    assert torch.equal(a.train_y, rows % 10)
    assert not torch.equal(ds.subset(20, 5, seed=4).train_x, a.train_x)
    big = ds.subset(50, 10, seed=3)
    assert set(rows.tolist()) <= set(big.train_x[:, 0, 0, 0].long().tolist())
    assert set(a.test_x[:, 0, 0, 0].tolist()) <= set(big.test_x[:, 0, 0, 0].tolist())
    full = ds.subset(n_test=7, seed=3)
    assert torch.equal(full.train_x, ds.train_x) and len(full.test_x) == 7
    assert torch.equal(full.test_x, ds.subset(1, 7, seed=3).test_x)  # test rows ignore n_train
    np.testing.assert_array_equal(a.test_y.numpy(), a.test_x[:, 0, 0, 0].long().numpy() % 10)


@pytest.mark.parametrize("kw", [{"n_train": 0}, {"n_train": 101}, {"n_test": -1},
                                {"n_test": 31}, {"n_train": 2.0}, {"n_train": True}])
def test_subset_rejects_bad_sizes(kw):
    with pytest.raises(ValueError, match=rf"{next(iter(kw))} must be None or an integer in \[1, "):
        _toy().subset(**kw)


def test_repr_and_describe():
    ds = _toy()
    assert repr(ds).startswith("Dataset('mnist', train=100, test=30, x=(1, 2, 2) torch.float32")
    text = ds.describe()
    assert "in [0, 99]" in text and "classes: 0, 1, 2" in text
    with pytest.raises(ValueError, match="train_x must be"):
        Dataset(ds.train_x, ds.train_y[:5], ds.test_x, ds.test_y, ds.classes, "mnist")


# ---------------------------------------------------------------- command line

def run_cli(*args, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "RMTLIB_DATA"}
    # this checkout's rmtlib, wherever pip installed one
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "rmtlib.data", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.data
@needs_data
def test_cli_ok(data_root, tmp_path):
    root, _ = data_root
    res = run_cli("--name", "mnist", "--verify", cwd=tmp_path, env_extra={"RMTLIB_DATA": str(root)})
    assert res.returncode == 0, res.stderr
    assert f"mnist: root {root} (from $RMTLIB_DATA)" in res.stdout
    assert res.stdout.count("ok (hashed), .gz ok") == 4 and "train=60000" in res.stdout


def test_cli_errors(tmp_path):
    res = run_cli("--root", str(tmp_path / "none"), cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "MNIST data not found" in res.stderr and "--download" in res.stderr
    res = run_cli("--name", "cifar10", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice" in res.stderr


# ---------------------------------------------------------------- the default root in a checkout

def fake_checkout(folder: Path) -> Path:
    """A folder that find_root takes for a checkout of the repository."""
    (folder / "rmtlib").mkdir(parents=True)
    (folder / "_config.yml").write_text("title: t\n")
    (folder / "notebooks" / "paper1").mkdir(parents=True)
    return folder


def test_default_root_is_the_checkouts_data_folder(tmp_path, monkeypatch):
    repo = fake_checkout(tmp_path / "repo")
    monkeypatch.chdir(repo / "notebooks" / "paper1")  # where the runner and JupyterLab run notebooks
    assert resolve_root() == repo.resolve() / "data"
    with pytest.raises(DataNotFoundError, match=r"the default \./data, i\.e\. data/ of the repository") as exc:
        prepare_dataset("mnist")
    assert str(repo.resolve() / "data" / "MNIST" / "raw") in str(exc.value)
    monkeypatch.setenv("RMTLIB_DATA", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"  # the variable still wins
    monkeypatch.delenv("RMTLIB_DATA")
    monkeypatch.chdir(tmp_path)  # outside the checkout: ./data of the working directory
    assert resolve_root() == tmp_path / "data"


# ---------------------------------------------------------------- downloads from a loopback mirror

class _Mirror(SimpleHTTPRequestHandler):
    """Serves a data root; records the paths requested (404 for a missing file)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def copyfile(self, source, outputfile):
        try:
            super().copyfile(source, outputfile)
        except (ConnectionResetError, BrokenPipeError):
            pass  # torchvision's redirect probe closes the connection without reading the body


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A loopback HTTP server for the folder ``tmp_path/mirror`` (laid out like a data root, .gz
    files as symlinks to the source archives), set as $RMTLIB_DATA_MIRROR; yields (base URL,
    folder, requested paths)."""
    folder = tmp_path / "mirror"
    for key in FOLDERS:
        link_gz(folder, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Mirror, directory=str(folder)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(ENV_MIRROR, url)
    try:
        yield url, folder, server.requests
    finally:
        server.shutdown()
        server.server_close()


def outside(tmp_path: Path) -> dict:
    """Snapshot of tmp_path without the served folder and the cache."""
    return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("mirror", "cache"))}


@pytest.mark.data
@needs_data
def test_download_from_a_mirror_then_offline(mirror, tmp_path, monkeypatch, capsys):
    from torchvision import datasets

    url, _, requests = mirror
    torchvisions = list(datasets.MNIST.mirrors)
    monkeypatch.setenv(ENV_MIRROR, url + "/")  # a trailing slash is fine
    root = tmp_path / "fresh" / "data"  # neither folder exists
    ds = load_dataset("mnist", root)
    assert ds.root == root and ds.train_y[:5].tolist() == [5, 0, 4, 1, 9] and len(ds.test_y) == 10000
    assert f"downloading it with torchvision from {url}/MNIST/raw/" in capsys.readouterr().err
    assert set(requests) == {f"/MNIST/raw/{f}.gz" for f in NAMES}  # nothing of FashionMNIST
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.endswith(".json")) == sorted(
        [*NAMES, *(f"{f}.gz" for f in NAMES)])
    assert sorted(p.name for p in root.iterdir()) == ["MNIST"]  # no staging folder left
    for f in NAMES:
        assert gzip.decompress((raw / f"{f}.gz").read_bytes()) == (raw / f).read_bytes()
    # the files are there now: no request, even with the mirror gone
    requests.clear()
    monkeypatch.setenv(ENV_MIRROR, closed_port_url())
    assert all(s == "ok (stamp)" for _, s in prepare_dataset("mnist", root, download=True).files)
    assert requests == []
    assert datasets.MNIST.mirrors == torchvisions  # torchvision's class is left as it was


@pytest.mark.data
@needs_data
def test_download_into_the_checkouts_data_folder(mirror, tmp_path, monkeypatch):
    repo = fake_checkout(tmp_path / "repo")
    monkeypatch.chdir(repo / "notebooks" / "paper1")
    status = prepare_dataset("fashion_mnist", download=True)
    assert status.root == repo.resolve() / "data" and "repository" in status.rule
    assert [s for _, s in status.files] == ["downloaded, extracted"] * 4
    assert load_dataset("fashion-mnist").test_y[:5].tolist() == [9, 2, 1, 1, 6]
    assert not (repo / "notebooks" / "paper1" / "data").exists()


@pytest.mark.data
@needs_data
def test_download_keeps_existing_files_and_fetches_the_missing(mirror, tmp_path):
    root = tmp_path / "root"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in NAMES[:2]:
        shutil.copy2(SRC / "MNIST" / "raw" / f"{f}.gz", raw / f"{f}.gz")
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    status = prepare_dataset("mnist", root, download=True)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir() if p.name in before} == before
    assert dict(status.files) == {NAMES[0]: "extracted", NAMES[1]: "extracted",
                                  NAMES[2]: "downloaded, extracted", NAMES[3]: "downloaded, extracted"}


def _served_bytes(kind: str) -> bytes:
    labels = (SRC / "MNIST/raw/train-labels-idx1-ubyte.gz").read_bytes()
    return {"truncated": labels[:15000],
            "not_gzip": b"<html>this is an error page, not gzip</html>\n" * 50,
            "wrong_md5": gzip.compress(_labels("fashion_mnist")),
            "short": gzip.compress(_labels()[:-8])}[kind]


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("kind, match", [
    ("truncated", "is not a valid gzip stream"),
    ("not_gzip", "is not a valid gzip stream"),
    ("wrong_md5", "train-labels-idx1-ubyte.gz downloaded from .*: MD5 of the uncompressed bytes is"),
    ("short", "train-labels-idx1-ubyte.gz downloaded from .*decompresses to 60000 bytes, expected 60008"),
])
def test_corrupt_download_leaves_nothing_and_the_next_attempt_starts_clean(mirror, tmp_path, kind, match):
    url, served, _ = mirror
    bad = served / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    bad.unlink()
    bad.write_bytes(_served_bytes(kind))
    (tmp_path / "data").mkdir()  # an existing, empty root ...
    root = tmp_path / "data" / "new"  # ... and one the download must create (and remove again)
    before = outside(tmp_path)
    with pytest.raises(CorruptDataError, match=match) as exc:
        load_dataset("mnist", root)
    msg = str(exc.value)
    assert "\n" not in msg and f"{url}/MNIST/raw/" in msg and f"nothing was kept in {root}" in msg
    assert outside(tmp_path) == before  # no file, no staging folder, no folder left
    bad.unlink()
    bad.symlink_to(SRC / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz")
    assert load_dataset("mnist", root).train_y[:5].tolist() == [5, 0, 4, 1, 9]


@pytest.mark.data
@needs_data
def test_a_file_missing_on_the_mirror_is_one_clear_error(mirror, tmp_path):
    url, served, _ = mirror
    (served / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    before = outside(tmp_path)
    with pytest.raises(DataNotFoundError) as exc:
        load_dataset("fashion_mnist", tmp_path / "root")
    msg = str(exc.value)
    assert "\n" not in msg and "FashionMNIST data not found" in msg
    assert f"downloading it with torchvision from {url}/FashionMNIST/raw/ failed" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "404" in msg
    assert outside(tmp_path) == before


def test_offline_is_one_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    dead = closed_port_url()
    monkeypatch.setenv(ENV_MIRROR, dead)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DataNotFoundError) as exc:
        load_dataset("mnist")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"MNIST data not found: looked in {tmp_path / 'data'}")
    assert f"({tmp_path / 'data'} does not exist)" in msg
    assert f"downloading it with torchvision from {dead}/MNIST/raw/ failed" in msg
    assert "Connection refused" in msg
    assert "set RMTLIB_DATA_MIRROR to a URL serving <URL>/MNIST/raw/*.gz" in msg
    assert snapshot(tmp_path) == before


@pytest.mark.data
@needs_data
def test_download_false_never_touches_the_network(mirror, tmp_path):
    url, _, requests = mirror
    with pytest.raises(DataNotFoundError, match="download=True"):
        load_dataset("mnist", tmp_path / "root", download=False)
    with pytest.raises(DataNotFoundError):
        prepare_dataset("mnist", tmp_path / "root")  # prepare_dataset: download=False by default
    assert requests == [] and not (tmp_path / "root").exists()


@pytest.mark.data
@needs_data
def test_torchvisions_own_mirrors_and_archive_md5s_without_the_variable(mirror, tmp_path, monkeypatch):
    """Without $RMTLIB_DATA_MIRROR the class's mirrors are used, with torchvision's MD5s of the
    archives: the re-compressed test copies (other gzip headers) are refused by torchvision."""
    from torchvision import datasets

    url, _, requests = mirror
    monkeypatch.delenv(ENV_MIRROR)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"{url}/MNIST/raw/"])
    with pytest.raises(DataNotFoundError, match="File not found or corrupted") as exc:
        load_dataset("mnist", tmp_path / "root")
    assert f"from {url}/MNIST/raw/ failed" in str(exc.value) and requests
    assert not (tmp_path / "root").exists()


def test_unwritable_root_is_a_clear_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(DataNotFoundError, match=f"cannot download into {root}: it is not writable"):
            prepare_dataset("mnist", root, download=True)
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)


@pytest.mark.data
@needs_data
def test_stale_staging_of_a_killed_download_is_removed(mirror, tmp_path):
    root = tmp_path / "root"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    stale = root / f".rmtlib-download-MNIST-{host}-{dead}-0000abcd"
    live = root / f".rmtlib-download-MNIST-{host}-{os.getppid()}-0000abcd"  # a running process
    other = root / f".rmtlib-download-FashionMNIST-{host}-{dead}-0000abcd"  # another dataset
    for folder in (stale, live, other):
        (folder / "MNIST" / "raw").mkdir(parents=True)
        (folder / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"half")
    prepare_dataset("mnist", root, download=True)
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.data
@needs_data
def test_cli_download_from_a_mirror(mirror, tmp_path):
    url, _, _ = mirror
    res = run_cli("--name", "mnist", "--download", "--root", str(tmp_path / "d"), cwd=tmp_path,
                  env_extra={ENV_MIRROR: url})
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("downloaded, extracted") == 4 and "train=60000" in res.stdout
