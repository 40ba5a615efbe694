"""Binary erosion and dilation on bit-packed volumes.

A boolean (z, y, x) volume is packed 8 voxels per byte along x, so every logical
operation touches an eighth of the memory. A symmetric, x-convex structuring element
is described by its x half-width for each (dz, dy) offset; erosion is the AND (and
dilation the OR) over (dz, dy) of x-run erosions (dilations) shifted by (dz, dy). The
outside of the volume counts as background, as in ``scipy.ndimage`` (border_value=0).

Tested voxel for voxel against ``scipy.ndimage.binary_erosion``/``binary_dilation``/
``binary_opening``.
"""

from __future__ import annotations

import math

import numpy as np

from radiolab._workspace import Workspace

Element = dict[tuple[int, int], int]


def octahedron(radius: int) -> Element:
    """The 6-connected cross iterated ``radius`` times (an L1 ball), as x runs."""
    return {(dz, dy): radius - abs(dz) - abs(dy)
            for dz in range(-radius, radius + 1) for dy in range(-radius, radius + 1)
            if abs(dz) + abs(dy) <= radius}


def ball_element(radius_mm: float, spacing) -> Element:
    """Offsets within ``radius_mm`` of the centre in physical units, as x runs."""
    sz, sy, sx = (float(s) for s in spacing)
    element: Element = {}
    for dz in range(-int(radius_mm // sz), int(radius_mm // sz) + 1):
        for dy in range(-int(radius_mm // sy), int(radius_mm // sy) + 1):
            rest = radius_mm**2 - (dz * sz) ** 2 - (dy * sy) ** 2
            if rest >= 0:
                element[(dz, dy)] = int(math.floor(math.sqrt(rest) / sx + 1e-9))
                # Guard the floating-point rim so that the test matches ``ball()`` exactly.
                w = element[(dz, dy)]
                if (dz * sz) ** 2 + (dy * sy) ** 2 + (w * sx) ** 2 > radius_mm**2:
                    element[(dz, dy)] = w - 1
                elif (dz * sz) ** 2 + (dy * sy) ** 2 + ((w + 1) * sx) ** 2 <= radius_mm**2:
                    element[(dz, dy)] = w + 1
    return element


def pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask, axis=-1)


def unpack(packed: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=width).view(bool)


def _pad_mask(width: int) -> int:
    used = width % 8
    return 0xFF if used == 0 else (0xFF << (8 - used)) & 0xFF


def _shift_x(packed: np.ndarray, k: int, work: Workspace | None = None) -> np.ndarray:
    """out[..., x] = in[..., x + k] on the packed x axis (bits big-endian), zeros outside.

    With ``work`` the result is one of its arrays, valid until the next call.
    """
    byte_shift, bit_shift = divmod(k, 8)
    n = packed.shape[-1]
    # extended[j] = packed[j + byte_shift] for j in 0..n (one spare byte for the carry)
    shape = packed.shape[:-1] + (n + 1,)
    extended = np.zeros(shape, dtype=np.uint8) if work is None else work.get("extended", shape, np.uint8)
    lo, hi = max(0, -byte_shift), min(n + 1, n - byte_shift)
    if lo < hi:
        extended[..., lo:hi] = packed[..., lo + byte_shift: hi + byte_shift]
        if work is not None:
            extended[..., :lo] = 0
            extended[..., hi:] = 0
    elif work is not None:
        extended[...] = 0
    if bit_shift == 0:
        return extended[..., :n].copy() if work is None else extended[..., :n]
    out = np.left_shift(extended[..., :n], bit_shift,
                        out=None if work is None else work.get("shifted", packed.shape, np.uint8))
    out |= np.right_shift(extended[..., 1:], 8 - bit_shift,
                          out=None if work is None else work.get("carry", packed.shape, np.uint8))
    return out


def _combine_shifted(result: np.ndarray, source: np.ndarray, dz: int, dy: int, combine, erode: bool) -> None:
    """result[z, y] = combine(result[z, y], source[z + dz, y + dy]) in place, zeros outside."""
    nz, ny = result.shape[:2]
    if abs(dz) >= nz or abs(dy) >= ny:
        if erode:
            result[...] = 0
        return
    dst = (slice(max(-dz, 0), nz - max(dz, 0)), slice(max(-dy, 0), ny - max(dy, 0)))
    src = (slice(max(dz, 0), nz - max(-dz, 0)), slice(max(dy, 0), ny - max(-dy, 0)))
    combine(result[dst], source[src], out=result[dst])
    if erode:  # where the shifted source lies outside the volume it is background
        if dz > 0:
            result[nz - dz:] = 0
        elif dz < 0:
            result[:-dz] = 0
        if dy > 0:
            result[:, ny - dy:] = 0
        elif dy < 0:
            result[:, :-dy] = 0


def _x_runs(packed: np.ndarray, widths, combine, width: int, work: Workspace) -> dict[int, np.ndarray]:
    runs = {0: packed}
    current = packed
    last_mask = _pad_mask(width)
    for w in range(1, max(widths) + 1):
        run = work.get(f"run {w}", packed.shape, np.uint8)
        combine(current, _shift_x(packed, w, work), out=run)
        combine(run, _shift_x(packed, -w, work), out=run)
        run[..., -1] &= last_mask
        runs[w] = current = run
    return runs


def _apply(packed: np.ndarray, element: Element, width: int, erode: bool,
           work: Workspace | None = None) -> np.ndarray:
    combine = np.bitwise_and if erode else np.bitwise_or
    runs = _x_runs(packed, set(element.values()), combine, width, Workspace() if work is None else work)
    items = sorted(element.items(), key=lambda item: item[0] != (0, 0))  # the unshifted term first
    (dz, dy), w = items[0]
    if (dz, dy) == (0, 0):
        result = runs[w].copy()
    else:
        result = np.full_like(packed, 0xFF if erode else 0)
        _combine_shifted(result, runs[w], dz, dy, combine, erode)
    for (dz, dy), w in items[1:]:
        _combine_shifted(result, runs[w], dz, dy, combine, erode)
    return result


def erode(packed: np.ndarray, element: Element, width: int) -> np.ndarray:
    """Erosion of a packed volume; ``width`` is the unpacked x size."""
    return _apply(packed, element, width, erode=True)


def dilate(packed: np.ndarray, element: Element, width: int) -> np.ndarray:
    """Dilation of a packed volume by a symmetric element."""
    return _apply(packed, element, width, erode=False)


class BelowThreshold:
    """The voxels of a (z, y, x) volume below a threshold, packed slab by slab on demand.

    Stands for the boolean volume ``volume < threshold`` in `opening` without making it:
    each slab is compared and packed a few slices at a time. With ``floor``, voxels
    below it are left out too (``floor <= volume < threshold``).
    """

    def __init__(self, volume: np.ndarray, threshold: float, *, floor: float | None = None):
        self.volume, self.threshold, self.floor = volume, threshold, floor

    @property
    def shape(self) -> tuple[int, ...]:
        return self.volume.shape

    def pack(self, start: int, stop: int) -> np.ndarray:
        """Packed ``volume[start:stop] < threshold`` (and ``>= floor``)."""
        nz, ny, nx = self.volume.shape
        out = np.empty((stop - start, ny, (nx + 7) // 8), dtype=np.uint8)
        step = max(1, (1 << 20) // max(1, ny * nx))  # about 1 MiB of booleans at a time
        below = np.empty((min(step, stop - start), ny, nx), dtype=bool)
        above = None if self.floor is None else np.empty_like(below)
        for z in range(start, stop, step):
            n = min(step, stop - z)
            np.less(self.volume[z: z + n], self.threshold, out=below[:n])
            if above is not None:
                np.greater_equal(self.volume[z: z + n], self.floor, out=above[:n])
                below[:n] &= above[:n]
            out[z - start: z - start + n] = np.packbits(below[:n], axis=-1)
        return out


def _pack_part(mask, start: int, stop: int) -> np.ndarray:
    if isinstance(mask, BelowThreshold):
        return mask.pack(start, stop)
    return pack(mask[start:stop])


def opening(mask, element: Element, *, threads: int = 1, packed: bool = False) -> np.ndarray:
    """Binary opening of a boolean (z, y, x) volume, outside counted as background.

    ``mask`` is a boolean array or a `BelowThreshold`. With ``threads`` > 1 the volume
    is cut into that many slabs along z, each packed and opened in its own thread
    (numpy releases the GIL) with a margin of twice the element's z reach, so that
    every kept slice saw all the voxels it depends on. With ``packed`` the result is
    returned packed along x (`unpack` gives the booleans).
    """
    nz, width = mask.shape[0], mask.shape[-1]
    margin = 2 * max(abs(dz) for dz, _ in element)
    threads = max(1, min(int(threads), nz // max(1, 4 * margin)))
    if threads == 1:
        result = _packed_opening(_pack_part(mask, 0, nz), element, width)
        return result if packed else unpack(result, width)
    from concurrent.futures import ThreadPoolExecutor

    cuts = [nz * k // threads for k in range(threads + 1)]
    parts = list(zip(cuts[:-1], cuts[1:]))

    def open_part(part):
        start, stop = part
        lo, hi = max(start - margin, 0), min(stop + margin, nz)
        return _packed_opening(_pack_part(mask, lo, hi), element, width)[start - lo: stop - lo]

    # The slabs stay packed until the end: one full-size result, not one per slab too.
    result = np.empty(mask.shape[:-1] + ((width + 7) // 8,), dtype=np.uint8)
    with ThreadPoolExecutor(threads) as pool:
        for (start, stop), part in zip(parts, pool.map(open_part, parts)):
            result[start:stop] = part
    return result if packed else unpack(result, width)


def _opening(mask: np.ndarray, element: Element) -> np.ndarray:
    return unpack(_packed_opening(pack(mask), element, mask.shape[-1]), mask.shape[-1])


def _packed_opening(packed: np.ndarray, element: Element, width: int) -> np.ndarray:
    work = Workspace()  # the erosion's x runs and shifts, reused by the dilation
    eroded = _apply(packed, element, width, erode=True, work=work)
    if not eroded.any():
        return eroded
    return _apply(eroded, element, width, erode=False, work=work)
