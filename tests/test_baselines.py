"""Tests of rmtlib.baselines: magnitude pruning hits the exact count and keeps the largest
weights, per-layer shares, masked fine-tuning, random/top-rank truncation."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.baselines import (
    BaselineReport,
    count_nonzero_parameters,
    magnitude_prune,
    masked_gradients,
    prunable_weights,
    random_rank_prune,
)
from rmtlib.models import MLP, LeNetLike
from rmtlib.prune import Factorized, PrunePolicy, count_parameters, prune_model
from rmtlib.validation import ArgumentTypeError


def _mlp(seed=0):
    return MLP([30, 20, 15, 5], seed=seed)


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}


def test_count_nonzero_parameters():
    m = _mlp()
    assert count_nonzero_parameters(m) == count_parameters(m)
    with torch.no_grad():
        m.layers[0].weight[:2].zero_()
        m.layers[0].bias.zero_()
    assert count_nonzero_parameters(m) == count_parameters(m) - 2 * 30 - 20
    with pytest.raises(ArgumentTypeError):
        count_nonzero_parameters("model")


def test_global_magnitude_exact_count_and_largest_kept():
    m = _mlp()
    before = _weights(m)
    total = sum(w.numel() for w in before.values())
    n = 321
    rep = magnitude_prune(m, n)
    after = _weights(m)
    assert sum(int(torch.count_nonzero(w)) for w in after.values()) == n
    # the kept entries are the n largest |w| over all layers, unchanged
    allv = torch.cat([w.reshape(-1).abs() for w in before.values()])
    thr = torch.sort(allv, descending=True).values[n - 1]
    for name, w in before.items():
        kept = after[name] != 0
        assert torch.equal(after[name][kept], w[kept])
        assert (w[kept].abs() >= thr).all()
        assert (w[~kept].abs() <= thr).all()
    # biases untouched, report consistent
    assert torch.equal(m.layers[0].bias, _mlp().layers[0].bias)
    assert rep.params_before - rep.params_after == total - n
    assert rep.stored_before == rep.stored_after == count_parameters(m)
    assert int(rep.layers.nonzero_after.sum()) == n
    assert isinstance(rep, BaselineReport) and "magnitude-global" in repr(rep)


def test_layer_scope_keeps_the_same_share():
    m = _mlp()
    sizes = {n: w.numel() for n, w in _weights(m).items()}
    total = sum(sizes.values())
    n = total // 4 + 7
    rep = magnitude_prune(m, n, scope="layer")
    kept = dict(zip(rep.layers.name, rep.layers.nonzero_after))
    assert sum(kept.values()) == n
    for name, size in sizes.items():
        assert abs(kept[name] - n * size / total) < 1.0
    # within each layer, the largest entries are the ones kept
    before = _weights(_mlp())
    for name, w in _weights(m).items():
        k = kept[name]
        top = torch.sort(before[name].reshape(-1).abs(), descending=True).values
        assert w.abs().reshape(-1).sort(descending=True).values[:k].equal(top[:k])


def test_layer_scope_redistributes_when_a_layer_is_short():
    m = _mlp()
    with torch.no_grad():
        m.layers[2].weight.zero_()          # 75 entries, none left to keep
        m.layers[2].weight[0, :3] = 1.0     # 3 nonzero
    rep = magnitude_prune(m, 500, scope="layer")
    kept = dict(zip(rep.layers.name, rep.layers.nonzero_after))
    assert kept["layers.2.weight"] == 3
    assert sum(kept.values()) == 500


def test_magnitude_layers_filter_and_bounds():
    m = _mlp()
    rep = magnitude_prune(m, 10, layers=["layers.1"])
    assert list(rep.layers.name) == ["layers.1.weight"]
    assert int(torch.count_nonzero(m.layers[1].weight)) == 10
    assert int(torch.count_nonzero(m.layers[0].weight)) == 600
    with pytest.raises(ValueError, match="n_params = 11 is more than the 10 nonzero"):
        magnitude_prune(m, 11, layers=["layers.1"])
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(m, 1, scope="row")
    with pytest.raises(ArgumentTypeError, match="n_params"):
        magnitude_prune(m, 1.5)
    with pytest.raises(ValueError, match="unknown layer"):
        magnitude_prune(m, 1, layers=["nope"])
    rep0 = magnitude_prune(m, 0)
    assert rep0.params_after == sum(p.numel() for n, p in m.named_parameters()
                                    if n.endswith("bias"))


def test_magnitude_on_cnn_and_split_layers():
    m = LeNetLike(seed=0)
    prune_model(m, PrunePolicy(keep_fraction=0.2, gof=None, head=None),
                seed=0)  # split some layers into pairs
    names = list(prunable_weights(m))
    assert any(".0.weight" in n for n in names if n.startswith("classifier.0"))
    rep = magnitude_prune(m, 1000)
    assert int(rep.layers.nonzero_after.sum()) == 1000
    assert set(rep.masks) == set(names)


def test_masked_fine_tuning_keeps_zeros():
    torch.manual_seed(0)
    m = _mlp()
    rep = magnitude_prune(m, 200)
    x, y = torch.randn(64, 30), torch.randint(0, 5, (64,))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    with masked_gradients(m, rep):
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    assert sum(int(torch.count_nonzero(w)) for w in _weights(m).values()) == 200
    # outside the block gradients flow again
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    assert int(torch.count_nonzero(m.layers[0].weight.grad)) > int(rep.masks["layers.0.weight"].sum())
    with pytest.raises(ArgumentTypeError):
        with masked_gradients(m, "report"):
            pass


def test_random_rank_prune_ranks_and_params():
    m = _mlp()
    rep = random_rank_prune(m, {"layers.0": 4, "layers.1": 14}, random_state=0)
    assert isinstance(m.layers[0], Factorized) and m.layers[0].rank == 4
    # rank 14 of a 15x20 matrix does not save parameters: truncated in place, rank 14
    assert isinstance(m.layers[1], nn.Linear)
    assert np.linalg.matrix_rank(m.layers[1].weight.detach().double().numpy(), tol=1e-5) == 14
    assert list(rep.layers.rank_after) == [4, 14]
    assert rep.stored_after == count_parameters(m) == rep.stored_before - 600 + 4 * 50
    # same parameter count as the top-rank truncation, different components
    top = _mlp()
    random_rank_prune(top, {"layers.0": 4}, random_state=0, components="top")
    assert count_parameters(top.layers[0]) == count_parameters(m.layers[0])
    s = torch.linalg.svdvals(_mlp().layers[0].weight.detach().double())
    s_top = torch.linalg.svdvals(top.layers[0].weight.detach().double())[:4]
    s_rnd = torch.linalg.svdvals(m.layers[0].weight.detach().double())[:4]
    assert torch.allclose(s_top, s[:4], rtol=1e-5)
    assert not torch.allclose(s_rnd, s[:4], rtol=1e-3)  # seed 0 draws a bulk component
    assert set(np.round(s_rnd.numpy(), 4)) <= set(np.round(s.numpy(), 4))


def test_random_rank_prune_deterministic_and_validated():
    a, b = _mlp(), _mlp()
    random_rank_prune(a, {"layers.0": 5}, random_state=3)
    random_rank_prune(b, {"layers.0": 5}, random_state=3)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    m = _mlp()
    with pytest.raises(ValueError, match="unknown layer"):
        random_rank_prune(m, {"fc": 2}, random_state=0)
    with pytest.raises(ValueError, match="ranks"):
        random_rank_prune(m, {"layers.0": 21}, random_state=0)
    with pytest.raises(ArgumentTypeError, match="ranks must be a mapping"):
        random_rank_prune(m, [("layers.0", 2)], random_state=0)
    with pytest.raises(ValueError, match="components"):
        random_rank_prune(m, {"layers.0": 2}, random_state=0, components="low")
    assert torch.equal(m.layers[0].weight, _mlp().layers[0].weight)  # nothing touched


def test_copy_is_independent():
    m = _mlp()
    c = copy.deepcopy(m)
    magnitude_prune(c, 50)
    assert count_nonzero_parameters(m) == count_parameters(m)
