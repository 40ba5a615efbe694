"""FROZEN copy of ``radiolab/synthetic.py`` at commit 8472b8a; never edit this file.

It regenerates the volumes of the paper-preset regression fixture
(``tests/data/paper_preset``), so that later changes to ``radiolab.synthetic`` cannot
change, and so hide a change in, what ``preset="zaffino2021"`` is checked on. Everything
below this docstring is the generator verbatim; its own docstring follows.

Seeded synthetic chest-CT phantoms with ground truth.

A phantom is built in physical units (mm), so the same anatomy comes out at any voxel
size. It holds air around the body, a body with a fat rim, a spine and ribs, a table,
trachea and main bronchi, two lungs with an aeration gradient, vessels, ground-glass
and consolidation lesions of known extent, and bowel gas below the lungs.

Ground truth: ``lung`` (parenchyma including lesions, vessels and intrapulmonary
bronchi), ``ggo``, ``consolidation``, ``vessels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radiolab.io import Geometry, write_volume

AIR_HU = -1000
FAT_HU = -100
SOFT_TISSUE_HU = 40
BONE_HU = 700
TABLE_HU = 300
VESSEL_HU = 40
GGO_HU = -650
CONSOLIDATION_HU = -250


@dataclass
class Phantom:
    """A synthetic scan and its ground truth.

    Attributes
    ----------
    volume : numpy.ndarray
        int16 HU, indexed (z, y, x).
    geometry : Geometry
        Spacing in mm (z, y, x).
    truth : dict of str to numpy.ndarray
        Boolean ground-truth masks: ``lung``, ``ggo``, ``consolidation``, ``vessels``.
    lesion_fraction : float
        (GGO + consolidation voxels) / lung voxels, in [0, 1].
    """

    volume: np.ndarray
    geometry: Geometry
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    lesion_fraction: float = 0.0


class _Canvas:
    """Voxel grid with physical coordinates, painting shapes within their bounding box."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        self.shape = shape
        self.spacing = np.asarray(spacing, dtype=float)
        self.extent = np.asarray(shape) * self.spacing  # mm, (z, y, x)
        self.centre = self.extent / 2.0

    def axis_mm(self, axis: int, start: int, stop: int) -> np.ndarray:
        return (np.arange(start, stop) + 0.5) * self.spacing[axis] - self.centre[axis]

    def box(self, centre_mm: np.ndarray, half_mm: np.ndarray) -> tuple[slice, ...] | None:
        lo = np.floor((centre_mm - half_mm + self.centre) / self.spacing).astype(int)
        hi = np.ceil((centre_mm + half_mm + self.centre) / self.spacing).astype(int) + 1
        lo = np.clip(lo, 0, self.shape)
        hi = np.clip(hi, 0, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(a, b) for a, b in zip(lo, hi))

    def grids(self, region: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = self.axis_mm(0, region[0].start, region[0].stop)[:, None, None]
        y = self.axis_mm(1, region[1].start, region[1].stop)[None, :, None]
        x = self.axis_mm(2, region[2].start, region[2].stop)[None, None, :]
        return z, y, x

    def ellipsoid(self, centre_mm, semi_axes_mm) -> tuple[tuple[slice, ...], np.ndarray] | None:
        centre_mm = np.asarray(centre_mm, float)
        semi = np.asarray(semi_axes_mm, float)
        region = self.box(centre_mm, semi)
        if region is None:
            return None
        z, y, x = self.grids(region)
        inside = (((z - centre_mm[0]) / semi[0]) ** 2 + ((y - centre_mm[1]) / semi[1]) ** 2
                  + ((x - centre_mm[2]) / semi[2]) ** 2) <= 1.0
        return region, inside

    def capsule(self, start_mm, end_mm, radius_mm) -> tuple[tuple[slice, ...], np.ndarray] | None:
        start = np.asarray(start_mm, float)
        end = np.asarray(end_mm, float)
        lo = np.minimum(start, end) - radius_mm
        hi = np.maximum(start, end) + radius_mm
        region = self.box((lo + hi) / 2, (hi - lo) / 2)
        if region is None:
            return None
        z, y, x = self.grids(region)
        direction = end - start
        length2 = float(direction @ direction) or 1.0
        t = ((z - start[0]) * direction[0] + (y - start[1]) * direction[1]
             + (x - start[2]) * direction[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        d2 = ((z - start[0] - t * direction[0]) ** 2 + (y - start[1] - t * direction[1]) ** 2
              + (x - start[2] - t * direction[2]) ** 2)
        return region, d2 <= radius_mm**2


def _paint(target: np.ndarray, shape, value) -> None:
    if shape is None:
        return
    region, inside = shape
    target[region][inside] = value


def chest_phantom(
    shape: tuple[int, int, int] = (64, 96, 96),
    spacing: tuple[float, float, float] = (5.0, 3.5, 3.5),
    *,
    lesion_fraction: float = 0.1,
    consolidation_share: float = 0.3,
    noise_hu: float = 25.0,
    seed: int = 0,
) -> Phantom:
    """Make a seeded synthetic chest CT with ground truth.

    Parameters
    ----------
    shape : tuple of int
        Voxels along (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm. The anatomy scales with the field of view
        ``shape * spacing``, which should be about 250-400 mm in every direction.
    lesion_fraction : float
        Target fraction of lung volume taken by lesions (GGO plus consolidation), 0-0.6.
        The achieved fraction is returned in ``Phantom.lesion_fraction``.
    consolidation_share : float
        Share of the lesion volume that is consolidation (the cores of lesions).
    noise_hu : float
        Standard deviation of the Gaussian noise added everywhere, in HU.
    seed : int
        Seed of ``numpy.random.default_rng``; equal seeds give equal phantoms.

    Returns
    -------
    Phantom
    """
    if not 0.0 <= lesion_fraction <= 0.6:
        raise ValueError(f"lesion_fraction must lie in [0, 0.6], got {lesion_fraction}")
    rng = np.random.default_rng(seed)
    canvas = _Canvas(tuple(int(s) for s in shape), tuple(float(s) for s in spacing))
    fov = canvas.extent
    hu = np.full(canvas.shape, AIR_HU, dtype=np.float32)

    # Body: elliptic cylinder through all slices, fat rim 10 mm, soft tissue inside.
    body_semi = np.array([fov[0], 0.30 * fov[1], 0.42 * fov[2]])
    _paint(hu, canvas.ellipsoid((0, 0, 0), body_semi * [1.0, 1, 1]), FAT_HU)
    _paint(hu, canvas.ellipsoid((0, 0, 0), (fov[0], body_semi[1] - 10, body_semi[2] - 10)), SOFT_TISSUE_HU)
    # Table under the patient (posterior = +y), spanning the whole width.
    table_y = body_semi[1] + 8
    if table_y + 6 < fov[1] / 2:
        region = canvas.box(np.array([0, table_y, 0]), np.array([fov[0], 4, fov[2]]))
        if region is not None:
            hu[region] = TABLE_HU
    # Spine, posterior midline.
    _paint(hu, canvas.capsule((-fov[0], 0.22 * fov[1], 0), (fov[0], 0.22 * fov[1], 0), 14), BONE_HU)

    lung = np.zeros(canvas.shape, dtype=bool)
    lung_centre_z = 0.14 * fov[0]
    lung_semi = np.array([0.30 * fov[0], 0.20 * fov[1], 0.12 * fov[2]])
    lung_centres = [np.array([lung_centre_z, 0.0, side * 0.21 * fov[2]]) for side in (-1, 1)]
    for centre in lung_centres:
        jitter = rng.uniform(0.93, 1.05, size=3)
        _paint(lung, canvas.ellipsoid(centre, lung_semi * jitter), True)

    # Ribs: thin bone arcs at several heights, outside the lungs.
    for z_mm in np.arange(-0.25 * fov[0], 0.45 * fov[0], 25.0):
        outer = canvas.ellipsoid((z_mm, 0, 0), (5, body_semi[1] - 14, body_semi[2] - 14))
        inner = canvas.ellipsoid((z_mm, 0, 0), (6, body_semi[1] - 20, body_semi[2] - 20))
        if outer is not None and inner is not None:
            region, outside_inner = outer
            ring = outside_inner.copy()
            inner_region, inner_inside = inner
            overlap = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(region, inner_region))
            if all(s.stop > s.start for s in overlap):
                local_outer = tuple(slice(o.start - r.start, o.stop - r.start) for o, r in zip(overlap, region))
                local_inner = tuple(slice(o.start - r.start, o.stop - r.start) for o, r in zip(overlap, inner_region))
                ring[local_outer] &= ~inner_inside[local_inner]
            hu[region][ring & ~lung[region]] = BONE_HU

    # Parenchyma: aeration gradient, denser posteriorly (dependent lung), as in real scans.
    lung_hu = np.empty(canvas.shape, dtype=np.float32)
    y_mm = canvas.axis_mm(1, 0, canvas.shape[1])[None, :, None]
    lung_hu[...] = (-880.0 + 70.0 * (y_mm / (lung_semi[1]))).astype(np.float32)
    hu[lung] = lung_hu[lung]
    del lung_hu

    # Airways: trachea from the top slice to the carina, bronchi into each lung (air).
    carina = np.array([lung_centre_z + 0.2 * lung_semi[0], -0.05 * fov[1], 0.0])
    airway = np.zeros(canvas.shape, dtype=bool)
    _paint(airway, canvas.capsule((fov[0], carina[1], 0), carina, 8.0), True)
    for centre in lung_centres:
        target = centre + np.array([0.1 * lung_semi[0], -0.05 * fov[1], 0])
        _paint(airway, canvas.capsule(carina, target, 5.5), True)
    hu[airway] = AIR_HU
    # Extrapulmonary airway (trachea, main bronchi outside the lungs) is not lung.
    lung_truth = lung

    # Vessels: tubes fanning out from each hilum inside the lungs.
    vessels = np.zeros(canvas.shape, dtype=bool)
    for centre in lung_centres:
        hilum = centre + np.array([0.1 * lung_semi[0], 0.0, -np.sign(centre[2]) * 0.55 * lung_semi[2]])
        for _ in range(10):
            direction = rng.normal(size=3)
            direction[2] = abs(direction[2]) * np.sign(centre[2])
            direction /= np.linalg.norm(direction)
            end = hilum + direction * lung_semi * rng.uniform(0.5, 0.85)
            _paint(vessels, canvas.capsule(hilum, end, rng.uniform(2.0, 3.5)), True)
    vessels &= lung_truth
    hu[vessels] = VESSEL_HU

    # Lesions: GGO blobs with consolidated cores, until the target fraction is reached.
    ggo = np.zeros(canvas.shape, dtype=bool)
    consolidation = np.zeros(canvas.shape, dtype=bool)
    lung_voxels = int(lung_truth.sum())
    target = lesion_fraction * lung_voxels
    attempts = 0
    while (ggo | consolidation).sum() < target and attempts < 400:
        attempts += 1
        centre = lung_centres[rng.integers(2)]
        offset = rng.uniform(-0.65, 0.65, size=3) * lung_semi
        semi = rng.uniform(0.15, 0.35, size=3) * lung_semi
        blob = canvas.ellipsoid(centre + offset, semi)
        if blob is None:
            continue
        region, inside = blob
        inside = inside & lung_truth[region] & ~vessels[region]
        ggo[region] |= inside
        core = canvas.ellipsoid(centre + offset, semi * np.sqrt(consolidation_share))
        if core is not None:
            core_region, core_inside = core
            consolidation[core_region] |= core_inside & lung_truth[core_region] & ~vessels[core_region]
    ggo &= ~consolidation
    hu[ggo] = GGO_HU
    hu[consolidation] = CONSOLIDATION_HU

    # Bowel gas: small air pockets in the abdomen, below the lungs.
    abdomen_z = -0.38 * fov[0]
    for _ in range(3):
        centre = np.array([abdomen_z + rng.uniform(-20, 20), rng.uniform(-0.1, 0.1) * fov[1],
                           rng.uniform(-0.2, 0.2) * fov[2]])
        _paint(hu, canvas.ellipsoid(centre, rng.uniform(8, 14, size=3)), AIR_HU)

    hu += rng.standard_normal(size=canvas.shape, dtype=np.float32) * np.float32(noise_hu)
    volume = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    lesions = int((ggo | consolidation).sum())
    geometry = Geometry(spacing=tuple(canvas.spacing), origin=(-fov[2] / 2, -fov[1] / 2, -fov[0] / 2))
    return Phantom(
        volume=volume,
        geometry=geometry,
        truth={"lung": lung_truth, "ggo": ggo, "consolidation": consolidation, "vessels": vessels},
        lesion_fraction=lesions / max(lung_voxels, 1),
    )


def make_cohort(
    out_dir: str | Path,
    n_scans: int = 6,
    *,
    shape: tuple[int, int, int] = (64, 96, 96),
    spacing: tuple[float, float, float] = (5.0, 3.5, 3.5),
    max_lesion_fraction: float = 0.4,
    seed: int = 0,
) -> list[tuple[Path, float]]:
    """Write a seeded cohort of phantoms as ``case_XXX.nrrd`` files.

    Lesion fractions are spread evenly from 0 to ``max_lesion_fraction``.

    Returns
    -------
    list of (path, lesion_fraction)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fractions = np.linspace(0.0, max_lesion_fraction, n_scans)
    for index, fraction in enumerate(fractions):
        phantom = chest_phantom(shape, spacing, lesion_fraction=float(fraction), seed=seed + index)
        path = out / f"case_{index:03d}.nrrd"
        write_volume(path, phantom.volume, phantom.geometry, fields={"radiolab_source": "synthetic"})
        written.append((path, phantom.lesion_fraction))
    return written
