"""Bad input to every public function of the math modules raises a clear error.

Each case calls one public function with one argument made bad (a numeric string, a bool, NaN,
an infinity, None, a complex number, a value out of range, a wrong shape, an empty array, a
probability below the smallest normal double, ...) and the others valid.  The error must be a
``ValueError`` (``ArgumentTypeError`` -- a ``TypeError`` too -- for a wrong type) whose message
names the argument and shows what was given.
"""

from __future__ import annotations

import numpy as np
import pytest

from rmtlib import bema, ensembles, esd, gof, linalg, mp, rank, seeding, tw
from rmtlib.validation import ArgumentTypeError

W = ensembles.spiked_matrix((60, 40), [4.0], random_state=0)
LAM = np.sort(np.linalg.svd(W, compute_uv=False) ** 2 / 60)
FIT = bema.fit_bema(W)
NULL = gof.GofNull(shape=(60, 40), alpha=0.2, paper_exact=False,
                   samples=np.linspace(0.01, 0.2, 50), seed=0)

WRONG_TYPES = ["0.5", True, None, 1j, [0.5], object()]
NOT_FINITE = [np.nan, np.inf, -np.inf]


def cases():
    """(id, function of the bad value, bad values, regex the message must match)."""
    prob = ["0.1", True, None, 1j, np.nan, -0.1, 1.5, 0.0, 1.0, 1e-310]
    yield "mp.ratio", lambda v: mp.MarchenkoPastur(v), WRONG_TYPES + NOT_FINITE + [0.0, -1, 1.5], "ratio"
    yield "mp.sigma2", lambda v: mp.MarchenkoPastur(0.5, v), WRONG_TYPES + NOT_FINITE + [0.0, -2], "sigma2"
    yield "mp_edges.ratio", lambda v: mp.mp_edges(v), WRONG_TYPES + [np.nan, 2.0], "ratio"
    yield "mp_edges.sigma2", lambda v: mp.mp_edges(0.5, v), WRONG_TYPES + [np.inf, -1.0], "sigma2"
    yield "mp.from_shape", lambda v: mp.MarchenkoPastur.from_shape(v), \
        [(0, 3), (3,), (2.0, 3), ("2", 3), (True, 2), 5, "ab", None, (2, 3, 4)], "shape"
    yield "tw.beta", lambda v: tw.TracyWidom(v), WRONG_TYPES + [np.nan, 0, 3, 1.5], "beta"
    yield "fredholm.s", lambda v: tw.tracy_widom_cdf_fredholm(v, 2), \
        ["0.5", True, None, 1j, ["a"]], "s must"
    yield "fredholm.beta", lambda v: tw.tracy_widom_cdf_fredholm(0.0, v), ["2", True, 4], "beta"
    yield "fredholm.m", lambda v: tw.tracy_widom_cdf_fredholm(0.0, 2, v), \
        ["40", True, 2.5, 1, -3, np.nan], "m "
    yield "johnstone.n", lambda v: tw.johnstone_scaling(v, 4), ["5", True, 5.0, 1, None], "n "
    yield "johnstone.p", lambda v: tw.johnstone_scaling(5, v), ["4", True, 4.0, 0, None], "p "
    for name, call in (("ppf", "ppf"), ("isf", "isf")):
        yield f"tw.{name}.q", (lambda c: lambda v: getattr(tw.TracyWidom(1), c)(v))(call), \
            ["0.5", True, 1j, None, -0.5, 2.0], "q must"
        yield f"mp.{name}.q", (lambda c: lambda v: getattr(mp.MarchenkoPastur(0.3), c)(v))(call), \
            ["0.5", True, 1j, None, -0.5, 2.0], "q must"
    # bema
    yield "fit_bema.beta", lambda v: bema.fit_bema(W, beta=v), prob, "beta"
    yield "fit_bema.alpha", lambda v: bema.fit_bema(W, alpha=v), \
        ["0.2", True, None, np.nan, 0.0, 0.5, -0.1], "alpha"
    yield "fit_bema.paper_exact", lambda v: bema.fit_bema(W, paper_exact=v), \
        ["yes", 1, None, np.array([True])], "paper_exact"
    yield "fit_bema.x", lambda v: bema.fit_bema(v), \
        ["abc", None, np.ones((3, 3)) * np.nan, np.ones((1, 5)), np.zeros((0, 4)),
         np.ones((4, 4), dtype=complex), np.ones((4, 4), dtype=bool)], "input|weight matrix"
    yield "fit_bema.shape", lambda v: bema.fit_bema(LAM, shape=v), \
        [None, (60,), (60.0, 40), ("60", 40), (True, 40), (60, 41), (1, 40)], "shape"
    yield "tw_edge_factor.gamma", lambda v: bema.tw_edge_factor(v, 100), \
        WRONG_TYPES + [np.nan, 0.0, 1.5], "gamma"
    yield "tw_edge_factor.N", lambda v: bema.tw_edge_factor(0.5, v), ["100", True, 100.0, 0], "N "
    yield "tw_edge_factor.beta", lambda v: bema.tw_edge_factor(0.5, 100, v), prob, "beta"
    yield "tw_edge_factor.paper_exact", lambda v: bema.tw_edge_factor(0.5, 100, paper_exact=v), \
        ["no", 0, None], "paper_exact"
    yield "bema_window.p", lambda v: bema.bema_window(v, 0.2), ["10", True, 10.0, 0, None], "p "
    yield "bema_window.alpha", lambda v: bema.bema_window(10, v), ["0.2", True, 0.6], "alpha"
    yield "window_quantiles.p", lambda v: bema.window_quantiles(v, 0.5, 0.2), \
        ["10", True, [10], 0], "p "
    yield "window_quantiles.gamma", lambda v: bema.window_quantiles(10, v, 0.2), \
        ["0.5", True, [0.5], 1.5, np.nan], "gamma"
    yield "fit_sigma2.eigenvalues", lambda v: bema.fit_sigma2(v, 0.5, 0.2), \
        ["abc", None, [np.nan] * 10, [-1.0] * 10, 3.0, [1j] * 10], "eigenvalues"
    yield "fit_sigma2.gamma", lambda v: bema.fit_sigma2(LAM, v, 0.2), ["0.5", True, 0.0], "gamma"
    yield "gof_statistic.eigenvalues", lambda v: bema.gof_statistic(v, 1.0, 0.5, 0.2), \
        ["abc", [np.inf] * 10, [-1.0] * 10, np.ones((2, 2, 10))], "eigenvalues"
    yield "gof_statistic.sigma2", lambda v: bema.gof_statistic(LAM, v, 0.5, 0.2), \
        ["1", None, 0.0, -1.0, np.nan, np.ones(3)], "sigma2"
    # gof
    yield "gof_null.shape", lambda v: gof.gof_null(v, n_sim=20, cache=False), \
        [(1, 5), (5,), "ab", (5.0, 4)], "shape"
    yield "gof_null.n_sim", lambda v: gof.gof_null((20, 10), n_sim=v, cache=False), \
        ["100", True, 19, 50.0], "n_sim"
    yield "gof_null.random_state", lambda v: gof.gof_null((20, 10), n_sim=20, random_state=v,
                                                          cache=False), \
        ["0", True, -1, 1.5, None], "random_state"
    yield "gof_null.cache", lambda v: gof.gof_null((20, 10), n_sim=20, cache=v), \
        ["yes", 1, None], "cache"
    yield "accept.fit", lambda v: gof.accept(v), [None, "fit", 0.5, {"gof": 0.1}], "fit must"
    yield "accept.rule", lambda v: gof.accept(FIT, v), \
        ["fixed", True, 0.0, 1.5, np.nan, None], "rule"
    yield "accept.level", lambda v: gof.accept(FIT, "calibrated", level=v), \
        ["0.99", True, 0.0, 1.0, np.nan], "level"
    yield "GofNull.quantile", lambda v: NULL.quantile(v), ["0.5", True, 0.0, 1.0, None], "level"
    yield "GofNull.pvalue", lambda v: NULL.pvalue(v), ["0.5", True, np.nan, -1.0, None], "statistic"
    # rank
    yield "select_rank.method", lambda v: rank.select_rank(W, v), [None, 3, "svd", ["bema"]], \
        "method|rank selector"
    yield "compare_selectors.methods", lambda v: rank.compare_selectors(W, methods=v), \
        [5, [3], ["svd"], ["energy", "energy"]], "method"
    yield "gd_lambda_star.beta", lambda v: rank.gd_lambda_star(v), \
        ["0.5", True, None, np.nan, 0.0, 1.5, [], [0.5, 2.0]], "beta"
    yield "gd_omega.exact", lambda v: rank.gd_omega(0.5, exact=v), ["yes", 1, None], "exact"
    yield "gavish_donoho.sigma", lambda v: rank.gavish_donoho(W, sigma=v), \
        ["1", True, 0.0, -1.0, np.inf, np.nan], "sigma"
    yield "gavish_donoho.omega", lambda v: rank.gavish_donoho(W, omega=v), \
        ["cubic", 1, None, True], "omega"
    yield "screenot.k", lambda v: rank.screenot(W, k=v), ["3", True, 2.5, 0, 100, None], "k "
    yield "screenot.strategy", lambda v: rank.screenot(W, k=3, strategy=v), \
        ["median", 1, None], "strategy"
    yield "screenot_threshold.z", lambda v: rank.screenot_threshold(v, 0.5), \
        ["abc", [1.0], [[1.0, 2.0]], [1.0, np.nan], [-1.0, 2.0], None], "noise_singular_values"
    yield "screenot_threshold.gamma", lambda v: rank.screenot_threshold([1.0, 2.0], v), \
        ["0.5", True, 0.0, 1.5, [0.5]], "gamma"
    yield "energy.t", lambda v: rank.energy(W, t=v), ["0.9", True, 0.0, 1.5, np.nan], "t "
    yield "weightwatcher_mp.bandwidth", lambda v: rank.weightwatcher_mp(W, bandwidth=v), \
        ["0.1", True, 0.0, -1.0, np.inf], "bandwidth"
    yield "weightwatcher_mp.tw", lambda v: rank.weightwatcher_mp(W, tw=v), ["yes", 1, None], "tw"
    # ensembles
    yield "noise_eigenvalues.shape", lambda v: ensembles.noise_eigenvalues(v), \
        [(1, 5), (5,), (5.0, 4), ("5", 4), None, 7], "shape"
    yield "noise_eigenvalues.n_draws", lambda v: ensembles.noise_eigenvalues((5, 4), v), \
        ["3", True, 0, 2.5], "n_draws"
    yield "noise_eigenvalues.sigma2", lambda v: ensembles.noise_eigenvalues((5, 4), sigma2=v), \
        ["1", True, 0.0, -1.0, np.nan, np.inf], "sigma2"
    yield "noise_eigenvalues.random_state", \
        lambda v: ensembles.noise_eigenvalues((5, 4), random_state=v), \
        ["1", True, -1, 1.5, [1]], "random_state"
    yield "spiked_matrix.thetas", lambda v: ensembles.spiked_matrix((5, 8), v), \
        ["abc", [-1.0], [np.nan], [1.0] * 6, [[1.0]], [True]], "thetas|spikes"
    yield "spiked_matrix.sigma", lambda v: ensembles.spiked_matrix((5, 8), sigma=v), \
        ["1", True, 0.0, np.nan], "sigma"
    yield "spiked_matrix.dtype", lambda v: ensembles.spiked_matrix((5, 8), dtype=v), \
        [np.int32, np.float16, "float128x", np.complex128], "dtype"
    yield "low_rank_signal.thetas", lambda v: ensembles.low_rank_signal((5, 8), v), \
        [[-1.0], [np.inf], "1"], "thetas"
    yield "bbp_threshold.gamma", lambda v: ensembles.bbp_threshold(v), \
        ["0.5", True, None, 0.0, 1.5, np.nan], "gamma"
    yield "bbp_outlier.theta", lambda v: ensembles.bbp_outlier(v, 0.5), \
        ["1", True, -1.0, np.nan, [1j]], "theta"
    yield "bbp_outlier.gamma", lambda v: ensembles.bbp_outlier(1.0, v), ["0.5", 0.0, 2.0], "gamma"
    yield "bbp_outlier.sigma2", lambda v: ensembles.bbp_outlier(1.0, 0.5, v), \
        ["1", 0.0, -1.0, np.nan], "sigma2"
    # esd and linalg
    yield "spectrum.x", lambda v: esd.spectrum(v), \
        ["abc", None, np.ones((2, 2, 2)), np.ones((1, 3)), np.ones((3, 3), dtype=bool),
         np.ones((3, 3)) * np.inf], "input|weight matrix"
    yield "spectrum.shape", lambda v: esd.spectrum(LAM, v), \
        [None, (60,), ("60", 40), (60.0, 40), (59, 39)], "shape"
    yield "Spectrum.to_singular", lambda v: esd.spectrum(W).to_singular(v), \
        ["1", [-1.0], [np.nan], [True]], "lam"
    yield "gram_eigenvalues.W", lambda v: linalg.gram_eigenvalues(v), \
        [[[1.0, 2.0]], "abc", np.ones(3), np.ones((3, 3), dtype=int), np.ones((2, 2)) * np.nan,
         np.zeros((0, 3))], "W "
    yield "gram_eigh.W", lambda v: linalg.gram_eigh(v), [np.ones((3, 3)), None], "W "
    yield "compute_dtype.p", lambda v: linalg.compute_dtype(True, v), ["3", True, 0, 2.5], "p "
    yield "compute_dtype.flag", lambda v: linalg.compute_dtype(v, 3), ["yes", 1, None], \
        "input_is_float64"
    # seeding
    yield "seed_everything.seed", lambda v: seeding.seed_everything(v), \
        ["1", True, -1, 1.5, None], "seed"
    yield "check_random_state", lambda v: seeding.check_random_state(v), \
        ["1", True, -1, 1.5, [1], object()], "random_state"


CASES = [(name, f, v) for name, f, values, _ in cases() for v in values]
MATCH = {name: match for name, _, _, match in cases()}


@pytest.mark.parametrize("name, call, value", CASES,
                         ids=[f"{n}={v!r}"[:60] for n, _, v in CASES])
def test_bad_input_raises_a_clear_error(name, call, value):
    with pytest.raises(ValueError, match=MATCH[name]) as info:
        call(value)
    message = str(info.value)
    assert "must" in message or "got" in message or "unknown" in message, message
    if isinstance(value, (str, bool)) and not isinstance(info.value, ArgumentTypeError):
        # a string or a bool where a number is expected is a wrong *type*
        assert name in {"select_rank.method", "gavish_donoho.omega", "screenot.strategy",
                        "accept.rule", "compare_selectors.methods", "spiked_matrix.dtype"}, \
            (name, value, type(info.value))


def test_wrong_types_are_type_errors_too():
    for call in (lambda: mp.MarchenkoPastur("0.5"), lambda: tw.TracyWidom(True),
                 lambda: bema.fit_bema(W, beta="0.1"), lambda: ensembles.bbp_threshold(None),
                 lambda: seeding.check_random_state(1.5), lambda: linalg.gram_eigenvalues([1])):
        with pytest.raises(TypeError):
            call()


def test_tiny_but_normal_tail_probabilities_are_accepted():
    assert bema.check_beta(2.3e-308) == 2.3e-308
    assert np.isfinite(bema.tw_edge_factor(0.5, 100, 1e-300))
    with pytest.raises(ValueError, match="smallest normal double"):
        bema.check_beta(1e-310)
