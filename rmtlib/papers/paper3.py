"""Paper 3 (Shmalo 2024, arXiv:2210.08415): training experiments on the stability of accuracy.

The data sets of the experiments (:func:`training_data`), the networks and optimisers
(:func:`recipes`), the studies over seeds with paired arms (:func:`train_stability_study`), the
stability measures of every run (:func:`stability_table`, built on
:func:`rmtlib.stability.stability_measures`) and the slab-dependent doubling constants of the
trained first layers (:func:`first_layer_doubling`).  :class:`CorrectnessRecorder` records which
training points are classified correctly after every epoch, to see which points an unstable
step flips.

Every run records the *training-set* loss and accuracy after each epoch exactly: the training
set is also passed to :func:`rmtlib.train.fit` as its evaluation set, so the history's
``test_loss`` / ``test_acc`` columns are evaluated on the training set (they are renamed
``loss`` / ``accuracy`` here).  For full-batch gradient descent an epoch is one step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..models import MLP
from ..parallel import map_tasks
from ..stability import neuron_doubling_constant, stability_measures
from ..studies import Recipe, run_seeds
from ..synthetic import disk_classes, plane_classes
from ..train import Callback, predict
from ..validation import check_choice, check_float, check_frame, check_int

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "OPTIMIZERS",
    "CorrectnessRecorder",
    "TrainingData",
    "first_layer_doubling",
    "recipes",
    "stability_table",
    "train_stability_study",
    "training_data",
]

#: The activations compared (names of :func:`rmtlib.models.make_activation`).
ACTIVATIONS = ("abs", "relu", "leaky_relu")
#: The optimisers: full-batch gradient descent and mini-batch SGD (both without momentum).
OPTIMIZERS = ("gd", "sgd")
#: The data sets of :func:`training_data`.
DATASETS = ("disk", "planes_strips", "planes_flat", "mnist", "fashion_mnist")


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Training points ``x`` (float64, ``(n, d)``), labels ``y`` (int64) and ``group`` (int64:
    0 for ordinary points, 1 and 2 for the two flat portions or strips of the plane data sets)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    group: np.ndarray

    @property
    def classes(self) -> int:
        return int(self.y.max()) + 1

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


def training_data(name: str, n: int, *, seed: int = 0, gap: float = 0.02,
                  root=None) -> TrainingData:
    """One of :data:`DATASETS` with ``n`` training points.

    * ``disk``: :func:`rmtlib.synthetic.disk_classes` (the condition holds);
    * ``planes_flat``: :func:`rmtlib.synthetic.plane_classes` with ``width = 0``: 20 % of the
      points on the line ``x_2 = gap`` (class 1) and 10 % on ``x_2 = -gap`` (class 0), next to
      the class boundary ``x_2 = 0`` (the condition fails);
    * ``planes_strips``: the same with the two groups spread over strips of width ``2 gap``
      (bounded density, a finite constant);
    * ``mnist``, ``fashion_mnist``: ``n`` training images (a deterministic subset,
      :meth:`rmtlib.data.Dataset.subset` with ``seed``), pixels in ``[0, 1]`` flattened to 784.
    """
    name = check_choice(name, "name", DATASETS)
    n = check_int(n, "n", minimum=10)
    if name in ("mnist", "fashion_mnist"):
        from ..data import load_dataset

        ds = load_dataset(name, root).subset(n, 1, seed=seed)
        return TrainingData(name, ds.train_x.flatten(1).double(), ds.train_y.clone(),
                            np.zeros(n, dtype=np.int64))
    if name == "disk":
        X, y = disk_classes(n, random_state=seed)
        group = np.zeros(n, dtype=np.int64)
    else:
        X, y, group = plane_classes(n, width=0.0 if name == "planes_flat" else 2 * gap, gap=gap,
                                    random_state=seed)
    return TrainingData(name, torch.from_numpy(X), torch.from_numpy(y), group)


def recipes(dim: int, classes: int, *, hidden: int = 32,
            activations: Sequence[str] = ACTIVATIONS) -> list[Recipe]:
    """One :class:`~rmtlib.studies.Recipe` per activation: ``MLP([dim, hidden, classes],
    activation)`` in float64, initialised with the seed (so the arms of a seed share the
    initialisation up to the activation).  The optimiser is set by
    :func:`train_stability_study`."""
    dim, classes = check_int(dim, "dim", minimum=1), check_int(classes, "classes", minimum=2)
    hidden = check_int(hidden, "hidden", minimum=1)
    out = []
    for act in activations:
        check_choice(act, "activations", ACTIVATIONS)

        def build(seed: int, act=act) -> torch.nn.Module:
            return MLP([dim, hidden, classes], activation=act, seed=seed).double()

        out.append(Recipe(act, build, tags={"activation": act}))
    return out


def _study_task(task, *, data: dict, hidden: int, activations, seeds, settings: dict):
    """One (data set, optimiser) study: every activation and seed (for :func:`map_tasks`)."""
    name, optimizer = task
    d = data[name]
    s = settings[optimizer]
    batch = len(d.x) if optimizer == "gd" else s["batch_size"]
    study = run_seeds(recipes(d.dim, d.classes, hidden=hidden, activations=activations), seeds,
                      (d.x, d.y), (d.x, d.y), epochs=s["epochs"], lr=s["lr"], momentum=0.0,
                      batch_size=batch)
    frame = study.frame.rename(columns={"test_loss": "loss", "test_acc": "accuracy"})
    frame = frame.drop(columns=["prune_summary", "pruned", "shapes", "train_loss", "train_acc"])
    frame = frame.assign(dataset=name, optimizer=optimizer)
    return frame, {(name, optimizer, act, seed): m for (act, seed), m in study.models.items()}


def train_stability_study(data: dict, seeds: Sequence[int], *, gd: dict, sgd: dict,
                          hidden: int = 32, activations: Sequence[str] = ACTIVATIONS,
                          optimizers: Sequence[str] = OPTIMIZERS):
    """Train every activation on every data set with every optimiser, for every seed.

    Parameters
    ----------
    data : mapping name -> TrainingData
    seeds : sequence of int
        Seeds of :func:`rmtlib.studies.run_seeds`: the arms of a seed share the initialisation
        and (for SGD) the order of the mini-batches.
    gd, sgd : dict
        ``{"epochs": ..., "lr": ...}`` (``sgd`` also ``"batch_size"``): full-batch gradient
        descent runs ``epochs`` steps; both use no momentum.
    hidden : int
        Width of the hidden layer.

    Returns ``(frame, models)``: the long frame (one row per data set, optimiser, activation,
    seed and epoch; ``loss`` and ``accuracy`` on the training set, nats/sample and %) and the
    trained models keyed by ``(dataset, optimizer, activation, seed)``.  The
    ``(data set, optimiser)`` studies go through :func:`rmtlib.parallel.map_tasks`.
    """
    if not data:
        raise ValueError("data must map data-set names to TrainingData")
    settings = {"gd": dict(gd), "sgd": dict(sgd)}
    for opt in optimizers:
        check_choice(opt, "optimizers", OPTIMIZERS)
        s = settings[opt]
        check_int(s.get("epochs"), f"{opt}['epochs']", minimum=1)
        check_float(s.get("lr"), f"{opt}['lr']", low=0.0, low_open=True)
        if opt == "sgd":
            check_int(s.get("batch_size"), "sgd['batch_size']", minimum=1)
    tasks = [(name, opt) for name in data for opt in optimizers]
    results = map_tasks(_study_task, tasks, label="paper-3 studies",
                        shared={"data": dict(data), "hidden": hidden,
                                "activations": tuple(activations), "seeds": tuple(seeds),
                                "settings": settings})
    frame = pd.concat([f for f, _ in results], ignore_index=True)
    lead = ["dataset", "optimizer", "activation", "seed", "epoch", "loss", "accuracy"]
    models = {k: m for _, ms in results for k, m in ms.items()}
    return frame[lead + [c for c in frame.columns if c not in lead]], models


RUN_KEYS = ["dataset", "optimizer", "activation", "seed"]


def stability_table(frame: pd.DataFrame, *, levels: Sequence[float] = (50.0, 90.0)) -> pd.DataFrame:
    """:func:`rmtlib.stability.stability_measures` of every run of a frame of
    :func:`train_stability_study`: one row per (dataset, optimizer, activation, seed)."""
    check_frame(frame, [*RUN_KEYS, "epoch", "loss", "accuracy"])
    rows = []
    for key, g in frame.groupby(RUN_KEYS, sort=False):
        g = g.sort_values("epoch")
        rows.append({**dict(zip(RUN_KEYS, key)),
                     **stability_measures(g["loss"].to_numpy(), g["accuracy"].to_numpy(),
                                          levels=levels)})
    return pd.DataFrame(rows)


def first_layer_doubling(models: dict, data: dict, **kwargs) -> pd.DataFrame:
    """The slab-dependent (BJS) doubling constant of each trained network's first layer on its
    training points (:func:`rmtlib.stability.neuron_doubling_constant`; ``kwargs`` are its
    options: ``deltas``, ``min_count``, ...).  One row per model: the keys, ``constant``, the
    neuron attaining it, ``n_admissible`` (slabs holding at least ``min_count`` points)."""
    rows = []
    for key, model in models.items():
        first = model.layers[0]
        est = neuron_doubling_constant(data[key[0]].x, first.weight, first.bias, **kwargs)
        rows.append({**dict(zip(RUN_KEYS, key)), "constant": est.constant,
                     "neuron": est.direction_index, "delta": est.delta,
                     "n_admissible": est.n_admissible})
    return pd.DataFrame(rows)


class CorrectnessRecorder(Callback):
    """Record, after every training epoch (and before the first), which points of ``(x, y)``
    the model classifies correctly: ``correct`` is a boolean array ``(epochs + 1, n)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.rows: list[np.ndarray] = []

    def _record(self, model):
        self.rows.append((predict(model, self.x).argmax(1) == self.y).numpy())

    def on_train_begin(self, state):
        self._record(state.model)

    def on_epoch_end(self, state):
        self._record(state.model)

    @property
    def correct(self) -> np.ndarray:
        return np.array(self.rows)
