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


def test_default_preset_equals_paper_at_paper_geometry():
    paper, default = PRESETS["zaffino2021"], PRESETS["default"]
    in_plane, slice_mm = 0.68, 0.3
    assert default.min_island == pytest.approx(paper.min_island * in_plane * in_plane * slice_mm / 1000, rel=0.01)
    for mm, voxels in zip(default.closing_radii, paper.closing_radii):
        assert mm == pytest.approx((voxels + 0.5) * in_plane, abs=0.05)
    assert default.opening == pytest.approx(paper.opening * in_plane, abs=0.05)


def test_ball_is_physical():
    element = ball(2.0, (2.0, 1.0, 1.0))
    assert element.shape == (3, 5, 5)
    assert element[1, 2, 4] and element[0, 2, 2] and not element[0, 2, 3]


@pytest.mark.parametrize("slab_voxels", [1, 37, 500, 1 << 23])
def test_islands_labelled_in_slabs_equal_scipy_label(slab_voxels):
    from radiolab.lung import _lung_islands, _slab_islands

    settings = settings_for("zaffino2021", min_island=6)
    rng = np.random.default_rng(slab_voxels)
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(1, 16, 3))
        opened = rng.random(shape) < rng.uniform(0.3, 0.8)
        expected = _lung_islands(opened, (1.0, 1.0, 1.0), settings, "reference")
        assert np.array_equal(_slab_islands(opened, 6, slab_voxels=slab_voxels), expected)


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
