"""GPU tests (``make test-gpu``): analysis, pruning and training on a CUDA device agree with the
CPU and keep the weights where they live, in their dtype.

Without CUDA these tests are skipped with that reason -- unless ``RMTLIB_REQUIRE_GPU=1`` (set by
``make test-gpu``), which makes a missing GPU a failure.  With CUDA present nothing here is
skipped: a wrong result fails.  The CPU test suite exercises the same device-agnostic code
(``device="cpu"`` and ``"auto"`` in tests/test_train.py).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from rmtlib.models import MLP
from rmtlib.prune import Factorized, PrunePolicy, prune_model
from rmtlib.spectra import analyze
from rmtlib.train import evaluate, fit, resolve_device

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    if not torch.cuda.is_available():
        if os.environ.get("RMTLIB_REQUIRE_GPU") == "1":
            pytest.fail("RMTLIB_REQUIRE_GPU=1 but torch.cuda.is_available() is False")
        pytest.skip("no CUDA device on this machine (torch.cuda.is_available() is False)")
    return torch.device("cuda")


def _data(n=512, d=40, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def test_auto_device_is_cuda(cuda):
    assert resolve_device("auto").type == "cuda"


def test_analyze_on_gpu_matches_cpu(cuda):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Conv2d(8, 64, 3), nn.Linear(200, 10))
    cpu = analyze(model)
    gpu = analyze(copy.deepcopy(model).to(cuda))
    for col in ("sigma2", "lambda_plus", "gof"):
        for a, b in zip(cpu[col], gpu[col]):
            assert b == pytest.approx(a, rel=1e-6, abs=0)
    assert list(cpu.spikes) == list(gpu.spikes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_prune_on_gpu_keeps_device_and_dtype_and_equals_cpu(cuda, dtype):
    base = MLP([120, 200, 10], seed=1)
    cpu = copy.deepcopy(base).to(dtype)
    gpu = copy.deepcopy(base).to(device=cuda, dtype=dtype)
    pol = PrunePolicy(gof=None, keep_fraction=0.3)
    rc, rg = prune_model(cpu, pol), prune_model(gpu, pol)
    assert list(rc.layers.rank_after) == list(rg.layers.rank_after)
    assert isinstance(gpu.layers[0], Factorized)
    for p in gpu.parameters():
        assert p.device.type == "cuda" and p.dtype == dtype
    x = torch.rand(4, 120)
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(gpu(x.to(cuda, dtype)).float().cpu(), cpu(x.to(dtype)).float(),
                               atol=tol, rtol=tol)


def test_fit_on_gpu_trains_and_prunes(cuda):
    train = _data()
    test = _data(200, seed=1)
    model = MLP([40, 64, 5], seed=0)
    from rmtlib.train import RMTPruning

    h = fit(model, train, test, epochs=3, lr=0.05, batch_size=32, seed=0, progress=False,
            device="cuda", callbacks=[RMTPruning(PrunePolicy(gof=None, keep_fraction=0.5))])
    assert next(model.parameters()).device.type == "cuda"
    assert h.frame.test_acc.iloc[-1] > 80 and h.frame.pruned.iloc[1:].all()
    loss, acc = evaluate(model, test)
    assert acc == pytest.approx(h.frame.test_acc.iloc[-1], rel=1e-9, abs=0)
    cpu = MLP([40, 64, 5], seed=0)
    hc = fit(cpu, train, test, epochs=3, lr=0.05, batch_size=32, seed=0, progress=False,
             callbacks=[RMTPruning(PrunePolicy(gof=None, keep_fraction=0.5))])
    # same batches, same decisions: the accuracies agree up to float round-off effects
    assert abs(hc.frame.test_acc.iloc[-1] - h.frame.test_acc.iloc[-1]) < 5


def test_peak_gpu_memory_of_pruning_is_a_fraction_of_the_model(cuda):
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(12)]).to(cuda)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    prune_model(model, PrunePolicy(head=None))
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < 1.0 * size, (extra, size)
