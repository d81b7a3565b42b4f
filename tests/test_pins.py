"""requirements.txt, environment.yml, pyproject.toml and the installed environment agree."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} pinned twice"
        pins[name] = specs[0].version
    return pins


REQUIREMENTS = _pins((REPO / "requirements.txt").read_text().splitlines())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DECLARED = [Requirement(r) for r in PYPROJECT["dependencies"]] + [
    Requirement(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra]


def test_environment_yml_carries_the_same_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[book,test,compare]" in pip_section
    assert _pins(pip_section) == REQUIREMENTS


@pytest.mark.parametrize("req", DECLARED, ids=str)
def test_every_declared_dependency_is_pinned_within_its_range(req):
    name = canonicalize_name(req.name)
    assert name in REQUIREMENTS, f"{req.name} is declared in pyproject.toml but not pinned in requirements.txt"
    assert req.specifier.contains(REQUIREMENTS[name], prereleases=True), \
        f"requirements.txt pins {req.name}=={REQUIREMENTS[name]}, outside pyproject's {req.specifier}"


def test_known_pins_from_the_issue():
    assert REQUIREMENTS["torch"] == "2.14.1" and REQUIREMENTS["torchvision"] == "0.29.1"
    assert REQUIREMENTS["jupyter-book"] == "1.0.4.post1" and "sphinx-mathjax-offline" in REQUIREMENTS


@pytest.mark.parametrize("name", sorted(REQUIREMENTS))
def test_installed_version_matches_the_pin(name):
    installed = metadata.version(name)
    assert re.sub(r"\+.*$", "", installed) == REQUIREMENTS[name], \
        f"{name} {installed} is installed but requirements.txt pins {REQUIREMENTS[name]}: run `make setup`"
