"""Paper 2, fully connected experiments: schedule, recipes, pairing, table builders."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.papers import paper2 as p2
from rmtlib.prune import count_parameters
from rmtlib.studies import run_seeds
from rmtlib.validation import ArgumentTypeError

SMALL = dict(dims=(784, 64, 32, 10), epochs=4, every=1, horizon=4, lr=0.05)


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    centers = torch.randn(10, 784, generator=g)
    x = centers[y] + 6.0 * torch.randn(n, 784, generator=g)
    return x, y


def test_bulk_schedule_is_max_zero_one_minus_e_over_t():
    f = p2.BulkSchedule(200)
    assert [f(e) for e in (0, 4, 100, 200, 300)] == [1.0, 0.98, 0.5, 0.0, 0.0]
    assert f(10) == pytest.approx(1 - 10 / 200, rel=1e-15, abs=0)
    with pytest.raises(ValueError, match="horizon"):
        p2.BulkSchedule(0)


def test_prune_epochs_leave_the_last_epoch_for_training():
    assert p2.prune_epochs(10, 2) == [2, 4, 6, 8]
    assert p2.prune_epochs(100, 4) == list(range(4, 97, 4))
    assert p2.prune_epochs(10, 2, stop=10) == [2, 4, 6, 8, 10]
    assert p2.prune_epochs(1, 1) == []
    with pytest.raises(ValueError, match="every"):
        p2.prune_epochs(10, 0)


def test_lr_decays_by_096_at_each_prune_only():
    lr = p2.PruneDecay(0.01, epochs=10, every=2)
    # prunes after epochs 2, 4, 6, 8: epochs 1-2 at lr, 3-4 at 0.96 lr, ..., 9-10 at 0.96^4 lr
    expected = [0.01 * 0.96 ** k for k in (0, 0, 1, 1, 2, 2, 3, 3, 4, 4)]
    assert [lr(e) for e in range(1, 11)] == pytest.approx(expected, rel=1e-14, abs=0)


def test_planned_ranks_compound_the_fractions_once_split():
    f = p2.BulkSchedule(10)
    fr = [f(e) for e in p2.prune_epochs(10, 2)]  # 0.8, 0.6, 0.4, 0.2
    # 500 x 500 splits only below rank 250: 400 and 300 are truncations (p stays 500)
    exact = p2.planned_ranks((500, 500), 5, fr)
    assert exact == [5 + int(0.8 * 495), 5 + int(0.6 * 495), 5 + int(0.4 * 495),
                     5 + int(0.2 * (203 - 5))] == [401, 302, 203, 44]
    corrected = p2.planned_ranks((500, 500), 5, fr, compound=False)
    # f of the whole bulk: 5 + int(f * 495), f(8) = 1 - 8/10 = 0.1999... in floating point
    assert corrected == [401, 302, 203, 103]
    # a tall layer that splits at once compounds from the first prune
    assert p2.planned_ranks((10, 1000), 0, [0.5, 0.5]) == [5, 2]
    assert p2.planned_ranks((10, 10), 0, [0.0]) == [1]  # at least min_rank


def test_recipes_share_schedule_and_differ_in_pruning():
    pruned = p2.recipe("corrected", True, **SMALL, l1=1e-6, l2=2e-6)
    plain = p2.recipe("corrected", False, **SMALL, l1=1e-6, l2=2e-6)
    assert pruned.fit_options["lr_schedule"] == plain.fit_options["lr_schedule"]
    assert plain.callbacks() == () and len(pruned.callbacks()) == 1
    cb = pruned.callbacks()[0]
    assert [e for e in range(1, 5) if cb.due(e)] == [1, 2, 3]
    assert cb.optimizer == "keep" and cb.policy.head == "auto" and not cb.policy.paper_exact
    exact = p2.recipe("paper_exact", True, **SMALL).callbacks()[0]
    pol = exact.policy
    assert (pol.alpha, pol.beta, pol.gof, pol.head, pol.paper_exact) == (0.25, 0.9, 1.0, None, True)
    assert exact.optimizer == "rebuild"
    assert pol.fraction(2) == 0.5
    assert pruned.tags == {"variant": "corrected", "arm": "pruned"}
    assert plain.name == "unpruned" and pruned.name == "corrected, pruned"


def test_table_arms_set_the_penalties():
    kw = dict(SMALL, l1=1e-6, l2=3e-6)
    got = {a: p2.table_arm(a, **kw) for a in p2.TABLE_ARMS}
    pen = {a: (r.fit_options["l1"], r.fit_options["l2"], len(r.callbacks())) for a, r in got.items()}
    assert pen == {"none": (0, 0, 0), "mp": (0, 0, 1), "l1l2": (1e-6, 3e-6, 0),
                   "mp_l1l2": (1e-6, 3e-6, 1), "mp_l2": (0, 3e-6, 1)}
    assert got["mp_l2"].name == p2.ARM_LABELS["mp_l2"] and got["mp_l2"].tags["row"] == "mp_l2"
    with pytest.raises(ValueError, match="arm"):
        p2.table_arm("l2", **kw)


def test_arms_of_a_seed_start_from_identical_weights():
    a = p2.recipe("corrected", True, **SMALL).build(7)
    b = p2.recipe("paper_exact", False, **SMALL).build(7)
    c = p2.recipe("corrected", True, **SMALL).build(8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    w = next(a.parameters()).detach()  # the authors' init N(0, 1/fan_in), zero biases
    assert float(w.std()) == pytest.approx(1 / math.sqrt(784), rel=0.05)
    assert float(a.layers[0].bias.detach().abs().max()) == 0.0


def test_tiny_end_to_end_training_prunes_and_records():
    x, y = _data(400)
    train, test = (x[:300], y[:300]), (x[300:], y[300:])
    recipes = [p2.recipe("corrected", False, **SMALL), p2.recipe("corrected", True, **SMALL),
               p2.recipe("paper_exact", True, **SMALL)]
    study = run_seeds(recipes, [0, 1], train, test, epochs=SMALL["epochs"], batch_size=50)
    fin = p2.final_frame(study, train)
    assert len(fin) == 6 and fin.train_acc.between(0, 100).all()
    plain = fin[fin.recipe == "unpruned"].n_params
    assert (plain == count_parameters(recipes[0].build(0))).all()
    assert (fin[fin.recipe != "unpruned"].n_params.to_numpy() < plain.max()).all()
    # both arms of a seed saw the same first epoch until the first prune: identical epoch-1 loss
    e1 = study.frame[study.frame.epoch == 1].set_index(["recipe", "seed"]).train_loss
    assert e1["unpruned", 0] == e1["corrected, pruned", 0]
    # paper-exact cuts the 10-class head below rank 10; corrected keeps it
    widths = {r: study.models[r, 0].widths for r in ("corrected, pruned", "paper-exact, pruned")}
    assert widths["corrected, pruned"][-2] >= 10 and widths["paper-exact, pruned"][-2] < 10
    # learning rate: same schedule in both arms
    lr = study.frame.pivot_table(index=["seed", "epoch"], columns="recipe", values="lr")
    assert np.allclose(lr["unpruned"], lr["corrected, pruned"], equal_nan=True)
    rec = p2.arm_records(fin)
    assert set(rec) == {"final_test_acc", "final_train_acc", "n_params"}
    assert rec["final_test_acc"]["unpruned"]["n"] == 2
    cmp = p2.compare_arms(fin, "unpruned", "corrected, pruned")
    d = fin.pivot(index="seed", columns="recipe", values="test_acc")
    diff = d["corrected, pruned"] - d["unpruned"]
    assert cmp.difference["mean"] == pytest.approx(diff.mean(), rel=1e-12, abs=1e-12)
    assert "no variance test" in cmp.spread_text()  # two seeds: no test, said so


def _records(values):
    return {k: {arm: {"per_seed": {str(i): v for i, v in enumerate(vs)}, "mean": float(np.mean(vs)),
                      "sd": float(np.std(vs, ddof=1)) if len(vs) > 1 else math.nan, "n": len(vs)}
                for arm, vs in values.items()} for k in ("final_train_acc", "final_test_acc")}


def test_table_frame_on_synthetic_records():
    ref = {a: {"train": 90.0, "test": 80.0} for a in p2.TABLE_ARMS}
    recs = _records({"none": [79.0, 81.0, 80.5], "mp": [70.0, 71.0, 70.5], "mp_l2": [80.0]})
    t = p2.table_frame(recs, ref)
    assert list(t.index) == [p2.ARM_LABELS[a] for a in p2.TABLE_ARMS]
    assert t.loc[p2.ARM_LABELS["none"], "authors' test within 2 sd"] == "yes"
    assert t.loc[p2.ARM_LABELS["mp"], "authors' test within 2 sd"] == "no"
    assert t.loc[p2.ARM_LABELS["mp_l2"], "authors' test within 2 sd"] == "n/a"
    assert t.loc[p2.ARM_LABELS["l1l2"], "ours test (%)"] == "not run"
    assert t.loc[p2.ARM_LABELS["none"], "ours test (%)"] == "80.17 ± 1.04"
    assert t.loc[p2.ARM_LABELS["none"], "seeds"] == 3
    with pytest.raises(ValueError, match="reference"):
        p2.table_frame(recs, {"none": {"train": 1, "test": 1}})


def test_comparison_rows_read_records_and_mark_missing_runs():
    metrics = {"paper2_table": _records({"mp_l1l2": [90.0, 91.0, 89.0]})}
    ref = {"table": {"mp_l1l2": {"test": 90.53}}}
    entries = [{"quantity": "MP + L1 + L2, test", "run": "paper2_table",
                "metric": "final_test_acc/mp_l1l2", "reference": "table/mp_l1l2/test"},
               {"quantity": "CNN", "run": "paper2_cnn", "metric": "final_test_acc/pruned",
                "reference": "table/mp_l1l2/test"}]
    rows = p2.comparison_rows(entries, metrics, ref)
    assert rows[0]["ours_mean"] == pytest.approx(90.0, rel=1e-12, abs=0)
    assert rows[0]["z"] == pytest.approx((90.0 - 90.53) / 1.0, rel=1e-12, abs=0)
    assert rows[1]["n"] == 0 and "not available" in rows[1]["note"]
    with pytest.raises(ValueError, match="no reference value"):
        p2.comparison_rows([dict(entries[0], reference="table/x")], metrics, ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        p2.recipe("exact", **SMALL)
    with pytest.raises(ValueError, match="l1"):
        p2.recipe(l1=-1.0, **SMALL)
    with pytest.raises(ArgumentTypeError, match="fractions"):
        p2.planned_ranks((10, 10), 1, "0.5")
    with pytest.raises(ArgumentTypeError, match="shape"):
        p2.planned_ranks(10, 1, [0.5])
    with pytest.raises(ValueError, match="lr"):
        p2.PruneDecay(0.0, epochs=3, every=1)


def test_fc_arms_and_reproduction_entries():
    arms = p2.fc_arms(**SMALL, l1=1e-6, l2=1e-6)
    assert [r.name for r in arms] == list(p2.FC_ARMS)
    assert [r.tags["variant"] for r in arms] == ["none", "corrected", "paper_exact"]
    assert [r.name for r in p2.fc_arms(exact=False, **SMALL)] == ["unpruned", "pruned (corrected)"]
    import yaml
    from pathlib import Path
    ref = yaml.safe_load((Path(__file__).parents[1] / "notebooks/paper2/reference_values.yml")
                         .read_text())
    rows = p2.comparison_rows(p2.REPRODUCTION, {}, ref)  # every reference path exists
    assert len(rows) == len(p2.REPRODUCTION) and all(r["n"] == 0 for r in rows)
    assert rows[7]["authors"] == 90.53  # MP + L1 + L2, test


def test_repeated_arms_compare_only_runs_with_the_same_settings():
    params = {k: 1 for k in p2.SHARED_SETTINGS}
    fc = {"final_test_acc": {"fashion_mnist": {
        "unpruned": {"per_seed": {"0": 80.0, "1": 81.0}},
        "pruned": {"per_seed": {"0": 82.0, "1": 83.0}}}}}
    tb = {"final_test_acc": {"l1l2": {"per_seed": {"0": 80.0, "1": 81.5}},
                             "mp_l1l2": {"per_seed": {"1": 83.0}}}}
    out = p2.repeated_arms(params, fc, {**params, "variant": "corrected"}, tb)
    assert list(out["largest |difference| (pp)"]) == [0.5, 0.0]
    assert list(out.seeds) == [2, 1] and set(out["settings that differ"]) == {"none"}
    out = p2.repeated_arms(params, fc, {**params, "epochs": 2, "variant": "paper_exact"}, tb)
    assert out["largest |difference| (pp)"].isna().all()
    assert out.loc[p2.ARM_LABELS["mp_l1l2"], "settings that differ"] == "epochs, variant"
