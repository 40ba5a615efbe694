"""Lung involvement, per-class volumes, per-side indices and density indices.

Zaffino et al. (2021), Eq. 1: lung involvement LI = %GGO + %consolidation + %other
dense tissue, each a percentage of the lung volume.

Density indices, with the definitions of CIP's ``GenerateParenchymaPhenotypes``
(`radiolab.phenotypes`): percentages of the lung-mask voxels from -1024 to 1024 HU,

- ``LAA950_pct``: low-attenuation area, voxels strictly below -950 HU;
- ``HAA500_pct`` and ``HAA250_pct``: high-attenuation areas, voxels strictly above
  -500 HU and -250 HU.

They equal the ``whole`` row of ``phenotypes.csv``. The zone scores and
``zonal_severity`` (and ``lobar_severity`` when a lobe map is given) come from
`radiolab.zones`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from radiolab.lung import bounding_box
from radiolab.mixture import CLASS_NAMES
from radiolab.phenotypes import HU_RANGE, region_phenotypes
from radiolab.sides import IDENTITY_DIRECTION, SIDE_NAMES, split_sides
from radiolab.zones import ZONE_NAMES, lobar_severity, lung_thirds, zone_scores

INVOLVED_CLASSES = ("ggo", "consolidation", "other")
# column -> (comparison, threshold in HU); comparisons are strict.
DENSITY_INDICES: dict[str, tuple[str, float]] = {
    "LAA950_pct": ("<", -950.0),
    "HAA500_pct": (">", -500.0),
    "HAA250_pct": (">", -250.0),
}
# summary.csv's zonal columns, in order; lobar_severity only when a lobe map is given.
ZONAL_COLUMNS = (*(f"zone_score_{zone}" for zone in ZONE_NAMES), "zonal_severity")


def class_volumes(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Lung volume, and volume and percentage of each tissue class.

    Parameters
    ----------
    labels : numpy.ndarray
        Tissue labels 0..5 (0 outside the lung), indexed (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.

    Returns
    -------
    dict
        ``lung_volume_ml``; for each class ``<name>_ml`` (mL) and ``<name>_pct`` (% of
        lung volume); ``LI_pct`` (the paper's lung involvement, %).
    """
    counts = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES) + 1)[: len(CLASS_NAMES) + 1]
    return volumes_from_counts(counts, spacing)


def volumes_from_counts(counts: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """`class_volumes` from the voxel count of each label 0..5."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lung_voxels = int(counts[1:].sum())
    row: dict[str, float] = {"lung_volume_ml": lung_voxels * voxel_ml}
    for index, name in enumerate(CLASS_NAMES, start=1):
        row[f"{name}_ml"] = int(counts[index]) * voxel_ml
        row[f"{name}_pct"] = 100.0 * int(counts[index]) / lung_voxels if lung_voxels else 0.0
    row["LI_pct"] = sum(row[f"{name}_pct"] for name in INVOLVED_CLASSES)
    return row


def involvement(labels: np.ndarray) -> float:
    """Lung involvement LI in % (GGO + consolidation + other dense, over lung voxels)."""
    counts = np.bincount(labels.ravel(), minlength=6)
    lung = counts[1:6].sum()
    return float(100.0 * counts[3:6].sum() / lung) if lung else 0.0


def density_indices(volume: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Low- and high-attenuation areas as percentages of the lung voxels.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x).
    mask : numpy.ndarray
        Lung mask of the same shape; non-zero is lung.

    Returns
    -------
    dict
        ``LAA950_pct`` (% of lung voxels with HU < -950), ``HAA500_pct`` (HU > -500)
        and ``HAA250_pct`` (HU > -250), of the voxels from -1024 to 1024 HU (CIP's
        range); 0.0 for an empty mask.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if volume.shape != mask.shape:
        raise ValueError(f"volume {volume.shape} and mask {mask.shape} differ in shape")
    values = volume[mask.astype(bool, copy=False)]
    values = values[(values >= HU_RANGE[0]) & (values <= HU_RANGE[1])]
    row: dict[str, float] = {}
    for column, (comparison, threshold) in DENSITY_INDICES.items():
        if values.size == 0:
            row[column] = 0.0
            continue
        hits = values < threshold if comparison == "<" else values > threshold
        row[column] = 100.0 * int(np.count_nonzero(hits)) / values.size
    return row


def _union_box(a, b):
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def _side_label_counts(sides: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Voxel counts of every (side 0..2, label 0..5) pair, as a 3 x 6 int64 array.

    One pass counts the code 8 * side + label, a few slices at a time, so that
    bincount's int64 copy of the codes stays small.
    """
    counts = np.zeros(24, dtype=np.int64)
    step = max(1, (1 << 22) // max(1, int(np.prod(labels.shape[1:]))))
    for start in range(0, labels.shape[0], step):
        codes = sides[start: start + step] * np.uint8(8)
        codes += labels[start: start + step]
        counts += np.bincount(codes.ravel(), minlength=24)[:24]
    return counts.reshape(3, 8)[:, :6]


def summary_row(
    labels: np.ndarray,
    volume: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    direction: Sequence[float] = IDENTITY_DIRECTION,
    sides: np.ndarray | None = None,
    lobes: np.ndarray | None = None,
    thirds: np.ndarray | None = None,
) -> dict[str, Any]:
    """One scan's row of ``summary.csv`` (`scan_tables` without the phenotype rows)."""
    return scan_tables(labels, volume, mask, spacing, direction=direction, sides=sides, lobes=lobes,
                       thirds=thirds)[0]


def scan_tables(
    labels: np.ndarray,
    volume: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    direction: Sequence[float] = IDENTITY_DIRECTION,
    sides: np.ndarray | None = None,
    lobes: np.ndarray | None = None,
    thirds: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One scan's row of ``summary.csv`` and its rows of ``phenotypes.csv``.

    Parameters
    ----------
    labels : numpy.ndarray
        Tissue labels 0..5 (0 outside the lung), indexed (z, y, x).
    volume : numpy.ndarray
        CT in HU of the same shape.
    mask : numpy.ndarray
        Lung mask of the same shape (the mask the labels were computed in).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    direction : sequence of 9 float
        The volume's direction cosines (``Geometry.direction``), to tell right from left
        and head from feet.
    sides : numpy.ndarray, optional
        1 right, 2 left (an external mask's); default `radiolab.sides.split_sides`.
    lobes : numpy.ndarray, optional
        Lobe codes (`radiolab.zones.LOBE_NAMES`); adds lobe rows and ``lobar_severity``.
    thirds : numpy.ndarray, optional
        1 upper, 2 middle, 3 lower (a CIP map's own); default `radiolab.zones.lung_thirds`.

    Returns
    -------
    row : dict
        The keys of `class_volumes`; for each side (``right_``, ``left_``)
        ``<side>_lung_volume_ml``, ``<side>_<class>_pct`` and ``<side>_LI_pct`` (% of that
        lung); ``sides_found`` (2 when both lungs have voxels, 1 when the whole mask
        went to one side, 0 for an empty mask, see `radiolab.sides.split_sides`); the
        density indices of `density_indices` (equal to the ``whole`` phenotype row);
        `ZONAL_COLUMNS`; ``lobar_severity`` when ``lobes`` is given.
    phenotypes : list of dict
        `radiolab.phenotypes.region_phenotypes` rows.

    Raises
    ------
    ValueError
        If the arrays differ in shape.
    """
    if not labels.shape == volume.shape == mask.shape:
        raise ValueError(f"labels {labels.shape}, volume {volume.shape} and mask {mask.shape} differ in shape")
    for name, array in (("sides", sides), ("thirds", thirds), ("lobes", lobes)):
        if array is not None and array.shape != volume.shape:
            raise ValueError(f"{name} {array.shape} and volume {volume.shape} differ in shape")
    lung = mask.astype(bool, copy=False)
    # Everything counted lies in the box of the lung and the labels: outside it the
    # sides, thirds and labels are 0, so the tables are made on that box alone. The
    # sides are split on the whole mask (their default midline is the volume's centre).
    box = _union_box(bounding_box(lung), bounding_box(labels))
    if box is None:
        box = (slice(0, 0),) * 3
    lung_box, labels_box = lung[box], labels[box]
    if sides is None:
        sides_box = split_sides(mask, spacing, direction=direction)[box]
    else:
        sides_box = np.multiply(sides[box], lung_box, dtype=np.uint8, casting="unsafe")
    if thirds is None:
        # The thirds follow the raster order of the lung voxels, which the crop keeps.
        thirds_box = lung_thirds(lung_box, direction=direction)
    else:
        thirds_box = np.where(lung_box, thirds[box], 0).astype(np.uint8)
    phenotypes = region_phenotypes(volume[box], lung_box, spacing, sides=sides_box, thirds=thirds_box,
                                   lobes=None if lobes is None else lobes[box], labels=labels_box)
    pairs = _side_label_counts(sides_box, labels_box)
    row: dict[str, Any] = dict(volumes_from_counts(pairs.sum(axis=0), spacing))
    for value, side in SIDE_NAMES.items():
        side_row = volumes_from_counts(pairs[value], spacing)
        row[f"{side}_lung_volume_ml"] = side_row["lung_volume_ml"]
        for name in CLASS_NAMES:
            row[f"{side}_{name}_pct"] = side_row[f"{name}_pct"]
        row[f"{side}_LI_pct"] = side_row["LI_pct"]
    row["sides_found"] = int(np.count_nonzero(pairs[1:].sum(axis=1)))
    whole = phenotypes[0]
    for column in DENSITY_INDICES:
        row[column] = whole[column] if whole[column] is not None else 0.0
    row.update(zone_scores(labels_box, sides_box, thirds_box))
    if lobes is not None:
        row["lobar_severity"] = lobar_severity(labels, lobes)["lobar_severity"]
    return row, phenotypes
