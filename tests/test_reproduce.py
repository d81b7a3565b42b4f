"""Unit tests of the notebook runner on tiny throwaway notebooks (never the book's own)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import rmtlib
from rmtlib import reproduce as rp

PACKAGE = Path(rmtlib.__file__).resolve().parent

PARAMS_SRC = 'seed = 0\nscale = 1.0\ncount = 2\nlabel = "x"\nflag = False\nsizes = [1, 2]\nextra = None\nprofile = "manual"\nresults_dir = None\n'
BODY_SRC = ("from rmtlib.results import Run\n"
            "run = Run(results_dir, name='demo')\n"
            "run.log('value', scale * count + seed, doc='scale * count + seed (dimensionless)')\n"
            "print('profile', profile)\n")


def write_notebook(path: Path, params: str = PARAMS_SRC, body: str = BODY_SRC, *, outputs=False) -> Path:
    cells = [{"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# Demo"]},
             {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]},
              "execution_count": None, "outputs": [], "source": params},
             {"cell_type": "code", "id": "body", "metadata": {}, "execution_count": 3 if outputs else None,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": "old\n"}] if outputs else [],
              "source": body}]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def write_config(root: Path, runs: dict) -> None:
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    (root / "notebooks" / "runs.yml").write_text(yaml.safe_dump(runs, sort_keys=False))


@pytest.fixture
def repo(tmp_path):
    """A minimal repository: two notebooks, one depending on the other; the real rmtlib."""
    write_notebook(tmp_path / "notebooks" / "part" / "demo.ipynb")
    write_notebook(tmp_path / "notebooks" / "part" / "after.ipynb",
                   params='seed = 0\nprofile = "manual"\nresults_dir = None\n',
                   body="from rmtlib.results import load_run\n"
                        "print(load_run('demo', profile, root='..' + '/..').metrics)\n")
    write_config(tmp_path, {
        "demo": {"notebook": "part/demo.ipynb", "title": "Demo",
                 "params": {"base": {"seed": 1, "count": 3}, "quick": {"scale": 0.5},
                            "default": {"scale": 2}, "paper": {"count": 10}}},
        "after": {"notebook": "part/after.ipynb", "title": "After", "depends_on": ["demo"],
                  "params": {"base": {"seed": 0}}},
    })
    return rp.Layout(tmp_path, package=PACKAGE)


# ----------------------------------------------------------------------------- configuration

def test_profiles_resolve_base_then_overrides_and_paper_falls_back_to_default(repo):
    assert rp.load_config(repo, "quick")["demo"].params == {"seed": 1, "count": 3, "scale": 0.5}
    assert rp.load_config(repo, "default")["demo"].params == {"seed": 1, "count": 3, "scale": 2}
    assert rp.load_config(repo, "paper")["demo"].params == {"seed": 1, "count": 10, "scale": 2}


def test_runs_come_in_dependency_order_and_all_means_every_other_run(repo):
    runs = yaml.safe_load(repo.config.read_text())
    write_config(repo.root, {"after": runs["after"], "demo": runs["demo"]})
    assert list(rp.load_config(repo, "quick")) == ["demo", "after"]
    write_config(repo.root, {"after": {**runs["after"], "depends_on": "all"}, "demo": runs["demo"]})
    assert rp.load_config(repo, "quick")["after"].depends_on == ("demo",)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["demo"]["params"]["base"].pop("seed"), "needs params.base.seed"),
    (lambda r: r["demo"]["params"]["base"].update(seed=-1), "needs params.base.seed"),
    (lambda r: r["demo"]["params"]["quick"].update(results_dir="x"), "set by the runner"),
    (lambda r: r["demo"]["params"].update(fast={}), "'params' must be a mapping"),
    (lambda r: r["demo"].update(notbook="x.ipynb"), "unknown key(s) ['notbook']"),
    (lambda r: r["demo"].update(notebook="part/missing.ipynb"), "does not exist"),
    (lambda r: r["demo"].update(notebook="../x.ipynb"), "relative to"),
    (lambda r: r["after"].update(notebook="part/demo.ipynb"), "already used by run 'demo'"),
    (lambda r: r["demo"].pop("title"), "non-empty 'title'"),
    (lambda r: r["after"].update(depends_on=["nope"]), "depends on unknown run 'nope'"),
    (lambda r: r["demo"].update(depends_on=["after"]), "dependency cycle"),
    (lambda r: r.update({"bad name": r["demo"]}), "letters, digits"),
    (lambda r: r["demo"].update(exclusive="yes"), "'exclusive' must be true or false, got 'yes'"),
])
def test_invalid_configuration_is_rejected_with_a_clear_message(repo, mutate, message):
    runs = yaml.safe_load(repo.config.read_text())
    mutate(runs)
    write_config(repo.root, runs)
    with pytest.raises(rp.ConfigError, match=None) as err:
        rp.load_config(repo, "quick")
    assert message in str(err.value)


def test_unknown_profile_and_missing_config(repo, tmp_path):
    with pytest.raises(rp.ConfigError, match="unknown profile 'fast'"):
        rp.load_config(repo, "fast")
    with pytest.raises(rp.ConfigError, match="not found"):
        rp.load_config(rp.Layout(tmp_path / "elsewhere"), "quick")


# ----------------------------------------------------------------------------- parameters

def test_parameters_cell_is_read_with_literal_defaults(repo):
    defaults = rp.notebook_parameters(repo.notebooks / "part" / "demo.ipynb")
    assert defaults == {"seed": 0, "scale": 1.0, "count": 2, "label": "x", "flag": False, "sizes": [1, 2],
                        "extra": None, "profile": "manual", "results_dir": None}


@pytest.mark.parametrize("source, message", [
    ("import numpy as np\nseed = 0\n", "only `name = literal`"),
    ("seed = 2 ** 3\n", "needs a literal default"),
    ("seed = (\n", "not plain Python"),
    ("%matplotlib inline\nseed = 0\n", "not plain Python"),
])
def test_parameters_cell_must_hold_literal_assignments(tmp_path, source, message):
    path = write_notebook(tmp_path / "nb.ipynb", params=source)
    with pytest.raises(rp.ConfigError, match="nb.ipynb") as err:
        rp.notebook_parameters(path)
    assert message in str(err.value)


def test_exactly_one_parameters_cell_is_required(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb")
    nb = json.loads(path.read_text())
    nb["cells"][1]["metadata"]["tags"] = []
    path.write_text(json.dumps(nb))
    with pytest.raises(rp.ConfigError, match="exactly one code cell tagged 'parameters', found 0"):
        rp.notebook_parameters(path)


@pytest.mark.parametrize("name, value, ok", [
    ("scale", 3, True), ("scale", 2.5, True), ("count", 2.5, False), ("count", True, False),
    ("flag", 1, False), ("flag", True, True), ("label", 3, False), ("extra", {"a": [1]}, True),
    ("sizes", [3, 4, 5], True), ("sizes", [1.5], False), ("sizes", 3, False), ("seed", 7, True),
])
def test_parameter_types_are_checked_against_the_defaults(repo, name, value, ok):
    path = repo.notebooks / "part" / "demo.ipynb"
    if ok:
        rp.validate_parameters(path, {name: value})
    else:
        with pytest.raises(rp.ConfigError, match=f"demo.ipynb: parameter '{name}'"):
            rp.validate_parameters(path, {name: value})


def test_unknown_parameter_names_the_notebook_and_the_parameter(repo):
    with pytest.raises(rp.ConfigError, match=r"demo\.ipynb: unknown parameter 'sclae'"):
        rp.validate_parameters(repo.notebooks / "part" / "demo.ipynb", {"sclae": 1.0})


def test_invalid_parameters_stop_the_runner_before_anything_executes(repo):
    runs = yaml.safe_load(repo.config.read_text())
    runs["after"]["params"]["base"]["typo"] = 1
    write_config(repo.root, runs)
    with pytest.raises(rp.ConfigError, match="after.ipynb: unknown parameter 'typo'"):
        rp.reproduce("quick", layout=repo)
    assert not (repo.results / "quick" / "demo").exists()


# ----------------------------------------------------------------------------- hashing

def test_input_hash_ignores_outputs_but_tracks_sources_params_package_and_dependencies(repo, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    layout = rp.Layout(repo.root, package=package)

    def hashes(profile="quick"):
        return rp.input_hashes(rp.load_config(layout, profile), layout, profile)

    base = hashes()
    assert base == hashes() and len(base["demo"]) == 64
    assert hashes("default") != base

    nb = repo.notebooks / "part" / "demo.ipynb"
    write_notebook(nb, outputs=True)  # outputs and execution counts only
    assert hashes() == base

    runs = yaml.safe_load(repo.config.read_text())
    runs["demo"]["params"]["paper"]["count"] = 11  # another profile's parameters
    write_config(repo.root, runs)
    assert hashes() == base

    runs["demo"]["params"]["quick"]["scale"] = 0.25
    write_config(repo.root, runs)
    changed = hashes()
    assert changed["demo"] != base["demo"] and changed["after"] != base["after"]  # dependency changed

    (package / "a.py").write_text("x = 2\n")
    assert hashes()["after"] != changed["after"]

    write_notebook(nb, body=BODY_SRC + "print('more')\n")
    assert hashes()["demo"] != changed["demo"]


def test_source_hash_covers_python_files_only(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("a")
    before = rp.source_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub" / "__pycache__").mkdir()
    (tmp_path / "sub" / "__pycache__" / "a.cpython.py").write_text("ignored")
    assert rp.source_hash(tmp_path) == before
    (tmp_path / "sub" / "b.py").write_text("b")
    assert rp.source_hash(tmp_path) != before


# ----------------------------------------------------------------------------- execution

def _status(outcomes):
    return {o.name: o.status for o in outcomes}


def test_runs_execute_record_results_and_are_cached(repo):
    first = rp.reproduce("quick", layout=repo)
    assert _status(first) == {"demo": "executed", "after": "executed"}
    folder = repo.results / "quick" / "demo"
    assert json.loads((folder / "metrics.json").read_text()) == {
        "values": {"value": 2.5}, "doc": {"value": "scale * count + seed (dimensionless)"}}
    assert json.loads((folder / "params.json").read_text()) == {
        "seed": 1, "count": 3, "scale": 0.5, "profile": "quick",
        "results_dir": os.path.relpath(folder, repo.notebooks / "part")}  # machine-independent
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["input_hash"] == first[0].input_hash and prov["seed"] == 1 and prov["profile"] == "quick"
    assert prov["rmtlib_source_hash"] == rp.source_hash(PACKAGE) and prov["rmtlib_version"] == rmtlib.__version__
    assert prov["wall_time_s"] > 0 and prov["end_utc"] >= prov["start_utc"] and prov["cpu_count"] >= 1
    assert {"git_commit", "git_dirty", "python", "torch", "numpy", "hostname"} <= set(prov)
    assert len(prov["run_id"]) == 32 and prov["dependency_run_ids"] == {}
    after = json.loads((repo.results / "quick" / "after" / "provenance.json").read_text())
    assert after["dependency_run_ids"] == {"demo": prov["run_id"]}
    assert prov["git_commit"] is None  # tmp_path is not a git repository
    executed = json.loads((folder / "executed.ipynb").read_text())
    assert any("profile quick" in "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    book_copy = repo.book / "part" / "demo.ipynb"
    assert json.loads(book_copy.read_text()) == rp.merge_parameters(executed, "quick")  # the reader copy

    mtimes = {p: p.stat().st_mtime_ns for p in [*repo.results.rglob("*"), *repo.book.rglob("*")]}
    again = rp.reproduce("quick", layout=repo)
    assert _status(again) == {"demo": "cached", "after": "cached"}
    assert not any(o.extra["copied"] for o in again)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_profile_switch_reuses_cached_results_without_executing(repo):
    rp.reproduce("quick", layout=repo, only=["demo"])
    rp.reproduce("default", layout=repo, only=["demo"])
    book_copy = repo.book / "part" / "demo.ipynb"
    executed_default = json.loads((repo.results / "default" / "demo" / "executed.ipynb").read_text())
    assert json.loads(book_copy.read_text()) == rp.merge_parameters(executed_default, "default")
    back = rp.reproduce("quick", layout=repo, only=["demo"])
    assert _status(back) == {"demo": "cached"} and back[0].extra["copied"]
    executed_quick = json.loads((repo.results / "quick" / "demo" / "executed.ipynb").read_text())
    assert json.loads(book_copy.read_text()) == rp.merge_parameters(executed_quick, "quick")


def test_only_selects_runs_with_their_dependencies_and_force_reexecutes(repo):
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"])) == {"demo": "executed"}
    assert _status(rp.reproduce("quick", layout=repo, only=["after"])) == {"demo": "cached", "after": "executed"}
    assert _status(rp.reproduce("quick", layout=repo, only=["after"], force=True)) == {
        "demo": "cached", "after": "executed"}
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"], force=True)) == {"demo": "executed"}
    assert _status(rp.reproduce("quick", layout=repo)) == {"demo": "cached", "after": "executed"}  # new demo results
    assert _status(rp.reproduce("quick", layout=repo)) == {"demo": "cached", "after": "cached"}
    with pytest.raises(rp.ConfigError, match="unknown run"):
        rp.reproduce("quick", layout=repo, only=["nope"])


def test_incomplete_results_are_executed_again(repo):
    rp.reproduce("quick", layout=repo, only=["demo"])
    (repo.results / "quick" / "demo" / "provenance.json").unlink()
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"])) == {"demo": "executed"}


def test_a_failing_notebook_is_reported_and_its_stale_page_removed(repo):
    rp.reproduce("quick", layout=repo)
    nb = repo.notebooks / "part" / "demo.ipynb"
    write_notebook(nb, body=BODY_SRC + "raise ValueError('data file mnist.gz is corrupted:\\nre-download it')\n")
    outcomes = {o.name: o for o in rp.reproduce("quick", layout=repo)}
    demo, after = outcomes["demo"], outcomes["after"]
    assert demo.status == "failed" and after.status == "blocked"
    assert "notebooks/part/demo.ipynb" in demo.message and "cell index 2" in demo.message
    assert "ValueError: data file mnist.gz is corrupted: re-download it" in demo.message
    assert "\n" not in demo.message and "dependency 'demo' failed" in after.message
    assert not (repo.book / "part" / "demo.ipynb").exists() and not (repo.book / "part" / "after.ipynb").exists()
    folder = repo.results / "quick" / "demo"
    assert (repo.results / "quick" / "demo.failed" / "failed.ipynb").is_file()
    assert str(repo.results / "quick" / "demo.failed" / "failed.ipynb") in demo.message
    # nothing is lost: the previous good results stay, recording the inputs they came from
    assert json.loads((folder / "metrics.json").read_text())["values"] == {"value": 2.5}
    assert json.loads((folder / "provenance.json").read_text())["input_hash"] != demo.input_hash
    assert not (repo.results / "quick" / "demo.previous").exists()
    # reverted: the kept results match the inputs again, so they are reused as they are, the
    # page comes back and the record of the failed attempt is dropped
    write_notebook(nb, body=BODY_SRC)
    assert _status(rp.reproduce("quick", layout=repo)) == {"demo": "cached", "after": "cached"}
    assert not (repo.results / "quick" / "demo.failed").exists()
    assert (repo.book / "part" / "demo.ipynb").is_file()


def test_cli_exit_codes_and_summary(repo, capsys):
    assert rp.main(["--profile", "quick", "--only", "demo", "--root", str(repo.root)]) == 0
    assert "1 executed, 0 cached, 0 failed, 0 blocked" in capsys.readouterr().out
    assert rp.main(["--profile", "quick", "--only", "demo", "--root", str(repo.root)]) == 0
    assert "0 executed, 1 cached" in capsys.readouterr().out
    assert rp.main(["--profile", "quick", "--only", "nope", "--root", str(repo.root)]) == 2
    assert "error: unknown run(s) ['nope']" in capsys.readouterr().err
    write_notebook(repo.notebooks / "part" / "demo.ipynb", body="1 / 0\n")
    assert rp.main(["--profile", "quick", "--only", "demo", "--root", str(repo.root)]) == 1
    err = capsys.readouterr().err
    assert "error: run 'demo' failed in notebooks/part/demo.ipynb, cell index 2: ZeroDivisionError" in err


def test_the_kernel_runs_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    name = rp.kernel_name()
    argv0 = KernelSpecManager().get_kernel_spec(name).argv[0]
    assert argv0 in {"python", "python3", f"python3.{sys.version_info[1]}"} or argv0 == sys.executable


def test_a_slow_quick_run_is_flagged(repo, monkeypatch, capsys):
    monkeypatch.setattr(rp, "QUICK_BUDGET_S", 0)
    rp.reproduce("quick", layout=repo, only=["demo"])
    assert "warning: quick run 'demo' took" in capsys.readouterr().err


def test_declared_input_files_are_hashed_and_checked(repo):
    data = repo.notebooks / "part" / "table.yml"
    data.write_text("a: 1\n")
    cfg = repo.config.read_text().replace("  notebook: part/demo.ipynb\n",
                                          "  notebook: part/demo.ipynb\n  inputs: [part/table.yml]\n", 1)
    assert cfg != repo.config.read_text()
    repo.config.write_text(cfg)
    first = rp.input_hashes(rp.load_config(repo, "quick"), repo, "quick")
    data.write_text("a: 2\n")
    second = rp.input_hashes(rp.load_config(repo, "quick"), repo, "quick")
    assert first["demo"] != second["demo"] and first["after"] != second["after"]  # dependants too
    repo.config.write_text(cfg.replace("part/table.yml", "part/missing.yml"))
    with pytest.raises(rp.ConfigError, match="not a file"):
        rp.load_config(repo, "quick")


def test_reader_copy_merges_the_injected_parameters_into_the_parameters_cell():
    from rmtlib.reproduce import merge_parameters

    def cell(src, tags=(), kind="code"):
        return {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": src, "outputs": []}

    nb = {"cells": [cell("# Title", kind="markdown"),
                    cell("# Parameters\nn = 10  # matrix size\nseeds = [1,\n         2]  # seeds\n"
                         "results_dir = None  # injected\nkeep = 'x'  # untouched\n", ["parameters"]),
                    cell('# Parameters\nn = 400\nseeds = [7, 8, 9]\nresults_dir = "../r"\n',
                         ["injected-parameters"]),
                    cell("print(n)")]}
    out = merge_parameters(nb, "quick")
    assert len(out["cells"]) == 3 and len(nb["cells"]) == 4  # the input is not modified
    src = out["cells"][1]["source"]
    assert src.splitlines()[0].startswith("# The values this page was computed with (profile 'quick')")
    assert "n = 400  # matrix size" in src and "seeds = [7, 8, 9]  # seeds" in src
    assert 'results_dir = "../r"  # injected' in src and "keep = 'x'  # untouched" in src
    assert "n = 10" not in src
    ast_ok = compile(src, "<cell>", "exec")  # still plain Python
    assert ast_ok is not None
    assert merge_parameters({"cells": [cell("x = 1", ["parameters"])]}) == {"cells": [cell("x = 1", ["parameters"])]}


# ----------------------------------------------------------------------------- the cache's inputs

def test_a_package_version_change_forces_reexecution_and_says_why(repo, monkeypatch):
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"])) == {"demo": "executed"}
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"])) == {"demo": "cached"}
    real = rp.package_versions()
    assert real["torch"] and real["numpy"] and set(rp.PACKAGES) == set(real)
    monkeypatch.setattr(rp, "package_versions", lambda names=rp.PACKAGES: {**real, "torch": "99.0"})
    [again] = rp.reproduce("quick", layout=repo, only=["demo"])
    assert again.status == "executed"
    because = f"package torch {real['torch']} -> 99.0"
    assert again.extra["because"] == [because]
    prov = json.loads((repo.results / "quick" / "demo" / "provenance.json").read_text())
    assert prov["executed_because"] == [because] and prov["input_components"]["packages"]["torch"] == "99.0"
    assert _status(rp.reproduce("quick", layout=repo, only=["demo"])) == {"demo": "cached"}
    [forced] = rp.reproduce("quick", layout=repo, only=["demo"], force=True)
    assert forced.extra["because"] == ["forced (--force)"]


def test_changed_inputs_names_what_changed():
    old = {"format": 2, "notebook": "a", "params": {"n": 1000, "seed": 0}, "entry": {}, "rmtlib": "r",
           "packages": {"torch": "2.1", "numpy": "2.0"}, "data": {"mnist": {"f": "x"}},
           "dependencies": {"up": "h1"}, "inputs": {"t.yml": "s"}}
    assert rp.changed_inputs(old, old) == []
    new = {**old, "notebook": "b", "params": {"n": 2000, "seed": 0}, "rmtlib": "q",
           "packages": {"torch": "2.1", "numpy": "2.1"}, "data": {"mnist": {"f": "y"}},
           "dependencies": {"up": "h2"}, "inputs": {"t.yml": "t"}}
    assert rp.changed_inputs(old, new) == [
        "notebook source changed", "rmtlib source changed", "package numpy 2.0 -> 2.1",
        "parameter n 1000 -> 2000", "data set mnist changed", "input file t.yml changed",
        "dependency up has new inputs"]
    assert rp.changed_inputs(None, new) == ["no previous results"]
    assert rp.changed_inputs({"format": 1}, new) == ["previous results from an older runner"]


def test_declared_data_sets_are_checked_and_their_checksums_hashed(repo, monkeypatch, tmp_path):
    from rmtlib.data import file_md5s

    runs = yaml.safe_load(repo.config.read_text())
    runs["demo"]["data"] = ["MNIST"]
    write_config(repo.root, runs)
    specs = rp.load_config(repo, "quick")
    assert specs["demo"].data == ("mnist",) and specs["after"].data == ()
    monkeypatch.setattr(rp, "data_checksums", lambda names: {n: file_md5s(n) for n in names})
    comps = rp.input_components(specs, repo, "quick")
    assert comps["demo"]["data"] == {"mnist": file_md5s("mnist")} and comps["after"]["data"] == {}
    assert len(set(file_md5s("mnist").values())) == 4
    base = rp.input_hashes(specs, repo, "quick")
    monkeypatch.setattr(rp, "data_checksums", lambda names: {n: "unavailable: gone" for n in names})
    changed = rp.input_hashes(specs, repo, "quick")
    assert changed["demo"] != base["demo"] and changed["after"] != base["after"]  # a dependant too
    runs["demo"]["data"] = ["cifar"]
    write_config(repo.root, runs)
    with pytest.raises(rp.ConfigError, match="'data': unknown dataset 'cifar'"):
        rp.load_config(repo, "quick")


def test_data_checksums_verify_the_files_or_say_why_not(monkeypatch, tmp_path):
    from rmtlib.data import file_md5s

    if os.environ.get("RMTLIB_DATA"):
        assert rp.data_checksums(["mnist"]) == {"mnist": file_md5s("mnist")}
    monkeypatch.setenv("RMTLIB_DATA", str(tmp_path))
    monkeypatch.setenv("RMTLIB_DATA_MIRROR", "http://127.0.0.1:9/")  # nothing listens: offline
    out = rp.data_checksums(["fashion_mnist"])
    assert out["fashion_mnist"].startswith("unavailable: ")


def test_each_run_keeps_its_log_next_to_its_results(repo):
    nb = repo.notebooks / "part" / "demo.ipynb"
    write_notebook(nb, body=BODY_SRC + "import sys\nprint('to stderr', file=sys.stderr)\n")
    rp.reproduce("quick", layout=repo, only=["demo"])
    log = (repo.results / "quick" / "demo" / rp.LOG).read_text()
    assert "profile quick" in log and "to stderr" in log
