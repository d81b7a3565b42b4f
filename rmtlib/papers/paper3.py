"""Paper 3 (Shmalo 2024, arXiv:2210.08415): training experiments on the stability of accuracy.

The doubling constants of model laws at a resolution (:func:`resolution_constant`) and the
validation of the estimator against them (:func:`validation_row`); the data sets of the
training experiments (:func:`training_data`), the networks and optimisers
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
from ..stability import (axis_directions, doubling_uncertainty, neuron_doubling_constant,
                         population_doubling_constant, sphere_directions, stability_measures)
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
    "resolution_constant",
    "stability_table",
    "train_stability_study",
    "training_data",
    "validation_row",
]

#: The activations compared (names of :func:`rmtlib.models.make_activation`).
ACTIVATIONS = ("abs", "relu", "leaky_relu")
#: The optimisers: full-batch gradient descent and mini-batch SGD (both without momentum).
OPTIMIZERS = ("gd", "sgd")
#: The data sets of :func:`training_data`.
DATASETS = ("disk", "planes_strips", "planes_flat", "mnist", "fashion_mnist")


def resolution_constant(law, q: float, *, direction=None, n_offsets: int = 1001,
                        n_deltas: int = 150) -> float:
    """The doubling constant of a law of :mod:`rmtlib.synthetic` at resolution ``q``: the
    largest ratio over slabs with inner mass at least ``q`` centred in the support (a fine grid:
    ``n_offsets`` centres, ``n_deltas`` half-widths from ``1e-5`` to ``1`` times the width of the
    support; for a Gaussian the support is cut at 9 standard deviations, beyond which the mass
    is below ``1e-18``; with the law's ``critical_offsets`` added when it has them, e.g. the
    centres next to the atom of :class:`~rmtlib.synthetic.FlatBall`), along ``direction``
    (default: any direction for the rotation-invariant laws, the normal of the flat disk for
    :class:`~rmtlib.synthetic.FlatBall`).  This is the
    limit, as ``n`` grows with ``min_count = q n``, of the estimate on ``n`` sample points."""
    q = check_float(q, "q", low=0.0, high=1.0, low_open=True)
    lo, hi = law.support
    if not np.isfinite(lo):
        lo, hi = -9.0 * law.sigma, 9.0 * law.sigma
    b = np.linspace(lo, hi, check_int(n_offsets, "n_offsets", minimum=2))
    deltas = np.geomspace(1e-5 * (hi - lo), hi - lo, check_int(n_deltas, "n_deltas", minimum=1))
    if hasattr(law, "critical_offsets"):
        extra = law.critical_offsets(deltas, direction)
        b = np.concatenate([b, extra[(extra >= lo) & (extra <= hi)]])

    def mass(a, c):
        return law.interval_mass(a, c, direction)

    return population_doubling_constant(mass, b, deltas, min_mass=q)["constant"]


def validation_row(task, *, n_directions: int = 200, min_count_fraction: float = 0.01,
                   n_bootstrap: int = 30) -> dict:
    """One validation of :func:`rmtlib.stability.doubling_uncertainty` against a law of known
    constant (for :func:`rmtlib.parallel.map_tasks`): ``task = (label, law, n, seed)`` samples
    ``n`` points with ``seed``, estimates with ``n_directions`` random directions plus the
    coordinate axes (the normal of :class:`~rmtlib.synthetic.FlatBall` among them) and
    ``min_count = max(30, ceil(min_count_fraction * n))``, and returns the estimate, its
    bootstrap standard error, bias and corrected value, the held-out value, the population
    constant at the same resolution (:func:`resolution_constant`) and the closed form."""
    label, law, n, seed = task
    X = law.sample(n, random_state=seed)
    m = min(n, max(30, int(np.ceil(min_count_fraction * n))))
    D = np.vstack([sphere_directions(n_directions, law.dim, random_state=seed + 1),
                   axis_directions(law.dim)])
    u = doubling_uncertainty(X, directions=D, min_count=m, n_bootstrap=n_bootstrap,
                             random_state=seed + 1)
    s = u.summary()
    return {"law": label, "dim": law.dim, "n": n, "min_count": m,
            **{k: s[k] for k in ("constant", "se", "bias", "corrected", "held_out",
                                 "interval_low", "interval_high", "seconds")},
            "resolution": m / n, "population": resolution_constant(law, m / n),
            "closed_form": float(law.doubling_constant)}


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


_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def training_data(name: str, n: int, *, seed: int = 0, gap: float = 0.02, dtype: str = "float64",
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

    ``dtype`` (``"float64"`` or ``"float32"``) is the precision of ``x`` (train the models of
    :func:`recipes` in the same one).
    """
    name = check_choice(name, "name", DATASETS)
    n = check_int(n, "n", minimum=10)
    dt = _DTYPES[check_choice(dtype, "dtype", tuple(_DTYPES))]
    if name in ("mnist", "fashion_mnist"):
        from ..data import load_dataset

        ds = load_dataset(name, root).subset(n, 1, seed=seed)
        return TrainingData(name, ds.train_x.flatten(1).to(dt), ds.train_y.clone(),
                            np.zeros(n, dtype=np.int64))
    if name == "disk":
        X, y = disk_classes(n, random_state=seed)
        group = np.zeros(n, dtype=np.int64)
    else:
        X, y, group = plane_classes(n, width=0.0 if name == "planes_flat" else 2 * gap, gap=gap,
                                    random_state=seed)
    return TrainingData(name, torch.from_numpy(X).to(dt), torch.from_numpy(y), group)


def recipes(dim: int, classes: int, *, hidden: int = 32,
            activations: Sequence[str] = ACTIVATIONS, dtype: str = "float64") -> list[Recipe]:
    """One :class:`~rmtlib.studies.Recipe` per activation: ``MLP([dim, hidden, classes],
    activation)`` in ``dtype`` (``"float64"`` or ``"float32"``), initialised with the seed (so
    the arms of a seed share the initialisation up to the activation).  The optimiser is set by
    :func:`train_stability_study`."""
    dim, classes = check_int(dim, "dim", minimum=1), check_int(classes, "classes", minimum=2)
    hidden = check_int(hidden, "hidden", minimum=1)
    dt = _DTYPES[check_choice(dtype, "dtype", tuple(_DTYPES))]
    out = []
    for act in activations:
        check_choice(act, "activations", ACTIVATIONS)

        def build(seed: int, act=act) -> torch.nn.Module:
            return MLP([dim, hidden, classes], activation=act, seed=seed).to(dt)

        out.append(Recipe(act, build, tags={"activation": act}))
    return out


def _study_task(task, *, data: dict, hidden: int, activations, seeds, settings: dict,
                threads: int | None):
    """One (data set, optimiser) study: every activation and seed (for :func:`map_tasks`)."""
    name, optimizer = task
    d = data[name]
    s = settings[optimizer]
    batch = len(d.x) if optimizer == "gd" else s["batch_size"]
    dtype = "float32" if d.x.dtype == torch.float32 else "float64"
    study = run_seeds(recipes(d.dim, d.classes, hidden=hidden, activations=activations,
                              dtype=dtype), seeds,
                      (d.x, d.y), (d.x, d.y), epochs=s["epochs"], lr=s["lr"], momentum=0.0,
                      batch_size=batch, threads=threads)
    frame = study.frame.rename(columns={"test_loss": "loss", "test_acc": "accuracy"})
    frame = frame.drop(columns=["prune_summary", "pruned", "shapes", "train_loss", "train_acc"])
    frame = frame.assign(dataset=name, optimizer=optimizer)
    return frame, {(name, optimizer, act, seed): m for (act, seed), m in study.models.items()}


def train_stability_study(data: dict, seeds: Sequence[int], *, gd: dict, sgd: dict,
                          hidden: int = 32, activations: Sequence[str] = ACTIVATIONS,
                          optimizers: Sequence[str] = OPTIMIZERS, threads: int | None = 1):
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
    threads : int or None
        Torch threads during each study (:func:`rmtlib.studies.run_seeds`; 1 makes the numbers
        independent of the machine).

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
                                "settings": settings, "threads": threads})
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
