"""Tests of the paper-1 chapter's tables and records (rmtlib.papers.paper1): the functions the
notebooks of notebooks/paper1/ call, on small networks (the paper-1 recipes with dims 40-120-4)
and synthetic data, checked against the same quantities computed directly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rmtlib.papers import paper1
from rmtlib.results import Run, read_json
from rmtlib.stats import final_rows, format_mean_sd
from rmtlib.studies import run_seeds
from rmtlib.validation import ArgumentTypeError

REPO = Path(__file__).resolve().parents[1]
REF = yaml.safe_load((REPO / "notebooks" / "paper1" / "reference_values.yml").read_text())
DIMS = (40, 120, 4)
SEEDS = [3, 7]
EPOCHS = 2
FIT = {"lr": 0.05, "batch_size": 32, "threads": 1}


def _data(n=480, d=40, classes=4):
    """Four Gaussian clusters in R^40: 360 training and 120 test points."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = 2 * torch.randn(classes, d, generator=g)[y] + torch.randn(n, d, generator=g)
    return (x[:360], y[:360]), (x[360:], y[360:])


TRAIN, TEST = _data()


@pytest.fixture(scope="module")
def plain():
    recipes = [paper1.recipe(v, dims=DIMS) for v in paper1.VARIANTS]
    return recipes, run_seeds(recipes, SEEDS, TRAIN, TEST, epochs=EPOCHS, **FIT)


@pytest.fixture(scope="module")
def pruned(plain):
    recipes = [paper1.recipe(v, prune=True, dims=DIMS, gof=None) for v in paper1.VARIANTS]
    study = run_seeds(recipes, SEEDS, TRAIN, TEST, epochs=EPOCHS, **FIT)
    history = pd.concat([plain[1].frame.drop(columns=["prune_summary"]),
                         study.frame.drop(columns=["prune_summary"])], ignore_index=True)
    return recipes, study, history


def _metrics(run):
    return read_json(run.dir / "metrics.json")


def test_training_records_match_the_history(plain, tmp_path):
    recipes, study = plain
    finals = paper1.training_finals(study.frame, study.models, TEST)
    assert len(finals) == len(SEEDS) * 2 and {"lost", "n_lost", "best_test_acc"} <= set(finals)
    best = study.frame.groupby(["recipe", "seed"]).test_acc.max()
    assert finals.set_index(["recipe", "seed"]).best_test_acc.equals(best.loc[
        list(zip(finals.recipe, finals.seed))].set_axis(
        pd.MultiIndex.from_arrays([finals.recipe, finals.seed])))
    run = Run(tmp_path / "spectra", name="t")
    paper1.record_training(run, study.frame, finals, ref=REF, seeds=SEEDS, epochs=EPOCHS,
                           n_test=len(TEST[1]), threads=1, seconds=0.5)
    m = _metrics(run)
    last = final_rows(study.frame)
    for v in paper1.VARIANTS:
        acc = last[last.variant == v].test_acc
        assert m["values"]["final_test_acc"][v]["mean"] == pytest.approx(acc.mean(), rel=1e-12)
        assert m["values"]["final_test_acc"][v]["sd"] == pytest.approx(acc.std(), rel=1e-12)
        assert len(m["values"]["test_acc_by_epoch"][v][str(SEEDS[0])]) == EPOCHS + 1
    assert m["values"]["n_params"] == 40 * 120 + 120 + 120 * 4 + 4
    assert all(m["doc"][k] for k in m["values"])
    table = paper1.training_table(finals)
    assert list(table.columns)[0] == "final test accuracy (%)" and len(table) == len(finals)


def test_describe_lost_counts_the_seeds_that_lost_a_class():
    finals = pd.DataFrame({"variant": ["paper_exact"] * 3, "seed": [1, 2, 3],
                           "test_acc": [90.0, 80.0, 97.0], "lost": [[], [3], [1, 4]],
                           "n_lost": [0, 1, 2], "activity_of_lost": [[], [0.0], [0.0, 0.02]]})
    text = paper1.describe_lost(finals, "paper_exact")
    assert text.startswith("2 of 3 seeds lose") and "digit(s) 1, 4" in text
    assert "at most 2 % of the test images" in text
    assert paper1.describe_lost(finals.assign(variant="corrected"), "paper_exact") == \
        "no seed loses a class"
    with pytest.raises(ValueError, match="variant"):
        paper1.describe_lost(finals, "exact")


def test_layer_fits_and_rank_sweep(plain, tmp_path):
    recipes, study = plain
    spectra, ranks = paper1.layer_fits(study, recipes, alpha=0.2, rank_alpha=0.25, beta=0.1,
                                       gof=0.1)
    assert len(spectra) == len(study.models) * 2 and len(ranks) == len(study.models)
    assert set(spectra.variant) == set(paper1.VARIANTS)
    assert (spectra.lambda_plus > spectra.sigma2).all()
    run = Run(tmp_path / "fits", name="t")
    paper1.record_layer_fits(run, spectra, ranks, ref=REF, alpha=0.2, rank_alpha=0.25,
                             beta=0.1, gof=0.1, figure_seed=SEEDS[0])
    m = _metrics(run)["values"]
    ex = ranks[ranks.variant == "paper_exact"].predicted_rank
    assert m["predicted_rank"]["paper_exact"]["mean"] == pytest.approx(ex.mean(), rel=1e-12)
    assert set(paper1.layer_fits_table(spectra).columns) >= {"gof_authors", "gof_corrected"}

    curves, summary = paper1.rank_sweep(study.models, ranks, recipes, TEST, ks=[0, 2, 4])
    assert set(curves.k) == {0, 2, 4, 40} and len(summary) == len(study.models)
    full = curves[curves.k == 40].set_index(["recipe", "seed"]).test_acc
    for r in summary.itertuples():
        assert r.full_rank_acc == pytest.approx(full[r.recipe, r.seed], rel=1e-12)
        assert r.gap_at_predicted_rank == pytest.approx(r.full_rank_acc
                                                        - r.acc_at_predicted_rank, abs=1e-12)
    run = Run(tmp_path / "sweep", name="t")
    paper1.record_rank_sweep(run, curves[curves.k <= 4], summary, ref=REF, layer="layers.0",
                             k_step=2, k_max=4)
    m = _metrics(run)["values"]
    assert [k for k, _ in m["acc_vs_k"]["corrected"][str(SEEDS[0])]] == [0, 2, 4]
    assert paper1.rank_sweep_table(summary).index.names == ["variant", "seed"]


def test_pruning_records_the_paired_difference(pruned, tmp_path):
    recipes, study, history = pruned
    unpruned = {"lost_classes": {v: {"per_seed": {str(s): 0 for s in SEEDS}}
                                 for v in paper1.VARIANTS}}
    run = Run(tmp_path / "pruning", name="t")
    pairs = paper1.record_pruning(run, history, study, recipes, TEST, ref=REF, seeds=SEEDS,
                                  epochs=EPOCHS, threads=1, unpruned_metrics=unpruned)
    m = _metrics(run)["values"]
    last = final_rows(history).set_index(["recipe", "seed"]).test_acc
    for v in paper1.VARIANTS:
        label = v.replace("_", "-")
        diff = [last[f"{label}, pruned", s] - last[f"{label}, unpruned", s] for s in SEEDS]
        rec = m[f"paired_difference_{v}"]
        assert [rec["per_seed"][str(s)] for s in SEEDS] == pytest.approx(diff, rel=1e-12)
        assert rec["mean"] == pytest.approx(np.mean(diff), rel=1e-12)
        assert rec["n_positive"] == sum(d > 0 for d in diff)
        assert list(pairs[v].columns) == ["seed", "unpruned", "pruned", "difference"]
    assert set(m["final_test_acc"]) == {f"{v}_{a}" for v in paper1.VARIANTS
                                        for a in ("pruned", "unpruned")}
    # the corrected arm prunes after epoch 1, the paper-exact one before it
    assert set(m["first_prune_epoch"]) <= set(paper1.VARIANTS)
    assert all(len(w) >= 3 for w in m["widths"].values())

    changes = paper1.pruning_changes(study.events(), study.models)
    assert changes["layer fits rejected by the GoF test"].dtype.kind == "i"
    assert changes["layers changed"].str.contains("→").all()
    table = paper1.final_table(history)
    g = final_rows(history).groupby("recipe").test_acc
    for name, acc in g:
        assert table.loc[name, "final test accuracy (%)"] == format_mean_sd(acc.mean(), acc.std())


def test_check_unpruned_source():
    ours = dict(n_train=600, n_test=200, lr=0.08, momentum=0.9, batch_size=128, seed=0)
    theirs = {**ours, "seeds": [1, 2, 3], "epochs": 10}
    paper1.check_unpruned_source(theirs, ours, seeds=[1, 3], epochs=9)
    for bad, match in (({**theirs, "lr": 0.1}, "lr"), ({**theirs, "seeds": [1]}, "seeds"),
                       ({**theirs, "epochs": 2}, "epochs 2 vs 9")):
        with pytest.raises(ValueError, match=match):
            paper1.check_unpruned_source(bad, ours, seeds=[1, 3], epochs=9)
    with pytest.raises(ValueError, match="missing"):
        paper1.check_unpruned_source({"lr": 0.08}, ours, seeds=[1], epochs=1)
    with pytest.raises(ArgumentTypeError, match="theirs"):
        paper1.check_unpruned_source([1], ours, seeds=[1], epochs=1)


def test_reproduction_from_recorded_runs(plain, pruned, tmp_path):
    recipes, study = plain
    finals = paper1.training_finals(study.frame, study.models, TEST)
    spectra, ranks = paper1.layer_fits(study, recipes, alpha=0.2, rank_alpha=0.25, beta=0.1,
                                       gof=0.1)
    curves, summary = paper1.rank_sweep(study.models, ranks, recipes, TEST, ks=[0, 5])
    runs = {k: Run(tmp_path / k, name=k) for k in ("spectra", "sweep", "pruning", "repro")}
    paper1.record_training(runs["spectra"], study.frame, finals, ref=REF, seeds=SEEDS,
                           epochs=EPOCHS, n_test=len(TEST[1]), threads=1, seconds=0.1)
    paper1.record_layer_fits(runs["spectra"], spectra, ranks, ref=REF, alpha=0.2,
                             rank_alpha=0.25, beta=0.1, gof=0.1, figure_seed=SEEDS[0])
    paper1.record_rank_sweep(runs["sweep"], curves[curves.k <= 5], summary, ref=REF,
                             layer="layers.0", k_step=5, k_max=5)
    pr_recipes, pr_study, history = pruned
    paper1.record_pruning(runs["pruning"], history, pr_study, pr_recipes, TEST, ref=REF,
                          seeds=SEEDS, epochs=EPOCHS, threads=1,
                          unpruned_metrics=_metrics(runs["spectra"])["values"])
    ms, mk, mp = (_metrics(runs[k])["values"] for k in ("spectra", "sweep", "pruning"))
    grid = pd.DataFrame({"alpha": [0.1, 0.2, 0.3] * 2, "beta": [0.05, 0.1, 0.95] * 2,
                         "formula": ["paper-exact"] * 3 + ["correct"] * 3,
                         "lambda_plus": [4.0, 4.1, 4.2, 3.9, 4.0, 4.05]})
    sections = paper1.reproduction_sections(REF, ms, mk, mp, grid, grid)
    assert len(sections) == 7 and all(len(pair) == 2 for pair in sections.values())
    full = paper1.reproduction_table(sections)
    assert {"exact_z", "corrected_ours", "section"} <= set(full.columns)
    k5 = full[(full.section.str.startswith("Figure 5")) & (full.index == "k = 5")]
    own = np.mean([acc for k, acc in sum(mk["acc_vs_k"]["paper_exact"].values(), []) if k == 5])
    assert float(k5.exact_ours_mean.iloc[0]) == pytest.approx(own, rel=1e-12)
    assert float(k5.exact_difference.iloc[0]) == pytest.approx(own - 54.59, rel=1e-12)
    shown = paper1.reproduction_display(*sections["Pruning during training: structure"])
    assert list(shown.columns)[:2] == ["authors", "ours, same seed"]
    paper1.record_reproduction(runs["repro"], full, ref=REF, spectra=ms, sweep=mk, pruning=mp)
    m = _metrics(runs["repro"])["values"]
    assert m["n_compared"] == len(full) and 0 <= m["n_within_2sd"] <= m["n_with_sd"]
    with pytest.raises(ValueError, match="no fit at alpha = 0.2"):
        paper1.reproduction_sections(REF, ms, mk, mp, grid[grid.alpha != 0.2], grid)


def test_settings_table_and_bad_arguments(plain):
    ps = {"lr": 0.08, "momentum": 0.9, "batch_size": 128, "alpha": 0.2, "rank_alpha": 0.25,
          "beta": 0.1, "gof_cutoff": 0.1, "epochs": 10, "seeds": [43554454], "n_train": None,
          "n_test": None}
    pp = {"keep_fraction": 0.45, "epochs": 9, "seeds": [44345434]}
    table = paper1.settings_table(REF, ps, pp, n_params=795010)
    assert table.same.eq("True").all(), table[table.same != "True"]
    assert paper1.settings_table(REF, {**ps, "lr": 0.1}, pp, n_params=795010).loc[
        "learning rate", "same"] == "False"
    with pytest.raises(ArgumentTypeError, match="run must be an rmtlib.results.Run"):
        paper1.record_training("run", plain[1].frame, pd.DataFrame(), ref=REF, seeds=SEEDS,
                               epochs=1, n_test=1, threads=1, seconds=1.0)
    with pytest.raises(ValueError, match="n_params"):
        paper1.settings_table(REF, ps, pp, n_params=0)
    with pytest.raises(ValueError, match="gof"):
        paper1.fit_titles({}, -1.0)
    with pytest.raises(ValueError, match="ref"):
        paper1.authors_pruning_curves({"x": 1})
