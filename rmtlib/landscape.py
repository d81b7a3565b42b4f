r"""Measurements of the loss landscape and of the "randomness" of the weights.

Paper 2 attributes the gains of RMT pruning to a simpler loss landscape without measuring it.
Three measurements make the claim testable:

* :func:`top_hessian_eigenvalue` -- the eigenvalue of largest modulus of the Hessian
  :math:`H = \nabla^2_\theta L(\theta)` of the mean cross-entropy over a data set (the
  sharpness), by power iteration on Hessian-vector products :math:`Hv = \nabla_\theta
  (\nabla_\theta L \cdot v)` (double back-propagation, :func:`hessian_vector_product`; the
  Hessian is never formed).  Iterates :math:`v_{k+1} = Hv_k / \|Hv_k\|` from a seeded Gaussian
  start; the estimate is the Rayleigh quotient :math:`v_k^\top H v_k`, stopped when it changes
  by less than ``tol`` relative.  The model is evaluated in eval mode (dropout off, batch norm
  with its running statistics), so :math:`L` is a fixed function of the parameters.
* :func:`path_losses` -- the loss and accuracy along the straight line
  :math:`\theta(t) = (1 - t)\theta_0 + t\theta_1`, :math:`t \in [0, 1]`, between two models of
  the same architecture (Goodfellow et al. 2015).  A pruned model whose layers were split into
  pairs is compared through :func:`dense_copy` (each pair replaced by one layer holding the
  product :math:`W_2W_1`, the map it computes), so the path lies in the space of the original
  weight matrices.
* :func:`bulk_share` -- for each layer, the share of its eigenvalues
  :math:`\lambda_i = s_i^2/N` inside the fitted Marchenko--Pastur bulk
  :math:`[\hat\lambda_-, \hat\lambda_+]`, with BEMA's :math:`\hat\sigma^2` and edge
  :math:`\hat\lambda_+` (:func:`rmtlib.bema.fit_bema`, Tracy--Widom margin included) and
  :math:`\hat\lambda_- = \hat\sigma^2(1 - \sqrt\gamma)^2`: 1 for a pure-noise matrix (up to the
  edge fluctuations), lower when training has moved singular values out of the bulk.
  :class:`BulkShareTracker` records it after every training epoch of :func:`rmtlib.train.fit`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .layers import Factorized, list_layers, set_module
from .linalg import gram_eigenvalues
from .seeding import check_random_state
from .train import Callback, evaluate
from .validation import (
    ArgumentTypeError,
    check_float,
    check_int,
    check_module,
    describe,
)

__all__ = [
    "BulkShareTracker",
    "HessianEigen",
    "bulk_share",
    "dense_copy",
    "hessian_vector_product",
    "path_losses",
    "top_hessian_eigenvalue",
]


def _check_xy(data, what: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, Sequence) or len(data) != 2 or not all(
            isinstance(t, torch.Tensor) for t in data):
        raise ArgumentTypeError(f"{what} must be a pair (x, y) of tensors, got {describe(data)}")
    x, y = data
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"{what}: x and y must hold the same positive number of samples, got "
                         f"{len(x)} and {len(y)}")
    return x, y


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def hessian_vector_product(model: nn.Module, data, vector: Sequence[torch.Tensor], *,
                           batch_size: int = 4096) -> list[torch.Tensor]:
    """:math:`Hv` for the Hessian of the mean cross-entropy of ``model`` (eval mode) over
    ``data = (x, y)`` with respect to its trainable parameters, ``vector`` a list of tensors
    shaped like them (in ``model.parameters()`` order).  The data are processed in batches of
    ``batch_size``; the result is exact (the per-batch products are weighted by batch size)."""
    check_module(model)
    x, y = _check_xy(data)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    params = _params(model)
    vector = list(vector)
    if len(vector) != len(params) or any(v.shape != p.shape for v, p in zip(vector, params)):
        raise ValueError("vector must be a list of tensors shaped like the model's trainable "
                         f"parameters ({len(params)} tensors), got {len(vector)}")
    was = model.training
    model.eval()
    dev = params[0].device
    out = [torch.zeros_like(p) for p in params]
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
            loss = F.cross_entropy(model(xb), yb) * (len(xb) / len(x))
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * v).sum() for g, v in zip(grads, vector))
            hv = torch.autograd.grad(dot, params)
            for o, h in zip(out, hv):
                o += h.detach()
    finally:
        model.train(was)
    return out


@dataclass(frozen=True)
class HessianEigen:
    """Result of :func:`top_hessian_eigenvalue`: the eigenvalue estimate (loss units per
    squared parameter unit), the iterations used, whether the relative change fell below
    ``tol``, and the Rayleigh quotient at every iteration."""

    eigenvalue: float
    iterations: int
    converged: bool
    trace: list = field(default_factory=list, repr=False)


def top_hessian_eigenvalue(model: nn.Module, data, *, n_iter: int = 50, tol: float = 1e-3,
                           batch_size: int = 4096, random_state=0) -> HessianEigen:
    """Eigenvalue of largest modulus of the Hessian of the mean cross-entropy over ``data``
    (see the module docstring), by power iteration on :func:`hessian_vector_product`.

    ``n_iter`` is the maximum number of products; ``tol`` the relative change of the Rayleigh
    quotient at which to stop; ``random_state`` seeds the Gaussian start vector.  At the end of
    training the top eigenvalue is positive and dominant, so this is the sharpness
    :math:`\\lambda_{\\max}(H)`; the convergence rate is :math:`|\\lambda_2/\\lambda_1|` per step.
    """
    check_module(model)
    _check_xy(data)
    n_iter = check_int(n_iter, "n_iter", minimum=1)
    tol = check_float(tol, "tol", low=0.0, low_open=True)
    rng = check_random_state(random_state)
    params = _params(model)
    v = [torch.as_tensor(rng.standard_normal(tuple(p.shape)), dtype=p.dtype, device=p.device)
         for p in params]
    norm = math.sqrt(sum(float((t * t).sum()) for t in v))
    v = [t / norm for t in v]
    trace: list[float] = []
    converged = False
    for _ in range(n_iter):
        hv = hessian_vector_product(model, data, v, batch_size=batch_size)
        rq = float(sum((h * t).sum() for h, t in zip(hv, v)))
        trace.append(rq)
        norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
        if norm == 0.0:
            break
        v = [h / norm for h in hv]
        if len(trace) > 1 and abs(trace[-1] - trace[-2]) <= tol * abs(trace[-1]):
            converged = True
            break
    return HessianEigen(trace[-1], len(trace), converged, trace)


def _dense_like(pair: Factorized) -> nn.Module:
    first = pair[0]
    while isinstance(first, Factorized):
        first = first[0]
    w, b = pair.weight.detach(), pair.bias
    kw = {"device": w.device, "dtype": w.dtype}
    if pair.kind == "linear":
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, **kw)
    else:
        new = type(first)(first.in_channels, w.shape[0], first.kernel_size, stride=first.stride,
                          padding=first.padding, dilation=first.dilation, bias=b is not None,
                          padding_mode=first.padding_mode, **kw)
    with torch.no_grad():
        new.weight.copy_(w.reshape(new.weight.shape))
        if b is not None:
            new.bias.copy_(b.detach())
    new.train(pair.training)
    return new


def dense_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every :class:`rmtlib.layers.Factorized` pair (the
    outermost ones) is replaced by a single Linear or convolution layer of the original shape
    holding the product ``W2 W1`` and the pair's bias: the same function, the original
    architecture."""
    check_module(model)
    out = copy.deepcopy(model)
    pairs = [n for n, m in out.named_modules() if isinstance(m, Factorized)]
    outer = [n for n in pairs if not any(n.startswith(o + ".") for o in pairs if o != n)]
    mods = dict(out.named_modules())
    for name in outer:
        set_module(out, name, _dense_like(mods[name]))
    return out


def path_losses(start: nn.Module, end: nn.Module, data, *, n_points: int = 11,
                batch_size: int = 4096) -> pd.DataFrame:
    """Loss (mean cross-entropy, nats/sample) and accuracy (%) of the model with parameters
    :math:`(1 - t)\\theta_{start} + t\\theta_{end}` at ``n_points`` equally spaced
    ``t in [0, 1]``, in eval mode (batch-norm running statistics interpolated too).

    Split pairs are compared as their products (:func:`dense_copy`); afterwards the two models
    must have the same parameter and buffer names and shapes, else ``ValueError``.  Returns
    columns ``t``, ``loss``, ``acc``; the rows at ``t = 0`` and ``t = 1`` are the two models' own
    values.
    """
    check_module(start, "start")
    check_module(end, "end")
    _check_xy(data)
    n_points = check_int(n_points, "n_points", minimum=2)
    a, b = dense_copy(start), dense_copy(end)
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        diff = sorted(set(sa) ^ set(sb)) or [k for k in sa if sa[k].shape != sb[k].shape]
        raise ValueError(f"start and end must have the same architecture (after densifying "
                         f"split layers); they differ in {diff[:5]}")
    probe = copy.deepcopy(a)
    rows = []
    for t in np.linspace(0.0, 1.0, n_points):
        mix = {k: (sa[k] if not sa[k].is_floating_point() else
                   (1 - t) * sa[k] + t * sb[k].to(sa[k].device)) for k in sa}
        if t == 1.0:
            mix = {k: sb[k] for k in sb}
        probe.load_state_dict(mix)
        loss, acc = evaluate(probe, data, batch_size=batch_size)
        rows.append({"t": float(t), "loss": loss, "acc": acc})
    return pd.DataFrame(rows, columns=["t", "loss", "acc"])


#: Columns of :func:`bulk_share`.
BULK_COLUMNS = ["name", "shape", "p", "n_inside", "share_inside", "n_spikes", "sigma2",
                "lambda_minus", "lambda_plus", "gof", "reason"]


def bulk_share(model: nn.Module, *, alpha: float = 0.2, beta: float = 0.1) -> pd.DataFrame:
    """Per analysable layer: the count and share of its ``p = min(m, n)`` eigenvalues inside
    the fitted MP bulk ``[lambda_minus, lambda_plus]`` (module docstring), BEMA's spike count,
    ``sigma2`` and goodness of fit.  A split pair is read as its product; a layer whose fit
    fails (e.g. a rank-deficient product with many zero eigenvalues) gets NaN and the
    ``reason``.  Columns :data:`BULK_COLUMNS`."""
    from .bema import check_alpha, check_beta, fit_bema

    check_module(model)
    alpha, beta = check_alpha(alpha), check_beta(beta)
    rows = []
    for la in list_layers(model):
        if not la.ok:
            continue
        m, n = la.shape
        lam, _ = gram_eigenvalues(la.matrix())
        row = {"name": la.name, "shape": (m, n), "p": min(m, n), "n_inside": np.nan,
               "share_inside": np.nan, "n_spikes": np.nan, "sigma2": np.nan,
               "lambda_minus": np.nan, "lambda_plus": np.nan, "gof": np.nan, "reason": None}
        try:
            fit = fit_bema(lam, shape=(m, n), alpha=alpha, beta=beta)
        except ValueError as exc:
            row["reason"] = str(exc)
        else:
            lo = fit.sigma2 * (1 - math.sqrt(fit.gamma)) ** 2
            inside = int(np.count_nonzero((lam >= lo) & (lam <= fit.lambda_plus)))
            row.update(n_inside=inside, share_inside=inside / len(lam), n_spikes=fit.n_spikes,
                       sigma2=fit.sigma2, lambda_minus=lo, lambda_plus=fit.lambda_plus,
                       gof=fit.gof)
        rows.append(row)
    return pd.DataFrame(rows, columns=BULK_COLUMNS)


class BulkShareTracker(Callback):
    """A :func:`rmtlib.train.fit` callback recording :func:`bulk_share` of every layer before
    training (epoch 0) and after every ``every``-th epoch (after any pruning done at the end of
    that epoch only if it runs after the pruning callback).  ``frame`` collects the rows with
    an ``epoch`` column."""

    def __init__(self, *, every: int = 1, alpha: float = 0.2, beta: float = 0.1):
        from .bema import check_alpha, check_beta

        self.every = check_int(every, "every", minimum=1)
        self.alpha, self.beta = check_alpha(alpha), check_beta(beta)
        self.parts: list[pd.DataFrame] = []
        self.seed: int | None = None  #: the training seed (set when training begins)

    def _record(self, model: nn.Module, epoch: int) -> None:
        self.parts.append(bulk_share(model, alpha=self.alpha, beta=self.beta)
                          .assign(epoch=epoch))

    def on_train_begin(self, state) -> None:
        self.seed = state.seed
        self._record(state.model, 0)

    def on_epoch_end(self, state) -> None:
        if state.epoch % self.every == 0:
            self._record(state.model, state.epoch)

    def record(self) -> dict:
        """``{"bulk_share": frame}`` with a ``seed`` column: what comes back from
        :func:`rmtlib.studies.run_seeds` (``SeedStudy.records``) wherever the run trained."""
        return {"bulk_share": self.frame.assign(seed=self.seed)}

    @property
    def frame(self) -> pd.DataFrame:
        """All recorded rows (columns ``epoch`` then :data:`BULK_COLUMNS`)."""
        if not self.parts:
            return pd.DataFrame(columns=["epoch", *BULK_COLUMNS])
        out = pd.concat(self.parts, ignore_index=True)
        return out[["epoch", *BULK_COLUMNS]]
