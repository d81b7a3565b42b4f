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
