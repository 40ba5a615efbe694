"""Median filtering of ordinal label maps.

``median_labels(labels)`` equals ``scipy.ndimage.median_filter(labels, size=4)`` voxel
for voxel (window offsets -2..+1 on every axis, reflected edges), as the paper's map,
computed from box counts: the median of the 64 labels in a window is the smallest label k such that at
least 33 of them are <= k. Box sums are separable, so the cost is a few array additions
per label value instead of a sort per voxel, and only the labelled region's bounding
box is processed (elsewhere the labels and their median are 0).

An even window has no centre voxel: with offsets -2..+1 the output at ``i`` is the
median around ``i - 0.5``, so the map is shifted half a voxel towards higher indices.
A labelled cube spanning indices 4..7 on an axis comes out spanning 4..8, one voxel
past the lung mask on the high side. The map is kept as scipy computes it; radiolab's
statistics from it (``radiolab features --map median``) count only the voxels inside
the lung mask (summary.csv and the report count the voxel-wise labels).
"""

from __future__ import annotations

import threading

import numpy as np

from radiolab._workspace import Workspace
from radiolab.errors import ParameterError
from radiolab.lung import _thread_count, bounding_box


def median_labels(labels: np.ndarray, *, size: int = 4, backend: str = "fast") -> np.ndarray:
    """Median filter of a label map with a cubic window of ``size`` voxels.

    Parameters
    ----------
    labels : numpy.ndarray
        Non-negative integer labels (uint8 0..5 for tissue maps), any number of axes.
    size : int
        Window edge, in voxels (the paper: 4). The window spans offsets
        ``-(size // 2) .. size - size // 2 - 1``, as in scipy.
    backend : {"fast", "reference"}
        ``reference`` calls ``scipy.ndimage.median_filter`` directly.

    Returns
    -------
    numpy.ndarray
        Filtered labels, same shape and dtype, identical to scipy's result.
    """
    if size < 1:
        raise ParameterError(f"size must be a positive number of voxels, got {size}")
    if backend == "reference":
        from scipy import ndimage

        return ndimage.median_filter(labels, size=size)
    if labels.dtype.kind not in "ub" and not (labels.dtype.kind == "i" and (labels.size == 0 or labels.min() >= 0)):
        raise ValueError(f"labels must be non-negative integers, got dtype {labels.dtype}")
    out = np.zeros(labels.shape, dtype=labels.dtype)  # calloc: only the box's pages take memory
    if labels.size == 0:
        return out
    before = size // 2
    after = size - before - 1
    box = bounding_box(labels)
    if box is None:
        return out
    # A label at j reaches the outputs j - after .. j + before.
    out_region = tuple(slice(max(b.start - after, 0), min(b.stop + before, n))
                       for b, n in zip(box, labels.shape))
    padded = _padded_window_source(labels, out_region, before, after)
    region_shape = out[out_region].shape
    # Slabs along the first axis of about 8 times the window (small temporaries), on
    # threads (numpy releases the GIL); output rows [a, b) see the source rows
    # [a, b + size - 1).
    parts = max(1, region_shape[0] // (8 * size))
    threads = min(_thread_count(), parts)
    cuts = [region_shape[0] * k // parts for k in range(parts + 1)]
    target = out[out_region]
    # One set of work arrays per thread, reused from slab to slab.
    local = threading.local()

    def slab(part):
        start, stop = part
        if not hasattr(local, "scratch"):
            local.scratch = Workspace()
        # The output starts at zero and the levels are counted into it.
        _median_from_counts(padded[start: stop + size - 1], size, target[start:stop], local.scratch)

    if threads == 1:
        for part in zip(cuts[:-1], cuts[1:]):
            slab(part)
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(slab, zip(cuts[:-1], cuts[1:])))
    return out


def _padded_window_source(labels, region, before, after):
    """The labels each output voxel of ``region`` sees: data around it, reflected at edges."""
    src = []
    widths = []
    for (s, n) in zip(region, labels.shape):
        lo, hi = s.start - before, s.stop + after
        src.append(slice(max(lo, 0), min(hi, n)))
        widths.append((max(0, -lo), max(0, hi - n)))
    source = labels[tuple(src)]
    if any(w != (0, 0) for w in widths):
        # Only the image's own edges are padded; 'symmetric' is scipy's 'reflect'.
        source = np.pad(source, widths, mode="symmetric")
    return source


def _median_from_counts(source, size, result, scratch):
    """Add to ``result`` (zeros, the valid part of ``source``'s windows) the median label.

    The same work arrays serve every level and slab: a large allocation's freshly mapped
    pages are paid for once, not once per level.
    """
    window = size**source.ndim
    rank = window // 2 + 1  # scipy takes the element of rank size**n // 2 (0-based)
    top = int(source.max())
    count_dtype = np.uint8 if window < 256 else np.uint16 if window < 65536 else np.uint32
    for level in range(top):
        below = np.less_equal(source, level, out=scratch.get("below", source.shape, bool))
        below = below.view(np.uint8) if count_dtype == np.uint8 else below.astype(count_dtype)
        counts = _box_sum(below, size, scratch)
        # result = number of levels whose cumulative count is still short of the rank
        result += np.less(counts, rank, out=scratch.get("short", counts.shape, bool))


def _box_sum(array, size, scratch=None):
    """Sum over windows of ``size`` along every axis (valid part only)."""
    for axis in range(array.ndim):
        array = _window_sum(array, axis, size, scratch, name=f"axis {axis}")
    return array


def _window_sum(array, axis, size, scratch=None, name=""):
    """Sums of ``size`` consecutive values along ``axis``.

    Sums of 2, 4, 8 ... values are built by doubling and those of the binary digits
    of ``size`` added: a window of 4 costs two additions instead of three. With
    ``scratch``, the sums go into its arrays (``name`` keeps callers' arrays apart).
    """
    def add(a, b, key):
        if scratch is None:
            return a + b
        return np.add(a, b, out=scratch.get(f"{name} {key}", a.shape, np.result_type(a, b)))

    length = array.shape[axis] - size + 1
    powers = {1: array}
    width = 1
    while width * 2 <= size:
        previous = powers[width]
        m = previous.shape[axis]
        powers[width * 2] = add(_take(previous, axis, 0, m - width), _take(previous, axis, width, m), width * 2)
        width *= 2
    total = None
    offset = 0
    for part in sorted(powers, reverse=True):
        if size - offset >= part:
            piece = _take(powers[part], axis, offset, offset + length)
            total = piece if total is None else add(total, piece, f"total {offset}")
            offset += part
    return total


def _take(array, axis, start, stop):
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop)
    return array[tuple(index)]
