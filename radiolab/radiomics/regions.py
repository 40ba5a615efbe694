"""Regions of interest built from a label map."""

from __future__ import annotations


import logging
from typing import Sequence

import numpy as np

from radiolab.errors import ParameterError
from radiolab.mixture import CLASS_NAMES

logger = logging.getLogger(__name__)

# Region name -> label value for the tissue classes (labels 1..5), in label order.
CLASS_LABELS: dict[str, int] = {name: value for value, name in enumerate(CLASS_NAMES, start=1)}
REGIONS: tuple[str, ...] = (*CLASS_NAMES, "lung", "involved")
INVOLVED_LABELS = (3, 4, 5)


def check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    """The requested regions in table order; an unknown name is an error listing the valid ones."""
    if isinstance(regions, str):
        regions = [regions]
    unknown = [name for name in regions if name not in REGIONS]
    if unknown:
        raise ParameterError(f"unknown region(s) {', '.join(map(repr, unknown))}; valid regions: {', '.join(REGIONS)}")
    if not regions:
        raise ParameterError(f"no region requested; valid regions: {', '.join(REGIONS)}")
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


