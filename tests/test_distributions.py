"""One shared battery for every distribution in rmtlib (scipy.stats style)."""

import numpy as np
import pytest
from scipy import integrate, stats

from rmtlib.mp import MarchenkoPastur
from rmtlib.tw import TracyWidom

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


@pytest.mark.parametrize("q", [-0.1, 1.5, np.nan])
def test_ppf_rejects_bad_probabilities(dist, q):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dist.ppf(q)
