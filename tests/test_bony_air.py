"""Air enclosed by bone: the shell share against a hand count."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radiolab.bony_air import bone_shell_share


def test_shell_share_counts_bone_among_the_body_voxels_of_the_shell():
    # A 10 mm cube of air in tissue at 1 mm voxels; the 2 mm shell around it is 2 voxels
    # thick. Bone fills the shell's slab above the cube (x >= 14): by hand, that slab's
    # shell voxels over all shell voxels.
    volume = np.full((30, 30, 30), 40, dtype=np.int16)
    island = np.zeros(volume.shape, dtype=bool)
    island[10:20, 10:20, 10:20] = True
    volume[island] = -1000
    volume[:, :, 20:] = 700
    shell = ndimage.distance_transform_edt(~island) <= 2.0
    shell &= ~island
    expected = np.count_nonzero(shell & (volume > 300)) / np.count_nonzero(shell)
    share = bone_shell_share(volume, island, (1.0, 1.0, 1.0), bone_hu=300.0, shell_mm=2.0, grid_mm=1.0)
    assert share == pytest.approx(expected)
    assert 0.1 < share < 0.3


def test_air_outside_the_body_does_not_count():
    volume = np.full((20, 20, 20), -1000, dtype=np.int16)
    island = np.zeros(volume.shape, dtype=bool)
    island[5:15, 5:15, 5:15] = True
    assert bone_shell_share(volume, island, (1.0, 1.0, 1.0), bone_hu=300.0, shell_mm=2.0) == 0.0
    volume[:, :, 15:] = 1000
    # Only bone in the shell's body voxels: all of them.
    assert bone_shell_share(volume, island, (1.0, 1.0, 1.0), bone_hu=300.0, shell_mm=2.0, grid_mm=1.0) == 1.0
