"""``ingest``: convert every CT series under a folder to NRRD, one bad series never stopping the rest."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from radiolab.dicom.discovery import Skipped, find_series
from radiolab.dicom.series import ACQUISITION_KEYS, read_series
from radiolab.errors import InputError
from radiolab.io import Volume, write_volume


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
        Written path -> the reading warnings recorded for it (fallback grouping,
        missing Modality, tilt, resampling, interpolated gaps).
    """

    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def _header_text(value: Any) -> str:
    """A string safe for one ASCII NRRD header line."""
    value = re.sub(r"[\x00-\x1f\x7f]+", " ", str(value))
    return value.encode("ascii", "backslashreplace").decode("ascii")


def volume_header_fields(volume: Volume) -> dict[str, Any]:
    """NRRD header fields describing a DICOM-read volume; none holds a patient tag.

    ``radiolab_source`` = "dicom", series number, description, UID hash, grouping
    keys, modality and its source, transfer syntax, tilt angle (degrees), whether the
    volume was resampled, the padding value (HU), the acquisition facts
    (``radiolab_<key>`` for each :data:`~radiolab.dicom.series.ACQUISITION_KEYS`) and
    the reading warnings.
    """
    meta = volume.meta
    number = meta.get("series_number")
    padding = meta.get("padding_hu")
    fields: dict[str, Any] = {
        "radiolab_source": "dicom",
        "radiolab_series_number": "" if number is None else str(number),
        "radiolab_series_description": _header_text(meta.get("series_description", "")),
        "radiolab_series_uid_hash": meta["uid_hash"],
        "radiolab_grouped_by": ", ".join(meta.get("grouped_by", [])),
        "radiolab_modality": meta["modality"],
        "radiolab_modality_source": _header_text(meta.get("modality_source", "")),
        "radiolab_transfer_syntax": _header_text(meta.get("transfer_syntax", "")),
        "radiolab_tilt_deg": f"{float(meta.get('tilt_deg', 0.0)):.2f}",
        "radiolab_resampled": "yes" if meta.get("resampled") else "no",
        "radiolab_padding_hu": "" if padding is None else str(padding),
    }
    acquisition = meta.get("acquisition", {})
    for key in ACQUISITION_KEYS:
        fields[f"radiolab_{key}"] = _header_text(acquisition.get(key, ""))
    fields["radiolab_warnings"] = [_header_text(w) for w in meta.get("warnings", [])]
    return fields


def ingest(root: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
           compression_level: int = 1, assume_ct: bool = False, allow_gaps: bool = False) -> IngestReport:
    """Convert every CT series under a folder to ``out_dir/<series name>.nrrd``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder searched recursively for DICOM files.
    out_dir : str or os.PathLike
        Output folder, created if needed; existing files of the same name are replaced.
    compression_level : int
        gzip level of the NRRD files, 1 (fast, the default) to 9 (smallest).
    assume_ct : bool
        Accept series without a Modality tag even without CT evidence (never one whose
        Modality says otherwise).
    allow_gaps : bool
        Interpolate across gaps in the slice positions instead of refusing the series.

    Returns
    -------
    IngestReport
        Written paths, skipped files/series with reasons, failed series with messages,
        and the warnings of each written volume. One failing series does not stop the
        others. NRRD headers carry :func:`volume_header_fields`; no patient tag.

    Raises
    ------
    InputError
        If ``root`` does not exist.
    """
    series, skipped = find_series(root, assume_ct=assume_ct)
    report = IngestReport(skipped=list(skipped))
    out_dir = os.fspath(out_dir)
    for info in series:
        path = os.path.join(out_dir, f"{info.name}.nrrd")
        try:
            volume = read_series(info, allow_gaps=allow_gaps)
            write_volume(path, volume.array, volume.geometry, fields=volume_header_fields(volume),
                         compression_level=compression_level)
        except Exception as error:  # one bad series must not stop the others
            message = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
            report.failed.append(Failed(info.name, info.folder, message))
            continue
        report.written.append(path)
        report.warnings[path] = list(volume.meta["warnings"])
    return report


def scan_header_fields(volume: Volume) -> dict[str, Any]:
    """:func:`volume_header_fields` for a DICOM-read volume, else {} (for segment outputs)."""
    return volume_header_fields(volume) if volume.meta.get("uid_hash") else {}


def scan_columns(volume: Volume) -> dict[str, str]:
    """``summary.csv`` columns of a scan: its acquisition facts and tilt, where known.

    From ``Volume.meta`` for a DICOM series, from the ``radiolab_*`` header fields for
    an NRRD written by :func:`ingest`; {} for other volumes (their columns stay empty).
    """
    if volume.meta.get("uid_hash"):
        facts = dict(volume.meta.get("acquisition", {}))
        facts["tilt_deg"] = f"{float(volume.meta.get('tilt_deg', 0.0)):.2f}"
        return facts
    path = str(volume.path)
    if not path.lower().endswith((".nrrd", ".nhdr")):
        return {}
    from radiolab.io import read_custom_fields

    header = read_custom_fields(path)
    if header.get("radiolab_source") != "dicom":
        return {}
    return {key: header.get(f"radiolab_{key}", "") for key in (*ACQUISITION_KEYS, "tilt_deg")}
