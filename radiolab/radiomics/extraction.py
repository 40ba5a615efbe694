"""Feature extraction of the regions of one scan, and voxel-based feature maps."""

from __future__ import annotations


import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from radiolab.io import Geometry
from radiolab.lung import bounding_box
from radiolab.radiomics.engine import MapRefused, captured_pyradiomics_log, new_extractor, pyradiomics_version
from radiolab.radiomics.images import CROP_MARGIN_MM, crop_box, geometry_of, sitk_image
from radiolab.radiomics.params import load_params, params_sha256
from radiolab.radiomics.regions import CLASS_LABELS, REGIONS, region_masks

ROW_COLUMNS = ("id", "region", "label", "voxels", "volume_ml")
PROVENANCE_COLUMNS = ("pyradiomics_version", "params_sha256")
SKIP_COLUMN = "skip_reason"
# pyradiomics' texture classes: they need neighbouring voxels, hence a minimum region size.
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
MIN_TEXTURE_VOXELS = 125
# Voxel-based maps cover the region's bounding box, one float map per feature (93 with
# the default classes), and cost about 1.5 ms of CPU per region voxel
# (docs/radiomics.md): regions whose bounding box holds more voxels are refused.
MAX_MAP_VOXELS = 100_000


@dataclass
class _Extraction:
    values: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _run_pyradiomics(volume: np.ndarray, mask: np.ndarray, geometry: Geometry, params: Mapping[str, Any], *,
                     voxel_based: bool, min_texture_voxels: int, crop_margin_mm: float) -> _Extraction:
    """pyradiomics on one region, with skips recorded instead of NaN or exceptions."""
    result = _Extraction()
    voxels = int(np.count_nonzero(mask))
    if voxels == 0:
        result.skipped.append("no voxels")
        return result
    extractor = new_extractor(params)
    enabled = dict(extractor.enabledFeatures)
    if voxels < min_texture_voxels:
        small = [name for name in enabled if name in TEXTURE_CLASSES]
        if small:
            result.skipped.append(f"{', '.join(small)}: {voxels} voxels < min_texture_voxels={min_texture_voxels}")
            enabled = {name: value for name, value in enabled.items() if name not in small}
    if voxel_based:
        enabled = {name: value for name, value in enabled.items() if not name.startswith("shape")}
    if not enabled:
        if not result.skipped:
            result.skipped.append("no feature class enabled")
        return result
    extractor.enabledFeatures = enabled
    box = crop_box(mask, geometry.spacing, extractor.settings, margin_mm=crop_margin_mm)
    offset = [s.start for s in box]
    image = sitk_image(volume[box], geometry, offset)
    roi = sitk_image(mask[box].astype(np.uint8), geometry, offset)
    with captured_pyradiomics_log() as log:
        try:
            output = extractor.execute(image, roi, label=1, voxelBased=voxel_based)
        except MemoryError:
            raise
        except Exception:
            rejection = _roi_rejection(extractor, image, roi)
            if rejection is None:
                raise
            result.skipped.append(f"region rejected by pyradiomics: {rejection}")
            return result
    values = {name: value for name, value in output.items() if not name.startswith("diagnostics_")}
    if not voxel_based:
        values = {name: float(value) for name, value in values.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            why = f": pyradiomics: {log.messages[0]}" if log.messages else ""
            result.skipped.append(f"{len(bad)} feature(s) not finite ({', '.join(bad)}){why}")
            for name in bad:
                values[name] = float("nan")
    result.values = values
    return result


def _roi_rejection(extractor, image, roi) -> str | None:
    """pyradiomics' own mask checks: their message if they reject the region, else None."""
    from radiomics import imageoperations

    settings = dict(extractor.settings)
    settings["label"] = 1
    try:
        loaded_image, loaded_mask = extractor.loadImage(image, roi, None, **settings)
        imageoperations.checkMask(loaded_image, loaded_mask, **settings)
    except (ValueError, RuntimeError) as error:
        return error_message(error)
    return None


def error_message(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # SimpleITK errors end with the useful sentence.
    return lines[-1] if lines[0].startswith("Exception thrown in SimpleITK") else lines[0]


def extract_features(
    volume: np.ndarray,
    labels: np.ndarray,
    geometry: Geometry,
    *,
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    regions: Sequence[str] = REGIONS,
    min_texture_voxels: int = MIN_TEXTURE_VOXELS,
    crop_margin_mm: float = CROP_MARGIN_MM,
) -> list[dict[str, Any]]:
    """pyradiomics features of each tissue-class region of one scan.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x).
    labels : numpy.ndarray
        Tissue labels 0..5 of the same shape (``radiolab segment``'s label map).
    geometry : Geometry
        Spacing (z, y, x) in mm, origin and direction of the scan; pyradiomics sees the
        images with this geometry, so its shape, resampling and texture distances are
        in physical units.
    params : path, mapping or None
        pyradiomics parameters (see `load_params`); None for ``pipelines/radiomics.yaml``.
    regions : sequence of str
        Regions among `REGIONS`; rows come in `REGIONS` order.
    min_texture_voxels : int
        Texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) are skipped, with the reason,
        for regions of fewer voxels (counted on the scan's grid).
    crop_margin_mm : float
        Image kept around each region when cropping the scan for pyradiomics, in mm.

    Returns
    -------
    list of dict
        One row per region: ``region``, ``label`` (None for ``lung`` and
        ``involved``), ``voxels``, ``volume_ml``, the features under pyradiomics' names
        (e.g. ``original_firstorder_Mean``), ``pyradiomics_version``,
        ``params_sha256`` and ``skip_reason`` ("" when nothing was skipped).

    Raises
    ------
    ValueError
        If the arrays do not match or the labels are not 0..5.
    InputError
        If the parameters are invalid.
    OptionalDependencyError
        If pyradiomics is not installed.
    Exception
        Whatever pyradiomics raises for a region for any reason other than its size.
    """
    volume = np.asarray(volume)
    labels = np.asarray(labels)
    if volume.shape != labels.shape:
        raise ValueError(f"volume shape {volume.shape} differs from labels shape {labels.shape}")
    params = load_params(params)
    version = pyradiomics_version()
    digest = params_sha256(params)
    rows = []
    for name, mask in region_masks(labels, regions).items():
        extraction = _run_pyradiomics(volume, mask, geometry, params, voxel_based=False,
                                      min_texture_voxels=min_texture_voxels, crop_margin_mm=crop_margin_mm)
        voxels = int(np.count_nonzero(mask))
        row: dict[str, Any] = {
            "region": name,
            "label": CLASS_LABELS.get(name),
            "voxels": voxels,
            "volume_ml": round(voxels * geometry.voxel_volume_ml, 6),
            **extraction.values,
            "pyradiomics_version": version,
            "params_sha256": digest,
            SKIP_COLUMN: "; ".join(extraction.skipped),
        }
        rows.append(row)
    return rows


def voxel_feature_maps(
    volume: np.ndarray,
    mask: np.ndarray,
    geometry: Geometry,
    *,
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    max_voxels: int = MAX_MAP_VOXELS,
    min_texture_voxels: int = MIN_TEXTURE_VOXELS,
    crop_margin_mm: float = CROP_MARGIN_MM,
) -> tuple[dict[str, tuple[np.ndarray, Geometry]], list[str]]:
    """pyradiomics voxel-based feature maps of one small region.

    Each feature is computed in a kernel (``voxelSetting: kernelRadius``) around every
    voxel of the region, and every map covers the region's bounding box. Time grows
    with the region's voxels (about 1.5 ms of CPU each with the default classes and
    kernel), memory and disk with the bounding box times the number of features, so
    regions whose bounding box holds more than ``max_voxels`` voxels are refused: a
    compact lesion passes, a tissue class scattered through both lungs does not.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x).
    mask : numpy.ndarray
        The region, boolean, same shape.
    geometry : Geometry
        The scan's geometry.
    params : path, mapping or None
        pyradiomics parameters (see `load_params`).
    max_voxels : int
        Largest bounding box of the region accepted, in voxels.
    min_texture_voxels, crop_margin_mm
        As in `extract_features`.

    Returns
    -------
    maps : dict of str to (numpy.ndarray, Geometry)
        float32 map per feature (pyradiomics' name), indexed (z, y, x), on the region's
        bounding box (after any resampling) with its own geometry; NaN outside the
        region with the default ``initValue``.
    skipped : list of str
        Reasons for feature classes or the whole region left out.

    Raises
    ------
    MapRefused
        A ValueError, if the region's bounding box holds more than ``max_voxels`` voxels.
    """
    mask = np.asarray(mask, dtype=bool)
    voxels = int(np.count_nonzero(mask))
    box = bounding_box(mask)
    box_voxels = int(np.prod([s.stop - s.start for s in box])) if box else 0
    if box_voxels > max_voxels:
        raise MapRefused(f"the region's bounding box holds {box_voxels} voxels ({voxels} in the region), more than "
                         f"max_map_voxels={max_voxels}; every map covers the bounding box")
    params = load_params(params)
    extraction = _run_pyradiomics(volume, mask, geometry, params, voxel_based=True,
                                  min_texture_voxels=min_texture_voxels, crop_margin_mm=crop_margin_mm)
    maps = {}
    import SimpleITK as sitk

    for name, image in extraction.values.items():
        if isinstance(image, sitk.Image):
            maps[name] = (sitk.GetArrayFromImage(image).astype(np.float32), geometry_of(image))
    return maps, extraction.skipped


