"""Tests of radiolab.dicom and the `radiolab ingest` command.

Real data: pydicom's shipped test files (CT_small.dcm, 693_J2KI.dcm, the dicomdirtests
tree). Synthetic series are copies of CT_small.dcm with edited positions, orientations
and pixel values, written into tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from radiolab.cli import ingest as ingest_cli
from radiolab.cli import main as radiolab_main
from radiolab.dicom import find_series, ingest, read_series, read_series_folder, series_name
from radiolab.errors import InputError
from radiolab.io import read_header, read_volume


def _testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return path


CT_SMALL = _testdata("CT_small.dcm")
DICOMDIRTESTS = os.path.join(os.path.dirname(CT_SMALL), "dicomdirtests")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PHI = {
    "PatientName": "Quintessa^Zebrafish",
    "PatientID": "PID98765XYZ",
    "PatientBirthDate": "19450817",
    "AccessionNumber": "ACC424242",
    "InstitutionName": "Saint Privacy Hospital",
}


def _original_pixels() -> np.ndarray:
    return pydicom.dcmread(CT_SMALL).pixel_array.astype(np.int16)


def _ds(value: float) -> str:
    return f"{value:.6f}"[:16]


def write_series(folder, positions, *, iop=AXIAL, pixel_spacing=(0.661468, 0.661468),
                 uid=None, number=7, description="Chest 5mm", modality="CT",
                 file_names=None, tags=None, per_slice=None):
    """Write a synthetic series; slice k has raw pixels = CT_small's + 100 * k.

    Returns the raw pixel arrays in the order of ``positions``.
    """
    os.makedirs(folder, exist_ok=True)
    uid = uid or generate_uid()
    base = _original_pixels()
    arrays = []
    for k, position in enumerate(positions):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = number
        ds.SeriesDescription = description
        ds.Modality = modality
        ds.InstanceNumber = 1000 - 7 * k  # deliberately unrelated to the position order
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        if per_slice is not None:
            per_slice(k, ds)
        pixels = (base + 100 * k).astype(np.int16)
        if "PixelData" in ds and ds.Rows == base.shape[0] and ds.Columns == base.shape[1]:
            ds.PixelData = pixels.tobytes()
        arrays.append(pixels)
        name = file_names[k] if file_names else f"slice{k:03d}.dcm"
        ds.save_as(os.path.join(folder, name))
    return arrays


def axial_positions(zs, x=-158.1358, y=-179.0358):
    return [(x, y, z) for z in zs]


def hu(pixels, slope=1.0, intercept=-1024.0):
    return np.rint(pixels.astype(np.float64) * slope + intercept).astype(np.int16)


# ----------------------------------------------------------------- real pydicom files


def test_ct_small_single_slice_hu_and_geometry(tmp_path):
    shutil.copy(CT_SMALL, tmp_path / "ct.dcm")
    volume = read_series_folder(tmp_path)
    ds = pydicom.dcmread(CT_SMALL)
    expected = np.rint(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert float(ds.RescaleIntercept) == -1024.0  # the rescale is not a no-op
    assert volume.array.dtype == np.int16
    assert volume.array.shape == (1, 128, 128)
    np.testing.assert_array_equal(volume.array[0], expected.astype(np.int16))
    # One slice: the slice spacing is SliceThickness.
    assert volume.geometry.spacing == pytest.approx((5.0, 0.661468, 0.661468))
    assert volume.geometry.origin == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    assert volume.geometry.direction == pytest.approx(np.eye(3).ravel())
    assert volume.meta["warnings"] == []
    assert volume.meta["modality"] == "CT"


def test_single_slice_without_slice_thickness_is_rejected(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.SliceThickness
    ds.save_as(tmp_path / "ct.dcm")
    with pytest.raises(InputError, match="single-slice series without a positive SliceThickness"):
        read_series_folder(tmp_path)


def test_dicomdirtests_tree_finds_ct_and_skips_the_rest_with_reasons():
    series, skipped = find_series(DICOMDIRTESTS)
    found = {os.path.relpath(s.folder, DICOMDIRTESTS): s for s in series}
    assert sorted(found) == [os.path.join("77654033", "CT2"), os.path.join("98892001", "CT5N")]
    assert len(found[os.path.join("77654033", "CT2")].files) == 4
    assert len(found[os.path.join("98892001", "CT5N")].files) == 5
    assert {s.modality for s in series} == {"CT"}

    dicomdirs = sorted(os.path.relpath(s.source, DICOMDIRTESTS) for s in skipped if "DICOMDIR" in s.reason)
    expected_dicomdirs = sorted(
        os.path.relpath(os.path.join(folder, name), DICOMDIRTESTS)
        for folder, _, names in os.walk(DICOMDIRTESTS) for name in names if name.startswith("DICOMDIR"))
    assert dicomdirs == expected_dicomdirs and len(dicomdirs) == 8

    by_folder: dict[str, list[str]] = {}
    for s in skipped:
        if s.folder:
            by_folder.setdefault(os.path.relpath(s.folder, DICOMDIRTESTS), []).append(s.reason)
    assert by_folder[os.path.join("77654033", "CR1")] == ["modality CR is not CT"]
    assert by_folder[os.path.join("77654033", "CR2")] == ["modality CR is not CT"]
    assert by_folder[os.path.join("77654033", "CR3")] == ["modality CR is not CT"]
    assert by_folder[os.path.join("98892001", "CT2N")] == ["localizer (scout) images (2 of 2 files), not a volume"]
    tiny = os.path.join("TINY_ALPHA", "PT000000", "ST000000", "SE000000")
    assert by_folder[tiny] == ["no pixel data (no Rows/Columns) in 50 of 50 files"]
    # README files are not DICOM: ignored silently.
    assert not any("README" in s.source for s in skipped)


def test_several_series_in_one_folder_are_all_found():
    # Which folders hold several series: count SeriesInstanceUIDs with pydicom itself.
    def uids(folder):
        return {pydicom.dcmread(os.path.join(folder, f), stop_before_pixels=True).SeriesInstanceUID
                for f in os.listdir(folder)}

    ct2n, ct5n = (os.path.join(DICOMDIRTESTS, "98892001", f) for f in ("CT2N", "CT5N"))
    mr1, mr2 = (os.path.join(DICOMDIRTESTS, "98892003", f) for f in ("MR1", "MR2"))
    # In 98892001 each folder holds a single series; the multi-series folders are MR1/MR2.
    assert (len(uids(ct2n)), len(uids(ct5n)), len(uids(mr1)), len(uids(mr2))) == (1, 1, 3, 3)
    series, skipped = find_series(os.path.join(DICOMDIRTESTS, "98892003"))
    assert series == []
    for folder in (mr1, mr2):
        here = [s for s in skipped if s.folder == folder]
        assert {s.source for s in here} == uids(folder)
        assert [s.reason for s in here] == ["modality MR is not CT"] * 3
    assert len({s.name for s in skipped}) == len(skipped) == 7
    series, skipped = find_series(os.path.join(DICOMDIRTESTS, "98892001"))
    assert [s.folder for s in series] == [ct5n]
    assert [s.folder for s in skipped] == [ct2n]


def test_mr_only_folder_has_no_ct_series():
    with pytest.raises(InputError, match=r"no DICOM CT series found under .*modality MR is not CT"):
        read_series_folder(os.path.join(DICOMDIRTESTS, "98892003"))


def test_two_ct_series_under_a_folder_asks_for_ingest():
    with pytest.raises(InputError, match=r"2 CT series found under .*run `radiolab ingest`"):
        read_volume(DICOMDIRTESTS)


def test_read_volume_of_a_dicom_folder_sorts_slices_by_position():
    folder = os.path.join(DICOMDIRTESTS, "98892001")
    volume = read_volume(folder)
    files = sorted(
        (os.path.join(folder, "CT5N", f) for f in os.listdir(os.path.join(folder, "CT5N"))),
        key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    expected = [hu(pydicom.dcmread(f).pixel_array) for f in files]
    assert volume.array.shape == (5, 16, 16)
    np.testing.assert_array_equal(volume.array, np.stack(expected))
    assert volume.geometry.spacing == pytest.approx((2.5, 0.488281, 0.488281))
    assert volume.geometry.origin == pytest.approx((-72.199997, -143.0, -1.2375))
    assert volume.path == folder


def test_real_series_with_a_gap_is_refused_with_its_position_and_size(tmp_path):
    # 77654033/CT2: slices at z = -99.48, 103.02, 104.27, 105.52 mm.
    series, _ = find_series(os.path.join(DICOMDIRTESTS, "77654033"))
    (info,) = series
    with pytest.raises(InputError, match=re.escape(
            "gap of 202.5 mm between z=-99.48 and z=103.02 mm (slices around it 1.25 mm apart")):
        read_series(info)
    volume = read_series(info, allow_gaps=True)
    # The full z extent is kept: first to last slice position.
    extent = (volume.array.shape[0] - 1) * volume.geometry.spacing[0]
    assert extent == pytest.approx(105.52 + 99.48, abs=0.01)
    assert "202.5 mm interpolated across 1 gap" in volume.meta["warnings"]
    assert volume.meta["resampled"] is True


def test_jpeg2000_ct_is_decoded(tmp_path):
    ct_j2k = _testdata("693_J2KI.dcm")
    nm_j2k = _testdata("JPEG2000.dcm")
    ds = pydicom.dcmread(ct_j2k)
    assert ds.Modality == "CT" and "JPEG 2000" in ds.file_meta.TransferSyntaxUID.name
    shutil.copy(ct_j2k, tmp_path / "ct.dcm")
    shutil.copy(nm_j2k, tmp_path / "nm.dcm")
    series, skipped = find_series(tmp_path)
    assert [s.reason for s in skipped] == ["modality NM is not CT"]
    volume = read_series(series[0])
    expected = hu(ds.pixel_array, float(ds.RescaleSlope), float(ds.RescaleIntercept))
    assert volume.array.shape == (1, 512, 512)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert volume.array.min() < -1000 < 0 < volume.array.max()
    assert "JPEG 2000" in volume.meta["transfer_syntax"]


# ----------------------------------------------------------------- synthetic series


def test_shuffled_files_are_sorted_by_position_along_the_normal(tmp_path):
    zs = [-40.0, -37.5, -35.0, -32.5, -30.0]
    order = [3, 0, 4, 1, 2]  # file k holds the slice at zs[order[k]]
    names = [f"img{n}.dcm" for n in ("c", "a", "e", "b", "d")]  # name order != z order
    raw = write_series(tmp_path, axial_positions([zs[i] for i in order]), file_names=names)
    volume = read_series_folder(tmp_path)
    for z_index in range(5):
        k = order.index(z_index)
        np.testing.assert_array_equal(volume.array[z_index], hu(raw[k]))
    assert volume.geometry.origin == pytest.approx((-158.1358, -179.0358, -40.0))
    assert volume.geometry.spacing == pytest.approx((2.5, 0.661468, 0.661468))
    assert volume.meta["warnings"] == []


def test_geometry_of_written_nrrd_matches_dicom_positions(tmp_path):
    import SimpleITK as sitk

    angle = np.radians(30)
    row = np.array([np.cos(angle), np.sin(angle), 0.0])
    col = np.array([0.0, 0.0, -1.0])
    normal = np.cross(row, col)
    first = np.array([10.0, -20.0, 30.0])
    step = 3.0
    positions = [tuple(first + k * step * normal) for k in (2, 0, 3, 1)]
    raw = write_series(tmp_path / "dicom", positions, iop=(*row, *col), pixel_spacing=(0.8, 0.6))
    report = ingest(tmp_path / "dicom", tmp_path / "out")
    assert report.failed == [] and len(report.written) == 1
    volume = read_volume(report.written[0])
    assert volume.geometry.spacing == pytest.approx((3.0, 0.8, 0.6))
    assert volume.geometry.origin == pytest.approx(first)
    direction = np.array(volume.geometry.direction).reshape(3, 3)
    np.testing.assert_allclose(direction, np.column_stack([row, col, normal]), atol=1e-6)
    # Independent check with SimpleITK: voxel (i, j, k) lies at
    # IPP_k + i * column spacing * row cosine + j * row spacing * column cosine.
    image = sitk.ReadImage(report.written[0])
    i, j, k = 5, 9, 2
    expected_point = first + k * step * normal + i * 0.6 * row + j * 0.8 * col
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((i, j, k)), expected_point, atol=1e-4)
    slice_k = raw[[2, 0, 3, 1].index(k)]
    assert image.GetPixel(i, j, k) == hu(slice_k)[j, i]


def test_missing_slice_is_refused_unless_gaps_are_allowed(tmp_path, capsys):
    raw = write_series(tmp_path / "dicom", axial_positions([0.0, 5.0, 10.0, 20.0, 25.0]))
    with pytest.raises(InputError, match=re.escape(
            "1 gap in the slice positions: gap of 10.0 mm between z=10.0 and z=20.0 mm "
            "(slices around it 5.0 mm apart, about 1 slice missing)")) as caught:
        read_series_folder(tmp_path / "dicom")
    assert str(tmp_path / "dicom") in str(caught.value) and "--allow-gaps" in str(caught.value)
    assert ingest_cli.main(["--in", str(tmp_path / "dicom"), "--out", str(tmp_path / "refused")]) == 1
    assert "gap of 10.0 mm" in capsys.readouterr().err

    volume = read_series_folder(tmp_path / "dicom", allow_gaps=True)
    # Steps 5, 5, 10, 5 mm: ceil(25 / 5) + 1 = 6 slices at 5 mm, 0..25 mm.
    assert volume.array.shape == (6, 128, 128)
    assert volume.geometry.spacing[0] == pytest.approx(5.0)
    assert volume.geometry.origin[2] == pytest.approx(0.0)
    # Oracle: numpy's linear interpolation of each pixel's HU along z.
    zs = np.array([0.0, 5.0, 10.0, 20.0, 25.0])
    stack = np.stack([hu(r) for r in raw]).astype(float)
    expected = np.stack([np.rint(np.apply_along_axis(lambda v: np.interp(z, zs, v), 0, stack))
                         for z in np.arange(6) * 5.0])
    np.testing.assert_array_equal(volume.array, expected.astype(np.int16))
    assert "10.0 mm interpolated across 1 gap" in volume.meta["warnings"]
    assert radiolab_main(["ingest", "--in", str(tmp_path / "dicom"), "--out", str(tmp_path / "out"),
                          "--allow-gaps"]) == 0
    assert re.search(r"^radiolab ingest: WARNING: series-7-chest-5mm-\w+: 10\.0 mm interpolated across 1 gap$",
                     capsys.readouterr().err, re.M)


def test_uneven_spacing_is_resampled_linearly_in_z(tmp_path):
    zs = np.array([0.0, 5.0, 10.0, 12.0, 17.0])  # one short step: uneven, no gap
    raw = write_series(tmp_path, axial_positions(zs))
    volume = read_series_folder(tmp_path)
    # ceil(17 mm / smallest step 2 mm) + 1 = 10 slices spanning 0..17 mm: step 17 / 9 mm.
    assert volume.array.shape == (10, 128, 128)
    assert volume.geometry.spacing[0] == pytest.approx(17 / 9)
    stack = np.stack([hu(r) for r in raw]).astype(float)
    expected = np.stack([np.rint(np.apply_along_axis(lambda v: np.interp(z, zs, v), 0, stack))
                         for z in np.linspace(0.0, 17.0, 10)])
    np.testing.assert_array_equal(volume.array, expected.astype(np.int16))
    (note,) = volume.meta["warnings"]
    assert note == ("uneven slice spacing (steps 2.0, 5.0 mm): resampled to 10 slices at 1.889 mm "
                    "with linear interpolation along the slice normal")


def test_small_position_jitter_is_not_resampled(tmp_path):
    # Steps of 2.5 mm +- 0.01 mm: within 1 % of the step.
    write_series(tmp_path, axial_positions([0.0, 2.5, 5.01, 7.5, 10.0]))
    volume = read_series_folder(tmp_path)
    assert volume.meta["resampled"] is False and volume.array.shape[0] == 5
    assert volume.geometry.spacing[0] == pytest.approx(2.5)


def test_padding_is_never_blended_with_tissue(tmp_path):
    # CT_small's PixelPaddingValue is -2000 stored, i.e. -3024 HU after its rescale.
    write_series(tmp_path, axial_positions([0.0, 5.0, 10.0, 12.0]))
    for path in sorted(tmp_path.iterdir()):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.copy()
        # The padded border widens from slice to slice, so z interpolation meets it.
        k = int(path.stem[-3:])
        pixels[:, :40 + 10 * k] = int(ds.PixelPaddingValue)
        ds.PixelData = pixels.astype(np.int16).tobytes()
        ds.save_as(path)
    volume = read_series_folder(tmp_path)
    assert volume.meta["padding_hu"] == -3024 and volume.meta["resampled"] is True
    tissue_min = int(hu(_original_pixels()).min())
    values = volume.array
    # Padding kept as stored, and no value between padding and the lowest tissue HU.
    assert (values[:, :, :40] == -3024).all() and (values[:, :, 70:] >= tissue_min).all()
    assert not ((values > -3024) & (values < tissue_min)).any()


def test_duplicate_slice_positions_are_rejected(tmp_path):
    write_series(tmp_path, axial_positions([0.0, 5.0, 5.0, 10.0]))
    with pytest.raises(InputError, match=re.escape("duplicate slice position (-158.136, -179.036, 5.0) mm")):
        read_series_folder(tmp_path)


def test_gantry_tilt_is_shifted_onto_an_orthogonal_grid(tmp_path):
    import SimpleITK as sitk

    # Slice k sits k rows (0.661468 mm each) further along y: a sheared stack, tilt
    # atan(0.661468 / 5) = 7.54 degrees. Whole-pixel shifts, so no interpolation.
    row_mm = 0.661468
    positions = [(-158.1358, -179.0358 + k * row_mm, k * 5.0) for k in range(4)]
    raw = write_series(tmp_path / "dicom", positions)
    report = ingest(tmp_path / "dicom", tmp_path / "out")
    assert report.failed == []
    header = read_header(report.written[0])
    assert float(header["radiolab_tilt_deg"]) == pytest.approx(np.degrees(np.arctan2(row_mm, 5.0)), abs=0.01)
    assert "gantry tilt of 7.54 degrees" in header["radiolab_warnings"]
    image = sitk.ReadImage(report.written[0])
    assert image.GetSize() == (128, 131, 4)  # 3 rows added to hold the shifted slices
    array = sitk.GetArrayFromImage(image)
    # Oracle: each voxel's physical point (SimpleITK) lies on slice k at row
    # (y - IPP_k.y) / row spacing; its value is that slice's pixel, or the padding value
    # (CT_small's PixelPaddingValue -2000 stored, -3024 HU) outside every slice.
    checked = 0
    for k in range(4):
        for j in (0, 2, 3, 60, 127, 130):
            for i in (0, 17, 127):
                x, y, z = image.TransformIndexToPhysicalPoint((i, j, k))
                assert z == pytest.approx(k * 5.0, abs=1e-4)
                source_row = (y - positions[k][1]) / row_mm
                assert source_row == pytest.approx(round(source_row), abs=1e-3)
                r = int(round(source_row))
                expected = hu(raw[k])[r, i] if 0 <= r < 128 else -3024
                assert array[k, j, i] == expected
                checked += 1
    assert checked == 72


def test_gantry_tilt_tag_alone_does_not_reject_an_orthogonal_stack(tmp_path):
    raw = write_series(tmp_path, axial_positions([0.0, 5.0, 10.0]), tags={"GantryDetectorTilt": "12.5"})
    volume = read_series_folder(tmp_path)
    np.testing.assert_array_equal(volume.array, np.stack([hu(r) for r in raw]))
    assert volume.meta["tilt_deg"] == 0.0 and volume.meta["resampled"] is False
    assert volume.meta["warnings"] == [
        "GantryDetectorTilt says 12.50 degrees, but the slice positions form an orthogonal stack: "
        "no correction needed"]


def _set_on_slice_1(keyword, value):
    def edit(k, ds):
        if k == 1:
            setattr(ds, keyword, value)
    return edit


@pytest.mark.parametrize(("keyword", "value", "what"), [
    ("PixelSpacing", ["0.7", "0.7"], "PixelSpacing (mm)"),
    ("ImageOrientationPatient", ["1", "0", "0", "0", "0.9848", "-0.1736"], "ImageOrientationPatient"),
    ("Rows", 64, "Rows x Columns"),
])
def test_inconsistent_slices_are_rejected(tmp_path, keyword, value, what):
    write_series(tmp_path, axial_positions([0.0, 5.0, 10.0]), per_slice=_set_on_slice_1(keyword, value))
    with pytest.raises(InputError, match=re.escape(what) + " differs between slices"):
        read_series_folder(tmp_path)


def test_mixed_series_in_one_folder_are_split(tmp_path):
    write_series(tmp_path, axial_positions([0.0, 5.0, 10.0]), number=3, description="Lung",
                 file_names=["a1", "b1", "c1"])
    write_series(tmp_path, axial_positions([0.0, 2.0]), number=4, description="Lung",
                 file_names=["a2", "b2"])
    write_series(tmp_path, axial_positions([0.0]), modality="MR", number=5, file_names=["a3"])
    (tmp_path / "notes.txt").write_text("not DICOM")
    series, skipped = find_series(tmp_path)
    assert [(s.number, len(s.files)) for s in series] == [(3, 3), (4, 2)]
    assert [s.reason for s in skipped] == ["modality MR is not CT"]
    report = ingest(tmp_path, tmp_path / "out")
    assert report.failed == []
    assert [os.path.basename(p).split("-")[:3] for p in report.written] == [
        ["series", "3", "lung"], ["series", "4", "lung"]]
    assert [read_volume(p).array.shape[0] for p in report.written] == [3, 2]
    assert read_volume(report.written[1]).geometry.spacing[0] == pytest.approx(2.0)


@pytest.mark.parametrize(("tags", "remove", "reason"), [
    ({"Modality": "SR"}, (), "modality SR is not CT"),
    ({"Modality": "SEG"}, (), "modality SEG is not CT"),
    ({}, ("ImagePositionPatient",), "no ImagePositionPatient in 2 of 2 files"),
    ({}, ("Rows", "Columns", "PixelData"), "no pixel data (no Rows/Columns) in 2 of 2 files"),
])
def test_non_ct_objects_are_skipped_with_a_reason(tmp_path, tags, remove, reason):
    def edit(k, ds):
        for keyword in remove:
            delattr(ds, keyword)
    write_series(tmp_path, axial_positions([0.0, 5.0]), tags=tags, per_slice=edit)
    series, skipped = find_series(tmp_path)
    assert series == []
    assert [s.reason for s in skipped] == [reason]


def test_series_names_are_safe_and_unique():
    name = series_name("1.2.840.99.1", 12, "Thorax/Lunge ü 1.0*  B70f")
    assert name == "series-12-thorax-lunge-u-1.0-b70f-" + name[-8:]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
    assert series_name("1.2.3", None, "") == "series-nn-" + series_name("1.2.3", 1, "")[-8:]
    assert series_name("1.2.3", 1, "x") != series_name("1.2.4", 1, "x")


def test_privacy_no_patient_tag_reaches_outputs(tmp_path, capsys):
    # One series with its UIDs (uneven, so it carries warnings) and one without any
    # UID or study tag, in a folder named after the patient: its name falls back to
    # the folder, which must appear only as a hash.
    write_series(tmp_path / "dicom" / "a", axial_positions([0.0, 5.0, 10.0, 12.0]), tags=PHI,
                 description="Chest")
    folder_named = tmp_path / "dicom" / "Zebrafish_Quintessa_PID98765XYZ"

    def strip_uids(k, ds):
        for keyword in ("SeriesInstanceUID", "StudyInstanceUID", "StudyDate", "StudyTime",
                        "SeriesDescription", "SeriesNumber"):
            if keyword in ds:
                delattr(ds, keyword)

    write_series(folder_named, axial_positions([0.0, 5.0, 10.0]), tags=PHI, per_slice=strip_uids)
    status = ingest_cli.main(["--in", str(tmp_path / "dicom"), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert status == 0
    paths = sorted(str(p) for p in (tmp_path / "out").iterdir())
    assert len(paths) == 2
    headers = {path: read_header(path) for path in paths}
    (with_uid,) = [p for p in paths if headers[p]["radiolab_grouped_by"] == "SeriesInstanceUID"]
    (fallback,) = [p for p in paths if p != with_uid]
    assert headers[with_uid]["radiolab_series_description"] == "Chest"
    assert "uneven slice spacing" in headers[with_uid]["radiolab_warnings"]
    assert headers[fallback]["radiolab_grouped_by"].endswith("folder")
    assert re.fullmatch(r"series-nn-[0-9a-f]{8}\.nrrd", os.path.basename(fallback))
    series, _ = find_series(tmp_path / "dicom")
    volumes = [read_series(info) for info in series]
    for volume in volumes:
        assert set(volume.meta) == {"series_number", "series_description", "uid_hash", "grouped_by",
                                    "modality", "modality_source", "transfer_syntax", "acquisition",
                                    "padding_hu", "tilt_deg", "resampled", "warnings"}
    texts = [printed.out.replace(str(tmp_path), ""), printed.err.replace(str(tmp_path), "")]
    for path in paths:
        with open(path, "rb") as handle:
            texts.append(handle.read().split(b"\n\n")[0].decode("ascii"))
        texts += [os.path.basename(path), repr(headers[path])]
    texts += [repr(v.meta) for v in volumes] + [s.name for s in series]
    for value in [*PHI.values(), "Zebrafish", "Quintessa"]:
        for text in texts:
            assert value.lower() not in text.lower()
    # The source really carried the tags (so the test can fail).
    source = pydicom.dcmread(next(folder_named.iterdir()))
    assert str(source.PatientName) == PHI["PatientName"]


def test_ingest_continues_after_a_bad_series_and_cli_reports_it(tmp_path, capsys):
    write_series(tmp_path / "in" / "bad", axial_positions([0.0, 5.0, 5.0]), number=1)
    write_series(tmp_path / "in" / "good", axial_positions([0.0, 5.0, 10.0]), number=2)
    shutil.copy(os.path.join(DICOMDIRTESTS, "DICOMDIR"), tmp_path / "in" / "DICOMDIR")
    status = ingest_cli.main(["--in", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert status == 1
    written = sorted(os.listdir(tmp_path / "out"))
    assert len(written) == 1 and written[0].startswith("series-2-chest-5mm-")
    assert re.search(r"^failed series-1-chest-5mm-[0-9a-f]{8}: .*duplicate slice position", printed.err, re.M)
    assert re.search(r"^wrote .*series-2-chest-5mm-[0-9a-f]{8}\.nrrd$", printed.out, re.M)
    assert re.search(r"^skipped .*DICOMDIR: DICOMDIR index file", printed.out, re.M)


def test_cli_fails_when_nothing_is_written(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert ingest_cli.main(["--in", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no CT series written" in capsys.readouterr().err
    assert ingest_cli._get_parser().prog == "radiolab ingest"


def test_localizer_with_single_valued_image_type_is_skipped(tmp_path):
    write_series(tmp_path, axial_positions([0.0, 5.0]), tags={"ImageType": "LOCALIZER"})
    series, skipped = find_series(tmp_path)
    assert series == []
    assert [s.reason for s in skipped] == ["localizer (scout) images (2 of 2 files), not a volume"]


# ----------------------------------------------------------------- stripped tags


def _strip(*keywords):
    def edit(k, ds):
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)
    return edit


def test_two_reconstructions_without_uid_stay_apart(tmp_path):
    # Same study, series number, description and positions; only the kernel differs.
    for kernel, names in (("B30f", ["a1", "b1", "c1"]), ("B70f", ["a2", "b2", "c2"])):
        write_series(tmp_path, axial_positions([0.0, 5.0, 10.0]), tags={"ConvolutionKernel": kernel},
                     file_names=names, per_slice=_strip("SeriesInstanceUID"))
    series, skipped = find_series(tmp_path)
    assert skipped == []
    assert sorted(len(s.files) for s in series) == [3, 3]
    kernels = [{pydicom.dcmread(f).ConvolutionKernel for f in s.files} for s in series]
    assert sorted(map(sorted, kernels)) == [["B30f"], ["B70f"]]
    assert all("ConvolutionKernel" in s.grouped_by and "folder" not in s.grouped_by for s in series)
    assert len({s.name for s in series}) == 2


def test_without_uid_and_study_keys_the_folder_separates_series(tmp_path):
    strip = _strip("SeriesInstanceUID", "StudyInstanceUID", "StudyDate", "StudyTime")
    write_series(tmp_path / "p1", axial_positions([0.0, 5.0]), per_slice=strip)
    write_series(tmp_path / "p2", axial_positions([0.0, 5.0]), per_slice=strip)
    series, _ = find_series(tmp_path)
    assert sorted(os.path.basename(s.folder) for s in series) == ["p1", "p2"]
    assert all(s.grouped_by[-1] == "folder" for s in series)
    assert all("p1" not in s.name and "p2" not in s.name for s in series)


def test_real_series_without_series_uid_is_one_volume(real_data):
    # TotalSegmentator's example: 20 slices, no SeriesInstanceUID, StudyInstanceUID or SeriesNumber.
    folder = real_data("totalseg/example_ct_dicom")
    files = sorted(folder.iterdir())
    assert not any(pydicom.dcmread(f, stop_before_pixels=True).get("SeriesInstanceUID") for f in files)
    (info,), skipped = find_series(folder)
    assert skipped == [] and len(info.files) == len(files) == 20
    assert info.name == "series-nn-ct-body-3.0-" + info.uid_hash[:8]
    assert info.grouped_by[:3] == ("StudyDate", "StudyTime", "SeriesDescription")


def test_missing_modality_needs_ct_evidence_or_assume_ct(tmp_path):
    secondary_capture = "1.2.840.10008.5.1.4.1.1.7"

    def not_ct_looking(k, ds):
        _strip("Modality", "RescaleSlope", "RescaleIntercept")(k, ds)
        ds.SOPClassUID = secondary_capture
        ds.file_meta.MediaStorageSOPClassUID = secondary_capture

    write_series(tmp_path / "bare", axial_positions([0.0, 5.0]), per_slice=not_ct_looking)
    series, skipped = find_series(tmp_path / "bare")
    assert series == [] and skipped[0].reason.startswith("no Modality tag and nothing shows CT")
    (info,), _ = find_series(tmp_path / "bare", assume_ct=True)
    volume = read_series(info)
    assert volume.meta["modality_source"] == "assumed (--assume-ct)"
    assert "no Modality tag: taken as CT from assumed (--assume-ct)" in volume.meta["warnings"]
    # The CLI flag maps to the same argument.
    assert ingest_cli.main(["--in", str(tmp_path / "bare"), "--out", str(tmp_path / "o1")]) == 1
    assert ingest_cli.main(["--in", str(tmp_path / "bare"), "--out", str(tmp_path / "o2"), "--assume-ct"]) == 0

    # An explicit non-CT Modality is never overridden.
    write_series(tmp_path / "mr", axial_positions([0.0, 5.0]), modality="MR")
    series, skipped = find_series(tmp_path / "mr", assume_ct=True)
    assert series == [] and [s.reason for s in skipped] == ["modality MR is not CT"]

    # Rescale tags alone are evidence.
    write_series(tmp_path / "rescale", axial_positions([0.0, 5.0]), per_slice=lambda k, ds: (
        _strip("Modality")(k, ds), setattr(ds, "SOPClassUID", secondary_capture)))
    (info,), _ = find_series(tmp_path / "rescale")
    assert info.modality_source == "its rescale tags (RescaleSlope, RescaleIntercept)"


def test_values_in_hu_with_padding_are_ct_evidence(tmp_path):
    # Like lungmask's files, but without even the SOP class: stored values are HU, padding -2048.
    secondary_capture = "1.2.840.10008.5.1.4.1.1.7"
    tissue = hu(_original_pixels())

    def hu_stored(k, ds):
        not_ct = _strip("Modality", "RescaleSlope", "RescaleIntercept", "PixelPaddingValue")
        not_ct(k, ds)
        ds.SOPClassUID = secondary_capture
        ds.file_meta.MediaStorageSOPClassUID = secondary_capture
        pixels = tissue.copy()
        pixels[:10] = -2048
        ds.PixelData = pixels.astype(np.int16).tobytes()

    write_series(tmp_path, axial_positions([0.0, 5.0]), per_slice=hu_stored)
    for path in sorted(tmp_path.iterdir()):  # write_series rewrote PixelData: put the HU back
        ds = pydicom.dcmread(path)
        pixels = tissue.copy()
        pixels[:10] = -2048
        ds.PixelData = pixels.astype(np.int16).tobytes()
        ds.save_as(path)
    (info,), _ = find_series(tmp_path)
    assert info.modality_source == "its values (HU range with padding -2048)"
    volume = read_series(info)
    assert (volume.array[:, :10] == -2048).all()
    np.testing.assert_array_equal(volume.array[:, 10:], np.stack([tissue[10:]] * 2))


def test_acquisition_facts_reach_the_nrrd_header(real_data, tmp_path):
    folder = real_data("totalseg/example_ct_dicom")
    report = ingest(folder, tmp_path / "out")
    header = read_header(report.written[0])
    ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    assert header["radiolab_manufacturer"] == ds.Manufacturer == "SIEMENS"
    assert header["radiolab_model"] == ds.ManufacturerModelName
    assert header["radiolab_kernel"] == " ".join(ds.ConvolutionKernel) == "Br38f 3"
    assert header["radiolab_kvp"] == str(ds.KVP)
    assert header["radiolab_slice_thickness_mm"] == str(ds.SliceThickness)
    assert header["radiolab_contrast_agent"] == ds.ContrastBolusAgent == "APPLIED"
    from radiolab.io import read_custom_fields

    assert read_custom_fields(report.written[0]) == {k: v for k, v in header.items() if k.startswith("radiolab_")}


def test_segment_takes_allow_gaps_and_assume_ct(tmp_path):
    from radiolab.segment import find_inputs

    write_series(tmp_path / "gap", axial_positions([0.0, 5.0, 10.0, 20.0, 25.0]))
    write_series(tmp_path / "bare", axial_positions([0.0, 5.0]), per_slice=lambda k, ds: (
        _strip("Modality", "RescaleSlope", "RescaleIntercept")(k, ds),
        setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")))
    (gap,), _ = find_inputs([str(tmp_path / "gap")])
    with pytest.raises(InputError, match="gap of 10.0 mm"):
        gap.read()
    (gap,), _ = find_inputs([str(tmp_path / "gap")], allow_gaps=True)
    assert gap.read().array.shape[0] == 6
    with pytest.raises(InputError, match="no Modality tag and nothing shows CT"):
        find_inputs([str(tmp_path / "bare")])
    (bare,), _ = find_inputs([str(tmp_path / "bare")], assume_ct=True)
    assert bare.read().meta["modality_source"] == "assumed (--assume-ct)"
