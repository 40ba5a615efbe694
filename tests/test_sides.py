import cc3d
import numpy as np
import pytest
from scipy import ndimage

from radiolab.lung import lung_mask
from radiolab.sides import LEFT, RIGHT, split_sides
from radiolab.synthetic import chest_phantom

SHAPE, SPACING = (40, 64, 64), (7.0, 5.0, 5.0)


@pytest.fixture(scope="module")
def phantom():
    return chest_phantom(SHAPE, SPACING, lesion_fraction=0.2, seed=4)


def truth_sides(lung):
    """Right (lower x) and left lung of a phantom's truth mask, which has two islands."""
    labels, count = cc3d.connected_components(lung, connectivity=6, return_N=True)
    assert count == 2
    x_centre = [np.argwhere(labels == k)[:, 2].mean() for k in (1, 2)]
    right = labels == (1 if x_centre[0] < x_centre[1] else 2)
    return right, lung & ~right


def accuracy(sides, right, left):
    return float(np.mean(sides[right] == RIGHT)), float(np.mean(sides[left] == LEFT))


def test_separate_boxes():
    mask = np.zeros((4, 6, 12), bool)
    mask[:, 1:5, 1:5] = True
    mask[:, 1:5, 7:11] = True
    sides = split_sides(mask, (2.0, 1.0, 1.0))
    assert sides.dtype == np.uint8
    assert np.all(sides[:, 1:5, 1:5] == RIGHT)
    assert np.all(sides[:, 1:5, 7:11] == LEFT)
    assert np.all(sides[~mask] == 0)


def test_anterior_bridge(phantom):
    lung = phantom.truth["lung"]
    right, left = truth_sides(lung)
    bridged = lung.copy()
    points = np.argwhere(lung)
    z0, z1 = np.percentile(points[:, 0], [25, 75]).astype(int)
    y_front = int(points[:, 1].min()) + 3
    x0 = int(np.argwhere(right)[:, 2].mean())
    x1 = int(np.argwhere(left)[:, 2].mean())
    bridged[z0:z1, y_front:y_front + 2, x0:x1] = True  # a 10 mm thick anterior junction
    assert cc3d.connected_components(bridged, connectivity=6, return_N=True)[1] == 1
    sides = split_sides(bridged, SPACING)
    assert accuracy(sides, right, left) == (1.0, 1.0)
    assert np.all((sides > 0) == bridged)
    # the bridge is cut between the lungs: its right half goes right
    bridge = bridged & ~lung
    bridge_x = np.argwhere(bridge)[:, 2]
    assert np.all(sides[bridge][bridge_x < (x0 + x1) / 2 - 1] == RIGHT)
    assert np.all(sides[bridge][bridge_x > (x0 + x1) / 2 + 1] == LEFT)


@pytest.mark.parametrize("iterations", [6, 8])
def test_lungs_fused_by_dilation(phantom, iterations):
    lung = phantom.truth["lung"]
    right, left = truth_sides(lung)
    fused = ndimage.binary_dilation(lung, iterations=iterations)
    assert cc3d.connected_components(fused, connectivity=6, return_N=True)[1] == 1
    sides = split_sides(fused, SPACING)
    right_ok, left_ok = accuracy(sides, right, left)
    assert right_ok > 0.99 and left_ok > 0.99
    assert np.all((sides > 0) == fused)


def test_threshold_mask_joined_by_airways(phantom):
    # The paper's pipeline (sizes scaled to the small phantom) keeps the airways that
    # join the lungs; the default preset separates the lungs itself.
    mask = lung_mask(phantom.volume, SPACING, preset="zaffino2021", opening=0, min_island=2000,
                     closing_radii=(6, 4))
    assert cc3d.connected_components(mask, connectivity=6, return_N=True)[1] == 1
    right, left = truth_sides(phantom.truth["lung"])
    sides = split_sides(mask, SPACING)
    right_ok, left_ok = accuracy(sides, right & mask, left & mask)
    assert right_ok > 0.99 and left_ok > 0.99
    # right and left lung volumes of the phantom differ by its random jitter only
    counts = np.bincount(sides.ravel(), minlength=3)
    assert 0.8 < counts[RIGHT] / counts[LEFT] < 1.25


def test_direction_decides_the_side(phantom):
    lung = phantom.truth["lung"]
    right, left = truth_sides(lung)
    flipped = lung[:, :, ::-1]
    # Same array flipped along x with the x direction cosine negated: same anatomy.
    flip_x = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    sides = split_sides(flipped, SPACING, direction=flip_x)[:, :, ::-1]
    assert accuracy(sides, right, left) == (1.0, 1.0)
    # Ignoring the direction swaps the sides.
    swapped = split_sides(flipped, SPACING)[:, :, ::-1]
    assert accuracy(swapped, left, right) == (1.0, 1.0)
    # An axis permutation: x index along physical y, y index along physical x.
    transposed = np.ascontiguousarray(lung.transpose(0, 2, 1))
    swap_xy = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    sides = split_sides(transposed, (SPACING[0], SPACING[2], SPACING[1]), direction=swap_xy).transpose(0, 2, 1)
    assert accuracy(sides, right, left) == (1.0, 1.0)


def test_single_lung_goes_to_its_side(phantom):
    right, left = truth_sides(phantom.truth["lung"])
    only_left = split_sides(left, SPACING)
    assert np.all(only_left[left] == LEFT) and np.all(only_left[~left] == 0)
    only_right = split_sides(right, SPACING)
    assert np.all(only_right[right] == RIGHT)


def test_empty_and_invalid():
    assert not split_sides(np.zeros((3, 4, 5), bool), (1, 1, 1)).any()
    with pytest.raises(ValueError, match="3-D"):
        split_sides(np.zeros((4, 5), bool), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        split_sides(np.zeros((3, 4, 5), bool), (1, 0, 1))
    with pytest.raises(ValueError, match="direction"):
        split_sides(np.zeros((3, 4, 5), bool), (1, 1, 1), direction=(1, 0, 0))
    with pytest.raises(ValueError, match="min_share"):
        split_sides(np.zeros((3, 4, 5), bool), (1, 1, 1), min_share=0.7)


@pytest.mark.parametrize("grid_mm", [None, 2.0])
def test_single_lung_at_clinical_resolution_keeps_its_side(grid_mm):
    # One ellipsoid lung on the patient's left (high x index) in a 100 x 200 x 300 mask
    # at 0.7 mm: the side is decided against the whole volume's centre, not against the
    # centre of the lung's own box on the block grid.
    z, y, x = np.ogrid[:100, :200, :300]
    lung = ((z - 50) / 40.0) ** 2 + ((y - 100) / 70.0) ** 2 + ((x - 220) / 50.0) ** 2 <= 1.0
    sides = split_sides(lung, (0.7, 0.7, 0.7), grid_mm=grid_mm)
    assert set(np.unique(sides[lung])) == {LEFT}


def test_single_lung_goes_by_the_given_midline():
    z, y, x = np.ogrid[:20, :40, :60]
    lung = ((z - 10) / 8.0) ** 2 + ((y - 20) / 15.0) ** 2 + ((x - 40) / 10.0) ** 2 <= 1.0
    # Midline at x index 50 (50 mm at 1 mm voxels): the lung lies on its right.
    assert set(np.unique(split_sides(lung, (1.0, 1.0, 1.0), midline_mm=50.0)[lung])) == {RIGHT}
    assert set(np.unique(split_sides(lung, (1.0, 1.0, 1.0))[lung])) == {LEFT}


def test_mean_index_equals_argwhere_mean():
    from radiolab.sides import _mean_index

    rng = np.random.default_rng(3)
    for _ in range(100):
        mask = rng.random(tuple(int(n) for n in rng.integers(1, 30, 3))) < rng.uniform(0.01, 1.0)
        if mask.any():
            assert np.array_equal(_mean_index(mask), np.argwhere(mask).mean(axis=0))
