"""Input discovery: the scans named by files and folders, and their content hashes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

from radiolab.errors import InputError
from radiolab.io import Volume, is_volume_file, read_volume, scan_id


@dataclass(frozen=True)
class ScanInput:
    """One scan to process: a volume file, a DICOM folder, or one series of a folder."""

    id: str
    path: str
    series: Any = None  # radiolab.dicom.SeriesInfo when the scan is a DICOM series
    allow_gaps: bool = False  # interpolate across gaps in a DICOM series' slice positions

    def read(self) -> Volume:
        if self.series is not None:
            from radiolab.dicom import read_series

            return read_series(self.series, allow_gaps=self.allow_gaps)
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


def find_inputs(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, assume_ct: bool = False,
                allow_gaps: bool = False) -> tuple[list[ScanInput], list[tuple[str, str]]]:
    """Scans named by files or found in folders (volume files and DICOM series).

    ``assume_ct`` and ``allow_gaps`` are passed to the DICOM reader
    (`radiolab.dicom.find_series`, `radiolab.dicom.read_series`).

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
        found = _scan_folder(path, scans, skipped, assume_ct=assume_ct, allow_gaps=allow_gaps)
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


def _scan_folder(folder: str, scans: list[ScanInput], skipped: list[tuple[str, str]], *,
                 assume_ct: bool = False, allow_gaps: bool = False) -> int:
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

        series, series_skipped = find_series(folder, assume_ct=assume_ct)
        for info in series:
            scans.append(ScanInput(info.name, str(info.folder), info, allow_gaps=allow_gaps))
        skipped.extend((str(item.source), item.reason) for item in series_skipped)
    return len(scans) - before
