"""The runner on Dask (issue 10): a parallel build equals the sequential one; an existing
``dask scheduler`` + ``dask worker``; a task failing past its retries; Ctrl-C.

Tiny throwaway notebooks in a tmp repository, never the book's own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import rmtlib
from rmtlib import reproduce as rp
from rmtlib.results import Run

PACKAGE = Path(rmtlib.__file__).resolve().parent
CHECKOUT = PACKAGE.parent
DASK = Path(sys.executable).with_name("dask")

PARAMS = 'seed = 0\nn = 3\nprofile = "manual"\nresults_dir = None\n'
MC = """import numpy as np
from rmtlib.parallel import map_tasks
from rmtlib.results import Run

def top(task, scale):
    x = np.random.default_rng(task).standard_normal((60, 30)) * scale
    return float(np.linalg.eigvalsh(x.T @ x / 60)[-1])

run = Run(results_dir, name="mc")
values = map_tasks(top, [seed + i for i in range(n)], shared={"scale": 1.5}, label="draws",
                   progress=False)
run.log("top_mean", float(np.mean(values)), doc="mean largest eigenvalue (dimensionless)")
run.log("top_first", values[0], doc="largest eigenvalue of the first draw (dimensionless)")
"""
TRAIN = """import torch
from rmtlib.models import MLP
from rmtlib.results import Run
from rmtlib.studies import Recipe, run_seeds

g = torch.Generator().manual_seed(seed)
x = torch.randn(200, 20, generator=g)
y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
recipes = [Recipe("narrow", lambda s: MLP([20, 8, 3], seed=s)),
           Recipe("wide", lambda s: MLP([20, 32, 3], seed=s))]
study = run_seeds(recipes, [seed, seed + 1], (x, y), (x[:80], y[:80]), epochs=n, batch_size=40,
                  lr=0.1)
run = Run(results_dir, name="train")
final = study.frame[study.frame.epoch == n]
run.log("final_loss", final.train_loss.tolist(), doc="final training losses (nats)")
run.log("final_acc", final.test_acc.tolist(), doc="final test accuracies (%)")
"""
AFTER = """from pathlib import Path
from rmtlib.results import Run, read_json

run = Run(results_dir, name="after")
mc = read_json(Path(results_dir).parent / "mc" / "metrics.json")["values"]  # this layout's mc
run.log("twice", 2 * mc["top_mean"], doc="twice the mean of mc (dimensionless)")
"""
FAIL = """from rmtlib.parallel import map_tasks

def picky(task):
    if task == 1:
        raise ValueError("no task 1")
    return task

map_tasks(picky, [0, 1, 2], label="picky draws", progress=False)
"""
SLOW = """import time
from pathlib import Path
from rmtlib.parallel import map_tasks
from rmtlib.results import Run

def wait(task, marker):
    Path(marker).write_text(str(task))
    if n > 3:
        time.sleep(300)
    return task

run = Run(results_dir, name="slow")
run.log("total", sum(map_tasks(wait, [1, 2], shared={"marker": MARKER}, progress=False)),
        doc="sum of the tasks (count)")
"""

STAMP = """import json, os, time
from pathlib import Path
start = time.time()
time.sleep(1.5)
Path(results_dir, "stamp.json").write_text(json.dumps([start, time.time(),
                                                        os.environ.get("OMP_WAIT_POLICY"),
                                                        os.getpriority(os.PRIO_PROCESS, 0)]))
"""


def notebook(path: Path, body: str, params: str = PARAMS) -> None:
    cells = [{"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]},
              "execution_count": None, "outputs": [], "source": params},
             {"cell_type": "code", "id": "body", "metadata": {}, "execution_count": None,
              "outputs": [], "source": body}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))


def repository(root: Path, runs: dict[str, tuple[str, dict]], extra=None) -> None:
    config = {}
    for name, (body, entry) in runs.items():
        notebook(root / "notebooks" / "part" / f"{name}.ipynb", body)
        config[name] = {"notebook": f"part/{name}.ipynb", "title": name.title(),
                        "params": {"base": {"seed": 5, "n": 3}}, **entry}
    (root / "notebooks" / "runs.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def layout(root: Path, tag: str) -> rp.Layout:
    return rp.Layout(root, results=root / f"results-{tag}", book=root / f"book-{tag}", package=PACKAGE)


def metrics(lay: rp.Layout, name: str) -> dict:
    return json.loads((lay.results / "quick" / name / "metrics.json").read_text())


def provenance(lay: rp.Layout, name: str) -> dict:
    return json.loads((lay.results / "quick" / name / "provenance.json").read_text())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    repository(root, {"mc": (MC, {}), "train": (TRAIN, {}), "after": (AFTER, {"depends_on": ["mc"]})})
    return root


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A separately started ``dask scheduler`` and one ``dask worker`` on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    env.pop(rp.ENV_SCHEDULER, None)
    common = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(file)], **common)]
    try:
        deadline = time.time() + 90
        while not file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard", "--host", "127.0.0.1"], **common))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_parallel_build_equals_the_sequential_build(repo, capsys):
    seq, par = layout(repo, "seq"), layout(repo, "par")
    assert {o.status for o in rp.reproduce("quick", layout=seq)} == {"executed"}
    capsys.readouterr()
    assert {o.status for o in rp.reproduce("quick", layout=par, workers=2)} == {"executed"}
    err = capsys.readouterr().err
    for name in ("mc", "train", "after"):
        assert metrics(seq, name) == metrics(par, name), name
    assert provenance(seq, "mc")["executor"] == {"kind": "sequential"}
    assert provenance(par, "mc")["executor"] == {"kind": "local_cluster", "workers": 2,
                                                 "threads_per_worker": 1}
    assert rp.describe_executor(provenance(par, "train")["executor"]) == "local cluster, 2 workers"
    for lay in (seq, par):
        assert provenance(lay, "mc")["tasks"] == 3 and provenance(lay, "train")["tasks"] == 4
        assert provenance(lay, "after")["tasks"] == 0
        assert provenance(lay, "train")["task_time_s"] > 0
        assert provenance(lay, "mc")["executed_because"] == ["no previous results"]
        assert (lay.results / "quick" / "train" / rp.LOG).is_file()
    assert "mc: draws: 3/3 done" in err and "train: training runs: 4/4 done" in err  # streamed
    # the cluster does not change the input hash: a sequential call finds everything cached
    assert {o.status for o in rp.reproduce("quick", layout=par)} == {"cached"}


def test_an_existing_scheduler_is_used_and_gives_the_same_metrics(repo, scheduler):
    seq, ext = layout(repo, "seq"), layout(repo, "ext")
    if not (seq.results / "quick" / "mc" / "provenance.json").exists():
        rp.reproduce("quick", layout=seq, only=["mc"])
    out = rp.reproduce("quick", layout=ext, only=["mc"], scheduler=scheduler)
    assert [o.status for o in out] == ["executed"]
    assert metrics(ext, "mc") == metrics(seq, "mc")
    prov = provenance(ext, "mc")
    assert prov["executor"] == {"kind": "scheduler", "address": scheduler, "workers": 1}
    assert rp.describe_executor(prov["executor"]) == f"scheduler {scheduler}, 1 worker"


def test_a_local_cluster_leaves_glibc_malloc_as_a_plain_process_has_it(monkeypatch):
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ for its workers (which turns off glibc's dynamic
    # mmap threshold and slows training) and writes its variables into this process's
    # environment, from which the kernels would inherit them
    for key in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    before = dict(os.environ)
    from distributed import Client

    with rp._cluster(1, None) as (executor, address, kernel_env):
        assert executor["kind"] == "local_cluster"
        with Client(address, set_as_default=False) as client:
            assert list(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == [None]
            assert list(client.run(os.getenv, "OMP_NUM_THREADS").values()) == ["1"]
        assert kernel_env["MALLOC_TRIM_THRESHOLD_"] is None and kernel_env["OMP_NUM_THREADS"] is None
    assert dict(os.environ) == before


def _dask_setting(key):
    import dask

    return dask.config.get(key)


def test_a_local_cluster_runs_its_workers_with_the_monitors_relaxed():
    # the profiler and the 20 ms tick took CPU from the tasks (rp.LOCAL_CLUSTER_CONFIG); the
    # workers are spawned with the settings, and this process's configuration is restored
    import dask
    from distributed import Client

    before = {k: dask.config.get(k) for k in rp.LOCAL_CLUSTER_CONFIG}
    assert before["distributed.worker.profile.enabled"] is True
    with rp._cluster(1, None) as (executor, address, kernel_env):
        with Client(address, set_as_default=False) as client:
            for key, value in rp.LOCAL_CLUSTER_CONFIG.items():
                assert list(client.run(_dask_setting, key).values()) == [value], key
    assert {k: dask.config.get(k) for k in rp.LOCAL_CLUSTER_CONFIG} == before


def test_workers_of_an_existing_cluster_with_malloc_settings_are_warned_about(scheduler):
    lines = []
    with rp._cluster(None, scheduler, echo=lines.append) as (executor, address, kernel_env):
        assert address == scheduler and kernel_env == {}
    [line] = lines
    assert line.startswith(f"warning: workers of {scheduler} run with MALLOC_TRIM_THRESHOLD_=")
    assert "book/scale_out.md" in line


def test_a_task_failing_past_its_retries_fails_the_run_naming_notebook_and_task(tmp_path, scheduler):
    repository(tmp_path, {"bad": (FAIL, {})})
    lay = layout(tmp_path, "x")
    [outcome] = rp.reproduce("quick", layout=lay, scheduler=scheduler, retries=0)
    assert outcome.status == "failed"
    assert "notebooks/part/bad.ipynb, cell index 1" in outcome.message
    assert "TaskError: task 2/3 of 'picky draws' (1) failed" in outcome.message
    assert "after 0 retries: ValueError: no task 1" in outcome.message
    assert not (lay.results / "quick" / "bad").exists()  # no partial results, no page
    assert not (lay.book / "part" / "bad.ipynb").exists()
    assert (lay.results / "quick" / "bad.failed" / rp.LOG).is_file()  # the failed attempt's record


def test_reproduce_arguments_are_checked(repo):
    with pytest.raises(ValueError, match="workers"):
        rp.reproduce("quick", layout=layout(repo, "seq"), workers=0)
    with pytest.raises(ValueError, match="not both"):
        rp.reproduce("quick", layout=layout(repo, "seq"), workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="retries"):
        rp.reproduce("quick", layout=layout(repo, "seq"), retries=-1)


def default_sigint() -> None:
    """In the runner's process, before Python starts: SIGINT as a terminal gives it.  A command
    started in the background by a non-interactive shell (``cmd &``, as CI harnesses do) inherits
    SIGINT *ignored*, and a Python started so installs no KeyboardInterrupt handler: its Ctrl-C
    would do nothing (the hang this test once showed only in CI)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_cluster_and_keeps_the_previous_results(tmp_path):
    import psutil

    marker = tmp_path / "started"
    body = SLOW.replace("MARKER", repr(str(marker)))
    repository(tmp_path, {"slow": (body, {})})
    lay = rp.Layout(tmp_path, package=PACKAGE)
    assert [o.status for o in rp.reproduce("quick", layout=lay)] == ["executed"]
    folder = lay.results / "quick" / "slow"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    marker.unlink()
    config = yaml.safe_load(lay.config.read_text())
    config["slow"]["params"]["base"]["n"] = 4  # new inputs, and the tasks now wait
    lay.config.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    env.pop(rp.ENV_SCHEDULER, None)
    runner = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "rmtlib.reproduce",
                               "--profile", "quick",
                               "--workers", "1", "--root", str(tmp_path)], cwd=CHECKOUT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=default_sigint)
    try:
        deadline = time.time() + 150
        while not marker.exists() and time.time() < deadline and runner.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), runner.communicate(timeout=30)
        children = psutil.Process(runner.pid).children(recursive=True)
        assert children  # the cluster's processes and the kernel
        runner.send_signal(signal.SIGINT)
        try:
            out, err = runner.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            runner.send_signal(signal.SIGABRT)  # -X faulthandler: every thread's stack on stderr
            out, err = runner.communicate(timeout=30)
            pytest.fail(f"the runner did not stop within 120 s of Ctrl-C; its threads:\n{err}")
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, err
    assert "interrupted" in err
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched
    assert not any(p.name.startswith("slow.") for p in folder.parent.iterdir())  # no partial dirs
    assert not (lay.book / "part" / "slow.ipynb").exists()  # no page older than its inputs


def test_the_benchmark_compares_a_sequential_and_a_parallel_build(tmp_path):
    repository(tmp_path, {"mc": (MC, {})})
    lay = rp.Layout(tmp_path, package=PACKAGE)
    record = rp.benchmark_scale_out("quick", layout=lay, workers=1)
    assert record["identical"] and record["differ"] == {} and record["runs"] == ["mc"]
    assert record["sequential_s"] > 0 and record["parallel_s"] > 0 and record["tasks"] == 3
    assert record["ratio"] == pytest.approx(record["parallel_s"] / record["sequential_s"], rel=1e-2)
    saved = json.loads((lay.results / "benchmarks" / "scale_out_quick.json").read_text())
    assert saved["ratio"] == record["ratio"] and saved["workers"] == 1
    for build in ("sequential", "parallel"):
        [(name, run)] = record["timelines"][build].items()
        assert name == "mc" and run["tasks"] == 3 and 0 <= run["start_s"] <= record[f"{build}_s"]
        assert 0 < run["wall_time_s"] <= record[f"{build}_s"]
    assert provenance(lay, "mc")["executor"]["kind"] == "local_cluster"
    assert provenance(lay, "mc")["task_cpu_s"] >= 0
    for build in ("sequential", "parallel"):
        cpu = record[f"{build}_cpu"]
        cores = cpu["busy_core_s"] + cpu["idle_core_s"] + cpu["steal_core_s"]
        assert cores == pytest.approx(cpu["cores"] * record[f"{build}_s"], rel=0.1, abs=0.2)
        assert 0 < cpu["busy_fraction"] <= 1 and record[f"{build}_task_cpu_s"] >= 0
        assert isinstance(record["busy_cores"][build], list)
    # both builds started without results (so without previous times), and nothing was deleted
    kept = Path(record["kept"])
    assert provenance(lay, "mc")["executed_because"] == ["no previous results"]
    assert json.loads((kept / "sequential" / "mc" / "provenance.json").read_text())[
        "executed_because"] == ["no previous results"]
    assert not (kept / "before").exists()  # there were none
    first = provenance(lay, "mc")["run_id"]
    again = rp.benchmark_scale_out("quick", layout=lay, workers=1)
    assert json.loads((Path(again["kept"]) / "before" / "mc" / "provenance.json").read_text())[
        "run_id"] == first
    # the first record is kept beside its results when a second benchmark replaces the latest
    assert json.loads((kept / "record.json").read_text())["end_utc"] == record["end_utc"]
    assert json.loads((lay.results / "benchmarks" / "scale_out_quick.json").read_text())[
        "end_utc"] == again["end_utc"]
    assert provenance(lay, "mc")["executed_because"] == ["no previous results"]


def test_cpu_times_count_this_process_s_work_and_all_cores():
    before, start = rp.cpu_times(), time.perf_counter()
    end = start + 0.6
    while time.perf_counter() < end:
        pass
    use = rp._cpu_use(before, rp.cpu_times())
    elapsed = time.perf_counter() - start
    assert use["busy_core_s"] >= 0.45  # this process's 0.6 s of spinning (in ticks of 10 ms)
    cores = use["busy_core_s"] + use["idle_core_s"] + use["steal_core_s"]
    assert use["cores"] >= 1 and cores == pytest.approx(use["cores"] * elapsed, rel=0.1, abs=0.1)
    with rp._CpuSampler(every=0.1) as sampler:
        end = time.perf_counter() + 0.65
        while time.perf_counter() < end:
            pass
    assert len(sampler.samples) >= 4 and sampler.use["busy_core_s"] >= 0.45
    assert all(0 <= busy <= sampler.use["cores"] for _, busy in sampler.samples)
    assert [t for t, _ in sampler.samples] == sorted(t for t, _ in sampler.samples)
    # spinning keeps at least one core busy, in ticks of 10 ms
    assert sum(busy for _, busy in sampler.samples) / len(sampler.samples) >= 0.7
    assert use["busy_fraction"] == pytest.approx(use["busy_core_s"] / cores, abs=1e-3)
    assert rp._cpu_use(None, before) is None


def test_a_failing_benchmark_puts_the_previous_results_back(tmp_path):
    repository(tmp_path, {"mc": (MC, {})})
    lay = rp.Layout(tmp_path, package=PACKAGE)
    assert {o.status for o in rp.reproduce("quick", layout=lay)} == {"executed"}
    before = provenance(lay, "mc")["run_id"]
    notebook(tmp_path / "notebooks" / "part" / "mc.ipynb", "raise ValueError('broken')")
    with pytest.raises(RuntimeError, match="sequential build failed"):
        rp.benchmark_scale_out("quick", layout=lay, workers=1)
    assert provenance(lay, "mc")["run_id"] == before


def test_measured_times_are_left_out_of_the_comparison(tmp_path):
    lay = rp.Layout(tmp_path, package=PACKAGE)
    folder = lay.results / "quick" / "x"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"values": {}, "doc": {
        "seconds_per_epoch": "mean wall time of an epoch (seconds)", "fit_s": "time (s)",
        "n_seeds": "seeds (count)", "load": "time to load; seconds)", "acc": "accuracy (%)"}}))
    assert rp._timing_keys(lay, "quick", "x") == {"seconds_per_epoch", "fit_s", "load"}
    # declared with the metric (a dimensionless ratio of times has no unit to recognise), or
    # given in milliseconds
    run = Run(folder)
    run.log("speedup", 3.0, doc="their time / ours (dimensionless)", timing=True)
    run.log("cold_ms", 1.5, doc="first call (ms)")
    run.log("spikes", 4, doc="spikes of a layer (count)")
    assert rp._timing_keys(lay, "quick", "x") == {"seconds_per_epoch", "fit_s", "load", "speedup",
                                                  "cold_ms"}


def test_time_fields_inside_tables_are_left_out_but_other_fields_compared():
    columns = {"n": [10, 20], "constant": [1.5, 1.6], "seconds": [0.3, 0.4]}
    rows = {"m | fc1": {"spikes": 3, "ww_seconds": 0.2, "rmt_s": 0.01, "fit_ms": 2.0}}
    assert rp._untimed(columns) == {"n": [10, 20], "constant": [1.5, 1.6]}
    assert rp._untimed(rows) == {"m | fc1": {"spikes": 3}}
    assert rp._untimed([{"a": 1, "wall_time_s": 9}]) == [{"a": 1}]
    slower = {**columns, "seconds": [0.9, 0.1]}
    assert rp._untimed(slower) == rp._untimed(columns)
    changed = {**columns, "constant": [1.5, 1.7]}
    assert rp._untimed(changed) != rp._untimed(columns)


def test_an_exclusive_run_executes_with_nothing_beside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    runs = {n: (STAMP, {}) for n in ("a", "b", "c")}
    runs["timed"] = (STAMP, {"exclusive": True})
    runs["d"] = (STAMP, {"depends_on": ["timed"]})
    repository(tmp_path, runs)
    lay = rp.Layout(tmp_path, package=PACKAGE)
    assert {o.status for o in rp.reproduce("quick", layout=lay, workers=2)} == {"executed"}
    span = {n: json.loads((lay.results / "quick" / n / "stamp.json").read_text()) for n in runs}
    for name in ("a", "b", "c", "d"):  # the timed run's interval meets no other
        assert span[name][1] <= span["timed"][0] or span[name][0] >= span["timed"][1], name
    # the others did run two at a time
    assert any(span[x][0] < span[y][1] and span[y][0] < span[x][1]
               for x in ("a", "b", "c", "d") for y in ("a", "b", "c", "d") if x < y)
    # kernels sharing the cores with the workers wait passively; the exclusive one, alone, spins
    assert {n: span[n][2] for n in runs} == {"a": "PASSIVE", "b": "PASSIVE", "c": "PASSIVE",
                                            "timed": None, "d": "PASSIVE"}
    assert provenance(lay, "a")["kernel_settings"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert provenance(lay, "timed")["kernel_settings"] == {}
    # and below the workers' CPU priority; the exclusive one at the runner's
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert {n: span[n][3] for n in runs} == {**{n: min(19, mine + rp.KERNEL_NICE) for n in "abcd"},
                                            "timed": mine}
    assert provenance(lay, "a")["kernel_nice"] == rp.KERNEL_NICE
    assert provenance(lay, "timed")["kernel_nice"] == 0
    # sequentially nothing is set, and a policy the user sets is left alone
    assert [o.status for o in rp.reproduce("quick", ["a"], layout=lay, force=True)] == ["executed"]
    assert json.loads((lay.results / "quick" / "a" / "stamp.json").read_text())[2:] == [None, mine]
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert [o.status for o in rp.reproduce("quick", ["a"], layout=lay, force=True, workers=1)] == [
        "executed"]
    assert json.loads((lay.results / "quick" / "a" / "stamp.json").read_text())[2:] == [
        "ACTIVE", min(19, mine + rp.KERNEL_NICE)]
    assert provenance(lay, "a")["kernel_settings"] == {}


def test_the_run_others_wait_for_starts_first_without_previous_times(tmp_path):
    # in dependency order "solo" comes first; "head" heads a chain of two runs, so it goes first
    repository(tmp_path, {"solo": (STAMP, {}), "head": (STAMP, {}), "tail": (STAMP, {"depends_on": ["head"]})})
    lay = rp.Layout(tmp_path, package=PACKAGE)
    assert {o.status for o in rp.reproduce("quick", layout=lay, workers=1)} == {"executed"}
    start = {n: json.loads((lay.results / "quick" / n / "stamp.json").read_text())[0]
             for n in ("solo", "head", "tail")}
    assert start["head"] < start["solo"]
    assert rp._critical_path(rp.load_config(lay, "quick"), {"solo": 10.0}) == {
        "solo": 10.0, "head": 2.0, "tail": 1.0}
