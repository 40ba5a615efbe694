"""Split a lung mask into the right and the left lung.

Orientation convention
----------------------
radiolab arrays are indexed (z, y, x) in LPS space: with the identity direction the
x index grows towards the patient's **left**, so the patient's right lung lies at the
*lower* x indices. When the geometry has another direction matrix, the side of each
lung is decided in physical LPS coordinates (smaller LPS x = patient right), so flipped
or permuted axes are handled.

Method
------
The two lungs often touch at the anterior (and sometimes posterior) junction line, and
a threshold mask also joins them through the trachea and main bronchi. The mask is
eroded in mm (a threshold on its Euclidean distance transform, with the voxel spacing)
in growing steps until its two largest 6-connected components each hold at least
``min_share`` of the eroded voxels; these are the seeds of the two lungs. Every voxel
of the mask is then given to the nearest seed (Euclidean distance in mm). Airways
joining the lungs are thereby cut at the midline between the seeds.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from radiolab.lung import _thread_count, bounding_box

RIGHT, LEFT = 1, 2
SIDE_NAMES = {RIGHT: "right", LEFT: "left"}
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def split_sides(
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    direction: Sequence[float] = IDENTITY_DIRECTION,
    min_share: float = 0.05,
    max_erosion_mm: float = 50.0,
    step_mm: float | None = None,
    grid_mm: float | None = 2.0,
    midline_mm: float | None = None,
) -> np.ndarray:
    """Label the voxels of a lung mask as right or left lung.

    Parameters
    ----------
    mask : numpy.ndarray
        Lung mask indexed (z, y, x); non-zero is lung.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    direction : sequence of 9 float
        Row-major ITK direction cosines of the volume (``Geometry.direction``); its
        columns are the physical LPS directions of the index axes x, y, z. Identity
        means the x index grows towards the patient's left.
    min_share : float
        A component of the eroded mask counts as a lung when it holds at least this
        fraction of the eroded mask's voxels (0-0.5).
    max_erosion_mm : float
        Deepest erosion tried, in mm. If the lungs are still joined (or there is only
        one lung), the whole mask goes to the side of ``midline_mm`` on which its
        centroid lies.
    step_mm : float, optional
        Erosion step in mm, default the larger of 1 mm and the finest voxel size. Depths
        grow by this step, or by 25 % once that is larger, up to ``max_erosion_mm``.
    grid_mm : float or None
        Split on blocks of about this size, in mm (blocks of whole voxels, a block
        being lung if any voxel in it is), then give every voxel its block's side.
        Only voxels in blocks at the junction of the lungs can land on the other
        side; the split of a 512 x 512 x 300 scan then takes a fraction of a second
        instead of seconds. None splits at full resolution.
    midline_mm : float, optional
        Patient midline as an LPS x coordinate relative to the volume's origin, in mm
        (``direction`` row 0 applied to index times spacing). A single lung goes to the
        side of it its centroid lies on. Default: the centre of the whole volume, which
        is only right when the field of view is centred on the patient.

    Returns
    -------
    numpy.ndarray
        uint8 array of the mask's shape: 0 outside the mask, 1 right lung, 2 left lung.
        Voxels at equal distance from both seeds go to the right lung.

    Raises
    ------
    ValueError
        If the mask is not 3-D, or spacing, direction or the tuning values are invalid.

    Examples
    --------
    >>> mask = np.zeros((4, 6, 12), bool)
    >>> mask[:, 1:5, 1:5] = mask[:, 1:5, 7:11] = True
    >>> sides = split_sides(mask, (1.0, 1.0, 1.0))
    >>> int(sides[0, 2, 2]), int(sides[0, 2, 8])
    (1, 2)
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D (z, y, x), got shape {mask.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive mm values, got {spacing}")
    matrix = np.asarray(direction, dtype=float)
    if matrix.size != 9 or not np.all(np.isfinite(matrix)):
        raise ValueError(f"direction must be 9 finite direction cosines, got {tuple(direction)}")
    matrix = matrix.reshape(3, 3)
    if not 0.0 < min_share <= 0.5:
        raise ValueError(f"min_share must lie in (0, 0.5], got {min_share}")
    if not max_erosion_mm >= 0:
        raise ValueError(f"max_erosion_mm must be >= 0 mm, got {max_erosion_mm}")
    step = max(1.0, min(spacing)) if step_mm is None else float(step_mm)
    if not step > 0:
        raise ValueError(f"step_mm must be positive, got {step_mm}")
    blocks = (1, 1, 1) if grid_mm is None else tuple(max(1, int(grid_mm // s)) for s in spacing)
    if midline_mm is None:
        midline_mm = _physical_x((np.asarray(mask.shape, dtype=float) - 1) / 2, spacing, matrix)
    if blocks == (1, 1, 1):
        return _split(mask, spacing, matrix, min_share, max_erosion_mm, step, float(midline_mm))
    lung = mask.astype(bool, copy=False)
    box = bounding_box(lung)
    if box is None:
        return np.zeros(mask.shape, dtype=np.uint8)
    sub = lung[box]
    coarse = _block_any(sub, blocks)
    coarse_spacing = tuple(s * b for s, b in zip(spacing, blocks))
    # Index x of the coarse grid still runs along the same physical direction.
    # Block centres in the full grid's index units, so that the fallback compares
    # positions in the whole volume (not in the cropped box) with the midline.
    to_full = (np.asarray(blocks, dtype=float), np.array([s.start for s in box], dtype=float)
               + (np.asarray(blocks, dtype=float) - 1) / 2)
    coarse_sides = _split(coarse, coarse_spacing, matrix, min_share, max_erosion_mm,
                          max(step, min(coarse_spacing)) if step_mm is None else step, float(midline_mm),
                          full_spacing=spacing, to_full=to_full)
    # Every voxel takes its block's side: repeated along x, then one broadcast write
    # into the blocked view (whole rows at a time, not runs of one block).
    rows = np.repeat(coarse_sides, blocks[2], axis=2) if blocks[2] > 1 else coarse_sides
    fine = np.empty(tuple(c * b for c, b in zip(coarse_sides.shape, blocks)), dtype=np.uint8)
    fine.reshape(coarse_sides.shape[0], blocks[0], coarse_sides.shape[1], blocks[1],
                 rows.shape[2])[...] = rows[:, None, :, None, :]
    sides = np.zeros(mask.shape, dtype=np.uint8)
    np.multiply(fine[tuple(slice(0, n) for n in sub.shape)], sub, out=sides[box])
    return sides


def _block_any(mask: np.ndarray, blocks) -> np.ndarray:
    """Whether any voxel of each block of ``blocks`` voxels is set (edge blocks may be partial).

    One axis at a time, z first, so that each pass works on the already reduced array.
    """
    reduced = mask
    for axis, b in enumerate(blocks):
        if b == 1:
            continue
        n = reduced.shape[axis]
        full = n // b
        shape = list(reduced.shape)
        shape[axis] = -(-n // b)
        out = np.zeros(shape, dtype=bool)
        index = [slice(None)] * 3
        index[axis] = slice(0, full)
        head = out[tuple(index)]
        for offset in range(b):
            part = [slice(None)] * 3
            part[axis] = slice(offset, full * b, b)
            head |= reduced[tuple(part)]
        if full * b < n:
            last = [slice(None)] * 3
            last[axis] = slice(full, full + 1)
            rest = [slice(None)] * 3
            rest[axis] = slice(full * b, n)
            out[tuple(last)] = reduced[tuple(rest)].any(axis=axis, keepdims=True)
        reduced = out
    return reduced


def _split(mask, spacing, matrix, min_share, max_erosion_mm, step, midline_mm, *,
           full_spacing=None, to_full=None) -> np.ndarray:
    """Split at ``spacing``; ``to_full`` (scale, shift) maps indices to the full grid."""
    import cc3d
    import edt

    sides = np.zeros(mask.shape, dtype=np.uint8)
    lung = mask.astype(bool, copy=False)
    box = bounding_box(lung)
    if box is None:
        return sides
    sub = np.ascontiguousarray(lung[box])
    offset = np.array([s.start for s in box], dtype=float)
    # Outside the box is outside the mask; outside the volume counts as outside too.
    depth = edt.edt(sub.view(np.uint8), anisotropy=spacing, black_border=True, parallel=_thread_count())
    seeds = None
    level = 0.0
    previous = -1
    while level <= max_erosion_mm:
        core = depth > level
        count = int(np.count_nonzero(core))
        if count == 0:
            break
        if count != previous:  # the same core as the last level splits the same way
            seeds = _two_large_components(cc3d, core, min_share)
            if seeds is not None:
                break
        previous = count
        # Fine steps first, then 25 % deeper each time: the seeds only need to separate.
        level = max(level + step, level * 1.25)
    del depth
    if seeds is None:
        index = _mean_index(sub) + offset
        if to_full is not None:
            index = index * to_full[0] + to_full[1]
        centroid = _physical_x(index, spacing if full_spacing is None else full_spacing, matrix)
        sides[box][sub] = RIGHT if centroid <= midline_mm else LEFT
        return sides
    first, second = seeds
    x_first = _physical_x(_mean_index(first) + offset, spacing, matrix)
    x_second = _physical_x(_mean_index(second) + offset, spacing, matrix)
    right_seed, left_seed = (first, second) if x_first <= x_second else (second, first)
    to_right = edt.edtsq((~right_seed).view(np.uint8), anisotropy=spacing, black_border=False, parallel=_thread_count())
    to_left = edt.edtsq((~left_seed).view(np.uint8), anisotropy=spacing, black_border=False, parallel=_thread_count())
    sides[box] = np.where(sub, np.where(to_right <= to_left, np.uint8(RIGHT), np.uint8(LEFT)), np.uint8(0))
    return sides


def _two_large_components(cc3d, core: np.ndarray, min_share: float):
    """The two largest 6-connected components if both hold ``min_share`` of ``core``."""
    labels, count = cc3d.connected_components(core, connectivity=6, return_N=True)
    if count < 2:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    largest, second = int(order[0]), int(order[1])
    if sizes[second] < min_share * int(sizes.sum()):
        return None
    return labels == largest, labels == second


def _mean_index(mask: np.ndarray) -> np.ndarray:
    """Mean (z, y, x) index of a mask's voxels, from its three projections.

    The index sums are exact integers, so this equals ``np.argwhere(mask).mean(axis=0)``
    without the (N, 3) index array.
    """
    count = int(np.count_nonzero(mask))
    sums = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        per_index = mask.sum(axis=others, dtype=np.int64)
        sums.append(int(per_index @ np.arange(per_index.size, dtype=np.int64)))
    return np.array(sums, dtype=float) / count


def _physical_x(index_zyx: np.ndarray, spacing, matrix: np.ndarray) -> float:
    """LPS x (mm, up to the origin) of a fractional (z, y, x) index."""
    ijk_mm = np.asarray(index_zyx, dtype=float)[::-1] * np.asarray(spacing, dtype=float)[::-1]
    return float(matrix[0] @ ijk_mm)
