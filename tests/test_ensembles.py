import math

import numpy as np
import pytest

from rmtlib.ensembles import (bbp_outlier, bbp_threshold, low_rank_signal, noise_eigenvalues,
                              spiked_matrix)


def test_low_rank_signal_has_the_prescribed_singular_values():
    thetas = [3.0, 1.5, 0.5]
    S = low_rank_signal((300, 120), thetas, sigma=2.0, random_state=0)
    s = np.linalg.svd(S, compute_uv=False)
    np.testing.assert_allclose(s[:3], 2.0 * math.sqrt(300) * np.array(thetas), rtol=1e-12)
    assert np.all(s[3:] < 1e-10 * s[0])


def test_spiked_matrix_is_noise_plus_the_signal_from_the_same_stream():
    W = spiked_matrix((80, 50), [2.0], sigma=0.5, random_state=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    R = 0.5 * rng.standard_normal((80, 50))
    np.testing.assert_allclose(W, R + low_rank_signal((80, 50), [2.0], sigma=0.5, random_state=rng))


def test_bbp_outlier_formula_threshold_and_continuity():
    g = 0.25
    assert bbp_threshold(g) == pytest.approx(g**0.25)
    edge = (1 + math.sqrt(g)) ** 2
    assert bbp_outlier(0.5 * bbp_threshold(g), g) == pytest.approx(edge)
    assert bbp_outlier(bbp_threshold(g) * (1 + 1e-9), g) == pytest.approx(edge, rel=1e-8)
    assert bbp_outlier(2.0, g, sigma2=3.0) == pytest.approx(3.0 * (1 + 4) * (g + 4) / 4)


def test_outlier_position_matches_simulation():
    shape, theta = (2000, 1000), 1.5
    tops = [np.linalg.svd(spiked_matrix(shape, [theta], random_state=s), compute_uv=False)[0] ** 2 / 2000
            for s in range(3)]
    assert np.mean(tops) == pytest.approx(bbp_outlier(theta, 0.5), rel=0.02)


@pytest.mark.parametrize("kwargs, match", [
    ({"shape": (1, 5)}, "shape"), ({"shape": (5, 5), "n_draws": 0}, "n_draws"),
    ({"shape": (5, 5), "sigma2": -1.0}, "sigma2"),
])
def test_noise_eigenvalues_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        noise_eigenvalues(**kwargs)


@pytest.mark.parametrize("thetas, match", [([-1.0], "non-negative"), ([np.nan], "finite"),
                                           ([1.0] * 6, "at most")])
def test_signal_rejects_bad_thetas(thetas, match):
    with pytest.raises(ValueError, match=match):
        spiked_matrix((5, 8), thetas)
