"""Trachea and main bronchi, traced slice by slice from the neck down.

In axial slices the trachea is a small round air island near the body midline, apart
from the lungs. It is found in the upper slices (the seed: the largest air island of
``min_area_cm2``-``max_area_cm2`` whose centre lies within ``midline_mm`` of the body
midline or of the slice's body centre, in the ``seed_search_mm`` below the top; when
its trace is no airway, the next one not wholly on that trace, up to 32: noise that
joins air to the trachea in one slice cuts a trace from above short, not one seeded
below), then followed slice by slice towards
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

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Seeds tried before the trace gives up.
_MAX_SEEDS = 32


@dataclass(frozen=True)
class AirwayTrace:
    """Airway voxels (canonical order) and what the trace found."""

    mask: np.ndarray
    midline_index: float | None
    length_mm: float


def trace_airways(air: np.ndarray, spacing, *, midline_index: float, min_area_cm2: float,
                  max_area_cm2: float, midline_mm: float, seed_search_mm: float, min_length_mm: float,
                  growth: float, bridge_mm: float = 50.0, margin_mm: float = 20.0,
                  centre_columns: np.ndarray | None = None) -> AirwayTrace | None:
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
    centre_columns : numpy.ndarray, optional
        Per slice, the axis-2 index of the body's centre. A seed may also lie within
        ``midline_mm`` of it: in a patient rolled about the long axis (or with a
        scoliotic spine) the trachea, in front of the spine, is off the spine's column
        but stays at the centre of the neck.

    Returns
    -------
    AirwayTrace or None
        None when no airway is found.
    """
    pixel_cm2 = spacing[1] * spacing[2] / 100.0
    search = max(1, int(math.ceil(seed_search_mm / spacing[0])))
    central = functools.partial(_central, midline_index=midline_index, centre_columns=centre_columns,
                                reach=midline_mm / spacing[2])
    # A seed whose trace is no airway (an apex's tip, gas of the oesophagus) gives way to
    # the next one that is not wholly on a trace already followed.
    traced = np.zeros(air.shape, dtype=bool)
    seeds = (seed for seed in _seeds(air, search, min_area_cm2 / pixel_cm2, max_area_cm2 / pixel_cm2, central)
             if not traced[seed[0]][seed[1]].all())
    for k0, plane in itertools.islice(seeds, _MAX_SEEDS):
        trace, ends_in_lung = _trace(air, k0, plane, spacing, search=search, max_pixels=max_area_cm2 / pixel_cm2,
                                     growth=growth, bridge_mm=bridge_mm, margin_mm=margin_mm, central=central)
        if ends_in_lung and trace.length_mm >= min_length_mm:
            return trace
        traced |= trace.mask
    return None


def _seeds(air, search, min_pixels, max_pixels, central):
    """Central air islands of the trachea's size in the top ``search`` slices: (slice, mask)
    pairs, from the top down and, within a slice, the largest first."""
    top = air.shape[0] - 1
    for k in range(top, max(top - search, -1), -1):
        labels, count = ndimage.label(air[k])
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        centres = ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, count + 1))
        found = [index for index in range(1, count + 1)
                 if min_pixels <= sizes[index] <= max_pixels and central(centres[index - 1][1], k)]
        for index in sorted(found, key=lambda i: -sizes[i]):
            yield k, labels == index


def _trace(air, k0, plane, spacing, *, search, max_pixels, growth, bridge_mm, margin_mm, central):
    """The airway followed from the seed ``plane`` of slice ``k0`` both ways, and whether it
    ends in a lung."""
    pixel_cm2 = spacing[1] * spacing[2] / 100.0
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
                bridge = _bridge(air[k + step], mask[k], accepted, functools.partial(central, k=k))
                if bridge.any():
                    accepted = accepted | bridge
                    bridged += 1
            if not accepted.any():
                break
            k += step
            mask[k] = accepted
            lowest = min(lowest, k)
    highest = int(np.flatnonzero(mask.any(axis=(1, 2))).max())
    upper = mask[max(highest - search, 0):highest + 1]
    midline = float(np.argwhere(upper)[:, 2].mean())
    return AirwayTrace(mask=mask, midline_index=midline, length_mm=(highest - lowest + 1) * spacing[0]), reached_lung


def _central(column: float, k: int, *, midline_index: float, centre_columns, reach: float) -> bool:
    """Whether an axis-2 ``column`` of slice ``k`` lies within ``reach`` voxels of the
    midline, or of that slice's body centre when ``centre_columns`` is given."""
    if abs(column - midline_index) <= reach:
        return True
    return centre_columns is not None and abs(column - centre_columns[k]) <= reach


def _bridge(plane, previous, accepted, central) -> np.ndarray:
    """Air of ``plane`` under the footprint of each central airway island of ``previous``
    that found no island of its own in ``plane`` (grown by one voxel, at most its area)."""
    labels, count = ndimage.label(previous)
    out = np.zeros(plane.shape, dtype=bool)
    for index in range(1, count + 1):
        island = labels == index
        if (accepted & island).any():
            continue
        if not central(np.argwhere(island)[:, 1].mean()):
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
