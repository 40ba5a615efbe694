"""Find DICOM CT series in a folder tree from their headers; PHI-free series names.

Files are grouped by SeriesInstanceUID. Anonymisers sometimes remove it; then the
files are grouped by the next best keys (:data:`FALLBACK_KEYS`: study, series number
and description, acquisition, image type, kernel, orientation, matrix, pixel spacing),
so that two reconstructions of one acquisition never merge, and by folder as well when
nothing identifies the study. Which keys were used is recorded with the series.

A series must be CT: its Modality says so, or, when Modality is missing, its headers or
values show CT (:func:`ct_evidence`), or the caller assumes CT (``assume_ct``). An
explicit non-CT Modality (MR, SEG, ...) is never overridden.

Privacy: series names are built from the series number, the description and a hash of
the grouping key; no patient tag and no folder name is used.
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

# Media Storage Directory Storage: the SOP class of a DICOMDIR index file.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# CT Image Storage and Enhanced CT Image Storage.
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
                  "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage"}
# Stored values of a CT already in HU: tissue within this range, padding below it.
HU_RANGE = (-1024, 3071)
# Longest description slug kept in a series name.
MAX_SLUG_LENGTH = 40
# Keys that separate series when SeriesInstanceUID is missing, in order of use.
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime")
FALLBACK_KEYS = (*STUDY_KEYS, "SeriesNumber", "SeriesDescription", "AcquisitionNumber", "ImageType",
                 "ConvolutionKernel", "ImageOrientationPatient", "Rows", "Columns", "PixelSpacing")


@dataclass(frozen=True)
class SeriesInfo:
    """A CT series found on disk, from its headers only.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID ("" when the files have none).
    number : int or None
        SeriesNumber, if present.
    description : str
        SeriesDescription ("" if absent).
    modality : str
        "CT" for every series :func:`find_series` returns.
    files : tuple of str
        The series' files, sorted by path (not by slice position).
    name : str
        PHI-free name, unique within one :func:`find_series` run, made only of
        ``[A-Za-z0-9._-]``: ``series-<number>-<description slug>-<hash8>``.
    grouped_by : tuple of str
        ``("SeriesInstanceUID",)``, or the fallback keys that grouped the files (a
        ``"folder"`` entry when the folder was one of them).
    key : str
        The grouping key's text (the UID, or the fallback values); only its hash is
        ever written out.
    modality_source : str
        Why the series counts as CT: "Modality", or the evidence when Modality is
        missing ("CT Image Storage SOP class", "rescale tags", "HU values with padding",
        "assumed (--assume-ct)").
    """

    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[str, ...]
    name: str
    grouped_by: tuple[str, ...] = ("SeriesInstanceUID",)
    key: str = ""
    modality_source: str = "Modality"

    @property
    def folder(self) -> str:
        """The deepest folder holding all of the series' files."""
        return os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in self.files])

    @property
    def uid_hash(self) -> str:
        """First 16 hex digits of sha1 of the grouping key: traceable, not identifying."""
        return uid_hash(self.key or self.uid)

    @property
    def notes(self) -> list[str]:
        """Warnings about how the series was found (fallback grouping, missing Modality)."""
        notes = []
        if self.grouped_by != ("SeriesInstanceUID",):
            notes.append("no SeriesInstanceUID: files grouped by " + ", ".join(self.grouped_by))
        if self.modality_source != "Modality":
            notes.append(f"no Modality tag: taken as CT from {self.modality_source}")
        return notes


@dataclass(frozen=True)
class Skipped:
    """A file or series that :func:`find_series` will not read, with the reason.

    Attributes
    ----------
    source : str
        The file path for a file-level skip (a DICOMDIR, an unreadable header), or the
        SeriesInstanceUID (the series name when it has none) for a whole series.
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


def uid_hash(uid: str) -> str:
    """First 16 hex digits of the SHA-1 of a UID (or any grouping key)."""
    return hashlib.sha1(uid.encode("ascii", "replace")).hexdigest()[:16]


def dcmread(path: str, **kwargs: Any) -> Any:
    """pydicom.dcmread without its warnings (their texts may quote header values)."""
    import pydicom

    # pydicom warns about minor non-conformance (odd VRs, padding); reading is meant to
    # be lenient, and warning texts may quote header values, so they are not kept.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=False, **kwargs)


def text(value: Any) -> str:
    """A header value as stripped text ("" for None); multi-values joined by backslash."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _series_number(ds: Any) -> int | None:
    try:
        value = ds.get("SeriesNumber")
        return None if value is None or str(value).strip() == "" else int(value)
    except (TypeError, ValueError):
        return None


def _slug(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", ascii_text).strip("-.").lower()
    return slug[:MAX_SLUG_LENGTH].rstrip("-.")


def series_name(uid: str, number: int | None, description: str) -> str:
    """PHI-free name of a series: ``series-<number>-<description slug>-<hash8>``.

    Only the series number, description and a hash of the UID (or grouping key) are
    used; the result is made of ``[A-Za-z0-9._-]``.

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
    return [text(v).upper() for v in values]


def _fallback_value(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if keyword in ("ImageOrientationPatient", "PixelSpacing") and value not in (None, ""):
        try:  # rounded so that writing noise does not split a series
            return ",".join(f"{float(v):.3f}" for v in value)
        except (TypeError, ValueError):
            return text(value)
    return text(value)


def grouping_key(ds: Any, path: str) -> tuple[str, tuple[str, ...]]:
    """The key that groups a file into its series, and the keys it was built from.

    SeriesInstanceUID when present. Otherwise every :data:`FALLBACK_KEYS` value
    present; the folder is added when no study key is present (so that the series of
    different studies never merge) and is the only key when nothing else is.
    """
    uid = text(ds.get("SeriesInstanceUID"))
    if uid:
        return uid, ("SeriesInstanceUID",)
    used = [(k, _fallback_value(ds, k)) for k in FALLBACK_KEYS]
    used = [(k, v) for k, v in used if v]
    if not any(k in STUDY_KEYS for k, _ in used):
        used.append(("folder", os.path.dirname(os.path.abspath(path))))
    return "|".join(f"{k}={v}" for k, v in used), tuple(k for k, _ in used)


def ct_evidence(headers: list[Any], first_path: str) -> str | None:
    """Why a series without a Modality tag looks like CT, or None.

    Evidence, in order: a CT SOP Class UID, both rescale tags (RescaleSlope and
    RescaleIntercept), or stored values of the first file inside the HU range
    (-1024 to 3071) with padding below -1024 (read from its pixels).
    """
    sop_classes = {text(ds.get("SOPClassUID")) or
                   text(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)) for ds in headers}
    if len(sop_classes) == 1 and next(iter(sop_classes)) in CT_SOP_CLASSES:
        return f"its SOP class ({CT_SOP_CLASSES[next(iter(sop_classes))]})"
    if all(ds.get("RescaleSlope") not in (None, "") and ds.get("RescaleIntercept") not in (None, "")
           for ds in headers):
        return "its rescale tags (RescaleSlope, RescaleIntercept)"
    try:
        pixels = dcmread(first_path).pixel_array
    except Exception:  # no decodable pixels: no evidence
        return None
    if pixels.ndim != 2 or not np.issubdtype(pixels.dtype, np.signedinteger):
        return None
    values = pixels.ravel()
    below = values < HU_RANGE[0]
    if below.any() and np.unique(values[below]).size == 1 and values[~below].max(initial=HU_RANGE[0]) <= HU_RANGE[1]:
        return f"its values (HU range with padding {int(values[below][0])})"
    return None


def _series_skip_reason(headers: list[Any]) -> str | None:
    """Why a series cannot be read as a CT volume (Modality aside), or None if it can."""
    n = len(headers)

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


def _modality_decision(headers: list[Any], first_path: str, assume_ct: bool) -> tuple[str | None, str]:
    """(skip reason or None, modality source)."""
    modalities = sorted({text(ds.get("Modality")) or "(none)" for ds in headers})
    if modalities == ["CT"]:
        return None, "Modality"
    if modalities != ["(none)"]:
        if len(modalities) == 1:
            return f"modality {modalities[0]} is not CT", ""
        return f"mixed modalities {', '.join(modalities)} in one series", ""
    evidence = ct_evidence(headers, first_path)
    if evidence is not None:
        return None, evidence
    if assume_ct:
        return None, "assumed (--assume-ct)"
    return ("no Modality tag and nothing shows CT (no CT SOP class, no rescale tags, values not in "
            "an HU range with padding); give --assume-ct if it is CT"), ""


@dataclass
class _Group:
    key: str
    grouped_by: tuple[str, ...]
    members: list[tuple[str, Any]] = field(default_factory=list)


def find_series(root: str | os.PathLike[str], *, assume_ct: bool = False) -> tuple[list[SeriesInfo], list[Skipped]]:
    """Find the CT series under a folder, reading headers only.

    Files are grouped by SeriesInstanceUID (or the fallback keys, see
    :func:`grouping_key`), so several series may share a folder and one series may span
    folders. Files that are not DICOM are ignored silently.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to walk recursively (a single DICOM file is accepted too).
    assume_ct : bool
        Accept series without a Modality tag even without CT evidence. An explicit
        non-CT Modality is never overridden.

    Returns
    -------
    series : list of SeriesInfo
        Readable CT series, ordered by series number then name.
    skipped : list of Skipped
        DICOMDIR files, unreadable DICOM headers, and series that are not CT volumes
        (other modalities, no Modality and no CT evidence, no pixel data, no
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
    groups: dict[str, _Group] = {}
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM: no preamble / DICM prefix
        except OSError as error:
            skipped.append(Skipped(path, f"cannot read file: {error.strerror or error}"))
            continue
        except Exception as error:  # pydicom raises many types on corrupt headers
            skipped.append(Skipped(path, f"unreadable DICOM header ({type(error).__name__})"))
            continue
        sop_class = text(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            skipped.append(Skipped(path, "DICOMDIR index file; series are found from the image files themselves"))
            continue
        key, grouped_by = grouping_key(ds, path)
        groups.setdefault(key, _Group(key, grouped_by)).members.append((path, ds))

    taken: set[str] = set()
    found: list[SeriesInfo] = []
    entries = []
    for group in groups.values():
        first = group.members[0][1]
        number, description = _series_number(first), text(first.get("SeriesDescription"))
        entries.append((number, description, group))
    entries.sort(key=lambda e: (e[0] is None, e[0] or 0, series_name(e[2].key, e[0], e[1])))
    for number, description, group in entries:
        name = _unique(series_name(group.key, number, description), taken)
        members = sorted(group.members, key=lambda m: m[0])
        headers = [ds for _, ds in members]
        uid = group.key if group.grouped_by == ("SeriesInstanceUID",) else ""
        reason, source = _modality_decision(headers, members[0][0], assume_ct)
        if reason is None:
            reason = _series_skip_reason(headers)
        if reason is not None:
            folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p, _ in members])
            skipped.append(Skipped(uid or name, reason, name, folder))
            continue
        found.append(SeriesInfo(uid=uid, number=number, description=description, modality="CT",
                                files=tuple(p for p, _ in members), name=name,
                                grouped_by=group.grouped_by, key=group.key, modality_source=source))
    return found, skipped
