"""`SegmentConfig`: the settings of ``radiolab segment`` and the keys derived from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from radiolab import __version__
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
    dicom_seg: bool = False

    def lung_settings(self):
        return settings_for(self.preset, threshold_hu=self.threshold_hu, opening=self.opening,
                            min_island=self.min_island, closing_radii=self.closing_radii)

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
        return cls(**kwargs)

    def mask_key(self) -> str:
        """Hash of everything the lung mask and histogram depend on."""
        return stable_hash({"lung": self.lung_settings().to_json(), "backend": self.backend, "version": __version__})

    def fit_key(self) -> str:
        """Hash of everything the pooled fit depends on besides the histograms."""
        return stable_hash({"mask": self.mask_key(), "seed": self.seed, "n_init": self.n_init, "tol": self.tol})

    def label_key(self, mixture: TissueMixture) -> str:
        """Hash of everything a scan's label maps depend on besides its input file."""
        key = {"mask": self.mask_key(), "mixture": mixture.to_json(), "median_size": self.median_size,
               "backend": self.backend, "version": __version__}
        if self.dicom_seg:  # only then, so that keys of runs without a SEG stay as they were
            key["dicom_seg"] = True
        return stable_hash(key)


def stable_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
