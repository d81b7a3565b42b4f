"""The benchmark suite is discoverable and its runner and report work (no timing asserted)."""

import json

import pytest

from rmtlib import benchmarks


def test_every_benchmark_is_discovered():
    names = [n for n, _ in benchmarks.discover()]
    assert names == sorted(names)
    assert {"bema.run", "data.bench_load", "engine.bench_analyze_4096",
            "engine.bench_prune_event_vs_epoch", "tw.bench_tracy_widom"} <= set(names)
    assert not any(n.startswith("_") for n in names)  # helpers such as _timing are not benchmarks


def test_runner_report_and_json(tmp_path, capsys):
    assert benchmarks.main(["--quick", "--only", "tw", "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "tw.bench_tracy_widom" in out and "beta1.build_seconds" in out and "environment:" in out
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["results"]["tw.bench_tracy_widom"]["beta2"]["cdf_1e5_seconds"] > 0
    assert report["environment"]["cpu_count"] >= 1


def test_unknown_benchmark_is_an_error():
    with pytest.raises(ValueError, match="no benchmark matches"):
        benchmarks.run("nope", echo=False)
