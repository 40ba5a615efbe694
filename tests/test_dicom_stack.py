"""radiolab.dicom.stack: regular grids from sheared, unevenly spaced slice stacks.

Oracle: scipy's RegularGridInterpolator (bilinear within each slice, at the physical
point of every output voxel) and a hand-written linear blend between the two slices
around it along the normal.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from radiolab.dicom.stack import GapError, find_gaps, plan_grid, resample_stack

ROW = np.array([1.0, 0.0, 0.0])
COL = np.array([0.0, np.cos(0.3), -np.sin(0.3)])  # an oblique plane, like a tilted gantry
NORMAL = np.cross(ROW, COL)
PIXEL = (0.8, 0.6)  # row spacing, column spacing (mm)


def sheared_stack(heights, drift_mm_per_mm, shape=(24, 20), seed=0):
    rng = np.random.default_rng(seed)
    slices = rng.integers(-900, 900, size=(len(heights), *shape)).astype(np.int16)
    origin = np.array([10.0, -20.0, 30.0])
    positions = np.array([origin + h * NORMAL + h * drift_mm_per_mm * COL for h in heights])
    return slices, positions


def oracle(slices, positions, plan, origin, point_of):
    """Expected HU of every output voxel, from scipy and np.interp."""
    n, rows, cols = slices.shape
    interpolators = [RegularGridInterpolator((np.arange(rows) * PIXEL[0], np.arange(cols) * PIXEL[1]),
                                             s.astype(float), method="linear", bounds_error=False,
                                             fill_value=np.nan) for s in slices]
    heights = (positions - positions[0]) @ NORMAL
    expected = np.full(plan.shape, np.nan)
    for m in range(plan.shape[0]):
        for j in range(plan.shape[1]):
            for i in range(plan.shape[2]):
                x = point_of(m, j, i)
                h = (x - positions[0]) @ NORMAL
                k = min(int(np.searchsorted(heights, h + 1e-6, side="right")) - 1, n - 2)
                w = (h - heights[k]) / (heights[k + 1] - heights[k])
                values = []
                for kk in (k, k + 1):
                    local = x - positions[kk]
                    values.append(interpolators[kk]([[local @ COL, local @ ROW]])[0])
                expected[m, j, i] = (1 - w) * values[0] + w * values[1]
    return expected


@pytest.mark.parametrize(("heights", "drift"), [
    ([0.0, 3.0, 6.0, 9.0], 0.37),           # tilt only, non-integer pixel shifts
    ([0.0, 3.0, 4.0, 8.0, 11.0], 0.0),       # uneven only
    ([0.0, 3.0, 4.0, 8.0, 11.0], -0.29),     # both
])
def test_resampling_matches_bilinear_then_linear(heights, drift):
    slices, positions = sheared_stack(heights, drift)
    plan = plan_grid(positions, ROW, COL, PIXEL, slices.shape[1:])
    assert plan.resampled
    assert plan.tilt_deg == pytest.approx(np.degrees(np.arctan(abs(drift))), abs=1e-6)
    out = resample_stack(slices, plan, PIXEL, padding_hu=None, fill_hu=-1024)
    origin = positions[0] + plan.grid_offset[0] * ROW + plan.grid_offset[1] * COL

    def point_of(m, j, i):
        return origin + i * PIXEL[1] * ROW + j * PIXEL[0] * COL + plan.target_heights[m] * NORMAL

    expected = oracle(slices, positions, plan, origin, point_of)
    inside = np.isfinite(expected)
    assert inside.mean() > 0.6
    # Rounded to whole HU; voxels whose bilinear footprint leaves the field take the
    # nearest pixel instead, so only voxels away from the field's rim are compared.
    from scipy import ndimage

    core = ndimage.binary_erosion(inside, structure=np.ones((1, 3, 3)))
    np.testing.assert_allclose(out[core], np.rint(expected[core]), atol=1)
    assert np.abs(out[core] - expected[core]).max() <= 0.5 + 1e-6


def test_plan_keeps_an_even_orthogonal_stack():
    slices, positions = sheared_stack([0.0, 2.5, 5.0, 7.5], 0.0)
    plan = plan_grid(positions, ROW, COL, PIXEL, slices.shape[1:])
    assert not plan.resampled and plan.notes == [] and plan.step_mm == pytest.approx(2.5)


def test_gaps_are_found_against_their_neighbours():
    # 4 mm steps then 7 mm steps (dcm_qa_ct/GE): uneven, no gap.
    heights = np.concatenate([np.arange(0, 52.1, 4.0), 53.08 + np.arange(0, 91.1, 7.0)])
    assert find_gaps(heights) == []
    # One slice missing among 1.25 mm steps: a 2.5 mm gap.
    (gap,) = find_gaps(np.array([0.0, 1.25, 2.5, 5.0, 6.25, 7.5]))
    assert (gap.start_mm, gap.end_mm, gap.size_mm, gap.missing_slices) == (2.5, 5.0, 2.5, 1)
    slices, positions = sheared_stack([0.0, 1.25, 2.5, 5.0, 6.25, 7.5], 0.0)
    with pytest.raises(GapError, match=r"gap of 2\.5 mm between z=.* mm \(slices around it 1\.25 mm apart"):
        plan_grid(positions, ROW, COL, PIXEL, slices.shape[1:])
    plan = plan_grid(positions, ROW, COL, PIXEL, slices.shape[1:], allow_gaps=True)
    assert plan.target_heights[-1] == pytest.approx(7.5) and "2.5 mm interpolated across 1 gap" in plan.notes
