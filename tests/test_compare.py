"""rmtlib next to WeightWatcher (rmtlib.compare); skipped only when the [compare] extra is absent."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib import compare


def test_missing_weightwatcher_names_the_compare_extra(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "weightwatcher":
            raise ImportError("No module named 'weightwatcher'")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "weightwatcher", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"rmtlib\[compare\]"):
        compare.require_weightwatcher()


def test_versions_lists_the_packages():
    v = compare.versions()
    assert {"rmtlib", "weightwatcher", "torch"} <= set(v)


def test_weightwatcher_is_imported_only_by_compare():
    import rmtlib.papers.beyond  # noqa: F401
    import rmtlib.spectra  # noqa: F401

    from pathlib import Path

    root = Path(compare.__file__).parent
    users = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
             if "import weightwatcher" in p.read_text()]
    assert users == ["compare.py"]


def test_compare_layers_agrees_with_weightwatcher_on_a_spiked_layer():
    pytest.importorskip("weightwatcher")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((400, 200)) / np.sqrt(400)
    u, v = rng.standard_normal((400, 2)), rng.standard_normal((2, 200))
    W += u @ v * 0.15  # two strong spikes
    model = nn.Sequential(nn.Linear(200, 400), nn.ReLU(), nn.Linear(400, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.as_tensor(W, dtype=torch.float32))
    out = compare.compare_layers(model, layers=["0"])
    assert list(out.columns) == compare.COMPARE_COLUMNS and len(out) == 1
    row = out.iloc[0]
    assert row.bema_spikes == 2
    # WeightWatcher's ESD is s**2, rmtlib's s**2 / N: the same spectrum
    assert row.ww_lambda_max == pytest.approx(row.lambda_max, rel=1e-4, abs=0)
    # rmtlib's re-implementation of WeightWatcher's MP fit gives WeightWatcher's numbers
    assert row.re_sigma_mp == pytest.approx(row.ww_sigma_mp, rel=1e-3, abs=0)
    assert row.re_num_spikes == row.ww_num_spikes
    # BEMA's sigma^2 is the entry variance of the noise (1/400)
    assert row.bema_sigma2 == pytest.approx(1 / 400, rel=0.1, abs=0)
    assert row.ww_seconds > 0 and row.rmt_seconds > 0
    with pytest.raises(ValueError, match="not among"):
        compare.compare_layers(model, layers=["nope"])
    with pytest.raises(ValueError, match="max_layers"):
        compare.compare_layers(model, max_layers=0)
