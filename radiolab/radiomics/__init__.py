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

Modules: `engine` (pyradiomics access), `params` (parameter files), `regions` (region
masks), `images` (crops and SimpleITK images), `extraction` (one scan) and `cohort`
(`radiolab features` on a cohort). The names below are the public API.
"""

from radiolab.radiomics.engine import (
    MapRefused,
    PYRADIOMICS_INSTALL,
    pyradiomics_version,
)
from radiolab.radiomics.params import (
    DEFAULT_PARAMS,
    load_params,
    params_sha256,
)
from radiolab.radiomics.regions import (
    CLASS_LABELS,
    INVOLVED_LABELS,
    REGIONS,
    check_regions,
    region_masks,
)
from radiolab.radiomics.images import (
    CROP_MARGIN_MM,
    crop_box,
    geometry_of,
    sitk_image,
)
from radiolab.radiomics.extraction import (
    MAX_MAP_VOXELS,
    MIN_TEXTURE_VOXELS,
    PROVENANCE_COLUMNS,
    ROW_COLUMNS,
    SKIP_COLUMN,
    TEXTURE_CLASSES,
    extract_features,
    voxel_feature_maps,
)
from radiolab.radiomics.cohort import (
    FORMATS,
    FeaturesReport,
    LABEL_MAPS,
    extract_cohort,
    features_scan,
    labels_path,
    table_columns,
    write_errors,
    write_table,
)

__all__ = [
    "CLASS_LABELS",
    "CROP_MARGIN_MM",
    "DEFAULT_PARAMS",
    "FORMATS",
    "FeaturesReport",
    "INVOLVED_LABELS",
    "LABEL_MAPS",
    "MAX_MAP_VOXELS",
    "MIN_TEXTURE_VOXELS",
    "MapRefused",
    "PROVENANCE_COLUMNS",
    "PYRADIOMICS_INSTALL",
    "REGIONS",
    "ROW_COLUMNS",
    "SKIP_COLUMN",
    "TEXTURE_CLASSES",
    "check_regions",
    "crop_box",
    "extract_cohort",
    "extract_features",
    "features_scan",
    "geometry_of",
    "labels_path",
    "load_params",
    "params_sha256",
    "pyradiomics_version",
    "region_masks",
    "sitk_image",
    "table_columns",
    "voxel_feature_maps",
    "write_errors",
    "write_table",
]
