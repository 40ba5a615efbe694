"""Body envelope and the air outside the patient.

Air outside the patient is told from lung by where it lies, not by whether it touches
the image edge (a lung cut by a cropped field of view touches it too). In each axial
slice the *body envelope* is the convex hull of the body's tissue (HU above
``body_hu``); padding values (below ``padding_hu``, the scan circle of many scanners)
are never tissue and always outside. An air island is outside air when more than
``outside_fraction`` of its voxels lie outside the envelope or in the padding, and it
is nearly pure air (at least ``gas_min_air_fraction`` below -950 HU). A lung cut at a
corner of the field of view can lie mostly outside the hull of the tissue around it,
but is a mixture of air and tissue around -850 HU. A lung
cut by the crop lies within the hull of the chest wall around it; the air around the
patient, between the arms and under the table does not.

Noise, or partial volume where a field of view cuts a thin chest wall, can join a lung
to the air around the patient through a path of air-like voxels. The joined island is
mostly outside, so the lung would go with it: `leaky_islands` marks outside-air islands
whose part inside the envelope is large and lung-like (median above -950 HU), and
`cut_free` opens them with a ball of ``leak_opening_mm`` to cut the lung free. A lung
island that holds outside air while staying mostly inside (the air under the back) is
cut the same way.

The envelope is computed on a grid of about ``grid_mm`` (every n-th voxel), which is
enough to measure those fractions and keeps the step cheap.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


def grid_steps(spacing, grid_mm: float) -> tuple[int, int, int]:
    """Voxel strides giving a grid of about ``grid_mm`` (at least 1 per axis)."""
    return tuple(max(1, int(round(grid_mm / s))) for s in spacing)


def envelope(volume: np.ndarray, spacing, *, body_hu: float, padding_hu: float, grid_mm: float,
             min_tissue_cm2: float = 1.0, min_body_share: float = 0.1) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Body envelope on the strided grid.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, canonical order (superior, posterior, left).
    spacing : tuple of float
        Voxel size along those axes, in mm.
    body_hu : float
        Tissue is above this, in HU.
    padding_hu : float
        Values below this are padding, in HU.
    grid_mm : float
        Grid step, in mm.
    min_tissue_cm2 : float
        Tissue specks smaller than this per slice (noise, cables) do not shape the hull.
    min_body_share : float
        Nor do tissue pieces smaller than this share of the slice's largest piece (the
        scanner table under the patient, an arm).

    Returns
    -------
    inside : numpy.ndarray
        Boolean envelope on ``volume[::s0, ::s1, ::s2]`` (padding is outside).
    steps : tuple of int
        The strides ``(s0, s1, s2)``.
    """
    steps = grid_steps(spacing, grid_mm)
    sub = volume[::steps[0], ::steps[1], ::steps[2]]
    tissue = (sub > body_hu) & (sub >= padding_hu)
    pixel_cm2 = spacing[1] * steps[1] * spacing[2] * steps[2] / 100.0
    min_pixels = max(1, int(np.ceil(min_tissue_cm2 / pixel_cm2)))
    inside = np.zeros(sub.shape, dtype=bool)
    rows, cols = np.indices(sub.shape[1:], dtype=float)
    for k in range(sub.shape[0]):
        plane = tissue[k]
        if not plane.any():
            continue
        labels, count = ndimage.label(plane)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        kept = sizes[labels] >= min_pixels
        # The hull is the patient's: a piece much smaller than the largest (the table, a
        # cable, an arm's cross-section) does not widen it.
        points = np.argwhere(sizes[labels] >= max(min_pixels, min_body_share * sizes.max())).astype(float)
        if len(points) < 3:
            continue
        inside[k] = _convex_fill(points, rows, cols) | kept
    inside &= sub >= padding_hu
    return inside, steps


def _convex_fill(points: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    try:
        hull = ConvexHull(points)
    except QhullError:  # collinear points: no area
        return np.zeros(rows.shape, dtype=bool)
    inside = np.ones(rows.shape, dtype=bool)
    # Each facet: normal . p + offset <= 0 inside; half a pixel of slack keeps the rim.
    for normal_r, normal_c, offset in hull.equations:
        inside &= normal_r * rows + normal_c * cols + offset <= 0.5
    return inside


def outside_share(labels: np.ndarray, count: int, inside: np.ndarray, steps, volume: np.ndarray | None = None,
                  air_hu: float = -950.0) -> tuple[np.ndarray, np.ndarray]:
    """Per label (index 0..count), the share of its sampled voxels outside the envelope,
    and the share below ``air_hu`` (pure air; 1 without ``volume``).

    Labels with no sampled voxel get 0 outside (too small to matter).
    """
    sampled = labels[::steps[0], ::steps[1], ::steps[2]]
    total = np.bincount(sampled.ravel(), minlength=count + 1).astype(float)
    outside = np.bincount(sampled[~inside], minlength=count + 1).astype(float)
    share = np.zeros(count + 1)
    np.divide(outside, total, out=share, where=total > 0)
    pure = np.ones(count + 1)
    if volume is not None:
        below = volume[::steps[0], ::steps[1], ::steps[2]] < air_hu
        np.divide(np.bincount(sampled[below], minlength=count + 1), total, out=pure, where=total > 0)
    return share, pure


def leaky_islands(labels: np.ndarray, count: int, outside: np.ndarray, inside: np.ndarray, steps,
                  volume: np.ndarray, *, min_voxels: float, air_hu: float) -> np.ndarray:
    """Outside-air islands that hold a lung joined to them through the body wall.

    Noise, or partial volume where a coarse field of view cuts a thin chest wall, can
    open a path of air-like voxels from a lung to the air around the patient: the two
    then form one island, mostly outside. Such an island is marked when its part inside
    the envelope holds at least ``min_voxels`` voxels and is lung-like (its median lies
    above ``air_hu``); air between the arms and the torso, inside the hull, is pure
    air. `cut_free` then looks for the lung in it.

    Parameters
    ----------
    labels : numpy.ndarray
        Island labels 0..count (0: not air), canonical order.
    outside : numpy.ndarray
        Per label, whether it was taken as outside air.
    inside, steps
        The body envelope on its grid (`envelope`).
    volume : numpy.ndarray
        CT in HU.
    min_voxels : float
        The smallest lung, in voxels of ``volume``.
    air_hu : float
        Pure air lies below this, in HU.

    Returns
    -------
    numpy.ndarray
        Boolean per label 0..count.
    """
    sampled = labels[::steps[0], ::steps[1], ::steps[2]][inside]
    values = volume[::steps[0], ::steps[1], ::steps[2]][inside]
    in_count = np.bincount(sampled, minlength=count + 1).astype(float)
    in_air = np.bincount(sampled[values < air_hu], minlength=count + 1).astype(float)
    large = in_count * float(np.prod(steps)) >= min_voxels
    lung_like = in_air < 0.5 * in_count
    found = np.asarray(outside, dtype=bool) & large & lung_like
    found[0] = False
    return found


def cut_free(island: np.ndarray, inside: np.ndarray, steps, spacing, *, radius_mm: float,
             outside_fraction: float) -> np.ndarray:
    """The part of an air island that a thin path through the body wall joined to outside air.

    The island is opened by a ball of ``radius_mm``, which cuts paths narrower than the
    ball; of the pieces left, those with at most ``outside_fraction`` of their sampled
    voxels outside the envelope lie inside the body. They are grown back by the same
    ball within the island, so that the opening does not trim the lung's own edges.
    Air that meets the outside broadly (between a head holder and the head, through the
    nostrils) stays one piece with it.

    Returns
    -------
    numpy.ndarray
        Boolean mask: the island's voxels within ``radius_mm`` of a piece inside the body.
    """
    import cc3d

    from radiolab import _bitmorph

    element = _bitmorph.ball_element(radius_mm, spacing)
    opened = _bitmorph.opening(island, element, threads=1)
    pieces, count = cc3d.connected_components(opened, connectivity=6, return_N=True)
    if count == 0:
        return opened
    share, _ = outside_share(pieces, count, inside, steps)
    freed = (share <= outside_fraction) & (np.bincount(pieces[::steps[0], ::steps[1], ::steps[2]].ravel(),
                                                        minlength=count + 1) > 0)
    freed[0] = False
    width = island.shape[-1]
    grown = _bitmorph.unpack(_bitmorph.dilate(_bitmorph.pack(freed[pieces]), element, width), width)
    return grown & island


def midline_index(inside: np.ndarray, steps) -> float:
    """Mean left-right (canonical axis 2) index of the envelope, in full-grid voxels."""
    columns = np.flatnonzero(inside.any(axis=(0, 1))) if inside.any() else None
    if columns is None:
        return (inside.shape[2] * steps[2] - 1) / 2
    weights = inside.sum(axis=(0, 1)).astype(float)
    return float((np.arange(inside.shape[2]) * weights).sum() / weights.sum() * steps[2])


def slice_centres(inside: np.ndarray, steps, slices: int) -> np.ndarray:
    """Per full-grid slice, the (row, column) centroid of the envelope, in full-grid voxels.

    Slices without envelope take the nearest slice's centre, or the image centre.
    """
    area = inside.sum(axis=(1, 2)).astype(float)
    rows = np.arange(inside.shape[1], dtype=float) * steps[1]
    cols = np.arange(inside.shape[2], dtype=float) * steps[2]
    centre = np.empty((inside.shape[0], 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        centre[:, 0] = (inside.sum(axis=2) * rows).sum(axis=1) / area
        centre[:, 1] = (inside.sum(axis=1) * cols).sum(axis=1) / area
    filled = area > 0
    if not filled.any():
        centre[:] = ((inside.shape[1] - 1) * steps[1] / 2, (inside.shape[2] - 1) * steps[2] / 2)
    else:
        known = np.flatnonzero(filled)
        for axis in range(2):
            centre[:, axis] = np.interp(np.arange(inside.shape[0]), known, centre[known, axis])
    index = np.minimum(np.arange(slices) // steps[0], inside.shape[0] - 1)
    return centre[index]


def spine_midline(volume: np.ndarray, inside: np.ndarray, steps, spacing, *, bone_hu: float = 200.0,
                  window_mm: float = 20.0) -> float | None:
    """Left-right (axis 2) index of the spine, in full-grid voxels, or None if unseen.

    The vertebral bodies lie on the midline: the column band of ``window_mm`` holding
    the most bone (above ``bone_hu``) in the posterior half of the body. Unlike the
    envelope's centre, this holds when the field of view is off-centre.
    """
    sub = volume[::steps[0], ::steps[1], ::steps[2]]
    bone = (sub > bone_hu) & inside
    rows = np.nonzero(inside.any(axis=(0, 2)))[0]
    if rows.size == 0:
        return None
    posterior = np.arange(sub.shape[1]) >= (rows[0] + rows[-1]) / 2
    bone &= posterior[None, :, None]
    counts = bone.sum(axis=(0, 1)).astype(float)
    width = max(1, int(round(window_mm / (spacing[2] * steps[2]))))
    banded = np.convolve(counts, np.ones(width), mode="same")
    pixel_cm2 = spacing[1] * steps[1] * spacing[2] * steps[2] / 100.0
    # At least 2 cm^2 of bone per sampled slice: a vertebra, not a few rib sections.
    if banded.max() * pixel_cm2 < 2.0 * sub.shape[0]:
        return None
    return float(np.argmax(banded) * steps[2])


def centre_offset_mm(mask: np.ndarray, centres: np.ndarray, spacing) -> float:
    """Mean left-right distance of ``mask``'s voxels from their slice's body centre, in mm.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask, canonical order, full grid.
    centres : numpy.ndarray
        Per slice, the (row, column) of the body's centre (`slice_centres`).
    spacing : tuple of float
        Voxel size, in mm.
    """
    z, _, x = np.nonzero(mask)
    if z.size == 0:
        return float("nan")
    return float(np.mean(x - centres[z, 1]) * spacing[2])


def cut_at_the_sides(inside: np.ndarray, steps, slices: np.ndarray) -> bool:
    """Whether the envelope reaches the left or right image edge in any of ``slices``
    (full-grid indices): the field of view cuts the body there."""
    index = np.unique(np.minimum(np.asarray(slices) // steps[0], inside.shape[0] - 1))
    return bool(inside[index][:, :, [0, -1]].any())


def scan_circle_fill(volume: np.ndarray, *, air_floor_hu: float, air_hu: float = -950.0,
                     solid_voxels: int = 3) -> np.ndarray | None:
    """The scan circle's fill when its value lies in the air range, else None.

    Some scanners and converters fill the outside of the scan circle with -1024 HU, a
    value that air takes too. The fill is told from air by its form: one exact value,
    the one held by most of the slices' corners (the circle never reaches them), over
    solid regions at the image border; air, even air clipped at the same value, is noisy
    and its lowest values are scattered.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, (z, y, x).
    air_floor_hu : float
        A fill below this is left out of the air by the floor itself: None.
    air_hu : float
        The fill lies below this (pure air), in HU; corners of tissue are no fill.
    solid_voxels : int
        Side of the square (in voxels) by which the exact-value mask is opened in each
        slice: what survives is solid, not noise.

    Returns
    -------
    numpy.ndarray or None
        Boolean fill mask, or None when the corners hold no common value in the air range.
    """
    corners = volume[:, [0, 0, -1, -1], [0, -1, 0, -1]].ravel()
    values, counts = np.unique(corners, return_counts=True)
    value = values[np.argmax(counts)]
    if counts.max() < 0.5 * corners.size or not air_floor_hu <= value < air_hu:
        return None
    square = np.ones((solid_voxels, solid_voxels), dtype=bool)
    fill = np.zeros(volume.shape, dtype=bool)
    for k in range(volume.shape[0]):
        exact = volume[k] == value
        solid = ndimage.binary_opening(exact, square)
        if not solid.any():
            continue
        labels, count = ndimage.label(solid)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        at_border = np.isin(labels, border[border > 0])
        # The solid regions at the border, with their one-voxel fringe of the same value.
        fill[k] = exact & ndimage.binary_dilation(at_border, square)
    return fill if fill.any() else None


def touches_fill(island: np.ndarray, volume: np.ndarray, box, circle: np.ndarray | None, *,
                 air_floor_hu: float) -> bool:
    """Whether an island (its mask on ``box`` of ``volume``) touches the scan circle's
    fill in-plane: a voxel below ``air_floor_hu`` or of ``circle`` (`scan_circle_fill`)."""
    # The box grown by one voxel in-plane, where a touching fill voxel can lie.
    grown = (box[0],) + tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n))
                              for b, n in zip(box[1:], volume.shape[1:]))
    fill = volume[grown] < air_floor_hu
    if circle is not None:
        fill |= circle[grown]
    if not fill.any():
        return False
    mask = np.zeros(fill.shape, dtype=bool)
    offset = [b.start - g.start for b, g in zip(box[1:], grown[1:])]
    mask[:, offset[0]:offset[0] + island.shape[1], offset[1]:offset[1] + island.shape[2]] = island
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)  # in-plane face neighbours
    return bool((ndimage.binary_dilation(mask, cross) & fill).any())
