"""DICOM Segmentation (SEG) of radiolab's labels, referencing the source CT series.

Written with highdicom, imported here only, so that ``import radiolab`` stays light.
A SEG must carry the source's patient and study modules to be filed beside it in a
PACS: it is the one radiolab output that holds patient tags, which is why it is
written only on request (``radiolab segment --dicom-seg``).

Segments (binary, may overlap), with codes from the DICOM standard's tables:

====  ====================  ==============================  ===============================
 no.   label                 category                        type
====  ====================  ==============================  ===============================
 1     air                   Morphologically Abnormal        Air (DCM 112143)
                             Structure (SCT 49755003)
 2     healthy lung          Tissue (SCT 85756007)           Parenchyma (SCT 91772007)
 3     ground-glass opacity  Morphologically Abnormal        Ground glass opacity (DCM 112120)
                             Structure
 4     consolidation         Morphologically Abnormal        Abnormal opacity (DCM 112033)
                             Structure
 5     other dense tissue    Tissue                          Soft tissue (SCT 87784001)
 6     lung                  Anatomical Structure            Lung (SCT 39607008)
                             (SCT 91723000)
====  ====================  ==============================  ===============================

Segments 1-5 have the lung as their anatomic region; colours are those of the NRRD
label maps (3D Slicer fields).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from radiolab import __version__
from radiolab.dicom.discovery import SeriesInfo, dcmread
from radiolab.errors import InputError, RadiolabError
from radiolab.io import LUNG_SEGMENTS, TISSUE_SEGMENTS, atomic_path

# UIDs a SEG needs from every source instance.
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID")


def _codes() -> list[tuple[Any, Any]]:
    """(category, type) for segments 1..6, from pydicom's copy of the DICOM code tables."""
    from pydicom.sr.codedict import codes

    abnormal = codes.SCT.MorphologicallyAbnormalStructure
    return [
        (abnormal, codes.DCM.Air),
        (codes.SCT.Tissue, codes.SCT.Parenchyma),
        (abnormal, codes.DCM.GroundGlassOpacity),
        (abnormal, codes.DCM.AbnormalOpacity),
        (codes.SCT.Tissue, codes.SCT.SoftTissue),
        (codes.SCT.AnatomicalStructure, codes.SCT.Lung),
    ]


def _srgb_to_cielab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """sRGB in 0..1 to CIE L*a*b* (D65), the colour space DICOM segments use."""
    c = np.asarray(rgb, dtype=float)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = matrix @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def require_highdicom() -> None:
    """Raise a RadiolabError saying how to install highdicom if it is missing."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise RadiolabError("DICOM SEG output (--dicom-seg) needs highdicom: pip install highdicom "
                            "(or the radiolab[dicom] extra)") from None


def sorted_sources(info: SeriesInfo) -> list[Any]:
    """The series' datasets (with pixels) in the volume's slice order (along the normal)."""
    datasets = []
    for path in info.files:
        try:
            datasets.append(dcmread(path))
        except Exception as error:
            raise InputError(path, f"cannot read DICOM file ({type(error).__name__})") from None
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    heights = [float(np.array([float(v) for v in ds.ImagePositionPatient]) @ normal) for ds in datasets]
    order = np.argsort(heights, kind="stable")
    return [datasets[i] for i in order]


def seg_refusal(info: SeriesInfo | None, *, resampled: bool) -> str | None:
    """Why no SEG can be written for a scan, or None when one can."""
    if info is None:
        return "the input is not a DICOM series read directly"
    if resampled:
        return "the series was resampled onto a regular grid (tilt or uneven spacing), so its voxels are not the source's"
    counts = dict.fromkeys(REQUIRED_UIDS, 0)
    for path in info.files:
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in REQUIRED_UIDS:
            if not str(ds.get(keyword) or "").strip():
                counts[keyword] += 1
    missing = [f"{keyword} ({count} of {len(info.files)} files)" for keyword, count in counts.items() if count]
    if missing:
        return "the source lacks UIDs a SEG must reference: " + ", ".join(missing)
    return None


def write_dicom_seg(path: str | os.PathLike[str], info: SeriesInfo, labels: np.ndarray, lung: np.ndarray) -> None:
    """Write the labels and lung mask as a binary DICOM SEG referencing the source slices.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (written atomically), e.g. ``<id>_labels.seg.dcm``.
    info : SeriesInfo
        The source series (read directly, not resampled; see :func:`seg_refusal`).
    labels : ndarray
        Tissue labels 0..5, shape (slices, rows, columns) in the volume's slice order.
    lung : ndarray
        Lung mask (bool), same shape.

    Raises
    ------
    InputError
        Naming the series' folder, if :func:`seg_refusal` gives a reason, or if the
        arrays do not match the source's slices.
    """
    require_highdicom()
    import highdicom as hd
    from highdicom.color import CIELabColor

    reason = seg_refusal(info, resampled=False)
    if reason is not None:
        raise InputError(info.folder, f"no DICOM SEG: {reason}")
    sources = sorted_sources(info)
    shape = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if labels.shape != shape or lung.shape != shape:
        raise InputError(info.folder, f"no DICOM SEG: labels of shape {labels.shape} do not match the "
                                      f"source's {shape} slices")
    masks = np.stack([labels == value for value, _, _ in TISSUE_SEGMENTS] + [lung.astype(bool)], axis=-1)
    segments = [*TISSUE_SEGMENTS, *((len(TISSUE_SEGMENTS) + 1, name, colour) for _, name, colour in LUNG_SEGMENTS)]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="radiolab", family=_family(), version=__version__)
    lung_code = _codes()[-1][1]
    descriptions = []
    for number, ((_, name, colour), (category, kind)) in enumerate(zip(segments, _codes()), start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[lung_code] if number <= len(TISSUE_SEGMENTS) else None,
            display_color=CIELabColor(*_srgb_to_cielab(colour))))
    for ds in sources:
        # highdicom refuses an empty SpecificCharacterSet; absent means the default set.
        if "SpecificCharacterSet" in ds and not str(ds.SpecificCharacterSet or "").strip():
            del ds.SpecificCharacterSet
    with warnings.catch_warnings():
        # highdicom warns about odd source values (single-component person names);
        # the texts quote patient tags, so they are not shown.
        warnings.simplefilter("ignore", UserWarning)
        seg = _segmentation(hd, sources, masks, descriptions, info)
    with atomic_path(path) as temporary:
        seg.save_as(temporary)


def _segmentation(hd: Any, sources: list[Any], masks: np.ndarray, descriptions: list[Any], info: SeriesInfo) -> Any:
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=9000 + (info.number or 0),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="radiolab",
        manufacturer_model_name="radiolab segment", software_versions=__version__, device_serial_number="none",
        series_description="radiolab lung tissue labels", content_label="RADIOLAB")


def _family() -> Any:
    from pydicom.sr.codedict import codes

    return codes.DCM.ArtificialIntelligence
