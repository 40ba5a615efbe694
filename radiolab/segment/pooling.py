"""The reduce step: pool per-scan histograms and fit (or reuse) the cohort's mixture (``gmm.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from radiolab.io import write_json_atomic
from radiolab.mixture import Histogram, TissueMixture, fit_mixture, load_mixture
from radiolab.segment.config import SegmentConfig, algorithm_versions
from radiolab.segment.records import histogram_key, read_json_record


def resolve_model(config: SegmentConfig) -> TissueMixture | None:
    """The mixture named by the configuration, or None for a pooled fit."""
    if config.model == "fit":
        return None
    return load_mixture(config.model, trust_pickle=config.trust_pickle)


@dataclass
class PooledHistogram:
    """The running sum of per-scan lung histograms, and a key per scan that went in.

    Sums are exact int64 counts, so the total is the same in any order of addition;
    memory stays at one histogram (a few thousand 1-HU bins) plus one short key per
    scan, however many scans are pooled.
    """

    total: Histogram | None = None
    keys: dict[str, str] = field(default_factory=dict)

    def add(self, scan_id_: str, histogram: Histogram) -> None:
        if scan_id_ in self.keys:
            raise ValueError(f"scan {scan_id_!r} pooled twice")
        self.keys[scan_id_] = histogram_key(histogram)
        self.total = histogram if self.total is None else self.total + histogram

    @property
    def n_scans(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, histograms: Mapping[str, Histogram]) -> "PooledHistogram":
        """Pool a mapping of scan id -> histogram, in sorted-id order."""
        pooled = cls()
        for scan_id_ in sorted(histograms):
            pooled.add(scan_id_, histograms[scan_id_])
        return pooled


def fit_pooled(pooled: PooledHistogram, config: SegmentConfig) -> TissueMixture:
    """Fit the mixture on a cohort's pooled histogram.

    The fit runs on one thread, so the result depends on the summed counts and the
    seed only: not on the backend, the order in which scans finished, or the
    machine's core count.

    Raises
    ------
    FitError
        If the pooled lungs hold too few distinct HU values.
    ValueError
        If nothing was pooled (a caller's mistake).
    """
    from threadpoolctl import threadpool_limits

    if pooled.total is None:
        raise ValueError("no histograms to fit")
    with threadpool_limits(limits=1):
        return fit_mixture(pooled.total, seed=config.seed, n_init=config.n_init, tol=config.tol,
                           n_scans=pooled.n_scans)


def mixture_record(mixture: TissueMixture, config: SegmentConfig, pooled: PooledHistogram) -> dict[str, Any]:
    """The content of ``gmm.json``: the mixture, the scans pooled and the settings."""
    record = mixture.to_json()
    record["scans"] = sorted(pooled.keys)
    record["segment_config"] = config.to_json()
    record["fit_key"] = config.fit_key()
    record["algorithm_versions"] = algorithm_versions()
    record["histograms"] = {i: pooled.keys[i] for i in sorted(pooled.keys)}
    return json.loads(json.dumps(record))


def mixture_from_record(record: Mapping[str, Any], *, source: str = "gmm.json") -> TissueMixture:
    """The mixture stored in a ``gmm.json`` record, exactly as it was fitted."""
    return TissueMixture.from_json(dict(record), source=str(record.get("source") or source))


def _gmm_covers(record: dict[str, Any] | None, config: SegmentConfig, keys: Mapping[str, str], *,
                exact: bool) -> bool:
    if record is None or record.get("fit_key") != config.fit_key():
        return False
    recorded = record.get("histograms")
    if not isinstance(recorded, dict):
        return False
    if exact:
        return recorded == dict(keys)
    return all(recorded.get(i) == key for i, key in keys.items())


def pooled_mixture(out_dir: str | os.PathLike[str], config: SegmentConfig, pooled: PooledHistogram,
                   *, force: bool = False) -> TissueMixture:
    """Fit (or reuse) the mixture of a pooled histogram and write ``gmm.json``.

    An existing ``gmm.json`` fitted with the same settings on exactly the same scan
    histograms is reused unless ``force``.
    """
    path = Path(out_dir) / "gmm.json"
    existing = read_json_record(path)
    if not force and _gmm_covers(existing, config, pooled.keys, exact=True):
        return mixture_from_record(existing)
    record = mixture_record(fit_pooled(pooled, config), config, pooled)
    write_json_atomic(path, record)
    return mixture_from_record(record)


def matching_mixture(out_dir: str | os.PathLike[str], config: SegmentConfig,
                     keys: Mapping[str, str]) -> TissueMixture | None:
    """The mixture of ``gmm.json`` if it was fitted with these settings on these scans'
    histograms (among others): what a shard may label with. None otherwise."""
    record = read_json_record(Path(out_dir) / "gmm.json")
    if keys and _gmm_covers(record, config, keys, exact=False):
        return mixture_from_record(record)
    return None
