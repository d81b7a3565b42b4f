"""Tests of rmtlib.stability (slab counts, doubling constants, their uncertainty, stability
measures) and rmtlib.synthetic (laws with closed-form doubling constants)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rmtlib.stability import (DEFAULT_DELTAS, axis_directions, default_min_count,
                              doubling_constant, doubling_constant_1d, doubling_uncertainty,
                              first_reach, largest_drop, neuron_doubling_constant, neuron_slabs,
                              pca_directions, population_doubling_constant, slab_counts,
                              sphere_directions, stability_measures)
from rmtlib.synthetic import FlatBall, Gaussian, UniformBall, disk_classes, plane_classes
from rmtlib.validation import ArgumentTypeError


def _brute_counts(X, D, offsets, deltas):
    P = X @ (D / np.linalg.norm(D, axis=1, keepdims=True)).T  # (n, k)
    out = np.zeros((len(D), offsets.shape[-1], len(deltas)), dtype=np.int64)
    for j in range(len(D)):
        b = offsets if offsets.ndim == 1 else offsets[j]
        for a, bb in enumerate(b):
            for c, dd in enumerate(deltas):
                out[j, a, c] = int(np.sum(np.abs(P[:, j] - bb) < dd))
    return out


def _brute_1d(x, m):
    """The supremum over a dense set of centres and half-widths (every centre at a point or
    a midpoint, every half-width a half-distance between points, plus a fine grid)."""
    x = np.sort(np.asarray(x, dtype=float))
    pts = np.unique(np.r_[x, (x[:, None] + x[None, :]).ravel() / 2])
    pts = pts[(pts >= x[0]) & (pts <= x[-1])]
    gaps = np.abs(x[:, None] - x[None, :]).ravel()
    ds = np.unique(np.r_[gaps, gaps / 2, gaps * 2 / 3, np.geomspace(1e-3, 2 * (x[-1] - x[0] + 1), 300)])
    ds = ds[ds > 0]
    best = -np.inf
    for b in pts:
        dist = np.abs(x - b)
        c1 = (dist[:, None] < ds[None, :]).sum(0)
        c2 = (dist[:, None] < 2 * ds[None, :]).sum(0)
        ok = c1 >= m
        if ok.any():
            best = max(best, float((c2[ok] / c1[ok]).max()))
    return best


# ------------------------------------------------------------------------------ counting


def test_slab_counts_match_brute_force_shared_and_per_direction_offsets():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    D = rng.standard_normal((5, 4))
    deltas = np.array([0.05, 0.3, 1.0])
    shared = np.linspace(-2, 2, 7)
    per = rng.uniform(-1, 1, (5, 3))
    assert np.array_equal(slab_counts(X, D, shared, deltas), _brute_counts(X, D, shared, deltas))
    assert np.array_equal(slab_counts(X, D, per, deltas), _brute_counts(X, D, per, deltas))


def test_slabs_are_open():
    X = np.array([[-1.0], [0.0], [1.0], [2.0]])
    c = slab_counts(X, [[1.0]], [0.0], [1.0, 1.5])
    assert c[0, 0].tolist() == [1, 3]  # |x| < 1 holds only 0; |x| < 1.5 holds -1, 0, 1


def test_slab_counts_accept_torch_and_float32():
    X = torch.linspace(0, 1, 101).reshape(-1, 1)
    c64 = slab_counts(X.double(), [[1.0]], [0.5], [0.25])
    c32 = slab_counts(X, [[1.0]], [0.5], [0.25])
    assert c64[0, 0, 0] == c32[0, 0, 0] == 49  # 0.26 .. 0.74


# ------------------------------------------------------------------------------ the estimator


def test_estimate_is_the_largest_admissible_ratio_of_its_table():
    rng = np.random.default_rng(1)
    X = rng.random((2000, 3))
    est = doubling_constant(X, n_directions=20, random_state=0, min_count=40)
    table = est.table()
    assert est.constant == table.ratio.max()
    assert (table.count_delta >= 40).all() and len(table) == est.n_admissible
    assert est.n_slabs == 20 * 2 * 64 * DEFAULT_DELTAS.size  # no repeated values: no atom centres
    # the attaining slab, recounted from scratch
    c = slab_counts(X, est.direction[None, :], [est.offset], [est.delta, 2 * est.delta])
    assert (c[0, 0, 0], c[0, 0, 1]) == (est.count_delta, est.count_2delta)
    assert est.constant == pytest.approx(est.count_2delta / est.count_delta, rel=1e-12, abs=0)
    assert np.nanmax(est.per_direction()) == est.constant
    # offsets include the extremes of every projection
    P = X @ est.directions.T
    assert np.allclose(np.nanmin(est.offsets, 1), P.min(0))
    assert np.allclose(np.nanmax(est.offsets, 1), P.max(0))


def test_default_min_count():
    assert default_min_count(10) == 10
    assert default_min_count(1000) == 30
    assert default_min_count(60_000) == 600


def test_scale_invariance_of_the_range_deltas():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 2))
    a = doubling_constant(X, n_directions=10, random_state=3)
    b = doubling_constant(7.5 * X + 3.0, n_directions=10, random_state=3)
    assert a.constant == pytest.approx(b.constant, rel=1e-12, abs=0)


def test_uniform_segment_has_constant_two():
    """U[0, 1]: mu(S_2delta) <= 2 mu(S_delta) for every centre in [0, 1], with equality at the
    ends (delta <= 1/2), so C = 2 at every resolution.  With 2000 points in the smallest slab a
    ratio has sd sqrt(R (R - 1) / 2000) = 0.03; the maximum over the few thousand admissible,
    strongly correlated slabs exceeds 2 by about 3-4 sd (0.1-0.13): tolerance 7 %, and the
    estimate cannot fall below 2 - 3 sd (the slabs at the ends have ratio 2)."""
    x = np.random.default_rng(4).random(200_000)
    est = doubling_constant(x, min_count=2000)
    assert est.constant == pytest.approx(2.0, rel=0.07, abs=0)
    assert est.constant >= 2.0 - 3 * math.sqrt(2 / 2000)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_ball_estimate_matches_the_population_constant_at_the_same_slabs(d):
    """Along any direction the ball's marginal is r(2B - 1), B ~ Beta(a, a): the sample
    estimate over a fixed grid of slabs converges to the population maximum over the same grid
    at resolution q = min_count / n.  Inner counts >= 2000 give ratio sd <= sqrt(4*3/2000) =
    0.08; the tolerance (6 %) allows the upward bias of the maximum and the noisy admissibility
    threshold (slabs whose mass is within a few sd of q)."""
    law = UniformBall(d)
    X = law.sample(200_000, random_state=5)
    offsets = np.linspace(-1, 1, 201)
    deltas = 2.0 ** -np.arange(1, 9)
    est = doubling_constant(X, directions=np.eye(d)[:1], offsets=offsets[None, :], deltas=deltas,
                            delta_scale="absolute", min_count=2000)
    pop = population_doubling_constant(law.interval_mass, offsets, deltas, min_mass=2000 / 200_000)
    assert est.constant == pytest.approx(pop["constant"], rel=0.06, abs=0)
    assert pop["constant"] <= law.doubling_constant


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7])
def test_ball_closed_form_is_the_supremum(d):
    """C(ball in R^d) = 2^((d+1)/2): never exceeded over a fine grid of centres and
    half-widths, and approached by a thin slab at the edge."""
    law = UniformBall(d)
    b = np.linspace(-1, 1, 801)
    deltas = np.geomspace(1e-5, 2, 120)
    pop = population_doubling_constant(law.interval_mass, b, deltas)
    assert pop["constant"] <= law.doubling_constant * (1 + 1e-9)
    edge = law.interval_mass(1 - 2e-6, 1 + 2e-6) / law.interval_mass(1 - 1e-6, 1 + 1e-6)
    assert edge == pytest.approx(law.doubling_constant, rel=1e-4, abs=0)
    assert pop["constant"] == pytest.approx(law.doubling_constant, rel=1e-3, abs=0)


def test_gaussian_constant_grows_without_bound_as_the_resolution_refines():
    law = Gaussian(1)
    b = np.linspace(-8, 8, 1601)
    deltas = np.geomspace(1e-3, 8, 200)
    values = [population_doubling_constant(law.interval_mass, b, deltas, min_mass=q)["constant"]
              for q in (1e-1, 1e-2, 1e-4, 1e-8)]
    assert all(u < v for u, v in zip(values, values[1:]))
    assert values[-1] > 10 * values[0]


def test_gaussian_sample_estimate_grows_with_n_at_fixed_min_count():
    small = doubling_constant(Gaussian(1).sample(2_000, random_state=6), min_count=50)
    large = doubling_constant(Gaussian(1).sample(200_000, random_state=6), min_count=50)
    assert large.constant > 2 * small.constant


def test_flat_portion_at_resolution_q_has_ratio_about_two_plus_p_over_q():
    """Mass p on the hyperplane x_1 = c: a slab of inner mass q next to it has ratio about
    2 + p / q (the ball's density is nearly flat at the scale of the slab)."""
    law = FlatBall(2, flat_fraction=0.1, level=0.2)
    b = np.linspace(-1, 1, 2001)
    deltas = np.geomspace(1e-4, 1, 200)
    for q in (0.01, 0.002):
        pop = population_doubling_constant(law.interval_mass, b, deltas, min_mass=q)
        assert pop["constant"] == pytest.approx(2 + 0.1 / q, rel=0.1, abs=0)
    # at a fixed min_count the resolution q = min_count / n refines as n grows, and the
    # estimate grows like 2 + p n / min_count -- given offsets and half-widths fine enough to
    # place a slab of 20 points next to the flat disk (spacing below the slab's width)
    X = law.sample(100_000, random_state=7)
    offsets = np.r_[np.linspace(-1, 1, 201), 0.2 + np.linspace(-0.02, 0.02, 801)][None, :]
    kw = dict(directions=[law.normal], offsets=offsets, deltas=np.geomspace(5e-5, 0.5, 60),
              delta_scale="absolute", min_count=20)
    small, large = doubling_constant(X[::50], **kw), doubling_constant(X, **kw)
    assert small.constant == pytest.approx(2 + 0.1 * 2000 / 20, rel=0.3, abs=0)
    assert large.constant > 10 * small.constant


def test_default_offsets_place_slabs_next_to_a_flat_portion():
    """Along the normal of a flat portion the projection has an atom; the default offsets add
    centres v -+ 1.5 delta next to it, so the default grid sees 2 + p / mass(S_delta) with the
    smallest admissible grid half-width (here mass ~ 0.012 for q = 0.01: about 10.3), close to
    the population supremum over all half-widths at that resolution (12.0)."""
    law = FlatBall(2, flat_fraction=0.1, level=0.3)
    X = law.sample(100_000, random_state=18)
    est = doubling_constant(X, directions=[law.normal])
    pop = population_doubling_constant(law.interval_mass, np.linspace(-1, 1, 2001),
                                       np.geomspace(1e-4, 1, 200), min_mass=est.resolution)
    assert 0.8 * pop["constant"] <= est.constant <= 1.05 * pop["constant"]
    assert est.delta <= abs(est.offset - 0.3) < 2 * est.delta  # next to the atom


def test_random_directions_miss_a_flat_portion_that_its_normal_finds():
    law = FlatBall(6, flat_fraction=0.2, level=0.1)
    X = law.sample(20_000, random_state=8)
    random = doubling_constant(X, n_directions=200, random_state=9, min_count=50)
    normal = doubling_constant(X, directions=[law.normal], min_count=50)
    assert normal.constant > 5 * random.constant


# ------------------------------------------------------------------------------ exact 1-D


@pytest.mark.parametrize("seed", range(6))
def test_exact_1d_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 12, size=14) / 4.0  # ties included
    m = int(rng.integers(1, 4))
    assert doubling_constant_1d(x, min_count=m)["constant"] == pytest.approx(_brute_1d(x, m),
                                                                            rel=1e-12, abs=0)


def test_grid_estimate_never_exceeds_the_exact_supremum():
    rng = np.random.default_rng(10)
    for n, m in ((300, 10), (1000, 30)):
        x = rng.random(n) ** 2
        exact = doubling_constant_1d(x, min_count=m)
        grid = doubling_constant(x, min_count=m, n_offsets=128)
        assert grid.constant <= exact["constant"] + 1e-12
        c = slab_counts(x, [[1.0]], [exact["offset"]], [exact["delta"], 2 * exact["delta"]])
        # the inner interval ends at two data points; b +- delta recomputes them up to round-off
        assert abs(c[0, 0, 0] - exact["count_delta"]) <= 2
        assert c[0, 0, 1] == exact["count_2delta"]


def test_exact_1d_degenerate_inputs():
    assert doubling_constant_1d(np.zeros(5), min_count=3)["constant"] == 1.0
    assert math.isnan(doubling_constant_1d(np.arange(3.0), min_count=1)["constant"]) is False
    with pytest.raises(ValueError, match="1-D"):
        doubling_constant_1d(np.zeros((4, 2)))


# ------------------------------------------------------------------------------ BJS slabs


def test_neuron_slabs_give_the_distance_to_each_kink():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 5)
    x = torch.randn(50, 3)
    W, b = neuron_slabs(layer.weight, layer.bias)
    z = (x @ layer.weight.T + layer.bias).detach().numpy()
    dist = np.abs(x.numpy() @ W.T - b)
    assert np.allclose(dist, np.abs(z) / np.linalg.norm(layer.weight.detach().numpy(), axis=1))


def test_neuron_doubling_constant_is_the_estimate_over_those_slabs():
    rng = np.random.default_rng(11)
    X = rng.random((500, 2))
    W = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 0.0]])
    c = np.array([-0.5, -1.0, -1.0, 5.0])  # the last hyperplane x_1 = -5 misses the data
    est = neuron_doubling_constant(X, W, c, min_count=20)
    dirs, offs = neuron_slabs(W, c)
    ref = doubling_constant(X, directions=dirs, offsets=offs, min_count=20)
    assert est.constant == ref.constant and est.offsets.shape == (4, 1)
    assert np.isnan(est.per_direction()[3])
    with pytest.raises(ValueError, match="do not pass"):
        neuron_doubling_constant(X, W, c, directions=dirs)


def test_neuron_slabs_reject_dead_rows():
    with pytest.raises(ValueError, match="zero row"):
        neuron_slabs(np.zeros((2, 3)))


# ------------------------------------------------------------------------------ uncertainty


def test_uncertainty_brackets_the_uniform_constant():
    x = np.random.default_rng(12).random(20_000)
    u = doubling_uncertainty(x, min_count=200, n_bootstrap=40, random_state=0)
    plain = doubling_constant(x, min_count=200)
    assert u.constant == plain.constant
    assert u.bootstrap.shape == (40,) and np.all(np.isfinite(u.bootstrap))
    assert u.bias > 0  # the maximum of noisy ratios is biased upward
    assert abs(u.corrected - 2) < abs(u.constant - 2)
    assert u.held_out == pytest.approx(2.0, rel=0.1, abs=0)
    lo, hi = u.interval
    assert lo <= hi
    s = u.summary()
    assert s["n_bootstrap"] == 40 and s["constant"] == u.constant


def test_uncertainty_weighted_counts_equal_plain_counts_for_unit_weights():
    """The bootstrap machinery counts with multiplicities; with the halves' indicator weights
    the two halves' counts add up to the plain counts, checked through the estimate."""
    rng = np.random.default_rng(13)
    X = rng.standard_normal((400, 3))
    D = sphere_directions(7, 3, random_state=1)
    u = doubling_uncertainty(X, directions=D, n_bootstrap=3, random_state=2, min_count=20)
    p = doubling_constant(X, directions=D, min_count=20)
    assert np.array_equal(u.estimate.counts_delta, p.counts_delta)
    assert np.array_equal(u.estimate.counts_2delta, p.counts_2delta)


# ------------------------------------------------------------------------------ directions


def test_sphere_directions():
    D = sphere_directions(2000, 5, random_state=0)
    assert D.shape == (2000, 5) and np.allclose(np.linalg.norm(D, axis=1), 1)
    assert np.abs(D.mean(0)).max() < 0.05  # E w = 0; sd of a mean of 2000 coordinates ~ 0.01
    assert np.array_equal(D, sphere_directions(2000, 5, random_state=0))
    assert sphere_directions(10, 1).tolist() == [[1.0]]
    assert np.array_equal(axis_directions(3), np.eye(3))


def test_pca_directions_match_the_svd():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((500, 4)) * np.array([3.0, 1.0, 0.5, 0.1])
    D, var = pca_directions(X, 3)
    _, s, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    assert np.allclose(np.abs(D), np.abs(Vt[:3]), atol=1e-8)
    assert var == pytest.approx(s[:3] ** 2 / 499, rel=1e-8, abs=0)
    Dw, _ = pca_directions(X[:3])  # fewer points than dimensions
    assert np.allclose(np.linalg.norm(Dw[:2], axis=1), 1)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("call, exc, match", [
    (lambda: doubling_constant("abc"), ArgumentTypeError, "array of points"),
    (lambda: doubling_constant(np.array([[1.0, np.nan]])), ValueError, "non-finite"),
    (lambda: doubling_constant(np.ones((5, 2)), min_count=0), ValueError, "min_count"),
    (lambda: doubling_constant(np.ones((5, 2)), min_count=2.5), ArgumentTypeError, "min_count"),
    (lambda: doubling_constant(np.ones((5, 2)), directions=[[0.0, 0.0]]), ValueError, "zero row"),
    (lambda: doubling_constant(np.ones((5, 2)), directions=[[1.0, 0, 0]]), ValueError, "columns"),
    (lambda: doubling_constant(np.ones((5, 2)), deltas=[0.1, -1]), ValueError, "positive"),
    (lambda: doubling_constant(np.ones((5, 2)), delta_scale="log"), ValueError, "delta_scale"),
    (lambda: doubling_constant(np.ones((5, 2)), directions=np.eye(2), offsets=np.zeros((3, 2))),
     ValueError, "one row per direction"),
    (lambda: doubling_constant(np.ones((5, 2)), n_directions="10"), ArgumentTypeError, "n_directions"),
    (lambda: doubling_uncertainty(np.ones((5, 2)), level=1.0), ValueError, "level"),
    (lambda: population_doubling_constant(3, [0.0], [1.0]), ArgumentTypeError, "callable"),
    (lambda: stability_measures([1.0, 0.5], [1.0]), ValueError, "same length"),
    (lambda: stability_measures([1.0, 0.5], [50.0, 60.0], levels=[120]), ValueError, "levels"),
    (lambda: plane_classes(10, width=0.1, gap=0.02), ValueError, "width"),
])
def test_bad_arguments_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_no_admissible_slab_gives_nan():
    est = doubling_constant(np.arange(10.0), min_count=10, deltas=[1e-3])
    assert math.isnan(est.constant) and est.n_admissible == 0


# ------------------------------------------------------------------------------ stability


def test_stability_measures_on_a_hand_made_curve():
    loss = [1.0, 0.8, 0.6, 0.5, 0.55, 0.4]
    acc = [40.0, 90.0, 95.0, 85.0, 80.0, 96.0]
    m = stability_measures(loss, acc, levels=(90, 99))
    assert m["steps"] == 5 and m["loss_increases"] == 1
    # loss falls at steps 1, 2, 3, 5; accuracy falls with it only at step 3 (95 -> 85)
    assert m["co_descent"] == pytest.approx(1 / 4, rel=1e-12, abs=0)
    assert (m["max_step_drop"], m["max_step_drop_at"]) == (10.0, 3)
    # after reaching 90 (t = 1): pairs with lower later loss; 95 (t=2, L=.6) -> 80 (t=4, L=.55)
    assert m["reached_90"] == 1 and m["drop_after_90"] == pytest.approx(15.0, rel=1e-12, abs=0)
    assert m["reached_99"] is None and math.isnan(m["drop_after_99"])
    assert (m["final_accuracy"], m["max_accuracy"]) == (96.0, 96.0)


def test_largest_drop_matches_brute_force():
    rng = np.random.default_rng(15)
    for _ in range(5):
        L = np.cumsum(rng.normal(-0.1, 0.3, 300))
        A = np.cumsum(rng.normal(0.1, 1.0, 300))
        start = int(rng.integers(0, 50))
        best = max([A[s] - A[t] for s in range(start, 300) for t in range(s + 1, 300)
                    if L[t] < L[s]] + [0.0])
        got, s, t = largest_drop(L, A, start=start, block=37)
        assert got == pytest.approx(best, rel=1e-12, abs=1e-12)
        if got > 0:
            assert L[t] < L[s] and A[s] - A[t] == pytest.approx(got, rel=1e-12, abs=0)


def test_stable_curve_has_no_drop():
    m = stability_measures(np.linspace(1, 0, 20), np.linspace(10, 99, 20))
    assert m["max_step_drop"] == 0.0 and m["co_descent"] == 0.0 and m["drop_after_90"] == 0.0
    assert first_reach(np.linspace(10, 99, 20), 50) == 9


# ------------------------------------------------------------------------------ synthetic laws


def test_ball_samples_follow_the_marginal_law():
    from scipy.stats import kstest

    law = UniformBall(4, radius=2.0)
    X = law.sample(20_000, random_state=16)
    assert np.linalg.norm(X, axis=1).max() <= 2.0
    t = X @ sphere_directions(1, 4, random_state=1)[0]
    def cdf(v):
        return law.interval_mass(np.full_like(v, -np.inf), v)

    assert kstest(t, cdf).pvalue > 1e-3
    assert law.interval_mass(-2.0, 2.0) == pytest.approx(1.0, rel=1e-12, abs=0)


def test_flat_ball_marginals():
    law = FlatBall(3, flat_fraction=0.25, level=0.5)
    X = law.sample(4000, random_state=17)
    assert np.sum(X[:, 0] == 0.5) == 1000
    assert law.interval_mass(0.49, 0.51) > 0.25  # the atom along the normal
    w = np.array([0.6, 0.8, 0.0])
    t = X @ w
    for lo, hi in ((-1, 0), (0.2, 0.5), (0.5, 1)):
        emp = np.mean((t > lo) & (t < hi))
        assert emp == pytest.approx(law.interval_mass(lo, hi, w), abs=0.03)  # 3 sd of 4000 draws
    assert law.interval_mass(-1, 1, w) == pytest.approx(1.0, rel=1e-12, abs=0)


def test_labelled_sets():
    X, y = disk_classes(500, random_state=0)
    assert X.shape == (500, 2) and set(np.unique(y)) == {0, 1}
    X, y, g = plane_classes(1000, random_state=0)
    assert np.bincount(g).tolist() == [700, 200, 100]
    assert np.all(X[g == 1, 1] == 0.02) and np.all(y[g == 1] == 1)
    assert np.all(X[g == 2, 1] == -0.02) and np.all(y[g == 2] == 0)
    X, y, g = plane_classes(1000, width=0.04, random_state=0)
    assert np.all((X[g == 1, 1] >= 0) & (X[g == 1, 1] <= 0.04))


def test_benchmark_follows_the_shared_format():
    from rmtlib.benchmarks.stability import bench_doubling_mnist

    res = bench_doubling_mnist(quick=True)
    assert {"title", "what", "target", "metrics", "headline", "table"} <= set(res)
    assert res["headline"] in res["metrics"]
    assert all({"value", "doc"} <= set(m) for m in res["metrics"].values())
    assert res["metrics"]["n_points"]["value"] == 10_000 and res["metrics"]["seconds"]["value"] > 0
    assert [row["step"] for row in res["table"]] == ["estimate", "project + sort", "project"]
