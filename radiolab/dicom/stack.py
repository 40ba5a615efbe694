"""Slice stacks onto regular grids: gantry tilt, uneven spacing and gaps.

Pure functions on slice positions and pixel arrays; no file is read here.

A DICOM series is a stack of 2-D slices, each with its own ImagePositionPatient
``p_k``; all share the row cosine ``r``, the column cosine ``c`` and the normal
``n = r x c``. The stack sits on a regular grid when every ``p_k - p_0`` is a multiple
of one step along ``n``. Two things break that:

- **gantry tilt**: the slices are shifted within their planes from one to the next
  (a sheared stack), so ``p_k - p_0`` has a component along ``r`` or ``c``;
- **uneven spacing**: the steps ``(p_{k+1} - p_k) . n`` differ.

:func:`plan_grid` measures both and chooses the target grid; :func:`resample_stack`
fills it by shifting each slice within its plane (bilinear) and interpolating linearly
between the two nearest slices along ``n``. Padding (the value outside the scan
circle) is never blended with tissue: wherever a padded or out-of-field pixel would
contribute, the nearest slice's nearest pixel is taken instead, as dcm2niix does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A step differing from the median step by more than this (mm) or by more than
# UNEVEN_RELATIVE of it, whichever is smaller, makes the spacing uneven.
UNEVEN_TOLERANCE_MM = 0.2
UNEVEN_RELATIVE = 0.01
# Position noise below this (mm) is ignored (DS strings hold about 6 decimals).
POSITION_NOISE_MM = 1e-3
# A step at least this many times the local step is a gap (one missing slice is 2x).
GAP_FACTOR = 1.5
# The local step of a gap is the median of this many steps on each side of it.
GAP_NEIGHBOURS = 3
# Tilt below this angle (degrees) or in-plane drift below this (mm) is ignored.
TILT_TOLERANCE_DEG = 0.1
TILT_TOLERANCE_MM = 0.01
# Uneven stacks are resampled at most to this many times the slice count.
MAX_SLICE_FACTOR = 2


class GapError(ValueError):
    """A gap in the slice positions that would be interpolated; carries its description."""


@dataclass(frozen=True)
class Gap:
    """One gap between consecutive slices.

    Attributes
    ----------
    index : int
        The gap lies between sorted slices ``index`` and ``index + 1``.
    start_mm, end_mm : float
        Positions of the two slices along the normal, in mm.
    size_mm : float
        Their distance, in mm.
    local_step_mm : float
        The median step of the neighbouring slices, in mm.
    """

    index: int
    start_mm: float
    end_mm: float
    size_mm: float
    local_step_mm: float

    @property
    def missing_slices(self) -> int:
        """Slices that would fill the gap at the local step."""
        return max(int(round(self.size_mm / self.local_step_mm)) - 1, 0)

    def __str__(self) -> str:
        missing = self.missing_slices
        return (f"gap of {mm(self.size_mm)} mm between z={mm(self.start_mm)} and z={mm(self.end_mm)} mm "
                f"(slices around it {mm(self.local_step_mm)} mm apart, about {missing} slice"
                f"{'' if missing == 1 else 's'} missing)")


@dataclass(frozen=True)
class GridPlan:
    """How a sorted slice stack maps onto a regular grid.

    Attributes
    ----------
    heights : ndarray
        Position of each sorted slice along the normal, relative to the first, in mm.
    offsets : ndarray
        In-plane position of each slice relative to the first, shape (n, 2): along the
        row cosine and along the column cosine, in mm.
    tilt_deg : float
        Angle between the stacking direction (first to last slice) and the normal.
    target_heights : ndarray
        Heights of the output slices, in mm (equal to ``heights`` when not resampled).
    grid_offset : tuple of float
        In-plane offset (mm, along row and column cosine) of the output grid's first
        voxel from the first slice's ImagePositionPatient; non-zero only for tilt.
    shape : tuple of int
        Output (slices, rows, columns).
    step_mm : float
        Output slice step, in mm.
    gaps : list of Gap
        Gaps found (interpolated when allowed).
    notes : list of str
        What was changed and why, for the log and the NRRD header.
    """

    heights: np.ndarray
    offsets: np.ndarray
    tilt_deg: float
    target_heights: np.ndarray
    grid_offset: tuple[float, float]
    shape: tuple[int, int, int]
    step_mm: float
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def tilted(self) -> bool:
        return bool(np.any(np.abs(self.offsets) > TILT_TOLERANCE_MM)) and self.tilt_deg > TILT_TOLERANCE_DEG

    @property
    def resampled(self) -> bool:
        """True when the output is not the slices stacked as they are."""
        return self.tilted or len(self.target_heights) != len(self.heights) \
            or not np.allclose(self.target_heights, self.heights, atol=POSITION_NOISE_MM)


def mm(value: float) -> str:
    """A length in mm for messages: up to 3 decimals, at least one."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def find_gaps(heights: np.ndarray, *, gap_factor: float = GAP_FACTOR) -> list[Gap]:
    """Steps at least ``gap_factor`` times the median of their neighbouring steps.

    The neighbours are up to GAP_NEIGHBOURS steps on each side, so that a series whose
    spacing changes partway (4 mm, then 7 mm) is uneven, not gapped, while one missing
    slice (a step of twice its neighbours) is a gap.

    Parameters
    ----------
    heights : ndarray
        Sorted slice positions along the normal, in mm.
    gap_factor : float
        Ratio of a step to its local step from which it counts as a gap.

    Returns
    -------
    list of Gap

    >>> [str(g) for g in find_gaps(np.array([0.0, 5.0, 10.0, 20.0, 25.0]))]
    ['gap of 10.0 mm between z=10.0 and z=20.0 mm (slices around it 5.0 mm apart, about 1 slice missing)']
    """
    steps = np.diff(heights)
    gaps = []
    if len(steps) < 2:
        return gaps
    for index, step in enumerate(steps):
        lo, hi = max(index - GAP_NEIGHBOURS, 0), min(index + GAP_NEIGHBOURS + 1, len(steps))
        neighbours = np.concatenate([steps[lo:index], steps[index + 1:hi]])
        local = float(np.median(neighbours))
        if step >= gap_factor * local:
            gaps.append(Gap(index, float(heights[index]), float(heights[index + 1]), float(step), local))
    return gaps


def plan_grid(positions: np.ndarray, row: np.ndarray, col: np.ndarray, pixel_spacing: tuple[float, float],
              shape: tuple[int, int], *, allow_gaps: bool = False, gap_factor: float = GAP_FACTOR,
              uneven_tolerance_mm: float = UNEVEN_TOLERANCE_MM,
              uneven_relative: float = UNEVEN_RELATIVE) -> GridPlan:
    """Measure tilt, spacing and gaps of a sorted stack and choose its regular grid.

    Parameters
    ----------
    positions : ndarray
        ImagePositionPatient of each slice, shape (n, 3), in mm (LPS), sorted along the
        normal; n >= 2 and positions strictly increasing along the normal.
    row, col : ndarray
        Row and column direction cosines (ImageOrientationPatient), unit vectors.
    pixel_spacing : tuple of float
        (row spacing, column spacing) in mm, i.e. PixelSpacing.
    shape : tuple of int
        (rows, columns) of each slice.
    allow_gaps : bool
        Interpolate across gaps instead of refusing the stack.
    gap_factor : float
        See :func:`find_gaps`.
    uneven_tolerance_mm, uneven_relative : float
        A step differing from the median step by more than ``uneven_tolerance_mm`` or
        by more than ``uneven_relative`` times the median, whichever is smaller, makes
        the stack uneven and resampled.

    Returns
    -------
    GridPlan
        Even stacks keep their slices (step = the mean step). Uneven stacks get
        ``count = min(ceil(extent / smallest step) + 1, MAX_SLICE_FACTOR * n)`` slices
        spanning the extent exactly (``step = extent / (count - 1)``), so at most twice
        as many slices as the input (dcm2niix's equalisation has the same 2x cap). Tilted stacks are shifted in-plane onto an orthogonal grid
        whose rows and columns grow to hold every shifted slice.

    Raises
    ------
    GapError
        If a gap is found and ``allow_gaps`` is False; the message gives the gap's
        position and size in mm.
    """
    positions = np.asarray(positions, dtype=float)
    normal = np.cross(row, col)
    relative = positions - positions[0]
    heights = relative @ normal
    offsets = np.column_stack([relative @ row, relative @ col])
    drift = float(np.linalg.norm(offsets[-1]))
    tilt_deg = float(np.degrees(np.arctan2(drift, heights[-1] - heights[0])))
    notes: list[str] = []
    steps = np.diff(heights)
    median = float(np.median(steps))
    tolerance = max(min(uneven_tolerance_mm, uneven_relative * median), POSITION_NOISE_MM)
    uneven = bool(np.any(np.abs(steps - median) > tolerance))

    # Gaps are reported at their positions along the normal ("z"), not relative ones.
    gaps = find_gaps(positions @ normal, gap_factor=gap_factor)
    if gaps and not allow_gaps:
        listed = "; ".join(str(g) for g in gaps[:3]) + ("; ..." if len(gaps) > 3 else "")
        raise GapError(f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} in the slice positions: {listed}; "
                       "volumes across a gap would be wrong. Give --allow-gaps to interpolate across it")

    n = len(heights)
    extent = float(heights[-1] - heights[0])
    if uneven:
        # As fine as the smallest step, at most MAX_SLICE_FACTOR times the slices, and
        # spanning the whole extent so that no end slab is lost.
        count = min(int(np.ceil(extent / float(steps.min()) - 1e-6)) + 1, MAX_SLICE_FACTOR * n)
        step = extent / (count - 1)
        target = np.arange(count) * step
        target[-1] = extent
        distinct = sorted({round(float(s), 3) for s in steps})
        shown = ", ".join(mm(s) for s in distinct[:6]) + (", ..." if len(distinct) > 6 else "")
        notes.append(f"uneven slice spacing (steps {shown} mm): resampled to {count} slices at "
                     f"{mm(step)} mm with linear interpolation along the slice normal")
        for gap in gaps:
            notes.append(f"interpolated across a {str(gap)}")
        if gaps:
            interpolated = sum(g.size_mm for g in gaps)
            notes.append(f"{mm(interpolated)} mm interpolated across {len(gaps)} gap{'s' if len(gaps) > 1 else ''}")
    else:
        step = extent / (n - 1)
        target = heights.copy()

    rows, cols = shape
    row_spacing, col_spacing = pixel_spacing
    grid_offset = (0.0, 0.0)
    tilted = drift > TILT_TOLERANCE_MM and tilt_deg > TILT_TOLERANCE_DEG
    if tilted:
        low = np.minimum(offsets.min(axis=0), 0.0)
        high = np.maximum(offsets.max(axis=0), 0.0)
        grid_offset = (float(low[0]), float(low[1]))
        cols += int(np.ceil((high[0] - low[0]) / col_spacing - 1e-6))
        rows += int(np.ceil((high[1] - low[1]) / row_spacing - 1e-6))
        notes.append(f"gantry tilt of {tilt_deg:.2f} degrees (from ImagePositionPatient): slices shifted "
                     f"within their planes onto an orthogonal grid of {rows} x {cols} pixels")
        if not uneven:
            target = np.arange(n) * step
    return GridPlan(heights=heights, offsets=offsets, tilt_deg=tilt_deg if tilted else 0.0,
                    target_heights=target, grid_offset=grid_offset, shape=(len(target), rows, cols),
                    step_mm=float(step), gaps=gaps, notes=notes)


def resample_stack(slices: np.ndarray, plan: GridPlan, pixel_spacing: tuple[float, float], *,
                   padding_hu: int | None = None, fill_hu: int = -1024) -> np.ndarray:
    """Fill a plan's regular grid from the sorted slices.

    Parameters
    ----------
    slices : ndarray
        int16 HU, shape (n, rows, columns), sorted as the plan's heights.
    plan : GridPlan
        From :func:`plan_grid`.
    pixel_spacing : tuple of float
        (row spacing, column spacing) in mm.
    padding_hu : int or None
        Pixel padding value in HU; such pixels are never blended with others.
    fill_hu : int
        HU outside every slice's field of view when there is no padding value.

    Returns
    -------
    ndarray
        int16 HU of shape ``plan.shape``. Bilinear in-plane and linear along the
        normal, except where padding or the outside of the field would contribute:
        there the nearest pixel of the nearest slice.
    """
    from scipy import ndimage

    outside = padding_hu if padding_hu is not None else fill_hu
    n_out, rows, cols = plan.shape
    row_spacing, col_spacing = pixel_spacing
    out = np.empty(plan.shape, dtype=np.int16)
    cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def placed(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slice k on the output rows x columns: linear values, padding weight, nearest values."""
        if k not in cache:
            for old in [key for key in cache if key < k - 1]:
                del cache[old]
            source = slices[k].astype(np.float32)
            pad = (slices[k] == padding_hu).astype(np.float32) if padding_hu is not None \
                else np.zeros(source.shape, np.float32)
            canvas = np.full((rows, cols), outside, np.float32)
            canvas_pad = np.ones((rows, cols), np.float32)
            canvas[:source.shape[0], :source.shape[1]] = source
            canvas_pad[:source.shape[0], :source.shape[1]] = pad
            shift = ((plan.offsets[k, 1] - plan.grid_offset[1]) / row_spacing,
                     (plan.offsets[k, 0] - plan.grid_offset[0]) / col_spacing)
            if abs(shift[0]) < 1e-6 and abs(shift[1]) < 1e-6:
                cache[k] = (canvas, canvas_pad, canvas)
            else:
                linear = ndimage.shift(canvas, shift, order=1, mode="constant", cval=outside)
                weight = ndimage.shift(canvas_pad, shift, order=1, mode="constant", cval=1.0)
                nearest = ndimage.shift(canvas, shift, order=0, mode="constant", cval=outside)
                cache[k] = (linear, weight, nearest)
        return cache[k]

    heights = plan.heights
    for m, height in enumerate(plan.target_heights):
        k = int(np.clip(np.searchsorted(heights, height + POSITION_NOISE_MM, side="right") - 1, 0, len(heights) - 1))
        if k == len(heights) - 1 or abs(height - heights[k]) <= POSITION_NOISE_MM:
            linear, weight, nearest = placed(k)
            value = np.where(weight > 0, nearest, linear)
        else:
            w = float((height - heights[k]) / (heights[k + 1] - heights[k]))
            lin0, pad0, near0 = placed(k)
            lin1, pad1, near1 = placed(k + 1)
            linear = (1 - w) * lin0 + w * lin1
            weight = (1 - w) * pad0 + w * pad1 if w not in (0.0, 1.0) else (pad0 if w == 0 else pad1)
            nearest = near0 if w < 0.5 else near1
            value = np.where(weight > 0, nearest, linear)
        out[m] = np.rint(value).astype(np.int16)
    return out
