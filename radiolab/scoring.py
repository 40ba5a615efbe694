"""Lung involvement and per-class volumes from a tissue label map.

Zaffino et al. (2021), Eq. 1: lung involvement LI = %GGO + %consolidation + %other
dense tissue, each a percentage of the lung volume.
"""

from __future__ import annotations

import numpy as np

from radiolab.mixture import CLASS_NAMES

INVOLVED_CLASSES = ("ggo", "consolidation", "other")


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
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES) + 1)[: len(CLASS_NAMES) + 1]
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
