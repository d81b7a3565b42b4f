"""Tests of rmtlib.confidence: confidence and margins, the pruning bound (its formula, its
probability and that it holds), the any-depth bound, the model networks, the Monte Carlo
draws and the trained-network check."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from torch import nn

from rmtlib import confidence as C
from rmtlib.ensembles import spiked_matrix
from rmtlib.models import MLP
from rmtlib.validation import ArgumentTypeError


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- margin, confidence

def test_margin_and_confidence_by_hand():
    z = np.array([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    y = np.array([0, 0, 1])
    np.testing.assert_allclose(C.margin(z, y), [1.0, -3.0, 0.0])
    p = _softmax(z)
    expected = [p[0, 0] - p[0, 1], p[1, 0] - p[1, 1], p[2, 1] - p[2, 0]]
    np.testing.assert_allclose(C.confidence(z, y), expected, rtol=1e-14)
    np.testing.assert_allclose(C.confidence(p, y, from_logits=False), expected, rtol=1e-14)


def test_confidence_has_the_sign_of_the_margin_and_accepts_tensors():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 7)) * 3
    y = rng.integers(0, 7, 500)
    m, c = C.margin(z, y), C.confidence(torch.from_numpy(z), torch.from_numpy(y))
    assert np.all(np.sign(m) == np.sign(c))
    assert np.all(np.abs(c) <= 1)
    # large logits do not overflow
    big = C.confidence(z * 1e4, y)
    assert np.all(np.isfinite(big))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: C.margin([[1.0, 2.0]], [2]), ValueError, "labels must lie in"),
    (lambda: C.margin([[1.0, 2.0]], [0.0]), ArgumentTypeError, "integer"),
    (lambda: C.margin([[1.0, 2.0]], [True]), ArgumentTypeError, "integer"),
    (lambda: C.margin([[1.0], [2.0]], [0, 0]), ValueError, "at least 2 classes"),
    (lambda: C.margin([[1.0, np.nan]], [0]), ValueError, "non-finite"),
    (lambda: C.margin([[1.0, 2.0]], [0, 1]), ValueError, "shape"),
    (lambda: C.margin("ab", [0]), ArgumentTypeError, "real array"),
    (lambda: C.confidence([[0.7, 0.7]], [0], from_logits=False), ValueError, "sum"),
    (lambda: C.confidence([[1.5, -0.5]], [0], from_logits=False), ValueError, r"\[0, 1\]"),
    (lambda: C.confidence([[1.0, 0.0]], [0], from_logits=1), ArgumentTypeError, "from_logits"),
])
def test_margin_and_confidence_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_confidence_change_bound_holds_and_is_attained_to_first_order():
    rng = np.random.default_rng(1)
    worst = 0.0
    for tau in (0.01, 0.1, 0.5):
        z = rng.standard_normal((2000, 4)) * 2
        y = rng.integers(0, 4, 2000)
        d = rng.uniform(-tau, tau, z.shape)
        d[:, 0] = tau * np.sign(d[:, 0])  # push some logits to the edge of the ball
        change = np.abs(C.confidence(z + d, y) - C.confidence(z, y))
        assert change.max() <= C.confidence_change_bound(tau)
        worst = max(worst, change.max() / C.confidence_change_bound(tau))
    assert worst > 0.3  # the bound is not vacuous: a constant factor from the worst case
    assert C.confidence_change_bound(0.0) == 0.0
    np.testing.assert_allclose(C.confidence_change_bound(np.array([0.1, 1.0])),
                               np.expm1([0.2, 2.0]))
    with pytest.raises(ValueError, match="non-negative"):
        C.confidence_change_bound(-1.0)


def test_accuracy_change_bound_by_hand_and_as_a_theorem():
    m = np.array([-3.0, -0.5, 0.1, 0.4, 2.0])
    assert C.accuracy_change_bound(m, 0.25) == pytest.approx(3 / 5, rel=1e-15, abs=0)
    assert C.accuracy_change_bound(m, np.array([0, 0, 0, 1.0, 1.0])) == pytest.approx(2 / 5)
    assert C.accuracy_change_bound(m, 0.0) == 0.0
    rng = np.random.default_rng(2)
    for tau in (0.05, 0.3, 1.0):
        z = rng.standard_normal((3000, 5))
        y = rng.integers(0, 5, 3000)
        d = rng.uniform(-tau, tau, z.shape)
        acc = lambda s: np.mean(s.argmax(1) == y)
        bound = C.accuracy_change_bound(C.margin(z, y), tau)
        assert abs(acc(z + d) - acc(z)) <= bound
        assert np.mean((z + d).argmax(1) != z.argmax(1)) <= bound
    with pytest.raises(ValueError, match="non-negative"):
        C.accuracy_change_bound(m, -0.1)
    with pytest.raises(ValueError, match="shape of margins"):
        C.accuracy_change_bound(m, np.ones(3))


# --------------------------------------------------------------------------- the factor z

@pytest.mark.parametrize("m", [1, 7, 100, 4000])
def test_max_factor_forms_and_probabilities(m):
    assert C.max_factor(m) == pytest.approx(2 * math.sqrt(2) * math.sqrt(math.log(2 * m)),
                                            rel=1e-14, abs=0)
    assert C.failure_probability(m) == pytest.approx((2 * m) ** -3, rel=1e-14, abs=0)
    assert C.max_factor(m, "union") == pytest.approx(math.sqrt(2 * math.log(2 * m * m)),
                                                     rel=1e-14, abs=0)
    for delta in (1 / m if m > 1 else 0.5, 0.05):
        z = C.max_factor(m, "sharp", delta)
        # the exact law of the maximum of m independent |N(0, 1)|
        assert (1 - 2 * norm.sf(z)) ** m == pytest.approx(1 - delta, rel=1e-9, abs=0)
        assert C.failure_probability(m, "sharp", delta) == delta
        assert C.max_factor(m, "sharp", delta) <= C.max_factor(m, "union", delta)
        # the union bound at its z is indeed <= delta
        assert 2 * m * norm.sf(C.max_factor(m, "union", delta)) <= delta
    assert C.max_factor(m, "union") <= C.max_factor(m)


def test_max_factor_sharp_matches_simulation():
    rng = np.random.default_rng(3)
    m, delta = 50, 0.2
    z = C.max_factor(m, "sharp", delta)
    rate = np.mean(np.abs(rng.standard_normal((20000, m))).max(axis=1) > z)
    assert rate == pytest.approx(delta, rel=0.05, abs=0)  # sd of the rate: 0.0028 (1.4 %)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"m": 10, "form": "authors", "delta": 0.1}, ValueError, "fixed by form"),
    ({"m": 10, "form": "exact"}, ValueError, "form must be one of"),
    ({"m": 10, "form": "sharp", "delta": 0.0}, ValueError, "delta"),
    ({"m": 10, "form": "sharp", "delta": "0.1"}, ArgumentTypeError, "delta"),
    ({"m": 0}, ValueError, "m must be"),
    ({"m": 2.0}, ArgumentTypeError, "m must be"),
])
def test_max_factor_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        C.max_factor(**kwargs)


# --------------------------------------------------------------------------- pruning_bound

@pytest.mark.parametrize("N, n, K, g", [(37, 5, 3, 1.0), (120, 11, 10, 0.3), (64, 64, 2, 4.0)])
def test_pruning_bound_is_the_stated_formula(N, n, K, g):
    rng = np.random.default_rng(N)
    W1, W3, x = rng.standard_normal((N, n)), rng.standard_normal((K, N)), rng.standard_normal((9, n))
    row_sum = max(sum(abs(v) for v in row) for row in W3.tolist())
    expected = [2 * math.sqrt(2) * math.sqrt(g) * row_sum * math.sqrt(sum(v * v for v in W1 @ s))
                * math.sqrt(math.log(2 * N) / N) for s in x]
    np.testing.assert_allclose(C.pruning_bound(W1, W3, x, g=g), expected, rtol=1e-12)
    sharp = C.pruning_bound(W1, W3, x, g=g, form="sharp", delta=0.01)
    np.testing.assert_allclose(sharp / np.array(expected),
                               C.max_factor(N, "sharp", 0.01) / C.max_factor(N), rtol=1e-12)
    one = C.pruning_bound(W1, W3, x[0], g=g)
    assert isinstance(one, float) and one == pytest.approx(expected[0], rel=1e-12, abs=0)
    assert C.inf_norm(W3) == pytest.approx(row_sum, rel=1e-13, abs=0)


@pytest.mark.parametrize("activation", ["relu", "abs", "leaky_relu", "tanh"])
@pytest.mark.parametrize("outer", [False, True])
def test_pruning_bound_holds_on_random_networks(activation, outer):
    """The theorem: with probability >= 1 - (2N)^-3 the logits move by at most tau_N."""
    rng = np.random.default_rng(4)
    N, n, K, g = 150, 12, 6, 2.5
    worst = 0.0
    for _ in range(20):
        W1 = rng.standard_normal((N, n)) / math.sqrt(n)
        W3 = rng.standard_normal((K, N)) / math.sqrt(N)  # logits O(1): tanh does not saturate
        S2 = rng.standard_normal((N, 3)) @ rng.standard_normal((3, N)) / N
        R2 = math.sqrt(g / N) * rng.standard_normal((N, N))
        x = rng.standard_normal((50, n))
        change = C.logit_change([W1, S2 + R2, W3], [W1, S2, W3], x, activation,
                                output_activation=outer)
        tau = C.pruning_bound(W1, W3, x, g=g)
        assert np.all(change <= tau)
        worst = max(worst, float((change / tau).max()))
    assert worst > 0.005  # the check is not vacuous: the change is a visible fraction of tau


def test_gaussian_step_fails_with_probability_delta():
    """Step (ii) of the proof: P(||R y||_inf > sqrt(g/N) z ||y||) = delta for the sharp z."""
    rng = np.random.default_rng(5)
    N, g, delta, draws = 40, 3.0, 0.1, 6000
    y = rng.standard_normal(N)
    z = C.max_factor(N, "sharp", delta)
    R = math.sqrt(g / N) * rng.standard_normal((draws, N, N))
    excess = np.abs(R @ y).max(axis=1) / (math.sqrt(g / N) * z * np.linalg.norm(y))
    assert np.mean(excess > 1) == pytest.approx(delta, rel=0.12, abs=0)  # sd 0.0039 (3.9 %)


@pytest.mark.parametrize("call, exc, match", [
    (lambda W1, W3, x: C.pruning_bound(W1, W3[:, :-1], x), ValueError, "W3 must have N"),
    (lambda W1, W3, x: C.pruning_bound(W1, W3, x[:, :-1]), ValueError, "x must have n"),
    (lambda W1, W3, x: C.pruning_bound(W1, W3, x, g=0.0), ValueError, "g must be"),
    (lambda W1, W3, x: C.pruning_bound(W1, W3, x, g="1"), ArgumentTypeError, "g must be"),
    (lambda W1, W3, x: C.pruning_bound(W1, W3, x, g=True), ArgumentTypeError, "g must be"),
    (lambda W1, W3, x: C.pruning_bound(W1.ravel(), W3, x), ValueError, "W1 must be 2-D"),
    (lambda W1, W3, x: C.pruning_bound(W1, W3, x, form="loose"), ValueError, "form"),
])
def test_pruning_bound_rejects_bad_input(call, exc, match):
    rng = np.random.default_rng(6)
    with pytest.raises(exc, match=match):
        call(rng.standard_normal((8, 3)), rng.standard_normal((2, 8)), rng.standard_normal((4, 3)))


# --------------------------------------------------------------------------- networks

@pytest.mark.parametrize("activation", C.ACTIVATIONS)
@pytest.mark.parametrize("outer", [False, True])
def test_forward_matches_a_torch_mlp(activation, outer):
    dims = [6, 9, 7, 4]
    net = MLP(dims, activation=activation, relu_on_logits=outer, bias=False, seed=1).double()
    weights = [layer.weight.detach().numpy() for layer in net.layers]
    x = torch.randn(13, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, hidden = C.forward(weights, x.numpy(), activation, output_activation=outer, hidden=True)
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=1e-12, atol=1e-14)
    assert [h.shape for h in hidden] == [(13, 6), (13, 9), (13, 7)]
    other = [w * 1.01 for w in weights]
    np.testing.assert_allclose(
        C.logit_change(weights, other, x.numpy(), activation, output_activation=outer),
        np.abs(out - C.forward(other, x.numpy(), activation, output_activation=outer)).max(1))


def test_forward_rejects_bad_networks():
    with pytest.raises(ValueError, match="do not compose"):
        C.forward([np.ones((3, 2)), np.ones((2, 4))], np.ones((1, 2)))
    with pytest.raises(ArgumentTypeError, match="list of 2-D arrays"):
        C.forward(np.ones((3, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="activation must be one of"):
        C.forward([np.ones((3, 2))], np.ones((1, 2)), "gelu")
    with pytest.raises(ValueError, match="same shapes"):
        C.logit_change([np.ones((3, 2))], [np.ones((2, 2))], np.ones((1, 2)))


def test_deep_bound_reduces_to_the_three_layer_bound():
    rng = np.random.default_rng(7)
    N, n, K, g = 60, 5, 3, 1.7
    W1, W3, S2 = rng.standard_normal((N, n)), rng.standard_normal((K, N)), rng.standard_normal((N, N))
    W2 = S2 + math.sqrt(g / N) * rng.standard_normal((N, N))
    x = rng.standard_normal((10, n))
    for form in ("authors", "sharp"):
        three = C.pruning_bound(W1, W3, x, g=g, form=form)
        # |.| keeps the norm of W1 x: the two bounds agree
        np.testing.assert_allclose(C.deep_pruning_bound([W1, W2, W3], {1: S2}, x, g=g,
                                                        activation="abs", form=form), three,
                                   rtol=1e-12)
        relu = C.deep_pruning_bound([W1, W2, W3], {1: S2}, x, g=g, activation="relu", form=form)
        np.testing.assert_allclose(relu / three,
                                   np.linalg.norm(np.maximum(x @ W1.T, 0), axis=1)
                                   / np.linalg.norm(x @ W1.T, axis=1), rtol=1e-12)


def test_deep_bound_by_hand_and_that_it_holds():
    rng = np.random.default_rng(8)
    N, n, K, g = 80, 6, 4, 1.0
    for _ in range(10):
        W1, W4 = rng.standard_normal((N, n)) / math.sqrt(n), rng.standard_normal((K, N)) / N
        S2, S3 = (rng.standard_normal((N, 2)) @ rng.standard_normal((2, N)) / math.sqrt(N)
                  for _ in range(2))
        R2, R3 = (math.sqrt(g / N) * rng.standard_normal((N, N)) for _ in range(2))
        x = rng.standard_normal((30, n))
        full, det = [W1, S2 + R2, S3 + R3, W4], [W1, S2, S3, W4]
        tau = C.deep_pruning_bound(full, {1: S2, 2: S3}, x, g=g, activation="relu")
        h1 = np.maximum(x @ W1.T, 0)
        h2 = np.maximum(h1 @ (S2 + R2).T, 0)
        z = math.sqrt(8 * math.log(2 * N))
        l1 = lambda A: np.abs(A).sum(1).max()
        by_hand = (l1(W4) * l1(S3) * math.sqrt(g / N) * z * np.linalg.norm(h1, axis=1)
                   + l1(W4) * math.sqrt(g / N) * z * np.linalg.norm(h2, axis=1))
        np.testing.assert_allclose(tau, by_hand, rtol=1e-12)
        assert np.all(C.logit_change(full, det, x, "relu") <= tau)


def test_deep_bound_rejects_bad_signals():
    W = [np.ones((4, 3)), np.ones((4, 4)), np.ones((2, 4))]
    with pytest.raises(ValueError, match="shape of weights"):
        C.deep_pruning_bound(W, {1: np.ones((3, 3))}, np.ones((1, 3)))
    with pytest.raises(ValueError, match="signals key"):
        C.deep_pruning_bound(W, {5: np.ones((4, 4))}, np.ones((1, 3)))
    with pytest.raises(ArgumentTypeError, match="non-empty mapping"):
        C.deep_pruning_bound(W, {}, np.ones((1, 3)))


# --------------------------------------------------------------------------- model networks

@pytest.mark.parametrize("N, r", [(10, 3), (101, 7), (6, 6)])
def test_block_basis_is_orthonormal_and_commutes_with_homogeneous_activations(N, r):
    U = C.block_basis(N, r)
    np.testing.assert_allclose(U.T @ U, np.eye(r), atol=1e-14)
    a = np.random.default_rng(0).standard_normal((5, r))
    for act in ("relu", "abs", "leaky_relu"):
        np.testing.assert_allclose(C.activate(a @ U.T, act), C.activate(a, act) @ U.T, atol=1e-14)


def test_model_network_structure():
    g, thetas = 0.5, np.array([4.0, 2.0, 1.5])
    net = C.model_network(90, thetas=thetas, n_inputs=8, n_classes=4, depth=2, g=g,
                          random_state=0)
    W = net.weights()
    assert [w.shape for w in W] == [(90, 8), (90, 90), (90, 90), (4, 90)]
    for i in range(2):
        s = np.linalg.svd(net.signal(i), compute_uv=False)
        np.testing.assert_allclose(s[:3], math.sqrt(g) * thetas, rtol=1e-12)
        assert s[3] < 1e-12
        np.testing.assert_allclose(net.signal_on_basis(i), net.signal(i) @ net.basis, atol=1e-13)
    x = np.random.default_rng(1).standard_normal((20, 8))
    for act in ("relu", "abs", "leaky_relu"):  # the dense network is the small one
        np.testing.assert_allclose(C.forward(W, x, act), C.forward(net.small_weights(), x, act),
                                   rtol=1e-10, atol=1e-12)
    R = net.noise(np.random.default_rng(2))
    assert len(R) == 2 and np.var(R[0]) == pytest.approx(g / 90, rel=0.03, abs=0)
    with pytest.raises(ValueError, match="noises must hold 2"):
        net.weights(R[:1])
    with pytest.raises(ValueError, match="at most N"):
        C.model_network(2, thetas=[3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        C.model_network(20, thetas=[3.0, 0.0])


def test_rmt_prune_matrix_is_the_truncated_svd_at_bemas_edge():
    W = spiked_matrix((300, 300), [4.0, 3.0, 2.5], sigma=1 / math.sqrt(300), random_state=9)
    P, fit = C.rmt_prune_matrix(W)
    assert fit.n_spikes == 3
    u, s, vt = np.linalg.svd(W)
    np.testing.assert_allclose(P, (u[:, :3] * s[:3]) @ vt[:3], atol=1e-10)
    assert s[2] > fit.edge_singular > s[3]
    P0, fit0 = C.rmt_prune_matrix(np.random.default_rng(0).standard_normal((200, 100)), beta=0.001)
    assert fit0.n_spikes == 0 and not P0.any()


def test_matrix_norms_match_numpy():
    A = np.random.default_rng(10).standard_normal((30, 17))
    n = C.matrix_norms(A)
    assert n["operator"] == pytest.approx(np.linalg.norm(A, 2), rel=1e-10, abs=0)
    assert n["frobenius"] == pytest.approx(np.linalg.norm(A), rel=1e-12, abs=0)
    assert n["two_to_inf"] == pytest.approx(np.linalg.norm(A, axis=1).max(), rel=1e-12, abs=0)
    assert n["inf"] == pytest.approx(np.linalg.norm(A, np.inf), rel=1e-12, abs=0)


def test_approximation_error_limit_formula_and_simulation():
    assert C.approximation_error_limit([2.0]) == pytest.approx(math.sqrt(2.75), rel=1e-14, abs=0)
    assert C.approximation_error_limit([2.0, 0.5], g=3.0) == pytest.approx(
        math.sqrt(3 * (2.75 + 0.25)), rel=1e-14, abs=0)
    N, g, theta = 1200, 2.0, 2.0
    errs = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        u, v = rng.standard_normal(N), rng.standard_normal(N)
        S = math.sqrt(g) * theta * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
        R = math.sqrt(g / N) * rng.standard_normal((N, N))
        P, fit = C.rmt_prune_matrix(S + R)
        assert fit.n_spikes == 1
        errs.append(np.linalg.norm(P - S))
    assert np.mean(errs) == pytest.approx(C.approximation_error_limit([theta], g), rel=0.04, abs=0)


# --------------------------------------------------------------------------- Monte Carlo draws

@pytest.mark.parametrize("scale", [True, False])
def test_theorem_draw_matches_the_dense_computation(scale):
    N, draw, seed, B, n, K = 60, 3, 11, 25, 7, 4
    thetas = np.array([2.0, 1.5, 1.2]) if scale else np.array([6.0, 4.0, 3.0])
    out = C.theorem_draw((N, draw, True), thetas=thetas, scale=scale, n_inputs=n, n_classes=K,
                         n_samples=B, g=1.3, seed=seed)
    # the documented seeding: one stream per (seed, N, draw), in this order
    rng = np.random.default_rng(np.random.SeedSequence([seed, N, draw]))
    th = thetas * (math.sqrt(N) if scale else 1.0)
    net = C.model_network(N, thetas=th, n_inputs=n, n_classes=K, g=1.3, random_state=rng)
    x = rng.standard_normal((B, n))
    R = math.sqrt(1.3 / N) * rng.standard_normal((N, N))
    full, det = net.weights([R]), net.weights()
    P, fit = C.rmt_prune_matrix(full[1])
    s = out["samples"]
    for act, rows in s.groupby("activation"):
        labels = C.forward(det, x, act).argmax(1)
        np.testing.assert_allclose(rows.change, C.logit_change(full, det, x, act), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(rows.change_pruned,
                                   C.logit_change(full, [full[0], P, full[2]], x, act),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rows.margin, C.margin(C.forward(det, x, act), labels),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rows.tau, C.pruning_bound(full[0], full[2], x, g=1.3), rtol=1e-12)
        h1 = C.activate(x @ full[0].T, act)
        z = C.max_factor(N, "sharp")
        hn = np.linalg.norm(h1, axis=1)
        alive = hn > 0  # h1 = 0 (every unit of a ReLU layer off): no failure, excess 0
        np.testing.assert_allclose(rows.gauss_excess[alive], np.abs(h1 @ R.T).max(1)[alive]
                                   / (math.sqrt(1.3 / N) * z * hn[alive]), rtol=1e-9)
        assert np.all(rows.gauss_excess[~alive] == 0) and np.array_equal(rows.dead, ~alive)
        assert np.array_equal(rows.flipped, C.forward(full, x, act).argmax(1) != labels)
        assert np.all(rows.change <= rows.tau)
    lemma = out["lemma"]
    assert lemma["n_spikes"] == fit.n_spikes
    assert lemma["pruned_frobenius"] == pytest.approx(np.linalg.norm(P - det[1]), rel=1e-10, abs=0)
    assert lemma["noise_operator"] == pytest.approx(np.linalg.norm(R, 2), rel=1e-10, abs=0)


def test_theorem_draw_is_deterministic_and_the_cheap_path_has_the_right_law():
    kw = dict(thetas=[2.0, 1.0], n_samples=40, seed=0)
    a = C.theorem_draw((50, 0, False), **kw)["samples"]
    pd.testing.assert_frame_equal(a, C.theorem_draw((50, 0, False), **kw)["samples"])
    assert a.change_pruned.isna().all() and not a.flipped_pruned.any()
    # without pruning only R2 U is drawn; its Gaussian step still fails at rate 1/N (the
    # samples of a draw share R2: the sd of this rate is about 10 % of 1/N)
    kw.update(thetas=[2.0, 1.0, 0.5, 0.3], activations=("abs",))
    s = pd.concat([C.theorem_draw((20, d, False), **kw)["samples"] for d in range(400)])
    assert np.mean(s.gauss_excess > 1) == pytest.approx(1 / 20, rel=0.3, abs=0)


def test_summaries_by_hand():
    base = {"N": 10, "prune": False, "tau_sharp": 1.0, "gauss_excess": 0.5,
            "change_pruned": np.nan, "flipped_pruned": False, "dead": False}
    s = pd.DataFrame([
        {**base, "draw": 0, "activation": "relu", "margin": 1.0, "change": 0.1, "tau": 1.0,
         "flipped": False},
        {**base, "draw": 0, "activation": "relu", "margin": 3.0, "change": 0.3, "tau": 0.5,
         "flipped": False, "gauss_excess": 2.0},
        {**base, "draw": 1, "activation": "relu", "margin": 0.1, "change": 2.0, "tau": 1.0,
         "flipped": True},
        {**base, "draw": 1, "activation": "relu", "margin": 5.0, "change": 0.2, "tau": 1.0,
         "flipped": False},
        {**base, "draw": 1, "activation": "relu", "margin": 0.0, "change": 0.0, "tau": 1.0,
         "flipped": False, "dead": True, "gauss_excess": 0.0},
    ])
    out = C.summarize_draws(s).iloc[0]
    assert out.dead_fraction == pytest.approx(0.2) and out.tie_fraction == 0.0
    assert out.draws == 2 and out.samples == 4
    assert out.ratio_median == pytest.approx(np.median([0.1, 0.6, 2.0, 0.2]))
    assert out.fail_rate == pytest.approx(0.25) and out.gauss_fail_rate == pytest.approx(0.25)
    assert out.acc_change == pytest.approx(100 * np.mean([0.0, 0.5]))
    assert out.acc_bound == pytest.approx(100 * np.mean([0.5, 0.5]))   # |m| <= 2 tau
    assert out.acc_bound_oracle == pytest.approx(100 * np.mean([0.0, 0.5]))
    assert out.one_over_N == pytest.approx(0.1)
    deep = C.summarize_deep(s.assign(depth=1)).iloc[0]
    assert deep.fail_rate == pytest.approx(0.25) and deep.acc_change == pytest.approx(25.0)
    with pytest.raises(ValueError, match="lacks"):
        C.summarize_draws(s.drop(columns="tau"))


def test_deep_draw_rows_hold_and_match_the_bound():
    s = C.deep_draw((40, 2, 0), thetas=[2.0, 1.0], n_samples=30, seed=1)
    assert set(s.activation) == {"relu", "abs", "leaky_relu"} and len(s) == 90
    assert np.all(s.change <= s.tau) and np.all(s.tau_sharp <= s.tau)
    # the documented seeding, recomputed with the public dense functions
    rng = np.random.default_rng(np.random.SeedSequence([1, 40, 2, 0, 1]))
    net = C.model_network(40, thetas=np.array([2.0, 1.0]) * math.sqrt(40), depth=2,
                          random_state=rng)
    x = rng.standard_normal((30, 16))
    full = net.weights(net.noise(rng))
    for act, rows in s.groupby("activation"):
        np.testing.assert_allclose(rows.change, C.logit_change(full, net.weights(), x, act),
                                   rtol=1e-9, atol=1e-12)
        for form, col in (("authors", "tau"), ("sharp", "tau_sharp")):
            np.testing.assert_allclose(rows[col], C.deep_pruning_bound(
                full, {1: net.signal(0), 2: net.signal(1)}, x, activation=act, form=form),
                rtol=1e-10)
    summary = C.summarize_deep(s)
    assert list(summary.depth.unique()) == [2] and (summary.fail_rate == 0).all()


def test_summarize_lemma_ratios():
    rows = [{"N": 10, "draw": d, "rank": 2, "n_spikes": 2, "theta_min": 3.0,
             **{f"pruned_{k}": 1.0 + d for k in ("operator", "frobenius", "two_to_inf", "inf")},
             **{f"noise_{k}": 2.0 for k in ("operator", "frobenius", "two_to_inf", "inf")},
             "frobenius_limit": 1.5, "regime": "a label"} for d in range(2)]
    out = C.summarize_lemma(rows + [None]).iloc[0]
    assert out.draws == 2 and out.ratio_frobenius == pytest.approx(0.75)
    assert out.ratio_frobenius_sd == pytest.approx(np.std([0.5, 1.0], ddof=1))
    with pytest.raises(ValueError, match="no draw"):
        C.summarize_lemma([None])


# --------------------------------------------------------------------------- trained networks

def _planted_mlp(seed=0):
    """An MLP 40 -> 60 -> 5 whose first layer is rank 3 plus Gaussian noise."""
    torch.manual_seed(seed)
    model = MLP([40, 60, 5], seed=seed).double()
    W = spiked_matrix((60, 40), [6.0, 4.0, 3.0], sigma=0.05, random_state=seed)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.from_numpy(W))
    x = torch.randn(200, 40, dtype=torch.float64)
    y = model(x).argmax(1)
    flip = torch.rand(200) < 0.2
    y[flip] = (y[flip] + 1) % 5
    return model, x, y


def test_trained_network_check_against_a_manual_computation():
    model, x, y = _planted_mlp()
    before = [p.detach().clone() for p in model.parameters()]
    samples, summary = C.trained_network_check(model, "layers.0", (x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # untouched
    W = model.layers[0].weight.detach().numpy()
    P, fit = C.rmt_prune_matrix(W)
    assert summary["n_spikes"] == fit.n_spikes == 3
    b0, W1, b1 = (model.layers[0].bias.detach().numpy(), model.layers[1].weight.detach().numpy(),
                  model.layers[1].bias.detach().numpy())
    xs = x.numpy()
    out = np.maximum(xs @ W.T + b0, 0) @ W1.T + b1
    out_p = np.maximum(xs @ P.T + b0, 0) @ W1.T + b1
    np.testing.assert_allclose(samples.logit_change, np.abs(out - out_p).max(1), rtol=1e-9)
    np.testing.assert_allclose(samples.margin, C.margin(out, y.numpy()), rtol=1e-9)
    z = math.sqrt(8 * math.log(2 * 60))
    tau = np.abs(W1).sum(1).max() * math.sqrt(fit.sigma2) * z * np.linalg.norm(xs, axis=1)
    np.testing.assert_allclose(samples.tau_hat, tau, rtol=1e-9)
    np.testing.assert_allclose(samples.gauss_excess, np.abs(xs @ (W - P).T).max(1)
                               / (math.sqrt(fit.sigma2) * z * np.linalg.norm(xs, axis=1)),
                               rtol=1e-9)
    assert summary["test_acc"] == pytest.approx(100 * np.mean(out.argmax(1) == y.numpy()))
    assert np.array_equal(samples.prediction_pruned, out_p.argmax(1))
    assert summary["predictions_changed"] == pytest.approx(
        100 * np.mean(samples.prediction != samples.prediction_pruned))
    assert summary["acc_bound_oracle"] >= abs(summary["acc_change"])
    assert summary["acc_bound"] == pytest.approx(
        100 * C.accuracy_change_bound(C.margin(out, y.numpy()), tau))
    assert summary["tau_reason"] == ""


def test_trained_network_check_outside_an_mlp_and_bad_input():
    model, x, y = _planted_mlp(1)
    seq = nn.Sequential(nn.Flatten(), model.layers[0], nn.ReLU(), model.layers[1])
    samples, summary = C.trained_network_check(seq, "1", (x, y))
    assert samples.tau_hat.isna().all() and "MLP" in summary["tau_reason"]
    assert math.isnan(summary["acc_bound"]) and summary["n_spikes"] == 3
    with pytest.raises(ValueError, match="unknown layer"):
        C.trained_network_check(model, "layers.7", (x, y))
    with pytest.raises(ArgumentTypeError, match="pair"):
        C.trained_network_check(model, "layers.0", x)
    with pytest.raises(ArgumentTypeError, match="nn.Module"):
        C.trained_network_check("model", "layers.0", (x, y))


# --------------------------------------------------------------------------- figures

def test_band_plot_and_margin_scatter_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmtlib import plotting

    x = np.array([100.0, 1000.0, 4000.0])
    ax = plotting.band_plot({"relu": (x, [0.1, 0.05, 0.02], [0.05, 0.02, 0.01], [0.2, 0.1, 0.04])},
                            theory={"1/N": (x, 1 / x)}, hlines={"one": 1.0}, logx=True, logy=True,
                            xlabel="N", ylabel="ratio")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_xlabel() == "N"
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"relu", "1/N", "one"}
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.05, 0.02])
    with pytest.raises(ValueError, match="center, low, high"):
        plotting.band_plot({"bad": (x, x)})
    rng = np.random.default_rng(0)
    m, c = rng.exponential(1.0, 300), rng.exponential(0.1, 300)
    m[0] = 0.0
    flipped = 2 * c > m
    ax = plotting.margin_scatter(m, c, tau=np.full(300, 0.5), flipped=flipped, max_points=100)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"prediction changed ({int(flipped[1:].sum())})" in labels
    assert "1 samples with zero margin or change not shown" in labels
    assert sum(len(col.get_offsets()) for col in ax.collections) == 100
    with pytest.raises(ValueError, match="same non-zero length"):
        plotting.margin_scatter(m, c[:-1])
    plt.close("all")


def test_slack_factors_multiply_to_the_total_and_hoelder_is_at_least_one():
    s = pd.concat([C.theorem_draw((80, d, False), thetas=[2.0, 1.5, 1.0], n_samples=60,
                                  seed=3)["samples"] for d in range(3)])
    f = C.slack_factors(s)
    np.testing.assert_allclose(f.constant * f.first_layer * f.gaussian * f.hoelder, f.total,
                               rtol=1e-10)
    np.testing.assert_allclose(f.constant, C.max_factor(80) / C.max_factor(80, "sharp"),
                               rtol=1e-12)
    assert (f.hoelder >= 1).all() and (f.total >= 1).all()
    # per sample the Hoelder step is deterministic: ||W3||_inf ||R2 h1||_inf >= change
    ok = s[(s.change > 0) & (s.gauss_excess > 0)]
    assert np.all(ok.tau_sharp * ok.hidden_ratio * ok.gauss_excess >= ok.change * (1 - 1e-12))


def test_check_trained_networks_stacks_one_row_per_model():
    models = {("planted", s): _planted_mlp(s)[0] for s in (0, 1)}
    _, x, y = _planted_mlp(0)
    samples, summary = C.check_trained_networks(models, "layers.0", (x, y))
    assert list(summary.columns[:2]) == ["recipe", "seed"] and len(summary) == 2
    assert len(samples) == 400 and set(samples.seed) == {0, 1}
    one, row = C.trained_network_check(models["planted", 1], "layers.0", (x, y))
    assert summary.set_index("seed").loc[1, "median_logit_change"] == row["median_logit_change"]


def test_sweeps_run_every_task_and_prune_only_where_asked():
    samples, lemmas = C.theorem_sweep([30, 60], 3, thetas=[2.0, 1.0], prune_max_n=30,
                                      prune_draws=2, n_samples=10, activations=("abs",), seed=2)
    assert sorted(set(zip(samples.N, samples.draw))) == [(N, d) for N in (30, 60) for d in range(3)]
    assert sorted((r["N"], r["draw"]) for r in lemmas) == [(30, 0), (30, 1)]
    assert samples.prune.sum() == 20
    pd.testing.assert_frame_equal(
        samples[(samples.N == 60) & (samples.draw == 1)].reset_index(drop=True),
        C.theorem_draw((60, 1, False), thetas=[2.0, 1.0], n_samples=10, activations=("abs",),
                       seed=2)["samples"])
    deep = C.deep_sweep([30], [1, 2], 2, thetas=[2.0], n_samples=5, activations=("relu",))
    assert len(deep) == 20 and set(deep.depth) == {1, 2}
    with pytest.raises(ValueError, match="prune_draws"):
        C.theorem_sweep([30], 2, thetas=[1.0], prune_draws=3)


def test_failure_rates_count_per_n_and_use_the_draws_for_the_error():
    s = pd.DataFrame({"N": [10] * 6 + [20] * 3, "draw": [0, 0, 0, 1, 1, 1, 0, 0, 0],
                      "change": [1.0, 0, 0, 0, 0, 0, 3.0, 0, 0], "tau": [0.5] + [1.0] * 8,
                      "tau_sharp": [0.5] * 9, "gauss_excess": [2, 2, 2, 0, 0, 0, 0, 1.5, 0],
                      "dead": [False] * 8 + [True]})
    r = C.failure_rates(s).set_index("N")
    assert r.loc[10, "draws"] == 2 and r.loc[10, "events"] == 6
    assert r.loc[10, "gauss_rate"] == pytest.approx(0.5)
    assert r.loc[10, "gauss_se"] == pytest.approx(np.std([1.0, 0.0], ddof=1) / math.sqrt(2))
    assert r.loc[10, "fail"] == 1 and r.loc[20, "fail"] == 1 and r.loc[20, "fail_sharp"] == 1
    assert r.loc[20, "gauss_se"] == 0.0 and r.loc[20, "one_over_N"] == pytest.approx(0.05)
    two = C.failure_rates(pd.concat([s.assign(regime="a"), s.assign(regime="b")]))
    assert two.set_index("N").loc[10, "draws"] == 4
