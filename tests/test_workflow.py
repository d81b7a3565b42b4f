"""The hosted workflow (.github/workflows/book.yml) runs the README's commands in order and publishes
what `jupyter-book build` writes; it cannot run here, so its shape is checked against the project."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((REPO / ".github" / "workflows" / "book.yml").read_text())


def _steps(job: str) -> list[dict]:
    return WORKFLOW["jobs"][job]["steps"]


def test_build_job_sets_up_tests_then_builds_the_book():
    steps = _steps("build")
    runs = [s.get("run", "") for s in steps]
    order = [next(i for i, r in enumerate(runs) if cmd in r)
             for cmd in ("make setup", "rmtlib.data --download", "make test", "make book")]
    assert order == sorted(order), f"steps out of order: {runs}"
    python = next(s["with"]["python-version"] for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert f"python={python}" in env["dependencies"]  # the same Python as the conda environment
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"  # where `jupyter-book build .` writes (Makefile: book)
    assert runs.index(next(r for r in runs if "make book" in r)) < steps.index(upload)
    data = next(r for r in runs if "rmtlib.data --download" in r)
    assert "RMTLIB_DATA=" in data and "RMTLIB_TEST_DATA=" in data


def test_deploy_job_has_the_pages_permissions_and_skips_pull_requests():
    deploy = WORKFLOW["jobs"]["deploy"]
    assert deploy["needs"] == "build" and "pull_request" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    assert WORKFLOW["permissions"] == {"contents": "read"}  # the build job gets no write access
