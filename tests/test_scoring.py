import numpy as np
import pytest

from radiolab.mixture import CLASS_NAMES
from radiolab.scoring import class_volumes, density_indices, summary_row
from radiolab.sides import LEFT, RIGHT, split_sides
from radiolab.synthetic import chest_phantom

SPACING = (7.0, 5.0, 5.0)


def test_density_indices_thresholds_are_strict():
    volume = np.array([-1000, -951, -950, -949, -501, -500, -499, -251, -250, -249, 100, 5000],
                      dtype=np.int16).reshape(1, 3, 4)
    mask = np.ones(volume.shape, bool)
    row = density_indices(volume, mask)
    # 5000 HU lies outside CIP's -1024..1024 HU range: 11 voxels count.
    assert row["LAA950_pct"] == pytest.approx(100 * 2 / 11)  # -1000, -951
    assert row["HAA500_pct"] == pytest.approx(100 * 5 / 11)  # -499 .. 100
    assert row["HAA250_pct"] == pytest.approx(100 * 2 / 11)  # -249, 100
    mask[0, 0, :2] = False  # drop -1000 and -951
    assert density_indices(volume, mask)["LAA950_pct"] == 0.0
    assert density_indices(volume, np.zeros_like(mask)) == {"LAA950_pct": 0.0, "HAA500_pct": 0.0,
                                                            "HAA250_pct": 0.0}
    with pytest.raises(ValueError, match="shape"):
        density_indices(volume, mask[:, :2])


@pytest.fixture(scope="module")
def labelled():
    phantom = chest_phantom((40, 64, 64), SPACING, lesion_fraction=0.25, seed=7)
    lung = phantom.truth["lung"]
    labels = np.zeros(lung.shape, np.uint8)
    labels[lung] = 2
    labels[lung & (phantom.volume < -950)] = 1
    labels[phantom.truth["ggo"]] = 3
    labels[phantom.truth["consolidation"]] = 4
    labels[phantom.truth["vessels"]] = 5
    return phantom, labels


def test_summary_row_per_side(labelled):
    phantom, labels = labelled
    lung = phantom.truth["lung"]
    row = summary_row(labels, phantom.volume, lung, SPACING)
    assert {k: row[k] for k in class_volumes(labels, SPACING)} == class_volumes(labels, SPACING)
    assert row["sides_found"] == 2
    assert row["right_lung_volume_ml"] + row["left_lung_volume_ml"] == pytest.approx(row["lung_volume_ml"])
    sides = split_sides(lung, SPACING)
    voxel_ml = np.prod(SPACING) / 1000
    for value, side in ((RIGHT, "right"), (LEFT, "left")):
        in_side = sides == value
        assert row[f"{side}_lung_volume_ml"] == pytest.approx(in_side.sum() * voxel_ml)
        lesions = (phantom.truth["ggo"] | phantom.truth["consolidation"] | phantom.truth["vessels"]) & in_side
        assert row[f"{side}_LI_pct"] == pytest.approx(100 * lesions.sum() / in_side.sum())
        assert sum(row[f"{side}_{name}_pct"] for name in CLASS_NAMES) == pytest.approx(100.0)
    # whole-lung LI is the volume-weighted mean of the sides
    weighted = (row["right_LI_pct"] * row["right_lung_volume_ml"]
                + row["left_LI_pct"] * row["left_lung_volume_ml"]) / row["lung_volume_ml"]
    assert weighted == pytest.approx(row["LI_pct"])
    values = phantom.volume[lung]
    assert row["LAA950_pct"] == pytest.approx(100 * np.mean(values < -950))
    assert row["HAA250_pct"] == pytest.approx(100 * np.mean(values > -250))
    assert 0 < row["LAA950_pct"] < row["HAA500_pct"] < 60


def test_summary_row_lesions_on_one_side(labelled):
    phantom, labels = labelled
    lung = phantom.truth["lung"]
    sides = split_sides(lung, SPACING)
    one_sided = labels.copy()
    one_sided[(sides == LEFT) & (labels >= 3)] = 2
    row = summary_row(one_sided, phantom.volume, lung, SPACING)
    assert row["left_LI_pct"] == 0.0
    assert row["right_LI_pct"] > 10
    # with the x axis reversed in the geometry, the same voxels are reported as the left lung
    flip_x = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    flipped = summary_row(one_sided, phantom.volume, lung, SPACING, direction=flip_x)
    assert flipped["right_LI_pct"] == 0.0
    assert flipped["left_LI_pct"] == pytest.approx(row["right_LI_pct"])


def test_summary_row_shape_mismatch(labelled):
    phantom, labels = labelled
    with pytest.raises(ValueError, match="shape"):
        summary_row(labels, phantom.volume[:-1], phantom.truth["lung"], SPACING)


def test_summary_row_empty_lung():
    labels = np.zeros((5, 6, 7), np.uint8)
    volume = np.full(labels.shape, -1000, np.int16)
    row = summary_row(labels, volume, labels > 0, SPACING)
    assert row["lung_volume_ml"] == 0.0 and row["LI_pct"] == 0.0
    assert row["right_lung_volume_ml"] == row["left_lung_volume_ml"] == 0.0
    assert row["sides_found"] == 0
    assert row["LAA950_pct"] == 0.0


def test_scan_tables_take_external_sides_lobes_and_thirds():
    from radiolab.scoring import scan_tables
    from radiolab.stats import auto_score
    from radiolab.zones import LOBE_NAMES

    rng = np.random.default_rng(5)
    shape = (9, 6, 10)
    mask = np.ones(shape, bool)
    mask[:, :, 0] = False
    volume = rng.integers(-1000, 0, size=shape).astype(np.int16)
    labels = np.where(mask, rng.choice([1, 2, 2, 2, 3, 4, 5], size=shape), 0).astype(np.uint8)
    # Sides deliberately not by x: the external map is believed, not recomputed.
    sides = np.where(np.arange(shape[1])[None, :, None] < 3, RIGHT, LEFT) * np.ones(shape, np.uint8)
    lobes = rng.integers(1, 6, size=shape).astype(np.uint8)
    thirds = np.select([np.arange(9) < 3, np.arange(9) < 6], [3, 2], 1)[:, None, None] * np.ones(shape, np.uint8)
    row, phenotypes = scan_tables(labels, volume, mask, SPACING, sides=sides.astype(np.uint8), lobes=lobes,
                                  thirds=thirds.astype(np.uint8))
    assert row["right_lung_volume_ml"] == pytest.approx((mask & (sides == RIGHT)).sum() * np.prod(SPACING) / 1000)
    assert [r["region"] for r in phenotypes][-5:] == list(LOBE_NAMES.values())
    expected = 0
    for code in LOBE_NAMES:
        inside = labels[mask & (lobes == code)]
        expected += int(auto_score(100 * np.isin(inside, [3, 4]).mean()))
    assert row["lobar_severity"] == expected
    right_upper = labels[mask & (sides == RIGHT) & (thirds == 1)]
    assert row["zone_score_right_upper"] == int(auto_score(100 * np.isin(right_upper, [3, 4]).mean()))
