"""Tests of radiolab.executors: serial, joblib and Dask backends, retries, worker deaths,
identical segment outputs across backends and shards, and dask-jobqueue job scripts.

The Dask tests use a real ``distributed.LocalCluster`` of 2 worker processes on
127.0.0.1 with the dashboard off, shared by the module.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from radiolab.errors import InputError
from radiolab.executors import (
    ClusterConfig,
    DaskExecutor,
    JoblibExecutor,
    SerialExecutor,
    TaskFailure,
    jobqueue_cluster,
    load_cluster_config,
    make_executor,
    parse_shard,
    shard_items,
)
from radiolab.segment import SegmentConfig, find_inputs, fit_cohort, segment_cohort
from radiolab.synthetic import make_cohort

from helpers import file_tree

SHAPE, SPACING = (40, 64, 64), (7.0, 5.0, 5.0)
DASK_MISSING = "the dask extra is not installed: pip install 'radiolab[dask]'"


# -- picklable test tasks (workers import this module by name) ------------------------------

def square(x):
    return x * x


class DieOnce:
    """Kill the calling process the first time an item is seen (a marker file remembers)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __call__(self, x):
        marker = os.path.join(self.folder, f"seen-{x}")
        if x == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return x * x


class DieAlways:
    def __call__(self, x):
        if x == 2:
            time.sleep(0.2)
            os._exit(1)
        return x * x


class FlakyInProcess:
    """Raises OSError on the first ``failures`` calls, then answers."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("transient")
        return x + 1


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    make_cohort(folder, 4, shape=SHAPE, spacing=SPACING, seed=3)
    return folder


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """Outputs of an uninterrupted run in this process."""
    out = tmp_path_factory.mktemp("reference")
    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans, out, SegmentConfig())
    assert not report.errors and len(report.rows) == 4
    return file_tree(out)


@pytest.fixture(scope="module")
def dask_executor():
    """``--cluster local --workers 2``: a LocalCluster of 2 processes on 127.0.0.1."""
    pytest.importorskip("distributed", reason=DASK_MISSING)
    with make_executor(cluster="local", workers=2) as executor:
        yield executor


@pytest.fixture()
def dask_client(dask_executor):
    return dask_executor.client


# -- option handling ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, text", [
    ({"cluster": "local", "scheduler": "tcp://127.0.0.1:1"}, "choose one Dask backend"),
    ({"jobs": 2, "cluster": "local"}, "--jobs sets local processes"),
    ({"workers": 2}, "--workers needs --cluster"),
    ({"cluster": "local", "cluster_config": "x.yaml"}, "--cluster-config applies to"),
    ({"cluster": "lsf"}, "unknown cluster 'lsf'"),
    ({"jobs": 0}, "jobs must be at least 1"),
    ({"attempts": 0}, "attempts must be at least 1"),
    ({"cluster": "slurm"}, "needs --workers"),
])
def test_make_executor_rejects_conflicting_options(kwargs, text):
    pytest.importorskip("distributed", reason=DASK_MISSING)
    with pytest.raises(ValueError, match=text):
        make_executor(**kwargs)


def test_make_executor_local_kinds():
    assert isinstance(make_executor(), SerialExecutor)
    executor = make_executor(jobs=3, attempts=2)
    assert isinstance(executor, JoblibExecutor) and executor.jobs == 3 and executor.attempts == 2


def test_missing_scheduler_file_names_it(tmp_path):
    pytest.importorskip("distributed", reason=DASK_MISSING)
    with pytest.raises(InputError, match="scheduler file does not exist"):
        make_executor(scheduler_file=tmp_path / "nope.json")


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("3/8", (3, 8)), ((1, 2), (1, 2))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "1/0"])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shards_partition_the_sorted_ids():
    ids = [f"case_{i:03d}" for i in (7, 2, 9, 0, 4, 11, 5)]
    shards = [shard_items(ids, i, 3) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(ids)
    assert shards[0] == ["case_000", "case_005", "case_011"]
    assert shard_items(list(reversed(ids)), 1, 3) == shards[1]


# -- retries -----------------------------------------------------------------------------------

def test_serial_executor_retries_raised_errors():
    flaky = FlakyInProcess(failures=2)
    assert SerialExecutor(attempts=3).map(flaky, [1]) == [2]
    assert flaky.calls == 3
    results = SerialExecutor(attempts=2).map(FlakyInProcess(failures=5), [1, 2])
    assert isinstance(results[0], TaskFailure) and results[0].attempts == 2
    assert "OSError: transient" in str(results[0]) and "failed 2 times" in str(results[0])


def test_joblib_executor_survives_a_dead_worker(tmp_path):
    results = JoblibExecutor(2).map(DieOnce(tmp_path), list(range(6)))
    assert results == [x * x for x in range(6)]
    assert (tmp_path / "seen-3").exists()


def test_joblib_executor_gives_up_after_attempts():
    results = JoblibExecutor(2, attempts=2).map(DieAlways(), [0, 1, 2, 3])
    assert isinstance(results[2], TaskFailure) and results[2].attempts == 2
    assert "worker process died" in results[2].message
    assert [results[i] for i in (0, 1, 3)] == [0, 1, 9]


def test_dask_executor_reruns_the_task_of_a_killed_worker(dask_client, tmp_path):
    executor = DaskExecutor(dask_client, attempts=3)
    assert executor.map(DieOnce(tmp_path), list(range(5)), keys=[f"s{i}" for i in range(5)]) == [0, 1, 4, 9, 16]
    assert (tmp_path / "seen-3").exists()


# -- identical outputs across backends -------------------------------------------------------

def test_joblib_backend_matches_serial(cohort, reference, tmp_path):
    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans, tmp_path, SegmentConfig(), jobs=2)
    assert report.executor == "joblib, 2 processes"
    assert file_tree(tmp_path) == reference


def test_shards_then_fit_match_serial(cohort, reference, tmp_path):
    scans, _ = find_inputs(cohort)
    first = [segment_cohort(scans, tmp_path, SegmentConfig(), shard=f"{i}/3") for i in range(3)]
    assert sorted(sum((r.pending for r in first), [])) == sorted(s.id for s in scans)
    assert not (tmp_path / "gmm.json").exists() and not (tmp_path / "summary.csv").exists()
    fitted = fit_cohort(tmp_path)
    assert fitted.mixture.n_scans == 4 and not fitted.rows and len(fitted.pending) == 4
    second = [segment_cohort(scans, tmp_path, SegmentConfig(), shard=f"{i}/3") for i in range(3)]
    assert sorted(sum((r.skipped + r.done for r in second), [])) == sorted(s.id for s in scans)
    assert all(not r.pending for r in second)
    final = fit_cohort(tmp_path)
    assert len(final.rows) == 4 and not final.pending
    assert file_tree(tmp_path) == reference


def test_dask_cluster_with_a_killed_worker_matches_serial(cohort, reference, dask_executor, dask_client, tmp_path):
    """A worker is SIGKILLed while it holds a scan; the scan is rerun elsewhere."""
    dask_client.wait_for_workers(2, timeout=60)
    pids = dask_client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for address, keys in dask_client.processing().items():
                if keys and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    scans, _ = find_inputs(cohort)
    killer.start()
    report = segment_cohort(scans, tmp_path, SegmentConfig(), executor=dask_executor)
    killer.join(timeout=5)
    assert report.executor == "dask LocalCluster, 2 workers"
    assert killed, "no worker was busy to kill"
    assert not report.errors and len(report.rows) == 4
    assert file_tree(tmp_path) == reference
    assert not list(tmp_path.glob(".*.part*"))  # a rerun task clears what its dead worker left
    assert killed[0] not in dask_client.scheduler_info()["workers"]


def test_dask_executor_records_a_task_that_kills_every_worker(dask_client):
    """Runs last of the tests on the shared cluster: it leaves workers restarting."""
    dask_client.wait_for_workers(2, timeout=60)
    executor = DaskExecutor(dask_client, attempts=3)
    results = executor.map(DieAlways(), [0, 1, 2, 3])
    assert [results[i] for i in (0, 1, 3)] == [0, 1, 9]
    assert isinstance(results[2], TaskFailure)
    assert re.fullmatch(r"its worker process died each time; last on worker \S+, tcp://127\.0\.0\.1:\d+ "
                        r"\(failed 3 times\)", str(results[2])), str(results[2])


def test_a_worker_killed_by_one_task_takes_no_other_task_with_it():
    """One worker of one thread: the task queued behind the killer must not share its 3 strikes.

    The scheduler counts a death against every task the worker held, so the executor
    gives a worker no more tasks than it has threads.
    """
    pytest.importorskip("distributed")
    with make_executor(cluster="local", workers=1) as executor:
        results = executor.map(DieAlways(), [2, 0, 3], keys=["killer", "a", "b"])
    assert results[1:] == [0, 9]
    assert isinstance(results[0], TaskFailure) and results[0].attempts == 3


# -- SLURM / PBS job scripts -------------------------------------------------------------------

def test_slurm_job_script_from_yaml(tmp_path):
    pytest.importorskip("dask_jobqueue", reason=DASK_MISSING)
    path = tmp_path / "slurm.yaml"
    path.write_text(
        "queue: short\naccount: lungs\ncores: 2\nmemory: 8GiB\nwalltime: '02:30:00'\n"
        "job_extra_directives: ['--qos=normal']\n"
        "job_script_prologue: ['source /opt/radiolab/venv/bin/activate']\n"
        "scheduler_options: {host: 127.0.0.1}\n"
    )
    config = load_cluster_config(path)
    cluster = jobqueue_cluster("slurm", config, attempts=3)
    try:
        script = cluster.job_script()
        assert cluster.scheduler.allowed_failures == 2
    finally:
        cluster.close()
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for expected in ("#SBATCH -p short", "#SBATCH -A lungs", "#SBATCH -n 1", "#SBATCH --cpus-per-task=2",
                     "#SBATCH -t 02:30:00", "#SBATCH --qos=normal", "#SBATCH -J radiolab",
                     "source /opt/radiolab/venv/bin/activate"):
        assert expected in lines, expected
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nthreads 2" in worker and "--memory-limit 8.00GiB" in worker and "tcp://127.0.0.1:" in worker


def test_pbs_job_script():
    pytest.importorskip("dask_jobqueue", reason=DASK_MISSING)
    config = ClusterConfig(queue="workq", cores=4, processes=2, memory="16GiB", walltime="01:00:00",
                           resource_spec="select=1:ncpus=4:mem=16GB", scheduler_options={"host": "127.0.0.1"})
    cluster = jobqueue_cluster("pbs", config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#PBS -q workq" in script and "#PBS -l select=1:ncpus=4:mem=16GB" in script
    assert "#PBS -l walltime=01:00:00" in script and "--nworkers 2" in script


@pytest.mark.parametrize("text, message", [
    ("queue: short\nqueu: long\n", "unknown cluster setting(s) 'queu'; valid settings: queue, account"),
    ("cores: 0\n", "'cores' must be a positive integer"),
    ("cores: 2\nprocesses: 3\n", "exceeds 'cores'"),
    ("job_extra_directives: --qos=x\n", "must be a list of strings"),
    ("- queue\n", "expected a mapping"),
])
def test_cluster_config_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_cluster_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_import_radiolab_segment_loads_no_dask():
    import subprocess

    code = ("import sys, radiolab, radiolab.segment, radiolab.pipeline, radiolab.executors, radiolab.cli.segment; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'dask_jobqueue', "
            "'torch', 'radiomics')))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert output.stdout.strip() == "[]"
