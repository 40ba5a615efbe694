"""radiolab: volumetric chest-CT radiomics.

The core import path loads numpy, scipy and small readers only; torch, Dask and
pyradiomics are imported inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from radiolab.errors import InputError, NoLungError, RadiolabError, StageError
from radiolab.io import Geometry, Volume, read_volume, write_volume

__all__ = [
    "__version__",
    "Geometry",
    "InputError",
    "NoLungError",
    "RadiolabError",
    "StageError",
    "Volume",
    "read_volume",
    "write_volume",
]
