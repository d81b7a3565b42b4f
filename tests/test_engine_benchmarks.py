"""The engine's benchmarks return the shared benchmark format (title, what, target, metrics with
docs, headline, table); run here on tiny sizes (no timing is asserted)."""

import pytest
import torch
from torch import nn

from rmtlib import benchmarks
from rmtlib.benchmarks import analysis, memory, training


def _check_format(res):
    assert set(res) >= {"title", "what", "target", "metrics", "headline"}
    assert res["headline"] in res["metrics"]
    for key, m in res["metrics"].items():
        assert set(m) == {"value", "doc"} and m["doc"], key
        assert isinstance(m["value"], (int, float)), key
    assert all(isinstance(r, dict) for r in res.get("table", []))


def test_engine_benchmarks_are_discovered():
    names = {n for n, _ in benchmarks.discover()}
    assert {"analysis.bench_analyze_models", "memory.bench_prune_memory",
            "training.bench_fit_vs_plain_loop"} <= names


def test_analyze_benchmark_format(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(analysis, "_models", lambda quick: {
        "tiny": nn.Sequential(nn.Linear(60, 40), nn.ReLU(), nn.Linear(40, 10))})
    res = analysis.bench_analyze_models(quick=True)
    _check_format(res)
    assert res["metrics"]["ratio_tiny"]["value"] > 0 and res["table"][0]["matrices"] == 2


def test_fit_benchmark_format(monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g))
    monkeypatch.setattr(training, "training_data", lambda: (data, "random"))
    res = training.bench_fit_vs_plain_loop(quick=True)
    _check_format(res)
    assert res["metrics"]["train_samples"]["value"] == 300 and len(res["table"]) == 3


@pytest.mark.slow
def test_memory_benchmark_measures_in_a_fresh_process():
    r = memory.measure_prune_memory(3, 64)
    assert r["model_bytes"] == 3 * (64 * 64 + 64) * 4 and r["changed"] == 3
    assert r["extra_bytes"] >= 0 and r["extra_over_model"] == r["extra_bytes"] / r["model_bytes"]
