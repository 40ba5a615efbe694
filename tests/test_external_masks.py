import numpy as np
import pytest
import SimpleITK as sitk

from radiolab.errors import InputError
from radiolab.external_masks import (align_to_grid, find_mask, mask_content_hash, read_external_mask)
from radiolab.io import Geometry
from radiolab.sides import LEFT, RIGHT
from radiolab.zones import LOWER, MIDDLE, UPPER

SHAPE = (8, 10, 12)  # z, y, x
GEOMETRY = Geometry(spacing=(2.5, 1.5, 1.25), origin=(-7.0, 3.0, 11.0))


def _write(path, array, geometry=GEOMETRY):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(geometry.spacing)))
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _flipped_y(array, geometry=GEOMETRY):
    """The same voxels stored with the y index reversed (as NIfTI LAS files are)."""
    origin = np.asarray(geometry.origin) + np.array([0.0, (array.shape[1] - 1) * geometry.spacing[1], 0.0])
    direction = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    return np.ascontiguousarray(array[:, ::-1, :]), Geometry(geometry.spacing, tuple(origin), direction)


def _lobes():
    """Radiolab lobe codes: right lung at low x (LPS), upper lobes at high z."""
    lobes = np.zeros(SHAPE, np.uint8)
    lobes[1:7, 2:8, 1:5] = 3  # right lower
    lobes[4:7, 2:8, 1:5] = 1  # right upper
    lobes[3, 2:8, 1:5] = 2  # right middle
    lobes[1:7, 2:8, 7:11] = 5  # left lower
    lobes[4:7, 2:8, 7:11] = 4  # left upper
    return lobes


def test_find_mask_matches_exactly(tmp_path):
    _write(tmp_path / "case_10.nrrd", np.ones(SHAPE, np.uint8))
    with pytest.raises(InputError, match="no mask for scan 'case_1'"):
        find_mask(tmp_path, "case_1")
    _write(tmp_path / "case_1.nii.gz", np.ones(SHAPE, np.uint8))
    assert find_mask(tmp_path, "case_1").name == "case_1.nii.gz"
    _write(tmp_path / "case_1.nrrd", np.ones(SHAPE, np.uint8))
    with pytest.raises(InputError, match="several masks"):
        find_mask(tmp_path, "case_1")


def test_totalseg_folder_stored_flipped(tmp_path):
    lobes = _lobes()
    folder = tmp_path / "scan"
    folder.mkdir()
    names = {1: "lung_upper_lobe_right", 2: "lung_middle_lobe_right", 3: "lung_lower_lobe_right",
             4: "lung_upper_lobe_left", 5: "lung_lower_lobe_left"}
    for code, name in names.items():
        array, geometry = _flipped_y((lobes == code).astype(np.uint8))
        _write(folder / f"{name}.nii.gz", array, geometry)
    masks = read_external_mask(tmp_path, "scan", GEOMETRY, SHAPE)
    assert masks.mask_format == "totalseg"
    np.testing.assert_array_equal(masks.lobes, lobes)
    np.testing.assert_array_equal(masks.mask, lobes > 0)
    assert int((masks.sides == RIGHT).sum()) == int(np.isin(lobes, [1, 2, 3]).sum()) == 6 * 6 * 4
    assert int((masks.sides == LEFT).sum()) == 6 * 6 * 4
    assert masks.thirds is None
    assert len(masks.paths) == 5


@pytest.mark.parametrize("fmt,offset", [("totalseg", 10), ("totalseg-v1", 13)])
def test_totalseg_multilabel_file(tmp_path, fmt, offset):
    lobes = _lobes()
    # TotalSegmentator order: left upper, left lower, right upper, right middle, right lower.
    values = {4: 0, 5: 1, 1: 2, 2: 3, 3: 4}
    stored = np.zeros(SHAPE, np.uint8)
    for code, position in values.items():
        stored[lobes == code] = offset + position
    stored[0, 0, 0] = 5  # the liver: not lung
    _write(tmp_path / "scan.nii.gz", stored)
    masks = read_external_mask(tmp_path, "scan", GEOMETRY, SHAPE, mask_format=fmt)
    np.testing.assert_array_equal(masks.lobes, lobes)
    # The numbering matters: read with the other version's, the lobes come out wrong.
    other = "totalseg-v1" if fmt == "totalseg" else "totalseg"
    assert not np.array_equal(read_external_mask(tmp_path, "scan", GEOMETRY, SHAPE, mask_format=other).lobes, lobes)
    _write(tmp_path / "organs.nii.gz", np.where(lobes > 0, 5, 0).astype(np.uint8))
    with pytest.raises(InputError, match="no lung lobe labels"):
        read_external_mask(tmp_path, "organs", GEOMETRY, SHAPE, mask_format=fmt)


def test_lungmask_r231_and_lobes(tmp_path):
    lobes = _lobes()
    r231 = np.where(np.isin(lobes, [1, 2, 3]), 1, np.where(lobes > 0, 2, 0)).astype(np.uint8)
    _write(tmp_path / "a.nrrd", r231)
    masks = read_external_mask(tmp_path, "a", GEOMETRY, SHAPE, mask_format="lungmask")
    assert int((masks.sides == RIGHT).sum()) == int((r231 == 1).sum())
    assert int((masks.sides == LEFT).sum()) == int((r231 == 2).sum())
    assert masks.lobes is None
    ltrc = np.zeros(SHAPE, np.uint8)
    for code, value in {4: 1, 5: 2, 1: 3, 2: 4, 3: 5}.items():
        ltrc[lobes == code] = value
    _write(tmp_path / "b.nrrd", ltrc)
    masks = read_external_mask(tmp_path, "b", GEOMETRY, SHAPE, mask_format="lungmask-lobes")
    np.testing.assert_array_equal(masks.lobes, lobes)
    with pytest.raises(InputError, match="lungmask R231 masks hold"):
        read_external_mask(tmp_path, "b", GEOMETRY, SHAPE, mask_format="lungmask")


def test_ambiguous_values_need_the_format(tmp_path):
    _write(tmp_path / "a.nrrd", (_lobes() > 0).astype(np.uint8))
    with pytest.raises(InputError, match="--mask-format"):
        read_external_mask(tmp_path, "a", GEOMETRY, SHAPE)
    masks = read_external_mask(tmp_path, "a", GEOMETRY, SHAPE, mask_format="binary")
    assert masks.sides is None and masks.lobes is None and int(masks.mask.sum()) == int((_lobes() > 0).sum())


def test_cip_map_with_thirds_is_detected(tmp_path):
    lobes = _lobes()
    right, left = np.isin(lobes, [1, 2, 3]), np.isin(lobes, [4, 5])
    z = np.arange(SHAPE[0])[:, None, None] * np.ones(SHAPE, int)
    third = np.select([z <= 2, z <= 4], [LOWER, MIDDLE], UPPER)
    cip = np.zeros(SHAPE, np.uint16)
    region = {(True, UPPER): 12, (True, MIDDLE): 13, (True, LOWER): 14,
              (False, UPPER): 9, (False, MIDDLE): 10, (False, LOWER): 11}
    for (is_right, t), value in region.items():
        chosen = (right if is_right else left) & (third == t)
        cip[chosen] = value
    cip[right & (z == 6)] += 3 * 256  # vessel type on some right-lung voxels: value > 255
    cip[0, 0, 0] = 16  # heart: not lung
    _write(tmp_path / "c.nrrd", cip)
    masks = read_external_mask(tmp_path, "c", GEOMETRY, SHAPE)
    assert masks.mask_format == "cip"
    np.testing.assert_array_equal(masks.mask, lobes > 0)
    np.testing.assert_array_equal(masks.sides[right], RIGHT)
    np.testing.assert_array_equal(masks.sides[left], LEFT)
    np.testing.assert_array_equal(masks.thirds[lobes > 0], third[lobes > 0])
    assert masks.lobes is None


def test_cip_map_with_lobes_and_whole_lung(tmp_path):
    lobes = _lobes()
    cip = np.zeros(SHAPE, np.uint16)
    for code, value in {1: 4, 2: 5, 3: 6, 4: 7, 5: 8}.items():
        cip[lobes == code] = value + 256
    cip[1, 2, 1] = 1  # one voxel of region "whole lung": sides no longer complete
    _write(tmp_path / "c.nrrd", cip)
    masks = read_external_mask(tmp_path, "c", GEOMETRY, SHAPE)
    assert masks.sides is None and masks.thirds is None
    expected = lobes.copy()
    expected[1, 2, 1] = 0
    np.testing.assert_array_equal(masks.lobes, expected)
    assert masks.mask.sum() == (lobes > 0).sum()


@pytest.mark.parametrize("axes", [(0, 2, 1), (2, 1, 0)])
def test_permuted_and_flipped_axes_are_reoriented(axes):
    lobes = _lobes()
    stored = np.transpose(lobes, axes)[::-1]
    # Stored array axis q holds scan array axis axes[q]; its index axis is 2 - q.
    direction = np.zeros((3, 3))
    spacing = [0.0] * 3
    origin = np.asarray(GEOMETRY.origin, float)
    for q in range(3):
        scan_index = 2 - axes[q]
        sign = -1.0 if q == 0 else 1.0
        direction[scan_index, 2 - q] = sign
        spacing[q] = GEOMETRY.spacing[axes[q]]
    scan_axis0 = 2 - axes[0]
    origin[scan_axis0] += (SHAPE[axes[0]] - 1) * GEOMETRY.spacing[axes[0]]
    geometry = Geometry(tuple(spacing), tuple(origin), tuple(direction.ravel()))
    np.testing.assert_array_equal(align_to_grid(stored, geometry, GEOMETRY, SHAPE), lobes)


def test_resampling_is_refused_naming_both_files(tmp_path):
    lobes = _lobes()
    shifted = Geometry(GEOMETRY.spacing, (GEOMETRY.origin[0] + 0.01, *GEOMETRY.origin[1:]))
    _write(tmp_path / "s.nrrd", lobes, shifted)
    with pytest.raises(InputError, match=r"s\.nrrd: mask does not lie on the grid of scan /data/s\.nrrd.*resample"):
        read_external_mask(tmp_path, "s", GEOMETRY, SHAPE, mask_format="lungmask-lobes", scan_path="/data/s.nrrd")
    _write(tmp_path / "t.nrrd", lobes[:, :, :-1])
    with pytest.raises(InputError, match="size"):
        read_external_mask(tmp_path, "t", GEOMETRY, SHAPE, mask_format="lungmask-lobes")
    rotated = sitk.GetImageFromArray(lobes)
    rotated.SetSpacing(tuple(reversed(GEOMETRY.spacing)))
    rotated.SetOrigin(GEOMETRY.origin)
    c, s = np.cos(0.3), np.sin(0.3)
    rotated.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(rotated, str(tmp_path / "r.nrrd"))
    with pytest.raises(InputError, match="rotated"):
        read_external_mask(tmp_path, "r", GEOMETRY, SHAPE, mask_format="lungmask-lobes")
    # Within 1e-3 mm is the same grid.
    _write(tmp_path / "u.nrrd", lobes, Geometry(GEOMETRY.spacing, (GEOMETRY.origin[0] + 4e-4, *GEOMETRY.origin[1:])))
    read_external_mask(tmp_path, "u", GEOMETRY, SHAPE, mask_format="lungmask-lobes")


def test_content_hash_follows_the_voxels(tmp_path):
    lobes = _lobes()
    _write(tmp_path / "h.nrrd", lobes)
    first = mask_content_hash(tmp_path / "h.nrrd", "lungmask-lobes")
    assert first == mask_content_hash(tmp_path / "h.nrrd", "lungmask-lobes")
    assert first != mask_content_hash(tmp_path / "h.nrrd", "binary")
    lobes[3, 3, 3] = 0
    _write(tmp_path / "h.nrrd", lobes)
    assert mask_content_hash(tmp_path / "h.nrrd", "lungmask-lobes") != first


# -- real masks made by other tools ---------------------------------------------------------

def test_real_cip_lung_mask_gives_its_sides(real_data, tmp_path):
    """CIP's deep-learning lung mask of COPDGene 16021S: region 2 right, 3 left."""
    from radiolab.io import read_volume

    ct = read_volume(real_data("cip/crop_ct_2slices.nrrd"))
    (tmp_path / "crop_ct_2slices.nrrd").write_bytes(
        real_data("cip/crop_ct_2slices_dcnnLungSegmentationLabelmap.nrrd").read_bytes())
    with pytest.raises(InputError, match="--mask-format"):  # values 2 and 3 alone are ambiguous
        read_external_mask(tmp_path, "crop_ct_2slices", ct.geometry, ct.array.shape)
    masks = read_external_mask(tmp_path, "crop_ct_2slices", ct.geometry, ct.array.shape, mask_format="cip")
    # The voxel counts published with the data (tests/data/README.md).
    assert int((masks.sides == RIGHT).sum()) == 74_379
    assert int((masks.sides == LEFT).sum()) == 76_219
    # Patient right is at smaller LPS x: the lower x indices with this identity direction.
    x = np.arange(ct.array.shape[2])
    assert x[np.nonzero(masks.sides == RIGHT)[2]].mean() < x[np.nonzero(masks.sides == LEFT)[2]].mean()
    assert -1000 < ct.array[masks.mask].mean() < -700  # lung parenchyma


def test_real_totalseg_labels_stored_flipped_land_on_their_organs(real_data):
    """TotalSegmentator's labels of its example series, stored LAS against the DICOM's LPS."""
    from radiolab.external_masks import read_label_map

    folder = real_data("totalseg/example_ct_dicom")
    # The series has no SeriesInstanceUID; read the slices one by one, sorted by position.
    slices = sorted((sitk.ReadImage(str(p)) for p in sorted(folder.rglob("*")) if p.is_file()),
                    key=lambda image: image.GetOrigin()[2])
    ct = np.stack([sitk.GetArrayFromImage(image)[0] for image in slices])
    first = slices[0]
    geometry = Geometry(spacing=(slices[1].GetOrigin()[2] - first.GetOrigin()[2], first.GetSpacing()[1],
                                 first.GetSpacing()[0]), origin=first.GetOrigin(), direction=first.GetDirection())
    labels, label_geometry = read_label_map(real_data("totalseg/example_seg_dicom.nii.gz"))
    assert label_geometry.direction[4] == -1.0  # y stored reversed
    aligned = align_to_grid(labels, label_geometry, geometry, ct.shape)
    liver, spleen = ct[aligned == 5], ct[aligned == 1]  # TotalSegmentator v2: 5 liver, 1 spleen
    assert 40 < liver.mean() < 130 and 40 < spleen.mean() < 130  # soft tissue (contrast-enhanced)
    assert ct[labels == 5].mean() < 0  # read without the flip, the liver label would lie on fat and air



def test_bad_mask_files_are_clear_errors(tmp_path):
    (tmp_path / "garbage.nrrd").write_bytes(b"NRRD0004\ntype: short\n\x00\x01")
    with pytest.raises(InputError, match=r"garbage\.nrrd: not a readable label map"):
        read_external_mask(tmp_path, "garbage", GEOMETRY, SHAPE, mask_format="binary")
    _write(tmp_path / "float.nrrd", np.full(SHAPE, 0.5, np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_external_mask(tmp_path, "float", GEOMETRY, SHAPE, mask_format="binary")
    _write(tmp_path / "empty.nrrd", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError, match="no lung voxels"):
        read_external_mask(tmp_path, "empty", GEOMETRY, SHAPE, mask_format="binary")
    heart = np.zeros(SHAPE, np.uint16)
    heart[2:4, 2:4, 2:4] = 16 + 256  # CIP heart region only
    _write(tmp_path / "heart.nrrd", heart)
    with pytest.raises(InputError, match="no lung voxels"):
        read_external_mask(tmp_path, "heart", GEOMETRY, SHAPE)
    folder = tmp_path / "ts"
    folder.mkdir()
    _write(folder / "lung_upper_lobe_left.nii.gz", np.ones(SHAPE, np.uint8))
    with pytest.raises(InputError, match=r"folder lacks .*lung_lower_lobe_left\.nii\.gz"):
        read_external_mask(tmp_path, "ts", GEOMETRY, SHAPE)
    with pytest.raises(InputError, match="--mask-format is lungmask"):
        read_external_mask(tmp_path, "ts", GEOMETRY, SHAPE, mask_format="lungmask")
