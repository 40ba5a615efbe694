"""Gas in the stomach and bowel, told from lung by its content.

Lung is air mixed with tissue: its voxels spread around -850 HU and its inside holds
vessels. Gut gas is nearly pure air (many voxels near -1000 HU) and holds nothing. An
air island is gut gas when

* at least ``min_air_fraction`` of its voxels lie below ``air_hu`` (pure air), and
* fewer than ``max_vessel_fraction`` of the voxels of its inside lie above
  ``vessel_hu``. The inside is the island with its holes filled slice by slice (a
  vessel crossing the slice is a hole of the air mask) and its outer ``margin_mm``
  plus one voxel left out (the partial-volume rim of a gas bubble is dense too);
* or, when it lies below a larger lung island (at least half of its footprint in the
  axial plane lies under that island, `lies_below`), with as much pure air, or with a
  median denser than ``mixed_median_hu``: gas mixed with bowel content, or small gas
  pockets blurred by thick slices or a smooth kernel (measured: -440 to -510 HU for the
  colon gas of CIP's TestInput on finer grids), where lung lies near -850 HU. Gut gas
  lies under the diaphragm, under the lung bases;
* or, with such a dense median, when it is small (under ``max_share`` of the largest
  lung island) and its top lies below the middle of the lungs' height (`small_and_low`):
  the colon in front of the lung bases and under the heart is not under lung.

Emphysematous lung has many voxels below -950 HU (20-50 %) but keeps its vessels, so
it stays lung. The features are measured on a grid of about ``grid_mm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from radiolab.planar import fill_holes_in_plane


@dataclass(frozen=True)
class IslandContent:
    """What an air island holds."""

    air_fraction: float
    vessel_fraction: float
    inside_voxels: int
    median_hu: float


def island_content(volume: np.ndarray, island: np.ndarray, spacing, *, air_hu: float, vessel_hu: float,
                   margin_mm: float, grid_mm: float = 1.5) -> IslandContent:
    """Measure one island on its bounding box.

    Parameters
    ----------
    volume, island : numpy.ndarray
        CT (HU) and the island's mask on the same box, canonical order.
    spacing : tuple of float
        Voxel size, in mm.
    """
    import edt

    steps = tuple(max(1, int(grid_mm // s)) for s in spacing)
    sub_island = np.ascontiguousarray(island[::steps[0], ::steps[1], ::steps[2]])
    sub_volume = volume[::steps[0], ::steps[1], ::steps[2]]
    values = sub_volume[sub_island]
    if values.size == 0:
        return IslandContent(0.0, 0.0, 0, 0.0)
    air_fraction = float(np.mean(values < air_hu))
    filled = fill_holes_in_plane(sub_island)
    sub_spacing = tuple(s * t for s, t in zip(spacing, steps))
    # In-plane depth: thick slices would otherwise leave no inside at all.
    depth = np.empty(filled.shape, dtype=np.float32)
    for k in range(filled.shape[0]):
        depth[k] = edt.edt(filled[k].view(np.uint8), anisotropy=sub_spacing[1:], black_border=True)
    inside = depth > margin_mm + max(sub_spacing[1:])
    count = int(np.count_nonzero(inside))
    vessel_fraction = float(np.mean(sub_volume[inside] > vessel_hu)) if count else 0.0
    return IslandContent(air_fraction, vessel_fraction, count, float(np.median(values)))


def is_gut_gas(content: IslandContent, *, min_air_fraction: float, max_vessel_fraction: float) -> bool:
    """Whether an island's content is that of gut gas (see the module text)."""
    return content.air_fraction >= min_air_fraction and content.vessel_fraction < max_vessel_fraction


def holds_no_vessels(content: IslandContent, *, max_vessel_fraction: float, min_inside_voxels: int) -> bool:
    """Whether an island's inside, of at least ``min_inside_voxels`` (on the measuring
    grid), holds fewer than ``max_vessel_fraction`` of vessel voxels, pure air or not.

    Lung always holds vessels (measured: 1.6-89 % of the inside of real and phantom
    lungs); the air inside a hollow scanner table or a cushion holds none (0.000 in
    TotalSegmentator's example CT, whose table air, -916 HU, is not pure enough for
    the gut-gas rule). A small island without an inside to measure is not judged.
    """
    return content.inside_voxels >= min_inside_voxels and content.vessel_fraction < max_vessel_fraction


def lies_below(island: np.ndarray, other: np.ndarray, *, min_cover: float = 0.5) -> bool:
    """Whether ``other`` covers ``min_cover`` of ``island``'s footprint from above.

    Both are masks on the same box in canonical order (axis 0 towards the head).
    """
    slices = np.flatnonzero(island.any(axis=(1, 2)))
    if slices.size == 0:
        return False
    footprint = island.any(axis=0)
    above = other[slices[-1] + 1:].any(axis=0)
    return bool(np.count_nonzero(footprint & above) >= min_cover * np.count_nonzero(footprint))


def small_and_low(size: int, top: int, lung_sizes: list[int], lung_spans: list[tuple[int, int]], *,
                  max_share: float) -> bool:
    """Whether an island of ``size`` voxels, whose highest slice is ``top``, is small next
    to the largest lung island and lies wholly in the lower half of the lungs' height.

    ``lung_spans`` holds each lung island's (lowest, highest) slice; canonical axis 0
    runs towards the head.
    """
    if not lung_sizes or size >= max_share * max(lung_sizes):
        return False
    lowest = min(span[0] for span in lung_spans)
    highest = max(span[1] for span in lung_spans)
    return top < (lowest + highest) / 2.0
