r"""Baselines for RMT pruning at the same parameter count: magnitude pruning and random-rank
truncation.

The layers are those of :func:`rmtlib.layers.list_layers` (Linear, ``groups=1`` convolutions,
attention projections, split pairs), restricted by ``layers`` (qualified names, a name also
selecting the layers below it, or a predicate ``(name, module) -> bool``).

* :func:`magnitude_prune` -- unstructured magnitude pruning: zero the smallest-``|w|``
  entries of the weight tensors of the selected layers (biases are never touched) so that
  exactly ``n_params`` of their entries are nonzero.  ``scope="global"`` ranks all entries of
  all selected tensors together (keep the ``n_params`` largest ``|w|``; ties broken by
  position); ``scope="layer"`` keeps in each tensor ``t`` the share
  :math:`n_t \approx n \cdot |t| / \sum_u |u|` of its largest entries (largest-remainder
  rounding, so that :math:`\sum_t n_t = n` exactly; a tensor with fewer nonzero entries than
  its share keeps them all and the rest goes to the others).  The units are parameters: the two
  factors of a split pair are two tensors, the packed ``in_proj_weight`` of an attention module
  is one.  The report's :attr:`BaselineReport.masks` (parameter name -> bool tensor of the
  entries kept) serve :func:`masked_gradients`, which keeps the pruned entries at zero during a
  fine-tuning.
* :func:`random_rank_prune` -- per-layer SVD truncation keeping ``ranks[name]`` components
  chosen uniformly at random (``components="random"``, the control for "does RMT keep the
  *right* components?") or the top ones (``components="top"``, best rank-k approximation,
  Eckart--Young); the kept components are factorized when that lowers the parameter count
  (:func:`rmtlib.prune.random_bulk` / :func:`rmtlib.prune.factorize`), so a layer kept at the
  rank an RMT prune chose has exactly the RMT layer's parameter count.
* :func:`count_nonzero_parameters` -- nonzero scalar parameters of a model (what magnitude
  pruning lowers; :func:`rmtlib.prune.count_parameters` counts stored ones).

Both pruning functions work in place and return a :class:`BaselineReport` with the model's
nonzero parameter counts before and after.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from .layers import check_layer_filter, is_selected, list_layers
from .prune import count_parameters, factorize, random_bulk
from .seeding import check_random_state
from .validation import (
    ArgumentTypeError,
    check_choice,
    check_int,
    check_module,
    describe,
)

__all__ = [
    "SCOPES",
    "BaselineReport",
    "count_nonzero_parameters",
    "magnitude_prune",
    "masked_gradients",
    "prunable_weights",
    "random_rank_prune",
]

SCOPES = ("global", "layer")


def count_nonzero_parameters(model: nn.Module) -> int:
    """Number of nonzero scalar parameters of ``model`` (shared parameters counted once)."""
    check_module(model)
    return int(sum(int(torch.count_nonzero(p.detach())) for p in model.parameters()))


@dataclass
class BaselineReport:
    """Outcome of :func:`magnitude_prune` or :func:`random_rank_prune`.

    ``params_before`` / ``params_after`` are the model's nonzero parameters
    (:func:`count_nonzero_parameters`), ``stored_before`` / ``stored_after`` its stored ones
    (:func:`rmtlib.prune.count_parameters`, lowered only by a factorization); ``layers`` has
    one row per pruned tensor (magnitude) or layer (rank); ``masks`` (magnitude only) maps each
    pruned parameter's qualified name to the bool tensor of its kept entries; ``edits`` (rank
    only) are the :class:`rmtlib.prune.LayerEdit` applied.
    """

    method: str
    params_before: int
    params_after: int
    stored_before: int
    stored_after: int
    layers: pd.DataFrame
    masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    edits: list = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One line: the method and the nonzero parameter counts."""
        return f"{self.method}: nonzero params {self.params_before} -> {self.params_after}"

    def __repr__(self) -> str:
        return f"BaselineReport({self.summary()})"


def prunable_weights(model: nn.Module, layers=None) -> dict[str, torch.Tensor]:
    """The weight parameters of the selected analysable layers: ``{qualified name: Parameter}``
    in model order (a split pair gives its two factors; biases are excluded).  ``layers`` as in
    :func:`magnitude_prune`.  ``ValueError`` if nothing is selected."""
    check_module(model)
    check_layer_filter(model, layers)
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for la in list_layers(model):
        if la.ok and is_selected(layers, la.name, la.module):
            for name in la.parameter_names:
                if name in params:
                    out.setdefault(name, params[name])
    if not out:
        raise ValueError("no analysable layer with weights is selected (layers="
                         f"{layers!r}); see rmtlib.layers.list_layers(model)")
    return out


def _layer_shares(n: int, sizes: list[int], caps: list[int]) -> list[int]:
    """Split ``n`` over tensors proportionally to ``sizes`` (largest remainder), capped by
    ``caps`` (the capped surplus goes to the others, proportionally again)."""
    share = [0] * len(sizes)
    free = [i for i in range(len(sizes)) if caps[i] > 0]
    left = n
    while left > 0 and free:
        total = sum(sizes[i] for i in free)
        raw = {i: left * sizes[i] / total for i in free}
        take = {i: math.floor(raw[i]) for i in free}
        rest = left - sum(take.values())
        for i in sorted(free, key=lambda i: (-(raw[i] - take[i]), i))[:rest]:
            take[i] += 1
        for i in free:
            share[i] += take[i]
        over = 0
        for i in free:
            if share[i] > caps[i]:
                over += share[i] - caps[i]
                share[i] = caps[i]
        left = over
        free = [i for i in free if share[i] < caps[i]]
    return share


def _top_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of the 1-d ``values`` (ties: earlier first)."""
    mask = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    if k:
        order = torch.sort(values, descending=True, stable=True).indices
        mask[order[:k]] = True
    return mask


def magnitude_prune(model: nn.Module, n_params: int, *, scope: str = "global",
                    layers=None) -> BaselineReport:
    """Zero the smallest-``|w|`` weights of the selected layers, in place, so that exactly
    ``n_params`` of their weight entries are nonzero (see the module docstring).

    Parameters
    ----------
    model : nn.Module
    n_params : int
        Nonzero weight entries to keep in the selected layers' weight tensors (biases and
        unselected layers are not counted and not touched); ``0 <= n_params <=`` their current
        number of nonzero entries.
    scope : {"global", "layer"}
        One threshold over all tensors, or the same kept share in each tensor.
    layers : list of qualified names or predicate, optional
        Default: every analysable layer (the classifier head included).

    Returns
    -------
    BaselineReport
        ``masks`` holds the kept entries of each pruned parameter.
    """
    check_module(model)
    scope = check_choice(scope, "scope", SCOPES)
    weights = prunable_weights(model, layers)
    flat = {n: w.detach().reshape(-1).abs() for n, w in weights.items()}
    nonzero = {n: int(torch.count_nonzero(v)) for n, v in flat.items()}
    available = sum(nonzero.values())
    n_params = check_int(n_params, "n_params", minimum=0)
    if n_params > available:
        raise ValueError(f"n_params = {n_params} is more than the {available} nonzero weights of "
                         f"the selected layers ({len(weights)} tensors); use 0 <= n_params <= "
                         f"{available}")
    before, stored = count_nonzero_parameters(model), count_parameters(model)
    names = list(weights)
    if scope == "global":
        allv = torch.cat([flat[n].to(torch.float64).cpu() for n in names])
        keep_all = _top_mask(allv, n_params)
        kept, start = {}, 0
        for n in names:
            size = flat[n].numel()
            kept[n] = keep_all[start:start + size].to(flat[n].device)
            start += size
    else:
        shares = _layer_shares(n_params, [flat[n].numel() for n in names],
                               [nonzero[n] for n in names])
        kept = {n: _top_mask(flat[n], k) for n, k in zip(names, shares)}
    masks, rows = {}, []
    with torch.no_grad():
        for n in names:
            w = weights[n]
            mask = kept[n].reshape(w.shape)
            w.mul_(mask.to(w.dtype))
            masks[n] = mask
            rows.append({"name": n, "shape": tuple(w.shape), "size": w.numel(),
                         "nonzero_before": nonzero[n], "nonzero_after": int(mask.sum()),
                         "kept_share": float(mask.sum()) / w.numel()})
    return BaselineReport(f"magnitude-{scope}", before, count_nonzero_parameters(model),
                          stored, count_parameters(model), pd.DataFrame(rows), masks=masks)


@contextlib.contextmanager
def masked_gradients(model: nn.Module, report: BaselineReport) -> Iterator[None]:
    """Within the block, multiply the gradient of each parameter pruned by
    :func:`magnitude_prune` by its mask, so that SGD (with momentum, weight decay or the L1
    term of :func:`rmtlib.train.fit`, all zero at a zero weight with a fresh optimizer) keeps
    the pruned entries at exactly zero during a fine-tuning."""
    check_module(model)
    if not isinstance(report, BaselineReport) or not report.masks:
        raise ArgumentTypeError(f"report must be a BaselineReport of magnitude_prune (with "
                                f"masks), got {describe(report)}")
    params = dict(model.named_parameters())
    missing = sorted(set(report.masks) - set(params))
    if missing:
        raise ValueError(f"the report's parameters {missing} are not parameters of the model")
    handles = []
    for name, mask in report.masks.items():
        m = mask.to(device=params[name].device, dtype=params[name].dtype)
        handles.append(params[name].register_hook(lambda g, m=m: g * m))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def random_rank_prune(model: nn.Module, ranks: Mapping[str, int], *, random_state,
                      components: str = "random") -> BaselineReport:
    """Truncate each layer ``name`` of ``ranks`` to ``ranks[name]`` singular components, in
    place: chosen uniformly without replacement (``components="random"``) or the largest
    (``"top"``); factorized when ``k(m + n) < mn`` and the layer may be replaced, else written
    back as a same-shape weight of rank ``k``.

    ``ranks`` maps qualified layer names (:func:`rmtlib.layers.list_layers`) to
    ``1 <= k <= rank``; ``random_state`` (int, ``Generator``, ...;
    :func:`rmtlib.seeding.check_random_state`) drives the draws, layer after layer in the
    mapping's order.
    """
    check_module(model)
    if not isinstance(ranks, Mapping):
        raise ArgumentTypeError(f"ranks must be a mapping {{layer name: rank}}, got "
                                f"{describe(ranks)}")
    components = check_choice(components, "components", ("random", "top"))
    rng = check_random_state(random_state)
    known = {la.name: la for la in list_layers(model) if la.ok}
    for name, k in ranks.items():
        if not isinstance(name, str) or name not in known:
            raise ValueError(f"ranks names an unknown layer {name!r}; analysable layers: "
                             f"{sorted(known)}")
        k = check_int(k, f"ranks[{name!r}]", minimum=1, maximum=known[name].rank)
    before, stored = count_nonzero_parameters(model), count_parameters(model)
    edits, rows = [], []
    for name, k in ranks.items():
        if components == "random":
            edit = random_bulk(model, name, 0, int(k), random_state=rng)
        else:
            edit = factorize(model, name, int(k))
        edits.append(edit)
        rows.append({"name": name, "shape": edit.shape, "rank_before": edit.rank_before,
                     "rank_after": edit.rank_after, "action": edit.action,
                     "params_before": edit.params_before, "params_after": edit.params_after})
    return BaselineReport(f"{components}-rank", before, count_nonzero_parameters(model), stored,
                          count_parameters(model), pd.DataFrame(rows), edits=edits)
