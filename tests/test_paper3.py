"""Tests of rmtlib.papers.paper3: data sets, recipes, the stability study and its tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.papers.paper3 import (CorrectnessRecorder, first_layer_doubling, recipes,
                                  stability_table, train_stability_study, training_data)
from rmtlib.train import evaluate, fit


def test_training_data_sets():
    for name in ("disk", "planes_flat", "planes_strips"):
        d = training_data(name, 100, seed=1)
        assert d.x.dtype == torch.float64 and d.x.shape == (100, 2) and d.classes == 2
        assert d.group.shape == (100,)
    flat = training_data("planes_flat", 100)
    assert torch.all(flat.x[flat.group == 1, 1] == 0.02)
    with pytest.raises(ValueError, match="name"):
        training_data("cifar", 100)


def test_mnist_subset():
    d = training_data("mnist", 50, seed=0)
    assert d.x.shape == (50, 784) and d.classes == 10 and float(d.x.max()) <= 1.0


def test_recipes_share_the_initialisation_across_activations():
    rs = recipes(2, 2, hidden=8)
    assert [r.name for r in rs] == ["abs", "relu", "leaky_relu"]
    a, b = rs[0].build(3), rs[1].build(3)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert a.layers[0].weight.dtype == torch.float64


def test_study_records_training_loss_and_accuracy_exactly():
    data = {"disk": training_data("disk", 60, seed=0), "planes_flat": training_data("planes_flat", 60)}
    frame, models = train_stability_study(data, [0, 1], gd={"epochs": 5, "lr": 0.1},
                                          sgd={"epochs": 2, "lr": 0.05, "batch_size": 20},
                                          hidden=8)
    assert len(models) == 2 * 2 * 3 * 2
    assert len(frame) == 2 * 3 * 2 * (6 + 3)
    # the recorded accuracy after the last epoch is the model's training accuracy
    key = ("disk", "gd", "abs", 1)
    row = frame[(frame.dataset == "disk") & (frame.optimizer == "gd") & (frame.activation == "abs")
                & (frame.seed == 1) & (frame.epoch == 5)].iloc[0]
    d = data["disk"]
    loss, acc = evaluate(models[key], (d.x, d.y))
    assert row.loss == pytest.approx(loss, rel=1e-12, abs=0) and row.accuracy == acc
    table = stability_table(frame)
    assert len(table) == 24 and {"co_descent", "drop_after_90", "max_step_drop"} <= set(table.columns)
    # gradient descent with a small step on this tiny problem: the loss falls at every step
    assert (table[table.optimizer == "gd"].loss_increases == 0).all()
    bjs = first_layer_doubling(models, data, min_count=5)
    assert len(bjs) == 24 and bjs.constant.notna().any()


def test_correctness_recorder_agrees_with_the_history():
    d = training_data("planes_flat", 80, seed=2)
    model = recipes(2, 2, hidden=8, activations=["relu"])[0].build(0)
    rec = CorrectnessRecorder(d.x, d.y)
    h = fit(model, (d.x, d.y), (d.x, d.y), epochs=4, batch_size=20, lr=0.05, momentum=0.0,
            callbacks=[rec], progress=False)
    assert rec.correct.shape == (5, 80)
    assert np.allclose(100 * rec.correct.mean(1), h.frame.test_acc.to_numpy())


def test_stability_table_needs_its_columns():
    with pytest.raises(ValueError, match="lacks"):
        stability_table(pd.DataFrame({"dataset": ["a"]}))


def test_paper3_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmtlib import plotting
    from rmtlib.stability import doubling_constant

    est = doubling_constant(np.random.default_rng(0).random((500, 2)), n_directions=5,
                            random_state=0)
    ax = plotting.doubling_profile(est, n_deltas=3)
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log" and "centre" in ax.get_xlabel()
    frame = pd.DataFrame({"data": ["a", "b"], "c": [2.0, 30.0], "lo": [1.8, 20.0],
                          "hi": [2.5, 40.0], "opt": ["gd", "sgd"], "y": [0.1, 5.0],
                          "ye": [0.05, 1.0]})
    ax = plotting.estimate_dots(frame, label="data", value="c", low="lo", high="hi", hue="opt",
                                reference={"2": 2.0})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    ax = plotting.errorbar_scatter(frame, "c", "y", hue="opt", xerr=None, yerr="ye",
                                   annotate="data")
    assert ax.get_xscale() == "log" and len(ax.texts) == 2
    curve = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.4], "accuracy": [50, 90, 80]})
    top, bottom = plotting.loss_accuracy(curve, marks={"epoch 2": 2})
    assert "loss" in top.get_ylabel() and "accuracy (%)" in bottom.get_ylabel()
    X = np.random.default_rng(1).random((6, 2))
    before = np.array([1, 1, 0, 0, 1, 1], bool)
    after = np.array([1, 0, 1, 0, 1, 0], bool)
    ax = plotting.flipped_points(X, before, after, np.array([0, 2, 0, 0, 1, 2]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("became wrong (2") for t in labels)
    with pytest.raises(ValueError, match="DoublingEstimate"):
        plotting.doubling_profile(frame)
    plt.close("all")


def test_resolution_constants_of_the_model_laws():
    from rmtlib.papers.paper3 import resolution_constant
    from rmtlib.synthetic import FlatBall, Gaussian, UniformBall

    assert resolution_constant(UniformBall(1), 0.01) == pytest.approx(2.0, rel=1e-9, abs=0)
    disk = [resolution_constant(UniformBall(2), q) for q in (0.1, 0.01, 0.001)]
    assert disk == sorted(disk) and disk[-1] <= 2 ** 1.5
    # unbounded support: a slab far out holding mass q whose double holds almost all: 1/q
    assert resolution_constant(Gaussian(2), 0.01) == pytest.approx(100.0, rel=0.02, abs=0)
    # a flat portion of mass p: about 2 + p/q, also at resolutions finer than the centre grid
    for q in (0.01, 1e-4):
        v = resolution_constant(FlatBall(2, 0.1, 0.3), q)
        assert v == pytest.approx(2 + 0.1 / q, rel=0.1, abs=0)
