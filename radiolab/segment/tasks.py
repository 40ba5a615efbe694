"""Tasks an executor runs per scan: skip what is up to date, turn input errors into records.

Only radiolab's own errors (`RadiolabError`: bad input, no lung, bad parameters) are
records of the scan's step. Anything else (an I/O error, out of memory, a dead worker,
a bug in radiolab) is raised, retried by the executor and, if it persists, recorded with
stage ``internal`` and logged with its traceback: the batch completes either way.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from radiolab._malloc import release_freed_memory_promptly
from radiolab.errors import InputError, RadiolabError
from radiolab.executors import TaskFailure
from radiolab.io import Volume, remove_partial_writes
from radiolab.log import scan_logger
from radiolab.mixture import Histogram
from radiolab.segment import steps
from radiolab.segment.inputs import ScanInput
from radiolab.segment.records import ScanError, current_histogram, current_row, output_paths


# Errors that retrying cannot cure: bad input, no lung, bad parameters. Anything else
# (I/O errors, out of memory, a bug) propagates so that the executor tries again.
FINAL_ERRORS = (RadiolabError,)
# Stage of the record of a scan whose task crashed (not an input error).
INTERNAL_STAGE = "internal"


def _run_step(step: str, function: Callable, scan: ScanInput, *args, **kwargs):
    """Run one step on one scan; return (result, None) or (None, ScanError).

    Errors in `FINAL_ERRORS` become a ScanError; others are raised for a retry.
    """
    release_freed_memory_promptly()  # in whichever process runs the step
    try:
        return function(scan, *args, **kwargs), None
    except FINAL_ERRORS as error:
        return None, ScanError(scan.id, step, _describe(scan, error))


def _describe(scan: ScanInput, error: RadiolabError) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, InputError) else f"{scan.path}: {text}"


@dataclass
class MaskOutcome:
    histogram: Histogram | None
    input_hash: str
    skipped: bool
    volume: Volume | None = None
    mask: np.ndarray | None = None
    regions: dict[str, Any] | None = None


class _MaskTask:
    """Step 1 for one scan: clean stale temporaries, hash, skip if up to date, else mask."""

    def __init__(self, out_dir, config, keep, force=False):
        self.out_dir, self.config, self.keep, self.force = out_dir, config, keep, force

    def __call__(self, scan):
        return _run_step("lung_mask", self._mask, scan)

    def _mask(self, scan):
        paths = output_paths(self.out_dir, scan.id)
        for path in paths.values():
            remove_partial_writes(path)
        if self.force or not paths["histogram"].is_file():
            # Nothing recorded to compare with: the scan is hashed while it is read.
            input_hash = steps.hash_beside(scan, self.config)
        else:
            input_hash = steps.scan_input_hash(scan, self.config)
            histogram = current_histogram(paths, self.config, input_hash)
            if histogram is not None:
                return MaskOutcome(histogram, input_hash, skipped=True)
        regions: dict[str, Any] = {}
        histogram, volume, mask = steps.mask_scan(scan, self.out_dir, self.config, keep=self.keep,
                                                  input_hash=input_hash, regions=regions)
        if isinstance(input_hash, Future):
            input_hash = input_hash.result()
        return MaskOutcome(histogram, input_hash, skipped=False, volume=volume, mask=mask, regions=regions or None)


class _LabelTask:
    """Step 2 for one scan: skip if up to date, else label."""

    def __init__(self, out_dir, config, mixture, force=False):
        self.out_dir, self.config, self.mixture, self.force = out_dir, config, mixture, force

    def __call__(self, item):
        scan, volume, mask, input_hash, regions = item
        return _run_step("labels", self._label, scan, volume, mask, input_hash, regions)

    def _label(self, scan, volume, mask, input_hash, regions=None):
        paths = output_paths(self.out_dir, scan.id)
        for key in ("labels", "median", "phenotypes", "row"):  # left by a worker that died in this step
            remove_partial_writes(paths[key])
        if not self.force:
            row = current_row(paths, input_hash, self.config.label_key(self.mixture))
            if row is not None:
                return row, True
        return steps.label_scan(scan, self.out_dir, self.config, self.mixture, volume, mask, input_hash=input_hash,
                                regions=regions), False


def _unpack(scan: ScanInput, step: str, outcome) -> tuple[Any, ScanError | None]:
    if isinstance(outcome, TaskFailure):
        scan_logger(__name__, scan.id).error("%s: %s crashed: %s\n%s", scan.path, step, outcome,
                                             outcome.traceback.rstrip() or "(no traceback: the worker process died)")
        return None, ScanError(scan.id, INTERNAL_STAGE, f"{scan.path}: {step} crashed: {outcome}")
    return outcome
