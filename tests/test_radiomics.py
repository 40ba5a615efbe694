"""Tests of radiolab.radiomics and `radiolab features` on small seeded phantoms."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RADIOMICS_EXTRA = "the radiomics extra is not installed: make install, or see the README for pip"
pytest.importorskip("radiomics", reason=f"pyradiomics is missing; {RADIOMICS_EXTRA}")
pd = pytest.importorskip("pandas", reason=f"pandas (feature tables) is missing; {RADIOMICS_EXTRA}")

import SimpleITK as sitk  # noqa: E402

from radiolab.cli import main as radiolab_main  # noqa: E402
from radiolab.errors import InputError, OptionalDependencyError  # noqa: E402
from radiolab import radiomics as rad  # noqa: E402
from radiolab.radiomics.engine import quiet_validation  # noqa: E402
from radiolab.io import Geometry, read_volume, write_volume  # noqa: E402
from radiolab.segment import ScanInput  # noqa: E402
from radiolab.synthetic import chest_phantom  # noqa: E402

SHAPE = (40, 64, 64)
SPACING = (6.0, 5.0, 5.0)
# Few classes keep the tests fast; the shipped defaults are tested separately.
PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "glcm": ["JointEnergy", "Contrast", "Idm"], "glszm": None},
    "setting": {"binWidth": 25, "minimumROISize": 27, "additionalInfo": False},
    "voxelSetting": {"kernelRadius": 1, "initValue": float("nan")},
}
SAMPLE = ["original_firstorder_Mean", "original_firstorder_90Percentile", "original_firstorder_Entropy",
          "original_glcm_Contrast", "original_glcm_JointEnergy", "original_glszm_ZonePercentage",
          "original_glszm_LargeAreaEmphasis"]


def tissue_labels(volume: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """Labels 1..5 by HU bands inside the lung, like the mixture's MAP labels."""
    edges = np.array([-900, -720, -450, -120])
    labels = (np.digitize(volume, edges) + 1).astype(np.uint8)
    labels[~lung] = 0
    return labels


@pytest.fixture(scope="module")
def case():
    phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.3, seed=1)
    geometry = Geometry(spacing=SPACING, origin=(-160.0, -150.0, -120.0),
                        direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    return phantom.volume, tissue_labels(phantom.volume, phantom.truth["lung"]), geometry


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two scans with label maps in the layout of `radiolab segment`."""
    root = tmp_path_factory.mktemp("features")
    scans, labels = root / "scans", root / "labels"
    for index, seed in enumerate((2, 3)):
        phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.1 + 0.2 * index, seed=seed)
        write_volume(scans / f"case_{index:03d}.nrrd", phantom.volume, phantom.geometry)
        voxel = tissue_labels(phantom.volume, phantom.truth["lung"])
        write_volume(labels / f"case_{index:03d}_labels.nrrd", voxel, phantom.geometry)
        median = voxel.copy()
        median[median == 5] = 4
        write_volume(labels / f"case_{index:03d}_labels_median.nrrd", median, phantom.geometry)
        write_volume(labels / f"case_{index:03d}_lung.nrrd", phantom.truth["lung"].astype(np.uint8),
                     phantom.geometry)
    params = root / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump({**PARAMS, "voxelSetting": {"kernelRadius": 1}}))
    return root, scans, labels, params


@pytest.fixture(scope="module")
def csv_run(cohort):
    root, scans, labels, params = cohort
    out = root / "csv" / "features.csv"
    status = radiolab_main(["features", "--in", str(scans), "--labels", str(labels), "--out", str(out),
                            "--params", str(params), "--quiet"])
    return status, out


def direct_pyradiomics(volume, mask, geometry, params):
    """pyradiomics on the whole scan, without radiolab in between."""
    from radiomics import featureextractor

    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(geometry.spacing[::-1])
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    roi = sitk.GetImageFromArray(mask.astype(np.uint8))
    roi.CopyInformation(image)
    with quiet_validation():
        extractor = featureextractor.RadiomicsFeatureExtractor(dict(params))
    return extractor.execute(image, roi, label=1)


# -- regions ----------------------------------------------------------------------------

def test_region_masks_names_and_definitions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(5, 6, 7)).astype(np.uint8)
    masks = rad.region_masks(labels)
    assert list(masks) == ["air", "healthy", "ggo", "consolidation", "other", "lung", "involved"]
    for value, name in enumerate(["air", "healthy", "ggo", "consolidation", "other"], start=1):
        assert np.array_equal(masks[name], labels == value)
    assert np.array_equal(masks["lung"], labels > 0)
    assert np.array_equal(masks["involved"], (labels == 3) | (labels == 4) | (labels == 5))
    assert list(rad.region_masks(labels, ["involved", "air"])) == ["air", "involved"]
    with pytest.raises(ValueError, match="valid regions: air, healthy, ggo"):
        rad.region_masks(labels, ["lungs"])
    with pytest.raises(ValueError, match="0..5"):
        rad.region_masks(labels + 3)


def test_import_radiolab_does_not_load_pyradiomics():
    code = ("import sys, radiolab, radiolab.radiomics, radiolab.cli.features; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('radiomics', 'pykwalify', 'pandas')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.strip() == "[]"


def test_missing_pyradiomics_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "radiomics", None)
    with pytest.raises(OptionalDependencyError, match="no-build-isolation pyradiomics==3.0.1"):
        rad.load_params()


# -- equality with pyradiomics ------------------------------------------------------------

@pytest.mark.parametrize("resampled", [None, [4.0, 4.0, 4.0]], ids=["native", "resampled-4mm"])
def test_features_equal_direct_pyradiomics_call(case, resampled):
    volume, labels, geometry = case
    params = {**PARAMS, "setting": {**PARAMS["setting"]}}
    if resampled:
        params["setting"]["resampledPixelSpacing"] = resampled
    rows = rad.extract_features(volume, labels, geometry, params=params, regions=["ggo", "lung"])
    assert [row["region"] for row in rows] == ["ggo", "lung"]
    for row in rows:
        assert row["skip_reason"] == ""
        mask = rad.region_masks(labels, [row["region"]])[row["region"]]
        direct = direct_pyradiomics(volume, mask, geometry, params)
        for name in SAMPLE:
            assert row[name] == pytest.approx(float(direct[name]), rel=1e-12, abs=1e-12), name
        features = {k: v for k, v in row.items() if k.startswith("original_")}
        assert set(features) == {k for k in direct if not k.startswith("diagnostics_")}
        assert row["voxels"] == int(mask.sum())
        assert row["volume_ml"] == pytest.approx(mask.sum() * np.prod(SPACING) / 1000)


def test_crop_keeps_physical_positions(case):
    volume, labels, geometry = case
    mask = labels == 3
    box = rad.crop_box(mask, geometry.spacing, {"padDistance": 5}, margin_mm=10)
    assert all(s.start <= i.min() and s.stop > i.max() for s, i in zip(box, np.nonzero(mask)))
    full = rad.sitk_image(volume, geometry)
    crop = rad.sitk_image(volume[box], geometry, [s.start for s in box])
    corner = [box[2].start, box[1].start, box[0].start]
    assert crop.GetOrigin() == pytest.approx(full.TransformIndexToPhysicalPoint(corner))
    assert crop.GetDirection() == full.GetDirection()
    assert rad.geometry_of(full) == geometry


# -- skips ----------------------------------------------------------------------------------

def test_small_regions_are_skipped_with_reason(case):
    volume, labels, geometry = case
    labels = labels.copy()
    labels[labels == 4] = 3
    labels[labels == 5] = 3
    ggo = np.argwhere(labels == 3)
    labels[labels == 3] = 2
    for z, y, x in ggo[:60]:  # 60 GGO voxels: enough for first-order, too few for texture
        labels[z, y, x] = 3
    z, y, x = ggo[-1]
    labels[z:z + 2, y:y + 2, x:x + 2] = 5  # 8 "other" voxels: below pyradiomics' minimumROISize
    rows = {row["region"]: row for row in rad.extract_features(volume, labels, geometry, params=PARAMS)}
    assert rows["consolidation"]["voxels"] == 0
    assert rows["consolidation"]["skip_reason"] == "no voxels"
    assert not any(k.startswith("original_") for k in rows["consolidation"])
    ggo_row = rows["ggo"]
    assert ggo_row["voxels"] == 60
    assert "glcm, glszm: 60 voxels < min_texture_voxels=125" in ggo_row["skip_reason"]
    assert np.isfinite(ggo_row["original_firstorder_Mean"])
    assert not any(k.startswith(("original_glcm", "original_glszm")) for k in ggo_row)
    assert "region rejected by pyradiomics" in rows["other"]["skip_reason"]
    assert "minimum size: 27" in rows["other"]["skip_reason"]
    assert rows["lung"]["skip_reason"] == ""
    assert all(np.isfinite(v) for k, v in rows["lung"].items() if k.startswith("original_"))


# -- parameters ----------------------------------------------------------------------------

def test_default_params_file_is_valid_pyradiomics():
    params = rad.load_params()
    assert params["setting"]["binWidth"] == 25
    assert "shape" not in params["featureClass"]
    assert set(params["featureClass"]) == {"firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}
    assert rad.params_sha256(params) == rad.params_sha256(rad.load_params(rad.DEFAULT_PARAMS))
    changed = {**params, "setting": {**params["setting"], "binWidth": 50}}
    assert rad.params_sha256(changed) != rad.params_sha256(params)


@pytest.mark.parametrize("text, problem", [
    ("setting:\n  binWidth: 25\n  binwidht: 10\n", "Key 'binwidht' was not defined"),
    ("setting:\n  binWidth: -5\n", "/setting/binWidth"),
    ("featureClass:\n  glcmm:\n", "Feature Class glcmm is not recognized"),
    ("imageType:\n  Wavelett: {}\n", "Image Type Wavelett is not recognized"),
    ("setting:\n  resampledPixelSpacing: [1, 1]\n", "three values"),
    ("setting: [binWidth\n", "not a YAML"),
])
def test_bad_params_file_is_a_clear_error(tmp_path, text, problem):
    path = tmp_path / "my-params.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        rad.load_params(path)
    assert raised.value.path == str(path)
    assert problem in str(raised.value)


def test_cli_bad_params_exits_2_naming_the_file(cohort, tmp_path, capsys):
    root, scans, labels, _ = cohort
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: 25\n  foo: 1\n")
    out = tmp_path / "features.csv"
    status = radiolab_main(["features", "--in", str(scans), "--labels", str(labels), "--out", str(out),
                            "--params", str(bad), "--quiet"])
    assert status == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Key 'foo' was not defined" in err
    assert not out.exists()


# -- the CLI table --------------------------------------------------------------------------

def test_cli_columns_and_rows_exactly_as_specified(cohort, csv_run):
    root, scans, labels, params = cohort
    status, out = csv_run
    assert status == 0
    with open(out, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        table = list(reader)
    assert header[:5] == ["id", "region", "label", "voxels", "volume_ml"]
    assert header[-3:] == ["pyradiomics_version", "params_sha256", "skip_reason"]
    features = header[5:-3]
    assert features and all(name.startswith("original_") for name in features)
    assert not any(name.startswith("diagnostics_") for name in header)
    assert features == [k for k in direct_names(params)]
    regions = ["air", "healthy", "ggo", "consolidation", "other", "lung", "involved"]
    assert [(r[0], r[1]) for r in table] == [(i, g) for i in ("case_000", "case_001") for g in regions]
    assert [r[2] for r in table[:7]] == ["1", "2", "3", "4", "5", "", ""]
    version = rad.pyradiomics_version()
    digest = rad.params_sha256(rad.load_params(params))
    assert {(r[-3], r[-2]) for r in table} == {(version, digest)}
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    for scan_id in ("case_000", "case_001"):
        labels_array = read_volume(labels / f"{scan_id}_labels.nrrd").array
        rows = frame[frame["id"] == scan_id].set_index("region")
        for region, mask in rad.region_masks(labels_array).items():
            assert rows.loc[region, "voxels"] == int(mask.sum())
            assert rows.loc[region, "volume_ml"] == pytest.approx(mask.sum() * np.prod(SPACING) / 1000)
    skipped = frame[frame["skip_reason"].notna()]
    assert frame.loc[frame["skip_reason"].isna(), features].notna().all().all()
    for _, row in skipped.iterrows():  # every empty feature is explained
        assert row["skip_reason"]
    provenance = json.loads((out.parent / "features_provenance.json").read_text())
    assert provenance["params_sha256"] == digest and provenance["label_map"] == "voxel"
    assert (out.parent / "errors.csv").read_text() == "id,stage,message\n"


def direct_names(params_path):
    """Feature names in pyradiomics' order, from a direct call on a small cube."""
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(-600, 150, (12, 12, 12)).astype(np.int16))
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[2:10, 2:10, 2:10] = 1
    params = rad.load_params(params_path)
    direct = direct_pyradiomics(sitk.GetArrayFromImage(image), mask.astype(bool), Geometry(), params)
    return [k for k in direct if not k.startswith("diagnostics_")]


def test_cli_median_map_and_regions(cohort, tmp_path):
    root, scans, labels, params = cohort
    out = tmp_path / "median.csv"
    status = radiolab_main(["features", "--in", str(scans / "case_001.nrrd"), "--labels", str(labels),
                            "--out", str(out), "--params", str(params), "--map", "median",
                            "--regions", "involved", "other", "--quiet"])
    assert status == 0
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(frame["region"]) == ["other", "involved"]
    median = read_volume(labels / "case_001_labels_median.nrrd").array
    assert list(frame["voxels"]) == [0, int((median >= 3).sum())]
    assert frame.loc[0, "skip_reason"] == "no voxels"


def test_median_map_features_count_only_lung_voxels(tmp_path):
    """The cube example: a labelled block spanning x 4..7 (z, y 2..9), whose 4-voxel
    median (scipy's alignment) spans x 4..8 (z, y 2..10); features of the median map
    count only its voxels inside the lung mask."""
    from scipy import ndimage

    from radiolab.smoothing import median_labels

    geometry = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    lung = np.zeros((12, 12, 12), dtype=bool)
    lung[2:10, 2:10, 4:8] = True
    rng = np.random.default_rng(0)
    volume = np.full(lung.shape, 40, dtype=np.int16)  # soft tissue around the lung
    volume[lung] = rng.integers(-900, -700, int(lung.sum()))
    labels = np.where(lung, 2, 0).astype(np.uint8)
    median = median_labels(labels)
    reference = ndimage.median_filter(labels, size=4)
    assert np.array_equal(median, reference)  # the paper's map, bit for bit
    assert [(int(axis.min()), int(axis.max())) for axis in np.nonzero(median)] == [(2, 10), (2, 10), (4, 8)]
    inside = (reference > 0) & lung
    assert int((reference > 0).sum()) == 209 and int(inside.sum()) == 174  # 35 voxels spill outside

    scans, folder = tmp_path / "scans", tmp_path / "labels"
    write_volume(scans / "cube.nrrd", volume, geometry)
    write_volume(folder / "cube_labels.nrrd", labels, geometry)
    write_volume(folder / "cube_labels_median.nrrd", median, geometry)
    write_volume(folder / "cube_lung.nrrd", lung.astype(np.uint8), geometry)
    params = {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Maximum"]},
              "setting": {"binWidth": 25, "minimumROISize": 27, "additionalInfo": False}}
    report = rad.extract_cohort([ScanInput("cube", str(scans / "cube.nrrd"))], folder, tmp_path / "f.csv",
                                params=params, regions=["healthy", "lung"], map="median")
    assert not report.errors
    for row in report.rows:
        assert row["voxels"] == 174 and row["volume_ml"] == pytest.approx(0.174)
        assert float(row["original_firstorder_Mean"]) == pytest.approx(volume[inside].mean(), rel=1e-9)
        assert float(row["original_firstorder_Maximum"]) == volume[inside].max()

    (folder / "cube_lung.nrrd").unlink()
    missing = rad.extract_cohort([ScanInput("cube", str(scans / "cube.nrrd"))], folder, tmp_path / "g.csv",
                                 params=params, regions=["lung"], map="median")
    assert [e.id for e in missing.errors] == ["cube"] and "cube_lung.nrrd: no lung mask" in missing.errors[0].message


def test_failures_go_to_errors_csv_and_others_complete(cohort, tmp_path, monkeypatch, capsys):
    root, scans, labels, params = cohort
    bad_scans = tmp_path / "scans"
    bad_scans.mkdir()
    for name in ("case_000.nrrd", "case_001.nrrd"):
        (bad_scans / name).symlink_to(scans / name)
    (bad_scans / "case_002.nrrd").write_bytes(b"not a volume")
    orphan = chest_phantom((24, 40, 40), (8.0, 8.0, 8.0), seed=5)
    write_volume(bad_scans / "case_003.nrrd", orphan.volume, orphan.geometry)  # no label map
    write_volume(bad_scans / "case_004.nrrd", orphan.volume, orphan.geometry)  # label map of another size
    bad_labels = tmp_path / "labels"
    bad_labels.mkdir()
    for name in ("case_000_labels.nrrd", "case_001_labels.nrrd"):
        (bad_labels / name).symlink_to(labels / name)
    (bad_labels / "case_004_labels.nrrd").symlink_to(labels / "case_000_labels.nrrd")

    real = rad.extract_features

    def failing_ggo(*args, **kwargs):
        if list(kwargs.get("regions", [])) == ["ggo"]:
            raise RuntimeError("simulated pyradiomics crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(rad.cohort, "extract_features", failing_ggo)
    out = tmp_path / "out" / "features.csv"
    status = radiolab_main(["features", "--in", str(bad_scans), "--labels", str(bad_labels), "--out", str(out),
                            "--params", str(params), "--regions", "ggo", "lung", "--quiet"])
    assert status == 1
    with open(out.parent / "errors.csv", newline="") as handle:
        errors = list(csv.DictReader(handle))
    assert [(e["id"], e["stage"]) for e in errors] == [
        ("case_000", "features"), ("case_001", "features"), ("case_002", "read"), ("case_003", "labels"),
        ("case_004", "labels")]
    assert "region ggo: simulated pyradiomics crash" in errors[0]["message"]
    assert "case_002.nrrd" in errors[2]["message"]
    assert "case_003_labels.nrrd" in errors[3]["message"] and "radiolab segment" in errors[3]["message"]
    assert "case_004_labels.nrrd" in errors[4]["message"] and "differs from the scan's (24, 40, 40)" in errors[4][
        "message"]
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(zip(frame["id"], frame["region"])) == [("case_000", "lung"), ("case_001", "lung")]
    assert frame["original_glcm_Contrast"].notna().all()
    assert "simulated pyradiomics crash" in capsys.readouterr().err


def test_a_bug_reading_one_scan_is_a_logged_crash_and_the_others_complete(cohort, tmp_path, monkeypatch, caplog):
    root, scans, labels, params = cohort
    real = rad.cohort._read_labels

    def buggy(scan, volume, job):
        if scan.id == "case_001":
            np.zeros(2) + np.zeros(3)  # a shape bug: ValueError from numpy
        return real(scan, volume, job)

    monkeypatch.setattr(rad.cohort, "_read_labels", buggy)
    inputs = [ScanInput(f"case_00{i}", str(scans / f"case_00{i}.nrrd")) for i in (0, 1)]
    with caplog.at_level("ERROR", logger="radiolab"):
        report = rad.extract_cohort(inputs, labels, tmp_path / "f.csv", params=params, regions=["lung"])
    assert [(e.id, e.stage) for e in report.errors] == [("case_001", "internal")]
    assert "labels crashed: ValueError: operands could not be broadcast" in report.errors[0].message
    assert [row["id"] for row in report.rows] == ["case_000"]
    assert any(record.exc_info and "in buggy" in caplog.text for record in caplog.records)


def test_parquet_round_trips_and_parallel_jobs_agree(cohort, csv_run, tmp_path):
    root, scans, labels, params = cohort
    out = tmp_path / "features.parquet"
    status = radiolab_main(["features", "--in", str(scans), "--labels", str(labels), "--out", str(out),
                            "--params", str(params), "--format", "parquet", "--jobs", "2", "--quiet"])
    assert status == 0
    table = pd.read_parquet(out)
    from_csv = pd.read_csv(csv_run[1], keep_default_na=False, na_values=[""])
    assert list(table.columns) == list(from_csv.columns)
    assert str(table["label"].dtype) == "Int64" and table["voxels"].dtype == np.int64
    assert table["label"].isna().tolist() == from_csv["label"].isna().tolist()
    features = [c for c in table.columns if c.startswith("original_")]
    np.testing.assert_array_equal(table[features].to_numpy(), from_csv[features].to_numpy())
    assert table["skip_reason"].tolist() == from_csv["skip_reason"].fillna("").tolist()
    rows = rad.extract_cohort([ScanInput("case_000", str(scans / "case_000.nrrd"))], labels,
                              tmp_path / "again.parquet", params=params, format="parquet")
    again = pd.read_parquet(tmp_path / "again.parquet")
    frame = rad.write_table(rows.rows, tmp_path / "copy.parquet", format="parquet", columns=rows.columns)
    pd.testing.assert_frame_equal(again, frame)
    pd.testing.assert_frame_equal(again, table[table["id"] == "case_000"].reset_index(drop=True))


# -- voxel maps -------------------------------------------------------------------------------

def test_voxel_maps_small_regions_only(cohort, tmp_path):
    root, scans, labels, params = cohort
    labels_dir = tmp_path / "labels"
    source = read_volume(labels / "case_000_labels.nrrd")
    tissue = source.array.astype(np.uint8)
    tissue[tissue == 3] = 2
    z, y, x = np.argwhere(tissue == 2)[len(np.argwhere(tissue == 2)) // 2]
    tissue[z - 1:z + 2, y - 3:y + 3, x - 3:x + 3] = 3  # a compact GGO lesion of 3 x 6 x 6 voxels
    write_volume(labels_dir / "case_000_labels.nrrd", tissue, source.geometry)
    small = tmp_path / "small.yaml"
    small.write_text("featureClass:\n  firstorder: [Mean, Median]\nsetting:\n  binWidth: 25\n"
                     "voxelSetting:\n  kernelRadius: 1\n  initValue: .nan\n")
    out = tmp_path / "maps.csv"
    status = radiolab_main(["features", "--in", str(scans / "case_000.nrrd"), "--labels", str(labels_dir),
                            "--out", str(out), "--params", str(small), "--regions", "ggo", "lung",
                            "--voxel-maps", "--max-map-voxels", "3000", "--quiet"])
    assert status == 0
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""]).set_index("region")
    assert int(frame.loc["ggo", "voxels"]) == 108
    assert pd.isna(frame.loc["ggo", "skip_reason"])
    assert "voxel maps not written: the region's bounding box holds" in frame.loc["lung", "skip_reason"]
    assert "max_map_voxels=3000" in frame.loc["lung", "skip_reason"]
    maps_dir = tmp_path / "maps_voxel_maps"
    names = sorted(p.name for p in maps_dir.iterdir())
    assert names == ["case_000_ggo_original_firstorder_Mean.nrrd", "case_000_ggo_original_firstorder_Median.nrrd"]
    mean = read_volume_float(maps_dir / names[0])
    assert np.isfinite(mean).sum() == 108
    # A 3x3x3 kernel mean of the region's own voxels lies within the region's HU range.
    ggo_hu = read_volume(scans / "case_000.nrrd").array[tissue == 3]
    finite = mean[np.isfinite(mean)]
    assert ggo_hu.min() <= finite.min() and finite.max() <= ggo_hu.max()
    image = sitk.ReadImage(str(maps_dir / names[0]))
    assert rad.geometry_of(image).spacing == pytest.approx(source.geometry.spacing)
    corner = np.argwhere(np.isfinite(mean)).min(axis=0)  # first lesion voxel, in the map's (z, y, x)
    position = image.TransformIndexToPhysicalPoint([int(i) for i in corner[::-1]])
    assert position == pytest.approx(rad.sitk_image(tissue, source.geometry).TransformIndexToPhysicalPoint(
        [int(x - 3), int(y - 3), int(z - 1)]))


def read_volume_float(path):
    import nrrd

    data, _ = nrrd.read(str(path), index_order="C")
    return data


def test_voxel_feature_maps_refuses_large_regions(case):
    volume, labels, geometry = case
    with pytest.raises(rad.MapRefused, match="more than max_map_voxels=100; every map covers"):
        rad.voxel_feature_maps(volume, labels > 0, geometry, params=PARAMS, max_voxels=100)
