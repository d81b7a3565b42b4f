"""One shared battery for every distribution in rmtlib (scipy.stats style)."""

import numpy as np
import pytest
from scipy import integrate, stats

from rmtlib.mp import MarchenkoPastur
from rmtlib.tw import TracyWidom
from rmtlib.validation import ArgumentTypeError

DISTS = {
    "MP(0.1)": lambda: MarchenkoPastur(0.1),
    "MP(0.5, 2)": lambda: MarchenkoPastur(0.5, 2.0),
    "MP(0.784, 0.3)": lambda: MarchenkoPastur(0.784, 0.3),
    "MP(1)": lambda: MarchenkoPastur(1.0),
    "TW1": lambda: TracyWidom(1),
    "TW2": lambda: TracyWidom(2),
}


@pytest.fixture(params=list(DISTS), scope="module")
def dist(request):
    return DISTS[request.param]()


def _finite_support(d):
    a, b = d.support()
    return (a if np.isfinite(a) else -14.0), (b if np.isfinite(b) else 12.0)


def test_pdf_integrates_to_one(dist):
    a, b = _finite_support(dist)
    mid = dist.median()
    total = sum(integrate.quad(dist.pdf, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11)[0]
                for lo, hi in [(a, mid), (mid, b)])
    assert total == pytest.approx(1.0, abs=1e-8)


def test_pdf_is_derivative_of_cdf(dist):
    lo, hi = dist.ppf(0.01), dist.ppf(0.99)
    x = np.linspace(lo, hi, 57)
    a, b = dist.support()
    h = 1e-5 * np.minimum(hi - lo, np.minimum(x - a, b - x))  # steps shrink near a singular edge
    numeric = (dist.cdf(x + h) - dist.cdf(x - h)) / (2 * h)
    np.testing.assert_allclose(numeric, dist.pdf(x), rtol=1e-5, atol=1e-7)


def test_logpdf_is_log_of_pdf(dist):
    x = dist.ppf(np.linspace(0.001, 0.999, 41))
    np.testing.assert_allclose(dist.logpdf(x), np.log(dist.pdf(x)), rtol=1e-10, atol=1e-12)


def test_cdf_inverts_ppf(dist):
    q = np.concatenate([[1e-10, 1e-6, 1e-3], np.linspace(0.01, 0.99, 99), [1 - 1e-3, 1 - 1e-6, 1 - 1e-10]])
    np.testing.assert_allclose(dist.cdf(dist.ppf(q)), q, rtol=1e-8, atol=1e-10)


def test_ppf_is_monotone_and_exact_at_the_edges(dist):
    q = np.sort(np.random.default_rng(0).random(20_000))
    x = dist.ppf(q)
    assert np.all(np.diff(x) >= 0)
    a, b = dist.support()
    assert dist.ppf(0.0) == a and dist.ppf(1.0) == b
    assert dist.cdf(a) == 0.0 and dist.cdf(b) == 1.0


def test_outside_support(dist):
    a, b = dist.support()
    if np.isfinite(a):
        assert dist.pdf(a - 1e-3) == 0.0 and dist.cdf(a - 1.0) == 0.0
        assert dist.logpdf(a - 1.0) == -np.inf
    if np.isfinite(b):
        assert dist.pdf(b + 1e-3) == 0.0 and dist.cdf(b + 1.0) == 1.0


def test_rvs_passes_ks_and_honours_random_state(dist):
    sample = dist.rvs(2000, random_state=12345)
    assert sample.shape == (2000,)
    assert stats.kstest(sample, dist.cdf).pvalue > 1e-3
    np.testing.assert_array_equal(sample, dist.rvs(2000, random_state=12345))
    assert not np.array_equal(sample, dist.rvs(2000, random_state=54321))
    rng = np.random.default_rng(7)
    first, second = dist.rvs(5, random_state=rng), dist.rvs(5, random_state=rng)
    assert not np.array_equal(first, second)  # a Generator is advanced, not re-seeded


def test_mean_and_variance_match_the_density(dist):
    a, b = _finite_support(dist)
    m1 = integrate.quad(lambda t: t * dist.pdf(t), a, b, limit=400)[0]
    m2 = integrate.quad(lambda t: (t - m1) ** 2 * dist.pdf(t), a, b, limit=400)[0]
    assert dist.mean() == pytest.approx(m1, abs=1e-6)
    assert dist.var() == pytest.approx(m2, abs=1e-6)


def test_broadcasting_and_scalars(dist):
    x = dist.ppf(np.linspace(0.05, 0.95, 12)).reshape(3, 4)
    for f in (dist.pdf, dist.logpdf, dist.cdf, dist.sf):
        assert f(x).shape == (3, 4)
        np.testing.assert_allclose(f(x).ravel(), [f(float(v)) for v in x.ravel()], rtol=1e-12)
    assert dist.ppf(np.full((2, 5), 0.3)).shape == (2, 5)
    assert isinstance(dist.cdf(0.5), float) and isinstance(dist.ppf(0.5), float)
    assert np.isnan(dist.cdf(np.nan)) and np.isnan(dist.pdf(np.nan))


@pytest.mark.parametrize("q", [-0.1, 1.5, -np.inf, np.inf, -1e-300])
def test_ppf_and_isf_reject_probabilities_outside_0_1(dist, q):
    for f in (dist.ppf, dist.isf):
        with pytest.raises(ValueError, match=r"q must hold probabilities in \[0, 1\]"):
            f(q)
        with pytest.raises(ValueError, match=r"q must"):
            f(np.array([0.5, q]))


def test_nan_in_nan_out_as_scipy(dist):
    for f in (dist.pdf, dist.logpdf, dist.cdf, dist.logcdf, dist.sf, dist.logsf, dist.ppf,
              dist.isf):
        assert np.isnan(f(np.nan))
        out = f(np.array([np.nan, 0.5]))
        assert np.isnan(out[0]) and not np.isnan(out[1])


def test_isf_ends_and_complement(dist):
    a, b = dist.support()
    assert dist.isf(0.0) == b and dist.isf(1.0) == a
    q = np.linspace(0.01, 0.99, 37)
    np.testing.assert_allclose(dist.isf(q), dist.ppf(1 - q), rtol=1e-12, atol=1e-14)
    x = dist.isf(np.logspace(-6, np.log10(0.5), 30))
    np.testing.assert_allclose(dist.sf(x), np.logspace(-6, np.log10(0.5), 30), rtol=1e-9, atol=0)
    assert np.all(np.diff(dist.isf(np.logspace(-300, -1, 200))) <= 0)


def test_logcdf_and_logsf_are_the_logs(dist):
    x = dist.ppf(np.concatenate([np.logspace(-12, -1, 12), np.linspace(0.1, 0.9, 9)]))
    x = np.concatenate([x, dist.isf(np.logspace(-12, -1, 12))])
    np.testing.assert_allclose(dist.logcdf(x), np.log(dist.cdf(x)), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dist.logsf(x), np.log(dist.sf(x)), rtol=1e-13, atol=1e-15)
    a, b = dist.support()
    assert dist.logcdf(a) == -np.inf and dist.logcdf(b) == 0.0
    assert dist.logsf(a) == 0.0 and dist.logsf(b) == -np.inf


BAD_POINTS = ["0.5", b"0.5", True, np.array([True, False]), 1 + 1j, np.array([1j]), None,
              ["a", "b"], [[1.0], [1.0, 2.0]], {"x": 1}]


@pytest.mark.parametrize("bad", BAD_POINTS, ids=repr)
def test_bad_point_types_are_rejected_naming_the_argument(dist, bad):
    for f in (dist.pdf, dist.logpdf, dist.cdf, dist.logcdf, dist.sf, dist.logsf):
        with pytest.raises(ArgumentTypeError, match="x must be a real number"):
            f(bad)
    for f in (dist.ppf, dist.isf):
        with pytest.raises(ArgumentTypeError, match="q must be a real number"):
            f(bad)


def test_empty_and_integer_input(dist):
    for f in (dist.pdf, dist.cdf, dist.sf, dist.ppf, dist.isf, dist.logsf):
        assert f(np.array([])).shape == (0,) and f([]).shape == (0,)
    assert dist.cdf(np.array([1, 2])).dtype == np.float64
    assert dist.ppf(0) == dist.support()[0] and dist.ppf(1) == dist.support()[1]


@pytest.mark.parametrize("size", [-1, 1.5, "3", True, (2, -1), (2, 1.0)])
def test_rvs_rejects_bad_sizes(dist, size):
    with pytest.raises(ValueError, match="size must be"):
        dist.rvs(size, random_state=0)


@pytest.mark.parametrize("state", ["1", 1.5, True, -1, [1, 2], object()])
def test_rvs_rejects_bad_random_states(dist, state):
    with pytest.raises(ValueError, match="random_state must be"):
        dist.rvs(3, random_state=state)


def test_interval(dist):
    lo, hi = dist.interval(0.9)
    tail = (1 - 0.9) / 2
    assert lo == dist.ppf(tail) and hi == dist.isf(tail)
    assert dist.cdf(hi) - dist.cdf(lo) == pytest.approx(0.9, rel=1e-12)
    for bad in (1.5, -0.1, np.nan, "0.9", True, None):
        with pytest.raises(ValueError, match="confidence"):
            dist.interval(bad)
