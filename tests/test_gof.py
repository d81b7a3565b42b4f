import numpy as np
import pytest
from scipy import stats

import rmtlib.gof as gof
from rmtlib.bema import fit_bema
from rmtlib.ensembles import noise_eigenvalues, spiked_matrix
from rmtlib.bema import bema_window, gof_statistic
from rmtlib.gof import accept, gof_null
from rmtlib.mp import MarchenkoPastur


def test_window_matches_the_definition():
    idx, levels = bema_window(10, 0.2)
    np.testing.assert_array_equal(idx, [1, 2, 3, 4, 5, 6, 7])  # ranks 2..8 (1-based)
    np.testing.assert_allclose(levels, np.arange(2, 9) / 10)
    idx, levels = bema_window(10, 0.2, paper_exact=True)
    np.testing.assert_array_equal(idx, [2, 3, 4, 5, 6, 7])  # the authors' range(int(2), int(8))
    np.testing.assert_allclose(levels, idx / 10)
    idx, _ = bema_window(784, 0.25)
    assert idx[0] == 195 and idx[-1] == 587  # ranks ceil(196) .. floor(588)


def test_statistic_on_a_hand_computable_spectrum():
    p, g = 200, 0.5
    k = np.arange(1, p + 1)
    lam = MarchenkoPastur(g).ppf((k - 0.5) / p)  # every eigenvalue at its mid-step quantile
    assert gof_statistic(lam, 1.0, g, 0.2) == pytest.approx(0.5 / p, abs=1e-12)
    lam_shift = MarchenkoPastur(g).ppf(k / p)  # at the top of each step
    assert gof_statistic(lam_shift, 1.0, g, 0.2) == pytest.approx(1.0 / p, abs=1e-12)


def test_paper_exact_statistic_reproduces_the_cdf_bug():
    p, g = 100, 0.5
    lam = MarchenkoPastur(g).ppf((np.arange(1, p + 1) - 0.5) / p)
    ok = gof_statistic(lam, 1.0, g, 0.2, paper_exact=True)
    assert ok < 0.05
    # fitting a too-small sigma2 puts window eigenvalues above the edge: their CDF is 1, but
    # the authors' code returns 0 there, so their distance jumps to about the empirical level
    bad_ours = gof_statistic(lam, 0.5, g, 0.2)
    bad_paper = gof_statistic(lam, 0.5, g, 0.2, paper_exact=True)
    top_of_window = 0.2 + 0.6 * 59 / 60  # the authors' empirical value at the last window point
    assert bad_paper == pytest.approx(top_of_window)
    assert bad_ours < 0.35


def test_null_calibrates_acceptance_on_fresh_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTLIB_CACHE", str(tmp_path))
    shape = (300, 200)
    null = gof_null(shape, 0.2, n_sim=400, random_state=1)
    assert null.n_sim == 400 and np.all(np.diff(null.samples) >= 0)
    fresh = noise_eigenvalues(shape, 300, random_state=99)
    fits = [fit_bema(e, shape=shape) for e in fresh]
    rejected = np.mean([not accept(f, "calibrated", level=0.95, random_state=1) for f in fits])
    assert 0.01 <= rejected <= 0.11  # nominal 5%
    pv = np.array([null.pvalue(f.gof) for f in fits])
    assert stats.kstest(pv, "uniform").pvalue > 1e-3  # p-values of fresh noise are uniform


def test_null_from_bidiagonal_sampler_matches_dense_matrices(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTLIB_CACHE", str(tmp_path))
    shape = (80, 50)
    null = gof_null(shape, 0.2, n_sim=600, random_state=3)
    rng = np.random.default_rng(4)
    dense = [fit_bema(rng.standard_normal(shape)).gof for _ in range(600)]
    assert stats.ks_2samp(null.samples, dense).pvalue > 1e-3


def test_null_is_cached_on_disk_and_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTLIB_CACHE", str(tmp_path))
    first = gof_null((60, 40), 0.25, n_sim=50, random_state=2)
    assert len(list((tmp_path / "gof_null").glob("*.npy"))) == 1
    gof._MEMORY.clear()

    def boom(*a, **k):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(gof, "_simulate_null", boom)
    second = gof_null((40, 60), 0.25, n_sim=50, random_state=2)  # transpose: same null
    np.testing.assert_array_equal(first.samples, second.samples)


def test_trained_like_spectrum_is_rejected_by_calibration_but_not_by_fixed_cutoff(tmp_path, monkeypatch):
    """A heavier-tailed bulk (Student-t entries) fits MP loosely: the authors' 0.1 cutoff
    accepts it, the calibrated null does not."""
    monkeypatch.setenv("RMTLIB_CACHE", str(tmp_path))
    W = np.random.default_rng(0).standard_t(3, size=(600, 400))
    fit = fit_bema(W)
    assert accept(fit, 0.1)
    verdict = accept(fit, "calibrated", n_sim=200)
    assert not verdict and verdict.pvalue < 0.01 and verdict.rule == "calibrated@0.99"


def test_accept_rules_and_errors():
    fit = fit_bema(spiked_matrix((200, 150), [3.0], random_state=0))
    v = accept(fit, 0.1)
    assert v.accepted and v.cutoff == 0.1 and bool(v)
    assert not accept(fit, fit.gof)  # strict inequality as in the authors' code
    for bad in (0, 1.5, -1, "fixed", True):
        with pytest.raises(ValueError):
            accept(fit, bad)
    with pytest.raises(ValueError, match="level"):
        accept(fit, "calibrated", level=1.0)
    with pytest.raises(ValueError, match="n_sim"):
        gof_null((50, 40), n_sim=5)
