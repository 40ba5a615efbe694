"""Trachea and main bronchi, traced slice by slice from the neck down.

In axial slices the trachea is a small round air island near the body midline, apart
from the lungs. It is found in the upper slices (the seed: the largest air island of
``min_area_cm2``-``max_area_cm2`` whose centre lies within ``midline_mm`` of the body
midline, in the ``seed_search_mm`` below the top), then followed slice by slice towards
the feet: an island of the next slice belongs to the airway when it overlaps the airway
of the slice above, is at most ``max_area_cm2`` and at most ``growth`` times (plus
1 cm²) the airway area above. Leak control: an overlapping island larger than that is
lung (the bronchus has entered the hilum, or the threshold has leaked into
parenchyma), which ends the branch there. At the carina the one island becomes two and
both are followed. The trace also runs up to the top slice.

At thick slices the trachea or a main bronchus can touch a lung through partial
volume. An airway island within ``midline_mm`` of the midline that finds no island of
its own in the next slice, only a larger one, is continued by the air of that island
within its footprint (grown by one voxel, never larger than the island above), for at
most ``bridge_mm`` in all.

The trace counts as an airway only when it is at least ``min_length_mm`` long and ends
in a lung: a scan of the lung bases has no trachea, and the gas of the oesophagus or
the bowel does not end in a lung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AirwayTrace:
    """Airway voxels (canonical order) and what the trace found."""

    mask: np.ndarray
    midline_index: float | None
    length_mm: float


def trace_airways(air: np.ndarray, spacing, *, midline_index: float, min_area_cm2: float,
                  max_area_cm2: float, midline_mm: float, seed_search_mm: float, min_length_mm: float,
                  growth: float, bridge_mm: float = 50.0, margin_mm: float = 20.0) -> AirwayTrace | None:
    """Trace the trachea and main bronchi in an air mask.

    Parameters
    ----------
    air : numpy.ndarray
        Air inside the body (lungs, airways, gut gas), canonical order (axis 0 towards
        the head, axis 2 towards the patient's left).
    spacing : tuple of float
        Voxel size along those axes, in mm.
    midline_index : float
        Body midline as an axis-2 index.
    min_area_cm2, max_area_cm2, midline_mm, seed_search_mm, min_length_mm, growth : float
        See the module text; areas in cm², lengths in mm.
    bridge_mm : float
        Longest stretch over which the trachea is followed through a larger island, in mm.
    margin_mm : float
        How far an island may shift from one slice to the next, in mm.

    Returns
    -------
    AirwayTrace or None
        None when no airway is found.
    """
    pixel_cm2 = spacing[1] * spacing[2] / 100.0
    min_pixels = min_area_cm2 / pixel_cm2
    max_pixels = max_area_cm2 / pixel_cm2
    top = air.shape[0] - 1
    search = max(1, int(math.ceil(seed_search_mm / spacing[0])))
    seed = None
    for k in range(top, max(top - search, -1), -1):
        labels, count = ndimage.label(air[k])
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        centres = ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, count + 1))
        best = None
        for index in range(1, count + 1):
            size = sizes[index]
            if not min_pixels <= size <= max_pixels:
                continue
            if abs(centres[index - 1][1] - midline_index) * spacing[2] > midline_mm:
                continue
            if best is None or size > sizes[best]:
                best = index
        if best is not None:
            seed = (k, labels == best)
            break
    if seed is None:
        return None
    k0, plane = seed
    mask = np.zeros(air.shape, dtype=bool)
    mask[k0] = plane
    margin = (max(1, int(math.ceil(margin_mm / spacing[1]))), max(1, int(math.ceil(margin_mm / spacing[2]))))
    reached_lung = False
    lowest = k0
    bridge_slices = int(bridge_mm // spacing[0])
    for step in (-1, 1):
        k = k0
        bridged = 0
        while 0 <= k + step < air.shape[0]:
            accepted, hit_lung = _next_slice(air[k + step], mask[k], margin, max_pixels, growth, pixel_cm2)
            if step == -1 and hit_lung:
                reached_lung = True
            if hit_lung and bridged < bridge_slices:
                bridge = _bridge(air[k + step], mask[k], accepted, midline_index, midline_mm, spacing)
                if bridge.any():
                    accepted = accepted | bridge
                    bridged += 1
            if not accepted.any():
                break
            k += step
            mask[k] = accepted
            lowest = min(lowest, k)
    highest = int(np.flatnonzero(mask.any(axis=(1, 2))).max())
    length_mm = (highest - lowest + 1) * spacing[0]
    if not reached_lung or length_mm < min_length_mm:
        return None
    upper = mask[max(highest - search, 0):highest + 1]
    midline = float(np.argwhere(upper)[:, 2].mean())
    return AirwayTrace(mask=mask, midline_index=midline, length_mm=length_mm)


def _bridge(plane, previous, accepted, midline_index, midline_mm, spacing) -> np.ndarray:
    """Air of ``plane`` under the footprint of each central airway island of ``previous``
    that found no island of its own in ``plane`` (grown by one voxel, at most its area)."""
    labels, count = ndimage.label(previous)
    out = np.zeros(plane.shape, dtype=bool)
    for index in range(1, count + 1):
        island = labels == index
        if (accepted & island).any():
            continue
        if abs(np.argwhere(island)[:, 1].mean() - midline_index) * spacing[2] > midline_mm:
            continue
        grown = plane & ndimage.binary_dilation(island)
        if np.count_nonzero(grown) > np.count_nonzero(island):
            grown = plane & island
        out |= grown
    return out


def _next_slice(plane: np.ndarray, previous: np.ndarray, margin, max_pixels, growth, pixel_cm2):
    """Islands of ``plane`` that continue the airway ``previous``, and whether a lung was met."""
    rows = np.flatnonzero(previous.any(axis=1))
    cols = np.flatnonzero(previous.any(axis=0))
    window = (slice(max(rows[0] - margin[0], 0), min(rows[-1] + 1 + margin[0], plane.shape[0])),
              slice(max(cols[0] - margin[1], 0), min(cols[-1] + 1 + margin[1], plane.shape[1])))
    labels, count = ndimage.label(plane[window])
    accepted = np.zeros(plane.shape, dtype=bool)
    if count == 0:
        return accepted, False
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    touching = previous[window]
    overlapping = np.unique(labels[touching & (labels > 0)])
    # An island cut by the window continues beyond it: too large for an airway.
    on_edge = np.zeros(count + 1, dtype=bool)
    for edge, at_image_edge in ((labels[0], window[0].start == 0), (labels[-1], window[0].stop == plane.shape[0]),
                                (labels[:, 0], window[1].start == 0), (labels[:, -1], window[1].stop == plane.shape[1])):
        if not at_image_edge:
            on_edge[np.unique(edge)] = True
    one_cm2 = 1.0 / pixel_cm2
    above = int(np.count_nonzero(previous))
    hit_lung = False
    keep = []
    for index in overlapping:
        size = sizes[index]
        if on_edge[index] or size > max_pixels or size > growth * above + one_cm2:
            hit_lung = True
            continue
        keep.append(index)
    if keep:
        accepted[window] = np.isin(labels, keep)
    return accepted, hit_lung
