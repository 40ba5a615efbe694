"""`radiolab segment` on real clusters: a single-node SLURM and a plain Dask cluster.

The SLURM tests (marked ``slurm``) need the node that ``.ci/slurm-up.sh`` starts (``make
test`` does so around pytest, ``make test-slurm`` runs these alone). Without it they skip
with the reason; under ``CI=true`` that is a failure instead. Every run goes through
radiolab's own CLI in a subprocess, the way a user runs it, and its outputs are compared
byte for byte with a local ``--jobs 1`` run of the same CLI. Schedulers, workers and the
node all listen on 127.0.0.1 only.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from radiolab.cli import segment as segment_cli
from radiolab.executors import KILL_WORKER_VARIABLE
from radiolab.synthetic import make_cohort

from conftest import SMALL_SHAPE, SMALL_SPACING
from helpers import file_tree

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("SLURM_STATE", ROOT / ".slurm-state"))
JOB_NAME = "radiolab-test-worker"
RUN_TIMEOUT = 240  # s; a hung cluster fails the test instead of the whole CI job


# -- helpers -------------------------------------------------------------------------------

def cli_env(**extra: str) -> dict[str, str]:
    """This environment, with this checkout's radiolab first and the venv's scripts on PATH.

    sbatch exports it to the jobs, so batch jobs and Dask workers run the same code.
    """
    env = {key: value for key, value in os.environ.items() if key != KILL_WORKER_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.update(extra)
    return env


def radiolab(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "radiolab", *args], env=env or cli_env(), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"radiolab did not finish in {RUN_TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    return process.returncode, out, err


def listening_addresses(pids: set[int]) -> set[str]:
    """``ip:port`` of every TCP socket in LISTEN state held by these processes or their children."""
    import psutil

    found = set()
    for pid in pids:
        try:
            family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in family:
            try:
                sockets = process.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            found |= {f"{s.laddr.ip}:{s.laddr.port}" for s in sockets if s.status == psutil.CONN_LISTEN}
    return found


def dask_worker_pids() -> set[int]:
    import psutil

    pids = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any("dask_worker" in part for part in cmdline) or cmdline[1:4] == ["-m", "dask", "worker"]:
            pids.add(process.pid)
    return pids


class SocketWatch(threading.Thread):
    """Collects the listening addresses of a run's processes while it runs."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.addresses, self.done = pids, set(), threading.Event()

    def run(self):
        while not self.done.wait(0.3):
            self.addresses |= listening_addresses(set(self.pids()))

    def stop(self) -> set[str]:
        self.done.set()
        self.join(timeout=10)
        return self.addresses


def assert_loopback_only(addresses: set[str], what: str) -> None:
    assert addresses, f"no listening socket of {what} was seen"
    outside = sorted(a for a in addresses if not a.startswith("127.0.0.1:"))
    assert not outside, f"{what} listen beyond 127.0.0.1: {outside}"


def no_partial_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.part*"))


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four small seeded phantoms (the shapes of tests/conftest.py)."""
    folder = tmp_path_factory.mktemp("cluster-scans")
    make_cohort(folder, 4, shape=SMALL_SHAPE, spacing=SMALL_SPACING, seed=21)
    return folder


def local_run(inputs: Path, out: Path) -> dict[str, bytes]:
    assert segment_cli.main(["--in", str(inputs), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    return file_tree(out)


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """Outputs of ``radiolab segment --jobs 1`` (this process) on the cohort."""
    return local_run(cohort, tmp_path_factory.mktemp("cluster-reference"))


@pytest.fixture(scope="session")
def slurm():
    """The running single-node SLURM: ``{"log": slurmctld log path}``; a skip (CI: a failure) without it."""
    pytest.importorskip("dask_jobqueue")
    reason = None
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        reason = "SLURM client commands (sbatch, sinfo) are not installed"
    else:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        if state.returncode != 0 or not re.search(r"^(idle|mixed|allocated)", state.stdout, re.M):
            reason = f"no SLURM node is up (sinfo: {(state.stdout + state.stderr).strip() or 'nothing'})"
    if reason is not None:
        recorded = STATE.read_text().splitlines() if STATE.exists() else []
        why = [line[len("skip: "):] for line in recorded if line.startswith("skip: ")]
        reason = f"{why[0] if why else reason}; .ci/slurm-up.sh (as root) starts a single-node SLURM"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM tests: {reason}")
        pytest.skip(reason)
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    log = Path(re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", config, re.M).group(1))
    return {"log": log}


def slurm_yaml(folder: Path) -> Path:
    """The cluster config of docs/batch.md, sized for the test node."""
    path = folder / "slurm.yaml"
    path.write_text(
        "cores: 1\n"
        "processes: 1\n"
        "memory: 1GiB\n"
        'walltime: "00:10:00"\n'
        f"job_name: {JOB_NAME}\n"
        f"log_directory: {folder / 'logs'}\n"
        "scheduler_options: {host: 127.0.0.1}\n"
        'worker_extra_args: ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]\n'
    )
    return path


def worker_job_ids(folder: Path) -> list[int]:
    """Job ids of the Dask worker jobs, from their log files ``<job_name>-<id>.err``."""
    return sorted(int(p.stem.rsplit("-", 1)[1]) for p in (folder / "logs").glob(f"{JOB_NAME}-*.err"))


def slurm_jobs_running(ids) -> set[int]:
    """The ids (of a job or of a whole job array) still in the queue."""
    listed = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True, check=True).stdout
    return {int(i) for i in listed.split()} & set(ids)


def wait_until_gone(ids, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while slurm_jobs_running(ids):
        assert time.monotonic() < deadline, f"SLURM jobs {sorted(slurm_jobs_running(ids))} still queued"
        time.sleep(0.5)


# -- SLURM through dask-jobqueue -----------------------------------------------------------

@pytest.mark.slurm
def test_slurm_workers_match_a_local_run(slurm, cohort, reference, tmp_path):
    out = tmp_path / "out"
    log_start = slurm["log"].stat().st_size
    process = radiolab("segment", "--in", str(cohort), "--out", str(out), "--cluster", "slurm",
                       "--workers", "2", "--cluster-config", str(slurm_yaml(tmp_path)), "--quiet")
    watch = SocketWatch(lambda: {process.pid} | dask_worker_pids())
    watch.start()
    code, stdout, stderr = finish(process)
    addresses = watch.stop()
    assert code == 0, stderr
    assert file_tree(out) == reference
    jobs = worker_job_ids(tmp_path)
    assert len(jobs) == 2, f"expected 2 worker jobs, found logs of {jobs}"
    log = slurm["log"].read_text()[log_start:]
    for job in jobs:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job}\b", log), f"job {job} not submitted"
        # Started by the main scheduler or by backfill, which log it differently.
        started = rf"(sched: Allocate JobId={job} NodeList=|sched/backfill: _start_job: Started JobId={job} )"
        assert re.search(started, log), f"job {job} never started"
    wait_until_gone(jobs, timeout=60)  # released when the run ends
    assert_loopback_only(addresses, "the scheduler and the SLURM-started workers")


@pytest.mark.slurm
def test_a_cancelled_worker_job_is_survived(slurm, cohort, reference, tmp_path):
    """``scancel`` one worker job while it runs a scan: the scan is rerun on the other worker."""
    from distributed import Client

    out = tmp_path / "out"
    log_start = slurm["log"].stat().st_size
    process = radiolab("segment", "--in", str(cohort), "--out", str(out), "--cluster", "slurm",
                       "--workers", "2", "--cluster-config", str(slurm_yaml(tmp_path)), "--quiet")
    cancelled = {}
    try:
        # The scheduler's address, from a worker job's command line; then wait for a busy worker.
        # Only an address this run's process listens on: a worker of an earlier test that is
        # still exiting names a scheduler that is gone.
        import psutil

        deadline = time.monotonic() + 120
        address = None
        while address is None and time.monotonic() < deadline and process.poll() is None:
            ours = {f"tcp://{a}" for a in listening_addresses({process.pid})}
            for pid in dask_worker_pids():
                try:
                    cmdline = psutil.Process(pid).cmdline()
                except psutil.NoSuchProcess:
                    continue
                with_scheduler = [a for a in cmdline if a in ours]
                if with_scheduler:
                    address = with_scheduler[0]
            time.sleep(0.2)
        assert address, "no worker job connected"
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
            job_of = client.run(lambda: os.environ["SLURM_JOB_ID"])
            while not cancelled and time.monotonic() < deadline:
                for worker, keys in client.processing().items():
                    if keys and worker in job_of:
                        subprocess.run(["scancel", job_of[worker]], check=True)
                        cancelled.update(job=int(job_of[worker]), worker=worker, keys=list(keys))
                        break
                time.sleep(0.01)
    finally:
        code, stdout, stderr = finish(process)
    assert cancelled, "no worker was busy to cancel"
    assert code == 0, stderr
    assert file_tree(out) == reference  # the cancelled worker's scans were rerun
    assert not no_partial_files(out)
    log = slurm["log"].read_text()[log_start:]
    assert re.search(rf"REQUEST_KILL_JOB JobId={cancelled['job']}\b", log), "the cancel is not in the log"
    others = [job for job in worker_job_ids(tmp_path) if job != cancelled["job"]]
    assert others, "no other worker job ran"


@pytest.mark.slurm
def test_a_scan_that_kills_its_worker_every_time_is_recorded(slurm, cohort, reference, tmp_path):
    """The fault switch kills the worker on case_001 each time: it fails after 3 deaths, the others complete."""
    victim = "case_001"
    out = tmp_path / "out"
    process = radiolab("segment", "--in", str(cohort), "--out", str(out), "--cluster", "slurm",
                       "--workers", "2", "--cluster-config", str(slurm_yaml(tmp_path)), "--quiet",
                       env=cli_env(**{KILL_WORKER_VARIABLE: victim}))
    code, stdout, stderr = finish(process)
    assert code == 1, stderr
    with open(out / "errors.csv", newline="") as handle:
        errors = list(csv.DictReader(handle))
    assert [row["id"] for row in errors] == [victim]
    assert "its worker process died each time" in errors[0]["message"]
    assert "failed 3 times" in errors[0]["message"]
    # The other three scans equal a local run on those three alone (the pooled fit leaves the victim out).
    survivors = tmp_path / "survivors"
    survivors.mkdir()
    for scan in sorted(cohort.glob("*.nrrd")):
        if not scan.name.startswith(victim):
            shutil.copy(scan, survivors / scan.name)
    expected = local_run(survivors, tmp_path / "expected")
    expected.pop("errors.csv")
    produced = {name: data for name, data in file_tree(out).items()
                if name not in ("errors.csv", f"{victim}_error.json")}
    assert produced == expected
    assert not no_partial_files(out)
    # The worker logs name the scan each time the switch fired: what docs/batch.md tells users to grep.
    fired = sum(p.read_text().count(f"kills itself on task {victim!r}") for p in (tmp_path / "logs").glob("*.err"))
    assert fired == 3


# -- SLURM job arrays: the README recipe ---------------------------------------------------

def recipe_blocks(markdown: str) -> tuple[str, str]:
    """The job script and the submission lines of the shard recipe in a Markdown file."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    script = [b for b in blocks if "# segment-array.sh" in b]
    submit = [b for b in blocks if "sbatch --parsable --array" in b]
    assert len(script) == 1 and len(submit) == 1, "the shard recipe is not found"
    return script[0], submit[0]


@pytest.mark.slurm
def test_readme_job_array_recipe_matches_a_local_run(slurm, cohort, reference, tmp_path):
    readme = recipe_blocks((ROOT / "README.md").read_text())
    assert recipe_blocks((ROOT / "docs" / "batch.md").read_text()) == readme, "docs/batch.md shows another recipe"
    script, submit = readme
    out = tmp_path / "labels"
    # Only the paths, N and the memory request change, to fit the test node.
    changes = {"/data/scans": str(cohort), "/data/labels": str(out), "N=64": "N=2", "--mem=8G": "--mem=1G"}
    for old, new in changes.items():
        assert old in script + submit, f"the recipe no longer has {old!r}"
        script, submit = script.replace(old, new), submit.replace(old, new)
    (tmp_path / "segment-array.sh").write_text(script)
    # Submitted to a stopped partition, so that the chain of dependencies can be read
    # before anything runs: on this small node the jobs would also run in order without it.
    partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(["scontrol", "update", f"PartitionName={partition}", "State=DOWN"], check=True)
    try:
        submitted = subprocess.run(["bash", "-euo", "pipefail", "-c", submit], cwd=tmp_path, env=cli_env(),
                                   capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 0, submitted.stderr
        queue = subprocess.run(["squeue", "-h", "-o", "%F|%K|%E"], capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["scontrol", "update", f"PartitionName={partition}", "State=UP"], check=True)
    last = int(re.search(r"Submitted batch job (\d+)", submitted.stdout).group(1))
    jobs = sorted((int(job), tasks, after) for job, tasks, after in (line.split("|") for line in queue.split()))
    jobs = [job for job in jobs if job[0] <= last][-4:]
    try:
        check_recipe_run(jobs, last, out, reference, tmp_path)
    finally:  # nothing of a failed run stays queued
        subprocess.run(["scancel", *(str(job[0]) for job in jobs)], check=False)


def check_recipe_run(jobs, last, out, reference, tmp_path):
    """The queued chain map -> reduce -> map -> reduce, then the outputs once it has run."""
    (masks, mask_tasks, _), (fit, _, fit_after), (labels, label_tasks, label_after), (final, _, final_after) = jobs
    assert mask_tasks == label_tasks == "0-1"  # two arrays of N = 2 shards
    assert fit_after == f"afterany:{masks}_*(unfulfilled)"  # the fit waits for every mask shard,
    assert label_after == f"afterany:{fit}(unfulfilled)"  # the labels for the fit,
    assert final_after == f"afterany:{labels}_*(unfulfilled)" and final == last  # the tables for every label shard
    wait_until_gone([job[0] for job in jobs])
    logs = {p.name: p.read_text() for p in sorted(tmp_path.glob("slurm-*.out"))}
    assert file_tree(out) == reference, json.dumps(logs, indent=1)
    assert not no_partial_files(out)
    assert len(logs) == 2 + 2 + 2, f"expected 2 + 2 array tasks and 2 fits, got {sorted(logs)}"


# -- a plain Dask cluster ------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1: (address, scheduler file, pids)."""
    pytest.importorskip("distributed")
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    logs = []
    processes = []

    def start(args, name):
        log = open(folder / f"{name}.log", "w")
        logs.append(log)
        processes.append(subprocess.Popen(dask + args, env=cli_env(), stdout=log, stderr=subprocess.STDOUT))

    # --no-dashboard leaves an HTTP server (metrics) on --dashboard-address: keep it on loopback.
    loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    start(["scheduler", *loopback, "--port", "0", "--scheduler-file", str(scheduler_file)], "scheduler")
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None, (folder / "scheduler.log").read_text()
            time.sleep(0.2)
        for index in range(2):
            start(["worker", "--scheduler-file", str(scheduler_file), *loopback, "--nthreads", "1",
                   "--name", f"worker-{index}"], f"worker-{index}")
        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address, scheduler_file, {p.pid for p in processes}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


@pytest.mark.parametrize("option", ["--scheduler", "--scheduler-file"])
def test_plain_dask_cluster_matches_a_local_run(dask_scheduler, cohort, reference, tmp_path, option):
    address, scheduler_file, pids = dask_scheduler
    assert address.startswith("tcp://127.0.0.1:")
    out = tmp_path / "out"
    target = address if option == "--scheduler" else str(scheduler_file)
    process = radiolab("segment", "--in", str(cohort), "--out", str(out), option, target, "--quiet")
    watch = SocketWatch(lambda: pids | {process.pid})
    watch.start()
    code, stdout, stderr = finish(process)
    addresses = watch.stop()
    assert code == 0, stderr
    assert file_tree(out) == reference
    assert_loopback_only(addresses, "the Dask scheduler and workers")
