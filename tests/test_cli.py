"""The ``rmtlib`` command line, driven as a subprocess (``python -m rmtlib``) on saved
checkpoints and state_dicts, good and bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rmtlib.models import MLP
from rmtlib.prune import PrunePolicy, prune_model
from rmtlib.train import load_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def rmtlib(*args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "rmtlib", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = MLP([784, 120, 10], seed=0)
    save_checkpoint(model, root / "mlp.pt")
    torch.save(model.state_dict(), root / "mlp_state.pt")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, root / "dp_state.pt")
    torch.save(model, root / "whole.pt")
    (root / "junk.pt").write_bytes(b"this is not a torch file")
    torch.save([1, 2, 3], root / "list.pt")
    return root


def _one_clear_line(res):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmtlib: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_analyze_prints_the_table_and_writes_json_csv_and_plots(files, tmp_path):
    res = rmtlib("analyze", files / "mlp.pt", "--selectors", "gavish_donoho", "energy",
                 "--json", tmp_path / "a.json", "--plots", tmp_path / "plots", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "layers.0" in res.stdout and "layers.1" in res.stdout and "rank_energy" in res.stdout
    data = json.loads((tmp_path / "a.json").read_text())
    assert [r["name"] for r in data["layers"]] == ["layers.0", "layers.1"]
    assert data["layers"][0]["shape"] == [120, 784] and data["arch"]["factory"] == "rmtlib.models:MLP"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["layers.0.png", "layers.1.png"]
    res = rmtlib("analyze", files / "mlp_state.pt", "--arch", "rmtlib.models:MLP", "--arch-kwargs",
                 '{"dims": [784, 120, 10]}', "--csv", tmp_path / "a.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0].startswith("name,type,shape") and lines[1].startswith("layers.0,Linear,120x784")
    # a DataParallel state_dict ("module." prefixes) loads too
    res = rmtlib("analyze", files / "dp_state.pt", "--arch", "rmtlib.models:MLP", "--arch-kwargs",
                 '{"dims": [784, 120, 10]}', cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_prune_writes_a_safe_checkpoint_and_a_json_report(files, tmp_path):
    out = tmp_path / "out" / "pruned.pt"
    res = rmtlib("prune", files / "mlp.pt", "--out", out, "--keep-fraction", "0.3", "--gof", "none",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == "rmtlib.checkpoint/1"
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["layers.0"]["action"] == "factorize" and rows["layers.0"]["rank_before"] == 120
    assert rows["layers.0"]["rank_after"] == rows["layers.0"]["keep"] < 120
    assert "classifier head" in report["skipped"]["layers.1"]
    assert report["params_before"] - report["params_after"] == sum(
        r["params_before"] - r["params_after"] for r in report["layers"])
    # the same pruning in process gives the same model
    expected = MLP([784, 120, 10], seed=0)
    prune_model(expected, PrunePolicy(keep_fraction=0.3, gof=None))
    model, info = load_model(out)
    assert info["kind"] == "checkpoint" and model.widths == expected.widths
    x = torch.rand(3, 784)
    torch.testing.assert_close(model(x), expected(x), atol=1e-5, rtol=0)
    # the pruned checkpoint is analysable again without --arch
    res = rmtlib("analyze", out, cwd=tmp_path)
    assert res.returncode == 0 and "Factorized" in res.stdout, res.stderr
    # no silent overwrite; --overwrite replaces both files
    before = out.read_bytes()
    line = _one_clear_line(rmtlib("prune", files / "mlp.pt", "--out", out, cwd=tmp_path))
    assert "exists" in line and "--overwrite" in line and out.read_bytes() == before
    res = rmtlib("prune", files / "mlp.pt", "--out", out, "--overwrite", "--action", "truncate",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.with_suffix(".json").read_text())["policy"]["action"] == "truncate"


@pytest.mark.data
@pytest.mark.slow
def test_data_option_reports_accuracy_before_and_after(files, tmp_path):
    if not os.environ.get("RMTLIB_DATA"):
        pytest.skip("RMTLIB_DATA is not set: no MNIST files")
    res = rmtlib("prune", files / "mlp.pt", "--out", tmp_path / "p.pt", "--data", "mnist",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    acc = json.loads((tmp_path / "p.json").read_text())["accuracy"]
    assert 0 <= acc["before"]["test_acc"] <= 100 and 0 <= acc["after"]["test_acc"] <= 100
    assert acc["before"]["n"] == 10_000 and "test accuracy" in res.stdout
    res = rmtlib("analyze", files / "mlp.pt", "--data", "mnist", cwd=tmp_path)
    assert res.returncode == 0 and "mnist test accuracy" in res.stdout, res.stderr


@pytest.mark.parametrize("args,words", [
    (["analyze", "missing.pt"], "no such file"),
    (["analyze", "{files}/junk.pt", "--arch", "torchvision:resnet18"], "not a readable torch file"),
    (["analyze", "{files}/whole.pt"], "pickled"),
    (["analyze", "{files}/list.pt", "--arch", "torchvision:resnet18"], "neither an rmtlib checkpoint"),
    (["analyze", "{files}/mlp_state.pt"], "plain state_dict"),
    (["analyze", "{files}/mlp_state.pt", "--arch", "torchvision:resnet18"], "does not match"),
    (["analyze", "{files}/mlp.pt", "--arch", "torchvision:resnet81"], "did you mean resnet18"),
    (["analyze", "{files}/mlp.pt", "--arch", "nonexistent_pkg:net"], "cannot import"),
    (["analyze", "{files}/mlp.pt", "--arch", "rmtlib.models:MPL"], "did you mean MLP"),
    (["analyze", "{files}/mlp_state.pt", "--arch", "rmtlib.models:MLP", "--arch-kwargs", "{bad"],
     "--arch-kwargs must be a JSON object"),
    (["analyze", "{files}/mlp.pt", "--bogus"], "unrecognized arguments: --bogus"),
    (["analyze", "{files}/mlp.pt", "--selectors", "magic"], "invalid choice"),
    (["analyze", "{files}/mlp.pt", "--csv", "x.csv", "--json", "x.json"], "not allowed with"),
    (["analyze", "{files}/mlp.pt", "--device", "tpu"], "device"),
    (["prune", "{files}/mlp.pt"], "--out"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--keep-fraction", "1.5"], "keep-fraction"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--keep-fraction", "half"], "keep-fraction"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--action", "delete"], "invalid choice"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--selector", "screenot"], "screenot"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--layers", "fc9"], "unknown layer name"),
    (["prune", "{files}/mlp.pt", "--out", "p.pt", "--selector-opts", '{"k": 3}'], "alpha"),
    ([], "a command is required"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, monkeypatch, capsys,
                                                          args, words):
    from rmtlib.cli import main

    monkeypatch.chdir(tmp_path)
    args = [a.replace("{files}", str(files)) for a in args]
    rc = main(args)
    res = subprocess.CompletedProcess(args, rc, *capsys.readouterr())
    line = _one_clear_line(res)
    assert words in line, line
    assert list(tmp_path.iterdir()) == []


def test_bad_input_in_a_subprocess_exits_2_without_traceback(files, tmp_path):
    for args, words in ((["analyze", files / "junk.pt", "--arch", "torchvision:resnet18"],
                         "not a readable torch file"),
                        (["prune", files / "mlp_state.pt", "--arch", "torchvision:resnet18",
                          "--out", tmp_path / "p.pt"], "does not match the architecture"),
                        (["prune", files / "mlp.pt", "--out", tmp_path / "p.pt", "--frobnicate"],
                         "unrecognized arguments")):
        line = _one_clear_line(rmtlib(*args, cwd=tmp_path))
        assert words in line, line
    assert list(tmp_path.iterdir()) == []
