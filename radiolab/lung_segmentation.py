"""The ``default`` preset's lung mask for real chest CT: body, airways, gut gas, sides.

Steps (in patient coordinates, on the canonical view of `radiolab.orientation`):

1. Candidates: voxels from ``air_floor_hu`` to ``threshold_hu``, opened with a ball of
   ``opening`` mm. Prevents: a lung cut by the scan circle joining the outside air
   through the circle's fill (-2048 or -3024 HU).
2. Outside air (`radiolab.body`): pure-air islands mostly outside the body envelope
   or in the scanner's padding. Prevents: a lung cut by a cropped field of view being
   dropped because it touches the image edge.
3. Airways (`radiolab.airways`): trachea and main bronchi traced from the neck down and
   removed. Prevents: the airways in the mask, and the lungs joined through them.
4. Islands of at least ``min_island`` mL (``min_area_cm2`` per slice for thin volumes);
   gut gas (`radiolab.gut_gas`) is rejected by its content. Prevents: stomach and colon
   gas taken for lung. Air whose inside holds no vessels at all is not lung either,
   pure or not. Prevents: the air inside a hollow table taken for two lungs.
5. Right and left (`radiolab.sides`), split before any closing, also where the lungs
   touch at a junction line; a single lung gets its side from the trachea or the body
   midline. Where the two touch, the touching voxels are cleared, so the lungs are
   separate components. Prevents: heart, great vessels and oesophagus bridged into
   the mask. A single "lung" centred on the body's centre line (``midline_air_mm``) in
   an uncut body is air of the head, not lung. Prevents: the nasal cavity and sinuses
   of a head CT taken for a lung.
6. Each lung closed alone with a ball of ``closing_radii`` mm and its costal bites
   filled from the pleural envelope (`radiolab.pleura`). Prevents: subpleural
   consolidation falling out of the mask. The outer layer's partial-volume voxels go
   (``surface_hu``). Prevents: a rim of chest wall around every lung.

Volumes of at most ``thin_max_slices`` slices go through the same steps with every mask
operation slice by slice in 2-D (no airway trace); which islands are lung is judged on
the islands connected across the slab's slices, with one midline for the slab.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from radiolab import airways as airway_trace
from radiolab import body, gut_gas, pleura
from radiolab._workspace import Workspace
from radiolab.errors import NoLungError
from radiolab.orientation import IDENTITY_DIRECTION, reorientation
from radiolab.sides import LEFT, RIGHT, SIDE_NAMES, split_sides

# Thin volumes: a spacing so large along the slice axis that nothing couples slices.
_UNCOUPLED_MM = 1.0e6


@dataclass
class LungSegmentation:
    """Result of `segment_lungs`, in the input's array order.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean lung mask.
    sides : numpy.ndarray
        uint8: 0 outside, 1 right lung, 2 left lung.
    airways : numpy.ndarray or None
        Boolean trachea and main bronchi; None when the scan does not reach them.
    notes : list of str
        Findings worth a line in the log (one lung, gut gas rejected, no airway).
    """

    mask: np.ndarray
    sides: np.ndarray
    airways: np.ndarray | None
    notes: list[str] = field(default_factory=list)


def segment_lungs(volume: np.ndarray, spacing, settings, *, direction=IDENTITY_DIRECTION) -> LungSegmentation:
    """Segment the lungs, airways and sides of a chest CT (default preset).

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, 3-D (z, y, x).
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    settings : radiolab.lung.LungMaskSettings
        Settings in mm units with ``chest`` tuning (`radiolab.chest_tuning.ChestTuning`).
    direction : sequence of 9 float
        Row-major ITK direction cosines of the volume.

    Raises
    ------
    NoLungError
        If no island passes the rules (the message says how many were rejected why).
    ValueError
        If ``settings`` has no chest tuning (the paper preset: use `radiolab.lung.lung_mask`).
    """
    if settings.chest is None:
        raise ValueError("segment_lungs needs settings with chest tuning (the 'default' preset); the "
                         "paper preset has no sides or airways: use radiolab.lung.lung_mask for it")
    orient = reorientation(direction)
    canonical = orient.to_canonical(volume)
    canon_spacing = orient.spacing(spacing)
    tuning = settings.chest
    notes: list[str] = []
    rejected = {"outside air": 0, "gut gas": 0, "air without vessels": 0, "air on the midline": 0}
    if canonical.shape[0] <= tuning.thin_max_slices:
        # The masks are made slice by slice; which islands are lung is decided on the
        # slab's islands, connected across its slices (an apex holds few vessels in one
        # slice), with one spine midline for all slices.
        result = _segment(canonical, canon_spacing, settings, planar=True, notes=notes, rejected=rejected)
        found = result is not None
        if found:
            mask, sides, _ = result
        airways = None
        notes.append(f"thin volume ({canonical.shape[0]} slices): segmented slice by slice in 2-D")
    else:
        result = _segment(canonical, canon_spacing, settings, planar=False, notes=notes, rejected=rejected)
        found = result is not None
        if found:
            mask, sides, airways = result
    if not found:
        from radiolab.lung import units_hint

        why = ", ".join(f"{n} rejected as {what}" for what, n in rejected.items() if n)
        size = (f"{tuning.min_area_cm2:g} cm² per slice" if canonical.shape[0] <= tuning.thin_max_slices
                else f"{settings.min_island:g} mL")
        raise NoLungError(
            f"no lung found: no island of air-like voxels (HU < {settings.threshold_hu:g}) of at least "
            f"{size} lies inside the body with lung content" + (f" ({why})" if why else "")
            + units_hint(volume, settings.threshold_hu))
    for what, n in rejected.items():
        if n:
            notes.append(f"{n} air island(s) rejected as {what}")
    # The sides map holds 0, 1 and 2 only: the OR of all its values tells which sides occur.
    found = int(np.bitwise_or.reduce(sides, axis=None))
    present = [SIDE_NAMES[s] for s in (RIGHT, LEFT) if found & s]
    if len(present) == 1:
        notes.append(f"one lung found ({present[0]})")
    return LungSegmentation(mask=orient.from_canonical(mask), sides=orient.from_canonical(sides),
                            airways=None if airways is None else orient.from_canonical(airways), notes=notes)


@dataclass(frozen=True)
class _Envelope:
    """What the body envelope tells the later steps (canonical order, full grid)."""

    inside: np.ndarray  # the envelope, on its coarse grid
    steps: tuple  # the coarse grid's step along each axis, in voxels
    centres: np.ndarray  # per slice, the (row, column) of the envelope's centroid
    spine: float | None  # the spine's column, if seen
    circle: np.ndarray | None  # the scan circle's fill, if any


def _segment(volume, spacing, settings, *, planar, notes, rejected):
    """Steps 1-6 on a canonical volume (masks slice by slice when ``planar``); None if no lung."""
    import cc3d

    from radiolab.lung import bounding_box

    tuning = settings.chest
    work_spacing = (_UNCOUPLED_MM,) + tuple(spacing[1:]) if planar else tuple(spacing)
    if settings.threshold_hu <= settings.clip_hu:
        return None
    if planar:
        min_voxels = tuning.min_area_cm2 * 100.0 / (spacing[1] * spacing[2])
    else:
        min_voxels = settings.min_island / (float(np.prod(spacing)) / 1000.0)
    found = _air_in_body(volume, spacing, settings, work_spacing, min_voxels, rejected)
    if found is None:
        return None
    air, from_outside, envelope = found
    midline = body.midline_index(envelope.inside, envelope.steps) if envelope.spine is None else envelope.spine
    airways = None
    if not planar:
        trace = airway_trace.trace_airways(
            air, spacing, midline_index=midline, min_area_cm2=tuning.airway_min_area_cm2,
            max_area_cm2=tuning.airway_max_area_cm2, midline_mm=tuning.airway_midline_mm,
            seed_search_mm=tuning.airway_seed_search_mm, min_length_mm=tuning.airway_min_length_mm,
            growth=tuning.airway_growth, centre_columns=envelope.centres[:, 1])
        if trace is None:
            notes.append("no trachea found (the scan may not reach it): no airway output")
        else:
            airways = trace.mask
            air &= ~airways
            midline = trace.midline_index
    box = bounding_box(air)
    if box is None:
        return None
    labels, count = cc3d.connected_components(np.ascontiguousarray(air[box]), connectivity=6, return_N=True)
    del air
    lungs = _lung_islands(labels, count, box, volume, spacing, tuning, envelope, from_outside, min_voxels, planar,
                          rejected)
    del labels
    if lungs is None:
        return None
    lone_midline = midline
    if envelope.spine is None and airways is None and body.cut_at_the_sides(
            envelope.inside, envelope.steps, np.flatnonzero(lungs.any(axis=(1, 2))) + box[0].start):
        # Neither spine nor trachea, and a body cut at the sides: the envelope's centre is
        # the crop's. A single lung then goes by its own form: its medial surface (hilum,
        # heart) is concave, its costal surface convex.
        towards_left = _medial_towards_left(lungs)
        if towards_left is not None:
            lone_midline = float(volume.shape[2] if towards_left else -1)
    sides_box = _split(lungs, spacing, midline - box[2].start, tuning.side_min_share, planar,
                       lone_midline - box[2].start)
    if tuning.midline_air_mm is not None and _on_the_midline(sides_box, box, envelope.centres, envelope.inside,
                                                             envelope.steps, spacing, tuning.midline_air_mm):
        rejected["air on the midline"] += 1
        return None
    sub_volume = volume[box]
    box_centres = envelope.centres[box[0]] - np.array([box[1].start, box[2].start], dtype=float)

    def grow(side):
        return _grow_side(sides_box, side, sub_volume, box_centres, settings, spacing, work_spacing,
                          planar=planar, midline_index=midline - box[2].start)

    # The two lungs are grown independently, on threads when kernels may use them.
    results = _on_threads(grow, (RIGHT, LEFT))
    grown = {side: closed for side, closed in zip((RIGHT, LEFT), results) if closed is not None}
    sides_out = np.zeros(volume.shape, dtype=np.uint8)
    view = sides_out[box]
    for side, other in ((RIGHT, LEFT), (LEFT, RIGHT)):
        if side in grown:
            # Each lung keeps its own voxels where the two grown lungs meet.
            view[grown[side] & (view == 0) & (sides_box != other)] = side
    _separate(view)
    if airways is not None:
        sides_out[airways] = 0
        _clear_airway_walls(sides_out, airways, volume, spacing, wall_mm=tuning.airway_wall_mm,
                            threshold_hu=settings.threshold_hu)
    return sides_out > 0, sides_out, airways


def _air_in_body(volume, spacing, settings, work_spacing, min_voxels, rejected):
    """Steps 1-2: the opened air-like islands that lie inside the body.

    Returns (air, from_outside, body) or None when no candidate exists; ``from_outside``
    marks lungs cut free from the outside air (None if none was joined to it).
    """
    import cc3d

    from radiolab._bitmorph import BelowThreshold
    from radiolab.lung import _opening

    tuning = settings.chest
    # Thresholded slab by slab in the opening's threads: no boolean candidate volume.
    circle = body.scan_circle_fill(volume, air_floor_hu=tuning.air_floor_hu, air_hu=tuning.gas_air_hu)
    # A fill in the air range is moved below the floor for the candidates only.
    source = volume if circle is None else np.where(circle, np.asarray(tuning.air_floor_hu - 1, volume.dtype),
                                                    volume)
    candidates = BelowThreshold(source, settings.threshold_hu, floor=tuning.air_floor_hu)
    opened = _opening(candidates, work_spacing, settings, "fast")
    del candidates, source
    labels, count = cc3d.connected_components(opened, connectivity=6, return_N=True)
    del opened
    if count == 0:
        return None
    inside, steps = body.envelope(volume, spacing, body_hu=tuning.body_hu, padding_hu=tuning.padding_hu,
                                  grid_mm=tuning.body_grid_mm)
    share, pure = body.outside_share(labels, count, inside, steps, volume, air_hu=tuning.gas_air_hu)
    envelope = _Envelope(inside=inside, steps=steps, centres=body.slice_centres(inside, steps, volume.shape[0]),
                  spine=body.spine_midline(volume, inside, steps, spacing), circle=circle)
    in_body = (share <= tuning.outside_fraction) | (pure < tuning.gas_min_air_fraction)
    in_body[0] = False
    candidate_sizes = _voxel_counts(labels, count)
    rejected["outside air"] += int(np.count_nonzero(~in_body[1:] & (candidate_sizes[1:] >= min_voxels)))
    air = _lookup(in_body, labels)
    leaky = body.leaky_islands(labels, count, ~in_body, inside, steps, volume, min_voxels=min_voxels,
                               air_hu=tuning.gas_air_hu)
    from_outside = None
    leak_radius = max(tuning.leak_opening_mm, max(spacing[1:]))
    if leaky.any():
        # A lung joined to the outside air through the body wall: cut free by an opening,
        # it is judged as any island.
        from_outside = body.cut_free(_lookup(leaky, labels), inside, steps, work_spacing,
                                     radius_mm=leak_radius, outside_fraction=tuning.outside_fraction)
        air |= from_outside
    # A lung whose island also holds outside air (under the back, joined through a wall
    # that noise opened) keeps only the part the same opening cuts free.
    partial = in_body & (share > tuning.leak_min_outside_share) & (candidate_sizes >= min_voxels)
    partial[0] = False
    for index in np.flatnonzero(partial):
        island = labels == index
        freed = body.cut_free(island, inside, steps, work_spacing, radius_mm=leak_radius,
                              outside_fraction=tuning.outside_fraction)
        if np.count_nonzero(freed) >= min_voxels:
            air &= ~island | freed
    return air, from_outside, envelope


def _lung_islands(labels, count, box, volume, spacing, tuning, envelope, from_outside, min_voxels, planar, rejected):
    """Step 4: which of the air islands ``labels`` (1..count, on ``box``) are lung, as a
    mask on the box; None if none is."""
    import cc3d

    stats = cc3d.statistics(labels, no_slice_conversion=True)
    keep = np.zeros(count + 1, dtype=bool)
    gas_like = {}
    for index in np.flatnonzero(stats["voxel_counts"] >= min_voxels):
        if index == 0:
            continue
        bb = stats["bounding_boxes"][index]
        island_box = tuple(slice(int(bb[2 * a]), int(bb[2 * a + 1]) + 1) for a in range(3))
        full_box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, island_box))
        island = labels[island_box] == index
        # Pieces of an outside-air island are outside air, counted with it, unless lung.
        counted = rejected if from_outside is None or not from_outside[full_box][island].any() else Counter()
        content = gut_gas.island_content(volume[full_box], island, spacing,
                                         air_hu=tuning.gas_air_hu, vessel_hu=tuning.gas_vessel_hu,
                                         margin_mm=tuning.gas_margin_mm)
        if gut_gas.is_gut_gas(content, min_air_fraction=tuning.gas_min_air_fraction,
                              max_vessel_fraction=tuning.gas_max_vessel_fraction):
            counted["gut gas"] += 1
            continue
        if gut_gas.holds_no_vessels(content, max_vessel_fraction=tuning.air_max_vessel_fraction,
                                    min_inside_voxels=tuning.air_min_inside_voxels):
            counted["air without vessels"] += 1
            continue
        if (content.inside_voxels < tuning.air_min_inside_voxels
                or content.vessel_fraction < tuning.gas_max_vessel_fraction) and body.touches_fill(
                    island, volume, full_box, envelope.circle, air_floor_hu=tuning.air_floor_hu):
            # Air at the scan circle's fill without vessels lies outside the patient (in
            # a hollow table); a lung that the circle cuts holds vessels.
            counted["outside air"] += 1
            continue
        keep[index] = True
        mixed = content.median_hu > tuning.gas_mixed_median_hu
        if content.air_fraction >= tuning.gas_min_air_fraction or mixed:
            gas_like[index] = (island_box, mixed)
    if not planar:
        sizes = stats["voxel_counts"]
        boxes = stats["bounding_boxes"]
        for index, (island_box, mixed) in gas_like.items():
            larger = [j for j in np.flatnonzero(keep) if sizes[j] > sizes[index]]
            if not larger:
                continue
            column_box = (slice(None),) + island_box[1:]
            island = labels[column_box] == index
            if gut_gas.lies_below(island, np.isin(labels[column_box], larger)):
                keep[index] = False
                rejected["gut gas"] += 1
            elif mixed and gut_gas.small_and_low(
                    int(sizes[index]), int(boxes[index][1]), [int(sizes[j]) for j in larger],
                    [(int(boxes[j][0]), int(boxes[j][1])) for j in larger], max_share=tuning.gas_mixed_max_share):
                # Bowel content beside the lung bases (under the heart, in front of them).
                keep[index] = False
                rejected["gut gas"] += 1
    if not keep.any():
        return None
    return _lookup(keep, labels)


def _grow_side(sides_box, side, sub_volume, box_centres, settings, spacing, work_spacing, *, planar,
               midline_index):
    """Step 6 for one lung (box coordinates): closed, its costal bites filled, limited at its
    medial surface and its partial-volume rim peeled; None if the side is absent."""
    tuning = settings.chest
    lung = sides_box == side
    if not lung.any():
        return None
    radius = settings.closing_radii[0] if settings.closing_radii else 0.0
    closed = pleura.close_lung(lung, work_spacing if not planar else spacing, radius, planar=planar)
    if tuning.pleural_max_hu is not None:
        low = settings.threshold_hu if tuning.pleural_min_hu is None else tuning.pleural_min_hu
        closed |= pleura.pleural_fill(closed, sub_volume, box_centres, min_hu=low,
                                      max_hu=tuning.pleural_max_hu,
                                      min_below=tuning.pleural_hole_min_below,
                                      wall_gap_deg=tuning.pleural_wall_gap_deg,
                                      wall_min_bite_mm2=tuning.pleural_wall_min_bite_mm2,
                                      front_mm=tuning.pleural_front_mm,
                                      pixel_mm2=float(spacing[1] * spacing[2]))
    # The limit comes from voxels that are mostly lung, not from the partial-volume
    # rim, which reaches past the pleura.
    core = lung & (sub_volume < tuning.medial_core_hu)
    # The lung's own voxels stay; what the closing and the envelope added stops there.
    closed = lung | pleura.medial_limit(closed & ~lung, core, side, midline_index)
    if tuning.surface_hu is not None:
        closed = pleura.peel_rim(closed, sub_volume, spacing, surface_hu=tuning.surface_hu,
                                 threshold_hu=settings.threshold_hu, depth_mm=tuning.surface_mm)
    return closed


def _voxel_counts(labels: np.ndarray, count: int, *, block: int = 1 << 20) -> np.ndarray:
    """Voxels per label 0..count, counted a block at a time (no full-size int64 copy)."""
    flat = labels.reshape(-1)
    local = threading.local()

    def part(start):
        work = local.__dict__.setdefault("work", Workspace())
        return np.bincount(work.as_index("labels", flat[start:start + block]), minlength=count + 1)

    return sum(_on_threads(part, range(0, flat.size, block)), np.zeros(count + 1, dtype=np.int64))


def _lookup(table: np.ndarray, labels: np.ndarray, *, block: int = 1 << 20) -> np.ndarray:
    """``table[labels]``, a block at a time through a reused intp copy of the labels."""
    flat = labels.reshape(-1)
    out = np.empty(flat.shape, dtype=table.dtype)
    local = threading.local()

    def part(start):
        work = local.__dict__.setdefault("work", Workspace())
        index = work.as_index("labels", flat[start:start + block])
        np.take(table, index, mode="clip", out=out[start:start + block])  # valid labels: no checking copy

    _on_threads(part, range(0, flat.size, block))
    return out.reshape(labels.shape)


def _on_threads(function, items) -> list:
    """``function`` on each item, on the kernel threads (numpy releases the GIL)."""
    from radiolab.lung import _thread_count

    threads = _thread_count()
    if threads == 1:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def _on_the_midline(sides_box, box, centres, inside, steps, spacing, limit_mm) -> bool:
    """One "lung" centred on an uncut body's centre line: air of the head, not a lung."""
    present = [side for side in (RIGHT, LEFT) if (sides_box == side).any()]
    if len(present) != 1:
        return False
    z = np.flatnonzero(sides_box.any(axis=(1, 2))) + box[0].start
    if body.cut_at_the_sides(inside, steps, z):
        return False
    box_centres = centres - np.array([box[1].start, box[2].start], dtype=float)[None, :]
    offset = body.centre_offset_mm(sides_box > 0, box_centres[box[0]], spacing)
    return abs(offset) <= limit_mm


def _clear_airway_walls(sides, airways, volume, spacing, *, wall_mm, threshold_hu) -> None:
    """Clear tissue voxels within ``wall_mm`` of the airway lumen (its wall), in place."""
    import edt

    from radiolab.lung import bounding_box

    pad = [int(np.ceil(wall_mm / s)) + 1 for s in spacing]
    box = bounding_box(airways, pad=pad)
    if box is None or wall_mm <= 0:
        return
    distance = edt.edt((~airways[box]).view(np.uint8), anisotropy=spacing, black_border=False)
    wall = (distance <= wall_mm) & ~airways[box] & (volume[box] >= threshold_hu)
    sides[box][wall] = 0


def _separate(sides: np.ndarray) -> None:
    """Clear the voxels where right and left touch (6-neighbours), in place.

    The two lungs then are separate components, as the pleura keeps them.
    """
    touching = np.zeros(sides.shape, dtype=bool)
    for axis in range(3):
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        a, b = sides[tuple(lower)], sides[tuple(upper)]
        pair = (a > 0) & (b > 0) & (a != b)
        touching[tuple(lower)] |= pair
        touching[tuple(upper)] |= pair
    sides[touching] = 0


def _mean_column(mask: np.ndarray) -> float | None:
    """Mean last-axis index of a mask's voxels (None if empty), from per-column counts."""
    counts = np.count_nonzero(mask, axis=(0, 1))
    total = int(counts.sum())
    if total == 0:
        return None
    return int(np.dot(counts.astype(np.int64), np.arange(counts.size, dtype=np.int64))) / total


def _split(lungs, spacing, midline_index, min_share, planar, lone_index):
    """Sides of the lung islands (box coordinates). Two seeds on the same side of
    ``midline_index`` are one lung; a single lung goes by ``lone_index``."""
    lone_mm = lone_index * spacing[2]
    if planar:
        # Slice by slice, each as three copies far apart in z: the 3-D erosion then acts
        # in-plane only.
        sides = np.zeros(lungs.shape, dtype=np.uint8)
        for k in range(lungs.shape[0]):
            if lungs[k].any():
                stack = np.repeat(lungs[k:k + 1], 3, axis=0)
                sides[k] = _same_side_merged(
                    split_sides(stack, (_UNCOUPLED_MM,) + tuple(spacing[1:]), min_share=min_share,
                                midline_mm=lone_mm)[1:2], lungs[k:k + 1], midline_index, lone_index)[0]
        return sides
    sides = split_sides(lungs, spacing, min_share=min_share, midline_mm=lone_mm)
    return _same_side_merged(sides, lungs, midline_index, lone_index)


def _medial_towards_left(lungs: np.ndarray) -> bool | None:
    """Whether the lung mask's concave (medial) side faces the patient's left (axis 2
    growing): the part of each slice's convex hull that the mask leaves out lies on that
    side of the mask's centroid. None for a convex mask."""
    hollow_sum = hollow_count = 0
    for k in np.flatnonzero(lungs.any(axis=(1, 2))):
        plane = lungs[k]
        lo, hi = pleura._hull_rows(plane)
        cols = np.arange(plane.shape[1])
        hollow = (cols[None, :] >= lo[:, None]) & (cols[None, :] <= hi[:, None]) & ~plane
        counts = np.count_nonzero(hollow, axis=0)
        hollow_sum += int(np.dot(counts, cols))
        hollow_count += int(counts.sum())
    if hollow_count == 0:
        return None
    return hollow_sum / hollow_count > _mean_column(lungs)


def _same_side_merged(sides, lungs, midline_index, lone_index):
    """Two seeds on the same side of the midline are one lung split in two; it goes to
    the side of ``lone_index`` its centroid lies on."""
    centres = {}
    for side in (RIGHT, LEFT):
        centre = _mean_column(sides == side)
        if centre is not None:
            centres[side] = centre
    if len(centres) == 2 and (centres[RIGHT] - midline_index) * (centres[LEFT] - midline_index) > 0:
        whole = _mean_column(lungs)
        sides = np.where(lungs, np.uint8(RIGHT if whole <= lone_index else LEFT), np.uint8(0))
    return sides
