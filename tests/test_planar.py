"""In-plane erosion and hole filling against scipy.ndimage, slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radiolab.planar import erode_in_plane, fill_holes_in_plane

CROSS = ndimage.generate_binary_structure(2, 1)


def random_slices(seed, shape=(6, 40, 50)):
    rng = np.random.default_rng(seed)
    # Smoothed noise thresholded: blobs with holes, touching the edges.
    return ndimage.gaussian_filter(rng.standard_normal(shape), (0, 2, 2)) > 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("outside", [False, True])
def test_erosion_matches_scipy(seed, outside):
    mask = random_slices(seed)
    expected = np.stack([ndimage.binary_erosion(plane, CROSS, border_value=int(outside)) for plane in mask])
    assert np.array_equal(erode_in_plane(mask, outside=outside), expected)
    assert np.array_equal(erode_in_plane(mask[2], outside=outside), expected[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hole_filling_matches_scipy(seed):
    mask = ~random_slices(seed)
    expected = np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    assert not np.array_equal(expected, mask)
    assert np.array_equal(fill_holes_in_plane(mask), expected)


def test_erosion_matches_scipy_on_planes_of_any_size():
    rng = np.random.default_rng(3)
    for _ in range(100):
        shape = tuple(int(n) for n in rng.integers(1, 30, size=2))
        plane = ndimage.binary_opening(rng.random(shape) < 0.6)
        assert np.array_equal(erode_in_plane(plane), ndimage.binary_erosion(plane))
