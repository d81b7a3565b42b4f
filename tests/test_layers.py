"""Tests of rmtlib.layers: which weight matrices are layers, their matrices, in-place writes,
attention blocks, split pairs read as products, skipped layers and the classifier head."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmtlib.layers import (
    Factorized,
    check_layer_filter,
    find_layer,
    head_layers,
    layer_matrix,
    list_layers,
    main_weight,
    set_module,
    unsupported_reason,
)
from rmtlib.prune import PrunePolicy, factorize, prune_model, truncate


def _views(model, **kw):
    return {la.name: la for la in list_layers(model, **kw)}


# ------------------------------------------------------------------ kinds


class SameForward(nn.Linear):
    """A Linear subclass that keeps nn.Linear.forward (like MultiheadAttention.out_proj)."""


class OwnForward(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


class OwnConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x).relu()


def test_linear_subclasses_keeping_forward_are_layers_others_are_skipped():
    model = nn.Sequential(SameForward(6, 5), OwnForward(5, 4), OwnConv(3, 4, 3), nn.Linear(4, 3))
    v = _views(model)
    assert v["0"].ok and v["0"].kind == "linear"
    assert not v["1"].ok and "own forward" in v["1"].reason
    assert not v["2"].ok and "own forward" in v["2"].reason
    # a SameForward layer is split into plain Linear factors computing the same map
    x = torch.randn(7, 6)
    ref = model[0](x).detach()
    factorize(model, "0", 5, force=True)
    torch.testing.assert_close(model[0](x), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("conv,shape", [
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 17)),
    (lambda: nn.Conv1d(4, 6, 5, padding="same", padding_mode="reflect", bias=False), (2, 4, 12)),
    (lambda: nn.Conv3d(3, 5, (2, 3, 3), padding=(0, 1, 1), dilation=(1, 2, 1)), (2, 3, 6, 8, 7)),
])
def test_conv1d_and_conv3d_are_read_as_matrices_and_split_exactly(conv, shape):
    torch.manual_seed(0)
    model = nn.Sequential(conv())
    c = model[0]
    la = find_layer(model, "0")
    assert la.kind == "conv" and la.shape == (c.out_channels, c.weight[0].numel())
    x = torch.randn(*shape)
    ref = model(x).detach()
    factorize(model, "0", min(la.shape), force=True)
    first, second = model[0]
    assert type(first) is type(c) and type(second) is type(c)
    assert first.kernel_size == c.kernel_size and second.kernel_size == (1,) * len(c.kernel_size)
    assert (first.stride, first.padding, first.dilation, first.padding_mode) == \
        (c.stride, c.padding, c.dilation, c.padding_mode)
    assert model[0].kind == {1: "conv1d", 3: "conv3d"}[len(c.kernel_size)]
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)


def test_skipped_layers_and_their_reasons():
    import torch.nn.utils.prune as tprune

    legacy = nn.Linear(8, 9)
    with pytest.warns(FutureWarning):
        nn.utils.weight_norm(legacy)
    spectral = nn.utils.spectral_norm(nn.Linear(9, 8))
    masked = nn.Linear(8, 8)
    tprune.random_unstructured(masked, "weight", 0.5)
    emb = nn.Embedding(10, 8)
    head = nn.Linear(8, 10, bias=False)
    head.weight = emb.weight  # tied weights
    model = nn.ModuleDict({
        "legacy": legacy, "spectral": spectral, "masked": masked, "grouped": nn.Conv2d(4, 8, 3, groups=2),
        "depthwise": nn.Conv2d(4, 4, 3, groups=4), "transposed": nn.ConvTranspose1d(4, 4, 3),
        "lazy": nn.LazyLinear(5), "emb": emb, "head": head, "tiny": nn.Linear(8, 1),
        "bilinear": nn.Bilinear(3, 4, 5), "gru": nn.GRU(4, 3),
    })
    v = _views(model)
    expected = {"legacy": "WeightNorm", "spectral": "SpectralNorm", "masked": "RandomUnstructured",
                "grouped": "grouped convolution (groups=2)", "depthwise": "depthwise",
                "transposed": "transposed", "lazy": "lazy", "emb": "Embedding",
                "head": "tied weights", "tiny": "8", "bilinear": "Bilinear", "gru": "GRU"}
    for name, word in expected.items():
        assert not v[name].ok and word in v[name].reason, (name, v[name].reason)
    assert "1x8" in v["tiny"].reason
    # an edit on such a layer raises with the reason, before anything changes
    with pytest.raises(ValueError, match="undone"):
        truncate(model, "legacy", 2)
    with pytest.raises(ValueError, match="no analysable layer"):
        prune_model(model)


def test_positional_embeddings_and_layer_scales_are_not_weight_layers():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(1, 5, 8))
            self.scale = nn.Parameter(torch.ones(8, 1, 1))
            self.fc = nn.Linear(8, 8)

    model = Block()
    assert main_weight(model) is None
    assert [la.name for la in list_layers(model)] == ["fc"]


# ------------------------------------------------------------------ attention


@pytest.mark.parametrize("kw", [{}, {"kdim": 6, "vdim": 10}, {"bias": False}])
def test_attention_blocks_are_the_q_k_v_projections(kw):
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, **kw)
    model = nn.ModuleDict({"att": mha})
    v = _views(model)
    if mha._qkv_same_embed_dim:
        names = [f"att.in_proj_weight[{t}]" for t in "qkv"]
        for i, n in enumerate(names):
            torch.testing.assert_close(v[n].matrix(), mha.in_proj_weight[8 * i:8 * (i + 1)].detach())
            assert v[n].shape == (8, 8) and v[n].type == f"MultiheadAttention.in_proj_weight[{'qkv'[i]}]"
    else:
        names = [f"att.{t}_proj_weight" for t in "qkv"]
        assert [v[n].shape for n in names] == [(8, 8), (8, 6), (8, 10)]
    assert all(v[n].kind == "attention" and not v[n].splittable for n in names)
    assert v["att.out_proj"].kind == "linear" and not v["att.out_proj"].splittable
    assert "out_proj.weight" in v["att.out_proj"].in_place_reason
    # selecting the attention module selects its blocks
    check_layer_filter(model, ["att", names[0]])


def test_attention_full_rank_truncation_is_exact_and_low_rank_changes_outputs():
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(12, 3, batch_first=True)
    model = nn.ModuleDict({"att": mha})
    q = torch.randn(2, 5, 12)
    ref = mha(q, q, q)[0].detach()
    for block in "qkv":
        edit = truncate(model, f"att.in_proj_weight[{block}]", 12)
        assert edit.parameters == ("att.in_proj_weight",)
    truncate(model, "att.out_proj", 12)
    torch.testing.assert_close(mha(q, q, q)[0], ref, atol=1e-5, rtol=0)
    edit = factorize(model, "att.out_proj", 3)  # never split: MHA reads out_proj.weight
    assert edit.action == "truncate" and type(mha.out_proj) is not Factorized
    assert "not split" in edit.note
    assert torch.linalg.matrix_rank(mha.out_proj.weight.detach(), rtol=1e-5) == 3
    edit = factorize(model, "att.in_proj_weight[k]", 4)
    assert edit.action == "truncate"
    assert torch.linalg.matrix_rank(mha.in_proj_weight[12:24].detach(), rtol=1e-5) == 4
    assert torch.linalg.matrix_rank(mha.in_proj_weight[:12].detach(), rtol=1e-5) == 12  # q untouched


def test_transformer_encoder_layer_feed_forward_is_pruned_in_place_and_fast_path_runs():
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    x = torch.randn(3, 4, 16)
    rep = prune_model(enc, PrunePolicy(gof=None, head=None, keep_fraction=0.3))
    d = rep.layers.set_index("name")
    for name in ("layers.0.linear1", "layers.1.linear2", "layers.0.self_attn.out_proj"):
        assert d.loc[name, "action"] == "truncate" and "not split" in d.loc[name, "note"]
    enc.eval()
    with torch.no_grad():  # the fast path reads linear1.weight directly: it must still be there
        out = enc(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ------------------------------------------------------------------ split pairs


def test_factorized_pair_is_read_as_its_product_and_exposes_weight():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Conv2d(3, 6, 3, padding=1))
    W = layer_matrix(model[0]).clone()
    factorize(model, "0", 7)
    factorize(model, "2", 2, force=True)
    v = _views(model)
    pair = v["0"]
    assert pair.kind == "factorized" and pair.shape == (30, 20) and pair.rank == 7
    prod = model[0][1].weight @ model[0][0].weight
    torch.testing.assert_close(pair.matrix(), prod.detach())
    torch.testing.assert_close(model[0].weight, prod)  # the safety net for direct readers
    assert model[0].bias is model[0][1].bias
    x = torch.randn(4, 20)
    torch.testing.assert_close(F.linear(x, model[0].weight, model[0].bias), model[0](x))
    conv = model[2]
    assert conv.weight.shape == (6, 3, 3, 3)
    img = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(F.conv2d(img, conv.weight, conv.bias, padding=1), conv(img),
                               atol=1e-5, rtol=0)
    # the factor view lists the factors instead
    f = _views(model, split_view="factors")
    assert {"0.0", "0.1", "2.0", "2.1"} <= set(f) and "0" not in f
    assert torch.linalg.matrix_rank(pair.matrix(), rtol=1e-5) == 7
    assert torch.linalg.matrix_rank(W, rtol=1e-5) == 20
    with pytest.raises(ValueError, match="factor of the split layer '0'"):
        truncate(model, "0.1", 3)


def test_product_view_full_rank_refactorization_is_exact_and_nested_pairs_flatten():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(40, 30))
    factorize(model, "0", 12)
    factorize(model, "0.1", 6, split_view="factors")  # a nested pair (the authors' view)
    x = torch.randn(5, 40)
    ref = model(x).detach()
    la = find_layer(model, "0")
    assert la.kind == "factorized" and la.rank == 6
    edit = factorize(model, "0", 6, force=True)
    assert edit.action == "factorize" and edit.rank_before == 6
    assert not isinstance(model[0][0], Factorized) and not isinstance(model[0][1], Factorized)
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)
    # truncating a pair in place keeps its factors (zero-padded) and parameter objects
    w0 = model[0][0].weight
    edit = truncate(model, "0", 2)
    assert model[0][0].weight is w0 and edit.params_after == edit.params_before
    assert torch.linalg.matrix_rank(layer_matrix(model[0]), rtol=1e-5) == 2


# ------------------------------------------------------------------ heads


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(10, 20)
        self.a = nn.Linear(20, 5)
        self.b = nn.Linear(20, 5)
        self.aux = nn.Linear(20, 3)

    def forward(self, x):
        h = self.body(x).relu()
        return self.a(h) + self.b(h), torch.tanh(self.aux(h))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 4)  # registered first, applied last
        self.inp = nn.Linear(6, 8)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.out(self.inp(x))


def test_head_layers_are_the_layers_producing_the_outputs():
    assert head_layers(TwoHeads()) == ["a", "b", "aux"]
    mha = nn.Sequential(nn.Linear(4, 8))
    assert head_layers(mha) == ["0"]
    assert head_layers(nn.Linear(5, 3)) == [""]
    # untraceable: the last analysable layer in module order
    assert head_layers(Untraceable()) == ["inp"]
    model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 4))
    factorize(model, "2", 2, force=True)
    assert head_layers(model) == ["2"]
    assert head_layers(model, split_view="factors") == ["2.1"]


def test_heads_keep_their_width_but_nothing_else_does():
    torch.manual_seed(6)
    model = TwoHeads()
    rep = prune_model(model, PrunePolicy(gof=None, keep_fraction=0.0))
    d = rep.layers.set_index("name")
    assert d.loc[["a", "b", "aux"], "head"].all() and not d.loc["body", "head"]
    assert (d.loc[["a", "b", "aux"], "action"] == "skipped").all()
    assert d.loc["body", "action"] != "skipped"
    rep = prune_model(TwoHeads(), PrunePolicy(gof=None, keep_fraction=0.0, head=["aux"]))
    assert rep.layers.set_index("name").loc["a", "action"] != "skipped"
    with pytest.raises(ValueError, match="head names"):
        prune_model(TwoHeads(), PrunePolicy(head=["nope"]))


# ------------------------------------------------------------------ helpers


def test_set_module_and_unsupported_reason_validate():
    model = nn.Sequential(nn.Linear(3, 3))
    set_module(model, "0", nn.Linear(3, 2))
    assert model[0].out_features == 2
    with pytest.raises(ValueError, match="no submodule"):
        set_module(model, "1", nn.Linear(3, 2))
    with pytest.raises(TypeError, match="new must be a torch.nn.Module"):
        set_module(model, "0", "linear")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        unsupported_reason(3)
    assert unsupported_reason(nn.Linear(3, 3)) is None
    copy.deepcopy(model)
