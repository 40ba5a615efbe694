"""`SegmentConfig`: the settings of ``radiolab segment`` and the keys derived from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from radiolab.lung import settings_for
from radiolab.mixture import TissueMixture


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of ``radiolab segment``; written into every output as provenance.

    Attributes
    ----------
    preset : str
        Lung-mask preset, ``default`` (mm, mL) or ``zaffino2021`` (voxels).
    backend : str
        ``fast`` or ``reference`` (the paper's library calls).
    model : str
        ``fit`` (pooled fit on the inputs), a built-in model name, or a model file.
    trust_pickle : bool
        Allow a pickled scikit-learn model (unpickling runs code).
    seed, n_init, tol : optional
        Pooled-fit settings (k-means seed, initialisations, tolerance).
    median_size : int
        Edge of the median window, in voxels.
    threshold_hu, opening, min_island, closing_radii : optional
        Lung-mask overrides, in the preset's units.
    lung_masks : str, optional
        Folder of external lung masks used instead of computed ones
        (`radiolab.external_masks`); their content hash enters each scan's input hash.
    mask_format : str, optional
        Convention of the external masks (`radiolab.external_masks.MASK_FORMATS`);
        None detects what is unambiguous.
    lung_tuning : tuple of (str, float), optional
        Overrides of the default preset's real-CT steps by field name
        (`radiolab.chest_tuning.ChestTuning`), in its units.
    dicom_seg : bool
        Also write ``<id>_labels.seg.dcm`` for scans read directly from a DICOM series
        (it carries the source's patient and study modules).
    """

    preset: str = "default"
    backend: str = "fast"
    model: str = "fit"
    trust_pickle: bool = False
    seed: int = 0
    n_init: int = 6
    tol: float = 1e-3
    median_size: int = 4
    threshold_hu: float | None = None
    opening: float | None = None
    min_island: float | None = None
    closing_radii: tuple[float, ...] | None = None
    compression_level: int = 1
    lung_masks: str | None = None
    mask_format: str | None = None
    dicom_seg: bool = False
    lung_tuning: tuple[tuple[str, float], ...] | None = None

    def lung_settings(self):
        return settings_for(self.preset, threshold_hu=self.threshold_hu, opening=self.opening,
                            min_island=self.min_island, closing_radii=self.closing_radii,
                            **dict(self.lung_tuning or ()))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lung_mask"] = self.lung_settings().to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SegmentConfig":
        """The configuration recorded by `to_json` (derived fields are ignored)."""
        names = {f.name for f in fields(cls)}
        kwargs = {key: value for key, value in data.items() if key in names}
        if kwargs.get("closing_radii") is not None:
            kwargs["closing_radii"] = tuple(kwargs["closing_radii"])
        if kwargs.get("lung_tuning") is not None:
            kwargs["lung_tuning"] = tuple((str(k), v) for k, v in kwargs["lung_tuning"])
        return cls(**kwargs)

    def mask_key(self) -> str:
        """Hash of everything the lung mask and histogram depend on (settings and the
        ``lung_mask`` algorithm version)."""
        settings: dict[str, Any] = {"lung": self.lung_settings().to_json(), "backend": self.backend,
                                    "algorithm": _version("lung_mask")}
        if self.lung_masks is not None:  # the masks' content is in the input hash, not their folder
            settings = {"external_mask_format": self.mask_format, "clip_hu": self.lung_settings().clip_hu}
        return stable_hash(settings)

    def fit_key(self) -> str:
        """Hash of everything the pooled fit depends on besides the histograms."""
        return stable_hash({"mask": self.mask_key(), "seed": self.seed, "n_init": self.n_init, "tol": self.tol,
                            "algorithm": _version("mixture_fit")})

    def label_key(self, mixture: TissueMixture) -> str:
        """Hash of everything a scan's label maps depend on besides its input file."""
        key = {"mask": self.mask_key(), "mixture": mixture.to_json(), "median_size": self.median_size,
               "backend": self.backend, "algorithm": _version("labels")}
        if self.dicom_seg:  # only then, so that keys of runs without a SEG stay as they were
            key["dicom_seg"] = True
        return stable_hash(key)


def _version(step: str) -> int:
    # The stage registry imports this module, so it is looked up when a key is made.
    from radiolab.pipeline import algorithm_version

    return algorithm_version(step)


def algorithm_versions() -> dict[str, int]:
    """The algorithm versions of the segment steps (recorded in every output)."""
    from radiolab.pipeline import algorithm_versions as of_stage

    return of_stage("segment")


def stable_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
