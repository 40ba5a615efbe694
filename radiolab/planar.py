"""In-plane binary morphology of axial slices, without a call per slice.

A mask's last two axes are the slice's plane; any leading axis (the slices) only
stacks them. Erosion by the 4-neighbour cross runs by array shifts, and holes are
filled by one labelling of the background with an in-plane structure, which is
several times faster than ``scipy.ndimage`` called slice by slice. Both are tested
voxel for voxel against ``binary_erosion`` and ``binary_fill_holes``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def erode_in_plane(mask: np.ndarray, *, outside: bool = False) -> np.ndarray:
    """``mask`` eroded by the in-plane 4-neighbour cross, each slice on its own.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean, 2-D (one plane) or more (planes along the last two axes).
    outside : bool
        What lies beyond the image edge: background (False, ``border_value=0``) or
        foreground (True, ``border_value=1``).
    """
    out = mask.copy()
    if not outside:
        out[..., 0, :] = out[..., -1, :] = False
        out[..., :, 0] = out[..., :, -1] = False
    out[..., 1:, :] &= mask[..., :-1, :]
    out[..., :-1, :] &= mask[..., 1:, :]
    out[..., :, 1:] &= mask[..., :, :-1]
    out[..., :, :-1] &= mask[..., :, 1:]
    return out


def holes_in_plane(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background of each slice (last two axes) in pieces, and which pieces are holes.

    Returns ``(labels, hole)``: ``labels`` numbers the 4-connected pieces of each slice's
    background (as ``binary_fill_holes`` grows it; 0 on the mask), ``hole[i]`` is True
    for a piece that does not reach its slice's edge (False for 0).
    """
    structure = ndimage.generate_binary_structure(2, 1)
    if mask.ndim == 3:
        structure = np.stack([np.zeros_like(structure), structure, np.zeros_like(structure)])
    labels, count = ndimage.label(~mask, structure)
    hole = np.ones(count + 1, dtype=bool)
    for face in (labels[..., 0, :], labels[..., -1, :], labels[..., :, 0], labels[..., :, -1]):
        hole[face] = False
    hole[0] = False
    return labels, hole


def fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """``binary_fill_holes`` of each slice (last two axes) of a mask."""
    labels, hole = holes_in_plane(mask)
    return mask | hole[labels]
