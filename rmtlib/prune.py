r"""SVD pruning of the weight matrices of any model, by qualified name.

Each layer (:func:`rmtlib.layers.list_layers`: Linear, ``groups=1`` convolutions, the
projections of ``nn.MultiheadAttention``, layers already split) is read as its matrix ``W``
with singular value decomposition :math:`W = \sum_i s_i u_i v_i^\top` (descending :math:`s_i`,
``p = min(m, n)`` terms).  Actions:

* :func:`truncate` -- replace ``W`` by its best rank-``k`` approximation
  :math:`W_k = \sum_{i \le k} s_i u_i v_i^\top`, in place (same shape; by Eckart--Young
  :math:`\|W - W_k\|_F^2 = \sum_{i > k} s_i^2`).  A projection that later training refills.
* :func:`factorize` -- replace the layer by two layers computing :math:`W_k` with
  :math:`W_1 = S_k^{1/2} V_k^\top` (``k x n``, no bias) then :math:`W_2 = U_k S_k^{1/2}`
  (``m x k``, the original bias), as in the papers; a convolution becomes a ``C_in -> k``
  convolution with the original kernel size, stride, padding, dilation and padding mode, then a
  ``k -> C_out`` convolution with kernel 1.  Done only when it lowers the parameter count,
  :math:`k(m + n) < mn`, and the layer may be replaced (:attr:`rmtlib.layers.Layer.splittable`);
  otherwise the layer is truncated in place instead (the edit's ``note`` says why).
* :func:`shrink` -- multiply the singular values at or below a threshold (default the
  BEMA edge :math:`\hat s_+`) by a factor (the authors halve them).
* :func:`random_bulk` -- keep the top ``n_top`` components plus a uniformly random subset
  of ``n_random`` of the others (the authors' fourth algorithm), factorized when that
  lowers the parameter count.

Split layers are :class:`Factorized` (an ``nn.Sequential`` of the two factors).  At a later
event such a layer is re-analysed, by default, as the product :math:`W_2 W_1` (the map it
computes; ``PrunePolicy(split_view="factors")`` analyses each factor instead, as the authors'
code): re-pruning it to a lower rank replaces the pair by a smaller one.
:func:`structural_edits` / :func:`apply_structural_edits` describe and replay such edits as
plain data (used by the checkpoints of :mod:`rmtlib.train`).

:func:`prune_model` applies a :class:`PrunePolicy` to every selected layer and returns a
:class:`PruneReport`.  It works where the weights live (GPU eigensolvers for a CUDA model) and
writes back in the weights' dtype (float16/bfloat16 weights are decomposed in float32 or float64,
:mod:`rmtlib.linalg`).  **Memory**: the first pass decides every layer from its eigenvalues alone
(nothing is changed if any decision fails); the second recomputes the singular vectors of one
layer at a time, for the layers it edits, so the extra memory is that of one layer's
decomposition, not of all of them.
"""

from __future__ import annotations

import inspect
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._progress import bar as progress_bar
from ._threads import single_threaded
from .layers import (
    SPLIT_VIEWS,
    Factorized,
    Layer,
    check_finite_weights,
    check_layer_filter,
    find_layer,
    head_layers,
    is_selected,
    list_layers,
    set_module,
    unsupported_reason,
)
from .linalg import gram_eigenvalues
from .seeding import check_random_state
from .spectra import (
    Decomposition,
    check_gof_rule,
    decompose,
    no_analysable_layer,
)
from .validation import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_module,
    check_probability,
    check_seed,
    describe,
)

__all__ = [
    "ACTIONS",
    "REPORT_COLUMNS",
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
    """Number of scalar parameters of ``model`` (shared parameters counted once)."""
    check_module(model)
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LayerEdit:
    """What one action did to one layer."""

    name: str
    action: str                 #: factorize | truncate | shrink | random_bulk
    shape: tuple[int, int]      #: matrix shape (m, n)
    rank_before: int            #: the layer's rank before: p = min(m, n), or a pair's inner width
    rank_after: int             #: components kept (for shrink: the values left unscaled)
    params_before: int          #: parameters of the layer (weight + bias)
    params_after: int
    new_names: tuple[str, ...]  #: qualified names of the layer(s) after the edit
    note: str | None = None     #: e.g. why a layer was truncated in place instead of split
    parameters: tuple[str, ...] = ()  #: qualified names of the parameters written or created


# --------------------------------------------------------------------------- single edits


def _saves_parameters(k: int, shape: tuple[int, int]) -> bool:
    m, n = shape
    return k * (m + n) < m * n


def _bias(layer: Layer):
    return layer.module.bias if layer.kind != "attention" else None


def _replace(model: nn.Module, layer: Layer, A: torch.Tensor, B: torch.Tensor) -> nn.Module:
    """Put a :class:`Factorized` pair ``B @ A`` in place of ``layer``."""
    new = Factorized.empty_like(layer.module, A.shape[0])
    bias = _bias(layer)
    with torch.no_grad():
        new[0].weight.copy_(A.reshape(new[0].weight.shape).to(new[0].weight.dtype))
        new[1].weight.copy_(B.reshape(new[1].weight.shape).to(new[1].weight.dtype))
        if bias is not None:
            new[1].bias.copy_(bias)
    new.train(layer.module.training)
    set_module(model, layer.name, new)
    return new


def _write_pair(layer: Layer, A: torch.Tensor, B: torch.Tensor) -> bool:
    """Write ``B @ A`` into the existing factors of a pair (zero-padded to its rank); False if
    the pair is nested and cannot be written in place."""
    first, second = layer.module[0], layer.module[1]
    if isinstance(first, Factorized) or isinstance(second, Factorized):
        return False
    r, k = layer.module.rank, A.shape[0]
    A_pad = A.new_zeros((r, A.shape[1]))
    B_pad = B.new_zeros((B.shape[0], r))
    A_pad[:k], B_pad[:, :k] = A, B
    with torch.no_grad():
        first.weight.copy_(A_pad.reshape(first.weight.shape).to(first.weight.dtype))
        second.weight.copy_(B_pad.reshape(second.weight.shape).to(second.weight.dtype))
    return True


def _edit(model: nn.Module, layer: Layer, dec: Decomposition, idx, *, action: str,
          split: bool, values: torch.Tensor | None = None, rank_after: int | None = None,
          note: str | None = None) -> LayerEdit:
    """Keep the components ``idx`` of ``layer`` (with the singular values ``values`` if given):
    as a new pair if ``split``, else in place."""
    params = layer.params
    k = len(idx)
    rank_after = k if rank_after is None else rank_after
    new_names = (layer.name,)
    if split or layer.kind == "factorized":
        A, B = dec.factors(idx, values)
        if split or not _write_pair(layer, A, B):
            new = _replace(model, layer, A, B)
            params_after = sum(p.numel() for p in new.parameters())
            new_names = (f"{layer.name}.0", f"{layer.name}.1")
            created = tuple(f"{layer.name}.{n}" for n, _ in new.named_parameters())
            return LayerEdit(layer.name, action, dec.shape, layer.rank, rank_after, params,
                             params_after, new_names, note, created)
    else:
        layer.write(dec.truncated(idx))
    return LayerEdit(layer.name, action, dec.shape, layer.rank, rank_after, params, params,
                     new_names, note, layer.parameter_names)


def _split_or_note(layer: Layer, k: int) -> tuple[bool, str | None]:
    """Whether a rank-``k`` edit of ``layer`` splits it, and the note when it does not."""
    if not layer.splittable:
        return False, f"truncated in place, not split: {layer.in_place_reason}"
    if layer.kind == "factorized":
        return True, None
    if _saves_parameters(k, layer.shape):
        return True, None
    m, n = layer.shape
    return False, f"truncated in place: a split at rank {k} would not save parameters ({k}({m}+{n}) >= {m}*{n})"


def _check_rank(k, p: int, name: str, what: str = "k") -> int:
    k = check_int(k, what)
    if not 1 <= k <= p:
        raise ValueError(
            f"{what} = {k} is out of range for layer {name!r}: its matrix has rank at most "
            f"{p}, so use 1 <= {what} <= {p}"
        )
    return k


def _prepare(model: nn.Module, name: str, split_view: str) -> tuple[Layer, Decomposition]:
    check_module(model)
    layer = find_layer(model, name, split_view=split_view)
    mat = layer.matrix()
    check_finite_weights(mat, name)
    return layer, decompose(mat)


def truncate(model: nn.Module, name: str, k: int, *, split_view: str = "product") -> LayerEdit:
    """Replace the matrix of layer ``name`` by its best rank-``k`` approximation, in place
    (same shape, same ``Parameter`` objects; for a split pair, the factors are overwritten and
    padded with zeros).  ``1 <= k <= rank`` else ``ValueError``."""
    layer, dec = _prepare(model, name, split_view)
    k = _check_rank(k, layer.rank, name)
    return _edit(model, layer, dec, torch.arange(k), action="truncate", split=False)


def factorize(model: nn.Module, name: str, k: int, *, force: bool = False,
              split_view: str = "product") -> LayerEdit:
    """Replace layer ``name`` by a rank-``k`` :class:`Factorized` pair if that lowers the
    parameter count (``k(m + n) < mn``) and the layer may be replaced, else truncate it to rank
    ``k`` in place.  The returned edit's ``action`` and ``note`` say which happened.
    ``force=True`` always splits a splittable layer (e.g. to check the factorization at full
    rank)."""
    force = check_bool(force, "force")
    layer, dec = _prepare(model, name, split_view)
    k = _check_rank(k, layer.rank, name)
    split, note = _split_or_note(layer, k)
    if force and layer.splittable:
        split, note = True, None
    return _edit(model, layer, dec, torch.arange(k), action="factorize" if split else "truncate",
                 split=split, note=note)


def _check_factor(factor, name: str = "shrink factor") -> float:
    return check_float(factor, name, low=0.0)


def _bema_edge(dec: Decomposition, **fit_opts) -> float:
    from .bema import fit_bema

    return fit_bema(dec.eigenvalues(), shape=dec.shape, **fit_opts).edge_singular


def _shrink_edit(model, layer: Layer, dec: Decomposition, n_above: int, factor: float) -> LayerEdit:
    if layer.kind == "factorized":  # rewrite the pair's rank-r map with the new values
        values = dec.s[: layer.rank].clone()
        values[n_above:] *= factor
        return _edit(model, layer, dec, torch.arange(layer.rank), action="shrink", split=False,
                     values=values, rank_after=n_above)
    params = layer.params
    layer.write(dec.scaled(torch.arange(n_above, layer.rank), factor))
    return LayerEdit(layer.name, "shrink", dec.shape, layer.rank, n_above, params, params,
                     (layer.name,), None, layer.parameter_names)


def shrink(model: nn.Module, name: str, threshold: float | None = None, factor: float = 0.5,
           *, split_view: str = "product", **fit_opts) -> LayerEdit:
    """Multiply the singular values ``s_i <= threshold`` of layer ``name`` by ``factor``.

    ``threshold`` is in singular-value units; by default the BEMA edge
    :math:`\\hat s_+ = \\sqrt{N \\hat\\lambda_+}` (``fit_opts`` -- ``alpha``, ``beta``,
    ``paper_exact`` -- go to :func:`rmtlib.bema.fit_bema`).  The authors use ``factor = 0.5``.
    ``rank_after`` in the returned edit is the number of values left unscaled.
    """
    factor = _check_factor(factor, "factor")
    unknown = sorted(set(fit_opts) - {"alpha", "beta", "paper_exact"})
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for shrink; BEMA options: alpha, beta, "
                         "paper_exact")
    if threshold is not None:
        threshold = check_float(threshold, "threshold", low=0.0, what="a number (singular-value units)")
    layer, dec = _prepare(model, name, split_view)
    if threshold is None:
        threshold = _bema_edge(dec, **fit_opts)
    n_above = int((dec.s[: layer.rank] > threshold).sum())
    return _shrink_edit(model, layer, dec, n_above, factor)


def _random_indices(p: int, n_top: int, n_random: int, rng) -> torch.Tensor:
    rest = rng.choice(np.arange(n_top, p), size=n_random, replace=False) if n_random else []
    return torch.as_tensor(np.concatenate([np.arange(n_top), np.sort(rest)]).astype(np.int64))


def random_bulk(model: nn.Module, name: str, n_top: int, n_random: int, *, random_state=0,
                factorize: bool = True, split_view: str = "product") -> LayerEdit:
    """Keep the ``n_top`` largest singular components of layer ``name`` plus ``n_random``
    chosen uniformly without replacement among the others (the authors' fourth
    algorithm); factorize the kept components when that lowers the parameter count (and
    ``factorize`` is True), else write them back as a same-shape weight.

    ``random_state`` is an int (default 0: deterministic), a NumPy ``Generator`` or None for
    fresh entropy (see :func:`rmtlib.seeding.check_random_state`).
    """
    factorize = check_bool(factorize, "factorize")
    rng = check_random_state(random_state)
    layer, dec = _prepare(model, name, split_view)
    p = layer.rank
    n_top = check_int(n_top, "n_top", minimum=0, maximum=p)
    n_random = check_int(n_random, f"n_random (the components below the top {n_top}) for layer "
                         f"{name!r}", minimum=0, maximum=p - n_top)
    if n_top + n_random < 1:
        raise ValueError("random_bulk must keep at least one component (n_top + n_random >= 1)")
    idx = _random_indices(p, n_top, n_random, rng)
    split, note = _split_or_note(layer, len(idx)) if factorize else (False, None)
    return _edit(model, layer, dec, idx, action="random_bulk", split=split, note=note)


# --------------------------------------------------------------------------- the policy


def keep_count(spikes: int, p: int, keep_fraction: float, min_rank: int = 1) -> int:
    """The papers' rule: ``keep = spikes + int(f * (p - spikes))``, at least ``min_rank``,
    at most ``p``."""
    p = check_int(p, "p", minimum=1)
    spikes = check_int(spikes, "spikes", minimum=0, maximum=p)
    keep_fraction = check_probability(keep_fraction, "keep_fraction")
    min_rank = check_int(min_rank, "min_rank", minimum=1)
    keep = spikes + int(keep_fraction * (p - spikes))
    return int(min(max(keep, min_rank), p))


def _selector_options(selector: str) -> tuple[str, ...]:
    from .rank import METHODS

    return tuple(n for n, prm in inspect.signature(METHODS[selector]).parameters.items()
                 if prm.kind is prm.KEYWORD_ONLY)


@dataclass
class PrunePolicy:
    """How :func:`prune_model` chooses and applies a rank to each layer.

    Parameters
    ----------
    selector : str
        ``"bema"`` (the spikes above :math:`\\hat\\lambda_+`) or a method of
        :func:`rmtlib.rank.select_rank`; its rank is the number of "spikes" kept in full.
    selector_opts : dict
        Options of a non-BEMA selector (e.g. ``{"k": 20}`` for ScreeNOT); BEMA's are
        ``alpha`` and ``beta`` below.
    keep_fraction : float or callable ``epoch -> float``
        Fraction ``f`` of the bulk (the ``p - spikes`` other components, ``p = min(m, n)``)
        kept: ``keep = spikes + int(f * bulk)``.  Paper 1: 0.45; paper 2:
        ``lambda e: max(0, 1 - e / 300)``.
    action : {"factorize", "truncate", "shrink", "random_bulk"}
        ``shrink`` scales the components below the selector's threshold by
        ``shrink_factor`` (``keep_fraction`` is then unused); ``random_bulk`` keeps the
        spikes plus ``keep - spikes`` random bulk components.
    gof : float, "calibrated" or None
        The gate of the BEMA selector: its fit must pass this acceptance rule
        (:func:`rmtlib.gof.accept`), else the layer is left untouched and reported.  None
        disables it.  Other selectors are not gated by an MP fit: each has its own
        applicability check (a layer it cannot handle is left alone with its message).
    alpha, beta : float
        BEMA's trimmed fraction and Tracy--Widom tail probability (:func:`rmtlib.bema.fit_bema`).
    min_rank : int
        Never keep fewer components in any layer (default 1).
    head : "auto", list of names or None
        The classifier head -- the layer(s) producing the model's outputs -- keeps at least its
        output width (the authors' guard: a 10-class output layer cut to rank 9 loses a class).
        ``"auto"`` finds the head by tracing the model (:func:`rmtlib.layers.head_layers`); a list
        names the layers; None protects nothing.
    layers : list of qualified names or predicate ``(name, module) -> bool``, optional
        Restrict pruning (default: every analysable layer).  A name also selects the
        layers below it, so a split layer's factors stay selected at later events.
    split_view : {"product", "factors"}
        How an already split layer is analysed at a later event: as the product
        :math:`W_2 W_1` (default: the layer's actual map) or as its two factors (the authors'
        code; :math:`S^{1/2}V^\\top` and :math:`US^{1/2}` have no noise bulk of their own).
    paper_exact : bool
        Reproduce the authors' code: the spike count used for ``keep`` is one too large
        (their ``gt`` counts one extra), BEMA uses their formula quirks
        (:func:`rmtlib.bema.fit_bema`), and ``random_bulk`` samples ``keep`` (not
        ``keep - spikes``) bulk components on top of the true spikes, as their
        ``algThree``.
    shrink_factor : float
        Factor for ``action="shrink"`` (authors: 0.5).
    seed : int, optional
        Seed for ``random_bulk``; default the seed passed to :func:`prune_model` (the training
        seed under :class:`rmtlib.train.RMTPruning`), else 0.  Combined with the epoch and the
        layer name, so events and layers draw differently but reproducibly.
    """

    selector: str = "bema"
    selector_opts: dict = field(default_factory=dict)
    keep_fraction: float | Callable[[int], float] = 0.45
    action: str = "factorize"
    gof: float | str | None = 0.1
    alpha: float = 0.2
    beta: float = 0.1
    min_rank: int = 1
    head: str | Sequence[str] | None = "auto"
    layers: Sequence[str] | Callable[[str, nn.Module], bool] | None = None
    split_view: str = "product"
    paper_exact: bool = False
    shrink_factor: float = 0.5
    seed: int | None = None

    def __post_init__(self):
        from .bema import check_alpha, check_beta
        from .rank import available_methods

        check_choice(self.action, "action", ACTIONS)
        if not isinstance(self.selector, str) or self.selector not in available_methods():
            raise ValueError(f"unknown selector {self.selector!r}; valid: {list(available_methods())}")
        if not isinstance(self.selector_opts, Mapping):
            raise ArgumentTypeError(f"selector_opts must be a dict, got {describe(self.selector_opts)}")
        self.selector_opts = dict(self.selector_opts)
        if self.selector == "bema" and self.selector_opts:
            raise ValueError(f"BEMA's options are set with PrunePolicy(alpha=..., beta=...), got "
                             f"selector_opts={self.selector_opts!r}")
        valid = _selector_options(self.selector)
        unknown = sorted(set(self.selector_opts) - set(valid))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for selector {self.selector!r}; valid "
                             f"options: {', '.join(valid) or 'none'}")
        if not callable(self.keep_fraction):
            self.keep_fraction = check_probability(self.keep_fraction, "keep_fraction")
        self.gof = check_gof_rule(self.gof, "gof", allow_none=True)
        self.alpha, self.beta = check_alpha(self.alpha), check_beta(self.beta)
        self.min_rank = check_int(self.min_rank, "min_rank", minimum=1)
        if not (self.head is None or self.head == "auto"):
            if isinstance(self.head, str) or not isinstance(self.head, Sequence) \
                    or not all(isinstance(h, str) for h in self.head):
                raise ArgumentTypeError(f"head must be 'auto', a list of layer names or None, got "
                                        f"{describe(self.head)}")
            self.head = list(self.head)
        if isinstance(self.layers, str):
            raise ArgumentTypeError(f"layers must be a list of names or a predicate, got the "
                                    f"string {self.layers!r}; wrap it in a list")
        check_choice(self.split_view, "split_view", SPLIT_VIEWS)
        self.paper_exact = check_bool(self.paper_exact, "paper_exact")
        self.shrink_factor = _check_factor(self.shrink_factor, "shrink_factor")
        if self.seed is not None:
            self.seed = check_seed(self.seed, "seed")

    def fraction(self, epoch: int | None) -> float:
        """The keep fraction at ``epoch`` (validated to lie in [0, 1])."""
        f = self.keep_fraction
        if callable(f):
            if epoch is None:
                raise ValueError("keep_fraction is a function of the epoch: pass epoch=...")
            f = f(epoch)
            return check_probability(f, f"keep_fraction({epoch})")
        return float(f)

    def to_dict(self) -> dict:
        """The policy as plain data (a callable keep fraction or filter is shown by its repr)."""
        out = asdict(self)
        for k in ("keep_fraction", "layers"):
            if callable(out[k]):
                out[k] = repr(out[k])
        return out


#: Columns of :attr:`PruneReport.layers`.
REPORT_COLUMNS = [
    "name", "type", "shape", "p", "spikes", "keep", "action", "rank_before", "rank_after",
    "params_before", "params_after", "new_names", "gof", "accepted", "sigma2", "lambda_plus",
    "s_plus", "threshold", "head", "reason", "note", "seconds",
]


def _plain_value(v):
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, tuple):
        return list(v)
    return v


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

    @property
    def skipped(self) -> dict[str, str]:
        """``{name: reason}`` of every layer left untouched."""
        d = self.layers[self.layers.action == "skipped"]
        return dict(zip(d.name, d.reason))

    def summary(self) -> str:
        """One line, e.g. ``layers.0: 1000x784 -> factorize@353; layers.1: skipped``."""
        parts = []
        for r in self.layers.itertuples():
            m, n = r.shape
            what = "skipped" if r.action == "skipped" else f"{r.action}@{r.rank_after}"
            parts.append(f"{r.name}: {m}x{n} -> {what}")
        return "; ".join(parts) + f" | params {self.params_before} -> {self.params_after}"

    def to_dict(self) -> dict:
        """Plain data (JSON- and checkpoint-friendly); :meth:`from_dict` reads it back."""
        rows = [{k: _plain_value(v) for k, v in r.items()}
                for r in self.layers.to_dict("records")]
        return {"layers": rows, "params_before": int(self.params_before),
                "params_after": int(self.params_after), "keep_fraction": float(self.keep_fraction),
                "epoch": self.epoch, "seconds": float(self.seconds),
                "edits": [{k: _plain_value(v) for k, v in asdict(e).items()} for e in self.edits]}

    @classmethod
    def from_dict(cls, data: Mapping) -> PruneReport:
        """The report saved by :meth:`to_dict`."""
        try:
            rows = [dict(r, shape=tuple(r["shape"]), new_names=tuple(r["new_names"]))
                    for r in data["layers"]]
            df = _frame(rows)
            edits = [LayerEdit(**dict(e, shape=tuple(e["shape"]), new_names=tuple(e["new_names"]),
                                      parameters=tuple(e.get("parameters", ()))))
                     for e in data["edits"]]
            return cls(df, int(data["params_before"]), int(data["params_after"]),
                       float(data["keep_fraction"]), data["epoch"], edits, float(data["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a PruneReport record: {exc}") from None

    def __repr__(self) -> str:
        return f"PruneReport({self.summary()})"


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for c in ("spikes", "keep"):
        df[c] = df[c].astype("Int64")
    for c in ("accepted", "head"):
        df[c] = df[c].astype("boolean")
    for c in ("reason", "note"):  # text or None, whether rows came fresh or from plain data
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


@dataclass
class _Plan:
    layer: Layer
    action: str
    keep: int
    split: bool = False
    idx: torch.Tensor | None = None
    n_above: int = 0
    note: str | None = None
    factor: float = 0.5


def _layer_rng(seed: int, epoch: int | None, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch or 0, zlib.crc32(name.encode())]))


def _decide(layer: Layer, policy: PrunePolicy, f: float, heads: set[str], seed: int,
            epoch: int | None, row: dict) -> tuple[_Plan | None, str | None]:
    """Pass 1 for one layer: fill ``row`` and return the plan (None: leave it alone) and, when
    the selector could not be applied, its error message."""
    from .bema import fit_bema
    from .gof import accept
    from .rank import select_rank

    mat = layer.matrix()
    lam, _ = gram_eigenvalues(mat)
    del mat
    m, n = layer.shape
    p, rank = min(m, n), layer.rank
    fit, fit_error = None, None
    try:
        fit = fit_bema(lam, shape=(m, n), alpha=policy.alpha, beta=policy.beta,
                       paper_exact=policy.paper_exact)
    except ValueError as exc:  # e.g. an all-zero bulk
        fit_error = str(exc)
    if fit is not None:
        row.update(gof=fit.gof, sigma2=fit.sigma2, lambda_plus=fit.lambda_plus,
                   s_plus=fit.edge_singular)
    if policy.selector == "bema":
        if fit is None:
            row["reason"] = f"BEMA fit failed: {fit_error}"
            if layer.kind == "factorized" and rank < p:
                row["reason"] += f" (a rank-{rank} product has {p - rank} zero eigenvalues)"
            return None, None
        verdict = accept(fit, policy.gof) if policy.gof is not None else None
        row["accepted"] = None if verdict is None else bool(verdict)
        spikes, threshold = fit.n_spikes, fit.edge_singular
        if policy.paper_exact:
            spikes = min(spikes + 1, p)  # the authors' gt counts one extra
        if verdict is not None and not verdict:
            why = (f"goodness of fit {fit.gof:.4g} fails the rule {verdict.rule} "
                   f"(cutoff {verdict.cutoff:.4g}): the bulk is not Marchenko-Pastur")
            if layer.kind == "factorized" and rank < p:
                why += f" (a rank-{rank} product has {p - rank} zero eigenvalues)"
            row.update(spikes=spikes, threshold=threshold, reason=why)
            return None, None
    else:
        try:
            d = select_rank(lam, policy.selector, shape=(m, n), **policy.selector_opts)
        except ValueError as exc:
            row["reason"] = f"selector {policy.selector} is not applicable: {exc}"
            return None, str(exc)
        spikes, threshold = min(int(d.rank), p), float(d.threshold)
    min_rank = policy.min_rank
    if layer.name in heads:
        row["head"] = True
        min_rank = max(min_rank, m)
    keep = min(keep_count(spikes, p, f, min(min_rank, p)), rank)
    row.update(spikes=spikes, keep=keep, threshold=threshold)
    if policy.action == "shrink":
        n_above = int(np.count_nonzero(np.sqrt(max(m, n) * lam[::-1][:rank]) > threshold))
        if n_above >= rank:
            row["reason"] = "no singular value at or below the threshold"
            return None, None
        return _Plan(layer, "shrink", keep, n_above=n_above), None
    if keep >= rank:
        if layer.name in heads:
            row["reason"] = (f"classifier head (produces the model's {m} outputs): keeps at least "
                             f"{min(m, p)} components, its full rank {rank}")
        elif layer.kind == "factorized":
            row["reason"] = f"keeps its current rank ({keep} >= {rank}, the inner width of the pair)"
        else:
            row["reason"] = f"keeps the full rank ({keep} >= p = {p})"
        return None, None
    idx = None
    if policy.action == "random_bulk":
        n_top = max(spikes - 1, 0) if policy.paper_exact else spikes
        n_random = min(keep, rank - n_top) if policy.paper_exact else keep - spikes
        idx = _random_indices(rank, n_top, n_random, _layer_rng(seed, epoch, layer.name))
        keep = len(idx)
    if policy.action == "truncate":
        split, note = False, None
    else:
        split, note = _split_or_note(layer, keep)
    return _Plan(layer, policy.action, keep, split, idx, note=note), None


def _apply(model: nn.Module, plan: _Plan) -> LayerEdit:
    dec = decompose(plan.layer.matrix())
    if plan.action == "shrink":
        return _shrink_edit(model, plan.layer, dec, plan.n_above, plan.factor)
    idx = torch.arange(plan.keep) if plan.idx is None else plan.idx
    action = plan.action
    if action == "factorize" and not plan.split:
        action = "truncate"
    return _edit(model, plan.layer, dec, idx, action=action, split=plan.split, note=plan.note)


def prune_model(model: nn.Module, policy: PrunePolicy | None = None, *,
                epoch: int | None = None, seed: int | None = None,
                progress: bool = False) -> PruneReport:
    """Apply ``policy`` to every selected layer of ``model`` (in place).

    Pass 1, for each layer, from its eigenvalues only: fit BEMA; with the BEMA selector, leave
    the layer untouched (reported with the reason) if ``policy.gof`` rejects the fit; take
    ``spikes`` from the selector (``+1`` with ``paper_exact``); compute
    ``keep = spikes + int(f * (p - spikes))`` clipped to ``[min_rank, rank]`` (the head: at
    least its output width).  A layer kept at its full rank is reported as skipped, as are
    unsupported layers.  Pass 2 decomposes each layer to edit and applies the action.

    Raises ``ValueError`` -- before any layer is modified -- for bad arguments, unknown names in
    ``policy.layers``, non-finite weights, a model without analysable layer, or a selector that
    fails on every layer (e.g. ScreeNOT without its ``k``).

    ``seed`` drives ``random_bulk`` when ``policy.seed`` is None (default 0); ``progress`` shows
    a progress bar over the layers.
    """
    check_module(model)
    policy = PrunePolicy() if policy is None else policy
    if not isinstance(policy, PrunePolicy):
        raise ArgumentTypeError(f"policy must be a PrunePolicy, got {describe(policy)}")
    if epoch is not None:
        epoch = check_int(epoch, "epoch", minimum=0)
    seed = 0 if seed is None else check_seed(seed)
    seed = policy.seed if policy.seed is not None else seed
    progress = check_bool(progress, "progress")
    t_start = time.perf_counter()
    f = policy.fraction(epoch)
    check_layer_filter(model, policy.layers)
    views = list_layers(model, split_view=policy.split_view)
    targets = [la for la in views if is_selected(policy.layers, la.name, la.module)]
    analysable = [la for la in targets if la.ok]
    if not analysable:
        raise no_analysable_layer(targets, "model" if policy.layers is None else "selection of layers")
    for la in analysable:  # fail before touching anything
        with single_threaded(min(la.shape)):
            check_finite_weights(la.matrix(), la.name)
    if policy.head == "auto":
        heads = set(head_layers(model, split_view=policy.split_view))
    else:
        heads = set(policy.head or ())
        unknown = sorted(heads - {la.name for la in views})
        if unknown:
            raise ValueError(f"head names {unknown} are not layers of the model; layers: "
                             f"{[la.name for la in views if la.ok]}")
    params_before = count_parameters(model)
    rows, plans, errors = [], [], []
    la = None
    for la in progress_bar(targets, progress, "deciding"):
        t0 = time.perf_counter()
        m, n = la.shape
        row = {"name": la.name, "type": la.type, "shape": (m, n), "p": min(m, n),
               "rank_before": la.rank, "rank_after": la.rank, "params_before": la.params,
               "params_after": la.params, "new_names": (la.name,), "action": "skipped",
               "reason": la.reason, "head": la.name in heads}
        plan = None
        if la.ok:
            with single_threaded(min(la.shape)):
                plan, err = _decide(la, policy, f, heads, seed, epoch, row)
            if err is not None:
                errors.append(f"{la.name}: {err}")
        if plan is not None:
            plan.factor = policy.shrink_factor
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        plans.append(plan)
    del la
    if errors and len(errors) == len(analysable):
        raise ValueError(f"selector {policy.selector!r} failed on every layer, so nothing was "
                         f"pruned: {errors[0]}")
    edits = []
    todo = [(row, plan) for row, plan in zip(rows, plans) if plan is not None]
    del views, targets, analysable, plans  # no reference may keep a replaced layer alive
    for row, plan in progress_bar(todo, progress, "pruning"):
        t0 = time.perf_counter()
        with single_threaded(min(plan.layer.shape)):
            edit = _apply(model, plan)
        plan.layer = None  # the old module (if replaced) is freed now, not at the end
        edits.append(edit)
        row.update(action=edit.action, rank_after=edit.rank_after,
                   params_after=edit.params_after, new_names=edit.new_names, note=edit.note)
        row["seconds"] += time.perf_counter() - t0
    return PruneReport(_frame(rows), params_before, count_parameters(model), f, epoch, edits,
                       time.perf_counter() - t_start)


# ------------------------------------------------------------------ structural edits


def structural_edits(model: nn.Module) -> list[dict]:
    """The :class:`Factorized` layers of ``model`` as plain data, parents first:
    ``[{"name": "layers.0", "kind": "linear", "rank": 353}, ...]``."""
    check_module(model)
    return [{"name": name, "kind": mod.kind, "rank": mod.rank}
            for name, mod in model.named_modules() if isinstance(mod, Factorized)]


def _kind_of(mod: nn.Module) -> str:
    for cls, kind in ((nn.Conv1d, "conv1d"), (nn.Conv2d, "conv2d"), (nn.Conv3d, "conv3d")):
        if isinstance(mod, cls):
            return kind
    return "linear"


def apply_structural_edits(model: nn.Module, edits: Sequence[dict]) -> nn.Module:
    """Replace the layers named in ``edits`` (from :func:`structural_edits`) by empty
    :class:`Factorized` pairs of the recorded rank, so that a state dict of the pruned
    model loads.  Layers already factorized at that rank are left alone."""
    check_module(model)
    if isinstance(edits, (str, Mapping)) or not isinstance(edits, Sequence):
        raise ArgumentTypeError(f"edits must be a list of dicts from structural_edits, got "
                                f"{describe(edits)}")
    for e in edits:
        try:
            name, kind, rank = e["name"], e["kind"], int(e["rank"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"malformed structural edit {e!r}; expected name/kind/rank") from None
        modules = dict(model.named_modules())
        mod = modules.get(name)
        if isinstance(mod, Factorized) and mod.rank == rank and mod.kind == kind:
            continue
        if isinstance(mod, Factorized):
            actual = mod.kind
        elif mod is None or not name or unsupported_reason(mod) is not None \
                or isinstance(mod, nn.MultiheadAttention):
            raise ValueError(f"cannot re-apply the edit {e!r}: the model has no prunable layer "
                             f"{name!r} (was the checkpoint saved from a different model?)")
        else:
            actual = _kind_of(mod)
        if actual != kind:
            raise ValueError(f"edit {e!r} expects a {kind} layer but {name!r} is {actual}")
        new = Factorized.empty_like(mod, rank)
        new.train(mod.training)
        set_module(model, name, new)
    return model
