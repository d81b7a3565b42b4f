"""Tests of rmtlib.spectra: the matrix view of layers, the one-eigh decomposition and
analyze()."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmtlib.bema import fit_bema
from rmtlib.gof import accept
from rmtlib.rank import select_rank
from rmtlib.spectra import (
    ANALYZE_COLUMNS,
    analyze,
    decompose,
    layer_matrix,
    list_layers,
    tap_matrices,
)


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}, {"dilation": 2}])
def test_conv_matrix_view_is_the_operator_on_unfolded_patches(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, (3, 2), bias=False, **kw)
    x = torch.randn(2, 3, 9, 8)
    W = layer_matrix(conv)
    assert W.shape == (5, 3 * 3 * 2)
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                    stride=conv.stride)  # (B, C_in*kh*kw, L)
    out = conv(x)
    torch.testing.assert_close((W @ cols).reshape(out.shape), out, atol=1e-5, rtol=1e-5)


def test_linear_matrix_and_taps():
    lin = nn.Linear(7, 4)
    assert layer_matrix(lin).shape == (4, 7) and layer_matrix(lin).data_ptr() == lin.weight.data_ptr()
    conv = nn.Conv2d(3, 6, (2, 3))
    taps = tap_matrices(conv)
    assert taps.shape == (6, 6, 3)
    torch.testing.assert_close(taps[1 * 3 + 2], conv.weight[:, :, 1, 2].detach())
    with pytest.raises(ValueError):
        layer_matrix(nn.ReLU())


@pytest.mark.parametrize("shape", [(40, 25), (25, 40), (30, 30)])
def test_decompose_matches_svd(shape):
    torch.manual_seed(1)
    W = torch.randn(*shape, dtype=torch.float64)
    dec = decompose(W)
    s_ref = np.linalg.svd(W.numpy(), compute_uv=False)
    np.testing.assert_allclose(dec.s.numpy(), s_ref, rtol=1e-10)
    np.testing.assert_allclose(dec.eigenvalues(), np.sort(s_ref**2 / max(shape)), rtol=1e-10)
    A, B = dec.factors(torch.arange(min(shape)))
    torch.testing.assert_close(B @ A, W)
    # float32 weights of this size are solved in float64 (rmtlib.linalg's precision rule)
    dec32 = decompose(W.float())
    assert dec32.s.dtype == torch.float64
    np.testing.assert_allclose(dec32.s.numpy(), np.linalg.svd(W.float().double().numpy(), compute_uv=False),
                               rtol=1e-10)
    with pytest.raises(ValueError, match="non-finite"):
        decompose(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=4))
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(40, 30)),
                                  nn.Linear(30, 1))
        self.bn = nn.BatchNorm1d(30)


def test_analyze_lists_every_weight_layer_with_reasons():
    torch.manual_seed(2)
    model = Custom()
    df = analyze(model)
    assert list(df.columns) == ANALYZE_COLUMNS
    assert list(df.name) == ["stem.0", "stem.2", "emb", "head.1.0", "head.2"]
    d = df.set_index("name")
    assert d.loc["stem.0", "status"] == "ok" and d.loc["stem.0", "shape"] == (8, 9)
    assert d.loc["head.1.0", "params"] == 40 * 30 + 30 and d.loc["head.1.0", "gamma"] == 0.75
    assert "grouped" in d.loc["stem.2", "reason"]
    assert "Embedding" in d.loc["emb", "reason"]
    assert "1 rows" not in d.loc["head.2", "reason"] and "1x30" in d.loc["head.2", "reason"]
    assert (d.status == "skipped").sum() == 3


def test_analyze_values_equal_direct_fit_and_selectors():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(120, 80), nn.ReLU(), nn.Conv2d(6, 40, 3))
    df = analyze(model, selectors=["gavish_donoho", "energy"], gof=0.05, alpha=0.25)
    for name, mod in (("0", model[0]), ("2", model[2])):
        W = layer_matrix(mod).double().numpy()
        fit = fit_bema(W, alpha=0.25)
        row = df.set_index("name").loc[name]
        np.testing.assert_allclose([row.sigma2, row.lambda_plus, row.s_plus, row.gof],
                                   [fit.sigma2, fit.lambda_plus, fit.edge_singular, fit.gof],
                                   rtol=1e-4)
        assert row.spikes == row["rank"] == fit.n_spikes
        assert bool(row.accepted) == bool(accept(fit, 0.05))
        assert row.rank_gavish_donoho == select_rank(W, "gavish_donoho").rank
        assert row.rank_energy == select_rank(W, "energy").rank


def test_analyze_finds_planted_spikes_and_method_column():
    g = torch.Generator().manual_seed(4)
    n, m = 300, 200
    W = torch.randn(m, n, generator=g) / n**0.5
    W[:2] += 5 * torch.randn(2, n, generator=g) / n**0.5 * 4
    model = nn.Sequential(nn.Linear(n, m))
    with torch.no_grad():
        model[0].weight.copy_(W)
    df = analyze(model, method="gavish_donoho", selectors=["bema"], beta=0.01)
    row = df.iloc[0]
    assert row.spikes == 2 and row.rank_bema == 2 and row["rank"] == 2


def test_analyze_options_and_errors():
    model = nn.Sequential(nn.Linear(50, 40), nn.Linear(40, 30))
    assert list(analyze(model, layers=["1"]).name) == ["1"]
    assert list(analyze(model, layers=lambda n, m: m.in_features == 50).name) == ["0"]
    with pytest.raises(ValueError, match="unknown layer name"):
        analyze(model, layers=["2"])
    with pytest.raises(ValueError, match="unknown rank selector"):
        analyze(model, selectors=["nope"])
    with pytest.raises(ValueError, match="conv"):
        analyze(model, conv="fft")
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    d = analyze(model).set_index("name")
    assert d.loc["1", "status"] == "skipped" and "non-finite" in d.loc["1", "reason"]
    assert d.loc["0", "status"] == "ok"


def test_analyze_selector_failure_keeps_row():
    model = nn.Sequential(nn.Linear(50, 40))
    row = analyze(model, selectors=["screenot"]).iloc[0]  # screenot needs k
    assert row.status == "ok" and pd.isna(row.rank_screenot) and "screenot" in row.reason


def test_analyze_taps_pools_per_tap_spectra():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(30, 50, 3))
    row = analyze(model, conv="taps").iloc[0]
    taps = tap_matrices(model[0]).double()
    lam = np.sort(np.concatenate([np.linalg.svd(t.numpy(), compute_uv=False) ** 2 / 50
                                  for t in taps]))
    fit = fit_bema(lam, shape=(9 * 30, 9 * 50))
    np.testing.assert_allclose(row.sigma2, fit.sigma2, rtol=1e-4)
    np.testing.assert_allclose(row.s_plus, np.sqrt(50 * fit.lambda_plus), rtol=1e-4)
    assert pd.isna(row["rank"]) and row["shape"] == (50, 270)


def test_list_layers_names():
    model = Custom()
    names = [la.name for la in list_layers(model) if la.ok]
    assert names == ["stem.0", "head.1.0"]


def test_other_layer_types_are_listed_with_reasons_and_never_crash():
    import torch.nn.utils.prune  # noqa: F401 - registers nn.utils.prune
    from torch.nn.utils.parametrizations import weight_norm

    from rmtlib.prune import PrunePolicy, prune_model

    legacy = nn.Linear(30, 40)
    with pytest.warns(FutureWarning):
        nn.utils.weight_norm(legacy)
    pruned = nn.Conv2d(4, 8, 3)
    nn.utils.prune.l1_unstructured(pruned, "weight", 0.3)
    model = nn.Sequential(weight_norm(nn.Linear(30, 40)), nn.LSTM(40, 20), legacy, pruned,
                          nn.Embedding(5, 6), nn.ConvTranspose2d(4, 6, 3), nn.Linear(40, 30))
    expected = {"0": "parametrized", "1": "LSTM", "2": "WeightNorm", "3": "L1Unstructured",
                "4": "Embedding", "5": "transposed convolution"}
    for df in (analyze(model), prune_model(model, PrunePolicy(gof=None)).layers):
        d = df.set_index("name")
        assert list(d.index) == [*expected, "6"]
        for name, word in expected.items():
            assert word in d.loc[name, "reason"]
