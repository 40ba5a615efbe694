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
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from radiolab import __version__
from radiolab.errors import InputError, NoLungError, RadiolabError
from radiolab.executors import DEFAULT_ATTEMPTS, Executor, TaskFailure, make_executor, parse_shard, shard_items
from radiolab.io import (
    LUNG_SEGMENTS,
    Geometry,
    Volume,
    is_volume_file,
    read_header,
    read_volume,
    remove_partial_writes,
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
)
from radiolab.scoring import summary_row
from radiolab.smoothing import median_labels

OUTPUT_SUFFIXES = {
    "lung": "_lung.nrrd",
    "labels": "_labels.nrrd",
    "median": "_labels_median.nrrd",
    "histogram": "_hist.json",
    "row": "_summary.json",
    "error": "_error.json",
}
# Files of the whole run (not per scan).
RUN_FILES = ("gmm.json", "summary.csv", "errors.csv")
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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SegmentConfig":
        """The configuration recorded by `to_json` (derived fields are ignored)."""
        names = {f.name for f in fields(cls)}
        kwargs = {key: value for key, value in data.items() if key in names}
        if kwargs.get("closing_radii") is not None:
            kwargs["closing_radii"] = tuple(kwargs["closing_radii"])
        return cls(**kwargs)

    def mask_key(self) -> str:
        """Hash of everything the lung mask and histogram depend on."""
        return _hash({"lung": self.lung_settings().to_json(), "backend": self.backend, "version": __version__})

    def fit_key(self) -> str:
        """Hash of everything the pooled fit depends on besides the histograms."""
        return _hash({"mask": self.mask_key(), "seed": self.seed, "n_init": self.n_init, "tol": self.tol})

    def label_key(self, mixture: TissueMixture) -> str:
        """Hash of everything a scan's label maps depend on besides its input file."""
        return _hash({"mask": self.mask_key(), "mixture": mixture.to_json(), "median_size": self.median_size,
                      "backend": self.backend, "version": __version__})


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

    def files(self) -> list[str]:
        """The files the scan is read from, in a fixed order.

        A DICOM series: its slice files sorted by path. A volume file: the file, plus
        the data file that an ``.mhd`` or ``.nhdr`` header points to. A folder: every
        file under it, sorted.
        """
        if self.series is not None:
            return sorted(self.series.files)
        if os.path.isdir(self.path):
            found = []
            for root, dirs, names in os.walk(self.path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in names if not n.startswith("."))
            return sorted(found)
        return [self.path, *_detached_data_files(self.path)]

    def content_hash(self) -> str:
        """SHA-256 of the scan's input files (see `files`), as ``sha256:<hex>``.

        Raises
        ------
        InputError
            If a file cannot be read.
        """
        total = hashlib.sha256()
        for path in self.files():
            try:
                with open(path, "rb") as handle:
                    digest = _file_digest(handle)
            except OSError as error:
                raise InputError(path, f"cannot read the file: {error.strerror or error}") from None
            total.update(digest)
        return "sha256:" + total.hexdigest()


def _file_digest(handle) -> bytes:
    if hasattr(hashlib, "file_digest"):  # Python >= 3.11
        return hashlib.file_digest(handle, "sha256").digest()
    digest = hashlib.sha256()  # pragma: no cover - Python 3.10
    for block in iter(lambda: handle.read(1 << 20), b""):  # pragma: no cover
        digest.update(block)
    return digest.digest()  # pragma: no cover


def _detached_data_files(path: str) -> list[str]:
    """The data file named in an ``.mhd`` (ElementDataFile) or ``.nhdr`` (data file) header."""
    lower = path.lower()
    if lower.endswith(".mhd"):
        keys = ("elementdatafile",)
        separator = "="
    elif lower.endswith(".nhdr"):
        keys = ("data file", "datafile")
        separator = ":"
    else:
        return []
    try:
        with open(path, encoding="latin-1") as handle:
            lines = handle.read(65536).splitlines()
    except OSError:
        return []
    for line in lines:
        key, _, value = line.partition(separator)
        if key.strip().lower() in keys:
            value = value.strip()
            if not value or value.upper().startswith(("LOCAL", "LIST")) or "%" in value or " " in value:
                return []
            return [os.path.join(os.path.dirname(path), value)]
    return []


@dataclass
class ScanError:
    id: str
    stage: str
    message: str


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


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON record, or None if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def histogram_key(histogram: Histogram) -> str:
    """Hash of a histogram's non-zero range of counts (a scan's contribution to a pooled fit)."""
    present = np.flatnonzero(histogram.counts)
    payload = b""
    if present.size:
        first, last = int(present[0]), int(present[-1])
        payload = (np.int64(histogram.lo + first).astype("<i8").tobytes()
                   + histogram.counts[first: last + 1].astype("<i8").tobytes())
    return hashlib.sha256(payload).hexdigest()[:16]


def _hist_record(scan_id_: str, config: SegmentConfig, histogram: Histogram, voxel_volume_ml: float,
                 input_hash: str) -> dict[str, Any]:
    return {
        "id": scan_id_, "input_hash": input_hash, "mask_key": config.mask_key(),
        "histogram": histogram.to_json(), "voxel_volume_ml": voxel_volume_ml,
        "radiolab_version": __version__, "config": config.to_json(),
    }


def mask_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, *, keep: bool = False,
              input_hash: str | None = None):
    """Map step 1: read the scan, segment the lungs, write the mask and histogram.

    ``<id>_hist.json``, the step's record, is deleted first and written last, after
    ``<id>_lung.nrrd``; it holds the histogram, the input hash and the mask key.

    Parameters
    ----------
    input_hash : str, optional
        `ScanInput.content_hash` of the scan, if already computed.

    Returns ``(histogram, volume, mask)``; volume and mask are None unless ``keep``.
    """
    paths = output_paths(out_dir, scan.id)
    _unlink(paths["histogram"])
    if input_hash is None:
        input_hash = scan.content_hash()
    volume = scan.read()
    spacing = volume.geometry.spacing
    settings = config.lung_settings()
    mask = lung_mask(volume.array, spacing, preset=config.preset, backend=config.backend,
                     threshold_hu=settings.threshold_hu, opening=settings.opening,
                     min_island=settings.min_island, closing_radii=settings.closing_radii)
    histogram = lung_histogram(volume.array, mask, clip_hu=settings.clip_hu)
    write_volume(paths["lung"], mask.view(np.uint8), volume.geometry,
                 fields={**slicer_segment_fields(mask.shape, LUNG_SEGMENTS),
                         **_provenance(config, {"radiolab_input_hash": input_hash})},
                 compression_level=config.compression_level)
    write_json_atomic(paths["histogram"], _hist_record(scan.id, config, histogram,
                                                       volume.geometry.voxel_volume_ml, input_hash))
    if keep:
        return histogram, volume, mask
    return histogram, None, None


def label_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, mixture: TissueMixture,
               volume: Volume | None = None, mask: np.ndarray | None = None, *,
               input_hash: str | None = None) -> dict[str, Any]:
    """Map step 2: label the lung voxels, median-filter, write label maps, summarise.

    ``<id>_summary.json``, the step's record, is deleted first and written last; the
    label maps carry the input hash and the label key in their headers.
    """
    paths = output_paths(out_dir, scan.id)
    _unlink(paths["row"])
    if input_hash is None:
        input_hash = scan.content_hash()
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
    provenance = _provenance(config, {"radiolab_mixture": json.dumps(mixture.to_json(), sort_keys=True),
                                      "radiolab_input_hash": input_hash,
                                      "radiolab_label_key": config.label_key(mixture)})
    write_volume(paths["labels"], labels, volume.geometry, fields={**segment_fields, **provenance},
                 compression_level=config.compression_level)
    write_volume(paths["median"], smoothed, volume.geometry,
                 fields={**segment_fields, **provenance, "radiolab_median_size": str(config.median_size)},
                 compression_level=config.compression_level)
    row = {"id": scan.id, **summary_row(labels, volume.array, mask, volume.geometry.spacing,
                                        direction=volume.geometry.direction)}
    write_json_atomic(paths["row"], row)
    return row


# -- resume: is a step's output up to date? --------------------------------------------

def current_histogram(paths: Mapping[str, Path], config: SegmentConfig, input_hash: str) -> Histogram | None:
    """The recorded histogram if step 1's outputs exist and match input and settings.

    A matching record whose other settings (seed, median size ...) differ is rewritten
    with the current ones, so that records always describe the latest run.
    """
    record = _read_json(paths["histogram"])
    if (record is None or record.get("input_hash") != input_hash or record.get("mask_key") != config.mask_key()
            or not paths["lung"].is_file()):
        return None
    try:
        histogram = Histogram.from_json(record["histogram"])
        fresh = _hist_record(record["id"], config, histogram, float(record["voxel_volume_ml"]), input_hash)
    except (KeyError, TypeError, ValueError):
        return None
    if json.loads(json.dumps(fresh)) != record:
        write_json_atomic(paths["histogram"], fresh)
    return histogram


def current_row(paths: Mapping[str, Path], input_hash: str, label_key: str) -> dict[str, Any] | None:
    """The recorded summary row if step 2's outputs exist and match input and settings."""
    row = _read_json(paths["row"])
    if row is None:
        return None
    for key in ("labels", "median"):
        try:
            header = read_header(paths[key])
        except Exception:  # missing or unreadable: not up to date
            return None
        if header.get("radiolab_input_hash") != input_hash or header.get("radiolab_label_key") != label_key:
            return None
    return row


# -- tasks ------------------------------------------------------------------------------

# Errors that retrying cannot cure: bad input, no lung, bad parameters. Anything else
# (I/O errors, out of memory, a bug) propagates so that the executor tries again.
FINAL_ERRORS = (RadiolabError, ValueError)


def _run_step(step: str, function: Callable, scan: ScanInput, *args, **kwargs):
    """Run one step on one scan; return (result, None) or (None, ScanError).

    Errors in `FINAL_ERRORS` become a ScanError; others are raised for a retry.
    """
    try:
        return function(scan, *args, **kwargs), None
    except FINAL_ERRORS as error:
        return None, ScanError(scan.id, step, _describe(scan, error))


def _describe(scan: ScanInput, error: BaseException | TaskFailure) -> str:
    if isinstance(error, TaskFailure):
        return f"{scan.path}: {error}"
    text = str(error) or type(error).__name__
    if isinstance(error, InputError):
        return text
    if isinstance(error, MemoryError):
        text = "out of memory"
    return f"{scan.path}: {text}"


@dataclass
class MaskOutcome:
    histogram: Histogram | None
    input_hash: str
    skipped: bool
    volume: Volume | None = None
    mask: np.ndarray | None = None


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
        input_hash = scan.content_hash()
        if not self.force:
            histogram = current_histogram(paths, self.config, input_hash)
            if histogram is not None:
                return MaskOutcome(histogram, input_hash, skipped=True)
        histogram, volume, mask = mask_scan(scan, self.out_dir, self.config, keep=self.keep, input_hash=input_hash)
        return MaskOutcome(histogram, input_hash, skipped=False, volume=volume, mask=mask)


class _LabelTask:
    """Step 2 for one scan: skip if up to date, else label."""

    def __init__(self, out_dir, config, mixture, force=False):
        self.out_dir, self.config, self.mixture, self.force = out_dir, config, mixture, force

    def __call__(self, item):
        scan, volume, mask, input_hash = item
        return _run_step("labels", self._label, scan, volume, mask, input_hash)

    def _label(self, scan, volume, mask, input_hash):
        paths = output_paths(self.out_dir, scan.id)
        for key in ("labels", "median", "row"):  # left by a worker that died in this step
            remove_partial_writes(paths[key])
        if not self.force:
            row = current_row(paths, input_hash, self.config.label_key(self.mixture))
            if row is not None:
                return row, True
        return label_scan(scan, self.out_dir, self.config, self.mixture, volume, mask, input_hash=input_hash), False


def _unpack(scan: ScanInput, step: str, outcome) -> tuple[Any, ScanError | None]:
    if isinstance(outcome, TaskFailure):
        return None, ScanError(scan.id, step, _describe(scan, outcome))
    return outcome


def _record_error(out: Path, error: ScanError) -> None:
    write_json_atomic(output_paths(out, error.id)["error"], asdict(error))


# -- reduce: the pooled fit -------------------------------------------------------------

def resolve_model(config: SegmentConfig) -> TissueMixture | None:
    """The mixture named by the configuration, or None for a pooled fit."""
    if config.model == "fit":
        return None
    return load_mixture(config.model, trust_pickle=config.trust_pickle)


@dataclass
class PooledHistogram:
    """The running sum of per-scan lung histograms, and a key per scan that went in.

    Sums are exact int64 counts, so the total is the same in any order of addition;
    memory stays at one histogram (a few thousand 1-HU bins) plus one short key per
    scan, however many scans are pooled.
    """

    total: Histogram | None = None
    keys: dict[str, str] = field(default_factory=dict)

    def add(self, scan_id_: str, histogram: Histogram) -> None:
        if scan_id_ in self.keys:
            raise ValueError(f"scan {scan_id_!r} pooled twice")
        self.keys[scan_id_] = histogram_key(histogram)
        self.total = histogram if self.total is None else self.total + histogram

    @property
    def n_scans(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, histograms: Mapping[str, Histogram]) -> "PooledHistogram":
        """Pool a mapping of scan id -> histogram, in sorted-id order."""
        pooled = cls()
        for scan_id_ in sorted(histograms):
            pooled.add(scan_id_, histograms[scan_id_])
        return pooled


def fit_pooled(pooled: PooledHistogram, config: SegmentConfig) -> TissueMixture:
    """Fit the mixture on a cohort's pooled histogram.

    The fit runs on one thread, so the result depends on the summed counts and the
    seed only: not on the backend, the order in which scans finished, or the
    machine's core count.

    Raises
    ------
    ValueError
        If nothing was pooled or there are too few distinct HU values.
    """
    from threadpoolctl import threadpool_limits

    if pooled.total is None:
        raise ValueError("no histograms to fit")
    with threadpool_limits(limits=1):
        return fit_mixture(pooled.total, seed=config.seed, n_init=config.n_init, tol=config.tol,
                           n_scans=pooled.n_scans)


def mixture_record(mixture: TissueMixture, config: SegmentConfig, pooled: PooledHistogram) -> dict[str, Any]:
    """The content of ``gmm.json``: the mixture, the scans pooled and the settings."""
    record = mixture.to_json()
    record["scans"] = sorted(pooled.keys)
    record["segment_config"] = config.to_json()
    record["fit_key"] = config.fit_key()
    record["histograms"] = {i: pooled.keys[i] for i in sorted(pooled.keys)}
    return json.loads(json.dumps(record))


def mixture_from_record(record: Mapping[str, Any], *, source: str = "gmm.json") -> TissueMixture:
    """The mixture stored in a ``gmm.json`` record, exactly as it was fitted."""
    return TissueMixture.from_json(dict(record), source=str(record.get("source") or source))


def _gmm_covers(record: dict[str, Any] | None, config: SegmentConfig, keys: Mapping[str, str], *,
                exact: bool) -> bool:
    if record is None or record.get("fit_key") != config.fit_key():
        return False
    recorded = record.get("histograms")
    if not isinstance(recorded, dict):
        return False
    if exact:
        return recorded == dict(keys)
    return all(recorded.get(i) == key for i, key in keys.items())


def pooled_mixture(out_dir: str | os.PathLike[str], config: SegmentConfig, pooled: PooledHistogram,
                   *, force: bool = False) -> TissueMixture:
    """Fit (or reuse) the mixture of a pooled histogram and write ``gmm.json``.

    An existing ``gmm.json`` fitted with the same settings on exactly the same scan
    histograms is reused unless ``force``.
    """
    path = Path(out_dir) / "gmm.json"
    existing = _read_json(path)
    if not force and _gmm_covers(existing, config, pooled.keys, exact=True):
        return mixture_from_record(existing)
    record = mixture_record(fit_pooled(pooled, config), config, pooled)
    write_json_atomic(path, record)
    return mixture_from_record(record)


def matching_mixture(out_dir: str | os.PathLike[str], config: SegmentConfig,
                     keys: Mapping[str, str]) -> TissueMixture | None:
    """The mixture of ``gmm.json`` if it was fitted with these settings on these scans'
    histograms (among others): what a shard may label with. None otherwise."""
    record = _read_json(Path(out_dir) / "gmm.json")
    if keys and _gmm_covers(record, config, keys, exact=False):
        return mixture_from_record(record)
    return None


# -- the run ----------------------------------------------------------------------------

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
        Show progress bars.

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
            report.errors.append(error)
            _record_error(out, error)
            continue
        _unlink(output_paths(out, scan.id)["error"])
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
            except ValueError as error:
                for scan, _ in survivors:
                    report.errors.append(ScanError(scan.id, "fit", f"pooled mixture fit failed: {error}"))
                survivors = []
    report.mixture = mixture
    items = [(scan, result.volume, result.mask, result.input_hash) for scan, result in survivors]
    for scan, result in survivors:  # the arrays now travel with the items only
        result.volume = result.mask = None
    labelled = executor.map(_LabelTask(str(out), config, mixture, force), items, description="labels",
                            progress=progress, keys=[scan.id for scan, _ in survivors])
    del items
    for (scan, masked_result), outcome in zip(survivors, labelled):
        result, error = _unpack(scan, "labels", outcome)
        if error is not None:
            report.errors.append(error)
            _record_error(out, error)
            continue
        row, skipped = result
        report.rows.append(row)
        (report.skipped if skipped and masked_result.skipped else report.done).append(scan.id)
    if not sharded:
        write_summary(out, report)
    return report


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
    error_records = {scan: _read_json(path) for scan, path in listed(OUTPUT_SUFFIXES["error"]).items()}
    if not histogram_paths and not error_records:
        raise InputError(out, "no <id>_hist.json records found; run `radiolab segment` (with --shard) first")
    report = SegmentReport(executor="fit")
    # One record at a time, in sorted-id order: memory does not grow with the cohort
    # beyond one input hash per scan.
    pooled = PooledHistogram()
    input_hashes: dict[str, str] = {}
    first: tuple[str, Any] | None = None
    for scan, path in histogram_paths.items():
        record = _read_json(path)
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
