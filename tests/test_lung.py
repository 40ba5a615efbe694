import numpy as np
import pytest

from radiolab.errors import NoLungError
from radiolab.lung import PRESETS, _edt_closing, ball, lung_mask, settings_for
from radiolab.synthetic import chest_phantom


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_default_mask_matches_ground_truth(phantom):
    mask = lung_mask(phantom.volume, phantom.geometry.spacing)
    assert mask.dtype == bool and mask.shape == phantom.volume.shape
    assert dice(mask, phantom.truth["lung"]) >= 0.97
    # Dense lesions and vessels inside the lung are recovered by the closing.
    inside = phantom.truth["consolidation"] | phantom.truth["vessels"]
    assert mask[inside].mean() > 0.97


@pytest.mark.parametrize("spacing, shape", [
    ((1.5, 1.2, 1.2), (200, 280, 280)),
    ((3.0, 0.9, 0.9), (100, 370, 370)),
])
def test_default_preset_is_resolution_aware(spacing, shape):
    # Same anatomy at other voxel sizes (FOV about 300-330 mm): Dice stays high.
    phantom = chest_phantom(shape, spacing, lesion_fraction=0.15, seed=2)
    mask = lung_mask(phantom.volume, spacing)
    assert dice(mask, phantom.truth["lung"]) >= 0.97


def test_fast_equals_reference_in_voxel_units(phantom):
    # The paper's preset with sizes scaled down to the small phantom.
    options = dict(preset="zaffino2021", min_island=2000, closing_radii=(6, 4))
    fast = lung_mask(phantom.volume, phantom.geometry.spacing, **options)
    reference = lung_mask(phantom.volume, phantom.geometry.spacing, backend="reference", **options)
    assert np.array_equal(fast, reference)


def test_fast_equals_reference_in_mm(phantom):
    spacing = phantom.geometry.spacing
    assert np.array_equal(lung_mask(phantom.volume, spacing),
                          lung_mask(phantom.volume, spacing, backend="reference"))


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_edt_closing_equals_simpleitk_ball(radius):
    import SimpleITK as sitk

    rng = np.random.default_rng(radius)
    mask = rng.random((24, 26, 28)) < 0.08
    mask[0, :, 3] = True  # touches the border
    fast = _edt_closing(mask, (1.0, 1.0, 1.0), radius * radius + radius)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    expected = sitk.GetArrayFromImage(sitk.BinaryMorphologicalClosing(image, [radius] * 3, sitk.sitkBall, 1, True))
    assert np.array_equal(fast, expected.astype(bool))


def test_border_touching_and_small_islands_are_removed():
    volume = np.full((30, 60, 60), 40, np.int16)
    volume[5:25, 10:30, 10:30] = -850  # inside: 8000 voxels of 1 mm^3 = 8 mL
    volume[5:25, 17, 17] = 40  # a vessel: lung holds vessels (air without any is not lung)
    volume[5:25, 0:8, 40:55] = -850  # touches the first row: outside air
    volume[12:14, 40:42, 12:14] = -850  # tiny island
    mask = lung_mask(volume, (1.0, 1.0, 1.0), min_island=5.0, closing_radii=(2.0,), opening=0)
    assert mask[10, 20, 20] and not mask[10, 3, 45] and not mask[13, 41, 13]


def test_highest_component_label_is_examined():
    # The published script skipped the last label; here the only lung is the last one.
    volume = np.full((20, 40, 40), 40, np.int16)
    volume[:, :, 0:3] = -1000  # border air: first label
    volume[5:15, 10:30, 10:30] = -850
    mask = lung_mask(volume, (1.0, 1.0, 1.0), preset="zaffino2021", min_island=1000, closing_radii=(2,), opening=1)
    assert mask[10, 20, 20]
    for backend in ("fast", "reference"):
        assert np.array_equal(mask, lung_mask(volume, (1.0, 1.0, 1.0), preset="zaffino2021", backend=backend,
                                              min_island=1000, closing_radii=(2,), opening=1))


def test_no_lung_is_a_clear_error():
    soft_tissue = np.full((20, 30, 30), 40, np.int16)
    with pytest.raises(NoLungError, match="no lung found"):
        lung_mask(soft_tissue, (1.0, 1.0, 1.0))


def test_bad_arguments_name_the_culprit(phantom):
    with pytest.raises(ValueError, match="unknown lung-mask preset 'nope'; valid presets: zaffino2021, default"):
        lung_mask(phantom.volume, (1, 1, 1), preset="nope")
    with pytest.raises(ValueError, match="spacing"):
        lung_mask(phantom.volume, (0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="3-D"):
        lung_mask(phantom.volume[0], (1.0, 1.0))
    with pytest.raises(ValueError, match="unknown lung-mask setting"):
        settings_for("default", radius=3)


def test_default_preset_opening_reaches_as_far_in_plane_as_the_paper():
    # Only the opening's in-plane reach is the paper's: 3 voxels of 0.68 mm = 2.04 mm.
    # In z the paper's octahedron reaches 3 x 0.3 mm = 0.9 mm, the default's ball 2 mm;
    # the paper's closings (30 and 20 voxels: 20.7 and 13.9 mm in-plane, 9 and 6 mm deep
    # at 0.3 mm slices) close both lungs together, the default closes each lung with 10 mm.
    paper, default = PRESETS["zaffino2021"], PRESETS["default"]
    in_plane = 0.68
    assert default.opening == pytest.approx(paper.opening * in_plane, abs=0.05)
    assert default.chest is not None and paper.chest is None
    assert default.closing_radii == (10.0,)


def test_default_tuning_is_overridable_and_recorded():
    settings = settings_for("default", gas_max_vessel_fraction=0.02, min_island=30)
    assert settings.chest.gas_max_vessel_fraction == 0.02 and settings.min_island == 30
    assert settings.to_json()["chest"]["gas_max_vessel_fraction"] == 0.02
    with pytest.raises(ValueError, match="unknown lung-mask setting"):
        settings_for("zaffino2021", gas_max_vessel_fraction=0.02)


def test_none_switches_a_chest_step_off_but_keeps_a_preset_field():
    from radiolab.cli.segment import _lung_tuning
    from radiolab.errors import ParameterError

    settings = settings_for("default", pleural_max_hu=None, threshold_hu=None)
    # Before, None was dropped everywhere: the documented "None switches the step off"
    # could not be reached.
    assert settings.chest.pleural_max_hu is None
    assert settings.threshold_hu == settings_for("default").threshold_hu
    assert _lung_tuning(["surface_hu=none", "body_hu=-400"]) == (("surface_hu", None), ("body_hu", -400.0))
    with pytest.raises(ParameterError, match="body_hu cannot be none"):
        _lung_tuning(["body_hu=none"])


def test_gut_gas_is_told_from_emphysematous_lung_by_its_vessels():
    from radiolab.gut_gas import island_content, is_gut_gas

    rng = np.random.default_rng(4)
    spacing = (1.0, 1.0, 1.0)
    z, y, x = np.ogrid[:30, :40, :40]
    island = ((z - 15) / 12.0) ** 2 + ((y - 20) / 16.0) ** 2 + ((x - 20) / 16.0) ** 2 <= 1.0
    gas = np.where(island, -1000 + rng.normal(0, 20, island.shape), 40).astype(np.int16)
    # Emphysema: 40 % of the voxels below -950 HU, the rest around -870, and vessels.
    lung = np.where(rng.random(island.shape) < 0.4, -980, -870) + rng.normal(0, 20, island.shape)
    vessels = np.zeros(island.shape, bool)
    for cy, cx in ((12, 14), (25, 22), (18, 28)):
        vessels |= ((y - cy) ** 2 + (x - cx) ** 2 <= 2) & np.ones_like(z, bool)
    lung = np.where(island, np.where(vessels, 40, lung), 40).astype(np.int16)
    lung_island = island & ~vessels
    options = dict(air_hu=-950, vessel_hu=-750, margin_mm=3.0)
    gas_content = island_content(gas, island, spacing, **options)
    lung_content = island_content(lung, lung_island, spacing, **options)
    assert gas_content.air_fraction > 0.9 and gas_content.vessel_fraction < 0.01
    assert 0.3 < lung_content.air_fraction < 0.5 and lung_content.vessel_fraction > 0.01
    rule = dict(min_air_fraction=0.25, max_vessel_fraction=0.01)
    assert is_gut_gas(gas_content, **rule) and not is_gut_gas(lung_content, **rule)


def test_median_of_an_island_is_that_of_its_voxels_on_the_grid():
    from radiolab.gut_gas import island_content

    rng = np.random.default_rng(2)
    values = rng.normal(-500, 200, (20, 20, 20))
    island = rng.random(values.shape) < 0.5
    # On a 1.5 mm grid, 1 mm voxels are all measured (step 1).
    content = island_content(values, island, (1.0, 1.0, 1.0), air_hu=-950, vessel_hu=-750, margin_mm=3.0)
    assert content.median_hu == pytest.approx(np.median(values[island]))


@pytest.mark.parametrize("size, top, expected", [(50, 40, True), (50, 60, False), (200, 40, False)])
def test_small_and_low_islands(size, top, expected):
    from radiolab.gut_gas import small_and_low

    # Lungs of 1000 and 900 voxels over slices 10-110 (middle: slice 60); 10 % of the
    # largest is 100 voxels.
    lungs = dict(lung_sizes=[1000, 900], lung_spans=[(10, 110), (20, 100)])
    assert small_and_low(size, top, **lungs, max_share=0.1) is expected


def test_padding_below_scanner_minimum_is_outside(phantom):
    # The scan circle: padding of -3024 HU around a body; the lungs are still found and
    # nothing of the padding is lung.
    volume = phantom.volume.copy()
    z, y, x = np.ogrid[:volume.shape[0], :volume.shape[1], :volume.shape[2]]
    outside = (y - volume.shape[1] / 2) ** 2 + (x - volume.shape[2] / 2) ** 2 > (volume.shape[1] / 2 - 1) ** 2
    volume[np.broadcast_to(outside, volume.shape)] = -3024
    mask = lung_mask(volume, phantom.geometry.spacing)
    assert not mask[np.broadcast_to(outside, volume.shape)].any()
    assert dice(mask, phantom.truth["lung"]) >= 0.95


def test_ball_is_physical():
    element = ball(2.0, (2.0, 1.0, 1.0))
    assert element.shape == (3, 5, 5)
    assert element[1, 2, 4] and element[0, 2, 2] and not element[0, 2, 3]


@pytest.mark.parametrize("packed", [False, True])  # the opening's bit-packed output, unpacked per slab
@pytest.mark.parametrize("few_labels", [0, 6, 10**9])  # bincount and take / equality passes
@pytest.mark.parametrize("slab_voxels", [1, 37, 500, 1 << 23])
def test_islands_labelled_in_slabs_equal_scipy_label(slab_voxels, few_labels, packed, monkeypatch):
    from radiolab import _bitmorph, lung
    from radiolab.lung import _lung_islands, _slab_islands

    monkeypatch.setattr(lung, "_FEW_LABELS", few_labels)
    settings = settings_for("zaffino2021", min_island=6)
    rng = np.random.default_rng(slab_voxels)
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(1, 16, 3))
        opened = rng.random(shape) < rng.uniform(0.3, 0.8)
        expected = _lung_islands(opened, (1.0, 1.0, 1.0), settings, "reference")
        if packed:
            found = _slab_islands(_bitmorph.pack(opened), 6, slab_voxels=slab_voxels, width=shape[2])
        else:
            found = _slab_islands(opened, 6, slab_voxels=slab_voxels)
        assert np.array_equal(found, expected)


def test_bounding_box_equals_argwhere_extent():
    from radiolab.lung import bounding_box

    rng = np.random.default_rng(5)
    for _ in range(300):
        shape = (int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.choice([3, 8, 16])))
        mask = rng.random(shape) < rng.uniform(0, 0.1)
        pad = tuple(int(p) for p in rng.integers(0, 3, 3))
        points = np.argwhere(mask)
        expected = None if points.size == 0 else tuple(
            slice(max(int(lo) - p, 0), min(int(hi) + 1 + p, n))
            for lo, hi, p, n in zip(points.min(axis=0), points.max(axis=0), pad, shape))
        assert bounding_box(mask, pad) == expected
        assert bounding_box(mask.astype(np.uint8) * 7, pad) == expected
