"""`radiolab features` on a cohort: read label maps, extract per scan, write tables."""

from __future__ import annotations

import csv
import io as _io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from radiolab import __version__
from radiolab.errors import InputError, OptionalDependencyError, ParameterError, RadiolabError
from radiolab.log import scan_logger
from radiolab.mixture import CLASS_NAMES
from radiolab.radiomics.engine import MapRefused, pyradiomics_version
from radiolab.radiomics.extraction import MAX_MAP_VOXELS, MIN_TEXTURE_VOXELS, PROVENANCE_COLUMNS, ROW_COLUMNS, SKIP_COLUMN, error_message, extract_features, voxel_feature_maps
from radiolab.radiomics.images import CROP_MARGIN_MM
from radiolab.radiomics.params import DEFAULT_PARAMS, load_params, params_sha256
from radiolab.radiomics.regions import REGIONS, check_regions, region_masks


# Label map files written by `radiolab segment`, by --map choice.
LABEL_MAPS: dict[str, str] = {"voxel": "_labels.nrrd", "median": "_labels_median.nrrd"}
FORMATS = ("csv", "parquet")


def labels_path(labels_dir: str | os.PathLike[str], scan_id: str, map: str = "voxel") -> Path:
    """Where ``radiolab segment`` wrote the label map of a scan (``voxel`` or ``median``)."""
    if map not in LABEL_MAPS:
        raise ParameterError(f"unknown label map {map!r}; valid maps: {', '.join(LABEL_MAPS)}")
    return Path(labels_dir) / f"{scan_id}{LABEL_MAPS[map]}"


@dataclass
class FeaturesReport:
    """What `extract_cohort` wrote: table rows and columns, failures, voxel maps."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)  # radiolab.segment.ScanError
    maps: list[str] = field(default_factory=list)
    out: str = ""
    errors_path: str = ""
    provenance_path: str = ""


@dataclass(frozen=True)
class _ScanJob:
    labels: str
    map: str
    params: dict[str, Any]
    regions: tuple[str, ...]
    min_texture_voxels: int
    voxel_maps: bool
    maps_dir: str
    max_map_voxels: int
    crop_margin_mm: float
    lung_masks: str | None = None
    mask_format: str | None = None

    def __call__(self, scan):
        return features_scan(scan, self)


def _read_labels(scan, volume, job: _ScanJob) -> np.ndarray:
    from radiolab.io import read_volume

    path = labels_path(job.labels, scan.id, job.map)
    if not path.is_file():
        raise InputError(path, f"no {job.map} label map for scan {scan.id!r}; run `radiolab segment` on the scans "
                               f"first, writing into {job.labels}")
    labels = read_volume(path)
    if labels.array.shape != volume.array.shape:
        raise InputError(path, f"label map shape {labels.array.shape} differs from the scan's {volume.array.shape} "
                               f"({scan.path})")
    if not (np.allclose(labels.geometry.spacing, volume.geometry.spacing, rtol=1e-4, atol=1e-4)
            and np.allclose(labels.geometry.origin, volume.geometry.origin, rtol=0, atol=1e-3)
            and np.allclose(labels.geometry.direction, volume.geometry.direction, rtol=0, atol=1e-4)):
        raise InputError(path, f"label map geometry (spacing {labels.geometry.spacing} mm, origin "
                               f"{labels.geometry.origin} mm, direction {labels.geometry.direction}) differs "
                               f"from the scan's ({volume.geometry.spacing} mm, {volume.geometry.origin} mm, "
                               f"{volume.geometry.direction})")
    array = labels.array
    if array.min() < 0 or array.max() > len(CLASS_NAMES):
        raise InputError(path, f"not a tissue label map: values {array.min()}..{array.max()}, expected 0..5")
    array = array.astype(np.uint8)
    if job.lung_masks is not None:
        from radiolab.external_masks import read_external_mask

        # Measure inside the given lung mask only: labels outside it do not count.
        external = read_external_mask(job.lung_masks, scan.id, volume.geometry, volume.array.shape,
                                      mask_format=job.mask_format, scan_path=os.fspath(scan.path))
        array[~external.mask] = 0
    elif job.map == "median":
        # The even 4-voxel window (scipy's alignment) shifts the median map half a voxel
        # towards higher indices, so labels spill up to one voxel past the lung mask:
        # only voxels inside the mask are counted.
        lung_path = Path(job.labels) / f"{scan.id}_lung.nrrd"
        if not lung_path.is_file():
            raise InputError(lung_path, f"no lung mask for scan {scan.id!r}; the median map is counted inside "
                                        "the lung mask only, which `radiolab segment` writes next to it")
        lung = read_volume(lung_path).array
        if lung.shape != array.shape:
            raise InputError(lung_path, f"lung mask shape {lung.shape} differs from the label map's {array.shape}")
        array[lung == 0] = 0
    return array


def features_scan(scan, job: _ScanJob) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
    """Rows, failures and voxel-map files of one scan; never raises for a bad scan."""
    from radiolab.segment import ScanError

    rows: list[dict[str, Any]] = []
    errors: list[ScanError] = []
    maps: list[str] = []
    stage = "read"
    try:
        volume = scan.read()
        stage = "labels"
        labels = _read_labels(scan, volume, job)
    except (RadiolabError, OSError, MemoryError) as error:  # a bad scan never stops the others
        return rows, [ScanError(scan.id, stage, _describe(scan, error))], maps
    except Exception as error:  # a bug, not bad input: its traceback is logged; the others go on
        scan_logger(__name__, scan.id).exception("%s: %s crashed", scan.path, stage)
        return rows, [ScanError(scan.id, "internal", f"{scan.path}: {stage} crashed: "
                                                     f"{type(error).__name__}: {error_message(error)}")], maps
    for region in job.regions:
        try:
            [row] = extract_features(volume.array, labels, volume.geometry, params=job.params, regions=[region],
                                     min_texture_voxels=job.min_texture_voxels,
                                     crop_margin_mm=job.crop_margin_mm)
        except Exception as error:  # one region failing never stops the others
            errors.append(ScanError(scan.id, "features", f"{scan.path}: region {region}: {error_message(error)}"))
            continue
        row = {"id": scan.id, **row}
        if job.voxel_maps and row["voxels"] > 0:
            try:
                maps += _write_maps(volume, labels, row, job, scan.id)
            except MapRefused as refusal:
                row[SKIP_COLUMN] = "; ".join(filter(None, [row[SKIP_COLUMN], f"voxel maps not written: {refusal}"]))
            except Exception as error:
                errors.append(ScanError(scan.id, "voxel_maps", f"{scan.path}: region {region}: {error_message(error)}"))
        rows.append(row)
    return rows, errors, maps


def _write_maps(volume, labels: np.ndarray, row: dict[str, Any], job: _ScanJob, scan_id: str) -> list[str]:
    from radiolab.io import write_volume

    region = row["region"]
    mask = region_masks(labels, [region])[region]
    maps, skipped = voxel_feature_maps(volume.array, mask, volume.geometry, params=job.params,
                                       max_voxels=job.max_map_voxels, min_texture_voxels=job.min_texture_voxels,
                                       crop_margin_mm=job.crop_margin_mm)
    written = []
    for name, (array, geometry) in maps.items():
        path = Path(job.maps_dir) / f"{scan_id}_{region}_{name}.nrrd"
        write_volume(path, array, geometry, fields={
            "radiolab_version": __version__, "radiolab_feature": name, "radiolab_region": region,
            "pyradiomics_version": row["pyradiomics_version"], "radiolab_params_sha256": row["params_sha256"],
        })
        written.append(str(path))
    if skipped and not maps:
        row[SKIP_COLUMN] = "; ".join(filter(None, [row[SKIP_COLUMN], f"voxel maps not written: {'; '.join(skipped)}"]))
    return written


def _describe(scan, error: BaseException) -> str:
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, MemoryError):
        return f"{scan.path}: out of memory"
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return f"{scan.path}: {error_message(error)}"
    return f"{scan.path}: unexpected error: {type(error).__name__}: {error_message(error)}"


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column order: identity, features in pyradiomics' order, provenance, skip reason."""
    fixed = set(ROW_COLUMNS) | set(PROVENANCE_COLUMNS) | {SKIP_COLUMN}
    features: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in fixed and not name.startswith("diagnostics_"):
                features.setdefault(name)
    return [*ROW_COLUMNS, *features, *PROVENANCE_COLUMNS, SKIP_COLUMN]


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, format: str = "csv",
                columns: Sequence[str] | None = None):
    """Write the feature table atomically as CSV or Parquet; return it as a DataFrame.

    Missing features (skipped classes) are empty cells in CSV and nulls in Parquet;
    ``label`` is an integer column with nulls for ``lung`` and ``involved``.
    """
    if format not in FORMATS:
        raise ParameterError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    try:
        import pandas as pd
    except ImportError as error:
        raise OptionalDependencyError("pandas", "writing the feature table", extra="radiomics") from error
    from radiolab.io import atomic_path

    columns = list(columns or table_columns(rows))
    frame = pd.DataFrame.from_records(list(rows), columns=columns)
    frame["label"] = frame["label"].astype("Int64")
    frame["voxels"] = frame["voxels"].astype("int64")
    for name in ("id", "region", "pyradiomics_version", "params_sha256", SKIP_COLUMN):
        frame[name] = frame[name].fillna("").astype(str)
    features = columns[len(ROW_COLUMNS): len(columns) - len(PROVENANCE_COLUMNS) - 1]
    for name in ["volume_ml", *features]:
        frame[name] = frame[name].astype("float64")
    with atomic_path(path) as temporary:
        if format == "parquet":
            try:
                frame.to_parquet(temporary, index=False, engine="pyarrow")
            except ImportError as error:
                raise OptionalDependencyError("pyarrow", "writing Parquet", extra="radiomics") from error
        else:
            frame.to_csv(temporary, index=False, float_format=None, lineterminator="\n")
    return frame


def write_errors(errors: Sequence[Any], path: str | os.PathLike[str]) -> None:
    """``errors.csv``: one row per failed scan or region (id, stage, message)."""
    from radiolab.io import write_text_atomic

    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "stage", "message"])
    for error in sorted(errors, key=lambda e: (e.id, e.stage)):
        writer.writerow([error.id, error.stage, error.message])
    write_text_atomic(path, buffer.getvalue())


def _map_scans(job: _ScanJob, scans: Sequence[Any], jobs: int, progress: bool) -> list:
    from tqdm.auto import tqdm

    results = []
    with tqdm(total=len(scans), desc="features", unit="scan", disable=None if progress else True, leave=False) as bar:
        if jobs == 1 or len(scans) <= 1:
            for scan in scans:
                results.append(job(scan))
                bar.update()
        else:
            from joblib import Parallel, delayed

            for result in Parallel(n_jobs=jobs, return_as="generator")(delayed(job)(scan) for scan in scans):
                results.append(result)
                bar.update()
    return results


def extract_cohort(
    scans: Sequence[Any],
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    regions: Sequence[str] = REGIONS,
    map: str = "voxel",
    format: str = "csv",
    jobs: int = 1,
    voxel_maps: bool = False,
    min_texture_voxels: int = MIN_TEXTURE_VOXELS,
    max_map_voxels: int = MAX_MAP_VOXELS,
    crop_margin_mm: float = CROP_MARGIN_MM,
    progress: bool = False,
    lung_masks: str | os.PathLike[str] | None = None,
    mask_format: str | None = None,
) -> FeaturesReport:
    """Features of every scan and region, written as one table.

    Parameters
    ----------
    scans : sequence of radiolab.segment.ScanInput
        From ``radiolab.segment.find_inputs``.
    labels : str or os.PathLike
        Folder of ``radiolab segment`` outputs; a scan ``<id>`` uses
        ``<labels>/<id>_labels.nrrd`` (``map="voxel"``) or ``<id>_labels_median.nrrd``
        (``map="median"``).
    out : str or os.PathLike
        The table. Beside it: ``errors.csv`` (id, stage, message),
        ``<stem>_provenance.json`` (parameters, versions, options) and, with
        ``voxel_maps``, the folder ``<stem>_voxel_maps/``.
    params : path, mapping or None
        pyradiomics parameters; None for ``pipelines/radiomics.yaml``.
    regions : sequence of str
        Regions among `REGIONS`.
    map : {"voxel", "median"}
        Voxel-wise labels (default, as the paper recommends for radiomics) or the
        median-filtered map.
    format : {"csv", "parquet"}
    jobs : int
        Scans processed in parallel (joblib processes).
    voxel_maps : bool
        Also write pyradiomics voxel-based feature maps (NRRD) of regions of at most
        ``max_map_voxels`` voxels; larger regions are refused, said in ``skip_reason``.
    min_texture_voxels, crop_margin_mm
        As in `extract_features`.
    progress : bool
        Show a progress bar.
    lung_masks : str or os.PathLike, optional
        Folder of external lung masks (`radiolab.external_masks`): each scan's labels
        are restricted to its mask (label 0 outside it). Their content hashes go into
        the provenance file.
    mask_format : str, optional
        Convention of ``lung_masks`` (`radiolab.external_masks.MASK_FORMATS`).

    Returns
    -------
    FeaturesReport

    Raises
    ------
    InputError
        If the parameter file is invalid or the labels folder does not exist (before
        any scan is read). Failures of single scans or regions go to ``errors.csv``.
    ValueError
        If an option is invalid.
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    if map not in LABEL_MAPS:
        raise ParameterError(f"unknown label map {map!r}; valid maps: {', '.join(LABEL_MAPS)}")
    if format not in FORMATS:
        raise ParameterError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, got {jobs}")
    if min_texture_voxels < 0 or max_map_voxels < 1 or crop_margin_mm < 0:
        raise ParameterError("min_texture_voxels and crop_margin_mm must be >= 0 and max_map_voxels >= 1")
    regions = check_regions(regions)
    if not os.path.isdir(labels):
        raise InputError(labels, "labels folder does not exist (run `radiolab segment` first)")
    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if (format == "csv" and suffix in (".parquet", ".pq")) or (format == "parquet" and suffix == ".csv"):
        raise ParameterError(f"output {out_path} does not match format {format!r}")
    if out_path.parent.resolve() == Path(labels).resolve():
        raise InputError(out_path, "write the table outside the labels folder: its errors.csv would replace "
                                   "the one `radiolab segment` wrote there")
    resolved = load_params(params)
    version = pyradiomics_version()
    stem = out_path.with_suffix("")
    job = _ScanJob(labels=os.fspath(labels), map=map, params=resolved, regions=regions,
                   min_texture_voxels=int(min_texture_voxels), voxel_maps=voxel_maps,
                   maps_dir=f"{stem}_voxel_maps", max_map_voxels=int(max_map_voxels),
                   crop_margin_mm=float(crop_margin_mm),
                   lung_masks=None if lung_masks is None else os.fspath(lung_masks), mask_format=mask_format)
    if lung_masks is not None and not os.path.isdir(lung_masks):
        raise InputError(lung_masks, "lung mask folder does not exist")
    report = FeaturesReport(out=str(out_path), errors_path=str(out_path.parent / "errors.csv"),
                            provenance_path=f"{stem}_provenance.json")
    for rows, errors, maps in _map_scans(job, list(scans), jobs, progress):
        report.rows += rows
        report.errors += errors
        report.maps += maps
    order = {name: index for index, name in enumerate(REGIONS)}
    report.rows.sort(key=lambda row: (row["id"], order[row["region"]]))
    for row in report.rows:
        if row[SKIP_COLUMN]:
            scan_logger(__name__, row["id"]).warning("%s: skipped %s", row["region"], row[SKIP_COLUMN])
    for error in report.errors:
        scan_logger(__name__, error.id).error("[%s]: %s", error.stage, error.message)
    report.columns = table_columns(report.rows)
    write_table(report.rows, out_path, format=format, columns=report.columns)
    write_errors(report.errors, report.errors_path)
    from radiolab.io import write_json_atomic
    from radiolab.pipeline import algorithm_versions

    write_json_atomic(report.provenance_path, {
        "radiolab_version": __version__,
        "algorithm_versions": algorithm_versions("features"),
        "pyradiomics_version": version,
        "params_sha256": params_sha256(resolved),
        "params": _json_safe(resolved),
        "params_source": os.fspath(params) if params is not None and not isinstance(params, Mapping)
        else (str(DEFAULT_PARAMS) if params is None else "<mapping>"),
        "label_map": map,
        "labels": os.fspath(labels),
        "regions": list(regions),
        "min_texture_voxels": int(min_texture_voxels),
        "crop_margin_mm": float(crop_margin_mm),
        "voxel_maps": bool(voxel_maps),
        "max_map_voxels": int(max_map_voxels),
        "scans": sorted({row["id"] for row in report.rows}),
        "failed": sorted({error.id for error in report.errors}),
        **({"lung_masks": os.fspath(lung_masks), "mask_format": mask_format,
            "lung_mask_hashes": _mask_hashes(lung_masks, mask_format, sorted({row["id"] for row in report.rows}))}
           if lung_masks is not None else {}),
    })
    return report


def _mask_hashes(folder, mask_format, ids) -> dict[str, str]:
    """SHA-256 of each measured scan's external mask, by scan id."""
    from radiolab.external_masks import find_mask, mask_content_hash

    return {scan_id: mask_content_hash(find_mask(folder, scan_id), mask_format) for scan_id in ids}


def _json_safe(data: Any) -> Any:
    """A copy with non-finite floats as strings (``"nan"``), so that the JSON is strict."""
    if isinstance(data, Mapping):
        return {str(key): _json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data
