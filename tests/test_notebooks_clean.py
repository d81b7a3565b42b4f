"""The book's sources are consistent: clean notebooks, runs.yml, _toc.yml and the bibliography agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from rmtlib import reproduce as rp

REPO = Path(__file__).resolve().parents[1]
LAYOUT = rp.Layout(REPO)
NOTEBOOKS = sorted(p for p in LAYOUT.notebooks.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
RUNS = rp.load_config(LAYOUT, "default")


def _ids(paths):
    return [p.relative_to(LAYOUT.notebooks).as_posix() for p in paths]


def _toc_files(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["file"]] if "file" in node else []
        own += [node["root"]] if "root" in node else []
        return own + [f for v in node.values() for f in _toc_files(v)]
    if isinstance(node, list):
        return [f for item in node for f in _toc_files(item)]
    return []


TOC = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))


def test_there_are_notebooks():
    assert NOTEBOOKS and RUNS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_source_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{path}: clear the outputs before committing (Kernel > Restart & Clear Output)"
    assert "widgets" not in nb.metadata, f"{path}: remove the widget state from the metadata"
    defaults = rp.notebook_parameters(path)  # exactly one literal-only `parameters` cell
    assert {"seed", "profile", "results_dir"} <= set(defaults), f"{path}: the parameters cell needs seed, profile and results_dir"
    assert defaults["results_dir"] is None, f"{path}: results_dir must default to None (by hand: results/manual/)"
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert "parameters" in nb.cells[first_code].metadata.get("tags", []), f"{path}: the first code cell must be the parameters cell"


def test_every_notebook_is_a_run_and_every_run_a_notebook():
    assert sorted(_ids(NOTEBOOKS)) == sorted(s.notebook.as_posix() for s in RUNS.values())


@pytest.mark.parametrize("profile", rp.PROFILES)
def test_every_run_validates_against_its_notebook(profile):
    for spec in rp.load_config(LAYOUT, profile).values():
        rp.validate_parameters(LAYOUT.notebooks / spec.notebook,
                               {**spec.params, "profile": profile, "results_dir": None})


def test_the_toc_lists_every_run_and_only_existing_pages():
    executed = {f for f in TOC if f.startswith("book/executed/")}
    expected = {f"book/executed/{s.notebook.with_suffix('').as_posix()}" for s in RUNS.values()}
    assert executed == expected, "add each run's book/executed/<path> to _toc.yml (and only those)"
    for f in set(TOC) - executed:
        assert (REPO / f"{f}.md").is_file(), f"_toc.yml lists {f} but {f}.md does not exist"
    assert len(TOC) == len(set(TOC)), "a page is listed twice in _toc.yml"


def test_status_page_comes_last_and_depends_on_every_run():
    assert list(RUNS)[-1] == "status"
    assert set(RUNS["status"].depends_on) == set(RUNS) - {"status"}


def test_every_citation_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", (REPO / "book" / "references.bib").read_text(), re.M))
    texts = [p.read_text() for p in (REPO / "book").glob("*.md")]
    texts += ["".join(c["source"]) for p in NOTEBOOKS for c in json.loads(p.read_text())["cells"]
              if c["cell_type"] == "markdown"]
    cited = {k.strip() for t in texts for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", t)
             for k in group.split(",")}
    assert cited, "no citation found"
    assert cited <= keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"
    assert keys <= cited, f"in book/references.bib but never cited: {sorted(keys - cited)}"
