"""rmtlib.parallel.map_tasks: in-process, and on a two-worker Dask LocalCluster (same results,
data sent once, a killed worker, a task failing past its retries)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch

from rmtlib import parallel
from rmtlib.models import MLP
from rmtlib.parallel import ENV_RETRIES, ENV_SCHEDULER, ENV_TASK_LOG, TaskError, map_tasks
from rmtlib.studies import Recipe, run_seeds
from rmtlib.train import Callback


def draw(task, *, scale, offset=0.0):
    """A seeded Monte Carlo task: the largest eigenvalue of a Wishart matrix."""
    seed, n = task
    x = np.random.default_rng(seed).standard_normal((n, n // 2)) * scale
    return float(np.linalg.eigvalsh(x.T @ x / n)[-1]) + offset


def spin_or_sleep(task):
    """Busy for ``seconds`` (``spin``) or asleep for them: CPU time about the wall time, or none."""
    kind, seconds = task
    end = time.perf_counter() + seconds
    if kind == "sleep":
        time.sleep(seconds)
    while time.perf_counter() < end:
        pass
    return kind


def threads_of(task):
    return task, torch.get_num_threads()


def nested(task, *, values):
    return sum(map_tasks(lambda v: v * task, values, label="inner", progress=False))


def slow_once(task, *, folder):
    """Writes its pid to ``folder/started-<task>``; the first attempt of task 0 then waits to be
    killed (the test kills its worker)."""
    marker = folder / f"started-{task}"
    first = not marker.exists()
    tmp = folder / f".started-{task}-{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    tmp.replace(marker)  # atomic: the test never reads a half-written pid
    if task == 0 and first:
        time.sleep(60)
    return draw((task, 40), scale=1.0)


def always_fails(task, *, folder):
    (folder / f"attempt-{task}-{time.time_ns()}").write_text("")
    if task == 1:
        raise ValueError(f"bad task {task}")
    return task


class Counted:
    """A shared value that counts how often it is pickled (in this process)."""

    pickled = 0

    def __init__(self, values):
        self.values = values

    def __getstate__(self):
        type(self).pickled += 1
        return {"values": self.values}


def uses_counted(task, *, data):
    return data.values[task]


def tiny_recipes():
    return [Recipe("a", lambda s: MLP([20, 16, 3], seed=s)),
            Recipe("b", lambda s: MLP([20, 8, 3], seed=s), fit_options={"lr": 0.05})]


def tiny_data(seed=0, n=120):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()


# ----------------------------------------------------------------------------- in-process


def test_in_process_keeps_order_passes_shared_and_reports_progress(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_SCHEDULER, raising=False)
    log = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(ENV_TASK_LOG, str(log))
    tasks = [(s, 40) for s in (5, 1, 3)]
    out = map_tasks(draw, tasks, shared={"scale": 2.0, "offset": 1.0}, label="draws")
    assert out == [draw(t, scale=2.0, offset=1.0) for t in tasks]
    assert out[0] != out[1]  # seeded by the task
    assert "draws: 3/3 done" in capsys.readouterr().err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["done"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    batch = [e for e in events if e["event"] == "batch"]
    assert len(batch) == 1 and batch[0]["tasks"] == 3 and batch[0]["where"] == "in-process"
    # seconds are logged to the millisecond: three tiny draws may round to 0.0
    assert 0 <= batch[0]["task_seconds"] <= batch[0]["wall_seconds"] + 1e-3
    map_tasks(draw, tasks, shared={"scale": 1.0}, progress=False)
    assert capsys.readouterr().err == ""  # progress=False: nothing printed, but still logged
    assert sum(json.loads(line)["event"] == "batch" for line in log.read_text().splitlines()) == 2


def batch_of(log, label):
    [batch] = [e for e in map(json.loads, log.read_text().splitlines())
               if e["event"] == "batch" and e["label"] == label]
    return batch


def check_cpu_accounting(log):
    spin, sleep = batch_of(log, "spin"), batch_of(log, "sleep")
    # a busy task's CPU time is about its wall time; a sleeping one uses almost none
    assert spin["task_seconds"] >= 0.6 and 0.5 * spin["task_seconds"] <= spin["task_cpu_seconds"] <= \
        1.2 * spin["task_seconds"] + 0.05
    assert sleep["task_seconds"] >= 0.6 and sleep["task_cpu_seconds"] < 0.2 * sleep["task_seconds"]


def test_task_cpu_time_is_logged_beside_the_wall_time(monkeypatch, tmp_path):
    log = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(ENV_TASK_LOG, str(log))
    assert map_tasks(spin_or_sleep, [("spin", 0.35)] * 2, label="spin", progress=False) == ["spin"] * 2
    assert map_tasks(spin_or_sleep, [("sleep", 0.35)] * 2, label="sleep", progress=False) == ["sleep"] * 2
    check_cpu_accounting(log)


def test_threads_are_set_per_task_and_restored():
    before = torch.get_num_threads()
    assert map_tasks(threads_of, [1, 2], threads=1, progress=False) == [(1, 1), (2, 1)]
    assert torch.get_num_threads() == before


def test_nested_batches_run_in_process_and_are_not_logged(monkeypatch, tmp_path):
    log = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(ENV_TASK_LOG, str(log))
    monkeypatch.delenv(ENV_SCHEDULER, raising=False)
    assert map_tasks(nested, [1, 2], shared={"values": [1, 2, 3]}, progress=False) == [6, 12]
    labels = [json.loads(line)["label"] for line in log.read_text().splitlines()
              if json.loads(line)["event"] == "batch"]
    assert labels == ["tasks"]


@pytest.mark.parametrize("kwargs, message", [
    ({"func": 3}, "func must be callable"),
    ({"shared": [1]}, "shared must be a mapping"),
    ({"shared": {"not a name": 1}}, "keyword-argument names"),
    ({"label": ""}, "label"),
    ({"progress": "yes"}, "progress"),
    ({"threads": 0}, "threads"),
])
def test_arguments_are_validated(kwargs, message):
    args = {"func": draw, "shared": {"scale": 1.0}, **kwargs}
    with pytest.raises(ValueError, match=message):
        map_tasks(args.pop("func"), [(0, 10)], **args)


def test_retries_setting_is_read_and_checked(monkeypatch):
    monkeypatch.delenv(ENV_RETRIES, raising=False)
    assert parallel.task_retries() == parallel.DEFAULT_RETRIES
    monkeypatch.setenv(ENV_RETRIES, "0")
    assert parallel.task_retries() == 0
    monkeypatch.setenv(ENV_RETRIES, "-1")
    with pytest.raises(ValueError, match="RMTLIB_TASK_RETRIES"):
        parallel.task_retries()


def test_no_dask_import_without_a_cluster(tmp_path):
    import subprocess

    code = ("import sys, os; os.environ.pop('RMTLIB_SCHEDULER', None)\n"
            "from rmtlib.parallel import map_tasks\n"
            "assert map_tasks(abs, [-1, 2], progress=False) == [1, 2]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    env = {k: v for k, v in os.environ.items() if k != ENV_SCHEDULER}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- on a cluster


@pytest.fixture(scope="module")
def cluster():
    import cloudpickle
    from distributed import LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests
    before = dict(os.environ)  # Dask's nanny writes the workers' variables into this process's
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as c:
            yield c
        parallel.close_client()
    finally:  # environment (OMP_NUM_THREADS=1, ...): later tests' subprocesses must not inherit it
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    monkeypatch.setenv(ENV_SCHEDULER, cluster.scheduler_address)
    return cluster


def test_cluster_results_equal_in_process_results_and_shared_data_goes_once(on_cluster, tmp_path,
                                                                             monkeypatch):
    tasks = [(s, 60) for s in range(6)]
    local = [draw(t, scale=1.5) for t in tasks]
    log = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(ENV_TASK_LOG, str(log))
    assert map_tasks(draw, tasks, shared={"scale": 1.5}, label="draws", progress=False) == local
    batch = [json.loads(line) for line in log.read_text().splitlines()][-1]
    assert batch["where"] == on_cluster.scheduler_address and batch["tasks"] == 6
    # the CPU time of a task is measured on its worker
    map_tasks(spin_or_sleep, [("spin", 0.35)] * 2, label="spin", progress=False)
    map_tasks(spin_or_sleep, [("sleep", 0.35)] * 2, label="sleep", progress=False)
    check_cpu_accounting(log)
    Counted.pickled = 0
    data = Counted(list(range(100, 112)))
    assert map_tasks(uses_counted, range(12), shared={"data": data}, progress=False) == data.values
    assert 1 <= Counted.pickled <= 2  # scattered once (at most once per worker), not per task


def test_run_seeds_on_the_cluster_equals_the_sequential_study(on_cluster, monkeypatch):
    train, test = tiny_data(0), tiny_data(1, 60)
    parallel_study = run_seeds(tiny_recipes(), [3, 4], train, test, epochs=2, batch_size=30, lr=0.1)
    monkeypatch.delenv(ENV_SCHEDULER)
    sequential = run_seeds(tiny_recipes(), [3, 4], train, test, epochs=2, batch_size=30, lr=0.1)
    cols = ["recipe", "seed", "epoch", "train_loss", "test_acc"]
    assert parallel_study.frame[cols].equals(sequential.frame[cols])
    for key, model in sequential.models.items():
        other = parallel_study.models[key].state_dict()
        assert all(torch.equal(v, other[k]) for k, v in model.state_dict().items())


class NormRecorder(Callback):
    """Records the first layer's weight norm after every epoch, returned through record()."""

    def __init__(self):
        self.norms = []

    def on_epoch_end(self, state):
        self.norms.append(float(state.model.layers[0].weight.norm()))

    def record(self):
        return {"norms": list(self.norms)}


def recorded_recipes():
    return [Recipe("rec", lambda s: MLP([20, 16, 3], seed=s), lambda: [NormRecorder()])]


def test_callback_records_come_back_from_the_workers(on_cluster, monkeypatch):
    """A callback's measurements come back through SeedStudy.records wherever it trained (on a
    worker the callback is a copy: state kept on it would be lost)."""
    train, test = tiny_data(0), tiny_data(1, 60)
    parallel_study = run_seeds(recorded_recipes(), [3, 4], train, test, epochs=2, batch_size=30,
                               lr=0.1)
    monkeypatch.delenv(ENV_SCHEDULER)
    sequential = run_seeds(recorded_recipes(), [3, 4], train, test, epochs=2, batch_size=30,
                           lr=0.1)
    assert set(sequential.records) == {("rec", 3), ("rec", 4)}
    assert all(len(recs[0]["norms"]) == 2 for recs in sequential.records.values())
    assert parallel_study.records == sequential.records


def test_a_killed_worker_is_replaced_and_the_results_are_identical(on_cluster, tmp_path):
    expected = [draw((t, 40), scale=1.0) for t in range(4)]
    result: dict = {}

    def go():
        try:
            result["out"] = map_tasks(slow_once, range(4), shared={"folder": tmp_path}, progress=False)
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    marker = tmp_path / "started-0"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "task 0 never started"
    time.sleep(0.3)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the worker process running task 0
    thread.join(240)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert result["out"] == expected
    assert int(marker.read_text()) != 0  # re-run (by a live worker)


def test_a_task_failing_past_its_retries_names_the_batch_and_the_task(on_cluster, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv(ENV_RETRIES, "1")
    with pytest.raises(TaskError) as err:
        map_tasks(always_fails, [0, 1, 2], shared={"folder": tmp_path}, label="flaky sweep",
                  progress=False)
    message = str(err.value)
    assert "task 2/3 of 'flaky sweep' (1)" in message and "after 1 retry" in message
    assert "ValueError: bad task 1" in message
    assert len(list(tmp_path.glob("attempt-1-*"))) == 2  # the first try and one retry


def test_shared_arrays_are_realigned_before_a_task_runs():
    buf = bytearray(4 * 100 + 64)
    x = torch.frombuffer(buf, dtype=torch.float32, offset=8, count=100)
    x.copy_(torch.arange(100.0))
    a = np.frombuffer(bytearray(8 * 50 + 64), dtype=np.float64, offset=8, count=50)
    assert x.data_ptr() % 64 and a.ctypes.data % 64
    out = parallel._aligned({"data": (x, [a]), "other": 3})
    assert out["data"][0] is x and x.data_ptr() % 64 == 0 and torch.equal(x, torch.arange(100.0))
    assert out["data"][1][0].ctypes.data % 64 == 0 and np.array_equal(out["data"][1][0], a)
    assert out["other"] == 3
    aligned = torch.zeros(10)
    same = (aligned, [1, 2])
    assert parallel._aligned(same) is same  # nothing to do: the very same objects
