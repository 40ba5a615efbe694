"""Insert synthetic lesions of known extent into a lung: blobs grown from the pleura.

``insert_lesions`` takes a CT (real or synthetic), its spacing and direction, and a lung
mask, and grows ground-glass (GGO) or consolidation blobs inward from seeds on the costal
pleura until they cover a requested fraction of the lung. It returns the new volume and
the truth masks, so that any lung mask or tissue classifier can be tested on real
anatomy with lesions whose extent is known exactly.

How a blob grows: every voxel of the allowed region gets a distance to the seed, in mm,
scaled by a smooth random factor (so that blobs are irregular, not balls). The blob is
the connected part of the region, containing the seed, whose scaled distance is below a
level (found by bisection), completed to exactly the requested number of voxels by a
priority flood from its surface, nearest first. A blob seeded at the pleura is
therefore a compact, irregular cap against the chest wall that reaches inward, as
subpleural COVID-19 lesions do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from radiolab.errors import DataError, ParameterError

LesionKind = Literal["ggo", "consolidation"]
# HU ranges of inserted lesions (ground glass: -700 to -500, consolidation: -100 to +100).
LESION_HU: dict[str, tuple[float, float]] = {"ggo": (-700.0, -500.0), "consolidation": (-100.0, 100.0)}
# Default range of the volume of one blob, mL (a lower-lobe segment is about 100-200 mL).
DEFAULT_BLOB_ML = (20.0, 150.0)
_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


@dataclass
class LesionInsertion:
    """Result of `insert_lesions`.

    Attributes
    ----------
    volume : numpy.ndarray
        The CT with the lesions, same shape and dtype as the input, in HU.
    lesions : numpy.ndarray
        Boolean truth mask of all lesion voxels.
    blobs : numpy.ndarray
        int32 map: 0 outside lesions, blob number 1..n inside.
    fraction : float
        Lesion voxels / lung-mask voxels, as achieved.
    blob_ml : list of float
        Volume of each blob, in mL.
    kind : str
        ``"ggo"`` or ``"consolidation"``.
    hu_range : tuple of float
        The HU range the lesion voxels were drawn in.
    """

    volume: np.ndarray
    lesions: np.ndarray
    blobs: np.ndarray
    fraction: float
    blob_ml: list[float] = field(default_factory=list)
    kind: str = "ggo"
    hu_range: tuple[float, float] = (0.0, 0.0)


def pleural_surface(lung: np.ndarray) -> np.ndarray:
    """Lung voxels with a face neighbour outside the lung (image faces do not count).

    A lung cut by the field of view is not bounded by pleura at the image edge, so
    voxels whose only outside neighbour is beyond the image are not surface voxels.
    """
    lung = np.asarray(lung, dtype=bool)
    # Pad with True so the image border never counts as outside the lung.
    inner = ndimage.binary_erosion(np.pad(lung, 1, constant_values=True), _FACE_CONNECTIVITY)[1:-1, 1:-1, 1:-1]
    return lung & ~inner


def costal_pleura(lung: np.ndarray, spacing, direction=None) -> np.ndarray:
    """Pleural surface voxels on the chest-wall side of each lung (lateral halves).

    Left and right are patient left/right (LPS x, from ``direction``), split at the
    middle of the mask's left-right extent; a voxel is costal when it lies farther from
    that midline than its side's centroid. The mask should hold both lungs: with one
    lung only, its medial half is taken for the other side.

    Parameters
    ----------
    lung : numpy.ndarray
        Boolean lung mask, indexed (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    direction : sequence of 9 float, optional
        Row-major 3x3 direction cosines (ITK convention, columns = index axes x, y, z).
        Identity when omitted.
    """
    surface = pleural_surface(lung)
    x_mm = _patient_x(lung.shape, spacing, direction)
    lung_x = x_mm[lung]
    if lung_x.size == 0:
        return surface
    midline = 0.5 * (float(lung_x.min()) + float(lung_x.max()))
    costal = np.zeros(lung.shape, dtype=bool)
    for sign in (-1.0, 1.0):
        side = lung & (sign * (x_mm - midline) > 0)
        if not side.any():
            continue
        centroid = float(x_mm[side].mean())
        costal |= surface & side & (sign * (x_mm - centroid) > 0)
    return costal


def _patient_x(shape, spacing, direction) -> np.ndarray:
    """Patient x (LPS, mm, up to the origin) of every voxel of a (z, y, x) grid."""
    matrix = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    nz, ny, nx = shape
    sz, sy, sx = (float(s) for s in spacing)
    # Index axes (x, y, z) map to patient by the columns of the direction matrix.
    return (matrix[0, 0] * sx * np.arange(nx)[None, None, :]
            + matrix[0, 1] * sy * np.arange(ny)[None, :, None]
            + matrix[0, 2] * sz * np.arange(nz)[:, None, None]) * np.ones(shape, dtype=np.float32)


def grow_blob(
    region: np.ndarray,
    seed_index: tuple[int, int, int],
    n_voxels: int,
    spacing,
    *,
    rng: np.random.Generator,
    irregularity: float = 0.3,
    roughness_mm: float = 8.0,
) -> np.ndarray:
    """Grow one connected blob of exactly ``n_voxels`` voxels from a seed, inside a region.

    Parameters
    ----------
    region : numpy.ndarray
        Boolean mask of the voxels the blob may take (z, y, x).
    seed_index : tuple of int
        Index of the seed voxel; it must lie in ``region``.
    n_voxels : int
        Voxels wanted. Fewer are returned only when the seed's connected part of the
        region is smaller.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    rng : numpy.random.Generator
        Source of the blob's irregularity.
    irregularity : float
        Standard deviation of the log of the random distance factor (0: balls).
    roughness_mm : float
        Correlation length of the distance factor, in mm.

    Returns
    -------
    numpy.ndarray
        Boolean blob mask, 6-connected, containing the seed.
    """
    region = np.asarray(region, dtype=bool)
    seed_index = tuple(int(i) for i in seed_index)
    if not region[seed_index]:
        raise ValueError(f"seed {seed_index} lies outside the region the blob may take")
    spacing = np.asarray(spacing, dtype=float)
    out = np.zeros(region.shape, dtype=bool)
    n_voxels = int(n_voxels)
    if n_voxels <= 0:
        return out
    # Start from a box around a hemisphere of the wanted volume; grow the box while the
    # blob reaches one of its faces inside the image (the box must never shape the blob).
    volume_mm3 = n_voxels * float(np.prod(spacing))
    radius = (3.0 * volume_mm3 / (2.0 * math.pi)) ** (1.0 / 3.0) * 1.3 * math.exp(irregularity)
    while True:
        box = tuple(slice(max(c - int(math.ceil(radius / s)), 0), min(c + int(math.ceil(radius / s)) + 1, n))
                    for c, s, n in zip(seed_index, spacing, region.shape))
        blob = _grow_in_box(region[box], tuple(c - b.start for c, b in zip(seed_index, box)),
                            n_voxels, spacing, rng, irregularity, roughness_mm)
        if not _reaches_inner_face(blob, box, region.shape):
            out[box] = blob
            return out
        radius *= 1.5


def _reaches_inner_face(blob: np.ndarray, box, shape) -> bool:
    """Whether the blob touches a face of its box that is not an image face."""
    for axis, (part, size) in enumerate(zip(box, shape)):
        if part.start > 0 and np.take(blob, 0, axis=axis).any():
            return True
        if part.stop < size and np.take(blob, -1, axis=axis).any():
            return True
    return False


def _smooth_noise(shape, spacing, roughness_mm, rng) -> np.ndarray:
    """Unit-variance Gaussian noise correlated over ``roughness_mm``, drawn on a coarse grid."""
    step = [max(1, int(roughness_mm / (2.0 * s))) for s in spacing]
    coarse_shape = [n // k + 3 for n, k in zip(shape, step)]
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma=2.0, mode="wrap")
    fine = ndimage.zoom(coarse, step, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in shape)]
    return fine / max(float(fine.std()), 1e-12)


def _grow_in_box(region, seed, n_voxels, spacing, rng, irregularity, roughness_mm) -> np.ndarray:
    import cc3d

    grids = np.ogrid[tuple(slice(0, n) for n in region.shape)]
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, seed, spacing)))
    if irregularity > 0:
        distance = distance * np.exp(irregularity * _smooth_noise(region.shape, spacing, roughness_mm, rng))
    distance = np.where(region, distance, np.inf)

    def component(level: float) -> np.ndarray:
        labels = cc3d.connected_components(distance <= level, connectivity=6)
        return labels == labels[seed]

    finite = distance[np.isfinite(distance)]
    high = float(finite.max())
    above = component(high)
    if above.sum() <= n_voxels:
        return above
    # The seed's component below a level is part of the voxels below it, so the level
    # holding n_voxels voxels in all bounds the search from below.
    low = float(np.partition(finite, n_voxels - 1)[n_voxels - 1]) if finite.size >= n_voxels else 0.0
    below = component(low)
    if below.sum() >= n_voxels:
        high, above, low, below = low, below, 0.0, component(0.0)
    tolerance = max(100, n_voxels // 50)
    while int(above.sum()) - int(below.sum()) > tolerance and high - low > 1e-3:
        middle = 0.5 * (low + high)
        candidate = component(middle)
        if candidate.sum() >= n_voxels:
            high, above = middle, candidate
        else:
            low, below = middle, candidate
    return _flood(below, above, distance, n_voxels - int(below.sum()))


def _flood(blob: np.ndarray, allowed: np.ndarray, distance: np.ndarray, need: int) -> np.ndarray:
    """Add ``need`` voxels of ``allowed`` to ``blob``, nearest (in ``distance``) first,
    each a face neighbour of the blob so far (a priority flood)."""
    import heapq

    shape = blob.shape
    flat_blob = blob.ravel().copy()
    flat_allowed = allowed.ravel()
    flat_distance = distance.ravel()
    strides = (shape[1] * shape[2], shape[2], 1)
    frontier = np.flatnonzero(ndimage.binary_dilation(blob, _FACE_CONNECTIVITY) & allowed & ~blob)
    queued = np.zeros(flat_blob.size, dtype=bool)
    queued[frontier] = True
    heap = [(float(flat_distance[i]), int(i)) for i in frontier]
    heapq.heapify(heap)
    while need > 0 and heap:
        _, index = heapq.heappop(heap)
        flat_blob[index] = True
        need -= 1
        position = (index // strides[0], (index // strides[1]) % shape[1], index % shape[2])
        for axis in range(3):
            for step in (-1, 1):
                if 0 <= position[axis] + step < shape[axis]:
                    neighbour = index + step * strides[axis]
                    if flat_allowed[neighbour] and not queued[neighbour] and not flat_blob[neighbour]:
                        queued[neighbour] = True
                        heapq.heappush(heap, (float(flat_distance[neighbour]), neighbour))
    return flat_blob.reshape(shape)


def insert_lesions(
    volume: np.ndarray,
    spacing,
    lung: np.ndarray,
    *,
    fraction: float,
    kind: LesionKind = "ggo",
    direction=None,
    blob_ml: tuple[float, float] = DEFAULT_BLOB_ML,
    hu_range: tuple[float, float] | None = None,
    irregularity: float = 0.3,
    seed: int = 0,
) -> LesionInsertion:
    """Grow GGO or consolidation blobs from the costal pleura to a fraction of the lung.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, 3-D, indexed (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    lung : numpy.ndarray
        Boolean lung mask of the volume's shape. Blobs stay inside it.
    fraction : float
        Wanted lesion volume / lung-mask volume, in [0, 0.9].
    kind : {"ggo", "consolidation"}
        Ground glass (-700 to -500 HU) or consolidation (-100 to +100 HU).
    direction : sequence of 9 float, optional
        Direction cosines of the volume (see `costal_pleura`); left and right, hence
        the chest-wall side of each lung, are found in patient coordinates.
    blob_ml : (float, float)
        Range of the volume of one blob, in mL; the last blob takes what is left.
    hu_range : (float, float), optional
        Override the HU range of the lesion voxels.
    irregularity : float
        Irregularity of the blob outline (see `grow_blob`).
    seed : int
        Seed of ``numpy.random.default_rng``; equal seeds give equal lesions.

    Returns
    -------
    LesionInsertion
        Lesion voxels take a per-blob level in the HU range plus the scan's own fine
        texture (its difference from a 1-voxel Gaussian smoothing), clipped to the range.
        For GGO, voxels of the mask already denser than the range (vessels, airway
        walls) are left as they are and are not lesion voxels.

    Raises
    ------
    ValueError
        If shapes differ, the fraction or ranges are out of bounds, or the mask holds no
        pleural surface to grow from.

    Examples
    --------
    >>> import numpy as np
    >>> ct = np.full((20, 40, 40), 40, dtype=np.int16)
    >>> lung = np.zeros(ct.shape, dtype=bool)
    >>> lung[4:16, 8:32, 4:18] = lung[4:16, 8:32, 22:36] = True
    >>> ct[lung] = -850
    >>> result = insert_lesions(ct, (2.0, 2.0, 2.0), lung, fraction=0.2, kind="consolidation")
    >>> round(result.fraction, 3), bool((result.lesions <= lung).all())
    (0.2, True)
    """
    volume = np.asarray(volume)
    lung = np.asarray(lung, dtype=bool)
    if volume.ndim != 3 or volume.shape != lung.shape:
        raise ValueError(f"volume {volume.shape} and lung mask {lung.shape} must be 3-D arrays of one shape")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive mm values, got {spacing}")
    if kind not in LESION_HU:
        raise ParameterError(f"unknown lesion kind {kind!r}; valid kinds: {', '.join(LESION_HU)}")
    if not 0.0 <= fraction <= 0.9:
        raise ParameterError(f"fraction must lie in [0, 0.9], got {fraction}")
    low_ml, high_ml = (float(v) for v in blob_ml)
    if not 0 < low_ml <= high_ml:
        raise ParameterError(f"blob_ml must be a range 0 < low <= high in mL, got {blob_ml}")
    lo_hu, hi_hu = (float(v) for v in (hu_range or LESION_HU[kind]))
    if not lo_hu < hi_hu:
        raise ParameterError(f"hu_range must be (low, high) with low < high, got {hu_range}")
    rng = np.random.default_rng(seed)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lung_voxels = int(lung.sum())
    target = int(round(fraction * lung_voxels))

    allowed = lung & (volume < hi_hu) if kind == "ggo" else lung.copy()
    pleura = costal_pleura(lung, spacing, direction)
    blobs = np.zeros(volume.shape, dtype=np.int32)
    sizes: list[int] = []
    placed = 0
    failures = 0
    while placed < target and failures < 50:
        seeds = np.flatnonzero(pleura & allowed & (blobs == 0))
        if seeds.size == 0:
            break
        want = int(round(rng.uniform(low_ml, high_ml) / voxel_ml))
        want = max(1, min(want, target - placed))
        seed_index = np.unravel_index(int(seeds[rng.integers(seeds.size)]), volume.shape)
        blob = grow_blob(allowed & (blobs == 0), seed_index, want, spacing, rng=rng, irregularity=irregularity)
        count = int(blob.sum())
        if count < want:
            failures += 1
        if count == 0:
            continue
        sizes.append(count)
        blobs[blob] = len(sizes)
        placed += count
    if target > 0 and not sizes:
        raise DataError("the lung mask has no pleural surface inside the image to grow lesions from")

    lesions = blobs > 0
    out = volume.copy()
    if lesions.any():
        values = _lesion_values(volume, blobs, len(sizes), lo_hu, hi_hu, rng)
        if np.issubdtype(out.dtype, np.integer):
            values = np.rint(values)
        out[lesions] = values.astype(out.dtype)
    return LesionInsertion(
        volume=out, lesions=lesions, blobs=blobs, fraction=int(lesions.sum()) / max(lung_voxels, 1),
        blob_ml=[n * voxel_ml for n in sizes], kind=kind, hu_range=(lo_hu, hi_hu),
    )


def _lesion_values(volume, blobs, n_blobs, lo_hu, hi_hu, rng) -> np.ndarray:
    """HU of the lesion voxels: a level per blob plus the scan's own fine texture."""
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(blobs))
    sub = volume[box].astype(np.float32)
    texture = sub - ndimage.gaussian_filter(sub, sigma=1.0, mode="nearest")
    width = hi_hu - lo_hu
    levels = rng.uniform(lo_hu + 0.25 * width, hi_hu - 0.25 * width, size=n_blobs + 1)
    sub_blobs = blobs[box]
    inside = sub_blobs > 0
    values = levels[sub_blobs[inside]] + np.clip(texture[inside], -0.25 * width, 0.25 * width)
    full = np.zeros(volume.shape, dtype=np.float32)
    full[box][inside] = np.clip(values, lo_hu, hi_hu)
    return full[blobs > 0]
