"""Tests of rmtlib.landscape: Hessian-vector products and power iteration against explicit
Hessians, the straight path between two models, densified pairs, MP-bulk shares."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmtlib.landscape import (
    BulkShareTracker,
    bulk_share,
    dense_copy,
    hessian_vector_product,
    path_losses,
    top_hessian_eigenvalue,
)
from rmtlib.models import MLP, LeNetLike
from rmtlib.prune import Factorized, factorize
from rmtlib.train import evaluate, fit
from rmtlib.validation import ArgumentTypeError


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = MLP([3, 4, 3], activation="tanh", seed=seed).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    return model, (x, y)


def _explicit_hessian(model, data):
    x, y = data
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        out = x
        ws = [c.reshape(s) for c, s in zip(chunks, shapes)]
        out = torch.tanh(out @ ws[0].T + ws[1])
        out = out @ ws[2].T + ws[3]
        return F.cross_entropy(out, y)

    return torch.autograd.functional.hessian(loss_of, flat0)


def test_hvp_matches_explicit_hessian_and_batching():
    model, data = _tiny()
    H = _explicit_hessian(model, data)
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    flat_v = torch.cat([t.reshape(-1) for t in v])
    hv = torch.cat([t.reshape(-1) for t in hessian_vector_product(model, data, v)])
    assert torch.allclose(hv, H @ flat_v, rtol=1e-10, atol=1e-12)
    hv_b = torch.cat([t.reshape(-1) for t in hessian_vector_product(model, data, v, batch_size=7)])
    assert torch.allclose(hv_b, hv, rtol=1e-10, atol=1e-12)


def test_power_iteration_matches_explicit_top_eigenvalue():
    model, data = _tiny()
    evals = torch.linalg.eigvalsh(_explicit_hessian(model, data))
    top = evals[evals.abs().argmax()].item()
    res = top_hessian_eigenvalue(model, data, n_iter=500, tol=1e-10, random_state=0)
    assert res.eigenvalue == pytest.approx(top, rel=1e-6, abs=0)
    assert res.converged and res.iterations == len(res.trace)


def test_power_iteration_on_a_known_hessian():
    # Cross-entropy of a linear softmax model with one sample, at theta = 0: the Hessian is
    # (diag(p) - p p^T) kron x x^T with p uniform; its top eigenvalue is |x|^2 / C (C classes).
    C, d = 4, 5
    model = nn.Linear(d, C, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    x = torch.arange(1.0, d + 1, dtype=torch.float64).reshape(1, d)
    y = torch.tensor([2])
    res = top_hessian_eigenvalue(model, (x, y), n_iter=200, tol=1e-12, random_state=3)
    assert res.eigenvalue == pytest.approx(float((x * x).sum()) / C, rel=1e-8, abs=0)


def test_hessian_validation():
    model, data = _tiny()
    with pytest.raises(ArgumentTypeError, match="data"):
        top_hessian_eigenvalue(model, [1, 2])
    with pytest.raises(ValueError, match="n_iter"):
        top_hessian_eigenvalue(model, data, n_iter=0)
    with pytest.raises(ValueError, match="vector"):
        hessian_vector_product(model, data, [torch.zeros(3)])


def test_dense_copy_same_function_and_shape():
    model = LeNetLike(seed=0)
    factorize(model, "features.3", 4)
    factorize(model, "classifier.0", 10)
    assert isinstance(model.features[3], Factorized)
    dense = dense_copy(model)
    assert isinstance(dense.features[3], nn.Conv2d) and isinstance(dense.classifier[0], nn.Linear)
    assert dense.features[3].weight.shape == (16, 6, 5, 5)
    x = torch.randn(8, 1, 28, 28)
    model.eval(), dense.eval()
    assert torch.allclose(model(x), dense(x), atol=1e-5)
    assert dense.state_dict().keys() == LeNetLike(seed=0).state_dict().keys()


def test_path_endpoints_and_midpoint():
    torch.manual_seed(0)
    x, y = torch.randn(100, 1, 6, 6), torch.randint(0, 3, (100,))
    a, b = MLP([36, 8, 3], seed=0), MLP([36, 8, 3], seed=1)
    factorize(b, "layers.0", 3)  # end model is split: compared as its product
    df = path_losses(a, b, (x, y), n_points=5)
    assert list(df.t) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert df.loss.iloc[0] == pytest.approx(evaluate(a, (x, y))[0], rel=1e-6, abs=0)
    assert df.loss.iloc[-1] == pytest.approx(evaluate(b, (x, y))[0], rel=1e-6, abs=0)
    mid = MLP([36, 8, 3], seed=0)
    db = dense_copy(b).state_dict()
    mid.load_state_dict({k: 0.5 * v + 0.5 * db[k] for k, v in a.state_dict().items()})
    assert df.loss.iloc[2] == pytest.approx(evaluate(mid, (x, y))[0], rel=1e-6, abs=0)
    with pytest.raises(ValueError, match="same architecture"):
        path_losses(a, MLP([36, 9, 3]), (x, y))


def test_bulk_share_noise_and_signal():
    torch.manual_seed(0)
    noise = nn.Linear(400, 200, bias=False)
    with torch.no_grad():
        noise.weight.normal_(0, 0.05)
    row = bulk_share(noise).iloc[0]
    assert row.share_inside > 0.97
    assert row.sigma2 == pytest.approx(0.05**2, rel=0.05, abs=0)
    spiked = nn.Linear(400, 200, bias=False)
    u, _ = torch.linalg.qr(torch.randn(200, 10))
    v, _ = torch.linalg.qr(torch.randn(400, 10))
    with torch.no_grad():
        spiked.weight.copy_(noise.weight + u @ (5.0 * torch.eye(10)) @ v.T)
    row2 = bulk_share(spiked).iloc[0]
    assert row2.n_spikes == 10
    assert row2.n_inside <= 190


def test_bulk_share_tracker_records_each_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
    tr = BulkShareTracker()
    fit(MLP([20, 30, 3], seed=0), (x, y), epochs=2, lr=0.05, callbacks=[tr], progress=False,
        seed=5)
    f = tr.frame
    assert sorted(f.epoch.unique()) == [0, 1, 2] and tr.seed == 5
    assert set(f.name) == {"layers.0", "layers.1"}
    assert np.isfinite(f[f.name == "layers.0"].share_inside).all()
