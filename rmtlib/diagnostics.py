"""Which classes a trained network fails on, and whether their output units are dead.

:func:`class_recall` (per-class recall), :func:`output_activity` (how often each output unit's
logit is positive) and :func:`lost_classes` (both, for a mapping of models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import MLP
from .studies import keyed
from .train import predict
from .validation import ArgumentTypeError, check_float, check_int, check_module, describe

__all__ = ["class_recall", "lost_classes", "output_activity"]


def _check_inputs(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0 or len(x) == 0:
        raise ArgumentTypeError(f"x must be a non-empty floating-point tensor of inputs, got {describe(x)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or Inf values")
    return x


def _check_data(data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ArgumentTypeError(f"data must be a pair (x, y) of tensors, got {describe(data)}")
    x, y = data
    x = _check_inputs(x)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.dim() != 1 or len(y) != len(x):
        raise ValueError("y must be a 1-D int64 tensor of labels, one per row of x")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"labels must be non-negative class indices, got {int(y.min())}")
    return x, y


@torch.no_grad()
def output_activity(model: MLP, x: torch.Tensor, *, batch_size: int = 4096) -> np.ndarray:
    """Fraction of the rows of ``x`` on which each output unit's pre-activation logit is
    positive, for an :class:`~rmtlib.models.MLP` (eval mode; the model is left as it was).

    With ``relu_on_logits`` (the paper-1 network) a unit with activity 0 outputs 0 on every
    input and receives no gradient: it is *dead*, its class wins only ties.
    """
    if not isinstance(model, MLP):
        raise ArgumentTypeError(f"output_activity needs an rmtlib MLP, got {describe(model)}")
    x = _check_inputs(x)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    flag = model.relu_on_logits
    model.relu_on_logits = False  # read the logits before the activation
    try:
        pos = (predict(model, x, batch_size=batch_size) > 0).sum(0)
    finally:
        model.relu_on_logits = flag
    return (pos.double() / len(x)).numpy()


@torch.no_grad()
def class_recall(model: nn.Module, data, *, batch_size: int = 4096) -> np.ndarray:
    """Per-class recall (%) of the arg-max predictions of ``model`` on ``data = (x, y)``:
    the share of the images of class ``c`` classified as ``c`` (NaN for a class absent from
    ``y``; classes ``0 .. max(y, outputs - 1)``).  Eval mode; the model is left as it was."""
    check_module(model)
    x, y = _check_data(data)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    pred = predict(model, x, batch_size=batch_size).argmax(1)
    n = max(int(y.max()) + 1, int(pred.max()) + 1)
    total = torch.bincount(y, minlength=n).double()
    hit = torch.bincount(y[pred == y], minlength=n).double()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (100.0 * hit / total).numpy()


def lost_classes(models: Mapping, data, *, threshold: float = 50.0,
                 names: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    """Per model (keys as columns ``names``): the classes whose recall on ``data`` is below
    ``threshold`` percent (``lost``, ``n_lost``), every class's recall (``recall``, %) and,
    for an :class:`~rmtlib.models.MLP`, the :func:`output_activity` of the lost classes'
    output units (``activity_of_lost``, fractions of the inputs)."""
    threshold = check_float(threshold, "threshold", low=0.0, high=100.0)
    _check_data(data)
    rows = []
    for cols, model in keyed(models, names):
        recall = class_recall(model, data)
        lost = [int(c) for c in np.flatnonzero(recall < threshold)]
        act = output_activity(model, data[0])[lost].tolist() if isinstance(model, MLP) else []
        rows.append({**cols, "lost": lost, "n_lost": len(lost), "recall": recall.tolist(),
                     "activity_of_lost": act})
    return pd.DataFrame(rows, columns=[*names, "lost", "n_lost", "recall", "activity_of_lost"])
