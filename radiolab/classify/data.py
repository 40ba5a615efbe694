"""Classifier inputs: the manifest, subject-level splits, and network-ready slices.

Nothing here imports torch. A scan becomes a stack of square slices in [0, 1]:

* **CT volumes** (NRRD, NIfTI, MHA/MHD, DICOM folders): the radiolab lung mask picks
  the axial slices whose lung area is at least ``min_lung_area_mm2``; HU are put in the
  lung window (width 1200, level -600 HU by default) and scaled to [0, 1]; every slice
  of a scan is cropped to the lung's bounding box plus a margin (mm), padded to a
  square and resized to ``image_size``.
* **2-D images** (PNG, JPG, as in COVID-CT): grey values scaled to [0, 1], cropped to
  the chest found by an Otsu threshold, the largest bright component and its convex
  hull (pixels outside the hull are set to 0), padded to a square and resized.

Each scan keeps the `SliceFrame` that maps its network slices back onto the source
pixel grid, so heat maps can be written in the volume's geometry.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from radiolab.errors import DataError, InputError, ParameterError
from radiolab.io import Geometry, atomic_path, is_volume_file, read_volume, scan_id, write_json_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}
_LABELS = {"0": 0, "1": 1}
CACHE_VERSION = 1


# -- manifest --------------------------------------------------------------------------

@dataclass(frozen=True)
class ManifestRow:
    """One scan or image of a manifest.

    Attributes
    ----------
    path : str
        Scan file, DICOM folder or 2-D image, resolved against the manifest's folder.
    label : int or None
        1 (disease, e.g. COVID-19) or 0; None when unknown (prediction only).
    subject : str
        Subject id; all rows of a subject must share one split.
    split : str
        ``train``, ``val``, ``test`` or ``""`` (unspecified).
    mask : str or None
        Lesion mask or radiolab label map (``<id>_labels.nrrd``) of the scan.
    lung : str or None
        Lung mask (``<id>_lung.nrrd``) to use instead of computing one.
    line : int
        Line of the manifest (1 = header), to name rows in messages.
    """

    path: str
    label: int | None
    subject: str
    split: str = ""
    mask: str | None = None
    lung: str | None = None
    line: int = 0

    @property
    def id(self) -> str:
        return scan_id(self.path)

    @property
    def is_image(self) -> bool:
        return self.path.lower().endswith(IMAGE_SUFFIXES)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    require_labels: bool = True,
    require_splits: bool = True,
) -> list[ManifestRow]:
    """Read a manifest CSV with columns ``path, label, subject, split`` (and optional
    ``mask``, ``lung``); relative paths are taken from the manifest's folder.

    Raises
    ------
    InputError
        Naming the manifest and line, for a missing column, an empty path, a label
        other than 0/1, or an unknown split; and if a subject appears in two splits.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "manifest file does not exist")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        required = ["path"] + (["label"] if require_labels else []) + (["split"] if require_splits else [])
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(path, f"manifest lacks column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}"
                                   " (expected path, label, subject, split; optional mask, lung)")
        rows = []
        for line, raw in enumerate(reader, start=2):
            record = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(record.values()):
                continue
            rows.append(_parse_row(path, base, line, record, require_labels, require_splits))
    if not rows:
        raise InputError(path, "manifest has no rows")
    check_subject_splits(rows, path)
    return rows


def _resolve(base: str, value: str) -> str | None:
    if not value:
        return None
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def _parse_row(manifest: str, base: str, line: int, record: dict[str, str],
               require_labels: bool, require_splits: bool) -> ManifestRow:
    if not record.get("path"):
        raise InputError(manifest, f"line {line}: empty path")
    scan_path = _resolve(base, record["path"])
    label_text = record.get("label", "")
    if label_text == "" and not require_labels:
        label = None
    elif label_text in _LABELS:
        label = _LABELS[label_text]
    else:
        raise InputError(manifest, f"line {line}: label must be 0 or 1, got {label_text!r}")
    split_text = record.get("split", "").lower()
    if split_text == "" and not require_splits:
        split = ""
    elif split_text in _SPLIT_ALIASES:
        split = _SPLIT_ALIASES[split_text]
    else:
        raise InputError(manifest, f"line {line}: split must be one of {', '.join(SPLITS)}, got {split_text!r}")
    subject = record.get("subject") or scan_id(scan_path)
    return ManifestRow(path=scan_path, label=label, subject=subject, split=split,
                       mask=_resolve(base, record.get("mask", "")),
                       lung=_resolve(base, record.get("lung", "")), line=line)


def check_subject_splits(rows: Sequence[ManifestRow], source: str | os.PathLike[str] = "manifest") -> None:
    """Refuse subject leakage: every subject must appear in exactly one split.

    Raises
    ------
    InputError
        Naming the source, each offending subject, its splits and its lines.
    """
    splits: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        splits.setdefault(row.subject, {}).setdefault(row.split or "(none)", []).append(row.line)
    leaks = {subject: found for subject, found in splits.items() if len(found) > 1}
    if leaks:
        parts = []
        for subject, found in sorted(leaks.items())[:5]:
            where = " and ".join(f"{split} (line {', '.join(map(str, lines))})" for split, lines in sorted(found.items()))
            parts.append(f"subject {subject!r} appears in {where}")
        more = f"; and {len(leaks) - 5} more" if len(leaks) > 5 else ""
        raise InputError(source, "subject leakage: " + "; ".join(parts) + more
                         + ". Splits must be made per subject, never per scan or slice")


def rows_from_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[ManifestRow]:
    """Rows (no label, no split, subject = scan id) for scan files, images and folders.

    A folder contributes its volume files and images; a folder holding neither is taken
    as one DICOM series.

    Raises
    ------
    InputError
        If a path does not exist or two inputs share an id.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for raw in paths:
        path = os.fspath(raw)
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            entries = sorted(e.path for e in os.scandir(path) if e.is_file()
                             and (is_volume_file(e.name) or e.name.lower().endswith(IMAGE_SUFFIXES)))
            found.extend(entries if entries else [path])
        else:
            raise InputError(path, "no such file or folder")
    rows, seen = [], {}
    for index, path in enumerate(found, start=1):
        ident = scan_id(path)
        if ident in seen:
            raise InputError(path, f"id {ident!r} also used by {seen[ident]}; rename one of them")
        seen[ident] = path
        rows.append(ManifestRow(path=path, label=None, subject=ident, split="", line=index))
    return rows


# -- pixel operations (pure) -----------------------------------------------------------

def lung_window(hu: np.ndarray, *, width: float = 1200.0, level: float = -600.0) -> np.ndarray:
    """Map HU to [0, 1] through a display window (float32).

    Parameters
    ----------
    hu : numpy.ndarray
        Values in HU.
    width, level : float
        Window width and centre in HU; ``level - width / 2`` maps to 0,
        ``level + width / 2`` to 1.

    Examples
    --------
    >>> lung_window(np.array([-1200, -600, 0, 500])).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    low = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)


def select_slices(
    lung: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    min_lung_area_mm2: float = 1000.0,
    step: int = 1,
    lesion: np.ndarray | None = None,
) -> np.ndarray:
    """Axial slice indices to classify.

    Parameters
    ----------
    lung : numpy.ndarray
        Boolean lung mask (z, y, x).
    spacing : tuple of float
        Voxel size (z, y, x) in mm.
    min_lung_area_mm2 : float
        A slice counts as a lung slice when its lung area is at least this, in mm^2.
    step : int
        Keep every ``step``-th lung slice (the first lung slice is kept).
    lesion : numpy.ndarray, optional
        Boolean lesion mask; when given and any lung slice holds lesion, those lesion
        slices are returned instead (all of them).

    Returns
    -------
    numpy.ndarray
        Increasing slice indices (int64).
    """
    if step < 1:
        raise ParameterError(f"step must be at least 1, got {step}")
    area = lung.reshape(lung.shape[0], -1).sum(axis=1) * float(spacing[1]) * float(spacing[2])
    lung_slices = np.flatnonzero(area >= min_lung_area_mm2)
    if lesion is not None:
        with_lesion = lung_slices[lesion[lung_slices].reshape(len(lung_slices), -1).any(axis=1)]
        if len(with_lesion):
            return with_lesion.astype(np.int64)
    return lung_slices[::step].astype(np.int64)


def bounding_box(mask2d: np.ndarray, *, margin: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a 2-D mask's true pixels plus a margin, clipped to the image;
    the whole image when the mask is empty."""
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    height, width = mask2d.shape
    if not len(rows):
        return 0, height, 0, width
    return (max(0, int(rows[0]) - margin[0]), min(height, int(rows[-1]) + 1 + margin[0]),
            max(0, int(cols[0]) - margin[1]), min(width, int(cols[-1]) + 1 + margin[1]))


def resize2d(images: np.ndarray, shape: tuple[int, int], *, order: int = 1) -> np.ndarray:
    """Resize the last two axes to ``shape`` (pixel-area aligned); shrinking is
    preceded by a Gaussian low-pass to avoid aliasing. Returns float32."""
    images = np.asarray(images, dtype=np.float32)
    factors = [shape[0] / images.shape[-2], shape[1] / images.shape[-1]]
    lead = (1.0,) * (images.ndim - 2)
    sigma = [max(0.0, (1.0 / f - 1.0) / 2.0) for f in factors]
    if order > 0 and max(sigma) > 0:
        images = ndimage.gaussian_filter(images, sigma=(0.0,) * (images.ndim - 2) + tuple(sigma), mode="nearest")
    out = ndimage.zoom(images, lead + tuple(factors), order=order, mode="nearest", grid_mode=True)
    if out.shape[-2:] != tuple(shape):  # rounding of the output shape; never more than a pixel
        pad = [(0, 0)] * (out.ndim - 2) + [(0, max(0, shape[0] - out.shape[-2])), (0, max(0, shape[1] - out.shape[-1]))]
        out = np.pad(out, pad, mode="edge")[..., : shape[0], : shape[1]]
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class SliceFrame:
    """How network slices relate to the source pixel grid.

    The source slice (``height`` x ``width`` pixels) is cropped to ``box``
    (y0, y1, x0, x1), padded with zeros to a centred square of edge ``side`` and
    resized to ``size`` x ``size``.
    """

    height: int
    width: int
    box: tuple[int, int, int, int]
    side: int
    size: int

    @classmethod
    def for_box(cls, shape: tuple[int, int], box: tuple[int, int, int, int], size: int) -> "SliceFrame":
        y0, y1, x0, x1 = box
        return cls(int(shape[0]), int(shape[1]), (int(y0), int(y1), int(x0), int(x1)),
                   int(max(y1 - y0, x1 - x0)), int(size))

    @property
    def pad(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.box
        return (self.side - (y1 - y0)) // 2, (self.side - (x1 - x0)) // 2

    def apply(self, images: np.ndarray, *, order: int = 1) -> np.ndarray:
        """(..., height, width) -> (..., size, size) float32."""
        y0, y1, x0, x1 = self.box
        crop = np.asarray(images, dtype=np.float32)[..., y0:y1, x0:x1]
        square = np.zeros(crop.shape[:-2] + (self.side, self.side), dtype=np.float32)
        py, px = self.pad
        square[..., py:py + crop.shape[-2], px:px + crop.shape[-1]] = crop
        return resize2d(square, (self.size, self.size), order=order)

    def invert(self, maps: np.ndarray, *, order: int = 1) -> np.ndarray:
        """(..., size, size) -> (..., height, width); zero outside the crop box."""
        square = resize2d(maps, (self.side, self.side), order=order)
        y0, y1, x0, x1 = self.box
        py, px = self.pad
        out = np.zeros(square.shape[:-2] + (self.height, self.width), dtype=np.float32)
        out[..., y0:y1, x0:x1] = square[..., py:py + (y1 - y0), px:px + (x1 - x0)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "box": list(self.box),
                "side": self.side, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SliceFrame":
        return cls(data["height"], data["width"], tuple(data["box"]), data["side"], data["size"])


def otsu_threshold(values: np.ndarray, *, bins: int = 256) -> float:
    """Otsu's threshold of a set of values (maximal between-class variance)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight0 = np.cumsum(counts)[:-1].astype(np.float64)
    weight1 = counts.sum() - weight0
    sums = np.cumsum(counts * centres)[:-1]
    total = float((counts * centres).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        mean0 = sums / weight0
        mean1 = (total - sums) / weight1
        between = weight0 * weight1 * (mean0 - mean1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(edges[1:-1][int(np.argmax(between))])


def chest_hull(image: np.ndarray) -> np.ndarray:
    """Boolean convex hull of the chest in a 2-D grey image.

    Otsu threshold, the largest bright 8-connected component with its holes filled,
    then the convex hull of that component. An image with no bright component gives
    an all-true mask.
    """
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    image = np.asarray(image, dtype=np.float32)
    bright = image > otsu_threshold(image)
    labels, count = ndimage.label(bright, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.ones(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    body = ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))
    points = np.argwhere(body).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # a line or a point: keep the component itself
        return body
    vertices = points[hull.vertices]
    y0, x0 = np.floor(vertices.min(axis=0)).astype(int)
    y1, x1 = np.ceil(vertices.max(axis=0)).astype(int) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = Delaunay(vertices).find_simplex(np.column_stack([yy.ravel(), xx.ravel()]), tol=1e-9) >= 0
    mask = np.zeros(image.shape, dtype=bool)
    mask[y0:y1, x0:x1] = inside.reshape(yy.shape)
    return mask | body


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG/JPG image as a 2-D float32 array in [0, 1] (colour converted to grey).

    Raises
    ------
    InputError
        If the file is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "image file does not exist")
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float32)
                peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
                return np.clip(array / peak, 0.0, 1.0)
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(path, f"not a readable image: {error}") from None


# -- scans to slices -------------------------------------------------------------------

@dataclass
class ScanSlices:
    """Network-ready slices of one manifest row.

    Attributes
    ----------
    row : ManifestRow
    images : numpy.ndarray
        (n, size, size) float16 in [0, 1] (possibly memory-mapped from the cache).
    masks : numpy.ndarray or None
        (n, size, size) float16 lesion masks in [0, 1] when known (training only).
    indices : numpy.ndarray
        Axial index of each slice in the volume (0 for a 2-D image).
    positions_mm : numpy.ndarray
        Slice position along z, index x spacing, in mm (NaN for a 2-D image).
    frame : SliceFrame
        Maps network slices back onto the source pixel grid.
    shape : tuple of int
        Source shape: (z, y, x) for a volume, (y, x) for an image.
    geometry : Geometry or None
        Volume geometry (None for a 2-D image).
    note : str
        What was chosen and why (e.g. a fallback when a lesion mask is empty).
    """

    row: ManifestRow
    images: np.ndarray
    masks: np.ndarray | None
    indices: np.ndarray
    positions_mm: np.ndarray
    frame: SliceFrame
    shape: tuple[int, ...]
    geometry: Geometry | None = None
    note: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class ScanFailure:
    """A row that could not be turned into slices, with the reason."""

    path: str
    subject: str
    message: str


def lesion_mask_path(row: ManifestRow, labels_dir: str | os.PathLike[str] | None) -> str | None:
    """The row's ``mask`` column, else ``<labels_dir>/<id>_labels.nrrd`` if it exists."""
    if row.mask:
        return row.mask
    if labels_dir is not None:
        candidate = os.path.join(os.fspath(labels_dir), f"{row.id}_labels.nrrd")
        if os.path.isfile(candidate):
            return candidate
    return None


def lesion_from_labels(labels: np.ndarray, mask_labels: Sequence[int] = (3, 4)) -> np.ndarray:
    """Boolean lesion mask from a label map: a binary mask (values 0/1) is taken as is,
    a radiolab tissue label map (values up to 5) by its ``mask_labels`` (3 GGO,
    4 consolidation by default)."""
    labels = np.asarray(labels)
    if labels.size and labels.max() <= 1 and labels.min() >= 0:
        return labels > 0
    return np.isin(labels, np.asarray(mask_labels))


def _read_mask_volume(path: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    import nrrd

    if not os.path.isfile(path):
        raise InputError(path, f"{what} file does not exist")
    if path.lower().endswith((".nrrd", ".nhdr")):
        try:
            array, _ = nrrd.read(path, index_order="C")
        except Exception as error:  # pynrrd raises several types for bad files
            raise InputError(path, f"not a readable NRRD {what}: {error}") from None
    else:
        array = read_volume(path).array
    if array.shape != tuple(shape):
        raise InputError(path, f"{what} has shape {array.shape}, the scan {tuple(shape)}")
    return array


def _needs_lesion(row: ManifestRow, config, training: bool) -> bool:
    return training and row.label == 1 and (config.is_joint or config.lesion_slices)


def volume_to_slices(
    volume: np.ndarray,
    geometry: Geometry,
    *,
    image_size: int,
    lung: np.ndarray | None = None,
    lesion: np.ndarray | None = None,
    window_width: float = 1200.0,
    window_level: float = -600.0,
    crop_margin_mm: float | None = 10.0,
    min_lung_area_mm2: float = 1000.0,
    step: int = 1,
    lesion_slices: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, SliceFrame, str]:
    """Network slices of a CT volume (the pure core of `prepare_scan`).

    Parameters
    ----------
    volume : numpy.ndarray
        HU, (z, y, x).
    geometry : Geometry
        Spacing (z, y, x) in mm.
    image_size : int
        Output edge in pixels.
    lung : numpy.ndarray, optional
        Boolean lung mask; computed with `radiolab.lung.lung_mask` when None.
    lesion : numpy.ndarray, optional
        Boolean lesion mask; resampled alongside the slices.
    window_width, window_level : float
        Lung window, HU.
    crop_margin_mm : float or None
        Margin around the lung's bounding box, mm; None keeps the full slice.
    min_lung_area_mm2 : float
        Lung area that makes a slice a lung slice, mm^2.
    step : int
        Every ``step``-th lung slice.
    lesion_slices : bool
        Use the lesion slices instead when ``lesion`` holds any.

    Returns
    -------
    images : (n, size, size) float32
    masks : (n, size, size) float32 or None
    indices : (n,) int64
    frame : SliceFrame
    note : str

    Raises
    ------
    radiolab.errors.NoLungError
        If no lung is found.
    ValueError
        If no slice has enough lung.
    """
    spacing = geometry.spacing
    if lung is None:
        from radiolab.lung import lung_mask

        lung = lung_mask(volume, spacing)
    lung = np.asarray(lung, dtype=bool)
    note = ""
    use_lesion = lesion if (lesion_slices and lesion is not None) else None
    indices = select_slices(lung, spacing, min_lung_area_mm2=min_lung_area_mm2, step=step, lesion=use_lesion)
    if use_lesion is not None and not lesion[indices].any():
        note = "lesion mask empty on lung slices; used every lung slice at the step instead"
    if len(indices) == 0:
        biggest = lung.reshape(lung.shape[0], -1).sum(axis=1).max() * spacing[1] * spacing[2]
        raise DataError(f"no slice has at least {min_lung_area_mm2:g} mm^2 of lung (largest: {biggest:.0f} mm^2)")
    shape2d = volume.shape[1:]
    if crop_margin_mm is None:
        box = (0, shape2d[0], 0, shape2d[1])
    else:
        margin = (int(np.ceil(crop_margin_mm / spacing[1])), int(np.ceil(crop_margin_mm / spacing[2])))
        box = bounding_box(lung.any(axis=0), margin=margin)
    frame = SliceFrame.for_box(shape2d, box, image_size)
    images = frame.apply(lung_window(volume[indices], width=window_width, level=window_level))
    masks = None
    if lesion is not None:
        masks = np.clip(frame.apply(lesion[indices].astype(np.float32)), 0.0, 1.0)
    return images, masks, indices, frame, note


def image_to_slice(image: np.ndarray, *, image_size: int, lesion: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, SliceFrame]:
    """Network slice of a 2-D grey image in [0, 1]: cropped to the chest's convex hull
    (zero outside it), padded to a square, resized. Returns (1, size, size) arrays."""
    hull = chest_hull(image)
    box = bounding_box(hull)
    frame = SliceFrame.for_box(image.shape, box, image_size)
    slice_ = frame.apply(np.where(hull, image, 0.0)[None])
    mask = None if lesion is None else np.clip(frame.apply(lesion.astype(np.float32)[None]), 0.0, 1.0)
    return slice_, mask, frame


def prepare_scan(row: ManifestRow, config, *, training: bool, labels_dir=None) -> ScanSlices:
    """Read one row and make its network slices (see `volume_to_slices`).

    In training, positive scans of joint models (and of ``lesion_slices`` recipes) get
    their lesion mask from the row's ``mask`` column or ``<labels_dir>/<id>_labels.nrrd``;
    negative scans of joint models get an empty mask (controls have no lesion).

    Raises
    ------
    InputError, radiolab.errors.NoLungError, ValueError
        For unreadable files, mismatched masks, scans without lung.
    """
    want_lesion = _needs_lesion(row, config, training)
    empty_masks = training and config.is_joint and row.label == 0
    mask_path = lesion_mask_path(row, None if row.is_image else labels_dir) if want_lesion else None
    if row.is_image:
        image = read_image(row.path)
        lesion = None
        if mask_path:
            lesion = read_image(mask_path) > 0.5
            if lesion.shape != image.shape:
                raise InputError(mask_path, f"mask has shape {lesion.shape}, the image {image.shape}")
        images, masks, frame = image_to_slice(image, image_size=config.image_size, lesion=lesion)
        if empty_masks:
            masks = np.zeros_like(images)
        return ScanSlices(row, images.astype(np.float16), None if masks is None else masks.astype(np.float16),
                          np.zeros(1, dtype=np.int64), np.full(1, np.nan), frame, image.shape)
    volume = read_volume(row.path)
    lung = _read_mask_volume(row.lung, volume.array.shape, "lung mask") > 0 if row.lung else None
    lesion = None
    if mask_path:
        lesion = lesion_from_labels(_read_mask_volume(mask_path, volume.array.shape, "lesion mask"),
                                    config.mask_labels)
    images, masks, indices, frame, note = volume_to_slices(
        volume.array, volume.geometry, image_size=config.image_size, lung=lung, lesion=lesion,
        window_width=config.window_width, window_level=config.window_level,
        crop_margin_mm=config.crop_margin_mm, min_lung_area_mm2=config.min_lung_area_mm2,
        step=config.slice_step if training else 1, lesion_slices=config.lesion_slices and training,
    )
    if want_lesion and mask_path is None:
        note = "no lesion mask found; " + ("excluded from the segmentation loss" if config.is_joint
                                           else "used every lung slice at the step")
    if empty_masks:
        masks = np.zeros_like(images)
    return ScanSlices(row, images.astype(np.float16), None if masks is None else masks.astype(np.float16),
                      indices, indices * volume.geometry.spacing[0], frame, volume.array.shape,
                      volume.geometry, note)


def _file_stamp(path: str | None) -> list[Any]:
    if not path:
        return []
    if os.path.isdir(path):
        stats = [os.stat(e.path) for e in os.scandir(path) if e.is_file()]
        return [os.path.abspath(path), len(stats), sum(s.st_size for s in stats),
                max((s.st_mtime_ns for s in stats), default=0)]
    if not os.path.exists(path):
        return [os.path.abspath(path), "missing"]
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _cache_key(row: ManifestRow, config, training: bool, labels_dir) -> str:
    want = _needs_lesion(row, config, training)
    mask_path = lesion_mask_path(row, None if row.is_image else labels_dir) if want else None
    data = {
        "version": CACHE_VERSION, "scan": _file_stamp(row.path), "lung": _file_stamp(row.lung),
        "mask": _file_stamp(mask_path), "training": training, "label": row.label,
        "joint": config.is_joint, "settings": {k: config.to_json()[k] for k in (
            "image_size", "window_width", "window_level", "crop_margin_mm", "min_lung_area_mm2",
            "slice_step", "lesion_slices", "mask_labels")},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _save_npy(path: str, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array))


def _store(scan: ScanSlices, stem: str) -> None:
    _save_npy(stem + "_images.npy", scan.images)
    if scan.masks is not None:
        _save_npy(stem + "_masks.npy", scan.masks)
    write_json_atomic(stem + ".json", {
        "indices": scan.indices.tolist(), "positions_mm": [None if np.isnan(p) else float(p) for p in scan.positions_mm],
        "frame": scan.frame.to_json(), "shape": list(scan.shape), "masks": scan.masks is not None,
        "geometry": None if scan.geometry is None else scan.geometry.to_json(), "note": scan.note,
    })


def _load(row: ManifestRow, stem: str) -> ScanSlices | None:
    try:
        with open(stem + ".json", encoding="utf-8") as handle:
            meta = json.load(handle)
        images = np.load(stem + "_images.npy", mmap_mode="r")
        masks = np.load(stem + "_masks.npy", mmap_mode="r") if meta["masks"] else None
    except (OSError, ValueError, KeyError):
        return None
    geometry = Geometry(**meta["geometry"]) if meta["geometry"] else None
    positions = np.array([np.nan if p is None else p for p in meta["positions_mm"]], dtype=float)
    return ScanSlices(row, images, masks, np.asarray(meta["indices"], dtype=np.int64), positions,
                      SliceFrame.from_json(meta["frame"]), tuple(meta["shape"]), geometry, meta["note"])


def prepare_scans(
    rows: Sequence[ManifestRow],
    config,
    *,
    training: bool,
    labels_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> tuple[list[ScanSlices], list[ScanFailure]]:
    """Slices of every row; a row that fails is recorded and the others go on.

    Parameters
    ----------
    rows : sequence of ManifestRow
    config : ClassifyConfig
    training : bool
        Training selection (``slice_step``, ``lesion_slices``, lesion masks) or
        prediction selection (every lung slice, no masks).
    labels_dir : path, optional
        Folder of ``radiolab segment`` outputs, searched for ``<id>_labels.nrrd``.
    cache_dir : path, optional
        Slices are stored there (float16 ``.npy``, memory-mapped when read back) and
        reused while the files and settings are unchanged.
    progress : bool
        Show a progress bar.

    Returns
    -------
    scans : list of ScanSlices
    failures : list of ScanFailure
    """
    from tqdm.auto import tqdm

    scans, failures = [], []
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
    for row in tqdm(rows, desc="slices", unit="scan", disable=None if progress else True, leave=False):
        stem = os.path.join(os.fspath(cache_dir), _cache_key(row, config, training, labels_dir)) if cache_dir else None
        scan = _load(row, stem) if stem and os.path.exists(stem + ".json") else None
        if scan is None:
            try:
                scan = prepare_scan(row, config, training=training, labels_dir=labels_dir)
            except Exception as error:  # one bad scan never stops the batch
                failures.append(ScanFailure(row.path, row.subject, f"{type(error).__name__}: {error}"))
                continue
            if stem:
                _store(scan, stem)
                scan = _load(row, stem) or scan  # memory-mapped: a cohort need not fit in memory
        scans.append(scan)
    return scans, failures


def write_failures(path: str | os.PathLike[str], failures: Sequence[ScanFailure]) -> None:
    """errors.csv: one line per scan that could not be used."""
    import io as _io

    from radiolab.io import write_text_atomic

    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "subject", "message"])
    for failure in failures:
        writer.writerow([failure.path, failure.subject, failure.message])
    write_text_atomic(path, buffer.getvalue())
