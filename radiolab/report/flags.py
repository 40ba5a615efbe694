"""Automatic quality flags of a segmented cohort: ``flags.csv`` and summary.csv's ``flags``.

Per scan, from its lung mask ``<id>_lung.nrrd``:

- ``lung_volume_low`` / ``lung_volume_high``: lung volume outside
  [``min_volume_ml``, ``max_volume_ml``] (default 1000-10000 mL, for adults);
- ``mask_at_edge``: the mask lies on the faces of the scanned volume over more than
  ``max_edge_fraction`` (default 1 %) of its surface area, measured in mm^2 on voxel
  faces: the lung is cut off by the field of view, or the mask leaked into air outside
  the body;
- ``components``: more than ``max_components`` (default 2) 6-connected components of at
  least ``min_component_ml`` (default 70 mL, the lung mask's own island minimum): bowel
  gas, an air-filled oesophagus or outside air taken in.

Per cohort, from summary.csv:

- ``class_outlier``: a class's share of the lung (``<class>_pct``) whose robust z-score,
  0.6745 (x - median) / MAD (Iglewicz and Hoaglin 1993), exceeds ``outlier_z`` (default
  3.5) in absolute value; when the MAD is 0 the mean absolute deviation times 1.253314
  replaces it. Checked only in cohorts of at least ``min_cohort`` (default 10) scans.

With ``scans``, a scan that has neither a summary row nor an errors.csv entry is
flagged ``not_segmented``.
"""

from __future__ import annotations

import csv
import io as _io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radiolab.errors import InputError, ParameterError

FLAG_COLUMNS = ("id", "flag", "detail")
OUTLIER_CLASSES = ("air", "healthy", "ggo", "consolidation", "other")
MAD_SCALE = 0.6745  # 1 / Phi^-1(3/4): MAD of a normal sample is 0.6745 sigma
MEAN_AD_SCALE = 1.253314  # sqrt(pi / 2): mean absolute deviation of a normal sample is sigma / 1.2533
_FACE_NAMES = (("first slice", "last slice"), ("first row", "last row"), ("first column", "last column"))


@dataclass(frozen=True)
class Flag:
    """One flag raised on one scan: a short code and a sentence with the numbers."""

    id: str
    flag: str
    detail: str


@dataclass(frozen=True)
class FlagSettings:
    """Bounds of the automatic flags (see the module docstring)."""

    min_volume_ml: float = 1000.0
    max_volume_ml: float = 10000.0
    max_edge_fraction: float = 0.01
    min_component_ml: float = 70.0
    max_components: int = 2
    outlier_z: float = 3.5
    min_cohort: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.min_volume_ml < self.max_volume_ml:
            raise ParameterError(f"need 0 <= min_volume_ml < max_volume_ml, got {self.min_volume_ml} and "
                             f"{self.max_volume_ml} mL")
        if not 0 <= self.max_edge_fraction <= 1:
            raise ParameterError(f"max_edge_fraction must lie in [0, 1], got {self.max_edge_fraction}")
        if self.min_component_ml <= 0:
            raise ParameterError(f"min_component_ml must be positive, got {self.min_component_ml} mL")
        if self.max_components < 1:
            raise ParameterError(f"max_components must be at least 1, got {self.max_components}")
        if self.outlier_z <= 0:
            raise ParameterError(f"outlier_z must be positive, got {self.outlier_z}")
        if self.min_cohort < 3:
            raise ParameterError(f"min_cohort must be at least 3, got {self.min_cohort}")


@dataclass(frozen=True)
class MaskMeasures:
    """Geometry of a lung mask used by the flags.

    Attributes
    ----------
    volume_ml : float
        Mask volume, mL.
    surface_cm2 : float
        Area of the voxel faces between mask and non-mask (the volume's outside counts
        as non-mask), cm^2.
    edge_cm2 : float
        Part of ``surface_cm2`` lying on the faces of the volume, cm^2.
    edge_faces : tuple of str
        The volume faces the mask touches (``first slice``, ``last column``, ...).
    large_components_ml : tuple of float
        Volumes of the 6-connected components of at least ``min_component_ml``,
        largest first, mL.
    """

    volume_ml: float
    surface_cm2: float
    edge_cm2: float
    edge_faces: tuple[str, ...] = ()
    large_components_ml: tuple[float, ...] = field(default_factory=tuple)

    @property
    def edge_fraction(self) -> float:
        return self.edge_cm2 / self.surface_cm2 if self.surface_cm2 else 0.0


def mask_measures(mask: np.ndarray, spacing: tuple[float, float, float], *,
                  min_component_ml: float = 70.0) -> MaskMeasures:
    """Volume, surface, contact with the volume's faces and large components of a mask.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean lung mask, indexed (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    min_component_ml : float
        Smallest component counted as large, in mL.

    Returns
    -------
    MaskMeasures
    """
    import cc3d

    from radiolab.lung import bounding_box

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
    spacing = tuple(float(s) for s in spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    box = bounding_box(mask)
    if box is None:
        return MaskMeasures(0.0, 0.0, 0.0, (), ())
    crop = mask[box]
    surface_mm2 = edge_mm2 = 0.0
    touched = []
    for axis in range(3):
        face_mm2 = float(np.prod([spacing[a] for a in range(3) if a != axis]))
        first = np.take(crop, 0, axis=axis)
        last = np.take(crop, -1, axis=axis)
        inner = np.count_nonzero(np.diff(crop, axis=axis))
        surface_mm2 += face_mm2 * (inner + np.count_nonzero(first) + np.count_nonzero(last))
        start, stop = box[axis].start, box[axis].stop
        if start == 0:
            edge_mm2 += face_mm2 * np.count_nonzero(first)
            touched.append(_FACE_NAMES[axis][0])
        if stop == mask.shape[axis]:
            edge_mm2 += face_mm2 * np.count_nonzero(last)
            touched.append(_FACE_NAMES[axis][1])
    components = cc3d.connected_components(crop, connectivity=6)
    sizes = np.bincount(components.ravel())[1:] * voxel_ml
    large = tuple(sorted((float(s) for s in sizes if s >= min_component_ml), reverse=True))
    return MaskMeasures(int(np.count_nonzero(crop)) * voxel_ml, surface_mm2 / 100.0, edge_mm2 / 100.0,
                        tuple(touched), large)


def scan_flags(scan_id: str, measures: MaskMeasures, settings: FlagSettings = FlagSettings()) -> list[Flag]:
    """Flags of one scan from its mask measures."""
    flags = []
    volume = measures.volume_ml
    if volume < settings.min_volume_ml:
        flags.append(Flag(scan_id, "lung_volume_low",
                          f"lung volume {volume:.0f} mL is below {settings.min_volume_ml:g} mL"))
    elif volume > settings.max_volume_ml:
        flags.append(Flag(scan_id, "lung_volume_high",
                          f"lung volume {volume:.0f} mL is above {settings.max_volume_ml:g} mL"))
    if measures.edge_fraction > settings.max_edge_fraction:
        flags.append(Flag(scan_id, "mask_at_edge",
                          f"mask touches the volume edge over {measures.edge_cm2:.1f} cm^2 "
                          f"({100 * measures.edge_fraction:.1f} % of its surface, limit "
                          f"{100 * settings.max_edge_fraction:g} %): {', '.join(measures.edge_faces)}"))
    n_large = len(measures.large_components_ml)
    if n_large > settings.max_components:
        sizes = ", ".join(f"{s:.0f}" for s in measures.large_components_ml)
        flags.append(Flag(scan_id, "components",
                          f"mask has {n_large} large components (>= {settings.min_component_ml:g} mL, "
                          f"at most {settings.max_components} expected): {sizes} mL"))
    return flags


def robust_z(values: Sequence[float]) -> np.ndarray:
    """Robust z-scores: 0.6745 (x - median) / MAD (Iglewicz and Hoaglin's modified z).

    When the MAD is 0 (more than half the values equal), the mean absolute deviation
    times 1.253314 takes its place; when that is 0 too, all scores are 0.

    Examples
    --------
    >>> robust_z([1.0, 2.0, 3.0, 4.0, 100.0]).round(2).tolist()
    [-1.35, -0.67, 0.0, 0.67, 65.43]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    median = np.median(x)
    deviation = np.abs(x - median)
    mad = np.median(deviation)
    if mad > 0:
        return MAD_SCALE * (x - median) / mad
    mean_ad = deviation.mean()
    if mean_ad > 0:
        return (x - median) / (MEAN_AD_SCALE * mean_ad)
    return np.zeros_like(x)


def class_outliers(rows: Sequence[dict[str, Any]], settings: FlagSettings = FlagSettings()) -> list[Flag]:
    """``class_outlier`` flags: class shares far from the cohort's (robust z-score).

    Parameters
    ----------
    rows : sequence of dict
        Summary rows with ``id`` and ``<class>_pct`` (numbers or numeric strings).
    settings : FlagSettings
        ``outlier_z`` and ``min_cohort``.

    Returns
    -------
    list of Flag
        Empty when fewer than ``min_cohort`` rows have the value.
    """
    flags = []
    for name in OUTLIER_CLASSES:
        column = f"{name}_pct"
        ids, values = [], []
        for row in rows:
            value = _number(row.get(column))
            if value is not None:
                ids.append(str(row["id"]))
                values.append(value)
        if len(values) < settings.min_cohort:
            continue
        scores = robust_z(values)
        median = float(np.median(values))
        for scan_id, value, score in zip(ids, values, scores):
            if abs(score) > settings.outlier_z:
                flags.append(Flag(scan_id, "class_outlier",
                                  f"{column} {value:.2f} % vs cohort median {median:.2f} % "
                                  f"(robust z {score:+.1f}, limit {settings.outlier_z:g})"))
    return flags


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def read_csv_rows(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a CSV file; ``([], [])`` if it does not exist.

    Raises
    ------
    InputError
        If the file cannot be read as CSV.
    """
    path = Path(path)
    if not path.exists():
        return [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [dict(row) for row in reader]
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot read CSV: {error}") from None
    return columns, rows


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
    return buffer.getvalue()


class _MeasureTask:
    def __init__(self, labels_dir: str, min_component_ml: float, lung_masks=None, mask_format=None):
        self.labels_dir, self.min_component_ml = labels_dir, min_component_ml
        self.lung_masks, self.mask_format = lung_masks, mask_format

    def __call__(self, scan_id: str):
        from radiolab.errors import RadiolabError
        from radiolab.io import read_volume

        path = Path(self.labels_dir) / f"{scan_id}_lung.nrrd"
        try:
            volume = read_volume(path)
            mask = volume.array > 0
            if self.lung_masks is not None:
                from radiolab.external_masks import read_external_mask

                # The scan's grid is the one its radiolab outputs lie on.
                mask = read_external_mask(self.lung_masks, scan_id, volume.geometry, volume.array.shape,
                                          mask_format=self.mask_format, scan_path=os.fspath(path)).mask
            return mask_measures(mask, volume.geometry.spacing,
                                 min_component_ml=self.min_component_ml), None
        except (RadiolabError, OSError, MemoryError) as error:  # a bug shows its traceback
            return None, str(error)


def compute_flags(
    labels_dir: str | os.PathLike[str],
    scans: Any = None,
    *,
    min_volume_ml: float = 1000.0,
    max_volume_ml: float = 10000.0,
    max_edge_fraction: float = 0.01,
    min_component_ml: float = 70.0,
    max_components: int = 2,
    outlier_z: float = 3.5,
    min_cohort: int = 10,
    jobs: int = 1,
    lung_masks: str | os.PathLike[str] | None = None,
    mask_format: str | None = None,
) -> list[Flag]:
    """Flags of every scan in a `radiolab segment` output folder.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        Output folder of `radiolab segment` (``<id>_lung.nrrd`` files, summary.csv).
    scans : path, sequence of paths or of radiolab.segment.ScanInput, optional
        The scans that were segmented; those with no output at all and no errors.csv
        entry are flagged ``not_segmented``.
    min_volume_ml, max_volume_ml : float
        Plausible lung volume, mL.
    max_edge_fraction : float
        Largest share of the mask's surface area allowed on the volume's faces.
    min_component_ml : float
        Smallest 6-connected mask component counted as large, mL.
    max_components : int
        Most large components expected (2 lungs).
    outlier_z : float
        Robust z-score beyond which a class share is a cohort outlier.
    min_cohort : int
        Fewest scans for the outlier check.
    jobs : int
        Masks read in parallel (joblib processes).
    lung_masks, mask_format : optional
        External lung masks (`radiolab.external_masks`) measured instead of the
        ``<id>_lung.nrrd`` files (which still give the grid).

    Returns
    -------
    list of Flag
        Sorted by id, then flag.

    Raises
    ------
    InputError
        If ``labels_dir`` does not exist, or summary.csv is unreadable.
    """
    settings = FlagSettings(min_volume_ml=min_volume_ml, max_volume_ml=max_volume_ml,
                            max_edge_fraction=max_edge_fraction, min_component_ml=min_component_ml,
                            max_components=max_components, outlier_z=outlier_z, min_cohort=min_cohort)
    folder = Path(labels_dir)
    if not folder.is_dir():
        raise InputError(folder, "labels folder does not exist")
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, got {jobs}")
    _, rows = read_csv_rows(folder / "summary.csv")
    mask_ids = sorted(p.name[: -len("_lung.nrrd")] for p in folder.glob("*_lung.nrrd") if not p.name.startswith("."))
    task = _MeasureTask(os.fspath(folder), settings.min_component_ml,
                        None if lung_masks is None else os.fspath(lung_masks), mask_format)
    if jobs == 1 or len(mask_ids) <= 1:
        measured = [task(i) for i in mask_ids]
    else:
        from joblib import Parallel, delayed

        measured = list(Parallel(n_jobs=jobs)(delayed(task)(i) for i in mask_ids))
    flags: list[Flag] = []
    for scan_id, (measures, error) in zip(mask_ids, measured):
        if error is not None:
            flags.append(Flag(scan_id, "mask_unreadable", error))
        else:
            flags.extend(scan_flags(scan_id, measures, settings))
    flags.extend(class_outliers(rows, settings))
    if scans is not None:
        from radiolab.report.qc import resolve_scans

        _, errors = read_csv_rows(folder / "errors.csv")
        known = {r.get("id") for r in rows} | {r.get("id") for r in errors} | set(mask_ids)
        for scan in resolve_scans(scans):
            if scan.id not in known:
                flags.append(Flag(scan.id, "not_segmented",
                                  f"{scan.path}: no outputs in {folder} and no errors.csv entry"))
    return sorted(flags, key=lambda f: (f.id, f.flag, f.detail))


def write_flags(labels_dir: str | os.PathLike[str], flags: Sequence[Flag]) -> Path:
    """Write ``flags.csv`` (id, flag, detail) atomically; returns its path."""
    from radiolab.io import write_text_atomic

    path = Path(labels_dir) / "flags.csv"
    write_text_atomic(path, _csv_text(FLAG_COLUMNS, [asdict(f) for f in flags]))
    return path


def update_summary_flags(labels_dir: str | os.PathLike[str], flags: Sequence[Flag]) -> Path | None:
    """Set the ``flags`` column of summary.csv (codes joined by ``;``), atomically.

    Every other column and cell is kept as it was. Returns the path, or None when
    there is no summary.csv.
    """
    from radiolab.io import write_text_atomic

    path = Path(labels_dir) / "summary.csv"
    columns, rows = read_csv_rows(path)
    if not columns:
        return None
    codes: dict[str, list[str]] = {}
    for flag in flags:
        codes.setdefault(flag.id, [])
        if flag.flag not in codes[flag.id]:
            codes[flag.id].append(flag.flag)
    if "flags" not in columns:
        columns.append("flags")
    for row in rows:
        row["flags"] = ";".join(codes.get(row.get("id", ""), []))
    write_text_atomic(path, _csv_text(columns, rows))
    return path


@dataclass
class QCRun:
    """What `run_qc` did: the QC images (or their errors) and the flags."""

    images: list = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)


def run_qc(
    labels_dir: str | os.PathLike[str],
    scans: Any = None,
    *,
    jobs: int = 1,
    images: bool = True,
    label_map: str = "labels",
    dpi: int = 100,
    min_volume_ml: float = 1000.0,
    max_volume_ml: float = 10000.0,
    max_edge_fraction: float = 0.01,
    min_component_ml: float = 70.0,
    max_components: int = 2,
    outlier_z: float = 3.5,
    min_cohort: int = 10,
    lung_masks: str | os.PathLike[str] | None = None,
    mask_format: str | None = None,
) -> QCRun:
    """``radiolab qc``: QC images, ``flags.csv`` and the ``flags`` column of summary.csv.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        Output folder of `radiolab segment`.
    scans : path, sequence of paths or of ScanInput, optional
        The scans; QC images need them (without, only the flags are computed).
    jobs : int
        Scans processed in parallel.
    images : bool
        Write ``<id>_qc.png`` images (when ``scans`` is given).
    label_map, dpi :
        See `radiolab.report.qc.write_qc_images`.
    min_volume_ml, max_volume_ml, max_edge_fraction, min_component_ml, max_components, outlier_z, min_cohort :
        See `compute_flags`.
    lung_masks, mask_format : optional
        External lung masks used for the flags and the QC images.

    Returns
    -------
    QCRun
    """
    from radiolab.report.qc import resolve_scans, write_qc_images

    run = QCRun()
    if scans is not None:
        scans = resolve_scans(scans)
    run.flags = compute_flags(labels_dir, scans, min_volume_ml=min_volume_ml, max_volume_ml=max_volume_ml,
                              max_edge_fraction=max_edge_fraction, min_component_ml=min_component_ml,
                              max_components=max_components, outlier_z=outlier_z, min_cohort=min_cohort,
                              jobs=jobs, lung_masks=lung_masks, mask_format=mask_format)
    write_flags(labels_dir, run.flags)
    update_summary_flags(labels_dir, run.flags)
    if images and scans is not None:
        run.images = write_qc_images(labels_dir, scans, jobs=jobs, label_map=label_map, dpi=dpi,
                                     lung_masks=lung_masks, mask_format=mask_format)
    return run

