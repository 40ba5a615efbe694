"""Body-envelope helpers of the default preset, against hand counts."""

from __future__ import annotations

import numpy as np

from radiolab.body import centre_offset_mm, cut_at_the_sides


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
