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


def test_training_curves_mean_and_band():
    data = {"pruned": [_hist(0, 1), _hist(1, 1), _hist(2, 1)], "unpruned": [_hist(0, 0)]}
    ax = plotting.training_curves(data)
    assert ax.get_ylabel() == "test accuracy (%)" and ax.get_xlabel() == "epoch"
    pruned, _unpruned = ax.lines
    np.testing.assert_allclose(pruned.get_ydata(), 91.5 + np.arange(5))
    assert len(ax.collections) == 1  # a band only where >= 2 seeds contribute
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([band.min(), band.max()], [91.0, 96.0], atol=1e-9)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pruned (n = 3)", "unpruned"]
    long = pd.concat([_hist(s, 0).assign(seed=s, variant="v") for s in range(2)])
    ax2 = plotting.training_curves(long, band="sem")
    assert len(ax2.lines) == 1
    with pytest.raises(ValueError, match="column"):
        plotting.training_curves(long, metric="nope")
    with pytest.raises(ValueError, match="band"):
        plotting.training_curves(long, band="iqr")


def test_use_style_sets_theme():
    plotting.use_style()
    assert plt.rcParams["savefig.bbox"] == "tight"
