"""Tests of rmtlib.papers.paper2_cnn: the schedule, the paper-exact CNN defects, a tiny CNN
end to end, the pruning sweep at matched parameter counts, the landscape measures."""

import pytest
import torch
from torch import nn

from rmtlib.models import MLP, PaperCNN
from rmtlib.papers.paper2_cnn import (
    LinearDecay,
    PaperExactCNN,
    cnn_builder,
    gradual_recipe,
    landscape_measures,
    lr_schedule,
    prune_sweep,
    rank_table,
    sweep_records,
    sweep_summary,
    train_accuracy,
)
from rmtlib.studies import Recipe, run_seeds

ARCH = {"channels": [1, 4, 8], "fc": [16, 10], "pool_after": [0, 1], "input_size": (12, 12)}


def _images(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 12, generator=g)
    y = (x[:, 0, :6].mean(dim=(1, 2)) > 0).long() + 2 * (x[:, 0, :, :6].mean(dim=(1, 2)) > 0).long()
    return x, y


def test_linear_decay_and_lr_schedule():
    f = LinearDecay(8)
    assert [f(e) for e in (0, 2, 8, 12)] == [1.0, 0.75, 0.0, 0.0]
    with pytest.raises(ValueError, match="horizon"):
        LinearDecay(0)
    assert lr_schedule(3) == {"every": 3, "factor": 0.96}
    with pytest.raises(ValueError, match="every"):
        lr_schedule(0)


def test_paper_exact_cnn_defects():
    torch.manual_seed(0)
    exact = PaperExactCNN(**ARCH, seed=0).eval()
    fixed = PaperCNN(**ARCH, seed=0).eval()
    x, _ = _images(8)
    out = exact(x)
    assert torch.allclose(out.exp().sum(0), torch.ones(10), atol=1e-5)  # normalised over the batch
    # dropout on at test time: two eval passes differ; the fixed CNN is deterministic
    assert not torch.equal(exact(x), exact(x))
    assert torch.equal(fixed(x), fixed(x))
    # without dropout the batch dependence remains: a sample's output depends on the others
    nodrop = PaperExactCNN(**{**ARCH, "conv_dropout": 0.0, "fc_dropout": 0.0}, seed=0).eval()
    assert not torch.allclose(nodrop(x)[:4], nodrop(x[:4]))
    assert cnn_builder(ARCH)(3).__class__ is PaperCNN
    assert cnn_builder(ARCH, paper_exact=True)(3).__class__ is PaperExactCNN


def test_tiny_cnn_end_to_end_paired_arms():
    x, y = _images()
    build = cnn_builder(ARCH)
    rec = [gradual_recipe("unpruned", build, prune=False, every=1, horizon=2),
           gradual_recipe("pruned", build, prune=True, every=1, horizon=2, gof=None),
           gradual_recipe("paper-exact, pruned", cnn_builder(ARCH, paper_exact=True), prune=True,
                          every=1, horizon=2, paper_exact=True, gof_conv=1.0, gof_fc=1.0)]
    study = run_seeds(rec, [0], (x, y), (x, y), epochs=1, lr=0.05, batch_size=32,
                      lr_schedule=lr_schedule(1))
    f = study.frame
    # same initialisation: the epoch-0 rows of the corrected arms coincide
    e0 = f[f.epoch == 0].set_index("recipe")
    assert e0.loc["pruned", "test_loss"] == e0.loc["unpruned", "test_loss"]
    final = f[f.epoch == 1].set_index("recipe")
    assert final.loc["pruned", "n_params"] < final.loc["unpruned", "n_params"]
    ranks = rank_table(study.events())
    assert {"name", "rank_after", "epoch"} <= set(ranks.columns)
    assert (ranks[ranks.recipe == "pruned"].epoch == 1).all()   # after epoch 1 (corrected)
    tr = train_accuracy(study, (x, y))
    assert len(tr) == 3 and tr.train_acc_eval.between(0, 100).all()
    # the paper-exact net's dropout is on in eval mode: its evaluation is seeded from the run's
    # seed, so it does not depend on the process's random state (a sequential build and one on
    # a cluster reach it with different states) and leaves that state alone
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = train_accuracy(study, (x, y))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert again.equals(tr)
    assert rec[0].tags == {"variant": "corrected", "arm": "unpruned"}
    assert rec[2].tags["variant"] == "paper_exact"


def test_prune_sweep_matches_parameter_counts():
    torch.manual_seed(0)
    x = torch.randn(300, 40)
    y = (x[:, :3].sum(1) > 0).long()
    m = MLP([40, 60, 60, 2], seed=0)
    from rmtlib.train import fit
    fit(m, (x, y), epochs=3, lr=0.05, progress=False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    sweep = prune_sweep({("fc", 0): m}, (x, y), (x, y), fractions=[0.0, 0.3],
                        policy={"gof": None}, finetune=True, finetune_options={"lr": 0.01},
                        progress=False)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # left unchanged
    nofit = sweep[~sweep.finetuned & (sweep.method != "unpruned")]
    for f, g in nofit.groupby("f"):
        n = g.set_index("method").n_params
        assert n["magnitude"] == n["rmt"] == n["random_rank"]
        assert n["rmt"] < sweep[sweep.method == "unpruned"].n_params.iloc[0]
    assert nofit[nofit.f == 0.0].n_params.iloc[0] < nofit[nofit.f == 0.3].n_params.iloc[0]
    ft = sweep[sweep.finetuned & (sweep.method == "magnitude")]
    assert (ft.set_index("f").n_params == nofit[nofit.method == "magnitude"].set_index("f").n_params).all()
    assert len(sweep) == 1 + 2 * 3 * 2
    summ = sweep_summary(sweep)
    assert set(summ.method) == {"rmt", "magnitude", "random_rank"} and (summ.n == 1).all()
    recs = sweep_records(sweep)
    assert recs["fc"]["rmt"]["no_finetune"]["f=0"]["test_acc"]["n"] == 1


def test_landscape_measures_pair():
    torch.manual_seed(0)
    x = torch.randn(200, 30)
    y = (x[:, :2].sum(1) > 0).long()
    build = lambda s: MLP([30, 40, 2], seed=s)  # noqa: E731
    rec = [Recipe("a", build), Recipe("b", build)]
    study = run_seeds(rec, [1], (x, y), (x, y), epochs=2, lr=0.05)
    meas, paths = landscape_measures(study, rec, (x, y), n_iter=30, n_points=3, progress=False)
    assert len(meas) == 2 and (meas.hessian_top > 0).all()
    # identical recipes and seed: identical measures
    assert meas.hessian_top.iloc[0] == pytest.approx(meas.hessian_top.iloc[1], rel=1e-9, abs=0)
    p = paths[paths.recipe == "a"]
    assert p.loss.iloc[-1] == pytest.approx(meas.final_loss.iloc[0], rel=1e-12, abs=0)
    assert p.loss.iloc[0] > p.loss.iloc[-1]
    assert isinstance(study.models["a", 1], nn.Module)


def test_paired_interval_against_t_quantile():
    from rmtlib.papers.paper2_cnn import paired_interval

    iv = paired_interval([1.0, 2.0, 3.0], level=0.95)
    # mean 2, sd 1, t_{2, 0.975} = 4.302653 -> half width 4.302653 / sqrt(3)
    assert iv["mean"] == 2.0 and iv["sd"] == 1.0 and iv["n"] == 3
    assert iv["high"] - 2.0 == pytest.approx(4.302652729749464 / 3**0.5, rel=1e-9, abs=0)
    assert iv["low"] == pytest.approx(2.0 - 4.302652729749464 / 3**0.5, rel=1e-9, abs=0)
    with pytest.raises(ValueError):
        paired_interval([], 0.9)
    with pytest.raises(ValueError, match="level"):
        paired_interval([1.0, 2.0], 1.0)


def test_recorders_write_per_arm_records(tmp_path):
    import json

    import pandas as pd

    from rmtlib.papers.paper2_cnn import (
        arm_table,
        arms_text,
        record_arms,
        record_landscape,
        record_paired,
        record_sweep,
    )
    from rmtlib.results import Run
    from rmtlib.stats import final_rows

    rows = []
    for seed, (a, b) in enumerate([(80.0, 81.0), (79.0, 81.5), (82.0, 81.0)]):
        for recipe, acc, n in (("unpruned", a, 100), ("pruned", b, 60)):
            rows += [{"recipe": recipe, "seed": seed, "epoch": 0, "test_acc": 10.0,
                      "train_acc": 10.0, "n_params": 100},
                     {"recipe": recipe, "seed": seed, "epoch": 1, "test_acc": acc,
                      "train_acc": acc + 1, "n_params": n}]
    frame = pd.DataFrame(rows)
    run = Run(tmp_path / "r")
    rec = record_arms(run, frame)
    assert rec["final_test_acc"]["pruned"]["per_seed"] == {"0": 81.0, "1": 81.5, "2": 81.0}
    assert rec["n_params"]["pruned"]["mean"] == 60
    d = record_paired(run, "diff", frame, "unpruned", "pruned", doc="test")
    assert list(d.difference) == [1.0, 2.5, -1.0]
    table = arm_table(final_rows(frame))
    assert table.loc["pruned", "seeds"] == 3
    assert arms_text(final_rows(frame)).startswith("unpruned 80.33 ± 1.53 %")
    meas = pd.DataFrame({"recipe": ["unpruned", "pruned"] * 2, "seed": [0, 0, 1, 1],
                         "hessian_top": [10.0, 5.0, 8.0, 6.0], "path_barrier": [0.0] * 4})
    paths = pd.DataFrame({"recipe": ["pruned"] * 2, "seed": [0, 0], "t": [0.0, 1.0],
                          "loss": [2.0, 0.5]})
    out = record_landscape(run, meas, paths)
    assert out["p2_hessian_ratio"]["per_seed"] == {"0": 0.5, "1": 0.75}
    assert out["p2_hessian_diff"]["n_lower"] == 2
    sweep = pd.DataFrame([
        {"net": "fc", "seed": s, "method": m, "f": 0.0, "finetuned": ft, "n_params": 50,
         "kept_share": 0.5, "test_acc": acc + s}
        for s in (0, 1) for ft in (False, True)
        for m, acc in (("rmt", 80.0), ("magnitude", 70.0), ("random_rank", 60.0))]
        + [{"net": "fc", "seed": s, "method": "unpruned", "f": float("nan"), "finetuned": False,
            "n_params": 100, "kept_share": 1.0, "test_acc": 85.0} for s in (0, 1)])
    out = record_sweep(run, sweep)
    assert out["p2_pre_bema_vs_mag_fc"]["mean"] == 10.0
    assert out["p2_pre_bema_vs_rnd_fc"]["per_seed"] == {"0": 20.0, "1": 20.0}
    assert out["p2_pre_bema_kept_fc"]["mean"] == 50.0
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())["values"]
    assert {"final_test_acc", "final_train_acc", "n_params", "p2_hessian_ratio",
            "sweep_pairs"} <= set(saved)
    with pytest.raises(ValueError, match="f = 0"):
        record_sweep(run, sweep.assign(f=0.5))
