"""Reading and writing volumes with their geometry, and atomic file output.

Array convention
----------------
Volumes are numpy arrays indexed ``[z, y, x]`` (slice, row, column), the order of
``SimpleITK.GetArrayFromImage``. ``Geometry.spacing`` follows the *array* order
(z, y, x) in mm, so ``volume.shape`` and ``spacing`` line up axis by axis.
``Geometry.origin`` is the physical LPS position (x, y, z) of voxel ``[0, 0, 0]`` in mm
and ``Geometry.direction`` the ITK direction cosine matrix (row-major 3x3), whose
columns are the physical directions of the index axes i, j, k (= x, y, z).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from radiolab.errors import InputError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
HU_MIN, HU_MAX = -32768, 32767
# Peak memory of `radiolab segment` on one scan, in multiples of the scan's int16 size:
# the scan, the lung mask and its working copies, the label and median maps. Measured
# peak resident memory above the interpreter's: 4.2-4.7x on phantoms of 16-29 million
# voxels; 5.5x leaves a margin.
SEGMENT_PEAK_FACTOR = 5.5
# Refuse a scan whose estimated peak exceeds this share of the memory available now.
MEMORY_SHARE_LIMIT = 0.9
# mkstemp creates 0600 files; outputs get the permissions an ordinary open() would give.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits in the patient.

    Attributes
    ----------
    spacing : tuple of float
        Voxel size along the array axes (z, y, x), in mm.
    origin : tuple of float
        LPS position (x, y, z) of voxel ``[0, 0, 0]``, in mm.
    direction : tuple of float
        Row-major 3x3 direction cosines (ITK convention), columns = index axes i, j, k.
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be three positive finite mm values, got {self.spacing}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def to_json(self) -> dict[str, list[float]]:
        return {"spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}


@dataclass
class Volume:
    """An HU volume (or any voxel map) with its geometry and its source path."""

    array: np.ndarray
    geometry: Geometry
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing


def scan_id(path: str | os.PathLike[str]) -> str:
    """The scan's id: its file or folder name without volume extensions."""
    name = Path(path).name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_volume_file(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def available_memory_bytes() -> int:
    """Memory the OS could give us now (MemAvailable), or total RAM as a fallback."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _check_geometry(path: str, size: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Check an ITK size and spacing (both in file order x, y, z)."""
    if len(size) != 3:
        raise InputError(path, f"expected a 3-D volume, found {len(size)}-D image of size {size}")
    if min(size) < 1:
        raise InputError(path, f"empty volume of size {size}")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        zyx = tuple(float(s) for s in reversed(spacing))
        raise InputError(path, f"voxel spacing must be positive, found {zyx} mm along (z, y, x)")


def _size_text(n_bytes: float) -> str:
    """A memory size for messages: '812.5 MiB', '3.4 GiB', '10240.0 TiB'."""
    if n_bytes < 2**30:
        return f"{n_bytes / 2**20:.1f} MiB"
    if n_bytes < 2**40:
        return f"{n_bytes / 2**30:.1f} GiB"
    return f"{n_bytes / 2**40:.1f} TiB"


def memory_needed_bytes(n_voxels: int, bytes_per_voxel: int = 2, *, floating: bool = False) -> int:
    """Estimated peak memory of reading and segmenting one scan, in bytes.

    Parameters
    ----------
    n_voxels : int
        Voxels of the scan, from its header.
    bytes_per_voxel : int
        Size of one voxel as stored in the file (2 for int16).
    floating : bool
        True for floating-point voxels, which are rounded on a copy before conversion.

    Returns
    -------
    int
        The larger of the reading peak (the file's pixels, their numpy copy, a rounded
        copy for floating point, the int16 result) and the segmentation peak,
        ``SEGMENT_PEAK_FACTOR`` times the int16 scan.
    """
    n_voxels = int(n_voxels)
    reading = n_voxels * (bytes_per_voxel * (3 if floating else 2) + 2)
    segmenting = n_voxels * 2 * SEGMENT_PEAK_FACTOR
    return int(max(reading, segmenting))


def _check_memory(path: str, n_voxels: int, bytes_per_voxel: int, *, floating: bool = False,
                  shape: tuple[int, ...] | None = None, pixel_type: str = "") -> None:
    """Refuse, before any voxel is read, a scan whose estimated peak memory is too large.

    ``shape`` is the array shape (z, y, x), shown in the message.
    """
    needed = memory_needed_bytes(n_voxels, max(int(bytes_per_voxel), 1), floating=floating)
    available = available_memory_bytes()
    if needed > available * MEMORY_SHARE_LIMIT:
        what = f"{' x '.join(map(str, shape))} = " if shape else ""
        kind = f" of {pixel_type}" if pixel_type else ""
        raise InputError(
            path,
            f"too large for memory: the header promises {what}{int(n_voxels):,} voxels{kind}; "
            f"reading and segmenting it needs about {_size_text(needed)}, but only "
            f"{_size_text(available)} of memory is available now; refusing before reading "
            "(free memory, use a larger machine, or run fewer scans at once with --jobs 1)",
        )


def to_hu_int16(array: np.ndarray, path: str = "") -> np.ndarray:
    """Convert voxel values to int16 HU; non-integer values are rounded to 1 HU bins.

    Raises
    ------
    InputError
        If the values are not real numbers, not finite, or outside the int16 range.
    """
    if array.dtype == np.int16:
        return array
    if array.dtype.kind not in "iuf":
        raise InputError(path, f"unsupported pixel type {array.dtype}; expected integer or float HU")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int(np.isinf(array).sum())
            raise InputError(path, f"volume contains NaN or infinite values ({n_nan} NaN, {n_inf} infinite "
                                   f"of {array.size} voxels)")
        array = np.rint(array)
    lo, hi = array.min(), array.max()
    if lo < HU_MIN or hi > HU_MAX:
        raise InputError(path, f"values {lo}..{hi} lie outside the int16 HU range")
    return array.astype(np.int16)


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a CT volume as int16 HU with its geometry.

    Parameters
    ----------
    path : str or os.PathLike
        An NRRD, NIfTI (.nii, .nii.gz) or MHA/MHD file, or a folder holding exactly one
        DICOM CT series.

    Returns
    -------
    Volume
        ``array`` indexed (z, y, x) as int16 HU; non-integer input is rounded to 1 HU.

    Raises
    ------
    InputError
        Naming the file, if it is missing, unreadable, not 3-D, has non-positive spacing,
        non-finite values or an unsupported pixel type, or is too large for memory.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        from radiolab.dicom import read_series_folder

        return read_series_folder(path)
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty (0 bytes)")
    import SimpleITK as sitk

    reader, size = _header_reader(path)
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if reader.GetNumberOfComponents() != 1:
        raise InputError(path, f"unsupported pixel type {pixel_type} with {reader.GetNumberOfComponents()} "
                               "values per voxel; expected one HU value per voxel")
    bits = re.search(r"(\d+)-bit", pixel_type)
    bytes_per_voxel = int(bits.group(1)) // 8 if bits else 8
    # Python integers: a forged header's sizes must not overflow the product.
    _check_memory(path, math.prod(int(s) for s in size), bytes_per_voxel, floating="float" in pixel_type,
                  shape=tuple(reversed(size)), pixel_type=pixel_type)
    array = _read_nrrd_data(path, size) if path.lower().endswith(".nrrd") else None
    if array is None:
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(path, f"cannot read voxel data (truncated or corrupt?): {_first_line(error)}") from None
        array = sitk.GetArrayFromImage(image)
        del image
    hu = to_hu_int16(array, path)
    geometry = Geometry(
        spacing=tuple(reversed(reader.GetSpacing())),
        origin=reader.GetOrigin(),
        direction=reader.GetDirection(),
    )
    return Volume(hu, geometry, path)


def _header_reader(path: str):
    """A SimpleITK reader that has read the file's header, and the size it gives (x, y, z).

    Raises
    ------
    InputError
        Naming the file, if its header cannot be read or its geometry is not a 3-D grid.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(path, f"not a readable volume: {_first_line(error)}") from None
    size = tuple(reader.GetSize())
    _check_geometry(path, size, tuple(reader.GetSpacing()))
    return reader, size


def read_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Voxels of an integer map (mask, sides, airways, labels) in their own type.

    For the maps radiolab writes and reads back: unlike `read_volume`, no conversion
    to int16 HU, so a uint8 map stays one byte per voxel.

    Raises
    ------
    InputError
        Naming the file, if it is missing, unreadable, not 3-D or not of an integer type.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "file does not exist")
    import SimpleITK as sitk

    reader, size = _header_reader(path)
    array = _read_nrrd_data(path, size) if path.lower().endswith(".nrrd") else None
    if array is None:
        try:
            array = sitk.GetArrayFromImage(reader.Execute())
        except RuntimeError as error:
            raise InputError(path, f"cannot read voxel data (truncated or corrupt?): {_first_line(error)}") from None
    if array.dtype.kind not in "iu" or array.ndim != 3:
        raise InputError(path, f"expected a 3-D integer map, got {array.ndim}-D {array.dtype}")
    return array


def _read_nrrd_data(path: str, size: tuple[int, ...]) -> np.ndarray | None:
    """Voxels of an attached gzip or raw NRRD, decoded with ISA-L; None for other layouts.

    SimpleITK has already read and checked the header (geometry comes from it); this
    only replaces its slower gzip decoding. The data are decoded straight into the
    array, without an intermediate copy. Anything unusual falls back to SimpleITK.
    """
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        if not head.startswith(b"NRRD"):
            return None
        end = head.find(b"\n\n")
        while end < 0 and len(head) < (1 << 24):  # long headers: many custom fields
            more = handle.read(1 << 16)
            if not more:
                return None
            head += more
            end = head.find(b"\n\n")
        if end < 0:
            return None
        fields = {}
        for line in head[:end].decode("latin-1").splitlines()[1:]:
            if line.startswith("#") or ":=" in line or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            fields[key.strip().lower()] = value.strip()
        if {"data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip"} & fields.keys():
            return None
        dtype_name = {v: k for k, v in NRRD_TYPES.items()}.get(fields.get("type", ""))
        encoding = fields.get("encoding")
        if dtype_name is None or encoding not in ("gzip", "gz", "raw"):
            return None
        dtype = np.dtype(dtype_name).newbyteorder(">" if fields.get("endian") == "big" else "<")
        array = np.empty(size[::-1], dtype=dtype)
        expected = array.nbytes
        handle.seek(end + 2)
        try:
            stream = _gunzip_stream(handle) if encoding in ("gzip", "gz") else handle
            filled = _read_into(stream, memoryview(array.reshape(-1).view(np.uint8)))
            extra = len(stream.read(1)) if filled == expected else 0
        except (OSError, EOFError, zlib.error):
            raise InputError(path, "cannot read voxel data (truncated or corrupt gzip stream)") from None
    if filled != expected or extra:
        found = f"{filled} bytes" if not extra else f"more than {expected} bytes"
        raise InputError(path, f"cannot read voxel data: {found} for {expected} expected (truncated?)")
    if not dtype.isnative:
        array = array.byteswap().view(dtype.newbyteorder("="))
    return array


def _read_into(stream, buffer: memoryview, block: int = 1 << 18) -> int:
    # A gzip reader decodes a whole request into a temporary first: blocks of 256 KiB
    # keep it small enough to be reused from the heap (with 4 MiB, each block's
    # temporary was a fresh mapping: 38,700 page faults against 240 for a 150 MiB scan).
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled: filled + block])
        if not count:
            break
        filled += count
    return filled


def read_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """Key/value fields of an NRRD header (custom ``key:=value`` fields included)."""
    import nrrd

    return {k: v if isinstance(v, str) else str(v) for k, v in nrrd.read_header(os.fspath(path)).items()}


def read_custom_fields(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``key:=value`` fields of an NRRD header, as strings (as `read_header` gives them).

    Reads only the header's text, without pynrrd (whose parsing of the standard fields
    costs more than reading them).
    """
    fields: dict[str, str] = {}
    with open(os.fspath(path), "rb") as handle:
        if not handle.readline().startswith(b"NRRD"):
            return fields
        for raw in handle:
            line = raw.decode("ascii", "ignore").rstrip()
            if line == "":
                break
            if line.startswith("#"):
                continue
            key, separator, value = line.partition(":=")
            if separator and ":" not in key:
                fields[key.strip()] = value.strip()
    return fields


def _first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    # ITK messages end with the useful sentence; keep it short.
    return lines[-1] if lines else type(error).__name__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    An interrupted write leaves at most a hidden temporary file
    (``.<name>.<random>.part<suffix>``), never a truncated ``path``. The data are
    flushed to disk before the rename, so that a machine that loses power right after
    it cannot leave an empty ``path`` either.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = "".join(Path(name).suffixes[-2:]) or ".tmp"
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{suffix}", dir=directory)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_UMASK)
        _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def remove_partial_writes(path: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files that interrupted `atomic_path` writes of ``path`` left.

    Only call it when no other process is writing ``path``.

    Returns
    -------
    list of str
        The files removed.
    """
    import glob

    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    removed = []
    for stale in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.part*")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
            removed.append(stale)
    return removed


def _fsync_file(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def nrrd_geometry_fields(geometry: Geometry) -> dict[str, Any]:
    """NRRD ``space``, ``space directions`` and ``space origin`` for a geometry."""
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    spacing_xyz = geometry.spacing[::-1]
    # NRRD lists one vector per file axis (fastest first: x, y, z) = direction column * spacing.
    space_directions = np.stack([direction[:, axis] * spacing_xyz[axis] for axis in range(3)])
    return {
        "space": "left-posterior-superior",
        "space directions": space_directions,
        "space origin": np.asarray(geometry.origin, dtype=float),
        "kinds": ["domain", "domain", "domain"],
    }


def write_volume(
    path: str | os.PathLike[str],
    array: np.ndarray,
    geometry: Geometry,
    *,
    fields: Mapping[str, Any] | None = None,
    compression_level: int = 1,
) -> None:
    """Write a (z, y, x) array as a gzip NRRD with its geometry, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.nrrd`` file.
    array : numpy.ndarray
        Voxel data indexed (z, y, x); its dtype is kept.
    geometry : Geometry
        Spacing (mm), origin (mm) and direction written into the header.
    fields : mapping, optional
        Extra header fields, written as NRRD custom ``key:=value`` lines; non-string
        values are stored as JSON.
    compression_level : int
        gzip level, 1 (fast, the default) to 9 (smallest).
    """
    if array.ndim != 3:
        raise ValueError(f"write_volume needs a 3-D array, got shape {array.shape}")
    array = np.ascontiguousarray(array)
    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.dtype.str[1:] not in NRRD_TYPES:
        raise ValueError(f"write_volume cannot store dtype {array.dtype}")
    header = _nrrd_header(array, geometry, fields or {})
    # Compressed from the array's own buffer: no bytes copy of the volume.
    data = _gzip(memoryview(array.reshape(-1).view(np.uint8)), compression_level)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(header)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


# numpy dtype (without byte order) -> NRRD type name
NRRD_TYPES = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32", "u4": "uint32",
              "i8": "int64", "u8": "uint64", "f4": "float", "f8": "double"}


def _vector(values) -> str:
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def _nrrd_header(array: np.ndarray, geometry: Geometry, fields: Mapping[str, Any]) -> bytes:
    """An attached-data NRRD header; no date, so equal inputs give equal files."""
    space = nrrd_geometry_fields(geometry)
    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {NRRD_TYPES[array.dtype.str[1:]]}",
        "dimension: 3",
        f"space: {space['space']}",
        "sizes: " + " ".join(str(n) for n in array.shape[::-1]),
        "space directions: " + " ".join(_vector(v) for v in space["space directions"]),
        "kinds: domain domain domain",
        f"endian: {'big' if array.dtype.byteorder == '>' else 'little'}",
        "encoding: gzip",
        "space origin: " + _vector(space["space origin"]),
    ]
    for key, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if ":=" in key or "\n" in key or not key:
            raise ValueError(f"invalid NRRD field name {key!r}")
        # NRRD key/value lines end at a newline; escape it as the format prescribes.
        lines.append(f"{key}:={text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _gzip(data: bytes, level: int) -> bytes:
    """gzip stream with a zero timestamp; ISA-L when installed (several times faster)."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same format
        return zlib.compress(data, level, wbits=31)
    # ISA-L has levels 0-3; its 1 compresses about like zlib's 1, several times faster.
    isal_level = 0 if level <= 0 else 1 if level <= 3 else 2 if level <= 6 else 3
    return isal_zlib.compress(data, isal_level, wbits=31)


def _gunzip_stream(handle):
    """A reader of the gzip stream that starts at the handle's position."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover
        import gzip

        return gzip.GzipFile(fileobj=handle, mode="rb")
    return igzip.IGzipFile(fileobj=handle, mode="rb")


# 3D Slicer reads these NRRD fields to show a label map as named, coloured segments.
TISSUE_SEGMENTS = (
    # (label value, name, RGB colour in 0..1)
    (1, "air", (0.0, 0.8, 0.0)),
    (2, "healthy lung", (1.0, 1.0, 0.0)),
    (3, "ground-glass opacity", (0.55, 0.8, 1.0)),
    (4, "consolidation", (0.6, 0.36, 0.15)),
    (5, "other dense tissue", (1.0, 0.55, 0.0)),
)
LUNG_SEGMENTS = ((1, "lung", (0.85, 0.45, 0.45)),)
SIDE_SEGMENTS = ((1, "right lung", (0.5, 0.68, 0.5)), (2, "left lung", (0.95, 0.84, 0.57)))
AIRWAY_SEGMENTS = ((1, "airways", (0.76, 0.85, 0.94)),)


def slicer_segment_fields(shape: tuple[int, int, int], segments=TISSUE_SEGMENTS) -> dict[str, str]:
    """NRRD custom fields of a 3D Slicer segmentation (one layer, label values).

    ``shape`` is the array shape (z, y, x); Slicer's extent is written in file order.
    """
    extent = f"0 {shape[2] - 1} 0 {shape[1] - 1} 0 {shape[0] - 1}"
    fields = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for index, (value, name, colour) in enumerate(segments):
        prefix = f"Segment{index}_"
        fields.update({
            prefix + "ID": f"Segment_{value}",
            prefix + "Name": name,
            prefix + "NameAutoGenerated": "0",
            prefix + "Color": " ".join(f"{c:.4g}" for c in colour),
            prefix + "ColorAutoGenerated": "0",
            prefix + "LabelValue": str(value),
            prefix + "Layer": "0",
            prefix + "Extent": extent,
            prefix + "Tags": "radiolab:1|",
        })
    return fields
