"""Where per-scan tasks run: this process, a local joblib pool, or a Dask cluster.

An :class:`Executor` applies one picklable function to a list of items and returns the
results in input order. A task that raises, or whose worker process dies, is tried
again up to ``attempts`` times in all; after that its slot holds a
:class:`TaskFailure` and the other items are unaffected.

Backends
--------
``SerialExecutor``
    This process, one item after another (``jobs=1``).
``JoblibExecutor``
    A local pool of ``jobs`` processes (joblib's loky backend).
``DaskExecutor``
    A ``distributed.Client``: a ``LocalCluster`` of worker processes
    (``cluster="local"``), a running scheduler (``scheduler="tcp://host:port"`` or
    ``scheduler_file=...``), or SLURM/PBS jobs started through dask-jobqueue
    (``cluster="slurm"`` / ``"pbs"``, job settings from a YAML file). In-task errors
    are retried with Dask's ``retries=``; a task whose worker dies is rescheduled by the
    scheduler until ``attempts`` workers have died running it (``allowed_failures``).
    No more tasks are submitted than the cluster has worker threads, so that a dying
    worker holds only the tasks it was running (the scheduler blames all it held).

Dask, distributed and dask-jobqueue are imported only inside the functions that use
them.

Test-only fault switch
----------------------
``RADIOLAB_TEST_KILL_WORKER_ON=<scan id>`` in a Dask worker's environment makes that
worker process SIGKILL itself whenever it starts the task of that scan (after a line on
its stderr), as an out-of-memory kill would. The tests use it to check that such a scan
ends in ``errors.csv`` after ``attempts`` worker deaths while the others complete. It is
read on the worker only; never set it for real work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from radiolab.errors import InputError, OptionalDependencyError, ParameterError, RadiolabError
from radiolab.lung import KERNEL_THREADS_VARIABLE

DEFAULT_ATTEMPTS = 3
CLUSTER_KINDS = ("local", "slurm", "pbs")
KILL_WORKER_VARIABLE = "RADIOLAB_TEST_KILL_WORKER_ON"


class BackendError(RadiolabError):
    """A pool or cluster could not be started or reached."""


@dataclass(frozen=True)
class TaskFailure:
    """An item whose task failed on every attempt.

    Attributes
    ----------
    message : str
        The last error, one line (``ExceptionType: text``).
    attempts : int
        How many times the task was tried.
    traceback : str
        The last error's traceback ("" when the worker process died).
    """

    message: str
    attempts: int
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.message} (failed {self.attempts} time{'s' if self.attempts != 1 else ''})"


def _one_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


class _NoProgressBar:
    """Stands in for a tqdm bar when progress is off (as a context manager too)."""

    def __enter__(self) -> "_NoProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, description: str, progress: bool):
    if not progress:  # tqdm not even imported (it starts a monitor thread)
        return _NoProgressBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="scan", disable=None, leave=False)


class Executor:
    """Runs one function over many items; subclasses choose where.

    Use as a context manager so that pools and clusters it started are shut down.
    """

    name = "executor"

    def __init__(self, *, attempts: int = DEFAULT_ATTEMPTS) -> None:
        if attempts < 1:
            raise ParameterError(f"attempts must be at least 1, got {attempts}")
        self.attempts = attempts

    @property
    def in_process(self) -> bool:
        """True when tasks run in this process (results may hold large arrays)."""
        return False

    def map(self, function: Callable[[Any], Any], items: Sequence[Any], *, description: str = "",
            progress: bool = False, keys: Sequence[str] | None = None) -> list[Any]:
        """``[function(item) for item in items]``, a :class:`TaskFailure` where it failed.

        See `imap` for the parameters.
        """
        results: list[Any] = [None] * len(items)
        for index, result in self.imap(function, items, description=description, progress=progress, keys=keys):
            results[index] = result
        return results

    def imap(self, function: Callable[[Any], Any], items: Sequence[Any], *, description: str = "",
             progress: bool = False, keys: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """``(index, function(items[index]))`` pairs as tasks finish, in any order.

        A :class:`TaskFailure` stands for the result of a task that failed on every
        attempt. Consuming results as they come keeps only one in memory at a time.

        Parameters
        ----------
        function : callable
            Picklable (a module-level function or an instance of a module-level class).
        items : sequence
            Picklable inputs.
        description : str
            Label of the progress bar.
        progress : bool
            Show a progress bar (only when stderr is a terminal).
        keys : sequence of str, optional
            A readable name per item (the scan id); Dask uses it in task keys.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the pool or cluster (no-op for executors that own none)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def describe(self) -> str:
        return self.name


def _attempt(function: Callable[[Any], Any], item: Any, attempts: int) -> Any:
    """Call ``function(item)`` up to ``attempts`` times; a TaskFailure if all raise."""
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            return function(item)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # retried: the task decides which errors are final
            last = error
    assert last is not None
    return TaskFailure(_one_line(last), attempts, _traceback_text(last))


def _traceback_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


class SerialExecutor(Executor):
    """Every task in this process, in order."""

    name = "serial"

    @property
    def in_process(self) -> bool:
        return True

    def imap(self, function, items, *, description="", progress=False, keys=None):
        bar = _progress_bar(len(items), description, progress)
        try:
            for index, item in enumerate(items):
                result = _attempt(function, item, self.attempts)
                bar.update()
                yield index, result
        finally:
            bar.close()


class _Indexed:
    """``(index, item) -> (index, outcome)`` with in-process retries (joblib tasks)."""

    def __init__(self, function, attempts):
        self.function, self.attempts = function, attempts

    def __call__(self, pair):
        index, item = pair
        return index, _attempt(self.function, item, self.attempts)


class JoblibExecutor(Executor):
    """A local pool of ``jobs`` worker processes (joblib, loky backend).

    Errors raised by a task are retried inside its worker. When a worker process dies
    (killed, out of memory) joblib stops the whole pool: the unfinished items are run
    again in a fresh pool, each such round counting as one attempt for every item
    that was still unfinished.
    """

    name = "joblib"

    def __init__(self, jobs: int, *, attempts: int = DEFAULT_ATTEMPTS) -> None:
        super().__init__(attempts=attempts)
        if jobs < 1:
            raise ParameterError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def describe(self) -> str:
        return f"joblib, {self.jobs} processes"

    def imap(self, function, items, *, description="", progress=False, keys=None):
        from joblib import Parallel, delayed

        pending = list(range(len(items)))
        deaths = 0
        bar = _progress_bar(len(items), description, progress)
        task = _Indexed(function, self.attempts)
        try:
            while pending:
                finished: set[int] = set()
                try:
                    # Never n_jobs=1: joblib would run in this process, where a crash is fatal.
                    # Each worker's multi-threaded kernels get their share of the cores; the
                    # workers start with the first task, so the setting spans the whole loop.
                    with kernel_threads(max(1, (os.cpu_count() or 1) // self.jobs)):
                        parallel = Parallel(n_jobs=max(self.jobs, 2), return_as="generator_unordered")
                        for index, outcome in parallel(delayed(task)((i, items[i])) for i in pending):
                            finished.add(index)
                            bar.update()
                            yield index, outcome
                except Exception as error:  # a dead worker breaks the pool
                    if not _is_pool_death(error):
                        raise
                    deaths += 1
                    pending = [i for i in pending if i not in finished]
                    if deaths >= self.attempts:
                        for index in pending:
                            bar.update()
                            yield index, TaskFailure(f"worker process died: {_one_line(error)}", deaths)
                        pending = []
                    continue
                pending = []
        finally:
            bar.close()


def _is_pool_death(error: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(error, BrokenProcessPool):
        return True
    try:
        from joblib.externals.loky.process_executor import TerminatedWorkerError
    except ImportError:  # pragma: no cover - joblib always vendors loky
        return False
    return isinstance(error, TerminatedWorkerError)


class DaskExecutor(Executor):
    """Tasks on a Dask ``distributed`` cluster through a ``Client``.

    Parameters
    ----------
    client : distributed.Client
        Connected client.
    attempts : int
        Tries per task: ``retries=attempts - 1`` for errors raised by the task. Worker
        deaths are counted by the scheduler (its ``allowed_failures``, which the
        clusters started here set to ``attempts - 1``).
    owned : tuple
        Objects (cluster, client) to close with the executor, last first.
    """

    name = "dask"

    def __init__(self, client, *, attempts: int = DEFAULT_ATTEMPTS, owned: tuple = (),
                 label: str = "dask") -> None:
        super().__init__(attempts=attempts)
        self.client = client
        self._owned = owned
        self._label = label

    def describe(self) -> str:
        return self._label

    def imap(self, function, items, *, description="", progress=False, keys=None):
        if not items:
            return
        from dask.base import tokenize
        from distributed import wait

        # Task keys carry the scan id (readable in the dashboard) and a token of the
        # call, so that two runs on one scheduler never share results.
        token = tokenize(function, os.getpid(), id(items), len(items))[:10]
        names = [str(k) for k in keys] if keys is not None else [str(i) for i in range(len(items))]
        prefix = description.replace(" ", "-") or "task"
        task = _WorkerTask(function)
        waiting = list(range(len(items)))
        waiting.reverse()  # popped from the end: submitted in input order
        running: dict[Any, int] = {}
        bar = _progress_bar(len(items), description, progress)
        try:
            while waiting or running:
                # No more tasks in flight than worker threads: the scheduler blames every
                # task a dead worker held, so a worker must hold only the scans it runs,
                # or one scan that kills its worker would fail its queued neighbours too.
                capacity = max(1, sum(self.client.nthreads().values()))
                while waiting and len(running) < capacity:
                    index = waiting.pop()
                    future = self.client.submit(task, items[index], names[index], retries=self.attempts - 1,
                                                key=f"{prefix}-{names[index]}-{token}", pure=False)
                    running[future] = index
                try:  # the timeout lets new workers (a batch job starting) get work
                    finished, _ = wait(list(running), timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for future in finished:
                    outcome = self._outcome(future)
                    bar.update()
                    yield running.pop(future), outcome
        finally:
            bar.close()
            for future in running:
                future.release()

    def _outcome(self, future) -> Any:
        # result(), not the status: a finished result held by a worker that died
        # meanwhile is "lost" and recomputed by the scheduler, and result() waits.
        try:
            result = future.result()
        except Exception as error:  # the task raised, or its workers kept dying
            result = TaskFailure(_describe_dask_error(error), _dask_attempts(error, self.attempts),
                                 _traceback_text(error))
        except BaseException as error:  # a cancelled future (asyncio's CancelledError)
            if "Cancelled" not in type(error).__name__:
                raise
            result = TaskFailure(f"task cancelled: {error}", self.attempts)
        future.release()
        return result

    def close(self) -> None:
        for thing in reversed(self._owned):
            try:
                thing.close()
            except Exception:  # pragma: no cover - best effort at shutdown
                pass
        self._owned = ()


class _WorkerTask:
    """``function(item)`` on a Dask worker, behind the test-only fault switch."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __call__(self, item: Any, name: str) -> Any:
        if os.environ.get(KILL_WORKER_VARIABLE) == name:
            print(f"radiolab: {KILL_WORKER_VARIABLE}={name}: worker process {os.getpid()} kills itself "
                  f"on task {name!r} (test-only fault switch)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return self.function(item)


def _dask_attempts(error: BaseException, attempts: int) -> int:
    from distributed import KilledWorker

    return error.allowed_failures + 1 if isinstance(error, KilledWorker) else attempts


def _describe_dask_error(error: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        # The address is what the worker's log names ("Start worker at: ..."): grep for it.
        last = error.last_worker
        return f"its worker process died each time; last on worker {last.name}, {last.address}"
    return _one_line(error)


# -- cluster settings ------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterConfig:
    """Job settings of a SLURM or PBS cluster started through dask-jobqueue.

    Read from YAML with :func:`load_cluster_config`; every key is a field here and is
    passed to ``dask_jobqueue.SLURMCluster`` / ``PBSCluster`` under the same name.

    Attributes
    ----------
    queue : str, optional
        Partition (SLURM) or queue (PBS).
    account : str, optional
        Account charged for the jobs.
    cores : int
        Cores per job (one worker thread each unless ``processes`` splits them).
    processes : int
        Worker processes per job; radiolab tasks are single scans, so 1 worker per
        scan-sized memory slice is typical.
    memory : str
        Memory per job, e.g. ``"16GiB"``; a worker needs about 8 x the scan's voxel
        count in bytes (a 512 x 512 x 400 scan: ~1 GiB).
    walltime : str
        Job time limit, ``HH:MM:SS``.
    job_name : str
        Name of the jobs in the queue.
    job_extra_directives : list of str
        Extra ``#SBATCH`` / ``#PBS`` lines, without the prefix (e.g. ``--qos=short``).
    job_script_prologue : list of str
        Shell lines run before the worker starts (``module load``, ``source venv``).
    worker_extra_args : list of str
        Extra arguments of ``dask worker``.
    local_directory : str, optional
        Node-local scratch folder for the workers.
    log_directory : str, optional
        Folder for the job logs.
    interface : str, optional
        Network interface of workers and scheduler (e.g. ``ib0``).
    python : str, optional
        Python executable on the nodes (default: this one).
    resource_spec : str, optional
        PBS ``-l`` resource request (PBS only).
    scheduler_options : dict
        Options of the scheduler started in this process (``host``, ``port``,
        ``dashboard_address``; the dashboard is off unless given).
    """

    queue: str | None = None
    account: str | None = None
    cores: int = 1
    processes: int = 1
    memory: str = "4GiB"
    walltime: str = "01:00:00"
    job_name: str = "radiolab"
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    worker_extra_args: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None
    interface: str | None = None
    python: str | None = None
    resource_spec: str | None = None
    scheduler_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("cores", "processes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"cluster setting {name!r} must be a positive integer, got {value!r}")
        if self.processes > self.cores:
            raise ParameterError(f"cluster setting 'processes' ({self.processes}) exceeds 'cores' ({self.cores})")
        for name in ("job_extra_directives", "job_script_prologue", "worker_extra_args"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ParameterError(f"cluster setting {name!r} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("queue", "account", "memory", "walltime", "job_name", "local_directory",
                     "log_directory", "interface", "python", "resource_spec"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ParameterError(f"cluster setting {name!r} must be a string, got {value!r}")
        if not isinstance(self.scheduler_options, dict):
            raise ParameterError(f"cluster setting 'scheduler_options' must be a mapping, got {self.scheduler_options!r}")

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "cluster config") -> "ClusterConfig":
        """Build from a mapping; an unknown key is an error that lists the valid ones.

        Raises
        ------
        InputError
            Naming ``source``, if ``data`` is not a mapping, has an unknown key or a bad value.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(source, f"expected a mapping of cluster settings, got {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise InputError(source, f"unknown cluster setting(s) {', '.join(map(repr, unknown))}; "
                                     f"valid settings: {', '.join(valid)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise InputError(source, str(error)) from None

    def jobqueue_kwargs(self, kind: str) -> dict[str, Any]:
        """Keyword arguments of ``SLURMCluster`` (``kind="slurm"``) or ``PBSCluster``."""
        kwargs: dict[str, Any] = {
            "cores": self.cores, "processes": self.processes, "memory": self.memory,
            "walltime": self.walltime, "job_name": self.job_name,
            "job_extra_directives": list(self.job_extra_directives),
            "job_script_prologue": list(self.job_script_prologue),
            "worker_extra_args": list(self.worker_extra_args),
        }
        for name in ("queue", "account", "local_directory", "log_directory", "interface", "python"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if kind == "pbs" and self.resource_spec is not None:
            kwargs["resource_spec"] = self.resource_spec
        elif self.resource_spec is not None:
            raise ParameterError("cluster setting 'resource_spec' applies to PBS only")
        return kwargs


def load_cluster_config(path: str | os.PathLike[str] | None) -> ClusterConfig:
    """Read a :class:`ClusterConfig` from a YAML file (defaults when ``path`` is None).

    Raises
    ------
    InputError
        Naming the file, if it is missing, not YAML, or holds an unknown key or bad value.
    """
    if path is None:
        return ClusterConfig()
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "cluster config file does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None
    return ClusterConfig.from_mapping(data, source=path)


# -- making executors ------------------------------------------------------------------

def _import_distributed(feature: str):
    try:
        import distributed
    except ImportError:
        raise OptionalDependencyError("dask[distributed]", feature, extra="dask") from None
    return distributed


@contextlib.contextmanager
def kernel_threads(count: int):
    """Set RADIOLAB_KERNEL_THREADS for worker processes started inside the block.

    The distance transforms of the lung mask use this many threads per process, so
    that N workers on one machine do not oversubscribe its cores.
    """
    previous = os.environ.get(KERNEL_THREADS_VARIABLE)
    os.environ[KERNEL_THREADS_VARIABLE] = str(count)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(KERNEL_THREADS_VARIABLE, None)
        else:
            os.environ[KERNEL_THREADS_VARIABLE] = previous


def local_cluster(workers: int, *, attempts: int = DEFAULT_ATTEMPTS, threads_per_worker: int = 1,
                  memory_limit: str | float | None = "auto"):
    """A ``distributed.LocalCluster`` of worker processes on the loopback interface.

    Parameters
    ----------
    workers : int
        Worker processes (one scan at a time each).
    attempts : int
        A task is declared failed once ``attempts`` workers died running it.
    threads_per_worker : int
        Threads per worker; radiolab's per-scan tasks are written for 1.
    memory_limit : str or float, optional
        Per-worker memory limit (Dask's syntax); ``"auto"`` shares the machine's memory.

    Returns
    -------
    distributed.LocalCluster
        Listening on 127.0.0.1 only, dashboard disabled.
    """
    distributed = _import_distributed("--cluster local")
    if workers < 1:
        raise ParameterError(f"workers must be at least 1, got {workers}")
    with kernel_threads(max(1, (os.cpu_count() or 1) // workers)):
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
            host="127.0.0.1", dashboard_address=None, memory_limit=memory_limit,
            # The scheduler's HTTP server (metrics only, no dashboard) on a free loopback port.
            scheduler_kwargs={"allowed_failures": attempts - 1, "dashboard": False,
                              "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )


def jobqueue_cluster(kind: str, config: ClusterConfig = ClusterConfig(), *,
                     attempts: int = DEFAULT_ATTEMPTS):
    """A SLURM or PBS cluster of Dask workers started as batch jobs (dask-jobqueue).

    No job is submitted until the cluster is scaled (``cluster.scale(n)``).

    Parameters
    ----------
    kind : {"slurm", "pbs"}
    config : ClusterConfig
        Queue, account, cores, memory, walltime and the rest of the job settings.
    attempts : int
        A task is declared failed once ``attempts`` workers died running it.
    """
    if kind not in ("slurm", "pbs"):
        raise ParameterError(f"unknown job-queue cluster {kind!r}; valid: slurm, pbs")
    _import_distributed(f"--cluster {kind}")
    try:
        import dask_jobqueue
    except ImportError:
        raise OptionalDependencyError("dask-jobqueue", f"--cluster {kind}", extra="dask") from None
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    options = dict(config.scheduler_options)
    # No dashboard unless its address is given; the HTTP server then takes a free port.
    options.setdefault("dashboard", "dashboard_address" in options)
    # On the scheduler's host: with `host: 127.0.0.1` nothing listens beyond loopback.
    options.setdefault("dashboard_address", f"{options.get('host', '')}:0")
    scheduler_options = {**options, "allowed_failures": attempts - 1}
    return cls(scheduler_options=scheduler_options, **config.jobqueue_kwargs(kind))


def make_executor(
    *,
    jobs: int = 1,
    cluster: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    cluster_config: str | os.PathLike[str] | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> Executor:
    """The executor named by the backend options (the CLI's ``--jobs``, ``--cluster`` ...).

    Parameters
    ----------
    jobs : int
        Local joblib processes; 1 runs everything in this process.
    cluster : {"local", "slurm", "pbs"}, optional
        Start a Dask cluster: a ``LocalCluster`` of processes, or batch jobs.
    workers : int, optional
        Dask workers to start (default 2 for ``local``; required for slurm/pbs).
    scheduler : str, optional
        Address of a running Dask scheduler, ``tcp://host:port``.
    scheduler_file : str or os.PathLike, optional
        Scheduler file written by ``dask scheduler --scheduler-file``.
    cluster_config : str or os.PathLike, optional
        YAML file of :class:`ClusterConfig` settings (slurm/pbs).
    attempts : int
        Tries per scan before it is recorded as failed.

    Raises
    ------
    ParameterError
        If options conflict (two backends, ``workers`` without ``cluster`` ...).
    InputError
        If the cluster config or scheduler file is missing or invalid.
    OptionalDependencyError
        If Dask (or dask-jobqueue) is needed and not installed.
    """
    chosen = [name for name, value in (("--cluster", cluster), ("--scheduler", scheduler),
                                        ("--scheduler-file", scheduler_file)) if value is not None]
    if len(chosen) > 1:
        raise ParameterError(f"choose one Dask backend; got {' and '.join(chosen)}")
    if attempts < 1:
        raise ParameterError(f"attempts must be at least 1, got {attempts}")
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, got {jobs}")
    if chosen and jobs != 1:
        raise ParameterError(f"--jobs sets local processes; with {chosen[0]} set --workers (or the cluster's size)")
    if workers is not None and cluster is None:
        raise ParameterError("--workers needs --cluster (local, slurm or pbs)")
    if workers is not None and workers < 1:
        raise ParameterError(f"workers must be at least 1, got {workers}")
    if cluster_config is not None and cluster not in ("slurm", "pbs"):
        raise ParameterError("--cluster-config applies to --cluster slurm or pbs")
    if cluster is not None and cluster not in CLUSTER_KINDS:
        raise ParameterError(f"unknown cluster {cluster!r}; valid clusters: {', '.join(CLUSTER_KINDS)}")
    if not chosen:
        return SerialExecutor(attempts=attempts) if jobs == 1 else JoblibExecutor(jobs, attempts=attempts)

    distributed = _import_distributed(chosen[0])
    try:
        return _dask_executor(distributed, cluster=cluster, workers=workers, scheduler=scheduler,
                              scheduler_file=scheduler_file, cluster_config=cluster_config, attempts=attempts)
    except (OSError, RuntimeError, TimeoutError) as error:
        raise BackendError(f"cannot start or reach the Dask backend ({chosen[0]}): {_one_line(error)}") from error


def _dask_executor(distributed, *, cluster, workers, scheduler, scheduler_file, cluster_config,
                   attempts) -> DaskExecutor:
    if scheduler is not None:
        client = distributed.Client(scheduler)
        return DaskExecutor(client, attempts=attempts, owned=(client,), label=f"dask scheduler {scheduler}")
    if scheduler_file is not None:
        scheduler_file = os.fspath(scheduler_file)
        if not os.path.isfile(scheduler_file):
            raise InputError(scheduler_file, "scheduler file does not exist")
        client = distributed.Client(scheduler_file=scheduler_file)
        return DaskExecutor(client, attempts=attempts, owned=(client,),
                            label=f"dask scheduler from {scheduler_file}")
    if cluster == "local":
        count = 2 if workers is None else workers
        started = local_cluster(count, attempts=attempts)
        label = f"dask LocalCluster, {count} workers"
    else:
        if workers is None:
            raise ParameterError(f"--cluster {cluster} needs --workers N")
        started = jobqueue_cluster(cluster, load_cluster_config(cluster_config), attempts=attempts)
        started.scale(workers)
        label = f"dask {cluster.upper()} cluster, {workers} workers"
    try:
        client = distributed.Client(started)
    except BaseException:
        started.close()
        raise
    return DaskExecutor(client, attempts=attempts, owned=(started, client), label=label)


# -- shards ----------------------------------------------------------------------------

def parse_shard(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``.

    Raises
    ------
    ParameterError
        If the text is not of the form ``i/N`` or ``i`` is out of range.
    """
    if isinstance(text, tuple):
        index, count = text
    else:
        try:
            left, right = str(text).split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise ParameterError(f"shard must read i/N (e.g. 0/8), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ParameterError(f"shard index must satisfy 0 <= i < N, got {index}/{count}")
    return index, count


def shard_items(ids: Iterable[str], index: int, count: int) -> list[str]:
    """The ids of shard ``index`` of ``count``: every count-th id of the sorted ids.

    Every id falls in exactly one shard, whatever order the ids are listed in.

    >>> shard_items(["c", "a", "d", "b", "e"], 1, 2)
    ['b', 'd']
    """
    return [item for position, item in enumerate(sorted(ids)) if position % count == index]
