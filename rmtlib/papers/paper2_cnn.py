"""Paper 2 (Berlyand, Sandier, Shmalo, Zhang 2024, arXiv:2310.03165) beyond its fully connected
table: gradual RMT pruning of a CNN during training, pruning of trained networks against
magnitude pruning, and measurements of the loss landscape.

* :func:`gradual_recipe` -- one arm of the authors' schedule: prune every ``every`` epochs
  keeping ``spikes + floor(f(epoch) * bulk)`` components with :class:`LinearDecay`
  ``f(e) = max(0, 1 - e / horizon)``; both arms of a comparison train with the same learning
  rate schedule :func:`lr_schedule` (x0.96 at each prune).  ``paper_exact=True`` is the
  authors' code (:meth:`rmtlib.train.RMTPruning.paper_exact`: prune before the epoch, fresh
  optimizer, factors analysed separately, BEMA quirks, one extra spike) with their CNN
  goodness-of-fit cutoffs (conv / fc) and no output-width guard.
* :func:`cnn_builder` -- :class:`rmtlib.models.PaperCNN` (defects fixed), or with
  ``paper_exact=True`` :class:`PaperExactCNN`: the authors' ``log_softmax`` over the *batch*
  dimension and dropout left on at test time.
* :func:`prune_sweep` -- prune a trained network with RMT at a sweep of bulk fractions ``f``
  (``f = 0``: BEMA's own choice, the spikes only), with global magnitude pruning and with
  random-rank truncation at the same parameter count, each with and without a short
  fine-tuning.
* :func:`landscape_measures` -- top Hessian eigenvalue, loss along the straight path from the
  initial to the final weights (:mod:`rmtlib.landscape`).
* recorders (:func:`record_arms`, :func:`record_paired`) write the per-arm records
  (``per_seed``, ``mean``, ``sd``, ``n``) of paper 1's format.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..baselines import (
    count_nonzero_parameters,
    magnitude_prune,
    masked_gradients,
    prunable_weights,
    random_rank_prune,
)
from ..landscape import dense_copy, path_losses, top_hessian_eigenvalue
from ..models import PaperCNN
from ..parallel import map_tasks
from ..prune import PrunePolicy, count_parameters, prune_model
from ..stats import final_rows, paired_differences, paired_verdict, record_tree, seed_record
from ..studies import Recipe, SeedStudy
from ..train import Callback, RMTPruning, evaluate, fit
from ..validation import check_bool, check_float, check_int, check_probability

__all__ = [
    "METHODS",
    "LinearDecay",
    "PaperExactCNN",
    "cnn_builder",
    "gradual_recipe",
    "landscape_measures",
    "lr_schedule",
    "prune_sweep",
    "rank_table",
    "record_arms",
    "record_paired",
    "sweep_records",
    "sweep_summary",
    "train_accuracy",
]

#: Methods of :func:`prune_sweep`.
METHODS = ("rmt", "magnitude", "random_rank")


@dataclass(frozen=True)
class LinearDecay:
    """Paper 2's bulk fraction ``f(epoch) = max(0, 1 - epoch / horizon)`` (authors: horizon
    300, or 200 in their table's write-up)."""

    horizon: float

    def __post_init__(self):
        check_float(self.horizon, "horizon", low=0.0, low_open=True)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.horizon)


def lr_schedule(every: int, factor: float = 0.96) -> dict:
    """``lr * factor ** ((epoch - 1) // every)``: the rate drops by ``factor`` after each prune
    (at epochs ``every, 2 every, ...``); used for the pruned *and* the unpruned arm."""
    return {"every": check_int(every, "every", minimum=1),
            "factor": check_float(factor, "factor", low=0.0, low_open=True)}


class PaperExactCNN(PaperCNN):
    """:class:`rmtlib.models.PaperCNN` with the authors' two defects: the output is
    ``log_softmax`` over dimension 0 (the batch, so a prediction depends on the other samples of
    its batch) and every dropout stays active in ``eval()`` mode (their ``F.dropout`` calls
    ignore the mode).  :func:`rmtlib.train.fit` takes its cross-entropy on this output (the
    authors take NLL on it; the class-wise log-softmax fit adds on top does not change the
    batch dependence)."""

    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=0)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.training = True
        return self


def cnn_builder(arch: Mapping, *, paper_exact: bool = False) -> Callable[[int], nn.Module]:
    """``seed -> PaperCNN(**arch, seed=seed)`` (:class:`PaperExactCNN` with ``paper_exact``)."""
    paper_exact = check_bool(paper_exact, "paper_exact")
    arch = dict(arch)
    cls = PaperExactCNN if paper_exact else PaperCNN
    cls(**arch, seed=0)  # fail now on a bad architecture

    def build(seed: int) -> nn.Module:
        return cls(**arch, seed=seed)

    return build


def _is_conv(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or name.startswith("features")


def _is_fc(name: str, module: nn.Module) -> bool:
    return not _is_conv(name, module)


def gradual_recipe(name: str, build: Callable[[int], nn.Module], *, prune: bool, every: int,
                   horizon: float, paper_exact: bool = False, alpha: float = 0.2,
                   beta: float = 0.1, gof: float = 0.1, gof_conv: float = 0.6,
                   gof_fc: float = 0.05,
                   extra: Callable[[], Sequence[Callback]] | None = None,
                   tags: Mapping | None = None) -> Recipe:
    """One arm of paper 2's gradual pruning (module docstring).

    ``prune=False`` is the unpruned arm (same model, same seed, same learning-rate schedule:
    pass ``lr_schedule=lr_schedule(every)`` to :func:`rmtlib.studies.run_seeds`).  Corrected
    version: one :class:`rmtlib.prune.PrunePolicy` (BEMA ``alpha``, ``beta``, goodness-of-fit
    cutoff ``gof``, the classifier head keeps its output width) pruned *after* every
    ``every``-th epoch.  ``paper_exact``: the authors' schedule with the cutoffs ``gof_conv``
    for convolutions and ``gof_fc`` for the linear layers (two policies) and no head guard.
    ``extra`` makes further callbacks for each run (run after the pruning, e.g. a
    :class:`rmtlib.landscape.BulkShareTracker`).
    """
    prune, paper_exact = check_bool(prune, "prune"), check_bool(paper_exact, "paper_exact")
    every = check_int(every, "every", minimum=1)
    decay = LinearDecay(horizon)
    common = {"selector": "bema", "alpha": alpha, "beta": beta, "action": "factorize"}
    if not prune:
        cbs: Callable[[], list] = list
    elif paper_exact:
        conv = PrunePolicy(**common, gof=gof_conv, head=None, layers=_is_conv)
        fc = PrunePolicy(**common, gof=gof_fc, head=None, layers=_is_fc)

        def cbs() -> list:
            return [RMTPruning.paper_exact(p, every=every, keep_fraction=decay) for p in (conv, fc)]
    else:
        policy = PrunePolicy(**common, gof=gof)

        def cbs() -> list:
            return [RMTPruning(policy, every=every, keep_fraction=decay, start_epoch=every)]

    def callbacks() -> list:
        return [*cbs(), *(extra() if extra is not None else [])]

    arm = "pruned" if prune else "unpruned"
    return Recipe(name, build, callbacks, tags={"variant": "paper_exact" if paper_exact
                                                else "corrected", "arm": arm, **dict(tags or {})})


def train_accuracy(study: SeedStudy, train, *, batch_size: int = 2048) -> pd.DataFrame:
    """Accuracy (%) and loss of every trained model of ``study`` on the training set, in eval
    mode (the history's ``train_acc`` is a running mean in training mode, with dropout):
    columns ``recipe``, ``seed``, ``train_acc_eval``, ``train_loss_eval``."""
    rows = []
    for (recipe, seed), model in study.models.items():
        loss, acc = evaluate(model, train, batch_size=batch_size)
        rows.append({"recipe": recipe, "seed": seed, "train_acc_eval": acc,
                     "train_loss_eval": loss})
    return pd.DataFrame(rows)


def rank_table(events: pd.DataFrame) -> pd.DataFrame:
    """Per recipe, seed, epoch and layer: the rank after each pruning event (skipped layers
    keep ``rank_before``) and whether the layer was split, from :meth:`SeedStudy.events`."""
    if events.empty:
        return pd.DataFrame(columns=["recipe", "seed", "epoch", "name", "p", "spikes",
                                     "rank_after", "action"])
    cols = ["recipe", "seed", "epoch", "name", "p", "spikes", "rank_after", "action"]
    return events[cols].reset_index(drop=True)


def record_arms(run, frame: pd.DataFrame, train_eval: pd.DataFrame | None = None, *,
                by: str = "recipe", what: str = "") -> dict:
    """Log ``final_test_acc``, ``final_train_acc`` and ``n_params`` per arm (``by`` column of
    the final rows of the history ``frame``) in paper 1's record format; the training
    accuracy is the eval-mode one of ``train_eval`` (:func:`train_accuracy`) when given, else
    the history's running mean.  Returns the three records."""
    fin = final_rows(frame)
    if train_eval is not None:
        fin = fin.merge(train_eval, on=["recipe", "seed"], how="left")
        fin["train_acc"] = fin["train_acc_eval"]
        how = "evaluated on the training set in eval mode"
    else:
        how = "running mean over the last epoch's mini-batches"
    out = {
        "final_test_acc": run.log("final_test_acc", record_tree(fin, "test_acc", [by]),
                                  doc=f"{what}final test accuracy per arm, per seed and mean/sd "
                                      "over seeds (%)"),
        "final_train_acc": run.log("final_train_acc", record_tree(fin, "train_acc", [by]),
                                   doc=f"{what}final training accuracy per arm ({how}), per seed "
                                       "and mean/sd over seeds (%)"),
        "n_params": run.log("n_params", record_tree(fin, "n_params", [by]),
                            doc=f"{what}stored parameters at the end of training per arm, per "
                                "seed (count)"),
    }
    return out


def record_paired(run, key: str, frame: pd.DataFrame, baseline: str, other: str, *,
                  metric: str = "test_acc", doc: str, digits: int = 2) -> pd.DataFrame:
    """Log ``key`` = the per-seed paired difference ``other - baseline`` of ``metric`` at
    the final epoch as a seed record (plus ``n_positive``) and glue ``<key>_verdict``
    (:func:`rmtlib.stats.paired_verdict`).  Returns the pairs."""
    d = paired_differences(frame, baseline, other, metric)
    rec = seed_record(dict(zip(d.seed, d.difference)))
    rec["n_positive"] = int((d.difference > 0).sum())
    run.log(key, rec, doc=doc, digits=digits)
    run.text(f"{key}_verdict", paired_verdict(d.difference, digits))
    return d


# ------------------------------------------------------------------- pruning trained nets


def _finetune(model: nn.Module, train, options: Mapping, seed: int, masks=None) -> None:
    if masks is None:
        fit(model, train, epochs=1, seed=seed, progress=False, **options)
    else:
        with masked_gradients(model, masks):
            fit(model, train, epochs=1, seed=seed, progress=False, **options)


def _sweep_one(task, *, train, test, fractions, policy, finetune, finetune_options):
    net, seed, model = task
    base = count_parameters(model)
    weights = sum(w.numel() for w in prunable_weights(model).values())
    rows = []
    _, acc0 = evaluate(model, test)
    rows.append({"net": net, "seed": seed, "method": "unpruned", "f": np.nan, "finetuned": False,
                 "n_params": base, "kept_share": 1.0, "test_acc": acc0})
    for i, f in enumerate(fractions):
        rmt = copy.deepcopy(model)
        rep = prune_model(rmt, PrunePolicy(**policy, keep_fraction=f), seed=seed)
        n_rmt = count_parameters(rmt)
        ranks = {e.name: e.rank_after for e in rep.edits}
        mag = copy.deepcopy(model)
        mrep = magnitude_prune(mag, max(0, n_rmt - (base - weights)))
        rnd = copy.deepcopy(model)
        if ranks:
            random_rank_prune(rnd, ranks, random_state=np.random.SeedSequence([seed, i]))
        arms = {"rmt": (rmt, None, n_rmt), "magnitude": (mag, mrep, mrep.params_after),
                "random_rank": (rnd, None, count_parameters(rnd))}
        for method, (m, masks, n) in arms.items():
            rows.append({"net": net, "seed": seed, "method": method, "f": f, "finetuned": False,
                         "n_params": n, "kept_share": n / base, "test_acc": evaluate(m, test)[1]})
            if finetune:
                _finetune(m, train, finetune_options, seed, masks)
                n_after = count_nonzero_parameters(m) if masks is not None else count_parameters(m)
                rows.append({"net": net, "seed": seed, "method": method, "f": f,
                             "finetuned": True, "n_params": n_after, "kept_share": n_after / base,
                             "test_acc": evaluate(m, test)[1]})
    return pd.DataFrame(rows)


def prune_sweep(models: Mapping, train, test, *, fractions: Sequence[float],
                policy: Mapping | None = None, finetune: bool = True,
                finetune_options: Mapping | None = None, progress: bool = True) -> pd.DataFrame:
    """Prune each trained model of ``models`` (``{(net, seed): model}``, left unchanged) at
    every bulk fraction ``f`` of ``fractions`` and compare at the same parameter count.

    For each ``f``: ``rmt`` -- :func:`rmtlib.prune.prune_model` with
    ``PrunePolicy(**policy, keep_fraction=f)`` (``f = 0`` keeps BEMA's spikes only, BEMA's own
    choice); ``magnitude`` -- :func:`rmtlib.baselines.magnitude_prune` (global) to the RMT
    model's parameter count (the biases and unselected parameters are the same in both);
    ``random_rank`` -- :func:`rmtlib.baselines.random_rank_prune` at the ranks RMT kept, random
    components (seeded by the seed and ``f``'s position).  With ``finetune``, each pruned model
    is then trained one epoch on ``train`` (:func:`rmtlib.train.fit` with
    ``finetune_options``, e.g. ``lr``; magnitude masks held fixed) and evaluated again.

    Returns one row per net, seed, method, ``f`` and ``finetuned``: ``n_params`` (nonzero for
    magnitude, stored otherwise; after fine-tuning a layer truncated in place is refilled, its
    stored count unchanged), ``kept_share`` (of the unpruned count) and ``test_acc`` (%); plus
    one ``method="unpruned"`` row per model.  The models are independent tasks of
    :func:`rmtlib.parallel.map_tasks`.
    """
    fr = [check_probability(f, "fractions[i]") for f in fractions]
    if not fr:
        raise ValueError("fractions must hold at least one bulk fraction in [0, 1]")
    finetune = check_bool(finetune, "finetune")
    pol = {"gof": 0.1, "alpha": 0.2, "beta": 0.1, **dict(policy or {})}
    tasks = [(str(net), int(seed), model) for (net, seed), model in models.items()]
    parts = map_tasks(_sweep_one, tasks, shared={
        "train": train, "test": test, "fractions": fr, "policy": pol, "finetune": finetune,
        "finetune_options": dict(finetune_options or {"lr": 0.01})}, label="pruned nets",
        progress=progress)
    return pd.concat(parts, ignore_index=True)


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of ``kept_share`` (%) and ``test_acc`` per net, method, ``f`` and
    ``finetuned`` (columns ``..._mean``, ``..._sd``, ``n``)."""
    rows = sweep[sweep.method != "unpruned"]
    g = rows.groupby(["net", "method", "f", "finetuned"], sort=False)
    out = g.agg(kept_pct_mean=("kept_share", lambda s: 100 * s.mean()),
                kept_pct_sd=("kept_share", lambda s: 100 * s.std()),
                test_acc_mean=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
                n=("seed", "nunique")).reset_index()
    return out


def sweep_records(sweep: pd.DataFrame) -> dict:
    """``{net: {method: {"finetuned"/"no_finetune": {"f=<f>": {"n_params": rec,
    "test_acc": rec}}}}}`` (seed records) for ``metrics.json``: the accuracy/parameter pairs
    of each method."""
    out: dict = {}
    rows = sweep[sweep.method != "unpruned"]
    for (net, method, ft, f), g in rows.groupby(["net", "method", "finetuned", "f"], sort=False):
        leaf = out.setdefault(net, {}).setdefault(method, {}).setdefault(
            "finetuned" if ft else "no_finetune", {})
        leaf[f"f={f:g}"] = {"n_params": seed_record(dict(zip(g.seed, g.n_params))),
                            "test_acc": seed_record(dict(zip(g.seed, g.test_acc)))}
    return out


# ------------------------------------------------------------------- the loss landscape


def _measure_one(task, *, data, n_iter, tol, n_points):
    recipe, seed, init, model = task
    dense = dense_copy(model)
    hess = top_hessian_eigenvalue(dense, data, n_iter=n_iter, tol=tol, random_state=seed)
    path = path_losses(init, model, data, n_points=n_points).assign(recipe=recipe, seed=seed)
    row = {"recipe": recipe, "seed": seed, "hessian_top": hess.eigenvalue,
           "hessian_iterations": hess.iterations, "hessian_converged": hess.converged,
           "path_max_loss": float(path.loss.max()),
           "path_barrier": float(path.loss.max() - max(path.loss.iloc[0], path.loss.iloc[-1])),
           "final_loss": float(path.loss.iloc[-1])}
    return row, path


def landscape_measures(study: SeedStudy, recipes: Sequence[Recipe], data, *, n_iter: int = 50,
                       tol: float = 1e-3, n_points: int = 11,
                       progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every trained model of ``study``: the top Hessian eigenvalue of the mean
    cross-entropy over ``data`` (a training subset), computed on :func:`dense_copy` of the
    model (in the space of the full weight matrices, the same for pruned and unpruned nets),
    and the loss along the straight path from the initial weights (``recipe.build(seed)``, the
    same for the arms of a seed) to the final ones.  Returns ``(measures, paths)``: one row per
    model (``hessian_top``, iterations, ``path_max_loss``, ``path_barrier`` = the path's
    maximum loss minus the larger endpoint loss, ``final_loss``) and the path points
    (``recipe``, ``seed``, ``t``, ``loss``, ``acc``)."""
    by_name = {r.name: r for r in recipes}
    tasks = [(r, s, by_name[r].build(s), m) for (r, s), m in study.models.items()]
    out = map_tasks(_measure_one, tasks, shared={"data": data, "n_iter": n_iter, "tol": tol,
                                                 "n_points": n_points},
                    label="landscape", progress=progress)
    return (pd.DataFrame([o[0] for o in out]),
            pd.concat([o[1] for o in out], ignore_index=True))
