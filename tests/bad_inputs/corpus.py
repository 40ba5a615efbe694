"""A corpus of broken and hostile inputs: one generator per kind.

Every generator takes a folder, writes its bad input there (creating the folder if
needed) and returns a `Case`: the file or folder a command is given, a fragment of the
message expected for it, its kind (volume, dicom, table, config) and the verdict:

``reject``
    the input is refused with a message naming it and the problem;
``skip``
    a DICOM series that is not a CT volume, left out with the reason;
``accept``
    read on purpose (the reason is in ``Case.reason`` and in docs/bad_inputs.md).

Volume generators write distinct file names, so that all of them can share one input
folder and go through one ``radiolab segment`` batch. DICOM generators write one
series folder each, built from pydicom's shipped test files (CT_small.dcm, the JPEG
2000 CT 693_J2KI.dcm, MR, RT plan and DICOMDIR test trees) by copying and editing
headers. The code-executing pickles create a marker file when, and only when,
something unpickles them unsafely.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

REJECT, SKIP, ACCEPT = "reject", "skip", "accept"
MARKER = "PWNED"  # created by a code-executing payload if it ever runs


@dataclass
class Case:
    """One bad input on disk.

    Attributes
    ----------
    name : str
        The kind of bad input, e.g. ``truncated_gzip_nrrd``.
    paths : tuple of Path
        What was written; ``paths[0]`` is what a command is given.
    expected : str
        A fragment of the message that must name the problem.
    kind : str
        ``volume``, ``dicom``, ``table`` or ``config``.
    verdict : str
        ``reject``, ``skip`` or ``accept``.
    reason : str
        Why the input is accepted (or what makes it dangerous), for the docs.
    extra : dict
        Values a test checks beyond the message (expected HU, slice counts, ...).
    """

    name: str
    paths: tuple[Path, ...]
    expected: str
    kind: str
    verdict: str = REJECT
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def marker(self) -> Path:
        """File a code-executing payload of this case would create."""
        return self.path.parent / MARKER


# --------------------------------------------------------------------------- tally


class Tally:
    """Which cases were tried and which were handled, for the session's summary line."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}
        self.skipped: dict[str, str] = {}

    @contextlib.contextmanager
    def attempt(self, name: str) -> Iterator[None]:
        """Count ``name`` as tried; handled only if every attempt at it passes.

        A skipped check (an optional part not installed) is listed, not counted.
        """
        import pytest

        try:
            yield
        except pytest.skip.Exception as skip:
            self.skipped[name] = str(getattr(skip, "msg", skip))
            raise
        except BaseException:
            self.results[name] = False
            raise
        self.results[name] = self.results.get(name, True)

    def summary(self) -> str:
        handled = sum(self.results.values())
        line = f"bad inputs: {len(self.results)} tried, {handled} handled"
        if self.skipped:
            line += "; checks skipped: " + "; ".join(f"{name} ({why})" for name, why in sorted(self.skipped.items()))
        return line


TALLY = Tally()


# --------------------------------------------------------------------------- helpers


def _folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_sitk(path: Path, array: np.ndarray, spacing=None, *, is_vector: bool = False) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def _nrrd_header(path: Path, fields: list[str], data: bytes = b"") -> None:
    with open(path, "wb") as handle:
        handle.write(("NRRD0004\n" + "\n".join(fields) + "\n\n").encode("ascii"))
        handle.write(data)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom ships these files
        raise FileNotFoundError(f"pydicom test file {name} is not installed")
    return Path(path)


def pydicom_data_dir() -> Path:
    """Folder of pydicom's shipped test files."""
    return _pydicom_file("CT_small.dcm").parent


class _System:
    """Unpickling this runs a shell command: the classic code-executing pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def code_executing_object(marker: Path) -> Any:
    """An object whose pickle, when loaded, creates ``marker`` by running a command."""
    return _System(f"touch {shlex.quote(str(marker))}")


# --------------------------------------------------------------------------- volumes


def truncated_gzip_nrrd(folder) -> Case:
    """A gzip NRRD cut in the middle of its data (a partial transfer)."""
    from radiolab.io import Geometry, write_volume

    path = _folder(folder) / "truncated_gzip.nrrd"
    array = _rng(1).integers(-1000, 1000, size=(20, 32, 32)).astype(np.int16)
    write_volume(path, array, Geometry(spacing=(5.0, 1.0, 1.0)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Case("truncated_gzip_nrrd", (path,), "cannot read voxel data (truncated or corrupt", "volume")


def zero_byte_file(folder) -> Case:
    path = _folder(folder) / "zero_bytes.nrrd"
    path.write_bytes(b"")
    return Case("zero_byte_file", (path,), "file is empty (0 bytes)", "volume")


def text_as_nrrd(folder) -> Case:
    """A text file saved under a volume's name."""
    path = _folder(folder) / "text_saved_as.nrrd"
    path.write_text("id,S\ncase_001,3\nThis is a spreadsheet, not a volume.\n", encoding="utf-8")
    return Case("text_as_nrrd", (path,), "not a readable volume", "volume")


def terabyte_header(folder) -> Case:
    """A detached NRRD header promising 10^15 int16 voxels (2 PB) over a 64-byte file."""
    folder = _folder(folder)
    path, data = folder / "terabytes.nhdr", folder / "terabytes.raw"
    data.write_bytes(bytes(64))
    _nrrd_header(path, ["type: short", "dimension: 3", "space: left-posterior-superior",
                        "sizes: 100000 100000 100000",
                        "space directions: (1,0,0) (0,1,0) (0,0,1)",
                        "encoding: raw", "endian: little", f"data file: {data.name}"])
    return Case("terabyte_header", (path, data), "too large for memory", "volume",
                extra={"n_voxels": 10**15})


def overflowing_header(folder) -> Case:
    """A header whose sizes multiply past 2^64 (a forged or corrupted header)."""
    folder = _folder(folder)
    path, data = folder / "overflowing_sizes.nhdr", folder / "overflowing_sizes.raw"
    data.write_bytes(bytes(64))
    _nrrd_header(path, ["type: short", "dimension: 3", "sizes: 4294967296 4294967296 4294967297",
                        "spacings: 1 1 1", "encoding: raw", "endian: little", f"data file: {data.name}"])
    return Case("overflowing_header", (path, data), "too large", "volume")


def image_2d(folder) -> Case:
    path = _folder(folder) / "single_slice_2d.nrrd"
    _write_sitk(path, _rng(2).integers(-1000, 100, size=(64, 64)).astype(np.int16), (1.0, 1.0))
    return Case("image_2d", (path,), "expected a 3-D volume, found 2-D image", "volume")


def image_4d(folder) -> Case:
    path = _folder(folder) / "time_series_4d.nrrd"
    _write_sitk(path, _rng(3).integers(-1000, 100, size=(2, 8, 16, 16)).astype(np.int16))
    return Case("image_4d", (path,), "expected a 3-D volume, found 4-D image", "volume")


def nan_inf_values(folder) -> Case:
    path = _folder(folder) / "nan_and_inf.nrrd"
    array = _rng(4).normal(-500.0, 300.0, size=(8, 16, 16)).astype(np.float32)
    array[1, 2, 3] = np.nan
    array[2, 3, 4] = np.nan
    array[3, 4, 5] = np.inf
    array[4, 5, 6] = -np.inf
    array[5, 6, 7] = np.inf
    _write_sitk(path, array, (1.0, 1.0, 5.0))
    return Case("nan_inf_values", (path,), "NaN or infinite values (2 NaN, 3 infinite of 2048 voxels)", "volume")


def _uniform_scan(path: Path, hu: float, seed: int) -> None:
    from radiolab.io import Geometry, write_volume

    array = np.rint(_rng(seed).normal(hu, 15.0, size=(40, 64, 64))).astype(np.int16)
    write_volume(path, array, Geometry(spacing=(7.0, 5.0, 5.0)))


def all_air(folder) -> Case:
    """Nothing but air (-1000 HU): an empty scanner, or a wrongly windowed export."""
    path = _folder(folder) / "all_air.nrrd"
    _uniform_scan(path, -1000.0, 5)
    return Case("all_air", (path,), "no lung found", "volume")


def all_soft_tissue(folder) -> Case:
    """Soft tissue everywhere (40 HU): no air, so no lungs (e.g. an abdominal phantom)."""
    path = _folder(folder) / "all_soft_tissue.nrrd"
    _uniform_scan(path, 40.0, 6)
    return Case("all_soft_tissue", (path,), "no lung found", "volume")


def zero_spacing(folder) -> Case:
    """Slice direction of length 0 in ``space directions`` (how a lost slice step looks)."""
    path = _folder(folder) / "zero_spacing.nrrd"
    _nrrd_header(path, ["type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 16 16 8",
                        "space directions: (1,0,0) (0,1,0) (0,0,0)", "encoding: raw", "endian: little"],
                 np.zeros((8, 16, 16), np.int16).tobytes())
    return Case("zero_spacing", (path,), "voxel spacing must be positive, found (0.0, 1.0, 1.0) mm along (z, y, x)",
                "volume")


def negative_spacing(folder) -> Case:
    path = _folder(folder) / "negative_spacing.nrrd"
    _nrrd_header(path, ["type: short", "dimension: 3", "sizes: 16 16 8", "spacings: 0.8 0.8 -2.5",
                        "encoding: raw", "endian: little"],
                 np.zeros((8, 16, 16), np.int16).tobytes())
    return Case("negative_spacing", (path,), "voxel spacing must be positive, found (-2.5, 0.8, 0.8) mm along (z, y, x)",
                "volume")


def unsupported_pixel_type(folder) -> Case:
    """Complex voxels (e.g. MR k-space or a Fourier-domain export) saved as NRRD."""
    path = _folder(folder) / "complex_pixels.nrrd"
    array = (_rng(7).normal(size=(8, 16, 16)) * (1 + 1j)).astype(np.complex64)
    _write_sitk(path, array)
    return Case("unsupported_pixel_type", (path,), "unsupported pixel type complex of 32-bit float", "volume")


def values_out_of_range(folder) -> Case:
    """32-bit values that no int16 HU can hold (e.g. raw detector counts)."""
    path = _folder(folder) / "hu_out_of_range.nrrd"
    array = _rng(8).integers(0, 70000, size=(8, 16, 16)).astype(np.int32)
    array[0, 0, 0] = 69999
    _write_sitk(path, array)
    return Case("values_out_of_range", (path,), "lie outside the int16 HU range", "volume")


# --------------------------------------------------------------------------- DICOM

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _ds_text(value: float) -> str:
    return f"{value:.6f}"[:16]


def write_ct_series(folder, positions, *, pixels: Callable[[int, np.ndarray], np.ndarray] | None = None,
                    edit: Callable[[int, Any], None] | None = None, number: int = 7,
                    description: str = "Chest 5mm", names: list[str] | None = None,
                    uid: str | None = None) -> list[Path]:
    """A CT series of copies of CT_small.dcm at the given ImagePositionPatient values.

    ``pixels(k, raw)`` may replace slice k's stored values; ``edit(k, ds)`` may change
    its header last. Patient tags of CT_small.dcm are kept.
    """
    import pydicom
    from pydicom.uid import generate_uid

    folder = _folder(folder)
    template = _pydicom_file("CT_small.dcm")
    raw = pydicom.dcmread(template).pixel_array.astype(np.int16)
    uid = uid or generate_uid()
    written = []
    for k, position in enumerate(positions):
        ds = pydicom.dcmread(template)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = number
        ds.SeriesDescription = description
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_text(v) for v in position]
        ds.ImageOrientationPatient = [_ds_text(v) for v in AXIAL]
        stored = raw if pixels is None else pixels(k, raw)
        ds.PixelData = np.ascontiguousarray(stored, dtype=np.int16).tobytes()
        if edit is not None:
            edit(k, ds)
        path = folder / (names[k] if names else f"slice{k:03d}.dcm")
        ds.save_as(path)
        written.append(path)
    return written


def axial_positions(zs, x: float = -158.1358, y: float = -179.0358) -> list[tuple[float, float, float]]:
    return [(x, y, float(z)) for z in zs]


def phantom_ct_series(folder, hu: np.ndarray, spacing: tuple[float, float, float], *,
                      tags: dict[str, str] | None = None, description: str = "Thorax 7mm") -> list[Path]:
    """A chest phantom (int16 HU, indexed z, y, x) written as a CT series on CT_small.dcm.

    CT_small's patient tags are kept; ``tags`` adds or overrides header values.
    """
    import pydicom
    from pydicom.uid import generate_uid

    folder = _folder(folder)
    template = _pydicom_file("CT_small.dcm")
    uid = generate_uid()
    written = []
    for k in range(hu.shape[0]):
        ds = pydicom.dcmread(template)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = 2
        ds.SeriesDescription = description
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.PixelSpacing = [_ds_text(spacing[1]), _ds_text(spacing[2])]
        ds.SliceThickness = _ds_text(spacing[0])
        ds.ImagePositionPatient = [_ds_text(v) for v in (-160.0, -160.0, k * spacing[0])]
        ds.ImageOrientationPatient = [_ds_text(v) for v in AXIAL]
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        path = folder / f"img{k:04d}.dcm"
        ds.save_as(path)
        written.append(path)
    return written


def dicom_mixed_series(folder) -> Case:
    """Two CT series and an MR image in one folder (a study exported flat)."""
    folder = _folder(Path(folder) / "mixed_series")
    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0]), number=3, description="Lung 5mm",
                    names=["a1.dcm", "b1.dcm", "c1.dcm"])
    write_ct_series(folder, axial_positions([0.0, 2.0]), number=4, description="Lung 2mm",
                    names=["a2.dcm", "b2.dcm"])
    shutil.copy(pydicom_data_dir() / "dicomdirtests" / "98892003" / "MR700" / "4467", folder / "a3.dcm")
    return Case("dicom_mixed_series", (folder,), "2 CT series found under this folder", "dicom", ACCEPT,
                reason="`radiolab ingest` splits the folder by SeriesInstanceUID into one volume per CT "
                       "series and skips the MR image with its reason; reading the folder as one scan "
                       "(`read_volume`, `radiolab segment --in FILE`) is refused and points to ingest",
                extra={"slices": [3, 2], "skipped": "modality MR is not CT"})


def dicom_missing_slice(folder) -> Case:
    folder = _folder(Path(folder) / "missing_slice")
    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0, 20.0, 25.0]))
    return Case("dicom_missing_slice", (folder,),
                "gap of 10.0 mm between z=10.0 and z=20.0 mm (slices around it 5.0 mm apart, "
                "about 1 slice missing)", "dicom",
                reason="stacking slices across a gap at one step puts every slice past it in the wrong "
                       "place and makes every volume in mL wrong; `--allow-gaps` interpolates across it "
                       "instead and notes how many mm were interpolated")


def dicom_uneven_spacing(folder) -> Case:
    """Slice steps of 5 and 2 mm (overlapping reconstructions, a changed increment)."""
    folder = _folder(Path(folder) / "uneven_spacing")
    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0, 12.0, 17.0]))
    return Case("dicom_uneven_spacing", (folder,),
                "uneven slice spacing (steps 2.0, 5.0 mm): resampled to 10 slices at 1.889 mm", "dicom", ACCEPT,
                reason="no gap, only steps that differ: resampled onto a regular grid with linear "
                       "interpolation along the slice normal; the new step is printed and written into "
                       "the NRRD header",
                extra={"shape": (10, 128, 128), "step": 17 / 9})


def dicom_no_series_uid(folder) -> Case:
    """Two series exported flat without SeriesInstanceUID (an over-eager anonymiser)."""
    folder = _folder(Path(folder) / "no_series_uid")

    def strip(k, ds):
        del ds.SeriesInstanceUID

    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0]), number=3, description="Lung 5mm",
                    names=["a1.dcm", "b1.dcm", "c1.dcm"], edit=strip)
    write_ct_series(folder, axial_positions([0.0, 2.0]), number=4, description="Lung 2mm",
                    names=["a2.dcm", "b2.dcm"], edit=strip)
    return Case("dicom_no_series_uid", (folder,), "no SeriesInstanceUID: files grouped by StudyInstanceUID",
                "dicom", ACCEPT,
                reason="the files are grouped by the next best keys (study, series number, description, "
                       "acquisition, image type, kernel, orientation, matrix, pixel spacing; the folder, "
                       "hashed, when no study key is left), so the two series stay apart",
                extra={"slices": [3, 2]})


def dicom_no_modality_ct(folder) -> Case:
    """CT slices whose Modality was stripped; the CT SOP class remains (as in lungmask's test files)."""
    folder = _folder(Path(folder) / "no_modality_ct")

    def strip(k, ds):
        del ds.Modality

    write_ct_series(folder, axial_positions([0.0, 5.0]), edit=strip)
    return Case("dicom_no_modality_ct", (folder,), "no Modality tag: taken as CT from its SOP class (CT Image Storage)",
                "dicom", ACCEPT,
                reason="a CT SOP class, rescale tags or values in an HU range with padding below -1024 show "
                       "CT; the series is read with a warning recorded in the NRRD header")


def dicom_no_modality_not_ct(folder) -> Case:
    """No Modality, a secondary-capture SOP class, no rescale, no padding: nothing shows CT."""
    folder = _folder(Path(folder) / "no_modality_not_ct")
    secondary_capture = "1.2.840.10008.5.1.4.1.1.7"

    def strip(k, ds):
        del ds.Modality
        del ds.RescaleSlope
        del ds.RescaleIntercept
        ds.SOPClassUID = secondary_capture
        ds.file_meta.MediaStorageSOPClassUID = secondary_capture

    write_ct_series(folder, axial_positions([0.0, 5.0]), edit=strip)
    return Case("dicom_no_modality_not_ct", (folder,),
                "no Modality tag and nothing shows CT (no CT SOP class, no rescale tags, values not in an "
                "HU range with padding); give --assume-ct if it is CT", "dicom", SKIP)


def dicom_duplicate_slices(folder) -> Case:
    folder = _folder(Path(folder) / "duplicate_slices")
    write_ct_series(folder, axial_positions([0.0, 5.0, 5.0, 10.0]))
    return Case("dicom_duplicate_slices", (folder,), "duplicate slice position (-158.136, -179.036, 5.0) mm",
                "dicom")


def dicom_mr(folder) -> Case:
    """An MR series (pydicom's dicomdirtests/98892003/MR700)."""
    folder = _folder(Path(folder) / "mr_series")
    source = pydicom_data_dir() / "dicomdirtests" / "98892003" / "MR700"
    for item in sorted(source.iterdir()):
        shutil.copy(item, folder / f"{item.name}.dcm")
    return Case("dicom_mr", (folder,), "modality MR is not CT", "dicom", SKIP)


def dicom_seg(folder) -> Case:
    """A DICOM segmentation object (Modality SEG) with the CT's geometry."""
    folder = _folder(Path(folder) / "seg_object")

    def as_seg(k, ds):
        ds.Modality = "SEG"
        ds.SOPClassUID = SEGMENTATION_STORAGE
        ds.file_meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE

    write_ct_series(folder, axial_positions([0.0, 5.0]), edit=as_seg, description="Lung SEG")
    return Case("dicom_seg", (folder,), "modality SEG is not CT", "dicom", SKIP)


def dicom_no_pixel_data(folder) -> Case:
    """CT headers without an image (a dose report or a stripped export)."""
    folder = _folder(Path(folder) / "no_pixel_data")

    def strip(k, ds):
        for keyword in ("Rows", "Columns", "PixelData"):
            delattr(ds, keyword)

    write_ct_series(folder, axial_positions([0.0, 5.0]), edit=strip)
    return Case("dicom_no_pixel_data", (folder,), "no pixel data (no Rows/Columns) in 2 of 2 files", "dicom", SKIP)


def dicom_rt_plan(folder) -> Case:
    """A non-image object of another kind: pydicom's RT plan."""
    folder = _folder(Path(folder) / "rt_plan")
    shutil.copy(_pydicom_file("rtplan.dcm"), folder / "plan.dcm")
    return Case("dicom_rt_plan", (folder,), "modality RTPLAN is not CT", "dicom", SKIP)


def dicom_jpeg2000(folder) -> Case:
    """JPEG 2000 compressed CT pixel data (pydicom's 693_J2KI.dcm)."""
    folder = _folder(Path(folder) / "jpeg2000")
    shutil.copy(_pydicom_file("693_J2KI.dcm"), folder / "ct.dcm")
    return Case("dicom_jpeg2000", (folder,), "JPEG 2000", "dicom", ACCEPT,
                reason="JPEG 2000 is a standard DICOM transfer syntax; radiolab decodes it "
                       "(pylibjpeg-openjpeg, a dependency) and the HU equal pydicom's own decoding")


def dicom_gantry_tilt(folder) -> Case:
    """Slices stacked at 15 degrees to their normal (a tilted gantry)."""
    folder = _folder(Path(folder) / "gantry_tilt")
    tilt = np.radians(15.0)
    write_ct_series(folder, [(-158.1358, -179.0358 + k * 5.0 * np.tan(tilt), k * 5.0) for k in range(4)])
    return Case("dicom_gantry_tilt", (folder,), "gantry tilt of 15.00 degrees", "dicom", ACCEPT,
                reason="the geometry comes from ImagePositionPatient: each slice is shifted within its "
                       "plane onto an orthogonal grid (as dcm2niix does), rows added to hold them; the "
                       "angle is printed and written into the NRRD header (radiolab_tilt_deg)",
                extra={"tilt_deg": 15.0})


# Per-slice (RescaleSlope, RescaleIntercept): stored values differ, HU are the same.
RESCALES = ((1.0, -1024.0), (2.0, -1024.0), (0.5, -2048.0))


def dicom_inconsistent_rescale(folder) -> Case:
    """Each slice with its own RescaleSlope/RescaleIntercept (as some scanners write)."""
    folder = _folder(Path(folder) / "inconsistent_rescale")

    def target_hu(raw):
        return 2 * (raw // 2) - 1024  # even HU, so that slope 2 stores integers

    def stored(k, raw):
        slope, intercept = RESCALES[k]
        return np.rint((target_hu(raw) - intercept) / slope)

    def rescale(k, ds):
        ds.RescaleSlope, ds.RescaleIntercept = (_ds_text(v) for v in RESCALES[k])

    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0]), pixels=stored, edit=rescale)
    import pydicom

    raw = pydicom.dcmread(_pydicom_file("CT_small.dcm")).pixel_array.astype(np.int16)
    return Case("dicom_inconsistent_rescale", (folder,), "RescaleSlope", "dicom", ACCEPT,
                reason="DICOM rescale is per image: each slice is converted with its own slope and "
                       "intercept, so slices stored differently give the same HU",
                extra={"hu": target_hu(raw).astype(np.int16)})


def dicom_missing_rescale(folder) -> Case:
    """One slice of a CT series without RescaleSlope/RescaleIntercept (a broken export)."""
    folder = _folder(Path(folder) / "missing_rescale")

    def drop(k, ds):
        if k == 1:
            del ds.RescaleSlope
            del ds.RescaleIntercept

    write_ct_series(folder, axial_positions([0.0, 5.0, 10.0]), edit=drop)
    return Case("dicom_missing_rescale", (folder,),
                "RescaleSlope/RescaleIntercept missing in 1 of 3 slices (e.g. slice001.dcm)", "dicom")


# --------------------------------------------------------------------------- tables


def _csv(folder, name: str, text: str) -> Path:
    path = _folder(folder) / name
    path.write_text(text, encoding="utf-8")
    return path


def scores_duplicate_ids(folder) -> Case:
    path = _csv(folder, "scores_duplicate_ids.csv", "id,S\ncase_000,1\ncase_001,2\ncase_000,3\ncase_002,4\n")
    return Case("scores_duplicate_ids", (path,), "duplicate ids: 'case_000' on lines 2, 4", "table")


def scores_non_numeric(folder) -> Case:
    path = _csv(folder, "scores_non_numeric.csv", "id,S\ncase_000,1\ncase_001,severe\ncase_002,4\n")
    return Case("scores_non_numeric", (path,), "line 3: 'severe' in column 'S' is not a number", "table")


def scores_out_of_range(folder) -> Case:
    path = _csv(folder, "scores_out_of_range.csv", "id,S\ncase_000,1\ncase_001,7\ncase_002,4\n")
    return Case("scores_out_of_range", (path,), "line 3: score 7 is outside 0-5", "table")


def scores_nan(folder) -> Case:
    path = _csv(folder, "scores_nan.csv", "id,S\ncase_000,1\ncase_001,nan\ncase_002,4\n")
    return Case("scores_nan", (path,), "line 3: 'nan' in column 'S' is not a finite number", "table")


def scores_dotdot_id(folder) -> Case:
    path = _csv(folder, "scores_dotdot_id.csv", "id,S\ncase_000,1\n../../etc/passwd,2\ncase_002,4\n")
    return Case("scores_dotdot_id", (path,), "line 3: id '../../etc/passwd' looks like a path", "table")


def scores_absolute_id(folder) -> Case:
    path = _csv(folder, "scores_absolute_id.csv", "id,S\n/etc/passwd,1\ncase_001,2\ncase_002,4\n")
    return Case("scores_absolute_id", (path,), "line 2: id '/etc/passwd' looks like a path", "table")


def empty_csv(folder) -> Case:
    path = _csv(folder, "scores_empty.csv", "")
    return Case("empty_csv", (path,), "file is empty", "table")


# --------------------------------------------------------------------------- configs


def pipeline_unknown_key(folder) -> Case:
    """A pipeline file with a misspelt top-level key."""
    path = _folder(folder) / "pipeline_unknown_key.yaml"
    path.write_text("name: typo\nstagez:\n  - stage: segment\n", encoding="utf-8")
    return Case("pipeline_unknown_key", (path,), "unknown key 'stagez'", "config",
                extra={"valid": ("name", "stages")})


def pipeline_python_tag(folder) -> Case:
    """A pipeline file whose YAML asks a full loader to run a command."""
    folder = _folder(folder)
    path = folder / "pipeline_python_tag.yaml"
    command = f"touch {shlex.quote(str(folder / MARKER))}"
    path.write_text(f"name: !!python/object/apply:os.system [{json.dumps(command)}]\nstages: [segment]\n",
                    encoding="utf-8")
    return Case("pipeline_python_tag", (path,), "python/object/apply:os.system", "config",
                reason="YAML tags can build arbitrary Python objects; only safe loading may be used")


def _model_json(path: Path, means, variances, weights) -> None:
    path.write_text(json.dumps({"format": "radiolab.TissueMixture/1", "means_hu": means,
                                "variances_hu2": variances, "weights": weights}), encoding="utf-8")


def model_negative_variance(folder) -> Case:
    path = _folder(folder) / "model_negative_variance.json"
    _model_json(path, [-900.0, -750.0, -500.0, -100.0, 60.0], [900.0, 2500.0, -400.0, 3600.0, 1600.0],
                [0.1, 0.5, 0.2, 0.1, 0.1])
    return Case("model_negative_variance", (path,), "variances (standard deviations) must be positive", "config")


def model_wrong_components(folder) -> Case:
    path = _folder(folder) / "model_four_components.json"
    _model_json(path, [-900.0, -750.0, -500.0, 60.0], [900.0, 2500.0, 400.0, 1600.0], [0.1, 0.6, 0.2, 0.1])
    return Case("model_wrong_components", (path,), "a tissue mixture needs 5 components, found 4", "config")


def model_pickle_untrusted(folder) -> Case:
    """A pickled "model" whose loading runs a shell command."""
    folder = _folder(folder)
    path = folder / "model.pkl"
    with open(path, "wb") as handle:
        pickle.dump(code_executing_object(folder / MARKER), handle)
    return Case("model_pickle_untrusted", (path,), "refusing to unpickle a model", "config",
                reason="unpickling runs code stored in the file")


def torch_checkpoint_code(folder) -> Case:
    """A torch checkpoint whose pickle runs a shell command when loaded unsafely."""
    import torch

    folder = _folder(folder)
    path = folder / "checkpoint.pt"
    torch.save({"model": {"weight": torch.zeros(2)}, "payload": code_executing_object(folder / MARKER)}, path)
    return Case("torch_checkpoint_code", (path,), "refused", "config",
                reason="torch checkpoints are pickles; only torch.load(weights_only=True) is safe")


# --------------------------------------------------------------------------- registry

VOLUME_CASES: dict[str, Callable[..., Case]] = {f.__name__: f for f in (
    truncated_gzip_nrrd, zero_byte_file, text_as_nrrd, terabyte_header, overflowing_header,
    image_2d, image_4d, nan_inf_values, all_air, all_soft_tissue, zero_spacing, negative_spacing,
    unsupported_pixel_type, values_out_of_range,
)}
DICOM_CASES: dict[str, Callable[..., Case]] = {f.__name__: f for f in (
    dicom_mixed_series, dicom_missing_slice, dicom_duplicate_slices, dicom_mr, dicom_seg,
    dicom_no_pixel_data, dicom_rt_plan, dicom_jpeg2000, dicom_gantry_tilt, dicom_inconsistent_rescale,
    dicom_missing_rescale, dicom_uneven_spacing, dicom_no_series_uid, dicom_no_modality_ct,
    dicom_no_modality_not_ct,
)}
TABLE_CASES: dict[str, Callable[..., Case]] = {f.__name__: f for f in (
    scores_duplicate_ids, scores_non_numeric, scores_out_of_range, scores_nan, scores_dotdot_id,
    scores_absolute_id, empty_csv,
)}
CONFIG_CASES: dict[str, Callable[..., Case]] = {f.__name__: f for f in (
    pipeline_unknown_key, pipeline_python_tag, model_negative_variance, model_wrong_components,
    model_pickle_untrusted, torch_checkpoint_code,
)}
ALL_CASES: dict[str, Callable[..., Case]] = {**VOLUME_CASES, **DICOM_CASES, **TABLE_CASES, **CONFIG_CASES}


def build_corpus(folder, names: list[str] | None = None) -> list[Case]:
    """Write every case (or the named ones) under ``folder``; volumes share ``folder/volumes``."""
    folder = _folder(folder)
    cases = []
    for name in names or list(ALL_CASES):
        generator = ALL_CASES[name]
        where = folder / "volumes" if name in VOLUME_CASES else folder / name
        cases.append(generator(where))
    return cases
