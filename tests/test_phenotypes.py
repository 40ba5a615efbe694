import numpy as np
import pytest
from scipy import stats

from radiolab.phenotypes import COLUMNS, HU_RANGE, REGIONS, histogram_phenotypes, region_phenotypes
from radiolab.sides import LEFT, RIGHT
from radiolab.zones import LOBE_NAMES, LOWER, MIDDLE, UPPER

SPACING = (2.0, 1.5, 1.25)
VOXEL_ML = 2.0 * 1.5 * 1.25 / 1000.0


def _cip_percentile(values: np.ndarray, p: float) -> int:
    """Oracle: the highest integer HU h with (voxels <= h) / N <= p, by brute force."""
    ordered = np.sort(values)
    best = HU_RANGE[0]
    for h in range(HU_RANGE[0], HU_RANGE[1] + 1):
        if np.searchsorted(ordered, h, side="right") / values.size <= p:
            best = h
    return best


def _oracle(values: np.ndarray) -> dict:
    """Independent numpy/scipy computation of CIP's measures on the in-range voxels."""
    kept = values[(values >= -1024) & (values <= 1024)].astype(np.float64)
    unique, counts = np.unique(kept, return_counts=True)
    return {
        "voxels": kept.size,
        "volume_ml": kept.size * VOXEL_ML,
        "mass_g": float(np.sum((kept + 1000.0) / 1000.0 * VOXEL_ML)),
        "mean_hu": float(np.mean(kept)),
        "sd_hu": float(np.std(kept)),  # population SD
        "skewness": float(stats.skew(kept, bias=True)),
        "kurtosis": float(stats.kurtosis(kept, fisher=False, bias=True)),
        "mode_hu": int(unique[np.argmax(counts)]),  # np.unique sorts: the lowest on ties
        "median_hu": _cip_percentile(kept, 0.5),
        "p10_hu": _cip_percentile(kept, 0.10),
        "p15_hu": _cip_percentile(kept, 0.15),
        **{f"LAA{t}_pct": 100.0 * np.mean(kept < -t) for t in (950, 925, 910, 905, 900, 875, 856)},
        **{f"HAA{t}_pct": 100.0 * np.mean(kept > -t) for t in (0, 250, 500, 600, 700)},
    }


def _lung_like(rng, n):
    """Emphysematous-looking lung HU with a dense tail and a few out-of-range voxels."""
    values = np.concatenate([rng.normal(-870, 60, int(n * 0.8)), rng.normal(-500, 200, int(n * 0.18)),
                             rng.uniform(-1100, 1500, n - int(n * 0.8) - int(n * 0.18))])
    return np.rint(values).astype(np.int16)


def test_histogram_measures_match_numpy_and_scipy():
    rng = np.random.default_rng(1)
    values = _lung_like(rng, 5000)
    counts = np.bincount(values[(values >= -1024) & (values <= 1024)].astype(np.int64) + 1024, minlength=2049)
    row = histogram_phenotypes(counts, VOXEL_ML)
    expected = _oracle(values)
    for column, value in expected.items():
        assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), column


def test_percentile_rule_differs_from_numpy_on_ties():
    # 1, 2, 3, 4 at -900 ... -897: CIP's median is -899 (cumulative 0.5 at -899), numpy's -898.5.
    values = np.array([-900, -899, -898, -897])
    counts = np.bincount(values + 1024, minlength=2049)
    row = histogram_phenotypes(counts, 1.0)
    assert row["median_hu"] == -899 == _cip_percentile(values, 0.5)
    assert np.percentile(values, 50) == -898.5
    # Empty bins above a voxel still count: with -900 (10 %) and -800 (90 %), p10 is -801.
    counts = np.zeros(2049, np.int64)
    counts[-900 + 1024], counts[-800 + 1024] = 1, 9
    assert histogram_phenotypes(counts, 1.0)["p10_hu"] == -801 == _cip_percentile(np.array([-900] + [-800] * 9), 0.1)
    # Mode: the lowest of equally frequent values.
    counts = np.zeros(2049, np.int64)
    counts[[-700 + 1024, -950 + 1024, -600 + 1024]] = 5, 5, 2
    assert histogram_phenotypes(counts, 1.0)["mode_hu"] == -950


def test_thresholds_are_strict():
    values = np.array([-951, -950, -949, 0, 1, -250, -249, -600, -599])
    counts = np.bincount(values + 1024, minlength=2049)
    row = histogram_phenotypes(counts, 1.0)
    assert row["LAA950_pct"] == pytest.approx(100 / 9)
    assert row["HAA0_pct"] == pytest.approx(100 / 9)
    assert row["HAA250_pct"] == pytest.approx(100 * 3 / 9)  # -249, 0, 1
    assert row["HAA600_pct"] == pytest.approx(100 * 5 / 9)  # 0, 1, -250, -249, -599


def _regions_case(seed=0):
    rng = np.random.default_rng(seed)
    shape = (12, 10, 16)
    volume = _lung_like(rng, int(np.prod(shape))).reshape(shape)
    mask = rng.random(shape) < 0.7
    sides = np.where(np.arange(16) < 8, RIGHT, LEFT)[None, None, :] * np.ones(shape, np.uint8)
    thirds = np.select([np.arange(12) < 4, np.arange(12) < 8], [LOWER, MIDDLE], UPPER)[:, None, None] * np.ones(shape, np.uint8)
    lobes = rng.integers(1, 6, size=shape).astype(np.uint8)
    labels = np.where(mask, rng.integers(1, 6, size=shape), 0).astype(np.uint8)
    return volume, mask, sides.astype(np.uint8), thirds.astype(np.uint8), lobes, labels


def test_regions_match_independent_selection():
    volume, mask, sides, thirds, lobes, labels = _regions_case()
    rows = region_phenotypes(volume, mask, SPACING, sides=sides, thirds=thirds, lobes=lobes, labels=labels)
    assert [r["region"] for r in rows] == [*REGIONS, *LOBE_NAMES.values()]
    assert set(rows[0]) == set(COLUMNS) - {"id"}
    by_name = {r["region"]: r for r in rows}
    selections = {name: mask & (True if side is None else sides == side) & (True if third is None else thirds == third)
                  for name, (side, third) in REGIONS.items()}
    selections.update({name: mask & (lobes == code) for code, name in LOBE_NAMES.items()})
    for name, selected in selections.items():
        values = volume[selected]
        expected = _oracle(values)
        for column, value in expected.items():
            assert by_name[name][column] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, column)
        in_range = (values >= -1024) & (values <= 1024)
        assert by_name[name]["voxels_out_of_range"] == int((~in_range).sum())
        classes = labels[selected]
        assert by_name[name]["ggo_pct"] == pytest.approx(100 * np.mean(classes == 3))
        assert by_name[name]["LI_pct"] == pytest.approx(100 * np.mean(classes >= 3))
    assert by_name["whole"]["voxels"] == by_name["right"]["voxels"] + by_name["left"]["voxels"]
    assert by_name["upper"]["voxels"] == by_name["right_upper"]["voxels"] + by_name["left_upper"]["voxels"]


def test_empty_region_gets_empty_values_and_a_reason():
    volume, mask, sides, thirds, _, labels = _regions_case(1)
    sides = np.where(sides == LEFT, RIGHT, sides).astype(np.uint8)  # no left lung at all
    rows = {r["region"]: r for r in region_phenotypes(volume, mask, SPACING, sides=sides, thirds=thirds, labels=labels)}
    left = rows["left"]
    assert left["voxels"] == 0 and left["skip_reason"]
    assert all(left[c] is None for c in ("volume_ml", "mean_hu", "median_hu", "LAA950_pct", "LI_pct"))
    assert rows["right"]["skip_reason"] == "" and rows["right"]["mean_hu"] is not None


def test_real_scan_has_twelve_plausible_regions(real_data, tmp_path):
    """CIP's TestInput.nrrd with radiolab's own lung mask and the published mixture."""
    import csv

    from radiolab.segment import SegmentConfig, find_inputs, segment_cohort

    scans, _ = find_inputs(real_data("cip/TestInput.nrrd"))
    report = segment_cohort(scans, tmp_path, SegmentConfig(model="zaffino2021"))
    assert not report.errors
    with open(tmp_path / "phenotypes.csv", newline="") as handle:
        rows = {row["region"]: row for row in csv.DictReader(handle)}
    assert list(rows) == list(REGIONS)
    values = {region: {k: float(v) for k, v in row.items() if k not in ("id", "region", "skip_reason")}
              for region, row in rows.items()}
    whole = values["whole"]
    assert 2000 < whole["volume_ml"] < 10000  # an adult chest (the mask holds the airways too)
    for region, row in values.items():
        assert rows[region]["skip_reason"] == ""
        assert -1000 < row["mean_hu"] < -600 and 50 < row["sd_hu"] < 400, region
        assert -1024 <= row["p10_hu"] <= row["p15_hu"] <= row["median_hu"] < -600, region
        laa = [row[f"LAA{t}_pct"] for t in (950, 925, 910, 905, 900, 875, 856)]
        haa = [row[f"HAA{t}_pct"] for t in (0, 250, 500, 600, 700)]
        assert laa == sorted(laa) and haa == sorted(haa), region
        # mass = sum of (HU + 1000) / 1000 g/mL x voxel volume = volume x (mean + 1000) / 1000
        assert row["mass_g"] == pytest.approx(row["volume_ml"] * (row["mean_hu"] + 1000) / 1000, rel=1e-6)
        assert row["skewness"] > 0 and row["kurtosis"] > 1, region
    assert whole["voxels"] == values["right"]["voxels"] + values["left"]["voxels"]
    assert whole["voxels"] == sum(values[t]["voxels"] for t in ("upper", "middle", "lower"))
    for third in ("upper", "middle", "lower"):
        assert values[third]["volume_ml"] == pytest.approx(whole["volume_ml"] / 3, rel=0.01)
        assert values[third]["voxels"] == values[f"right_{third}"]["voxels"] + values[f"left_{third}"]["voxels"]
    with open(tmp_path / "summary.csv", newline="") as handle:
        summary = next(csv.DictReader(handle))
    assert float(summary["LAA950_pct"]) == pytest.approx(whole["LAA950_pct"], rel=1e-5)
    assert int(summary["zonal_severity"]) == sum(int(summary[f"zone_score_{s}_{t}"]) for s in ("right", "left")
                                                 for t in ("upper", "middle", "lower"))
