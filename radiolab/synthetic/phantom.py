"""The phantom container, and cropping and reorienting a phantom with its truths."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from radiolab.io import Geometry


@dataclass
class Phantom:
    """A synthetic scan and its ground truth.

    Attributes
    ----------
    volume : numpy.ndarray
        int16 HU, indexed (z, y, x).
    geometry : Geometry
        Spacing in mm (z, y, x), origin and direction cosines.
    truth : dict of str to numpy.ndarray
        Boolean ground-truth masks of the volume's shape; the generator's docstring
        lists them.
    lesion_fraction : float
        (GGO + consolidation voxels) / lung voxels, in [0, 1].
    info : dict
        Measured figures of this phantom on its grid (mL, mm, fractions), by name.
    """

    volume: np.ndarray
    geometry: Geometry
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    lesion_fraction: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def crop_phantom(phantom: Phantom, box: tuple[slice, slice, slice]) -> Phantom:
    """Cut a phantom and all its truth masks to an index box, keeping the geometry.

    Use it to make a scan whose field of view cuts the lungs: the lungs stay in the
    ``lung`` truth up to the new image edge.

    Parameters
    ----------
    phantom : Phantom
    box : tuple of slice
        Index ranges along (z, y, x), with steps of 1 (``None`` ends allowed).

    Returns
    -------
    Phantom
        The origin moves to the box's first voxel, in patient (LPS) mm.

    Examples
    --------
    >>> from radiolab.synthetic import chest_phantom
    >>> small = crop_phantom(chest_phantom(seed=0), (slice(10, 40), slice(None), slice(20, 70)))
    >>> small.volume.shape, small.truth["lung"].shape
    ((30, 96, 50), (30, 96, 50))
    """
    if len(box) != 3:
        raise ValueError(f"box must hold three slices (z, y, x), got {len(box)}")
    ranges = [b.indices(n) for b, n in zip(box, phantom.volume.shape)]
    if any(step != 1 or stop <= start for start, stop, step in ranges):
        raise ValueError(f"box {box} must select at least one voxel per axis with step 1")
    index = tuple(slice(start, stop) for start, stop, _ in ranges)
    geometry = phantom.geometry
    start_zyx = np.array([r[0] for r in ranges], dtype=float)
    offset_ijk = start_zyx[::-1] * np.asarray(geometry.spacing)[::-1]  # along index axes x, y, z
    matrix = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(geometry.origin) + matrix @ offset_ijk
    truth = {name: mask[index].copy() for name, mask in phantom.truth.items()}
    lung = truth.get("lung")
    fraction = phantom.lesion_fraction
    if lung is not None:
        lesion = np.zeros(lung.shape, dtype=bool)
        for name in ("ggo", "consolidation"):
            if name in truth:
                lesion |= truth[name]
        fraction = float((lesion & lung).sum()) / max(int(lung.sum()), 1)
    info = dict(phantom.info)
    info["cropped_from"] = [list(r[:2]) for r in ranges]
    return Phantom(volume=phantom.volume[index].copy(), geometry=replace(geometry, origin=tuple(origin)),
                   truth=truth, lesion_fraction=fraction, info=info)


def reorient_phantom(phantom: Phantom, *, order: tuple[int, int, int] = (0, 1, 2),
                     flip: tuple[bool, bool, bool] = (False, False, False)) -> Phantom:
    """Store a phantom with its array axes permuted and/or reversed, same anatomy.

    The direction cosines and origin are rewritten so that every voxel keeps its
    patient (LPS) position: a reader that honours the geometry sees the same patient.
    Use it for feet-first (``flip=(True, False, False)``), flipped and permuted scans.

    Parameters
    ----------
    phantom : Phantom
    order : tuple of int
        New array axis k is old array axis ``order[k]`` (as ``numpy.transpose``).
    flip : tuple of bool
        Reverse new array axis k when ``flip[k]``.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> from radiolab.synthetic import chest_phantom
    >>> feet_first = reorient_phantom(chest_phantom(seed=0), flip=(True, False, False))
    >>> feet_first.geometry.direction[8]
    -1.0
    """
    if sorted(order) != [0, 1, 2] or len(flip) != 3:
        raise ValueError(f"order must permute (0, 1, 2) and flip hold three booleans, got {order}, {flip}")
    geometry = phantom.geometry
    shape = phantom.volume.shape

    def transform(array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, order)
        for axis, reverse in enumerate(flip):
            if reverse:
                out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    old_matrix = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    old_spacing = np.asarray(geometry.spacing)  # (z, y, x)
    # Column c of the direction matrix belongs to index axis c = (x, y, z) = array axis 2 - c.
    columns, spacing, origin = [], [], np.asarray(geometry.origin, dtype=float)
    for new_axis in (2, 1, 0):  # index axes x, y, z of the new array
        old_axis = order[new_axis]
        column = old_matrix[:, 2 - old_axis].copy()
        if flip[new_axis]:
            origin = origin + column * old_spacing[old_axis] * (shape[old_axis] - 1)
            column = -column
        columns.append(column)
    matrix = np.stack(columns, axis=1)
    spacing = tuple(float(old_spacing[order[k]]) for k in range(3))
    new_geometry = Geometry(spacing=spacing, origin=tuple(origin), direction=tuple(matrix.ravel()))
    return Phantom(volume=transform(phantom.volume), geometry=new_geometry,
                   truth={name: transform(mask) for name, mask in phantom.truth.items()},
                   lesion_fraction=phantom.lesion_fraction, info=dict(phantom.info))
