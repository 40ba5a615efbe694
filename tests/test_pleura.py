"""Pleural envelope of the default preset, on hand-built slices whose bites are known."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from radiolab.pleura import _held_holes, pleural_fill

# Slices of 5 mm pixels (a coarse chest CT such as CIP's TestInput); bites stay within
# the hull (carrying them to the wall is tested on its own below).
COARSE = dict(min_hu=-155.0, max_hu=150.0, pixel_mm2=25.0, wall_gap_deg=None)


def _slice_with_notch(notch_columns):
    """A 21 x 13 pixel lung at 5 pixels from the centre, a notch of 11 x 4 pixels cut out of it.

    Everything that is not aerated lung is tissue of 40 HU.
    """
    rectangle = np.zeros((40, 40), dtype=bool)
    rectangle[10:31, 8:21] = True
    notch = np.zeros_like(rectangle)
    notch[15:26, notch_columns] = True
    lung = rectangle & ~notch
    volume = np.full((1, 40, 40), 40.0)
    volume[0][lung] = -850.0
    return lung[None], volume, notch


def test_a_costal_bite_of_a_coarse_slice_is_filled_exactly():
    # The notch lies on the far side of the lung from the body's centre (row 20, column 2):
    # every ray to it crosses the lung first. On a coarse grid most of the 720 direction
    # bins hold no lung pixel centre; before, only 14 of its 44 pixels were filled.
    lung, volume, notch = _slice_with_notch(slice(17, 21))
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), **COARSE)
    assert np.array_equal(added[0], notch)


def test_tissue_on_the_centres_side_of_the_lung_is_not_added():
    # The same notch on the near side (the heart's side): rays meet it before any lung.
    lung, volume, notch = _slice_with_notch(slice(8, 12))
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), **COARSE)
    assert not added.any()


def test_only_tissue_values_are_added():
    # Bowel gas (-1000 HU) and bone (+400 HU) in a costal bite stay out.
    lung, volume, notch = _slice_with_notch(slice(17, 21))
    volume[0, 15:20][notch[15:20]] = -1000.0
    volume[0, 20:26][notch[20:26]] = 400.0
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), **COARSE)
    assert not added.any()


def _ring_stack(first_slice_full):
    """Three slices of a ring of lung around a 9 x 9 pixel hole of tissue (40 HU).

    Slice 0 (the lowest, axis 0 runs to the head) is a full disc of lung when
    ``first_slice_full``, else the same ring (tissue under the hole, like the liver
    under the dome of the diaphragm).
    """
    rows, cols = np.indices((40, 40))
    disc = (rows - 20) ** 2 + (cols - 20) ** 2 <= 12**2
    hole = (np.abs(rows - 20) <= 4) & (np.abs(cols - 20) <= 4)
    lung = np.stack([disc if first_slice_full else disc & ~hole, disc & ~hole, disc & ~hole])
    volume = np.where(lung, -850.0, 40.0)
    return lung, volume, hole


def test_a_lesion_enclosed_by_lung_with_lung_below_is_filled():
    lung, volume, hole = _ring_stack(first_slice_full=True)
    centres = np.full((3, 2), 20.0)
    added = pleural_fill(lung, volume, centres, **COARSE)
    # Slice 1 has lung under its hole; slice 2 has what slice 1 gained.
    assert not added[0].any()
    assert np.array_equal(added[1], hole) and np.array_equal(added[2], hole)


def test_tissue_enclosed_by_lung_with_tissue_below_is_not_filled():
    # The dome of the diaphragm inside a basal ring: the liver lies under it.
    lung, volume, hole = _ring_stack(first_slice_full=False)
    centres = np.full((3, 2), 20.0)
    assert not pleural_fill(lung, volume, centres, **COARSE).any()


def test_hole_finder_matches_scipy_on_random_planes():
    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = tuple(int(n) for n in rng.integers(1, 40, size=2))
        plane = ndimage.binary_opening(rng.random(shape) < 0.6)
        below = rng.random(shape) < 0.7
        # Oracle: scipy's hole filling, then each hole's share of pixels with lung below.
        holes, count = ndimage.label(ndimage.binary_fill_holes(plane) & ~plane)
        area = np.bincount(holes.ravel(), minlength=count + 1)
        held = np.bincount(holes.ravel(), weights=below.ravel(), minlength=count + 1)
        keep = (held >= 0.5 * area) & (area <= plane.sum())
        keep[0] = False
        got = _held_holes(plane, below, np.ones(shape, dtype=bool), min_below=0.5, max_bite=1.0)
        assert np.array_equal(got, keep[holes])


def _sector_with_outer_consolidation():
    """A lung sector between 8 and 20 pixels from the centre (angles -60 to 60 degrees),
    whose outer part (14-20 pixels, -20 to 20 degrees) is consolidation, on 2 mm pixels.

    The consolidation reaches the lung's outermost extent in its directions: the hull
    of the aerated lung cuts it with a chord. Everything that is not aerated lung is
    tissue of 40 HU, the chest wall beyond 20 pixels included.
    """
    rows, cols = np.indices((60, 60))
    radius = np.hypot(rows - 30, cols - 10)
    angle = np.degrees(np.arctan2(rows - 30, cols - 10))
    sector = (radius >= 8) & (radius <= 20) & (np.abs(angle) <= 60)
    consolidation = sector & (radius >= 14) & (np.abs(angle) <= 20)
    lung = sector & ~consolidation
    volume = np.where(lung, -850.0, 40.0)[None]
    return lung[None], volume, consolidation, radius


def test_consolidation_out_to_the_wall_is_carried_past_the_hull():
    lung, volume, consolidation, radius = _sector_with_outer_consolidation()
    centres = np.array([[30.0, 10.0]])
    # 2 mm pixels; the lung in front of a bite loses one pixel of its edge.
    kwargs = dict(min_hu=-155.0, max_hu=150.0, pixel_mm2=4.0, front_mm=2.0)
    within_hull = pleural_fill(lung, volume, centres, wall_gap_deg=None, **kwargs)[0]
    to_the_wall = pleural_fill(lung, volume, centres, **kwargs)[0]
    # By hand: the chord between the flanks' outer corners leaves the consolidation's
    # outer rim out (measured: 81 % kept); the wall's circle about the centre takes it
    # in and stops there (measured: 96 %; the rim's two end pixels, in directions the
    # flanks' pixels cover, and one pixel on the wall's line stay out).
    assert within_hull[consolidation].mean() < 0.9
    assert to_the_wall[consolidation].mean() >= 0.95
    assert not (to_the_wall & (radius > 21.0)).any()
