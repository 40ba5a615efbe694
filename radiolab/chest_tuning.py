"""Tuning of the default preset's real-CT steps (body, airways, gut gas, sides, pleura).

All values are physical (HU, mm, cm², mL, fractions); `radiolab.lung.settings_for`
overrides any of them by name, and the preset's provenance records them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChestTuning:
    """Parameters of the steps the ``default`` preset adds to the threshold mask.

    Attributes
    ----------
    body_hu : float
        Body tissue lies above this, in HU (the body envelope's hull).
    padding_hu : float
        Values strictly below this are padding outside the scan circle, in HU.
    air_floor_hu : float
        Air-like candidates lie at or above this, in HU: lower values are the fill of
        the scan circle (-2048 or -3024 HU on many scanners), never air. Without this
        floor, a lung that the circle cuts joins the outside air through the fill and
        is dropped as outside air. Noise takes air a little below -1024 HU (to -1059
        in ChestImagingPlatform's TestInput), so the floor lies well below that.
    body_grid_mm : float
        Grid of the body envelope, in mm.
    outside_fraction : float
        An air island with more than this share of its voxels outside the envelope is
        outside air.
    leak_opening_mm : float
        Radius of the opening (at least one in-plane voxel) that cuts a lung free of
        outside air it joins through the body wall (noise, a thin wall at a cut field
        of view), in mm; see `radiolab.body.leaky_islands`.
    leak_min_outside_share : float
        A lung island with more than this share of its voxels outside the envelope is
        opened the same way, and loses the outside air cut off from it.
    thin_max_slices : int
        Volumes of at most this many slices are segmented slice by slice in 2-D.
    min_area_cm2 : float
        Smallest lung island of a 2-D slice, in cm² (``min_island`` is the 3-D one, in mL).
    airway_min_area_cm2, airway_max_area_cm2 : float
        Area of a trachea or bronchus cross-section, in cm².
    airway_midline_mm : float
        The trachea's centre lies within this distance of the body midline or of its
        slice's body centre (a patient rolled about the long axis), in mm.
    airway_seed_search_mm : float
        The trachea is looked for in this many mm below the top slice.
    airway_min_length_mm : float
        A trace shorter than this is no airway, in mm.
    airway_growth : float
        An airway island may be at most this many times (plus 1 cm²) the airway area of
        the slice above; a larger one is lung (leak control).
    airway_wall_mm : float
        Tissue within this distance of the traced lumen is airway wall and never lung,
        in mm.
    gas_air_hu : float
        Pure air lies below this, in HU.
    gas_min_air_fraction : float
        Gut gas has at least this share of pure-air voxels.
    gas_vessel_hu : float
        Inside an island, vessels lie above this, in HU.
    gas_max_vessel_fraction : float
        Gut gas has fewer than this share of vessel voxels inside it.
    gas_margin_mm : float
        Rim left out when the inside of an island is measured, in mm.
    gas_mixed_median_hu : float
        An island below a larger lung island whose median HU lies above this is gas
        mixed with bowel content (lung lies near -850 HU), in HU; so is one of that
        median under ``gas_mixed_max_share`` of the largest lung island that lies wholly
        in the lower half of the lungs' height.
    gas_mixed_max_share : float
        See ``gas_mixed_median_hu``.
    air_max_vessel_fraction : float
        An air island whose inside holds fewer than this share of vessel voxels is not
        lung, pure air or not (the air inside a hollow table); lungs hold 1.6 % or more.
    air_min_inside_voxels : int
        That rule judges only islands with at least this many inside voxels on the
        measuring grid (about 1.5 mm).
    midline_air_mm : float or None
        When only one lung is found, the body is not cut at the left or right by the field
        of view, and that lung's voxels lie on average within this distance of the
        body's centre line, it is air on the midline (the nasal cavity, sinuses and
        pharynx of a head CT), not a lung, in mm: lungs are paired and lateral, and a
        single one lies in its hemithorax. None switches the test off.
    side_min_share : float
        Each lung holds at least this share of the eroded mask when the sides are split.
    surface_hu : float or None
        The lung's outer layer loses its voxels between this and the mask threshold
        (partial volume with the chest wall), in HU; None keeps them.
    surface_mm : float
        Depth of that rim, in mm: one voxel layer per ``surface_mm`` of in-plane voxel
        size, at least one.
    medial_core_hu : float
        The closing and the pleural envelope add nothing medial of a lung's most medial
        voxel below this HU on the same left-right row (mostly lung, not the
        partial-volume rim).
    pleural_min_hu, pleural_max_hu : float or None
        HU range of what the pleural envelope adds (consolidation, effusion-like tissue);
        ``pleural_min_hu`` None means the mask threshold. ``pleural_max_hu`` None
        switches the step off.
    pleural_hole_min_below : float or None
        Tissue a lung encloses in an axial slice is added when at least this share of
        it has lung (or what was added) in the slice below: a lesion, not the dome of
        the diaphragm over the liver. None adds no enclosed tissue.
    pleural_front_mm : float
        A bite lies behind the lung seen from the body's centre when the ray to it
        crosses the lung less this depth of its edge, in mm (at least one voxel): a ray
        that grazes a lung's tip (the tip of a basal crescent beside the liver's dome,
        the front of an apex) does not make what lies beyond it a bite.
    pleural_wall_gap_deg : float or None
        A costal bite of consolidation that reaches the lung's outermost extent is
        carried beyond the hull's chord to the chest wall's line between the flanks where
        the air reaches the wall, when it spans at most this angle seen from the body's
        centre, in degrees. None keeps bites within the hull.
    pleural_wall_min_bite_mm2 : float
        Only bites of at least this area in the slice are carried to the wall, in mm²:
        a partial-volume notch along a healthy lung's wall is smaller.
    """

    body_hu: float = -500.0
    padding_hu: float = -1024.0
    air_floor_hu: float = -1500.0
    body_grid_mm: float = 4.0
    outside_fraction: float = 0.5
    leak_opening_mm: float = 3.0
    leak_min_outside_share: float = 0.1
    thin_max_slices: int = 10
    min_area_cm2: float = 5.0
    airway_min_area_cm2: float = 0.5
    airway_max_area_cm2: float = 8.0
    airway_midline_mm: float = 30.0
    airway_seed_search_mm: float = 60.0
    airway_min_length_mm: float = 30.0
    airway_growth: float = 2.0
    airway_wall_mm: float = 3.0
    gas_air_hu: float = -950.0
    gas_min_air_fraction: float = 0.25
    gas_vessel_hu: float = -750.0
    gas_max_vessel_fraction: float = 0.01
    gas_margin_mm: float = 3.0
    gas_mixed_median_hu: float = -650.0
    gas_mixed_max_share: float = 0.1
    air_max_vessel_fraction: float = 0.001
    air_min_inside_voxels: int = 1000
    midline_air_mm: float | None = 25.0
    side_min_share: float = 0.05
    surface_hu: float | None = -400.0
    surface_mm: float = 1.2
    medial_core_hu: float = -500.0
    pleural_min_hu: float | None = None
    pleural_max_hu: float | None = 150.0
    pleural_hole_min_below: float | None = 0.5
    pleural_front_mm: float = 5.0
    pleural_wall_gap_deg: float | None = 90.0
    pleural_wall_min_bite_mm2: float = 100.0
