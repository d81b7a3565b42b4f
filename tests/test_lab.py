"""`make lab`, driven in a real browser: a reader re-executes a notebook by hand in JupyterLab.

On a copy of the repository (nothing is written into the checkout), `make lab` starts JupyterLab on
127.0.0.1 with a random port and token (its `setup` prerequisite is not remade: the test uses this
interpreter's virtual environment); Debian's chromium, driven by Playwright with every non-loopback
request aborted and recorded, opens `notebooks/theory/mp_law.ipynb`, runs all cells from the Run
menu and waits until every cell has executed. The test then checks the rendered figure, saves the
notebook and checks the saved outputs (an image, no error), and the by-hand results the notebook
wrote to `results/manual/mp_law/` (provenance mode "manual", no error recorded).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS, REPO, block_external, chromium, copy_tree

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "notebooks/theory/mp_law.ipynb"
# JupyterLab user settings for the test: every cell kept in the page (no windowing), no news.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}
STARTED = r"""() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
  .some(p => /\[(\*|\d+)\]/.test(p.textContent))"""
ALL_EXECUTED = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /\[\d+\]/.test(p.textContent));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


@pytest.fixture
def lab(tmp_path):
    """`make lab` in a copy of the repository; yields (base URL, token, copy, log path)."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed (apt-get install make)")
    tree = copy_tree(REPO, tmp_path / "repo")
    home = tmp_path / "jupyter"
    for rel, content in SETTINGS.items():
        (home / "settings" / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / rel).write_text(json.dumps(content))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "MPLCONFIGDIR": str(home / "matplotlib"), "RMTLIB_CACHE": str(home / "cache")}
    port, token = _free_port(), secrets.token_hex(16)
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={token} --NotebookNotary.db_file=:memory:")
    venv = Path(sys.executable).parent.parent  # this interpreter's virtual environment, not the copy's
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([make, "-o", "setup", "lab", f"VENV={venv}", f"LAB_ARGS={args}"], cwd=tree,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _api(base, token, "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make lab did not start JupyterLab (exit {proc.returncode}):\n{log.read_text()}")
            time.sleep(0.5)
        yield base, token, tree, log
    finally:
        try:
            _api(base, token, "/api/shutdown", "POST")  # stops the kernels too
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _executed_on_disk(path: Path) -> bool:
    try:
        cells = json.loads(path.read_text())["cells"]
    except ValueError:  # being written
        return False
    return all(isinstance(c.get("execution_count"), int) for c in cells if c["cell_type"] == "code")


def test_make_lab_runs_a_notebook_by_hand_in_a_real_browser(lab, tmp_path):
    base, token, tree, log = lab
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    text = log.read_text()
    assert f"JupyterLab on {tree}/notebooks, kernel 'python3'" in text
    assert f"http://127.0.0.1:{base.rsplit(':', 1)[1]}/lab/tree/notebooks?token=" in text  # the URL
    saved = tree / NOTEBOOK
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        try:
            external = block_external(context)
            page = context.new_page()
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", wait_until="load")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            # the kernel named by the notebook (python3) started and connected
            page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            deadline = time.monotonic() + 60
            while True:  # a Run All sent while the kernel connects is dropped: retry until cells start
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
                try:
                    page.wait_for_function(STARTED, timeout=5_000)
                    break
                except PlaywrightTimeout:
                    if time.monotonic() > deadline:
                        raise
            page.wait_for_function(ALL_EXECUTED, timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            figure = page.locator(".jp-OutputArea-output img").first
            figure.scroll_into_view_if_needed()
            assert figure.evaluate("img => img.complete && img.naturalWidth") > 100
            # save: File > Save, then (a menu click can be swallowed under load) Ctrl+S on the
            # notebook, retried until the executed notebook is on disk
            page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
            page.locator("li.lm-Menu-item[data-command='docmanager:save']").click()
            deadline = time.monotonic() + 60
            tries = 0
            while not _executed_on_disk(saved) and time.monotonic() < deadline:
                time.sleep(0.5)
                tries += 1
                if tries % 6 == 0:
                    page.keyboard.press("Escape")
                    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
                    page.keyboard.press("Control+s")
        except Exception:
            context.pages[-1].screenshot(path=str(tmp_path / "failure.png"))  # to look at
            raise
        finally:
            context.close()

    nb = json.loads(saved.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in code for o in c["outputs"]]
    assert _executed_on_disk(saved), "not every cell was executed and saved"
    assert [o for o in outputs if o["output_type"] == "error"] == []
    assert any("image/png" in o.get("data", {}) for o in outputs)
    results = tree / "results" / "manual" / "mp_law"
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["mode"] == "manual" and prov["error"] is None
    assert prov["cwd"] == str((tree / "notebooks" / "theory").resolve())  # the kernel ran in the notebook's folder
    assert (results / "mp_law.png").is_file() and json.loads((results / "metrics.json").read_text())["values"]
    assert external == [], f"JupyterLab tried to reach other hosts: {external}"
