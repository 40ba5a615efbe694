"""Images handed to pyradiomics: crops with margins, SimpleITK images with the scan geometry."""

from __future__ import annotations


import math
from typing import Any, Mapping, Sequence

import numpy as np

from radiolab.io import Geometry
from radiolab.lung import bounding_box

# Image kept around a region before pyradiomics sees it (filters need context).
CROP_MARGIN_MM = 20.0


def _resampled_spacing(settings: Mapping[str, Any], spacing: tuple[float, float, float]) -> tuple[float, ...] | None:
    """pyradiomics' target spacing in array order (z, y, x), or None without resampling."""
    target = settings.get("resampledPixelSpacing")
    if target is None or settings.get("interpolator") is None:
        return None
    zyx = [float(t) for t in reversed(list(target))]
    return tuple(s if t == 0 else t for s, t in zip(spacing, zyx))


def crop_box(mask: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any], *,
             margin_mm: float = CROP_MARGIN_MM) -> tuple[slice, slice, slice]:
    """The part of the scan handed to pyradiomics for one region.

    pyradiomics computes features inside the region's bounding box, so cropping the
    scan around it only saves time (several seconds per region on a 512x512 scan).
    The box keeps ``margin_mm`` around the region, plus pyradiomics' ``padDistance``
    and ``kernelRadius``. When pyradiomics resamples, its grid starts at a whole number
    of new voxels from the image origin; the box starts where that grid coincides with
    the full scan's, so features equal those of pyradiomics run on the whole scan. When
    ``normalize`` is on (statistics of the whole image) nothing is cropped.

    Parameters
    ----------
    mask : numpy.ndarray
        The region, boolean, indexed (z, y, x); not empty.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    settings : mapping
        pyradiomics settings (``RadiomicsFeatureExtractor.settings``).
    margin_mm : float
        Extra image around the region, in mm (context for filters such as LoG).

    Returns
    -------
    tuple of slice
    """
    if settings.get("normalize"):
        return tuple(slice(0, n) for n in mask.shape)  # type: ignore[return-value]
    target = _resampled_spacing(settings, spacing)
    pad_distance = int(settings.get("padDistance", 5) or 0)
    kernel_radius = int(settings.get("kernelRadius", 1) or 0)
    region = bounding_box(mask)
    if region is None:
        raise ValueError("cannot crop around an empty region")
    box = []
    for axis in range(3):
        lo, hi = region[axis].start, region[axis].stop - 1
        ratio = 1.0 if target is None else spacing[axis] / target[axis]
        margin = math.ceil(margin_mm / spacing[axis]) + kernel_radius + math.ceil((pad_distance + 1) / ratio) + 1
        start = max(lo - margin, 0)
        stop = min(hi + 1 + margin, mask.shape[axis])
        if target is not None:
            while start > 0 and abs(start * ratio - round(start * ratio)) > 1e-6:
                start -= 1
        box.append(slice(start, stop))
    return tuple(box)  # type: ignore[return-value]


def sitk_image(array: np.ndarray, geometry: Geometry, offset: Sequence[int] = (0, 0, 0)):
    """A SimpleITK image of a (z, y, x) array with the scan's geometry.

    ``offset`` is the (z, y, x) index in the scan of ``array[0, 0, 0]`` (for crops).
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing_xyz = np.asarray(geometry.spacing[::-1], dtype=float)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(geometry.origin, dtype=float) + direction @ (np.asarray(offset[::-1], float) * spacing_xyz)
    image.SetSpacing(tuple(spacing_xyz))
    image.SetDirection(tuple(direction.ravel()))
    image.SetOrigin(tuple(origin))
    return image


def geometry_of(image) -> Geometry:
    """The radiolab Geometry of a SimpleITK image (spacing in z, y, x)."""
    return Geometry(spacing=tuple(reversed(image.GetSpacing())), origin=image.GetOrigin(),
                    direction=image.GetDirection())


