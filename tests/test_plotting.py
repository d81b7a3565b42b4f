"""Tests of rmtlib.plotting (Agg backend; checks what is drawn, not pixels)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import trapezoid

from rmtlib import plotting
from rmtlib.bema import fit_bema
from rmtlib.esd import spectrum


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _noise_with_spikes(m=300, n=500, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    W[:3] += 6 * rng.standard_normal((3, n))
    return W


def test_esd_histogram_full_and_zoom():
    W = _noise_with_spikes()
    fit = fit_bema(W)
    ax = plotting.esd_histogram(W, fit)
    assert ax.get_xlabel() == plotting.LABELS["eigenvalue"] and ax.get_ylabel() == "density"
    heights = [p.get_height() for p in ax.patches]
    widths = [p.get_width() for p in ax.patches]
    assert len(heights) == 75 and np.isclose(np.dot(heights, widths), 1.0)  # density
    mp_line, edge = ax.lines
    assert edge.get_xdata()[0] == pytest.approx(fit.lambda_plus)
    # the MP curve carries the bulk's share of the mass: (p - spikes) / p
    x, y = mp_line.get_xdata(), mp_line.get_ydata()
    assert x.max() <= fit.lambda_plus and y.min() >= 0
    np.testing.assert_allclose(trapezoid(y, x), (300 - fit.n_spikes) / 300, rtol=0.03)
    zoom = plotting.esd_histogram(None, fit, zoom=True, bins=40)
    assert len(zoom.patches) == 40
    assert max(p.get_x() + p.get_width() for p in zoom.patches) <= fit.lambda_plus + 1e-12
    np.testing.assert_allclose(trapezoid(zoom.lines[0].get_ydata(), zoom.lines[0].get_xdata()),
                               1.0, rtol=0.03)


def test_esd_histogram_inputs_and_errors():
    W = _noise_with_spikes(60, 90)
    sp = spectrum(W)
    ax1 = plotting.esd_histogram(sp)
    ax2 = plotting.esd_histogram(sp.eigenvalues, title="layer 1")
    assert ax2.get_title() == "layer 1" and not ax1.lines
    ax3 = plotting.esd_histogram(sp, fit_bema(W), log=True)
    assert ax3.get_yscale() == "log" and "log" in ax3.get_ylabel()
    with pytest.raises(ValueError, match="zoom"):
        plotting.esd_histogram(sp, zoom=True)
    with pytest.raises(ValueError, match="finite"):
        plotting.esd_histogram(np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        plotting.esd_histogram(None)


def test_accuracy_vs_rank():
    ks = np.arange(0, 100, 5)
    accs = 98.3 - 90 * np.exp(-ks / 15)
    ax = plotting.accuracy_vs_rank(ks, accs, predicted_rank=56, full_acc=98.29,
                                   reference={"paper 1": (ks, accs - 0.1)})
    assert ax.get_xlabel().startswith("rank") and ax.get_ylabel() == "test accuracy (%)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "predicted rank = 56" in labels and "paper 1" in labels
    assert any("full rank" in lab for lab in labels)
    with pytest.raises(ValueError, match="equal length"):
        plotting.accuracy_vs_rank([1, 2], [3.0])


def _hist(seed, shift):
    e = np.arange(5)
    return pd.DataFrame({"epoch": e, "test_acc": 90 + shift + e + seed * 0.5})


def test_use_style_sets_theme():
    plotting.use_style()
    assert plt.rcParams["savefig.bbox"] == "tight"


# -- theory-chapter plots -------------------------------------------------------------------
def test_density_curves_draws_each_law_and_vlines():
    from rmtlib.mp import MarchenkoPastur
    from rmtlib.tw import TracyWidom

    x = np.linspace(-5, 3, 200)
    ax = plotting.density_curves({"TW1": TracyWidom(1), "TW2": TracyWidom(2)}, x,
                                 vlines={"t": 0.45}, xlabel="s")
    tw1, tw2, vline = ax.lines
    np.testing.assert_allclose(tw1.get_ydata(), TracyWidom(1).pdf(x))
    np.testing.assert_allclose(tw2.get_ydata(), TracyWidom(2).pdf(x))
    assert vline.get_xdata()[0] == 0.45 and ax.get_xlabel() == "s" and ax.get_ylim()[0] == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["TW1", "TW2", "t"]
    mp = MarchenkoPastur(0.5)
    assert np.isclose(trapezoid(plotting.density_curves({"mp": mp}, np.linspace(*mp.support(), 2001))
                                .lines[0].get_ydata(), np.linspace(*mp.support(), 2001)), 1, atol=2e-3)
    with pytest.raises(ValueError, match="laws"):
        plotting.density_curves({}, x)
    with pytest.raises(ValueError, match="grid"):
        plotting.density_curves({"TW1": TracyWidom(1)}, [0.0])


def test_sample_histogram_single_and_several_samples():
    from rmtlib.tw import TracyWidom

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(size=300)
    ax = plotting.sample_histogram(a, bins=20, vlines={"cut": 1.0}, unit="draws")
    bars = ax.patches
    assert len(bars) == 20
    assert np.isclose(sum(p.get_height() * p.get_width() for p in bars), 1.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sample (500 draws)", "cut"]
    ax2 = plotting.sample_histogram({"a": a, "b": b}, TracyWidom(1), bins=15, law_label="TW1")
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert labels == ["a (500 samples)", "b (300 samples)", "TW1"]
    (law_line,) = ax2.lines
    x = law_line.get_xdata()
    np.testing.assert_allclose(law_line.get_ydata(), TracyWidom(1).pdf(x))
    assert np.isclose(x[0], min(a.min(), b.min())) and np.isclose(x[-1], max(a.max(), b.max()))
    from rmtlib.mp import MarchenkoPastur  # density diverges at 0: the bars set the y-axis

    lam = MarchenkoPastur(1.0).rvs(size=400, random_state=1)
    ax3 = plotting.sample_histogram({"eigenvalues": lam}, MarchenkoPastur(1.0), bins=20, unit=None,
                                    clip_to_bars=True, headroom=1.5)
    assert np.isclose(ax3.get_ylim()[1], 1.5 * max(p.get_height() for p in ax3.patches))
    assert ax3.get_legend().get_texts()[0].get_text() == "eigenvalues"
    assert np.isclose(ax3.lines[0].get_xdata()[-1], 4.0)  # the density is drawn to the edge
    with pytest.raises(ValueError, match="finite"):
        plotting.sample_histogram({"bad": [1.0, np.inf]})
    with pytest.raises(ValueError, match="empty"):
        plotting.sample_histogram({})


def test_sweep_plot_series_theory_reference_band_lines_and_dodge():
    x = np.array([0.0, 1.0, 2.0])
    ax = plotting.sweep_plot(
        {"sim A": (x, x ** 2, 0.1 * np.ones(3)), "sim B": (x, x + 1)},
        theory={"limit": (np.linspace(0, 2, 50), np.linspace(0, 2, 50) ** 2)},
        reference={"paper": ([0.0, 2.0], [0.1, 3.9])}, band={"range": (1.0, 2.0)},
        hlines={"edge": 2.9}, vlines={"threshold": 0.84}, xlabel="theta", ylabel="lambda",
        dodge=0.1, colors={"sim B": "red"})
    assert ax.get_xlabel() == "theta" and ax.get_ylabel() == "lambda"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(labels) == {"sim A", "sim B", "limit", "paper", "range", "edge", "threshold"}
    a, b = ax.containers  # one ErrorbarContainer per series
    np.testing.assert_allclose(a.lines[0].get_xdata(), x - 0.05)
    np.testing.assert_allclose(b.lines[0].get_xdata(), x + 0.05)
    assert a.has_yerr and not b.has_yerr
    assert matplotlib.colors.same_color(b.lines[0].get_color(), "red")
    with pytest.raises(ValueError, match="at least one"):
        plotting.sweep_plot()
    with pytest.raises(ValueError, match="equal length"):
        plotting.sweep_plot({"bad": ([0, 1], [1, 2, 3])})
    with pytest.raises(ValueError, match="tuple"):
        plotting.sweep_plot({"bad": ([0, 1],)})


def _rank_frame():
    rows = [{"gamma": g, "theta": t, "draw": d, "method": m, "error": e + d}
            for g in (0.5, 1.0) for t in (1.0, 2.0) for d in (0, 1)
            for m, e in (("bema", 0), ("energy", 10))]
    return pd.DataFrame(rows)


def test_rank_error_grid_mean_sd_per_panel():
    df = _rank_frame()
    axes = plotting.rank_error_grid(df, vlines={0.5: {"BBP": 0.84}, 1.0: {"BBP": 1.0}},
                                    colors={"energy": "black"})
    assert len(axes) == 2 and axes[0].get_title() == "gamma = 0.5"
    bema, energy = axes[0].containers
    np.testing.assert_allclose(bema.lines[0].get_ydata(), [0.5, 0.5])  # mean of draws 0, 1
    seg = bema.lines[2][0].get_segments()[0]  # error bar of the first point: mean ± sd
    np.testing.assert_allclose(sorted(seg[:, 1]), [0.5 - np.std([0, 1], ddof=1), 0.5 + np.std([0, 1], ddof=1)])
    assert matplotlib.colors.same_color(energy.lines[0].get_color(), "black")
    assert axes[1].lines[0].get_xdata()[0] == 1.0  # the panel's own vertical line
    assert axes[0].figure.legends, "one legend for the whole figure"
    assert plotting.rank_error_grid(df, yscale="symlog")[0].get_yscale() == "symlog"
    with pytest.raises(ValueError, match="columns"):
        plotting.rank_error_grid(df.drop(columns="gamma"))


def test_rank_bars_heights_and_true_rank():
    df = _rank_frame().assign(rank=lambda d: d["error"] + 5, case=lambda d: d["gamma"].map(
        {0.5: "white", 1.0: "correlated"}))
    ax = plotting.rank_bars(df, true_rank=5, log=True, colors={"bema": "red"})
    heights = [p.get_height() for p in ax.patches]
    assert heights == [5.5, 5.5, 15.5, 15.5]  # bema (white, correlated), then energy
    assert matplotlib.colors.same_color(ax.patches[0].get_facecolor(), "red")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["white", "correlated"]
    assert ax.get_yscale() == "symlog"
    assert "true rank = 5" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="columns"):
        plotting.rank_bars(df.drop(columns="case"))
