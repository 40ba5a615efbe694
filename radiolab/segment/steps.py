"""The two per-scan map steps: lung mask and histogram, then labels, median map and row.

Module-level functions, so that worker processes can run them.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from radiolab.dicom.convert import scan_columns, scan_header_fields
from radiolab.errors import InputError
from radiolab.external_masks import LungMasks, find_mask, mask_content_hash, read_external_mask
from radiolab.io import (AIRWAY_SEGMENTS, LUNG_SEGMENTS, SIDE_SEGMENTS, Volume, read_map, slicer_segment_fields,
                         write_json_atomic, write_volume)
from radiolab.lung import kernel_threads, lung_mask, lung_volume_ml
from radiolab.mixture import TissueMixture, label_tissue, lung_histogram
from radiolab.scoring import scan_tables
from radiolab.segment.config import SegmentConfig
from radiolab.segment.inputs import ScanInput
from radiolab.segment.config import stable_hash
from radiolab.segment.records import histogram_record, output_paths, provenance_fields, unlink_if_present


def scan_input_hash(scan: ScanInput, config: SegmentConfig) -> str:
    """The scan's content hash, combined with its external mask's when ``config.lung_masks`` is set."""
    content = scan.content_hash()
    if config.lung_masks is None:
        return content
    mask = mask_content_hash(find_mask(config.lung_masks, scan.id), config.mask_format)
    return stable_hash({"scan": content, "lung_mask": mask})


def external_masks(scan: ScanInput, config: SegmentConfig, volume: Volume) -> LungMasks:
    """The scan's external mask on its grid (`radiolab.external_masks.read_external_mask`)."""
    return read_external_mask(config.lung_masks, scan.id, volume.geometry, volume.array.shape,
                              mask_format=config.mask_format, scan_path=scan.path)


def _mask_provenance(external: LungMasks) -> dict[str, str]:
    return {"radiolab_lung_mask_files": json.dumps(list(external.paths)),
            "radiolab_lung_mask_format": external.mask_format,
            "radiolab_lung_mask_hash": external.content_hash}
from radiolab.smoothing import median_labels

LOG = logging.getLogger("radiolab.segment")


def mask_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, *, keep: bool = False,
              input_hash: str | Future | None = None, regions: dict[str, Any] | None = None):
    """Map step 1: read the scan, segment the lungs, write the mask and histogram.

    ``<id>_hist.json``, the step's record, is deleted first and written last, after
    ``<id>_lung.nrrd``; it holds the histogram, the input hash and the mask key.

    Parameters
    ----------
    input_hash : str or Future, optional
        `ScanInput.content_hash` of the scan, if already computed, or a future of it
        (`hash_beside`), which is waited for once the scan has been read.
    regions : dict, optional
        With ``keep`` and the default preset, filled with what `label_scan` would
        otherwise read back from this step's files: ``sides`` (uint8 map) and
        ``airway_volume_ml`` (0 when no airway was found). With ``keep`` and another
        preset, ``sides_split``: a future of `radiolab.sides.split_sides` of the mask,
        started in a thread so that it runs beside the histogram and the labels.

    Returns ``(histogram, volume, mask)``; volume and mask are None unless ``keep``.
    """
    paths = output_paths(out_dir, scan.id)
    unlink_if_present(paths["histogram"])
    if input_hash is None:
        input_hash = scan_input_hash(scan, config)
    volume = scan.read()
    if isinstance(input_hash, Future):
        input_hash = input_hash.result()
    spacing = volume.geometry.spacing
    settings = config.lung_settings()
    extra = {"radiolab_input_hash": input_hash}
    if config.lung_masks is not None:
        external = external_masks(scan, config, volume)
        mask = external.mask
        extra.update(_mask_provenance(external))
        unlink_if_present(paths["sides"])
        unlink_if_present(paths["airways"])
    elif settings.chest is not None:
        mask = _segment_sides(volume, paths, config, settings, input_hash,
                              regions if keep and regions is not None else None)
    else:
        mask = lung_mask(volume.array, spacing, preset=config.preset, backend=config.backend,
                         threshold_hu=settings.threshold_hu, opening=settings.opening,
                         min_island=settings.min_island, closing_radii=settings.closing_radii)
        unlink_if_present(paths["sides"])
        unlink_if_present(paths["airways"])
        if keep and regions is not None:
            regions["sides_split"] = _split_sides_beside(mask, volume)
    histogram = lung_histogram(volume.array, mask, clip_hu=settings.clip_hu)
    write_volume(paths["lung"], mask.view(np.uint8), volume.geometry,
                 fields={**slicer_segment_fields(mask.shape, LUNG_SEGMENTS), **scan_header_fields(volume),
                         **provenance_fields(config, extra, steps=("lung_mask",))},
                 compression_level=config.compression_level)
    write_json_atomic(paths["histogram"], histogram_record(scan.id, config, histogram,
                                                       volume.geometry.voxel_volume_ml, input_hash))
    if keep:
        return histogram, volume, mask
    return histogram, None, None


def _segment_sides(volume: Volume, paths, config: SegmentConfig, settings, input_hash: str,
                   regions: dict[str, Any] | None = None) -> np.ndarray:
    """Default preset: lung mask, ``<id>_sides.nrrd`` and (when found) ``<id>_airways.nrrd``.

    ``regions``, when given, receives the sides map and the airway volume (`mask_scan`).
    """
    from radiolab.lung_segmentation import segment_lungs  # with scipy: only for the presets that use it

    result = segment_lungs(volume.array, volume.geometry.spacing, settings, direction=volume.geometry.direction)
    for note in result.notes:
        LOG.info("%s: %s", paths["lung"].name.removesuffix("_lung.nrrd"), note)
    provenance = provenance_fields(config, {"radiolab_input_hash": input_hash})
    write_volume(paths["sides"], result.sides, volume.geometry,
                 fields={**slicer_segment_fields(result.sides.shape, SIDE_SEGMENTS), **provenance},
                 compression_level=config.compression_level)
    if result.airways is None:
        unlink_if_present(paths["airways"])
    else:
        write_volume(paths["airways"], result.airways.view(np.uint8), volume.geometry,
                     fields={**slicer_segment_fields(result.airways.shape, AIRWAY_SEGMENTS), **provenance},
                     compression_level=config.compression_level)
    if regions is not None:
        regions["sides"] = result.sides
        regions["airway_volume_ml"] = (0.0 if result.airways is None
                                       else lung_volume_ml(result.airways, volume.geometry.spacing))
    return result.mask


def label_scan(scan: ScanInput, out_dir: str, config: SegmentConfig, mixture: TissueMixture,
               volume: Volume | None = None, mask: np.ndarray | None = None, *,
               input_hash: str | None = None, regions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map step 2: label the lung voxels, median-filter, write label maps, summarise.

    ``<id>_summary.json``, the step's record, is deleted first and written last, after
    ``<id>_phenotypes.json`` (the scan's rows of ``phenotypes.csv``); the label maps
    carry the input hash and the label key in their headers. With external masks, their
    sides, lobes and thirds are used where they have them. ``regions`` is what
    `mask_scan` kept of the default preset's sides and airways (read from its files
    when not given).
    """
    paths = output_paths(out_dir, scan.id)
    unlink_if_present(paths["row"])
    if input_hash is None:
        input_hash = scan_input_hash(scan, config)
    if volume is None:
        volume = scan.read()
    if mask is None:
        mask = read_map(paths["lung"]).astype(bool)
        if mask.shape != volume.array.shape:
            raise InputError(paths["lung"], f"mask shape {mask.shape} differs from the scan's {volume.array.shape}")
    settings = config.lung_settings()
    labels = label_tissue(volume.array, mask, mixture, clip_hu=settings.clip_hu, backend=config.backend)
    segment_fields = slicer_segment_fields(labels.shape)
    provenance = scan_header_fields(volume) | provenance_fields(config, {"radiolab_mixture": json.dumps(mixture.to_json(), sort_keys=True),
                                      "radiolab_input_hash": input_hash,
                                      "radiolab_label_key": config.label_key(mixture)})
    # Each map is compressed and written in a thread (ISA-L and the file writes release
    # the GIL) while the tables and the median are computed; the tables first, so that
    # their region maps are gone before the median map exists (peak memory).
    with _writer() as writer:
        written = [writer.submit(write_volume, paths["labels"], labels, volume.geometry,
                                 fields={**segment_fields, **provenance}, compression_level=config.compression_level)]
        row = _tables(scan, out_dir, config, volume, mask, labels, paths, settings, regions)
        smoothed = median_labels(labels, size=config.median_size, backend=config.backend)
        written.append(writer.submit(write_volume, paths["median"], smoothed, volume.geometry,
                                     fields={**segment_fields, **provenance,
                                             "radiolab_median_size": str(config.median_size)},
                                     compression_level=config.compression_level))
        del smoothed
        for future in written:
            future.result()
    write_json_atomic(paths["row"], row)
    return row


def _tables(scan, out_dir, config, volume, mask, labels, paths, settings, kept=None) -> dict[str, Any]:
    """The scan's phenotype rows (written) and its summary row (returned)."""
    regions: dict[str, Any] = {}
    airway_ml = None
    if config.lung_masks is not None:
        external = external_masks(scan, config, volume)
        regions = {"sides": external.sides, "lobes": external.lobes, "thirds": external.thirds}
    elif settings.chest is not None and kept:
        regions = {"sides": kept["sides"]}
        airway_ml = kept["airway_volume_ml"]
    elif kept and "sides_split" in kept:
        regions = {"sides": kept["sides_split"].result()}
    elif settings.chest is not None and paths["sides"].is_file():
        sides = read_map(paths["sides"])
        if sides.shape != mask.shape:
            raise InputError(paths["sides"], f"sides shape {sides.shape} differs from the scan's {mask.shape}")
        regions = {"sides": sides}
        airway_ml = 0.0
        if paths["airways"].is_file():
            airway_ml = lung_volume_ml(read_map(paths["airways"]).astype(bool), volume.geometry.spacing)
    summary, phenotypes = scan_tables(labels, volume.array, mask, volume.geometry.spacing,
                                      direction=volume.geometry.direction, **regions)
    write_json_atomic(paths["phenotypes"], [{"id": scan.id, **r} for r in phenotypes])
    row = {"id": scan.id, **summary, **scan_columns(volume)}
    if config.lung_masks is None and settings.chest is not None:
        row["airway_volume_ml"] = airway_ml
    if config.dicom_seg:
        row["dicom_seg"] = _write_dicom_seg(scan, out_dir, volume, labels, mask)
    return row


class _RunAtOnce:
    """`ThreadPoolExecutor`'s submit, run at once: for workers held to one kernel thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def submit(self, function, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except Exception as error:  # raised again by result(), as from a thread
            future.set_exception(error)
        return future


def hash_beside(scan: ScanInput, config: SegmentConfig) -> Future:
    """`scan_input_hash` in a thread of its own, to run beside the scan's read
    (hashlib and the file reads release the GIL)."""
    return _beside(scan_input_hash, scan, config)


def _split_sides_beside(mask: np.ndarray, volume: Volume) -> Future:
    """`split_sides` of the mask in a thread of its own."""
    from radiolab.sides import split_sides

    return _beside(split_sides, mask, volume.geometry.spacing, direction=volume.geometry.direction)


def _beside(function, *args, **kwargs) -> Future:
    """``function`` run in a thread of its own (at once when kernels are held to one thread)."""
    if kernel_threads() == 1:
        return _RunAtOnce().submit(function, *args, **kwargs)
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(function, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def _writer():
    return _RunAtOnce() if kernel_threads() == 1 else ThreadPoolExecutor(2)


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
