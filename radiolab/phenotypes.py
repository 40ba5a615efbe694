"""Parenchyma phenotypes per lung region, with the definitions of CIP's command-line tool.

The measures follow ``GenerateParenchymaPhenotypes`` of the Chest Imaging Platform
(acil-bwh/ChestImagingPlatform, ``CommandLineTools/GenerateParenchymaPhenotypes``):

- only voxels from -1024 to 1024 HU (CIP's histogram range) count, for every measure,
  the volume included; ``voxels_out_of_range`` says how many of the region were left out;
- "below X" is strictly ``<`` and "above X" strictly ``>``; percentages are of the
  counted voxels;
- mean and SD are over integer HU; the SD is the population SD (divided by N);
- skewness and kurtosis are the moment ratios m3 / m2^1.5 and m4 / m2^2 (biased;
  Pearson's kurtosis, 3 for a normal distribution); undefined (empty) when m2 = 0;
- mass = sum of (HU + 1000) / 1000 g/mL times the voxel volume in mL;
- the p-th percentile is the highest integer HU h whose cumulative fraction (voxels
  <= h over all counted voxels) is still <= p, from the 1-HU histogram; the median is
  the same with p = 0.5. If the lowest bin (-1024 HU) alone holds more than p, CIP
  leaves the value unset; radiolab reports -1024;
- the mode is the most frequent integer HU, the lowest one on ties.

HAA-500 and HAA-700 are radiolab's additions. An empty region gets empty values and a
``skip_reason``. The regions are those of `REGIONS` (from sides and thirds) and, when a
lobe map is given, the five lobes (`radiolab.zones.LOBE_NAMES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radiolab.lung import bounding_box
from radiolab.mixture import CLASS_NAMES
from radiolab.sides import LEFT, RIGHT
from radiolab.zones import LOBE_NAMES, LOWER, MIDDLE, UPPER, slabs

HU_RANGE = (-1024, 1024)
N_BINS = HU_RANGE[1] - HU_RANGE[0] + 1
LAA_THRESHOLDS = (950, 925, 910, 905, 900, 875, 856)  # % of voxels < -X HU
HAA_THRESHOLDS = (0, 250, 500, 600, 700)  # % of voxels > -X HU
PERCENTILES = {"p10_hu": 0.10, "p15_hu": 0.15}
INVOLVED_CLASSES = ("ggo", "consolidation", "other")

MEASURE_COLUMNS = (
    "voxels", "volume_ml", "mass_g", "mean_hu", "sd_hu", "skewness", "kurtosis", "mode_hu", "median_hu",
    *PERCENTILES,
    *(f"LAA{t}_pct" for t in LAA_THRESHOLDS),
    *(f"HAA{t}_pct" for t in HAA_THRESHOLDS),
)
CLASS_COLUMNS = (*(f"{name}_pct" for name in CLASS_NAMES), "LI_pct")
COLUMNS = ("id", "region", *MEASURE_COLUMNS, *CLASS_COLUMNS, "voxels_out_of_range", "skip_reason")

# Region name -> (side or None, third or None); None matches every value.
REGIONS: dict[str, tuple[int | None, int | None]] = {
    "whole": (None, None),
    "right": (RIGHT, None),
    "left": (LEFT, None),
    "right_upper": (RIGHT, UPPER), "right_middle": (RIGHT, MIDDLE), "right_lower": (RIGHT, LOWER),
    "left_upper": (LEFT, UPPER), "left_middle": (LEFT, MIDDLE), "left_lower": (LEFT, LOWER),
    "upper": (None, UPPER), "middle": (None, MIDDLE), "lower": (None, LOWER),
}
_N_SIDES, _N_THIRDS, _N_LOBES = 3, 4, len(LOBE_NAMES) + 1
_N_ATOMS = _N_SIDES * _N_THIRDS * _N_LOBES


def histogram_phenotypes(histogram: np.ndarray, voxel_volume_ml: float) -> dict[str, Any]:
    """CIP's measures from a 1-HU histogram over -1024..1024 HU.

    Parameters
    ----------
    histogram : numpy.ndarray
        Voxel counts of the integer HU values -1024 ... 1024 (2049 bins).
    voxel_volume_ml : float
        Volume of one voxel, in mL.

    Returns
    -------
    dict
        The columns of `MEASURE_COLUMNS`: ``voxels`` (count), ``volume_ml`` (mL),
        ``mass_g`` (g), ``mean_hu``, ``sd_hu``, ``mode_hu``, ``median_hu``, ``p10_hu``,
        ``p15_hu`` (HU), ``skewness``, ``kurtosis`` (dimensionless) and the LAA/HAA
        percentages. All but ``voxels`` are None for an empty histogram.

    Raises
    ------
    ValueError
        If the histogram does not have 2049 non-negative bins.

    Examples
    --------
    >>> hist = np.zeros(2049, np.int64)
    >>> hist[[-900 + 1024, -800 + 1024]] = 1, 3
    >>> row = histogram_phenotypes(hist, 1.0)
    >>> row["median_hu"], row["p10_hu"], row["mode_hu"], row["mean_hu"]
    (-801, -901, -800, -825.0)
    """
    counts = np.asarray(histogram)
    if counts.shape != (N_BINS,) or np.any(counts < 0):
        raise ValueError(f"histogram must hold {N_BINS} non-negative counts (-1024..1024 HU), got shape {counts.shape}")
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    row: dict[str, Any] = {column: None for column in MEASURE_COLUMNS}
    row["voxels"] = total
    if total == 0:
        return row
    hu = np.arange(HU_RANGE[0], HU_RANGE[1] + 1, dtype=np.int64)
    weights = counts.astype(np.float64)
    mean = float(int((hu * counts).sum()) / total)
    deviation = hu.astype(np.float64) - mean
    m2 = float((weights * deviation ** 2).sum() / total)
    m3 = float((weights * deviation ** 3).sum() / total)
    m4 = float((weights * deviation ** 4).sum() / total)
    row.update(
        volume_ml=total * voxel_volume_ml,
        mass_g=float((weights * (hu + 1000)).sum()) / 1000.0 * voxel_volume_ml,
        mean_hu=mean,
        sd_hu=float(np.sqrt(m2)),
        skewness=m3 / m2 ** 1.5 if m2 > 0 else None,
        kurtosis=m4 / m2 ** 2 if m2 > 0 else None,
        mode_hu=int(hu[int(np.argmax(counts))]),  # argmax takes the first (lowest) maximum
    )
    # Same division as CIP's: the cumulative count over the total, in double precision.
    cumulative = np.cumsum(counts) / float(total)
    for column, p in (("median_hu", 0.5), *PERCENTILES.items()):
        below = np.flatnonzero(cumulative <= p)
        row[column] = int(hu[below[-1]]) if below.size else HU_RANGE[0]
    for t in LAA_THRESHOLDS:
        row[f"LAA{t}_pct"] = 100.0 * int(counts[hu < -t].sum()) / total
    for t in HAA_THRESHOLDS:
        row[f"HAA{t}_pct"] = 100.0 * int(counts[hu > -t].sum()) / total
    return row


def region_phenotypes(
    volume: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    sides: np.ndarray,
    thirds: np.ndarray,
    lobes: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Phenotypes of every region: whole lung, sides, thirds, side thirds, lobes.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x); non-integer values are rounded to 1 HU.
    mask : numpy.ndarray
        Lung mask of the same shape; non-zero is lung.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    sides : numpy.ndarray
        1 right, 2 left, 0 unknown (counted in ``whole`` and the thirds only).
    thirds : numpy.ndarray
        1 upper, 2 middle, 3 lower (`radiolab.zones.lung_thirds` or a CIP map's own).
    lobes : numpy.ndarray, optional
        Lobe codes of `radiolab.zones.LOBE_NAMES` (0 for none); adds the five lobe rows.
    labels : numpy.ndarray, optional
        Tissue labels 0..5; adds the class percentages (of all the region's mask voxels,
        whatever their HU, as in ``summary.csv``) and ``LI_pct``.

    Returns
    -------
    list of dict
        One row per region with the keys of `COLUMNS` except ``id``: `REGIONS` in order,
        then the lobes. An empty region has ``voxels`` 0, None elsewhere and a
        ``skip_reason``.

    Raises
    ------
    ValueError
        If the shapes differ or the spacing is invalid.
    """
    arrays = {"mask": mask, "sides": sides, "thirds": thirds, "lobes": lobes, "labels": labels}
    for name, array in arrays.items():
        if array is not None and array.shape != volume.shape:
            raise ValueError(f"{name} {array.shape} and volume {volume.shape} differ in shape")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive mm values, got {spacing}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    inside = mask.astype(bool, copy=False)
    histograms = np.zeros((_N_ATOMS, N_BINS), np.int64)
    out_of_range = np.zeros(_N_ATOMS, np.int64)
    class_counts = np.zeros((_N_ATOMS, 8), np.int64)
    box = bounding_box(inside)
    # Count slab by slab inside the lung's box, so that memory stays a few bytes per voxel.
    for slab in (() if box is None else slabs(box)):
        lung = inside[slab]
        hu = volume[slab][lung]
        if not np.issubdtype(hu.dtype, np.integer):
            hu = np.rint(hu)
        atom = np.zeros(hu.size, np.int32)
        for name, array, n in (("sides", sides, _N_SIDES), ("thirds", thirds, _N_THIRDS), ("lobes", lobes, _N_LOBES)):
            values = np.zeros(hu.size, np.int32) if array is None else array[slab][lung].astype(np.int32)
            if values.size and (values.min() < 0 or values.max() >= n):
                raise ValueError(f"{name} must lie in 0..{n - 1}, got {int(values.min())}..{int(values.max())}")
            atom = atom * n + values
        in_range = (hu >= HU_RANGE[0]) & (hu <= HU_RANGE[1])
        key = atom[in_range] * N_BINS + (hu[in_range].astype(np.int32) - HU_RANGE[0])
        histograms += np.bincount(key, minlength=_N_ATOMS * N_BINS).reshape(_N_ATOMS, N_BINS)
        out_of_range += np.bincount(atom[~in_range], minlength=_N_ATOMS)
        if labels is not None:
            codes = atom * 8 + labels[slab][lung].astype(np.int32)
            class_counts += np.bincount(codes, minlength=_N_ATOMS * 8)[: _N_ATOMS * 8].reshape(_N_ATOMS, 8)
    if labels is None:
        class_counts = None
    grid = np.arange(_N_ATOMS)
    atom_side, atom_third, atom_lobe = grid // (_N_THIRDS * _N_LOBES), (grid // _N_LOBES) % _N_THIRDS, grid % _N_LOBES
    selections: dict[str, np.ndarray] = {}
    for region, (side, third) in REGIONS.items():
        chosen = np.ones(_N_ATOMS, bool)
        if side is not None:
            chosen &= atom_side == side
        if third is not None:
            chosen &= atom_third == third
        selections[region] = chosen
    if lobes is not None:
        for code, name in LOBE_NAMES.items():
            selections[name] = atom_lobe == code
    rows = []
    for region, chosen in selections.items():
        row: dict[str, Any] = {"region": region, **histogram_phenotypes(histograms[chosen].sum(axis=0), voxel_ml)}
        row.update({column: None for column in CLASS_COLUMNS})
        if class_counts is not None and row["voxels"]:
            tally = class_counts[chosen].sum(axis=0)
            lung = int(tally[1:6].sum())
            for index, name in enumerate(CLASS_NAMES, start=1):
                row[f"{name}_pct"] = 100.0 * int(tally[index]) / lung if lung else None
            if lung:
                row["LI_pct"] = sum(row[f"{name}_pct"] for name in INVOLVED_CLASSES)
        row["voxels_out_of_range"] = int(out_of_range[chosen].sum())
        row["skip_reason"] = ""
        if not row["voxels"]:
            row["skip_reason"] = (f"all {row['voxels_out_of_range']} voxels lie outside -1024..1024 HU"
                                  if row["voxels_out_of_range"] else "no lung voxels in the region")
        rows.append(row)
    return rows

