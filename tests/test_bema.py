import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rmtlib.bema import fit_bema, tw_edge_factor
from rmtlib.ensembles import bbp_threshold, noise_eigenvalues, spiked_matrix
from rmtlib.tw import TracyWidom

SHAPES = [(1000, 1000), (1500, 600), (400, 1200), (1000, 784)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_sigma2_and_spike_count(shape, seed):
    sigma = 0.7
    level = bbp_threshold(min(shape) / max(shape))
    thetas = level * np.array([1.5, 2.0, 3.0, 5.0])  # >= 1.5x the BBP detectability level
    fit = fit_bema(spiked_matrix(shape, thetas, sigma=sigma, random_state=seed))
    assert fit.sigma2 == pytest.approx(sigma**2, rel=0.02)
    assert fit.n_spikes == len(thetas)
    assert fit.shape == shape and fit.N == max(shape) and fit.p == min(shape)


def test_edge_formula():
    fit = fit_bema(spiked_matrix((900, 400), [3.0], random_state=4))
    g, N = 400 / 900, 900
    t = TracyWidom(1).ppf(0.9)
    expected = fit.sigma2 * ((1 + g**0.5) ** 2 + t * N ** (-2 / 3) * g ** (-1 / 6) * (1 + g**0.5) ** (4 / 3))
    assert fit.lambda_plus == pytest.approx(expected, rel=1e-12)
    assert fit.edge_singular == pytest.approx(math.sqrt(N * fit.lambda_plus), rel=1e-12)
    assert fit.lambda_plus_mp == pytest.approx(fit.sigma2 * (1 + g**0.5) ** 2)
    assert fit.tw_quantile == pytest.approx(0.4501, abs=1e-4)
    assert fit.n_spikes == np.count_nonzero(fit.eigenvalues > fit.lambda_plus)
    assert fit.n_bulk == 400 - fit.n_spikes
    np.testing.assert_array_equal(fit.spikes, np.sort(fit.eigenvalues[fit.eigenvalues > fit.lambda_plus])[::-1])


def test_beta_is_the_false_spike_rate_of_pure_noise():
    """beta is the probability that pure noise shows a spike; with sigma estimated from the
    bulk and finite N the realised rate is somewhat higher (~0.15 for beta = 0.1 here)."""
    shape = (500, 250)
    lam = noise_eigenvalues(shape, 400, random_state=5)
    rate = np.mean([fit_bema(e, shape=shape, beta=0.1).n_spikes > 0 for e in lam])
    assert 0.05 <= rate <= 0.2
    rate_half = np.mean([fit_bema(e, shape=shape, beta=0.5).n_spikes > 0 for e in lam])
    assert rate_half > 2 * rate


def test_paper_exact_tw_term_and_window():
    W = spiked_matrix((1000, 784), [4.0], random_state=0)
    ours, paper = fit_bema(W), fit_bema(W, paper_exact=True)
    g, N = 784 / 1000, 1000
    sg = 1 + math.sqrt(g)
    bracket_paper = sg**2 + paper.tw_quantile * N ** (-2 / 3) * g ** (-1 / 6) * sg**4 / 3
    assert paper.lambda_plus == pytest.approx(paper.sigma2 * bracket_paper, rel=1e-12)
    assert tw_edge_factor(g, N, paper_exact=True) == pytest.approx(bracket_paper)
    # (1+sqrt g)^4/3 vs (1+sqrt g)^(4/3): the edge moves by a fraction of a percent
    shift = tw_edge_factor(g, N, paper_exact=True) / tw_edge_factor(g, N) - 1
    assert 0.002 < shift < 0.006
    assert paper.sigma2 != ours.sigma2  # different window/levels
    assert paper.sigma2 == pytest.approx(ours.sigma2, rel=0.01)
    assert paper.paper_exact and not ours.paper_exact


def test_eigenvalue_input_equals_matrix_input():
    W = spiked_matrix((300, 500), [2.0, 3.0], random_state=1)
    a = fit_bema(W)
    lam = np.linalg.svd(W, compute_uv=False) ** 2 / 500
    b = fit_bema(np.random.default_rng(0).permutation(lam), shape=(300, 500))
    assert b.sigma2 == pytest.approx(a.sigma2, rel=1e-10)
    assert b.n_spikes == a.n_spikes == 2
    assert b.gof == pytest.approx(a.gof, rel=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_and_float32_input(dtype):
    W = spiked_matrix((400, 300), [3.0], random_state=2)
    ref = fit_bema(W)
    fit = fit_bema(torch.as_tensor(W, dtype=dtype))
    assert fit.sigma2 == pytest.approx(ref.sigma2, rel=1e-5)
    assert fit.n_spikes == ref.n_spikes == 1
    assert isinstance(fit.sigma2, float) and isinstance(fit.n_spikes, int)


def test_alpha_and_beta_change_the_fit_sensibly():
    W = spiked_matrix((1000, 1000), [3.0, 4.0], random_state=3)
    edges_beta = [fit_bema(W, beta=b).lambda_plus for b in (0.05, 0.1, 0.5, 0.9)]
    assert np.all(np.diff(edges_beta) < 0)  # a larger tail probability lowers the edge
    for a in (0.05, 0.2, 0.45):
        assert fit_bema(W, alpha=a).lambda_plus == pytest.approx(4.0, rel=0.02)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_c=st.floats(-3, 3), tall=st.booleans())
def test_scale_equivariance_and_transpose_invariance(seed, log_c, tall):
    W = spiked_matrix((240, 160) if tall else (160, 240), [2.5], random_state=seed)
    c = 10.0**log_c
    base, scaled, transposed = fit_bema(W), fit_bema(c * W), fit_bema(W.T)
    assert scaled.sigma2 == pytest.approx(c**2 * base.sigma2, rel=1e-9)
    assert scaled.lambda_plus == pytest.approx(c**2 * base.lambda_plus, rel=1e-9)
    assert scaled.edge_singular == pytest.approx(c * base.edge_singular, rel=1e-9)
    assert scaled.n_spikes == base.n_spikes
    assert scaled.gof == pytest.approx(base.gof, abs=1e-9)
    assert transposed.sigma2 == pytest.approx(base.sigma2, rel=1e-9)
    assert transposed.n_spikes == base.n_spikes


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.full((5, 5), np.nan), {}, "non-finite"),
        (np.eye(4) * np.inf, {}, "non-finite"),
        (np.ones((4, 4)) * (1 + 1j), {}, "real"),
        (np.ones((1, 10)), {}, "at least 2 rows"),
        (np.ones((10, 1)), {}, "at least 2 rows"),
        (np.empty((0, 5)), {}, "at least 2 rows"),
        (np.ones(5), {}, "shape"),
        (np.array([-1.0, 1, 2, 3]), {"shape": (4, 8)}, "non-negative"),
        (np.ones(3), {"shape": (4, 8)}, "min\\(m, n\\)"),
        (np.ones((3, 3, 3)), {}, "1-D"),
        (np.array(["a", "b"]), {}, "numeric"),
    ],
)
def test_bad_inputs(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_bema(x, **kwargs)


@pytest.mark.parametrize("alpha", [0, 0.5, -0.1, 0.7, np.nan, True, "0.2"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        fit_bema(np.random.default_rng(0).standard_normal((50, 40)), alpha=alpha)


@pytest.mark.parametrize("beta", [0, 1, -0.1, 1.5, np.nan, None])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        fit_bema(np.random.default_rng(0).standard_normal((50, 40)), beta=beta)


def test_low_rank_matrix_has_no_bulk():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((100, 3)) @ rng.standard_normal((3, 80))
    with pytest.raises(ValueError, match="bulk"):
        fit_bema(W)


def test_tiny_matrix_window_error():
    with pytest.raises(ValueError, match="window"):
        fit_bema(np.random.default_rng(0).standard_normal((3, 5)), alpha=0.45)


def test_tiny_beta_gives_a_finite_edge_and_the_right_spike_count():
    """beta = 1e-300: t = TracyWidom(1).isf(1e-300) ~ 101.9 (1 - beta rounds to 1, so a
    quantile at 1 - beta would be inf and count no spike at all).  With N = 1000 the bracket is
    ~ 4 + 101.9e-2 * 2.52 ~ 6.6: a spike of strength 8 (eigenvalue ~ 66) stays above it, one of
    strength 2 (eigenvalue ~ 6.25) falls below; beta = 0.1 counts both."""
    W = spiked_matrix((1000, 1000), [2.0, 8.0], random_state=7)
    tiny, usual = fit_bema(W, beta=1e-300), fit_bema(W)
    t = TracyWidom(1).isf(1e-300)
    assert math.isfinite(t) and 101 < t < 103 and tiny.tw_quantile == t
    assert tiny.lambda_plus == pytest.approx(tiny.sigma2 * tw_edge_factor(1.0, 1000, 1e-300),
                                             rel=1e-14, abs=0)
    assert 6.3 < tiny.lambda_plus / tiny.sigma2 < 6.9
    assert tiny.n_spikes == 1 and usual.n_spikes == 2
    # the edge moves continuously as beta shrinks through the range where 1 - beta is exact
    edges = [fit_bema(W, beta=b).lambda_plus for b in (1e-3, 1e-10, 1e-16, 1e-17, 1e-100, 1e-300)]
    assert np.all(np.diff(edges) > 0) and np.all(np.isfinite(edges))


def test_subnormal_beta_is_rejected():
    W = spiked_matrix((100, 80), [3.0], random_state=1)
    with pytest.raises(ValueError, match="smallest normal double"):
        fit_bema(W, beta=1e-310)
