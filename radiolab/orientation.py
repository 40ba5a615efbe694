"""Views of a volume in patient (LPS) axis order, for anatomical decisions.

A CT array indexed (z, y, x) may be stored with any axis order and sign (feet-first,
flipped, permuted). `Reorientation` turns it into a *canonical* view whose axis 0 runs
towards the patient's head (superior), axis 1 towards the back (posterior) and axis 2
towards the patient's left, by transposing and reversing axes (no resampling), and
maps results back. Each array axis goes to the LPS axis its direction cosine points
along most closely, so a gantry tilt of a few degrees keeps the nearest axis order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from radiolab.errors import ParameterError

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Reorientation:
    """Axis order and flips from an array to its canonical (S, P, L) view.

    Attributes
    ----------
    axes : tuple of int
        ``axes[i]`` is the array axis shown as canonical axis ``i``.
    flips : tuple of bool
        Whether canonical axis ``i`` runs against its array axis.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """A view of ``array`` in canonical order (superior, posterior, left)."""
        view = np.transpose(array, self.axes)
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """The array order of a canonical-order array (a contiguous copy)."""
        unflipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.ascontiguousarray(np.transpose(unflipped, np.argsort(self.axes)))

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Voxel size along the canonical axes, in mm."""
        return tuple(float(spacing[a]) for a in self.axes)


def reorientation(direction: Sequence[float] = IDENTITY_DIRECTION) -> Reorientation:
    """The canonical view for row-major ITK direction cosines.

    Parameters
    ----------
    direction : sequence of 9 float
        Columns are the LPS directions of the index axes i, j, k (array axes 2, 1, 0).

    Raises
    ------
    ValueError
        If ``direction`` is not 9 finite numbers of a non-singular matrix.
    """
    matrix = np.asarray(direction, dtype=float)
    if matrix.size != 9 or not np.all(np.isfinite(matrix)):
        raise ParameterError(f"direction must be 9 finite direction cosines, got {tuple(direction)}")
    matrix = matrix.reshape(3, 3)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise ParameterError(f"direction cosines are singular: {tuple(direction)}")
    # LPS direction of each array axis (axis 0 = index k = column 2).
    axis_direction = {0: matrix[:, 2], 1: matrix[:, 1], 2: matrix[:, 0]}
    # Canonical axis 0 is LPS S (row 2), axis 1 is P (row 1), axis 2 is L (row 0).
    rows = (2, 1, 0)
    best = max(itertools.permutations(range(3)),
               key=lambda order: sum(abs(axis_direction[a][r]) for a, r in zip(order, rows)))
    flips = tuple(bool(axis_direction[a][r] < 0) for a, r in zip(best, rows))
    return Reorientation(axes=tuple(int(a) for a in best), flips=flips)
