import math

import mpmath
import numpy as np
import pytest
from scipy import stats

from rmtlib.ensembles import noise_eigenvalues
from rmtlib.mp import MarchenkoPastur, mp_edges


@pytest.mark.parametrize("gamma", [0.01, 0.25, 0.6, 0.999, 1.0])
def test_closed_form_cdf_matches_high_precision_quadrature(gamma):
    """Against mpmath quadrature of the density at 40 digits, including near both edges,
    where the closed form is evaluated in a cancellation-free way."""
    mpmath.mp.dps = 40
    a, b = mp_edges(gamma)
    dens = lambda t: mpmath.sqrt((b - t) * (t - a)) / (2 * mpmath.pi * gamma * t)
    mp = MarchenkoPastur(gamma)
    for d in [1e-9, 1e-6, 1e-3, 0.1]:
        x_lo, x_hi = a + d * (b - a), b - d * (b - a)
        exact_lo = float(mpmath.quad(dens, [a, x_lo]))
        exact_up = float(mpmath.quad(dens, [x_hi, b]))
        assert mp.cdf(x_lo) == pytest.approx(exact_lo, rel=1e-7, abs=1e-17)
        assert mp.sf(x_hi) == pytest.approx(exact_up, rel=1e-7)  # relative accuracy in the upper tail


def test_edges_mean_variance_follow_the_formulas():
    mp = MarchenkoPastur(0.25, 3.0)
    assert mp.support() == pytest.approx((3 * 0.25, 3 * 2.25))
    assert mp.mean() == 3.0 and mp.var() == pytest.approx(0.25 * 9.0)
    assert MarchenkoPastur.from_shape((1000, 250), 3.0).support() == mp.support()
    assert MarchenkoPastur.from_shape((250, 1000)).ratio == 0.25


def test_square_median_reproduces_gavish_donoho_omega():
    # Gavish & Donoho (2014): omega(1) = lambda*(1) / sqrt(mu_1) ~ 2.858 with lambda*(1) = 4/sqrt(3)
    # and mu_1 the median of the MP law with ratio 1.
    omega = (4 / math.sqrt(3)) / math.sqrt(MarchenkoPastur(1.0).median())
    assert omega == pytest.approx(2.858, abs=5e-4)


@pytest.mark.parametrize("shape", [(2000, 1000), (1000, 1000), (300, 1500)])
def test_eigenvalues_of_gaussian_matrices_follow_the_law(shape):
    rng = np.random.default_rng(3)
    W = rng.standard_normal(shape) * 0.5
    lam = np.linalg.eigvalsh(W @ W.T if shape[0] <= shape[1] else W.T @ W) / max(shape)
    mp = MarchenkoPastur.from_shape(shape, 0.25)
    d = stats.kstest(lam, mp.cdf).statistic
    assert d < 5 / min(shape), d  # the Kolmogorov distance of one draw is O(1/p)


def test_bidiagonal_noise_sampler_agrees_with_dense_matrices():
    rng = np.random.default_rng(11)
    dense = np.array([np.linalg.eigvalsh(x.T @ x) / 60 for x in rng.standard_normal((1500, 60, 40))])
    fast = noise_eigenvalues((40, 60), 1500, random_state=12)
    for col in (0, 20, -1):  # smallest, middle and largest eigenvalue
        assert stats.ks_2samp(fast[:, col], dense[:, col]).pvalue > 1e-3
    assert fast.mean() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("ratio", [0, -0.5, np.nan, np.inf, "a", None])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        MarchenkoPastur(ratio)


def test_ratio_above_one_explains_the_transpose():
    with pytest.raises(ValueError, match="transpose"):
        MarchenkoPastur(2.0)


@pytest.mark.parametrize("sigma2", [0, -1, np.nan, np.inf])
def test_bad_sigma2(sigma2):
    with pytest.raises(ValueError, match="sigma2"):
        MarchenkoPastur(0.5, sigma2)


def test_complex_points_rejected():
    with pytest.raises(ValueError, match="real"):
        MarchenkoPastur(0.5).cdf(np.array([1 + 1j]))


def test_density_formula_at_a_point():
    g, s2, x = 0.3, 1.7, 2.0
    a, b = s2 * (1 - math.sqrt(g)) ** 2, s2 * (1 + math.sqrt(g)) ** 2
    expected = math.sqrt((b - x) * (x - a)) / (2 * math.pi * s2 * g * x)
    assert MarchenkoPastur(g, s2).pdf(x) == pytest.approx(expected, rel=1e-14)
