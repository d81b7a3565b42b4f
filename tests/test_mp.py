import math

import mpmath
import numpy as np
import pytest
from scipy import stats

from rmtlib.ensembles import noise_eigenvalues
from rmtlib.mp import MarchenkoPastur, mp_edges


import reference_mpmath as ref
from rmtlib import mp as mp_module

EPS = np.finfo(np.float64).eps
TOL = 16 * EPS  # the docstring's 4e-15: F ~ d**1.5 triples the rounding of the angle


@pytest.fixture(autouse=True)
def forty_digits():
    """mpmath's precision is global state: every test here works at 40 digits."""
    with mpmath.workdps(40):
        yield
RATIOS = [1e-5, 0.013, 0.09, 0.25, 0.4, 0.784, 0.9999, 1 - 1e-9, 1.0]
DISTANCES = [3e-15, 1e-12, 2e-9, 7e-6, 1e-3, 0.04, 0.31, 0.5]  # fraction of the support


def _points(gamma, d):
    """The doubles nearest to lambda_- + d (lambda_+ - lambda_-) and lambda_+ - d (...),
    from the exact (mpmath) edges; those that round onto the double edge itself are dropped
    (there cdf = 0 by convention, see the module docstring)."""
    a, b = ref.mp_edges(gamma)
    lo, hi = MarchenkoPastur(gamma).support()
    return [x for x in (float(a + d * (b - a)), float(b - d * (b - a))) if lo < x < hi]


@pytest.mark.parametrize("gamma", RATIOS)
def test_tails_keep_relative_accuracy_at_both_edges(gamma):
    """cdf near the lower edge, sf near the upper one (and both in the bulk) against the
    closed form in mpmath at 40+ digits with the exact edges: relative error <= 16 eps.
    approx(..., abs=0): a tail mass of 1e-22 is compared relatively, not to 1e-12."""
    law = MarchenkoPastur(gamma)
    for d in DISTANCES:
        for x in _points(gamma, d):
            lower, upper = ref.mp_tail(gamma, x), ref.mp_tail(gamma, x, upper=True)
            assert law.cdf(x) == pytest.approx(float(lower), rel=TOL, abs=0), (x, "cdf")
            assert law.sf(x) == pytest.approx(float(upper), rel=TOL, abs=0), (x, "sf")
            assert law.logcdf(x) == pytest.approx(float(mpmath.log(lower)), rel=TOL, abs=TOL)
            assert law.logsf(x) == pytest.approx(float(mpmath.log(upper)), rel=TOL, abs=TOL)


@pytest.mark.parametrize("gamma", [0.01, 0.6, 1.0])
def test_closed_form_reference_agrees_with_quadrature_of_the_density(gamma):
    """The test's own reference against a second one: mpmath quadrature of the density."""
    for d in (1e-11, 1e-4, 0.2):
        x_lo, x_hi = _points(gamma, d)
        for x, upper in ((x_lo, False), (x_hi, True)):
            closed, quad = ref.mp_tail(gamma, x, upper), ref.mp_tail_by_quadrature(gamma, x, upper)
            assert abs(closed - quad) <= 1e-20 * quad


@pytest.mark.parametrize("gamma", [0.02, 0.3, 0.97, 1.0])
def test_quantiles_are_accurate_down_to_1e_300(gamma):
    """ppf(q) and isf(q) against the exact quantiles (mpmath bisection at 60+ digits):
    relative error of x below 4 eps for every q, however small (x is well conditioned)."""
    law = MarchenkoPastur(gamma)
    for q in (1e-300, 3e-77, 1e-20, 2e-9, 0.013, 0.37, 0.81):
        for upper, f in ((False, law.ppf), (True, law.isf)):
            exact = float(ref.mp_quantile(gamma, q, upper=upper))
            x = f(q)
            assert np.isfinite(x)
            if exact == 0.0:  # gamma = 1: the quantile underflows (it is ~2.5 q**2)
                assert x == 0.0
            else:
                assert x == pytest.approx(exact, rel=4 * EPS, abs=0), (q, upper)


def test_singular_lower_edge_of_the_square_law():
    """gamma = 1: lambda_- = 0, F ~ (2/pi) sqrt(x), so ppf(q) ~ (pi q / 2)**2 keeps relative
    accuracy deep into the subnormals' neighbourhood, and pdf(0) = inf."""
    law = MarchenkoPastur(1.0)
    for q in (1e-150, 1e-40, 1e-12):
        assert law.ppf(q) == pytest.approx((math.pi * q / 2) ** 2, rel=4 * EPS, abs=0)
        assert law.cdf((math.pi * q / 2) ** 2) == pytest.approx(q, rel=TOL, abs=0)
    assert law.pdf(0.0) == np.inf and law.logpdf(0.0) == np.inf
    assert law.pdf(1e-300) == pytest.approx(1 / (math.pi * 1e-150), rel=1e-14)


def test_round_trips_and_monotone_quantiles():
    law = MarchenkoPastur(0.37, 2.5)
    q = np.concatenate([np.logspace(-300, -1, 120), np.linspace(0.1, 0.9, 81)])
    for f, back in ((law.ppf, law.cdf), (law.isf, law.sf)):
        x = f(q)
        assert np.all(np.isfinite(x))
        assert np.all(np.diff(x) >= 0) if f == law.ppf else np.all(np.diff(x) <= 0)
        ok = q > 1e-6  # below, x rounds to a double next to the edge (see the docstring)
        np.testing.assert_allclose(back(x[ok]), q[ok], rtol=1e-9, atol=0)


def test_sigma2_scales_the_law_exactly_near_the_edges():
    g, s2 = 0.49, 3.7
    unit, scaled = MarchenkoPastur(g), MarchenkoPastur(g, s2)
    a, b = ref.mp_edges(g)
    for d in (1e-13, 1e-7, 0.2):
        x = a + d * (b - a)
        xs = float(s2 * x)  # F_{s2}(xs) = F_1(xs / s2), the division done exactly in mpmath
        assert scaled.cdf(xs) == pytest.approx(float(ref.mp_tail(g, mpmath.mpf(xs) / s2)),
                                               rel=TOL, abs=0)
        assert unit.cdf(float(x)) == pytest.approx(float(ref.mp_tail(g, float(x))), rel=TOL, abs=0)
    assert scaled.isf(1e-200) <= scaled.support()[1]


def test_solver_raises_instead_of_returning_an_unconverged_quantile(monkeypatch):
    monkeypatch.setattr(mp_module, "_SOLVER_STEPS", 2)
    with pytest.raises(RuntimeError, match="did not converge"):
        MarchenkoPastur(0.3).ppf(np.array([1e-30, 0.2, 0.7]))


def test_mp_edges_are_the_nearest_doubles():
    for g in (0.3, 0.999, 1e-7):
        a, b = ref.mp_edges(g)
        assert mp_edges(g) == (float(a), float(b))
    assert mp_edges(0.25, 2.0) == (0.5, 4.5)


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


@pytest.mark.parametrize("ratio", [0, -0.5, np.nan, np.inf, "a", "0.5", None, True, 1 + 0j,
                                   [0.5]])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        MarchenkoPastur(ratio)
    with pytest.raises(ValueError, match="ratio"):
        mp_edges(ratio)


def test_ratio_above_one_explains_the_transpose():
    with pytest.raises(ValueError, match="transpose"):
        MarchenkoPastur(2.0)


@pytest.mark.parametrize("sigma2", [0, -1, np.nan, np.inf, "1", True, None])
def test_bad_sigma2(sigma2):
    with pytest.raises(ValueError, match="sigma2"):
        MarchenkoPastur(0.5, sigma2)


@pytest.mark.parametrize("shape", [(0, 5), (5,), (2.0, 3), ("2", 3), (True, 3), 5, "ab", None])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        MarchenkoPastur.from_shape(shape)


def test_complex_points_rejected():
    with pytest.raises(ValueError, match="real"):
        MarchenkoPastur(0.5).cdf(np.array([1 + 1j]))


def test_density_formula_at_a_point():
    g, s2, x = 0.3, 1.7, 2.0
    a, b = s2 * (1 - math.sqrt(g)) ** 2, s2 * (1 + math.sqrt(g)) ** 2
    expected = math.sqrt((b - x) * (x - a)) / (2 * math.pi * s2 * g * x)
    assert MarchenkoPastur(g, s2).pdf(x) == pytest.approx(expected, rel=1e-14)
