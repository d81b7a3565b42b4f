"""Sphinx extension: keep the built book self-contained.

Jupyter Book 1.x always loads sphinx-thebe, which -- even with thebe switched off -- puts the URL
of a thebe bundle on a CDN and a Binder configuration into every page. This extension unhooks
sphinx-thebe and drops its assets, then reports any script or stylesheet that a page would still
load from another host as a warning (an error under ``jupyter-book build -W``).
"""

from __future__ import annotations

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _is_thebe(asset) -> bool:
    return "thebe" in str(asset.filename or "") or "thebe" in asset.attributes.get("body", "").lower()


def _is_external(filename) -> bool:
    return str(filename or "").lower().startswith(("http://", "https://", "//"))


def _page_assets(app, pagename, templatename, context, doctree):
    for kind in ("script_files", "css_files"):
        context[kind] = [asset for asset in context.get(kind, []) if not _is_thebe(asset)]
        for asset in context[kind]:
            if _is_external(asset.filename):
                logger.warning("page %s would load %s from another host; the book must work offline",
                               pagename, asset.filename, type="offline", location=pagename)


def _unhook_thebe(app, config):
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "") == "sphinx_thebe":
                app.disconnect(listener.id)


def setup(app):
    app.connect("config-inited", _unhook_thebe)
    app.connect("html-page-context", _page_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
