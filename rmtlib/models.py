"""The networks of the papers: an MLP, the paper-2 CNN and a small LeNet-like CNN.

Every model returns *logits* (no softmax): train with cross-entropy, which equals the
authors' NLL loss on ``log_softmax`` outputs.  Weight matrices follow PyTorch's layout
(``nn.Linear.weight`` is ``(out, in)``; a ``Conv2d`` kernel is ``(C_out, C_in, kh, kw)``,
analysed as the matrix ``(C_out, C_in*kh*kw)``).  Pass ``seed`` to make the
initialisation reproducible without touching the global RNG state.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

__all__ = ["MLP", "Abs", "LeNetLike", "PaperCNN", "make_activation", "output_width"]

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
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    return init


def _seeded(seed):
    """Context manager: a private torch RNG stream seeded with ``seed`` (no-op for None)."""
    if seed is None:
        return contextlib.nullcontext()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")

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
    try:
        out = [int(d) for d in dims]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a sequence of positive integers, got {dims!r}") from None
    if len(out) < min_len or any(d < 1 or d != dd for d, dd in zip(out, dims)):
        raise ValueError(
            f"{what} must hold at least {min_len} positive integers, got {list(dims)!r}"
        )
    return out


def output_width(model: nn.Module) -> int:
    """Width of the model's output: ``out_features`` of the last ``nn.Linear`` in module
    order (the number of classes), else ``out_channels`` of the last ``nn.Conv2d``."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
    if last is None:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                last = m.out_channels
    if last is None:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer; pass min_rank explicitly")
    return int(last)


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
        for p, what in ((conv_dropout, "conv_dropout"), (fc_dropout, "fc_dropout")):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{what} must lie in [0, 1), got {p!r}")
        n_conv = len(channels) - 1
        pools = set(range(2, n_conv, 2)) if pool_after is None else set(pool_after)
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
