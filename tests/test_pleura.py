"""Pleural envelope of the default preset, on hand-built slices whose bites are known."""

from __future__ import annotations

import numpy as np

from radiolab.pleura import pleural_fill


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
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), min_hu=-155.0, max_hu=150.0)
    assert np.array_equal(added[0], notch)


def test_tissue_on_the_centres_side_of_the_lung_is_not_added():
    # The same notch on the near side (the heart's side): rays meet it before any lung.
    lung, volume, notch = _slice_with_notch(slice(8, 12))
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), min_hu=-155.0, max_hu=150.0)
    assert not added.any()


def test_only_tissue_values_are_added():
    # Bowel gas (-1000 HU) and bone (+400 HU) in a costal bite stay out.
    lung, volume, notch = _slice_with_notch(slice(17, 21))
    volume[0, 15:20][notch[15:20]] = -1000.0
    volume[0, 20:26][notch[20:26]] = 400.0
    added = pleural_fill(lung, volume, np.array([[20.0, 2.0]]), min_hu=-155.0, max_hu=150.0)
    assert not added.any()
