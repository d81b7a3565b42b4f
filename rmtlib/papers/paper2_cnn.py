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
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .._threads import torch_threads
from ..baselines import (
    count_nonzero_parameters,
    magnitude_prune,
    masked_gradients,
    prunable_weights,
    random_rank_prune,
)
from ..landscape import BulkShareTracker, dense_copy, path_losses, top_hessian_eigenvalue
from ..models import PaperCNN
from ..parallel import map_tasks
from ..prune import PrunePolicy, count_parameters, prune_model
from ..stats import (
    curve_tree,
    final_rows,
    format_mean_sd,
    paired_differences,
    paired_verdict,
    record_tree,
    seed_record,
)
from ..studies import Recipe, SeedStudy
from ..train import Callback, RMTPruning, evaluate, fit
from ..validation import (
    ArgumentTypeError,
    check_bool,
    check_float,
    check_frame,
    check_int,
    check_probability,
    check_str,
    describe,
)

__all__ = [
    "METHODS",
    "SWEEP_COLUMNS",
    "BulkShares",
    "LinearDecay",
    "PaperExactCNN",
    "arm_table",
    "arms_text",
    "cnn_builder",
    "cnn_recipes",
    "gradual_recipe",
    "landscape_measures",
    "load_trained",
    "lr_schedule",
    "paired_interval",
    "prune_sweep",
    "rank_table",
    "record_arms",
    "record_bulk",
    "record_cnn_headlines",
    "record_landscape",
    "record_paired",
    "record_sweep",
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


def cnn_recipes(arch: Mapping, *, paper_exact: bool = False, **options) -> list[Recipe]:
    """The arms of the CNN comparison: ``"corrected, unpruned"`` and ``"corrected, pruned"``
    (:class:`rmtlib.models.PaperCNN` with ``arch``), plus ``"paper-exact, unpruned"`` and
    ``"paper-exact, pruned"`` (:class:`PaperExactCNN`, the authors' schedule) with
    ``paper_exact``.  ``options`` go to :func:`gradual_recipe` (``every``, ``horizon``, ...)."""
    paper_exact = check_bool(paper_exact, "paper_exact")
    variants = [False, True] if paper_exact else [False]
    out = []
    for exact in variants:
        build = cnn_builder(arch, paper_exact=exact)
        label = "paper-exact" if exact else "corrected"
        for prune in (False, True):
            out.append(gradual_recipe(f"{label}, {'pruned' if prune else 'unpruned'}", build,
                                      prune=prune, paper_exact=exact, **options))
    return out


def arm_table(finals: pd.DataFrame, train_eval: pd.DataFrame | None = None, *,
              by: str = "recipe") -> pd.DataFrame:
    """Per arm (``by``) of the final rows: test and training accuracy (eval mode when
    ``train_eval`` is given) as "mean ± sd" over seeds, the range of the test accuracy, the
    mean stored parameters and the number of seeds."""
    fin = check_frame(finals, ["seed", "test_acc", "train_acc", "n_params",
                               check_str(by, "by")], "finals")
    if train_eval is not None:
        check_frame(train_eval, ["recipe", "seed", "train_acc_eval"], "train_eval")
        fin = fin.merge(train_eval.drop(columns=[c for c in ("dataset",) if c in train_eval
                                                 and c in fin]),
                        on=["recipe", "seed"], how="left")
        fin = fin.assign(train_acc=fin["train_acc_eval"])
    rows = []
    for key, g in fin.groupby(by, sort=False):
        rows.append({by: key,
                     "test accuracy (%)": format_mean_sd(g.test_acc.mean(), g.test_acc.std()),
                     "test min – max (%)": f"{g.test_acc.min():.2f} – {g.test_acc.max():.2f}",
                     "train accuracy (%)": format_mean_sd(g.train_acc.mean(), g.train_acc.std()),
                     "parameters": f"{g.n_params.mean():,.0f}", "seeds": g.seed.nunique()})
    return pd.DataFrame(rows).set_index(by)


def record_cnn_headlines(run, history: pd.DataFrame, datasets: Sequence[str],
                         exact_datasets: Sequence[str]) -> dict:
    """Log the paired differences pruned - unpruned of the final test accuracy per data set and
    variant (``p2_cnn_diff_<dataset>_<variant>``), the headline ``p2_cnn_diff`` (first data
    set, corrected), ``p2_cnn_kept_pct`` (its pruned/unpruned parameter ratio, %) and glue
    ``p2_cnn_verdicts`` (one sentence per data set and variant).  ``history`` has ``dataset``
    and ``recipe`` columns as in the CNN notebook."""
    check_frame(history, ["dataset", "recipe", "seed", "epoch", "test_acc", "n_params"], "history")
    if isinstance(datasets, str) or not datasets:
        raise ArgumentTypeError(f"datasets must be a non-empty list of names, got "
                                f"{describe(datasets)}")
    out, verdicts = {}, []
    for ds in datasets:
        part = history[history.dataset == ds]
        for variant in ["corrected"] + (["paper-exact"] if ds in exact_datasets else []):
            key = f"p2_cnn_diff_{ds}_{variant.replace('-', '_')}"
            keys = [key] + (["p2_cnn_diff"] if ds == datasets[0] and variant == "corrected" else [])
            for k in keys:
                d = record_paired(run, k, part, f"{variant}, unpruned", f"{variant}, pruned",
                                  doc=f"CNN on {ds}, {variant}: final test accuracy of the pruned "
                                      "minus the unpruned arm of each seed (same initialisation, "
                                      "batch order and lr schedule), percentage points")
            out[key] = d
            verdicts.append(f"{ds} ({variant}): the improvement {paired_verdict(d.difference)}")
    fin = final_rows(history[history.dataset == datasets[0]]).set_index(["recipe", "seed"]).n_params
    ratio = {s: 100 * fin["corrected, pruned", s] / fin["corrected, unpruned", s]
             for s in fin.loc["corrected, pruned"].index}
    run.log("p2_cnn_kept_pct", seed_record(ratio), digits=1,
            doc=f"CNN on {datasets[0]}, corrected: stored parameters of the pruned arm at the end "
                "as a percentage of the unpruned arm's, per seed (%)")
    run.text("p2_cnn_verdicts", "; ".join(verdicts))
    return out


def arms_text(finals: pd.DataFrame, *, by: str = "recipe") -> str:
    """``"unpruned 85.10 ± 0.31 %, pruned 85.42 ± 0.22 %"``: final test accuracy per arm."""
    check_frame(finals, [check_str(by, "by"), "test_acc"], "finals")
    return ", ".join(f"{k} {format_mean_sd(g.test_acc.mean(), g.test_acc.std())} %"
                     for k, g in finals.groupby(by, sort=False))


def train_accuracy(study: SeedStudy, train, *, batch_size: int = 2048) -> pd.DataFrame:
    """Accuracy (%) and loss of every trained model of ``study`` on the training set, in eval
    mode (the history's ``train_acc`` is a running mean in training mode, with dropout):
    columns ``recipe``, ``seed``, ``train_acc_eval``, ``train_loss_eval``.  Each evaluation is
    seeded from its run's seed (:func:`rmtlib.train.evaluate`): the paper-exact nets keep their
    dropout on in eval mode, so their result would otherwise depend on the process's random
    state -- which differs between a sequential build and one on a cluster."""
    if not isinstance(study, SeedStudy):
        raise ArgumentTypeError(f"study must be a SeedStudy, got {describe(study)}")
    rows = []
    for (recipe, seed), model in study.models.items():
        loss, acc = evaluate(model, train, batch_size=batch_size, seed=seed)
        rows.append({"recipe": recipe, "seed": seed, "train_acc_eval": acc,
                     "train_loss_eval": loss})
    return pd.DataFrame(rows)


def rank_table(events: pd.DataFrame) -> pd.DataFrame:
    """Per recipe, seed, epoch and layer: the rank after each pruning event (skipped layers
    keep ``rank_before``) and whether the layer was split, from :meth:`SeedStudy.events`."""
    if not isinstance(events, pd.DataFrame):
        raise ArgumentTypeError(f"events must be a DataFrame, got {describe(events)}")
    if events.empty:
        return pd.DataFrame(columns=["recipe", "seed", "epoch", "name", "p", "spikes",
                                     "rank_after", "action"])
    cols = ["recipe", "seed", "epoch", "name", "p", "spikes", "rank_after", "action"]
    check_frame(events, cols, "events")
    return events[cols].reset_index(drop=True)


def record_arms(run, frame: pd.DataFrame, train_eval: pd.DataFrame | None = None, *,
                by: str = "recipe", what: str = "") -> dict:
    """Log ``final_test_acc``, ``final_train_acc`` and ``n_params`` per arm (``by`` column of
    the final rows of the history ``frame``) in paper 1's record format; the training
    accuracy is the eval-mode one of ``train_eval`` (:func:`train_accuracy`) when given, else
    the history's running mean.  Returns the three records."""
    check_frame(frame, ["recipe", "seed", "epoch", "test_acc", "train_acc", "n_params",
                        check_str(by, "by")], "frame")
    fin = final_rows(frame)
    if train_eval is not None:
        check_frame(train_eval, ["recipe", "seed", "train_acc_eval"], "train_eval")
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
    check_str(key, "key")
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


#: Columns of :func:`prune_sweep`'s frame.
SWEEP_COLUMNS = ["net", "seed", "method", "f", "finetuned", "n_params", "kept_share", "test_acc"]


def _sweep_one(task, *, train, test, fractions, policy, finetune, finetune_options):
    net, seed, model = task
    base = count_parameters(model)
    weights = sum(w.numel() for w in prunable_weights(model).values())
    rows = []
    _, acc0 = evaluate(model, test, seed=seed)
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
                         "n_params": n, "kept_share": n / base, "test_acc": evaluate(m, test, seed=seed)[1]})
            if finetune:
                _finetune(m, train, finetune_options, seed, masks)
                n_after = count_nonzero_parameters(m) if masks is not None else count_parameters(m)
                rows.append({"net": net, "seed": seed, "method": method, "f": f,
                             "finetuned": True, "n_params": n_after, "kept_share": n_after / base,
                             "test_acc": evaluate(m, test, seed=seed)[1]})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def prune_sweep(models: Mapping, train, test, *, fractions: Sequence[float],
                policy: Mapping | None = None, finetune: bool = True,
                finetune_options: Mapping | None = None, progress: bool = True,
                threads: int | None = 1) -> pd.DataFrame:
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
    :func:`rmtlib.parallel.map_tasks`, run with ``threads`` torch threads.
    """
    fr = [check_probability(f, "fractions[i]") for f in fractions]
    if not fr:
        raise ValueError("fractions must hold at least one bulk fraction in [0, 1]")
    finetune = check_bool(finetune, "finetune")
    if not isinstance(models, Mapping) or not models or not all(
            isinstance(k, tuple) and len(k) == 2 and isinstance(m, nn.Module)
            for k, m in models.items()):
        raise ArgumentTypeError(f"models must be a non-empty mapping (net, seed) -> nn.Module, "
                                f"got {describe(models)}")
    pol = {"gof": 0.1, "alpha": 0.2, "beta": 0.1, **dict(policy or {})}
    tasks = [(str(net), int(seed), model) for (net, seed), model in models.items()]
    with torch_threads(threads):
        parts = map_tasks(_sweep_one, tasks, shared={
            "train": train, "test": test, "fractions": fr, "policy": pol, "finetune": finetune,
            "finetune_options": dict(finetune_options or {"lr": 0.01})}, label="pruned nets",
            progress=progress)
    return pd.concat(parts, ignore_index=True)


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of ``kept_share`` (%) and ``test_acc`` per net, method, ``f`` and
    ``finetuned`` (columns ``..._mean``, ``..._sd``, ``n``) and a ``label`` for the RMT points
    (``"BEMA"`` at ``f = 0``)."""
    check_frame(sweep, SWEEP_COLUMNS, "sweep")
    rows = sweep[sweep.method != "unpruned"]
    g = rows.groupby(["net", "method", "f", "finetuned"], sort=False)
    out = g.agg(kept_pct_mean=("kept_share", lambda s: 100 * s.mean()),
                kept_pct_sd=("kept_share", lambda s: 100 * s.std()),
                test_acc_mean=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
                n=("seed", "nunique")).reset_index()
    out["label"] = [("BEMA" if f == 0 else f"f={f:g}") if m == "rmt" else ""
                    for m, f in zip(out.method, out.f)]
    return out


def sweep_records(sweep: pd.DataFrame) -> dict:
    """``{net: {method: {"finetuned"/"no_finetune": {"f=<f>": {"n_params": rec,
    "test_acc": rec}}}}}`` (seed records) for ``metrics.json``: the accuracy/parameter pairs
    of each method."""
    check_frame(sweep, SWEEP_COLUMNS, "sweep")
    out: dict = {}
    rows = sweep[sweep.method != "unpruned"]
    for (net, method, ft, f), g in rows.groupby(["net", "method", "finetuned", "f"], sort=False):
        leaf = out.setdefault(net, {}).setdefault(method, {}).setdefault(
            "finetuned" if ft else "no_finetune", {})
        leaf[f"f={f:g}"] = {"n_params": seed_record(dict(zip(g.seed, g.n_params))),
                            "test_acc": seed_record(dict(zip(g.seed, g.test_acc)))}
    return out


def _method_diff(sweep, net, a, b, f, finetuned):
    rows = sweep[(sweep.net == net) & (sweep.f == f) & (sweep.finetuned == finetuned)]
    w = rows.pivot(index="seed", columns="method", values="test_acc")
    return (w[a] - w[b]).dropna()


def record_sweep(run, sweep: pd.DataFrame) -> dict:
    """Log the sweep of :func:`prune_sweep`: ``sweep_pairs`` (:func:`sweep_records`),
    ``unpruned_test_acc`` per net, and at BEMA's choice ``f = 0`` (which ``fractions`` must
    hold): ``p2_pre_bema_vs_mag_<net>`` (RMT minus magnitude test accuracy per seed, no
    fine-tuning), ``..._ft_<net>`` (after it), ``p2_pre_bema_vs_rnd_<net>`` (RMT minus random
    rank), each with its ``_verdict`` sentence, and ``p2_pre_bema_kept_<net>`` (parameters kept,
    %)."""
    check_frame(sweep, SWEEP_COLUMNS, "sweep")
    if not (sweep.f == 0).any():
        raise ValueError("the sweep has no f = 0 (BEMA's own choice); add 0.0 to fractions")
    out = {"sweep_pairs": run.log(
        "sweep_pairs", sweep_records(sweep),
        doc="pruned trained nets: per net, method (rmt / magnitude / random_rank), fine-tuning and "
            "bulk fraction f, the parameters kept (count) and test accuracy (%) per seed")}
    base = sweep[sweep.method == "unpruned"]
    out["unpruned_test_acc"] = run.log("unpruned_test_acc", record_tree(base, "test_acc", ["net"]),
                                       doc="test accuracy of the trained nets before pruning (%)")
    for net in sweep.net.unique():
        for key, a, b, ft, what in (
                (f"p2_pre_bema_vs_mag_{net}", "rmt", "magnitude", False, "magnitude pruning"),
                (f"p2_pre_bema_vs_mag_ft_{net}", "rmt", "magnitude", True,
                 "magnitude pruning, both fine-tuned one epoch"),
                (f"p2_pre_bema_vs_rnd_{net}", "rmt", "random_rank", False,
                 "random-rank truncation at the same ranks")):
            d = _method_diff(sweep, net, a, b, 0.0, ft)
            rec = {**seed_record(dict(zip(d.index, d))), "n_positive": int((d > 0).sum())}
            out[key] = run.log(key, rec, doc=f"{net}: test accuracy of RMT pruning at BEMA's choice "
                               f"(f = 0) minus {what} at the same parameter count, per seed (pp)")
            run.text(f"{key}_verdict", f"the advantage of RMT {paired_verdict(d)}")
        kept = sweep[(sweep.net == net) & (sweep.method == "rmt") & (sweep.f == 0)
                     & ~sweep.finetuned]
        out[f"p2_pre_bema_kept_{net}"] = run.log(
            f"p2_pre_bema_kept_{net}", seed_record(dict(zip(kept.seed, 100 * kept.kept_share))),
            digits=1, doc=f"{net}: parameters kept by RMT pruning at f = 0, % of the unpruned net")
    return out


def load_trained(name: str, profile: str, notebook, *, label: str | None = None,
                 root=None) -> tuple[dict, tuple, tuple]:
    """The unpruned networks a training run saved (``checkpoints_index.csv`` and
    ``checkpoints/`` in its results, :meth:`rmtlib.studies.SeedStudy.save_checkpoints`) and the
    data it trained on: ``({(net, seed): model}, (x, y) train, (x, y) test)``.  The data are
    rebuilt from the run's parameters (``notebook``'s defaults updated with ``params.json``):
    ``dataset`` or the first of ``datasets``, ``n_train``, ``n_test``, ``seed``, normalised with
    ``(0.5, 0.5)`` as in the training notebooks.  ``label`` replaces the recipe name in the
    keys (default: the recipe name)."""
    from pathlib import Path

    from ..data import load_dataset
    from ..reproduce import notebook_parameters
    from ..results import load_run
    from ..train import load_model

    source = load_run(name, profile, root)
    params = {**notebook_parameters(Path(notebook)), **source.params}
    ds = params.get("dataset") or params["datasets"][0]
    data = load_dataset(ds, normalize=(0.5, 0.5))
    if params.get("n_train") or params.get("n_test"):
        data = data.subset(params.get("n_train"), params.get("n_test"), seed=params["seed"])
    index = pd.read_csv(source.dir / "checkpoints_index.csv")
    models = {}
    for row in index.itertuples():
        model, _ = load_model(source.dir / "checkpoints" / row.file)
        models[label or row.recipe, int(row.seed)] = model.eval()
    return models, (data.train_x, data.train_y), (data.test_x, data.test_y)


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


def _interval_text(iv: dict, lower: int, unit: str = "") -> str:
    return (f"{format_mean_sd(iv['mean'], iv['sd'], 3)}{unit} ({100 * iv['level']:.0f} % "
            f"confidence interval {iv['low']:.3f} to {iv['high']:.3f}; lower for {lower} of "
            f"{iv['n']} seeds)")


def _paired(meas: pd.DataFrame, col: str, baseline: str, other: str) -> pd.Series:
    w = meas.pivot(index="seed", columns="recipe", values=col)
    return (w[other] - w[baseline]).dropna()


def record_landscape(run, meas: pd.DataFrame, paths: pd.DataFrame, *, level: float = 0.95,
                     baseline: str = "unpruned", other: str = "pruned") -> dict:
    """Log the landscape measures of :func:`landscape_measures`: ``hessian_top`` and
    ``path_barrier`` per arm (seed records), ``p2_hessian_ratio`` (per seed, top eigenvalue of
    ``other`` / ``baseline``), ``p2_hessian_diff`` and ``p2_barrier_diff`` (paired differences
    ``other - baseline`` with a :func:`paired_interval`) with their prose
    (``..._text``), and ``path_loss`` (the path curves)."""
    check_frame(meas, ["recipe", "seed", "hessian_top", "path_barrier"], "meas")
    check_frame(paths, ["recipe", "seed", "t", "loss"], "paths")
    out = {
        "hessian_top": run.log("hessian_top", record_tree(meas, "hessian_top", ["recipe"]),
                               doc="top Hessian eigenvalue of the mean training cross-entropy at "
                                   "the end of training, dense weight space, per arm and seed "
                                   "(nats per squared weight unit)"),
        "path_barrier": run.log("path_barrier", record_tree(meas, "path_barrier", ["recipe"]),
                                doc="maximum training loss on the straight init -> final path "
                                    "minus the larger endpoint loss, per arm and seed (nats)"),
    }
    w = meas.pivot(index="seed", columns="recipe", values="hessian_top")
    ratio = (w[other] / w[baseline]).dropna()
    out["p2_hessian_ratio"] = run.log(
        "p2_hessian_ratio", seed_record(dict(zip(ratio.index, ratio))), digits=2,
        doc=f"top Hessian eigenvalue of the {other} net divided by that of the {baseline} net of "
            "the same seed (same initialisation and batch order), per seed (ratio)")
    for key, col, what in (("p2_hessian_diff", "hessian_top", "top Hessian eigenvalue"),
                           ("p2_barrier_diff", "path_barrier", "path barrier")):
        d = _paired(meas, col, baseline, other)
        iv = paired_interval(d, level)
        rec = {**seed_record(dict(zip(d.index, d))), "low": iv["low"], "high": iv["high"],
               "level": level, "n_lower": int((d < 0).sum())}
        out[key] = run.log(key, rec, digits=3,
                           doc=f"{what}: {other} minus {baseline} per seed, mean, sd, Student-t "
                               f"{100 * level:.0f} % interval (low, high), seeds where it is lower")
        run.text(f"{key}_text", _interval_text(iv, int((d < 0).sum())))
    out["path_loss"] = run.log("path_loss", curve_tree(paths, "loss", ["recipe"], x="t",
                                                       pairs=True),
                               doc="training loss along the straight init -> final path, "
                                   "[t, loss] per arm and seed (nats/sample)")
    return out


def record_bulk(run, bulk: pd.DataFrame) -> dict:
    """Log ``bulk_share_by_epoch`` (``{recipe: {layer: {seed: [share per epoch]}}}``, NaN where
    the fit failed) and glue ``p2_bulk_first_text``: the first layer's share at the last
    epoch per arm, mean ± sd."""
    check_frame(bulk, ["recipe", "seed", "epoch", "name", "share_inside"], "bulk")
    rec = run.log("bulk_share_by_epoch", curve_tree(bulk, "share_inside", ["recipe", "name"]),
                  doc="share of each layer's eigenvalues inside the fitted MP bulk after each "
                      "epoch (0 = initialisation), per arm, layer and seed (fraction)")
    first = bulk.name.iloc[0]
    last = bulk[(bulk.epoch == bulk.epoch.max()) & (bulk.name == first)]
    run.text("p2_bulk_first_text", ", ".join(
        f"{r} {format_mean_sd(g.share_inside.mean(), g.share_inside.std(), 3)}"
        for r, g in last.groupby("recipe", sort=False)))
    return rec


def _bulk_trackers(alpha: float, beta: float) -> list:
    return [BulkShareTracker(alpha=alpha, beta=beta)]


class BulkShares:
    """The :class:`rmtlib.landscape.BulkShareTracker` of every run of a study:
    ``extra=shares.factory("pruned")`` in :func:`gradual_recipe`; after
    :func:`rmtlib.studies.run_seeds`, :meth:`frame` of the study has one row per recipe, seed,
    epoch and layer.  The rows come back through ``SeedStudy.records`` (the trackers' own
    :meth:`~rmtlib.landscape.BulkShareTracker.record`), so they are complete wherever the
    trainings ran (in-process or on a Dask cluster)."""

    def __init__(self, *, alpha: float = 0.2, beta: float = 0.1):
        from ..bema import check_alpha, check_beta

        self.alpha, self.beta = check_alpha(alpha), check_beta(beta)

    def factory(self, recipe: str) -> Callable[[], list]:
        """Callbacks factory for the runs of ``recipe`` (one new tracker per training)."""
        return functools.partial(_bulk_trackers, self.alpha, self.beta)

    def frame(self, study) -> pd.DataFrame:
        """``recipe``, ``seed``, ``epoch`` and the :func:`rmtlib.landscape.bulk_share` columns
        of the trainings of ``study`` (a :class:`rmtlib.studies.SeedStudy`) that had a tracker."""
        records = getattr(study, "records", None)
        if not isinstance(records, dict):
            raise ArgumentTypeError(f"study must be a SeedStudy, got {describe(study)}")
        parts = [rec["bulk_share"].assign(recipe=name, seed=seed)
                 for (name, seed), recs in records.items() for rec in recs
                 if isinstance(rec, dict) and "bulk_share" in rec]
        if not parts:
            raise ValueError("the study holds no MP-bulk shares: give its recipes "
                             "extra=shares.factory(...)")
        out = pd.concat(parts, ignore_index=True)
        return out[["recipe", "seed"] + [c for c in out.columns if c not in ("recipe", "seed")]]


def paired_interval(differences, level: float = 0.95) -> dict:
    """Mean, sd (ddof = 1), ``n`` and the two-sided Student-t confidence interval
    ``mean ± t_{n-1, (1+level)/2} sd / sqrt(n)`` of per-seed paired differences (assumes
    independent, roughly normal differences; NaN bounds for fewer than two)."""
    from scipy import stats as st

    level = check_probability(level, "level", open_low=True, open_high=True)
    d = np.asarray(list(differences), dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be a non-empty list of finite numbers, got {d!r}")
    n, mean = d.size, float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    half = float(st.t.ppf((1 + level) / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "sd": sd, "n": n, "level": level, "low": mean - half,
            "high": mean + half}


def landscape_measures(study: SeedStudy, recipes: Sequence[Recipe], data, *, n_iter: int = 50,
                       tol: float = 1e-3, n_points: int = 11,
                       progress: bool = True,
                       threads: int | None = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every trained model of ``study``: the top Hessian eigenvalue of the mean
    cross-entropy over ``data`` (a training subset), computed on :func:`dense_copy` of the
    model (in the space of the full weight matrices, the same for pruned and unpruned nets),
    and the loss along the straight path from the initial weights (``recipe.build(seed)``, the
    same for the arms of a seed) to the final ones.  Returns ``(measures, paths)``: one row per
    model (``hessian_top``, iterations, ``path_max_loss``, ``path_barrier`` = the path's
    maximum loss minus the larger endpoint loss, ``final_loss``) and the path points
    (``recipe``, ``seed``, ``t``, ``loss``, ``acc``).  Tasks of
    :func:`rmtlib.parallel.map_tasks`, run with ``threads`` torch threads."""
    if not isinstance(study, SeedStudy):
        raise ArgumentTypeError(f"study must be a SeedStudy, got {describe(study)}")
    by_name = {r.name: r for r in recipes}
    missing = sorted({r for r, _ in study.models} - set(by_name))
    if missing:
        raise ValueError(f"recipes {missing} of the study are not among {sorted(by_name)}")
    tasks = [(r, s, by_name[r].build(s), m) for (r, s), m in study.models.items()]
    with torch_threads(threads):
        out = map_tasks(_measure_one, tasks, shared={"data": data, "n_iter": n_iter, "tol": tol,
                                                     "n_points": n_points},
                        label="landscape", progress=progress)
    return (pd.DataFrame([o[0] for o in out]),
            pd.concat([o[1] for o in out], ignore_index=True))
