r"""SVD pruning of ``nn.Linear`` and ``nn.Conv2d`` layers of any model, by qualified name.

Each layer is read as its matrix ``W`` (``(out, in)``, or ``(C_out, C_in*kh*kw)`` for a
convolution) with singular value decomposition :math:`W = \sum_i s_i u_i v_i^\top`
(descending :math:`s_i`, ``p = min(m, n)`` terms).  Actions:

* :func:`truncate` -- replace ``W`` by its best rank-``k`` approximation
  :math:`W_k = \sum_{i \le k} s_i u_i v_i^\top` (same shape; by Eckart--Young
  :math:`\|W - W_k\|_F^2 = \sum_{i > k} s_i^2`).
* :func:`factorize` -- replace the layer by two layers computing :math:`W_k` with
  :math:`W_1 = S_k^{1/2} V_k^\top` (``k x n``, no bias) then :math:`W_2 = U_k S_k^{1/2}`
  (``m x k``, the original bias), as in the papers; a Conv2d becomes a ``C_in -> k``
  convolution with the original kernel size, stride, padding, dilation and padding mode,
  then a ``k -> C_out`` 1x1 convolution.  Done only when it lowers the parameter count,
  :math:`k(m + n) < mn`; otherwise the layer is truncated instead.
* :func:`shrink` -- multiply the singular values at or below a threshold (default the
  BEMA edge :math:`\hat s_+`) by a factor (the authors halve them).
* :func:`random_bulk` -- keep the top ``n_top`` components plus a uniformly random subset
  of ``n_random`` of the others (the authors' fourth algorithm), factorized when that
  lowers the parameter count.

Factorized layers are :class:`Factorized` (an ``nn.Sequential`` of the two factors), so a
layer ``"fc.0"`` becomes ``"fc.0.0"`` and ``"fc.0.1"``, both plain ``nn.Linear`` /
``nn.Conv2d`` layers analysed like any other at the next pruning event.
:func:`structural_edits` / :func:`apply_structural_edits` describe and replay such edits as
plain data (used by the checkpoints of :mod:`rmtlib.train`).

:func:`prune_model` applies a :class:`PrunePolicy` to every selected layer and returns a
:class:`PruneReport`.  One decomposition per layer (:func:`rmtlib.spectra.decompose`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import output_width
from .seeding import check_random_state
from .layers import (
    check_finite_weights,
    check_layer_filter,
    get_layer,
    is_selected,
    layer_matrix,
    list_layers,
    main_weight,
    set_module,
    unsupported_reason,
)
from .spectra import Decomposition, decompose

__all__ = [
    "ACTIONS",
    "Factorized",
    "LayerEdit",
    "PrunePolicy",
    "PruneReport",
    "apply_structural_edits",
    "count_parameters",
    "factorize",
    "keep_count",
    "prune_model",
    "random_bulk",
    "shrink",
    "structural_edits",
    "truncate",
]

ACTIONS = ("factorize", "truncate", "shrink", "random_bulk")


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


class Factorized(nn.Sequential):
    """A layer replaced by two factors, ``second(first(x))`` with ``W ~ W2 @ W1``.

    ``first`` has no bias; ``second`` carries the original bias.  For a Conv2d, ``first``
    is a ``C_in -> rank`` convolution with the original geometry and ``second`` a 1x1
    ``rank -> C_out`` convolution.  Children are named ``"0"`` and ``"1"``.
    """

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__(first, second)
        #: The inner width (fixed: a later split of a factor keeps its in/out widths).
        self.rank = int(first.weight.shape[0])
        #: ``"linear"`` or ``"conv2d"``.
        self.kind = "conv2d" if isinstance(first, nn.Conv2d) else "linear"

    @classmethod
    def empty_like(cls, module: nn.Module, rank: int) -> Factorized:
        """Uninitialised factors (zeros) of the right shapes for ``module`` at ``rank``,
        on its device and dtype."""
        kw = {"device": module.weight.device, "dtype": module.weight.dtype}
        has_bias = module.bias is not None
        if type(module) is nn.Linear:
            first = nn.Linear(module.in_features, rank, bias=False, **kw)
            second = nn.Linear(rank, module.out_features, bias=has_bias, **kw)
        elif type(module) is nn.Conv2d and module.groups == 1:
            first = nn.Conv2d(module.in_channels, rank, module.kernel_size, stride=module.stride,
                              padding=module.padding, dilation=module.dilation, bias=False,
                              padding_mode=module.padding_mode, **kw)
            second = nn.Conv2d(rank, module.out_channels, 1, bias=has_bias, **kw)
        else:
            raise ValueError(f"cannot factorize a {type(module).__name__}: "
                             f"{unsupported_reason(module) or 'unsupported'}")
        out = cls(first, second)
        with torch.no_grad():
            for p in out.parameters():
                p.zero_()
        return out


@dataclass(frozen=True)
class LayerEdit:
    """What one action did to one layer."""

    name: str
    action: str                 #: factorize | truncate | shrink | random_bulk | none
    shape: tuple[int, int]      #: matrix shape (m, n)
    rank_before: int            #: p = min(m, n), the full rank of the matrix
    rank_after: int             #: components kept (p for shrink / none)
    params_before: int          #: parameters of the layer (weight + bias)
    params_after: int
    new_names: tuple[str, ...]  #: qualified names of the layer(s) after the edit


def _module_params(mod: nn.Module) -> int:
    return sum(p.numel() for p in mod.parameters())


def _check_rank(k, p: int, name: str, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= p:
        raise ValueError(
            f"{what} = {k} is out of range for layer {name!r}: its matrix has full rank "
            f"p = {p}, so use 1 <= {what} <= {p}"
        )
    return k


def _prepare(model: nn.Module, name: str) -> tuple[nn.Module, Decomposition]:
    mod = get_layer(model, name)
    mat = layer_matrix(mod)
    check_finite_weights(mat, name)
    return mod, decompose(mat)


def _write_weight(mod: nn.Module, W: torch.Tensor) -> None:
    with torch.no_grad():
        mod.weight.copy_(W.reshape(mod.weight.shape).to(mod.weight.dtype))


def _apply_truncate(mod, name, dec, idx, action="truncate") -> LayerEdit:
    params = _module_params(mod)
    _write_weight(mod, dec.truncated(idx))
    return LayerEdit(name, action, dec.shape, dec.p, len(idx), params, params, (name,))


def _saves_parameters(k: int, shape: tuple[int, int]) -> bool:
    m, n = shape
    return k * (m + n) < m * n


def _apply_factorize(model, mod, name, dec, idx, action="factorize", force=False) -> LayerEdit:
    k = len(idx)
    if not force and not _saves_parameters(k, dec.shape):
        return _apply_truncate(mod, name, dec, idx, "truncate" if action == "factorize" else action)
    params = _module_params(mod)
    A, B = dec.factors(idx)
    new = Factorized.empty_like(mod, k)
    with torch.no_grad():
        new[0].weight.copy_(A.reshape(new[0].weight.shape).to(new[0].weight.dtype))
        new[1].weight.copy_(B.reshape(new[1].weight.shape).to(new[1].weight.dtype))
        if mod.bias is not None:
            new[1].bias.copy_(mod.bias)
    new.train(mod.training)
    set_module(model, name, new)
    return LayerEdit(name, action, dec.shape, dec.p, k, params, _module_params(new),
                     (f"{name}.0", f"{name}.1"))


def truncate(model: nn.Module, name: str, k: int) -> LayerEdit:
    """Replace the weight of layer ``name`` by its best rank-``k`` approximation, in place
    (same shape, same ``Parameter`` objects).  ``1 <= k <= p`` else ``ValueError``."""
    mod, dec = _prepare(model, name)
    k = _check_rank(k, dec.p, name)
    return _apply_truncate(mod, name, dec, torch.arange(k))


def factorize(model: nn.Module, name: str, k: int, *, force: bool = False) -> LayerEdit:
    """Replace layer ``name`` by a rank-``k`` :class:`Factorized` pair if that lowers the
    parameter count (``k(m + n) < mn``), else truncate it to rank ``k``.  The returned
    edit's ``action`` says which happened.  ``force=True`` always splits (useful to
    check the factorization itself, e.g. at full rank)."""
    mod, dec = _prepare(model, name)
    k = _check_rank(k, dec.p, name)
    return _apply_factorize(model, mod, name, dec, torch.arange(k), force=bool(force))


def _check_factor(factor) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
            or not math.isfinite(factor) or factor < 0:
        raise ValueError(f"shrink factor must be a finite number >= 0, got {factor!r}")
    return float(factor)


def _bema_edge(dec: Decomposition, **fit_opts) -> float:
    from .bema import fit_bema

    return fit_bema(dec.eigenvalues(), shape=dec.shape, **fit_opts).edge_singular


def shrink(model: nn.Module, name: str, threshold: float | None = None, factor: float = 0.5,
           **fit_opts) -> LayerEdit:
    """Multiply the singular values ``s_i <= threshold`` of layer ``name`` by ``factor``.

    ``threshold`` is in singular-value units; by default the BEMA edge
    :math:`\\hat s_+ = \\sqrt{N \\hat\\lambda_+}` (``fit_opts`` go to
    :func:`rmtlib.bema.fit_bema`).  The authors use ``factor = 0.5``.  ``rank_after`` in
    the returned edit is the number of values left unscaled.
    """
    factor = _check_factor(factor)
    mod, dec = _prepare(model, name)
    if threshold is None:
        threshold = _bema_edge(dec, **fit_opts)
    elif not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0 (singular-value units), "
                         f"got {threshold!r}")
    return _apply_shrink(mod, name, dec, float(threshold), factor)


def _apply_shrink(mod, name, dec, threshold, factor) -> LayerEdit:
    idx = torch.nonzero(dec.s <= threshold).flatten()
    params = _module_params(mod)
    _write_weight(mod, dec.scaled(idx, factor))
    return LayerEdit(name, "shrink", dec.shape, dec.p, dec.p - len(idx), params, params, (name,))


def _random_indices(p: int, n_top: int, n_random: int, rng) -> torch.Tensor:
    rest = rng.choice(np.arange(n_top, p), size=n_random, replace=False) if n_random else []
    return torch.as_tensor(np.concatenate([np.arange(n_top), np.sort(rest)]).astype(np.int64))


def random_bulk(model: nn.Module, name: str, n_top: int, n_random: int, *, random_state=None,
                factorize: bool = True) -> LayerEdit:
    """Keep the ``n_top`` largest singular components of layer ``name`` plus ``n_random``
    chosen uniformly without replacement among the others (the authors' fourth
    algorithm); factorize the kept components when that lowers the parameter count (and
    ``factorize`` is True), else write them back as a same-shape weight.

    ``random_state`` is an int, a NumPy ``Generator`` or None (see
    :func:`rmtlib.seeding.check_random_state`).
    """
    mod, dec = _prepare(model, name)
    p = dec.p
    if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)) or not 0 <= n_top <= p:
        raise ValueError(f"n_top must be an integer in [0, {p}] for layer {name!r}, got {n_top!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) \
            or not 0 <= n_random <= p - n_top:
        raise ValueError(f"n_random must be an integer in [0, {p - n_top}] (the components "
                         f"below the top {n_top}) for layer {name!r}, got {n_random!r}")
    if n_top + n_random < 1:
        raise ValueError("random_bulk must keep at least one component (n_top + n_random >= 1)")
    idx = _random_indices(p, int(n_top), int(n_random), check_random_state(random_state))
    if factorize:
        return _apply_factorize(model, mod, name, dec, idx, "random_bulk")
    return _apply_truncate(mod, name, dec, idx, "random_bulk")


# --------------------------------------------------------------------------- the policy


def keep_count(spikes: int, p: int, keep_fraction: float, min_rank: int = 1) -> int:
    """The papers' rule: ``keep = spikes + int(f * (p - spikes))``, at least ``min_rank``,
    at most ``p``."""
    keep = spikes + int(keep_fraction * (p - spikes))
    return int(min(max(keep, min_rank), p))


@dataclass
class PrunePolicy:
    """How :func:`prune_model` chooses and applies a rank to each layer.

    Parameters
    ----------
    selector : str
        ``"bema"`` (the spikes above :math:`\\hat\\lambda_+`) or a method of
        :func:`rmtlib.rank.select_rank`; its rank is the number of "spikes" kept in full.
    selector_opts : dict
        Options for the selector (for BEMA: ``alpha``, ``beta``).
    keep_fraction : float or callable ``epoch -> float``
        Fraction ``f`` of the bulk (the ``p - spikes`` other components) kept:
        ``keep = spikes + int(f * bulk)``.  Paper 1: 0.45; paper 2:
        ``lambda e: max(0, 1 - e / 300)``.
    action : {"factorize", "truncate", "shrink", "random_bulk"}
        ``shrink`` scales the components below the selector's threshold by
        ``shrink_factor`` (``keep_fraction`` is then unused); ``random_bulk`` keeps the
        spikes plus ``keep - spikes`` random bulk components.
    gof : float, "calibrated" or None
        Acceptance rule (:func:`rmtlib.gof.accept`) for the layer's BEMA fit; a rejected
        layer is left untouched and reported.  None disables the check.
    min_rank : int, optional
        Never keep fewer components; default the model's output width (the number of
        classes, :func:`rmtlib.models.output_width`), as the authors.
    layers : list of qualified names or predicate ``(name, module) -> bool``, optional
        Restrict pruning (default: every analysable layer).  A name also selects the
        layers below it, so a split layer's factors stay selected at later events.
    paper_exact : bool
        Reproduce the authors' code: the spike count used for ``keep`` is one too large
        (their ``gt`` counts one extra), BEMA uses their formula quirks
        (:func:`rmtlib.bema.fit_bema`), and ``random_bulk`` samples ``keep`` (not
        ``keep - spikes``) bulk components on top of the true spikes, as their
        ``algThree``.
    shrink_factor : float
        Factor for ``action="shrink"`` (authors: 0.5).
    seed : int, optional
        Seed for ``random_bulk`` (combined with the epoch, so events differ).
    """

    selector: str = "bema"
    selector_opts: dict = field(default_factory=dict)
    keep_fraction: float | Callable[[int], float] = 0.45
    action: str = "factorize"
    gof: float | str | None = 0.1
    min_rank: int | None = None
    layers: Sequence[str] | Callable[[str, nn.Module], bool] | None = None
    paper_exact: bool = False
    shrink_factor: float = 0.5
    seed: int | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        from .rank import available_methods

        if self.selector not in available_methods():
            raise ValueError(f"unknown selector {self.selector!r}; valid: {list(available_methods())}")
        if not isinstance(self.selector_opts, dict):
            raise ValueError(f"selector_opts must be a dict, got {self.selector_opts!r}")
        if not callable(self.keep_fraction):
            self.fraction(None)
        if self.gof is not None and not (self.gof == "calibrated" or (
                isinstance(self.gof, (int, float)) and not isinstance(self.gof, bool)
                and 0 < self.gof <= 1)):
            raise ValueError(f"gof must be a cutoff in (0, 1], 'calibrated' or None, got {self.gof!r}")
        if self.min_rank is not None and (isinstance(self.min_rank, bool) or not isinstance(
                self.min_rank, int) or self.min_rank < 1):
            raise ValueError(f"min_rank must be a positive integer or None, got {self.min_rank!r}")
        _check_factor(self.shrink_factor)
        if isinstance(self.layers, str):
            raise ValueError(f"layers must be a list of names or a predicate, got {self.layers!r}")

    def fraction(self, epoch: int | None) -> float:
        """The keep fraction at ``epoch`` (validated to lie in [0, 1])."""
        f = self.keep_fraction
        if callable(f):
            if epoch is None:
                raise ValueError("keep_fraction is a function of the epoch: pass epoch=...")
            f = f(epoch)
        if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) \
                or not 0 <= f <= 1:
            raise ValueError(f"keep fraction must be a number in [0, 1], got {f!r}")
        return float(f)


#: Columns of :attr:`PruneReport.layers`.
REPORT_COLUMNS = [
    "name", "type", "shape", "p", "spikes", "keep", "action", "rank_before", "rank_after",
    "params_before", "params_after", "new_names", "gof", "accepted", "sigma2", "lambda_plus",
    "s_plus", "threshold", "reason", "seconds",
]


@dataclass
class PruneReport:
    """Outcome of :func:`prune_model`: one row per considered layer in ``layers``
    (columns :data:`REPORT_COLUMNS`; ``action`` is ``"skipped"`` with a ``reason`` for
    layers left untouched), model parameter counts before/after, the keep fraction and
    epoch, and the list of :class:`LayerEdit` applied."""

    layers: pd.DataFrame
    params_before: int
    params_after: int
    keep_fraction: float
    epoch: int | None
    edits: list[LayerEdit]
    seconds: float

    @property
    def changed(self) -> list[str]:
        """Qualified names of the layers whose parameters were modified or replaced."""
        return [e.name for e in self.edits]

    def summary(self) -> str:
        """One line, e.g. ``layers.0: 1000x784 -> factorize@353; layers.1: skipped``."""
        parts = []
        for r in self.layers.itertuples():
            m, n = r.shape
            what = "skipped" if r.action == "skipped" else f"{r.action}@{r.rank_after}"
            parts.append(f"{r.name}: {m}x{n} -> {what}")
        return "; ".join(parts) + f" | params {self.params_before} -> {self.params_after}"

    def __repr__(self) -> str:
        return f"PruneReport({self.summary()})"


def _spike_count(policy: PrunePolicy, dec: Decomposition, fit):
    """(spikes, threshold in singular-value units) from the policy's selector."""
    if policy.selector == "bema":
        return fit.n_spikes, fit.edge_singular
    from .rank import select_rank

    d = select_rank(dec.eigenvalues(), policy.selector, shape=dec.shape, **policy.selector_opts)
    return int(d.rank), float(d.threshold)


def prune_model(model: nn.Module, policy: PrunePolicy | None = None, *,
                epoch: int | None = None) -> PruneReport:
    """Apply ``policy`` to every selected Linear/Conv2d layer of ``model`` (in place).

    For each layer (one decomposition): fit BEMA to its eigenvalues; if ``policy.gof`` is
    set and the fit is rejected, leave the layer untouched (reported with the reason);
    otherwise take ``spikes`` from the selector (``+1`` with ``paper_exact``), compute
    ``keep = spikes + int(f * (p - spikes))`` clipped to ``[min_rank, p]`` and apply the
    action.  A layer kept at full rank is reported as skipped.  Unsupported layers
    (grouped/transposed convolutions, other types) are reported as skipped; non-finite
    weights raise ``ValueError``; so do unknown names in ``policy.layers`` and selector
    errors -- all before any layer is modified.
    """
    from .bema import fit_bema
    from .gof import accept

    policy = PrunePolicy() if policy is None else policy
    if not isinstance(policy, PrunePolicy):
        raise ValueError(f"policy must be a PrunePolicy, got {type(policy).__name__}")
    t_start = time.perf_counter()
    f = policy.fraction(epoch)
    min_rank = policy.min_rank if policy.min_rank is not None else output_width(model)
    check_layer_filter(model, policy.layers)
    bema_opts = policy.selector_opts if policy.selector == "bema" else {}
    rng = None
    if policy.action == "random_bulk":
        rng = check_random_state(None if policy.seed is None else
                                 np.random.SeedSequence([policy.seed, epoch or 0]))
    targets = [(n, m, r) for n, m, r in list_layers(model) if is_selected(policy.layers, n, m)]
    for name, mod, reason in targets:  # fail before touching anything
        if reason is None:
            check_finite_weights(mod.weight, name)
    params_before = count_parameters(model)
    # Pass 1 decides every layer without touching the model, so that an error (e.g. bad
    # selector options) leaves it unchanged; pass 2 applies the actions.
    rows, plans = [], []
    for name, mod, reason in targets:
        t0 = time.perf_counter()
        w = main_weight(mod)
        m, n = w.shape[0], w[0].numel()
        row = {"name": name, "type": type(mod).__name__, "shape": (m, n), "p": min(m, n),
               "rank_before": min(m, n), "rank_after": min(m, n),
               "params_before": _module_params(mod), "params_after": _module_params(mod),
               "new_names": (name,), "action": "skipped", "reason": reason}
        plan = None
        if reason is None:
            dec = decompose(layer_matrix(mod))
            try:
                fit = fit_bema(dec.eigenvalues(), shape=dec.shape, paper_exact=policy.paper_exact,
                               **bema_opts)
            except ValueError as exc:  # e.g. an all-zero bulk: this layer has no noise to cut
                row["reason"] = f"BEMA fit failed: {exc}"
        if row["reason"] is None:
            row.update(gof=fit.gof, sigma2=fit.sigma2, lambda_plus=fit.lambda_plus,
                       s_plus=fit.edge_singular)
            verdict = accept(fit, policy.gof) if policy.gof is not None else None
            row["accepted"] = None if verdict is None else bool(verdict)
            spikes, threshold = _spike_count(policy, dec, fit)
            if policy.paper_exact and policy.selector == "bema":
                spikes = min(spikes + 1, dec.p)  # the authors' gt counts one extra
            keep = keep_count(spikes, dec.p, f, min_rank)
            row.update(spikes=spikes, keep=keep, threshold=threshold)
            if verdict is not None and not verdict:
                row["reason"] = (f"goodness of fit {fit.gof:.4g} fails the rule "
                                 f"{verdict.rule} (cutoff {verdict.cutoff:.4g})")
            elif policy.action != "shrink" and keep >= dec.p:
                row["reason"] = f"keeps the full rank ({keep} >= p = {dec.p})"
            else:
                plan = (mod, dec, spikes, keep, threshold)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        plans.append(plan)
    edits = []
    for row, plan in zip(rows, plans):
        if plan is None:
            continue
        t0 = time.perf_counter()
        edit = _act(model, row["name"], policy, *plan, rng)
        edits.append(edit)
        row.update(action=edit.action, rank_after=edit.rank_after,
                   params_after=edit.params_after, new_names=edit.new_names)
        row["seconds"] += time.perf_counter() - t0
    df = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for c in ("spikes", "keep"):
        df[c] = df[c].astype("Int64")
    df["accepted"] = df["accepted"].astype("boolean")
    return PruneReport(df, params_before, count_parameters(model), f, epoch, edits,
                       time.perf_counter() - t_start)


def _act(model, name, policy, mod, dec, spikes, keep, threshold, rng) -> LayerEdit:
    if policy.action == "truncate":
        return _apply_truncate(mod, name, dec, torch.arange(keep))
    if policy.action == "factorize":
        return _apply_factorize(model, mod, name, dec, torch.arange(keep))
    if policy.action == "shrink":
        return _apply_shrink(mod, name, dec, threshold, policy.shrink_factor)
    # random_bulk
    n_top = max(spikes - 1, 0) if policy.paper_exact else spikes
    n_random = min(keep, dec.p - n_top) if policy.paper_exact else keep - spikes
    idx = _random_indices(dec.p, n_top, n_random, rng)
    return _apply_factorize(model, mod, name, dec, idx, "random_bulk")


# ------------------------------------------------------------------ structural edits


def structural_edits(model: nn.Module) -> list[dict]:
    """The :class:`Factorized` layers of ``model`` as plain data, parents first:
    ``[{"name": "layers.0", "kind": "linear", "rank": 353}, ...]``."""
    return [{"name": name, "kind": mod.kind, "rank": mod.rank}
            for name, mod in model.named_modules() if isinstance(mod, Factorized)]


def apply_structural_edits(model: nn.Module, edits: Sequence[dict]) -> nn.Module:
    """Replace the layers named in ``edits`` (from :func:`structural_edits`) by empty
    :class:`Factorized` pairs of the recorded rank, so that a state dict of the pruned
    model loads.  Layers already factorized at that rank are left alone."""
    for e in edits:
        try:
            name, kind, rank = e["name"], e["kind"], int(e["rank"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"malformed structural edit {e!r}; expected name/kind/rank") from None
        modules = dict(model.named_modules())
        mod = modules.get(name)
        if isinstance(mod, Factorized) and mod.rank == rank and mod.kind == kind:
            continue
        if mod is None or unsupported_reason(mod) is not None:
            raise ValueError(f"cannot re-apply the edit {e!r}: the model has no prunable layer "
                             f"{name!r} (was the checkpoint saved from a different model?)")
        actual = "conv2d" if isinstance(mod, nn.Conv2d) else "linear"
        if actual != kind:
            raise ValueError(f"edit {e!r} expects a {kind} layer but {name!r} is {actual}")
        new = Factorized.empty_like(mod, rank)
        new.train(mod.training)
        set_module(model, name, new)
    return model
