"""Named work arrays that a loop reuses instead of allocating each time.

A large numpy allocation is a fresh memory mapping (see `radiolab._malloc`), and the
first touch of each of its pages is a page fault: a loop that makes the same
temporaries at every step pays for them at every step. A `Workspace` hands out the
same array for the same name while the shape and dtype stay the same.
"""

from __future__ import annotations

import numpy as np


class Workspace:
    """Work arrays by name; `get` reuses the last one of the same shape and dtype."""

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape, dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, the same one as last time."""
        array = self._arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            array = self._arrays[name] = np.empty(shape, dtype=dtype)
        return array

    def as_index(self, name: str, labels: np.ndarray) -> np.ndarray:
        """``labels`` copied into a reused intp array, as numpy's indexing and bincount take them.

        Given another integer type, those make a fresh intp copy at every call.
        """
        index = self.get(name, labels.shape, np.intp)
        np.copyto(index, labels)
        return index
