"""The trachea trace on hand-built air masks whose airway is known voxel by voxel."""

from __future__ import annotations

import numpy as np
import pytest

from radiolab.airways import trace_airways

SPACING = (2.0, 1.0, 1.0)
SHAPE = (60, 120, 120)
LIMITS = dict(min_area_cm2=0.5, max_area_cm2=8.0, midline_mm=30.0, seed_search_mm=60.0, min_length_mm=30.0,
              growth=2.0, bridge_mm=0.0)


def chest_air(trachea_column):
    """A lung block in slices 0-29 and a trachea of 7 mm radius from the top down onto it."""
    air = np.zeros(SHAPE, dtype=bool)
    air[:30, 20:100, 10:111] = True
    rows, cols = np.mgrid[:SHAPE[1], :SHAPE[2]]
    disc = (rows - 50) ** 2 + (cols - trachea_column) ** 2 <= 7 ** 2
    trachea = np.zeros(SHAPE, dtype=bool)
    trachea[30:] = disc
    return air | trachea, trachea


def test_a_dead_end_seed_gives_way_to_the_trachea():
    air, trachea = chest_air(60)
    # Gas in the oesophagus behind the trachea: a larger central island in the top
    # slices (2.5 cm² against 1.5 cm²) that ends after 16 mm, in no lung. The trace
    # used to start from it alone and find no airway.
    air[52:, 75:85, 48:73] = True
    found = trace_airways(air, SPACING, midline_index=60.0, **LIMITS)
    assert found is not None
    assert np.array_equal(found.mask, trachea)
    assert found.length_mm == pytest.approx(60.0)


def test_a_trachea_off_the_spine_column_is_found_at_the_body_centre():
    # A rolled patient: the trachea 40 mm from the spine's column, at the body's centre.
    air, trachea = chest_air(100)
    assert trace_airways(air, SPACING, midline_index=60.0, **LIMITS) is None
    centres = np.full(SHAPE[0], 100.0)
    found = trace_airways(air, SPACING, midline_index=60.0, centre_columns=centres, **LIMITS)
    assert found is not None
    assert np.array_equal(found.mask, trachea)
    assert found.midline_index == pytest.approx(100.0)


def test_a_trace_cut_short_is_taken_up_again_below_the_cut():
    air, trachea = chest_air(60)
    # One slice where noise joins 3.5 cm² of air to the trachea: followed from the top,
    # the island is too large a step (more than twice the area above plus 1 cm²) and
    # ends the trace 20 mm down, too short for an airway. Seeded at that slice, the
    # trace takes the whole trachea, with that slice's island.
    blob = np.zeros(SHAPE, dtype=bool)
    blob[49, 40:50, 45:80] = True
    air |= blob
    found = trace_airways(air, SPACING, midline_index=60.0, **LIMITS)
    assert found is not None
    assert np.array_equal(found.mask, trachea | blob)
