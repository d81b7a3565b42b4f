"""Variance and paired-interval statistics of rmtlib.stats (paper 2's claims over seeds)."""

import math

import numpy as np
import pytest
from scipy import stats as st

from rmtlib.stats import (brown_forsythe, paired_interval, pitman_morgan, variance_comparison,
                          variance_ratio)
from rmtlib.validation import ArgumentTypeError


def test_paired_interval_matches_the_t_formula():
    d = [0.5, 1.5, -0.2, 0.9, 1.1]
    out = paired_interval(d, 0.95)
    n, m, s = 5, np.mean(d), np.std(d, ddof=1)
    half = 2.7764451051977987 * s / math.sqrt(n)  # t_{4, 0.975}
    assert out["low"] == pytest.approx(m - half, rel=1e-12, abs=0)
    assert out["high"] == pytest.approx(m + half, rel=1e-12, abs=0)
    assert out["p"] == pytest.approx(st.ttest_1samp(d, 0).pvalue, rel=1e-10, abs=0)
    assert out["n"] == 5 and out["sd"] == pytest.approx(s, rel=1e-12, abs=0)


def test_variance_ratio_interval_and_p():
    a, b = [1.0, 2.0, 4.0, 7.0, 3.0], [2.0, 2.5, 3.0, 2.2, 2.9]
    out = variance_ratio(a, b, 0.9)
    r = np.var(a, ddof=1) / np.var(b, ddof=1)
    assert out["ratio"] == pytest.approx(r, rel=1e-12, abs=0)
    # F(4, 4) quantiles: 0.95 -> 6.388232908, 0.05 -> 1/6.388232908
    assert out["low"] == pytest.approx(r / 6.388232908, rel=1e-8, abs=0)
    assert out["high"] == pytest.approx(r * 6.388232908, rel=1e-8, abs=0)
    assert out["p"] == pytest.approx(2 * st.f.sf(r, 4, 4), rel=1e-10, abs=0)
    # the interval covers the true ratio 1 about 90 % of the time for equal-variance normals
    rng = np.random.default_rng(0)
    cover = np.mean([(lambda o: o["low"] <= 1 <= o["high"])(
        variance_ratio(rng.normal(size=6), rng.normal(size=6), 0.9)) for _ in range(2000)])
    assert cover == pytest.approx(0.9, abs=0.02)


def test_brown_forsythe_equals_levene_about_the_median():
    a, b = [1.0, 2.0, 4.0, 7.0, 3.0, 9.0], [2.0, 2.5, 3.0, 2.2, 2.9, 2.4]
    ours, ref = brown_forsythe(a, b), st.levene(a, b, center="median")
    assert ours["statistic"] == pytest.approx(ref.statistic, rel=1e-12, abs=0)
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-10, abs=0)
    assert ours["df"] == [1, 10]


def test_pitman_morgan_agrees_with_its_variance_ratio_form():
    rng = np.random.default_rng(1)
    x = rng.normal(size=8)
    a, b = x + rng.normal(scale=1.5, size=8), x + rng.normal(scale=0.5, size=8)
    out = pitman_morgan(a, b)
    n, f = 8, np.var(a, ddof=1) / np.var(b, ddof=1)
    rab = np.corrcoef(a, b)[0, 1]
    t = (f - 1) * math.sqrt(n - 2) / (2 * math.sqrt(f * (1 - rab ** 2)))
    assert out["statistic"] == pytest.approx(t, rel=1e-10, abs=0)
    assert out["p"] == pytest.approx(2 * st.t.sf(abs(t), n - 2), rel=1e-10, abs=0)
    assert out["ratio"] == pytest.approx(f, rel=1e-12, abs=0)


def test_pitman_morgan_detects_a_large_variance_difference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    out = pitman_morgan(x + rng.normal(scale=3, size=200), x + rng.normal(scale=0.3, size=200))
    assert out["p"] < 1e-6 and out["ratio"] > 3


def test_variance_comparison_gathers_the_tests():
    a, b = [85.1, 84.0, 86.3, 83.2, 85.9], [85.5, 85.2, 85.9, 85.0, 85.7]
    out = variance_comparison(a, b)
    assert out["ratio"] == pytest.approx(variance_ratio(a, b)["ratio"], rel=1e-12, abs=0)
    assert out["p_pitman_morgan"] == pytest.approx(pitman_morgan(a, b)["p"], rel=1e-12, abs=0)
    assert out["p_brown_forsythe"] == pytest.approx(brown_forsythe(a, b)["p"], rel=1e-12, abs=0)
    assert out["sd_a"] == pytest.approx(np.std(a, ddof=1), rel=1e-12, abs=0) and out["n"] == 5


@pytest.mark.parametrize("call, match", [
    (lambda: paired_interval([1.0]), "at least 2"),
    (lambda: paired_interval([1.0, 2.0], confidence=1.0), "confidence"),
    (lambda: variance_ratio([1.0, 2.0], [3.0, 3.0]), "zero variance"),
    (lambda: pitman_morgan([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 5.0]), "same length"),
    (lambda: pitman_morgan([1.0, 2.0], [1.0, 3.0]), "at least 3"),
    (lambda: brown_forsythe([1.0, float("nan")], [1.0, 2.0]), "finite"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_strings_are_not_samples():
    with pytest.raises(ArgumentTypeError, match="a must be a sequence"):
        variance_ratio("12", [1.0, 2.0])
