"""Tests for :mod:`rmtlib.tw` (Tracy--Widom F1 and F2).

References for the numbers used below:

* Painlevé II representation (Tracy--Widom 1994, 1996): with ``q`` the Hastings--McLeod
  solution of ``q'' = s q + 2 q^3``, ``q(s) ~ Ai(s)`` as ``s -> +inf``,
  ``F2(s) = exp(-int_s^inf (x - s) q(x)^2 dx)`` and
  ``F1(s) = sqrt(F2(s)) exp(-1/2 int_s^inf q(x) dx)``.
* TW1 quantiles: the project reference table (``/work/shared/REFERENCE.md``; compare the
  two-decimal percentile table of Johnstone 2001).
* Means and variances as tabulated by Bornemann (2010), Math. Comp. 79, 871--915, and
  widely quoted since: F1 mean -1.2065335745820, variance 1.607781034581;
  F2 mean -1.771086807411, variance 0.8131947928329.
* No TW2 quantile table from a citable source was available offline, so F2 is checked
  through the Painlevé II integration, its moments and its left-tail constant instead.
* Left-tail constants: Deift--Its--Krasovsky (2008) for F2, Baik--Buckingham--DiFranco
  (2008) for F1: ``tau2 = 2^(1/24) e^(zeta'(-1))``, ``tau1 = 2^(-11/48) e^(zeta'(-1)/2)``.
"""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad, solve_ivp
from scipy.special import airy

from rmtlib import tw
from rmtlib.tw import TracyWidom, johnstone_scaling, tracy_widom_cdf_fredholm

BETAS = (1, 2)
GRID = np.linspace(-8.0, 6.0, 57)


@pytest.fixture(scope="module")
def painleve():
    """F1, F2 and their densities on GRID from the Hastings--McLeod solution of Painlevé II.

    Integrated backwards from s0 = 10, where q = Ai to double precision, with
    u(s) = int_s^inf (x - s) q^2, v = int_s^inf q^2, w = int_s^inf q:
    u' = -v, v' = -q^2, w' = -q.  Then F2 = exp(-u), f2 = F2 v, F1 = exp(-(u + w)/2),
    f1 = F1 (v + q)/2.  (scipy.special.itairy is inaccurate near x = 6-8, so w(s0) comes
    from quad.)
    """
    s0 = 10.0
    ai, aip, _, _ = airy(s0)
    v0 = aip**2 - s0 * ai**2  # int_s0^inf Ai^2
    u0 = -(s0**2 * ai**2 - s0 * aip**2 + ai * aip) / 3 - s0 * v0  # int_s0^inf (x - s0) Ai^2
    w0 = quad(lambda x: airy(x)[0], s0, np.inf, epsabs=0, epsrel=1e-13)[0]

    def rhs(s, y):
        q, p, _, v, _ = y
        return [p, s * q + 2 * q**3, -v, -q * q, -q]

    sol = solve_ivp(rhs, (s0, GRID[0]), [ai, aip, u0, v0, w0], method="DOP853",
                    rtol=1e-13, atol=1e-30, t_eval=GRID[::-1])
    assert sol.success
    q, _, u, v, w = (arr[::-1] for arr in sol.y)
    f2, f1 = np.exp(-u), np.exp(-(u + w) / 2)
    return {2: (f2, f2 * v), 1: (f1, f1 * (v + q) / 2)}


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("beta", BETAS)
def test_cdf_and_pdf_match_painleve_ii(beta, painleve):
    cdf, pdf = painleve[beta]
    law = TracyWidom(beta)
    assert np.max(np.abs(law.cdf(GRID) - cdf)) < 1e-9
    assert np.max(np.abs(law.pdf(GRID) - pdf)) < 1e-9
    assert np.max(np.abs(tracy_widom_cdf_fredholm(GRID, beta) - cdf)) < 1e-9


@pytest.mark.parametrize("beta", BETAS)
def test_fredholm_determinant_converged_in_m(beta):
    m = tw._DEFAULT_M[beta]
    f_m = tracy_widom_cdf_fredholm(GRID, beta, m=m)
    assert np.max(np.abs(f_m - tracy_widom_cdf_fredholm(GRID, beta, m=2 * m))) <= 1e-12
    # and the check has teeth: a coarse rule is visibly off
    assert np.max(np.abs(f_m - tracy_widom_cdf_fredholm(GRID, beta, m=12))) > 1e-6


@pytest.mark.parametrize("beta", BETAS)
def test_interpolant_matches_direct_determinant(beta):
    law = TracyWidom(beta)
    b = tw._BREAKS[beta][2]
    x = np.concatenate([np.linspace(-8.0, b, 97), np.random.default_rng(1).uniform(-8, b, 40)])
    assert np.max(np.abs(law.cdf(x) - tracy_widom_cdf_fredholm(x, beta))) < 1e-12
    # right tail in relative terms: sf = 1 - F = -expm1(log F) against the determinant's log
    right = np.linspace(1.0, b, 25)
    sf_direct = -np.expm1(-tw._neglog_det(right, beta, tw._DEFAULT_M[beta]))
    np.testing.assert_allclose(law.sf(right), sf_direct, rtol=1e-9)
    # beyond the grid, the matched tail expansion (documented: relative error < 1e-3)
    far = np.array([b + 0.5, b + 4.0, b + 12.0])
    np.testing.assert_allclose(law.sf(far), tw._neglog_det(far, beta, 96), rtol=1e-3)


@pytest.mark.parametrize("beta", BETAS)
def test_left_tail_matches_asymptotic_series(beta):
    """-log F(-u) = E(u) from the literature series; compare log F and log f = log F + log E'."""
    zeta_prime_m1 = 1 / 12 - math.log(1.2824271291006226)  # zeta'(-1) = 1/12 - log(Glaisher A)
    u = np.array([7.0, 8.0, 9.0, 12.0, 20.0, 40.0])
    if beta == 2:
        log_tau = math.log(2) / 24 + zeta_prime_m1
        e = u**3 / 12 + np.log(u) / 8 - 3 / (64 * u**3) - log_tau
        de = u**2 / 4 + 1 / (8 * u) + 9 / (64 * u**4)
    else:
        log_tau = -11 / 48 * math.log(2) + zeta_prime_m1 / 2
        k = 1 / (24 * math.sqrt(2))
        e = u**3 / 24 + 8 * k * u**1.5 + np.log(u) / 16 + k * u**-1.5 - 3 / (128 * u**3) - log_tau
        de = u**2 / 8 + 12 * k * u**0.5 + 1 / (16 * u) - 1.5 * k * u**-2.5 + 9 / (128 * u**4)
    law = TracyWidom(beta)
    near = u < 10  # where F(-u) is still a normal double
    np.testing.assert_allclose(np.log(law.cdf(-u[near])), -e[near], rtol=0, atol=3e-5)
    np.testing.assert_allclose(law.logpdf(-u), -e + np.log(de), rtol=0, atol=3e-5)


def test_tw1_quantiles():
    law = TracyWidom(1)
    q = np.array([0.10, 0.50, 0.90, 0.95, 0.99])
    expected = np.array([-2.7824, -1.2686, 0.4501, 0.9793, 2.0234])
    np.testing.assert_allclose(law.ppf(q), expected, rtol=0, atol=5e-5)
    assert law.median() == pytest.approx(-1.2686, abs=5e-5)


@pytest.mark.parametrize("beta, mean, var", [(1, -1.2065335745820, 1.607781034581),
                                             (2, -1.771086807411, 0.8131947928329)])
def test_moments_from_density_quadrature(beta, mean, var):
    law = TracyWidom(beta)
    assert law.mean() == pytest.approx(round(mean, 4), abs=5e-5)  # the 4-decimal values
    assert law.var() == pytest.approx(round(var, 4), abs=5e-5)
    assert law.mean() == pytest.approx(mean, abs=1e-9)  # Bornemann's published values
    assert law.var() == pytest.approx(var, abs=1e-9)
    assert law.std() == pytest.approx(math.sqrt(var), abs=1e-9)


# --------------------------------------------------------------------------- consistency
@pytest.mark.parametrize("beta", BETAS)
def test_pdf_is_derivative_of_cdf_and_integrates_to_one(beta):
    law = TracyWidom(beta)
    a, c, b = tw._BREAKS[beta]
    x = np.concatenate([np.linspace(-12, 16, 113), [a, c, b], [a - 1e-3, c + 1e-3, b + 1e-3]])
    h = 1e-5
    fd = (law.cdf(x + h) - law.cdf(x - h)) / (2 * h)
    assert np.max(np.abs(law.pdf(x) - fd)) < 1e-8
    assert np.all(law.pdf(x) > 0)
    total = quad(law.pdf, -np.inf, np.inf, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("beta", BETAS)
def test_logpdf_and_sf_consistent(beta):
    law = TracyWidom(beta)
    x = np.linspace(-30, 30, 61)
    pdf = law.pdf(x)
    ok = pdf > 1e-300
    np.testing.assert_allclose(law.logpdf(x)[ok], np.log(pdf[ok]), rtol=1e-12)
    assert np.all(np.isfinite(law.logpdf(x)))  # finite far beyond where pdf underflows
    np.testing.assert_allclose(law.sf(x), 1 - law.cdf(x), rtol=0, atol=2e-16)
    assert np.all(np.diff(law.cdf(x)) >= 0) and np.all(np.diff(law.sf(x)) <= 0)


@pytest.mark.parametrize("beta", BETAS)
def test_ppf_round_trip_monotone_and_extremes(beta):
    law = TracyWidom(beta)
    q = np.concatenate([[5e-324], np.logspace(-300, -1, 60), np.linspace(0.11, 0.89, 79),
                        1 - np.logspace(-1, -15, 40)])
    x = law.ppf(q)
    assert np.all(np.isfinite(x)) and np.all(np.diff(x) > 0)
    assert np.max(np.abs(law.cdf(x) - q)) <= 1e-10
    low = q < 0.5  # relative accuracy in both tails
    np.testing.assert_allclose(law.cdf(x[low]), q[low], rtol=1e-9)
    np.testing.assert_allclose(law.sf(x[~low]), 1 - q[~low], rtol=1e-9)
    assert law.ppf(0.0) == -np.inf and law.ppf(1.0) == np.inf
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        law.ppf(1.5)


@pytest.mark.parametrize("beta", BETAS)
def test_shapes_and_special_values(beta):
    law = TracyWidom(beta)
    assert isinstance(law.cdf(0.0), float) and isinstance(law.ppf(0.5), float)
    x = np.array([[-np.inf, -1.0], [np.nan, np.inf]])
    cdf = law.cdf(x)
    assert cdf.shape == (2, 2) and law.pdf(x).shape == (2, 2)
    assert cdf[0, 0] == 0.0 and cdf[1, 1] == 1.0 and np.isnan(cdf[1, 0])
    assert law.pdf(x)[0, 0] == 0.0 and law.sf(x)[0, 0] == 1.0 and np.isnan(law.sf(x)[1, 0])
    assert law.support() == (-math.inf, math.inf)
    assert repr(law) == f"TracyWidom(beta={beta})"
    assert tracy_widom_cdf_fredholm(np.zeros((3, 1)), beta).shape == (3, 1)
    np.testing.assert_array_equal(law.rvs(50, random_state=3), law.rvs(50, random_state=3))


# --------------------------------------------------------------------------- simulation
def test_johnstone_scaled_largest_eigenvalue_is_tw1():
    n, p, reps = 200, 100, 400
    x = np.random.default_rng(20240613).standard_normal((reps, n, p))
    top = np.linalg.eigvalsh(np.swapaxes(x, 1, 2) @ x)[:, -1]
    mu, sigma = johnstone_scaling(n, p)
    z = (top - mu) / sigma
    assert stats.kstest(z, TracyWidom(1).cdf).pvalue > 0.01
    assert stats.kstest(z, TracyWidom(2).cdf).pvalue < 0.01  # the test can tell F1 from F2


def test_johnstone_scaling_values_and_validation():
    assert johnstone_scaling(5, 4) == pytest.approx((16.0, 4.0))  # sqrt(n-1) = sqrt(p) = 2
    mu, sigma = johnstone_scaling(10, 9)  # sqrt(n-1) = sqrt(p) = 3
    assert mu == pytest.approx(36.0) and sigma == pytest.approx(6 * (2 / 3) ** (1 / 3))
    assert johnstone_scaling(np.int64(5), np.int64(4)) == pytest.approx((16.0, 4.0))
    for n, p in [(1, 4), (5, 0), (5.0, 4), (True, 4), ("5", 4), (5, -1)]:
        with pytest.raises(ValueError, match="integer"):
            johnstone_scaling(n, p)


@pytest.mark.parametrize("bad", [0, 3, 4, 1.5, True, "1", None, np.array([1])])
def test_bad_beta_raises(bad):
    with pytest.raises(ValueError, match=r"beta must be 1 .* or 2"):
        TracyWidom(bad)
    with pytest.raises(ValueError, match=r"beta must be 1 .* or 2"):
        tracy_widom_cdf_fredholm(0.0, bad)


@pytest.mark.parametrize("m", [1, 0, 2.5, True])
def test_bad_node_count_raises(m):
    with pytest.raises(ValueError, match="m .*integer"):
        tracy_widom_cdf_fredholm(0.0, 2, m=m)
