"""Paper 2 (Berlyand, Sandier, Shmalo, Zhang 2024, arXiv:2310.03165), fully connected nets:
the gradual pruning schedule, the recipes of its arms (paper-exact and corrected), the five
arms of the regularisation table, and the recorders and table builders of the chapter.

**The schedule.**  Prune at epochs ``every, 2 every, ...`` up to ``stop`` (default
``epochs - 1``: the last epoch always trains after the last prune) with the bulk fraction
:math:`f(e) = \\max(0, 1 - e/T)` (:class:`BulkSchedule`, ``T`` the *horizon*): a layer with
``spikes`` BEMA spikes and current rank ``p`` keeps ``spikes + int(f(e) (p - spikes))``
components (:func:`rmtlib.prune.keep_count`), so successive prunes compound
(:func:`planned_ranks`).  The learning rate is multiplied by 0.96 at every prune
(:class:`PruneDecay`) -- in *both* arms, so the unpruned baseline follows the same learning-rate
schedule as the pruned net and the paired difference is the effect of pruning alone.

**Arms.**  :func:`recipe` builds one arm; every arm of a seed starts from the same
``MLP(dims, init="normal_fan_in", seed=s)`` (the authors' N(0, 1/fan_in) weights, zero biases)
and :func:`rmtlib.studies.run_seeds` gives it the same mini-batch order, so the arms are paired.
The losses are cross-entropy plus ``l1 sum|theta| + l2 sum theta^2`` over all parameters
(:func:`rmtlib.train.fit`).  :data:`TABLE_ARMS` are the five rows of the authors' table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from ..models import MLP
from ..prune import PrunePolicy, keep_count
from ..published import compare_value
from ..stats import (final_rows, format_mean_sd, paired_differences, paired_interval,
                     paired_verdict, record_tree, variance_comparison)
from ..studies import Recipe
from ..train import Callback, RMTPruning, evaluate
from ..validation import (ArgumentTypeError, check_bool, check_choice, check_float, check_frame,
                          check_int, check_str, describe)

__all__ = [
    "ARM_LABELS",
    "FC_ARMS",
    "REPRODUCTION",
    "REPEATED_ARMS",
    "TABLE_ARMS",
    "VARIANTS",
    "BulkSchedule",
    "Comparison",
    "PruneDecay",
    "arm_records",
    "compare_arms",
    "comparison_rows",
    "fc_arms",
    "final_frame",
    "planned_ranks",
    "prune_epochs",
    "recipe",
    "repeated_arms",
    "table_arm",
    "table_frame",
]

#: The two versions of a pruned arm.
VARIANTS = ("paper_exact", "corrected")

#: The rows of the authors' regularisation table (Fashion-MNIST), in their order.
TABLE_ARMS = ("none", "mp", "l1l2", "mp_l1l2", "mp_l2")

#: Row labels of the table.
ARM_LABELS = {"none": "no pruning, no regularisation", "mp": "MP pruning only",
              "l1l2": "L1 + L2 only", "mp_l1l2": "MP pruning + L1 + L2",
              "mp_l2": "MP pruning + L2"}


#: The arms of the fc run: recipe name -> key in its metrics.json.
FC_ARMS = {"unpruned": "unpruned", "pruned (corrected)": "pruned",
           "pruned (paper-exact)": "paper_exact_pruned"}

#: The numbers of the reproduction page: ``{"quantity", "run", "metric" (a per-seed record in
#: that run's metrics.json, path "a/b/c"), "reference" (path in reference_values.yml),
#: "note"}``.  Other paper-2 runs (CNN, pretrained pruning) append their entries here.
REPRODUCTION: list[dict] = [
    *({"quantity": f"table: {ARM_LABELS[a]}, {what}", "run": "paper2_table",
       "metric": f"final_{what}_acc/{a}", "reference": f"table/arms/{a}/{what}"}
      for a in TABLE_ARMS for what in ("train", "test")),
    *({"quantity": f"authors' code, logged pruned run {i} (test, approximate)",
       "run": "paper2_fc", "metric": "final_test_acc/fashion_mnist/paper_exact_pruned",
       "reference": f"code_logs/test/log_{i}",
       "note": "ours: the paper-exact pruned arm of the fc run; their log's settings unknown"}
      for i in (1, 2)),
]


#: Arms of the table run that repeat an arm of the fc run (Fashion-MNIST) when both runs use
#: the same settings (:func:`repeated_arms`): table row -> fc arm key.
REPEATED_ARMS = {"l1l2": "unpruned", "mp_l1l2": "pruned"}

#: The parameters both runs must share for that.
SHARED_SETTINGS = ("dims", "epochs", "every", "horizon", "lr", "momentum", "batch_size", "l1",
                   "l2", "alpha", "beta", "n_train", "n_test", "seed")


@dataclass(frozen=True)
class BulkSchedule:
    """The paper-2 bulk fraction :math:`f(e) = \\max(0, 1 - e / T)` (``horizon = T`` epochs;
    the authors: ``T`` = 200, 300 or 1000).  A plain, picklable callable ``epoch -> f``."""

    horizon: float

    def __post_init__(self):
        object.__setattr__(self, "horizon", check_float(self.horizon, "horizon", low=0.0,
                                                        low_open=True))

    def __call__(self, epoch: int) -> float:
        epoch = check_int(epoch, "epoch", minimum=0)
        return max(0.0, 1.0 - epoch / self.horizon)


def prune_epochs(epochs: int, every: int, stop: int | None = None) -> list[int]:
    """The epochs after which the schedule prunes: ``every, 2 every, ...`` up to ``stop``
    (default ``epochs - 1``, so the last epoch trains after the last prune)."""
    epochs = check_int(epochs, "epochs", minimum=1)
    every = check_int(every, "every", minimum=1)
    stop = epochs - 1 if stop is None else check_int(stop, "stop", minimum=1, maximum=epochs)
    return list(range(every, stop + 1, every))


@dataclass(frozen=True)
class PruneDecay:
    """Learning rate of training epoch ``e`` (1-based): ``lr * factor**n(e)``, ``n(e)`` the
    number of prunes of :func:`prune_epochs` done before epoch ``e`` (the authors: 0.96, the
    optimizer rebuilt at each prune with the decayed rate).  Used by both arms of a pair."""

    lr: float
    epochs: int
    every: int
    stop: int | None = None
    factor: float = 0.96

    def __post_init__(self):
        check_float(self.lr, "lr", low=0.0, low_open=True)
        check_float(self.factor, "factor", low=0.0, low_open=True)
        prune_epochs(self.epochs, self.every, self.stop)

    def __call__(self, epoch: int) -> float:
        epoch = check_int(epoch, "epoch", minimum=1)
        done = sum(1 for e in prune_epochs(self.epochs, self.every, self.stop) if e < epoch)
        return float(self.lr) * float(self.factor) ** done


def planned_ranks(shape: Sequence[int], spikes: int, fractions: Sequence[float], *,
                  compound: bool = True, min_rank: int = 1) -> list[int]:
    """The rank an ``m x n`` layer keeps at each prune of a schedule if it has ``spikes``
    spikes every time: ``keep = keep_count(spikes, p, f)`` (:func:`rmtlib.prune.keep_count`),
    split into two factors when ``keep (m + n) < m n``, else truncated in place.

    ``p`` is ``min(m, n)`` while the layer is unsplit (a layer truncated in place keeps its
    shape, so the next prune counts its bulk from the full width again).  Once split,
    ``compound=True`` (the paper-exact arm: the factors are analysed on their own) takes ``p``
    = the current rank, so the fractions multiply; ``compound=False`` (the corrected arm: the
    product ``W2 W1`` is analysed, at its full width) keeps ``p = min(m, n)``, so ``f(e)`` is
    the fraction of the layer's whole bulk.  Returns the ranks after each prune."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 2:
        raise ArgumentTypeError(f"shape must be a pair (m, n), got {describe(shape)}")
    m, n = (check_int(v, "shape", minimum=1) for v in shape)
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise ArgumentTypeError(f"fractions must be a list of numbers, got {describe(fractions)}")
    compound = check_bool(compound, "compound")
    full = min(m, n)
    p, split, out = full, False, []
    for f in fractions:
        k = keep_count(min(spikes, p), p, f, min_rank)
        split = split or k * (m + n) < m * n
        if split and k >= p and p < full:  # a split pair is never widened
            k = p
        out.append(k)
        p = k if split and compound else full
    return out


def recipe(variant: str = "corrected", prune: bool = True, *, dims: Sequence[int],
           epochs: int, every: int, horizon: float, lr: float, l1: float = 0.0,
           l2: float = 0.0, stop: int | None = None, alpha: float = 0.2, beta: float = 0.1,
           gof: float | None = None, name: str | None = None, tags: Mapping | None = None
           ) -> Recipe:
    """One arm of the paper-2 fully connected experiments.

    Every arm trains ``MLP(dims, init="normal_fan_in", seed=s)`` with the learning-rate
    schedule :class:`PruneDecay` ``(lr, epochs, every, stop)`` and the penalties ``l1``, ``l2``;
    with ``prune`` it prunes after the epochs :func:`prune_epochs` with BEMA, keeping
    ``spikes + int(f(e) * bulk)`` components, ``f`` = :class:`BulkSchedule` ``(horizon)``, a
    layer split into two factors when that saves parameters, else truncated in place.

    ``variant="corrected"``: the correct BEMA (``alpha``, ``beta``) and spike count, the
    classifier head keeps its output width, a split layer re-analysed as its product, the
    optimizer's momentum kept for the untouched parameters.  ``gof`` is the goodness-of-fit gate
    (None by default: a layer truncated in place carries ``p - k`` near-zero singular values, so
    its spectrum can no longer pass an MP fit and a gate would freeze it after its first prune;
    the authors' fc cells use the cutoff 1, which never rejects).

    ``variant="paper_exact"``: the authors' code (``yspennstate/RMT_pruning_2``): BEMA with its
    formula quirks and one spike too many (``PrunePolicy(paper_exact=True)``), ``alpha = 0.25``,
    ``beta = 0.9`` (an edge *below* the MP edge), GoF cutoff 1, no output-width guard (the
    10-class output layer is cut below rank 10), split layers analysed as two factors, and a
    fresh optimizer after every prune (momentum lost).  ``alpha``, ``beta`` and ``gof`` are
    ignored.  Without ``prune`` the two variants are the same arm.
    """
    variant = check_choice(variant, "variant", VARIANTS)
    prune = check_bool(prune, "prune")
    dims = tuple(int(d) for d in dims)
    if len(dims) < 2:
        raise ValueError(f"dims must list at least the input and output widths, got {dims!r}")
    check_float(l1, "l1", low=0.0)
    check_float(l2, "l2", low=0.0)
    schedule = PruneDecay(lr, epochs, every, stop)
    fraction = BulkSchedule(horizon)

    def build(seed: int) -> nn.Module:
        return MLP(dims, init="normal_fan_in", seed=seed)

    callbacks = tuple
    if prune:
        last = epochs - 1 if stop is None else stop
        if variant == "paper_exact":
            policy = PrunePolicy(keep_fraction=fraction, action="factorize", gof=1.0, alpha=0.25,
                                 beta=0.9, head=None, split_view="factors", paper_exact=True)
            opt = "rebuild"
        else:
            policy = PrunePolicy(keep_fraction=fraction, action="factorize", gof=gof,
                                 alpha=alpha, beta=beta)
            opt = "keep"

        def callbacks() -> Sequence[Callback]:
            return [RMTPruning(policy, every=every, start_epoch=every, stop_epoch=last,
                               optimizer=opt)]

    if name is None:
        name = f"{variant.replace('_', '-')}, pruned" if prune else "unpruned"
    arm = {"variant": variant if prune else "none", "arm": "pruned" if prune else "unpruned"}
    return Recipe(name, build, callbacks,
                  fit_options={"lr": float(lr), "lr_schedule": schedule, "l1": float(l1),
                               "l2": float(l2)},
                  tags={**arm, **dict(tags or {})})


def fc_arms(*, exact: bool = True, **kwargs) -> list[Recipe]:
    """The arms of the fc experiment, named as :data:`FC_ARMS`: the unpruned baseline, the
    corrected pruned arm and (``exact``) the paper-exact pruned arm, all with the same
    ``kwargs`` of :func:`recipe` (the same initialisation, penalties and learning-rate
    schedule)."""
    exact = check_bool(exact, "exact")
    arms = [recipe("corrected", False, name="unpruned", **kwargs),
            recipe("corrected", True, name="pruned (corrected)", **kwargs)]
    if exact:
        arms.append(recipe("paper_exact", True, name="pruned (paper-exact)", **kwargs))
    return arms


def table_arm(arm: str, *, l1: float, l2: float, variant: str = "corrected", **kwargs) -> Recipe:
    """The recipe of one row of the authors' table (:data:`TABLE_ARMS`): ``"none"`` (no
    pruning, no penalty), ``"mp"`` (MP pruning only), ``"l1l2"`` (both penalties, no pruning),
    ``"mp_l1l2"``, ``"mp_l2"`` (pruning with the L2 penalty only).  ``l1``, ``l2`` are the
    penalty weights of the arms that use them (the authors: 1e-6 each); ``kwargs`` go to
    :func:`recipe`.  The recipe's name is the row label (:data:`ARM_LABELS`)."""
    arm = check_choice(arm, "arm", TABLE_ARMS)
    prune = arm.startswith("mp")
    use_l1 = arm in ("l1l2", "mp_l1l2")
    use_l2 = arm in ("l1l2", "mp_l1l2", "mp_l2")
    return recipe(variant, prune, l1=l1 if use_l1 else 0.0, l2=l2 if use_l2 else 0.0,
                  name=ARM_LABELS[arm], tags={"row": arm}, **kwargs)


def final_frame(study, train, *, batch_size: int = 2048) -> pd.DataFrame:
    """One row per ``(recipe, seed)`` of a :class:`rmtlib.studies.SeedStudy`: the last epoch's
    ``test_acc`` and ``n_params`` and ``train_acc`` re-evaluated on the whole training set
    ``train = (x, y)`` with the final model in eval mode (the history's ``train_acc`` is a
    running mean over the last epoch's mini-batches; seeded from the run's seed, see
    :func:`rmtlib.train.evaluate`), all accuracies in %, plus the tags."""
    rows = final_rows(study.frame).drop(columns=["train_acc"])
    acc = {(r, s): evaluate(m, train, batch_size=batch_size, seed=s)[1]
           for (r, s), m in study.models.items()}
    rows["train_acc"] = [acc[r, s] for r, s in zip(rows.recipe, rows.seed)]
    return rows


def arm_records(finals: pd.DataFrame, keys: Sequence[str] = ("recipe",)) -> dict:
    """Per arm (nested by ``keys``), the paper-1 record format (``per_seed``, ``mean``,
    ``sd``, ``min``, ``max``, ``n``) of ``final_test_acc``, ``final_train_acc`` and
    ``n_params`` from :func:`final_frame` rows."""
    keys = list(keys)
    check_frame(finals, ["seed", "test_acc", "train_acc", "n_params", *keys])
    return {"final_test_acc": record_tree(finals, "test_acc", keys),
            "final_train_acc": record_tree(finals, "train_acc", keys),
            "n_params": record_tree(finals, "n_params", keys)}


@dataclass(frozen=True)
class Comparison:
    """Pruned arm against its unpruned baseline over the same seeds (see
    :func:`compare_arms`)."""

    pairs: pd.DataFrame       #: per seed: baseline, other, difference (percentage points)
    difference: dict          #: per-seed record of the differences + t interval (low, high, p)
    spread: dict              #: :func:`rmtlib.stats.variance_comparison` (other vs baseline)
    verdict: str              #: :func:`rmtlib.stats.paired_verdict`

    def record(self) -> dict:
        """Plain data for ``metrics.json``."""
        return {"difference": self.difference, "spread": self.spread, "verdict": self.verdict}

    def spread_text(self) -> str:
        """One sentence on the variance claim: the sd of each arm, the ratio with its interval
        and the three p-values."""
        s = self.spread
        if "note" in s:
            return f"no variance test with these seeds ({s['note']})"
        pct = int(round(100 * s["confidence"]))
        return (f"sd {s['sd_a']:.2f} pruned against {s['sd_b']:.2f} unpruned (variance ratio "
                f"{s['ratio']:.2f}, {pct} % F interval {s['low']:.2f} to {s['high']:.2f}; "
                f"p = {s['p_f']:.2f} F test, {s['p_brown_forsythe']:.2f} Brown-Forsythe, "
                f"{s['p_pitman_morgan']:.2f} Pitman-Morgan (paired), n = {s['n']})")


def compare_arms(finals: pd.DataFrame, baseline: str, other: str, *, metric: str = "test_acc",
                 confidence: float = 0.95) -> Comparison:
    """Paired comparison of two recipes in :func:`final_frame` rows: per seed ``other -
    baseline``; its mean ± sd with a Student-t ``confidence`` interval; the variance claim as
    ``variance_comparison(other, baseline)`` (F interval of the ratio of variances,
    Brown--Forsythe and Pitman--Morgan p-values; with 5 seeds these tests have little power:
    a large p-value is no evidence of equal spreads; with fewer than 3 seeds the spread holds
    NaNs and a ``note``)."""
    check_str(metric, "metric")
    pairs = paired_differences(finals.assign(epoch=0), baseline, other, metric)
    d = pairs["difference"]
    interval = paired_interval(d, confidence)
    difference = {"per_seed": {str(s): float(v) for s, v in zip(pairs.seed, d)},
                  **{k: interval[k] for k in ("mean", "sd", "n", "low", "high", "p",
                                              "confidence")},
                  "n_positive": int((d > 0).sum())}
    try:
        spread = variance_comparison(pairs[other], pairs[baseline], confidence)
    except ValueError as exc:  # fewer than 3 seeds, or constant arms: say so, keep the rest
        spread = {k: math.nan for k in ("ratio", "low", "high", "p_f", "p_brown_forsythe",
                                        "p_pitman_morgan")}
        sd = {k: float(pairs[c].std(ddof=1)) if len(pairs) > 1 else math.nan
              for k, c in (("sd_a", other), ("sd_b", baseline))}
        spread.update(sd, confidence=float(confidence), n=len(pairs), note=str(exc))
    return Comparison(pairs, difference, spread, paired_verdict(d))


def table_frame(records: Mapping, reference: Mapping, *, arms: Sequence[str] = TABLE_ARMS,
                digits: int = 2) -> pd.DataFrame:
    """The authors' table beside ours.

    ``records`` holds ``final_train_acc`` and ``final_test_acc``, each ``{arm: record}``
    with the per-seed records of :func:`arm_records` (keyed by the row names of
    :data:`TABLE_ARMS`); ``reference`` maps each arm to ``{"train": %, "test": %}``
    (reference_values.yml).  One row per arm: the authors' train and test accuracy, ours as
    mean ± sd, the number of seeds, and whether the authors' test value lies within two of our
    sds of our mean (``"n/a"`` with fewer than two seeds)."""
    if not isinstance(records, Mapping) or not isinstance(reference, Mapping):
        raise ArgumentTypeError("records and reference must be mappings")
    for key in ("final_train_acc", "final_test_acc"):
        if key not in records:
            raise ValueError(f"records lacks {key!r}; it has {sorted(records)}")
    rows = []
    for arm in arms:
        check_choice(arm, "arm", TABLE_ARMS)
        if arm not in reference:
            raise ValueError(f"reference has no values for arm {arm!r}")
        row = {"arm": ARM_LABELS[arm],
               "authors train (%)": float(reference[arm]["train"]),
               "authors test (%)": float(reference[arm]["test"])}
        for what, key in (("train", "final_train_acc"), ("test", "final_test_acc")):
            rec = records[key].get(arm)
            row[f"ours {what} (%)"] = ("not run" if rec is None
                                       else format_mean_sd(rec["mean"], rec["sd"], digits))
        rec = records["final_test_acc"].get(arm)
        row["seeds"] = 0 if rec is None else int(rec["n"])
        if rec is None or not np.isfinite(rec.get("sd", math.nan)):
            row["authors' test within 2 sd"] = "n/a"
        else:
            z = (rec["mean"] - row["authors test (%)"]) / rec["sd"] if rec["sd"] > 0 else math.inf
            row["authors' test within 2 sd"] = "yes" if abs(z) <= 2 else "no"
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def _lookup(tree: Mapping, path: Sequence[str]):
    node = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def comparison_rows(entries: Sequence[Mapping], metrics: Mapping[str, Mapping],
                    reference: Mapping) -> list[dict]:
    """Rows of the reproduction table (:func:`rmtlib.published.compare_value`).

    ``entries``: one mapping per compared number, ``{"quantity": label, "run": run name,
    "metric": "key/sub/key" (a per-seed record in that run's metrics), "reference":
    "key/sub/key" (in ``reference``), "note": optional}``; ``metrics`` maps run names to their
    ``metrics.json`` values.  A run or record that is missing gives a "not run" row (shown,
    never dropped); a missing reference value is an error (it is typed in the file)."""
    rows = []
    for e in entries:
        if not isinstance(e, Mapping) or not {"quantity", "run", "metric", "reference"} <= set(e):
            raise ValueError(f"each entry needs quantity, run, metric and reference, got {e!r}")
        authors = _lookup(reference, str(e["reference"]).split("/"))
        if authors is None:
            raise ValueError(f"{e['quantity']}: no reference value at {e['reference']!r}")
        rec = _lookup(metrics.get(e["run"], {}), str(e["metric"]).split("/"))
        ours = [] if rec is None else [float(v) for v in rec["per_seed"].values()]
        note = e.get("note", "") or ("" if rec is not None else f"run {e['run']} not available")
        rows.append(compare_value(str(e["quantity"]), float(authors), ours, unit="%",
                                  note=note) | {"run": e["run"]})
    return rows


def repeated_arms(fc_params: Mapping, fc_metrics: Mapping, table_params: Mapping,
                  table_metrics: Mapping) -> pd.DataFrame:
    """Two runs, one arm: the table run's "L1 + L2 only" and (corrected) "MP pruning + L1 + L2"
    arms are the fc run's Fashion-MNIST unpruned and pruned arms when both runs have the same
    :data:`SHARED_SETTINGS` (training is deterministic), so their per-seed test accuracies
    must agree.  ``*_params`` are the runs' full parameters (notebook defaults + injected),
    ``*_metrics`` their ``metrics.json`` values.  One row per :data:`REPEATED_ARMS` entry:
    the seeds both ran, the largest absolute per-seed difference (percentage points; NaN if
    not comparable) and the settings that differ."""
    differ = [k for k in SHARED_SETTINGS if str(fc_params.get(k)) != str(table_params.get(k))]
    rows = []
    for row, key in REPEATED_ARMS.items():
        why = list(differ)
        if row.startswith("mp") and table_params.get("variant", "corrected") != "corrected":
            why.append("variant")
        a = _lookup(table_metrics, ["final_test_acc", row]) or {}
        b = _lookup(fc_metrics, ["final_test_acc", "fashion_mnist", key]) or {}
        seeds = sorted(set(a.get("per_seed", {})) & set(b.get("per_seed", {})), key=int)
        gap = (max(abs(a["per_seed"][s] - b["per_seed"][s]) for s in seeds)
               if seeds and not why else math.nan)
        rows.append({"table arm": ARM_LABELS[row], "fc arm": f"fashion_mnist, {key}",
                     "seeds": len(seeds), "largest |difference| (pp)": gap,
                     "settings that differ": ", ".join(why) or "none"})
    return pd.DataFrame(rows).set_index("table arm")
