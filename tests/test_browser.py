"""A real browser (Debian's chromium driven by Playwright) reads the built book offline.

Every request to a host other than 127.0.0.1/localhost is aborted and recorded; the test opens the
book, follows the sidebar to the Marchenko-Pastur page and checks that the figure is displayed, the
math is typeset by the bundled MathJax, and nothing was requested from outside.
CI installs chromium (.ci/run); locally the test may be skipped with RMTLIB_ALLOW_SKIP_BROWSER=1.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import CHROMIUM_ARGS, block_external
from conftest import chromium as _chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_book(built_book):
    assert built_book.build is not None and built_book.build.returncode == 0, "the book did not build"
    handler = functools.partial(_QuietHandler, directory=str(built_book.html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_mp_page_in_a_real_browser(served_book, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    failed_local = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            external = block_external(context)
            page = context.new_page()
            page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
                    and failed_local.append(f"{r.status} {r.url}"))  # favicon: the browser's own request
            page.goto(f"{served_book}/index.html", wait_until="load")
            page.wait_for_url("**/book/index.html")  # the root redirects to the book's first page

            nav = page.locator("nav.bd-docs-nav")
            link = nav.locator("a", has_text="Marchenko").first
            if not link.is_visible():  # a section of a collapsed chapter: open the chapter's toggle
                chapter = nav.locator("li.has-children", has=page.locator("a", has_text="Marchenko")).last
                chapter.locator("summary .toctree-toggle").first.click()
            link.click()
            page.wait_for_url("**/book/executed/theory/mp_law.html")
            page.wait_for_load_state("load")

            figure = page.locator("article img[src$='.png']").first
            figure.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle())
            assert figure.evaluate("img => img.naturalWidth") > 100

            page.wait_for_selector("mjx-container", timeout=30_000)
            assert page.locator("mjx-container").count() >= 3
            assert page.locator("mjx-merror").count() == 0  # no TeX errors
            page.screenshot(path=str(tmp_path / "mp_law.png"), full_page=True)
        finally:
            context.close()

    assert external == [], f"the book tried to reach other hosts: {external}"
    assert failed_local == [], f"local requests failed: {failed_local}"
