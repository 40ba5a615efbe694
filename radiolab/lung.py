"""Lung mask by HU threshold and morphology (Zaffino et al., Bioengineering 2021, 8:26).

Steps of the paper's pipeline (preset ``zaffino2021``):

1. HU below -1000 are set to -1000; candidates are voxels below ``threshold_hu``.
2. Binary opening.
3. 6-connected components: keep those at least ``min_island`` large whose bounding
   box touches neither the first/last row nor the first/last column of the axial
   plane (air outside the body does).
4. Two morphological closings with balls (first the larger, then the smaller).

Preset ``zaffino2021`` works in voxel units exactly as published: opening by the
6-connected element iterated 3 times, islands of at least 5e5 voxels, closings with
SimpleITK balls of radius 30 and 20 voxels.

Preset ``default`` (``LungMaskSettings.chest`` set) replaces steps 3-4 with the real-CT
steps of `radiolab.lung_segmentation` (body envelope, airways, gut gas, sides before
the closing, each lung closed alone, pleural envelope; see docs/lung.md), in mm, mL and
HU and in patient coordinates. Of the paper's sizes it keeps only the opening's in-plane
reach: a ball of 2 mm against the paper's 3 voxels of 0.68 mm (2.04 mm). In z they
differ: the paper's octahedron reaches 0.9 mm deep at its 0.3 mm slices, the ball 2 mm;
the paper's closing balls (30 and 20 voxels: 20.7 and 13.9 mm in-plane, 9 and 6 mm
deep) close both lungs together, the default closes each lung with a 10 mm ball; its
islands are at least 20 mL (the paper's 5e5 voxels are about 70 mL at its geometry).
A ``LungMaskSettings`` in mm units without ``chest`` runs steps 1-4 in mm.

Two backends compute the same masks: ``fast`` (distance transforms on the lung's
bounding box, connected-components-3d) and ``reference`` (the paper's library calls:
scipy.ndimage and, for the voxel-unit closings, SimpleITK; in mm units scipy.ndimage
with a physical ball), kept for agreement tests and benchmarks.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

from radiolab import _bitmorph
from radiolab._workspace import Workspace
from radiolab.chest_tuning import ChestTuning
from radiolab.errors import NoLungError, ParameterError
from radiolab.orientation import IDENTITY_DIRECTION

Backend = Literal["fast", "reference"]
# Threads of the distance transforms; 0 = all cores. Executors lower it per worker.
KERNEL_THREADS_VARIABLE = "RADIOLAB_KERNEL_THREADS"


def kernel_threads() -> int:
    try:
        return max(0, int(os.environ.get(KERNEL_THREADS_VARIABLE, "0")))
    except ValueError:
        return 0


def _thread_count() -> int:
    """Threads for one kernel: `kernel_threads`, 0 meaning every core."""
    return kernel_threads() or os.cpu_count() or 1

BACKENDS = ("fast", "reference")


@dataclass(frozen=True)
class LungMaskSettings:
    """Parameters of the lung mask; ``units`` says how sizes are read.

    Attributes
    ----------
    units : {"voxel", "mm"}
        ``"voxel"``: ``opening`` is a number of 6-connected iterations, ``min_island`` a
        voxel count and ``closing_radii`` ball radii in voxels (SimpleITK balls).
        ``"mm"``: ``opening`` is a ball radius in mm, ``min_island`` a volume in mL and
        ``closing_radii`` ball radii in mm, all measured with the scan's spacing.
    threshold_hu : float
        Candidates are voxels strictly below this value, in HU.
    clip_hu : float
        HU below this are set to it before thresholding (the paper's -1000).
    chest : ChestTuning or None
        The real-CT steps of `radiolab.lung_segmentation` (body, airways, gut gas,
        sides, pleura). None: the paper's pipeline above, with its border rule and
        closings of both lungs together.
    """

    units: Literal["voxel", "mm"] = "mm"
    threshold_hu: float = -155.0
    clip_hu: float = -1000.0
    opening: float = 2.0
    min_island: float = 70.0
    closing_radii: tuple[float, ...] = (20.7, 13.9)
    chest: ChestTuning | None = None

    def to_json(self) -> dict:
        return asdict(self)


PRESETS: dict[str, LungMaskSettings] = {
    "zaffino2021": LungMaskSettings(units="voxel", opening=3, min_island=5e5, closing_radii=(30, 20)),
    # Islands of 20 mL: a lung cut by the field of view is still one; gut gas is told by
    # its content, not its size. One closing of 10 mm, per lung.
    "default": LungMaskSettings(min_island=20.0, closing_radii=(10.0,), chest=ChestTuning()),
}
CHEST_FIELDS = tuple(ChestTuning.__dataclass_fields__)
# The chest-tuning fields that None switches off.
OPTIONAL_CHEST_FIELDS = tuple(name for name, spec in ChestTuning.__dataclass_fields__.items()
                              if "None" in str(spec.type))


def settings_for(preset: str = "default", **overrides) -> LungMaskSettings:
    """The settings of a preset, with some fields replaced.

    Raises
    ------
    ValueError
        If the preset or a field name is unknown; the message lists the valid ones.
    """
    if preset not in PRESETS:
        raise ParameterError(f"unknown lung-mask preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    valid = set(LungMaskSettings.__dataclass_fields__) - {"chest"}
    if base.chest is not None:
        valid |= set(CHEST_FIELDS)
    unknown = set(overrides) - valid
    if unknown:
        raise ParameterError(f"unknown lung-mask setting(s) {sorted(unknown)} for preset {preset!r}; "
                         f"valid: {sorted(valid)}")
    # None leaves a preset's own field as it is, except in the chest tuning, where None
    # switches a step off (documented per field).
    overrides = {k: v for k, v in overrides.items() if v is not None or k in CHEST_FIELDS}
    if "closing_radii" in overrides:
        overrides["closing_radii"] = tuple(float(r) for r in overrides["closing_radii"])
    chest = {k: overrides.pop(k) for k in list(overrides) if k in CHEST_FIELDS}
    if chest:
        overrides["chest"] = replace(base.chest, **chest)
    return replace(base, **overrides)


def lung_mask(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    preset: str = "default",
    backend: Backend = "fast",
    threshold_hu: float | None = None,
    opening: float | None = None,
    min_island: float | None = None,
    closing_radii: tuple[float, ...] | None = None,
    direction=IDENTITY_DIRECTION,
    **tuning,
) -> np.ndarray:
    """Segment both lungs of a chest CT.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, 3-D, indexed (z, y, x) with axial slices along axis 0.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    preset : {"default", "zaffino2021"}
        ``default`` uses physical units (mm, mL), ``zaffino2021`` the paper's voxel units.
    backend : {"fast", "reference"}
        Implementation of the paper's pipeline; both give the same mask. The
        ``default`` preset has one implementation and ignores it.
    threshold_hu, opening, min_island, closing_radii : optional
        Override the preset's values, in the preset's units (see `LungMaskSettings`).
    direction : sequence of 9 float
        Row-major ITK direction cosines (``Geometry.direction``). The ``default``
        preset makes every anatomical decision (superior, left, ...) in LPS with them.
    **tuning
        ``default`` preset: any field of `radiolab.chest_tuning.ChestTuning`.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the volume's shape.

    Raises
    ------
    ValueError
        If the volume is not 3-D, the spacing is not positive, or a setting is unknown.
    NoLungError
        If no candidate island passes the size and border rules.

    Examples
    --------
    >>> from radiolab.synthetic import chest_phantom
    >>> phantom = chest_phantom(seed=0)
    >>> mask = lung_mask(phantom.volume, phantom.geometry.spacing)
    >>> bool(mask.any())
    True
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x), got shape {volume.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ParameterError(f"spacing must be three positive mm values, got {spacing}")
    if backend not in BACKENDS:
        raise ParameterError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    settings = settings_for(preset, threshold_hu=threshold_hu, opening=opening,
                            min_island=min_island, closing_radii=closing_radii, **tuning)
    if settings.chest is not None:
        from radiolab.lung_segmentation import segment_lungs

        return segment_lungs(volume, spacing, settings, direction=direction).mask
    # The fast backend never makes the boolean candidate and opened volumes: slabs are
    # thresholded and packed in the opening's threads, and unpacked in the labelling's.
    packed = backend != "reference"
    if settings.threshold_hu <= settings.clip_hu:  # after clipping nothing lies below the threshold
        candidates = np.zeros(volume.shape, dtype=bool)
    elif packed:
        candidates = _bitmorph.BelowThreshold(volume, settings.threshold_hu)
    else:
        candidates = volume < settings.threshold_hu
    opened = _opening(candidates, spacing, settings, backend, packed=packed)
    del candidates
    islands = _lung_islands(opened, spacing, settings, backend, width=volume.shape[-1] if packed else None)
    del opened
    if not islands.any():
        raise NoLungError(
            "no lung found: no island of air-like voxels (HU < "
            f"{settings.threshold_hu:g}) of at least {_island_text(settings)} lies inside the body"
            + units_hint(volume, settings.threshold_hu)
        )
    mask = islands
    for radius in settings.closing_radii:
        mask = _closing(mask, spacing, radius, settings, backend)
    return mask


def units_hint(volume: np.ndarray, threshold_hu: float) -> str:
    """A hint for a volume with no value below the threshold: it may not be in HU."""
    lowest = float(np.min(volume)) if volume.size else 0.0
    if lowest < threshold_hu:
        return ""
    # Air is near -1000 HU in any chest CT; stored values without their rescale
    # (unsigned, air near 0) are the usual cause.
    return (f"; no voxel lies below {threshold_hu:g} HU (the lowest is {lowest:g}): the values may not be in HU "
            "(stored values without their rescale slope and intercept put air near 0, not -1000)")


def _island_text(settings: LungMaskSettings) -> str:
    return f"{settings.min_island:g} voxels" if settings.units == "voxel" else f"{settings.min_island:g} mL"


# -- opening -------------------------------------------------------------------------

def _opening(candidates, spacing, settings, backend, *, packed: bool = False) -> np.ndarray:
    """The opened candidates; ``candidates`` is a boolean volume or, on the fast backend,
    a `radiolab._bitmorph.BelowThreshold`. With ``packed`` (fast backend) the result is
    packed along x."""
    if settings.units == "voxel":
        iterations = int(settings.opening)
        element = _bitmorph.octahedron(iterations) if iterations > 0 else None
    else:
        radius = float(settings.opening)
        element = _bitmorph.ball_element(radius, spacing) if radius > 0 else None
    if element is None:
        if isinstance(candidates, _bitmorph.BelowThreshold):
            candidates = candidates.volume < candidates.threshold
            return _bitmorph.pack(candidates) if packed else candidates
        return _bitmorph.pack(candidates) if packed else candidates.copy()
    if backend == "reference":
        from scipy import ndimage

        if settings.units == "voxel":
            return ndimage.binary_opening(candidates, iterations=iterations)
        return ndimage.binary_opening(candidates, structure=ball(radius, spacing))
    return _bitmorph.opening(candidates, element, threads=_thread_count(), packed=packed)


def ball(radius_mm: float, spacing) -> np.ndarray:
    """Structuring element: voxel offsets within ``radius_mm`` of the centre (mm metric)."""
    half = [int(math.floor(radius_mm / s)) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist_sq = sum((g * s) ** 2 for g, s in zip(grids, spacing))
    return dist_sq <= radius_mm**2


# -- islands -------------------------------------------------------------------------

def _lung_islands(opened: np.ndarray, spacing, settings, backend, *, width: int | None = None) -> np.ndarray:
    """The kept islands of the opened candidates; with ``width`` (fast backend), ``opened``
    is packed along x and ``width`` is its unpacked x size."""
    if settings.units == "voxel":
        min_voxels = float(settings.min_island)
    else:
        min_voxels = settings.min_island * 1000.0 / float(np.prod(spacing))
    if backend == "reference":
        from scipy import ndimage

        labels, count = ndimage.label(opened)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        boxes = ndimage.find_objects(labels)
        # Every label 1..count is examined, the highest included.
        keep = [
            index + 1 for index, box in enumerate(boxes)
            if box is not None and sizes[index + 1] >= min_voxels and not _touches_axial_border(box, opened.shape)
        ]
        return np.isin(labels, keep)
    return _slab_islands(opened, min_voxels, width=width)


def _slab_islands(opened: np.ndarray, min_voxels: float, *, slab_voxels: int = 1 << 23,
                  width: int | None = None) -> np.ndarray:
    """The 6-connected islands of ``opened`` that are large enough and reach no axial border.

    The volume is labelled in slabs of a few slices (about ``slab_voxels`` voxels, in
    parallel threads; connected-components-3d releases the GIL), each slab's labels
    kept as uint16 where they fit, and the islands cut by a slab boundary joined again
    through the labels on both sides of it: the same islands as labelling the whole
    volume, with half the memory of its uint32 label volume. Counting and the final
    lookup run per slab in the same threads. With ``width``, ``opened`` is packed along x
    (`radiolab._bitmorph.pack`) and each slab is unpacked in its thread.
    """
    import cc3d

    nz, ny = opened.shape[:2]
    nx = opened.shape[2] if width is None else width
    step = max(1, min(nz, slab_voxels // max(1, ny * nx)))
    bounds = [(z, min(z + step, nz)) for z in range(0, nz, step)]
    threads = min(len(bounds), _thread_count())
    workspaces = [Workspace() for _ in range(threads)]
    pool = None
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(threads)

    def on_threads(function, items):
        # Slab k always goes to workspace k % threads, and slabs are handed out in
        # rounds of `threads`, so that no two running calls share a workspace.
        items = list(items)
        if pool is None:
            return [function(item, workspaces[0]) for item in items]
        results = []
        for first in range(0, len(items), threads):
            chunk = items[first: first + threads]
            results += pool.map(function, chunk, workspaces[: len(chunk)])
        return results

    def label(bound, work):
        part = opened[bound[0]:bound[1]]
        if width is not None:
            part = _bitmorph.unpack(part, width)
        labels, count = cc3d.connected_components(part, connectivity=6, return_N=True)
        del part
        if count < np.iinfo(np.uint16).max and labels.dtype != np.uint16:
            labels = labels.astype(np.uint16)
        count = int(count)
        return labels, count, _label_sizes(labels, count, work), _border_labels(labels, count)

    try:
        slabs = on_threads(label, bounds)
        # Global island ids: slab k's label l (l >= 1) is offsets[k] + l; 0 is background.
        offsets = np.cumsum([0] + [count for _, count, _, _ in slabs])
        total = int(offsets[-1])
        sizes = np.zeros(total + 1, dtype=np.int64)
        on_border = np.zeros(total + 1, dtype=bool)
        for (_, count, slab_sizes, border), offset in zip(slabs, offsets):
            sizes[offset + 1: offset + count + 1] = slab_sizes
            on_border[offset + border] = True
        root = _join_across_slabs([(labels, count) for labels, count, _, _ in slabs], offsets, total)
        island_sizes = np.bincount(root, weights=sizes, minlength=total + 1)
        island_on_border = np.zeros(total + 1, dtype=bool)
        island_on_border[root[on_border]] = True
        keep = (island_sizes >= min_voxels) & ~island_on_border
        keep = keep[root]
        keep[0] = False
        out = np.zeros((nz, ny, nx), dtype=bool)

        def lookup(item, work):
            bound, (labels, count, _, _), offset = item
            table = keep[offset: offset + count + 1].copy()
            table[0] = False
            _write_kept(labels, table, out[bound[0]: bound[1]], work)

        on_threads(lookup, zip(bounds, slabs, offsets))
    finally:
        if pool is not None:
            pool.shutdown()
    return out


# A slab with at most this many labels is counted and looked up by comparing it with
# each label, which costs less than an intp copy of the slab for bincount and take.
_FEW_LABELS = 6


def _label_sizes(labels: np.ndarray, count: int, work: Workspace) -> np.ndarray:
    """Voxel counts of labels 1..count of a label slab."""
    if count <= _FEW_LABELS:
        equal = work.get("equal", labels.shape, bool)
        return np.array([np.count_nonzero(np.equal(labels, value, out=equal)) for value in range(1, count + 1)],
                        dtype=np.int64)
    sizes = np.zeros(count + 1, dtype=np.int64)
    for z in range(0, labels.shape[0], 4):
        sizes += np.bincount(work.as_index("labels", labels[z: z + 4]).reshape(-1), minlength=count + 1)
    return sizes[1:]


def _border_labels(labels: np.ndarray, count: int) -> np.ndarray:
    """Labels (>= 1) present on the slab's four axial faces."""
    present = np.zeros(count + 1, dtype=bool)
    for face in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        # bincount, not np.unique: numpy 2's unique imports numpy.ma (0.05-0.15 s)
        present |= np.bincount(face.ravel(), minlength=count + 1).astype(bool)
    present[0] = False
    return np.flatnonzero(present)


def _write_kept(labels: np.ndarray, table: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    """``out[...] = table[labels]`` for a boolean ``table`` (``table[0]`` False)."""
    kept = np.flatnonzero(table).tolist()  # Python ints: compared in the labels' own dtype
    if not kept:
        return
    if len(kept) <= _FEW_LABELS:
        np.equal(labels, kept[0], out=out)
        if len(kept) > 1:
            equal = work.get("equal", labels.shape, bool)
            for value in kept[1:]:
                out |= np.equal(labels, value, out=equal)
        return
    for z in range(0, labels.shape[0], 4):
        np.take(table, work.as_index("labels", labels[z: z + 4]), mode="clip",  # valid labels: no checking copy
                out=out[z: min(z + 4, labels.shape[0])])


def _join_across_slabs(slabs, offsets, total: int) -> np.ndarray:
    """For every global label, the smallest label of the island it belongs to."""
    parent = np.arange(total + 1)
    pairs = []
    for k in range(len(slabs) - 1):
        below, above = slabs[k][0][-1], slabs[k + 1][0][0]
        touching = (below > 0) & (above > 0)
        if touching.any():
            # Each pair as one integer, so that np.unique sorts plain numbers.
            codes = (below[touching].astype(np.int64) + offsets[k]) * (total + 1)
            codes += above[touching].astype(np.int64) + int(offsets[k + 1])
            codes.sort()
            pairs.append(codes[np.concatenate(([True], codes[1:] != codes[:-1]))])
    if not pairs:
        return parent

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    codes = np.concatenate(pairs)
    for a, b in zip((codes // (total + 1)).tolist(), (codes % (total + 1)).tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    while True:  # point every label at its root
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _touches_axial_border(box: tuple[slice, ...], shape) -> bool:
    rows, cols = box[1], box[2]
    return rows.start == 0 or rows.stop == shape[1] or cols.start == 0 or cols.stop == shape[2]


# -- closing -------------------------------------------------------------------------

def bounding_box(mask: np.ndarray, pad=(0, 0, 0)) -> tuple[slice, ...] | None:
    """Bounding box of the True (non-zero) voxels, grown by ``pad`` voxels per axis, clipped."""
    if mask.ndim == 0:
        return None
    found = _byte_volume_box(mask)
    if found is not None:
        if not found:
            return None
        return tuple(slice(max(start - p, 0), min(stop + p, n))
                     for (start, stop), p, n in zip(found, pad, mask.shape))
    slices = []
    found = []
    sub = mask
    # Axis by axis, each search on the part already cropped along the earlier axes.
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(sub.any(axis=other)) if other else np.flatnonzero(sub)
        if present.size == 0:
            return None
        start, stop = int(present[0]), int(present[-1]) + 1
        found.append((start, stop))
        sub = sub[(slice(None),) * axis + (slice(start, stop),)]
    for axis, (start, stop) in enumerate(found):
        p = pad[axis] if axis < len(pad) else 0
        slices.append(slice(max(start - p, 0), min(stop + p, mask.shape[axis])))
    return tuple(slices)


def _byte_volume_box(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """`bounding_box` of a C-contiguous 3-D bool/uint8 volume whose rows hold whole 8-byte
    words, searched 8 voxels at a time; [] when empty, None when the layout does not fit."""
    if (mask.ndim != 3 or mask.dtype.itemsize != 1 or mask.dtype.kind not in "bu" or mask.shape[2] % 8
            or not mask.flags.c_contiguous or mask.size == 0):
        return None
    words = mask.view(np.uint64)  # (z, y, x / 8): a word is non-zero iff one of its voxels is
    nz, ny, nw = words.shape
    zs = np.flatnonzero(np.bitwise_or.reduce(words.reshape(nz, ny * nw), axis=1))
    if zs.size == 0:
        return []
    words = words[zs[0]: zs[-1] + 1]
    ys = np.flatnonzero(np.bitwise_or.reduce(words, axis=2).any(axis=0))
    words = words[:, ys[0]: ys[-1] + 1]
    columns = np.bitwise_or.reduce(words, axis=(0, 1))
    xs = np.flatnonzero(columns.view(np.uint8))
    return [(int(zs[0]), int(zs[-1]) + 1), (int(ys[0]), int(ys[-1]) + 1), (int(xs[0]), int(xs[-1]) + 1)]


def _closing(mask, spacing, radius, settings, backend) -> np.ndarray:
    if radius <= 0:
        return mask
    if backend == "reference":
        if settings.units == "voxel":
            return _sitk_closing(mask, radius)
        return _scipy_closing(mask, spacing, radius)
    if settings.units == "voxel":
        metric = (1.0, 1.0, 1.0)
        # SimpleITK's ball of radius r holds the offsets with |d| <= r + 0.5, i.e.
        # integer |d|^2 <= r^2 + r.
        radius_sq = radius * radius + radius
    else:
        metric = spacing
        radius_sq = radius * radius
    return _edt_closing(mask, metric, radius_sq)


def _edt_closing(mask: np.ndarray, metric, radius_sq: float) -> np.ndarray:
    """Closing by a ball, as two thresholded distance transforms on the bounding box.

    Outside the volume counts as background, like SimpleITK's safe border.
    """
    import edt

    box = bounding_box(mask)
    if box is None:
        return mask
    # A voxel outside the crop lies more than the radius from every voxel of the box, so
    # that counting it as background (black_border) changes nothing inside the box.
    pad = [int(math.floor(math.sqrt(radius_sq) / m + 1e-6)) for m in metric]
    crop = np.pad(mask[box], [(p, p) for p in pad])
    threads = _thread_count()
    dilated = edt.edtsq((~crop).view(np.uint8), anisotropy=metric, black_border=False, parallel=threads) <= radius_sq
    del crop
    closed = edt.edtsq(dilated.view(np.uint8), anisotropy=metric, black_border=True, parallel=threads) > radius_sq
    del dilated
    out = np.zeros(mask.shape, dtype=bool)  # calloc: only the box's pages take memory
    inner = tuple(slice(p, p + (b.stop - b.start)) for p, b in zip(pad, box))
    out[box] = closed[inner]
    return out


def _sitk_closing(mask: np.ndarray, radius: float) -> np.ndarray:
    """The paper's closing: a SimpleITK ball on the mask's box plus 20 voxels in-plane."""
    import SimpleITK as sitk

    box = bounding_box(mask, pad=(0, 20, 20))
    if box is None:
        return mask
    image = sitk.GetImageFromArray(mask[box].astype(np.uint8))
    closed = sitk.BinaryMorphologicalClosing(image, [int(radius)] * 3, sitk.sitkBall, 1, True)
    out = np.zeros_like(mask)
    out[box] = sitk.GetArrayFromImage(closed).astype(bool)
    return out


def _scipy_closing(mask: np.ndarray, spacing, radius_mm: float) -> np.ndarray:
    """Closing by a physical ball with scipy, on the box zero-padded by the radius."""
    from scipy import ndimage

    box = bounding_box(mask)
    if box is None:
        return mask
    structure = ball(radius_mm, spacing)
    pad = [(h // 2 + 1, h // 2 + 1) for h in structure.shape]
    crop = np.pad(mask[box], pad)
    closed = ndimage.binary_closing(crop, structure=structure)
    out = np.zeros_like(mask)
    out[box] = closed[tuple(slice(p[0], p[0] + (b.stop - b.start)) for p, b in zip(pad, box))]
    return out


def lung_volume_ml(mask: np.ndarray, spacing) -> float:
    """Volume of a mask in mL."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0
