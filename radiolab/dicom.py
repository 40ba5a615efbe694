"""DICOM CT ingest: find series in a folder tree, read them as HU volumes, write NRRD.

Privacy
-------
Nothing that identifies the patient leaves this module. Series names are built from
the series number, the series description and a hash of the SeriesInstanceUID;
``Volume.meta`` and the NRRD headers written by :func:`ingest` hold only the series
number, description, UID hash, modality, transfer syntax and reading warnings. Patient
name, ID, birth date, accession number and institution are never copied.

Geometry
--------
Slices are sorted by their position along the slice normal ``n = row x column`` (the
cross product of the two cosines of ImageOrientationPatient). The volume is indexed
``[k, j, i]`` (slice, row, column) with ``Geometry.spacing = (slice step, row spacing,
column spacing)`` in mm, ``origin`` = ImagePositionPatient of the first sorted slice
and ``direction`` columns = row cosine, column cosine, slice normal (LPS).

Uneven spacing
--------------
A series whose slice steps are not all equal (a missing slice, a gap between two
acquisitions) is still read, stacked at the *nominal* (median) step; each uneven step
is recorded as a warning in ``Volume.meta["warnings"]`` giving the gap in mm and the
two slice positions along the normal ("z"). Slices past a gap are then placed closer
together than they were acquired, so check the warnings before measuring distances or
volumes across the gap. Tilted-gantry (sheared) stacks and duplicate slice positions
are rejected instead, since no regular grid can hold them.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from radiolab.errors import InputError
from radiolab.io import Geometry, Volume, _check_memory, to_hu_int16, write_volume

# Media Storage Directory Storage: the SOP class of a DICOMDIR index file.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Relative deviation of one slice step from the median step that is reported as uneven.
SPACING_TOLERANCE = 0.05
# Angle (degrees) between the slice stacking direction and the slice normal above which
# a series counts as gantry-tilted.
TILT_TOLERANCE_DEG = 0.1
# Slice positions closer than this along the normal (mm) are duplicates.
DUPLICATE_TOLERANCE_MM = 1e-3
# Largest difference tolerated between slices in the orientation cosines.
ORIENTATION_TOLERANCE = 1e-3
# Largest relative difference tolerated between slices in PixelSpacing.
PIXEL_SPACING_TOLERANCE = 1e-3
# At most this many uneven-spacing warnings are listed one by one.
MAX_GAP_WARNINGS = 10
# Longest description slug kept in a series name.
MAX_SLUG_LENGTH = 40


@dataclass(frozen=True)
class SeriesInfo:
    """A CT series found on disk, from its headers only.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    number : int or None
        SeriesNumber, if present.
    description : str
        SeriesDescription ("" if absent).
    modality : str
        Modality ("CT" for every series :func:`find_series` returns as readable).
    files : tuple of str
        The series' files, sorted by path (not by slice position).
    name : str
        PHI-free name, unique within one :func:`find_series` run, made only of
        ``[A-Za-z0-9._-]``: ``series-<number>-<description slug>-<sha1(uid)[:8]>``.
    """

    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[str, ...]
    name: str

    @property
    def folder(self) -> str:
        """The deepest folder holding all of the series' files."""
        return os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in self.files])

    @property
    def uid_hash(self) -> str:
        """First 16 hex digits of sha1(SeriesInstanceUID): traceable, not identifying."""
        return uid_hash(self.uid)


@dataclass(frozen=True)
class Skipped:
    """A file or series that :func:`find_series` will not read, with the reason.

    Attributes
    ----------
    source : str
        The file path for a file-level skip (a DICOMDIR, an unreadable header), or the
        SeriesInstanceUID when a whole series is skipped.
    reason : str
        Why, e.g. "modality MR is not CT".
    name : str
        The series' PHI-free name for a series-level skip, else "".
    folder : str
        The deepest folder holding the series' files for a series-level skip, else "".
    """

    source: str
    reason: str
    name: str = ""
    folder: str = ""

    def __str__(self) -> str:
        return f"{self.name or self.source}: {self.reason}"


@dataclass(frozen=True)
class Failed:
    """A CT series that :func:`ingest` could not read or write."""

    name: str
    folder: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass
class IngestReport:
    """What :func:`ingest` did.

    Attributes
    ----------
    written : list of str
        Paths of the NRRD files written, one per CT series read.
    skipped : list of Skipped
        Files and series not read, with reasons.
    failed : list of Failed
        CT series that could not be read or written, with the error message.
    warnings : dict
        Written path -> the reading warnings recorded for it (e.g. uneven spacing).
    """

    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- finding


def uid_hash(uid: str) -> str:
    """First 16 hex digits of the SHA-1 of a UID."""
    return hashlib.sha1(uid.encode("ascii", "replace")).hexdigest()[:16]


def _dcmread(path: str, **kwargs: Any) -> Any:
    import pydicom

    # pydicom warns about minor non-conformance (odd VRs, padding); reading is meant to
    # be lenient, and warning texts may quote header values, so they are not kept.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=False, **kwargs)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _series_number(ds: Any) -> int | None:
    try:
        value = ds.get("SeriesNumber")
        return None if value is None or str(value).strip() == "" else int(value)
    except (TypeError, ValueError):
        return None


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", ascii_text).strip("-.").lower()
    return slug[:MAX_SLUG_LENGTH].rstrip("-.")


def series_name(uid: str, number: int | None, description: str) -> str:
    """PHI-free name of a series: ``series-<number>-<description slug>-<hash8>``.

    Only the series number, description and a hash of the UID are used; the result is
    made of ``[A-Za-z0-9._-]``.

    >>> series_name("1.2.3", 4, "Thorax 1.0 B70f")
    'series-4-thorax-1.0-b70f-6f9f3348'
    """
    parts = ["series", str(number) if number is not None else "nn"]
    slug = _slug(description)
    if slug:
        parts.append(slug)
    parts.append(uid_hash(uid)[:8])
    return "-".join(parts)


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    # Compare case-insensitively: output folders may live on case-insensitive disks.
    while candidate.lower() in taken:
        candidate, counter = f"{name}-{counter}", counter + 1
    taken.add(candidate.lower())
    return candidate


def _walk(root: str) -> Iterable[str]:
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            yield os.path.join(folder, name)


def _image_type(ds: Any) -> list[str]:
    value = ds.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [_text(v).upper() for v in values]


def _series_skip_reason(headers: list[Any]) -> str | None:
    """Why a series cannot be read as a CT volume, or None if it can."""
    n = len(headers)
    modalities = sorted({_text(ds.get("Modality")) or "(none)" for ds in headers})
    if modalities != ["CT"]:
        if len(modalities) == 1:
            return f"modality {modalities[0]} is not CT"
        return f"mixed modalities {', '.join(modalities)} in one series"

    def count_missing(*keywords: str) -> int:
        return sum(any(ds.get(k) is None or ds.get(k) == "" for k in keywords) for ds in headers)

    # stop_before_pixels cannot see PixelData itself; Rows and Columns are mandatory in
    # the same Image Pixel module, so an object without them carries no image.
    missing = count_missing("Rows", "Columns")
    if missing:
        return f"no pixel data (no Rows/Columns) in {missing} of {n} files"
    try:
        frames = max(int(ds.get("NumberOfFrames") or 1) for ds in headers)
    except (TypeError, ValueError):
        return "NumberOfFrames is not a number"
    if frames > 1:
        return f"multi-frame image (NumberOfFrames={frames}) is not supported"
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient"):
        missing = count_missing(keyword)
        if missing:
            return f"no {keyword} in {missing} of {n} files"
    localizers = sum("LOCALIZER" in _image_type(ds) for ds in headers)
    if localizers:
        return f"localizer (scout) images ({localizers} of {n} files), not a volume"
    return None


def find_series(root: str | os.PathLike[str]) -> tuple[list[SeriesInfo], list[Skipped]]:
    """Find the CT series under a folder, reading headers only.

    Files are grouped by SeriesInstanceUID, so several series may share a folder and one
    series may span folders. Files that are not DICOM are ignored silently.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to walk recursively (a single DICOM file is accepted too).

    Returns
    -------
    series : list of SeriesInfo
        Readable CT series, ordered by series number then name.
    skipped : list of Skipped
        DICOMDIR files, unreadable DICOM headers, files without a SeriesInstanceUID
        and series that are not CT volumes (other modalities, no pixel data, no
        ImagePositionPatient/ImageOrientationPatient, multi-frame, localizers).

    Raises
    ------
    InputError
        If ``root`` does not exist.
    """
    from pydicom.errors import InvalidDicomError

    root = os.fspath(root)
    if not os.path.exists(root):
        raise InputError(root, "folder does not exist")
    paths = [root] if os.path.isfile(root) else _walk(root)
    skipped: list[Skipped] = []
    groups: dict[str, list[tuple[str, Any]]] = {}
    for path in paths:
        try:
            ds = _dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM: no preamble / DICM prefix
        except OSError as error:
            skipped.append(Skipped(path, f"cannot read file: {error.strerror or error}"))
            continue
        except Exception as error:  # pydicom raises many types on corrupt headers
            skipped.append(Skipped(path, f"unreadable DICOM header ({type(error).__name__})"))
            continue
        sop_class = _text(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            skipped.append(Skipped(path, "DICOMDIR index file; series are found from the image files themselves"))
            continue
        uid = _text(ds.get("SeriesInstanceUID"))
        if not uid:
            skipped.append(Skipped(path, "no SeriesInstanceUID"))
            continue
        groups.setdefault(uid, []).append((path, ds))

    taken: set[str] = set()
    found: list[SeriesInfo] = []
    entries = []
    for uid, members in groups.items():
        first = members[0][1]
        entries.append((_series_number(first), _text(first.get("SeriesDescription")), uid, members))
    entries.sort(key=lambda e: (e[0] is None, e[0] or 0, series_name(e[2], e[0], e[1])))
    for number, description, uid, members in entries:
        name = _unique(series_name(uid, number, description), taken)
        headers = [ds for _, ds in members]
        reason = _series_skip_reason(headers)
        if reason is not None:
            folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p, _ in members])
            skipped.append(Skipped(uid, reason, name, folder))
            continue
        found.append(SeriesInfo(uid=uid, number=number, description=description,
                                modality="CT", files=tuple(sorted(p for p, _ in members)),
                                name=name))
    return found, skipped


# --------------------------------------------------------------------------- reading


def _mm(value: float) -> str:
    """A length in mm for messages: up to 3 decimals, at least one."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


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


def _reject_inconsistent(folder: str, what: str, files: list[str], values: list[Any],
                         differs: Any) -> None:
    for path, value in zip(files[1:], values[1:]):
        if differs(values[0], value):
            raise InputError(
                folder,
                f"{what} differs between slices: {values[0]} in {os.path.basename(files[0])}, "
                f"{value} in {os.path.basename(path)}; not one volume",
            )


def _slice_spacing(folder: str, files: list[str], positions: np.ndarray, normal: np.ndarray,
                   headers: list[Any], *, spacing_tolerance: float,
                   tilt_tolerance_deg: float) -> tuple[float, list[str]]:
    """Nominal slice step (mm) of sorted positions, and uneven-spacing warnings."""
    if len(files) == 1:
        thickness = headers[0].get("SliceThickness")
        try:
            step = float(thickness) if thickness not in (None, "") else 0.0
        except (TypeError, ValueError):
            step = 0.0
        if not (np.isfinite(step) and step > 0):
            raise InputError(files[0], "single-slice series without a positive SliceThickness: "
                                       "slice spacing unknown")
        return step, []

    along = positions @ normal
    steps = np.diff(along)
    for index in np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM):
        a, b = files[index], files[index + 1]
        same = headers[index].get("SOPInstanceUID") == headers[index + 1].get("SOPInstanceUID")
        position = ", ".join(_mm(v) for v in positions[index])
        raise InputError(
            folder,
            f"duplicate slice position ({position}) mm in {os.path.basename(a)} and "
            f"{os.path.basename(b)}" + (" (same SOPInstanceUID: a copied file?)" if same else ""),
        )

    # Gantry tilt: slices stacked along a direction other than the normal (a shear).
    offsets = positions[1:] - positions[0]
    axial = offsets @ normal
    lateral = np.linalg.norm(offsets - np.outer(axial, normal), axis=1)
    angles = np.degrees(np.arctan2(lateral, np.abs(axial)))
    worst = int(np.argmax(angles))
    if angles[worst] > tilt_tolerance_deg and lateral[worst] > 0.01:
        raise InputError(
            folder,
            f"gantry tilt of {angles[worst]:.2f} degrees: slices are stacked at "
            f"{angles[worst]:.2f} degrees to the slice normal; tilted series are not supported",
        )

    nominal = float(np.median(steps))
    notes: list[str] = []
    uneven = np.flatnonzero(np.abs(steps - nominal) > max(spacing_tolerance * nominal, 1e-3))
    for index in uneven[:MAX_GAP_WARNINGS]:
        gap = float(steps[index])
        text = (f"uneven slice spacing: gap of {_mm(gap)} mm between z={_mm(along[index])} "
                f"and z={_mm(along[index + 1])} mm, nominal {_mm(nominal)} mm")
        missing = round(gap / nominal) - 1
        if missing >= 1 and abs(gap - (missing + 1) * nominal) <= spacing_tolerance * nominal:
            text += f" (about {missing} slice{'s' if missing > 1 else ''} missing)"
        notes.append(text + "; volume stacked at the nominal spacing")
    if len(uneven) > MAX_GAP_WARNINGS:
        notes.append(f"uneven slice spacing: {len(uneven) - MAX_GAP_WARNINGS} more uneven steps")
    return nominal, notes


def read_series(info: SeriesInfo, *, spacing_tolerance: float = SPACING_TOLERANCE,
                tilt_tolerance_deg: float = TILT_TOLERANCE_DEG) -> Volume:
    """Read a CT series as an int16 HU volume with its geometry.

    Parameters
    ----------
    info : SeriesInfo
        A series from :func:`find_series`.
    spacing_tolerance : float
        Relative deviation of a slice step from the median step reported as uneven
        spacing (0.05 = 5 %).
    tilt_tolerance_deg : float
        Angle in degrees between the slice stacking direction and the slice normal
        above which the series counts as gantry-tilted.

    Returns
    -------
    Volume
        ``array`` indexed (slice, row, column) as int16 HU (``pixel * RescaleSlope +
        RescaleIntercept`` per slice, rounded); geometry as described in the module
        docstring; ``path`` = the series' folder; ``meta`` with ``series_number``,
        ``series_description``, ``uid_hash``, ``modality``, ``transfer_syntax`` and
        ``warnings`` (uneven spacing, one string per uneven step, gaps in mm; missing
        rescale tags).

    Raises
    ------
    InputError
        Naming the folder or file: unreadable or undecodable file, no pixel data, colour
        or multi-frame pixels, differing Rows/Columns, ImageOrientationPatient or
        PixelSpacing between slices, RescaleSlope/RescaleIntercept present in some
        slices only, duplicate slice positions, gantry tilt (with its angle in
        degrees), a single slice without SliceThickness, HU outside int16, or too
        large for memory.
    """
    folder = info.folder
    files = list(info.files)
    if not files:
        raise InputError(folder, "series has no files")
    headers = []
    for path in files:
        try:
            headers.append(_dcmread(path, stop_before_pixels=True))
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
    for path, ds in zip(files, headers):
        tilt = ds.get("GantryDetectorTilt")
        try:
            tilt_deg = float(tilt) if tilt not in (None, "") else 0.0
        except (TypeError, ValueError):
            tilt_deg = 0.0
        if abs(tilt_deg) > 1e-3:
            raise InputError(path, f"gantry tilt of {tilt_deg:.2f} degrees (GantryDetectorTilt); "
                                   "tilted series are not supported")

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
    step, notes = _slice_spacing(folder, files, positions, normal, headers,
                                 spacing_tolerance=spacing_tolerance,
                                 tilt_tolerance_deg=tilt_tolerance_deg)

    if without_rescale:
        notes.append("no RescaleSlope/RescaleIntercept in any slice: stored values taken as HU")

    rows, cols = shapes[0]
    # Slices are decoded one by one straight into the int16 volume.
    _check_memory(folder, len(files) * rows * cols, 2, shape=(len(files), rows, cols),
                  pixel_type="DICOM slices")
    volume = np.empty((len(files), rows, cols), dtype=np.int16)
    syntaxes: list[str] = []
    for index, path in enumerate(files):
        volume[index] = _read_slice_hu(path, rows, cols, syntaxes)

    geometry = Geometry(
        spacing=(step, float(pixel_spacings[0][0]), float(pixel_spacings[0][1])),
        origin=tuple(positions[0]),
        direction=tuple(np.column_stack([row, col, normal]).ravel()),
    )
    meta = {
        "series_number": info.number,
        "series_description": info.description,
        "uid_hash": uid_hash(info.uid),
        "modality": info.modality,
        "transfer_syntax": ", ".join(syntaxes),
        "warnings": notes,
    }
    return Volume(volume, geometry, folder, meta)


def _read_slice_hu(path: str, rows: int, cols: int, syntaxes: list[str]) -> np.ndarray:
    """One slice as int16 HU; records its transfer syntax name in ``syntaxes``."""
    try:
        ds = _dcmread(path)
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
    try:
        slope = float(ds.get("RescaleSlope") if ds.get("RescaleSlope") not in (None, "") else 1.0)
        intercept = float(ds.get("RescaleIntercept")
                          if ds.get("RescaleIntercept") not in (None, "") else 0.0)
    except (TypeError, ValueError):
        raise InputError(path, "RescaleSlope/RescaleIntercept are not numbers") from None
    return to_hu_int16(pixels.astype(np.float64) * slope + intercept, path)


def read_series_folder(folder: str | os.PathLike[str]) -> Volume:
    """Read the one DICOM CT series under a folder (used by ``radiolab.io.read_volume``).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder searched recursively.

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
    series, skipped = find_series(folder)
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
    volume = read_series(series[0])
    volume.path = folder
    return volume


# --------------------------------------------------------------------------- ingest


def _header_text(text: str) -> str:
    """A string safe for one ASCII NRRD header line."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    return text.encode("ascii", "backslashreplace").decode("ascii")


def ingest(root: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
           compression_level: int = 1) -> IngestReport:
    """Convert every CT series under a folder to ``out_dir/<series name>.nrrd``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder searched recursively for DICOM files.
    out_dir : str or os.PathLike
        Output folder, created if needed; existing files of the same name are replaced.
    compression_level : int
        gzip level of the NRRD files, 1 (fast, the default) to 9 (smallest).

    Returns
    -------
    IngestReport
        Written paths, skipped files/series with reasons, failed series with messages,
        and the warnings of each written volume. One failing series does not stop the
        others. NRRD headers carry ``radiolab_source`` = "dicom", the series number,
        description, UID hash, modality, transfer syntax and warnings; no patient tag.

    Raises
    ------
    InputError
        If ``root`` does not exist.
    """
    series, skipped = find_series(root)
    report = IngestReport(skipped=list(skipped))
    out_dir = os.fspath(out_dir)
    for info in series:
        path = os.path.join(out_dir, f"{info.name}.nrrd")
        try:
            volume = read_series(info)
            fields = {
                "radiolab_source": "dicom",
                "radiolab_series_number": "" if info.number is None else str(info.number),
                "radiolab_series_description": _header_text(info.description),
                "radiolab_series_uid_hash": volume.meta["uid_hash"],
                "radiolab_modality": volume.meta["modality"],
                "radiolab_transfer_syntax": _header_text(volume.meta["transfer_syntax"]),
                "radiolab_warnings": list(volume.meta["warnings"]),
            }
            write_volume(path, volume.array, volume.geometry, fields=fields,
                         compression_level=compression_level)
        except Exception as error:  # one bad series must not stop the others
            message = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
            report.failed.append(Failed(info.name, info.folder, message))
            continue
        report.written.append(path)
        report.warnings[path] = list(volume.meta["warnings"])
    return report
