"""radiolab's DICOM ingest against dcm2niix on the real series in tests/data.

Both outputs are read with SimpleITK (which reports NIfTI and NRRD in LPS). Where
radiolab does not resample, the voxels must be equal and the geometry equal within
0.01 mm and 1e-4. Where both resample (dcm_qa_ct/GE: gantry tilt 18.5 degrees and
variable spacing), the grids differ by design: radiolab's volume is resampled onto
dcm2niix's ``_Tilt_Eq_`` grid (linear) and the mean absolute difference in soft tissue
(-100 to 100 HU in dcm2niix's volume, 2 voxels away from its edges) must be <= 5 HU.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

from radiolab.dicom import ingest
from radiolab.io import read_header

sitk = pytest.importorskip("SimpleITK")


def dcm2niix_binary() -> str:
    try:
        import dcm2niix
    except ImportError:
        dcm2niix = None
    candidates = [getattr(dcm2niix, "bin", None) if dcm2niix else None, shutil.which("dcm2niix")]
    for candidate in candidates:
        if candidate and os.path.isfile(str(candidate)):
            return str(candidate)
    pytest.skip("dcm2niix is not installed (pip install dcm2niix, in the test extra)")


def convert_both(folder, tmp_path):
    """(radiolab's NRRD, dcm2niix's NIfTI files) for one series folder."""
    report = ingest(folder, tmp_path / "radiolab")
    assert report.failed == [] and report.skipped == [] and len(report.written) == 1
    out = tmp_path / "dcm2niix"
    out.mkdir()
    subprocess.run([dcm2niix_binary(), "-z", "n", "-b", "n", "-f", "volume", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    return report.written[0], sorted(glob.glob(str(out / "*.nii")))


@pytest.mark.parametrize("series", ["totalseg/example_ct_dicom", "lungmask/lungmask", "cip/simple_dicom",
                                    "dcmqi/ct-3slice"])
def test_unresampled_series_equal_dcm2niix(real_data, tmp_path, series):
    ours, theirs = convert_both(real_data(series), tmp_path)
    (reference,) = theirs
    assert read_header(ours)["radiolab_resampled"] == "no"
    # dcm2niix stores rows bottom-up; orient both the same way before comparing arrays.
    a = sitk.DICOMOrient(sitk.ReadImage(ours), "LPS")
    b = sitk.DICOMOrient(sitk.ReadImage(reference), "LPS")
    assert a.GetSize() == b.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a).astype(np.float64),
                                  sitk.GetArrayFromImage(b).astype(np.float64))
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=0.01)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=0.01)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)


def test_tilted_uneven_ge_series_matches_dcm2niix_tilt_corrected_volume(real_data, tmp_path):
    from scipy import ndimage

    ours, theirs = convert_both(real_data("dcm_qa_ct/GE"), tmp_path)
    header = read_header(ours)
    assert float(header["radiolab_tilt_deg"]) == pytest.approx(18.5, abs=0.05)
    assert header["radiolab_resampled"] == "yes"
    (reference,) = [path for path in theirs if "_Tilt_Eq_" in os.path.basename(path)]
    mine, ref = sitk.ReadImage(ours), sitk.ReadImage(reference)
    outside = -99999.0
    on_their_grid = sitk.Resample(sitk.Cast(mine, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, outside)
    a = sitk.GetArrayFromImage(on_their_grid).astype(np.float64)
    b = sitk.GetArrayFromImage(ref).astype(np.float64)
    soft = ndimage.binary_erosion((b >= -100) & (b <= 100), iterations=2) & (a > outside)
    assert soft.sum() > 1_000_000  # most of the head's brain and soft tissue
    difference = float(np.abs(a[soft] - b[soft]).mean())
    print(f"dcm_qa_ct/GE: mean |radiolab - dcm2niix| = {difference:.2f} HU over {soft.sum()} soft-tissue voxels")
    assert difference <= 5.0
    # Both equalise to twice the slice count over the same extent.
    assert mine.GetSize()[2] == ref.GetSize()[2]
    assert mine.GetSpacing()[2] == pytest.approx(ref.GetSpacing()[2], abs=0.01)


REAL_SERIES = ["totalseg/example_ct_dicom", "lungmask/lungmask", "dcm_qa_ct/GE", "cip/simple_dicom", "dcmqi/ct-3slice"]


def test_segment_reads_every_real_series_folder(real_data, tmp_path):
    """Each folder is read by `radiolab segment` directly; scans without lungs end per scan."""
    import csv

    from radiolab.cli import main

    folders = [str(real_data(name)) for name in REAL_SERIES]
    out = tmp_path / "out"
    main(["segment", "--in", *folders, "--out", str(out), "--model", "zaffino2021", "--quiet"])
    with open(out / "errors.csv", newline="") as handle:
        errors = list(csv.DictReader(handle))
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(errors) + len(rows) == len(REAL_SERIES)  # one outcome per folder, none lost
    for error in errors:
        # Reading succeeded: any failure is the lung mask's, never the DICOM reader's.
        assert error["stage"] == "lung_mask" and "no lung found" in error["message"], error
    failed = {os.path.basename(e["message"].split(":")[0]) for e in errors}
    # The head, the abdomen and the 2-slice abdomen hold no lung.
    assert {"GE", "example_ct_dicom", "simple_dicom"} <= failed
