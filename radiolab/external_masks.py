"""Lung masks made by other tools: finding, reading, converting and aligning them.

Matching
--------
The mask of scan ``<id>`` is, in the mask folder, exactly one of ``<id>.nrrd``,
``<id>.nii.gz``, ``<id>.nii``, ``<id>.mha`` or, for TotalSegmentator, the folder
``<id>/``. Names are matched exactly, never by prefix (``case_1`` is not ``case_10``).

Conventions (`MASK_FORMATS`)
----------------------------
- ``binary``: non-zero is lung;
- ``lungmask``: lungmask's R231 model, 1 right lung, 2 left lung;
- ``lungmask-lobes``: lungmask's LTRCLobes model, 1 left upper, 2 left lower, 3 right
  upper, 4 right middle, 5 right lower lobe;
- ``totalseg``: a TotalSegmentator folder ``<id>/`` holding ``lung_upper_lobe_left.nii.gz``
  and the four other lobe files, or a multi-label file with the lobes at 10-14
  (TotalSegmentator v2 numbering: 10 left upper, 11 left lower, 12 right upper, 13 right
  middle, 14 right lower); other labels (organs) are not lung;
- ``totalseg-v1``: the same with v1 numbering, lobes at 13-17;
- ``cip``: Chest Imaging Platform label map, value = type x 256 + region
  (ChestConventions.xml). Lung regions are 1 (whole lung), 2-14 and 20-22; right: 2, 4,
  5, 6, 12, 13, 14; left: 3, 7, 8, 9, 10, 11; lobes 4-8; thirds 9-11 (left) and 12-14
  (right) upper, middle, lower, 20-22 without a side. Other regions (15-19: mediastinum,
  heart, great vessels ...) are not lung.

Label values alone are ambiguous (a binary {1} mask looks like R231 with one lung), so
only a TotalSegmentator folder and values above 255 (CIP) are detected; anything else
needs the format stated.

Geometry
--------
A mask whose index axes are only permuted or flipped relative to the scan (NIfTI files
are often stored flipped) is reoriented losslessly. A mask that would need resampling
(another size, spacing, origin or rotation; voxel centres more than `GRID_TOLERANCE_MM`
apart) is refused with an error naming both files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radiolab.errors import InputError
from radiolab.io import Geometry
from radiolab.sides import LEFT, RIGHT
from radiolab.zones import LOBE_SIDES, LOWER, MIDDLE, UPPER
from radiolab.errors import ParameterError

MASK_FORMATS = ("binary", "lungmask", "lungmask-lobes", "totalseg", "totalseg-v1", "cip")
MASK_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")
GRID_TOLERANCE_MM = 1e-3
_DIRECTION_TOLERANCE = 1e-4

# radiolab lobe codes (radiolab.zones.LOBE_NAMES): 1 RUL, 2 RML, 3 RLL, 4 LUL, 5 LLL.
TOTALSEG_LOBE_FILES = {"lung_upper_lobe_right": 1, "lung_middle_lobe_right": 2, "lung_lower_lobe_right": 3,
                       "lung_upper_lobe_left": 4, "lung_lower_lobe_left": 5}
# Label value -> radiolab lobe code.
LUNGMASK_LOBES = {1: 4, 2: 5, 3: 1, 4: 2, 5: 3}
TOTALSEG_V2_LOBES = {10: 4, 11: 5, 12: 1, 13: 2, 14: 3}
TOTALSEG_V1_LOBES = {13: 4, 14: 5, 15: 1, 16: 2, 17: 3}
CIP_LUNG_REGIONS = (1, *range(2, 15), 20, 21, 22)
CIP_RIGHT = (2, 4, 5, 6, 12, 13, 14)
CIP_LEFT = (3, 7, 8, 9, 10, 11)
CIP_LOBES = {4: 1, 5: 2, 6: 3, 7: 4, 8: 5}
CIP_THIRDS = {9: UPPER, 10: MIDDLE, 11: LOWER, 12: UPPER, 13: MIDDLE, 14: LOWER,
              20: UPPER, 21: MIDDLE, 22: LOWER}


@dataclass
class LungMasks:
    """An external lung mask converted to radiolab's arrays, on the scan's grid.

    Attributes
    ----------
    mask : numpy.ndarray
        bool lung mask, indexed (z, y, x) like the scan.
    sides : numpy.ndarray or None
        uint8, 1 right, 2 left, when the mask tells the sides of every lung voxel.
    lobes : numpy.ndarray or None
        uint8 lobe codes (`radiolab.zones.LOBE_NAMES`), when the mask has lobes.
    thirds : numpy.ndarray or None
        uint8, 1 upper, 2 middle, 3 lower, when a CIP map gives the thirds of every
        lung voxel.
    mask_format : str
        The convention read (`MASK_FORMATS`).
    paths : tuple of str
        The file(s) read.
    content_hash : str
        SHA-256 of the format and the files' bytes.
    """

    mask: np.ndarray
    sides: np.ndarray | None
    lobes: np.ndarray | None
    thirds: np.ndarray | None
    mask_format: str
    paths: tuple[str, ...]
    content_hash: str


def find_mask(directory: str | os.PathLike[str], scan_id: str) -> Path:
    """The mask file (or TotalSegmentator folder) of one scan, matched exactly by id.

    Raises
    ------
    InputError
        Naming the folder, if there is no mask for ``scan_id`` or more than one.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(folder, "mask folder does not exist")
    found = [folder / f"{scan_id}{suffix}" for suffix in MASK_SUFFIXES if (folder / f"{scan_id}{suffix}").is_file()]
    if (folder / scan_id).is_dir():
        found.append(folder / scan_id)
    if not found:
        expected = ", ".join(f"{scan_id}{suffix}" for suffix in MASK_SUFFIXES)
        raise InputError(folder, f"no mask for scan {scan_id!r}: expected one of {expected} or the folder {scan_id}/")
    if len(found) > 1:
        raise InputError(folder, f"several masks for scan {scan_id!r}: {', '.join(p.name for p in found)}")
    return found[0]


def mask_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files that make up a mask: the file itself, or a TotalSegmentator folder's lobe files."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files, missing = [], []
    for name in TOTALSEG_LOBE_FILES:
        candidates = [path / f"{name}{suffix}" for suffix in MASK_SUFFIXES if (path / f"{name}{suffix}").is_file()]
        if candidates:
            files.append(candidates[0])
        else:
            missing.append(f"{name}.nii.gz")
    if missing:
        raise InputError(path, f"TotalSegmentator folder lacks {', '.join(missing)}")
    return files


def mask_content_hash(path: str | os.PathLike[str], mask_format: str | None = None) -> str:
    """SHA-256 of a mask's convention and the bytes of its file(s), for resume keys and provenance."""
    digest = hashlib.sha256(f"format={mask_format}\n".encode())
    for file in mask_files(path):
        digest.update(f"{file.name}\n".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_label_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, Geometry]:
    """An integer label map (z, y, x) and its geometry, read with SimpleITK.

    Raises
    ------
    InputError
        Naming the file, if it cannot be read, is not 3-D or not of an integer type.
    """
    import SimpleITK as sitk

    path = os.fspath(path)
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise InputError(path, f"not a readable label map: {lines[-1] if lines else error}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"label map must be 3-D with one value per voxel, got {image.GetDimension()}-D "
                               f"with {image.GetNumberOfComponentsPerPixel()}")
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.rint(array)):
            raise InputError(path, f"label map holds non-integer values ({array.dtype})")
        array = array.astype(np.int64)
    geometry = Geometry(spacing=tuple(reversed(image.GetSpacing())), origin=image.GetOrigin(),
                        direction=image.GetDirection())
    return array, geometry


def align_to_grid(array: np.ndarray, geometry: Geometry, target: Geometry, target_shape: tuple[int, ...], *,
                  path: str = "", target_path: str = "") -> np.ndarray:
    """Permute and flip a mask's axes so that it lies on the scan's grid, without resampling.

    Parameters
    ----------
    array, geometry : numpy.ndarray, Geometry
        The mask (z, y, x) and its geometry.
    target, target_shape : Geometry, tuple of int
        The scan's geometry and array shape.
    path, target_path : str
        The mask's and the scan's files, for the error message.

    Returns
    -------
    numpy.ndarray
        The mask on the scan's grid (a contiguous copy when axes were moved).

    Raises
    ------
    InputError
        Naming both files, if the grids differ by more than a permutation or flip of
        axes (size, spacing, origin or rotation; voxel centres more than
        `GRID_TOLERANCE_MM` apart): the mask would need resampling.
    """
    source = np.asarray(geometry.direction).reshape(3, 3)
    wanted = np.asarray(target.direction).reshape(3, 3)
    source_spacing = np.asarray(geometry.spacing)[::-1]  # index order i, j, k
    origin = np.asarray(geometry.origin, dtype=float)

    def refuse(problem: str) -> InputError:
        return InputError(path, f"mask does not lie on the grid of scan {target_path}: {problem}; radiolab never "
                                "resamples masks, resample it onto the scan's grid first")

    dots = source.T @ wanted  # dots[a, b]: source index axis a against target index axis b
    axes, signs = [], []
    for b in range(3):
        a = int(np.argmax(np.abs(dots[:, b])))
        if abs(abs(dots[a, b]) - 1.0) > _DIRECTION_TOLERANCE or a in axes:
            raise refuse(f"its axes are rotated against the scan's (direction {tuple(np.round(source.ravel(), 6))} "
                         f"vs {tuple(np.round(wanted.ravel(), 6))})")
        axes.append(a)
        signs.append(1 if dots[a, b] > 0 else -1)
    size = np.asarray(array.shape)[::-1]  # index order
    for a, sign in zip(axes, signs):
        if sign < 0:  # the flipped axis starts at the other end
            origin = origin + (size[a] - 1) * source_spacing[a] * source[:, a]
    # Target array axis 2 - b takes source array axis 2 - axes[b].
    moved = np.transpose(array, [2 - axes[2 - q] for q in range(3)])
    moved = moved[tuple(slice(None, None, -1) if signs[2 - q] < 0 else slice(None) for q in range(3))]
    if moved.shape != tuple(target_shape):
        raise refuse(f"size {moved.shape[::-1]} (x, y, z, after reorienting) vs {tuple(target_shape)[::-1]}")
    spacing = source_spacing[axes]
    target_spacing = np.asarray(target.spacing)[::-1]
    far = (np.asarray(target_shape)[::-1] - 1)
    corner = origin + wanted @ (far * spacing)
    target_corner = np.asarray(target.origin) + wanted @ (far * target_spacing)
    gap = max(float(np.linalg.norm(origin - np.asarray(target.origin))), float(np.linalg.norm(corner - target_corner)))
    if gap > GRID_TOLERANCE_MM:
        raise refuse(f"spacing {tuple(np.round(spacing, 6))} and origin {tuple(np.round(origin, 4))} mm vs "
                     f"{tuple(np.round(target_spacing, 6))} and {tuple(np.round(target.origin, 4))} mm "
                     f"(voxel centres up to {gap:.4g} mm apart)")
    return np.ascontiguousarray(moved)


def _values_text(values: np.ndarray, limit: int = 12) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return "{" + shown + (", ..." if values.size > limit else "") + "}"


def convert_labels(array: np.ndarray, mask_format: str, *, path: str = "") -> tuple[np.ndarray, np.ndarray | None,
                                                                                    np.ndarray | None, np.ndarray | None]:
    """Turn a label map of one convention into (mask, sides, lobes, thirds).

    Parameters
    ----------
    array : numpy.ndarray
        The integer label map.
    mask_format : str
        One of `MASK_FORMATS` (``totalseg`` here means the multi-label file).
    path : str
        The file, for error messages.

    Returns
    -------
    tuple
        ``mask`` (bool), ``sides`` (uint8 1 right 2 left, or None), ``lobes``
        (radiolab lobe codes, or None) and ``thirds`` (1 upper 2 middle 3 lower, or None).

    Raises
    ------
    InputError
        Naming the file, if its values do not fit the convention or it holds no lung.
    """
    if mask_format not in MASK_FORMATS:
        raise ParameterError(f"unknown mask format {mask_format!r}; valid: {', '.join(MASK_FORMATS)}")
    values = np.unique(array)
    if mask_format != "binary" and values.size and values.min() < 0:
        raise InputError(path, f"{mask_format} label maps hold no negative values, found "
                               f"{_values_text(values[values < 0])}")
    sides = lobes = thirds = None
    if mask_format == "binary":
        mask = array != 0
    elif mask_format == "lungmask":
        extra = np.setdiff1d(values, [0, 1, 2])
        if extra.size:
            raise InputError(path, f"lungmask R231 masks hold 0, 1 (right) and 2 (left), found {_values_text(extra)}; "
                                   "for lobes use --mask-format lungmask-lobes")
        mask = array != 0
        sides = np.where(array == 1, RIGHT, np.where(array == 2, LEFT, 0)).astype(np.uint8)
    elif mask_format in ("lungmask-lobes", "totalseg", "totalseg-v1"):
        table = {"lungmask-lobes": LUNGMASK_LOBES, "totalseg": TOTALSEG_V2_LOBES, "totalseg-v1": TOTALSEG_V1_LOBES}[mask_format]
        if mask_format == "lungmask-lobes":
            extra = np.setdiff1d(values, [0, *table])
            if extra.size:
                raise InputError(path, f"lungmask LTRCLobes masks hold 0-5, found {_values_text(extra)}")
        lookup = np.zeros(max(int(values.max()) if values.size else 0, max(table)) + 1, np.uint8)
        for value, code in table.items():
            lookup[value] = code
        lobes = lookup[array]
        mask = lobes > 0
        if mask_format != "lungmask-lobes" and not mask.any():
            other = "totalseg-v1 for lobes at 13-17" if mask_format == "totalseg" else "totalseg for lobes at 10-14"
            raise InputError(path, f"no lung lobe labels {sorted(table)} (values {_values_text(values)}); use {other}")
        sides = _sides_of_lobes(lobes)
    else:  # cip
        region = array.astype(np.int64) & 255
        lookup_size = 256
        lung_lookup = np.zeros(lookup_size, bool)
        lung_lookup[list(CIP_LUNG_REGIONS)] = True
        mask = lung_lookup[region]
        side_lookup = np.zeros(lookup_size, np.uint8)
        side_lookup[list(CIP_RIGHT)] = RIGHT
        side_lookup[list(CIP_LEFT)] = LEFT
        side_values = side_lookup[region]
        if mask.any() and np.all(side_values[mask] > 0):
            sides = side_values
        lobe_lookup = np.zeros(lookup_size, np.uint8)
        for value, code in CIP_LOBES.items():
            lobe_lookup[value] = code
        lobe_values = lobe_lookup[region]
        if lobe_values.any():
            lobes = lobe_values
        third_lookup = np.zeros(lookup_size, np.uint8)
        for value, code in CIP_THIRDS.items():
            third_lookup[value] = code
        third_values = third_lookup[region]
        if mask.any() and np.all(third_values[mask] > 0):
            thirds = third_values
    if not mask.any():
        raise InputError(path, f"mask holds no lung voxels (values {_values_text(values)}, format {mask_format})")
    return mask, sides, lobes, thirds


def _sides_of_lobes(lobes: np.ndarray) -> np.ndarray:
    lookup = np.zeros(6, np.uint8)
    for code, side in LOBE_SIDES.items():
        lookup[code] = side
    return lookup[lobes]


def detect_format(path: str | os.PathLike[str], array: np.ndarray | None) -> str:
    """The convention of a mask when it is unambiguous: a TotalSegmentator folder, or CIP.

    Raises
    ------
    InputError
        If the values leave the convention open; the message asks for ``--mask-format``.
    """
    if Path(path).is_dir():
        return "totalseg"
    values = np.unique(array)
    if values.size and values.max() > 255:
        return "cip"
    raise InputError(path, f"cannot tell the mask's convention from its values {_values_text(values)}: "
                           f"state it with --mask-format ({', '.join(MASK_FORMATS)})")


def read_external_mask(
    directory: str | os.PathLike[str],
    scan_id: str,
    geometry: Geometry,
    shape: tuple[int, int, int],
    *,
    mask_format: str | None = None,
    scan_path: str = "",
) -> LungMasks:
    """Find, read, convert and align the external mask of one scan.

    Parameters
    ----------
    directory : path
        The mask folder (``--lung-masks``).
    scan_id : str
        The scan's id; the mask is matched exactly (`find_mask`).
    geometry, shape : Geometry, tuple of int
        The scan's geometry and array shape.
    mask_format : str, optional
        One of `MASK_FORMATS`; None detects a TotalSegmentator folder or a CIP map and
        refuses anything ambiguous.
    scan_path : str
        The scan's file, for error messages.

    Returns
    -------
    LungMasks

    Raises
    ------
    InputError
        Naming the file(s): no or several masks, unreadable, ambiguous or invalid
        values, no lung, or a grid that would need resampling.
    """
    if mask_format is not None and mask_format not in MASK_FORMATS:
        raise ParameterError(f"unknown mask format {mask_format!r}; valid: {', '.join(MASK_FORMATS)}")
    path = find_mask(directory, scan_id)
    if path.is_dir():
        if mask_format not in (None, "totalseg", "totalseg-v1"):
            raise InputError(path, f"a folder of TotalSegmentator lobe files, but --mask-format is {mask_format}")
        files = mask_files(path)
        lobes = np.zeros(tuple(shape), np.uint8)
        for file in files:
            array, file_geometry = read_label_map(file)
            aligned = align_to_grid(array, file_geometry, geometry, shape, path=os.fspath(file), target_path=scan_path)
            lobes[aligned != 0] = TOTALSEG_LOBE_FILES[_stem(file)]
        if not lobes.any():
            raise InputError(path, "the TotalSegmentator lobe files hold no lung voxels")
        used = mask_format or "totalseg"
        return LungMasks(lobes > 0, _sides_of_lobes(lobes), lobes, None, used,
                         tuple(os.fspath(f) for f in files), mask_content_hash(path, used))
    array, file_geometry = read_label_map(path)
    used = mask_format or detect_format(path, array)
    aligned = align_to_grid(array, file_geometry, geometry, shape, path=os.fspath(path), target_path=scan_path)
    mask, sides, lobes, thirds = convert_labels(aligned, used, path=os.fspath(path))
    return LungMasks(mask, sides, lobes, thirds, used, (os.fspath(path),), mask_content_hash(path, used))


def _stem(file: Path) -> str:
    name = file.name
    for suffix in MASK_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
