"""Per-scan quality-control images: ``<id>_qc.png``.

Each image shows an axial, a coronal and a sagittal slice, each through the plane with
the most lung in it (a thin slab, less high than 15 % of its width, shows axial slices
only: up to three, its first, fullest and last), of the CT in lung window (width 1500 HU, level -600 HU, so -1350 HU
is black and +150 HU white), with the five tissue classes overlaid in the colours that
3D Slicer shows for radiolab label maps (`radiolab.io.TISSUE_SEGMENTS`), the lung-mask
contour, a legend with each class's share and volume, and the scan's lung volume and
lung involvement (LI). A fourth panel shows the six zones (the thirds of each lung,
`radiolab.zones`) as a diagram, patient right on the left, each zone coloured by its
0-5 score and labelled with its LI and lesion share, with ``zonal_severity`` above it.
Voxels are drawn at their physical size, so anisotropic scans keep their true
proportions.

Display orientation: axial slices in radiological convention (patient right on the
image's left, anterior at the top), coronal and sagittal slices with superior at the
top (sagittal: anterior on the left). Axes are flipped as the scan's direction cosines
require when they are axis-aligned; an oblique or permuted direction matrix is drawn in
array order and said so on the image.
"""

from __future__ import annotations

import io as _io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radiolab.errors import ParameterError
from radiolab.io import TISSUE_SEGMENTS

LUNG_WINDOW_WIDTH_HU = 1500.0
LUNG_WINDOW_LEVEL_HU = -600.0
QC_SUFFIX = "_qc.png"
LABEL_MAPS = {"labels": "_labels.nrrd", "median": "_labels_median.nrrd"}

# Orientation letters of the negative and positive direction of each LPS axis.
_AXIS_LETTERS = {0: ("R", "L"), 1: ("A", "P"), 2: ("I", "S")}


@dataclass
class QCImage:
    """Outcome of one scan's QC image: the file written, or why there is none."""

    id: str
    path: Path | None = None
    error: str | None = None


def window(volume: np.ndarray, *, width: float = LUNG_WINDOW_WIDTH_HU,
           level: float = LUNG_WINDOW_LEVEL_HU) -> np.ndarray:
    """Map HU to grey values in [0, 1] with a display window.

    Parameters
    ----------
    volume : numpy.ndarray
        HU values.
    width, level : float
        Window width and centre, in HU; ``level - width / 2`` maps to 0 (black) and
        ``level + width / 2`` to 1 (white).

    Returns
    -------
    numpy.ndarray
        float32 grey values.
    """
    if width <= 0:
        raise ParameterError(f"window width must be positive, got {width} HU")
    low = level - width / 2.0
    return np.clip((np.asarray(volume, dtype=np.float32) - low) / width, 0.0, 1.0)


def overlay(grey: np.ndarray, labels: np.ndarray, *, alpha: float = 0.4,
            segments=TISSUE_SEGMENTS) -> np.ndarray:
    """Blend label colours over a grey image.

    Parameters
    ----------
    grey : numpy.ndarray
        Grey values in [0, 1], any shape.
    labels : numpy.ndarray
        Integer labels of the same shape; 0 is left grey.
    alpha : float
        Opacity of the label colours, 0 (invisible) to 1 (opaque).
    segments : sequence of (value, name, rgb)
        Label values and their colours (RGB in 0..1).

    Returns
    -------
    numpy.ndarray
        RGB image, float32 in [0, 1], shape ``grey.shape + (3,)``.
    """
    if grey.shape != labels.shape:
        raise ValueError(f"grey image {grey.shape} and labels {labels.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha must lie in [0, 1], got {alpha}")
    table = np.zeros((256, 3), dtype=np.float32)
    opacity = np.zeros(256, dtype=np.float32)
    for value, _, colour in segments:
        table[value] = colour
        opacity[value] = alpha
    index = np.clip(labels, 0, 255).astype(np.intp)
    a = opacity[index][..., None]
    return (grey[..., None] * (1.0 - a) + table[index] * a).astype(np.float32)


def canonical_flips(direction: Sequence[float]) -> tuple[tuple[bool, bool, bool], bool]:
    """Which array axes (z, y, x) to flip so that indices run toward S, P, L.

    Parameters
    ----------
    direction : sequence of float
        Row-major 3x3 ITK direction cosines (columns = index axes i, j, k = x, y, z).

    Returns
    -------
    flips : tuple of bool
        Per array axis (z, y, x).
    aligned : bool
        False when an index axis does not run mainly along its own LPS axis (oblique
        or permuted scan); then no axis is flipped.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    flips = []
    for array_axis in range(3):
        column = matrix[:, 2 - array_axis]  # array axis z, y, x = index axis k, j, i
        dominant = int(np.argmax(np.abs(column)))
        if dominant != 2 - array_axis:
            return (False, False, False), False
        flips.append(bool(column[dominant] < 0))
    return (flips[0], flips[1], flips[2]), True


def best_slices(mask: np.ndarray) -> tuple[int, int, int]:
    """Index along z, y and x of the plane holding the most mask voxels.

    An empty mask gives the middle planes.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
    if not mask.any():
        return tuple(int(n // 2) for n in mask.shape)  # type: ignore[return-value]
    return (int(np.argmax(mask.sum(axis=(1, 2)))), int(np.argmax(mask.sum(axis=(0, 2)))),
            int(np.argmax(mask.sum(axis=(0, 1)))))


def _views(volume, labels, mask, spacing, slices):
    """The three 2-D panels: (name, HU, labels, mask, pixel size (row, col) in mm, index, axis)."""
    sz, sy, sx = spacing
    z, y, x = slices
    # Arrays are canonical here: indices run toward S (z), P (y), L (x).
    # Axial: rows y (anterior on top), columns x (patient left on the image's right).
    # Coronal and sagittal: rows z flipped so that superior is on top.
    return [
        ("axial", volume[z], labels[z], mask[z], (sy, sx), z, "z"),
        ("coronal", volume[::-1, y, :], labels[::-1, y, :], mask[::-1, y, :], (sz, sx), y, "y"),
        ("sagittal", volume[::-1, :, x], labels[::-1, :, x], mask[::-1, :, x], (sz, sy), x, "x"),
    ]


# A volume whose height is under this share of its width gets axial panels only: its
# coronal and sagittal slices would be strips a few pixels high.
THIN_HEIGHT_RATIO = 0.15
MAX_THIN_PANELS = 3


def is_thin(shape, spacing) -> bool:
    """Whether a (z, y, x) volume is too flat for coronal and sagittal panels."""
    height_mm = shape[0] * spacing[0]
    return height_mm < THIN_HEIGHT_RATIO * min(shape[1] * spacing[1], shape[2] * spacing[2])


def thin_slices(mask: np.ndarray) -> list[int]:
    """Axial slices shown for a thin volume: all of them up to three, else first, fullest, last."""
    n = mask.shape[0]
    if n <= MAX_THIN_PANELS:
        return list(range(n))
    fullest = best_slices(mask)[0]
    return sorted({0, min(max(fullest, 1), n - 2), n - 1})


def _axial_views(volume, labels, mask, spacing, indices):
    """Axial panels at ``indices`` in the layout of `_views`."""
    _, sy, sx = spacing
    return [("axial", volume[z], labels[z], mask[z], (sy, sx), z, "z") for z in indices]


def _panel_size(height_mm: float, width_mm: float, height_in: float, max_ratio: float = 2.2):
    """(width, height) in inches of a panel at most ``height_in`` high and ``max_ratio`` as wide."""
    width_in = height_in * width_mm / height_mm
    if width_in > max_ratio * height_in:
        return max_ratio * height_in, max_ratio * height_in * height_mm / width_mm
    return width_in, height_in


# Zone score 0-5: green (none) through yellow to dark red (> 75 % lesion).
SCORE_COLOURS = ("#2e7d32", "#9ccc65", "#fff176", "#ffb74d", "#f4511e", "#b71c1c")
_NO_SCORE_COLOUR = "#555555"

_LABEL_BOX = {"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.6, "edgecolor": "none"}
_PANEL_LETTERS = {
    # (left, right, top, bottom) edge letters of each panel for a canonical array.
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def qc_figure(
    volume: np.ndarray,
    labels: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    mask: np.ndarray | None = None,
    direction: Sequence[float] | None = None,
    stats: dict[str, float] | None = None,
    title: str = "",
    window_width: float = LUNG_WINDOW_WIDTH_HU,
    window_level: float = LUNG_WINDOW_LEVEL_HU,
    alpha: float = 0.45,
    panel_height_in: float = 4.0,
    dpi: int = 100,
    zones: dict[str, dict[str, Any]] | None = None,
):
    """Draw the QC figure of one scan.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x).
    labels : numpy.ndarray
        Tissue labels 0..5 of the same shape.
    spacing : tuple of float
        Voxel size along (z, y, x), in mm.
    mask : numpy.ndarray, optional
        Lung mask whose contour is drawn; ``labels > 0`` when omitted. Slices are
        chosen through the planes with the most mask voxels.
    direction : sequence of float, optional
        Row-major 3x3 direction cosines, used to orient the display; identity when omitted.
    stats : dict, optional
        ``lung_volume_ml``, ``LI_pct`` and per class ``<name>_pct`` / ``<name>_ml`` as
        written by `radiolab.scoring.class_volumes`; computed from ``labels`` when omitted.
    title : str
        Shown at the top left (usually the scan id).
    window_width, window_level : float
        Display window in HU (default: lung window, width 1500, level -600).
    alpha : float
        Opacity of the class colours.
    panel_height_in : float
        Height of the image panels, in inches.
    dpi : int
        Resolution the figure is meant to be saved at.
    zones : dict, optional
        Per zone of `radiolab.zones.ZONE_NAMES`: ``LI_pct``, ``lesion_pct`` and
        ``score`` (`radiolab.zones.zone_table`); adds the zone diagram. None leaves it out.

    Returns
    -------
    matplotlib.figure.Figure
        A figure on an Agg canvas (no pyplot state is touched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from radiolab.mixture import CLASS_NAMES
    from radiolab.scoring import class_volumes

    volume = np.asarray(volume)
    labels = np.asarray(labels)
    if volume.ndim != 3 or volume.shape != labels.shape:
        raise ValueError(f"volume {volume.shape} and labels {labels.shape} must be 3-D of equal shape")
    mask = labels > 0 if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise ValueError(f"mask {mask.shape} and volume {volume.shape} differ in shape")
    spacing = tuple(float(s) for s in spacing)
    if stats is None:
        stats = class_volumes(labels, spacing)

    flips, aligned = canonical_flips(direction if direction is not None else np.eye(3).ravel())
    flip_index = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
    volume, labels, mask = volume[flip_index], labels[flip_index], mask[flip_index]
    if is_thin(volume.shape, spacing):
        panels = _axial_views(volume, labels, mask, spacing, thin_slices(mask))
    else:
        panels = _views(volume, labels, mask, spacing, best_slices(mask))

    # Layout in inches: panels at most panel_height_in high, widths in physical proportion.
    sizes = [_panel_size(img.shape[0] * px[0], img.shape[1] * px[1], panel_height_in)
             for _, img, _, _, px, _, _ in panels]
    gap, side, top, bottom = 0.15, 0.15, 0.75, 0.7
    zone_width = 0.6 * panel_height_in if zones is not None else 0.0
    fig_w = sum(w for w, _ in sizes) + gap * (len(sizes) - 1) + 2 * side + (zone_width + gap if zones else 0.0)
    fig_h = top + panel_height_in + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    left = side
    for (name, hu, lab, msk, px, index, axis_name), (w, h) in zip(panels, sizes):
        ax = fig.add_axes((left / fig_w, (bottom + (panel_height_in - h) / 2) / fig_h, w / fig_w, h / fig_h))
        left += w + gap
        rows, cols = hu.shape
        extent = (0.0, cols * px[1], rows * px[0], 0.0)
        rgb = overlay(window(hu, width=window_width, level=window_level), lab, alpha=alpha)
        ax.imshow(rgb, extent=extent, interpolation="nearest", aspect="equal")
        # A contour needs two rows and columns: a one-slice volume's side views have one.
        if msk.any() and not msk.all() and min(msk.shape) >= 2:
            xs = (np.arange(cols) + 0.5) * px[1]
            ys = (np.arange(rows) + 0.5) * px[0]
            ax.contour(xs, ys, msk.astype(np.float32), levels=[0.5], colors=["#ff2bd6"], linewidths=0.9)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_axis_off()
        ax.set_facecolor("black")
        axis = "zyx".index(axis_name)
        # Slice number in the file's own order (1-based), whatever the display flips.
        number = volume.shape[axis] - index if flips[axis] else index + 1
        ax.text(0.01, 0.99, f"{name}  {axis_name} = {number}/{volume.shape[axis]}",
                transform=ax.transAxes, ha="left", va="top", color="white", fontsize=8, bbox=_LABEL_BOX)
        if aligned:
            l_, r_, t_, b_ = _PANEL_LETTERS[name]
            style = dict(transform=ax.transAxes, color="white", fontsize=9, fontweight="bold", bbox=_LABEL_BOX)
            ax.text(0.01, 0.5, l_, ha="left", va="center", **style)
            ax.text(0.99, 0.5, r_, ha="right", va="center", **style)
            ax.text(0.5, 0.99, t_, ha="center", va="top", **style)
            ax.text(0.5, 0.01, b_, ha="center", va="bottom", **style)

    if zones is not None:
        ax = fig.add_axes((left / fig_w, bottom / fig_h, zone_width / fig_w, panel_height_in / fig_h))
        zone_diagram(ax, zones)

    volume_ml = float(stats.get("lung_volume_ml", 0.0))
    li = float(stats.get("LI_pct", 0.0))
    # Ids come from file names: a "$" in them is text, not mathtext.
    fig.text(side / fig_w, 1 - 0.12 / fig_h, title, ha="left", va="top", color="white",
             fontsize=13, fontweight="bold", parse_math=False)
    fig.text(side / fig_w, 1 - 0.48 / fig_h,
             f"LI {li:.1f} %    lung volume {volume_ml:.0f} mL ({volume_ml / 1000:.2f} L)    "
             f"spacing {spacing[0]:.3g} x {spacing[1]:.3g} x {spacing[2]:.3g} mm (z, y, x)",
             ha="left", va="top", color="white", fontsize=10)
    fig.text(1 - side / fig_w, 1 - 0.12 / fig_h,
             f"lung window W {window_width:g} / L {window_level:g} HU"
             + ("" if aligned else "\noblique direction: array order, not oriented"),
             ha="right", va="top", color="#bbbbbb", fontsize=9)
    handles = []
    for (value, name, colour), key in zip(TISSUE_SEGMENTS, CLASS_NAMES):
        pct = float(stats.get(f"{key}_pct", 0.0))
        ml = float(stats.get(f"{key}_ml", 0.0))
        handles.append(Patch(facecolor=colour, edgecolor="none", label=f"{name}: {pct:.1f} % ({ml:.0f} mL)"))
    handles.append(Patch(facecolor="none", edgecolor="#ff2bd6", label="lung mask contour"))
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9,
               labelcolor="white", bbox_to_anchor=(0.5, 0.02 / fig_h), handlelength=1.5,
               columnspacing=1.5)
    return fig


def zone_diagram(ax, zones: dict[str, dict[str, Any]]) -> None:
    """Draw the six zones as a 3 x 2 grid (patient right on the left, upper on top).

    Each cell is coloured by the zone's score (`SCORE_COLOURS`; grey for a zone without
    lung) and gives its LI, lesion share (GGO + consolidation) and score; the title
    gives ``zonal_severity``, the sum of the scores.
    """
    from matplotlib.patches import Rectangle

    from radiolab.zones import THIRD_NAMES

    total = 0
    scored = False
    for column, side in enumerate(("right", "left")):
        for row, third in enumerate(THIRD_NAMES.values()):
            entry = zones.get(f"{side}_{third}") or {}
            score, li, lesion = entry.get("score"), entry.get("LI_pct"), entry.get("lesion_pct")
            colour = _NO_SCORE_COLOUR if score is None else SCORE_COLOURS[int(score)]
            ax.add_patch(Rectangle((column, 2 - row), 0.96, 0.96, facecolor=colour, edgecolor="black"))
            if score is None:
                text = f"{side} {third}\nno lung"
            else:
                total += int(score)
                scored = True
                text = f"{side} {third}\nLI {li:.1f} %\nlesion {lesion:.1f} %\nscore {int(score)}"
            dark = score is not None and int(score) >= 4
            ax.text(column + 0.48, 2 - row + 0.48, text, ha="center", va="center", fontsize=8,
                    color="white" if dark or score is None else "black")
    ax.set_xlim(-0.02, 2.0)
    ax.set_ylim(-0.02, 3.0)
    ax.set_axis_off()
    ax.set_title(f"zones (R | L): zonal severity {total if scored else 'n/a'} / 30", color="white", fontsize=9)


def figure_png(fig, *, dpi: int | None = None) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi, facecolor=fig.get_facecolor())
    return buffer.getvalue()


def qc_path(labels_dir: str | os.PathLike[str], scan_id: str) -> Path:
    """Where the QC image of a scan goes: ``labels_dir/<id>_qc.png``."""
    return Path(labels_dir) / f"{scan_id}{QC_SUFFIX}"


def write_qc_image(scan, labels_dir: str | os.PathLike[str], *, label_map: str = "labels",
                   dpi: int = 100, lung_masks: str | os.PathLike[str] | None = None,
                   mask_format: str | None = None) -> Path:
    """Read one scan and its outputs and write ``labels_dir/<id>_qc.png`` atomically.

    Parameters
    ----------
    scan : radiolab.segment.ScanInput
        The scan (file, folder or DICOM series) whose outputs lie in ``labels_dir``.
    labels_dir : str or os.PathLike
        Output folder of `radiolab segment`.
    label_map : {"labels", "median"}
        Overlay the voxel-wise labels (``<id>_labels.nrrd``, the ones summary.csv
        counts) or the median-filtered ones (``<id>_labels_median.nrrd``). The text
        always gives the voxel-wise figures of summary.csv.
    dpi : int
        Resolution of the PNG.
    lung_masks : str or os.PathLike, optional
        Folder of external lung masks (`radiolab.external_masks`): the contour and the
        zones (with the mask's own sides and thirds where it has them) come from the
        scan's mask there instead of ``<id>_lung.nrrd`` and the records.
    mask_format : str, optional
        Convention of ``lung_masks``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        If an output is missing or its shape differs from the scan's, or the external
        mask cannot be used (see `radiolab.external_masks.read_external_mask`).
    """
    from radiolab.errors import InputError
    from radiolab.io import atomic_path, read_volume
    from radiolab.scoring import class_volumes

    if label_map not in LABEL_MAPS:
        raise ParameterError(f"label_map must be one of {', '.join(LABEL_MAPS)}, got {label_map!r}")
    folder = Path(labels_dir)
    labels_path = folder / f"{scan.id}_labels.nrrd"
    if not labels_path.exists():
        raise InputError(labels_path, "no tissue labels for this scan (did its segmentation fail? see errors.csv)")
    volume = scan.read()
    labels = read_volume(labels_path).array.astype(np.uint8)
    _check_shape(labels_path, labels.shape, volume.array.shape)
    stats = class_volumes(labels, volume.geometry.spacing)
    shown = labels
    if label_map != "labels":
        shown_path = folder / f"{scan.id}{LABEL_MAPS[label_map]}"
        if not shown_path.exists():
            raise InputError(shown_path, "file does not exist")
        shown = read_volume(shown_path).array.astype(np.uint8)
        _check_shape(shown_path, shown.shape, volume.array.shape)
    mask_path = folder / f"{scan.id}_lung.nrrd"
    mask = None
    if lung_masks is not None:
        from radiolab.external_masks import read_external_mask

        external = read_external_mask(lung_masks, scan.id, volume.geometry, volume.array.shape,
                                      mask_format=mask_format, scan_path=os.fspath(scan.path))
        mask = external.mask
        zones = computed_zones(labels, mask, volume.geometry, sides=external.sides, thirds=external.thirds)
    else:
        if mask_path.exists():
            mask = read_volume(mask_path).array.astype(bool)
            _check_shape(mask_path, mask.shape, volume.array.shape)
        zones = recorded_zones(folder, scan.id)
        if zones is None:
            zones = computed_zones(labels, mask if mask is not None else labels > 0, volume.geometry)
    fig = qc_figure(volume.array, shown, volume.geometry.spacing, mask=mask,
                    direction=volume.geometry.direction, stats=stats, title=scan.id, dpi=dpi, zones=zones)
    png = figure_png(fig, dpi=dpi)
    out = qc_path(folder, scan.id)
    with atomic_path(out) as temporary:
        Path(temporary).write_bytes(png)
    return out


def recorded_zones(labels_dir: str | os.PathLike[str], scan_id: str) -> dict[str, dict[str, Any]] | None:
    """The zone table of a scan from its records: scores from ``<id>_summary.json``,
    LI and lesion share from ``<id>_phenotypes.json``; None if either is missing."""
    import json

    from radiolab.zones import LESION_LABELS, ZONE_NAMES

    folder = Path(labels_dir)
    try:
        row = json.loads((folder / f"{scan_id}_summary.json").read_text(encoding="utf-8"))
        phenotypes = json.loads((folder / f"{scan_id}_phenotypes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    by_region = {r.get("region"): r for r in phenotypes if isinstance(r, dict)}
    if not all(name in by_region and f"zone_score_{name}" in row for name in ZONE_NAMES):
        return None
    classes = {3: "ggo_pct", 4: "consolidation_pct"}
    table = {}
    for name in ZONE_NAMES:
        region = by_region[name]
        lesion = None
        if region.get("LI_pct") is not None:
            lesion = sum(region[classes[label]] or 0.0 for label in LESION_LABELS)
        table[name] = {"LI_pct": region.get("LI_pct"), "lesion_pct": lesion, "score": row[f"zone_score_{name}"]}
    return table


def computed_zones(labels: np.ndarray, mask: np.ndarray, geometry, *, sides: np.ndarray | None = None,
                   thirds: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """The zone table of the labels inside ``mask``; sides default to `split_sides`,
    thirds to `lung_thirds`."""
    from radiolab.sides import split_sides
    from radiolab.zones import lung_thirds, zone_table

    if sides is None:
        sides = split_sides(mask, geometry.spacing, direction=geometry.direction)
    if thirds is None:
        thirds = lung_thirds(mask, direction=geometry.direction)
    inside = mask.astype(bool, copy=False)
    return zone_table(np.where(inside, labels, 0).astype(np.uint8), np.where(inside, sides, 0).astype(np.uint8),
                      np.where(inside, thirds, 0).astype(np.uint8))


def _check_shape(path, shape, expected) -> None:
    from radiolab.errors import InputError

    if tuple(shape) != tuple(expected):
        raise InputError(path, f"shape {tuple(shape)} differs from the scan's {tuple(expected)}; "
                               "is --scans the folder these labels were made from?")


def resolve_scans(scans: Any) -> list:
    """Scans as `radiolab.segment.ScanInput` objects, from paths or ScanInputs.

    Raises
    ------
    InputError
        If a path does not exist or holds no scan.
    """
    from radiolab.segment import ScanInput, find_inputs

    if isinstance(scans, (str, os.PathLike)):
        scans = [scans]
    scans = list(scans)
    if all(isinstance(s, ScanInput) for s in scans):
        return scans
    found, _ = find_inputs([os.fspath(s) for s in scans])
    return found


class _QCTask:
    def __init__(self, labels_dir: str, label_map: str, dpi: int, lung_masks=None, mask_format=None):
        self.labels_dir, self.label_map, self.dpi = labels_dir, label_map, dpi
        self.lung_masks, self.mask_format = lung_masks, mask_format

    def __call__(self, scan) -> QCImage:
        from radiolab.errors import RadiolabError

        try:
            path = write_qc_image(scan, self.labels_dir, label_map=self.label_map, dpi=self.dpi,
                                  lung_masks=self.lung_masks, mask_format=self.mask_format)
        except (RadiolabError, OSError, MemoryError) as error:  # a bug shows its traceback
            text = str(error) or type(error).__name__
            return QCImage(scan.id, None, text if os.fspath(scan.path) in text else f"{scan.path}: {text}")
        return QCImage(scan.id, path, None)


def write_qc_images(
    labels_dir: str | os.PathLike[str],
    scans: Any,
    *,
    jobs: int = 1,
    label_map: str = "labels",
    dpi: int = 100,
    only_missing: bool = False,
    lung_masks: str | os.PathLike[str] | None = None,
    mask_format: str | None = None,
) -> list[QCImage]:
    """Write ``<id>_qc.png`` into ``labels_dir`` for every scan that has labels there.

    One scan that fails (unreadable, labels missing, shapes differ) never stops the
    others; its `QCImage` carries the reason.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        Output folder of `radiolab segment`.
    scans : path, sequence of paths, or sequence of radiolab.segment.ScanInput
        The scans the labels were made from (what ``radiolab segment --in`` took).
    jobs : int
        Scans drawn in parallel (joblib processes).
    label_map : {"labels", "median"}
        Which label map to overlay (see `write_qc_image`).
    dpi : int
        Resolution of the PNGs.
    only_missing : bool
        Skip scans whose QC image already exists.
    lung_masks, mask_format : optional
        External lung masks (see `write_qc_image`).

    Returns
    -------
    list of QCImage
        One per scan, sorted by id: the path written, or the error.

    Raises
    ------
    InputError
        If ``labels_dir`` does not exist or ``scans`` names no scan.
    """
    from radiolab.errors import InputError

    if not Path(labels_dir).is_dir():
        raise InputError(labels_dir, "labels folder does not exist")
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, got {jobs}")
    items = sorted(resolve_scans(scans), key=lambda s: s.id)
    if only_missing:
        items = [s for s in items if not qc_path(labels_dir, s.id).exists()]
    task = _QCTask(os.fspath(labels_dir), label_map, dpi,
                   None if lung_masks is None else os.fspath(lung_masks), mask_format)
    if jobs == 1 or len(items) <= 1:
        return [task(scan) for scan in items]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=jobs)(delayed(task)(scan) for scan in items))
