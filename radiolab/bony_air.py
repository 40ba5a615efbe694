"""Air enclosed by bone: the nasal cavity and sinuses, told from lung by their walls.

A head CT holds islands of air as large as a lung island (the nasal cavity and the
paranasal sinuses, about 40-100 mL), with a texture of thin bony septa that passes the
gut-gas test as "vessels". What tells them from lung is their wall: the shell of tissue
around a sinus is largely bone, whereas a lung lies against the chest wall's muscle, the
mediastinum and the diaphragm, and touches the ribs only along narrow bands.

The share of bone (above ``bone_hu``) among the body voxels (above -500 HU) within
``shell_mm`` of the island (at least one in-plane voxel) is measured on a grid of about
``grid_mm``. Measured (3 mm shell): the nasal cavity and sinuses of a head CT
(`dcm_qa_ct/GE`) 0.24; real lungs 0.06-0.10 (CIP's TestInput, TotalSegmentator's
cropped chest), the phantoms' lungs 0.09-0.10.
"""

from __future__ import annotations

import numpy as np

BODY_HU = -500.0


def bone_shell_share(volume: np.ndarray, island: np.ndarray, spacing, *, bone_hu: float, shell_mm: float,
                     grid_mm: float = 1.5) -> float:
    """Share of bone among the body voxels of the shell around ``island``.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, 3-D, the island's box padded by at least ``shell_mm``.
    island : numpy.ndarray
        Boolean mask of the island on the same box.
    spacing : tuple of float
        Voxel size along the three axes, in mm.
    bone_hu : float
        Bone lies above this, in HU.
    shell_mm : float
        Width of the shell, in mm; at least the largest in-plane voxel size.

    Returns
    -------
    float
        In [0, 1]; 0 when the shell holds no body voxel.
    """
    import edt

    steps = tuple(max(1, int(grid_mm // s)) for s in spacing)
    sub_island = np.ascontiguousarray(island[::steps[0], ::steps[1], ::steps[2]])
    sub_volume = volume[::steps[0], ::steps[1], ::steps[2]]
    sub_spacing = tuple(s * t for s, t in zip(spacing, steps))
    width = max(shell_mm, max(sub_spacing[1:]) * 1.01)
    distance = edt.edt((~sub_island).view(np.uint8), anisotropy=sub_spacing, black_border=False)
    values = sub_volume[(distance > 0) & (distance <= width)]
    body = np.count_nonzero(values > BODY_HU)
    return float(np.count_nonzero(values > bone_hu)) / body if body else 0.0
