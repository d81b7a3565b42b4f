"""Benchmarks of the PyTorch engine (:mod:`rmtlib.spectra`, :mod:`rmtlib.prune`,
:mod:`rmtlib.train`).

``bench_prune_event_vs_epoch``
    Paper-1 setting: MLP 784-1000-10, SGD lr 0.08, momentum 0.9, batch 128, on 60,000
    MNIST-size inputs (real MNIST when ``$RMTLIB_DATA`` is set, else uniform random pixels
    with random labels).  Trains epochs of :func:`rmtlib.train.fit` (training time only),
    then times one pruning event of the default policy (BEMA, GoF cutoff 0.1, keep the
    spikes + 45% of the bulk, factorize) on copies of the trained model, alternating
    epochs and events so both see the same load of a shared machine (one torch thread).  ``ratio`` =
    median over rounds of event time / epoch time (target <= 0.05).  ``prune_cold_seconds``
    is the first event in the process, which also pays one-time costs (the Tracy--Widom
    quantile and the MP quantiles of each new shape are cached afterwards);
    ``second_event_seconds`` prunes the already factorized model (new shapes).
``bench_analyze_4096``
    :func:`rmtlib.spectra.analyze` on ``Linear(4096, 4096) -> ReLU -> Linear(4096, 10)``,
    with and without two extra selectors, and the Gram eigen-solve alone (:func:`rmtlib.linalg.gram_eigenvalues`).
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch
from torch import nn

from .._threads import torch_threads
from ..linalg import gram_eigenvalues
from ..models import MLP
from ..prune import PrunePolicy, prune_model
from ..spectra import analyze
from ..train import fit
from ._timing import median_time

__all__ = ["bench_analyze_4096", "bench_prune_event_vs_epoch"]


def training_data():
    """``((x, y), source)``: MNIST's training set if ``$RMTLIB_DATA`` is set, else 60,000 uniform
    random 28x28 images with random labels."""
    if os.environ.get("RMTLIB_DATA"):
        from ..data import load_dataset

        ds = load_dataset("mnist")
        return (ds.train_x, ds.train_y), "mnist"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60_000, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (60_000,), generator=g)
    return (x, y), "random (set RMTLIB_DATA for MNIST)"


def bench_prune_event_vs_epoch(quick: bool = False) -> dict:
    """Cost of one pruning event on MLP 784-1000-10 relative to one training epoch.

    Epochs and pruning events are timed in alternation (``rounds`` times: one training
    epoch, then the median of several events on copies of the model just trained), so
    both see the same machine load; ``ratio`` is the median of the per-round ratios.
    """
    with torch_threads(1):  # one thread: stable timings on a shared machine
        return _prune_event_vs_epoch(quick)


def _prune_event_vs_epoch(quick: bool) -> dict:
    train, source = training_data()
    model = MLP([784, 1000, 10], seed=0)
    policy = PrunePolicy()  # BEMA, gof 0.1, keep spikes + 45% of the bulk, factorize

    def epoch() -> float:
        hist = fit(model, train, None, epochs=1, batch_size=128, lr=0.08, momentum=0.9,
                   seed=0, progress=False)
        return float(hist.frame.seconds.iloc[1])

    epoch()  # warm-up epoch: the model is "trained-ish" before any event is timed
    pruned = copy.deepcopy(model)
    t0 = time.perf_counter()
    report = prune_model(pruned, policy, epoch=1)
    cold = time.perf_counter() - t0
    widths_first = "-".join(map(str, pruned.widths))
    t0 = time.perf_counter()
    prune_model(pruned, policy, epoch=2)
    second_s = time.perf_counter() - t0

    epochs, events, ratios = [], [], []
    for _ in range(2 if quick else 3):
        epochs.append(epoch())
        events.append(median_time(lambda m: prune_model(m, policy, epoch=1), 3 if quick else 5,
                                   setup=lambda: copy.deepcopy(model)))
        ratios.append(events[-1] / epochs[-1])
    first = report.layers.set_index("name").loc["layers.0"]
    return {
        "data": source,
        "train_samples": len(train[0]),
        "rounds": len(ratios),
        "epoch_seconds": statistics.median(epochs),
        "prune_event_seconds": statistics.median(events),
        "ratio": statistics.median(ratios),
        "ratio_max": max(ratios),
        "target_ratio": 0.05,
        "prune_cold_seconds": cold,
        "second_event_seconds": second_s,
        "layer1_gof": float(first.gof),
        "layer1_action": str(first.action),
        "layer1_keep": int(first.rank_after),
        "widths_after_first_event": widths_first,
        "widths_after_second_event": "-".join(map(str, pruned.widths)),
    }


def bench_analyze_4096(quick: bool = False) -> dict:
    """``analyze`` on a model with a 4096 x 4096 Linear layer (1024 x 1024 when ``quick``)."""
    size = 1024 if quick else 4096
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(size, size), nn.ReLU(), nn.Linear(size, 10))
    repeats = 1 if quick else 3
    analyze(nn.Sequential(nn.Linear(64, 64)))  # one-time caches (Tracy-Widom quantile)
    W = model[0].weight.detach()
    gram_eigenvalues(W)  # warm-up: first large eigh pays allocations
    gram_eig = median_time(lambda: gram_eigenvalues(W), repeats)
    t_an = median_time(lambda: analyze(model), repeats)
    t_sel = median_time(lambda: analyze(model, selectors=["gavish_donoho", "energy"]), repeats)
    row = analyze(model).set_index("name").loc["0"]
    return {
        "layer_shape": f"{size}x{size}",
        "gram_eigvalsh_seconds": gram_eig,
        "analyze_seconds": t_an,
        "analyze_with_2_selectors_seconds": t_sel,
        "sigma2": float(row.sigma2),
        "sigma2_theory": 1.0 / (3 * size),  # U(-1/sqrt(n), 1/sqrt(n)) init: variance 1/(3n)
        "spikes": int(row.spikes),
        "gof": float(row.gof),
    }
