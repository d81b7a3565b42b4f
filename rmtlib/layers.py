r"""Which modules of a model are matrix layers, and how a layer is read as a matrix.

**The matrix view of a layer.**  ``nn.Linear.weight`` is read as the ``(out, in)`` matrix;
an ``nn.Conv2d`` kernel ``(C_out, C_in, kh, kw)`` as the ``(C_out, C_in*kh*kw)`` matrix
(the operator acting on unfolded patches, which is what the factorization of
:mod:`rmtlib.prune` splits).  Optionally (``conv="taps"`` in :func:`rmtlib.spectra.analyze`), a
convolution is read the WeightWatcher way: its ``kh*kw`` per-tap slices ``W[:, :, i, j]``, each
``C_out x C_in`` (:func:`tap_matrices`).

:func:`list_layers` lists every module owning a weight of two or more dimensions, with the reason
it cannot be analysed or pruned (:func:`unsupported_reason`) or None; :func:`get_layer` looks one
up by qualified name; :func:`is_selected` / :func:`check_layer_filter` implement the ``layers=``
filters of :func:`rmtlib.spectra.analyze` and :class:`rmtlib.prune.PrunePolicy`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "check_finite_weights",
    "check_layer_filter",
    "get_layer",
    "is_selected",
    "layer_matrix",
    "list_layers",
    "main_weight",
    "set_module",
    "tap_matrices",
    "unsupported_reason",
]


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be analysed or pruned, or None if it can (exact ``nn.Linear``
    or ``nn.Conv2d`` with ``groups == 1`` whose matrix is at least 2 x 2)."""
    kind = type(module).__name__
    if parametrize.is_parametrized(module):
        return (f"{kind} is parametrized (e.g. weight_norm): its weight is computed, so it "
                "cannot be edited in place; remove the parametrization first")
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return (f"transposed convolution ({kind}) is not supported: its kernel maps outputs "
                "to inputs and has no two-layer factorization here")
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return (f"grouped convolution (groups={module.groups}) is not supported: the kernel "
                    "is block-diagonal, not one (C_out, C_in*kh*kw) matrix")
    elif type(module) is not nn.Linear:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return (f"{kind} subclasses nn.{type(module).__mro__[1].__name__} and may define its "
                    "own forward; only exact nn.Linear / nn.Conv2d are analysed")
        return f"{kind} layers are not supported (only nn.Linear and nn.Conv2d)"
    m, n = module.weight.shape[0], module.weight[0].numel()
    if m < 2 or n < 2:
        return f"its matrix is {m}x{n}; a spectrum needs at least 2 rows and 2 columns"
    return None


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of a Linear or Conv2d layer as a matrix (detached, shares storage):
    ``(out, in)`` or ``(C_out, C_in*kh*kw)``."""
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        raise ValueError(f"layer_matrix needs an nn.Linear or nn.Conv2d, got {type(module).__name__}")
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1)


def tap_matrices(module: nn.Conv2d) -> torch.Tensor:
    """WeightWatcher-style per-tap slices of a Conv2d kernel: a ``(kh*kw, C_out, C_in)``
    stack of the matrices ``W[:, :, i, j]``."""
    if not isinstance(module, nn.Conv2d):
        raise ValueError(f"tap_matrices needs an nn.Conv2d, got {type(module).__name__}")
    w = module.weight.detach()
    return w.permute(2, 3, 0, 1).reshape(-1, w.shape[0], w.shape[1])


def main_weight(module: nn.Module) -> torch.Tensor | None:
    """The tensor that makes ``module`` a matrix layer: its ``weight`` if that has two or
    more dimensions (a parameter or, under a parametrization, a computed tensor), else its
    first own parameter with two or more dimensions (e.g. an LSTM's ``weight_ih_l0``)."""
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor) and w.dim() >= 2:
        return w
    for p in module.parameters(recurse=False):
        if p.dim() >= 2:
            return p
    return None


def list_layers(model: nn.Module) -> list[tuple[str, nn.Module, str | None]]:
    """``(qualified name, module, reason)`` for every module owning a weight of two or more
    dimensions (:func:`main_weight`), in ``named_modules`` order; ``reason`` is None for
    analysable layers and says why the others are skipped."""
    return [(name, mod, unsupported_reason(mod)) for name, mod in model.named_modules()
            if main_weight(mod) is not None
            and not isinstance(mod, parametrize.ParametrizationList)]  # listed via its owner


def check_finite_weights(w: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming layer ``name`` if ``w`` holds NaN or Inf."""
    if not bool(torch.isfinite(w).all()):
        nbad = int((~torch.isfinite(w)).sum())
        raise ValueError(
            f"layer {name!r} has {nbad} non-finite (NaN/Inf) weights; the training diverged "
            "or the weights were corrupted -- fix that before analysing or pruning"
        )


def is_selected(names_or_pred, name: str, module: nn.Module) -> bool:
    """A listed name selects that module and everything below it, so a layer stays
    selected after :mod:`rmtlib.prune` splits it (``"fc"`` -> ``"fc.0"``, ``"fc.1"``)."""
    if names_or_pred is None:
        return True
    if callable(names_or_pred):
        return bool(names_or_pred(name, module))
    return any(name == n or name.startswith(n + ".") for n in names_or_pred)


def check_layer_filter(model: nn.Module, layers) -> None:
    """Validate a layer filter: None, a predicate, or a list of names that exist in ``model``."""
    if layers is None or callable(layers):
        return
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of qualified names or a predicate, got the "
                         f"string {layers!r}; wrap it in a list")
    known = dict(model.named_modules())
    missing = [n for n in layers if n not in known]
    if missing:
        avail = [n for n, _, _ in list_layers(model)]
        raise ValueError(f"unknown layer name(s) {missing}; layers with weights: {avail}")


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The analysable layer ``name`` of ``model``; ``ValueError`` if the name is unknown or
    the module is not an exact ``nn.Linear`` / ``nn.Conv2d`` (groups=1) layer."""
    if not isinstance(name, str):
        raise ValueError(f"layer name must be a string, got {name!r}")
    modules = dict(model.named_modules())
    if name not in modules:
        avail = [n for n, _, r in list_layers(model) if r is None]
        raise ValueError(f"unknown layer name {name!r}; prunable layers: {avail}")
    mod = modules[name]
    reason = unsupported_reason(mod) if hasattr(mod, "weight") else \
        f"{type(mod).__name__} has no weight (a container?)"
    if reason is not None:
        raise ValueError(f"layer {name!r} cannot be pruned: {reason}")
    return mod


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule ``name`` (a qualified name) of ``model`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
