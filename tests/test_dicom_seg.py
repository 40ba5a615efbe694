"""DICOM SEG output (`radiolab segment --dicom-seg`), read back with highdicom and pydicom."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

from bad_inputs.corpus import phantom_ct_series
from radiolab.cli import main
from radiolab.dicom import find_series, read_series
from radiolab.dicom.seg import seg_refusal, sorted_sources, write_dicom_seg
from radiolab.errors import InputError
from radiolab.io import read_header, read_volume
from radiolab.synthetic import chest_phantom

hd = pytest.importorskip("highdicom")

SPACING = (7.0, 5.0, 5.0)


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg") / "dicom"
    phantom = chest_phantom((40, 64, 64), SPACING, lesion_fraction=0.2, seed=5)
    phantom_ct_series(folder, phantom.volume, SPACING)
    return folder


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_segment_writes_a_seg_equal_to_the_label_maps(phantom_series, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["segment", "--in", str(phantom_series), "--out", str(out), "--model", "zaffino2021",
                   "--dicom-seg", "--quiet"])
    assert status == 0, capsys.readouterr().err
    (row,) = _rows(out / "summary.csv")
    scan = row["id"]
    assert row["dicom_seg"] == f"{scan}_labels.seg.dcm"
    seg_path = out / f"{scan}_labels.seg.dcm"
    labels = read_volume(out / f"{scan}_labels.nrrd").array
    lung = read_volume(out / f"{scan}_lung.nrrd").array.astype(bool)
    assert lung.sum() > 1000 and len(np.unique(labels[lung])) >= 3  # the comparison is not trivial

    seg = hd.seg.segread(seg_path)
    (info,), _ = find_series(phantom_series)
    sources = sorted_sources(info)
    # Acquisition facts reach summary.csv and the label map's header, as pydicom reads them.
    first = sources[0]
    expected = {"manufacturer": str(first.Manufacturer), "kvp": str(first.KVP),
                "kernel": str(first.get("ConvolutionKernel", "")), "slice_thickness_mm": str(first.SliceThickness)}
    assert {key: row[key] for key in expected} == expected
    assert row["tilt_deg"] == "0.00" and expected["manufacturer"]
    header = read_header(out / f"{scan}_labels.nrrd")
    assert header["radiolab_kvp"] == expected["kvp"] and header["radiolab_resampled"] == "no"
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources],
        segment_numbers=list(range(1, 7)), combine_segments=False)
    assert pixels.shape == (*labels.shape, 6)
    for number in range(1, 6):
        np.testing.assert_array_equal(pixels[..., number - 1].astype(bool), labels == number)
    np.testing.assert_array_equal(pixels[..., 5].astype(bool), lung)

    # pydicom reads it too: segments with codes, names, colours; the source referenced.
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [
        "air", "healthy lung", "ground-glass opacity", "consolidation", "other dense tissue", "lung"]
    assert ds.SegmentSequence[5].SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    assert ds.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "112120"
    assert all(len(s.RecommendedDisplayCIELabValue) == 3 for s in ds.SegmentSequence)
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    referenced = {item.ReferencedSOPInstanceUID for series in ds.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}


def test_seg_is_refused_for_resampled_series_and_missing_uids(phantom_series, tmp_path):
    (info,), _ = find_series(phantom_series)
    volume = read_series(info)
    assert seg_refusal(info, resampled=False) is None
    assert "resampled onto a regular grid" in seg_refusal(info, resampled=True)
    assert seg_refusal(None, resampled=False) == "the input is not a DICOM series read directly"
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    for k, path in enumerate(sorted(info.files)[:3]):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(stripped / f"{k}.dcm")
    (bare,), _ = find_series(stripped)
    assert seg_refusal(bare, resampled=False) == (
        "the source lacks UIDs a SEG must reference: FrameOfReferenceUID (3 of 3 files)")
    with pytest.raises(InputError, match="no DICOM SEG: the source lacks UIDs"):
        write_dicom_seg(tmp_path / "x.seg.dcm", bare, np.zeros((3, 64, 64), np.uint8), np.zeros((3, 64, 64), bool))
    assert not (tmp_path / "x.seg.dcm").exists()
    with pytest.raises(InputError, match="do not match the source's"):
        write_dicom_seg(tmp_path / "y.seg.dcm", info, volume.array[:2] * 0, volume.array[:2] > 0)


def test_segment_notes_a_refused_seg_per_scan(tmp_path, capsys):
    # A volume file is not a DICOM series: the scan is segmented, its SEG column says why none.
    from radiolab.synthetic import make_cohort

    make_cohort(tmp_path / "vol", 1, shape=(40, 64, 64), spacing=SPACING, seed=2)
    out = tmp_path / "out"
    assert main(["segment", "--in", str(tmp_path / "vol"), "--out", str(out), "--model", "zaffino2021",
                 "--dicom-seg", "--quiet"]) == 0
    (row,) = _rows(out / "summary.csv")
    assert row["dicom_seg"] == "not written: the input is not a DICOM series read directly"
    assert not list(out.glob("*.seg.dcm"))


def test_missing_highdicom_is_a_clear_error(phantom_series, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "highdicom", None)  # makes `import highdicom` fail
    status = main(["segment", "--in", str(phantom_series), "--out", str(tmp_path / "out"), "--model",
                   "zaffino2021", "--dicom-seg", "--quiet"])
    assert status == 2
    assert "--dicom-seg) needs highdicom: pip install highdicom" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
