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

import reference_mpmath as ref
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
    np.testing.assert_allclose(law.sf(right), sf_direct, rtol=5e-12, atol=0)


@pytest.mark.parametrize("beta", BETAS)
def test_left_tail_matches_asymptotic_series(beta):
    """-log F(-u) = E(u) from the literature series (its first terms and the constants of
    Deift-Its-Krasovsky / Baik-Buckingham-DiFranco): log F and log f = log F + log E' must
    agree to the size of the first neglected term (0.25 u^-6, and 0.045 u^-4.5 for F1)."""
    zeta_prime_m1 = 1 / 12 - math.log(1.2824271291006226)  # zeta'(-1) = 1/12 - log(Glaisher A)
    u = np.array([12.0, 14.5, 20.0, 40.0, 1e3])
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
    neglected = 0.25 * u**-6 + (0.045 * u**-4.5 if beta == 1 else 0)
    assert np.all(np.abs(law.logcdf(-u) + e) <= neglected + 4e-15 * e)
    assert np.all(np.abs(law.logpdf(-u) - (np.log(de) - e)) <= 4 * neglected + 4e-15 * e)
    near = u < 14  # where F(-u) is still a normal double
    assert np.all(np.abs(np.log(law.cdf(-u[near])) + e[near]) <= neglected[near])


def test_left_series_coefficients_solve_painleve_ii():
    """The Hastings-McLeod series q = sqrt(-x/2) sum c_k x^(-3k) behind the left tail solves
    q'' = x q + 2 q^3 up to its truncation order (checked at 50 digits, at x = -30)."""
    import mpmath

    e, w = tw._left_coefficients()
    # w_k = s_k / (3/2 - 3k) with s_k = (-1)^k c_k: recover the c_k
    c = [mpmath.mpf(wk) * (mpmath.mpf(3) / 2 - 3 * k) * (-1) ** k for k, wk in enumerate(w)]
    with mpmath.workdps(50):
        x0 = mpmath.mpf(-30)
        q = lambda x: mpmath.sqrt(-x / 2) * sum(ck * x ** (-3 * k) for k, ck in enumerate(c))
        residual = mpmath.diff(q, x0, 2) - x0 * q(x0) - 2 * q(x0) ** 3
        assert abs(residual) < 1e-17 * abs(x0 * q(x0))  # truncated at x^(-30): ~ |x|^-31
    assert c[1] == pytest.approx(1 / 8, rel=1e-15) and c[2] == pytest.approx(-73 / 128, rel=1e-15)
    assert e[2] == pytest.approx(-3 / 64, rel=1e-15) and e[3] == pytest.approx(-63 / 256, rel=1e-15)


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


# --------------------------------------------------------------------------- mpmath, 40 digits
# Points on no interpolation grid.  Tolerances: the accuracy the module docstring claims.
RIGHT = {1: (14.37, 21.9, 58.3, 131.7), 2: (8.43, 12.6, 39.1, 77.7)}


@pytest.mark.slow
@pytest.mark.parametrize("beta", BETAS)
def test_right_tail_is_exact_against_mpmath_traces(beta):
    """Right of the grid -log F is the kernel's trace; logsf, sf and logpdf against the
    traces computed by mpmath quadrature of the plain integrals (no substitution)."""
    import mpmath

    law = TracyWidom(beta)
    for s in RIGHT[beta]:
        log_tr = ref.tw_log_trace(s, beta)  # log(-log F); log sf = log tr - tr/2 + ...
        log_sf = log_tr + mpmath.log(-mpmath.expm1(-mpmath.exp(log_tr)) / mpmath.exp(log_tr))
        assert law.logsf(s) == pytest.approx(float(log_sf), rel=1e-14, abs=0)
        sf = float(mpmath.exp(log_sf))
        if sf > 1e-300:
            assert law.sf(s) == pytest.approx(sf, rel=4e-16 * (abs(float(log_sf)) + 10), abs=0)
        assert law.logpdf(s) == pytest.approx(float(ref.tw_log_density_right(s, beta)),
                                              rel=1e-14, abs=0)


@pytest.mark.slow
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("q", [1e-17, 4.4e-42, 7.7e-201, 1e-300])
def test_isf_far_in_the_tail_against_mpmath(beta, q):
    """isf(q) is finite down to q = 1e-300 and the mpmath survival function at it is q, to
    the conditioning of sf: one ulp of x moves sf by |x d log sf/dx| eps ~ (|log q| + 1) eps,
    so the tolerance is 4 (|log q| + 1) eps (6e-13 at 1e-300)."""
    import mpmath

    law = TracyWidom(beta)
    x = law.isf(q)
    assert math.isfinite(x) and x > tw._BREAKS[beta][2]
    cond = 4 * (abs(math.log(q)) + 1) * np.finfo(float).eps
    log_tr = ref.tw_log_trace(x, beta)  # at these x, log sf = log tr to 1e-17
    assert float(log_tr) == pytest.approx(math.log(q), rel=1e-15, abs=0)
    assert float(mpmath.exp(log_tr)) == pytest.approx(q, rel=cond, abs=0)
    assert law.sf(x) == pytest.approx(q, rel=cond, abs=0)
    assert law.logsf(x) == pytest.approx(math.log(q), rel=1e-15, abs=0)


# (s, relative tolerance of cdf, of sf): left of -5 the determinant in double loses eps / F
FREDHOLM = {2: [(-7.37, 3e-9, None), (-6.5, 3e-9, None), (-5.81, 3e-9, None),
                (-3.73, 2e-12, None), (1.71, 2e-12, 5e-12), (5.29, 2e-12, 5e-12)],
            1: [(-6.93, 3e-9, None), (-6.55, 3e-9, None), (-5.67, 3e-9, None),
                (-2.61, 2e-12, None), (3.14, 2e-12, 5e-12), (10.6, 2e-12, 5e-12)]}


@pytest.mark.slow
@pytest.mark.parametrize("beta", BETAS)
def test_cdf_and_sf_against_mpmath_fredholm_determinant(beta):
    """F = det(I - K_s) by a 56-point Nystrom rule in mpmath at 40 digits (converged to
    1e-30 at these points) against cdf, sf and logcdf."""
    import mpmath

    law = TracyWidom(beta)
    for s, rtol_cdf, rtol_sf in FREDHOLM[beta]:
        F = ref.tw_fredholm(s, beta, m=56, dps=40)
        assert law.cdf(s) == pytest.approx(float(F), rel=rtol_cdf, abs=0)
        assert law.logcdf(s) == pytest.approx(float(mpmath.log(F)), rel=rtol_cdf, abs=rtol_cdf)
        if rtol_sf is not None:
            assert law.sf(s) == pytest.approx(float(1 - F), rel=rtol_sf, abs=0)


@pytest.mark.slow
@pytest.mark.parametrize("beta, q", [(2, 1e-15), (1, 3e-11)])
def test_ppf_of_a_tiny_probability_against_mpmath(beta, q):
    """ppf(q) in the left tail: the mpmath determinant at the returned x gives back q to the
    documented relative 3e-9; and the round trip through cdf to 1e-12."""
    law = TracyWidom(beta)
    x = law.ppf(q)
    assert x < -5
    F = ref.tw_fredholm(x, beta, m=56, dps=50)
    assert float(F) == pytest.approx(q, rel=3e-9, abs=0)
    assert law.cdf(x) == pytest.approx(q, rel=1e-12, abs=0)


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
