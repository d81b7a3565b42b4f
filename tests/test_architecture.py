"""The shape of the package: no import cycles, no private names across modules, light math modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rmtlib"
MATH_MODULES = ["mp", "tw", "bema", "gof", "rank", "ensembles", "esd", "linalg", "validation"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, imported names) of every import statement, nested ones included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names]


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {_module_name(p): p for p in FILES}


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in _imports(path):
            if not target.startswith("rmtlib"):
                continue
            for n in names:  # `from rmtlib.x import y` may import the submodule y
                if f"{target}.{n}" in MODULES:
                    graph[mod].add(f"{target}.{n}")
            if target in MODULES and target != mod:
                graph[mod].add(target)
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if t == "rmtlib" or t == m:
                continue
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if state.get(t) is None:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if state.get(m) is None:
            visit(m, [m])


def test_no_private_names_imported_across_modules():
    bad = []
    for mod, path in MODULES.items():
        for target, names in _imports(path):
            if target.startswith("rmtlib") and target != mod:
                bad += [f"{mod} imports {target}.{n}" for n in names
                        if n.startswith("_") and not n.startswith("__")
                        and f"{target}.{n}" not in MODULES]
    assert not bad, bad


def test_gof_depends_on_bema_not_the_reverse():
    graph = _graph()
    assert "rmtlib.bema" in graph["rmtlib.gof"]
    assert "rmtlib.gof" not in graph["rmtlib.bema"]


@pytest.mark.parametrize("name", MATH_MODULES)
def test_math_modules_import_neither_torch_nor_pandas(name):
    code = (f"import sys, rmtlib.{name}; "
            "bad = [m for m in ('torch', 'pandas') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, f"rmtlib.{name} imports {out.stdout.strip()} at import time {out.stderr}"


def test_one_gram_eigensolver():
    """Only rmtlib.linalg calls a symmetric eigensolver on a Gram matrix (the Tracy-Widom
    Nystrom matrices and the tridiagonal noise model are not Gram matrices)."""
    allowed = {"rmtlib.linalg", "rmtlib.tw", "rmtlib.ensembles"}
    calls = []
    for mod, path in MODULES.items():
        text = path.read_text()
        for pat in ("eigvalsh(", "linalg.eigh(", ".svd("):
            if pat in text and mod not in allowed:
                calls.append(f"{mod}: {pat}")
    assert not calls, calls
