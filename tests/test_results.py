"""Tests of rmtlib.results: the API every notebook uses to record its results."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib import results
from rmtlib.results import Run, find_root, load_run, to_json, write_json
from rmtlib.validation import ArgumentTypeError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_by_hand_run():
    """Each test starts in a process that has not started a by-hand run (Run(None)), and leaves
    it so: the by-hand mode of load_run is process-wide."""
    saved = results._by_hand
    results._by_hand = None
    yield
    results._by_hand = saved


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "rmtlib").mkdir()
    (tmp_path / "notebooks" / "part").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "part")
    return tmp_path


def test_log_writes_values_and_docs_atomically(tmp_path):
    run = Run(tmp_path / "r", name="demo")
    assert run.dir == (tmp_path / "r").resolve() and run.dir.is_dir() and run.name == "demo"
    run.log("acc", np.float32(0.5), doc="test accuracy (%)")
    run.log("eigs", torch.tensor([1.0, 2.0]), doc="eigenvalues s^2/N")
    run.log("acc", 97.5, doc="test accuracy after training (%)")
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics == {"values": {"acc": 97.5, "eigs": [1.0, 2.0]},
                       "doc": {"acc": "test accuracy after training (%)", "eigs": "eigenvalues s^2/N"}}
    assert sorted(p.name for p in run.dir.iterdir()) == ["metrics.json"]  # no temporary file left


def test_log_declares_timing_metrics_and_a_relogged_key_follows_its_last_declaration(tmp_path):
    run = Run(tmp_path / "r", name="demo")
    run.log("speedup", 3.0, doc="their time / ours (dimensionless)", timing=True)
    run.log("acc", 97.5, doc="test accuracy (%)")
    assert json.loads((run.dir / "metrics.json").read_text())["timing"] == ["speedup"]
    run.log("speedup", 3.0, doc="a count after all (count)")
    assert json.loads((run.dir / "metrics.json").read_text())["timing"] == []
    with pytest.raises(ValueError, match="timing must be true or false, got 'yes'"):
        run.log("x", 1, doc="x (count)", timing="yes")


@pytest.mark.parametrize("key, doc", [("", "x"), (3, "x"), ("k", ""), ("k", "   "), ("k", None)])
def test_log_requires_a_key_and_a_doc(tmp_path, key, doc):
    with pytest.raises(ValueError):
        Run(tmp_path, name="r").log(key, 1, doc=doc)


def test_to_json_converts_numpy_and_torch_and_rejects_the_rest():
    value = {"i": np.int64(3), "b": np.bool_(True), "a": np.arange(3).reshape(1, 3),
             "t": torch.tensor(2.5), "nested": (np.float64(1.5), [torch.ones(2, dtype=torch.int32)])}
    out = to_json(value)
    assert out == {"i": 3, "b": True, "a": [[0, 1, 2]], "t": 2.5, "nested": [1.5, [[1, 1]]]}
    assert type(out["i"]) is int and type(out["b"]) is bool
    with pytest.raises(ValueError, match="keys must be strings"):
        to_json({1: 2})
    with pytest.raises(ValueError, match="cannot store a set"):
        to_json({1, 2})


def test_non_finite_numbers_round_trip(tmp_path):
    path = write_json(tmp_path / "m.json", {"x": float("nan"), "y": -np.inf})
    back = json.loads(path.read_text())
    assert math.isnan(back["x"]) and back["y"] == -math.inf


def test_savefig_writes_a_png_and_keeps_the_figure_open(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path = Run(tmp_path, name="r").savefig(fig, "line")
    assert path == tmp_path.resolve() / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.fignum_exists(fig.number)
    plt.close(fig)
    with pytest.raises(ValueError, match="plain non-empty name"):
        Run(tmp_path, name="r").savefig(fig, "../escape")


def test_save_table_writes_csv_with_a_meaningful_index_only(tmp_path):
    run = Run(tmp_path, name="r")
    plain = pd.DataFrame({"k": [1, 2], "acc": [90.0, 91.5]})
    assert pd.read_csv(run.save_table(plain, "plain")).equals(plain)
    indexed = plain.set_index("k")
    assert pd.read_csv(run.save_table(indexed, "indexed.csv"), index_col="k").equals(indexed)
    unnamed = pd.DataFrame({"acc": [1.0, 2.0]}, index=[5, 2])
    assert pd.read_csv(run.save_table(unnamed, "unnamed"), index_col=0).equals(unnamed)
    with pytest.raises(ValueError, match="needs a pandas DataFrame"):
        run.save_table([1, 2], "x")


def test_manual_run_goes_to_results_manual_under_the_repository_root(fake_repo):
    assert find_root() == fake_repo.resolve()
    run = Run(None, name="mp_law")
    assert run.dir == fake_repo.resolve() / "results" / "manual" / "mp_law"
    with pytest.raises(ValueError, match="needs a name"):
        Run(None)


def test_find_root_fails_clearly_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no repository root"):
        find_root()


def test_load_run_reads_a_completed_run_and_rejects_an_incomplete_one(fake_repo):
    folder = fake_repo / "results" / "quick" / "demo"
    run = Run(folder)
    run.log("x", 1, doc="one")
    with pytest.raises(ValueError, match="--profile quick --only demo"):
        load_run("demo", "quick")
    write_json(folder / "params.json", {"seed": 3})
    write_json(folder / "provenance.json", {"input_hash": "abc"})
    record = load_run("demo", "quick")
    assert (record.metrics, record.params, record.provenance) == ({"x": 1}, {"seed": 3}, {"input_hash": "abc"})
    assert record.dir == folder and record.name == "demo" and record.profile == "quick"
    (folder / "metrics.json").write_text("{broken")
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        load_run("demo", "quick", root=fake_repo)


# ---------------------------------------------------------------- notebooks run by hand

def _completed(folder, **metrics):
    run = Run(folder)
    for key, value in metrics.items():
        run.log(key, value, doc="a value (unit)")
    write_json(folder / "provenance.json", {"input_hash": "h"})
    return folder


def test_a_by_hand_run_starts_afresh_and_records_its_provenance(fake_repo):
    folder = fake_repo / "results" / "manual" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text('{"values": {"old": 1}, "doc": {"old": "stale"}}')
    (folder / "figure.png").write_bytes(b"kept")
    run = Run(None, name="demo")
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["mode"] == "manual" and prov["name"] == "demo" and prov["error"] is None
    assert prov["cwd"] == os.getcwd() and len(prov["run_id"]) == 32 and prov["start_utc"].endswith("+00:00")
    assert not (folder / "metrics.json").exists() and (folder / "figure.png").read_bytes() == b"kept"
    run.log("x", 2, doc="two")
    assert json.loads((folder / "metrics.json").read_text())["values"] == {"x": 2}


def test_by_hand_a_dependency_is_read_from_manual_else_the_book_else_a_clear_error(fake_repo, capsys):
    (fake_repo / "notebooks" / "runs.yml").write_text("dep:\n  notebook: part/dep.ipynb\n")
    results_root = fake_repo / "results"
    Run(None, name="consumer")  # this process now runs a notebook by hand
    with pytest.raises(ValueError) as exc:
        load_run("dep", "default")
    msg = str(exc.value)
    assert "\n" not in msg and "no results of run 'dep' for a notebook run by hand" in msg
    assert str(results_root / "manual" / "dep") in msg and str(results_root / "default" / "dep") in msg
    assert "run notebooks/part/dep.ipynb by hand first" in msg
    assert "`python -m rmtlib.reproduce --profile default --only dep`" in msg

    _completed(results_root / "default" / "dep", acc=97.0)
    book = load_run("dep", "default")
    assert (book.profile, book.metrics, book.dir) == ("default", {"acc": 97.0}, results_root / "default" / "dep")
    assert "'dep' was not run by hand" in capsys.readouterr().out
    assert load_run("dep", "manual").profile == "default"  # "manual": the book's default profile

    Run(None, name="dep").log("acc", 98.0, doc="a value (unit)")  # the reader runs dep by hand
    mine = load_run("dep", "default")
    assert (mine.profile, mine.metrics, mine.params) == ("manual", {"acc": 98.0}, {})
    assert mine.dir == results_root / "manual" / "dep" and "(run by hand)" in capsys.readouterr().out
    exact = load_run("dep", "default", by_hand=False)
    assert exact.profile == "default" and exact.metrics == {"acc": 97.0}

    prov = results_root / "manual" / "dep" / "provenance.json"
    write_json(prov, {**json.loads(prov.read_text()), "error": "KeyError: 'x'", "error_cell": 4})
    with pytest.raises(ValueError, match=r"the by-hand run of 'dep' in .* stopped at an error "
                                         r"\(KeyError: 'x'\); run notebooks/part/dep.ipynb again by hand"):
        load_run("dep", "default")


def test_outside_a_by_hand_process_only_the_profiles_folder_is_read(fake_repo):
    _completed(fake_repo / "results" / "manual" / "dep", acc=98.0)
    with pytest.raises(ValueError, match="no completed run 'dep' for profile 'quick'"):
        load_run("dep", "quick")  # the runner's case: a by-hand run never stands in
    _completed(fake_repo / "results" / "default" / "dep", acc=97.0)
    assert load_run("dep", "manual").profile == "manual"  # profile "manual" asks for by-hand
    assert load_run("dep", "manual", by_hand=False).metrics == {"acc": 98.0}


def test_run_and_load_run_check_their_arguments(fake_repo):
    with pytest.raises(ArgumentTypeError, match=r"results_dir must be a path or None, got 3 \(int\)"):
        Run(3)
    with pytest.raises(ArgumentTypeError, match="name must be a run name"):
        Run(None, name=5)
    with pytest.raises(ArgumentTypeError, match="name must be a run name"):
        load_run("", "default")
    with pytest.raises(ArgumentTypeError, match="profile must be a profile name"):
        load_run("dep", None)
    with pytest.raises(ArgumentTypeError, match="by_hand must be True or False"):
        load_run("dep", "default", by_hand="yes")


def test_a_failing_cell_in_a_kernel_marks_the_by_hand_run(fake_repo):
    cells = ["from rmtlib.results import Run", "run = Run(None, name='demo')", "run.log('a', 1, doc='one')",
             "1 / 0", "raise KeyError('later')", "run.log('b', 2, doc='two')"]
    script = ("from IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\n"
              f"for cell in {cells!r}:\n    shell.run_cell(cell, store_history=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    folder = fake_repo / "results" / "manual" / "demo"
    prov = json.loads((folder / "provenance.json").read_text())
    assert (prov["error"], prov["error_cell"]) == ("ZeroDivisionError: division by zero", 4)  # the first
    assert json.loads((folder / "metrics.json").read_text())["values"] == {"a": 1, "b": 2}
