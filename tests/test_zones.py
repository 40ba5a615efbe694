import numpy as np
import pytest

from radiolab.lung import lung_mask
from radiolab.mixture import label_tissue
from radiolab.segment import resolve_model, SegmentConfig
from radiolab.sides import split_sides
from radiolab.synthetic.basic import GGO_HU, chest_phantom
from radiolab.zones import (LOWER, MIDDLE, UPPER, ZONE_NAMES, from_patient_order, lobar_severity, lung_thirds,
                            to_patient_order, zone_scores)


def _raster_thirds(mask: np.ndarray) -> np.ndarray:
    """Oracle: rank the lung voxels in C order (z slowest) of an identity-direction array."""
    flat = mask.ravel().astype(bool)
    index = np.flatnonzero(flat)
    n = index.size
    out = np.zeros(flat.size, np.uint8)
    out[index[: n // 3]] = LOWER
    out[index[n // 3: 2 * n // 3]] = MIDDLE
    out[index[2 * n // 3:]] = UPPER
    return out.reshape(mask.shape)


def _blob(seed=0, shape=(13, 11, 9)):
    rng = np.random.default_rng(seed)
    return rng.random(shape) < 0.4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thirds_follow_cip_raster_counts(seed):
    mask = _blob(seed)
    thirds = lung_thirds(mask)
    np.testing.assert_array_equal(thirds, _raster_thirds(mask))
    n = int(mask.sum())
    counts = [int((thirds == t).sum()) for t in (LOWER, MIDDLE, UPPER)]
    assert counts == [n // 3, 2 * n // 3 - n // 3, n - 2 * n // 3]


# (array axes of the stored volume taken from the canonical one, flips) and the matching
# direction matrix: the stored array's index axes in LPS.
def _reoriented(canonical: np.ndarray, axes, flips):
    stored = np.transpose(canonical, axes)
    stored = stored[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    # Stored array axis q is canonical axis axes[q] (canonical z, y, x = LPS z, y, x), maybe reversed.
    direction = np.zeros((3, 3))
    for q in range(3):
        physical = 2 - axes[q]  # canonical array axis 0 is LPS z (row 2)
        index_axis = 2 - q  # stored array axis q is index axis 2 - q (column)
        direction[physical, index_axis] = -1.0 if flips[q] else 1.0
    return np.ascontiguousarray(stored), tuple(direction.ravel())


@pytest.mark.parametrize("axes,flips", [((0, 1, 2), (True, False, False)), ((0, 1, 2), (False, True, True)),
                                        ((2, 1, 0), (False, False, False)), ((1, 2, 0), (True, False, True))])
def test_thirds_are_taken_in_patient_coordinates(axes, flips):
    canonical = _blob(5, (10, 8, 7))
    expected = _raster_thirds(canonical)
    stored, direction = _reoriented(canonical, axes, flips)
    got = lung_thirds(stored, direction=direction)
    expected_stored, _ = _reoriented(expected, axes, flips)
    np.testing.assert_array_equal(got, expected_stored)
    np.testing.assert_array_equal(to_patient_order(stored, direction), canonical)
    np.testing.assert_array_equal(from_patient_order(canonical, direction), stored)


def test_zone_scores_use_lesion_share_bins():
    shape = (6, 4, 20)
    labels = np.full(shape, 2, np.uint8)  # healthy lung everywhere
    sides = np.zeros(shape, np.uint8)
    sides[..., :10], sides[..., 10:] = 1, 2
    thirds = np.zeros(shape, np.uint8)
    thirds[:2], thirds[2:4], thirds[4:] = 3, 2, 1
    zone_voxels = 2 * 4 * 10
    # right lower: 24 of 80 voxels GGO (30 %) -> 3; left upper: 3 of 80 consolidation (3.75 %) -> 1
    block = labels[:2, :, :10].copy().reshape(-1)
    block[:24] = 3
    labels[:2, :, :10] = block.reshape(2, 4, 10)
    block = labels[4:, :, 10:].copy().reshape(-1)
    block[:3] = 4
    labels[4:, :, 10:] = block.reshape(2, 4, 10)
    labels[2:4, :, :10] = 5  # other dense: left out of the score
    row = zone_scores(labels, sides, thirds)
    assert 24 / zone_voxels == pytest.approx(0.30)
    assert row["zone_score_right_lower"] == 3
    assert row["zone_score_left_upper"] == 1
    assert row["zone_score_right_middle"] == 0
    assert [row[f"zone_score_{z}"] for z in ZONE_NAMES] == [0, 0, 3, 1, 0, 0]
    assert row["zonal_severity"] == 4


def test_lobar_severity():
    labels = np.full((2, 2, 10), 2, np.uint8)
    lobes = np.repeat(np.arange(1, 6, dtype=np.uint8), 8).reshape(2, 2, 10)
    labels[lobes == 2] = 3  # whole right middle lobe: 100 % -> 5
    labels.reshape(-1)[np.flatnonzero(lobes.ravel() == 5)[:1]] = 4  # 1 of 8: 12.5 % -> 2
    row = lobar_severity(labels, lobes)
    assert row["lobe_score_right_middle_lobe"] == 5
    assert row["lobe_score_left_lower_lobe"] == 2
    assert row["lobar_severity"] == 7


@pytest.fixture(scope="module")
def healthy_and_basal():
    """A lesion-free phantom, and the same with GGO in the posterior basal lung."""
    phantom = chest_phantom((48, 72, 72), (6.0, 4.5, 4.5), lesion_fraction=0.0, seed=4)
    lung = phantom.truth["lung"] & ~phantom.truth["vessels"]
    per_slice = lung.sum(axis=(1, 2))
    cumulative = np.cumsum(per_slice) / per_slice.sum()
    basal_slices = cumulative <= 0.2  # the lowest fifth of the lung voxels (z index 0 is inferior)
    y_centre = np.argwhere(lung)[:, 1].mean()
    basal = lung & basal_slices[:, None, None] & (np.arange(lung.shape[1]) > y_centre)[None, :, None]
    lesioned = phantom.volume.copy()
    rng = np.random.default_rng(0)
    lesioned[basal] = (GGO_HU + rng.normal(0, 25, int(basal.sum()))).astype(np.int16)
    model = resolve_model(SegmentConfig(model="zaffino2021"))
    results = []
    for volume in (phantom.volume, lesioned):
        mask = lung_mask(volume, phantom.geometry.spacing)
        labels = label_tissue(volume, mask, model)
        sides = split_sides(mask, phantom.geometry.spacing)
        thirds = lung_thirds(mask)
        results.append(zone_scores(labels, sides, thirds))
    return results


def test_posterior_basal_lesions_raise_only_the_lower_zones(healthy_and_basal):
    healthy, basal = healthy_and_basal
    for side in ("right", "left"):
        assert basal[f"zone_score_{side}_lower"] > healthy[f"zone_score_{side}_lower"]
        for third in ("upper", "middle"):
            assert basal[f"zone_score_{side}_{third}"] == healthy[f"zone_score_{side}_{third}"]
    assert basal["zonal_severity"] == sum(basal[f"zone_score_{z}"] for z in ZONE_NAMES)
    assert healthy["zonal_severity"] <= 6  # a lesion-free lung scores 0-6 in total
