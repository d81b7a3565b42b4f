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


# --- Reader-first pages (issue 8, item 3) ---------------------------------------------------------

WIDTH, HEIGHT = 1400, 900   # the width at which no code may scroll sideways


def sidebar_pages(page, base: str) -> list[str]:
    """URLs of every page the sidebar links to (collapsed sections included), landing page first."""
    hrefs = page.eval_on_selector_all(
        "nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)")
    out = [f"{base}/book/index.html"]
    for href in hrefs:
        href = href.split("#")[0]
        if href not in out:
            out.append(href)
    return out


def sidebar_problems(page) -> list[str]:
    """A chapter listed under a caption of the same name, or a page listed twice."""
    parts = page.evaluate("""() => Array.from(document.querySelectorAll('nav.bd-docs-nav p.caption'))
        .map(c => {
            let ul = c.nextElementSibling;
            while (ul && ul.tagName !== 'UL') ul = ul.nextElementSibling;
            const items = ul ? Array.from(ul.querySelectorAll(':scope > li > a')) : [];
            return [c.textContent.trim(), items.map(a => a.textContent.trim())];
        })""")
    problems = [f"{caption!r} lists a chapter of the same name"
                for caption, items in parts for item in items
                if item.casefold() == caption.casefold()
                or item.split(". ", 1)[-1].casefold() == caption.casefold()]
    hrefs = page.eval_on_selector_all("nav.bd-docs-nav a.reference.internal",
                                      "links => links.map(a => a.href.split('#')[0])")
    problems += [f"{h} is listed {hrefs.count(h)} times" for h in sorted(set(hrefs))
                 if hrefs.count(h) > 1]
    if not parts:
        problems.append("the sidebar has no captions")
    return problems


def page_problems(page) -> list[str]:
    """On the current page at WIDTH px: code that scrolls sideways, a page wider than the window,
    and code shown on the first screen before any prose."""
    return page.evaluate(f"""() => {{
        const out = [];
        const visible = el => {{ const r = el.getBoundingClientRect();
                                 return r.width > 0 && r.height > 0; }};
        for (const pre of document.querySelectorAll('article pre')) {{
            if (visible(pre) && pre.scrollWidth > pre.clientWidth + 1)
                out.push(`code scrolls sideways: ${{pre.scrollWidth}} > ${{pre.clientWidth}} px: `
                         + pre.textContent.slice(0, 60));
        }}
        const doc = document.scrollingElement;
        if (doc.scrollWidth > window.innerWidth + 1)
            out.push(`page wider than the window: ${{doc.scrollWidth}} > ${{window.innerWidth}}`);
        const prose = Array.from(document.querySelectorAll('article p'))
            .filter(p => visible(p) && p.textContent.trim().length > 40
                         && !p.closest('div.cell, nav, .caption'));
        const code = Array.from(document.querySelectorAll('article div.cell_input, article div.highlight'))
            .filter(visible);
        const top = el => el.getBoundingClientRect().top + window.scrollY;
        if (!prose.length) out.push('no prose paragraph on the page');
        else if (top(prose[0]) > {HEIGHT}) out.push(`first prose at ${{top(prose[0])}} px, below the first screen`);
        if (prose.length && code.length && top(code[0]) < top(prose[0]))
            out.push('code before the first prose paragraph: ' + code[0].textContent.slice(0, 60));
        return out;
    }}""")


def landing_expected(results) -> dict[str, str]:
    """What the landing page must show, from the recorded metrics of the runs (``results``: the
    profile's results folder): key -> text."""
    import json

    from rmtlib.stats import format_mean_sd

    def metrics(run):
        return json.loads((results / run / "metrics.json").read_text())["values"]

    p1, p2, p3s, p3d = (metrics(r) for r in ("paper1_pruning", "paper2_theory",
                                             "paper3_stability_training", "paper3_doubling"))
    out = {f"paired_difference_{v}": format_mean_sd(p1[f"paired_difference_{v}"]["mean"],
                                                     p1[f"paired_difference_{v}"]["sd"])
           for v in ("paper_exact", "corrected")}
    out["p2t_ratio_relu_max_n"] = f"{p2['p2t_ratio_relu_max_n']:.4f}"
    out["p2t_acc_change_relu_max_n"] = f"{p2['p2t_acc_change_relu_max_n']:.2f}"
    out["p3s_sgd_drop_flat"] = format_mean_sd(p3s["p3s_sgd_drop_flat"]["mean"],
                                              p3s["p3s_sgd_drop_flat"]["sd"])
    out["p3s_gd_worst_drop"] = f"{p3s['p3s_gd_worst_drop']:.2f}"
    out["p3d_mnist_pixels_axes"] = f"{p3d['mnist_pixels_axes']['constant']:.1f}"
    fc, cnn, table = (metrics(r) for r in ("paper2_fc", "paper2_cnn", "paper2_table"))
    for key, m in (("p2_fc_fashion_diff", fc), ("p2_fc_mnist_diff", fc), ("p2_cnn_diff", cnn),
                   ("p2_table_mp_l1l2_test", table)):
        out[key] = format_mean_sd(m[key]["mean"], m[key]["sd"])
    sel, ww = metrics("beyond_selectors"), metrics("beyond_weightwatcher")
    out["bx_best_selector"] = str(sel["bx_best_selector"])
    out["bx_ww_speedup"] = f"{ww['bx_ww_speedup']:.0f}"
    return out


def landing_problems(page, expected: dict[str, str]) -> list[str]:
    """The landing page opens with the key findings, shows every expected number and its
    figures, and links every card to its page."""
    problems = []
    first = page.locator("article h2").first.text_content().strip()
    if not first.startswith("Key findings"):
        problems.append(f"the first section is {first!r}, not the key findings")
    cards = page.locator("article .sd-card")
    text = " ".join(cards.all_text_contents())
    problems += [f"{key}: {value!r} not on the landing page" for key, value in expected.items()
                 if value not in text]
    for img in cards.locator("img").all():
        img.scroll_into_view_if_needed()
        if not img.evaluate("i => i.complete && i.naturalWidth > 100"):
            problems.append(f"figure not shown: {img.get_attribute('src')}")
    if cards.locator("img").count() < 4:
        problems.append(f"{cards.locator('img').count()} key figures, expected one per reproduced part")
    for card in cards.all():
        if card.locator("a.reference.internal").count() == 0:
            problems.append(f"card without a link to its page: {card.text_content()[:60]!r}")
    return problems


def check_reader_first(base: str, results, screenshots) -> list[str]:
    """Every check above on the book served at ``base``; returns the problems found."""
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            external = block_external(context)
            page = context.new_page()
            page.goto(f"{base}/book/index.html", wait_until="load")
            problems += sidebar_problems(page)
            problems += [f"landing page: {p}" for p in landing_problems(page, landing_expected(results))]
            for url in sidebar_pages(page, base):
                page.goto(url, wait_until="load")
                name = url.rsplit("/book/", 1)[-1]
                page.screenshot(path=str(screenshots / (name.replace("/", "_") + ".png")))
                problems += [f"{name}: {p}" for p in page_problems(page)]
            problems += [f"external request: {u}" for u in external]
        finally:
            browser.close()
    return problems


def test_pages_are_reader_first(served_book, built_book, tmp_path):
    problems = check_reader_first(served_book, built_book.root / "results" / "quick", tmp_path)
    assert not problems, "\n".join(problems)


def test_reader_first_checks_catch_a_bad_page(tmp_path):
    """The checks above fail on a page with sideways-scrolling code shown before any prose, and
    on a sidebar listing a chapter under its own caption (so they can fail)."""
    from playwright.sync_api import sync_playwright

    long = "x = " + "1 + " * 80 + "1"
    bad = f"""<html><body><nav class="bd-docs-nav"><p class="caption">Theory</p>
        <ul><li><a class="reference internal" href="a.html">Theory</a></li>
            <li><a class="reference internal" href="a.html">Again</a></li></ul></nav>
        <article style="width: 700px"><div class="cell"><div class="cell_input">
        <pre style="white-space: pre; overflow-x: auto">{long}</pre></div></div>
        <p>{"Prose that comes after the code on this page. " * 3}</p></article></body></html>"""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_content(bad)
            problems = page_problems(page)
            sidebar = sidebar_problems(page)
        finally:
            browser.close()
    assert any("scrolls sideways" in p for p in problems), problems
    assert any("code before the first prose" in p for p in problems), problems
    assert any("same name" in p for p in sidebar) and any("listed 2 times" in p for p in sidebar)
