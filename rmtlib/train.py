"""Deterministic training on in-memory tensors, RMT pruning during training, checkpoints.

:func:`fit` runs SGD with momentum over whole-dataset tensors (no ``DataLoader``): each
epoch draws a permutation from a ``torch.Generator`` seeded with ``seed`` and indexes
mini-batches directly.  The loss is cross-entropy on the model's logits (equal to the
authors' NLL on ``log_softmax``) plus the paper-2 penalties
``l1 * sum|theta| + l2 * sum theta**2`` over all parameters.  Two runs with the same seed,
model initialisation and data give identical histories on CPU.

The :class:`History` has one row per epoch **including epoch 0** (the untrained model,
as the authors report).  ``train_loss``/``train_acc`` of epochs >= 1 are running means
over the epoch's mini-batches (cross-entropy only, without the penalty; accuracy in %, the
model in training mode); epoch 0 evaluates the whole training set.  ``test_loss`` and
``test_acc`` are evaluated after the epoch (and after any pruning done at its end).

:class:`RMTPruning` prunes during training.  Two schedules:

* paper-exact (``when="before_epoch", start_epoch=1``): prune before each training epoch,
  so the first prune acts on the random initialisation (as the authors' code);
* corrected (``when="after_epoch"``): prune after training epochs, so every prune sees
  trained weights, and the recorded test accuracy is that of the pruned model.

After a prune the optimizer is rebuilt (``optimizer="rebuild"``, the papers: momentum
lost for every parameter) or kept (``"keep"``: the state of untouched parameters carries
over; parameters that were replaced or modified start fresh).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .prune import (
    PrunePolicy,
    PruneReport,
    apply_structural_edits,
    count_parameters,
    prune_model,
    structural_edits,
)
from .seeding import seed_everything
from .spectra import list_layers

__all__ = [
    "HISTORY_COLUMNS",
    "Callback",
    "CheckpointExistsError",
    "History",
    "RMTPruning",
    "TrainState",
    "evaluate",
    "predict",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

#: Columns of :attr:`History.frame`.
HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "n_params", "lr", "seconds",
    "pruned", "prune_summary", "shapes",
]


# ----------------------------------------------------------------------------- helpers


def _check_data(data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{what} must be a pair (x, y) of tensors")
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"{what}: x and y must be torch tensors, got {type(x).__name__}, "
                         f"{type(y).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{what}: x must be floating point, got {x.dtype}")
    if y.dtype != torch.long or y.dim() != 1:
        raise ValueError(f"{what}: y must be a 1-D int64 tensor of class labels, got "
                         f"{y.dtype} with shape {tuple(y.shape)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{what}: x and y must have the same non-zero length, got "
                         f"{len(x)} and {len(y)}")
    return x, y


def _check_pos_int(v, what: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_nonneg(v, what: str, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) \
            or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {v!r}")
    return float(v)


def _lr_function(lr: float, schedule) -> Callable[[int], float]:
    """Learning rate of training epoch ``e`` (1-based)."""
    if schedule is None:
        return lambda e: lr
    if callable(schedule):
        return lambda e: _check_nonneg(schedule(e), f"lr_schedule({e})", positive=True)
    if isinstance(schedule, Mapping) and set(schedule) == {"every", "factor"}:
        every = _check_pos_int(schedule["every"], "lr_schedule['every']")
        factor = _check_nonneg(schedule["factor"], "lr_schedule['factor']", positive=True)
        return lambda e: lr * factor ** ((e - 1) // every)
    raise ValueError(
        "lr_schedule must be None, a callable epoch -> lr, or a step decay "
        f"{{'every': k, 'factor': g}} (lr * g**((epoch-1)//k)); got {schedule!r}"
    )


@torch.no_grad()
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """The model's outputs on every row of ``x``, computed in eval mode and in batches of
    ``batch_size``; the model's training/eval mode is restored afterwards."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


def evaluate(model: nn.Module, data, *, batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy (nats/sample) and accuracy (%) of ``model`` in eval mode.
    The model's training/eval mode is restored afterwards."""
    x, y = _check_data(data, "data")
    out = predict(model, x, batch_size=batch_size)
    loss = F.cross_entropy(out, y, reduction="none").double().sum()
    correct = int((out.argmax(1) == y).sum())
    return float(loss) / len(x), 100.0 * correct / len(x)


def _shapes(model: nn.Module) -> str:
    parts = []
    for _, mod, reason in list_layers(model):
        if reason is None:
            parts.append(f"{mod.weight.shape[0]}x{mod.weight[0].numel()}")
    return ",".join(parts)


# ----------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run.

    ``frame`` has columns :data:`HISTORY_COLUMNS` (accuracies in %, losses in
    nats/sample, ``seconds`` the wall time of the epoch's training and pruning, ``shapes``
    the matrix shapes of the analysable layers after the epoch); ``events`` holds one
    ``{"epoch", "when", "report"}`` dict per pruning event with its :class:`PruneReport`.
    """

    frame: pd.DataFrame
    events: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def events_frame(self) -> pd.DataFrame:
        """All pruning events' per-layer rows, with ``epoch`` and ``when`` columns."""
        parts = [ev["report"].layers.assign(epoch=ev["epoch"], when=ev["when"])
                 for ev in self.events]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    @property
    def final(self) -> pd.Series:
        """The last row."""
        return self.frame.iloc[-1]

    def __repr__(self) -> str:
        last = self.final
        return (f"History({len(self.frame) - 1} epochs, final test_acc={last.test_acc:.2f}%, "
                f"{len(self.events)} pruning events)")


# --------------------------------------------------------------------------- callbacks


@dataclass
class TrainState:
    """What callbacks see and may change: the model, the optimizer (replace it after
    structural edits), the 1-based epoch and its learning rate."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int
    lr: float
    make_optimizer: Callable[[], torch.optim.Optimizer]
    pending: list = field(default_factory=list)  # events recorded in the current epoch
    events: list = field(default_factory=list)

    def record(self, report: PruneReport, when: str) -> None:
        ev = {"epoch": self.epoch, "when": when, "report": report}
        self.pending.append(ev)
        self.events.append(ev)


class Callback:
    """Hooks called by :func:`fit`; override what you need."""

    def on_train_begin(self, state: TrainState) -> None:
        """Before epoch 1 (after the epoch-0 evaluation)."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Before training epoch ``state.epoch``."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After training epoch ``state.epoch``, before its evaluation."""


class RMTPruning(Callback):
    """Prune with a :class:`~rmtlib.prune.PrunePolicy` during :func:`fit`.

    Parameters
    ----------
    policy : PrunePolicy, optional
        Default ``PrunePolicy()`` (BEMA, keep spikes + 45% of the bulk, factorize,
        GoF cutoff 0.1).
    every : int
        Prune at epochs ``start_epoch, start_epoch + every, ...``.
    keep_fraction : float or callable ``epoch -> float``, optional
        Overrides ``policy.keep_fraction`` (e.g. ``lambda e: max(0, 1 - e / 300)``).
    optimizer : {"rebuild", "keep"}
        ``"rebuild"``: a fresh optimizer after each prune (the papers); ``"keep"``: carry
        the state (momentum) of untouched parameters over, fresh state only for the
        parameters of the layers the prune replaced or modified.
    when : {"before_epoch", "after_epoch"}
        Paper-exact: ``"before_epoch"`` with ``start_epoch=1`` (the first prune acts on the
        initialisation).  Corrected: ``"after_epoch"``.
    start_epoch, stop_epoch : int
        First and last (inclusive, optional) epoch at which to prune.
    """

    def __init__(self, policy: PrunePolicy | None = None, *, every: int = 1,
                 keep_fraction=None, optimizer: str = "rebuild", when: str = "before_epoch",
                 start_epoch: int = 1, stop_epoch: int | None = None):
        self.policy = PrunePolicy() if policy is None else policy
        if not isinstance(self.policy, PrunePolicy):
            raise ValueError(f"policy must be a PrunePolicy, got {type(policy).__name__}")
        if keep_fraction is not None:
            self.policy = replace(self.policy, keep_fraction=keep_fraction)
        self.every = _check_pos_int(every, "every")
        if optimizer not in ("rebuild", "keep"):
            raise ValueError(f"optimizer must be 'rebuild' or 'keep', got {optimizer!r}")
        if when not in ("before_epoch", "after_epoch"):
            raise ValueError(f"when must be 'before_epoch' or 'after_epoch', got {when!r}")
        self.optimizer, self.when = optimizer, when
        self.start_epoch = _check_pos_int(start_epoch, "start_epoch")
        self.stop_epoch = None if stop_epoch is None else _check_pos_int(stop_epoch, "stop_epoch")

    def due(self, epoch: int) -> bool:
        """Whether a prune happens at ``epoch``."""
        return (epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0
                and (self.stop_epoch is None or epoch <= self.stop_epoch))

    def on_epoch_begin(self, state):
        if self.when == "before_epoch" and self.due(state.epoch):
            self._prune(state)

    def on_epoch_end(self, state):
        if self.when == "after_epoch" and self.due(state.epoch):
            self._prune(state)

    def _prune(self, state: TrainState) -> None:
        report = prune_model(state.model, self.policy, epoch=state.epoch)
        state.record(report, self.when)
        old = state.optimizer
        state.optimizer = state.make_optimizer()
        if self.optimizer == "keep":
            touched = {id(p) for name in report.changed
                       for p in state.model.get_submodule(name).parameters()}
            for group in state.optimizer.param_groups:
                for p in group["params"]:
                    if id(p) not in touched and p in old.state:
                        state.optimizer.state[p] = old.state[p]


# ------------------------------------------------------------------------------- fit


def fit(model: nn.Module, train, test=None, *, epochs: int, batch_size: int = 128,
        lr: float, momentum: float = 0.9, l1: float = 0.0, l2: float = 0.0,
        lr_schedule=None, callbacks: Sequence[Callback] = (), seed: int = 0,
        progress: bool = True, eval_every: int = 1, eval_batch_size: int = 2048) -> History:
    """Train ``model`` with mini-batch SGD on in-memory tensors.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``(B, classes)``.
    train, test : (x, y)
        Float inputs and int64 labels (whole datasets in memory).  ``test`` optional.
    epochs : int
        Training epochs (0 only evaluates).
    batch_size, lr, momentum
        SGD settings (paper 1: 128, 0.08, 0.9).  The last batch of an epoch may be smaller.
    l1, l2 : float
        Penalties ``l1 * sum|theta| + l2 * sum theta**2`` over all parameters (paper 2).
    lr_schedule : callable or dict, optional
        ``epoch -> lr`` (epochs 1-based), or ``{"every": k, "factor": g}`` for
        ``lr * g**((epoch - 1) // k)``.
    callbacks : sequence of Callback
        E.g. :class:`RMTPruning`.
    seed : int
        Seeds Python, NumPy and torch (dropout) and the shuffling generator.
    progress : bool
        tqdm progress bar over epochs.
    eval_every : int
        Evaluate the test set every this many epochs (and at the last); NaN otherwise.

    Returns
    -------
    History
    """
    from tqdm import tqdm  # plain text bar: tqdm.auto needs ipywidgets in notebooks

    x, y = _check_data(train, "train")
    test = None if test is None else _check_data(test, "test")
    epochs = _check_pos_int(epochs, "epochs", 0)
    batch_size = _check_pos_int(batch_size, "batch_size")
    eval_every = _check_pos_int(eval_every, "eval_every")
    lr = _check_nonneg(lr, "lr", positive=True)
    momentum = _check_nonneg(momentum, "momentum")
    l1, l2 = _check_nonneg(l1, "l1"), _check_nonneg(l2, "l2")
    lr_at = _lr_function(lr, lr_schedule)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks must be Callback instances, got {type(cb).__name__}")
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)

    state = TrainState(model, None, 0, lr_at(1) if epochs else lr, None)
    state.make_optimizer = lambda: torch.optim.SGD(model.parameters(), lr=state.lr,
                                                   momentum=momentum)
    state.optimizer = state.make_optimizer()

    rows = []

    def add_row(epoch, tr_loss, tr_acc, seconds, evaluate_test):
        te_loss, te_acc = (evaluate(model, test, batch_size=eval_batch_size)
                           if test is not None and evaluate_test else (np.nan, np.nan))
        reports = [ev["report"] for ev in state.pending]
        rows.append({"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc,
                     "test_loss": te_loss, "test_acc": te_acc,
                     "n_params": count_parameters(model), "lr": state.lr if epoch else np.nan,
                     "seconds": seconds, "pruned": bool(reports),
                     "prune_summary": " || ".join(r.summary() for r in reports),
                     "shapes": _shapes(model)})
        state.pending.clear()
        return te_acc

    add_row(0, *evaluate(model, (x, y), batch_size=eval_batch_size), 0.0, True)
    for cb in callbacks:
        cb.on_train_begin(state)
    n = len(x)
    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        state.epoch, state.lr = epoch, lr_at(epoch)
        for group in state.optimizer.param_groups:
            group["lr"] = state.lr
        for cb in callbacks:
            cb.on_epoch_begin(state)
        params = list(model.parameters())
        opt = state.optimizer
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.long)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            data_loss = F.cross_entropy(out, yb)
            loss = data_loss
            if l1:
                loss = loss + l1 * sum(p.abs().sum() for p in params)
            if l2:
                loss = loss + l2 * sum(p.pow(2).sum() for p in params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += data_loss.detach().double() * len(idx)
                correct += (out.argmax(1) == yb).sum()
        if not torch.isfinite(loss_sum):
            raise FloatingPointError(
                f"the training loss became non-finite in epoch {epoch}; lower the learning "
                f"rate (lr={state.lr:g})"
            )
        for cb in callbacks:
            cb.on_epoch_end(state)
        seconds = time.perf_counter() - t0
        te_acc = add_row(epoch, float(loss_sum) / n, 100.0 * int(correct) / n, seconds,
                         epoch % eval_every == 0 or epoch == epochs)
        bar.set_postfix(test_acc=f"{te_acc:.2f}")
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
              "l1": l1, "l2": l2, "seed": seed}
    return History(frame, state.events, config)


# ------------------------------------------------------------------------- checkpoints


class CheckpointExistsError(FileExistsError, ValueError):
    """Raised by :func:`save_checkpoint` when the path exists and ``overwrite`` is False."""


_FORMAT = "rmtlib.checkpoint/1"


def _plain(value, where: str):
    """Convert ``value`` to data ``torch.load(weights_only=True)`` accepts, or raise."""
    if isinstance(value, np.generic):  # before the float check: np.float64 is a float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"checkpoint metadata keys must be str or int, got {k!r} in {where}")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    raise ValueError(
        f"checkpoint metadata {where} is a {type(value).__name__}; only plain data (None, bool, "
        "int, float, str, tensors, numpy arrays, lists and dicts of them) can be stored "
        "(convert DataFrames with .to_dict('list'))"
    )


def save_checkpoint(model: nn.Module, path, *, overwrite: bool = False, **meta) -> Path:
    """Save ``model``'s weights, its structural edits (factorized layers) and ``meta``.

    The file is written atomically (temporary file + rename).  An existing ``path``
    raises :class:`CheckpointExistsError` unless ``overwrite=True``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointExistsError(f"checkpoint {str(path)!r} exists; pass overwrite=True to "
                                    "replace it or choose another path")
    payload = {
        "format": _FORMAT,
        "model_class": type(model).__name__,
        "edits": structural_edits(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": _plain(meta, "meta"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, model: nn.Module, *, strict: bool = True) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (a freshly built
    instance of the same architecture): re-apply the recorded factorizations, then load
    the state dict.  Uses ``torch.load(weights_only=True)``.  Returns the metadata."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {str(path)!r}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not an rmtlib checkpoint ({_FORMAT})")
    if strict and payload["model_class"] != type(model).__name__:
        raise ValueError(f"checkpoint holds a {payload['model_class']}, but a "
                         f"{type(model).__name__} was given (strict=False to force)")
    apply_structural_edits(model, payload["edits"])
    model.load_state_dict(payload["state_dict"], strict=strict)
    return payload["meta"]
