"""Paper 1 (Shmalo, Jenkins, Krupchytskyi 2023, arXiv:2303.08986): the network and its pruning
schedule, in the authors' version (``"paper_exact"``) and the corrected one, and the tables and
records of the chapter's notebooks (``notebooks/paper1/``): the spectra run
(:func:`training_finals`, :func:`record_training`, :func:`layer_fits`,
:func:`record_layer_fits`), accuracy against rank (:func:`rank_sweep`,
:func:`record_rank_sweep`), pruning during training (:func:`check_unpruned_source`,
:func:`pruning_changes`, :func:`final_table`, :func:`paired_arms`, :func:`record_pruning`) and
the reproduction table (:func:`reproduction_sections`, :func:`reproduction_table`,
:func:`reproduction_display`, :func:`record_reproduction`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from ..diagnostics import lost_classes
from ..models import MLP
from ..prune import PrunePolicy
from ..published import compare_curve, compare_value, comparison_table
from ..stats import (curve_tree, epoch_summary, final_rows, final_summary, format_mean_sd,
                     paired_differences, paired_verdict, record_tree)
from ..studies import Recipe
from ..sweeps import saturation_k, truncation_curves
from ..train import Callback, RMTPruning
from ..validation import (ArgumentTypeError, check_choice, check_float, check_frame, check_int,
                          check_seed, describe)

__all__ = ["SHARED_SETTINGS", "VARIANTS", "authors_pruning_curves", "check_unpruned_source",
           "describe_lost", "final_table", "fit_titles", "layer_fits", "layer_fits_table",
           "paired_arms", "pruning_changes", "rank_sweep", "rank_sweep_table", "recipe",
           "record_layer_fits", "record_pruning", "record_rank_sweep", "record_reproduction",
           "record_training", "reproduction_display", "reproduction_sections",
           "reproduction_table", "settings_table", "training_finals", "training_table"]

#: The two versions of every paper-1 experiment.
VARIANTS = ("paper_exact", "corrected")


def recipe(variant: str = "paper_exact", prune: bool = False, *,
           dims: Sequence[int] = (784, 1000, 10), keep_fraction: float = 0.45,
           gof: float = 0.1, alpha: float = 0.2, beta: float = 0.1) -> Recipe:
    """The paper-1 network, trained without or with RMT pruning at every epoch.

    ``variant="paper_exact"`` reproduces the authors' code (Shmalo, Jenkins, Krupchytskyi
    2023, ``jtj5311/NN-RMT-SVD``): ReLU also on the output logits; when pruning, BEMA and
    the goodness of fit with their quirks and the one-too-many spike count
    (``PrunePolicy(paper_exact=True)``), every layer keeping at least the output width, a
    prune *before* every training epoch from epoch 1 on (the first one acts on the random
    initialisation), the factors of a split layer analysed as two layers at later events, and
    a fresh optimizer after every prune (momentum lost).

    ``variant="corrected"``: no activation on the logits; the correct BEMA, statistic and
    count; :class:`rmtlib.train.RMTPruning`'s defaults: a prune *after* every training epoch
    (the first one sees one epoch of training; the recorded accuracy of an epoch is that of the
    pruned model), the optimizer state (momentum) of the untouched parameters kept, a split
    layer re-analysed as the product ``W2 W1`` and only the classifier head keeping its output
    width.

    Both: ``keep = spikes + int(keep_fraction * bulk)`` components; a layer is split into two
    factors when that saves parameters, else truncated; a layer whose fit fails the
    goodness-of-fit cutoff ``gof`` is left alone.  The model of seed ``s`` is
    ``MLP(dims, seed=s)`` (the authors' initialisation for their seeds).  Train with SGD,
    lr 0.08, momentum 0.9, batch 128 (:func:`rmtlib.train.fit`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    exact = variant == "paper_exact"
    dims = tuple(int(d) for d in dims)

    def build(seed: int) -> nn.Module:
        return MLP(dims, relu_on_logits=exact, seed=seed)

    callbacks = tuple
    if prune:
        common = {"selector": "bema", "alpha": alpha, "beta": beta,
                  "keep_fraction": keep_fraction, "action": "factorize", "gof": gof}
        if exact:
            policy = PrunePolicy(**common, paper_exact=True, min_rank=dims[-1],
                                 split_view="factors")

            def callbacks() -> Sequence[Callback]:
                return [RMTPruning(policy, optimizer="rebuild", when="before_epoch",
                                   start_epoch=1)]
        else:
            policy = PrunePolicy(**common)

            def callbacks() -> Sequence[Callback]:
                return [RMTPruning(policy)]

    name = f"{variant.replace('_', '-')}, {'pruned' if prune else 'unpruned'}"
    return Recipe(name, build, callbacks,
                  tags={"variant": variant, "arm": "pruned" if prune else "unpruned"})


# ---------------------------------------------------------------------------------------------
# The chapter's tables and records.  The notebooks of notebooks/paper1/ call these so that they
# keep only narrative, parameters, one call per section and the figures; every metric is
# declared here once with Run.log (recorded in metrics.json with its doc *and* glued).
# ---------------------------------------------------------------------------------------------

#: Settings the pruning run must share with the spectra run whose histories are its unpruned arms.
SHARED_SETTINGS = ("n_train", "n_test", "lr", "momentum", "batch_size", "seed")


def _check_run(run) -> None:
    from ..results import Run

    if not isinstance(run, Run):
        raise ArgumentTypeError(f"run must be an rmtlib.results.Run, got {describe(run)}")


def _log_per_variant(run, frame: pd.DataFrame, docs: Mapping[str, str]) -> None:
    """``run.log(column, per-variant seed records of frame[column], doc)`` for each
    ``column: doc`` of ``docs``."""
    for column, doc in docs.items():
        run.log(column, record_tree(frame, column, ["variant"]),
                doc=f"{doc.rstrip()}; per variant and seed")


def _variant_label(variant: str) -> str:
    return variant.replace("_", "-")


def _variant_of(frame: pd.DataFrame, recipes: Sequence[Recipe]) -> pd.Series:
    return frame.recipe.map({r.name: r.tags["variant"] for r in recipes})


def check_unpruned_source(theirs: Mapping, ours: Mapping, *, seeds: Sequence[int], epochs: int,
                          run_name: str = "paper1_spectra", profile: str = "default") -> None:
    """Raise ``ValueError`` unless the spectra run with parameters ``theirs`` (its notebook's
    defaults updated with the injected values) holds the unpruned arms of a pruning comparison
    with settings ``ours`` (the :data:`SHARED_SETTINGS`), ``seeds`` and ``epochs``: same
    settings, every seed trained, at least ``epochs`` epochs."""
    for arg, name in ((theirs, "theirs"), (ours, "ours")):
        if not isinstance(arg, Mapping):
            raise ArgumentTypeError(f"{name} must be a mapping of parameters, got {describe(arg)}")
    missing = [k for k in (*SHARED_SETTINGS, "seeds", "epochs") if k not in theirs]
    missing += [k for k in SHARED_SETTINGS if k not in ours]
    if missing:
        raise ValueError(f"parameters {sorted(set(missing))} missing: theirs {sorted(theirs)}, "
                         f"ours {sorted(ours)}; both need {list(SHARED_SETTINGS)}")
    seeds = [check_seed(s, "seeds") for s in seeds]
    epochs = check_int(epochs, "epochs", minimum=1)
    clash = {k: (theirs[k], ours[k]) for k in SHARED_SETTINGS if theirs[k] != ours[k]}
    if clash or not set(seeds) <= set(theirs["seeds"]) or theirs["epochs"] < epochs:
        raise ValueError(f"run {run_name!r} ({profile}) does not hold the unpruned arms of this "
                         f"comparison: differing settings (theirs, ours) {clash}, seeds "
                         f"{list(theirs['seeds'])} vs {seeds}, epochs {theirs['epochs']} vs "
                         f"{epochs}; re-run it with matching parameters")


def training_finals(history: pd.DataFrame, models: Mapping, test) -> pd.DataFrame:
    """One row per trained network (``recipe``, ``seed``): its last epoch (:func:`final_rows`),
    the classes lost after training (:func:`rmtlib.diagnostics.lost_classes`, recall below
    50 %) and its best test accuracy over the epochs (``best_test_acc``, %)."""
    check_frame(history, ["recipe", "seed", "epoch", "test_acc"], "history")
    finals = final_rows(history)
    lost = lost_classes(models, test, threshold=50.0)
    best = history.groupby(["recipe", "seed"]).test_acc.max().rename("best_test_acc")
    return finals.merge(lost, on=["recipe", "seed"]).merge(best.reset_index(),
                                                            on=["recipe", "seed"])


def training_table(finals: pd.DataFrame) -> pd.DataFrame:
    """The reader's table of :func:`training_finals`: per variant and seed the final and best
    test accuracy (%), the lost classes and how often their output unit's logit is positive
    (% of the test images)."""
    check_frame(finals, ["variant", "seed", "test_acc", "best_test_acc", "lost",
                         "activity_of_lost"], "finals")
    table = finals.set_index(["variant", "seed"])[["test_acc", "best_test_acc", "lost"]].copy()
    table["positive logit on (% of test images)"] = [
        ", ".join(f"{100 * a:.2g}" for a in acts) for acts in finals.activity_of_lost]
    table.columns = ["final test accuracy (%)", "best epoch (%)", "lost classes",
                     "positive logit on (% of test images)"]
    return table


def describe_lost(finals: pd.DataFrame, variant: str) -> str:
    """One sentence on the networks of ``variant`` that lost a class (recall below 50 %)."""
    check_frame(finals, ["variant", "seed", "test_acc", "lost", "n_lost", "activity_of_lost"],
                "finals")
    rows = finals[finals.variant == check_choice(variant, "variant", VARIANTS)]
    bad = rows[rows.n_lost > 0]
    if bad.empty:
        return "no seed loses a class"
    parts = "; ".join(f"seed {s}: digit(s) {', '.join(map(str, lost))}, {a:.2f} % final accuracy"
                      for s, lost, a in zip(bad.seed, bad.lost, bad.test_acc))
    act = max(max(a) for a in bad.activity_of_lost)
    where = ("on none of the test images" if act == 0 else
             f"on at most {100 * act:.2g} % of the test images")
    return (f"{len(bad)} of {len(rows)} seeds lose one or more classes ({parts}); the output "
            f"unit of every lost class has a positive logit {where}")


def record_training(run, history: pd.DataFrame, finals: pd.DataFrame, *, ref: Mapping,
                    seeds: Sequence[int], epochs: int, n_test: int, threads: int,
                    seconds: float) -> None:
    """Declare the metrics of the spectra run's training (final and per-epoch accuracy per
    variant and seed, lost classes, parameter count, time per epoch) and the prose values of
    its training section (keys ``p1s_*``; ``ref`` is ``reference_values.yml``)."""
    _check_run(run)
    check_frame(history, ["variant", "seed", "epoch", "test_acc"], "history")
    doc_seeds = f"seeds {list(seeds)}, {epochs} epochs, {n_test} test images"
    run.log("final_test_acc", record_tree(finals, "test_acc", ["variant"]),
            doc="test accuracy after the last epoch, per variant (paper_exact: ReLU on the "
                f"logits; corrected: none), per seed and mean/sd/min/max over seeds "
                f"({doc_seeds}; %)")
    run.log("test_acc_by_epoch", curve_tree(history, "test_acc", ["variant"]),
            doc="test accuracy after each epoch 0..epochs (0 = untrained), per variant and "
                "seed (%)")
    stats = epoch_summary(history, "test_acc", by="variant")
    run.log("test_acc_by_epoch_mean", {v: g["mean"].tolist() for v, g in stats.groupby("variant")},
            doc="mean over seeds of the test accuracy after each epoch 0..epochs, per variant (%)")
    run.log("test_acc_by_epoch_sd", {v: g["sd"].tolist() for v, g in stats.groupby("variant")},
            doc="sample standard deviation (ddof = 1) over seeds of the test accuracy per "
                "epoch (%)")
    run.log("lost_classes", record_tree(finals, "n_lost", ["variant"]),
            doc="classes whose test recall is below 50 % after training, per variant and seed "
                "(count)")
    run.log("lost_class_ids", {v: {str(s): lost for s, lost in zip(g.seed, g.lost)}
                               for v, g in finals.groupby("variant")},
            doc="the lost classes (test recall below 50 %) after training, per variant and "
                "seed (digit labels)")
    run.log("n_params", int(finals.n_params.iloc[0]), doc="parameters of the MLP 784-1000-10 "
            "(count)")
    run.log("seconds_per_epoch", float(seconds), doc="mean wall time of a training epoch incl. "
            f"test evaluation, {threads} torch thread(s) (seconds)")
    fig4 = ref["figures_4_5"]
    exact, corrected = (finals[finals.variant == v] for v in VARIANTS)
    own = exact.set_index("seed").test_acc
    first = history[(history.epoch == 0) & (history.variant == "paper_exact")]
    first = first.set_index("seed").test_acc
    stall = ref["pruning_during_training"]["test_acc_by_epoch_7_to_9"]["unpruned"][-1]
    run.text("p1s_n_seeds", str(len(seeds)))
    run.text("p1s_epochs", str(epochs))
    run.text("p1s_final_exact", format_mean_sd(exact.test_acc.mean(), exact.test_acc.std()))
    run.text("p1s_final_corrected", format_mean_sd(corrected.test_acc.mean(),
                                                   corrected.test_acc.std()))
    run.text("p1s_dead_exact", describe_lost(finals, "paper_exact"))
    run.text("p1s_dead_corrected", describe_lost(finals, "corrected"))
    run.text("p1s_epoch0_authors_seed", f"{first.get(fig4['seed'], float('nan')):.2f}")
    run.text("p1s_epoch0_authors", f"{fig4['test_acc_by_epoch'][0]:.2f}")
    run.text("p1s_final_authors", f"{fig4['test_acc_by_epoch'][-1]:.2f}")
    run.text("p1s_authors_stall", f"{stall:.2f}")
    run.text("p1s_final_authors_seed", f"{own.get(fig4['seed'], float('nan')):.2f}")


def layer_fits(study, recipes: Sequence[Recipe], *, alpha: float, rank_alpha: float,
               beta: float, gof: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """BEMA on every layer of every network of ``study`` (a :class:`~rmtlib.studies.SeedStudy`).

    Returns ``(spectra, ranks)``: ``spectra`` has one row per network and layer with the
    correct fit (``sigma2``, ``lambda_plus``, ``spikes``) and the goodness of fit in the
    authors' version and the corrected one with their verdicts at the cutoff ``gof``
    (``gof_authors``, ``accepted_authors``, ``gof_corrected``, ``accepted_corrected``);
    ``ranks`` the predicted rank of the first layer, the authors' definition (paper-exact BEMA
    with ``rank_alpha``) and the correct one.  Both carry a ``variant`` column."""
    kw = dict(beta=beta, gof=gof)
    exact_fit = study.analyze(alpha=alpha, paper_exact=True, **kw)
    corr_fit = study.analyze(alpha=alpha, paper_exact=False, **kw)
    first = ["layers.0"]
    rank_exact = study.analyze(alpha=rank_alpha, paper_exact=True, layers=first, **kw)
    rank_corr = study.analyze(alpha=rank_alpha, paper_exact=False, layers=first, **kw)
    keys = ["recipe", "seed", "name"]

    def verdict(fit, suffix):
        return fit[keys + ["gof", "accepted"]].rename(
            columns={"gof": f"gof_{suffix}", "accepted": f"accepted_{suffix}"})

    spectra = (corr_fit[keys + ["shape", "sigma2", "lambda_plus", "spikes"]]
               .merge(verdict(exact_fit, "authors"), on=keys)
               .merge(verdict(corr_fit, "corrected"), on=keys))
    spectra.insert(0, "variant", _variant_of(spectra, recipes))
    ranks = rank_exact[keys + ["rank"]].rename(columns={"rank": "predicted_rank"}).merge(
        rank_corr[keys + ["rank"]].rename(columns={"rank": "predicted_rank_corrected"}), on=keys)
    ranks.insert(0, "variant", _variant_of(ranks, recipes))
    return spectra, ranks


def layer_fits_table(spectra: pd.DataFrame) -> pd.DataFrame:
    """The reader's view of the ``spectra`` table of :func:`layer_fits`."""
    check_frame(spectra, ["variant", "seed", "name", "sigma2", "lambda_plus", "gof_authors",
                          "gof_corrected"], "spectra")
    shown = spectra.drop(columns=["recipe"], errors="ignore").set_index(["variant", "seed", "name"])
    shown[["sigma2", "lambda_plus"]] = shown[["sigma2", "lambda_plus"]].map(lambda v: f"{v:.4g}")
    return shown.round({"gof_authors": 4, "gof_corrected": 4})


def record_layer_fits(run, spectra: pd.DataFrame, ranks: pd.DataFrame, *, ref: Mapping,
                      alpha: float, rank_alpha: float, beta: float, gof: float,
                      figure_seed: int) -> None:
    """Declare the metrics of :func:`layer_fits` (GoF statistics and verdicts, edges,
    predicted ranks per variant, layer and seed) and the prose values of the spectra section
    (keys ``p1s_*``)."""
    _check_run(run)
    check_frame(spectra, ["variant", "seed", "name", "gof_authors", "gof_corrected",
                          "accepted_authors", "lambda_plus"], "spectra")
    check_frame(ranks, ["variant", "seed", "predicted_rank", "predicted_rank_corrected"],
                "ranks")
    vn = ["variant", "name"]
    run.log("gof", record_tree(spectra, "gof_authors", vn),
            doc="goodness of fit of each layer, the authors' statistic (L-infinity CDF "
                f"distance on BEMA's window, alpha = {alpha}), per variant, layer and seed "
                "(dimensionless)")
    run.log("gof_corrected", record_tree(spectra, "gof_corrected", vn),
            doc="goodness of fit of each layer, the corrected statistic (rmtlib.gof), per "
                "variant, layer and seed (dimensionless)")
    accepted = spectra.assign(a=spectra.accepted_authors.astype(float))
    run.log("gof_accepted", record_tree(accepted, "a", vn),
            doc=f"1 if the authors' GoF statistic is below the cutoff {gof} (layer accepted), "
                "else 0; mean = fraction of seeds accepted, per variant and layer")
    run.log("lambda_plus", record_tree(spectra, "lambda_plus", vn),
            doc=f"BEMA edge lambda_+ (correct formula, alpha = {alpha}, beta = {beta}) per "
                "variant, layer and seed (eigenvalue units s^2/N)")
    run.log("predicted_rank", record_tree(ranks, "predicted_rank", ["variant"]),
            doc="predicted rank of layer 1 (layers.0), the authors' definition: eigenvalues "
                f"above the paper-exact BEMA edge with alpha = {rank_alpha}, beta = {beta}; "
                "per variant and seed (count)")
    run.log("predicted_rank_corrected", record_tree(ranks, "predicted_rank_corrected",
                                                    ["variant"]),
            doc=f"predicted rank of layer 1 with the correct BEMA formulas, alpha = "
                f"{rank_alpha}, beta = {beta}; per variant and seed (count)")
    fig4 = ref["figures_4_5"]
    rank = {v: ranks.predicted_rank[ranks.variant == v] for v in VARIANTS}
    own = ranks[ranks.variant == "paper_exact"].set_index("seed").predicted_rank
    exact = spectra[spectra.variant == "paper_exact"]
    g1, g2 = (exact[exact.name == n] for n in ("layers.0", "layers.1"))
    run.text("p1s_rank", format_mean_sd(rank["paper_exact"].mean(), rank["paper_exact"].std(), 1))
    run.text("p1s_rank_corrected_net", format_mean_sd(rank["corrected"].mean(),
                                                      rank["corrected"].std(), 1))
    run.text("p1s_rank_seed", f"{own.get(figure_seed, float('nan')):.0f}")
    run.text("p1s_rank_authors", f"{fig4['predicted_rank']}")
    run.text("p1s_gof1", format_mean_sd(g1.gof_authors.mean(), g1.gof_authors.std(), 4))
    run.text("p1s_gof2", format_mean_sd(g2.gof_authors.mean(), g2.gof_authors.std(), 2))
    run.text("p1s_gof1_accepted", f"{int(g1.accepted_authors.sum())} of {len(g1)}")
    run.text("p1s_gof2_accepted", f"{int(g2.accepted_authors.sum())} of {len(g2)}")
    run.text("p1s_gof1_authors", f"{fig4['gof']['layers.0']}")
    run.text("p1s_gof2_authors", f"{fig4['gof']['layers.1']}")


def fit_titles(fits: Mapping, gof: float) -> dict:
    """Row titles for :func:`rmtlib.plotting.esd_grid`: layer, shape, the GoF statistic and
    its verdict at the cutoff ``gof``."""
    gof = check_float(gof, "gof", low=0.0)
    out = {}
    for name, f in fits.items():
        ok = f.gof < gof
        out[name] = (f"{name} ({f.shape[0]}×{f.shape[1]}), GoF {f.gof:.3g} "
                     f"{'<' if ok else '≥'} {gof}: {'accepted' if ok else 'rejected'}")
    return out


def rank_sweep(models: Mapping, ranks: pd.DataFrame, recipes: Sequence[Recipe], test, *,
               layer: str = "layers.0", ks: Sequence[int], threads: int = 1,
               tolerance: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 5 for every network: ``layer`` truncated to rank k for each k of ``ks`` and to
    full rank (:func:`rmtlib.sweeps.truncation_curves`), and to its predicted rank (``ranks``:
    the spectra run's ``predicted_rank`` table).

    Returns ``(curves, summary)``: ``curves`` one row per network and k (``k`` up to full
    rank, ``test_acc`` %, ``variant``); ``summary`` per network the predicted rank, the
    accuracy there and at full rank, their gap (percentage points) and the smallest k of the
    sweep within ``tolerance`` points of full rank (:func:`rmtlib.sweeps.saturation_k`)."""
    check_frame(ranks, ["recipe", "seed", "predicted_rank"], "ranks")
    ks = [check_int(k, "ks", minimum=0) for k in ks]
    p_full = min(models[next(iter(models))].get_submodule(layer).weight.shape)
    curves = truncation_curves(models, layer, ks + [p_full], test, threads=threads)
    curves.insert(0, "variant", _variant_of(curves, recipes))
    predicted = ranks.set_index(["recipe", "seed"]).predicted_rank
    at_rank = truncation_curves(models, layer, {key: [int(predicted[key])] for key in models},
                                test, threads=threads)
    summary = (ranks.merge(at_rank[["recipe", "seed", "test_acc"]], on=["recipe", "seed"])
               .rename(columns={"test_acc": "acc_at_predicted_rank"})
               .merge(saturation_k(curves, p_full, tolerance), on=["recipe", "seed"])
               .rename(columns={"full_acc": "full_rank_acc",
                                "k_saturation": "k_within_half_point"}))
    summary["gap_at_predicted_rank"] = summary.full_rank_acc - summary.acc_at_predicted_rank
    return curves, summary


def rank_sweep_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The reader's view of the ``summary`` of :func:`rank_sweep`."""
    cols = ["predicted_rank", "acc_at_predicted_rank", "full_rank_acc", "gap_at_predicted_rank",
            "k_within_half_point"]
    check_frame(summary, ["variant", "seed", *cols], "summary")
    return summary.set_index(["variant", "seed"])[cols].round(2)


def record_rank_sweep(run, sweep: pd.DataFrame, summary: pd.DataFrame, *, ref: Mapping,
                      layer: str, k_step: int, k_max: int) -> None:
    """Declare the metrics of :func:`rank_sweep` (``sweep``: its curves with ``k <= k_max``)
    and the prose values of the accuracy-versus-rank page (keys ``p1r_*``)."""
    _check_run(run)
    check_frame(sweep, ["variant", "seed", "k", "test_acc"], "sweep")
    check_frame(summary, ["variant", "seed", "predicted_rank", "acc_at_predicted_rank",
                          "full_rank_acc", "gap_at_predicted_rank", "k_within_half_point"],
                "summary")
    run.log("acc_vs_k", curve_tree(sweep, "test_acc", ["variant"], x="k", pairs=True),
            doc=f"test accuracy after truncating {layer} to rank k (k = 0, {k_step}, ..., "
                f"{k_max}), as [k, accuracy] pairs per variant and seed (%)")
    stats = sweep.groupby(["variant", "k"], sort=False).test_acc.agg(["mean", "std"])
    stats = stats.reset_index()
    by = stats.groupby("variant", sort=False)
    run.log("acc_vs_k_mean", {v: g[["k", "mean"]].values.tolist() for v, g in by},
            doc="mean over seeds of the rank-k accuracy, [k, accuracy] pairs per variant (%)")
    run.log("acc_vs_k_sd", {v: g[["k", "std"]].values.tolist() for v, g in by},
            doc="sample sd (ddof = 1) over seeds of the rank-k accuracy, [k, sd] pairs per "
                "variant (%)")
    _log_per_variant(run, summary, {
        "full_rank_acc": "test accuracy of the untruncated network (%)",
        "acc_at_predicted_rank": f"test accuracy with {layer} truncated to its predicted rank "
                                 "(authors' definition, see the spectra run) (%)",
        "gap_at_predicted_rank": "full-rank accuracy minus the accuracy at the predicted rank "
                                 "(percentage points)",
        "k_within_half_point": "smallest k of the sweep whose accuracy is within 0.5 "
                               "percentage points of the full-rank accuracy (count)"})

    def stat(v, col, digits=2):
        d = summary[summary.variant == v][col]
        text = format_mean_sd(d.mean(), d.std(), digits)
        if d.notna().all():
            return text
        return (f"{text} ({int(d.notna().sum())} of {len(d)} networks; the others stay "
                f"further from their full-rank accuracy for every k up to {k_max})")

    for v, short in (("paper_exact", "exact"), ("corrected", "corrected")):
        run.text(f"p1r_gap_{short}", stat(v, "gap_at_predicted_rank"))
        run.text(f"p1r_k_{short}", stat(v, "k_within_half_point", 1))
        run.text(f"p1r_rank_{short}", stat(v, "predicted_rank", 1))
    fig4 = ref["figures_4_5"]
    kk, aa = np.asarray(fig4["acc_vs_k"]["k"]), np.asarray(fig4["acc_vs_k"]["test_acc"])
    k_authors = kk[aa >= fig4["test_acc_by_epoch"][-1] - 0.5].min()
    run.text("p1r_k_authors", f"{k_authors}")
    run.text("p1r_rank_authors", f"{fig4['predicted_rank']}")
    own = sweep[(sweep.variant == "paper_exact") & (sweep.seed == fig4["seed"])]
    diff = own.merge(pd.DataFrame({"k": kk, "authors": aa}), on="k")
    run.text("p1r_maxdiff_seed", f"{(diff.test_acc - diff.authors).abs().max():.2f}"
             if len(diff) else "n/a")
    below = summary.k_within_half_point <= summary.predicted_rank
    run.text("p1r_below", f"{int(below.sum())} of {len(summary)}")
    run.text("p1r_authors_below", "below" if k_authors <= fig4["predicted_rank"] else "above")


def pruning_changes(events: pd.DataFrame, models: Mapping) -> pd.DataFrame:
    """What pruning did, per pruned run (``recipe``, ``seed``): at which epochs a layer was
    changed (``name: rank before → rank after (action)``), how many layer fits the GoF test
    rejected, and the final layer widths (``models``: the trained networks by key)."""
    check_frame(events, ["recipe", "seed", "epoch", "name", "action", "rank_before",
                         "rank_after", "accepted"], "events")
    done = events[events.action != "skipped"]
    change = (done.name + ": " + done.rank_before.astype(str) + " → "
              + done.rank_after.astype(str) + " (" + done.action + ")")
    changes = (done.assign(change=change).groupby(["recipe", "seed", "epoch"], sort=False)
               .change.agg("; ".join).rename("layers changed"))
    rejected = (events[events.accepted.eq(False)].groupby(["recipe", "seed"], sort=False).size()
                .rename("layer fits rejected by the GoF test"))
    widths = pd.Series({key: ", ".join(map(str, m.widths)) for key, m in models.items()},
                       name="final widths").rename_axis(["recipe", "seed"])
    out = pd.DataFrame(changes).join(rejected, on=["recipe", "seed"])
    out = out.join(widths, on=["recipe", "seed"])
    out["layer fits rejected by the GoF test"] = (
        out["layer fits rejected by the GoF test"].fillna(0).astype(int))
    return out


def final_table(history: pd.DataFrame) -> pd.DataFrame:
    """Per recipe: the final test accuracy (mean ± sd over seeds, %), its range and the
    parameter count (mean ± sd) of the history frame's last epoch."""
    check_frame(history, ["recipe", "seed", "epoch", "test_acc", "n_params"], "history")
    s = final_summary(history, ["test_acc", "n_params"])
    return pd.DataFrame({
        "final test accuracy (%)": [format_mean_sd(r.test_acc_mean, r.test_acc_sd)
                                    for r in s.itertuples()],
        "min – max (%)": [f"{r.test_acc_min:.2f} – {r.test_acc_max:.2f}" for r in s.itertuples()],
        "parameters": [format_mean_sd(r.n_params_mean, r.n_params_sd, 0) for r in s.itertuples()],
        "seeds": s.n}, index=s.index)


def paired_arms(history: pd.DataFrame) -> dict:
    """Per variant, the paired final test accuracies of its two arms (same initialisation
    and batch order): columns ``seed``, ``unpruned``, ``pruned``, ``difference`` (pruned
    minus unpruned, percentage points)."""
    check_frame(history, ["recipe", "seed", "epoch", "test_acc"], "history")
    out = {}
    for v in VARIANTS:
        label = _variant_label(v)
        d = paired_differences(history, f"{label}, unpruned", f"{label}, pruned")
        out[v] = d.set_axis(["seed", "unpruned", "pruned", "difference"], axis=1)
    return out


def record_pruning(run, history: pd.DataFrame, study, recipes: Sequence[Recipe], test, *,
                   unpruned_metrics: Mapping, ref: Mapping, seeds: Sequence[int], epochs: int,
                   threads: int) -> dict:
    """Declare every metric of the pruning comparison and the prose values of its page.

    ``history``: the unpruned arms (from the spectra run) and the pruned ones (``study``, a
    :class:`~rmtlib.studies.SeedStudy`) in one long frame; ``unpruned_metrics``: the spectra
    run's ``metrics.json`` values (its ``lost_classes``); ``ref``: ``reference_values.yml``.
    Metrics: the paired difference per variant, final and per-epoch accuracy per arm, the
    parameters and widths after training, the first prune's rank and epoch, the lost classes
    and the time per epoch.  Returns :func:`paired_arms` of ``history``."""
    _check_run(run)
    check_frame(history, ["recipe", "seed", "epoch", "test_acc", "n_params", "variant", "arm"],
                "history")
    seeds = [check_seed(s, "seeds") for s in seeds]
    epochs = check_int(epochs, "epochs", minimum=1)
    pairs = paired_arms(history)
    for v, d in pairs.items():
        rec = {"per_seed": dict(zip(map(str, d.seed), d.difference)),
               "mean": d.difference.mean(), "sd": d.difference.std(),
               "n_positive": int((d.difference > 0).sum()), "n": len(d)}
        run.log(f"paired_difference_{v}", rec,
                doc=f"{v}: final test accuracy of the pruned minus the unpruned arm of each seed "
                    "(same initialisation and mini-batch order); mean, sd (ddof = 1), count of "
                    "seeds where pruning helps (percentage points)")
        run.text(f"p1p_verdict_{v}", paired_verdict(d.difference))
    keys = history.assign(group=history.variant + "_" + history.arm)
    fin = final_rows(keys)
    run.log("final_test_acc", record_tree(fin, "test_acc", ["group"]),
            doc=f"test accuracy after epoch {epochs} per arm (paper_exact/corrected x "
                "pruned/unpruned), per seed and mean/sd/min/max over seeds (%)")
    run.log("test_acc_by_epoch", curve_tree(keys, "test_acc", ["group"]),
            doc=f"test accuracy after each epoch 0..{epochs}, per arm and seed (%)")
    stats = epoch_summary(keys, "test_acc", by="group")
    run.log("test_acc_by_epoch_mean", {a: g["mean"].tolist() for a, g in stats.groupby("group")},
            doc="mean over seeds of the test accuracy per epoch, per arm (%)")
    run.log("test_acc_by_epoch_sd", {a: g["sd"].tolist() for a, g in stats.groupby("group")},
            doc="sample sd (ddof = 1) over seeds of the test accuracy per epoch, per arm (%)")
    run.log("n_params", record_tree(fin, "n_params", ["group"]),
            doc=f"parameters after epoch {epochs}, per arm and seed (count)")
    run.log("widths", {f"{r}|{s}": m.widths for (r, s), m in study.models.items()},
            doc="layer widths of each pruned network after training, input first, per "
                "'recipe|seed' (count)")
    events = study.events()
    done = events[events.action != "skipped"]
    first = done.sort_values("epoch", kind="stable").drop_duplicates(["recipe", "seed"])
    first = first[first.name == "layers.0"]
    first = first.assign(variant=_variant_of(first, recipes))
    _log_per_variant(run, first.rename(columns={"rank_after": "first_prune_rank",
                                                "epoch": "first_prune_epoch"}), {
        "first_prune_rank": "rank kept in layer 1 at its first prune (compare the authors' "
                            "widths in reference_values.yml) (count)",
        "first_prune_epoch": "epoch at which layer 1 was first pruned (paper_exact: before "
                             "that epoch's training; corrected: after it)"})
    lost = lost_classes(study.models, test, threshold=50.0).merge(
        study.frame[["recipe", "variant"]].drop_duplicates(), on="recipe")
    run.log("lost_classes", record_tree(lost, "n_lost", ["variant"]),
            doc="pruned networks: classes whose test recall is below 50 % after training, "
                "per variant and seed (count)")
    sec = study.frame.loc[study.frame.epoch > 0, "seconds"].mean()
    run.log("seconds_per_epoch", float(sec),
            doc="mean wall time of a pruned training epoch incl. pruning and test evaluation, "
                f"{threads} thread(s) (seconds)")

    run.text("p1p_n_seeds", str(len(seeds)))
    run.text("p1p_epochs", str(epochs))
    for arm, g in fin.groupby("group"):
        run.text(f"p1p_final_{arm}", format_mean_sd(g.test_acc.mean(), g.test_acc.std()))
    run.text("p1p_rank_first", ", ".join(f"{k:.0f}" for k in sorted(first.rank_after.unique())))
    plain_lost = unpruned_metrics["lost_classes"]
    for v in VARIANTS:
        n_pruned = int(((lost.variant == v) & (lost.n_lost > 0)).sum())
        n_plain = sum(int(plain_lost[v]["per_seed"][str(s)] > 0) for s in seeds)
        run.text(f"p1p_lost_{v}", f"{n_pruned} of {len(seeds)} pruned and {n_plain} of "
                 f"{len(seeds)} unpruned networks")
    pr = ref["pruning_during_training"]
    curve = authors_pruning_curves(ref)
    own = fin[fin.seed == pr["seed"]].set_index("group").test_acc
    for arm in ("paper_exact_unpruned", "paper_exact_pruned"):
        run.text(f"p1p_seed_{arm}", f"{own.get(arm, float('nan')):.2f}")
    for arm in ("unpruned", "pruned"):
        at = curve[arm][epochs] if epochs < len(curve[arm]) else None
        run.text(f"p1p_authors_{arm}", "n/a" if at is None else f"{at:.2f}")
        run.text(f"p1p_authors_final_{arm}", f"{curve[arm][-1]:.2f}")
    pe = keys[(keys.group == "paper_exact_pruned") & (keys.epoch >= 1)]
    run.text("p1p_pe_low", f"{pe.test_acc.min():.2f}")
    run.text("p1p_pe_low_epoch", str(int(pe.loc[pe.test_acc.idxmin(), "epoch"])))
    pe_end = pe[pe.epoch == epochs].test_acc
    run.text("p1p_pe_end_range", f"{pe_end.min():.2f}–{pe_end.max():.2f}")
    run.text("p1p_authors_widths", ", ".join(map(str, pr["widths_pruned"])))
    return pairs


def authors_pruning_curves(ref: Mapping) -> dict:
    """The authors' test accuracy per epoch 0..9 of their pruning experiment, ``{"unpruned":
    [...], "pruned": [...]}`` (``ref``: ``reference_values.yml``; their notebook prints epochs
    0-6, their figure epochs 7-9)."""
    if not isinstance(ref, Mapping) or "pruning_during_training" not in ref:
        raise ValueError(f"ref must be the mapping of reference_values.yml with a "
                         f"'pruning_during_training' entry, got {describe(ref)}")
    pr = ref["pruning_during_training"]
    return {arm: list(pr["test_acc_by_epoch"][arm]) + list(pr["test_acc_by_epoch_7_to_9"][arm])
            for arm in ("unpruned", "pruned")}


def _values(record) -> list:
    return list(record["per_seed"].values())


def _edge(table: pd.DataFrame, param: str, value: float, formula: str) -> float:
    hit = table[np.isclose(table[param], value) & (table.formula == formula)]
    if hit.empty:
        raise ValueError(f"the BEMA run has no fit at {param} = {value} ({formula}); its grid: "
                         f"{sorted(table[param].unique())}")
    return float(hit.lambda_plus.iloc[0])


def reproduction_sections(ref: Mapping, spectra: Mapping, sweep: Mapping, pruning: Mapping,
                          bema_alpha: pd.DataFrame, bema_beta: pd.DataFrame) -> dict:
    """Every published number of paper 1 next to ours: ``{section: (paper_exact_rows,
    corrected_rows)}`` of :func:`rmtlib.published.compare_value` / ``compare_curve`` rows.

    ``ref``: ``reference_values.yml``; ``spectra``, ``sweep``, ``pruning``: the ``metrics.json``
    values of the chapter's three runs; ``bema_alpha``, ``bema_beta``: the theory chapter's
    BEMA run's tables ``lambda_plus_vs_alpha.csv`` / ``lambda_plus_vs_beta.csv`` (the
    synthetic example: one matrix, the same rows in both columns but for the formula)."""
    for arg, name in ((ref, "ref"), (spectra, "spectra"), (sweep, "sweep"), (pruning, "pruning")):
        if not isinstance(arg, Mapping):
            raise ArgumentTypeError(f"{name} must be a mapping, got {describe(arg)}")
    for table, name in ((bema_alpha, "bema_alpha"), (bema_beta, "bema_beta")):
        check_frame(table, ["formula", "lambda_plus"], name)
    ms, mk, mp = spectra, sweep, pruning
    st, fig4, pr, syn = (ref[k] for k in ("settings", "figures_4_5", "pruning_during_training",
                                          "synthetic"))
    s4, sp = str(fig4["seed"]), str(pr["seed"])
    gof, acc = ms["gof"], ms["gof_accepted"]
    epoch = "after epoch {x}"

    def spectra_rows(v):
        same = v == "paper_exact"

        def cmp(label, authors, record, digits=2):
            seed = record["per_seed"].get(s4) if same else None
            return compare_value(label, authors, _values(record), same_seed=seed, digits=digits)

        rank = ms["predicted_rank"][v]
        return [compare_value("parameters", st["n_params"], ms["n_params"], digits=0),
                cmp("GoF statistic, layer 1", fig4["gof"]["layers.0"], gof[v]["layers.0"], 4),
                cmp("GoF statistic, output layer", fig4["gof"]["layers.1"], gof[v]["layers.1"],
                    3),
                cmp("layer 1 accepted (1 = yes)", float(fig4["gof_accepted"]["layers.0"]),
                    acc[v]["layers.0"]),
                cmp("output layer accepted (1 = yes)", float(fig4["gof_accepted"]["layers.1"]),
                    acc[v]["layers.1"]),
                cmp("predicted rank of layer 1", fig4["predicted_rank"], rank, 1),
                compare_value("predicted rank of layer 1 (another run, approximate)",
                              fig4["predicted_rank_other_run"], _values(rank), digits=1)]

    curves = authors_pruning_curves(ref)
    sections = {
        "Figures 4-5 run: test accuracy per epoch (no pruning)": tuple(
            compare_curve(epoch, fig4["test_acc_by_epoch"], ms["test_acc_by_epoch"][v],
                          same_seed=s4 if v == "paper_exact" else None, unit="%")
            for v in VARIANTS),
        "Figures 4-5 run: spectra of the trained layers": tuple(spectra_rows(v)
                                                                for v in VARIANTS),
        "Figure 5: test accuracy with layer 1 truncated to rank k": tuple(
            compare_curve("k = {x}", fig4["acc_vs_k"]["test_acc"], mk["acc_vs_k"][v],
                          x=fig4["acc_vs_k"]["k"], same_seed=s4 if v == "paper_exact" else None,
                          unit="%")
            for v in VARIANTS),
    }
    for arm in ("unpruned", "pruned"):
        sections[f"Pruning during training: {arm} arm, test accuracy per epoch"] = tuple(
            compare_curve(epoch, curves[arm], mp["test_acc_by_epoch"][f"{v}_{arm}"],
                          same_seed=sp if v == "paper_exact" else None, unit="%")
            for v in VARIANTS)
    first = mp["first_prune_rank"]
    sections["Pruning during training: structure"] = tuple(
        [compare_value("rank of layer 1 after the first prune", pr["widths_pruned"][1],
                       _values(first[v]), digits=1,
                       same_seed=first[v]["per_seed"].get(sp) if v == "paper_exact" else None)]
        for v in VARIANTS)
    va, vb = bema_alpha, bema_beta
    betas, at_beta = syn["lambda_plus_vs_beta"]["beta"], syn["lambda_plus_vs_beta"]["value"]
    alpha_range = syn["lambda_plus_vs_alpha"]["range"]
    synthetic = {f: [
        compare_value("fitted edge at alpha = 0.2, beta = 0.1 (authors: about 4)",
                      syn["lambda_plus"], _edge(va, "alpha", 0.2, f), digits=3),
        compare_value("smallest fitted edge, alpha = 0.05-0.45", alpha_range[0],
                      va[va.formula == f].lambda_plus.min(), digits=3),
        compare_value("largest fitted edge, alpha = 0.05-0.45", alpha_range[1],
                      va[va.formula == f].lambda_plus.max(), digits=3),
        compare_value("fitted edge at beta = 0.05", at_beta[0], _edge(vb, "beta", betas[0], f),
                      digits=3),
        compare_value("fitted edge at beta = 0.95", at_beta[1], _edge(vb, "beta", betas[1], f),
                      digits=3),
    ] for f in ("paper-exact", "correct")}
    sections["Synthetic example W = R + S (one matrix, no seeds)"] = (synthetic["paper-exact"],
                                                                     synthetic["correct"])
    return sections


def reproduction_table(sections: Mapping) -> pd.DataFrame:
    """All rows of :func:`reproduction_sections` in one frame (columns of
    :func:`rmtlib.published.comparison_table` prefixed ``exact_`` / ``corrected_``, and
    ``section``), for ``reproduction.csv``."""
    if not isinstance(sections, Mapping) or not sections:
        raise ArgumentTypeError(f"sections must be a non-empty mapping, got {describe(sections)}")
    return pd.concat([
        pd.concat([comparison_table(a).add_prefix("exact_"),
                   comparison_table(b).add_prefix("corrected_")], axis=1).assign(section=name)
        for name, (a, b) in sections.items()])


def reproduction_display(exact_rows, corrected_rows) -> pd.DataFrame:
    """The reader's table of one section: authors, ours for their seed, ours (mean ± sd over
    seeds, paper-exact), seeds, difference, z, and the corrected version's mean ± sd."""
    ex, co = comparison_table(exact_rows), comparison_table(corrected_rows)

    def num(v, d):
        return "" if not np.isfinite(v) else f"{v:.{d}f}"

    return pd.DataFrame({
        "authors": [num(v, d) for v, d in zip(ex.authors, ex.digits)],
        "ours, same seed": [num(v, d) for v, d in zip(ex.ours_same_seed, ex.digits)],
        "ours: mean ± sd (paper-exact)": list(ex.ours),
        "seeds": list(ex.n),
        "difference": [num(v, d) for v, d in zip(ex.difference, ex.digits)],
        "z": [num(v, 1) for v in ex.z],
        "corrected": list(co.ours),
    }, index=ex.index)


def record_reproduction(run, full: pd.DataFrame, *, ref: Mapping, spectra: Mapping,
                        sweep: Mapping, pruning: Mapping) -> None:
    """Declare the reproduction table's counts (values compared, not run, within two seed
    sd) and the chapter summary's prose values (keys ``p1x_*``; the metrics of the three runs
    as in :func:`reproduction_sections`)."""
    _check_run(run)
    check_frame(full, ["exact_z", "exact_n"], "full")
    z = full.exact_z.to_numpy(dtype=float)
    ok = np.isfinite(z)
    within = int((np.abs(z[ok]) <= 2).sum())
    run.log("n_compared", int(len(full)), doc="published values compared (count)")
    run.log("n_not_run", int((full.exact_n == 0).sum()),
            doc="published values this profile did not compute (count)")
    run.log("n_within_2sd", within, doc="published values within two of our seed standard "
            "deviations of our paper-exact mean (count)")
    run.log("n_with_sd", int(ok.sum()), doc="published values compared with a seed spread "
            "(count)")
    run.text("p1x_n_compared", str(int(len(full))))
    run.text("p1x_within", f"{within} of {int(ok.sum())}")
    fig4 = ref["figures_4_5"]
    fin_ex, fin_co = (spectra["final_test_acc"][v] for v in VARIANTS)
    rank_ex = spectra["predicted_rank"]["paper_exact"]
    run.text("p1x_final_authors", f"{fig4['test_acc_by_epoch'][-1]:.2f}")
    run.text("p1x_final_exact", format_mean_sd(fin_ex["mean"], fin_ex["sd"]))
    run.text("p1x_final_exact_range", f"{fin_ex['min']:.2f} – {fin_ex['max']:.2f}")
    run.text("p1x_final_corrected", format_mean_sd(fin_co["mean"], fin_co["sd"]))
    run.text("p1x_rank", format_mean_sd(rank_ex["mean"], rank_ex["sd"], 1))
    run.text("p1x_rank_authors", f"{fig4['predicted_rank']}")
    gap = sweep["gap_at_predicted_rank"]
    run.text("p1x_gap", format_mean_sd(gap["paper_exact"]["mean"], gap["paper_exact"]["sd"]))
    run.text("p1x_gap_corrected", format_mean_sd(gap["corrected"]["mean"],
                                                 gap["corrected"]["sd"]))
    for v in VARIANTS:
        run.text(f"p1x_verdict_{v}", paired_verdict(pruning[f"paired_difference_{v}"]["per_seed"]))
        for arm in ("pruned", "unpruned"):
            rec = pruning["final_test_acc"][f"{v}_{arm}"]
            run.text(f"p1x_final_{v}_{arm}", format_mean_sd(rec["mean"], rec["sd"]))


def settings_table(ref: Mapping, spectra_params: Mapping, pruning_params: Mapping, *,
                   n_params: int) -> pd.DataFrame:
    """The authors' settings (``ref["settings"]`` etc. of ``reference_values.yml``) next to
    the runs' (their notebooks' defaults updated with the injected values) and whether they are
    the same; ``n_params``: the spectra run's parameter count."""
    for arg, name in ((ref, "ref"), (spectra_params, "spectra_params"),
                      (pruning_params, "pruning_params")):
        if not isinstance(arg, Mapping):
            raise ArgumentTypeError(f"{name} must be a mapping, got {describe(arg)}")
    st, fig4, pr = (ref[k] for k in ("settings", "figures_4_5", "pruning_during_training"))
    ps, pp = spectra_params, pruning_params
    images = f"{ps['n_train'] or 60000} / {ps['n_test'] or 10000}"
    table = pd.DataFrame([
        ("layer widths", st["dims"], [784, 1000, 10]),
        ("parameters", st["n_params"], check_int(n_params, "n_params", minimum=1)),
        ("learning rate", st["lr"], ps["lr"]),
        ("momentum", st["momentum"], ps["momentum"]),
        ("batch size", st["batch_size"], ps["batch_size"]),
        ("BEMA alpha (fit, GoF, pruning)", st["bema_alpha"], ps["alpha"]),
        ("BEMA alpha (predicted rank)", st["bema_alpha_rank"], ps["rank_alpha"]),
        ("BEMA beta", st["bema_beta"], ps["beta"]),
        ("GoF cutoff", st["gof_cutoff"], ps["gof_cutoff"]),
        ("fraction of the bulk kept", st["keep_fraction"], pp["keep_fraction"]),
        ("epochs, figures 4-5 run", fig4["epochs"], ps["epochs"]),
        ("epochs, pruning comparison", pr["epochs"], pp["epochs"]),
        ("seeds, figures 4-5 run", [fig4["seed"]], ps["seeds"]),
        ("seeds, pruning comparison", [pr["seed"]], pp["seeds"]),
        ("training / test images", "60000 / 10000", images),
    ], columns=["setting", "authors", "ours"]).set_index("setting")
    table["same"] = [str(a) == str(o) for a, o in zip(table.authors, table.ours)]
    return table.astype(str)
