"""Cohort segmentation: lung masks, pooled mixture, tissue labels, median maps, summary.

The run is a map-reduce:

1. map, per scan: read, ``lung_mask``, ``lung_histogram``; write ``<id>_lung.nrrd`` and
   the histogram ``<id>_hist.json`` (a few KB);
2. reduce: sum the histograms, ``fit_mixture`` -> ``gmm.json`` (skipped when a model is
   given);
3. map, per scan: ``label_tissue``, ``median_labels``; write ``<id>_labels.nrrd``,
   ``<id>_labels_median.nrrd`` and the scan's summary row.

The reduce step sees histograms only, so scans never meet in memory. Every file is
written atomically, every scan is attempted, and failures go to ``errors.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import os
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from radiolab import __version__
from radiolab.errors import InputError, NoLungError, RadiolabError
from radiolab.io import (
    LUNG_SEGMENTS,
    Geometry,
    Volume,
    is_volume_file,
    read_volume,
    scan_id,
    slicer_segment_fields,
    write_json_atomic,
    write_text_atomic,
    write_volume,
)
from radiolab.lung import lung_mask, settings_for
from radiolab.mixture import (
    CLASS_NAMES,
    Histogram,
    TissueMixture,
    fit_mixture,
    label_tissue,
    load_mixture,
    lung_histogram,
    sum_histograms,
)
from radiolab.scoring import summary_row
from radiolab.smoothing import median_labels

OUTPUT_SUFFIXES = {
    "lung": "_lung.nrrd",
    "labels": "_labels.nrrd",
    "median": "_labels_median.nrrd",
    "histogram": "_hist.json",
    "row": "_summary.json",
}
SUMMARY_COLUMNS = (
    ["id", "lung_volume_ml"]
    + [f"{name}_{unit}" for name in CLASS_NAMES for unit in ("ml", "pct")]
    + ["LI_pct"]
)


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of ``radiolab segment``; written into every output as provenance.

    Attributes
    ----------
    preset : str
        Lung-mask preset, ``default`` (mm, mL) or ``zaffino2021`` (voxels).
    backend : str
        ``fast`` or ``reference`` (the paper's library calls).
    model : str
        ``fit`` (pooled fit on the inputs), a built-in model name, or a model file.
    trust_pickle : bool
        Allow a pickled scikit-learn model (unpickling runs code).
    seed, n_init, tol : optional
        Pooled-fit settings (k-means seed, initialisations, tolerance).
    median_size : int
        Edge of the median window, in voxels.
    threshold_hu, opening, min_island, closing_radii : optional
        Lung-mask overrides, in the preset's units.
    """

    preset: str = "default"
    backend: str = "fast"
    model: str = "fit"
    trust_pickle: bool = False
    seed: int = 0
    n_init: int = 6
    tol: float = 1e-3
    median_size: int = 4
    threshold_hu: float | None = None
    opening: float | None = None
    min_island: float | None = None
    closing_radii: tuple[float, ...] | None = None
    compression_level: int = 1

    def lung_settings(self):
        return settings_for(self.preset, threshold_hu=self.threshold_hu, opening=self.opening,
                            min_island=self.min_island, closing_radii=self.closing_radii)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lung_mask"] = self.lung_settings().to_json()
        return data

    def mask_key(self) -> str:
        """Hash of everything the lung mask and histogram depend on."""
        return _hash({"lung": self.lung_settings().to_json(), "backend": self.backend, "version": __version__})


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScanInput:
    """One scan to process: a volume file, a DICOM folder, or one series of a folder."""

    id: str
    path: str
    series: Any = None  # radiolab.dicom.SeriesInfo when the scan is a DICOM series

    def read(self) -> Volume:
        if self.series is not None:
            from radiolab.dicom import read_series

            return read_series(self.series)
        return read_volume(self.path)


@dataclass
class ScanError:
    id: str
    stage: str
    message: str


@dataclass
class SegmentReport:
    """What a run produced: one summary row per scan, errors, the mixture used."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    mixture: TissueMixture | None = None
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)


def find_inputs(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[list[ScanInput], list[tuple[str, str]]]:
    """Scans named by files or found in folders (volume files and DICOM series).

    Returns
    -------
    scans : list of ScanInput
    skipped : list of (path, reason)
        DICOM series that are not CT, with the reason.

    Raises
    ------
    InputError
        If a path does not exist, a folder holds no scan, or two scans share an id.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    scans: list[ScanInput] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        path = os.fspath(raw)
        if os.path.isfile(path):
            scans.append(ScanInput(scan_id(path), path))
            continue
        if not os.path.isdir(path):
            raise InputError(path, "no such file or folder")
        found = _scan_folder(path, scans, skipped)
        if not found:
            reasons = "; ".join(f"{p}: {r}" for p, r in skipped[-3:])
            raise InputError(path, "no scans found (no NRRD, NIfTI, MHA/MHD file and no DICOM CT series)"
                             + (f"; skipped: {reasons}" if reasons else ""))
    ids: dict[str, str] = {}
    for scan in scans:
        if scan.id in ids:
            raise InputError(scan.path, f"scan id {scan.id!r} also used by {ids[scan.id]}; rename one of them")
        ids[scan.id] = scan.path
    return scans, skipped


def _scan_folder(folder: str, scans: list[ScanInput], skipped: list[tuple[str, str]]) -> int:
    before = len(scans)
    other_files = False
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and is_volume_file(entry.name):
            scans.append(ScanInput(scan_id(entry.name), entry.path))
        elif entry.is_dir() or (entry.is_file() and not entry.name.endswith((".json", ".csv", ".txt", ".md"))):
            other_files = True
    if other_files:
        from radiolab.dicom import find_series

        series, series_skipped = find_series(folder)
        for info in series:
            scans.append(ScanInput(info.name, str(info.folder), info))
        skipped.extend((str(item.source), item.reason) for item in series_skipped)
    return len(scans) - before


# -- per-scan steps (module-level so that worker processes can run them) -------------

def output_paths(out_dir: str | os.PathLike[str], scan_id_: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {key: out / f"{scan_id_}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


def _provenance(config: SegmentConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = {
        "radiolab_version": __version__,
        "radiolab_preset": config.preset,
        "radiolab_backend": config.backend,
        "radiolab_model": config.model,
        "radiolab_parameters": json.dumps(config.to_json(), sort_keys=True),
    }
    fields.update(extra or {})
    return fields


def mask_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, *, keep: bool = False):
    """Map step 1: read the scan, segment the lungs, write the mask and histogram.

    Returns ``(histogram, volume, mask)``; volume and mask are None unless ``keep``.
    """
    volume = scan.read()
    spacing = volume.geometry.spacing
    settings = config.lung_settings()
    mask = lung_mask(volume.array, spacing, preset=config.preset, backend=config.backend,
                     threshold_hu=settings.threshold_hu, opening=settings.opening,
                     min_island=settings.min_island, closing_radii=settings.closing_radii)
    histogram = lung_histogram(volume.array, mask, clip_hu=settings.clip_hu)
    paths = output_paths(out_dir, scan.id)
    write_volume(paths["lung"], mask.view(np.uint8), volume.geometry,
                 fields={**slicer_segment_fields(mask.shape, LUNG_SEGMENTS), **_provenance(config)},
                 compression_level=config.compression_level)
    write_json_atomic(paths["histogram"], {
        "id": scan.id, "mask_key": config.mask_key(), "histogram": histogram.to_json(),
        "voxel_volume_ml": volume.geometry.voxel_volume_ml, "radiolab_version": __version__,
    })
    if keep:
        return histogram, volume, mask
    return histogram, None, None


def label_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, mixture: TissueMixture,
               volume: Volume | None = None, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Map step 2: label the lung voxels, median-filter, write label maps, summarise."""
    paths = output_paths(out_dir, scan.id)
    if volume is None:
        volume = scan.read()
    if mask is None:
        mask = read_volume(paths["lung"]).array.astype(bool)
        if mask.shape != volume.array.shape:
            raise InputError(paths["lung"], f"mask shape {mask.shape} differs from the scan's {volume.array.shape}")
    settings = config.lung_settings()
    labels = label_tissue(volume.array, mask, mixture, clip_hu=settings.clip_hu, backend=config.backend)
    smoothed = median_labels(labels, size=config.median_size, backend=config.backend)
    segment_fields = slicer_segment_fields(labels.shape)
    provenance = _provenance(config, {"radiolab_mixture": json.dumps(mixture.to_json(), sort_keys=True)})
    write_volume(paths["labels"], labels, volume.geometry, fields={**segment_fields, **provenance},
                 compression_level=config.compression_level)
    write_volume(paths["median"], smoothed, volume.geometry,
                 fields={**segment_fields, **provenance, "radiolab_median_size": str(config.median_size)},
                 compression_level=config.compression_level)
    row = {"id": scan.id, **summary_row(labels, volume.array, mask, volume.geometry.spacing,
                                        direction=volume.geometry.direction)}
    write_json_atomic(paths["row"], row)
    return row


def _run_step(step: str, function: Callable, scan: ScanInput, *args, **kwargs):
    """Run one step on one scan; return (result, None) or (None, ScanError)."""
    try:
        return function(scan, *args, **kwargs), None
    except (RadiolabError, ValueError, OSError, RuntimeError, MemoryError) as error:
        return None, ScanError(scan.id, step, _describe(scan, error))
    except Exception as error:  # an unexpected bug: keep the batch going, keep the trace
        trace = traceback.format_exception_only(type(error), error)[-1].strip()
        return None, ScanError(scan.id, step, f"{scan.path}: unexpected error: {trace}")


def _describe(scan: ScanInput, error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, InputError):
        return text
    if isinstance(error, MemoryError):
        text = "out of memory"
    return f"{scan.path}: {text}"


def _map(function: Callable, items: Sequence, jobs: int, description: str, progress: bool) -> list:
    """Apply ``function`` to every item, in parallel when jobs > 1, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=description, unit="scan", disable=not progress, leave=False)
    results = []
    try:
        if jobs == 1 or len(items) <= 1:
            for item in items:
                results.append(function(item))
                bar.update()
        else:
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=jobs, return_as="generator")
            for result in parallel(delayed(function)(item) for item in items):
                results.append(result)
                bar.update()
    finally:
        bar.close()
    return results


class _MaskTask:
    def __init__(self, out_dir, config, keep):
        self.out_dir, self.config, self.keep = out_dir, config, keep

    def __call__(self, scan):
        return _run_step("lung_mask", mask_scan, scan, self.out_dir, self.config, keep=self.keep)


class _LabelTask:
    def __init__(self, out_dir, config, mixture):
        self.out_dir, self.config, self.mixture = out_dir, config, mixture

    def __call__(self, item):
        scan, volume, mask = item
        return _run_step("labels", label_scan, scan, self.out_dir, self.config, self.mixture, volume, mask)


def resolve_model(config: SegmentConfig) -> TissueMixture | None:
    """The mixture named by the configuration, or None for a pooled fit."""
    if config.model == "fit":
        return None
    return load_mixture(config.model, trust_pickle=config.trust_pickle)


def segment_cohort(
    scans: Sequence[ScanInput],
    out_dir: str | os.PathLike[str],
    config: SegmentConfig = SegmentConfig(),
    *,
    jobs: int = 1,
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
        Scans processed in parallel (joblib processes).
    progress : bool
        Show progress bars.

    Returns
    -------
    SegmentReport
        The model is loaded before any scan is touched, so a bad ``--model`` fails at
        once with InputError.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = SegmentReport()
    mixture = resolve_model(config)
    # One scan in one process: keep its arrays between the two passes instead of rereading.
    keep = jobs == 1 and len(scans) == 1
    masked = _map(_MaskTask(str(out), config, keep), list(scans), jobs, "lung masks", progress)
    survivors = []
    histograms: list[Histogram] = []
    for scan, (result, error) in zip(scans, masked):
        if error is not None:
            report.errors.append(error)
            continue
        histogram, volume, mask = result
        histograms.append(histogram)
        survivors.append((scan, volume, mask))
    if mixture is None and survivors:
        try:
            mixture = fit_mixture(sum_histograms(histograms), seed=config.seed, n_init=config.n_init,
                                  tol=config.tol, n_scans=len(histograms))
        except ValueError as error:
            for scan, _, _ in survivors:
                report.errors.append(ScanError(scan.id, "fit", f"pooled mixture fit failed: {error}"))
            survivors = []
        else:
            record = mixture.to_json()
            record["scans"] = [scan.id for scan, _, _ in survivors]
            record["segment_config"] = config.to_json()
            write_json_atomic(out / "gmm.json", record)
    report.mixture = mixture
    labelled = _map(_LabelTask(str(out), config, mixture), survivors, jobs, "labels", progress)
    for (scan, _, _), (row, error) in zip(survivors, labelled):
        if error is not None:
            report.errors.append(error)
        else:
            report.rows.append(row)
    write_summary(out, report)
    return report


def write_summary(out: Path, report: SegmentReport) -> None:
    """Write ``summary.csv`` (one row per scan) and ``errors.csv`` (one row per failure)."""
    rows = sorted(report.rows, key=lambda r: r["id"])
    columns = list(SUMMARY_COLUMNS) + sorted({k for r in rows for k in r} - set(SUMMARY_COLUMNS))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(out / "summary.csv", buffer.getvalue())
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "stage", "message"])
    for error in sorted(report.errors, key=lambda e: e.id):
        writer.writerow([error.id, error.stage, error.message])
    write_text_atomic(out / "errors.csv", buffer.getvalue())
