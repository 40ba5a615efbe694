"""Anatomical chest-CT phantom: the difficulties of real scans, each with ground truth.

The anatomy is defined in patient coordinates (LPS, mm; x to the patient's left, y
posterior, z superior; origin on the body axis, z = 0 near the lung bases) and sampled
on any grid, so the same patient comes out at 0.7, 1.5 or 3 mm voxels, or in a small
region only (``region_mm``) to keep fine grids small. It holds:

- air outside the body inside a scan circle, scanner padding (-2048 or -3024 HU)
  outside it, and a table;
- a body with subcutaneous fat, chest-wall muscle, ribs, sternum and spine;
- two lungs whose anterior parts meet in front of the mediastinum at an anterior
  junction line of ``junction_mm`` (optionally also behind the oesophagus, at a
  posterior junction line); a heart, aorta and oesophagus between them;
- a trachea and main bronchi (air with a soft-tissue wall) joined to the lungs;
- parenchyma of -850 HU mean with a gravity gradient and texture, and vessel trees;
- optional emphysema at a given LAA-950, and subpleural consolidation or ground glass
  of given volumes grown from the costal pleura of the lower lungs;
- a stomach gas bubble and colon gas (pure air with a thin wall) below the diaphragm;
- partial volume (the voxel's average and the scanner's blur) and noise.

Ground truth (``Phantom.truth``, boolean masks of the volume's shape; a voxel belongs
to a structure when its centre lies inside it):

``lung``, ``right_lung``, ``left_lung``
    Lung parenchyma with everything inside it (vessels, lesions, emphysema,
    intrapulmonary bronchi).
``airways``, ``trachea``
    Lumen of the trachea and main bronchi outside the lungs (``trachea``: the
    trachea alone). Their air is joined to the lungs' air.
``mediastinum``
    Non-lung voxels lying between the two lungs on a row of constant (z, y): the
    tissue a lung mask must never hold (airway lumen excluded; see ``airways``).
``mediastinum_core``
    ``mediastinum`` less its one-voxel rim along the lungs (26-neighbours of a lung
    voxel). Partial volume can put rim voxels below -155 HU (at 0.9 mm voxels about
    18 mL of them against mediastinal fat), never core ones: a mask may touch the rim,
    it must not enter the core.
``junction``, ``posterior_junction``
    The parts of ``mediastinum`` forming the anterior and the posterior junction
    lines (the latter empty unless ``posterior_junction_mm`` is given).
``stomach_gas``, ``colon_gas``, ``gut_gas``
    Gas below the diaphragm (``gut_gas`` is their union).
``vessels``, ``emphysema``, ``consolidation``, ``ggo``
    Inside ``lung``.
``body``, ``outside_air``, ``padding``
    The patient, the air around it inside the scan circle, and the voxels outside
    the scan circle.

``Phantom.info`` holds the achieved figures on the grid: ``laa950`` (fraction of lung
voxels below -950 HU), ``stomach_gas_ml``, ``colon_gas_ml``, ``consolidation_ml``,
``ggo_ml``, ``lung_ml``, ``junction_mm``, ``padding_hu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from radiolab.io import Geometry
from radiolab.lesions import costal_pleura, grow_blob
from radiolab.synthetic.phantom import Phantom

AIR_HU = -1000.0
FAT_HU = -100.0
MEDIASTINAL_FAT_HU = -70.0
JUNCTION_HU = 0.0  # pleural layers and a little fat
MUSCLE_HU = 45.0
ABDOMEN_HU = 35.0
LIVER_HU = 60.0
BLOOD_HU = 40.0
BONE_HU = 450.0
MARROW_HU = 250.0
CSF_HU = 10.0
TABLE_HU = 150.0
WALL_HU = 40.0
LUNG_HU = -850.0
EMPHYSEMA_HU = -985.0
CONSOLIDATION_HU = 45.0
GGO_HU = -600.0
SCANNER_MIN_HU = -1024.0  # scanners clip reconstructed values here

# Default field of view in patient mm: (z, y, x) ranges.
DEFAULT_REGION_MM = ((-110.0, 250.0), (-180.0, 180.0), (-180.0, 180.0))
# Body and thoracic cavity (elliptic cross-sections, semi-axes x, y in mm).
BODY_SEMI = (165.0, 115.0)
MUSCLE_SEMI = (150.0, 101.0)
CAVITY_SEMI = (138.0, 93.0)
RIB_DEPTH_MM = 7.0
TABLE_Y_MM = (121.0, 133.0)
# Lungs: ellipsoid (centre x, y, z; semi-axes x, y, z), diaphragm dome top z and drop.
LUNG_SPECS = {
    "right": dict(centre=(-80.0, 5.0, 85.0), semi=(62.0, 92.0, 125.0), dome_z=35.0),
    "left": dict(centre=(80.0, 5.0, 80.0), semi=(60.0, 92.0, 122.0), dome_z=25.0),
}
# Anterior parts of the lungs reaching the midline above the heart.
ANTERIOR_LOBE = dict(centre=(30.0, -55.0, 125.0), semi=(35.0, 28.0, 58.0))
ANTERIOR_LIMIT_Y = -35.0  # in front of this the lungs may meet at the junction line
# Above the aortic arch the lungs may also meet behind the oesophagus, in front of the
# vertebral bodies: lobes of the lungs (centre, semi-axes: x, y, z) and the box (y, z)
# where they may reach the midline.
POSTERIOR_LOBE = dict(centre=(30.0, 36.0, 182.0), semi=(34.0, 6.0, 24.0))
POSTERIOR_JUNCTION_BOX = ((28.0, 45.0), (156.0, 210.0))
POSTERIOR_MEDIASTINUM_HALF_WIDTH = 22.0
CENTRAL_TENDON_Z = -5.0
HEART = dict(centre=(15.0, -20.0, 50.0), semi=(68.0, 55.0, 58.0))
CARINA = (0.0, 5.0, 150.0)
TRACHEA_RADIUS_MM, AIRWAY_WALL_MM = 9.0, 2.5
BRONCHI = {"right": ((-48.0, 8.0, 126.0), 7.0), "left": ((50.0, 10.0, 118.0), 6.0)}


class _Grid:
    """Voxel centres of a (z, y, x) grid in patient mm, and boxes of it."""

    def __init__(self, region_mm, spacing):
        self.spacing = np.asarray(spacing, dtype=float)
        lo = np.array([r[0] for r in region_mm], dtype=float)
        hi = np.array([r[1] for r in region_mm], dtype=float)
        if np.any(hi <= lo):
            raise ValueError(f"region_mm must hold (low, high) ranges with low < high, got {region_mm}")
        self.shape = tuple(int(max(1, round(n))) for n in (hi - lo) / self.spacing)
        self.lo = lo

    def centres(self, axis: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.shape[axis] if stop is None else stop
        return (self.lo[axis] + (np.arange(start, stop) + 0.5) * self.spacing[axis]).astype(np.float32)

    def box(self, lo_mm, hi_mm) -> tuple[slice, ...] | None:
        """Index box of the voxels whose centres may lie in [lo_mm, hi_mm] (z, y, x)."""
        start = np.floor((np.asarray(lo_mm) - self.lo) / self.spacing - 0.5).astype(int)
        stop = np.ceil((np.asarray(hi_mm) - self.lo) / self.spacing + 0.5).astype(int)
        start = np.clip(start, 0, self.shape)
        stop = np.clip(stop, 0, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))

    def coords(self, box):
        z = self.centres(0, box[0].start, box[0].stop)[:, None, None]
        y = self.centres(1, box[1].start, box[1].stop)[None, :, None]
        x = self.centres(2, box[2].start, box[2].stop)[None, None, :]
        return z, y, x

    def full(self):
        return tuple(slice(0, n) for n in self.shape)


def _ellipsoid(z, y, x, centre_xyz, semi_xyz):
    cx, cy, cz = centre_xyz
    ax, ay, az = semi_xyz
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0


def _ellipse(y, x, semi_xy, centre_xy=(0.0, 0.0)):
    return ((x - centre_xy[0]) / semi_xy[0]) ** 2 + ((y - centre_xy[1]) / semi_xy[1]) ** 2 <= 1.0


def _segment_distance(z, y, x, start_xyz, end_xyz):
    """Distance (mm) to a segment and the position t in [0, 1] of the nearest point."""
    s = np.asarray(start_xyz, dtype=np.float32)
    d = np.asarray(end_xyz, dtype=np.float32) - s
    length2 = float(d @ d) or 1.0
    t = ((x - s[0]) * d[0] + (y - s[1]) * d[1] + (z - s[2]) * d[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((x - s[0] - t * d[0]) ** 2 + (y - s[1] - t * d[1]) ** 2 + (z - s[2] - t * d[2]) ** 2)
    return dist, t


def _tube_box(grid, start, end, radius):
    lo = np.minimum(start, end) - radius
    hi = np.maximum(start, end) + radius
    return grid.box(lo[::-1], hi[::-1])


def _dome(y, x, side: str):
    """z of the diaphragm under a lung (mm): a dome, lowest at the lateral and posterior recesses."""
    spec = LUNG_SPECS[side]
    cx, cy, _ = spec["centre"]
    return spec["dome_z"] - 55.0 * ((x - cx) / 62.0) ** 2 - 30.0 * ((y - cy) / 92.0) ** 2


def _diaphragm(y, x):
    """z of the diaphragm (mm): the higher dome, or the flat central tendon under the heart."""
    return np.maximum(np.maximum(_dome(y, x, "right"), _dome(y, x, "left")), CENTRAL_TENDON_Z)


def _lung_shape(z, y, x, side: str, junction_mm: float, posterior_junction_mm: float | None):
    """Voxels of one lung (before carving out the mediastinal organs)."""
    spec = LUNG_SPECS[side]
    sign = -1.0 if side == "right" else 1.0
    inside = _ellipsoid(z, y, x, spec["centre"], spec["semi"])
    lobe = ANTERIOR_LOBE
    inside |= _ellipsoid(z, y, x, (sign * lobe["centre"][0], lobe["centre"][1], lobe["centre"][2]), lobe["semi"])
    inside &= z > _dome(y, x, side)
    inside &= _ellipse(y, x, CAVITY_SEMI)
    # The lungs meet at the junction line in front, stay apart behind (mediastinum).
    medial = np.where(y < ANTERIOR_LIMIT_Y, junction_mm / 2.0, POSTERIOR_MEDIASTINUM_HALF_WIDTH)
    if posterior_junction_mm is not None:
        lobe = POSTERIOR_LOBE
        posterior = _ellipsoid(z, y, x, (sign * lobe["centre"][0], lobe["centre"][1], lobe["centre"][2]),
                               lobe["semi"]) & (z > _dome(y, x, side))
        (y0, y1), (z0, z1) = POSTERIOR_JUNCTION_BOX
        in_box = (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)
        inside |= posterior
        medial = np.where(in_box, posterior_junction_mm / 2.0, medial)
    inside &= sign * x > medial
    return inside


def _mediastinal_organs(z, y, x):
    """Heart, aorta, oesophagus and spine: tissue the lungs wrap around."""
    organs = _ellipsoid(z, y, x, HEART["centre"], HEART["semi"])
    organs |= (((x - 22.0) / 14.0) ** 2 + ((y - 38.0) / 14.0) ** 2 <= 1.0) & (z < 155.0)  # descending aorta
    organs |= (((x + 12.0) / 16.0) ** 2 + ((y + 28.0) / 16.0) ** 2 <= 1.0) & (z > 60.0) & (z < 140.0)  # ascending
    organs |= ((x - 8.0) ** 2 + (y - 28.0) ** 2 <= 8.0**2)  # oesophagus
    organs |= (x**2 + (y - 62.0) ** 2 <= 24.0**2)  # vertebral bodies
    return organs


def anatomical_phantom(
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5),
    *,
    region_mm: Sequence[tuple[float, float]] | None = None,
    junction_mm: float | None = None,
    posterior_junction_mm: float | None = None,
    emphysema_laa: float = 0.0,
    consolidation_ml: Sequence[float] = (),
    ggo_ml: Sequence[float] = (),
    stomach_gas_ml: float = 90.0,
    colon_gas_ml: Sequence[float] = (60.0, 30.0),
    padding_hu: float = -2048.0,
    scan_circle_mm: float = 180.0,
    noise_hu: float = 18.0,
    psf_fwhm_mm: float = 0.8,
    seed: int = 0,
) -> Phantom:
    """Make a seeded anatomical chest CT with ground truth (see the module docstring).

    Parameters
    ----------
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    region_mm : sequence of (float, float), optional
        Patient (z, y, x) ranges in mm to sample; default the whole chest and upper
        abdomen, ``DEFAULT_REGION_MM`` (360 mm each way). A smaller region is a scan
        with a smaller field of view; it may cut the lungs.
    junction_mm : float, optional
        Width of the anterior junction line between the lungs, in mm. Default: 3 mm,
        or the in-plane voxel size where larger, so that at least one voxel of
        mediastinum separates the lungs on the grid. Narrower than a voxel, the lungs
        may touch on the grid (as in real scans), and the truths say so.
    posterior_junction_mm : float, optional
        Width of a posterior junction line, in mm: the lungs then also meet above the
        aortic arch (z 156-210 mm), behind the oesophagus and in front of the spine,
        over about 8 mm front to back. Default: none (the lungs stay 44 mm apart there).
    emphysema_laa : float
        Wanted LAA-950: fraction of lung voxels below -950 HU, in [0, 0.6]. Blobs get
        smaller near the target, which is reached within a few voxels.
    consolidation_ml, ggo_ml : sequence of float
        Volume of each subpleural consolidation (up to about +100 HU) or ground-glass
        lesion, in mL, grown from the costal pleura of the lower posterior lungs,
        alternately right and left. A lesion is smaller when its lung part in the field
        of view is, and left out without lung; ``info`` holds the achieved volumes.
    stomach_gas_ml : float
        Volume of the stomach gas bubble, in mL (0: none).
    colon_gas_ml : sequence of float
        Volume of each colon gas segment, in mL.
    padding_hu : float
        Value outside the scan circle (-2048 or -3024 on many scanners).
    scan_circle_mm : float
        Radius of the scan circle (reconstructed field of view) in the axial plane, mm.
    noise_hu : float
        Standard deviation of the white noise, in HU.
    psf_fwhm_mm : float
        Full width at half maximum of the scanner's blur, in mm; with the voxel's own
        averaging it gives the partial-volume effect (0 and tiny voxels: sharp edges).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> p = anatomical_phantom((6.0, 6.0, 6.0), seed=1)
    >>> sorted(p.truth)[:4]
    ['airways', 'body', 'colon_gas', 'consolidation']
    >>> bool((p.truth["right_lung"] & p.truth["left_lung"]).any())
    False
    """
    if not 0.0 <= emphysema_laa <= 0.6:
        raise ValueError(f"emphysema_laa must lie in [0, 0.6], got {emphysema_laa}")
    if junction_mm is None:
        junction_mm = max(3.0, float(spacing[1]), float(spacing[2]))
    if junction_mm <= 0 or (posterior_junction_mm is not None and posterior_junction_mm <= 0):
        raise ValueError(f"junction widths must be positive, got {junction_mm} and {posterior_junction_mm}")
    rng = np.random.default_rng(seed)
    grid = _Grid(DEFAULT_REGION_MM if region_mm is None else region_mm, spacing)
    shape = grid.shape
    full = grid.full()
    z, y, x = grid.coords(full)
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0

    # -- body, table and outside air ------------------------------------------------
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    body_2d = _ellipse(y, x, BODY_SEMI)
    body = np.broadcast_to(body_2d, shape).copy()
    table = np.broadcast_to((y >= TABLE_Y_MM[0]) & (y <= TABLE_Y_MM[1]) & (np.abs(x) < 230), shape)
    hu[table] = TABLE_HU
    hu[body] = FAT_HU
    hu[np.broadcast_to(_ellipse(y, x, MUSCLE_SEMI), shape)] = MUSCLE_HU
    cavity = np.broadcast_to(_ellipse(y, x, CAVITY_SEMI), shape)
    hu[cavity] = ABDOMEN_HU

    # Ribs: rings just outside the cavity, every 24 mm, rising posteriorly.
    rib_outer = _ellipse(y, x, (CAVITY_SEMI[0] + RIB_DEPTH_MM, CAVITY_SEMI[1] + RIB_DEPTH_MM))
    rib_ring = rib_outer & ~_ellipse(y, x, CAVITY_SEMI) & (np.abs(x) > 20)
    rib_phase = np.mod(z - 0.3 * y, 24.0)
    ribs = (rib_ring & (rib_phase < 8.0) & (z > -40) & (z < 215))
    hu[ribs] = BONE_HU
    sternum = (np.abs(x) < 16) & (y > -BODY_SEMI[1] + 14) & (y < -BODY_SEMI[1] + 26) & (z > 30) & (z < 205)
    hu[np.broadcast_to(sternum, shape)] = BONE_HU

    # Liver under the right dome.
    thorax = z > _diaphragm(y, x)
    liver = cavity & (x < 25.0) & ~thorax & (z < _diaphragm(y, x) - 6.0)
    hu[liver] = LIVER_HU

    # -- mediastinum and lungs --------------------------------------------------------
    hu[cavity & thorax & (np.abs(x) < 45.0)] = MEDIASTINAL_FAT_HU
    organs = _mediastinal_organs(z, y, x) & cavity
    hu[organs] = BLOOD_HU
    spine = np.broadcast_to(x**2 + (y - 62.0) ** 2 <= 24.0**2, shape)
    hu[spine] = MARROW_HU
    hu[np.broadcast_to((x**2 + (y - 62.0) ** 2 <= 24.0**2) & (x**2 + (y - 62.0) ** 2 > 20.0**2), shape)] = BONE_HU
    hu[np.broadcast_to(x**2 + (y - 96.0) ** 2 <= 8.0**2, shape)] = CSF_HU

    lungs = {side: _largest_piece(_lung_shape(z, y, x, side, junction_mm, posterior_junction_mm) & ~organs)
             for side in ("right", "left")}
    # The gap between the lungs at a junction line is pleura and a little fat.
    junction_band = (np.abs(x) <= junction_mm / 2.0 + 1.0) & (y < ANTERIOR_LIMIT_Y) & cavity
    if posterior_junction_mm is not None:
        (y0, y1), (z0, z1) = POSTERIOR_JUNCTION_BOX
        junction_band = junction_band | ((np.abs(x) <= posterior_junction_mm / 2.0 + 1.0)
                                         & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1))
    hu[junction_band & ~organs] = JUNCTION_HU

    # Airways: trachea from the top of the field to the carina, main bronchi into the lungs.
    airway_lumen = np.zeros(shape, dtype=bool)
    airway_wall = np.zeros(shape, dtype=bool)
    trachea = np.zeros(shape, dtype=bool)
    top = np.array([CARINA[0], CARINA[1], max(grid.lo[0] + grid.shape[0] * grid.spacing[0], CARINA[2]) + 20.0])
    tubes = [(np.array(CARINA), top, TRACHEA_RADIUS_MM, True)]
    for side, (end, radius) in BRONCHI.items():
        tubes.append((np.array(CARINA), np.array(end), radius, False))
        # Lobar bronchi: the main bronchus continues into the lung and opens there.
        sign = -1.0 if side == "right" else 1.0
        for lobar_end in ((sign * 75.0, 10.0, 165.0), (sign * 72.0, 25.0, 70.0), (sign * 70.0, -30.0, 95.0)):
            tubes.append((np.array(end), np.array(lobar_end), radius * 0.55, False))
    for start, end, radius, is_trachea in tubes:
        box = _tube_box(grid, start, end, radius + AIRWAY_WALL_MM)
        if box is None:
            continue
        dist, t = _segment_distance(*grid.coords(box), start, end)
        lumen = dist <= radius
        # Open-ended tubes: the wall stops at the end caps so the lumen joins what follows.
        wall = (dist <= radius + (AIRWAY_WALL_MM if radius > 5 else 1.5)) & ~lumen & (t > 0.0) & (t < 1.0)
        airway_wall[box] |= wall
        airway_lumen[box] |= lumen
        if is_trachea:
            trachea[box] |= lumen
    airway_wall &= ~airway_lumen
    lung_any = lungs["right"] | lungs["left"]
    hu[airway_wall] = WALL_HU

    # Parenchyma: -850 HU mean, denser posteriorly (gravity), with a fine texture.
    lung_box = _box_of(lung_any)
    lung_hu = LUNG_HU + 35.0 * (np.broadcast_to(y, shape) - 5.0) / 92.0
    if lung_box is not None:
        texture = rng.standard_normal([s.stop - s.start for s in lung_box]).astype(np.float32)
        texture = ndimage.gaussian_filter(texture, sigma=[1.2 / s for s in grid.spacing])
        texture *= 15.0 / max(float(texture.std()), 1e-6)
        lung_hu = np.array(lung_hu, dtype=np.float32)
        lung_hu[lung_box] += texture
    hu[lung_any] = lung_hu[lung_any]
    hu[airway_wall & lung_any] = WALL_HU
    hu[airway_lumen] = AIR_HU
    airways = airway_lumen & ~lung_any
    trachea &= ~lung_any

    # Vessel trees from each hilum.
    vessels = np.zeros(shape, dtype=bool)
    for side in ("right", "left"):
        sign = -1.0 if side == "right" else 1.0
        hilum = np.array([sign * 45.0, 5.0, 112.0])
        for root in ((0.4, 0.0, 1.0), (0.5, 0.3, -1.0), (0.8, -0.6, 0.1), (0.7, 0.7, -0.2)):
            direction = np.array([sign * root[0], root[1], root[2]])
            _vessel_tree(grid, vessels, hilum, direction / np.linalg.norm(direction), 5.0, 38.0, 4, rng)
    vessels &= lung_any & ~airway_lumen & ~airway_wall
    hu[vessels] = BLOOD_HU

    # -- lesions grown from the pleura ------------------------------------------------
    consolidation = np.zeros(shape, dtype=bool)
    ggo = np.zeros(shape, dtype=bool)
    lesion_region = lung_any & ~airway_lumen & ~airway_wall
    seeds = _lesion_seeds(lungs, grid, y)
    for index, volume_ml in enumerate(list(consolidation_ml) + list(ggo_ml)):
        is_consolidation = index < len(consolidation_ml)
        # Alternate sides; a side the field of view misses gives its turn to the other.
        for side in (("right", "left") if index % 2 == 0 else ("left", "right")):
            candidates = np.flatnonzero(seeds[side] & lesion_region & ~consolidation & ~ggo)
            if candidates.size:
                break
        if candidates.size == 0 or volume_ml <= 0:
            continue
        seed_index = np.unravel_index(int(candidates[rng.integers(candidates.size)]), shape)
        blob = grow_blob(lesion_region & ~consolidation & ~ggo, seed_index, int(round(volume_ml / voxel_ml)),
                         grid.spacing, rng=rng, irregularity=0.25)
        (consolidation if is_consolidation else ggo)[blob] = True
    lesion_texture = rng.standard_normal(shape).astype(np.float32) * 12.0 if (consolidation | ggo).any() else 0.0
    hu[consolidation] = CONSOLIDATION_HU + (lesion_texture[consolidation] if consolidation.any() else 0.0)
    hu[ggo] = GGO_HU + (lesion_texture[ggo] if ggo.any() else 0.0)

    # -- gut gas below the diaphragm ------------------------------------------------------
    stomach = np.zeros(shape, dtype=bool)
    colon = np.zeros(shape, dtype=bool)
    gas_specs = []
    if stomach_gas_ml > 0:
        scale = (stomach_gas_ml * 1000.0 / (4.0 / 3.0 * math.pi * 1.5 * 1.0 * 0.9)) ** (1.0 / 3.0)
        gas_specs.append(("stomach", "ellipsoid", np.array([75.0, -25.0, 0.0]), scale * np.array([1.5, 1.0, 0.9])))
    # Transverse colon, right then left half, then the descending colon (start, axis, radius).
    colon_paths = [((-80.0, -55.0, -70.0), (1.0, 0.0, 0.0), 16.0), ((20.0, -70.0, -65.0), (1.0, 0.0, 0.0), 13.0),
                   ((110.0, 10.0, -100.0), (0.0, 0.0, 1.0), 14.0)]
    for volume_ml, (start, axis, radius) in zip(colon_gas_ml, colon_paths):
        if volume_ml <= 0:
            continue
        sphere_ml = 4.0 / 3.0 * math.pi * radius**3 / 1000.0
        if volume_ml < sphere_ml:
            radius = (volume_ml * 1000.0 * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        length = max(volume_ml * 1000.0 - 4.0 / 3.0 * math.pi * radius**3, 0.0) / (math.pi * radius**2)
        gas_specs.append(("colon", "tube", np.array(start), (np.array(axis) * length, radius)))
    for organ, kind, centre, size in gas_specs:
        centre = _below_diaphragm(centre, kind, size, gap_mm=12.0)
        gas, halo, wall = _gas_pocket(grid, kind, centre, size)
        hu[halo & cavity] = FAT_HU
        hu[wall & cavity] = WALL_HU
        (stomach if organ == "stomach" else colon)[gas & cavity] = True
    gut_gas = stomach | colon
    hu[gut_gas] = AIR_HU

    # -- partial volume, emphysema, noise, scanner padding -------------------------
    sigma = [math.sqrt(s**2 / 12.0 + (psf_fwhm_mm / 2.3548) ** 2) / s for s in grid.spacing]
    hu = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest", truncate=3.0)
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_hu)
    emphysema = np.zeros(shape, dtype=bool)
    if emphysema_laa > 0:
        _add_emphysema(hu, noise, emphysema, lung_any & ~vessels & ~airway_lumen & ~airway_wall
                       & ~consolidation & ~ggo, lung_any, emphysema_laa, grid, rng)
    hu += noise
    hu = np.clip(np.rint(hu), SCANNER_MIN_HU, 3071.0)
    padding = np.broadcast_to(x**2 + y**2 > scan_circle_mm**2, shape)
    hu[padding] = padding_hu
    volume = hu.astype(np.int16)

    lung = lung_any
    between, gap_voxels = _between(lungs["right"], lungs["left"])
    mediastinum = between & np.broadcast_to(thorax, shape) & ~airway_lumen & ~gut_gas & body
    # The junction line: anterior rows where both lungs reach the line (within one voxel).
    thin = gap_voxels * grid.spacing[2] <= junction_mm + grid.spacing[2]
    junction = mediastinum & np.broadcast_to(y < ANTERIOR_LIMIT_Y, shape) & thin[:, :, None]
    posterior_junction = np.zeros(shape, dtype=bool)
    if posterior_junction_mm is not None:
        (y0, y1), (z0, z1) = POSTERIOR_JUNCTION_BOX
        thin_back = gap_voxels * grid.spacing[2] <= posterior_junction_mm + grid.spacing[2]
        posterior_junction = (mediastinum & np.broadcast_to((y >= y0) & (y <= y1) & (z >= z0) & (z <= z1), shape)
                              & thin_back[:, :, None])
    mediastinum_core = mediastinum & ~ndimage.binary_dilation(lung_any, np.ones((3, 3, 3), dtype=bool))
    outside_air = ~body & ~np.asarray(table) & ~padding
    truth = {
        "lung": lung, "right_lung": lungs["right"], "left_lung": lungs["left"],
        "airways": airways, "trachea": trachea, "mediastinum": mediastinum,
        "mediastinum_core": mediastinum_core, "junction": junction,
        "posterior_junction": posterior_junction,
        "stomach_gas": stomach, "colon_gas": colon, "gut_gas": gut_gas,
        "vessels": vessels, "emphysema": emphysema, "consolidation": consolidation, "ggo": ggo,
        "body": body, "outside_air": outside_air, "padding": np.array(padding),
    }
    lung_voxels = max(int(lung.sum()), 1)
    info = {
        "lung_ml": float(lung.sum()) * voxel_ml,
        "laa950": float((volume[lung] < -950).sum()) / lung_voxels,
        "stomach_gas_ml": float(stomach.sum()) * voxel_ml,
        "colon_gas_ml": float(colon.sum()) * voxel_ml,
        "consolidation_ml": float(consolidation.sum()) * voxel_ml,
        "ggo_ml": float(ggo.sum()) * voxel_ml,
        "junction_mm": float(junction_mm),
        "posterior_junction_mm": None if posterior_junction_mm is None else float(posterior_junction_mm),
        "padding_hu": float(padding_hu),
    }
    # Origin: LPS (x, y, z) of the centre of voxel [0, 0, 0].
    origin = tuple(float(v) for v in (grid.lo + 0.5 * grid.spacing)[::-1])
    geometry = Geometry(spacing=tuple(float(s) for s in grid.spacing), origin=origin)
    return Phantom(volume=volume, geometry=geometry, truth=truth,
                   lesion_fraction=float((consolidation | ggo).sum()) / lung_voxels, info=info)


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected part of a mask, plus parts reaching the grid's faces (they
    may join it outside the field of view): slivers the organs cut off on a coarse grid
    are not lung."""
    import cc3d

    if not mask.any():
        return mask
    labels = cc3d.connected_components(mask, connectivity=6)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = np.zeros(sizes.size, dtype=bool)
    keep[int(np.argmax(sizes))] = True
    for axis in range(3):
        for end in (0, -1):
            keep[np.unique(np.take(labels, end, axis=axis))] = True
    keep[0] = False
    return keep[labels]


def _box_of(mask):
    if not mask.any():
        return None
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))


def _vessel_tree(grid, vessels, start, direction, radius, length, depth, rng) -> None:
    end = start + direction * length
    box = _tube_box(grid, start, end, radius)
    if box is not None:
        dist, _ = _segment_distance(*grid.coords(box), start, end)
        vessels[box] |= dist <= radius
    if depth == 0:
        return
    for _ in range(2):
        turn = rng.normal(size=3)
        turn -= (turn @ direction) * direction
        turn /= max(np.linalg.norm(turn), 1e-9)
        angle = rng.uniform(0.35, 0.7)
        child = np.cos(angle) * direction + np.sin(angle) * turn
        _vessel_tree(grid, vessels, end, child / np.linalg.norm(child), radius * 0.72, length * 0.8, depth - 1, rng)


def _lesion_seeds(lungs, grid, y):
    """Costal pleura of the lower, posterior half of each lung (where pneumonia starts)."""
    seeds = {}
    for side, lung in lungs.items():
        costal = costal_pleura(lung, grid.spacing)
        if not lung.any():
            seeds[side] = costal
            continue
        z_index = np.nonzero(lung.any(axis=(1, 2)))[0]
        lower = np.zeros(lung.shape[0], dtype=bool)
        lower[: z_index[0] + max(1, (z_index[-1] - z_index[0]) // 2)] = True
        preferred = costal & lower[:, None, None] & np.broadcast_to(y > 0, lung.shape)
        seeds[side] = preferred if preferred.any() else costal
    return seeds


def _below_diaphragm(centre, kind, size, gap_mm):
    """Move a gas pocket down until its top lies ``gap_mm`` below the diaphragm."""
    if kind == "ellipsoid":
        angles = np.linspace(0, 2 * math.pi, 24)
        polar = np.linspace(0, math.pi, 13)
        a, p = np.meshgrid(angles, polar)
        points = centre + np.stack([size[0] * np.sin(p) * np.cos(a), size[1] * np.sin(p) * np.sin(a),
                                    size[2] * np.cos(p)], axis=-1).reshape(-1, 3)
    else:
        axis, radius = size
        t = np.linspace(0, 1, 11)[:, None]
        ring = np.array([[radius * math.cos(a), radius * math.sin(a), 0.0] for a in np.linspace(0, 2 * math.pi, 12)])
        points = (centre + t * axis)[:, None, :] + ring[None, :, :]
        points = np.concatenate([points.reshape(-1, 3), (centre + t * axis) + [0.0, 0.0, radius]])
    floor = _diaphragm(points[:, 1], points[:, 0])
    excess = float(np.max(points[:, 2] - (floor - gap_mm)))
    return centre - np.array([0.0, 0.0, max(excess, 0.0)])


def _gas_pocket(grid, kind, centre, size):
    """Gas, its 3 mm wall and a 6 mm fat halo, as masks of the grid."""
    shape = grid.shape
    gas, wall, halo = (np.zeros(shape, dtype=bool) for _ in range(3))
    if kind == "ellipsoid":
        semi = np.asarray(size)
        box = grid.box((centre - semi - 10)[::-1], (centre + semi + 10)[::-1])
        if box is None:
            return gas, halo, wall
        z, y, x = grid.coords(box)
        gas[box] = _ellipsoid(z, y, x, centre, semi)
        wall[box] = _ellipsoid(z, y, x, centre, semi + 3.0)
        halo[box] = _ellipsoid(z, y, x, centre, semi + 9.0)
    else:
        axis, radius = size
        end = centre + axis
        box = _tube_box(grid, centre, end, radius + 10)
        if box is None:
            return gas, halo, wall
        dist, _ = _segment_distance(*grid.coords(box), centre, end)
        gas[box] = dist <= radius
        wall[box] = dist <= radius + 3.0
        halo[box] = dist <= radius + 9.0
    return gas, halo & ~wall, wall & ~gas


def _add_emphysema(hu, noise, emphysema, allowed, lung, target, grid, rng) -> None:
    """Paint small low-attenuation blobs, upper zones first, until LAA-950 reaches ``target``.

    The count is kept exact for the final rounding: a voxel is below -950 HU when
    ``rint(value + noise) < -950``.
    """
    lung_voxels = int(lung.sum())
    below = int((np.rint(hu[lung] + noise[lung]) < -950).sum())
    want = target * lung_voxels
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0:
        return
    z_mm = grid.centres(0)[np.unravel_index(candidates, grid.shape)[0]]
    weights = np.exp((z_mm - z_mm.mean()) / 60.0)  # centrilobular: upper lobes first
    weights /= weights.sum()
    order = rng.choice(candidates, size=min(candidates.size, 200_000), replace=True, p=weights)
    spacing = grid.spacing
    for flat in order:
        if below >= want:
            break
        centre = np.array(np.unravel_index(int(flat), grid.shape))
        radius = rng.uniform(2.0, 7.0)
        # Near the target, smaller blobs: the last one fills the remaining deficit.
        deficit_mm3 = (want - below) * float(np.prod(spacing))
        radius = min(radius, max((3.0 * deficit_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0), 0.5 * float(spacing.min())))
        half = np.ceil(radius / spacing).astype(int)
        box = tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, grid.shape))
        grids = np.ogrid[tuple(slice(b.start - c, b.stop - c) for b, c in zip(box, centre))]
        ball = sum((g * s) ** 2 for g, s in zip(grids, spacing)) <= radius**2
        new = ball & allowed[box] & ~emphysema[box]
        if not new.any():
            continue
        old_below = np.rint(hu[box][new] + noise[box][new]) < -950
        new_value = np.float32(EMPHYSEMA_HU)
        new_below = np.rint(new_value + noise[box][new]) < -950
        below += int(new_below.sum()) - int(old_below.sum())
        hu[box][new] = new_value
        emphysema[box] |= new


def _between(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Voxels strictly between the right lung's most medial and the left lung's most
    medial voxel on each (z, y) row holding both lungs (x axis = patient left), and the
    number of voxels of that gap per row (the row length where a lung is missing)."""
    nx = right.shape[2]
    index = np.arange(nx)[None, None, :]
    has_right = right.any(axis=2)
    has_left = left.any(axis=2)
    right_medial = np.where(has_right, nx - 1 - np.argmax(right[:, :, ::-1], axis=2), -1)
    left_medial = np.where(has_left, np.argmax(left, axis=2), nx)
    both = has_right & has_left
    gap = np.where(both, left_medial - right_medial - 1, nx)
    between = (both[:, :, None] & (index > right_medial[:, :, None]) & (index < left_medial[:, :, None])
               & ~right & ~left)
    return between, gap
