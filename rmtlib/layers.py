r"""Which parts of a model are matrix layers, how each is read as a matrix and written back.

**Layers.**  :func:`list_layers` walks a model and returns one :class:`Layer` per weight matrix,
analysable or not (then with the ``reason``):

* ``nn.Linear`` and its subclasses that keep ``nn.Linear.forward`` (e.g. the ``out_proj`` of
  ``nn.MultiheadAttention``): the ``(out, in)`` matrix;
* ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` with ``groups == 1`` (and subclasses keeping
  their ``forward``): the kernel ``(C_out, C_in, *k)`` read as the ``(C_out, C_in * prod(k))``
  matrix, the operator acting on unfolded patches;
* ``nn.MultiheadAttention``: its packed in-projection ``in_proj_weight`` ``(3E, E)`` is read as
  three ``E x E`` blocks, named ``"<mha>.in_proj_weight[q]"``, ``[k]`` and ``[v]`` (or, when the
  key/value widths differ, its ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight``); they are
  edited in place, since the module computes with the packed tensor;
* :class:`Factorized`, a layer already split into two factors by :mod:`rmtlib.prune`: by default
  (``split_view="product"``) one layer whose matrix is the product :math:`W_2 W_1` -- the map the
  pair computes, of rank at most its inner width; with ``split_view="factors"`` its two factors
  are listed as two ordinary layers (the authors' view).

Skipped, with the reason: grouped and depthwise convolutions (a block-diagonal kernel, not one
matrix), transposed convolutions, subclasses with their own ``forward``, layers whose weight is
recomputed by a parametrization or by a legacy forward pre-hook (``nn.utils.weight_norm``,
``spectral_norm``, ``nn.utils.prune``: an edit would be undone at the next forward), weights
shared by several modules (tied weights), lazy modules not yet initialised, matrices smaller
than 2 x 2, and every other module owning a ``weight`` of two or more dimensions (embeddings,
recurrent layers, ...).

**Pruned in place.**  Some modules read a child's ``weight`` directly instead of calling it
(``nn.MultiheadAttention`` its ``out_proj``; ``nn.TransformerEncoderLayer``'s fast path its
``linear1`` / ``linear2``).  Such layers have an ``in_place_reason``: they are truncated in place,
never replaced by two factors.  As a safety net for other such code, :class:`Factorized` also
exposes ``weight`` (the product, in the original layout) and ``bias``.

**Heads.**  :func:`head_layers` finds the layer(s) whose outputs are the model's outputs (the
classifier head) by tracing the model with ``torch.fx``; if the model cannot be traced, the last
analysable layer in module order.  :mod:`rmtlib.prune` keeps their output width.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from .validation import ArgumentTypeError, check_choice, check_int, check_module, describe

__all__ = [
    "SPLIT_VIEWS",
    "Factorized",
    "Layer",
    "check_finite_weights",
    "check_layer_filter",
    "find_layer",
    "get_layer",
    "head_layers",
    "is_selected",
    "layer_matrix",
    "list_layers",
    "main_weight",
    "product_matrix",
    "set_module",
    "tap_matrices",
    "unsupported_reason",
]

#: How a :class:`Factorized` pair is read: as the product ``W2 W1`` or as its two factors.
SPLIT_VIEWS = ("product", "factors")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_KIND = {nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d"}
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

#: Modules that read some children's weights directly (those children are edited in place).
_DIRECT_READERS: tuple[tuple[type, tuple[str, ...], str], ...] = (
    (nn.MultiheadAttention, ("out_proj",), "nn.MultiheadAttention computes with out_proj.weight"),
    (nn.TransformerEncoderLayer, ("linear1", "linear2"),
     "nn.TransformerEncoderLayer's fast path reads linear1/linear2.weight"),
)


# --------------------------------------------------------------------------- the split layer


def _conv_base(module: nn.Module):
    return next((c for c in _CONVS if isinstance(module, c)), None)


def _flat(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


class Factorized(nn.Sequential):
    """A layer replaced by two factors, ``second(first(x))`` with ``W ~ W2 @ W1``.

    ``first`` has no bias; ``second`` carries the original bias.  For a convolution, ``first`` is
    a ``C_in -> rank`` convolution with the original geometry and ``second`` a ``rank -> C_out``
    convolution with kernel 1.  Children are named ``"0"`` and ``"1"``.  ``weight`` is the product
    ``W2 W1`` in the original layer's layout and ``bias`` the second factor's bias, so code that
    reads a layer's ``weight`` directly still computes the same map.
    """

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__(first, second)
        #: The inner width (fixed: a later split of a factor keeps its in/out widths).
        self.rank = int(_first_weight(first).shape[0])
        #: ``"linear"``, ``"conv1d"``, ``"conv2d"`` or ``"conv3d"``.
        self.kind = _CONV_KIND.get(_conv_base(_first_leaf(first)), "linear")

    @property
    def weight(self) -> torch.Tensor:
        """The product ``W2 W1`` shaped as the weight of the layer it replaced."""
        prod = product_matrix(self)
        first = _first_leaf(self[0])
        if self.kind == "linear":
            return prod
        return prod.reshape(prod.shape[0], *_first_weight(first).shape[1:])

    @property
    def bias(self):
        """The bias of the second factor (the original layer's bias), or None."""
        return _last_leaf(self[1]).bias

    @classmethod
    def empty_like(cls, module: nn.Module, rank: int) -> Factorized:
        """Uninitialised factors (zeros) of the right shapes for ``module`` (a Linear or
        convolution layer, or a :class:`Factorized` pair) at ``rank``, on its device and dtype."""
        check_module(module, "module")
        if isinstance(module, Factorized):
            first, second = _first_leaf(module[0]), _last_leaf(module[1])
            template, out_dim = first, _first_weight(second).shape[0]
            has_bias = second.bias is not None
        else:
            template, out_dim = module, None
            has_bias = getattr(module, "bias", None) is not None
        rank = check_int(rank, "rank", minimum=1)
        w = template.weight
        kw = {"device": w.device, "dtype": w.dtype}
        base = _conv_base(template)
        if isinstance(template, nn.Linear):
            out_dim = template.out_features if out_dim is None else out_dim
            first = nn.Linear(template.in_features, rank, bias=False, **kw)
            second = nn.Linear(rank, out_dim, bias=has_bias, **kw)
        elif base is not None and template.groups == 1 and not isinstance(template, _TRANSPOSED):
            out_dim = template.out_channels if out_dim is None else out_dim
            first = base(template.in_channels, rank, template.kernel_size, stride=template.stride,
                         padding=template.padding, dilation=template.dilation, bias=False,
                         padding_mode=template.padding_mode, **kw)
            second = base(rank, out_dim, 1, bias=has_bias, **kw)
        else:
            raise ValueError(f"cannot factorize a {type(module).__name__}: "
                             f"{unsupported_reason(module) or 'unsupported layer type'}")
        out = cls(first, second)
        with torch.no_grad():
            for p in out.parameters():
                p.zero_()
        return out


def _first_leaf(m: nn.Module) -> nn.Module:
    while isinstance(m, Factorized):
        m = m[0]
    return m


def _last_leaf(m: nn.Module) -> nn.Module:
    while isinstance(m, Factorized):
        m = m[1]
    return m


def _first_weight(m: nn.Module) -> torch.Tensor:
    return _first_leaf(m).weight


def product_matrix(module: nn.Module) -> torch.Tensor:
    """The matrix a Linear/convolution layer or a (possibly nested) :class:`Factorized` pair
    computes: ``W`` read as ``(out, in * prod(k))``, or ``W2 @ W1`` for a pair."""
    if isinstance(module, Factorized):
        return product_matrix(module[1]) @ product_matrix(module[0])
    if not isinstance(module, (nn.Linear, *_CONVS)):
        raise ArgumentTypeError(f"product_matrix needs a Linear, convolution or Factorized module, "
                                f"got {describe(module)}")
    return _flat(module.weight)


# --------------------------------------------------------------------------- module checks


def _uninitialised(module: nn.Module) -> bool:
    lazy = nn.modules.lazy.LazyModuleMixin
    return isinstance(module, lazy) and module.has_uninitialized_params()


def _hook_reason(module: nn.Module, kind: str) -> str | None:
    if parametrize.is_parametrized(module):
        return (f"{kind} is parametrized (e.g. weight_norm): its weight is computed, so it "
                "cannot be edited in place; remove the parametrization first")
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor) and not isinstance(w, nn.Parameter):
        hooks = sorted({type(h).__name__ for h in module._forward_pre_hooks.values()}) or ["?"]
        return (f"{kind}'s weight is recomputed before every forward by a hook "
                f"({', '.join(hooks)}: legacy weight_norm, spectral_norm or torch.nn.utils.prune), "
                "so an edit would be undone; remove the hook first (e.g. "
                "torch.nn.utils.remove_weight_norm or torch.nn.utils.prune.remove)")
    return None


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be analysed or pruned as one matrix layer, or None if it can
    (``nn.Linear`` or a ``groups=1`` convolution keeping its class's ``forward``, at least
    2 x 2).  ``nn.MultiheadAttention`` is analysed through its projections (:func:`list_layers`)."""
    check_module(module, "module")
    kind = type(module).__name__
    if _uninitialised(module):
        return f"{kind} is a lazy module whose weight is not initialised yet: run one forward first"
    hook = _hook_reason(module, kind)
    if hook is not None:
        return hook
    if isinstance(module, _TRANSPOSED):
        return (f"transposed convolution ({kind}) is not supported: its kernel maps outputs "
                "to inputs and has no two-layer factorization here")
    base = _conv_base(module)
    if base is not None:
        if type(module).forward is not base.forward \
                or type(module)._conv_forward is not base._conv_forward:
            return (f"{kind} subclasses nn.{base.__name__} with its own forward; only layers "
                    f"computing nn.{base.__name__}.forward are analysed")
        if module.groups != 1:
            if module.groups == module.in_channels:
                return (f"depthwise convolution (groups = C_in = {module.groups}) is not "
                        "supported: its kernel is one filter per channel, not one matrix")
            return (f"grouped convolution (groups={module.groups}) is not supported: the kernel "
                    "is block-diagonal, not one (C_out, C_in*prod(kernel)) matrix")
    elif isinstance(module, nn.Linear):
        if type(module).forward is not nn.Linear.forward:
            return (f"{kind} subclasses nn.Linear and defines its own forward; only layers "
                    "computing nn.Linear.forward are analysed")
    elif isinstance(module, nn.MultiheadAttention):
        return None
    else:
        return (f"{kind} layers are not supported (only nn.Linear, nn.Conv1d/2d/3d and the "
                "projections of nn.MultiheadAttention)")
    m, n = module.weight.shape[0], module.weight[0].numel()
    if m < 2 or n < 2:
        return f"its matrix is {m}x{n}; a spectrum needs at least 2 rows and 2 columns"
    return None


def main_weight(module: nn.Module) -> torch.Tensor | None:
    """The tensor that makes ``module`` a weight layer: its ``weight`` if that is a tensor of
    two or more dimensions (a parameter or, under a parametrization or a legacy hook, a computed
    tensor), the first weight of a recurrent layer, else None (e.g. a module whose only
    multi-dimensional parameters are positional embeddings or layer scales)."""
    check_module(module, "module")
    if isinstance(module, Factorized):
        return _first_weight(module)
    if _uninitialised(module):
        return module.weight if hasattr(module, "weight") else next(module.parameters(recurse=False))
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor) and w.dim() >= 2:
        return w
    if isinstance(module, nn.RNNBase):
        return next((p for p in module.parameters(recurse=False) if p.dim() >= 2), None)
    return None


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of a Linear or convolution layer as a matrix (detached, shares storage):
    ``(out, in)`` or ``(C_out, C_in * prod(kernel))``; for a :class:`Factorized` pair the product
    ``W2 W1`` (a new tensor)."""
    if isinstance(module, Factorized):
        with torch.no_grad():
            return product_matrix(module).detach()
    if not isinstance(module, (nn.Linear, *_CONVS)):
        raise ArgumentTypeError(f"layer_matrix needs an nn.Linear, nn.Conv1d/2d/3d or Factorized "
                                f"module, got {describe(module)}")
    return _flat(module.weight.detach())


def tap_matrices(module: nn.Module) -> torch.Tensor:
    """WeightWatcher-style per-tap slices of a convolution kernel: a ``(taps, C_out, C_in)``
    stack of the matrices ``W[:, :, i, j]`` (``taps = prod(kernel)``)."""
    if _conv_base(module) is None:
        raise ArgumentTypeError(f"tap_matrices needs an nn.Conv1d/2d/3d, got {describe(module)}")
    w = module.weight.detach()
    return w.flatten(2).permute(2, 0, 1)


def check_finite_weights(w: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming layer ``name`` if ``w`` holds NaN or Inf."""
    if not isinstance(w, torch.Tensor):
        raise ArgumentTypeError(f"w must be a torch.Tensor, got {describe(w)}")
    finite = torch.isfinite(w)
    if not bool(finite.all()):
        nbad = int((~finite).sum())
        raise ValueError(
            f"layer {name!r} has {nbad} non-finite (NaN/Inf) weights; the training diverged "
            "or the weights were corrupted -- fix that before analysing or pruning"
        )


# --------------------------------------------------------------------------- the Layer view


@dataclass(frozen=True, eq=False)
class Layer:
    """One weight matrix of a model (see the module docstring).

    ``kind`` is ``"linear"``, ``"conv"``, ``"attention"`` (a q/k/v block of a
    ``MultiheadAttention``), ``"factorized"`` (a split pair read as its product) or None for a
    skipped layer, whose ``reason`` says why.  ``in_place_reason`` is set for layers that are
    edited in place and never split (why).
    """

    name: str
    module: nn.Module
    kind: str | None
    reason: str | None = None
    param: str = "weight"           #: attribute of ``module`` holding the matrix
    block: int | None = None        #: attention: 0, 1, 2 for the q, k, v rows of in_proj_weight
    in_place_reason: str | None = None
    owner: str | None = None        #: qualified name of ``module`` (default: ``name``)

    @property
    def module_name(self) -> str:
        """Qualified name of the module holding the matrix (the attention module for a block)."""
        return self.name if self.owner is None else self.owner

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Qualified names of the parameters an in-place edit of the layer writes."""
        prefix = f"{self.module_name}." if self.module_name else ""
        if self.kind == "factorized":
            return tuple(f"{prefix}{n}" for n, _ in self.module.named_parameters()
                         if n.endswith("weight"))
        return (f"{prefix}{self.param}",)

    @property
    def ok(self) -> bool:
        """Whether the layer can be analysed."""
        return self.reason is None

    @property
    def type(self) -> str:
        """The module's class, plus the projection for attention blocks."""
        cls = type(self.module).__name__
        if self.kind == "attention":
            return f"{cls}.{self.param}" + ("" if self.block is None else f"[{'qkv'[self.block]}]")
        return cls

    @property
    def tensor(self) -> torch.Tensor | None:
        """The stored tensor the matrix comes from (its device and dtype are the layer's)."""
        if self.kind == "attention":
            return getattr(self.module, self.param)
        return main_weight(self.module)

    def _rows(self) -> slice | None:
        if self.block is None:
            return None
        e = self.module.embed_dim
        return slice(self.block * e, (self.block + 1) * e)

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)`` of the matrix (``(0, 0)`` for an uninitialised lazy module)."""
        if self.kind == "factorized":
            first, second = _first_leaf(self.module[0]), _last_leaf(self.module[1])
            return int(second.weight.shape[0]), int(first.weight[0].numel())
        w = self.tensor
        if isinstance(w, nn.parameter.UninitializedParameter):
            return (0, 0)
        if self.block is not None:
            return int(self.module.embed_dim), int(w.shape[1])
        return int(w.shape[0]), int(w[0].numel())

    @property
    def rank(self) -> int:
        """The largest rank the layer can have now: ``min(m, n)``, or the inner width of a
        factorized pair."""
        p = min(self.shape)
        if self.kind != "factorized":
            return p
        return min([p] + [m.rank for m in self.module.modules() if isinstance(m, Factorized)])

    @property
    def params(self) -> int:
        """Parameters the layer owns: weight and bias (for an attention block its rows of the
        packed weight and bias; for a factorized pair both factors)."""
        if self.kind == "attention":
            m, n = self.shape
            bias = self.module.in_proj_bias is not None
            return m * n + (m if bias else 0)
        if isinstance(self.tensor, nn.parameter.UninitializedParameter):
            return 0
        return sum(p.numel() for p in self.module.parameters(recurse=self.kind == "factorized"))

    @property
    def splittable(self) -> bool:
        """Whether the layer may be replaced by two factors (else it is edited in place)."""
        return self.kind in ("linear", "conv", "factorized") and self.in_place_reason is None

    def matrix(self) -> torch.Tensor:
        """The ``m x n`` matrix, detached: a view of the weight, or the product of a pair."""
        if self.kind == "factorized":
            return layer_matrix(self.module)
        if self.kind == "attention":
            w = getattr(self.module, self.param).detach()
            rows = self._rows()
            return w if rows is None else w[rows]
        return _flat(self.tensor.detach())

    def write(self, W: torch.Tensor) -> None:
        """Copy the ``m x n`` matrix ``W`` into the layer's weight, in place, in its dtype."""
        if self.kind not in ("linear", "conv", "attention"):
            raise ValueError(f"layer {self.name!r} ({self.kind}) cannot be written in place")
        target = getattr(self.module, self.param)
        rows = self._rows()
        with torch.no_grad():
            dst = target if rows is None else target[rows]
            dst.copy_(W.reshape(dst.shape).to(device=dst.device, dtype=dst.dtype))


def _parents(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def _in_place_reason(name: str, modules: dict[str, nn.Module]) -> str | None:
    if not name:
        return "the model itself is this layer, so it cannot be replaced by two"
    parent_name, _, child = name.rpartition(".")
    parent = modules.get(parent_name)
    for cls, children, why in _DIRECT_READERS:
        if isinstance(parent, cls) and child in children:
            return why
    return None


def _shared_reason(w: torch.Tensor, name: str, owners: dict[int, list[str]]) -> str | None:
    others = [o for o in owners.get(id(w), []) if o != (name or "<model>")]
    if others:
        return (f"its weight is shared with {', '.join(others)} (tied weights): an edit would "
                "change them too")
    return None


def _attention_layers(name: str, mha: nn.MultiheadAttention, reason_all: str | None) -> list[Layer]:
    out = []
    if mha._qkv_same_embed_dim:
        for b, tag in enumerate("qkv"):
            out.append(Layer(f"{name}.in_proj_weight[{tag}]", mha, "attention", reason_all,
                             "in_proj_weight", b, "a block of the packed in_proj_weight", name))
    else:
        for tag in "qkv":
            out.append(Layer(f"{name}.{tag}_proj_weight", mha, "attention", reason_all,
                             f"{tag}_proj_weight", None, "MultiheadAttention computes with it",
                             name))
    if reason_all is None:
        for i, layer in enumerate(out):
            w = getattr(mha, layer.param)
            if not isinstance(w, nn.Parameter):
                out[i] = replace(layer, reason=_hook_reason(mha, type(mha).__name__)
                                 or "its weight is not a parameter")
            elif min(layer.shape) < 2:
                m, n = layer.shape
                out[i] = replace(layer, reason=f"its matrix is {m}x{n}; a spectrum needs at least "
                                 "2 rows and 2 columns")
    return out


def list_layers(model: nn.Module, *, split_view: str = "product") -> list[Layer]:
    """Every weight matrix of ``model`` as a :class:`Layer`, in ``named_modules`` order; skipped
    ones carry the reason.  ``split_view`` says how :class:`Factorized` pairs are read (module
    docstring)."""
    check_module(model)
    check_choice(split_view, "split_view", SPLIT_VIEWS)
    modules = _parents(model)
    owners: dict[int, list[str]] = {}
    for mname, mod in modules.items():
        for p in mod.parameters(recurse=False):
            owners.setdefault(id(p), []).append(mname or "<model>")
    out, skip = [], []
    for name, mod in modules.items():
        if any(name.startswith(s + ".") for s in skip):
            continue
        if isinstance(mod, parametrize.ParametrizationList):  # listed via its owner
            skip.append(name)
            continue
        if isinstance(mod, Factorized) and split_view == "product":
            skip.append(name)
            leaves = [m for m in mod.modules() if not isinstance(m, Factorized)]
            bad = next((r for r in (unsupported_reason(m) for m in leaves) if r), None)
            out.append(Layer(name, mod, "factorized", bad,
                             in_place_reason=_in_place_reason(name, modules)))
            continue
        if isinstance(mod, Factorized):
            continue
        if isinstance(mod, nn.MultiheadAttention):
            why = None
            if type(mod).forward is not nn.MultiheadAttention.forward:
                why = (f"{type(mod).__name__} subclasses nn.MultiheadAttention with its own "
                       "forward; only nn.MultiheadAttention.forward is understood")
            elif parametrize.is_parametrized(mod):
                why = _hook_reason(mod, type(mod).__name__)
            out += _attention_layers(name, mod, why)
            continue
        w = main_weight(mod)
        if w is None:
            continue
        reason = unsupported_reason(mod)
        if reason is None:
            reason = _shared_reason(w, name, owners)
        base = _conv_base(mod)
        kind = None if reason else ("conv" if base is not None else "linear")
        out.append(Layer(name, mod, kind, reason, in_place_reason=_in_place_reason(name, modules)))
    return out


def find_layer(model: nn.Module, name: str, *, split_view: str = "product") -> Layer:
    """The analysable :class:`Layer` called ``name``; ``ValueError`` if there is none (an unknown
    name lists the analysable ones; a skipped layer gives its reason)."""
    check_module(model)
    if not isinstance(name, str):
        raise ArgumentTypeError(f"layer name must be a string, got {describe(name)}")
    layers = list_layers(model, split_view=split_view)
    for layer in layers:
        if layer.name == name:
            if layer.reason is not None:
                raise ValueError(f"layer {name!r} cannot be pruned: {layer.reason}")
            return layer
    modules = dict(model.named_modules())
    if name in modules and name:
        pair = next((la.name for la in layers if la.kind == "factorized"
                     and name.startswith(la.name + ".")), None)
        if pair is not None:
            raise ValueError(f"{name!r} is a factor of the split layer {pair!r}, which is read as "
                             "the product W2 W1 (split_view='product'); edit the pair, or pass "
                             "split_view='factors' to edit its factors")
        raise ValueError(f"layer {name!r} cannot be pruned: {type(modules[name]).__name__} has no "
                         "weight matrix (a container?)")
    avail = [la.name for la in layers if la.ok]
    raise ValueError(f"unknown layer name {name!r}; prunable layers: {avail}")


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module of the analysable Linear / convolution layer ``name`` of ``model``;
    ``ValueError`` if the name is unknown or the module is not such a layer."""
    layer = find_layer(model, name, split_view="factors")
    if layer.kind not in ("linear", "conv"):
        raise ValueError(f"layer {name!r} is {layer.type}, not an nn.Linear or convolution module")
    return layer.module


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule ``name`` (a qualified name) of ``model`` by ``new``."""
    check_module(model)
    check_module(new, "new")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the qualified name of a submodule, got {describe(name)}")
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        raise ValueError(f"model has no submodule {parent_name!r}") from None
    if child not in parent._modules:
        raise ValueError(f"model has no submodule {name!r}")
    setattr(parent, child, new)


# --------------------------------------------------------------------------- filters


def is_selected(names_or_pred, name: str, module: nn.Module) -> bool:
    """A listed name selects that layer and everything below it, so a layer stays
    selected after :mod:`rmtlib.prune` splits it (``"fc"`` -> ``"fc.0"``, ``"fc.1"``)."""
    if names_or_pred is None:
        return True
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a string, got {describe(name)}")
    if callable(names_or_pred):
        return bool(names_or_pred(name, module))
    if isinstance(names_or_pred, str) or not isinstance(names_or_pred, Iterable):
        raise ArgumentTypeError(f"names_or_pred must be None, a predicate or a list of names, got "
                                f"{describe(names_or_pred)}")
    return any(name == n or name.startswith(n + ".") for n in names_or_pred)


def check_layer_filter(model: nn.Module, layers) -> None:
    """Validate a layer filter: None, a predicate ``(name, module) -> bool``, or a list of
    qualified names of modules or layers of ``model``."""
    if layers is None or callable(layers):
        return
    if isinstance(layers, str):
        raise ArgumentTypeError(f"layers must be a list of qualified names or a predicate, got "
                                f"the string {layers!r}; wrap it in a list")
    if not isinstance(layers, Iterable):
        raise ArgumentTypeError(f"layers must be None, a list of qualified names or a predicate "
                                f"(name, module) -> bool, got {describe(layers)}")
    layers = list(layers)
    if not all(isinstance(n, str) for n in layers):
        raise ArgumentTypeError(f"layers must hold qualified names (strings), got {layers!r}")
    known = set(dict(model.named_modules()))
    views = list_layers(model)
    known |= {la.name for la in views}
    missing = [n for n in layers if n not in known]
    if missing:
        avail = [la.name for la in views]
        raise ValueError(f"unknown layer name(s) {missing}; layers with weights: {avail}")


# --------------------------------------------------------------------------- heads


def _fx_heads(model: nn.Module, layer_of: Callable[[str], str | None],
              split_view: str) -> list[str] | None:
    """Trace ``model`` with ``torch.fx`` (weight layers as leaves) and walk back from its
    outputs to the first weight layers met; None if the model cannot be traced."""
    import torch.fx as fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            if isinstance(m, Factorized):
                return split_view == "product"
            return (main_weight(m) is not None or isinstance(m, nn.MultiheadAttention)
                    or super().is_leaf_module(m, qualname))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = Tracer().trace(model)
    except Exception:  # any failure of tracing user code means "cannot trace"
        return None
    modules = dict(model.named_modules())
    stack, seen, heads = [], set(), []

    def push(args) -> None:
        found: list = []
        fx.node.map_arg(args, found.append)
        for a in found:
            if a not in seen:
                seen.add(a)
                stack.append(a)

    for node in graph.nodes:
        if node.op == "output":
            push(node.args)
    while stack:
        node = stack.pop()
        if node.op == "call_module":
            target = str(node.target)
            mod = modules.get(target)
            name = layer_of(f"{target}.out_proj" if isinstance(mod, nn.MultiheadAttention)
                            else target)
            if name is not None:
                if name not in heads:
                    heads.append(name)
                continue
            if mod is not None and (main_weight(mod) is not None
                                    or isinstance(mod, (nn.MultiheadAttention, Factorized))):
                continue  # a weight layer that is not analysable: nothing to protect behind it
        elif node.op in ("placeholder", "get_attr"):
            continue
        push((node.args, node.kwargs))
    return heads


def head_layers(model: nn.Module, *, split_view: str = "product") -> list[str]:
    """Names of the analysable layers whose outputs are the model's outputs (no other weight
    layer between them and the output): traced with ``torch.fx``; if the model cannot be traced,
    the last analysable layer in module order.  Empty if the model has no analysable layer."""
    layers = [la for la in list_layers(model, split_view=split_view) if la.ok]
    if not layers:
        return []
    names = {la.name for la in layers}
    pairs = sorted((la.name for la in layers if la.kind == "factorized"), key=len)

    def layer_of(module_name: str) -> str | None:
        if module_name in names:
            return module_name
        for p in pairs:  # a factor of a pair read as its product
            if module_name.startswith(p + "."):
                return p
        return None

    if "" in names:  # the model is itself one layer
        return [""]
    heads = _fx_heads(model, layer_of, split_view)
    if heads is None:
        return [layers[-1].name]
    order = {la.name: i for i, la in enumerate(layers)}
    return sorted(heads, key=order.get)

