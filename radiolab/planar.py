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


def fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """``binary_fill_holes`` of each slice (last two axes) of a 3-D mask.

    A hole is a piece of a slice's background (4-connected, as ``binary_fill_holes``
    grows it) that does not reach that slice's edge.
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, count = ndimage.label(~mask, structure)
    reaches_edge = np.zeros(count + 1, dtype=bool)
    for face in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        reaches_edge[face] = True
    # Label 0 is the mask itself.
    reaches_edge[0] = True
    return mask | ~reaches_edge[labels]
