"""The cohort run: map (masks, histograms), reduce (pooled fit), map (labels), tables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from radiolab.errors import InputError, RadiolabError
from radiolab.executors import DEFAULT_ATTEMPTS, Executor, make_executor, parse_shard, shard_items
from radiolab.io import remove_partial_writes
from radiolab.log import scan_logger
from radiolab.mixture import Histogram, TissueMixture
from radiolab.segment.config import SegmentConfig
from radiolab.segment.inputs import ScanInput
from radiolab.segment.pooling import PooledHistogram, matching_mixture, pooled_mixture, resolve_model
from radiolab.segment.records import (
    OUTPUT_SUFFIXES,
    RUN_FILES,
    ScanError,
    current_row,
    output_paths,
    read_json_record,
    record_error,
    unlink_if_present,
)
from radiolab.segment.tables import write_summary
from radiolab.segment.tasks import MaskOutcome, _LabelTask, _MaskTask, _unpack


@dataclass
class SegmentReport:
    """What a run produced.

    Attributes
    ----------
    rows : list of dict
        One summary row per labelled scan (computed now or up to date).
    errors : list of ScanError
        One per failed scan.
    mixture : TissueMixture or None
        The mixture used for the labels.
    skipped_inputs : list of (path, reason)
        Inputs that are not CT scans.
    done : list of str
        Ids of scans for which something was computed in this run.
    skipped : list of str
        Ids of scans whose outputs were up to date.
    pending : list of str
        Ids of scans masked but not labelled yet (a shard run without a matching
        ``gmm.json``).
    executor : str
        The backend that ran the tasks.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    mixture: TissueMixture | None = None
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    executor: str = ""


def segment_cohort(
    scans: Sequence[ScanInput],
    out_dir: str | os.PathLike[str],
    config: SegmentConfig = SegmentConfig(),
    *,
    jobs: int = 1,
    cluster: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    cluster_config: str | os.PathLike[str] | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    force: bool = False,
    shard: str | tuple[int, int] | None = None,
    executor: Executor | None = None,
    progress: bool = False,
) -> SegmentReport:
    """Segment every scan, fit or load the mixture, label, and write all outputs.

    Parameters
    ----------
    scans : sequence of ScanInput
        From `find_inputs`.
    out_dir : str or os.PathLike
        Output folder (created).
    config : SegmentConfig
    jobs : int
        Scans processed in parallel by local joblib processes.
    cluster, workers, scheduler, scheduler_file, cluster_config : optional
        A Dask backend instead (see `radiolab.executors.make_executor`).
    attempts : int
        Tries per scan (a raised error or a dead worker) before it is recorded failed.
    force : bool
        Recompute scans whose outputs are up to date.
    shard : str or (int, int), optional
        ``"i/N"``: run the map steps on shard i of N of the sorted scan ids only. The
        labels are made too if the model is fixed or ``gmm.json`` was already fitted
        (``radiolab fit``) on these scans' histograms; ``gmm.json``, ``summary.csv``
        and ``errors.csv`` are left to ``radiolab fit``.
    executor : Executor, optional
        An executor to use instead of making one from the options above (not closed).
    progress : bool
        Show progress bars (only when stderr is a terminal).

    Returns
    -------
    SegmentReport
        The model is loaded before any scan is touched, so a bad ``--model`` fails at
        once with InputError.
    """
    out = Path(out_dir)
    mixture = resolve_model(config)  # a bad --model fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    scans = sorted(scans, key=lambda s: s.id)
    if shard is not None:
        index, count = parse_shard(shard)
        chosen = set(shard_items([s.id for s in scans], index, count))
        scans = [s for s in scans if s.id in chosen]
    else:
        for name in RUN_FILES:
            remove_partial_writes(out / name)
    owned = executor is None
    if executor is None:
        executor = make_executor(jobs=jobs, cluster=cluster, workers=workers, scheduler=scheduler,
                                 scheduler_file=scheduler_file, cluster_config=cluster_config, attempts=attempts)
    try:
        report = _segment(scans, out, config, mixture, executor, force=force, sharded=shard is not None,
                          progress=progress)
    finally:
        if owned:
            executor.close()
    return report


def _segment(scans, out: Path, config: SegmentConfig, mixture: TissueMixture | None, executor: Executor, *,
             force: bool, sharded: bool, progress: bool) -> SegmentReport:
    report = SegmentReport(executor=executor.describe())
    # One scan in this process: keep its arrays between the two passes instead of rereading.
    keep = executor.in_process and len(scans) == 1
    # Results are consumed as they arrive: each histogram joins the running sum and is
    # dropped, so the client holds one histogram however large the cohort.
    pooled = PooledHistogram()
    kept: dict[int, tuple[ScanInput, MaskOutcome]] = {}
    for index, outcome in executor.imap(_MaskTask(str(out), config, keep, force), list(scans),
                                        description="lung masks", progress=progress, keys=[s.id for s in scans]):
        scan = scans[index]
        result, error = _unpack(scan, "lung_mask", outcome)
        if error is not None:
            _log_failure(error)
            report.errors.append(error)
            record_error(out, error)
            continue
        unlink_if_present(output_paths(out, scan.id)["error"])
        pooled.add(scan.id, result.histogram)
        result.histogram = None
        kept[index] = (scan, result)
    survivors = [kept[index] for index in sorted(kept)]
    if mixture is None and survivors:
        if sharded:
            mixture = matching_mixture(out, config, pooled.keys)
            if mixture is None:
                report.pending = sorted(pooled.keys)
                report.done = [scan.id for scan, result in survivors if not result.skipped]
                report.skipped = [scan.id for scan, result in survivors if result.skipped]
                return report
        else:
            try:
                mixture = pooled_mixture(out, config, pooled, force=force)
            except RadiolabError as error:
                for scan, _ in survivors:
                    report.errors.append(ScanError(scan.id, "fit", f"pooled mixture fit failed: {error}"))
                    _log_failure(report.errors[-1])
                survivors = []
    report.mixture = mixture
    items = [(scan, result.volume, result.mask, result.input_hash, result.regions) for scan, result in survivors]
    for scan, result in survivors:  # the arrays now travel with the items only
        result.volume = result.mask = result.regions = None
    labelled = executor.map(_LabelTask(str(out), config, mixture, force), items, description="labels",
                            progress=progress, keys=[scan.id for scan, _ in survivors])
    del items
    for (scan, masked_result), outcome in zip(survivors, labelled):
        result, error = _unpack(scan, "labels", outcome)
        if error is not None:
            _log_failure(error)
            report.errors.append(error)
            record_error(out, error)
            continue
        row, skipped = result
        report.rows.append(row)
        up_to_date = skipped and masked_result.skipped
        (report.skipped if up_to_date else report.done).append(scan.id)
        scan_logger(__name__, scan.id).info("%s: lung %.1f mL, LI %.2f %%", "up to date" if up_to_date else "labelled",
                                            row["lung_volume_ml"], row["LI_pct"])
    if not sharded:
        write_summary(out, report)
    return report


def _log_failure(error: ScanError) -> None:
    scan_logger(__name__, error.id).warning("failed [%s]: %s", error.stage, error.message)


def fit_cohort(
    out_dir: str | os.PathLike[str],
    *,
    ids: Iterable[str] | None = None,
    force: bool = False,
) -> SegmentReport:
    """The reduce step of a sharded run: fit ``gmm.json``, assemble the tables.

    Reads the per-scan records that ``radiolab segment --shard`` left in ``out_dir``:
    sums the histograms ``<id>_hist.json`` in sorted-id order, fits the pooled mixture
    with the settings recorded in them and writes ``gmm.json`` (kept when it already
    matches). Then writes ``summary.csv`` from the ``<id>_summary.json`` rows whose
    label maps were made with this mixture, and ``errors.csv`` from ``<id>_error.json``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder shared by all shards.
    ids : iterable of str, optional
        Restrict to these scan ids (default: every record in the folder).
    force : bool
        Refit even if ``gmm.json`` matches.

    Returns
    -------
    SegmentReport
        ``rows`` and ``errors`` as written; ``pending``: scans with a histogram but no
        current labels yet (rerun the shards to label them).

    Raises
    ------
    InputError
        If the folder holds no histogram, or histograms made with different settings.
    ValueError
        If the fit fails.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(out, "output folder does not exist")
    for name in RUN_FILES:
        remove_partial_writes(out / name)
    wanted = None if ids is None else set(ids)

    def listed(suffix: str) -> dict[str, Path]:
        found = {}
        for entry in sorted(os.scandir(out), key=lambda e: e.name):
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                scan = entry.name[: -len(suffix)]
                if wanted is None or scan in wanted:
                    found[scan] = Path(entry.path)
        return found

    histogram_paths = listed(OUTPUT_SUFFIXES["histogram"])
    error_records = {scan: read_json_record(path) for scan, path in listed(OUTPUT_SUFFIXES["error"]).items()}
    if not histogram_paths and not error_records:
        raise InputError(out, "no <id>_hist.json records found; run `radiolab segment` (with --shard) first")
    report = SegmentReport(executor="fit")
    # One record at a time, in sorted-id order: memory does not grow with the cohort
    # beyond one input hash per scan.
    pooled = PooledHistogram()
    input_hashes: dict[str, str] = {}
    first: tuple[str, Any] | None = None
    for scan, path in histogram_paths.items():
        record = read_json_record(path)
        if record is None or "histogram" not in record or "config" not in record:
            raise InputError(path, "not a radiolab histogram record")
        if first is None:
            first = (path.name, record["config"])
        elif record["config"] != first[1]:
            raise InputError(path, f"made with settings different from {first[0]}'s; "
                                   "rerun the shards with one set of options")
        pooled.add(scan, Histogram.from_json(record["histogram"]))
        input_hashes[scan] = str(record.get("input_hash", ""))
    if first is not None:
        config = SegmentConfig.from_json(first[1])
        mixture = resolve_model(config)
        if mixture is None:
            mixture = pooled_mixture(out, config, pooled, force=force)
        report.mixture = mixture
        key = config.label_key(mixture)
        for scan, input_hash in input_hashes.items():
            row = current_row(output_paths(out, scan), input_hash, key)
            if row is not None:
                report.rows.append(row)
            elif scan not in error_records:
                report.pending.append(scan)
    for scan, record in error_records.items():
        if record is None:
            continue
        report.errors.append(ScanError(str(record.get("id", scan)), str(record.get("stage", "")),
                                       str(record.get("message", ""))))
    write_summary(out, report)
    return report
