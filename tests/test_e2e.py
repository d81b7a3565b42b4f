"""End to end: the quick profile of every notebook, the book build, the cache and a failure.

Runs in a copy of the repository (tests/conftest.py), so a user's results/ and book/executed/
are never touched.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import BuiltBook, build_book, reproduce

pytestmark = pytest.mark.e2e

EXTERNAL_ASSET = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


def _ok(book: BuiltBook) -> BuiltBook:
    assert book.runner.returncode == 0, f"runner failed:\n{book.runner.stdout}\n{book.runner.stderr}"
    assert book.build is not None and book.build.returncode == 0, \
        f"book build failed:\n{book.build.stdout[-5000:]}\n{book.build.stderr[-5000:]}"
    return book


def test_quick_profile_runs_and_book_builds_without_warnings(built_book):
    book = _ok(built_book)
    assert "0 failed" in book.runner.stdout
    assert "build succeeded" in book.build.stdout
    assert not re.search(r"\bWARNING\b", book.build.stdout + book.build.stderr)
    for name in ("mp_law", "status"):
        folder = book.root / "results" / "quick" / name
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["profile"] == "quick" and provenance["wall_time_s"] > 0
        notebook_dir = book.root / "notebooks" / provenance["notebook"].rsplit("/", 1)[0]
        results_dir = json.loads((folder / "params.json").read_text())["results_dir"]
        assert (notebook_dir / results_dir).resolve() == folder.resolve()
        assert not Path(results_dir).is_absolute()  # the executed page names no machine path


def test_mp_page_shows_figure_and_math(built_book):
    book = _ok(built_book)
    page = book.html / "book" / "executed" / "theory" / "mp_law.html"
    html = page.read_text()
    assert "Marchenko" in html
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert images, "no figure on the MP page"
    assert all((page.parent / src).resolve().is_file() for src in images)
    assert r"\lambda_\pm" in html and 'class="math' in html  # MathJax input, typeset in the browser
    assert (book.html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "_static/mathjax/tex-chtml.js" in html


def test_no_page_loads_an_external_script_or_stylesheet(built_book):
    book = _ok(built_book)
    pages = list(book.html.rglob("*.html"))
    assert len(pages) > 5
    offenders = {p.relative_to(book.html).as_posix(): EXTERNAL_ASSET.findall(p.read_text(errors="replace"))
                 for p in pages}
    assert not {k: v for k, v in offenders.items() if v}
    assert not any("unpkg.com" in p.read_text(errors="replace") for p in pages)


def test_second_run_executes_nothing_and_rebuilds_nothing(built_book):
    book = _ok(built_book)
    files = sorted((book.root / "results" / "quick").rglob("*")) + sorted((book.root / "book" / "executed").rglob("*"))
    before = {f: f.stat().st_mtime_ns for f in files}
    again = reproduce(book.root, "--profile", "quick")
    assert again.returncode == 0, again.stderr
    assert re.search(r": 0 executed, \d+ cached, 0 failed, 0 blocked", again.stdout), again.stdout
    assert {f: f.stat().st_mtime_ns for f in files} == before
    rebuilt = build_book(book.root)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert "0 added, 0 changed, 0 removed" in rebuilt.stdout


def test_failing_notebook_is_reported_and_its_page_removed(built_book, tmp_path):
    book = _ok(built_book)
    root = tmp_path / "repo"
    shutil.copytree(book.root, root, ignore=shutil.ignore_patterns("_build"))
    source = root / "notebooks" / "theory" / "mp_law.ipynb"
    nb = json.loads(source.read_text())
    failing_index = len(nb["cells"])
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "injected-failure",
                        "metadata": {}, "outputs": [],
                        "source": ["raise RuntimeError('corrupted file data/x.gz: bad checksum')"]})
    source.write_text(json.dumps(nb))
    page = root / "book" / "executed" / "theory" / "mp_law.ipynb"
    assert page.is_file()
    before_hash = json.loads((root / "results" / "quick" / "mp_law" / "provenance.json").read_text())["input_hash"]

    failed = reproduce(root, "--profile", "quick")
    assert failed.returncode == 1
    line = next(ln for ln in failed.stderr.splitlines() if ln.startswith("error: run 'mp_law' failed"))
    assert "notebooks/theory/mp_law.ipynb" in line
    assert f"cell index {failing_index}" in line
    assert "RuntimeError: corrupted file data/x.gz: bad checksum" in line
    assert "error: run 'status' not executed" in failed.stderr
    assert not page.exists()
    assert not (root / "book" / "executed" / "status" / "runs.ipynb").exists()
    folder = root / "results" / "quick" / "mp_law"
    assert (root / "results" / "quick" / "mp_law.failed" / "failed.ipynb").is_file()
    # the previous (good) results are kept as they were: they record the inputs they came from
    kept = json.loads((folder / "provenance.json").read_text())
    assert kept["input_hash"] == before_hash and (folder / "executed.ipynb").is_file()


def test_unknown_parameter_stops_before_executing(built_book, tmp_path):
    book = _ok(built_book)
    root = tmp_path / "repo"
    shutil.copytree(book.root, root, ignore=shutil.ignore_patterns("_build"))
    config = root / "notebooks" / "runs.yml"
    runs = yaml.safe_load(config.read_text())
    runs["mp_law"]["params"].setdefault("quick", {})["bogus"] = 1
    config.write_text(yaml.safe_dump(runs))
    provenance = root / "results" / "quick" / "mp_law" / "provenance.json"
    before = provenance.stat().st_mtime_ns

    failed = reproduce(root, "--profile", "quick")
    assert failed.returncode == 2
    assert "mp_law.ipynb" in failed.stderr and "unknown parameter 'bogus'" in failed.stderr
    assert provenance.stat().st_mtime_ns == before
