"""Tests of rmtlib.prune: factorization equivalence, Eckart-Young, parameter accounting,
policies, skipped layers, bad inputs, structural edits."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rmtlib.models import MLP
from rmtlib.prune import (
    Factorized,
    PrunePolicy,
    PruneReport,
    apply_structural_edits,
    count_parameters,
    factorize,
    keep_count,
    prune_model,
    random_bulk,
    shrink,
    structural_edits,
    truncate,
)


def _matrix(mod):
    w = mod.weight.detach()
    return w.reshape(w.shape[0], -1).double().numpy().copy()


def _planted(m, n, ranks=(40.0, 30.0, 20.0), seed=0, dtype=torch.float32):
    """Noise (entry sd 1/sqrt(n)) plus strong orthogonal rank-len(ranks) signal."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(m, n, generator=g, dtype=torch.float64) / n**0.5
    u, _ = torch.linalg.qr(torch.randn(m, len(ranks), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, len(ranks), generator=g, dtype=torch.float64))
    return (noise + u @ torch.diag(torch.tensor(ranks, dtype=torch.float64)) @ v.T).to(dtype)


# ------------------------------------------------------------------ factorization


@pytest.mark.parametrize("shape,bias", [((37, 23), True), ((23, 37), False), ((16, 16), True)])
def test_factorize_linear_full_rank_reproduces_outputs(shape, bias):
    torch.manual_seed(0)
    out_f, in_f = shape
    model = nn.Sequential(nn.Linear(in_f, out_f, bias=bias))
    x = torch.randn(9, in_f)
    ref = model(x).detach()
    edit = factorize(model, "0", min(shape), force=True)
    assert isinstance(model[0], Factorized) and edit.action == "factorize"
    assert model[0][0].bias is None and (model[0][1].bias is not None) == bias
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", [
    {"kernel_size": 3},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "dilation": 2, "padding": 2},
    {"kernel_size": (3, 5), "stride": (2, 1), "padding": (0, 2)},
    {"kernel_size": 3, "padding": "same", "dilation": (1, 2)},
    {"kernel_size": 3, "padding": 1, "padding_mode": "reflect", "bias": False},
    {"kernel_size": 2, "stride": 3, "padding": 1, "padding_mode": "circular"},
])
def test_factorize_conv_full_rank_reproduces_outputs(kw):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 7, **kw)
    model = nn.Sequential(conv)
    x = torch.randn(2, 5, 11, 13)
    ref = model(x).detach()
    m, n = 7, 5 * conv.kernel_size[0] * conv.kernel_size[1]
    factorize(model, "0", min(m, n), force=True)
    first, second = model[0]
    assert (first.stride, first.padding, first.dilation, first.padding_mode) == \
        (conv.stride, conv.padding, conv.dilation, conv.padding_mode)
    assert second.kernel_size == (1, 1) and first.bias is None
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)


def test_factorize_low_rank_equals_truncation_and_balanced_factors():
    torch.manual_seed(2)
    a = nn.Sequential(nn.Linear(60, 50))
    b = copy.deepcopy(a)
    x = torch.randn(4, 60)
    edit = factorize(a, "0", 7)
    assert edit.action == "factorize" and edit.rank_after == 7
    truncate(b, "0", 7)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=0)
    # the papers' split: W1 = S^1/2 V^T, W2 = U S^1/2, so W1 W1^T = W2^T W2 = S_k
    w1, w2 = a[0][0].weight.double(), a[0][1].weight.double()
    s = np.linalg.svd(_matrix(b[0]), compute_uv=False)[:7]
    np.testing.assert_allclose((w1 @ w1.T).detach().numpy(), np.diag(s), atol=1e-5)
    np.testing.assert_allclose((w2.T @ w2).detach().numpy(), np.diag(s), atol=1e-5)


# ------------------------------------------------------------------ Eckart-Young


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("k", [1, 5, 17])
def test_truncation_error_equals_discarded_singular_values(dtype, rtol, k):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(30, 45)).to(dtype)
    W = _matrix(model[0])
    s = np.linalg.svd(W, compute_uv=False)
    edit = truncate(model, "0", k)
    Wk = _matrix(model[0])
    err2 = np.sum((W - Wk) ** 2)
    np.testing.assert_allclose(err2, np.sum(s[k:] ** 2), rtol=rtol)
    sk = np.linalg.svd(Wk, compute_uv=False)
    np.testing.assert_allclose(sk[:k], s[:k], rtol=max(rtol, 1e-9))
    assert sk[k] < 1e-5 * s[0]
    assert (edit.action, edit.rank_after, edit.shape) == ("truncate", k, (45, 30))


def test_truncate_conv_keeps_shape_and_parameter_objects():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))
    w_param = model[0].weight
    W = _matrix(model[0])
    s = np.linalg.svd(W, compute_uv=False)
    truncate(model, "0", 2)
    assert model[0].weight is w_param and w_param.shape == (6, 4, 3, 3)
    np.testing.assert_allclose(np.sum((W - _matrix(model[0])) ** 2), np.sum(s[2:] ** 2), rtol=1e-4)


# ------------------------------------------------------------------ parameter counts


def test_parameter_counts_exact_mlp():
    model = MLP([784, 1000, 10], seed=0)
    assert count_parameters(model) == 784 * 1000 + 1000 + 1000 * 10 + 10 == 795_010
    edit = factorize(model, "layers.0", 353)
    expected_layer = 784 * 353 + 353 * 1000 + 1000
    assert edit.params_before == 785_000 and edit.params_after == expected_layer
    assert count_parameters(model) == expected_layer + 10_010
    assert model.widths == [784, 353, 1000, 10]


def test_parameter_counts_exact_conv_and_fallback_to_truncation():
    model = nn.Sequential(nn.Conv2d(16, 32, 3))
    before = 16 * 32 * 9 + 32
    assert count_parameters(model) == before
    edit = factorize(model, "0", 5)
    assert edit.params_after == count_parameters(model) == 16 * 9 * 5 + 5 * 32 + 32
    # k (m + n) >= m n: no saving, so the layer is truncated in place instead
    lin = nn.Sequential(nn.Linear(10, 10))
    edit = factorize(lin, "0", 5)  # 5 * 20 = 100 = 10 * 10
    assert edit.action == "truncate" and type(lin[0]) is nn.Linear
    assert edit.params_after == edit.params_before == 110
    edit = factorize(lin, "0", 4)  # 80 < 100
    assert edit.action == "factorize" and count_parameters(lin) == 4 * 20 + 10


# ------------------------------------------------------------------ shrink / random bulk


def test_shrink_halves_singular_values_below_threshold():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(40, 30)).double()
    s = np.linalg.svd(_matrix(model[0]), compute_uv=False)
    thr = float(np.median(s))
    edit = shrink(model, "0", threshold=thr, factor=0.5)
    expected = np.sort(np.where(s <= thr, 0.5 * s, s))[::-1]
    np.testing.assert_allclose(np.linalg.svd(_matrix(model[0]), compute_uv=False), expected,
                               rtol=1e-10)
    assert edit.rank_after == int(np.sum(s > thr))


def test_shrink_default_threshold_is_bema_edge():
    from rmtlib.bema import fit_bema

    W = _planted(120, 200, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(200, 120, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(W)
    s_plus = fit_bema(W.numpy()).edge_singular
    s = np.linalg.svd(W.numpy(), compute_uv=False)
    shrink(model, "0")
    expected = np.sort(np.where(s <= s_plus, 0.5 * s, s))[::-1]
    np.testing.assert_allclose(np.linalg.svd(_matrix(model[0]), compute_uv=False), expected,
                               rtol=1e-8)


def test_random_bulk_keeps_top_and_a_seeded_random_subset():
    torch.manual_seed(6)
    base = nn.Sequential(nn.Linear(50, 40)).double()
    W = _matrix(base[0])
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    random_bulk(a, "0", 3, 4, random_state=11, factorize=False)
    random_bulk(b, "0", 3, 4, random_state=11, factorize=False)
    Wa = _matrix(a[0])
    np.testing.assert_array_equal(Wa, _matrix(b[0]))
    # W_a is W restricted to 7 singular triplets, the top 3 among them
    coef = np.diag(U.T @ Wa @ Vt.T)
    kept = np.flatnonzero(np.abs(coef) > 1e-8 * s[0])
    assert len(kept) == 7 and set(range(3)) <= set(kept)
    np.testing.assert_allclose(coef[kept], s[kept], rtol=1e-8)
    c = copy.deepcopy(base)
    edit = random_bulk(c, "0", 3, 4, random_state=11)  # 7 * 90 < 2000: factorized
    assert edit.action == "random_bulk" and isinstance(c[0], Factorized) and c[0].rank == 7
    x = torch.randn(3, 50, dtype=torch.float64)
    torch.testing.assert_close(c(x), a(x))
    with pytest.raises(ValueError, match="n_random"):
        random_bulk(copy.deepcopy(base), "0", 30, 11)
    with pytest.raises(ValueError, match="at least one"):
        random_bulk(copy.deepcopy(base), "0", 0, 0)


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("k", [0, -1, 24, 2.5, True])
def test_bad_rank_raises(k):
    model = nn.Sequential(nn.Linear(23, 30))
    for action in (truncate, factorize):
        with pytest.raises(ValueError, match="k"):
            action(model, "0", k)


def test_unknown_layer_name_and_unsupported_layer_raise():
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Conv2d(4, 8, 3, groups=2))
    with pytest.raises(ValueError, match="unknown layer name 'fc'.*prunable layers: \\['0'\\]"):
        truncate(model, "fc", 2)
    with pytest.raises(ValueError, match="no weight"):
        truncate(model, "1", 2)
    with pytest.raises(ValueError, match="grouped convolution"):
        factorize(model, "2", 2)
    with pytest.raises(ValueError, match="unknown layer name"):
        prune_model(model, PrunePolicy(layers=["nope"]))


def test_non_finite_weights_raise_and_leave_model_untouched():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 20))
    with torch.no_grad():
        model[2].weight[3, 4] = float("nan")
    before = copy.deepcopy(model.state_dict())
    for call in (lambda: truncate(model, "2", 3), lambda: factorize(model, "2", 3),
                 lambda: shrink(model, "2", 1.0), lambda: prune_model(model, PrunePolicy(gof=None))):
        with pytest.raises(ValueError, match="non-finite"):
            call()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], equal_nan=True)


def test_policy_validation():
    with pytest.raises(ValueError, match="action"):
        PrunePolicy(action="delete")
    with pytest.raises(ValueError, match="keep_fraction"):
        PrunePolicy(keep_fraction=1.5)
    with pytest.raises(ValueError, match="gof"):
        PrunePolicy(gof=0)
    with pytest.raises(ValueError, match="selector"):
        PrunePolicy(selector="magic")
    with pytest.raises(ValueError, match="min_rank"):
        PrunePolicy(min_rank=0)
    with pytest.raises(ValueError, match="epoch"):
        prune_model(nn.Sequential(nn.Linear(8, 8)), PrunePolicy(keep_fraction=lambda e: 0.5))


# ------------------------------------------------------------------ policy


def _single(W, bias=True):
    m, n = W.shape
    model = nn.Sequential(nn.Linear(n, m, bias=bias)).to(W.dtype)
    with torch.no_grad():
        model[0].weight.copy_(W)
    return model


def test_keep_count_rule():
    assert keep_count(3, 100, 0.45) == 3 + int(0.45 * 97)
    assert keep_count(0, 784, 0.45, 10) == 352
    assert keep_count(0, 20, 0.0, 10) == 10       # never below min_rank
    assert keep_count(5, 8, 1.0, 10) == 8         # never above p


def test_prune_model_keeps_spikes_plus_fraction_and_paper_off_by_one():
    W = _planted(200, 400)
    from rmtlib.bema import fit_bema

    assert fit_bema(W.numpy()).n_spikes == 3
    m = _single(W)
    rep = prune_model(m, PrunePolicy(keep_fraction=0.0, action="truncate", head=None))
    row = rep.layers.iloc[0]
    assert (row.spikes, row.keep, row.rank_after, row.action) == (3, 3, 3, "truncate")
    assert bool(row.accepted) and row.gof < 0.1
    s = np.linalg.svd(_matrix(m[0]), compute_uv=False)
    assert s[2] > 1 and s[3] < 1e-4
    paper = prune_model(_single(W), PrunePolicy(keep_fraction=0.25, paper_exact=True, head=None,
                                                action="truncate"))
    row = paper.layers.iloc[0]
    assert row.spikes == 4 and row.keep == 4 + int(0.25 * (200 - 4))


def test_output_width_protects_the_head_only():
    W = _planted(200, 400)
    model = nn.Sequential(nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 12))
    with torch.no_grad():
        model[0].weight.copy_(W)
    rep = prune_model(model, PrunePolicy(keep_fraction=0.0, gof=None))
    d = rep.layers.set_index("name")
    # the hidden layer keeps only its 3 spikes: no global minimum rank of 12
    assert d.loc["0", "keep"] == 3 and isinstance(model[0], Factorized) and model[0].rank == 3
    assert not d.loc["0", "head"] and d.loc["2", "head"]
    assert d.loc["2", "action"] == "skipped" and "classifier head" in d.loc["2", "reason"]
    assert type(model[2]) is nn.Linear
    # a global floor is still available
    m2 = nn.Sequential(nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 12))
    with torch.no_grad():
        m2[0].weight.copy_(W)
    rep = prune_model(m2, PrunePolicy(keep_fraction=0.0, min_rank=12, layers=["0"]))
    assert rep.layers.iloc[0].keep == 12 and m2[0].rank == 12


def test_rejected_fit_is_left_untouched_and_reported():
    torch.manual_seed(7)
    # singular values falling geometrically from 10 to 1e-3: the bulk is nothing like
    # Marchenko-Pastur (in exact arithmetic; the old float32 solve also failed a rank-5 layer
    # plus Gaussian noise, whose bulk *is* MP, only through round-off)
    U, _ = torch.linalg.qr(torch.randn(60, 60))
    V, _ = torch.linalg.qr(torch.randn(80, 60))
    W = (U * torch.logspace(1, -3, 60)) @ V.T
    model = nn.Sequential(nn.Linear(80, 60), nn.ReLU(), nn.Linear(60, 50))
    with torch.no_grad():
        model[0].weight.copy_(W)
    before = copy.deepcopy(model.state_dict())
    rep = prune_model(model, PrunePolicy(gof=0.1, min_rank=2))
    row = rep.layers.set_index("name").loc["0"]
    assert row.action == "skipped" and not row.accepted and row.gof >= 0.1
    assert "goodness of fit" in row.reason
    assert type(model[0]) is nn.Linear
    torch.testing.assert_close(model[0].weight, before["0.weight"], rtol=0, atol=0)
    assert "0" not in rep.changed


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.inner = nn.Sequential(nn.ReLU(), nn.Conv2d(24, 24, 3, padding=2, dilation=2))
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.up = nn.ConvTranspose2d(24, 8, 2, stride=2)

    def forward(self, x):
        return self.up(self.dw(self.inner(self.conv(x))))


def _nested():
    torch.manual_seed(8)
    return nn.Sequential(
        nn.Sequential(_Block()),
        nn.Flatten(),
        nn.Sequential(nn.Linear(8 * 16 * 16, 64), nn.ReLU()),
        nn.Linear(64, 10),
    )


def test_prune_model_on_nested_modules_skips_unsupported_with_reasons():
    model = _nested()
    x = torch.randn(2, 3, 8, 8)
    before = count_parameters(model)
    rep = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.3))
    df = rep.layers.set_index("name")
    assert set(df.index) == {"0.0.conv", "0.0.inner.1", "0.0.dw", "0.0.up", "2.0", "3"}
    assert "depthwise convolution" in df.loc["0.0.dw", "reason"]
    assert "transposed convolution" in df.loc["0.0.up", "reason"]
    assert df.loc["0.0.inner.1", "action"] == "factorize"
    assert isinstance(model[0][0].inner[1], Factorized)
    assert isinstance(model[2][0], Factorized)
    assert model(x).shape == (2, 10)
    assert rep.params_before == before and rep.params_after == count_parameters(model) < before
    assert rep.params_after == before - sum(df.params_before - df.params_after)
    # second event: a split layer is read as the product W2 W1 under its own name; a larger
    # fraction keeps its rank, a smaller one replaces the pair by a smaller one
    rank = model[2][0].rank
    rep2 = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.5))
    d2 = rep2.layers.set_index("name")
    assert {"2.0", "0.0.inner.1"} <= set(d2.index) and d2.loc["2.0", "action"] == "skipped"
    assert "current rank" in d2.loc["2.0", "reason"] and d2.loc["2.0", "rank_before"] == rank
    # BEMA counts all 19 non-zero values of the rank-19 product as spikes (its window holds the
    # zeros); a selector without a noise model cuts further
    rep3 = prune_model(model, PrunePolicy(selector="energy", keep_fraction=0.0, layers=["2.0"]))
    assert rep3.layers.set_index("name").loc["2.0", "action"] == "factorize"
    assert model[2][0].rank < rank and model(x).shape == (2, 10)
    # the factor view lists the factors as ordinary layers with stable names
    rep4 = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.5, split_view="factors"))
    assert {"2.0.0", "2.0.1", "0.0.inner.1.0", "0.0.inner.1.1"} <= set(rep4.layers.name)


def test_prune_policy_layers_predicate_and_callable_fraction():
    model = _nested()
    rep = prune_model(model, PrunePolicy(gof=None, keep_fraction=lambda e: 1 - e / 10,
                                         layers=lambda name, mod: isinstance(mod, nn.Linear)),
                      epoch=9)
    assert set(rep.layers.name) == {"2.0", "3"} and rep.keep_fraction == pytest.approx(0.1)


def test_random_bulk_policy_and_shrink_policy_run():
    W = _planted(100, 150, dtype=torch.float64)
    m = _single(W)
    rep = prune_model(m, PrunePolicy(action="random_bulk", keep_fraction=0.1, head=None, seed=3))
    row = rep.layers.iloc[0]
    assert row.action == "random_bulk" and row.rank_after == row.keep == 3 + int(0.1 * 97)
    m2 = _single(W)
    rep = prune_model(m2, PrunePolicy(action="shrink", head=None))
    assert rep.layers.iloc[0].action == "shrink" and rep.layers.iloc[0].rank_after == 3


# ------------------------------------------------------------------ structural edits


def test_structural_edits_replay_including_nested_factorization():
    model = MLP([30, 40, 5], seed=1)
    factorize(model, "layers.0", 12)
    factorize(model, "layers.0.1", 6, split_view="factors")  # 40 x 12 factor split again
    edits = structural_edits(model)
    assert edits == [{"name": "layers.0", "kind": "linear", "rank": 12},
                     {"name": "layers.0.1", "kind": "linear", "rank": 6}]
    fresh = apply_structural_edits(MLP([30, 40, 5], seed=2), edits)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(3, 30)
    torch.testing.assert_close(fresh(x), model(x))
    assert fresh.widths == [30, 12, 6, 40, 5]
    with pytest.raises(ValueError, match="no prunable layer"):
        apply_structural_edits(MLP([30, 40, 5]), [{"name": "fc", "kind": "linear", "rank": 3}])
    with pytest.raises(ValueError, match="conv2d"):
        apply_structural_edits(MLP([30, 40, 5]), [{"name": "layers.0", "kind": "conv2d", "rank": 3}])


def test_paper_exact_first_event_on_paper_net_matches_authors_dimensions():
    # The authors' notebook prints "New Dimensions: [784, 353, 1000, 10]" after pruning
    # the freshly initialised 784-1000-10 net: gt = 0 + 1 (off by one), keep =
    # 1 + int(0.45 * 783) = 353; the 10 x 1000 output layer cannot go below 10.
    model = MLP([784, 1000, 10], seed=0)
    rep = prune_model(model, PrunePolicy(paper_exact=True))
    d = rep.layers.set_index("name")
    assert d.loc["layers.0", "spikes"] == 1 and d.loc["layers.0", "keep"] == 353
    assert model.widths == [784, 353, 1000, 10]
    assert d.loc["layers.1", "action"] == "skipped"
    # the corrected count keeps one fewer
    assert prune_model(MLP([784, 1000, 10], seed=0)).layers.iloc[0].keep == 352


def test_layer_names_select_factors_at_later_events():
    W = _planted(200, 400)
    model = nn.Sequential(nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 100))
    with torch.no_grad():
        model[0].weight.copy_(W)
    pol = PrunePolicy(gof=None, keep_fraction=0.5, layers=["0"], split_view="factors")
    prune_model(model, pol)
    rep = prune_model(model, pol)
    assert set(rep.layers.name) == {"0.0", "0.1"}
    # the default view reads the pair as one layer, the product W2 W1
    rep = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.5, layers=["0"]))
    assert set(rep.layers.name) == {"0"}


def test_selector_error_raises_before_any_change():
    model = _nested()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="screenot"):
        prune_model(model, PrunePolicy(selector="screenot", gof=None))  # needs k
    assert type(model[2][0]) is nn.Linear
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    rep = prune_model(model, PrunePolicy(selector="screenot", selector_opts={"k": 5}, gof=None,
                                         keep_fraction=0.0, min_rank=1, layers=["2.0"]))
    row = rep.layers.iloc[0]
    assert row.action == "factorize" and row.rank_after == max(row.spikes, 1)


# ------------------------------------------------------------------ selectors, BEMA options


def _geometric(m=60, n=80, seed=7):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    V, _ = torch.linalg.qr(torch.randn(n, m, generator=g))
    return (U * torch.logspace(1, -3, m)) @ V.T


def test_gof_gates_only_bema_other_selectors_have_their_own_check():
    W = _geometric()
    rep = prune_model(_single(W), PrunePolicy(gof=0.1, head=None, keep_fraction=0.0))
    assert rep.layers.iloc[0].action == "skipped" and "goodness of fit" in rep.layers.iloc[0].reason
    for sel, opts in (("gavish_donoho", {}), ("energy", {"t": 0.99})):
        rep = prune_model(_single(W), PrunePolicy(selector=sel, selector_opts=opts, gof=0.1,
                                                  head=None, keep_fraction=0.0))
        row = rep.layers.iloc[0]
        assert row.action != "skipped" and pd.isna(row.accepted), (sel, row.reason)
        from rmtlib.rank import select_rank

        assert row.keep == max(select_rank(W.double().numpy(), sel, **opts).rank, 1)
    # a selector that cannot handle one layer leaves that layer alone, with its message
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 6))
    rep = prune_model(model, PrunePolicy(selector="screenot", selector_opts={"k": 8}, head=None,
                                         keep_fraction=0.0))
    d = rep.layers.set_index("name")
    assert d.loc["0", "action"] != "skipped"
    assert d.loc["2", "action"] == "skipped" and "screenot is not applicable" in d.loc["2", "reason"]


def test_bema_alpha_beta_through_the_policy():
    W = _planted(200, 400, ranks=(40.0, 30.0, 3.2))
    from rmtlib.bema import fit_bema

    for beta in (0.01, 0.5):
        rep = prune_model(_single(W), PrunePolicy(beta=beta, alpha=0.25, head=None,
                                                  keep_fraction=0.0))
        fit = fit_bema(W.double().numpy(), alpha=0.25, beta=beta)
        row = rep.layers.iloc[0]
        assert row.spikes == fit.n_spikes
        assert row.lambda_plus == pytest.approx(fit.lambda_plus, rel=1e-9, abs=0)
    with pytest.raises(ValueError, match="PrunePolicy\\(alpha"):
        PrunePolicy(selector_opts={"alpha": 0.3})
    with pytest.raises(ValueError, match="unknown option"):
        PrunePolicy(selector="energy", selector_opts={"k": 3})


def test_random_bulk_is_deterministic_under_the_seed():
    def run(seed=None, policy_seed=None):
        model = MLP([50, 60, 40, 5], seed=0)
        prune_model(model, PrunePolicy(action="random_bulk", gof=None, keep_fraction=0.3,
                                       seed=policy_seed), seed=seed, epoch=2)
        return [p.detach().clone() for p in model.parameters()]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # default seed 0: reproducible
    c = run(seed=5)
    assert all(torch.equal(x, y) for x, y in zip(c, run(seed=5)))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    d = run(seed=9, policy_seed=5)  # the policy's own seed wins
    assert all(torch.equal(x, y) for x, y in zip(c, d))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_analysed_in_float32_or_64_and_written_back_in_their_dtype(dtype):
    base = MLP([80, 120, 10], seed=3)
    ref = copy.deepcopy(base)
    half = copy.deepcopy(base).to(dtype)
    ref_half_weights = copy.deepcopy(base).to(dtype).float()  # the rounded weights, in float32
    rep_h = prune_model(half, PrunePolicy(gof=None, keep_fraction=0.3))
    rep_r = prune_model(ref_half_weights, PrunePolicy(gof=None, keep_fraction=0.3))
    assert all(p.dtype == dtype for p in half.parameters())
    assert list(rep_h.layers.rank_after) == list(rep_r.layers.rank_after)
    for col in ("sigma2", "lambda_plus"):
        for a, b in zip(rep_h.layers[col], rep_r.layers[col]):
            assert a == pytest.approx(b, rel=1e-9, abs=0)  # same eigenvalues: no half-precision solve
    x = torch.rand(3, 80)
    tol = 2e-2 if dtype == torch.float16 else 1e-1
    torch.testing.assert_close(half(x.to(dtype)).float(), ref_half_weights(x), atol=tol, rtol=tol)
    del ref


def test_first_pass_uses_eigenvalues_only_and_vectors_only_for_edited_layers(monkeypatch):
    import rmtlib.prune as P

    calls = []
    real = P.decompose
    monkeypatch.setattr(P, "decompose", lambda m: calls.append(tuple(m.shape)) or real(m))
    W = _geometric()
    model = nn.Sequential(nn.Linear(80, 60), nn.ReLU(), nn.Linear(60, 70), nn.ReLU(),
                          nn.Linear(70, 10))
    with torch.no_grad():
        model[0].weight.copy_(W)  # rejected by the GoF test: never decomposed
    rep = prune_model(model, PrunePolicy())
    d = rep.layers.set_index("name")
    assert d.loc["0", "action"] == "skipped" and d.loc["4", "action"] == "skipped"
    assert calls == [(70, 60)]  # only layer "2" was edited


def test_report_round_trips_as_plain_data():
    model = _nested()
    rep = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.3))
    data = rep.to_dict()
    import json

    json.dumps(data)  # plain data
    back = PruneReport.from_dict(data)
    assert back.params_after == rep.params_after and back.edits == rep.edits
    assert list(back.layers.name) == list(rep.layers.name)
    assert back.skipped == rep.skipped and set(rep.skipped) == {"0.0.dw", "0.0.up", "3"}
    with pytest.raises(ValueError, match="PruneReport"):
        PruneReport.from_dict({"layers": 3})


def test_shrink_of_a_split_pair_scales_its_values_in_place():
    W = _planted(100, 150, dtype=torch.float64)
    model = _single(W)
    factorize(model, "0", 40)
    P = (model[0][1].weight @ model[0][0].weight).detach()
    s = np.linalg.svd(P.numpy(), compute_uv=False)
    w0 = model[0][0].weight
    edit = shrink(model, "0", threshold=float(s[5]), factor=0.5)
    assert model[0][0].weight is w0 and edit.rank_after == 5
    s2 = np.linalg.svd((model[0][1].weight @ model[0][0].weight).detach().numpy(), compute_uv=False)
    expected = np.sort(np.where(s[:40] <= s[5], 0.5 * s[:40], s[:40]))[::-1]
    np.testing.assert_allclose(s2[:40], expected, rtol=1e-8)
