"""Power-law tail fits and goodness-of-fit nulls that respect a layer's entries (rmtlib.heavytails)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rmtlib.gof import gof_null
from rmtlib.heavytails import (fit_power_law, hill_estimator, kurtosis_df, permutation_null,
                               student_t_null)


def _pareto(alpha, n, xmin, rng):
    """Density ~ x**-alpha on [xmin, inf)."""
    return xmin * (1.0 + rng.pareto(alpha - 1.0, n))


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_exponent_is_recovered_without_bias_and_its_standard_error_is_right(alpha):
    rng = np.random.default_rng(1)
    fits = [fit_power_law(_pareto(alpha, 2000, 0.3, rng)) for _ in range(30)]
    est = np.array([f.alpha for f in fits])
    assert abs(est.mean() - alpha) < 4 * est.std(ddof=1) / math.sqrt(est.size)
    se = np.mean([f.alpha_se for f in fits])
    assert 0.6 < se / est.std(ddof=1) < 1.6  # the reported error matches the spread


def test_xmin_is_found_where_the_tail_starts():
    rng = np.random.default_rng(2)
    body = rng.exponential(0.5, 6000)
    x = np.concatenate([body[body < 2.0], 2.0 * (1.0 + rng.pareto(2.0, 1000))])
    fit = fit_power_law(x)
    assert fit.xmin == pytest.approx(2.0, rel=0.1)
    assert fit.alpha == pytest.approx(3.0, abs=4 * fit.alpha_se)
    assert fit.n == x.size and fit.n_tail <= fit.n


def test_fixed_xmin_gives_the_closed_form_mle_and_scipys_ks_distance():
    rng = np.random.default_rng(3)
    x = _pareto(2.7, 500, 1.0, rng)
    fit = fit_power_law(x, xmin=1.5)
    tail = x[x >= 1.5]
    assert fit.n_tail == tail.size
    assert fit.alpha == pytest.approx(1 + tail.size / np.log(tail / 1.5).sum(), rel=1e-12, abs=0)
    ks = stats.kstest(tail, stats.pareto(fit.alpha - 1, scale=1.5).cdf).statistic
    assert fit.ks == pytest.approx(ks, rel=1e-9, abs=0)


def test_the_chosen_xmin_minimises_the_ks_distance():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(0.1, 1.0, 300), _pareto(2.5, 300, 1.0, rng)])
    best = fit_power_law(x, min_tail=20)
    for xm in np.quantile(x, [0.1, 0.3, 0.5, 0.7, 0.9]):
        assert fit_power_law(x, xmin=float(xm)).ks >= best.ks - 1e-12


def test_hill_estimator_agrees_with_the_mle_on_a_pure_power_law():
    rng = np.random.default_rng(5)
    x = _pareto(3.0, 20000, 1.0, rng)
    assert hill_estimator(x, 2000) == pytest.approx(3.0, abs=0.1)


def test_kurtosis_df():
    rng = np.random.default_rng(6)
    assert kurtosis_df(rng.standard_t(12, 400_000)) == pytest.approx(12, rel=0.25)
    g = kurtosis_df(rng.standard_normal(100_000))
    assert g == math.inf or g > 100
    with pytest.raises(ValueError, match="constant"):
        kurtosis_df(np.ones(10))


def test_permutation_null_of_gaussian_entries_matches_the_gaussian_null():
    W = np.random.default_rng(7).standard_normal((240, 160))
    perm = permutation_null(W, n_sim=200, random_state=0)
    gauss = gof_null((240, 160), n_sim=400, random_state=0, cache=False)
    assert perm.shape == (240, 160) and perm.n_sim == 200
    assert perm.quantile(0.5) == pytest.approx(gauss.quantile(0.5), rel=0.15)
    again = permutation_null(W, n_sim=200, random_state=0)
    np.testing.assert_array_equal(again.samples, perm.samples)


def test_heavy_tailed_entries_widen_the_null():
    rng = np.random.default_rng(8)
    W = rng.standard_t(2.5, size=(240, 160))
    perm = permutation_null(W, n_sim=100, random_state=1)
    t_null = student_t_null((240, 160), 2.5, n_sim=100, random_state=1)
    gauss = gof_null((240, 160), n_sim=400, random_state=0, cache=False)
    assert perm.quantile(0.9) > 1.3 * gauss.quantile(0.9)
    assert t_null.quantile(0.9) > 1.3 * gauss.quantile(0.9)


@pytest.mark.parametrize("call, match", [
    (lambda: fit_power_law("1 2 3"), "real numbers"),
    (lambda: fit_power_law([1.0, np.nan, 2.0]), "finite"),
    (lambda: fit_power_law([1.0, 2.0, 3.0]), "min_tail"),
    (lambda: fit_power_law(np.arange(1, 50.0), min_tail=True), "min_tail"),
    (lambda: fit_power_law(np.arange(1, 50.0), xmin=-1), "xmin"),
    (lambda: fit_power_law(np.arange(1, 50.0), xmin="2"), "xmin"),
    (lambda: hill_estimator(np.arange(1, 50.0), 0), "k"),
    (lambda: hill_estimator(np.arange(1, 50.0), 2.5), "k"),
    (lambda: permutation_null(np.ones(5), n_sim=50), "2-D"),
    (lambda: permutation_null(np.ones((20, 10)), n_sim=5), "n_sim"),
    (lambda: permutation_null(np.ones((20, 10)), n_sim=50, alpha=0.7), "alpha"),
    (lambda: student_t_null((20, 10), 1.5), "df"),
    (lambda: student_t_null((20,), 3.0), "shape"),
    (lambda: student_t_null((20, 10), 3.0, random_state=-1), "random_state"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()
