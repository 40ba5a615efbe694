"""The real test scans are present, each beside its source's licence, and unpack."""

from __future__ import annotations

import pydicom
import pytest

from conftest import DATA

SOURCES = ("cip", "lungmask", "totalseg", "dcm_qa_ct", "dcmqi")


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_keeps_its_licence(source):
    folder = DATA / source
    licences = [p for p in folder.iterdir() if p.name.lower().startswith("licen")]
    assert licences, f"{folder} has no licence file"
    assert licences[0].stat().st_size > 500


@pytest.mark.parametrize("series, count", [("cip/simple_dicom", 2), ("lungmask/lungmask", 2),
                                           ("totalseg/example_ct_dicom", 20), ("dcm_qa_ct/GE", 28),
                                           ("dcmqi/ct-3slice", 3)])
def test_dicom_series_unpack(real_data, series, count):
    files = sorted(p for p in real_data(series).iterdir() if p.is_file())
    assert len(files) == count
    assert pydicom.dcmread(files[0], stop_before_pixels=True).Rows > 0
