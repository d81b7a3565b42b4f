"""The networks of the papers (an MLP, the paper-2 CNN, a small LeNet-like CNN) and building
any architecture from a spec.

Every model returns *logits* (no softmax): train with cross-entropy, which equals the
authors' NLL loss on ``log_softmax`` outputs.  Weight matrices follow PyTorch's layout
(``nn.Linear.weight`` is ``(out, in)``; a ``Conv2d`` kernel is ``(C_out, C_in, kh, kw)``,
analysed as the matrix ``(C_out, C_in*kh*kw)``).  Pass ``seed`` to make the
initialisation reproducible without touching the global RNG state.

Each model records how it was built in its ``arch`` attribute (``{"factory":
"rmtlib.models:MLP", "kwargs": {...}}``), which :func:`rmtlib.train.save_checkpoint` stores so
that a checkpoint can be loaded without code.  :func:`build_model` builds a model from such a
spec, from ``"torchvision:resnet18"`` (torchvision's architectures, always with
``weights=None``: nothing is downloaded) or from ``"package.module:factory"``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise

import torch
from torch import nn

from .layers import head_layers, list_layers
from .validation import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_module,
    check_seed,
    describe,
)

__all__ = ["MLP", "Abs", "LeNetLike", "PaperCNN", "build_model", "check_arch", "make_activation",
           "output_width"]

_INITS = ("default", "normal_fan_in")


class Abs(nn.Module):
    """The absolute-value activation ``|x|`` (used in the stability theory of paper 3)."""

    def forward(self, x):
        return x.abs()


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "abs": Abs,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_activation(activation) -> nn.Module:
    """An activation module from a name (``relu``, ``abs``, ``leaky_relu``, ``tanh``,
    ``identity``) or an ``nn.Module`` instance."""
    if isinstance(activation, nn.Module):
        return activation
    try:
        return _ACTIVATIONS[activation]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS)} "
            "or pass an nn.Module"
        ) from None


def _check_init(init: str) -> str:
    return check_choice(init, "init", _INITS)


def _seeded(seed):
    """Context manager: a private torch RNG stream seeded with ``seed`` (no-op for None)."""
    if seed is None:
        return contextlib.nullcontext()
    check_seed(seed)

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return ctx()


def _normal_fan_in_(model: nn.Module) -> None:
    """Paper-2 initialisation: weights ~ N(0, 1/fan_in), biases 0, for Linear and Conv2d
    (``fan_in = in_features`` or ``C_in*kh*kw``)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_dims(dims, what="dims", min_len=2) -> list[int]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise ArgumentTypeError(f"{what} must be a sequence of positive integers, got {describe(dims)}")
    if len(dims) < min_len:
        raise ValueError(f"{what} must hold at least {min_len} positive integers, got {list(dims)!r}")
    return [check_int(d, f"{what}[{i}]", minimum=1) for i, d in enumerate(dims)]


def _check_size(size, what: str = "input_size") -> tuple[int, int]:
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise ArgumentTypeError(f"{what} must be a pair (height, width) of positive integers, got "
                                f"{describe(size)}")
    return tuple(check_int(v, f"{what}[{i}]", minimum=1) for i, v in enumerate(size))


def output_width(model: nn.Module) -> int:
    """Width of the model's output (the number of classes of a classifier): the output width of
    its head, the layer(s) producing the outputs (:func:`rmtlib.layers.head_layers`; the
    largest if there are several)."""
    check_module(model)
    heads = set(head_layers(model))
    widths = [la.shape[0] for la in list_layers(model) if la.name in heads]
    if not widths:
        raise ValueError("the model has no analysable layer producing its outputs (no nn.Linear, "
                         "convolution or attention projection at its end)")
    return int(max(widths))


# --------------------------------------------------------------------------- specs


def _plain_kwargs(kwargs: Mapping) -> dict | None:
    """The constructor arguments as plain data, or None if one of them is not plain."""
    def plain(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return True
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, Mapping):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return False
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return out if plain(out) else None


def _record(model: nn.Module, kwargs: Mapping) -> None:
    plain = _plain_kwargs(kwargs)
    model.arch = None if plain is None else {
        "factory": f"rmtlib.models:{type(model).__name__}", "kwargs": plain}


def check_arch(arch) -> dict:
    """Validate an architecture spec (see :func:`build_model`) and return it as
    ``{"factory": str, "kwargs": dict}``."""
    if isinstance(arch, str):
        arch = {"factory": arch, "kwargs": {}}
    if not isinstance(arch, Mapping) or not isinstance(arch.get("factory"), str) \
            or not isinstance(arch.get("kwargs", {}), Mapping) or set(arch) - {"factory", "kwargs"}:
        raise ArgumentTypeError(f"arch must be 'torchvision:NAME', 'package.module:factory' or "
                                f"{{'factory': ..., 'kwargs': {{...}}}}, got {describe(arch)}")
    factory = arch["factory"]
    module, sep, name = factory.partition(":")
    if not sep or not module or not name or ":" in name:
        raise ValueError(f"arch {factory!r} must have the form 'torchvision:NAME' or "
                         "'package.module:factory'")
    return {"factory": factory, "kwargs": dict(arch.get("kwargs", {}))}


def build_model(arch, **kwargs) -> nn.Module:
    """A freshly initialised model from a spec.

    ``arch`` is ``"torchvision:NAME"`` (``torchvision.models.get_model(NAME, weights=None,
    **kwargs)``: random weights, never a download), ``"package.module:factory"`` (the callable
    ``factory`` of that module, called with ``kwargs``; e.g. ``"rmtlib.models:MLP"`` with
    ``dims=[784, 1000, 10]``) or a dict ``{"factory": ..., "kwargs": {...}}`` (its kwargs are
    updated with ``kwargs``).  Unknown names raise ``ValueError`` with suggestions.
    """
    spec = check_arch(arch)
    module_name, _, name = spec["factory"].partition(":")
    opts = {**spec["kwargs"], **kwargs}
    if module_name == "torchvision":
        import torchvision

        available = torchvision.models.list_models()
        if name not in available:
            close = difflib.get_close_matches(name, available, n=4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown torchvision architecture {name!r}{hint} "
                             f"({len(available)} available, e.g. resnet18, vit_b_16)")
        if opts.get("weights") is not None:
            raise ValueError("pretrained weights are never downloaded: load them from a file "
                             "(a state_dict with --arch) instead of passing weights=")
        opts["weights"] = None
        try:
            return torchvision.models.get_model(name, **opts)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"torchvision:{name} cannot be built with {kwargs or opts}: {exc}") from None
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for arch {spec['factory']!r}: {exc}") from None
    factory = getattr(mod, name, None)
    if not callable(factory):
        public = [a for a in dir(mod) if not a.startswith("_") and callable(getattr(mod, a))]
        close = difflib.get_close_matches(name, public, n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{module_name!r} has no callable {name!r}{hint}")
    try:
        model = factory(**opts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{spec['factory']} cannot be built with {opts}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec['factory']} returned {describe(model)}, not an nn.Module")
    return model


class MLP(nn.Module):
    """Fully connected network ``dims[0] -> dims[1] -> ... -> dims[-1]``.

    Parameters
    ----------
    dims : sequence of int
        Layer widths, input first, e.g. ``[784, 1000, 10]`` (paper 1: 795,010 parameters).
    activation : str or nn.Module
        Applied after every hidden layer.
    relu_on_logits : bool
        Also apply the activation to the output logits, as the paper-1 network does
        (ReLU before ``log_softmax``).  Off by default (a known defect, kept for exactness).
    init : {"default", "normal_fan_in"}
        PyTorch's default (Kaiming-uniform) or the paper-2 code's N(0, 1/fan_in) weights
        with zero biases.
    bias : bool
        Biases on every layer.
    seed : int, optional
        Seed for the initialisation (a private RNG stream; the global state is untouched).

    The layers live in ``self.layers`` (qualified names ``layers.0``, ``layers.1``, ...); a
    layer replaced by :class:`rmtlib.prune.Factorized` keeps working unchanged.  The input
    is flattened from dimension 1, so ``(B, 1, 28, 28)`` images work directly.
    """

    def __init__(self, dims: Sequence[int], activation="relu", relu_on_logits: bool = False,
                 init: str = "default", bias: bool = True, seed: int | None = None):
        super().__init__()
        dims = _check_dims(dims)
        init = _check_init(init)
        relu_on_logits, bias = check_bool(relu_on_logits, "relu_on_logits"), check_bool(bias, "bias")
        _record(self, {"dims": dims, "activation": activation, "relu_on_logits": relu_on_logits,
                       "init": init, "bias": bias, "seed": seed})
        with _seeded(seed):
            self.layers = nn.ModuleList(
                nn.Linear(a, b, bias=bias) for a, b in pairwise(dims)
            )
            if init == "normal_fan_in":
                _normal_fan_in_(self)
        self.act = make_activation(activation)
        self.relu_on_logits = bool(relu_on_logits)
        self.in_features = dims[0]

    def forward(self, x):
        x = x.flatten(1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last or self.relu_on_logits:
                x = self.act(x)
        return x

    @property
    def widths(self) -> list[int]:
        """Current widths including factorization ranks, e.g. ``[784, 353, 1000, 10]``
        after the first layer of ``[784, 1000, 10]`` is split at rank 353."""
        linears = [m for m in self.layers.modules() if isinstance(m, nn.Linear)]
        return [linears[0].in_features] + [m.out_features for m in linears]


class PaperCNN(nn.Module):
    """The convolutional network of paper 2's code, with its defects fixed.

    ``channels[k-1] -> channels[k]`` convolutions (kernel 3, no padding, as the authors),
    each followed by ReLU, BatchNorm and dropout; max-pooling (2x2) after the convolutions
    with 0-based index ``k`` even and ``k > 0`` (the 3rd, 5th, ... convolution, the authors'
    placement; override with ``pool_after``).  The classifier is ``fc`` hidden widths
    (Linear, BatchNorm1d, ReLU, dropout each) ending in the class logits.

    Fixed relative to the authors' notebook: ``log_softmax`` over dimension 0 (the batch)
    is gone (the model returns logits; use cross-entropy); dropout is an ``nn.Dropout``
    module, so it is off in ``eval()`` mode (the authors' ``F.dropout`` calls were active at
    test time too); the flattened size is computed from ``input_size`` instead of being
    hard-coded.

    Qualified names: convolution ``k`` is ``features.k.conv``; the classifier's linear
    layers are ``classifier.0``, ``classifier.4``, ... (see ``print(model)``).
    """

    def __init__(self, channels: Sequence[int] = (1, 32, 64, 128, 256, 512),
                 fc: Sequence[int] = (1000, 10), *, input_size: tuple[int, int] = (28, 28),
                 kernel_size: int = 3, padding: int = 0, batchnorm: bool = True,
                 conv_dropout: float = 0.35, fc_dropout: float = 0.5,
                 pool_after: Sequence[int] | None = None, init: str = "default",
                 seed: int | None = None):
        super().__init__()
        channels = _check_dims(channels, "channels")
        fc = _check_dims(fc, "fc", min_len=1)
        init = _check_init(init)
        batchnorm = check_bool(batchnorm, "batchnorm")
        _record(self, {"channels": channels, "fc": fc, "input_size": input_size,
                       "kernel_size": kernel_size, "padding": padding, "batchnorm": batchnorm,
                       "conv_dropout": conv_dropout, "fc_dropout": fc_dropout,
                       "pool_after": pool_after, "init": init, "seed": seed})
        input_size = _check_size(input_size)
        kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        padding = check_int(padding, "padding", minimum=0)
        conv_dropout = check_float(conv_dropout, "conv_dropout", low=0.0, high=1.0, high_open=True)
        fc_dropout = check_float(fc_dropout, "fc_dropout", low=0.0, high=1.0, high_open=True)
        n_conv = len(channels) - 1
        if pool_after is not None and (isinstance(pool_after, str) or not isinstance(pool_after, Sequence)):
            raise ArgumentTypeError(f"pool_after must be None or a list of convolution indices, got "
                                    f"{describe(pool_after)}")
        pools = set(range(2, n_conv, 2)) if pool_after is None else {
            check_int(k, "pool_after[i]") for k in pool_after}
        if any(not 0 <= k < n_conv for k in pools):
            raise ValueError(f"pool_after indices must lie in [0, {n_conv}), got {sorted(pools)}")
        with _seeded(seed):
            blocks = []
            for k in range(n_conv):
                block = nn.Sequential()
                block.add_module("conv", nn.Conv2d(channels[k], channels[k + 1], kernel_size,
                                                   padding=padding))
                block.add_module("act", nn.ReLU())
                if batchnorm:
                    block.add_module("bn", nn.BatchNorm2d(channels[k + 1]))
                if k in pools:
                    block.add_module("pool", nn.MaxPool2d(2))
                if conv_dropout > 0:
                    block.add_module("drop", nn.Dropout(conv_dropout))
                blocks.append(block)
            self.features = nn.Sequential(*blocks)
            flat = self._flat_size(channels[0], input_size)
            layers: list[nn.Module] = []
            widths = [flat, *fc]
            for i, (a, b) in enumerate(pairwise(widths)):
                layers.append(nn.Linear(a, b))
                if i < len(widths) - 2:
                    layers += [nn.BatchNorm1d(b) if batchnorm else nn.Identity(), nn.ReLU(),
                               nn.Dropout(fc_dropout)]
            self.classifier = nn.Sequential(*layers)
            if init == "normal_fan_in":
                _normal_fan_in_(self)

    def _flat_size(self, c_in: int, input_size) -> int:
        h, w = input_size
        was = self.features.training
        self.features.eval()
        try:
            with torch.no_grad():
                out = self.features(torch.zeros(1, c_in, h, w))
        except RuntimeError as exc:
            raise ValueError(
                f"input_size {tuple(input_size)} is too small for {len(self.features)} "
                f"convolutions and the pooling layers: {exc}"
            ) from None
        finally:
            self.features.train(was)
        return int(out[0].numel())

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class LeNetLike(nn.Module):
    """A small LeNet-5-style CNN for 28x28 inputs: conv 5x5 (6, padding 2) -> ReLU -> pool
    -> conv 5x5 (16) -> ReLU -> pool -> 400 -> 120 -> 84 -> classes.

    Qualified names: ``features.0``, ``features.3`` (convolutions), ``classifier.0``,
    ``classifier.2``, ``classifier.4`` (linear layers).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *,
                 input_size: tuple[int, int] = (28, 28), init: str = "default",
                 seed: int | None = None):
        super().__init__()
        init = _check_init(init)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        input_size = _check_size(input_size)
        _record(self, {"in_channels": in_channels, "num_classes": num_classes,
                       "input_size": input_size, "init": init, "seed": seed})
        h, w = input_size
        if h < 12 or w < 12:
            raise ValueError(f"LeNetLike needs inputs of at least 12x12, got {input_size}")
        flat = 16 * (((h // 2) - 4) // 2) * (((w // 2) - 4) // 2)
        with _seeded(seed):
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                nn.Linear(84, num_classes),
            )
            if init == "normal_fan_in":
                _normal_fan_in_(self)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
