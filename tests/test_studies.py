"""Tests of the experiment modules -- rmtlib.studies (multi-seed studies), rmtlib.stats
(reductions over seeds), rmtlib.sweeps (rank sweeps), rmtlib.diagnostics, rmtlib.published
(comparisons with published numbers), rmtlib.papers.paper1 (the paper-1 recipes) -- and of the
paper-1 plotting helpers."""

import copy
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rmtlib import plotting
from rmtlib.bema import fit_bema
from rmtlib._threads import torch_threads
from rmtlib.diagnostics import class_recall, lost_classes, output_activity
from rmtlib.papers.paper1 import recipe as paper1_recipe
from rmtlib.published import compare_curve, compare_value, comparison_table
from rmtlib.stats import (curve_tree, epoch_summary, final_rows, final_summary, format_mean_sd,
                          paired_differences, paired_verdict, record_tree, seed_record)
from rmtlib.studies import Recipe, load_checkpoints, run_seeds
from rmtlib.sweeps import saturation_k, truncation_curve, truncation_curves
from rmtlib.models import MLP
from rmtlib.prune import Factorized, PrunePolicy, count_parameters, truncate
from rmtlib.train import RMTPruning, evaluate, fit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _data(n=320, d=40, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


TRAIN, TEST = _data()
FIT = {"lr": 0.05, "batch_size": 32}


def _recipes():
    plain = Recipe("plain", lambda s: MLP([40, 60, 4], seed=s), tags={"arm": "unpruned"})
    policy = PrunePolicy(gof=None, keep_fraction=0.3)
    pruned = Recipe("pruned", lambda s: MLP([40, 60, 4], seed=s),
                    lambda: [RMTPruning(policy, when="before_epoch", start_epoch=2)],
                    tags={"arm": "pruned"})
    return [plain, pruned]


@pytest.fixture(scope="module")
def study():
    return run_seeds(_recipes(), [3, 7, 11], TRAIN, TEST, epochs=3, **FIT)


# ----------------------------------------------------------------------------- run_seeds


def test_study_frame_layout_and_pairing(study):
    f = study.frame
    assert list(f.columns[:3]) == ["recipe", "seed", "arm"]
    assert len(f) == 2 * 3 * 4  # recipes x seeds x epochs 0..3
    assert set(study.models) == {(r, s) for r in ("plain", "pruned") for s in (3, 7, 11)}
    # paired design: both arms of a seed start from the same network (identical epoch 0 and,
    # since pruning starts at epoch 2, identical epoch 1)
    for s in (3, 7, 11):
        a = f[(f.recipe == "plain") & (f.seed == s)].set_index("epoch")
        b = f[(f.recipe == "pruned") & (f.seed == s)].set_index("epoch")
        assert a.test_acc[0] == b.test_acc[0] and a.test_acc[1] == b.test_acc[1]
        assert a.train_loss[1] == b.train_loss[1]
    # the arms differ after the prune, and pruning shrank the pruned networks
    fin = final_rows(f).set_index(["recipe", "seed"])
    assert (fin.loc["pruned"].n_params < fin.loc["plain"].n_params).all()
    assert any(isinstance(m, Factorized) for m in study.models["pruned", 3].modules())


def test_study_equals_a_plain_fit_and_is_deterministic(study):
    model = MLP([40, 60, 4], seed=7)
    h = fit(model, TRAIN, TEST, epochs=3, seed=7, progress=False, **FIT)
    ours = study.frame[(study.frame.recipe == "plain") & (study.frame.seed == 7)]
    assert np.array_equal(ours.test_acc.to_numpy(), h.frame.test_acc.to_numpy())
    for a, b in zip(model.parameters(), study.models["plain", 7].parameters()):
        assert torch.equal(a, b)
    again = run_seeds(_recipes()[:1], [7], TRAIN, TEST, epochs=3, **FIT)
    pd.testing.assert_series_equal(again.frame.test_acc.reset_index(drop=True),
                                   ours.test_acc.reset_index(drop=True))


def test_fewer_epochs_give_the_first_rows_of_a_longer_run(study):
    # what lets the pruning notebook reuse the spectra run's longer histories
    short = run_seeds(_recipes()[:1], [3], TRAIN, TEST, epochs=2, **FIT).frame
    long = study.frame[(study.frame.recipe == "plain") & (study.frame.seed == 3)]
    cols = ["epoch", "train_loss", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(short[cols].reset_index(drop=True),
                                  long[long.epoch <= 2][cols].reset_index(drop=True))


def test_events_and_analyze(study):
    ev = study.events()
    assert set(ev.recipe) == {"pruned"} and set(ev.seed) == {3, 7, 11}
    assert (ev.epoch >= 2).all()
    an = study.analyze(layers=["layers.1"])
    assert len(an) == 6 and set(an.columns[:2]) == {"recipe", "seed"}
    assert (an.name == "layers.1").all()


def test_threads_are_restored_and_validated():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            with torch_threads(bad):
                pass


@pytest.mark.parametrize("seeds, match", [([], "non-empty"), ([1, 1], "distinct"),
                                          ([-1], "non-negative"), ([1.0], "integers"),
                                          (5, "sequence")])
def test_run_seeds_rejects_bad_seeds(seeds, match):
    with pytest.raises(ValueError, match=match):
        run_seeds(_recipes(), seeds, TRAIN, TEST, epochs=1, **FIT)


def test_recipe_validation():
    build = lambda s: MLP([4, 3], seed=s)
    with pytest.raises(ValueError, match="distinct"):
        run_seeds([Recipe("a", build), Recipe("a", build)], [0], TRAIN, TEST, epochs=1, **FIT)
    with pytest.raises(ValueError, match="non-empty"):
        run_seeds([], [0], TRAIN, TEST, epochs=1)
    with pytest.raises(ValueError, match="non-empty name"):
        Recipe("", build)
    with pytest.raises(ValueError, match="tags may not"):
        Recipe("a", build, tags={"pruned": True})  # a history column
    with pytest.raises(ValueError, match="fit_options"):
        Recipe("a", build, fit_options={"epochs": 3})
    with pytest.raises(ValueError, match="nn.Module"):
        run_seeds([Recipe("a", lambda s: "not a model")], [0], TRAIN, TEST, epochs=1, **FIT)


# ------------------------------------------------------------------------ reductions


def _toy_frame():
    rows = []
    for recipe, base in (("a", 50.0), ("b", 60.0)):
        for seed, shift in ((1, 0.0), (2, 2.0), (3, 7.0)):
            for epoch in range(3):
                rows.append({"recipe": recipe, "seed": seed, "epoch": epoch,
                             "test_acc": base + shift + 10 * epoch,
                             "n_params": 100 if recipe == "a" else 80})
    return pd.DataFrame(rows)


def test_epoch_summary_matches_numpy():
    f = _toy_frame()
    s = epoch_summary(f, "test_acc")
    row = s[(s.recipe == "b") & (s.epoch == 2)].iloc[0]
    vals = np.array([80.0, 82.0, 87.0])
    assert row["mean"] == pytest.approx(vals.mean()) and row["sd"] == pytest.approx(vals.std(ddof=1))
    assert (row["min"], row["max"], row["n"]) == (80.0, 87.0, 3)
    with pytest.raises(ValueError, match="lacks the column"):
        epoch_summary(f, "nope")


def test_final_rows_summary_and_pairs():
    f = _toy_frame()
    fin = final_rows(f)
    assert len(fin) == 6 and (fin.epoch == 2).all()
    assert len(final_rows(f, epoch=1)) == 6
    with pytest.raises(ValueError, match="missing"):
        final_rows(f[~((f.recipe == "a") & (f.seed == 1) & (f.epoch == 1))], epoch=1)
    s = final_summary(f)
    assert s.loc["a", "test_acc_mean"] == pytest.approx(np.mean([70, 72, 77]))
    assert s.loc["a", "n_params_sd"] == 0 and s.loc["b", "n"] == 3
    d = paired_differences(f, "a", "b")
    assert list(d.columns) == ["seed", "a", "b", "difference"]
    assert np.allclose(d.difference, 10.0)
    with pytest.raises(ValueError, match="no recipe"):
        paired_differences(f, "a", "c")
    with pytest.raises(ValueError, match="both"):
        paired_differences(f[~((f.recipe == "b") & f.seed.isin([1, 2, 3]))].assign(
            recipe=lambda x: x.recipe.where(x.seed != 1, "b")), "a", "b")


def test_seed_record_and_trees():
    rec = seed_record({3: 1.0, 5: 3.0})
    assert rec == {"per_seed": {"3": 1.0, "5": 3.0}, "mean": 2.0, "sd": pytest.approx(math.sqrt(2)),
                   "min": 1.0, "max": 3.0, "n": 2}
    assert math.isnan(seed_record({1: 4.0})["sd"])
    with pytest.raises(ValueError):
        seed_record({})
    f = _toy_frame()
    tree = record_tree(final_rows(f), "test_acc", ["recipe"])
    assert tree["a"]["per_seed"] == {"1": 70.0, "2": 72.0, "3": 77.0}
    curves = curve_tree(f, "test_acc", ["recipe"])
    assert curves["b"]["2"] == [62.0, 72.0, 82.0]
    pairs = curve_tree(f, "test_acc", ["recipe"], pairs=True)
    assert pairs["b"]["2"][1] == [1, 72.0]


def test_paired_verdict_wording():
    assert paired_verdict([1.0, 2.0, 0.5]).startswith("holds for all 3 seeds")
    assert paired_verdict({1: -1.0, 2: 2.0}).startswith("holds for 1 of 2 seeds only")
    assert paired_verdict([-1.0, 0.0]).startswith("does not hold for any of the 2 seeds")
    assert "from -1.00 to +2.00" in paired_verdict([-1.0, 2.0])
    with pytest.raises(ValueError):
        paired_verdict([])


# ------------------------------------------------------------------------ rank sweeps


def test_truncation_curve_matches_prune_truncate_and_keeps_the_model():
    model = MLP([40, 30, 4], seed=2)
    fit(model, TRAIN, TEST, epochs=2, seed=2, progress=False, **FIT)
    before = [p.detach().clone() for p in model.parameters()]
    curve = truncation_curve(model, "layers.0", [0, 1, 5, 30], TEST)
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)
    for k in (1, 5):
        m = copy.deepcopy(model)
        truncate(m, "layers.0", k)
        loss, acc = evaluate(m, TEST)
        row = curve[curve.k == k].iloc[0]
        assert row.test_acc == pytest.approx(acc) and row.test_loss == pytest.approx(loss, rel=1e-5)
    zero = copy.deepcopy(model)
    with torch.no_grad():
        zero.layers[0].weight.zero_()
    assert curve[curve.k == 0].test_acc.iloc[0] == pytest.approx(evaluate(zero, TEST)[1])
    assert curve[curve.k == 30].test_acc.iloc[0] == pytest.approx(evaluate(model, TEST)[1])
    assert list(curve.k) == [0, 1, 5, 30]
    with pytest.raises(ValueError, match=r"\[0, 30\]"):
        truncation_curve(model, "layers.0", [31], TEST)
    with pytest.raises(ValueError, match="unknown layer"):
        truncation_curve(model, "nope", [1], TEST)


def test_truncation_curves_per_model_ranks_and_saturation(study):
    models = {k: v for k, v in study.models.items() if k[0] == "plain"}
    c = truncation_curves(models, "layers.0", [0, 2, 40], TEST)
    assert list(c.columns) == ["recipe", "seed", "k", "test_loss", "test_acc"] and len(c) == 9
    own = truncation_curves(models, "layers.0", {key: [key[1]] for key in models}, TEST)
    assert sorted(own.k) == [3, 7, 11]
    with pytest.raises(ValueError, match="no ranks"):
        truncation_curves(models, "layers.0", {("plain", 3): [1]}, TEST)
    sat = saturation_k(pd.DataFrame({"recipe": "r", "seed": 1, "k": [0, 5, 10, 784],
                                     "test_acc": [10.0, 90.0, 97.8, 98.0]}), 784, 0.5)
    assert sat.k_saturation.iloc[0] == 10 and sat.full_acc.iloc[0] == 98.0
    never = saturation_k(pd.DataFrame({"recipe": "r", "seed": 1, "k": [0, 784],
                                       "test_acc": [10.0, 98.0]}), 784)
    assert math.isnan(never.k_saturation.iloc[0])
    with pytest.raises(ValueError, match="no point at k"):
        saturation_k(c, 784)


def test_checkpoints_round_trip(study, tmp_path):
    index = study.save_checkpoints(tmp_path)
    assert len(index) == 6 and all((tmp_path / f).is_file() for f in index.file)
    loaded = load_checkpoints(index, tmp_path, _recipes())
    for key, model in study.models.items():
        assert count_parameters(loaded[key]) == count_parameters(model)
        for a, b in zip(model.state_dict().values(), loaded[key].state_dict().values()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not among"):
        load_checkpoints(index, tmp_path, _recipes()[:1])
    swapped = index.assign(file=index.file[::-1].to_numpy())
    with pytest.raises(ValueError, match="not what the index says"):
        load_checkpoints(swapped, tmp_path, _recipes())


def test_output_activity_class_recall_and_lost_classes():
    model = MLP([4, 5, 3], relu_on_logits=True, seed=0)
    with torch.no_grad():
        model.layers[1].bias.copy_(torch.tensor([50.0, -1e6, 50.0]))  # unit 1 dead
        model.layers[1].weight[2].zero_()
        model.layers[1].bias[2] = 60.0  # unit 2 always wins: class 2 always predicted
    x = torch.rand(50, 4)
    act = output_activity(model, x)
    assert act[1] == 0.0 and act[0] == 1.0 and act[2] == 1.0
    assert model.relu_on_logits and model.training  # state restored
    y = torch.tensor([0, 1, 2, 2, 2] * 10)
    recall = class_recall(model, (x, y))
    assert np.allclose(recall, [0.0, 0.0, 100.0])
    assert model.training
    lost = lost_classes({("m", 1): model}, (x, y))
    assert lost.lost.iloc[0] == [0, 1] and lost.n_lost.iloc[0] == 2
    assert lost.activity_of_lost.iloc[0] == [1.0, 0.0]
    # a class absent from the labels has no recall (NaN), and is not counted as lost
    assert np.isnan(class_recall(model, (x, torch.zeros(50, dtype=torch.long)))[1])
    with pytest.raises(ValueError, match="MLP"):
        output_activity(torch.nn.Linear(4, 3), x)
    with pytest.raises(ValueError, match="labels"):
        class_recall(model, (x, y.float()))


# ---------------------------------------------------------------- published numbers


def test_compare_value_and_table():
    row = compare_value("acc", 98.0, [97.0, 98.0, 99.5], same_seed=97.5, unit="%")
    vals = np.array([97.0, 98.0, 99.5])
    assert row["ours_mean"] == pytest.approx(vals.mean())
    assert row["difference"] == pytest.approx(vals.mean() - 98.0)
    assert row["z"] == pytest.approx(row["difference"] / vals.std(ddof=1))
    assert row["ours"] == format_mean_sd(vals.mean(), vals.std(ddof=1)) and row["ours_same_seed"] == 97.5
    one = compare_value("rank", 56, 53)
    assert one["n"] == 1 and math.isnan(one["ours_sd"]) and one["ours"] == "53.00"
    empty = compare_value("later", 1.0, [])
    assert empty["ours"] == "not run" and empty["n"] == 0 and math.isnan(empty["difference"])
    with pytest.raises(ValueError, match="authors"):
        compare_value("x", float("nan"), [1.0])
    with pytest.raises(ValueError, match="finite"):
        compare_value("x", 1.0, [np.inf])
    t = comparison_table([row, one])
    assert list(t.index) == ["acc", "rank"]
    with pytest.raises(ValueError, match="duplicate"):
        comparison_table([row, row])


def test_compare_curve_aligns_positions_and_pairs():
    per_seed = {"1": [7.0, 90.0, 95.0], "2": [8.0, 92.0]}  # seed 2 ran one epoch less
    rows = compare_curve("epoch {x}", [7.5, 91.0, 96.0], per_seed, same_seed="1")
    assert [r["quantity"] for r in rows] == ["epoch 0", "epoch 1", "epoch 2"]
    assert rows[1]["ours_mean"] == 91.0 and rows[1]["ours_same_seed"] == 90.0
    assert rows[2]["n"] == 1 and rows[2]["ours_mean"] == 95.0
    pairs = {"1": [[0, 9.0], [5, 50.0]], "2": [[0, 11.0], [5, 60.0]]}
    rows = compare_curve("k = {x}", [8.9, 54.6, 75.0], pairs, x=[0, 5, 10])
    assert rows[0]["ours_mean"] == 10.0 and rows[1]["ours_mean"] == 55.0
    assert rows[2]["ours"] == "not run"
    with pytest.raises(ValueError, match="x has"):
        compare_curve("k", [1.0, 2.0], pairs, x=[0])


def test_format_mean_sd():
    assert format_mean_sd(97.314, 0.1234) == "97.31 ± 0.12"
    assert format_mean_sd(56.0, float("nan"), 1) == "56.0"
    assert format_mean_sd(float("nan")) == "n/a"


# ------------------------------------------------------------------------ paper 1


def test_paper1_recipes_follow_the_authors_and_the_corrections():
    exact, corrected = paper1_recipe("paper_exact", prune=True), paper1_recipe("corrected", prune=True)
    m1, m2 = exact.build(44345434), corrected.build(44345434)
    assert m1.relu_on_logits and not m2.relu_on_logits
    assert count_parameters(m1) == 795010 and m1.widths == [784, 1000, 10]
    for a, b in zip(m1.parameters(), m2.parameters()):  # same initialisation
        assert torch.equal(a, b)
    (cb1,), (cb2,) = exact.callbacks(), corrected.callbacks()
    assert (cb1.when, cb1.start_epoch, cb1.optimizer) == ("before_epoch", 1, "rebuild")
    assert (cb2.when, cb2.start_epoch, cb2.optimizer) == ("after_epoch", 1, "keep")
    assert (cb1.policy.split_view, cb2.policy.split_view) == ("factors", "product")
    for cb, exact_flag in ((cb1, True), (cb2, False)):
        pol = cb.policy
        assert pol.paper_exact is exact_flag and pol.keep_fraction == 0.45 and pol.gof == 0.1
        assert pol.action == "factorize" and (pol.alpha, pol.beta) == (0.2, 0.1)
    assert exact.callbacks()[0] is not cb1  # fresh callbacks per run
    plain = paper1_recipe("corrected")
    assert plain.callbacks() == () and plain.tags == {"variant": "corrected", "arm": "unpruned"}
    assert exact.name == "paper-exact, pruned"
    with pytest.raises(ValueError, match="variant"):
        paper1_recipe("exact")


def test_paper1_first_prune_reproduces_the_authors_width():
    # the authors' notebook: the first prune (on the random initialisation, seed 44345434)
    # turns [784, 1000, 10] into [784, 353, 1000, 10]
    model = paper1_recipe("paper_exact", prune=True).build(44345434)
    (cb,) = paper1_recipe("paper_exact", prune=True).callbacks()
    from rmtlib.prune import prune_model

    report = prune_model(model, cb.policy, epoch=1)
    assert model.widths == [784, 353, 1000, 10]
    assert report.layers.set_index("name").loc["layers.1", "action"] == "skipped"


def test_reference_values_file_is_complete():
    ref = yaml.safe_load((REPO / "notebooks" / "paper1" / "reference_values.yml").read_text())
    fig = ref["figures_4_5"]
    assert len(fig["test_acc_by_epoch"]) == fig["epochs"] + 1
    assert len(fig["acc_vs_k"]["k"]) == len(fig["acc_vs_k"]["test_acc"]) == 20
    assert fig["acc_vs_k"]["k"] == list(range(0, 100, 5))
    pr = ref["pruning_during_training"]
    for arm in ("unpruned", "pruned"):
        assert len(pr["test_acc_by_epoch"][arm] + pr["test_acc_by_epoch_7_to_9"][arm]) == pr["epochs"] + 1
    assert pr["test_acc_by_epoch"]["unpruned"][0] == pr["test_acc_by_epoch"]["pruned"][0]
    assert ref["settings"]["n_params"] == count_parameters(MLP(ref["settings"]["dims"]))
    for block in ("settings", "figures_4_5", "pruning_during_training", "synthetic"):
        assert ref[block]["source"] in ("reference", "notebook")


# ------------------------------------------------------------------------ plotting


def test_seed_curves_draws_each_seed_mean_band_and_reference():
    f = _toy_frame()
    ax = plotting.seed_curves(f, "test_acc", reference={"authors": ([0, 1, 2], [1, 2, 3])},
                              hlines={"full": 90.0}, vlines={"rank": 1.0})
    lines = ax.get_lines()
    # 3 seeds x 2 recipes thin lines + 2 means + reference + 2 reference lines
    assert len(lines) == 6 + 2 + 1 + 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a (mean of 3 seeds)" in labels and "authors" in labels
    mean_a = [ln for ln in lines if ln.get_label() == "a (mean of 3 seeds)"][0]
    assert np.allclose(mean_a.get_ydata(), [53.0, 63.0, 73.0])
    assert len(ax.collections) == 2  # one sd band per recipe
    assert ax.get_xlabel() == plotting.LABELS["epoch"]
    with pytest.raises(ValueError, match="columns"):
        plotting.seed_curves(f, "nope")
    with pytest.raises(ValueError, match="band"):
        plotting.seed_curves(f, band="sem")


def test_paired_comparison_colours_and_means():
    pairs = pd.DataFrame({"seed": [1, 2, 3], "base": [80.0, 90.0, 85.0], "new": [85.0, 89.0, 95.0]})
    ax = plotting.paired_comparison(pairs, "base", "new")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "new higher (2 seeds)" and labels[1] == "new not higher (1 seeds)"
    annotations = sorted(t.get_text() for t in ax.texts)
    assert annotations == ["1", "2", "3"]
    with pytest.raises(ValueError, match="columns"):
        plotting.paired_comparison(pairs, "base", "other")


def test_esd_grid_rows_and_missing_bulk():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((200, 300))
    fits = {"noise": fit_bema(W)}
    fig = plotting.esd_grid(fits, {"noise": "a title"})
    (left, right), = np.asarray(fig.axes).reshape(1, 2)
    assert left.get_title().startswith("a title") and right.get_title().startswith("a title")
    assert left.get_yscale() == "log"
    with pytest.raises(ValueError, match="non-empty"):
        plotting.esd_grid({})
