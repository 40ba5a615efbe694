"""The default preset's lung mask on anatomical phantoms with ground truth (issue 12).

Each phantom (`radiolab.synthetic.chest.anatomical_phantom`) carries a junction line,
trachea and bronchi joined to the lungs, gut gas, padding and a table; the truth marks
the lungs, the airways, the gut gas and the mediastinum on the phantom's own grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radiolab.errors import NoLungError
from radiolab.lung import settings_for
from radiolab.lung_segmentation import segment_lungs
from radiolab.orientation import IDENTITY_DIRECTION
from radiolab.sides import LEFT, RIGHT
from radiolab.synthetic.chest import anatomical_phantom

SETTINGS = settings_for("default")
# Fine grids are sampled in a region only, to keep the test data small.
CASES = {
    "3mm": dict(spacing=(3.0, 3.0, 3.0), junction_mm=4.5),
    "1.5mm": dict(spacing=(1.5, 1.5, 1.5), junction_mm=3.0),
    "0.7mm": dict(spacing=(0.7, 0.7, 0.7), junction_mm=2.0,
                  region_mm=((100.0, 170.0), (-130.0, 110.0), (-150.0, 150.0))),
    "0.7mm-bases": dict(spacing=(0.7, 0.7, 0.7), junction_mm=2.0,
                        region_mm=((-40.0, 30.0), (-130.0, 110.0), (-150.0, 150.0))),
}


def dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def ml(mask, spacing):
    return np.count_nonzero(mask) * float(np.prod(spacing)) / 1000.0


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    options = dict(CASES[request.param])
    spacing = options.pop("spacing")
    phantom = anatomical_phantom(spacing, seed=5, **options)
    result = segment_lungs(phantom.volume, spacing, SETTINGS, direction=phantom.geometry.direction)
    return request.param, spacing, phantom, result


def test_dice_against_truth(case):
    name, spacing, phantom, result = case
    assert dice(result.mask, phantom.truth["lung"]) >= 0.98
    assert dice(result.sides == RIGHT, phantom.truth["right_lung"]) >= 0.97
    assert dice(result.sides == LEFT, phantom.truth["left_lung"]) >= 0.97


def test_gut_gas_and_airways_stay_out(case):
    name, spacing, phantom, result = case
    assert ml(result.mask & phantom.truth["gut_gas"], spacing) <= 1.0
    assert ml(result.mask & phantom.truth["airways"], spacing) <= 5.0


def test_no_voxel_in_the_mediastinum(case):
    name, spacing, phantom, result = case
    mediastinum = phantom.truth["mediastinum"]
    if not name.startswith("0.7mm"):
        assert not (result.mask & mediastinum).any()
        return
    # At 0.7 mm the truth (voxel centres) and the partial volume disagree on the lung's
    # border: voxels whose centre lies just outside the lung can still be 20-50 % lung
    # (-460 to -200 HU), and the threshold keeps a few of them. The test is then: no voxel
    # in the mediastinum's core (the mediastinum less its one-voxel rim along the lungs),
    # and in the rim only threshold voxels face-adjacent to the lung, a tiny share of the
    # rim's sub-threshold voxels. Measured: 33 and 10 voxels (0.011 and 0.003 mL),
    # -459 to -209 HU, 0.08 % and 0.11 % of the rim voxels below -155 HU.
    assert not (result.mask & phantom.truth["mediastinum_core"]).any()
    rim = mediastinum & ~phantom.truth["mediastinum_core"]
    taken = result.mask & rim
    assert ml(taken, spacing) <= 0.05
    assert (phantom.volume[taken] < SETTINGS.threshold_hu).all()
    beside_lung = ndimage.binary_dilation(phantom.truth["lung"])  # face neighbours
    assert beside_lung[taken].all()
    assert np.count_nonzero(taken) <= 0.005 * np.count_nonzero(rim & (phantom.volume < SETTINGS.threshold_hu))


def test_trachea_is_traced_where_the_scan_reaches_it(case):
    name, spacing, phantom, result = case
    if phantom.truth["trachea"].any():
        assert result.airways is not None
        assert dice(result.airways, phantom.truth["airways"]) > 0.5
    else:
        assert result.airways is None or not result.airways.any()


@pytest.mark.parametrize("laa", [0.3, 0.5])
def test_emphysema_is_still_lung(laa):
    spacing = (3.0, 3.0, 3.0)
    phantom = anatomical_phantom(spacing, emphysema_laa=laa, seed=6)
    assert phantom.info["laa950"] == pytest.approx(laa, abs=0.02)
    result = segment_lungs(phantom.volume, spacing, SETTINGS)
    assert dice(result.mask, phantom.truth["lung"]) >= 0.98
    assert ml(result.mask & phantom.truth["gut_gas"], spacing) <= 1.0


@pytest.mark.xfail(strict=True, reason="measured 53 % (3 mm), 24 % (1.5 mm) and 85 % (0.7 mm) of 250 mL "
                   "of posterior-basal consolidation kept: "
                   "the pleural envelope recovers bites along the costal wall, not consolidation "
                   "lying on the centre's side of all of its lung's air")
def test_subpleural_consolidation_is_kept():
    spacing = (3.0, 3.0, 3.0)
    phantom = anatomical_phantom(spacing, consolidation_ml=(150.0, 100.0), seed=0)
    result = segment_lungs(phantom.volume, spacing, SETTINGS)
    assert not (result.mask & phantom.truth["mediastinum"]).any()
    assert result.mask[phantom.truth["consolidation"]].mean() >= 0.97


def test_lungs_cut_by_the_field_of_view_are_kept():
    spacing = (3.0, 3.0, 3.0)
    # The field of view cuts the right lung and the body at x = -100 mm.
    phantom = anatomical_phantom(spacing, region_mm=((-20.0, 200.0), (-150.0, 150.0), (-100.0, 170.0)), seed=2)
    assert phantom.truth["right_lung"][:, :, 0].any()
    result = segment_lungs(phantom.volume, spacing, SETTINGS)
    assert dice(result.mask, phantom.truth["lung"]) >= 0.98
    assert dice(result.sides == RIGHT, phantom.truth["right_lung"]) >= 0.97


def test_lungs_joined_to_the_air_under_the_back_by_noise_lose_that_air():
    spacing = (3.0, 3.0, 3.0)
    # 140 HU of noise (a low-dose scan) opens the posterior chest wall: each lung forms
    # one island with the air between back and table, mostly inside the envelope.
    # Before, that air stayed in the mask (Dice 0.763); measured now 0.990.
    phantom = anatomical_phantom(spacing, region_mm=((-20.0, 200.0), (-150.0, 150.0), (-160.0, 160.0)),
                                 noise_hu=140.0, seed=4)
    result = segment_lungs(phantom.volume, spacing, SETTINGS)
    assert ml(result.mask & phantom.truth["outside_air"], spacing) <= 5.0
    assert dice(result.mask, phantom.truth["lung"]) >= 0.98


@pytest.mark.parametrize("padding_hu", [-2048.0, -1024.0])
def test_lungs_cut_by_the_scan_circle_are_kept(padding_hu):
    spacing = (3.0, 3.0, 3.0)
    # A scan circle of 130 mm cuts 3 % of the lungs; outside it lies the scanner's fill,
    # below the air floor (-2048) or at a value air takes too (-1024).
    phantom = anatomical_phantom(spacing, scan_circle_mm=130.0, padding_hu=padding_hu, seed=2)
    truth = phantom.truth
    assert (truth["lung"] & truth["padding"]).any()
    result = segment_lungs(phantom.volume, spacing, SETTINGS)
    assert dice(result.mask, truth["lung"] & ~truth["padding"]) >= 0.98
    assert dice(result.sides == RIGHT, truth["right_lung"] & ~truth["padding"]) >= 0.97
    assert dice(result.sides == LEFT, truth["left_lung"] & ~truth["padding"]) >= 0.97


@pytest.fixture(scope="module")
def small():
    spacing = (3.0, 3.0, 3.0)
    phantom = anatomical_phantom(spacing, seed=7)
    return spacing, phantom, segment_lungs(phantom.volume, spacing, SETTINGS)


def _direction(columns):
    """Row-major direction matrix whose columns (index axes i, j, k) are ``columns``."""
    return tuple(float(v) for v in np.array(columns, dtype=float).T.ravel())


@pytest.mark.parametrize("layout", ["x flipped", "feet first", "y and x swapped", "all permuted"])
def test_orientation_is_read_from_the_direction(small, layout):
    spacing, phantom, expected = small
    volume = phantom.volume
    i, j, k = np.eye(3)
    if layout == "x flipped":
        # Index i runs towards the patient's right: the array's x axis is reversed.
        array, direction, back = volume[:, :, ::-1], _direction([-i, j, k]), lambda a: a[:, :, ::-1]
        new_spacing = spacing
    elif layout == "feet first":
        array, direction, back = volume[::-1], _direction([i, j, -k]), lambda a: a[::-1]
        new_spacing = spacing
    elif layout == "y and x swapped":
        array, direction = volume.transpose(0, 2, 1), _direction([j, i, k])
        back = lambda a: a.transpose(0, 2, 1)  # noqa: E731
        new_spacing = (spacing[0], spacing[2], spacing[1])
    else:
        # Array axes 0, 1, 2 hold patient x, z, y: index i (axis 2) runs posterior,
        # j (axis 1) superior, k (axis 0) to the left.
        array, direction = volume.transpose(2, 0, 1), _direction([j, k, i])
        back = lambda a: a.transpose(1, 2, 0)  # noqa: E731
        new_spacing = (spacing[2], spacing[0], spacing[1])
    result = segment_lungs(np.ascontiguousarray(array), new_spacing, SETTINGS, direction=direction)
    assert np.array_equal(back(result.sides), expected.sides)
    assert np.array_equal(back(result.airways), expected.airways)


def test_one_lung_gets_its_side_from_the_trachea_not_the_image_centre():
    spacing = (3.0, 3.0, 3.0)
    # The field of view is off-centre (image centre at x = +100 mm, right of the left
    # lung's centre at about +80 mm); the trachea at x = 0 lies inside it.
    phantom = anatomical_phantom(spacing, region_mm=((-110.0, 250.0), (-180.0, 180.0), (-20.0, 220.0)),
                                 stomach_gas_ml=0.0, colon_gas_ml=(), seed=3)
    volume = phantom.volume.copy()
    right = phantom.truth["right_lung"]
    volume[right] = 40  # pneumonectomy: the right lung is gone (tissue)
    result = segment_lungs(volume, spacing, SETTINGS, direction=IDENTITY_DIRECTION)
    left = phantom.truth["left_lung"]
    assert not (result.sides == RIGHT).any()
    assert dice(result.sides == LEFT, left) >= 0.97
    assert any("one lung" in note for note in result.notes)



def test_single_air_body_on_the_midline_is_not_a_lung():
    # Head-like: no lungs, one 60 mL air body with tissue septa on the body's centre line
    # (the nasal cavity and sinuses of a head CT); the same body 80 mm to the left is a
    # (single) lung.
    spacing = (3.0, 3.0, 3.0)
    phantom = anatomical_phantom(spacing, stomach_gas_ml=0.0, colon_gas_ml=(), seed=4)
    base = phantom.volume.copy()
    base[phantom.truth["lung"] | phantom.truth["airways"]] = 40
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip(base.shape, spacing)], indexing="ij")
    centre_z, centre_y = 90.0 + 110.0, -40.0 + 180.0  # patient z 90 mm, y -40 mm in grid mm

    def with_air_at(x_mm):
        volume = base.copy()
        blob = ((z - centre_z) / 30.0) ** 2 + ((y - centre_y) / 25.0) ** 2 + ((x - (x_mm + 180.0)) / 20.0) ** 2 <= 1.0
        volume[blob] = -900
        volume[blob & (np.abs(x - (x_mm + 180.0)) < 1.6) & (z < centre_z)] = 300  # a partial septum
        return volume, blob

    volume, blob = with_air_at(0.0)
    assert np.count_nonzero(blob) * 27.0 / 1000.0 > 50.0
    with pytest.raises(NoLungError, match="on the midline"):
        segment_lungs(volume, spacing, SETTINGS)
    volume, blob = with_air_at(80.0)
    result = segment_lungs(volume, spacing, SETTINGS)
    assert dice(result.mask, blob) > 0.8


def test_segment_lungs_refuses_the_paper_preset_by_name():
    phantom = anatomical_phantom((6.0, 6.0, 6.0), seed=1)
    with pytest.raises(ValueError, match="chest tuning"):
        segment_lungs(phantom.volume, (6.0, 6.0, 6.0), settings_for("zaffino2021"))
