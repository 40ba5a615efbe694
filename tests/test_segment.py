"""End to end: `radiolab segment` on synthetic cohorts and on bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from helpers import paper_map_labels
from radiolab.cli import main
from radiolab.io import read_header, read_volume
from radiolab.synthetic import make_cohort

TINY = dict(shape=(40, 64, 64), spacing=(7.0, 5.0, 5.0))


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("ten")
    cohort = make_cohort(root / "scans", 10, max_lesion_fraction=0.45, seed=100, **TINY)
    status = main(["segment", "--in", str(root / "scans"), "--out", str(root / "labels"), "--quiet"])
    return root, cohort, status


def test_li_tracks_true_lesion_fraction(segmented):
    root, cohort, status = segmented
    assert status == 0
    rows = {row["id"]: row for row in read_csv(root / "labels" / "summary.csv")}
    assert sorted(rows) == [f"case_{i:03d}" for i in range(10)]
    truth = [fraction for _, fraction in cohort]
    li = [float(rows[f"case_{i:03d}"]["LI_pct"]) for i in range(10)]
    assert stats.pearsonr(truth, li)[0] >= 0.95
    row = rows["case_005"]
    total = sum(float(row[f"{name}_pct"]) for name in ("air", "healthy", "ggo", "consolidation", "other"))
    assert total == pytest.approx(100.0, abs=1e-3)
    assert float(row["LI_pct"]) == pytest.approx(
        float(row["ggo_pct"]) + float(row["consolidation_pct"]) + float(row["other_pct"]), abs=1e-3)
    assert read_csv(root / "labels" / "errors.csv") == []


def test_outputs_keep_geometry_and_carry_slicer_fields(segmented):
    root, _, _ = segmented
    scan = read_volume(root / "scans" / "case_003.nrrd")
    labels_dir = root / "labels"
    for suffix in ("_lung.nrrd", "_labels.nrrd", "_labels_median.nrrd"):
        output = read_volume(labels_dir / f"case_003{suffix}")
        assert output.array.shape == scan.array.shape
        assert output.geometry == scan.geometry
    labels = read_volume(labels_dir / "case_003_labels.nrrd").array
    mask = read_volume(labels_dir / "case_003_lung.nrrd").array.astype(bool)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 4, 5}
    assert np.array_equal(labels > 0, mask)
    header = read_header(labels_dir / "case_003_labels.nrrd")
    assert header["type"] in ("unsigned char", "uint8")
    names = [header[f"Segment{i}_Name"] for i in range(5)]
    assert names == ["air", "healthy lung", "ground-glass opacity", "consolidation", "other dense tissue"]
    assert header["Segment2_LabelValue"] == "3"
    assert header["radiolab_preset"] == "default"
    assert json.loads(header["radiolab_parameters"])["model"] == "fit"
    gmm = json.loads((labels_dir / "gmm.json").read_text())
    assert gmm["n_scans"] == 10 and len(gmm["means_hu"]) == 5 and gmm["settings"]["seed"] == 0


def test_pooled_fit_counts_every_lung_voxel(segmented):
    root, _, _ = segmented
    labels_dir = root / "labels"
    gmm = json.loads((labels_dir / "gmm.json").read_text())
    lung_voxels = sum(int(read_volume(labels_dir / f"case_{i:03d}_lung.nrrd").array.sum()) for i in range(10))
    assert gmm["n_voxels"] == lung_voxels


def test_median_output_equals_scipy(segmented):
    from scipy import ndimage

    root, _, _ = segmented
    labels = read_volume(root / "labels" / "case_007_labels.nrrd").array
    median = read_volume(root / "labels" / "case_007_labels_median.nrrd").array
    assert np.array_equal(median, ndimage.median_filter(labels, size=4))


def test_published_model_labels_are_its_float64_map(tmp_path):
    make_cohort(tmp_path / "scans", 1, seed=5, **TINY)
    assert main(["segment", "--in", str(tmp_path / "scans"), "--out", str(tmp_path / "out"),
                 "--model", "zaffino2021", "--quiet"]) == 0
    assert not (tmp_path / "out" / "gmm.json").exists()
    volume = read_volume(tmp_path / "scans" / "case_000.nrrd").array
    labels = read_volume(tmp_path / "out" / "case_000_labels.nrrd").array
    mask = labels > 0
    assert np.array_equal(labels[mask], paper_map_labels(np.maximum(volume[mask], -1000)))


def test_seeded_runs_are_identical(tmp_path):
    make_cohort(tmp_path / "scans", 2, seed=7, **TINY)
    for name in ("a", "b"):
        assert main(["segment", "--in", str(tmp_path / "scans"), "--out", str(tmp_path / name),
                     "--seed", "3", "--quiet"]) == 0
    for file in ("case_000_labels.nrrd", "case_001_labels_median.nrrd"):
        assert np.array_equal(read_volume(tmp_path / "a" / file).array, read_volume(tmp_path / "b" / file).array)
    assert json.loads((tmp_path / "a" / "gmm.json").read_text())["means_hu"] == \
        json.loads((tmp_path / "b" / "gmm.json").read_text())["means_hu"]


def test_bad_scans_are_reported_and_the_batch_completes(tmp_path, capsys):
    import SimpleITK as sitk

    scans = tmp_path / "scans"
    make_cohort(scans, 2, seed=9, **TINY)
    (scans / "empty.nrrd").write_bytes(b"")
    (scans / "text.nii.gz").write_text("not an image")
    good = (scans / "case_000.nrrd").read_bytes()
    (scans / "truncated.nrrd").write_bytes(good[: len(good) // 3])
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16)), str(scans / "flat.mha"))
    sitk.WriteImage(sitk.GetImageFromArray(np.full((20, 30, 30), 40, np.int16)), str(scans / "nolung.mha"))
    out = tmp_path / "labels"
    status = main(["segment", "--in", str(scans), "--out", str(out), "--jobs", "2", "--quiet"])
    assert status == 1
    errors = {row["id"]: row for row in read_csv(out / "errors.csv")}
    assert sorted(errors) == ["empty", "flat", "nolung", "text", "truncated"]
    expected = {"empty": "empty", "text": "not a readable volume", "truncated": "cannot read voxel data",
                "flat": "expected a 3-D volume", "nolung": "no lung found"}
    for scan_id, fragment in expected.items():
        assert fragment in errors[scan_id]["message"]
        assert str(scans) in errors[scan_id]["message"]
    assert {row["id"] for row in read_csv(out / "summary.csv")} == {"case_000", "case_001"}
    for scan_id in ("case_000", "case_001"):
        assert (out / f"{scan_id}_labels_median.nrrd").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_usage_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["segment", "--in", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no scans found" in capsys.readouterr().err
    assert main(["segment", "--in", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    make_cohort(tmp_path / "scans", 1, seed=1, **TINY)
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    assert main(["segment", "--in", str(tmp_path / "scans"), "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path / "model.pkl")]) == 2
    assert "refusing to unpickle" in capsys.readouterr().err
    assert not (tmp_path / "o" / "case_000_lung.nrrd").exists()


def test_cli_basics(capsys):
    from radiolab import __version__

    assert main(["--version"]) == 0 and __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0 and "segment" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "valid commands" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["segment", "--help"])
    assert info.value.code == 0 and "--preset" in capsys.readouterr().out


def test_core_import_path_loads_no_heavy_dependency():
    code = ("import sys, radiolab, radiolab.segment, radiolab.cli.segment; "
            "heavy = [m for m in ('torch', 'dask', 'distributed', 'radiomics', 'pandas', 'matplotlib', 'jinja2') "
            "if m in sys.modules]; "
            "print(heavy); sys.exit(bool(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_segment_qc_writes_images_and_flags(tmp_path):
    from PIL import Image

    make_cohort(tmp_path / "scans", 1, seed=2, **TINY)
    out = tmp_path / "labels"
    assert main(["segment", "--in", str(tmp_path / "scans"), "--out", str(out), "--qc", "--quiet"]) == 0
    image = np.asarray(Image.open(out / "case_000_qc.png").convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 10
    assert read_csv(out / "flags.csv") is not None
    assert "flags" in read_csv(out / "summary.csv")[0]
