"""The two per-scan map steps: lung mask and histogram, then labels, median map and row.

Module-level functions, so that worker processes can run them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from radiolab.dicom.convert import scan_columns, scan_header_fields
from radiolab.errors import InputError
from radiolab.io import LUNG_SEGMENTS, Volume, read_volume, slicer_segment_fields, write_json_atomic, write_volume
from radiolab.lung import lung_mask
from radiolab.mixture import TissueMixture, label_tissue, lung_histogram
from radiolab.scoring import summary_row
from radiolab.segment.config import SegmentConfig
from radiolab.segment.inputs import ScanInput
from radiolab.segment.records import histogram_record, output_paths, provenance_fields, unlink_if_present
from radiolab.smoothing import median_labels


def mask_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, *, keep: bool = False,
              input_hash: str | None = None):
    """Map step 1: read the scan, segment the lungs, write the mask and histogram.

    ``<id>_hist.json``, the step's record, is deleted first and written last, after
    ``<id>_lung.nrrd``; it holds the histogram, the input hash and the mask key.

    Parameters
    ----------
    input_hash : str, optional
        `ScanInput.content_hash` of the scan, if already computed.

    Returns ``(histogram, volume, mask)``; volume and mask are None unless ``keep``.
    """
    paths = output_paths(out_dir, scan.id)
    unlink_if_present(paths["histogram"])
    if input_hash is None:
        input_hash = scan.content_hash()
    volume = scan.read()
    spacing = volume.geometry.spacing
    settings = config.lung_settings()
    mask = lung_mask(volume.array, spacing, preset=config.preset, backend=config.backend,
                     threshold_hu=settings.threshold_hu, opening=settings.opening,
                     min_island=settings.min_island, closing_radii=settings.closing_radii)
    histogram = lung_histogram(volume.array, mask, clip_hu=settings.clip_hu)
    write_volume(paths["lung"], mask.view(np.uint8), volume.geometry,
                 fields={**slicer_segment_fields(mask.shape, LUNG_SEGMENTS), **scan_header_fields(volume),
                         **provenance_fields(config, {"radiolab_input_hash": input_hash})},
                 compression_level=config.compression_level)
    write_json_atomic(paths["histogram"], histogram_record(scan.id, config, histogram,
                                                       volume.geometry.voxel_volume_ml, input_hash))
    if keep:
        return histogram, volume, mask
    return histogram, None, None


def label_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, mixture: TissueMixture,
               volume: Volume | None = None, mask: np.ndarray | None = None, *,
               input_hash: str | None = None) -> dict[str, Any]:
    """Map step 2: label the lung voxels, median-filter, write label maps, summarise.

    ``<id>_summary.json``, the step's record, is deleted first and written last; the
    label maps carry the input hash and the label key in their headers.
    """
    paths = output_paths(out_dir, scan.id)
    unlink_if_present(paths["row"])
    if input_hash is None:
        input_hash = scan.content_hash()
    if volume is None:
        volume = scan.read()
    if mask is None:
        mask = read_volume(paths["lung"]).array.astype(bool)
        if mask.shape != volume.array.shape:
            raise InputError(paths["lung"], f"mask shape {mask.shape} differs from the scan's {volume.array.shape}")
    settings = config.lung_settings()
    labels = label_tissue(volume.array, mask, mixture, clip_hu=settings.clip_hu, backend=config.backend)
    smoothed = median_labels(labels, size=config.median_size, backend=config.backend)
    segment_fields = slicer_segment_fields(labels.shape)
    provenance = scan_header_fields(volume) | provenance_fields(config, {"radiolab_mixture": json.dumps(mixture.to_json(), sort_keys=True),
                                      "radiolab_input_hash": input_hash,
                                      "radiolab_label_key": config.label_key(mixture)})
    write_volume(paths["labels"], labels, volume.geometry, fields={**segment_fields, **provenance},
                 compression_level=config.compression_level)
    write_volume(paths["median"], smoothed, volume.geometry,
                 fields={**segment_fields, **provenance, "radiolab_median_size": str(config.median_size)},
                 compression_level=config.compression_level)
    row = {"id": scan.id, **summary_row(labels, volume.array, mask, volume.geometry.spacing,
                                        direction=volume.geometry.direction), **scan_columns(volume)}
    if config.dicom_seg:
        row["dicom_seg"] = _write_dicom_seg(scan, out_dir, volume, labels, mask)
    write_json_atomic(paths["row"], row)
    return row


def _write_dicom_seg(scan: ScanInput, out_dir: str, volume: Volume, labels: np.ndarray, mask: np.ndarray) -> str:
    """Write ``<id>_labels.seg.dcm`` if the scan allows one; the summary's ``dicom_seg`` entry."""
    from pathlib import Path

    from radiolab.dicom.seg import seg_refusal, write_dicom_seg

    reason = seg_refusal(scan.series, resampled=bool(volume.meta.get("resampled")))
    if reason is not None:
        return f"not written: {reason}"
    path = Path(out_dir) / f"{scan.id}_labels.seg.dcm"
    write_dicom_seg(path, scan.series, labels, mask)
    return path.name
