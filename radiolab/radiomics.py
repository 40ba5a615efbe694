"""Radiomic features of each tissue class with pyradiomics.

Zaffino et al. (2021) label every lung voxel (air, healthy lung, ground-glass opacity,
consolidation, other dense tissue), which turns each class into a region of interest
whose radiomic features can be measured. This module builds the region masks, runs
pyradiomics' ``RadiomicsFeatureExtractor`` on them with the scan's geometry, and
writes one table row per scan and region.

Regions
-------
``air``, ``healthy``, ``ggo``, ``consolidation``, ``other`` are labels 1..5; ``lung``
is every labelled voxel (label > 0) and ``involved`` is GGO, consolidation and other
dense tissue together (labels 3, 4 and 5), the voxels of the paper's lung involvement.

Skipped, never silently NaN
---------------------------
A region with no voxels, a region that pyradiomics' own mask checks reject (fewer than
``minimumROISize`` voxels or fewer than ``minimumROIDimensions`` dimensions, after any
resampling), and a texture class on a region of fewer than ``min_texture_voxels`` voxels
are skipped; the reason is written in the row's ``skip_reason``. A feature that
pyradiomics itself returns as NaN is named there too, with pyradiomics' message. Any
other error is a failure of the region, raised to the caller.

pyradiomics is imported inside the functions that need it: ``import radiolab`` and
``import radiolab.radiomics`` do not load it.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io as _io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from radiolab import __version__
from radiolab.data import RADIOMICS_PARAMS, resource
from radiolab.errors import InputError, OptionalDependencyError
from radiolab.io import Geometry
from radiolab.lung import bounding_box
from radiolab.mixture import CLASS_NAMES

logger = logging.getLogger(__name__)

# Region name -> label value for the tissue classes (labels 1..5), in label order.
CLASS_LABELS: dict[str, int] = {name: value for value, name in enumerate(CLASS_NAMES, start=1)}
REGIONS: tuple[str, ...] = (*CLASS_NAMES, "lung", "involved")
INVOLVED_LABELS = (3, 4, 5)
# Label map files written by `radiolab segment`, by --map choice.
LABEL_MAPS: dict[str, str] = {"voxel": "_labels.nrrd", "median": "_labels_median.nrrd"}
FORMATS = ("csv", "parquet")

ROW_COLUMNS = ("id", "region", "label", "voxels", "volume_ml")
PROVENANCE_COLUMNS = ("pyradiomics_version", "params_sha256")
SKIP_COLUMN = "skip_reason"
# pyradiomics' texture classes: they need neighbouring voxels, hence a minimum region size.
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")

# Shipped in the package (radiolab.data); the repository's pipelines/radiomics.yaml is its copy.
DEFAULT_PARAMS = resource("pipelines", RADIOMICS_PARAMS)
MIN_TEXTURE_VOXELS = 125
# Voxel-based maps cover the region's bounding box, one float map per feature (93 with
# the default classes), and cost about 1.5 ms of CPU per region voxel
# (docs/radiomics.md): regions whose bounding box holds more voxels are refused.
MAX_MAP_VOXELS = 100_000
# Image kept around a region before pyradiomics sees it (filters need context).
CROP_MARGIN_MM = 20.0

PYRADIOMICS_INSTALL = ("`make install`, or `pip install numpy versioneer` followed by "
                       "`pip install --no-build-isolation pyradiomics==3.0.1`")


# -- pyradiomics access ---------------------------------------------------------------

def _pyradiomics():
    """Import pyradiomics (module ``radiomics``) or say how to install it."""
    try:
        import radiomics
        from radiomics import featureextractor, imageoperations  # noqa: F401
    except ImportError as error:
        raise OptionalDependencyError("pyradiomics", "radiomic feature extraction",
                                      install=PYRADIOMICS_INSTALL) from error
    return radiomics


def pyradiomics_version() -> str:
    """The installed pyradiomics version, e.g. ``3.0.1``.

    Raises
    ------
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    radiomics = _pyradiomics()
    from importlib import metadata

    try:
        return metadata.version("pyradiomics")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return str(radiomics.__version__).lstrip("v")


@contextlib.contextmanager
def _quiet_validation() -> Iterator[None]:
    """Silence what pyradiomics' schema validation prints on its own.

    pykwalify loads pyradiomics' schema extension with the deprecated
    ``SourceFileLoader.load_module`` and logs every schema error itself; radiolab
    reports the errors in its own message instead.
    """
    import pykwalify.core

    log = pykwalify.core.log
    disabled = log.disabled
    log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"the load_module\(\) method is deprecated",
                                    category=DeprecationWarning)
            yield
    finally:
        log.disabled = disabled


class _KeepErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip().splitlines()[0] if record.getMessage() else "")


@contextlib.contextmanager
def _pyradiomics_log() -> Iterator[_KeepErrors]:
    """Collect pyradiomics' error messages instead of letting it print to stderr.

    pyradiomics catches a failing feature, logs the error and returns NaN; the messages
    collected here go into ``skip_reason`` next to the NaN they explain.
    """
    radiomics_logger = logging.getLogger("radiomics")
    keep = _KeepErrors()
    levels = [(handler, handler.level) for handler in radiomics_logger.handlers]
    for handler, _ in levels:
        handler.setLevel(logging.CRITICAL + 1)
    radiomics_logger.addHandler(keep)
    try:
        yield keep
    finally:
        radiomics_logger.removeHandler(keep)
        for handler, level in levels:
            handler.setLevel(level)


def _new_extractor(params: Mapping[str, Any]):
    _pyradiomics()
    from radiomics import featureextractor

    with _quiet_validation():
        return featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(dict(params)))


class MapRefused(ValueError):
    """A region too large for voxel-based feature maps."""


# -- parameters -------------------------------------------------------------------------

def load_params(params: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read and validate pyradiomics parameters.

    Parameters
    ----------
    params : str, os.PathLike, mapping or None
        A pyradiomics parameter file (YAML or JSON), an already parsed mapping, or None
        for radiolab's default ``pipelines/radiomics.yaml`` (shipped in `radiolab.data`).

    Returns
    -------
    dict
        The parameters (``imageType``, ``featureClass``, ``setting``, ``voxelSetting``),
        checked against pyradiomics' own schema.

    Raises
    ------
    InputError
        Naming the file, if it is missing, not YAML, or fails pyradiomics' schema
        validation (unknown setting, bad value, unknown feature class or image type).
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    _pyradiomics()
    if params is None:
        where, data = str(DEFAULT_PARAMS), _parse_params_text(str(DEFAULT_PARAMS),
                                                               DEFAULT_PARAMS.read_text(encoding="utf-8"))
    elif isinstance(params, Mapping):
        where, data = "<parameters>", copy.deepcopy(dict(params))
    else:
        where = os.fspath(params)
        data = _read_params_file(where)
    _validate_params(where, data)
    return data


def _read_params_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise InputError(path, "parameter file does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read parameter file: {error}") from None
    return _parse_params_text(path, text)


def _parse_params_text(path: str, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(path, f"not a YAML/JSON pyradiomics parameter file: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(path, "a pyradiomics parameter file must hold a mapping with keys imageType, "
                               f"featureClass, setting and voxelSetting; found {type(data).__name__}")
    return data


def _validate_params(where: str, data: dict[str, Any]) -> None:
    """pyradiomics' schema (pykwalify), plus the checks that pyradiomics does late."""
    import pykwalify.core
    import pykwalify.errors
    from radiomics import getParameterValidationFiles

    schema_file, schema_functions = getParameterValidationFiles()
    with _quiet_validation():
        core = pykwalify.core.Core(source_data=data, schema_files=[schema_file], extensions=[schema_functions])
        try:
            core.validate(raise_exception=True)
        except pykwalify.errors.PyKwalifyException:
            problems = "; ".join(str(e) for e in (core.validation_errors or [])) or "schema validation failed"
            raise InputError(where, f"not a valid pyradiomics parameter file: {problems}") from None
        except (ValueError, TypeError, KeyError) as error:  # raised by pyradiomics' schema functions
            raise InputError(where, f"not a valid pyradiomics parameter file: {error}") from None
    setting = data.get("setting") or {}
    spacing = setting.get("resampledPixelSpacing")
    if spacing is not None and len(spacing) != 3:
        raise InputError(where, "setting resampledPixelSpacing needs three values (x, y, z in mm), "
                                f"got {spacing}")


def params_sha256(params: Mapping[str, Any]) -> str:
    """SHA-256 of the parameters as canonical JSON (sorted keys, no spaces).

    Comments and layout of the file do not change it; any setting does.
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- regions ----------------------------------------------------------------------------

def check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    """The requested regions in table order; an unknown name is an error listing the valid ones."""
    if isinstance(regions, str):
        regions = [regions]
    unknown = [name for name in regions if name not in REGIONS]
    if unknown:
        raise ValueError(f"unknown region(s) {', '.join(map(repr, unknown))}; valid regions: {', '.join(REGIONS)}")
    if not regions:
        raise ValueError(f"no region requested; valid regions: {', '.join(REGIONS)}")
    return tuple(name for name in REGIONS if name in set(regions))


def region_masks(labels: np.ndarray, regions: Sequence[str] = REGIONS) -> dict[str, np.ndarray]:
    """Boolean masks of the tissue-class regions of a label map.

    Parameters
    ----------
    labels : numpy.ndarray
        Tissue labels 0..5 (0 outside the lung), indexed (z, y, x), as written by
        ``radiolab segment``.
    regions : sequence of str
        Names among `REGIONS`: ``air``, ``healthy``, ``ggo``, ``consolidation``,
        ``other`` (labels 1..5), ``lung`` (labels > 0), ``involved`` (labels 3, 4, 5).

    Returns
    -------
    dict of str to numpy.ndarray
        One boolean array of the labels' shape per region, in `REGIONS` order.

    Raises
    ------
    ValueError
        If the labels are not a 3-D integer array of values 0..5, or a region is unknown.

    Examples
    --------
    >>> labels = np.array([0, 1, 2, 3, 4, 5]).reshape(1, 1, 6)
    >>> {name: int(mask.sum()) for name, mask in region_masks(labels).items()}
    {'air': 1, 'healthy': 1, 'ggo': 1, 'consolidation': 1, 'other': 1, 'lung': 5, 'involved': 3}
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3-D (z, y, x), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers 0..5, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > len(CLASS_NAMES)):
        raise ValueError(f"labels must lie in 0..{len(CLASS_NAMES)}, found {labels.min()}..{labels.max()}")
    masks: dict[str, np.ndarray] = {}
    for name in check_regions(regions):
        if name in CLASS_LABELS:
            masks[name] = labels == CLASS_LABELS[name]
        elif name == "lung":
            masks[name] = labels > 0
        else:  # involved
            masks[name] = labels >= min(INVOLVED_LABELS)
    return masks


# -- images for pyradiomics -------------------------------------------------------------

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


# -- extraction -------------------------------------------------------------------------

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
    extractor = _new_extractor(params)
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
    with _pyradiomics_log() as log:
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
        return _message(error)
    return None


def _message(error: BaseException) -> str:
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


# -- cohort -----------------------------------------------------------------------------

def labels_path(labels_dir: str | os.PathLike[str], scan_id: str, map: str = "voxel") -> Path:
    """Where ``radiolab segment`` wrote the label map of a scan (``voxel`` or ``median``)."""
    if map not in LABEL_MAPS:
        raise ValueError(f"unknown label map {map!r}; valid maps: {', '.join(LABEL_MAPS)}")
    return Path(labels_dir) / f"{scan_id}{LABEL_MAPS[map]}"


@dataclass
class FeaturesReport:
    """What `extract_cohort` wrote: table rows and columns, failures, voxel maps."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)  # radiolab.segment.ScanError
    maps: list[str] = field(default_factory=list)
    out: str = ""
    errors_path: str = ""
    provenance_path: str = ""


@dataclass(frozen=True)
class _ScanJob:
    labels: str
    map: str
    params: dict[str, Any]
    regions: tuple[str, ...]
    min_texture_voxels: int
    voxel_maps: bool
    maps_dir: str
    max_map_voxels: int
    crop_margin_mm: float

    def __call__(self, scan):
        return features_scan(scan, self)


def _read_labels(scan, volume, job: _ScanJob) -> np.ndarray:
    from radiolab.io import read_volume

    path = labels_path(job.labels, scan.id, job.map)
    if not path.is_file():
        raise InputError(path, f"no {job.map} label map for scan {scan.id!r}; run `radiolab segment` on the scans "
                               f"first, writing into {job.labels}")
    labels = read_volume(path)
    if labels.array.shape != volume.array.shape:
        raise InputError(path, f"label map shape {labels.array.shape} differs from the scan's {volume.array.shape} "
                               f"({scan.path})")
    if not (np.allclose(labels.geometry.spacing, volume.geometry.spacing, rtol=1e-4, atol=1e-4)
            and np.allclose(labels.geometry.origin, volume.geometry.origin, rtol=0, atol=1e-3)
            and np.allclose(labels.geometry.direction, volume.geometry.direction, rtol=0, atol=1e-4)):
        raise InputError(path, f"label map geometry (spacing {labels.geometry.spacing} mm, origin "
                               f"{labels.geometry.origin} mm, direction {labels.geometry.direction}) differs "
                               f"from the scan's ({volume.geometry.spacing} mm, {volume.geometry.origin} mm, "
                               f"{volume.geometry.direction})")
    array = labels.array
    if array.min() < 0 or array.max() > len(CLASS_NAMES):
        raise InputError(path, f"not a tissue label map: values {array.min()}..{array.max()}, expected 0..5")
    return array.astype(np.uint8)


def features_scan(scan, job: _ScanJob) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
    """Rows, failures and voxel-map files of one scan; never raises for a bad scan."""
    from radiolab.segment import ScanError

    rows: list[dict[str, Any]] = []
    errors: list[ScanError] = []
    maps: list[str] = []
    stage = "read"
    try:
        volume = scan.read()
        stage = "labels"
        labels = _read_labels(scan, volume, job)
    except Exception as error:  # a bad scan never stops the others
        return rows, [ScanError(scan.id, stage, _describe(scan, error))], maps
    for region in job.regions:
        try:
            [row] = extract_features(volume.array, labels, volume.geometry, params=job.params, regions=[region],
                                     min_texture_voxels=job.min_texture_voxels,
                                     crop_margin_mm=job.crop_margin_mm)
        except Exception as error:  # one region failing never stops the others
            errors.append(ScanError(scan.id, "features", f"{scan.path}: region {region}: {_message(error)}"))
            continue
        row = {"id": scan.id, **row}
        if job.voxel_maps and row["voxels"] > 0:
            try:
                maps += _write_maps(volume, labels, row, job, scan.id)
            except MapRefused as refusal:
                row[SKIP_COLUMN] = "; ".join(filter(None, [row[SKIP_COLUMN], f"voxel maps not written: {refusal}"]))
            except Exception as error:
                errors.append(ScanError(scan.id, "voxel_maps", f"{scan.path}: region {region}: {_message(error)}"))
        rows.append(row)
    return rows, errors, maps


def _write_maps(volume, labels: np.ndarray, row: dict[str, Any], job: _ScanJob, scan_id: str) -> list[str]:
    from radiolab.io import write_volume

    region = row["region"]
    mask = region_masks(labels, [region])[region]
    maps, skipped = voxel_feature_maps(volume.array, mask, volume.geometry, params=job.params,
                                       max_voxels=job.max_map_voxels, min_texture_voxels=job.min_texture_voxels,
                                       crop_margin_mm=job.crop_margin_mm)
    written = []
    for name, (array, geometry) in maps.items():
        path = Path(job.maps_dir) / f"{scan_id}_{region}_{name}.nrrd"
        write_volume(path, array, geometry, fields={
            "radiolab_version": __version__, "radiolab_feature": name, "radiolab_region": region,
            "pyradiomics_version": row["pyradiomics_version"], "radiolab_params_sha256": row["params_sha256"],
        })
        written.append(str(path))
    if skipped and not maps:
        row[SKIP_COLUMN] = "; ".join(filter(None, [row[SKIP_COLUMN], f"voxel maps not written: {'; '.join(skipped)}"]))
    return written


def _describe(scan, error: BaseException) -> str:
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, MemoryError):
        return f"{scan.path}: out of memory"
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return f"{scan.path}: {_message(error)}"
    return f"{scan.path}: unexpected error: {type(error).__name__}: {_message(error)}"


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column order: identity, features in pyradiomics' order, provenance, skip reason."""
    fixed = set(ROW_COLUMNS) | set(PROVENANCE_COLUMNS) | {SKIP_COLUMN}
    features: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in fixed and not name.startswith("diagnostics_"):
                features.setdefault(name)
    return [*ROW_COLUMNS, *features, *PROVENANCE_COLUMNS, SKIP_COLUMN]


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, format: str = "csv",
                columns: Sequence[str] | None = None):
    """Write the feature table atomically as CSV or Parquet; return it as a DataFrame.

    Missing features (skipped classes) are empty cells in CSV and nulls in Parquet;
    ``label`` is an integer column with nulls for ``lung`` and ``involved``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    try:
        import pandas as pd
    except ImportError as error:
        raise OptionalDependencyError("pandas", "writing the feature table") from error
    from radiolab.io import atomic_path

    columns = list(columns or table_columns(rows))
    frame = pd.DataFrame.from_records(list(rows), columns=columns)
    frame["label"] = frame["label"].astype("Int64")
    frame["voxels"] = frame["voxels"].astype("int64")
    for name in ("id", "region", "pyradiomics_version", "params_sha256", SKIP_COLUMN):
        frame[name] = frame[name].fillna("").astype(str)
    features = columns[len(ROW_COLUMNS): len(columns) - len(PROVENANCE_COLUMNS) - 1]
    for name in ["volume_ml", *features]:
        frame[name] = frame[name].astype("float64")
    with atomic_path(path) as temporary:
        if format == "parquet":
            try:
                frame.to_parquet(temporary, index=False, engine="pyarrow")
            except ImportError as error:
                raise OptionalDependencyError("pyarrow", "writing Parquet") from error
        else:
            frame.to_csv(temporary, index=False, float_format=None, lineterminator="\n")
    return frame


def write_errors(errors: Sequence[Any], path: str | os.PathLike[str]) -> None:
    """``errors.csv``: one row per failed scan or region (id, stage, message)."""
    from radiolab.io import write_text_atomic

    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "stage", "message"])
    for error in sorted(errors, key=lambda e: (e.id, e.stage)):
        writer.writerow([error.id, error.stage, error.message])
    write_text_atomic(path, buffer.getvalue())


def _map_scans(job: _ScanJob, scans: Sequence[Any], jobs: int, progress: bool) -> list:
    from tqdm.auto import tqdm

    results = []
    with tqdm(total=len(scans), desc="features", unit="scan", disable=not progress, leave=False) as bar:
        if jobs == 1 or len(scans) <= 1:
            for scan in scans:
                results.append(job(scan))
                bar.update()
        else:
            from joblib import Parallel, delayed

            for result in Parallel(n_jobs=jobs, return_as="generator")(delayed(job)(scan) for scan in scans):
                results.append(result)
                bar.update()
    return results


def extract_cohort(
    scans: Sequence[Any],
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    regions: Sequence[str] = REGIONS,
    map: str = "voxel",
    format: str = "csv",
    jobs: int = 1,
    voxel_maps: bool = False,
    min_texture_voxels: int = MIN_TEXTURE_VOXELS,
    max_map_voxels: int = MAX_MAP_VOXELS,
    crop_margin_mm: float = CROP_MARGIN_MM,
    progress: bool = False,
) -> FeaturesReport:
    """Features of every scan and region, written as one table.

    Parameters
    ----------
    scans : sequence of radiolab.segment.ScanInput
        From ``radiolab.segment.find_inputs``.
    labels : str or os.PathLike
        Folder of ``radiolab segment`` outputs; a scan ``<id>`` uses
        ``<labels>/<id>_labels.nrrd`` (``map="voxel"``) or ``<id>_labels_median.nrrd``
        (``map="median"``).
    out : str or os.PathLike
        The table. Beside it: ``errors.csv`` (id, stage, message),
        ``<stem>_provenance.json`` (parameters, versions, options) and, with
        ``voxel_maps``, the folder ``<stem>_voxel_maps/``.
    params : path, mapping or None
        pyradiomics parameters; None for ``pipelines/radiomics.yaml``.
    regions : sequence of str
        Regions among `REGIONS`.
    map : {"voxel", "median"}
        Voxel-wise labels (default, as the paper recommends for radiomics) or the
        median-filtered map.
    format : {"csv", "parquet"}
    jobs : int
        Scans processed in parallel (joblib processes).
    voxel_maps : bool
        Also write pyradiomics voxel-based feature maps (NRRD) of regions of at most
        ``max_map_voxels`` voxels; larger regions are refused, said in ``skip_reason``.
    min_texture_voxels, crop_margin_mm
        As in `extract_features`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    FeaturesReport

    Raises
    ------
    InputError
        If the parameter file is invalid or the labels folder does not exist (before
        any scan is read). Failures of single scans or regions go to ``errors.csv``.
    ValueError
        If an option is invalid.
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    if map not in LABEL_MAPS:
        raise ValueError(f"unknown label map {map!r}; valid maps: {', '.join(LABEL_MAPS)}")
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if min_texture_voxels < 0 or max_map_voxels < 1 or crop_margin_mm < 0:
        raise ValueError("min_texture_voxels and crop_margin_mm must be >= 0 and max_map_voxels >= 1")
    regions = check_regions(regions)
    if not os.path.isdir(labels):
        raise InputError(labels, "labels folder does not exist (run `radiolab segment` first)")
    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if (format == "csv" and suffix in (".parquet", ".pq")) or (format == "parquet" and suffix == ".csv"):
        raise ValueError(f"output {out_path} does not match format {format!r}")
    if out_path.parent.resolve() == Path(labels).resolve():
        raise InputError(out_path, "write the table outside the labels folder: its errors.csv would replace "
                                   "the one `radiolab segment` wrote there")
    resolved = load_params(params)
    version = pyradiomics_version()
    stem = out_path.with_suffix("")
    job = _ScanJob(labels=os.fspath(labels), map=map, params=resolved, regions=regions,
                   min_texture_voxels=int(min_texture_voxels), voxel_maps=voxel_maps,
                   maps_dir=f"{stem}_voxel_maps", max_map_voxels=int(max_map_voxels),
                   crop_margin_mm=float(crop_margin_mm))
    report = FeaturesReport(out=str(out_path), errors_path=str(out_path.parent / "errors.csv"),
                            provenance_path=f"{stem}_provenance.json")
    for rows, errors, maps in _map_scans(job, list(scans), jobs, progress):
        report.rows += rows
        report.errors += errors
        report.maps += maps
    order = {name: index for index, name in enumerate(REGIONS)}
    report.rows.sort(key=lambda row: (row["id"], order[row["region"]]))
    for row in report.rows:
        if row[SKIP_COLUMN]:
            logger.warning("%s %s: skipped %s", row["id"], row["region"], row[SKIP_COLUMN])
    for error in report.errors:
        logger.error("%s [%s]: %s", error.id, error.stage, error.message)
    report.columns = table_columns(report.rows)
    write_table(report.rows, out_path, format=format, columns=report.columns)
    write_errors(report.errors, report.errors_path)
    from radiolab.io import write_json_atomic

    write_json_atomic(report.provenance_path, {
        "radiolab_version": __version__,
        "pyradiomics_version": version,
        "params_sha256": params_sha256(resolved),
        "params": _json_safe(resolved),
        "params_source": os.fspath(params) if params is not None and not isinstance(params, Mapping)
        else (str(DEFAULT_PARAMS) if params is None else "<mapping>"),
        "label_map": map,
        "labels": os.fspath(labels),
        "regions": list(regions),
        "min_texture_voxels": int(min_texture_voxels),
        "crop_margin_mm": float(crop_margin_mm),
        "voxel_maps": bool(voxel_maps),
        "max_map_voxels": int(max_map_voxels),
        "scans": sorted({row["id"] for row in report.rows}),
        "failed": sorted({error.id for error in report.errors}),
    })
    return report


def _json_safe(data: Any) -> Any:
    """A copy with non-finite floats as strings (``"nan"``), so that the JSON is strict."""
    if isinstance(data, Mapping):
        return {str(key): _json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data
