"""`radiolab segment --lung-masks`: external masks drive the run; phenotypes.csv and
the zonal columns of summary.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from radiolab.cli import segment as segment_cli
from radiolab.io import read_header, read_volume, write_volume
from radiolab.phenotypes import COLUMNS, REGIONS
from radiolab.synthetic import chest_phantom
from radiolab.sides import SIDE_NAMES
from radiolab.zones import THIRD_NAMES, ZONE_NAMES

SHAPE, SPACING = (36, 56, 56), (7.0, 5.0, 5.0)


def _write_nifti_flipped(path, array, geometry):
    """Store a mask as NIfTI with its y axis reversed (LAS), as dcm2niix/TotalSegmentator do."""
    flipped = np.ascontiguousarray(array[:, ::-1, :])
    image = sitk.GetImageFromArray(flipped)
    image.SetSpacing(tuple(reversed(geometry.spacing)))
    origin = np.asarray(geometry.origin) + np.array([0.0, (array.shape[1] - 1) * geometry.spacing[1], 0.0])
    image.SetOrigin(tuple(origin))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three phantoms with their true lungs as lungmask R231 masks; one stored flipped."""
    scans = tmp_path_factory.mktemp("scans")
    masks = tmp_path_factory.mktemp("masks")
    truths = {}
    for index, fraction in enumerate((0.0, 0.15, 0.3)):
        phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=fraction, seed=20 + index)
        scan_id = f"case_{index}"
        write_volume(scans / f"{scan_id}.nrrd", phantom.volume, phantom.geometry)
        lung = phantom.truth["lung"]
        r231 = np.where(lung, np.where(np.arange(SHAPE[2]) < SHAPE[2] // 2, 1, 2)[None, None, :], 0).astype(np.uint8)
        truths[scan_id] = r231
        if index == 1:
            _write_nifti_flipped(masks / f"{scan_id}.nii.gz", r231, phantom.geometry)
        else:
            write_volume(masks / f"{scan_id}.nrrd", r231, phantom.geometry)
    return scans, masks, truths


def _run(cohort, out, *extra):
    scans, masks, _ = cohort
    return segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(masks),
                             "--mask-format", "lungmask", "--model", "zaffino2021", "--quiet", *extra])


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_external_masks_drive_the_run(cohort, tmp_path):
    out = tmp_path / "labels"
    assert _run(cohort, out) == 0
    _, masks, truths = cohort
    for scan_id, r231 in truths.items():
        np.testing.assert_array_equal(read_volume(out / f"{scan_id}_lung.nrrd").array > 0, r231 > 0)
        labels = read_volume(out / f"{scan_id}_labels.nrrd").array
        assert not labels[r231 == 0].any() and labels[r231 > 0].all()
        header = read_header(out / f"{scan_id}_labels.nrrd")
        assert header["radiolab_input_hash"]
        lung_header = read_header(out / f"{scan_id}_lung.nrrd")
        assert lung_header["radiolab_lung_mask_format"] == "lungmask"
        assert len(lung_header["radiolab_lung_mask_hash"]) == 64
        assert json.loads(lung_header["radiolab_lung_mask_files"])[0].startswith(str(masks))
    summary = {row["id"]: row for row in _read(out / "summary.csv")}
    header = list(next(iter(summary.values())))
    li = header.index("LI_pct")
    assert header[li + 1: li + 8] == [f"zone_score_{zone}" for zone in ZONE_NAMES] + ["zonal_severity"]
    phenotypes = _read(out / "phenotypes.csv")
    assert list(phenotypes[0]) == list(COLUMNS)
    for scan_id, r231 in truths.items():
        rows = {r["region"]: r for r in phenotypes if r["id"] == scan_id}
        assert list(rows) == list(REGIONS)
        volume = read_volume(cohort[0] / f"{scan_id}.nrrd").array
        # The external sides are used: right = R231 label 1.
        right = volume[r231 == 1]
        assert int(rows["right"]["voxels"]) == int(((right >= -1024) & (right <= 1024)).sum())
        row = summary[scan_id]
        for column in ("LAA950_pct", "HAA500_pct", "HAA250_pct"):
            assert float(row[column]) == pytest.approx(float(rows["whole"][column]), rel=1e-5)
        assert float(row["right_lung_volume_ml"]) == pytest.approx((r231 == 1).sum() * np.prod(SPACING) / 1000)
        scores = [int(row[f"zone_score_{zone}"]) for zone in ZONE_NAMES]
        assert int(row["zonal_severity"]) == sum(scores)
    assert int(summary["case_0"]["zonal_severity"]) <= 6  # lesion-free
    assert int(summary["case_2"]["zonal_severity"]) > int(summary["case_0"]["zonal_severity"])


def test_rerun_skips_and_a_changed_mask_is_recomputed(cohort, tmp_path, capsys):
    scans, masks, truths = cohort
    out = tmp_path / "labels"
    assert _run(cohort, out) == 0
    before = (out / "case_2_labels.nrrd").stat().st_mtime_ns
    segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(masks), "--mask-format",
                      "lungmask", "--model", "zaffino2021"])
    assert "0 scan(s) done, 3 skipped" in capsys.readouterr().out
    changed = truths["case_2"].copy()
    changed[np.nonzero(changed)[0][0]] = 0  # drop one slice of lung
    geometry = read_volume(scans / "case_2.nrrd").geometry
    moved = tmp_path / "masks"
    moved.mkdir()
    for entry in masks.iterdir():
        (moved / entry.name).write_bytes(entry.read_bytes())
    write_volume(moved / "case_2.nrrd", changed, geometry)
    segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(moved), "--mask-format",
                      "lungmask", "--model", "zaffino2021"])
    assert "1 scan(s) done, 2 skipped" in capsys.readouterr().out
    assert (out / "case_2_labels.nrrd").stat().st_mtime_ns != before


def test_missing_or_misaligned_mask_fails_that_scan_only(cohort, tmp_path):
    scans, masks, truths = cohort
    bad = tmp_path / "masks"
    bad.mkdir()
    geometry = read_volume(scans / "case_0.nrrd").geometry
    write_volume(bad / "case_0.nrrd", truths["case_0"], geometry)
    shifted = type(geometry)(geometry.spacing, (geometry.origin[0] + 2.0, *geometry.origin[1:]), geometry.direction)
    write_volume(bad / "case_1.nrrd", truths["case_1"], shifted)
    # case_2 has no mask; case_20.nrrd must not be taken for it.
    write_volume(bad / "case_20.nrrd", truths["case_2"], geometry)
    out = tmp_path / "labels"
    code = segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(bad), "--mask-format",
                             "lungmask", "--model", "zaffino2021", "--quiet"])
    assert code == 1
    errors = {row["id"]: row["message"] for row in _read(out / "errors.csv")}
    assert set(errors) == {"case_1", "case_2"}
    assert "case_1.nrrd" in errors["case_1"] and str(scans / "case_1.nrrd") in errors["case_1"]
    assert "resampl" in errors["case_1"]
    assert "no mask for scan 'case_2'" in errors["case_2"]
    assert [row["id"] for row in _read(out / "summary.csv")] == ["case_0"]


def test_ambiguous_mask_without_format_is_a_per_scan_error(cohort, tmp_path):
    scans, masks, _ = cohort
    out = tmp_path / "labels"
    code = segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(masks),
                             "--model", "zaffino2021", "--quiet"])
    assert code == 1
    messages = [row["message"] for row in _read(out / "errors.csv")]
    assert len(messages) == 3 and all("--mask-format" in m for m in messages)


@pytest.fixture(scope="module")
def own_masks_run(cohort, tmp_path_factory):
    """The cohort segmented with radiolab's own masks, and a folder of right-lung-only masks."""
    scans, _, truths = cohort
    out = tmp_path_factory.mktemp("own")
    assert segment_cli.main(["--in", str(scans), "--out", str(out), "--model", "zaffino2021", "--quiet"]) == 0
    right_only = tmp_path_factory.mktemp("right_only")
    for scan_id, r231 in truths.items():
        geometry = read_volume(scans / f"{scan_id}.nrrd").geometry
        write_volume(right_only / f"{scan_id}.nrrd", np.where(r231 == 1, 1, 0).astype(np.uint8), geometry)
    return scans, out, right_only


def test_qc_with_lung_masks_draws_their_zones(own_masks_run):
    from PIL import Image

    from radiolab.cli import qc as qc_cli

    scans, out, right_only = own_masks_run

    def grey_cells():
        pixels = np.asarray(Image.open(out / "case_1_qc.png").convert("RGB")).astype(int)
        return int((np.abs(pixels - np.array([0x55, 0x55, 0x55])).sum(axis=-1) < 6).sum())

    assert qc_cli.main([str(out), "--scans", str(scans)]) == 0
    assert grey_cells() < 500  # both lungs have zones
    assert qc_cli.main([str(out), "--scans", str(scans), "--lung-masks", str(right_only),
                        "--mask-format", "lungmask"]) == 0
    assert grey_cells() > 3 * 2000  # the three left zones hold no lung in these masks


def test_features_with_lung_masks_measure_inside_them(own_masks_run, tmp_path):
    pytest.importorskip("radiomics")
    from radiolab.cli import features as features_cli

    scans, out, right_only = own_masks_run
    table = tmp_path / "features.csv"
    assert features_cli.main(["--in", str(scans / "case_0.nrrd"), "--labels", str(out), "--out", str(table),
                              "--regions", "lung", "--lung-masks", str(right_only), "--mask-format", "binary",
                              "--quiet"]) == 0
    row = _read(table)[0]
    labels = read_volume(out / "case_0_labels.nrrd").array
    right = read_volume(right_only / "case_0.nrrd").array > 0
    assert int(row["voxels"]) == int(((labels > 0) & right).sum()) < int((labels > 0).sum())
    provenance = json.loads((tmp_path / "features_provenance.json").read_text())
    assert len(provenance["lung_mask_hashes"]["case_0"]) == 64


def test_mask_options_are_checked_before_any_scan(cohort, tmp_path, capsys):
    scans, _, _ = cohort
    assert segment_cli.main(["--in", str(scans), "--out", str(tmp_path / "a"), "--mask-format", "cip"]) == 2
    assert "--mask-format needs --lung-masks" in capsys.readouterr().err
    assert segment_cli.main(["--in", str(scans), "--out", str(tmp_path / "b"), "--lung-masks",
                             str(tmp_path / "nowhere")]) == 2
    assert "--lung-masks folder does not exist" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_real_scan_with_cips_lung_mask(real_data, tmp_path):
    """COPDGene 16021S (2 slices) segmented inside CIP's own deep-learning lung mask."""
    scans, masks = tmp_path / "scans", tmp_path / "masks"
    scans.mkdir()
    masks.mkdir()
    (scans / "copd.nrrd").write_bytes(real_data("cip/crop_ct_2slices.nrrd").read_bytes())
    (masks / "copd.nrrd").write_bytes(real_data("cip/crop_ct_2slices_dcnnLungSegmentationLabelmap.nrrd").read_bytes())
    out = tmp_path / "labels"
    assert segment_cli.main(["--in", str(scans), "--out", str(out), "--lung-masks", str(masks), "--mask-format", "cip",
                             "--model", "zaffino2021", "--quiet"]) == 0
    rows = {r["region"]: r for r in _read(out / "phenotypes.csv")}
    # CIP's regions 2 and 3 are the sides; the counts published with the data.
    assert int(rows["right"]["voxels"]) + int(rows["right"]["voxels_out_of_range"]) == 74_379
    assert int(rows["left"]["voxels"]) + int(rows["left"]["voxels_out_of_range"]) == 76_219
    summary = _read(out / "summary.csv")[0]
    assert int(summary["zonal_severity"]) <= 6  # no lesions in these slices


def _phantom_lobes(r231: np.ndarray) -> np.ndarray:
    """Radiolab lobe codes cut from a phantom's R231 lungs by height (z index 0 is inferior)."""
    z = np.arange(r231.shape[0])[:, None, None]
    rows = np.nonzero(r231.any(axis=(1, 2)))[0]
    low, high = rows.min(), rows.max()
    cut1, cut2 = low + (high - low) * 0.45, low + (high - low) * 0.65
    right = np.select([z < cut1, z < cut2], [3, 2], 1)  # lower, middle, upper lobe
    left = np.where(z < cut2, 5, 4)
    return np.where(r231 == 1, right, np.where(r231 == 2, left, 0)).astype(np.uint8)


def _region_voxels(rows, region):
    return int(rows[region]["voxels"]) + int(rows[region]["voxels_out_of_range"])


def test_totalseg_folder_and_cip_thirds_give_their_regions(cohort, tmp_path):
    scans, _, truths = cohort
    r231 = truths["case_2"]
    geometry = read_volume(scans / "case_2.nrrd").geometry
    lobes = _phantom_lobes(r231)
    only = tmp_path / "scans"
    only.mkdir()
    (only / "case_2.nrrd").write_bytes((scans / "case_2.nrrd").read_bytes())
    # TotalSegmentator: one NIfTI per lobe, stored flipped.
    masks = tmp_path / "ts"
    (masks / "case_2").mkdir(parents=True)
    names = {1: "lung_upper_lobe_right", 2: "lung_middle_lobe_right", 3: "lung_lower_lobe_right",
             4: "lung_upper_lobe_left", 5: "lung_lower_lobe_left"}
    for code, name in names.items():
        _write_nifti_flipped(masks / "case_2" / f"{name}.nii.gz", (lobes == code).astype(np.uint8), geometry)
    out = tmp_path / "labels_ts"
    assert segment_cli.main(["--in", str(only), "--out", str(out), "--lung-masks", str(masks),
                             "--model", "zaffino2021", "--quiet"]) == 0
    rows = {r["region"]: r for r in _read(out / "phenotypes.csv")}
    lobe_rows = ("right_upper_lobe", "right_middle_lobe", "right_lower_lobe", "left_upper_lobe", "left_lower_lobe")
    assert list(rows)[-5:] == list(lobe_rows)
    for code, region in enumerate(lobe_rows, start=1):
        assert _region_voxels(rows, region) == int((lobes == code).sum()) > 0
    assert _region_voxels(rows, "right") == int((r231 == 1).sum())
    summary = _read(out / "summary.csv")[0]
    assert 0 <= int(summary["lobar_severity"]) <= 25
    # CIP: the map's own thirds (here by height, not of equal count) are used as they are.
    z = np.arange(r231.shape[0])[:, None, None] * np.ones(r231.shape, int)
    rows_z = np.nonzero(r231.any(axis=(1, 2)))[0]
    third = np.select([z < rows_z.min() + 5, z < rows_z.min() + 10], [3, 2], 1)
    region = {(1, 1): 12, (1, 2): 13, (1, 3): 14, (2, 1): 9, (2, 2): 10, (2, 3): 11}
    cip = np.zeros(r231.shape, np.uint16)
    for (side, t), value in region.items():
        cip[(r231 == side) & (third == t)] = value + 2 * 256  # type 2 (airway) sets values above 255
    cip_dir = tmp_path / "cip"
    cip_dir.mkdir()
    write_volume(cip_dir / "case_2.nrrd", cip, geometry)
    out = tmp_path / "labels_cip"
    assert segment_cli.main(["--in", str(only), "--out", str(out), "--lung-masks", str(cip_dir),
                             "--model", "zaffino2021", "--quiet"]) == 0
    rows = {r["region"]: r for r in _read(out / "phenotypes.csv")}
    for (side, t), _ in region.items():
        name = f"{SIDE_NAMES[side]}_{THIRD_NAMES[t]}"
        assert _region_voxels(rows, name) == int(((r231 == side) & (third == t)).sum()), name
    assert _region_voxels(rows, "lower") != _region_voxels(rows, "upper")  # not CIP's equal split
