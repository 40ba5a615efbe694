"""Each lung closed on its own, and dense disease along the chest wall put back.

A threshold mask loses what is denser than its threshold: vessels, nodules and
consolidation. Two steps put it back without bridging the mediastinum:

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
   lung, not the dome of the diaphragm, which has the liver or the spleen below.

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

RIGHT, LEFT = 1, 2


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
                 max_bite: float = 1.0, min_below: float | None = 0.5) -> np.ndarray:
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
    """
    from radiolab.lung import bounding_box

    added = np.zeros_like(lung)
    box = bounding_box(lung)
    if box is None:
        return added
    sub = lung[box]
    values = volume[box]
    out = added[box]
    # Slices run from the feet up (canonical axis 0), so a hole filled in one slice is
    # lung below the next.
    for k in range(sub.shape[0]):
        plane = sub[k]
        if not plane.any():
            continue
        if k > 0 and min_below is not None:
            tissue = (values[k] >= min_hu) & (values[k] <= max_hu)
            out[k] |= _held_holes(plane, sub[k - 1] | out[k - 1], tissue, min_below=min_below,
                                  max_bite=max_bite)
        lo, hi = _hull_rows(plane)
        cols = np.arange(plane.shape[1])
        hull = (cols[None, :] >= lo[:, None]) & (cols[None, :] <= hi[:, None])
        candidates = hull & ~plane & (values[k] >= min_hu) & (values[k] <= max_hu)
        if not candidates.any():
            continue
        centre_row = centres[box[0].start + k, 0] - box[1].start
        centre_col = centres[box[0].start + k, 1] - box[2].start
        # Lung in front means more than a pixel grazed along a surface that runs towards
        # the centre (the front of an apex): the slice's lung less its edge.
        nearest = _nearest_per_direction(_eroded(plane), centre_row, centre_col, angle_bins)
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
        rim = hull & ~ndimage.binary_erosion(hull, border_value=0)
        labels, count = ndimage.label(bites)
        contact = np.bincount(labels[rim & bites], minlength=count + 1)
        area = np.bincount(labels.ravel(), minlength=count + 1)
        # A bite lies along the wall: its contact with the rim is comparable to its
        # width, not a few voxels where enclosed tissue leaks out through a gap.
        opening = (contact >= min_contact * np.sqrt(area)) & (area <= max_bite * np.count_nonzero(plane))
        opening[0] = False
        out[k] |= opening[labels]
    return added


def _held_holes(plane, below, tissue, *, min_below, max_bite):
    """Tissue pixels of the holes of ``plane`` that lung holds from below.

    A dense lesion seen in a slice as an island of tissue enclosed by lung belongs to
    the lung, but so would the dome of the diaphragm inside a basal ring of lung. The
    two differ below: the dome widens into the liver or spleen under it, whereas lung
    lies under a lesion (or under the slice of it already added). A hole is taken when
    at least ``min_below`` of its pixels have lung, or what was added to it, in the
    slice below, and when it is at most ``max_bite`` times the slice's lung.
    """
    # The holes: pieces of the background (4-connected, as `binary_fill_holes` grows it)
    # that do not reach the image's edge.
    labels, count = ndimage.label(~plane)
    on_edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    if count == on_edge.size - (0 in on_edge):
        return np.zeros_like(plane)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    area[on_edge] = 0
    held = np.bincount(labels.ravel(), weights=below.ravel(), minlength=count + 1)
    keep = (area > 0) & (held >= min_below * area) & (area <= max_bite * np.count_nonzero(plane))
    keep[0] = False
    return keep[labels] & tissue


def _nearest_per_direction(plane: np.ndarray, centre_row: float, centre_col: float, bins: int) -> np.ndarray:
    """Per direction bin around the centre, the distance (pixels) of the nearest pixel of ``plane``.

    Each pixel covers every bin that the disc inscribed in its square subtends, not only
    the bin of its centre: near the centre of a coarse grid a bin is far narrower than a
    pixel, and a bin left empty would hide the lung in front of a bite. Bins that no
    pixel covers hold inf.
    """
    # Only the pixels on the plane's edge can be nearest in a direction.
    edge = plane & ~_eroded(plane)
    rows, cols = np.nonzero(edge)
    angle, radius = _polar(rows - centre_row, cols - centre_col, bins)
    half_width = np.arcsin(np.minimum(1.0, 0.5 / np.maximum(radius, 1e-9)))
    reach = np.ceil(half_width / (2 * np.pi / bins)).astype(np.int64)
    counts = 2 * reach + 1
    owner = np.repeat(np.arange(angle.size), counts)
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts) - reach[owner]
    nearest = np.full(bins, np.inf)
    np.minimum.at(nearest, (angle[owner] + offsets) % bins, radius[owner])
    return nearest


def _eroded(plane: np.ndarray) -> np.ndarray:
    """``plane`` eroded by the 4-neighbour cross, outside the image counting as background.

    The same as ``ndimage.binary_erosion(plane)``, by array shifts (a few times faster
    on one slice).
    """
    out = plane.copy()
    out[0, :] = out[-1, :] = False
    out[:, 0] = out[:, -1] = False
    out[1:, :] &= plane[:-1, :]
    out[:-1, :] &= plane[1:, :]
    out[:, 1:] &= plane[:, :-1]
    out[:, :-1] &= plane[:, 1:]
    return out


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
    from scipy import ndimage

    from radiolab.lung import bounding_box

    box = bounding_box(lung)
    if box is None:
        return lung
    sub = lung[box]
    values = volume[box]
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)
    rim_values = (values > surface_hu) & (values < threshold_hu)
    for _ in range(max(1, int(round(depth_mm / max(spacing[1:]))))):
        outer = sub & ~ndimage.binary_erosion(sub, cross, border_value=1)
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
