"""Body-envelope helpers of the default preset, against hand counts."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from radiolab.body import centre_offset_mm, cut_at_the_sides, cut_free, leaky_islands, scan_circle_fill


def test_centre_offset_is_the_mean_left_right_distance_in_mm():
    mask = np.zeros((2, 4, 10), dtype=bool)
    mask[0, 1, [6, 7]] = True  # 1 and 2 columns right of a centre at column 5
    mask[1, 2, 2] = True  # 1 column left of a centre at column 3
    centres = np.array([[2.0, 5.0], [2.0, 3.0]])
    # By hand: (1 + 2 - 1) / 3 columns of 0.5 mm.
    assert np.isclose(centre_offset_mm(mask, centres, (1.0, 1.0, 0.5)), 2.0 / 3.0 * 0.5)


def test_cut_at_the_sides_looks_at_the_given_slices_only():
    inside = np.zeros((3, 5, 6), dtype=bool)
    inside[:, 1:4, 1:5] = True
    inside[2, 2, 5] = True  # the body reaches the right edge in strided slice 2
    steps = (2, 1, 1)
    assert not cut_at_the_sides(inside, steps, np.array([0, 1, 2, 3]))
    assert cut_at_the_sides(inside, steps, np.array([4, 5]))


def _circle_scan(fill_hu, air_sd=40.0):
    """Noisy air clipped at -1024 HU inside a scan circle of radius 20, ``fill_hu`` outside."""
    rng = np.random.default_rng(3)
    volume = np.clip(rng.normal(-1000.0, air_sd, (4, 48, 48)), -1024, None).astype(np.int16)
    rows, cols = np.mgrid[:48, :48]
    outside = (rows - 23.5) ** 2 + (cols - 23.5) ** 2 > 20.0 ** 2
    volume[:, outside] = fill_hu
    return volume, np.broadcast_to(outside, volume.shape)


def test_scan_circle_fill_at_minus_1024_is_the_outside_of_the_circle():
    volume, outside = _circle_scan(-1024)
    # The clipped air inside the circle holds the fill's value too (about 27 % of it).
    assert ((volume == -1024) & ~outside).mean() > 0.1
    fill = scan_circle_fill(volume, air_floor_hu=-1500.0)
    # The whole outside, and of the air only clipped voxels within three voxels of it.
    assert fill[outside].mean() >= 0.99
    assert not (fill & ~ndimage.binary_dilation(outside, np.ones((1, 7, 7), bool))).any()


def test_no_scan_circle_fill_when_the_floor_already_leaves_it_out_or_the_corners_are_air():
    volume, _ = _circle_scan(-2048)
    assert scan_circle_fill(volume, air_floor_hu=-1500.0) is None
    noisy = np.random.default_rng(4).normal(-1000.0, 40.0, (4, 48, 48)).astype(np.int16)
    assert scan_circle_fill(noisy, air_floor_hu=-1500.0) is None


def _lung_joined_to_the_outside():
    """A body box holding a lung (-850 HU) that a one-voxel channel joins to the air around it."""
    inside = np.zeros((12, 30, 30), dtype=bool)
    inside[:, 5:25, 5:25] = True
    lung = np.zeros_like(inside)
    lung[2:10, 9:21, 9:21] = True
    channel = np.zeros_like(inside)
    channel[5, 15, :9] = True
    volume = np.full(inside.shape, 40.0)
    volume[~inside | channel] = -1000.0
    volume[lung] = -850.0
    return inside, lung, channel, volume


def test_leaky_islands_marks_outside_air_with_a_lung_in_the_body():
    inside, lung, channel, volume = _lung_joined_to_the_outside()
    labels = np.zeros(inside.shape, dtype=np.int32)
    labels[~inside | lung | channel] = 1
    # Label 2: pure air in the body (between an arm and the torso) joined to the outside.
    labels[2:10, 22:24, 6:24] = 2
    volume[labels == 2] = -1000.0
    outside = np.array([False, True, True])
    found = leaky_islands(labels, 2, outside, inside, (1, 1, 1), volume, min_voxels=100, air_hu=-950.0)
    assert found.tolist() == [False, True, False]
    # Too small a lung part: not marked.
    found = leaky_islands(labels, 2, outside, inside, (1, 1, 1), volume, min_voxels=2000, air_hu=-950.0)
    assert not found.any()


def test_cut_free_keeps_the_lung_and_leaves_the_channel_and_the_outside():
    inside, lung, channel, volume = _lung_joined_to_the_outside()
    island = ~inside | lung | channel
    freed = cut_free(island, inside, (1, 1, 1), (1.0, 1.0, 1.0), radius_mm=1.5, outside_fraction=0.5)
    # A ball of 1.5 mm at 1 mm voxels is scipy's 18-neighbourhood: the opening cuts the
    # channel, the air around the box falls away, and the lung's piece grows back by
    # the same ball within the island (its edges, and the channel's first voxel).
    ball = ndimage.generate_binary_structure(3, 2)
    expected = island & ndimage.binary_dilation(ndimage.binary_opening(lung, structure=ball), structure=ball)
    assert np.array_equal(freed, expected)
    assert not (freed & ~inside).any() and np.count_nonzero(freed & channel) == 1
