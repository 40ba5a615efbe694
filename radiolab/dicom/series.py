"""Read one DICOM CT series as an int16 HU volume on a regular, orthogonal grid.

Geometry
--------
The geometry comes from ImagePositionPatient and ImageOrientationPatient only (the
GantryDetectorTilt tag is not used). Slices are sorted by their position along the
slice normal ``n = row x column``. The volume is indexed ``[k, j, i]`` (slice, row,
column) with ``Geometry.spacing = (slice step, row spacing, column spacing)`` in mm,
``origin`` = ImagePositionPatient of the first sorted slice (moved within its plane for
a tilted stack) and ``direction`` columns = row cosine, column cosine, normal (LPS).

An even, untilted stack is stacked as it is: voxel values are the slices' own HU. A
tilted stack is shifted onto an orthogonal grid, an uneven one resampled along the
normal, a gapped one refused unless gaps are allowed (see :mod:`radiolab.dicom.stack`);
``Volume.meta["resampled"]`` says whether any of that happened and
``meta["warnings"]`` says what, in mm.

Padding
-------
PixelPaddingValue is in stored units; it is converted with the rescale like any pixel
and kept in the volume as stored (e.g. -2048 or -3024 HU outside the scan circle), as
GDCM and dcm2niix keep it. ``meta["padding_hu"]`` holds its HU value; resampling never
blends padding with tissue.

Privacy
-------
``Volume.meta`` holds the series number, description, the hash of its grouping key,
modality and how it was established, transfer syntax, acquisition facts (see
:data:`ACQUISITION_KEYS`: equipment and technique, no patient or institution tag) and
reading warnings.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from radiolab.dicom.discovery import SeriesInfo, dcmread, find_series, text
from radiolab.dicom.stack import POSITION_NOISE_MM, GapError, mm, plan_grid, resample_stack
from radiolab.errors import InputError
from radiolab.io import Geometry, Volume, _check_memory, to_hu_int16

# Slice positions closer than this along the normal (mm) are duplicates.
DUPLICATE_TOLERANCE_MM = POSITION_NOISE_MM
# Largest difference tolerated between slices in the orientation cosines.
ORIENTATION_TOLERANCE = 1e-3
# Largest relative difference tolerated between slices in PixelSpacing.
PIXEL_SPACING_TOLERANCE = 1e-3
# Acquisition facts densitometry depends on: meta key -> DICOM keyword.
ACQUISITION_KEYS = {
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "kernel": "ConvolutionKernel",
    "slice_thickness_mm": "SliceThickness",
    "kvp": "KVP",
    "contrast_agent": "ContrastBolusAgent",
}


def _floats(ds: Any, keyword: str, count: int, path: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in ds.get(keyword)], dtype=float)
    except (TypeError, ValueError):
        raise InputError(path, f"{keyword} is not a list of numbers") from None
    if values.shape != (count,) or not np.isfinite(values).all():
        raise InputError(path, f"{keyword} must hold {count} finite numbers, found {values.tolist()}")
    return values


def _orientation(ds: Any, path: str) -> tuple[np.ndarray, np.ndarray]:
    iop = _floats(ds, "ImageOrientationPatient", 6, path)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 \
            or abs(float(row @ col)) > 1e-2:
        raise InputError(path, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _reject_inconsistent(folder: str, what: str, files: list[str], values: list[Any], differs: Any) -> None:
    for path, value in zip(files[1:], values[1:]):
        if differs(values[0], value):
            raise InputError(
                folder,
                f"{what} differs between slices: {values[0]} in {os.path.basename(files[0])}, "
                f"{value} in {os.path.basename(path)}; not one volume",
            )


def acquisition_facts(ds: Any) -> dict[str, str]:
    """The :data:`ACQUISITION_KEYS` values of one header as text ("" when absent)."""
    # Multi-valued kernels (Siemens "Br38f\\3") are joined by spaces.
    return {key: text(ds.get(keyword)).replace("\\", " ") for key, keyword in ACQUISITION_KEYS.items()}


def _rescale(ds: Any, path: str) -> tuple[float, float]:
    try:
        slope = float(ds.get("RescaleSlope") if ds.get("RescaleSlope") not in (None, "") else 1.0)
        intercept = float(ds.get("RescaleIntercept") if ds.get("RescaleIntercept") not in (None, "") else 0.0)
    except (TypeError, ValueError):
        raise InputError(path, "RescaleSlope/RescaleIntercept are not numbers") from None
    return slope, intercept


def _padding_hu(files: list[str], headers: list[Any]) -> int | None:
    """PixelPaddingValue converted to HU with each slice's rescale, if all agree."""
    values = set()
    for path, ds in zip(files, headers):
        stored = ds.get("PixelPaddingValue")
        if stored in (None, ""):
            return None
        try:
            stored_value = float(stored[0] if isinstance(stored, (bytes, list)) else stored)
        except (TypeError, ValueError, IndexError):
            return None
        slope, intercept = _rescale(ds, path)
        values.add(int(round(stored_value * slope + intercept)))
    return values.pop() if len(values) == 1 else None


def read_series(info: SeriesInfo, *, allow_gaps: bool = False) -> Volume:
    """Read a CT series as an int16 HU volume on a regular orthogonal grid.

    Parameters
    ----------
    info : SeriesInfo
        A series from :func:`~radiolab.dicom.find_series`.
    allow_gaps : bool
        Interpolate across gaps (a step at least 1.5 times its neighbours') instead of
        refusing the series.

    Returns
    -------
    Volume
        ``array`` indexed (slice, row, column) as int16 HU (``pixel * RescaleSlope +
        RescaleIntercept`` per slice, rounded); geometry as in the module docstring;
        ``path`` = the series' folder; ``meta`` with ``series_number``,
        ``series_description``, ``uid_hash``, ``grouped_by``, ``modality``,
        ``modality_source``, ``transfer_syntax``, ``acquisition`` (dict, see
        :data:`ACQUISITION_KEYS`), ``padding_hu`` (int or None), ``tilt_deg``,
        ``resampled`` (bool) and ``warnings`` (list of str: fallback grouping, missing
        Modality, tilt, resampled spacing, interpolated gaps, missing rescale tags).

    Raises
    ------
    InputError
        Naming the folder or file: unreadable or undecodable file, no pixel data, colour
        or multi-frame pixels, differing Rows/Columns, ImageOrientationPatient or
        PixelSpacing between slices, RescaleSlope/RescaleIntercept present in some
        slices only, duplicate slice positions, a gap (position and size in mm) unless
        ``allow_gaps``, a single slice without SliceThickness, HU outside int16, or too
        large for memory.
    """
    folder = info.folder
    files = list(info.files)
    if not files:
        raise InputError(folder, "series has no files")
    headers = []
    for path in files:
        try:
            headers.append(dcmread(path, stop_before_pixels=True))
        except Exception as error:
            raise InputError(path, f"cannot read DICOM header ({type(error).__name__})") from None

    shapes = []
    for path, ds in zip(files, headers):
        try:
            shapes.append((int(ds.Rows), int(ds.Columns)))
        except (AttributeError, TypeError, ValueError):
            raise InputError(path, "no Rows/Columns: not an image") from None
    _reject_inconsistent(folder, "Rows x Columns", files, shapes, lambda a, b: a != b)
    orientations = [np.concatenate(_orientation(ds, p)) for p, ds in zip(files, headers)]
    _reject_inconsistent(folder, "ImageOrientationPatient", files,
                         [np.round(o, 6).tolist() for o in orientations],
                         lambda a, b: np.max(np.abs(np.subtract(a, b))) > ORIENTATION_TOLERANCE)
    pixel_spacings = [_floats(ds, "PixelSpacing", 2, p) for p, ds in zip(files, headers)]
    if np.any(np.array(pixel_spacings) <= 0):
        raise InputError(folder, f"PixelSpacing must be positive, found {pixel_spacings[0].tolist()} mm")
    _reject_inconsistent(folder, "PixelSpacing (mm)", files, [s.tolist() for s in pixel_spacings],
                         lambda a, b: np.max(np.abs(np.subtract(a, b)) / np.abs(a)) > PIXEL_SPACING_TOLERANCE)

    def has_rescale(ds: Any) -> bool:
        return all(ds.get(k) not in (None, "") for k in ("RescaleSlope", "RescaleIntercept"))

    without_rescale = [os.path.basename(p) for p, ds in zip(files, headers) if not has_rescale(ds)]
    if without_rescale and len(without_rescale) < len(files):
        raise InputError(
            folder,
            f"RescaleSlope/RescaleIntercept missing in {len(without_rescale)} of {len(files)} slices "
            f"(e.g. {without_rescale[0]}) but present in the others: those slices' HU would be wrong; "
            "not one volume",
        )

    row, col = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, col)
    positions = np.array([_floats(ds, "ImagePositionPatient", 3, p) for p, ds in zip(files, headers)])
    order = np.argsort(positions @ normal, kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    positions = positions[order]
    _reject_duplicates(folder, files, headers, positions, normal)

    notes = list(info.notes)
    pixel_spacing = (float(pixel_spacings[0][0]), float(pixel_spacings[0][1]))
    rows, cols = shapes[0]
    plan = None
    if len(files) == 1:
        step = _single_slice_step(files[0], headers[0])
        out_shape = (1, rows, cols)
    else:
        try:
            plan = plan_grid(positions, row, col, pixel_spacing, (rows, cols), allow_gaps=allow_gaps)
        except GapError as error:
            raise InputError(folder, str(error)) from None
        step, out_shape = plan.step_mm, plan.shape
        notes.extend(plan.notes)
    tag_tilt = _tag_tilt_deg(headers[0])
    if tag_tilt and (plan is None or not plan.tilted):
        notes.append(f"GantryDetectorTilt says {tag_tilt:.2f} degrees, but the slice positions form an "
                     "orthogonal stack: no correction needed")
    if without_rescale:
        notes.append("no RescaleSlope/RescaleIntercept in any slice: stored values taken as HU")

    # Slices are decoded one by one straight into the int16 volume.
    resampled = plan is not None and plan.resampled
    _check_memory(folder, len(files) * rows * cols + (int(np.prod(out_shape)) if resampled else 0), 2,
                  shape=out_shape, pixel_type="DICOM slices")
    volume = np.empty((len(files), rows, cols), dtype=np.int16)
    syntaxes: list[str] = []
    for index, path in enumerate(files):
        volume[index] = _read_slice_hu(path, rows, cols, syntaxes)
    padding = _padding_hu(files, headers)

    origin = positions[0]
    if resampled:
        volume = resample_stack(volume, plan, pixel_spacing, padding_hu=padding)
        origin = positions[0] + plan.grid_offset[0] * row + plan.grid_offset[1] * col
    geometry = Geometry(
        spacing=(step, pixel_spacing[0], pixel_spacing[1]),
        origin=tuple(origin),
        direction=tuple(np.column_stack([row, col, normal]).ravel()),
    )
    meta = {
        "series_number": info.number,
        "series_description": info.description,
        "uid_hash": info.uid_hash,
        "grouped_by": list(info.grouped_by),
        "modality": info.modality,
        "modality_source": info.modality_source,
        "transfer_syntax": ", ".join(syntaxes),
        "acquisition": acquisition_facts(headers[0]),
        "padding_hu": padding,
        "tilt_deg": plan.tilt_deg if plan is not None else 0.0,
        "resampled": resampled,
        "warnings": notes,
    }
    return Volume(volume, geometry, folder, meta)


def _tag_tilt_deg(ds: Any) -> float:
    try:
        value = float(ds.get("GantryDetectorTilt")) if ds.get("GantryDetectorTilt") not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) and abs(value) > 1e-3 else 0.0


def _single_slice_step(path: str, ds: Any) -> float:
    thickness = ds.get("SliceThickness")
    try:
        step = float(thickness) if thickness not in (None, "") else 0.0
    except (TypeError, ValueError):
        step = 0.0
    if not (np.isfinite(step) and step > 0):
        raise InputError(path, "single-slice series without a positive SliceThickness: slice spacing unknown")
    return step


def _reject_duplicates(folder: str, files: list[str], headers: list[Any], positions: np.ndarray,
                       normal: np.ndarray) -> None:
    steps = np.diff(positions @ normal)
    for index in np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM):
        same = headers[index].get("SOPInstanceUID") == headers[index + 1].get("SOPInstanceUID")
        position = ", ".join(mm(v) for v in positions[index])
        raise InputError(
            folder,
            f"duplicate slice position ({position}) mm in {os.path.basename(files[index])} and "
            f"{os.path.basename(files[index + 1])}" + (" (same SOPInstanceUID: a copied file?)" if same else ""),
        )


def _read_slice_hu(path: str, rows: int, cols: int, syntaxes: list[str]) -> np.ndarray:
    """One slice as int16 HU; records its transfer syntax name in ``syntaxes``."""
    import warnings

    try:
        ds = dcmread(path)
    except Exception as error:
        raise InputError(path, f"cannot read DICOM file ({type(error).__name__})") from None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    syntax_name = syntax.name if syntax is not None else "unknown"
    if syntax_name not in syntaxes:
        syntaxes.append(syntax_name)
    if "PixelData" not in ds:
        raise InputError(path, "no pixel data")
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InputError(path, f"{ds.SamplesPerPixel} samples per pixel (colour); CT needs 1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as error:
        raise InputError(path, f"cannot decode pixel data ({syntax_name}): {error}") from None
    if pixels.shape != (rows, cols):
        raise InputError(path, f"pixel data of shape {pixels.shape}, header says {(rows, cols)}")
    slope, intercept = _rescale(ds, path)
    return to_hu_int16(pixels.astype(np.float64) * slope + intercept, path)


def read_series_folder(folder: str | os.PathLike[str], *, assume_ct: bool = False,
                       allow_gaps: bool = False) -> Volume:
    """Read the one DICOM CT series under a folder (used by ``radiolab.io.read_volume``).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder searched recursively.
    assume_ct, allow_gaps : bool
        As in :func:`~radiolab.dicom.find_series` and :func:`read_series`.

    Returns
    -------
    Volume
        As :func:`read_series`, with ``path`` = ``folder``.

    Raises
    ------
    InputError
        If no CT series or more than one is found (run ``radiolab ingest`` to split a
        folder with several), or as :func:`read_series`.
    """
    folder = os.fspath(folder)
    series, skipped = find_series(folder, assume_ct=assume_ct)
    if not series:
        why = ""
        if skipped:
            reasons = sorted({s.reason for s in skipped})
            why = f" (skipped {len(skipped)}: {'; '.join(reasons[:3])}{'; ...' if len(reasons) > 3 else ''})"
        raise InputError(folder, f"no DICOM CT series found under this folder{why}")
    if len(series) > 1:
        names = ", ".join(s.name for s in series[:5]) + (", ..." if len(series) > 5 else "")
        raise InputError(folder, f"{len(series)} CT series found under this folder ({names}); "
                                 "run `radiolab ingest` to split them")
    volume = read_series(series[0], allow_gaps=allow_gaps)
    volume.path = folder
    return volume
