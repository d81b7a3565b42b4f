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


# --- Layout (CONTRIBUTING.md, "Notebooks"; issue 8, items 2 and 3) ------------------------------

MAX_LINE = 88          # visible code lines fit the page (tests/test_browser.py checks 1400 px)
MAX_CELL_LINES = 30    # one screen of visible code per cell
HIDDEN = {"remove-cell", "remove-input"}
BOOKKEEPING = re.compile(r"(?<![\w.])(glue|run\.log|run\.text)\(")


def _visible_code(nb):
    """(index, source) of the code cells whose code the rendered page shows (hide-input is
    shown behind a toggle, so it counts)."""
    return [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and not HIDDEN & set(c.metadata.get("tags", []))]


# status/runs.ipynb belongs to the runner's rewrite of issue 8 (another branch): it must adopt the
# layout there; until then its failure is reported (xfail), not hidden.
PENDING_LAYOUT: dict[str, str] = {}


def _layout_params(paths):
    return [pytest.param(p, marks=pytest.mark.xfail(reason=PENDING_LAYOUT[i], strict=False))
            if i in PENDING_LAYOUT else p for p, i in zip(paths, _ids(paths))]


@pytest.mark.parametrize("path", _layout_params(NOTEBOOKS), ids=_ids(NOTEBOOKS))
def test_notebook_follows_the_layout(path):
    nb = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        f"{path}: the first cell is the markdown title and what the page shows"
    tags = set(code[0][1].metadata.get("tags", []))
    assert "parameters" in tags and tags & {"hide-input", "remove-cell"}, \
        f"{path}: the first code cell is the parameters cell, tagged parameters and hide-input"
    setup = code[1][1]
    assert (HIDDEN | {"hide-input"}) & set(setup.metadata.get("tags", [])), \
        f"{path}: the setup cell (imports, Run, seed) is tagged remove-cell or remove-input"
    problems = []
    for i, source in _visible_code(nb):
        lines = source.splitlines()
        problems += [f"cell {i}, line {n + 1}: {len(line)} > {MAX_LINE} characters"
                     for n, line in enumerate(lines) if len(line) > MAX_LINE]
        if i != code[0][0] and len(lines) > MAX_CELL_LINES:
            problems.append(f"cell {i}: {len(lines)} visible code lines > {MAX_CELL_LINES} "
                            "(move the computation into a tested library function)")
        problems += [f"cell {i}, line {n + 1}: bookkeeping ({m.group(1)}) in a visible cell; "
                     "record in a library function or a cell tagged remove-cell"
                     for n, line in enumerate(lines) for m in [BOOKKEEPING.search(line)] if m]
    assert not problems, f"{path}:\n" + "\n".join(problems)


def test_layout_check_catches_a_bad_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"),
                nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1  " + "#" * 90),
                nbformat.v4.new_code_cell("run.log('k', 1, doc='d')")]
    found = _visible_code(nb)
    assert [i for i, _ in found] == [1, 2, 3]
    assert any(len(line) > MAX_LINE for _, s in found for line in s.splitlines())
    assert BOOKKEEPING.search(found[-1][1]) and not BOOKKEEPING.search("paper1.record_run(x)")
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(AssertionError, match="hide-input"):
        test_notebook_follows_the_layout(path)


def test_sidebar_has_no_chapter_under_a_caption_of_the_same_name():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())

    def title(entry):
        if "title" in entry:
            return entry["title"]
        text = (REPO / f"{entry['file']}.md").read_text()
        return next(line[2:].strip() for line in text.splitlines() if line.startswith("# "))

    for part in toc["parts"]:
        for chapter in part["chapters"]:
            if (REPO / f"{chapter['file']}.md").is_file():
                assert title(chapter).casefold() != part["caption"].casefold(), \
                    f"_toc.yml: {chapter['file']} is listed under its own caption {part['caption']!r}"


def _key_figures_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("key_figures", REPO / "book" / "_ext" / "key_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_landing_page_figures_and_links_name_existing_runs():
    kf = _key_figures_module()
    index = (REPO / "book" / "index.md").read_text()
    figures = kf.PATTERN.findall(index)
    assert len(figures) >= 4, "the key findings show one figure per reproduced part"
    for rel, name in figures:
        source = (LAYOUT.notebooks / f"{rel}.ipynb").read_text()
        assert re.search(r"run\.savefig\([^)]*\\\"" + re.escape(name) + r"\\\"", source), \
            f"book/index.md shows {rel}/{name}.png but notebooks/{rel}.ipynb saves no figure {name!r}"
    for rel in set(re.findall(r"\{glue:text\}`executed/([\w/]+)\.ipynb::", index)):
        assert (LAYOUT.notebooks / f"{rel}.ipynb").is_file(), f"book/index.md glues from {rel}"
    assert index.index("## Key findings") < index.index("## What the book covers")
    # every part is reproduced now: no placeholder card is left (a part without runs would say
    # "Not reproduced yet" and show no number)
    assert "placeholder" not in index.casefold() and "not reproduced yet" not in index.casefold()
    for part in ("theory", "paper1", "paper2", "paper3", "beyond"):
        assert f"executed/{part}/" in index, f"the key findings have no glued result of {part}"


def test_key_figure_extraction(tmp_path):
    import base64

    kf = _key_figures_module()
    png = b"\x89PNG\r\n\x1a\nfake"
    cell = {"cell_type": "code", "source": ['fig = plot()\n', 'run.savefig(fig, "curve")'],
            "outputs": [{"output_type": "display_data",
                         "data": {"image/png": base64.b64encode(png).decode()}}]}
    other = {"cell_type": "code", "source": ['run.savefig(fig, "curve2")'], "outputs": []}
    (tmp_path / "executed" / "part").mkdir(parents=True)
    (tmp_path / "executed" / "part" / "nb.ipynb").write_text(json.dumps({"cells": [other, cell]}))
    page = tmp_path / "index.md"
    page.write_text("![a](executed/_key_figures/part/nb/curve.png)\n")
    (written,) = kf.extract(tmp_path, page)
    assert written == tmp_path / "executed" / "_key_figures" / "part" / "nb" / "curve.png"
    assert written.read_bytes() == png
    assert kf.figure_png(tmp_path / "executed" / "part" / "nb.ipynb", "curve2") is None
    assert kf.figure_png(tmp_path / "executed" / "part" / "nb.ipynb", "curv") is None
