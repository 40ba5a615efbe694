"""Cohort segmentation: lung masks, pooled mixture, tissue labels, median maps, summary.

The run is a map-reduce:

1. map, per scan: read, ``lung_mask``, ``lung_histogram``; write ``<id>_lung.nrrd`` and
   the histogram ``<id>_hist.json`` (a few KB);
2. reduce: sum the histograms as they arrive (exact int64 counts: the same total in
   any order), ``fit_mixture`` on one thread -> ``gmm.json`` (skipped when a model is
   given);
3. map, per scan: ``label_tissue``, ``median_labels``; write ``<id>_labels.nrrd``,
   ``<id>_labels_median.nrrd`` and the scan's summary row ``<id>_summary.json``.

The reduce step sees histograms only, so scans never meet in memory. The maps run on
any :mod:`radiolab.executors` backend (this process, joblib, a Dask cluster).

Resume
------
Each map step ends by writing its per-scan record (``<id>_hist.json``, then
``<id>_summary.json``), after the volumes it vouches for, and deletes the old record
before it starts. A record holds the SHA-256 of the scan's input file(s) and a key of
the parameters; a rerun skips a step whose record and outputs exist and match
(``force=True`` recomputes). Every file is written atomically, so a run killed at any
moment leaves only complete files plus hidden ``.<name>.*.part*`` temporaries, which
the next run deletes. Every scan is attempted; failures go to ``<id>_error.json`` and
``errors.csv``.

Modules: `config` (settings and keys), `inputs` (scan discovery and hashes), `steps`
(the per-scan map steps), `records` (per-scan records and resume checks), `tasks`
(what an executor runs), `pooling` (the reduce step), `tables` (CSV files) and `run`
(the cohort run). The names below are the public API.
"""

from radiolab.segment.config import SegmentConfig
from radiolab.segment.inputs import ScanInput, find_inputs
from radiolab.segment.pooling import (
    PooledHistogram,
    fit_pooled,
    matching_mixture,
    mixture_from_record,
    mixture_record,
    pooled_mixture,
    resolve_model,
)
from radiolab.segment.records import (
    OUTPUT_SUFFIXES,
    RUN_FILES,
    ScanError,
    current_histogram,
    current_row,
    histogram_key,
    output_paths,
)
from radiolab.segment.run import SegmentReport, fit_cohort, segment_cohort
from radiolab.segment.steps import label_scan, mask_scan
from radiolab.segment.tables import SUMMARY_COLUMNS, write_summary

__all__ = [
    "OUTPUT_SUFFIXES", "RUN_FILES", "SUMMARY_COLUMNS", "PooledHistogram", "ScanError", "ScanInput",
    "SegmentConfig", "SegmentReport", "current_histogram", "current_row", "find_inputs", "fit_cohort",
    "fit_pooled", "histogram_key", "label_scan", "mask_scan", "matching_mixture", "mixture_from_record",
    "mixture_record", "output_paths", "pooled_mixture", "resolve_model", "segment_cohort", "write_summary",
]
