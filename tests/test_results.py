"""Tests of rmtlib.results: the API every notebook uses to record its results."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.results import Run, find_root, load_run, to_json, write_json


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
