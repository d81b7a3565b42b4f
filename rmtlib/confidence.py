r"""Classification confidence and the RMT pruning theorem of paper 2, stated, proved and checked.

**Confidence and margin.**  For a classifier with logits ``z`` (one row per sample) and
probabilities ``p = softmax(z)``, the *classification confidence* of a sample with true class
``y`` is :math:`p_y - \max_{k \ne y} p_k` (Berlyand, Jabin, Safsten) -- positive exactly when the
sample is classified correctly -- and its *margin* is :math:`z_y - \max_{k\ne y} z_k`
(:func:`confidence`, :func:`margin`).

**The statement** (the form of the authors' later write-up; the body of paper 2 could not be
read).  Let :math:`X(s) = \lambda(W_3\,\lambda(W_2\,\lambda(W_1 s)))` with ``W1`` ``(N, n)``,
``W3`` ``(K, N)``, ``lambda = |.|`` or ReLU, and :math:`W_2 = R_2 + S_2` (``N x N``) with
:math:`R_2` i.i.d. :math:`N(0, g/N)` and ``S2`` deterministic.  Let :math:`\tilde X` be the
same network with ``W2`` replaced by ``S2``.  Then, for every input ``s``,

.. math::  \|X(s) - \tilde X(s)\|_\infty \le \tau_N(s)
           = 2\sqrt2\,\sqrt g\;\|W_3\|_\infty\,\|W_1 s\|_2\,\sqrt{\log(2N)/N}

with probability at least :math:`1 - (2N)^{-3} \ge 1 - 1/N` (:func:`pruning_bound`;
:math:`\|W_3\|_\infty` is the largest absolute row sum).  The authors' form is ``g = 1``.

**Proof.**  Put :math:`y = \lambda(W_1 s)`, :math:`a = W_2 y`, :math:`b = S_2 y`, so
:math:`a - b = R_2 y`.  (i) ``lambda`` is 1-Lipschitz, coordinatewise:
:math:`|X - \tilde X| \le |W_3 (\lambda(a) - \lambda(b))|` and
:math:`|\lambda(a_j) - \lambda(b_j)| \le |(R_2 y)_j|`, hence (Hoelder, row by row)
:math:`\|X - \tilde X\|_\infty \le \|W_3\|_\infty \|R_2 y\|_\infty`.  (ii) ``y`` does not depend
on ``R2``; given ``y`` the entries of ``R2 y`` are independent :math:`N(0, g\|y\|^2/N)` (one row
of ``R2`` each).  With :math:`P(|Z| > z) \le 2 e^{-z^2/2}` and a union bound over the ``N``
entries, :math:`P(\|R_2 y\|_\infty > \sqrt{g/N}\,\|y\|\,z) \le 2N e^{-z^2/2}`; for
:math:`z^2 = 8\log(2N)` this is :math:`(2N)^{-3}`.  (iii) :math:`|\lambda(t)| \le |t|` (1-Lipschitz
with :math:`\lambda(0) = 0`), so :math:`\|y\|_2 \le \|W_1 s\|_2`.  Nothing else is used: the bound
holds for every 1-Lipschitz activation with :math:`\lambda(0)=0` (Leaky ReLU, tanh, none) and
with or without the outer ``lambda``.

**Constants.**  The authors' :math:`2\sqrt2` follows from this proof but is not what it needs
for probability :math:`1 - 1/N`: the union bound at level ``delta`` needs only
:math:`z = \sqrt{2\log(2N/\delta)}`, i.e. :math:`\sqrt{2\log(2N^2)} \approx 2\sqrt{\log N}` at
:math:`\delta = 1/N` (``form="union"``), and the exact law of the maximum of ``N`` independent
:math:`|N(0,1)|` gives the smallest such ``z`` (``form="sharp"``, :func:`max_factor`).  The
bound scales with :math:`\sqrt g`, the noise standard deviation in units of
:math:`1/\sqrt N`; the change itself scales so, and a bound without the factor (the authors'
form) is proved only for ``g`` up to :math:`(z_{\rm authors}/z_{\rm sharp})^2` at level ``1/N``.

**Accuracy.**  If :math:`\|X - \tilde X\|_\infty \le \tau` a sample whose margin ``m`` (for
either network) satisfies :math:`|m| > 2\tau` is classified the same way by both: so the
accuracies differ by at most the fraction of samples with :math:`|m| \le 2\tau`
(:func:`accuracy_change_bound`), and the confidence changes by at most :math:`e^{2\tau} - 1`
(:func:`confidence_change_bound`).

**Any depth** (:func:`deep_pruning_bound`).  For :math:`h_\ell = \lambda(W_\ell h_{\ell-1})`,
:math:`h_0 = s`, with random layers :math:`W_k = S_k + R_k` (:math:`k \in \mathcal R`, ``R_k``
``m_k x n_k`` i.i.d. :math:`N(0, g/N_k)`, independent) and :math:`\tilde h` the network with every
``R_k`` removed, the error :math:`e_\ell = h_\ell - \tilde h_\ell` obeys, coordinatewise,
:math:`|e_k| \le |S_k e_{k-1} + R_k h_{k-1}|` at a random layer and :math:`|e_\ell| \le
|W_\ell e_{\ell-1}|` elsewhere, so

.. math::  \|e_L\|_\infty \le \sum_{k \in \mathcal R} \Big(\prod_{j > k} \|D_j\|_\infty\Big)
           \sqrt{g/N_k}\; z_k\, \|h_{k-1}\|_2 ,\qquad D_j = S_j \text{ or } W_j,

with probability at least :math:`1 - \sum_k p_k` (:math:`h_{k-1}` depends only on the
``R_j``, ``j < k``, so step (ii) applies to each layer given the earlier ones).  With one
random layer this is :func:`pruning_bound` with :math:`\|\lambda(W_1 s)\|` in place of
:math:`\|W_1 s\|`.

**Model networks** (:func:`model_network`, :func:`theorem_draw`): a width-``r`` network
embedded in width ``N`` through a block basis ``U`` (``N x r``, disjoint non-negative
orthonormal columns, so :math:`\lambda(Ua) = U\lambda(a)` for the positively homogeneous
activations): :math:`W_1 = UA`, :math:`S_\ell = U\,\mathrm{diag}(\sqrt g\,\theta)\,Q_\ell^\top U^\top`,
:math:`W_{\rm out} = B U^\top`.  ``theta`` are the singular values of ``S`` in noise units (the
noise edge is :math:`2\sqrt g`, the BBP threshold of an ``N x N`` matrix is ``theta = 1``).

**Trained networks** (:func:`trained_network_check`): the decomposition is estimated --
``S`` is the layer truncated to its BEMA spikes, :math:`\hat\sigma^2` BEMA's noise variance --
and the same quantities are measured; there the bound is a heuristic, not a theorem.

Arrays are NumPy float64, one row per sample (``x`` is ``(B, n)``; ``nn.Linear`` layout for the
weights, ``(out, in)``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from .bema import fit_bema
from .layers import get_layer, layer_matrix
from .linalg import gram_eigenvalues
from .parallel import map_tasks
from .seeding import check_random_state
from .spectra import decompose
from .studies import keyed
from .validation import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_float,
    check_frame,
    check_int,
    check_module,
    check_probability,
    check_seed,
    describe,
)

__all__ = [
    "ACTIVATIONS",
    "FORMS",
    "ModelNetwork",
    "accuracy_change_bound",
    "activate",
    "approximation_error_limit",
    "block_basis",
    "check_trained_networks",
    "confidence",
    "confidence_change_bound",
    "deep_draw",
    "deep_pruning_bound",
    "deep_sweep",
    "failure_probability",
    "failure_rates",
    "forward",
    "inf_norm",
    "logit_change",
    "margin",
    "matrix_norms",
    "max_factor",
    "model_network",
    "pruning_bound",
    "rmt_prune_matrix",
    "slack_factors",
    "summarize_deep",
    "summarize_draws",
    "summarize_lemma",
    "theorem_draw",
    "theorem_sweep",
    "trained_network_check",
]

#: Leaky ReLU slope, as in :func:`rmtlib.models.make_activation`.
LEAKY_SLOPE = 0.01

#: The activations (all 1-Lipschitz with lambda(0) = 0); the first three are positively
#: homogeneous, which the model networks need.
ACTIVATIONS = ("relu", "abs", "leaky_relu", "tanh", "identity")

#: Forms of the Gaussian-maximum factor ``z`` (see :func:`max_factor`).
FORMS = ("authors", "union", "sharp")

_HOMOGENEOUS = ("relu", "abs", "leaky_relu")


# --------------------------------------------------------------------------- input checks

def _array(x, name: str, ndim: Sequence[int] = (2,)) -> np.ndarray:
    """``x`` (NumPy array, nested list or torch tensor) as a finite real float64 array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes)) or x is None:
        raise ArgumentTypeError(f"{name} must be a real array, got {describe(x)}")
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise ArgumentTypeError(f"{name} must be a real (integer or float) array, got dtype "
                                f"{arr.dtype}")
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds {int(arr.size - np.isfinite(arr).sum())} non-finite "
                         "(NaN or Inf) entries")
    return arr


def _labels(labels, n_samples: int, n_classes: int) -> np.ndarray:
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ArgumentTypeError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.shape != (n_samples,):
        raise ValueError(f"labels must have shape ({n_samples},) (one per sample), got {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes - 1}] ({n_classes} classes), got "
                         f"values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64, copy=False)


def _scores(outputs, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    out = _array(outputs, what)
    if out.shape[1] < 2:
        raise ValueError(f"{what} must have at least 2 classes (columns), got shape {out.shape}")
    return out, _labels(labels, out.shape[0], out.shape[1])


def _true_minus_best_other(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = np.arange(len(labels))
    true = scores[rows, labels]
    other = scores.copy()
    other[rows, labels] = -np.inf
    return true - other.max(axis=1)


def _check_g(g) -> float:
    return check_float(g, "g", low=0.0, low_open=True)


# --------------------------------------------------------------------------- confidence

def margin(logits, labels) -> np.ndarray:
    r"""Per-sample margin :math:`z_y - \max_{k \ne y} z_k` of ``logits`` ``(B, K)`` (any
    real scores) for integer ``labels`` ``(B,)``; positive iff the sample is classified
    correctly (ties count as wrong: margin 0).  Returns a float64 array ``(B,)``."""
    z, y = _scores(logits, labels, "logits")
    return _true_minus_best_other(z, y)


def confidence(outputs, labels, *, from_logits: bool = True) -> np.ndarray:
    r"""Per-sample classification confidence :math:`p_y - \max_{k\ne y} p_k` (in [-1, 1]).

    ``outputs`` ``(B, K)`` are logits (``from_logits=True``: :math:`p = \mathrm{softmax}(z)`,
    computed stably) or probabilities (``from_logits=False``: non-negative rows summing to 1
    within 1e-6).  Positive iff the sample is classified correctly; it is a monotone function
    of neither the margin nor the loss, but has the margin's sign.
    """
    from_logits = check_bool(from_logits, "from_logits")
    out, y = _scores(outputs, labels, "outputs")
    if from_logits:
        z = out - out.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
    else:
        if out.min() < 0 or out.max() > 1:
            raise ValueError("outputs must be probabilities in [0, 1] when from_logits=False, "
                             f"got values in [{out.min():g}, {out.max():g}]")
        dev = np.abs(out.sum(axis=1) - 1.0).max()
        if dev > 1e-6:
            raise ValueError("outputs must be probabilities (rows summing to 1) when "
                             f"from_logits=False; a row is {dev:.3g} away from 1")
        p = out
    return _true_minus_best_other(p, y)


def confidence_change_bound(tau):
    r"""Largest change of the confidence when every logit moves by at most ``tau``:
    :math:`e^{2\tau} - 1` (elementwise; ``tau >= 0``).

    Each probability satisfies :math:`p_k e^{-2\tau} \le p_k' \le p_k e^{2\tau}`, so
    :math:`|p'_k - p_k| \le p_k (e^{2\tau}-1)` and the confidence moves by at most
    :math:`(p_y + \max_{k\ne y} p_k)(e^{2\tau}-1) \le e^{2\tau}-1`.
    """
    t = _array(tau, "tau", ndim=(0, 1))
    if np.any(t < 0):
        raise ValueError("tau must be non-negative")
    out = np.expm1(2.0 * t)
    return float(out) if out.ndim == 0 else out


def accuracy_change_bound(margins, tau) -> float:
    r"""Fraction of samples (in [0, 1]) whose margin lies in :math:`[-2\tau, 2\tau]`.

    If the logits of two networks differ by at most ``tau`` (a number, or one per sample)
    in the max norm, only those samples can be classified differently, so the two
    accuracies differ by at most this fraction.  ``margins`` (``(B,)``) are those of either
    network, with respect to the labels the accuracy is measured against (:func:`margin`);
    for non-negative margins it is the fraction with margin :math:`\le 2\tau`.
    """
    m = _array(margins, "margins", ndim=(1,))
    t = _array(tau, "tau", ndim=(0, 1))
    if t.ndim == 1 and t.shape != m.shape:
        raise ValueError(f"tau must be a number or have the shape of margins {m.shape}, got {t.shape}")
    if np.any(t < 0):
        raise ValueError("tau must be non-negative")
    return float(np.mean(np.abs(m) <= 2.0 * t))


# --------------------------------------------------------------------------- the bound

def _check_form(form: str, delta, m: int) -> tuple[str, float | None]:
    form = check_choice(form, "form", FORMS)
    if form == "authors":
        if delta is not None:
            raise ValueError("delta is fixed by form='authors' (its failure probability is "
                             "(2m)**-3); use form='union' or 'sharp' to choose delta")
        return form, None
    delta = 1.0 / m if delta is None else check_probability(delta, "delta", open_low=True,
                                                              open_high=True)
    return form, delta


def max_factor(m: int, form: str = "authors", delta: float | None = None) -> float:
    r"""The factor ``z`` with :math:`P(\max_{j \le m} |Z_j| > z) \le p` for ``m`` independent
    standard normals.

    * ``"authors"``: :math:`z = 2\sqrt2\sqrt{\log(2m)}`, :math:`p = (2m)^{-3}` (Chernoff and a
      union bound: :math:`2m\,e^{-z^2/2}`);
    * ``"union"``: :math:`z = \sqrt{2\log(2m/\delta)}`, :math:`p = \delta` (the same proof at
      level ``delta``, default ``1/m``);
    * ``"sharp"``: the exact quantile, :math:`(1 - 2\bar\Phi(z))^m = 1 - \delta`, so
      :math:`p = \delta` exactly (default ``1/m``).

    ``authors >= union >= sharp`` at the same probability.
    """
    m = check_int(m, "m", minimum=1)
    form, delta = _check_form(form, delta, m)
    if form == "authors":
        return math.sqrt(8.0 * math.log(2.0 * m))
    if form == "union":
        return math.sqrt(2.0 * math.log(2.0 * m / delta))
    q = -math.expm1(math.log1p(-delta) / m)  # 1 - (1 - delta)**(1/m), without cancellation
    return float(norm.isf(q / 2.0))


def failure_probability(m: int, form: str = "authors", delta: float | None = None) -> float:
    """The probability :math:`p` that goes with :func:`max_factor` (an upper bound for
    ``"authors"`` and ``"union"``, exact for ``"sharp"``)."""
    m = check_int(m, "m", minimum=1)
    form, delta = _check_form(form, delta, m)
    return (2.0 * m) ** -3 if form == "authors" else float(delta)


def inf_norm(W) -> float:
    r""":math:`\|W\|_\infty = \max_i \sum_j |W_{ij}|`, the operator norm from
    :math:`\ell^\infty` to :math:`\ell^\infty` (largest absolute row sum)."""
    return float(np.abs(_array(W, "W")).sum(axis=1).max())


def pruning_bound(W1, W3, x, *, g: float = 1.0, form: str = "authors",
                  delta: float | None = None):
    r"""Per-sample :math:`\tau_N(s) = \|W_3\|_\infty\,\sqrt{g/N}\; z\;\|W_1 s\|_2` (module
    docstring: statement, proof, probability).

    Parameters
    ----------
    W1 : array ``(N, n)``
        First (deterministic) layer.
    W3 : array ``(K, N)``
        Last (deterministic) layer.
    x : array ``(B, n)`` or ``(n,)``
        Inputs ``s``, one per row.
    g : float > 0
        The random part ``R2`` of ``W2`` has i.i.d. :math:`N(0, g/N)` entries.
    form, delta
        The Gaussian-maximum factor ``z`` (:func:`max_factor` with ``m = N``).  The default
        ``"authors"`` gives the authors' :math:`2\sqrt2\sqrt g\,\|W_3\|_\infty \|W_1 s\|
        \sqrt{\log(2N)/N}`, valid with probability at least :math:`1 - (2N)^{-3}`;
        ``"union"``/``"sharp"`` hold with probability at least :math:`1 - \delta`
        (default ``delta = 1/N``).

    Returns
    -------
    ndarray ``(B,)``, or a float for a 1-D ``x``: for each input, with the stated probability
    over ``R2``, :math:`\|X(s) - \tilde X(s)\|_\infty \le \tau_N(s)` for
    :math:`X = \lambda \circ W_3 \circ \lambda \circ W_2 \circ \lambda \circ W_1` (or without
    the outer ``lambda``) and any 1-Lipschitz ``lambda`` with :math:`\lambda(0) = 0`.
    """
    W1 = _array(W1, "W1")
    W3 = _array(W3, "W3")
    xs = _array(x, "x", ndim=(1, 2))
    N, n = W1.shape
    if W3.shape[1] != N:
        raise ValueError(f"W3 must have N = {N} columns (W1 is {W1.shape}), got shape {W3.shape}")
    single = xs.ndim == 1
    xs = xs[None, :] if single else xs
    if xs.shape[1] != n:
        raise ValueError(f"x must have n = {n} features (W1 is {W1.shape}), got shape {xs.shape}")
    g = _check_g(g)
    z = max_factor(N, form, delta)
    tau = inf_norm(W3) * math.sqrt(g / N) * z * np.linalg.norm(xs @ W1.T, axis=1)
    return float(tau[0]) if single else tau


# --------------------------------------------------------------------------- networks

def activate(a: np.ndarray, activation: str) -> np.ndarray:
    """The activation ``activation`` (one of :data:`ACTIVATIONS`) applied entrywise."""
    activation = check_choice(activation, "activation", ACTIVATIONS)
    if activation == "relu":
        return np.maximum(a, 0.0)
    if activation == "abs":
        return np.abs(a)
    if activation == "leaky_relu":
        return np.where(a > 0, a, LEAKY_SLOPE * a)
    if activation == "tanh":
        return np.tanh(a)
    return a


def _weights(weights, name: str = "weights") -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence) or not weights:
        raise ArgumentTypeError(f"{name} must be a non-empty list of 2-D arrays (out, in), got "
                                f"{describe(weights)}")
    out = [_array(W, f"{name}[{i}]") for i, W in enumerate(weights)]
    for i in range(1, len(out)):
        if out[i].shape[1] != out[i - 1].shape[0]:
            raise ValueError(f"{name}[{i}] has {out[i].shape[1]} columns but {name}[{i - 1}] has "
                             f"{out[i - 1].shape[0]} rows: the layers do not compose")
    return out


def _forward(ws: list[np.ndarray], xs: np.ndarray, activation: str, output_activation: bool):
    hidden = [xs]
    h = xs
    for i, W in enumerate(ws):
        a = h @ W.T
        h = activate(a, activation) if (i < len(ws) - 1 or output_activation) else a
        if i < len(ws) - 1:
            hidden.append(h)
    return h, hidden


def forward(weights, x, activation: str = "relu", *, output_activation: bool = False,
            hidden: bool = False):
    r"""Outputs of the network :math:`W_L \lambda(\cdots \lambda(W_1 x))` for each row of ``x``.

    ``weights`` is the list ``[W_1, ..., W_L]`` (``W_l`` of shape ``(out, in)``), ``x`` is
    ``(B, n)``; ``output_activation=True`` also applies ``lambda`` to the output (the network
    of the theorem's statement).  Returns ``(B, K)`` outputs, and with ``hidden=True`` also the
    list ``[h_0 = x, h_1, ..., h_{L-1}]`` of the inputs of every layer.
    """
    ws = _weights(weights)
    xs = _array(x, "x")
    if xs.shape[1] != ws[0].shape[1]:
        raise ValueError(f"x must have {ws[0].shape[1]} features, got shape {xs.shape}")
    activation = check_choice(activation, "activation", ACTIVATIONS)
    out, hs = _forward(ws, xs, activation, check_bool(output_activation, "output_activation"))
    return (out, hs) if check_bool(hidden, "hidden") else out


def logit_change(weights, other, x, activation: str = "relu", *,
                 output_activation: bool = False) -> np.ndarray:
    r"""Per-sample :math:`\|f(x) - \tilde f(x)\|_\infty` between the networks with weights
    ``weights`` and ``other`` (same shapes), as computed by :func:`forward`."""
    ws, os = _weights(weights), _weights(other, "other")
    if [w.shape for w in ws] != [o.shape for o in os]:
        raise ValueError("weights and other must have the same shapes, got "
                         f"{[w.shape for w in ws]} and {[o.shape for o in os]}")
    a = forward(ws, x, activation, output_activation=output_activation)
    b = forward(os, x, activation, output_activation=output_activation)
    return np.abs(a - b).max(axis=1)


def deep_pruning_bound(weights, signals: Mapping[int, object], x, *, g: float = 1.0,
                       activation: str = "relu", form: str = "authors",
                       delta: float | None = None) -> np.ndarray:
    r"""Per-sample bound on the output change when the random part of every random layer is
    removed, for a network of any depth (module docstring, "Any depth").

    Parameters
    ----------
    weights : list of arrays ``(out, in)``
        The network as it is, :math:`W_k = S_k + R_k` at the random layers.
    signals : mapping ``k -> S_k``
        The deterministic parts of the random layers, keyed by 0-based position in
        ``weights``; ``R_k = W_k - S_k`` has i.i.d. :math:`N(0, g/N_k)` entries,
        :math:`N_k = \max(m_k, n_k)`.
    x : array ``(B, n)``
    g, activation
        Noise level and the (1-Lipschitz, :math:`\lambda(0)=0`) activation.
    form, delta
        The factor :math:`z_k` of each random layer (:func:`max_factor` with ``m = m_k``,
        its number of rows); the bound holds with probability at least
        :math:`1 - \sum_k p_k` (:func:`failure_probability`).

    Returns
    -------
    ndarray ``(B,)``: :math:`\sum_k (\prod_{j>k} \|D_j\|_\infty) \sqrt{g/N_k}\, z_k
    \|h_{k-1}\|_2` with :math:`D_j = S_j` at random layers and ``W_j`` elsewhere, ``h`` the
    layer inputs of the network as it is.  The outer activation does not matter.
    """
    ws = _weights(weights)
    if not isinstance(signals, Mapping) or not signals:
        raise ArgumentTypeError(f"signals must be a non-empty mapping layer index -> S, got "
                                f"{describe(signals)}")
    S = {}
    for k, Sk in signals.items():
        k = check_int(k, "signals key", minimum=0, maximum=len(ws) - 1)
        S[k] = _array(Sk, f"signals[{k}]")
        if S[k].shape != ws[k].shape:
            raise ValueError(f"signals[{k}] must have the shape of weights[{k}] {ws[k].shape}, "
                             f"got {S[k].shape}")
    g = _check_g(g)
    xs = _array(x, "x")
    activation = check_choice(activation, "activation", ACTIVATIONS)
    _, hs = _forward(ws, xs, activation, False)
    return _deep_bound(ws, S, hs, g, form, delta)


def _deep_bound(ws, S, hs, g, form, delta) -> np.ndarray:
    """The any-depth bound from the layer inputs ``hs`` of the network as it is."""
    gains = [float(np.abs(S.get(j, W)).sum(axis=1).max()) for j, W in enumerate(ws)]
    tau = np.zeros(len(hs[0]))
    for k in sorted(S):
        m_k, n_k = ws[k].shape
        z = max_factor(m_k, form, delta)
        after = math.prod(gains[k + 1:])
        tau += after * math.sqrt(g / max(m_k, n_k)) * z * np.linalg.norm(hs[k], axis=1)
    return tau


# --------------------------------------------------------------------------- model networks

def block_basis(N: int, r: int) -> np.ndarray:
    r"""``N x r`` orthonormal basis of block indicators: column ``i`` is
    :math:`1/\sqrt{|B_i|}` on the ``i``-th of ``r`` contiguous blocks (sizes differ by at most
    one) and 0 elsewhere.  Disjoint non-negative columns commute with any positively
    homogeneous activation: :math:`\lambda(Ua) = U\lambda(a)`."""
    N = check_int(N, "N", minimum=1)
    r = check_int(r, "r", minimum=1, maximum=N)
    block = np.minimum(np.arange(N) * r // N, r - 1)
    U = np.zeros((N, r))
    U[np.arange(N), block] = 1.0
    return U / np.sqrt(U.sum(axis=0))


def _haar_orthogonal(r: int, rng) -> np.ndarray:
    q, t = np.linalg.qr(rng.standard_normal((r, r)))
    return q * np.sign(np.diag(t))  # Haar: fix the signs of R's diagonal


@dataclass(frozen=True, eq=False)
class ModelNetwork:
    r"""A model network :math:`x \mapsto W_{\rm out}\lambda(W_{L-1}\cdots\lambda(W_2
    \lambda(W_1 x)))` whose ``depth`` middle layers are ``N x N`` signal-plus-noise
    matrices (module docstring).  Made by :func:`model_network`.

    The deterministic network is exactly the small network
    :math:`B\lambda(M_{L-1}\cdots\lambda(M_2\lambda(Ax)))` of width ``r``
    (:meth:`small_weights`), for ``lambda`` in ReLU, ``|.|``, Leaky ReLU.
    """

    basis: np.ndarray                 #: U, (N, r)
    A: np.ndarray                     #: (r, n)
    M: tuple[np.ndarray, ...]         #: diag(sqrt(g) theta) Q_l^T, (r, r), one per random layer
    B: np.ndarray                     #: (K, r)
    thetas: np.ndarray                #: singular values of each S_l in noise units
    g: float                          #: noise entries ~ N(0, g / N)

    @property
    def N(self) -> int:
        return int(self.basis.shape[0])

    @property
    def depth(self) -> int:
        """Number of random layers."""
        return len(self.M)

    @property
    def first(self) -> np.ndarray:
        """:math:`W_1 = UA`, ``(N, n)``."""
        return self.basis @ self.A

    @property
    def readout(self) -> np.ndarray:
        r""":math:`W_{\rm out} = BU^\top`, ``(K, N)``."""
        return self.B @ self.basis.T

    def signal(self, layer: int = 0) -> np.ndarray:
        r""":math:`S = U M U^\top` of random layer ``layer`` (0-based), ``(N, N)``."""
        layer = check_int(layer, "layer", minimum=0, maximum=self.depth - 1)
        U = self.basis
        return (U @ self.M[layer]) @ U.T

    def signal_on_basis(self, layer: int = 0) -> np.ndarray:
        """:math:`SU = UM`, ``(N, r)``."""
        layer = check_int(layer, "layer", minimum=0, maximum=self.depth - 1)
        return self.basis @ self.M[layer]

    def noise(self, random_state=None) -> list[np.ndarray]:
        r"""One draw of the random parts :math:`R_\ell`, i.i.d. :math:`N(0, g/N)`."""
        rng = check_random_state(random_state)
        sd = math.sqrt(self.g / self.N)
        return [sd * rng.standard_normal((self.N, self.N)) for _ in range(self.depth)]

    def weights(self, noises=None) -> list[np.ndarray]:
        """Dense weights ``[W_1, S_2 + R_2, ..., W_out]`` (``noises=None``: the deterministic
        network)."""
        noises = [None] * self.depth if noises is None else list(noises)
        if len(noises) != self.depth:
            raise ValueError(f"noises must hold {self.depth} matrices, got {len(noises)}")
        mid = [self.signal(i) if R is None else self.signal(i) + _array(R, f"noises[{i}]")
               for i, R in enumerate(noises)]
        return [self.first, *mid, self.readout]

    def small_weights(self) -> list[np.ndarray]:
        """``[A, M_2, ..., B]``: the deterministic network at width ``r``."""
        return [self.A, *self.M, self.B]


def model_network(N: int, *, thetas, n_inputs: int = 16, n_classes: int = 5, depth: int = 1,
                  g: float = 1.0, random_state=None) -> ModelNetwork:
    r"""Draw a model network (:class:`ModelNetwork`, module docstring).

    ``A`` has i.i.d. :math:`N(0, 1/n)` entries, each ``Q_l`` is Haar-orthogonal ``r x r``,
    ``B`` is i.i.d. :math:`N(0, 1)`; ``r = len(thetas)``.  ``thetas`` are the singular
    values of every ``S_l`` in noise units (:math:`\sqrt g\,\theta_i`; above the BBP threshold
    when ``theta > 1``).  Inputs are meant to be :math:`x \sim N(0, I_n)`.
    """
    N = check_int(N, "N", minimum=2)
    th = _array(thetas, "thetas", ndim=(1,))
    if np.any(th <= 0):
        raise ValueError(f"thetas must be positive, got {th}")
    r = len(th)
    if r > N:
        raise ValueError(f"at most N = {N} singular values fit, got {r} thetas")
    n = check_int(n_inputs, "n_inputs", minimum=1)
    K = check_int(n_classes, "n_classes", minimum=2)
    depth = check_int(depth, "depth", minimum=1)
    g = _check_g(g)
    rng = check_random_state(random_state)
    A = rng.standard_normal((r, n)) / math.sqrt(n)
    M = tuple((math.sqrt(g) * th)[:, None] * _haar_orthogonal(r, rng).T for _ in range(depth))
    B = rng.standard_normal((K, r))
    return ModelNetwork(block_basis(N, r), A, M, B, th.copy(), g)


def rmt_prune_matrix(W, *, alpha: float = 0.2, beta: float = 0.1) -> tuple[np.ndarray, object]:
    r"""``W`` truncated to its singular values above BEMA's edge (the spikes):
    :math:`P(W) = \sum_{s_i > \hat s_+} s_i u_i v_i^\top`, with one decomposition
    (:func:`rmtlib.spectra.decompose`) and BEMA fitted to its eigenvalues
    (:func:`rmtlib.bema.fit_bema`).  Returns ``(P, fit)`` (``P`` float64, zero without spikes)."""
    import torch

    W = _array(W, "W")
    dec = decompose(torch.from_numpy(W))
    fit = fit_bema(dec.eigenvalues(), shape=W.shape, alpha=alpha, beta=beta)
    P = dec.truncated(torch.arange(fit.n_spikes)).double().cpu().numpy()
    return P, fit


def matrix_norms(A) -> dict:
    r"""Norms of a matrix: ``operator`` (largest singular value, from
    :func:`rmtlib.linalg.gram_eigenvalues`), ``frobenius``, ``two_to_inf``
    (:math:`\max_i \|A_{i\cdot}\|_2`, which bounds :math:`\|Ay\|_\infty/\|y\|_2`) and ``inf``
    (largest absolute row sum)."""
    A = _array(A, "A")
    N = max(A.shape)
    lam, _ = gram_eigenvalues(A) if min(A.shape) >= 2 else (np.array([np.sum(A * A) / N]), 0.0)
    rows = np.linalg.norm(A, axis=1)
    return {"operator": float(math.sqrt(N * lam[-1])), "frobenius": float(np.linalg.norm(rows)),
            "two_to_inf": float(rows.max()), "inf": float(np.abs(A).sum(axis=1).max())}


def approximation_error_limit(thetas, g: float = 1.0) -> float:
    r"""Large-``N`` limit of :math:`\|P(W) - S\|_F` for :math:`W = S + R`, ``N x N``, ``R``
    i.i.d. :math:`N(0, g/N)`, ``S`` of fixed rank with distinct singular values
    :math:`\sqrt g\,\theta_i`, and ``P`` the truncation to the outliers.

    A spike above the BBP threshold (:math:`\theta > 1`) gives the outlier
    :math:`\hat s = \sqrt g (1+\theta^2)/\theta` with singular-vector overlaps
    :math:`\langle u,\hat u\rangle^2, \langle v,\hat v\rangle^2 \to 1 - \theta^{-2}`
    (Benaych-Georges & Nadakuditi 2012, ``gamma = 1``), so it contributes
    :math:`\hat s^2 + s^2 - 2\hat s s (1-\theta^{-2}) = g(2 + 3/\theta^2)`; a spike below it is
    not kept and contributes :math:`s^2 = g\theta^2`.  Cross terms vanish.  Does not decay with
    ``N``, while :math:`\|R\|_F \approx \sqrt{gN}`.
    """
    th = _array(thetas, "thetas", ndim=(1,))
    if np.any(th <= 0):
        raise ValueError(f"thetas must be positive, got {th}")
    g = _check_g(g)
    per = np.where(th > 1.0, 2.0 + 3.0 / th**2, th**2)
    return float(math.sqrt(g * per.sum()))


# --------------------------------------------------------------------------- Monte Carlo

def _task_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


def _network_outputs(net: ModelNetwork, y1: np.ndarray, on_basis: np.ndarray, activation: str):
    """Logits of the 3-layer model network given the width-r first-layer features
    ``y1 = lambda(A x)`` and the second layer restricted to the basis, ``W2 U`` (N, r):
    ``W2 h1 = (W2 U) y1`` exactly because ``h1 = U y1``."""
    h2 = activate(y1 @ on_basis.T, activation)
    return (h2 @ net.basis) @ net.B.T


def theorem_draw(task, *, thetas, scale: bool = True, n_inputs: int = 16, n_classes: int = 5,
                 n_samples: int = 500, g: float = 1.0, activations=("relu", "abs", "leaky_relu"),
                 alpha: float = 0.2, beta: float = 0.1, seed: int = 0) -> dict:
    r"""One Monte Carlo draw of the 3-layer theorem on a model network (for
    :func:`rmtlib.parallel.map_tasks`).

    ``task = (N, draw, prune)``: a fresh network (:func:`model_network` with
    ``thetas * sqrt(N)`` if ``scale`` -- the entries of ``S`` then have the size of the noise's
    -- else ``thetas``), noise, ``n_samples`` inputs :math:`x \sim N(0, I)`, all from the
    seed ``(seed, N, draw)``.  The labels are the deterministic network's predictions.
    With ``prune`` the full ``R2`` is drawn and ``W2`` is also pruned at BEMA's edge
    (:func:`rmt_prune_matrix`); otherwise only :math:`R_2 U` is drawn (an ``N x r`` matrix with
    the same i.i.d. :math:`N(0, g/N)` law), which is all the forward pass needs.

    Returns ``{"samples": DataFrame, "lemma": dict or None}``; ``samples`` has one row per
    activation and input: ``N``, ``draw``, ``activation``, ``margin`` (deterministic net,
    >= 0), ``change`` (:math:`\|X - \tilde X\|_\infty`, ``W2 -> S2``), ``change_pruned``
    (``W2 -> P(W2)``, NaN without ``prune``), ``tau`` (authors), ``tau_union``,
    ``tau_sharp`` (``delta = 1/N``), ``hidden_ratio`` (:math:`\|\lambda(W_1x)\|/\|W_1x\|`),
    ``gauss_excess`` (:math:`\|R_2 h_1\|_\infty / (\sqrt{g/N} z_{\rm sharp} \|h_1\|)`, > 1 when
    the Gaussian step of the proof fails, probability exactly ``1/N``; 0 when ``h1 = 0``), ``flipped`` and
    ``flipped_pruned`` (prediction differs from the label), ``dead`` (:math:`h_1 = 0`: every
    first-layer unit off, probability :math:`2^{-r}` for ReLU; all three networks then output
    zeros, a tie).  ``lemma`` holds the norms of
    :math:`P(W_2) - S_2` and of :math:`R_2` (:func:`matrix_norms`), the spike count and the
    Frobenius limit (:func:`approximation_error_limit`).
    """
    N, draw, prune = task
    N = check_int(N, "N", minimum=2)
    draw = check_int(draw, "draw", minimum=0)
    prune = check_bool(prune, "prune")
    B = check_int(n_samples, "n_samples", minimum=1)
    acts = [check_choice(a, "activation", _HOMOGENEOUS) for a in activations]
    th = _array(thetas, "thetas", ndim=(1,)) * (math.sqrt(N) if check_bool(scale, "scale") else 1.0)
    with threadpool_limits(1):  # many small products: one BLAS thread is faster
        return _theorem_draw(N, draw, prune, B, acts, th, n_inputs, n_classes, g, alpha, beta,
                             _task_rng(check_seed(seed), N, draw))


def _theorem_draw(N, draw, prune, B, acts, th, n_inputs, n_classes, g, alpha, beta, rng):
    net = model_network(N, thetas=th, n_inputs=n_inputs, n_classes=n_classes, g=g,
                        random_state=rng)
    x = rng.standard_normal((B, net.A.shape[1]))
    sd = math.sqrt(net.g / N)
    S_U = net.signal_on_basis()
    lemma = None
    if prune:
        R = sd * rng.standard_normal((N, N))
        R_U = R @ net.basis
        S = net.signal()
        P, fit = rmt_prune_matrix(S + R, alpha=alpha, beta=beta)
        P_U = P @ net.basis
        err, noise = matrix_norms(P - S), matrix_norms(R)
        lemma = {"N": N, "draw": draw, "rank": len(th), "n_spikes": fit.n_spikes,
                 "theta_min": float(th.min()),
                 **{f"pruned_{k}": v for k, v in err.items()},
                 **{f"noise_{k}": v for k, v in noise.items()},
                 "frobenius_limit": approximation_error_limit(th, net.g)}
    else:
        R_U = sd * rng.standard_normal((N, len(th)))
    W1, W3 = net.first, net.readout
    tau = pruning_bound(W1, W3, x, g=net.g)
    tau_union = pruning_bound(W1, W3, x, g=net.g, form="union")
    tau_sharp = pruning_bound(W1, W3, x, g=net.g, form="sharp")
    z_sharp = max_factor(N, "sharp")
    a1 = x @ net.A.T
    frames = []
    for act in acts:
        y1 = activate(a1, act)
        det = _network_outputs(net, y1, S_U, act)
        full = _network_outputs(net, y1, S_U + R_U, act)
        labels = det.argmax(axis=1)
        y_norm = np.linalg.norm(y1, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # h1 = 0: R2 h1 = 0, no failure
            excess = np.where(y_norm > 0, np.abs(y1 @ R_U.T).max(axis=1)
                              / (sd * z_sharp * y_norm), 0.0)
        row = {"N": N, "draw": draw, "activation": act, "sample": np.arange(B),
               "margin": _true_minus_best_other(det, labels),
               "change": np.abs(full - det).max(axis=1),
               "change_pruned": np.nan, "tau": tau, "tau_union": tau_union, "tau_sharp": tau_sharp,
               "hidden_ratio": y_norm / np.linalg.norm(a1, axis=1),
               "gauss_excess": excess,
               "flipped": full.argmax(axis=1) != labels, "flipped_pruned": False,
               "dead": y_norm == 0}
        if prune:
            pruned = _network_outputs(net, y1, P_U, act)
            row["change_pruned"] = np.abs(full - pruned).max(axis=1)
            row["flipped_pruned"] = pruned.argmax(axis=1) != labels
        frames.append(pd.DataFrame(row))
    samples = pd.concat(frames, ignore_index=True)
    samples.insert(1, "prune", prune)
    return {"samples": samples, "lemma": lemma}


def theorem_sweep(sizes, n_draws: int, *, thetas, scale: bool = True,
                  prune_max_n: int = 1000, prune_draws: int = 0, progress: bool = False,
                  **settings) -> tuple[pd.DataFrame, list[dict]]:
    """:func:`theorem_draw` for every ``N`` of ``sizes`` and ``draw < n_draws``, through
    :func:`rmtlib.parallel.map_tasks`; the first ``prune_draws`` draws of each
    ``N <= prune_max_n`` also prune ``W2``.  ``settings`` go to :func:`theorem_draw`.
    Returns the stacked samples and the list of lemma records (draws with pruning)."""
    sizes = [check_int(N, "sizes", minimum=2) for N in sizes]
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    prune_max_n = check_int(prune_max_n, "prune_max_n", minimum=0)
    prune_draws = check_int(prune_draws, "prune_draws", minimum=0, maximum=n_draws)
    tasks = [(N, d, N <= prune_max_n and d < prune_draws) for N in sizes for d in range(n_draws)]
    out = map_tasks(theorem_draw, tasks, shared={"thetas": thetas, "scale": scale, **settings},
                    label="pruning theorem draws", progress=check_bool(progress, "progress"))
    return (pd.concat([o["samples"] for o in out], ignore_index=True),
            [o["lemma"] for o in out if o["lemma"] is not None])


def _q(p):
    def f(s):
        return float(np.quantile(s, p))
    f.__name__ = f"q{int(round(100 * p))}"
    return f


def summarize_draws(samples: pd.DataFrame) -> pd.DataFrame:
    r"""Per ``(N, activation)`` summary of :func:`theorem_draw` samples.

    Columns: ``draws``, ``samples``; ``ratio_median`` / ``ratio_q10`` / ``ratio_q90`` /
    ``ratio_max`` of ``change / tau`` (authors' form); ``ratio_sharp_median``;
    ``fail_rate`` (``change > tau``), ``fail_rate_sharp`` (``change > tau_sharp``),
    ``gauss_fail_rate`` (the Gaussian step fails; its probability is ``1/N``,
    ``one_over_N``); ``acc_change`` / ``acc_change_sd`` (percentage of predictions changed by
    ``W2 -> S2`` = accuracy lost, mean and sd over draws), ``acc_bound`` (mean of
    :func:`accuracy_change_bound` with ``tau``, %), ``acc_bound_oracle`` (the same with the
    actual change in place of ``tau``, %), ``tau_over_margin`` (median of ``tau / margin``),
    ``tie_fraction`` (margin 0: the deterministic logits tie, e.g. a ReLU layer switched off);
    for the draws with pruning: ``pruned_ratio_median`` / ``_q10`` / ``_q90``
    (``change_pruned / tau``), ``acc_change_pruned`` (%); ``dead_fraction``.  Dead inputs
    (``h1 = 0``: nothing can change, the margin is a zero tie) are left out of every other
    column.
    """
    check_frame(samples, ["N", "draw", "activation", "margin", "change", "change_pruned", "tau",
                          "tau_sharp", "gauss_excess", "flipped", "flipped_pruned", "prune",
                          "dead"], "samples")
    dead = samples.groupby(["N", "activation"], sort=True).dead.mean()
    samples = samples[~samples.dead]
    s = samples.assign(ratio=samples.change / samples.tau,
                       ratio_sharp=samples.change / samples.tau_sharp,
                       ratio_pruned=samples.change_pruned / samples.tau,
                       fail=samples.change > samples.tau,
                       fail_sharp=samples.change > samples.tau_sharp,
                       gauss_fail=samples.gauss_excess > 1.0,
                       in_bound=np.abs(samples.margin) <= 2 * samples.tau,
                       in_oracle=np.abs(samples.margin) <= 2 * samples.change,
                       tau_over_margin=samples.tau / samples.margin,
                       tie=samples.margin == 0)
    keys = ["N", "activation"]
    out = s.groupby(keys, sort=True).agg(
        samples=("ratio", "size"), ratio_median=("ratio", "median"), ratio_q10=("ratio", _q(0.1)),
        ratio_q90=("ratio", _q(0.9)), ratio_max=("ratio", "max"),
        ratio_sharp_median=("ratio_sharp", "median"), fail_rate=("fail", "mean"),
        fail_rate_sharp=("fail_sharp", "mean"), gauss_fail_rate=("gauss_fail", "mean"),
        tau_over_margin=("tau_over_margin", "median"), tie_fraction=("tie", "mean"))
    per_draw = s.groupby([*keys, "draw"]).agg(acc=("flipped", "mean"), bound=("in_bound", "mean"),
                                              oracle=("in_oracle", "mean"))
    by = per_draw.groupby(keys)
    out["draws"] = by.size()
    out["acc_change"] = 100 * by.acc.mean()
    out["acc_change_sd"] = 100 * by.acc.std(ddof=1).fillna(0.0)
    out["acc_bound"] = 100 * by.bound.mean()
    out["acc_bound_oracle"] = 100 * by.oracle.mean()
    pr = s[s.prune]
    if len(pr):
        pd_draw = pr.groupby([*keys, "draw"]).flipped_pruned.mean().groupby(keys)
        by_pr = pr.groupby(keys).ratio_pruned
        out["pruned_ratio_median"] = by_pr.median()
        out["pruned_ratio_q10"] = by_pr.quantile(0.1)
        out["pruned_ratio_q90"] = by_pr.quantile(0.9)
        out["acc_change_pruned"] = 100 * pd_draw.mean()
    else:
        for c in ("pruned_ratio_median", "pruned_ratio_q10", "pruned_ratio_q90",
                  "acc_change_pruned"):
            out[c] = np.nan
    out["dead_fraction"] = dead
    out = out.reset_index()
    out.insert(2, "one_over_N", 1.0 / out.N)
    return out


def failure_rates(samples: pd.DataFrame) -> pd.DataFrame:
    r"""Per ``N``: how often the Gaussian step and the bound failed in :func:`theorem_draw`
    samples, with standard errors that respect the draws.

    The inputs of one draw share :math:`R_2`, so they are not independent: a rate's standard
    error is the sd of its per-draw means over :math:`\sqrt{\text{draws}}`, a draw being one
    ``(N, draw)`` -- and ``regime``, if the frame has that column (sweeps run with different
    seeds; with the same seed, draws of the same ``(N, draw)`` share their noise and must not
    be told apart).  Columns: ``draws``,
    ``events`` (rows), ``gauss_rate`` (``gauss_excess > 1``; its probability is ``1/N``),
    ``gauss_se``, ``one_over_N``, ``fail`` and ``fail_sharp`` (events with ``change`` above
    ``tau`` / ``tau_sharp``, counts).  Dead inputs (``h1 = 0``, where nothing can fail) are left
    out."""
    check_frame(samples, ["N", "draw", "change", "tau", "tau_sharp", "gauss_excess", "dead"],
                "samples")
    samples = samples[~samples.dead]
    ev = samples.assign(gauss=samples.gauss_excess > 1, fail=samples.change > samples.tau,
                        fail_sharp=samples.change > samples.tau_sharp)
    clusters = ["N", "draw"] + (["regime"] if "regime" in ev.columns else [])
    per_draw = ev.groupby(clusters).gauss.mean().groupby("N")
    out = ev.groupby("N").agg(events=("gauss", "size"), gauss_rate=("gauss", "mean"),
                              fail=("fail", "sum"), fail_sharp=("fail_sharp", "sum"))
    out.insert(0, "draws", per_draw.size())
    out.insert(3, "gauss_se", per_draw.std(ddof=1).fillna(0.0) / np.sqrt(per_draw.size()))
    out.insert(4, "one_over_N", 1.0 / out.index.to_numpy(float))
    return out.reset_index()


def slack_factors(samples: pd.DataFrame) -> pd.DataFrame:
    r"""Where the bound loses, per ``(N, activation)`` of :func:`theorem_draw` samples:
    geometric means over samples of four factors whose product is ``tau / change``:

    * ``constant`` -- :math:`z_{\rm authors} / z_{\rm sharp}` (the probability level);
    * ``first_layer`` -- :math:`\|W_1 x\| / \|\lambda(W_1 x)\|` (step iii);
    * ``gaussian`` -- :math:`\sqrt{g/N}\,z_{\rm sharp}\|h_1\| / \|R_2 h_1\|_\infty` (step ii at
      level ``1/N``; below 1 when that step fails);
    * ``hoelder`` -- :math:`\|W_3\|_\infty \|R_2 h_1\|_\infty / \|X - \tilde X\|_\infty \ge 1`
      (step i: the Lipschitz and Hoelder inequalities);

    and ``total`` (``tau / change``).  Samples with zero change or ``h1 = 0`` are left out
    (``samples`` column: those used)."""
    check_frame(samples, ["N", "activation", "change", "tau", "tau_sharp", "hidden_ratio",
                          "gauss_excess"], "samples")
    s = samples[(samples.change > 0) & (samples.gauss_excess > 0)]
    noise_bound = s.tau_sharp * s.hidden_ratio * s.gauss_excess  # ||W3||_inf ||R2 h1||_inf
    logs = pd.DataFrame({"N": s.N, "activation": s.activation,
                         "constant": np.log(s.tau / s.tau_sharp),
                         "first_layer": -np.log(s.hidden_ratio),
                         "gaussian": -np.log(s.gauss_excess),
                         "hoelder": np.log(noise_bound / s.change),
                         "total": np.log(s.tau / s.change)})
    out = np.exp(logs.groupby(["N", "activation"]).mean())
    out.insert(0, "samples", logs.groupby(["N", "activation"]).size())
    return out.reset_index()


def summarize_lemma(lemmas: Sequence[Mapping]) -> pd.DataFrame:
    r"""Per-``N`` mean and sd of the approximation-lemma norms of :func:`theorem_draw`
    (``pruned_*``: :math:`P(W_2) - S_2`; ``noise_*``: :math:`R_2 = W_2 - S_2`) and their ratios
    ``ratio_<norm>`` (pruned / noise), with the Frobenius limit and the mean spike count;
    non-numeric entries of the records (labels) are ignored."""
    rows = [dict(r) for r in lemmas if r is not None]
    if not rows:
        raise ValueError("no draw with pruning: nothing to summarise")
    df = pd.DataFrame(rows)
    for k in ("operator", "frobenius", "two_to_inf", "inf"):
        df[f"ratio_{k}"] = df[f"pruned_{k}"] / df[f"noise_{k}"]
    value_cols = [c for c in df.columns if c not in ("N", "draw", "rank")
                  and pd.api.types.is_numeric_dtype(df[c])]  # other keys (labels) are dropped
    mean = df.groupby("N")[value_cols].mean()
    sd = df.groupby("N")[value_cols].std(ddof=1).fillna(0.0).add_suffix("_sd")
    out = mean.join(sd)
    out.insert(0, "draws", df.groupby("N").size())
    out.insert(1, "rank", df.groupby("N")["rank"].first())
    return out.reset_index()


def deep_draw(task, *, thetas, scale: bool = True, n_inputs: int = 16, n_classes: int = 5,
              n_samples: int = 200, g: float = 1.0, activations=("relu", "abs", "leaky_relu"),
              seed: int = 0) -> pd.DataFrame:
    r"""One draw of the any-depth version (for :func:`rmtlib.parallel.map_tasks`).

    ``task = (N, depth, draw)``: a model network with ``depth`` random ``N x N`` layers (seed
    ``(seed, N, depth, draw, 1)``); every random part is removed at once and the output change
    is compared with :func:`deep_pruning_bound` (``"authors"`` and ``"sharp"`` forms, the latter
    at ``delta = 1/N`` per layer).  Dense forward passes, one per activation.  Returns one row
    per activation and input: ``N``, ``depth``, ``draw``, ``activation``, ``margin``, ``change``,
    ``tau``, ``tau_sharp``, ``flipped``, ``dead`` (first hidden layer all zero).
    """
    N, depth, draw = task
    N = check_int(N, "N", minimum=2)
    depth = check_int(depth, "depth", minimum=1)
    draw = check_int(draw, "draw", minimum=0)
    B = check_int(n_samples, "n_samples", minimum=1)
    acts = [check_choice(a, "activation", _HOMOGENEOUS) for a in activations]
    th = _array(thetas, "thetas", ndim=(1,)) * (math.sqrt(N) if check_bool(scale, "scale") else 1.0)
    rng = _task_rng(check_seed(seed), N, depth, draw, 1)
    net = model_network(N, thetas=th, n_inputs=n_inputs, n_classes=n_classes, depth=depth, g=g,
                        random_state=rng)
    x = rng.standard_normal((B, net.A.shape[1]))
    full = net.weights(net.noise(rng))
    signals = {k + 1: net.signal(k) for k in range(depth)}
    sharp = max_factor(N, "sharp") / max_factor(N)  # every random layer has N rows
    frames = []
    with threadpool_limits(1):  # many small products: one BLAS thread is faster
        for act in acts:
            out_full, hs = _forward(full, x, act, False)
            out_det, _ = _forward(net.small_weights(), x, act, False)
            labels = out_det.argmax(axis=1)
            tau = _deep_bound(full, signals, hs, net.g, "authors", None)
            frames.append(pd.DataFrame({
                "N": N, "depth": depth, "draw": draw, "activation": act, "sample": np.arange(B),
                "margin": _true_minus_best_other(out_det, labels),
                "change": np.abs(out_full - out_det).max(axis=1),
                "tau": tau, "tau_sharp": tau * sharp,
                "flipped": out_full.argmax(axis=1) != labels,
                "dead": ~np.any(hs[1] != 0, axis=1)}))
    return pd.concat(frames, ignore_index=True)


def deep_sweep(sizes, depths, n_draws: int, *, thetas, progress: bool = False,
               **settings) -> pd.DataFrame:
    """:func:`deep_draw` for every ``N`` of ``sizes``, depth of ``depths`` and
    ``draw < n_draws`` (through :func:`rmtlib.parallel.map_tasks`); the samples stacked."""
    sizes = [check_int(N, "sizes", minimum=2) for N in sizes]
    depths = [check_int(d, "depths", minimum=1) for d in depths]
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    tasks = [(N, L, d) for N in sizes for L in depths for d in range(n_draws)]
    out = map_tasks(deep_draw, tasks, shared={"thetas": thetas, **settings},
                    label="any-depth draws", progress=check_bool(progress, "progress"))
    return pd.concat(out, ignore_index=True)


def summarize_deep(samples: pd.DataFrame) -> pd.DataFrame:
    """Per ``(N, depth, activation)``: median and max of ``change / tau``, median of
    ``change / tau_sharp``, the failure rates of both, the accuracy change (% of predictions
    changed) and its bound (:func:`accuracy_change_bound` with ``tau``, %); dead inputs
    (first hidden layer all zero) left out."""
    check_frame(samples, ["N", "depth", "draw", "activation", "margin", "change", "tau",
                          "tau_sharp", "flipped", "dead"], "samples")
    samples = samples[~samples.dead]
    s = samples.assign(ratio=samples.change / samples.tau,
                       ratio_sharp=samples.change / samples.tau_sharp,
                       fail=samples.change > samples.tau,
                       fail_sharp=samples.change > samples.tau_sharp,
                       in_bound=np.abs(samples.margin) <= 2 * samples.tau)
    out = s.groupby(["N", "depth", "activation"]).agg(
        samples=("ratio", "size"), ratio_median=("ratio", "median"), ratio_max=("ratio", "max"),
        ratio_sharp_median=("ratio_sharp", "median"), fail_rate=("fail", "mean"),
        fail_rate_sharp=("fail_sharp", "mean"), acc_change=("flipped", "mean"),
        acc_bound=("in_bound", "mean"))
    out["acc_change"] *= 100
    out["acc_bound"] *= 100
    return out.reset_index()


# --------------------------------------------------------------------------- trained networks

def _lipschitz_after(model, layer: str) -> tuple[float, str | None]:
    r"""Product of the :math:`\|\cdot\|_\infty` norms of the layers after ``layer`` in an
    :class:`rmtlib.models.MLP` (an upper bound of the :math:`\ell^\infty` Lipschitz constant
    from the layer's output to the logits), or NaN and the reason it is not defined."""
    import torch
    from torch import nn

    from .models import MLP, Abs
    from .prune import Factorized

    if not isinstance(model, MLP):
        return math.nan, f"the bound needs an rmtlib.models.MLP, got {type(model).__name__}"
    act = model.act
    ok = isinstance(act, (nn.ReLU, Abs, nn.Tanh, nn.Identity)) or (
        isinstance(act, nn.LeakyReLU) and abs(act.negative_slope) <= 1)
    if not ok:
        return math.nan, f"activation {type(act).__name__} is not known to be 1-Lipschitz"
    names = [f"layers.{i}" for i in range(len(model.layers))]
    if layer not in names:
        return math.nan, f"{layer!r} is not one of the MLP's layers {names}"
    gain = 1.0
    for mod in list(model.layers)[names.index(layer) + 1:]:
        if isinstance(mod, Factorized) and mod.kind == "linear":
            W = mod[1].weight.detach() @ mod[0].weight.detach()
        elif type(mod) is nn.Linear:
            W = mod.weight.detach()
        else:
            return math.nan, f"layer of type {type(mod).__name__} after {layer!r}"
        gain *= float(W.to(torch.float64).abs().sum(dim=1).max())
    return gain, None


def trained_network_check(model, layer: str, data, *, alpha: float = 0.2, beta: float = 0.1,
                          form: str = "authors", delta: float | None = None,
                          batch_size: int = 2048) -> tuple[pd.DataFrame, dict]:
    r"""The pruning theorem's quantities on a trained network, with the decomposition
    estimated: ``W = P(W) + R_hat`` where ``P(W)`` is the layer truncated to its BEMA spikes
    (:func:`rmt_prune_matrix`) and :math:`\hat\sigma^2` BEMA's noise variance per entry.

    Parameters
    ----------
    model : nn.Module
        The trained network (left untouched; a copy is pruned).
    layer : str
        Qualified name of an ``nn.Linear`` layer (``m x n``), e.g. ``"layers.0"``.
    data : (x, y) tensors
        Inputs and integer labels.
    alpha, beta : BEMA's parameters.
    form, delta : the factor ``z`` of :math:`\hat\tau` (:func:`max_factor`, ``m`` rows).

    Returns
    -------
    (samples, summary)
        ``samples``: one row per input -- ``label``, ``margin`` / ``margin_pruned`` (true-class
        margins of the network and of the pruned copy), ``logit_change``
        (:math:`\|X - X_P\|_\infty`), ``tau_hat`` (:math:`L\,\hat\sigma\,z\,\|h\|_2`, ``h`` the
        layer's input and ``L`` the product of the :math:`\|\cdot\|_\infty` norms of the later
        layers; NaN unless ``model`` is an :class:`rmtlib.models.MLP` with a 1-Lipschitz
        activation), ``gauss_excess`` (:math:`\|\hat R h\|_\infty / (\hat\sigma z \|h\|)`, > 1
        when the Gaussian step of the proof fails for the estimated noise), ``prediction`` /
        ``prediction_pruned`` (predicted classes), ``correct``, ``correct_pruned``.
        ``summary``: the fit (``n_spikes``, ``sigma2``, ``edge``), the accuracies (%),
        ``acc_change`` (pruned minus original, percentage points),
        ``predictions_changed`` (%), medians of the change, ``|margin|``, ``change/|margin|``
        and ``change / tau_hat``, ``acc_bound_oracle`` (% of samples with
        :math:`|m| \le 2\,{\rm change}`: those that can flip), ``acc_bound`` (the same with
        ``tau_hat``), ``tau_fail_rate`` and ``gauss_fail_rate`` (%), ``tau_reason``.
        Here the bound is a heuristic: ``R_hat`` is not independent Gaussian noise.
    """
    import torch
    from torch import nn

    from .train import predict

    model = check_module(model)
    mod = get_layer(model, layer)
    if type(mod) is not nn.Linear:
        raise ValueError(f"layer {layer!r} must be an nn.Linear, got {type(mod).__name__}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ArgumentTypeError(f"data must be a pair (x, y) of tensors, got {describe(data)}")
    x, y = data
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or len(x) != len(y):
        raise ValueError("data must be two tensors (x, y) with one label per input")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    W = layer_matrix(mod).double().cpu().numpy()
    m, n = W.shape
    z = max_factor(m, form, delta)
    P, fit = rmt_prune_matrix(W, alpha=alpha, beta=beta)
    sigma = math.sqrt(fit.sigma2)
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        target = get_layer(pruned, layer).weight
        target.copy_(torch.from_numpy(P).to(target.dtype))
    R_hat = torch.from_numpy(W - P)
    h_norm, r_max = [], []

    def hook(_module, inputs):
        h = inputs[0].detach().reshape(len(inputs[0]), -1).double().cpu()
        h_norm.append(torch.linalg.vector_norm(h, dim=1))
        r_max.append((h @ R_hat.T).abs().amax(dim=1))

    handle = mod.register_forward_pre_hook(hook)
    try:
        out = predict(model, x, batch_size=batch_size).double().cpu().numpy()
    finally:
        handle.remove()
    out_p = predict(pruned, x, batch_size=batch_size).double().cpu().numpy()
    labels = _labels(y, len(out), out.shape[1])
    hn = torch.cat(h_norm).numpy()
    gain, reason = _lipschitz_after(model, layer)
    with np.errstate(divide="ignore", invalid="ignore"):
        gauss = torch.cat(r_max).numpy() / (sigma * z * hn)
    change = np.abs(out - out_p).max(axis=1)
    tau = gain * sigma * z * hn
    marg = _true_minus_best_other(out, labels)
    samples = pd.DataFrame({
        "sample": np.arange(len(out)), "label": labels, "margin": marg,
        "margin_pruned": _true_minus_best_other(out_p, labels), "logit_change": change,
        "tau_hat": tau, "gauss_excess": gauss, "prediction": out.argmax(axis=1),
        "prediction_pruned": out_p.argmax(axis=1), "correct": out.argmax(axis=1) == labels,
        "correct_pruned": out_p.argmax(axis=1) == labels})
    abs_m = np.abs(marg)
    with np.errstate(divide="ignore", invalid="ignore"):
        over_margin = change / abs_m
    summary = {
        "layer": layer, "shape": [m, n], "n_spikes": fit.n_spikes, "sigma2": fit.sigma2,
        "edge": fit.edge_singular, "test_acc": 100 * samples.correct.mean(),
        "test_acc_pruned": 100 * samples.correct_pruned.mean(),
        "acc_change": 100 * (samples.correct_pruned.mean() - samples.correct.mean()),
        "predictions_changed": 100 * float(np.mean(out.argmax(1) != out_p.argmax(1))),
        "median_logit_change": float(np.median(change)),
        "median_abs_margin": float(np.median(abs_m)),
        "median_change_over_margin": float(np.nanmedian(over_margin)),
        "acc_bound_oracle": 100 * accuracy_change_bound(marg, change),
        "median_tau_hat": float(np.median(tau)),
        "median_change_over_tau": float(np.median(change / tau)) if reason is None else math.nan,
        "acc_bound": 100 * accuracy_change_bound(marg, tau) if reason is None else math.nan,
        "tau_fail_rate": 100 * float(np.mean(change > tau)) if reason is None else math.nan,
        "gauss_fail_rate": 100 * float(np.mean(gauss > 1)),
        "tau_reason": reason or "",
    }
    return samples, summary


def _check_one(task, *, layer, data, options):
    cols, model = task
    samples, summary = trained_network_check(model, layer, data, **options)
    return samples.assign(**cols), {**cols, **summary}


def check_trained_networks(models: Mapping, layer: str, data, *,
                           names: Sequence[str] = ("recipe", "seed"), progress: bool = False,
                           **options):
    """:func:`trained_network_check` of every model of ``models`` (a mapping key -> model,
    e.g. from :func:`rmtlib.studies.load_checkpoints`; keys are tuples matching ``names``),
    through :func:`rmtlib.parallel.map_tasks`.  Returns ``(samples, summary)``: the
    per-sample frames stacked and one summary row per model, with the keys as columns
    ``names``.  ``options`` go to :func:`trained_network_check`; ``progress`` prints one
    line per model."""
    tasks = list(keyed(models, names))
    done = map_tasks(_check_one, tasks, shared={"layer": layer, "data": data, "options": options},
                     label="trained networks", progress=check_bool(progress, "progress"))
    samples = pd.concat([d[0] for d in done], ignore_index=True)
    summary = pd.DataFrame([d[1] for d in done])
    lead = list(names)
    return (samples[lead + [c for c in samples.columns if c not in lead]],
            summary[lead + [c for c in summary.columns if c not in lead]])
