"""Sphinx extension: the landing page's key figures are the figures of the executed notebooks.

``book/index.md`` shows a figure of a run as an image at
``executed/_key_figures/<part>/<notebook>/<name>.png``, where ``<name>`` is the name the notebook
gave it (``run.savefig(fig, "<name>")``). When the builder starts, this extension takes, for each
such path the landing page names, the PNG that the executed notebook
``book/executed/<part>/<notebook>.ipynb`` displays in the cell that saves ``<name>``, and writes
it there (``book/executed/`` is written by the runner and git-ignored). So the landing page's
figures are those of the same recorded runs as its glued numbers, whatever the profile; nothing
is drawn or typed here. A path whose notebook or figure is missing is a warning (an error under
``jupyter-book build -W``).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

PREFIX = "executed/_key_figures/"
PATTERN = re.compile(re.escape(PREFIX) + r"([\w\-/]+?)/([\w\-]+)\.png")


def figure_png(notebook: Path, name: str) -> bytes | None:
    """The first PNG output of the code cell of ``notebook`` that calls ``run.savefig(..., name)``."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    saves = re.compile(r"run\.savefig\([^)]*[\"']" + re.escape(name) + r"[\"']\s*\)")
    for cell in cells:
        if cell.get("cell_type") != "code" or not saves.search("".join(cell.get("source", ""))):
            continue
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                return base64.b64decode("".join(png) if isinstance(png, list) else png)
    return None


def extract(book: Path, page: Path) -> list[Path]:
    """Write every key figure ``page`` names under ``book``; return the paths written."""
    written = []
    for rel, name in PATTERN.findall(page.read_text(encoding="utf-8")):
        notebook = book / "executed" / f"{rel}.ipynb"
        target = book / PREFIX / rel / f"{name}.png"
        png = figure_png(notebook, name) if notebook.is_file() else None
        if png is None:
            logger.warning("key figure %s: %s has no figure %r (run the notebook first)",
                           target.relative_to(book), notebook.relative_to(book), name,
                           type="key_figures", location=str(page))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != png:
            target.write_bytes(png)
        written.append(target)
    return written


def _builder_inited(app):
    book = Path(app.srcdir) / "book"
    page = book / "index.md"
    if page.is_file():
        extract(book, page)


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
