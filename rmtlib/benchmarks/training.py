"""Benchmark: the overhead of :func:`rmtlib.train.fit` over a plain PyTorch training loop.

Both train copies of one ``MLP([784, 1000, 10])`` (paper 1's network; same initialisation) with
SGD (lr 0.08, momentum 0.9, batch 128) on the same data in the same mini-batch order (a
permutation drawn from a ``torch.Generator`` with the same seed each epoch).  The baseline is the
idiomatic loop -- index the batch, ``zero_grad``, forward, cross-entropy, ``backward``, ``step`` --
which records nothing; ``fit`` also keeps the running loss and accuracy of the epoch (on the
device, one host synchronisation per epoch), its learning-rate schedule and its callbacks.  Epochs
of the two are timed in alternation (so both see the same machine load) on one torch thread;
``ratio`` is the median over rounds of (``fit`` epoch) / (plain epoch), ``fit``'s epoch time being
its own ``History.seconds`` (training only, without the test evaluation); which of the two runs
first alternates between rounds.  Target: <= 1.05.  On a loaded machine epoch times vary by
more than the difference sought, so ``bookkeeping_share`` also measures what ``fit`` adds per
batch (two writes into device tensors) against one training step, each the median of many
repeats.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn.functional as F

from .._threads import torch_threads
from ..models import MLP
from ..train import fit
from .engine import training_data

__all__ = ["bench_fit_vs_plain_loop", "plain_epoch"]


def plain_epoch(model, optimizer, x, y, batch_size: int, generator: torch.Generator) -> float:
    """One epoch of the idiomatic loop; returns its wall time (s)."""
    t0 = time.perf_counter()
    model.train()
    perm = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        xb, yb = x[idx], y[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def _median(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bookkeeping_share(model, xb, yb) -> float:
    """What ``fit`` does per batch beyond the plain loop, relative to one training step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.08, momentum=0.9)
    losses, correct = torch.empty(8), torch.empty(8, dtype=torch.long)
    state = {}

    def step():
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.update(out=out, loss=loss)

    def record():
        losses[3] = state["loss"].detach()
        correct[3] = (state["out"].argmax(1) == yb).sum()

    step()
    return _median(record, 500) / _median(step, 30)


def bench_fit_vs_plain_loop(quick: bool = False) -> dict:
    """``fit`` epoch time relative to the plain loop (same model, data and batch order)."""
    (x, y), source = training_data()
    if quick:
        x, y = x[:10_000], y[:10_000]
    rounds = 3 if quick else 5
    base = MLP([784, 1000, 10], seed=0)
    ours, plain = copy.deepcopy(base), copy.deepcopy(base)
    opt = torch.optim.SGD(plain.parameters(), lr=0.08, momentum=0.9)
    fit_t, plain_t, ratios = [], [], []
    with torch_threads(1):
        plain_epoch(copy.deepcopy(base), torch.optim.SGD(base.parameters(), lr=0.08), x, y, 128,
                    torch.Generator().manual_seed(0))  # warm-up
        for r in range(rounds):
            gen = torch.Generator().manual_seed(r)

            def ours_epoch(r=r):
                h = fit(ours, (x, y), None, epochs=1, batch_size=128, lr=0.08, momentum=0.9,
                        seed=r, progress=False)
                fit_t.append(float(h.frame.seconds.iloc[1]))

            def plain_one(gen=gen):
                plain_t.append(plain_epoch(plain, opt, x, y, 128, gen))

            for step in ((ours_epoch, plain_one) if r % 2 == 0 else (plain_one, ours_epoch)):
                step()  # alternate which goes first
            ratios.append(fit_t[-1] / plain_t[-1])
        book = _bookkeeping_share(copy.deepcopy(base), x[:128], y[:128])
    ratio = statistics.median(ratios)
    rows = [{"round": i + 1, "fit_seconds": f, "plain_seconds": p, "ratio": f / p}
            for i, (f, p) in enumerate(zip(fit_t, plain_t))]
    return {
        "title": "rmtlib.train.fit against a plain PyTorch loop",
        "what": (f"One epoch of `rmtlib.train.fit` versus one epoch of the idiomatic loop (index, "
                 f"zero_grad, forward, cross-entropy, backward, step) on MLP 784-1000-10, "
                 f"{len(x):,} {source} images, batch 128, SGD lr 0.08 momentum 0.9, same "
                 f"initialisation and batch order, one torch thread; epochs of the two alternate "
                 f"({rounds} rounds) so both see the same load."),
        "target": "<= 1.05x the plain loop",
        "metrics": {
            "ratio": {"value": ratio, "doc": "median over rounds of fit epoch / plain-loop epoch "
                                             "(dimensionless)"},
            "ratio_max": {"value": max(ratios), "doc": "largest per-round ratio (dimensionless)"},
            "bookkeeping_share": {"value": book, "doc": "fit's per-batch bookkeeping (running loss "
                                  "and accuracy, on the device) / one training step, medians of "
                                  "many repeats (dimensionless; insensitive to machine load)"},
            "fit_epoch_seconds": {"value": statistics.median(fit_t),
                                  "doc": "median fit epoch, training only (s)"},
            "plain_epoch_seconds": {"value": statistics.median(plain_t),
                                    "doc": "median plain-loop epoch (s)"},
            "train_samples": {"value": len(x), "doc": "training images per epoch (count)"},
        },
        "headline": "ratio",
        "table": rows,
    }
