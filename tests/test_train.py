"""Tests of rmtlib.train: determinism, history, penalties, schedules, pruning during
training, optimizer handling and checkpoints."""

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.models import MLP, PaperCNN
from rmtlib.prune import Factorized, PrunePolicy, count_parameters, factorize
from rmtlib.train import (
    HISTORY_COLUMNS,
    Callback,
    CheckpointExistsError,
    RMTPruning,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
)


def _data(n=384, d=60, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4:], y[n * 3 // 4:])


TRAIN, TEST = _data()


def _run(seed=0, callbacks=(), epochs=3, **kw):
    model = MLP([60, 80, 4], seed=seed)
    opts = {"epochs": epochs, "batch_size": 32, "lr": 0.05, "seed": seed, "progress": False}
    opts.update(kw)
    return model, fit(model, TRAIN, TEST, callbacks=callbacks, **opts)


def _comparable(h):
    return h.frame.drop(columns=["seconds"])


def test_same_seed_identical_histories_and_weights():
    m1, h1 = _run(seed=5)
    m2, h2 = _run(seed=5)
    pd.testing.assert_frame_equal(_comparable(h1), _comparable(h2))
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    _, h3 = _run(seed=6)
    assert not _comparable(h1).equals(_comparable(h3))


def test_same_seed_identical_with_pruning_dropout_and_penalties():
    def run():
        model = PaperCNN(channels=[1, 4, 6, 8], fc=[20, 3], input_size=(10, 10), seed=1)
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(64, 1, 10, 10, generator=g), torch.randint(0, 3, (64,), generator=g)
        cb = RMTPruning(PrunePolicy(gof=None, keep_fraction=0.5), when="after_epoch",
                        optimizer="keep")
        h = fit(model, (x, y), (x, y), epochs=2, batch_size=16, lr=0.01, l1=1e-5, l2=1e-4,
                seed=3, callbacks=[cb], progress=False)
        return h
    h1, h2 = run(), run()
    pd.testing.assert_frame_equal(_comparable(h1), _comparable(h2))
    assert h1.frame.pruned.iloc[1:].all()


def test_history_layout_epoch0_and_eval_every():
    model, h = _run(epochs=4, eval_every=2)
    f = h.frame
    assert list(f.columns) == HISTORY_COLUMNS and list(f.epoch) == [0, 1, 2, 3, 4]
    loss0, acc0 = evaluate(MLP([60, 80, 4], seed=0), TEST)
    assert f.test_acc[0] == pytest.approx(acc0) and f.test_loss[0] == pytest.approx(loss0)
    assert np.isnan(f.test_acc[1]) and np.isnan(f.test_acc[3]) and not np.isnan(f.test_acc[4])
    assert f.test_acc.iloc[-1] > f.test_acc[0] and f.test_acc.iloc[-1] > 80
    assert (f.n_params == count_parameters(model)).all() and np.isnan(f.lr[0])
    assert f.shapes[0] == "80x60,4x80" and not f.pruned.any()
    assert h.final.epoch == 4 and "4 epochs" in repr(h)


def test_lr_schedules():
    _, h = _run(epochs=5, lr_schedule={"every": 2, "factor": 0.5})
    np.testing.assert_allclose(h.frame.lr[1:], [0.05, 0.05, 0.025, 0.025, 0.0125])
    _, h = _run(epochs=3, lr_schedule=lambda e: 0.1 / e)
    np.testing.assert_allclose(h.frame.lr[1:], [0.1, 0.05, 0.1 / 3])
    with pytest.raises(ValueError, match="lr_schedule"):
        _run(lr_schedule={"step": 2})


def test_penalties_shrink_weights():
    m0, _ = _run(epochs=3)
    m1, _ = _run(epochs=3, l1=1e-3)
    m2, _ = _run(epochs=3, l2=1e-2)
    norm = lambda m, q: sum(p.abs().pow(q).sum().item() for p in m.parameters())
    assert norm(m1, 1) < norm(m0, 1)
    assert norm(m2, 2) < norm(m0, 2)


def test_bad_arguments():
    model = MLP([60, 80, 4])
    for kw, msg in [({"epochs": -1, "lr": 0.1}, "epochs"), ({"epochs": 1, "lr": 0}, "lr"),
                    ({"epochs": 1, "lr": 0.1, "batch_size": 0}, "batch_size"),
                    ({"epochs": 1, "lr": 0.1, "callbacks": [object()]}, "Callback")]:
        with pytest.raises(ValueError, match=msg):
            fit(model, TRAIN, TEST, progress=False, **kw)
    with pytest.raises(ValueError, match="int64"):
        fit(model, (TRAIN[0], TRAIN[1].float()), epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="same non-zero length"):
        fit(model, (TRAIN[0], TRAIN[1][:5]), epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        RMTPruning(optimizer="adam")
    with pytest.raises(ValueError, match="when"):
        RMTPruning(when="sometimes")


def test_rmt_pruning_defaults_are_the_corrected_schedule():
    cb = RMTPruning()
    assert (cb.when, cb.optimizer, cb.start_epoch, cb.every) == ("after_epoch", "keep", 1, 1)
    assert cb.policy.split_view == "product" and not cb.policy.paper_exact
    exact = RMTPruning.paper_exact(PrunePolicy(keep_fraction=0.3))
    assert (exact.when, exact.optimizer, exact.start_epoch) == ("before_epoch", "rebuild", 1)
    assert exact.policy.split_view == "factors" and exact.policy.paper_exact
    assert exact.policy.keep_fraction == 0.3
    model, h = _run(callbacks=[RMTPruning(PrunePolicy(gof=None, keep_fraction=0.3))], epochs=2)
    # the first prune sees trained weights: after epoch 1, recorded in epoch 1's row
    assert [ev["epoch"] for ev in h.events] == [1, 2]
    assert {ev["when"] for ev in h.events} == {"after_epoch"}
    assert set(h.events_frame().name) >= {"layers.0"} and "layers.0.0" not in set(h.events_frame().name)


def test_rmt_pruning_paper_schedule_prunes_initialisation_before_epoch_1():
    cb = RMTPruning(PrunePolicy(gof=None), every=2)
    assert [e for e in range(1, 8) if cb.due(e)] == [1, 3, 5, 7]
    assert [e for e in range(1, 10) if RMTPruning(every=3, start_epoch=2, stop_epoch=6).due(e)] \
        == [2, 5]
    model, h = _run(callbacks=[RMTPruning.paper_exact(PrunePolicy(gof=None, keep_fraction=0.3))],
                    epochs=2)
    assert list(h.frame.pruned) == [False, True, True]
    ev = h.events[0]
    assert ev["epoch"] == 1 and ev["when"] == "before_epoch"
    assert ev["report"].layers.set_index("name").loc["layers.0", "action"] == "factorize"
    # first event on the random init: 80x60 -> keep = spikes + int(0.3 * bulk), >= 4 classes
    assert isinstance(model.layers[0], Factorized)
    assert h.frame.n_params[1] < h.frame.n_params[0]
    assert "layers.0.0" in set(h.events_frame().name)
    assert h.frame.shapes[1].startswith(f"{model.layers[0].rank}x60")


def test_rmt_pruning_after_epoch_with_keep_fraction_schedule():
    cb = RMTPruning(PrunePolicy(gof=None), keep_fraction=lambda e: max(0.0, 1 - e / 4),
                    when="after_epoch")
    _, h = _run(callbacks=[cb], epochs=2)
    fracs = [ev["report"].keep_fraction for ev in h.events]
    assert fracs == [0.75, 0.5] and [ev["when"] for ev in h.events] == ["after_epoch"] * 2


class _Spy(Callback):
    def __init__(self):
        self.before, self.after = {}, {}

    def on_epoch_begin(self, state):
        self.before[state.epoch] = state.optimizer

    def on_epoch_end(self, state):
        self.after[state.epoch] = state.optimizer


@pytest.mark.parametrize("mode", ["rebuild", "keep"])
def test_optimizer_rebuild_or_keep(mode):
    pol = PrunePolicy(gof=None, keep_fraction=0.5, layers=["layers.0"])
    spy = _Spy()
    cb = RMTPruning(pol, when="after_epoch", start_epoch=2, optimizer=mode)
    model = MLP([60, 80, 4], seed=0)
    last_w = model.layers[1].weight
    snapshot = {}

    class Grab(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                snapshot["buf"] = state.optimizer.state[last_w]["momentum_buffer"].clone()
    fit(model, TRAIN, TEST, epochs=2, batch_size=32, lr=0.05, seed=0, progress=False,
        callbacks=[Grab(), cb, spy])
    new_opt = spy.after[2]
    assert new_opt is not spy.before[2]
    replaced = list(model.layers[0].parameters())
    assert all(p not in new_opt.state for p in replaced)
    if mode == "keep":
        torch.testing.assert_close(new_opt.state[last_w]["momentum_buffer"], snapshot["buf"])
    else:
        assert len(new_opt.state) == 0
    assert new_opt.param_groups[0]["lr"] == 0.05
    assert {id(p) for p in new_opt.param_groups[0]["params"]} == {id(p) for p in model.parameters()}


def test_checkpoint_round_trip_of_factorized_model(tmp_path):
    model = MLP([60, 80, 4], seed=0)
    factorize(model, "layers.0", 9)
    path = tmp_path / "ck" / "m.pt"
    save_checkpoint(model, path, epoch=3, accs=[1.5, np.float64(2.0)], arr=np.arange(3))
    payload = torch.load(path, weights_only=True)
    assert payload["edits"] == [{"name": "layers.0", "kind": "linear", "rank": 9}]
    fresh = MLP([60, 80, 4], seed=1)
    meta = load_checkpoint(path, fresh)
    assert meta["epoch"] == 3 and meta["accs"] == [1.5, 2.0] and torch.equal(meta["arr"],
                                                                            torch.arange(3))
    x = TEST[0][:7]
    torch.testing.assert_close(fresh(x), model(x))
    assert fresh.widths == [60, 9, 80, 4]
    with pytest.raises(CheckpointExistsError, match="overwrite=True"):
        save_checkpoint(model, path)
    with pytest.raises(ValueError):  # CheckpointExistsError is also a ValueError
        save_checkpoint(model, path)
    save_checkpoint(model, path, overwrite=True)
    with pytest.raises(ValueError, match="plain data"):
        save_checkpoint(model, tmp_path / "x.pt", frame=pd.DataFrame({"a": [1]}))
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="PaperCNN"):
        load_checkpoint(path, PaperCNN(channels=[1, 2, 3], fc=[4], input_size=(10, 10)))
    with pytest.raises(ValueError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", fresh)


def test_checkpoint_of_pruned_conv_model(tmp_path):
    model = PaperCNN(channels=[1, 8, 16], fc=[12, 3], input_size=(12, 12), seed=0)
    cb = RMTPruning(PrunePolicy(gof=None, keep_fraction=0.2, min_rank=2), when="after_epoch")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 12, 12, generator=g), torch.randint(0, 3, (32,), generator=g)
    fit(model, (x, y), epochs=1, batch_size=8, lr=0.01, callbacks=[cb], progress=False)
    assert any(isinstance(m, Factorized) and m.kind == "conv2d" for m in model.modules())
    save_checkpoint(model, tmp_path / "cnn.pt")
    fresh = PaperCNN(channels=[1, 8, 16], fc=[12, 3], input_size=(12, 12), seed=5)
    load_checkpoint(tmp_path / "cnn.pt", fresh)
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), model(x))


# ------------------------------------------------------------------ devices


def test_resolve_device_rules():
    from rmtlib.train import resolve_device

    model = MLP([4, 3])
    assert resolve_device(None, model) == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)


def test_fit_with_explicit_cpu_device_equals_the_default():
    _, h1 = _run(seed=2)
    _, h2 = _run(seed=2, device="cpu")
    pd.testing.assert_frame_equal(_comparable(h1), _comparable(h2))
    if not torch.cuda.is_available():
        _, h3 = _run(seed=2, device="auto")
        pd.testing.assert_frame_equal(_comparable(h1), _comparable(h3))


# ------------------------------------------------------------------ input checks


def test_training_inputs_are_checked_before_training():
    model = MLP([60, 80, 4], seed=0)
    x = TRAIN[0].clone()
    x[3, 5] = float("nan")
    with pytest.raises(ValueError, match="non-finite values .* in 1 of its"):
        fit(model, (x, TRAIN[1]), epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\).*from 1 to 7"):
        fit(model, (TRAIN[0], TRAIN[1] * 2 + 1), epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="test: labels"):
        fit(model, TRAIN, (TEST[0], -TEST[1] - 1), epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="cannot be applied to inputs of shape"):
        fit(model, (TRAIN[0][:, :50], TRAIN[1]), epochs=1, lr=0.1, progress=False)


def test_penalties_equal_the_explicit_loss_terms():
    import torch.nn.functional as F

    l1, l2 = 1e-3, 5e-3
    model = MLP([60, 80, 4], seed=0)
    ref = MLP([60, 80, 4], seed=0)
    fit(model, TRAIN, epochs=1, batch_size=32, lr=0.05, l1=l1, l2=l2, seed=4, progress=False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    perm = torch.randperm(len(TRAIN[0]), generator=torch.Generator().manual_seed(4))
    for i in range(0, len(perm), 32):
        idx = perm[i:i + 32]
        loss = F.cross_entropy(ref(TRAIN[0][idx]), TRAIN[1][idx])
        loss = loss + l1 * sum(p.abs().sum() for p in ref.parameters()) \
            + l2 * sum(p.pow(2).sum() for p in ref.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ resumable checkpoints


def _resumable(tmp_path, epochs, resume=False, name="run.pt"):
    model = PaperCNN(channels=[1, 4, 6], fc=[16, 3], input_size=(10, 10), seed=1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 10, 10, generator=g), torch.randint(0, 3, (64,), generator=g)
    cb = RMTPruning(PrunePolicy(gof=None, keep_fraction=0.5, action="random_bulk"))
    h = fit(model, (x, y), (x, y), epochs=epochs, batch_size=16, lr=0.01, l2=1e-4, seed=3,
            callbacks=[cb], progress=False, checkpoint=tmp_path / name, resume=resume)
    return model, h


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full, h_full = _resumable(tmp_path, 4, name="full.pt")
    _resumable(tmp_path, 2)
    resumed, h_res = _resumable(tmp_path, 4, resume=True)
    pd.testing.assert_frame_equal(_comparable(h_full), _comparable(h_res))
    assert [e["epoch"] for e in h_res.events] == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(h_full.events_frame().drop(columns="seconds"),
                                  h_res.events_frame().drop(columns="seconds"))
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    payload = torch.load(tmp_path / "run.pt", weights_only=True)
    assert payload["training"]["epoch"] == 4 and "optimizer" in payload["training"]
    with pytest.raises(CheckpointExistsError, match="resume=True"):
        _resumable(tmp_path, 4)
    model = PaperCNN(channels=[1, 4, 6], fc=[16, 3], input_size=(10, 10), seed=1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 10, 10, generator=g), torch.randint(0, 3, (64,), generator=g)
    with pytest.raises(ValueError, match="other settings"):
        fit(model, (x, y), epochs=5, batch_size=8, lr=0.01, l2=1e-4, seed=3, progress=False,
            checkpoint=tmp_path / "run.pt", resume=True)
    with pytest.raises(ValueError, match="needs the checkpoint path"):
        fit(model, (x, y), epochs=1, lr=0.01, progress=False, resume=True)


def test_corrupted_or_foreign_files_give_a_clear_error_naming_them(tmp_path):
    model = MLP([60, 80, 4], seed=0)
    good = save_checkpoint(model, tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    torch.save(model, tmp_path / "whole.pt")
    for name, words in (("cut.pt", "not a readable torch file"), ("junk.pt", "not a readable"),
                        ("state.pt", "not an rmtlib checkpoint"), ("whole.pt", "pickled")):
        with pytest.raises(ValueError, match=words) as info:
            load_checkpoint(tmp_path / name, MLP([60, 80, 4]))
        assert name in str(info.value)
    with pytest.raises(ValueError, match="does not match the architecture"):
        load_checkpoint(good, MLP([60, 81, 4]))


def test_load_model_from_checkpoints_and_state_dicts(tmp_path):
    from rmtlib.train import load_model

    model = MLP([60, 80, 4], seed=0)
    factorize(model, "layers.0", 9)
    save_checkpoint(model, tmp_path / "m.pt", note="x")
    loaded, info = load_model(tmp_path / "m.pt")
    assert info["kind"] == "checkpoint" and info["meta"] == {"note": "x"}
    x = TEST[0][:5]
    torch.testing.assert_close(loaded(x), model(x))
    plain = MLP([60, 80, 4], seed=1)
    torch.save(plain.state_dict(), tmp_path / "s.pt")
    loaded, info = load_model(tmp_path / "s.pt", "rmtlib.models:MLP",
                              arch_kwargs={"dims": [60, 80, 4]})
    assert info["kind"] == "state_dict"
    torch.testing.assert_close(loaded(x), plain(x))
    with pytest.raises(ValueError, match="plain state_dict"):
        load_model(tmp_path / "s.pt")
    bare = torch.nn.Sequential(torch.nn.Linear(3, 2))
    save_checkpoint(bare, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="without a recorded architecture"):
        load_model(tmp_path / "bare.pt")


def test_predict_returns_outputs_where_the_inputs_are():
    from rmtlib.train import predict

    model = MLP([60, 80, 4], seed=0)
    out = predict(model, TEST[0], batch_size=7, device="cpu")
    assert out.device == TEST[0].device and out.shape == (len(TEST[0]), 4)
    torch.testing.assert_close(out, model.eval()(TEST[0]))


def test_a_seeded_evaluation_of_a_random_model_is_reproducible_and_keeps_the_callers_state():
    class AlwaysDropout(torch.nn.Module):  # eval mode stays random, as the authors' dropout
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(60, 4)

        def forward(self, x):
            return self.lin(torch.nn.functional.dropout(x, 0.5, training=True))

    model = AlwaysDropout()
    torch.manual_seed(1)
    first = evaluate(model, TEST, seed=7)
    torch.rand(5)  # other random work in between changes the process's state ...
    state = torch.random.get_rng_state()
    assert evaluate(model, TEST, seed=7) == first  # ... but not a seeded evaluation
    assert torch.equal(torch.random.get_rng_state(), state)
    assert evaluate(model, TEST, seed=8) != first
    assert evaluate(model, TEST) != evaluate(model, TEST)  # unseeded: the process's state
    with pytest.raises(ValueError, match="seed"):
        evaluate(model, TEST, seed=-1)
