"""The "beyond" chapter's library (rmtlib.papers.beyond): selector shoot-out, sweep, Pareto
front, tail tracking, goodness-of-fit rules and the pooled paired effects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from rmtlib.baselines import count_nonzero_parameters
from rmtlib.layers import list_layers
from rmtlib.models import MLP
from rmtlib.papers import beyond as bx
from rmtlib.prune import count_parameters
from rmtlib.studies import Recipe, run_seeds
from rmtlib.train import evaluate


def _planted_mlp(seed=0, rank=3, dims=(60, 120, 4)):
    """An MLP whose first layer is rank ``rank`` (strong) plus small Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    m = MLP(list(dims), seed=seed)
    out_, in_ = m.layers[0].weight.shape
    U = torch.randn(out_, rank, generator=g)
    V = torch.randn(rank, in_, generator=g)
    with torch.no_grad():
        m.layers[0].weight.copy_(U @ V * 0.5 + 0.05 * torch.randn(out_, in_, generator=g))
    return m.eval()


def _data(n=300, d=60, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :classes] * torch.arange(1, classes + 1)).argmax(1)
    return x, y


def test_selector_shootout_keeps_the_planted_rank_and_matches_the_baselines_budget():
    model, data = _planted_mlp(), _data()
    specs = (bx.SelectorSpec("BEMA", "bema"), bx.SelectorSpec("GD", "gavish_donoho"))
    res, ranks = bx.selector_shootout({("toy", 0): model}, data, specs, names=("dataset", "seed"))
    first = ranks[ranks.layer == "layers.0"].set_index("method")["rank"]
    assert first["BEMA"] == 3 and first["GD"] == 3  # the planted rank
    assert set(ranks.layer) == {"layers.0", "layers.1"}
    head = ranks[ranks.layer == "layers.1"]
    assert (head["rank"] == head["p"]).all()  # the head keeps its output width (full rank)
    sel = res[res.method == "BEMA"].iloc[0]
    m, n = model.layers[0].weight.shape
    expected = count_parameters(model) - m * n + 3 * (m + n)  # factorized at rank 3
    assert sel.n_params == expected
    base = res[res.matched_to == "BEMA"].set_index("method")
    assert base.loc["magnitude", "n_params"] <= expected  # same number of nonzero weights
    assert base.loc["magnitude", "n_params"] >= expected - m  # (up to zero biases)
    assert base.loc["random rank", "n_params"] == expected
    unpruned = res[res.kind == "unpruned"].iloc[0]
    assert unpruned.test_acc == pytest.approx(evaluate(model, data)[1])
    assert unpruned.n_params == count_parameters(model)
    # the model itself is not modified
    assert torch.linalg.matrix_rank(model.layers[0].weight.detach()) > 3


def test_selector_shootout_validates_its_arguments():
    with pytest.raises(TypeError, match="SelectorSpec"):
        bx.selector_shootout({("a", 0): _planted_mlp()}, _data(), ["bema"])
    dup = (bx.SelectorSpec("x", "bema"), bx.SelectorSpec("x", "energy"))
    with pytest.raises(ValueError, match="distinct"):
        bx.selector_shootout({("a", 0): _planted_mlp()}, _data(), dup)
    with pytest.raises(ValueError, match="unknown selector"):
        bx.SelectorSpec("bad", "nope").policy()


def test_keep_fraction_sweep_truncates_to_ceil_fp_and_smallest_within_picks_the_cheapest():
    model, data = _planted_mlp(), _data()
    sweep = bx.keep_fraction_sweep({("toy", 0): model}, data, [0.01, 0.05, 0.5, 1.0],
                                   names=("dataset", "seed"))
    p = min(model.layers[0].weight.shape)
    assert [r["layers.0"] for r in sweep.ranks] == [max(1, math.ceil(f * p))
                                                   for f in (0.01, 0.05, 0.5, 1.0)]
    full = sweep[sweep.fraction == 1.0]
    assert full.n_params.iloc[0] == count_parameters(model)
    assert full.test_acc.iloc[0] == pytest.approx(evaluate(model, data)[1])
    fake = sweep.assign(test_acc=[50.0, 79.6, 80.0, 80.0])
    ref = pd.DataFrame({"dataset": ["toy"], "seed": [0], "test_acc": [80.0]})
    best = bx.smallest_within(fake, ref, 0.5, names=("dataset", "seed")).iloc[0]
    assert best.fraction == 0.05 and best.ranks == {"layers.0": 3}
    none = bx.smallest_within(fake.assign(test_acc=10.0), ref.assign(test_acc=99.0), 0.5,
                              names=("dataset", "seed")).iloc[0]
    assert math.isnan(none.fraction) and none.ranks is None
    with pytest.raises(ValueError, match="fractions"):
        bx.keep_fraction_sweep({("toy", 0): model}, data, [0.0], names=("dataset", "seed"))


def test_selector_distance_is_the_mean_relative_rank_gap():
    ranks = pd.DataFrame({"seed": [0, 0, 0, 0], "method": ["a", "a", "b", "b"],
                          "layer": ["l0", "l1", "l0", "l1"], "p": [100, 10, 100, 10],
                          "rank": [30, 10, 10, 10]})
    best = pd.DataFrame({"seed": [0], "ranks": [{"l0": 20}]})
    d = bx.selector_distance(ranks, best, names=("seed",)).set_index("method")
    assert d.loc["a", "distance"] == pytest.approx(0.1) and d.loc["a", "signed"] == pytest.approx(0.1)
    assert d.loc["b", "distance"] == pytest.approx(0.1) and d.loc["b", "signed"] == pytest.approx(-0.1)


def test_pareto_front_marks_exactly_the_non_dominated_points():
    f = pd.DataFrame({"n_params": [10, 20, 20, 30, 5, np.nan],
                      "test_acc": [90, 95, 94, 95, 80, 99]})
    assert bx.pareto_front(f).tolist() == [True, True, False, False, True, False]
    tie = pd.DataFrame({"n_params": [10, 10], "test_acc": [90, 90]})
    assert bx.pareto_front(tie).tolist() == [True, True]  # equal points do not dominate


def test_paired_interval_is_the_student_t_interval():
    d = [0.5, -0.2, 1.1, 0.3, 0.8]
    ci = bx.paired_interval(d, 0.95)
    half = scipy.stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert half == pytest.approx(2.7764451 * np.std(d, ddof=1) / math.sqrt(5), rel=1e-6, abs=0)
    assert ci["low"] == pytest.approx(np.mean(d) - half, rel=1e-12, abs=0)
    assert ci["high"] == pytest.approx(np.mean(d) + half, rel=1e-12, abs=0)
    assert ci["n"] == 5 and ci["n_positive"] == 4
    one = bx.paired_interval([1.0])
    assert one["mean"] == 1.0 and math.isnan(one["low"])
    with pytest.raises(ValueError, match="confidence"):
        bx.paired_interval(d, 1.5)
    with pytest.raises(ValueError, match="finite"):
        bx.paired_interval([1.0, math.nan])


def test_pooled_effects_pairs_seeds_present_in_both_arms_and_lists_missing_runs():
    rec = lambda **v: {"per_seed": {str(k): x for k, x in v.items()}}  # noqa: E731
    metrics = {"run_a": {"acc": {"pruned": rec(s1=91.0, s2=92.0, s3=90.0),
                                 "plain": rec(s1=90.0, s2=93.0)}}}
    exps = (bx.PooledExperiment("run_a", "A", "corrected", ("acc", "pruned"), ("acc", "plain")),
            bx.PooledExperiment("run_b", "B", "corrected", ("x",), ("y",)))
    out = bx.pooled_effects(metrics, exps)
    assert len(out) == 1 and out.attrs["missing"] == ["run_b"]
    row = out.iloc[0]
    assert row.seeds == ["s1", "s2"] and row.effect == pytest.approx(0.0)
    assert row.n == 2 and row.n_positive == 1 and row.pruned == pytest.approx(91.5)
    bad = (bx.PooledExperiment("run_a", "A", "corrected", ("acc", "nope"), ("acc", "plain")),)
    with pytest.raises(ValueError, match="no metric"):
        bx.pooled_effects(metrics, bad)
    assert {e.run for e in bx.POOLED_EXPERIMENTS} == {"paper1_pruning", "paper1_rank_sweep",
                                                      "paper2_fc", "paper2_cnn"}
    assert {e.version for e in bx.POOLED_EXPERIMENTS} == {"paper_exact", "corrected"}


def test_tail_tracker_records_every_layer_before_training_and_after_each_epoch():
    x, y = _data(200)
    r = bx.tracked(Recipe("plain", lambda s: MLP([60, 80, 4], seed=s)))
    study = run_seeds([r], [0, 1], (x, y), (x, y), epochs=2, lr=0.05)
    rows = bx.tail_rows(study)
    assert len(rows) == 2 * 3 * 2  # seeds x epochs 0..2 x layers
    assert set(rows.recipe) == {"plain"} and set(rows.epoch) == {0, 1, 2}
    assert set(rows.seed) == {0, 1}
    assert set(rows.layer) == {"layers.0", "layers.1"}
    ok = rows[rows.layer == "layers.0"]
    assert ok.alpha.gt(1).all() and ok.n_tail.ge(2).all() and ok.kurtosis_df.gt(4).all()
    assert len(study.frame) == 2 * 3
    with pytest.raises(TypeError, match="recipe"):
        bx.tracked("plain")
    with pytest.raises(TypeError, match="study"):
        bx.tail_rows(rows)
    plain = run_seeds([Recipe("plain", lambda s: MLP([60, 80, 4], seed=s))], [0], (x, y), (x, y),
                      epochs=1, lr=0.05)
    with pytest.raises(ValueError, match="tracked"):
        bx.tail_rows(plain)


def test_gof_rules_many_equals_gof_rules_model_by_model_and_checks_its_models():
    nets = {("a", 0): MLP([60, 50, 4], seed=0), ("b", 1): MLP([60, 40, 30, 4], seed=1)}
    tables = bx.gof_rules_many(nets, n_sim=20, random_state=3, threads=1)
    assert list(tables) == list(nets)
    for key, net in nets.items():
        pd.testing.assert_frame_equal(tables[key], bx.gof_rules(net, n_sim=20, random_state=3))
    assert list(tables["b", 1].layer) == [la.name for la in list_layers(nets["b", 1]) if la.ok]
    with pytest.raises(TypeError, match=r"models\['x'\] must be a torch.nn.Module, got"):
        bx.gof_rules_many({"x": 3})
    with pytest.raises(TypeError, match="models must be a non-empty mapping"):
        bx.gof_rules_many({})


def test_gof_rules_permutation_null_respects_heavy_tailed_entries():
    torch.manual_seed(0)
    m = MLP([300, 200, 4], seed=0)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        m.layers[0].weight.copy_(torch.as_tensor(rng.standard_t(3.0, (200, 300)) * 0.05))
    table = bx.gof_rules(m, n_sim=60).set_index("layer")
    row = table.loc["layers.0"]
    assert row.kurtosis_df > 4
    # the permutation null keeps the heavy-tailed entries: its cutoff is larger than the Gaussian one
    assert row["cutoff_permutation_null"] > row["cutoff_Gaussian_null"]
    assert bool(row["accept_permutation_null"])
    assert row["accept_fixed_0.1"] == (row.D < 0.1)
    for rule in ("Gaussian_null", "permutation_null", "Student_t_null"):
        assert row[f"accept_{rule}"] == (row.D <= row[f"cutoff_{rule}"])


def test_prune_accepted_prunes_only_the_named_layers():
    model, data = _planted_mlp(), _data()
    same = bx.prune_accepted(model, [], data)
    assert same["layers_pruned"] == [] and same["n_params"] == count_parameters(model)
    out = bx.prune_accepted(model, ["layers.0"], data, keep_fraction=0.0)
    assert out["layers_pruned"] == ["layers.0"] and out["n_params"] < count_parameters(model)
    assert count_nonzero_parameters(model) == count_parameters(model)  # original untouched
    with pytest.raises(TypeError, match="accepted"):
        bx.prune_accepted(model, "layers.0", data)


def test_pareto_points_average_over_seeds_and_mark_the_front_per_net():
    rows = []
    for seed, (a, b) in enumerate([(90.0, 80.0), (92.0, 82.0)]):
        rows += [{"net": "n", "seed": seed, "method": "unpruned", "kind": "unpruned",
                  "matched_to": None, "test_acc": 95.0, "n_params": 1000},
                 {"net": "n", "seed": seed, "method": "A", "kind": "selector",
                  "matched_to": None, "test_acc": a, "n_params": 100},
                 {"net": "n", "seed": seed, "method": "B", "kind": "selector",
                  "matched_to": None, "test_acc": b, "n_params": 200},
                 {"net": "n", "seed": seed, "method": "magnitude", "kind": "baseline",
                  "matched_to": "A", "test_acc": 99.0, "n_params": 10}]
    pts = bx.pareto_points(pd.DataFrame(rows)).set_index("method")
    assert pts.loc["A", "test_acc_mean"] == 91.0
    assert pts.loc["A", "test_acc_sd"] == pytest.approx(math.sqrt(2.0))
    assert pts.loc["A", "n"] == 2
    assert pts.loc["A", "pareto"] and pts.loc["unpruned", "pareto"]
    assert not pts.loc["B", "pareto"] and not pts.loc["magnitude", "pareto"]


def test_train_nets_trains_each_net_per_seed_and_saves_loadable_checkpoints(tmp_path):
    from rmtlib.data import load_dataset
    from rmtlib.studies import load_checkpoints

    try:
        load_dataset("mnist", download=False)
    except Exception as exc:  # noqa: BLE001 - the offline data are not on this machine
        pytest.skip(f"MNIST not available offline: {exc}")
    models, tests, history, index = bx.train_nets(
        ["mnist/mlp"], [0, 1], dims=(784, 20, 10), epochs=1, n_train=300, n_test=100,
        checkpoints=tmp_path, lr=0.05)
    assert set(models) == {("mnist/mlp", 0), ("mnist/mlp", 1)}
    assert len(tests["mnist/mlp"][1]) == 100 and set(history.recipe) == {"mnist/mlp"}
    back = load_checkpoints(index, tmp_path, [bx.net_recipe("mnist/mlp", (784, 20, 10))])
    x, y = tests["mnist/mlp"]
    for key, m in models.items():
        assert torch.equal(back[key](x[:5]), m.eval()(x[:5]))
    res, _ = bx.selector_shootout(models, tests, (bx.SelectorSpec("E", "energy"),),
                                  names=("net", "seed"), baselines=False)
    assert len(res) == 4
    with pytest.raises(ValueError, match="arch"):
        bx.parse_net("mnist/resnet")


def test_screenot_bound_is_capped_per_layer_so_small_layers_are_pruned_too():
    model, data = _planted_mlp(dims=(60, 30, 4)), _data()  # p = 30 < 2 * 100 + 2
    spec = (bx.SelectorSpec("S", "screenot", {"k": 100}),)
    res, ranks = bx.selector_shootout({("toy", 0): model}, data, spec, names=("net", "seed"),
                                      baselines=False)
    first = ranks[ranks.layer == "layers.0"]["rank"].iloc[0]
    assert 1 <= first < 30  # pruned with k = (30 - 2) // 2 = 14
    assert res[res.method == "S"].n_params.iloc[0] < count_parameters(model)


def test_pareto_plot_and_agreement_scatter_draw_labelled_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmtlib import plotting

    pts = pd.DataFrame({"method": ["unpruned", "A", "B", "magnitude"],
                        "kind": ["unpruned", "selector", "selector", "baseline"],
                        "n_params_mean": [1000, 100, 200, 100], "n_params_sd": [0, 5, 5, 5],
                        "test_acc_mean": [95, 90, 93, 80], "test_acc_sd": [1, 1, 1, 1],
                        "pareto": [True, True, True, False]})
    curve = pd.DataFrame({"n_params_mean": [50, 500], "test_acc_mean": [70, 94],
                          "test_acc_sd": [1, 1]})
    ax = plotting.pareto_plot(pts, sweep=curve, title="t")
    labels = ax.get_legend_handles_labels()[1]
    assert {"A", "B", "unpruned", "magnitude (same budget)", "Pareto front of the selectors",
            "uniform keep fraction (sweep)"} <= set(labels)
    assert ax.get_xscale() == "log" and ax.get_ylabel() == plotting.LABELS["test_acc"]
    with pytest.raises(ValueError, match="pareto"):
        plotting.pareto_plot(pts.drop(columns="pareto"))
    f = pd.DataFrame({"a": [1.0, 2.0, 0.0], "b": [1.5, 2.0, 3.0], "h": ["x", "y", "x"]})
    ax = plotting.agreement_scatter(f, "a", "b", hue="h", log=True, xlabel="A (s)", ylabel="B (s)")
    assert ax.get_xlabel() == "A (s)" and "y = x" in ax.get_legend_handles_labels()[1]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 2  # the zero is left out
    plt.close("all")
