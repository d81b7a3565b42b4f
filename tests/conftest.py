"""Shared test set-up: the data folder, one built copy of the book for the e2e and browser tests, and
the Chromium the browser tests drive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DATA = REPO.parent / "shared" / "data"
if "RMTLIB_DATA" not in os.environ and _DATA.is_dir():
    os.environ["RMTLIB_DATA"] = str(_DATA)  # CI and `make` set it; plain `pytest` gets the same default
elif "RMTLIB_DATA" not in os.environ and (REPO / "data" / "MNIST" / "raw").is_dir():
    os.environ["RMTLIB_DATA"] = str(REPO / "data")  # downloaded by `make book`: the test trees use it too

#: The browser tests drive Debian's chromium (never a downloaded browser), headless, without its
#: background traffic; every request to another host than these is aborted and recorded.
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def chromium() -> str:
    """Path of Debian's chromium; without it the test fails (skips with RMTLIB_ALLOW_SKIP_BROWSER=1)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("RMTLIB_ALLOW_SKIP_BROWSER") == "1":
        pytest.skip("chromium is not installed (apt-get install -y chromium); skipped because "
                    "RMTLIB_ALLOW_SKIP_BROWSER=1")
    pytest.fail("chromium is not installed: run `apt-get install -y chromium` (as .ci/run does), or set "
                "RMTLIB_ALLOW_SKIP_BROWSER=1 to skip this test locally")


def block_external(context) -> list[str]:
    """Abort every request of the Playwright browser ``context`` to a host other than
    ``LOCAL_HOSTS``; return the list in which their URLs are recorded."""
    from urllib.parse import urlsplit

    external: list[str] = []

    def gate(route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    context.route("**/*", gate)
    return external


#: Never copied into a test tree: caches and outputs a user may have locally.
_UNTRACKED = {".git", ".venv", "_build", "results", "data", "__pycache__", ".pytest_cache",
              ".hypothesis", ".benchmarks", ".cache", ".ipynb_checkpoints"}


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy the files git would commit from ``src`` (tracked + untracked-but-not-ignored) into
    ``dst``; without git, copy everything except caches and outputs."""
    listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        for rel in filter(None, listed.stdout.decode().split("\0")):
            if (src / rel).is_file():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dst / rel)
    else:
        shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_UNTRACKED, "executed"))
    return dst


def run(args: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run a command in ``cwd`` with this interpreter's environment; capture its output."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def reproduce(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "rmtlib.reproduce", *args], root)


def build_book(root: Path) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"], root)


@dataclass
class BuiltBook:
    root: Path
    html: Path
    runner: subprocess.CompletedProcess
    build: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BuiltBook:
    """A copy of the repository in which the quick profile ran and the book was built."""
    root = copy_tree(REPO, tmp_path_factory.mktemp("book"))
    runner = reproduce(root, "--profile", "quick")
    build = build_book(root) if runner.returncode == 0 else None
    return BuiltBook(root, root / "_build" / "html", runner, build)
