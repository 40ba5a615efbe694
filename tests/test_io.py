import gzip
import os

import numpy as np
import pytest
import SimpleITK as sitk

from radiolab.errors import InputError
from radiolab.io import Geometry, atomic_path, read_header, read_volume, scan_id, write_volume

OBLIQUE = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii", ".mha"])
@pytest.mark.parametrize("direction", [Geometry().direction, OBLIQUE])
def test_read_keeps_values_and_geometry(tmp_path, suffix, direction):
    array = np.random.default_rng(0).integers(-1024, 2000, size=(5, 6, 7)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, 30.0))
    image.SetDirection(direction)
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert np.array_equal(volume.array, array)
    assert volume.geometry.spacing == pytest.approx((2.5, 0.8, 0.7))
    assert volume.geometry.origin == pytest.approx((-10.0, 20.0, 30.0))
    # NIfTI stores RAS and ITK converts back to LPS: same physical geometry either way.
    assert volume.geometry.direction == pytest.approx(direction)
    assert scan_id(path) == "scan"


def test_write_volume_round_trips_geometry_through_simpleitk(tmp_path):
    geometry = Geometry(spacing=(2.0, 0.7, 0.6), origin=(1.0, -2.0, 3.5), direction=OBLIQUE)
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / "out.nrrd"
    write_volume(path, array, geometry, fields={"radiolab_version": "x", "params": {"a": 1}})
    image = sitk.ReadImage(str(path))
    assert image.GetSpacing() == pytest.approx((0.6, 0.7, 2.0))
    assert image.GetOrigin() == pytest.approx((1.0, -2.0, 3.5))
    assert image.GetDirection() == pytest.approx(OBLIQUE)
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    header = read_header(path)
    assert header["radiolab_version"] == "x" and header["params"] == '{"a": 1}'
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_float_input_is_binned_to_1_hu(tmp_path):
    array = np.array([[[-999.6, 10.4], [0.5, 1.5]]] * 2, dtype=np.float32)
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(tmp_path / "f.nrrd"))
    volume = read_volume(tmp_path / "f.nrrd")
    assert volume.array.dtype == np.int16
    assert volume.array[0].tolist() == [[-1000, 10], [0, 2]]


def _write_sitk(path, array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("empty", "empty"),
    ("text", "not a readable volume"),
    ("truncated", "cannot read voxel data"),
    ("two_d", "expected a 3-D volume"),
    ("nan", "NaN"),
])
def test_bad_volumes_get_a_message_naming_the_file(tmp_path, case, expected):
    path = tmp_path / f"{case}.nrrd"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not an image\n")
    elif case == "truncated":
        _write_sitk(path, np.random.default_rng(0).integers(-1000, 1000, size=(20, 30, 30)).astype(np.int16))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "two_d":
        _write_sitk(path, np.zeros((30, 30), np.int16), spacing=(1.0, 1.0))
    elif case == "nan":
        array = np.zeros((3, 4, 5), np.float32)
        array[1, 1, 1] = np.nan
        _write_sitk(path, array)
    with pytest.raises(InputError) as info:
        read_volume(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.nrrd"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            with open(temporary, "w") as handle:
                handle.write("partial")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["result.nrrd"]


def test_written_nrrd_is_gzip(tmp_path):
    path = tmp_path / "x.nrrd"
    write_volume(path, np.zeros((2, 3, 4), np.uint8), Geometry())
    raw = path.read_bytes()
    body = raw[raw.index(b"\n\n") + 2:]
    assert gzip.decompress(body) == bytes(24)


def _nrrd_bytes(array: np.ndarray, header_lines: list[str], encoding: str = "gzip") -> bytes:
    endian = "big" if array.dtype.byteorder == ">" else "little"
    header = ["NRRD0004", "type: int16", "dimension: 3", "sizes: " + " ".join(str(n) for n in array.shape[::-1]),
              "spacings: 1 1 1", f"endian: {endian}", f"encoding: {encoding}", *header_lines]
    payload = array.tobytes()
    if encoding == "gzip":
        payload = gzip.compress(payload)
    return ("\n".join(header) + "\n\n").encode() + payload


@pytest.mark.parametrize("dtype", ["<i2", ">i2"])
@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_nrrd_voxels_decoded_in_place_equal_simpleitk(tmp_path, dtype, encoding):
    array = np.random.default_rng(1).integers(-1024, 3000, size=(4, 5, 6)).astype(dtype)
    # A header longer than the first block read (a long custom field).
    path = tmp_path / "scan.nrrd"
    path.write_bytes(_nrrd_bytes(array, ["note:=" + "x" * 100_000], encoding))
    volume = read_volume(path)
    assert volume.array.dtype == np.int16 and volume.array.flags.writeable
    assert np.array_equal(volume.array, array.astype(np.int16))
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


@pytest.mark.parametrize("change", ["short", "long"])
def test_nrrd_with_the_wrong_amount_of_voxel_data_is_refused(tmp_path, change):
    array = np.zeros((3, 4, 5), np.int16)
    data = array.tobytes()
    data = data[:-2] if change == "short" else data + b"\0\0"
    path = tmp_path / "scan.nrrd"
    path.write_bytes(_nrrd_bytes(array, [])[: -len(gzip.compress(array.tobytes()))] + gzip.compress(data))
    with pytest.raises(InputError, match="scan.nrrd.*cannot read voxel data"):
        read_volume(path)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16])
def test_read_map_keeps_the_integer_type(tmp_path, suffix, dtype):
    from radiolab.io import read_map

    array = np.random.default_rng(1).integers(0, 6, size=(4, 5, 6)).astype(dtype)
    path = tmp_path / f"map{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    read = read_map(path)
    assert read.dtype == dtype
    assert np.array_equal(read, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


def test_read_map_refuses_missing_and_float_files(tmp_path):
    from radiolab.io import read_map

    with pytest.raises(InputError, match="does not exist"):
        read_map(tmp_path / "missing.nrrd")
    path = tmp_path / "float.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)), str(path))
    with pytest.raises(InputError, match="float.nrrd.*integer map"):
        read_map(path)


def test_read_custom_fields_equals_pynrrd(tmp_path):
    from radiolab.io import read_custom_fields

    path = tmp_path / "scan.nrrd"
    fields = {"radiolab_source": "dicom", "radiolab_kvp": "120", "radiolab_note": "a b: c = d",
              "radiolab_empty": ""}
    write_volume(path, np.zeros((3, 4, 5), np.int16), Geometry(), fields=fields)
    header = read_header(path)
    custom = read_custom_fields(path)
    assert custom == {key: header[key] for key in custom}
    assert set(fields) <= set(custom)
    assert read_custom_fields(tmp_path / "scan.nrrd")["radiolab_note"] == "a b: c = d"
