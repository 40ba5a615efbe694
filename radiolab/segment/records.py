"""Per-scan records on disk: output paths, provenance, and whether a step is up to date.

Each map step ends by writing its record (``<id>_hist.json``, then ``<id>_summary.json``)
after the volumes it vouches for, and deletes the old record before it starts; a rerun
skips a step whose record and outputs exist and match the input hash and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radiolab import __version__
from radiolab.io import read_header, write_json_atomic
from radiolab.mixture import Histogram
from radiolab.segment.config import SegmentConfig, algorithm_versions

OUTPUT_SUFFIXES = {
    "lung": "_lung.nrrd",
    "sides": "_sides.nrrd",
    "airways": "_airways.nrrd",
    "labels": "_labels.nrrd",
    "median": "_labels_median.nrrd",
    "histogram": "_hist.json",
    "phenotypes": "_phenotypes.json",
    "row": "_summary.json",
    "error": "_error.json",
}
# Files of the whole run (not per scan).
RUN_FILES = ("gmm.json", "summary.csv", "phenotypes.csv", "errors.csv")


@dataclass
class ScanError:
    id: str
    stage: str
    message: str


def output_paths(out_dir: str | os.PathLike[str], scan_id_: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {key: out / f"{scan_id_}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


def provenance_fields(config: SegmentConfig, extra: dict[str, Any] | None = None, *,
                      steps: tuple[str, ...] = ("lung_mask", "mixture_fit", "labels")) -> dict[str, Any]:
    """Header fields of an output: version, settings, and the algorithm versions of the
    ``steps`` it depends on."""
    versions = algorithm_versions()
    fields = {
        "radiolab_version": __version__,
        "radiolab_preset": config.preset,
        "radiolab_backend": config.backend,
        "radiolab_model": config.model,
        "radiolab_parameters": json.dumps(config.to_json(), sort_keys=True),
        "radiolab_algorithm_versions": json.dumps({step: versions[step] for step in steps}, sort_keys=True),
    }
    fields.update(extra or {})
    return fields


def unlink_if_present(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_json_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON record, or None if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def histogram_key(histogram: Histogram) -> str:
    """Hash of a histogram's non-zero range of counts (a scan's contribution to a pooled fit)."""
    present = np.flatnonzero(histogram.counts)
    payload = b""
    if present.size:
        first, last = int(present[0]), int(present[-1])
        payload = (np.int64(histogram.lo + first).astype("<i8").tobytes()
                   + histogram.counts[first: last + 1].astype("<i8").tobytes())
    return hashlib.sha256(payload).hexdigest()[:16]


def histogram_record(scan_id_: str, config: SegmentConfig, histogram: Histogram, voxel_volume_ml: float,
                 input_hash: str) -> dict[str, Any]:
    return {
        "id": scan_id_, "input_hash": input_hash, "mask_key": config.mask_key(),
        "histogram": histogram.to_json(), "voxel_volume_ml": voxel_volume_ml,
        "radiolab_version": __version__, "algorithm_versions": {"lung_mask": algorithm_versions()["lung_mask"]},
        "config": config.to_json(),
    }


def current_histogram(paths: Mapping[str, Path], config: SegmentConfig, input_hash: str) -> Histogram | None:
    """The recorded histogram if step 1's outputs exist and match input and settings.

    A matching record whose other settings (seed, median size ...) differ is rewritten
    with the current ones, so that records always describe the latest run.
    """
    record = read_json_record(paths["histogram"])
    if (record is None or record.get("input_hash") != input_hash or record.get("mask_key") != config.mask_key()
            or not paths["lung"].is_file()
            or (config.lung_masks is None and config.lung_settings().chest is not None
                and not paths["sides"].is_file())):
        return None
    try:
        histogram = Histogram.from_json(record["histogram"])
        fresh = histogram_record(record["id"], config, histogram, float(record["voxel_volume_ml"]), input_hash)
    except (KeyError, TypeError, ValueError):
        return None
    if json.loads(json.dumps(fresh)) != record:
        write_json_atomic(paths["histogram"], fresh)
    return histogram


def current_row(paths: Mapping[str, Path], input_hash: str, label_key: str) -> dict[str, Any] | None:
    """The recorded summary row if step 2's outputs exist and match input and settings."""
    row = read_json_record(paths["row"])
    if row is None or not paths["phenotypes"].is_file():
        return None
    for key in ("labels", "median"):
        try:
            header = read_header(paths[key])
        except Exception:  # missing or unreadable: not up to date
            return None
        if header.get("radiolab_input_hash") != input_hash or header.get("radiolab_label_key") != label_key:
            return None
    return row


def record_error(out: Path, error: ScanError) -> None:
    write_json_atomic(output_paths(out, error.id)["error"], asdict(error))
