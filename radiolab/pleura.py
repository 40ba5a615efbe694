"""Each lung closed on its own, and dense disease along the chest wall put back.

A threshold mask loses what is denser than its threshold: vessels, nodules and
consolidation. Two steps put it back without bridging the mediastinum, and a third
trims the partial-volume rim:

1. **Closing per lung.** Each lung is closed with a ball of ``radius_mm`` on its own,
   so the closing fills vessels and small dense lesions inside that lung but cannot
   join the two lungs across the mediastinum (a closing of both together does).
2. **Pleural envelope.** Consolidation at the pleura leaves a bite in the lung's outer
   surface, which a closing only fills up to its ball's size. The outer (costal)
   surface of a lung is convex in every axial slice, so the bite lies inside the
   slice's convex hull of that lung. Of the hull, only what lies *behind* the lung seen
   from the body's centre in that slice is taken: a ray from the centre meets lung
   before it reaches a costal bite, whereas the heart, the hilum, the great vessels
   and the liver or spleen in the hollow of a basal crescent lie between the centre
   and the lung. A bite also reaches the rim of the hull (it opens onto the chest
   wall); what the lung encloses in the slice, such as the dome of the diaphragm inside
   a basal ring of lung, does not; nor is a bite larger than the slice's lung (the
   liver between the thin arcs of a basal crescent). Only voxels of
   ``min_hu``-``max_hu`` are added (tissue, not gas of the bowel, not bone). What the
   lung encloses in a slice is added when lung lies under it: a lesion inside the
   lung, not the dome of the diaphragm, which has the liver or the spleen below. A
   large bite that fills the lung out to the ribs is cut by the hull's chord, which runs
   inside the curved wall: it is carried on to the wall's line across it, drawn from
   the flanks where the air reaches the wall (see `_beyond_bites`).

3. **Surface.** A threshold at ``threshold_hu`` keeps a rim of partial-volume voxels
   that are mostly chest wall. The outer layers of each lung (in-plane neighbours; one
   layer per ``surface_mm`` of voxel size, the width of the scanner's blur) lose their
   voxels between ``surface_hu`` and the threshold, which puts the surface near
   the half-lung, half-tissue level (-400 HU lies midway between lung at -850 and soft
   tissue at +50). Denser voxels (consolidation, vessels) stay.

Limitation: consolidation on the centre's side of all of its lung's air (in the
paravertebral gutter, seen from the body's centre) is only recovered up to the
closing's size.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from radiolab.planar import erode_in_plane, holes_in_plane

RIGHT, LEFT = 1, 2
# How far beyond the lung's extent in a slice a bite may be carried to the wall, in mm.
_WALL_MARGIN_MM = 10.0


def close_lung(lung: np.ndarray, spacing, radius_mm: float, *, planar: bool) -> np.ndarray:
    """Closing by a ball of ``radius_mm`` (a disk per slice when ``planar``), on the box."""
    from radiolab.lung import _edt_closing, bounding_box

    if radius_mm <= 0 or not lung.any():
        return lung.copy()
    radius_sq = radius_mm * radius_mm
    if not planar:
        # The paper preset's closing: the same two distance transforms, on threads.
        return _edt_closing(lung, tuple(spacing), radius_sq)
    pad = [0 if axis == 0 else int(math.ceil(radius_mm / s)) + 1 for axis, s in enumerate(spacing)]
    box = bounding_box(lung)
    crop = np.pad(lung[box], [(p, p) for p in pad])
    closed = np.empty_like(crop)
    for k in range(crop.shape[0]):
        closed[k] = _closing_2d(crop[k], spacing[1:], radius_sq)
    out = np.zeros_like(lung)
    out[box] = closed[tuple(slice(p, p + (b.stop - b.start)) for p, b in zip(pad, box))]
    return out


def _closing_nd(crop, metric, radius_sq):
    import edt

    dilated = edt.edtsq((~crop).view(np.uint8), anisotropy=metric, black_border=False) <= radius_sq
    return edt.edtsq(dilated.view(np.uint8), anisotropy=metric, black_border=True) > radius_sq


def _closing_2d(plane, metric, radius_sq):
    if not plane.any():
        return plane.copy()
    return _closing_nd(np.ascontiguousarray(plane), tuple(metric), radius_sq)


def pleural_fill(lung: np.ndarray, volume: np.ndarray, centres: np.ndarray, *, min_hu: float,
                 max_hu: float, angle_bins: int = 720, min_contact: float = 0.5,
                 max_bite: float = 1.0, min_below: float | None = 0.5,
                 wall_gap_deg: float | None = 90.0, wall_min_bite_mm2: float = 100.0,
                 front_mm: float = 5.0, pixel_mm2: float = 1.0) -> np.ndarray:
    """Voxels of the lung's costal bites and enclosed lesions (see the module text), canonical order.

    Parameters
    ----------
    lung : numpy.ndarray
        One lung (already closed), canonical order.
    volume : numpy.ndarray
        CT in HU, same order and shape.
    centres : numpy.ndarray
        Per slice (axis 0), the (row, column) of the body's centre in that slice.
    min_hu, max_hu : float
        HU range of the voxels added.
    angle_bins : int
        Directions around the centre in which the lung's nearest voxel is found.
    min_contact : float
        A bite's voxels on the hull's rim are at least this times the square root of
        its area (a half-disc bite has about 1.6).
    max_bite : float
        A bite is at most this times the lung's area in the slice: the liver between the
        thin arcs of a basal crescent is larger.
    min_below : float or None
        Tissue the lung encloses in a slice (a hole) is added when at least this share
        of it has lung right below it (see `_held_holes`); None adds no holes.
    wall_gap_deg : float or None
        A bite also takes what lies beyond the hull up to the chest wall's line across
        it (see `_beyond_bites`) when it spans at most this angle seen from the centre,
        in degrees; None keeps bites within the hull.
    wall_min_bite_mm2 : float
        Only bites of at least this area, in mm², are carried to the wall.
    front_mm : float
        The lung that must lie in front of a bite is the slice's lung eroded by this
        depth, in mm (at least one pixel).
    pixel_mm2 : float
        Area of one pixel of an axial slice, in mm².
    """
    from radiolab.lung import bounding_box

    added = np.zeros_like(lung)
    box = bounding_box(lung)
    if box is None:
        return added
    if wall_gap_deg is not None:
        # Room beyond the lung's extent in the slice for what is carried to the wall.
        pad = int(math.ceil(_WALL_MARGIN_MM / math.sqrt(pixel_mm2)))
        box = (box[0],) + tuple(slice(max(0, b.start - pad), min(n, b.stop + pad))
                                for b, n in zip(box[1:], lung.shape[1:]))
    sub = lung[box]
    values = volume[box]
    out = added[box]
    # Slices run from the feet up (canonical axis 0), so a hole filled in one slice is
    # lung below the next.
    for k in range(sub.shape[0]):
        plane = sub[k]
        if not plane.any():
            continue
        tissue = (values[k] >= min_hu) & (values[k] <= max_hu)
        if k > 0 and min_below is not None:
            out[k] |= _held_holes(plane, sub[k - 1] | out[k - 1], tissue, min_below=min_below,
                                  max_bite=max_bite)
        lo, hi = _hull_rows(plane)
        cols = np.arange(plane.shape[1])
        hull = (cols[None, :] >= lo[:, None]) & (cols[None, :] <= hi[:, None])
        candidates = hull & ~plane & tissue
        if not candidates.any():
            continue
        centre_row = centres[box[0].start + k, 0] - box[1].start
        centre_col = centres[box[0].start + k, 1] - box[2].start
        # Lung in front means lung of some depth, not a tip that the ray grazes (the
        # front of an apex, the tip of a basal crescent beside the liver's dome): the
        # slice's lung less ``front_mm`` of its edge.
        front = plane
        for _ in range(max(1, int(round(front_mm / math.sqrt(pixel_mm2))))):
            front = erode_in_plane(front)
        nearest = _nearest_per_direction(front, centre_row, centre_col, angle_bins)
        rows, cols_c = np.nonzero(candidates)
        angle_c, radius_c = _polar(rows - centre_row, cols_c - centre_col, angle_bins)
        # Seen from the body's centre, the lung lies in front of a costal bite.
        behind = radius_c > nearest[angle_c]
        if not behind.any():
            continue
        bites = np.zeros(plane.shape, dtype=bool)
        bites[rows[behind], cols_c[behind]] = True
        # A bite opens onto the chest wall: it reaches the hull's rim. What the lung
        # encloses in this slice (the dome of the diaphragm inside a basal ring) does not.
        rim = hull & ~erode_in_plane(hull)
        labels, count = ndimage.label(bites)
        contact = np.bincount(labels[rim & bites], minlength=count + 1)
        area = np.bincount(labels.ravel(), minlength=count + 1)
        # A bite lies along the wall: its contact with the rim is comparable to its
        # width, not a few voxels where enclosed tissue leaks out through a gap.
        opening = (contact >= min_contact * np.sqrt(area)) & (area <= max_bite * np.count_nonzero(plane))
        opening[0] = False
        out[k] |= opening[labels]
        # Only a bite of real size (consolidation, not a partial-volume notch along a
        # healthy lung's wall) is carried to the wall.
        large = opening & (area * pixel_mm2 >= wall_min_bite_mm2)
        if wall_gap_deg is not None and large.any():
            out[k] |= _beyond_bites(plane, large[labels], tissue & ~plane, nearest, (centre_row, centre_col), angle_bins,
                                    max_gap_bins=int(round(wall_gap_deg / 360.0 * angle_bins)))
    return added


def _beyond_bites(plane, bites, tissue, nearest, centre, bins, *, max_gap_bins):
    """Tissue pixels of ``bites``' directions out to the chest wall's line across them.

    A bite that reaches the lung's outermost extent in its directions (consolidation
    filling the lung out to the ribs) is cut by the hull's chord, which runs inside the
    curved chest wall. Where the lung's air reaches the wall on either side of the bite
    (the flanks), its farthest pixels mark the pleura. The wall across the bite is the
    circle fitted to both flanks' pleura, each flank as wide as the bite, but never
    beyond the line joining the flanks linearly in angle about the centre (a wall curved
    about the centre). Added: tissue pixels behind the lung, up to that wall (half a
    pixel beyond), joined to a bite, on rows (left-right lines) that hold lung or bite,
    in bites spanning at most ``max_gap_bins`` direction bins between flanks. Rows
    beyond the lung's front or back are left alone: there the two lungs' anterior edges
    and the tissue in front of them (the anterior mediastinum) meet.
    """
    far_lung = _farthest_per_direction(plane, *centre, bins)
    far_bite = _farthest_per_direction(bites, *centre, bins)
    bitten = far_bite > far_lung
    known = ~bitten & np.isfinite(far_lung)
    if not bitten.any() or np.count_nonzero(known) < 2:
        return np.zeros_like(plane)
    # Bins rolled to start at a known one, so that no run of bitten bins wraps around.
    shift = int(np.flatnonzero(known)[0])
    known, distance, bitten = (np.roll(a, -shift) for a in (known, far_lung, bitten))
    angles = (np.arange(bins) + shift + 0.5) * (2 * np.pi / bins) - np.pi
    known_index = np.flatnonzero(known)
    wall = np.full(bins, -np.inf)
    for first, last in zip(np.flatnonzero(bitten & ~np.roll(bitten, 1)), np.flatnonzero(bitten & ~np.roll(bitten, -1))):
        if last > known_index[-1]:
            continue
        left = known_index[np.searchsorted(known_index, first) - 1]
        right = known_index[np.searchsorted(known_index, last)]
        width = right - left
        if width > max_gap_bins:
            continue
        flanks = known_index[((known_index >= left - width) & (known_index <= left))
                             | ((known_index >= right) & (known_index <= right + width))]
        gap = np.arange(left + 1, right)
        linear = np.interp(gap, [left, right], [distance[left], distance[right]])
        wall[gap] = np.minimum(linear, _circle_reach(angles[flanks], distance[flanks], angles[gap]))
    wall = np.roll(wall, shift)
    rows, cols = np.nonzero(tissue & (plane | bites).any(axis=1)[:, None])
    angle, radius = _polar(rows - centre[0], cols - centre[1], bins)
    take = (radius > nearest[angle]) & (radius <= wall[angle] + 0.5)
    grown = np.zeros_like(plane)
    grown[rows[take], cols[take]] = True
    labels, _ = ndimage.label(grown | bites)
    joined = np.unique(labels[bites])
    return np.isin(labels, joined[joined > 0]) & grown & ~bites


def _circle_reach(point_angles, point_distances, ray_angles):
    """Distance along each ray from the origin to the least-squares circle through the points.

    The points are given in polar form about the origin. Rays that miss the circle, or a
    fit without a circle (fewer than three points, collinear points), give -inf.
    """
    missing = np.full(ray_angles.shape, -np.inf)
    if point_angles.size < 3:
        return missing
    x, y = point_distances * np.cos(point_angles), point_distances * np.sin(point_angles)
    # Kasa's fit: x^2 + y^2 + D x + E y + F = 0 in the least-squares sense.
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    (d, e, f), *_ = np.linalg.lstsq(design, -(x * x + y * y), rcond=None)
    cx, cy = -d / 2.0, -e / 2.0
    radius_sq = cx * cx + cy * cy - f
    if not np.isfinite(radius_sq) or radius_sq <= 0:
        return missing
    along = np.cos(ray_angles) * cx + np.sin(ray_angles) * cy
    discriminant = along * along - (cx * cx + cy * cy) + radius_sq
    return np.where(discriminant >= 0, along + np.sqrt(np.maximum(discriminant, 0.0)), missing)


def _held_holes(plane, below, tissue, *, min_below, max_bite):
    """Tissue pixels of the holes of ``plane`` that lung holds from below.

    A dense lesion seen in a slice as an island of tissue enclosed by lung belongs to
    the lung, but so would the dome of the diaphragm inside a basal ring of lung. The
    two differ below: the dome widens into the liver or spleen under it, whereas lung
    lies under a lesion (or under the slice of it already added). A hole is taken when
    at least ``min_below`` of its pixels have lung, or what was added to it, in the
    slice below, and when it is at most ``max_bite`` times the slice's lung.
    """
    labels, hole = holes_in_plane(plane)
    if not hole.any():
        return np.zeros_like(plane)
    area = np.bincount(labels.ravel(), minlength=hole.size)
    held = np.bincount(labels.ravel(), weights=below.ravel(), minlength=hole.size)
    keep = hole & (held >= min_below * area) & (area <= max_bite * np.count_nonzero(plane))
    return keep[labels] & tissue


def _nearest_per_direction(plane: np.ndarray, centre_row: float, centre_col: float, bins: int) -> np.ndarray:
    """Per direction bin around the centre, the distance (pixels) of the nearest pixel of ``plane``.

    Each pixel covers every bin that the disc inscribed in its square subtends, not only
    the bin of its centre: near the centre of a coarse grid a bin is far narrower than a
    pixel, and a bin left empty would hide the lung in front of a bite. Bins that no
    pixel covers hold inf.
    """
    bin_of, radius = _covered_bins(plane, centre_row, centre_col, bins)
    nearest = np.full(bins, np.inf)
    np.minimum.at(nearest, bin_of, radius)
    return nearest


def _covered_bins(plane, centre_row, centre_col, bins):
    """(bin, distance) pairs: every direction bin that each edge pixel of ``plane`` covers."""
    # Only the pixels on the plane's edge can be nearest or farthest in a direction.
    edge = plane & ~erode_in_plane(plane)
    rows, cols = np.nonzero(edge)
    angle, radius = _polar(rows - centre_row, cols - centre_col, bins)
    half_width = np.arcsin(np.minimum(1.0, 0.5 / np.maximum(radius, 1e-9)))
    reach = np.ceil(half_width / (2 * np.pi / bins)).astype(np.int64)
    counts = 2 * reach + 1
    owner = np.repeat(np.arange(angle.size), counts)
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts) - reach[owner]
    return (angle[owner] + offsets) % bins, radius[owner]


def _farthest_per_direction(plane: np.ndarray, centre_row: float, centre_col: float, bins: int) -> np.ndarray:
    """As `_nearest_per_direction`, the farthest pixel; bins that no pixel covers hold -inf."""
    bin_of, radius = _covered_bins(plane, centre_row, centre_col, bins)
    farthest = np.full(bins, -np.inf)
    np.maximum.at(farthest, bin_of, radius)
    return farthest


def _polar(rows: np.ndarray, cols: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    angle = np.arctan2(rows, cols)
    index = np.minimum(((angle + np.pi) / (2 * np.pi) * bins).astype(np.int64), bins - 1)
    return index, np.hypot(rows, cols)


def _hull_rows(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first and last column inside the convex hull of ``plane`` (hi < lo: none)."""
    from scipy.spatial import ConvexHull, QhullError

    rows_n = plane.shape[0]
    # The hull of the pixels is the hull of each row's end pixels.
    present = plane.any(axis=1)
    rows = np.flatnonzero(present)
    first = np.argmax(plane, axis=1)[rows]
    last = plane.shape[1] - 1 - np.argmax(plane[:, ::-1], axis=1)[rows]
    lo = np.full(rows_n, plane.shape[1], dtype=np.int64)
    hi = np.full(rows_n, -1, dtype=np.int64)
    points = np.concatenate([np.stack([rows, first], 1), np.stack([rows, last], 1)]).astype(float)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        lo[rows], hi[rows] = first, last
        return lo, hi
    y = np.arange(rows_n, dtype=float)[:, None]
    vertices = points[hull.vertices]
    start, end = vertices, np.roll(vertices, -1, axis=0)
    dy = end[:, 0] - start[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y - start[None, :, 0]) / dy[None, :]
        x = start[None, :, 1] + t * (end[None, :, 1] - start[None, :, 1])
    valid = (dy[None, :] != 0) & (t >= 0) & (t <= 1)
    xs_lo = np.where(valid, x, np.inf).min(axis=1)
    xs_hi = np.where(valid, x, -np.inf).max(axis=1)
    span = np.isfinite(xs_lo)
    lo[span] = np.ceil(xs_lo[span] - 1e-6).astype(np.int64)
    hi[span] = np.floor(xs_hi[span] + 1e-6).astype(np.int64)
    # Horizontal facets and single rows: the row's own pixels.
    lo[rows] = np.minimum(lo[rows], first)
    hi[rows] = np.maximum(hi[rows], last)
    return lo, hi


def peel_rim(lung: np.ndarray, volume: np.ndarray, spacing, *, surface_hu: float, threshold_hu: float,
             depth_mm: float) -> np.ndarray:
    """The lung without its outer layers' partial-volume voxels (see the module text).

    One layer per ``depth_mm`` of in-plane voxel size (at least one) is peeled.
    """
    from radiolab.lung import bounding_box

    box = bounding_box(lung)
    if box is None:
        return lung
    sub = lung[box]
    values = volume[box]
    rim_values = (values > surface_hu) & (values < threshold_hu)
    for _ in range(max(1, int(round(depth_mm / max(spacing[1:]))))):
        # The image edge is no surface: a lung cut by the field of view keeps its voxels there.
        outer = sub & ~erode_in_plane(sub, outside=True)
        sub = sub & ~(outer & rim_values)
    out = lung.copy()
    out[box] = sub
    return out


def medial_limit(grown: np.ndarray, lung: np.ndarray, side: int, midline_index: float) -> np.ndarray:
    """``grown`` without voxels medial of ``lung``'s most medial voxel on each row.

    A row runs left-right (canonical axis 2) at fixed (axis 0, axis 1). Rows where the
    lung has no voxel are limited by the midline. Nothing added by the closing or the
    pleural envelope can then lie between the two lungs.
    """
    nx = lung.shape[2]
    has = lung.any(axis=2)
    columns = np.arange(nx)[None, None, :]
    if side == RIGHT:
        limit = np.where(has, nx - 1 - np.argmax(lung[:, :, ::-1], axis=2), int(np.floor(midline_index)))
        return grown & (columns <= limit[:, :, None])
    limit = np.where(has, np.argmax(lung, axis=2), int(np.ceil(midline_index)))
    return grown & (columns >= limit[:, :, None])
