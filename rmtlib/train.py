"""Deterministic training on in-memory tensors, RMT pruning during training, checkpoints.

:func:`fit` runs SGD with momentum over whole-dataset tensors (no ``DataLoader``): each
epoch draws a permutation from a ``torch.Generator`` seeded with ``seed`` and indexes
mini-batches directly.  The loss is cross-entropy on the model's logits (equal to the
authors' NLL on ``log_softmax``) plus the paper-2 penalties
``l1 * sum|theta| + l2 * sum theta**2`` over all parameters (applied exactly, as their
gradients ``l1 * sign(theta) + 2 * l2 * theta``).  Two runs with the same seed, model
initialisation and data give identical histories on a CPU.

**Devices.**  ``device`` (:func:`resolve_device`: ``"auto"`` = CUDA, then Apple's MPS, then the
CPU; default: where the model is) moves the model and the data there once; the training loop
synchronises with the host once per epoch (the running loss and accuracy stay on the device).

The :class:`History` has one row per epoch **including epoch 0** (the untrained model,
as the authors report).  ``train_loss``/``train_acc`` of epochs >= 1 are running means
over the epoch's mini-batches (cross-entropy only, without the penalty; accuracy in %, the
model in training mode); epoch 0 evaluates the whole training set.  ``test_loss`` and
``test_acc`` are evaluated after the epoch (and after any pruning done at its end).

:class:`RMTPruning` prunes during training.  Its defaults are the corrected schedule: prune
after each training epoch (``when="after_epoch"``, from epoch 1: every prune sees trained
weights and the recorded test accuracy is that of the pruned model), keep the optimizer state
(momentum) of the parameters the prune did not touch, and re-analyse split layers as the
product ``W2 W1``.  :meth:`RMTPruning.paper_exact` is the authors' code: prune *before* each
epoch from epoch 1 (the first prune acts on the random initialisation), a fresh optimizer after
every prune (momentum lost), the factors of split layers analysed separately, and the authors'
BEMA quirks (``PrunePolicy(paper_exact=True)``).

**Checkpoints.**  :func:`save_checkpoint` / :func:`load_checkpoint` store weights, the
structural edits of pruning and plain metadata (read back with ``torch.load(weights_only=True)``).
``fit(..., checkpoint=path)`` writes a *resumable* checkpoint after every epoch (optimizer
state, random-number states, epoch, history and pruning events); ``fit(..., checkpoint=path,
resume=True)`` continues such a run exactly where it stopped.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .layers import list_layers
from .prune import (
    PrunePolicy,
    PruneReport,
    apply_structural_edits,
    count_parameters,
    prune_model,
    structural_edits,
)
from .seeding import seed_everything
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

__all__ = [
    "HISTORY_COLUMNS",
    "Callback",
    "CheckpointExistsError",
    "History",
    "RMTPruning",
    "TrainState",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model",
    "check_state_dict",
    "predict",
    "read_file",
    "resolve_device",
    "save_checkpoint",
]

#: Columns of :attr:`History.frame`.
HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "n_params", "lr", "seconds",
    "pruned", "prune_summary", "shapes",
]


# ----------------------------------------------------------------------------- devices


def resolve_device(device=None, model: nn.Module | None = None) -> torch.device:
    """The ``torch.device`` meant by ``device``: ``"auto"`` (CUDA if available, then MPS, then
    the CPU), a device string or ``torch.device`` (checked to be available), or None (the device
    of ``model``'s first parameter, else the CPU)."""
    if device is None:
        p = next(model.parameters(), None) if model is not None else None
        return p.device if p is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise ArgumentTypeError(f"device must be None, 'auto', a device string such as 'cuda:0' "
                                f"or a torch.device, got {describe(device)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be None, 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got "
                         f"{device!r}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r} is not available (CUDA available: "
                         f"{torch.cuda.is_available()}, devices: {torch.cuda.device_count()})")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                  and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} is not available on this machine")
    return dev


# ----------------------------------------------------------------------------- helpers


def _check_data(data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ArgumentTypeError(f"{what} must be a pair (x, y) of tensors, got {describe(data)}")
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ArgumentTypeError(f"{what}: x and y must be torch tensors, got {type(x).__name__}, "
                                f"{type(y).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{what}: x must be floating point, got {x.dtype}")
    if y.dtype != torch.long or y.dim() != 1:
        raise ValueError(f"{what}: y must be a 1-D int64 tensor of class labels, got "
                         f"{y.dtype} with shape {tuple(y.shape)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{what}: x and y must have the same non-zero length, got "
                         f"{len(x)} and {len(y)}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        rows = int((~finite).reshape(len(x), -1).any(1).sum())
        raise ValueError(f"{what}: x holds {bad} non-finite values (NaN/Inf) in {rows} of its "
                         f"{len(x)} samples; clean the data before training")
    return x, y


def _check_labels(model: nn.Module, data, what: str, device) -> None:
    """Labels must index the model's outputs: one forward of a sample gives their number."""
    x, y = data
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:1].to(device))
    except Exception as exc:  # the model cannot be applied to these inputs
        raise ValueError(f"{what}: the model cannot be applied to inputs of shape "
                         f"{tuple(x.shape[1:])}: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what}: the model must return logits of shape (batch, classes), "
                         f"got {shape}")
    classes = out.shape[1]
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(f"{what}: labels must lie in [0, {classes}) (the model has {classes} "
                         f"outputs), got labels from {lo} to {hi}")


def _check_nonneg(v, what: str, positive: bool = False) -> float:
    return check_float(v, what, low=0.0, low_open=positive)


def _lr_function(lr: float, schedule) -> Callable[[int], float]:
    """Learning rate of training epoch ``e`` (1-based)."""
    if schedule is None:
        return lambda e: lr
    if callable(schedule):
        return lambda e: _check_nonneg(schedule(e), f"lr_schedule({e})", positive=True)
    if isinstance(schedule, Mapping) and set(schedule) == {"every", "factor"}:
        every = check_int(schedule["every"], "lr_schedule['every']", minimum=1)
        factor = _check_nonneg(schedule["factor"], "lr_schedule['factor']", positive=True)
        return lambda e: lr * factor ** ((e - 1) // every)
    raise ValueError(
        "lr_schedule must be None, a callable epoch -> lr, or a step decay "
        f"{{'every': k, 'factor': g}} (lr * g**((epoch-1)//k)); got {schedule!r}"
    )


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2048,
            device=None) -> torch.Tensor:
    """The model's outputs on every row of ``x``, computed in eval mode, in batches of
    ``batch_size``, on ``device`` (default: where the model is; see :func:`resolve_device`), and
    returned on the device of ``x``.  The model's training/eval mode is restored afterwards."""
    check_module(model)
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"x must be a torch tensor, got {describe(x)}")
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dev = resolve_device(device, model)
    if device is not None:
        model.to(dev)
    was = model.training
    model.eval()
    try:
        outs = [model(x[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)]
        return torch.cat(outs).to(x.device)
    finally:
        model.train(was)


def evaluate(model: nn.Module, data, *, batch_size: int = 2048, device=None,
             seed: int | None = None) -> tuple[float, float]:
    """Mean cross-entropy (nats/sample) and accuracy (%) of ``model`` in eval mode on
    ``data = (x, y)``, computed on ``device`` (default: where the model is).  The model's
    training/eval mode is restored afterwards.

    ``seed`` (a non-negative int) seeds torch's random numbers for the evaluation only (forked:
    the caller's random state is left as it was), for a model whose eval mode is random -- the
    authors' CNN keeps its dropout on (``paper_exact``) -- so that the result does not depend
    on what ran before in the process.  ``None``: the process's current random state."""
    check_module(model)
    x, y = _check_data(data, "data")
    dev = resolve_device(device, model)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    if device is not None:
        model.to(dev)
    was = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [],
                                                    enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for i in range(0, len(x), batch_size):
                xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
                out = model(xb)
                loss += F.cross_entropy(out, yb, reduction="sum").double()
                correct += (out.argmax(1) == yb).sum()
    finally:
        model.train(was)
    return float(loss) / len(x), 100.0 * int(correct) / len(x)


def _shapes(model: nn.Module) -> str:
    return ",".join(f"{m}x{n}" for m, n in (la.shape for la in list_layers(model, split_view="factors")
                                            if la.ok))


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
    structural edits), the 1-based epoch and its learning rate, the training seed and device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int
    lr: float
    make_optimizer: Callable[[], torch.optim.Optimizer]
    pending: list = field(default_factory=list)  # events recorded in the current epoch
    events: list = field(default_factory=list)
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

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

    def record(self):
        """What this callback measured, returned to the caller of
        :func:`rmtlib.studies.run_seeds` in ``SeedStudy.records`` (``None``: nothing).

        A study's trainings may run on other processes (a Dask cluster), where a callback is a
        copy: state kept on the callback, or appended to a list of the caller, never comes
        back.  What should come back is returned here, picklable (e.g. a DataFrame)."""
        return None


class RMTPruning(Callback):
    """Prune with a :class:`~rmtlib.prune.PrunePolicy` during :func:`fit`.

    Parameters
    ----------
    policy : PrunePolicy, optional
        Default ``PrunePolicy()`` (BEMA, keep spikes + 45% of the bulk, factorize,
        GoF cutoff 0.1, the head keeps its output width, split layers read as ``W2 W1``).
    every : int
        Prune at epochs ``start_epoch, start_epoch + every, ...``.
    keep_fraction : float or callable ``epoch -> float``, optional
        Overrides ``policy.keep_fraction`` (e.g. ``lambda e: max(0, 1 - e / 300)``).
    optimizer : {"keep", "rebuild"}
        ``"keep"`` (default): carry the state (momentum) of untouched parameters over, fresh
        state only for the parameters of the layers the prune replaced or modified;
        ``"rebuild"``: a fresh optimizer after each prune (the papers: momentum lost).
    when : {"after_epoch", "before_epoch"}
        ``"after_epoch"`` (default): prune after training epoch ``e``, so every prune sees
        trained weights; ``"before_epoch"``: before it (with ``start_epoch=1`` the first prune
        acts on the initialisation, as the authors' code).
    start_epoch, stop_epoch : int
        First and last (inclusive, optional) epoch at which to prune.

    :meth:`paper_exact` builds the authors' schedule.  ``random_bulk`` draws from the training
    seed (``fit(seed=...)``) unless the policy has its own.
    """

    def __init__(self, policy: PrunePolicy | None = None, *, every: int = 1,
                 keep_fraction=None, optimizer: str = "keep", when: str = "after_epoch",
                 start_epoch: int = 1, stop_epoch: int | None = None):
        self.policy = PrunePolicy() if policy is None else policy
        if not isinstance(self.policy, PrunePolicy):
            raise ArgumentTypeError(f"policy must be a PrunePolicy, got {describe(policy)}")
        if keep_fraction is not None:
            self.policy = replace(self.policy, keep_fraction=keep_fraction)
        self.every = check_int(every, "every", minimum=1)
        self.optimizer = check_choice(optimizer, "optimizer", ("keep", "rebuild"))
        self.when = check_choice(when, "when", ("after_epoch", "before_epoch"))
        self.start_epoch = check_int(start_epoch, "start_epoch", minimum=1)
        self.stop_epoch = None if stop_epoch is None else check_int(stop_epoch, "stop_epoch",
                                                                     minimum=1)

    @classmethod
    def paper_exact(cls, policy: PrunePolicy | None = None, *, every: int = 1,
                    keep_fraction=None, stop_epoch: int | None = None) -> RMTPruning:
        """The authors' schedule (Shmalo et al. 2023, ``jtj5311/NN-RMT-SVD``): prune before every
        training epoch from epoch 1 (the first prune acts on the random initialisation), a fresh
        optimizer after every prune, split layers analysed as two factors, and the policy's
        ``paper_exact`` quirks (BEMA formula, one extra spike)."""
        policy = PrunePolicy() if policy is None else policy
        if not isinstance(policy, PrunePolicy):
            raise ArgumentTypeError(f"policy must be a PrunePolicy, got {describe(policy)}")
        policy = replace(policy, paper_exact=True, split_view="factors")
        return cls(policy, every=every, keep_fraction=keep_fraction, optimizer="rebuild",
                   when="before_epoch", start_epoch=1, stop_epoch=stop_epoch)

    def due(self, epoch: int) -> bool:
        """Whether a prune happens at ``epoch``."""
        epoch = check_int(epoch, "epoch", minimum=0)
        return (epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0
                and (self.stop_epoch is None or epoch <= self.stop_epoch))

    def on_epoch_begin(self, state):
        if self.when == "before_epoch" and self.due(state.epoch):
            self._prune(state)

    def on_epoch_end(self, state):
        if self.when == "after_epoch" and self.due(state.epoch):
            self._prune(state)

    def _prune(self, state: TrainState) -> None:
        report = prune_model(state.model, self.policy, epoch=state.epoch, seed=state.seed)
        state.record(report, self.when)
        old = state.optimizer
        state.optimizer = state.make_optimizer()
        if self.optimizer == "keep":
            names = {n for edit in report.edits for n in edit.parameters}
            touched = {id(p) for n, p in state.model.named_parameters() if n in names}
            for group in state.optimizer.param_groups:
                for p in group["params"]:
                    if id(p) not in touched and p in old.state:
                        state.optimizer.state[p] = old.state[p]


# ------------------------------------------------------------------------------- fit


def _rng_state(gen: torch.Generator) -> dict:
    state = {"shuffle": gen.get_state(), "torch": torch.get_rng_state(),
             "numpy": list(np.random.get_state()), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: Mapping) -> None:
    gen.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


_RESUME_KEYS = ("epochs", "batch_size", "lr", "momentum", "l1", "l2", "seed")


def fit(model: nn.Module, train, test=None, *, epochs: int, batch_size: int = 128,
        lr: float, momentum: float = 0.9, l1: float = 0.0, l2: float = 0.0,
        lr_schedule=None, callbacks: Sequence[Callback] = (), seed: int = 0,
        progress: bool = True, eval_every: int = 1, eval_batch_size: int = 2048,
        device=None, checkpoint=None, resume: bool = False) -> History:
    """Train ``model`` with mini-batch SGD on in-memory tensors.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``(B, classes)``.
    train, test : (x, y)
        Float inputs and int64 labels (whole datasets in memory).  ``test`` optional.  Inputs
        must be finite and labels must lie in ``[0, classes)`` (checked before training).
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
    device : None, "auto", str or torch.device
        Where to train (:func:`resolve_device`; None: where the model is).  The model and the
        data are moved there.
    checkpoint : path, optional
        Write a resumable checkpoint (:func:`save_checkpoint` with the optimizer, random-number
        states, epoch, history and pruning events) to this path after every epoch.  An existing
        file is never overwritten unless ``resume`` is True.
    resume : bool
        Continue the run stored in ``checkpoint`` (same settings) up to ``epochs``.

    Returns
    -------
    History
    """
    from tqdm import tqdm  # plain text bar: tqdm.auto needs ipywidgets in notebooks

    check_module(model)
    epochs = check_int(epochs, "epochs", minimum=0)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    eval_every = check_int(eval_every, "eval_every", minimum=1)
    eval_batch_size = check_int(eval_batch_size, "eval_batch_size", minimum=1)
    lr = _check_nonneg(lr, "lr", positive=True)
    momentum = _check_nonneg(momentum, "momentum")
    l1, l2 = _check_nonneg(l1, "l1"), _check_nonneg(l2, "l2")
    seed = check_seed(seed)
    progress = check_bool(progress, "progress")
    resume = check_bool(resume, "resume")
    lr_at = _lr_function(lr, lr_schedule)
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Sequence):
        raise ArgumentTypeError(f"callbacks must be a list of Callback instances, got "
                                f"{describe(callbacks)}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise ArgumentTypeError(f"callbacks must be Callback instances, got {describe(cb)}")
    ck_path = None if checkpoint is None else _check_path(checkpoint, "checkpoint")
    if resume and ck_path is None:
        raise ValueError("resume=True needs the checkpoint path to resume from (checkpoint=...)")
    if ck_path is not None and ck_path.exists() and not resume:
        raise CheckpointExistsError(f"checkpoint {str(ck_path)!r} exists; pass resume=True to "
                                    "continue that run, or choose another path")
    dev = resolve_device(device, model)
    model.to(dev)
    x, y = _check_data(train, "train")
    test = None if test is None else _check_data(test, "test")
    x, y = x.to(dev), y.to(dev)
    _check_labels(model, (x, y), "train", dev)
    if test is not None:
        _check_labels(model, test, "test", dev)
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
              "l1": l1, "l2": l2, "seed": seed}
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)

    state = TrainState(model, None, 0, lr_at(1) if epochs else lr, None, seed=seed, device=dev)
    state.make_optimizer = lambda: torch.optim.SGD(model.parameters(), lr=state.lr,
                                                   momentum=momentum, weight_decay=2 * l2)
    rows, first = [], 1
    if resume:
        first, rows = _resume(ck_path, model, state, gen, config)
    else:
        state.optimizer = state.make_optimizer()

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

    if not resume:
        add_row(0, *evaluate(model, (x, y), batch_size=eval_batch_size), 0.0, True)
        for cb in callbacks:
            cb.on_train_begin(state)
        if ck_path is not None:
            _save_training(ck_path, model, state, gen, rows, config, 0)
    n = len(x)
    starts = range(0, n, batch_size)
    sizes = torch.tensor([min(batch_size, n - i) for i in starts], dtype=torch.float64, device=dev)
    bar = tqdm(range(first, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        state.epoch, state.lr = epoch, lr_at(epoch)
        for group in state.optimizer.param_groups:
            group["lr"] = state.lr
        for cb in callbacks:
            cb.on_epoch_begin(state)
        opt = state.optimizer
        params = list(model.parameters()) if l1 else None
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        losses = torch.empty(len(starts), device=dev)
        correct = torch.empty(len(starts), dtype=torch.long, device=dev)
        for b, i in enumerate(starts):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if l1:  # d(l1 * |theta|) = l1 * sign(theta); l2 is SGD's weight_decay = 2 * l2
                _add_l1(params, l1)
            opt.step()
            losses[b] = loss.detach()
            correct[b] = (out.argmax(1) == yb).sum()
        loss_sum = float((losses.double() * sizes).sum())
        if not np.isfinite(loss_sum):
            raise FloatingPointError(
                f"the training loss became non-finite in epoch {epoch}; lower the learning "
                f"rate (lr={state.lr:g})"
            )
        for cb in callbacks:
            cb.on_epoch_end(state)
        seconds = time.perf_counter() - t0
        te_acc = add_row(epoch, loss_sum / n, 100.0 * int(correct.sum()) / n, seconds,
                         epoch % eval_every == 0 or epoch == epochs)
        if ck_path is not None:
            _save_training(ck_path, model, state, gen, rows, config, epoch)
        bar.set_postfix(test_acc=f"{te_acc:.2f}")
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return History(frame, state.events, config)


def _add_l1(params, l1: float) -> None:
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    torch._foreach_add_(grads, torch._foreach_sign(params), alpha=l1)


def _save_training(path: Path, model, state: TrainState, gen, rows, config, epoch) -> None:
    events = [{"epoch": ev["epoch"], "when": ev["when"], "report": ev["report"].to_dict()}
              for ev in state.events]
    training = {"epoch": epoch, "optimizer": state.optimizer.state_dict(), "rng": _rng_state(gen),
                "history": pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_dict("list"),
                "events": events, "config": config}
    save_checkpoint(model, path, overwrite=True, training=training)


def _resume(path: Path, model, state: TrainState, gen, config) -> tuple[int, list]:
    payload = _read_payload(path)
    training = payload.get("training")
    if not training:
        raise ValueError(f"{str(path)!r} is an rmtlib checkpoint without training state (it was "
                         "not written by fit(..., checkpoint=...)); it cannot be resumed")
    saved = training["config"]
    diff = {k: (saved.get(k), config[k]) for k in _RESUME_KEYS if k != "epochs"
            and saved.get(k) != config[k]}
    if diff:
        raise ValueError(f"{str(path)!r} was written by a run with other settings "
                         f"(saved, given): {diff}; resume needs the same settings")
    _load_into(path, payload, model, strict=True)
    state.optimizer = state.make_optimizer()
    try:
        state.optimizer.load_state_dict(training["optimizer"])
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{str(path)!r}: the optimizer state does not match the model: {exc}") from None
    _set_rng_state(gen, training["rng"])
    for ev in training["events"]:
        state.events.append({"epoch": ev["epoch"], "when": ev["when"],
                             "report": PruneReport.from_dict(ev["report"])})
    frame = pd.DataFrame(training["history"], columns=HISTORY_COLUMNS)
    state.epoch = int(training["epoch"])
    return state.epoch + 1, frame.to_dict("records")


# ------------------------------------------------------------------------- checkpoints


class CheckpointExistsError(FileExistsError, ValueError):
    """Raised by :func:`save_checkpoint` when the path exists and ``overwrite`` is False."""


_FORMAT = "rmtlib.checkpoint/1"


def _check_path(path, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"{what} must be a file path, got {describe(path)}")
    return Path(path)


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


def save_checkpoint(model: nn.Module, path, *, overwrite: bool = False, arch=None,
                    training: Mapping | None = None, **meta) -> Path:
    """Save ``model``'s weights, its structural edits (factorized layers) and ``meta``.

    ``arch`` records how to build the architecture (:func:`rmtlib.models.build_model`: a string
    such as ``"torchvision:resnet18"`` or a dict ``{"factory": ..., "kwargs": {...}}``); by
    default the model's own ``arch`` attribute (rmtlib's models have one), so that
    :func:`load_model` and the ``rmtlib`` command line can rebuild it.  ``training`` is the
    resumable state written by :func:`fit`.  The file is written atomically (temporary file +
    rename); an existing ``path`` raises :class:`CheckpointExistsError` unless ``overwrite=True``.
    """
    check_module(model)
    path = _check_path(path, "path")
    overwrite = check_bool(overwrite, "overwrite")
    if path.exists() and not overwrite:
        raise CheckpointExistsError(f"checkpoint {str(path)!r} exists; pass overwrite=True to "
                                    "replace it or choose another path")
    if path.is_dir():
        raise ValueError(f"checkpoint path {str(path)!r} is a directory")
    arch = getattr(model, "arch", None) if arch is None else arch
    if arch is not None:
        from .models import check_arch

        arch = check_arch(arch)
    payload = {
        "format": _FORMAT,
        "model_class": type(model).__name__,
        "arch": _plain(arch, "arch"),
        "edits": structural_edits(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": _plain(meta, "meta"),
    }
    if training is not None:
        payload["training"] = _plain(training, "training")
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


def read_file(path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear ``ValueError`` naming
    the file when it is missing, not a torch file, corrupted or holds pickled objects."""
    path = _check_path(path, "path")
    if not path.exists():
        raise ValueError(f"no such file: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and zipfile.is_zipfile(path):
            raise ValueError(f"{str(path)!r} holds pickled Python objects (e.g. a whole model "
                             "saved with torch.save(model)), which are not loaded for safety; "
                             "save model.state_dict() instead") from None
        raise ValueError(f"{str(path)!r} is not a readable torch file (corrupted, or of another "
                         "format)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            AttributeError, IndexError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{str(path)!r} is not a readable torch file (corrupted or of another "
                         f"format): {first}") from None


def _read_payload(path: Path) -> dict:
    payload = read_file(path)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not an rmtlib checkpoint ({_FORMAT}); a plain "
                         "state_dict is read by load_model(path, arch=...)")
    for key in ("edits", "state_dict", "model_class"):
        if key not in payload:
            raise ValueError(f"{str(path)!r} is a damaged rmtlib checkpoint: '{key}' is missing")
    return payload


def check_state_dict(state: Mapping, model: nn.Module, source: str) -> None:
    """``ValueError`` (one line) unless ``state`` has exactly ``model``'s keys and shapes."""
    check_module(model)
    if not isinstance(state, Mapping):
        raise ArgumentTypeError(f"state must be a state_dict (a mapping of names to tensors), got "
                                f"{describe(state)}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and isinstance(state[k], torch.Tensor)
              and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", shapes)):
            if items:
                listed = ", ".join(items[:3]) + (f", ... ({len(items)} in all)" if len(items) > 3 else "")
                parts.append(f"{len(items)} {label} ({listed})")
        raise ValueError(f"{source} does not match the architecture: " + "; ".join(parts))


def _load_into(path: Path, payload: dict, model: nn.Module, strict: bool) -> dict:
    if strict and payload["model_class"] != type(model).__name__:
        raise ValueError(f"{str(path)!r} holds a {payload['model_class']}, but a "
                         f"{type(model).__name__} was given (strict=False to force)")
    apply_structural_edits(model, payload["edits"])
    if strict:
        check_state_dict(payload["state_dict"], model, repr(str(path)))
    model.load_state_dict(payload["state_dict"], strict=strict)
    return payload.get("meta") or {}


def load_checkpoint(path, model: nn.Module, *, strict: bool = True) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (a freshly built
    instance of the same architecture): re-apply the recorded factorizations, then load
    the state dict.  Uses ``torch.load(weights_only=True)``.  Returns the metadata.  A missing,
    corrupted or foreign file, or one that does not match ``model``, raises one ``ValueError``
    naming the file."""
    check_module(model)
    strict = check_bool(strict, "strict")
    path = _check_path(path, "path")
    if not path.exists():
        raise ValueError(f"no checkpoint at {str(path)!r}")
    return _load_into(path, _read_payload(path), model, strict)


def _unwrap_state_dict(obj, source: str) -> dict:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{source} is neither an rmtlib checkpoint nor a state_dict (a mapping "
                         "of parameter names to tensors)")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_model(path, arch=None, *, arch_kwargs: Mapping | None = None) -> tuple[nn.Module, dict]:
    """Build a model and load its weights from ``path``: an rmtlib checkpoint (its recorded
    ``arch`` unless ``arch`` is given; structural edits replayed) or a plain ``state_dict`` file
    (``arch`` required).  ``arch`` is a spec of :func:`rmtlib.models.build_model`.

    Returns ``(model, info)`` with ``info = {"kind": "checkpoint" | "state_dict", "arch": ...,
    "meta": ...}``.  Every failure (missing or unreadable file, unknown architecture, keys or
    shapes that do not match) is one ``ValueError`` naming the file.
    """
    from .models import build_model, check_arch

    path = _check_path(path, "path")
    obj = read_file(path)
    source = repr(str(path))
    kwargs = dict(arch_kwargs or {})
    if isinstance(obj, dict) and obj.get("format") == _FORMAT:
        payload = _read_payload(path)
        spec = check_arch(arch) if arch is not None else payload.get("arch")
        if spec is None:
            raise ValueError(f"{source} is an rmtlib checkpoint of a {payload['model_class']} "
                             "without a recorded architecture: pass arch=... "
                             "(e.g. 'torchvision:resnet18' or 'package.module:factory')")
        model = build_model(spec, **kwargs)
        meta = _load_into(path, payload, model, strict=True)
        return model, {"kind": "checkpoint", "arch": spec, "meta": meta,
                       "training": payload.get("training") is not None}
    state = _unwrap_state_dict(obj, source)
    if arch is None:
        raise ValueError(f"{source} is a plain state_dict: pass the architecture that built it "
                         "(--arch torchvision:resnet18 or --arch package.module:factory)")
    spec = check_arch(arch)
    model = build_model(spec, **kwargs)
    check_state_dict(state, model, source)
    model.load_state_dict(state)
    return model, {"kind": "state_dict", "arch": spec, "meta": {}}
