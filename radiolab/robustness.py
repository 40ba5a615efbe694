"""Stability of the pooled mixture against the cohort it is fitted on.

Zaffino et al. (2021, Fig. 4) fit the five-class Gaussian mixture on random subsets of
the cohort of increasing size, three groups per size, and compare the Gaussians. The
pooled fit only needs the sum of the per-scan lung HU histograms, which
``radiolab segment`` caches as ``<id>_hist.json``, so every fit here costs a fraction of
a second whatever the scans' size.

Subsets are drawn without replacement with ``numpy.random.default_rng(seed)``; every
fit uses the same k-means seed, so the spread measures the effect of the subset alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from radiolab.errors import DataError, FitError, InputError, ParameterError, RadiolabError
from radiolab.mixture import CLASS_NAMES, Histogram, TissueMixture, fit_mixture, sum_histograms

HIST_SUFFIX = "_hist.json"
PARAMETERS = (("mean_hu", "means"), ("sd_hu", "stds"), ("weight", "weights"))
SPREAD_COLUMNS = ("size", "class", "parameter", "n_groups", "mean", "sd", "min", "max", "range")


@dataclass
class RobustnessResult:
    """The fits of a robustness study.

    Attributes
    ----------
    groups : dict of int to list of list of str
        Subset size -> the scan ids of each group.
    fits : dict of int to list of TissueMixture
        Subset size -> the mixture fitted on each group (same order as ``groups``).
    skipped : list of (str, str)
        What was left out (a size larger than the cohort, a failed fit) and why.
    settings : dict
        sizes, repeats, seed, n_init, tol.
    """

    groups: dict[int, list[list[str]]] = field(default_factory=dict)
    fits: dict[int, list[TissueMixture]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def robustness_study(
    histograms: Mapping[str, Histogram],
    *,
    sizes: Sequence[int] = (10, 20, 30),
    repeats: int = 3,
    seed: int = 0,
    n_init: int = 6,
    tol: float = 1e-3,
) -> RobustnessResult:
    """Fit the pooled mixture on ``repeats`` random subsets of every size.

    Parameters
    ----------
    histograms : mapping of str to Histogram
        Lung HU histogram of every scan, by scan id.
    sizes : sequence of int
        Subset sizes, in scans. Sizes above the number of scans are skipped with the
        reason recorded.
    repeats : int
        Groups (subsets) per size.
    seed : int
        Seed of the subset draws and of every fit's k-means initialisation.
    n_init, tol : optional
        Fit settings, as in `radiolab.mixture.fit_mixture`.

    Returns
    -------
    RobustnessResult

    Raises
    ------
    DataError, ParameterError
        If there are no histograms (DataError), a size or ``repeats`` is below 1
        (ParameterError), or no subset could be fitted (FitError, a DataError).
    """
    if not histograms:
        raise DataError("no scan histograms to draw subsets from")
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ParameterError(f"sizes must be positive numbers of scans, got {sizes}")
    if int(repeats) < 1:
        raise ParameterError(f"repeats must be at least 1, got {repeats}")
    ids = sorted(histograms)
    result = RobustnessResult(settings={"sizes": sizes, "repeats": int(repeats), "seed": int(seed),
                                        "n_init": int(n_init), "tol": float(tol), "n_scans": len(ids)})
    rng = np.random.default_rng(seed)
    for size in sorted(set(sizes)):
        if size > len(ids):
            result.skipped.append((f"size {size}", f"only {len(ids)} scans available"))
            continue
        result.groups[size] = []
        result.fits[size] = []
        for repeat in range(int(repeats)):
            chosen = sorted(ids[i] for i in rng.choice(len(ids), size=size, replace=False))
            try:
                mixture = fit_mixture(sum_histograms(histograms[i] for i in chosen), seed=seed,
                                      n_init=n_init, tol=tol, n_scans=size)
            except FitError as error:
                result.skipped.append((f"size {size} group {repeat + 1}", f"fit failed: {error}"))
                continue
            result.groups[size].append(chosen)
            result.fits[size].append(mixture)
        if not result.fits[size]:
            del result.groups[size], result.fits[size]
    if not result.fits:
        reasons = "; ".join(f"{what}: {why}" for what, why in result.skipped)
        raise FitError(f"no subset could be fitted ({reasons})")
    return result


def parameter_spread(result: RobustnessResult) -> list[dict[str, Any]]:
    """Spread of every mixture parameter across the groups of each size.

    Returns
    -------
    list of dict
        One row per (size, class, parameter) with ``n_groups``, ``mean``, ``sd``
        (sample standard deviation, ddof=1; 0.0 for a single group), ``min``, ``max``
        and ``range`` (max - min). Parameters: ``mean_hu`` and ``sd_hu`` (HU) and
        ``weight`` (fraction of lung voxels).
    """
    rows = []
    for size in sorted(result.fits):
        fits = result.fits[size]
        for k, name in enumerate(CLASS_NAMES):
            for parameter, attribute in PARAMETERS:
                values = np.array([getattr(mixture, attribute)[k] for mixture in fits], dtype=float)
                rows.append({
                    "size": size, "class": name, "parameter": parameter, "n_groups": int(values.size),
                    "mean": float(values.mean()),
                    "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    "min": float(values.min()), "max": float(values.max()),
                    "range": float(values.max() - values.min()),
                })
    return rows


def load_histograms(labels_dir: str | os.PathLike[str]) -> tuple[dict[str, Histogram], dict[str, Any]]:
    """Read the ``<id>_hist.json`` files that ``radiolab segment`` caches.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        An output folder of ``radiolab segment``.

    Returns
    -------
    histograms : dict of str to Histogram
        By scan id.
    info : dict
        ``skipped``: list of (file, reason) for unreadable or empty histograms (one bad
        file does not stop the others); ``mask_keys``: the distinct lung-mask settings
        hashes found (more than one means mixed settings).

    Raises
    ------
    InputError
        If the folder does not exist or holds no histogram file.
    """
    folder = Path(labels_dir)
    if not folder.is_dir():
        raise InputError(folder, "no such folder")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(HIST_SUFFIX) and not p.name.startswith("."))
    if not files:
        raise InputError(folder, f"no cached histograms (*{HIST_SUFFIX}); run `radiolab segment` on the scans "
                                 "first, or give the scans themselves")
    histograms: dict[str, Histogram] = {}
    skipped: list[tuple[str, str]] = []
    keys: set[str] = set()
    for path in files:
        try:
            histogram, key = _read_histogram(path)
        except InputError as error:
            skipped.append((str(path), error.problem))
            continue
        if histogram.n_voxels == 0:
            skipped.append((str(path), "histogram holds no lung voxels"))
            continue
        histograms[path.name[: -len(HIST_SUFFIX)]] = histogram
        if key:
            keys.add(key)
    return histograms, {"skipped": skipped, "mask_keys": sorted(keys)}


def _read_histogram(path: Path) -> tuple[Histogram, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"not a readable JSON file: {error}") from None
    try:
        histogram = Histogram.from_json(data["histogram"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(path, f"not a radiolab histogram file: missing or bad field {error}") from None
    if histogram.counts.ndim != 1 or np.any(histogram.counts < 0):
        raise InputError(path, "histogram counts must be a list of non-negative integers")
    return histogram, str(data.get("mask_key") or "")


def histograms_from_scans(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    preset: str = "default",
    backend: str = "fast",
    progress: bool = False,
) -> tuple[dict[str, Histogram], dict[str, Any]]:
    """Run the lung-mask step of ``radiolab segment`` to get every scan's histogram.

    Masks and histograms are written to ``out_dir`` as ``segment`` would; a histogram
    already there with the same mask settings is reused. A scan that fails is skipped
    with its reason.

    Returns
    -------
    histograms : dict of str to Histogram
    info : dict
        ``skipped`` (list of (scan, reason)) and ``mask_keys``.
    """
    from tqdm.auto import tqdm

    from radiolab.segment import SegmentConfig, find_inputs, mask_scan, output_paths

    config = SegmentConfig(preset=preset, backend=backend)
    config.lung_settings()
    scans, skipped_inputs = find_inputs(inputs)
    histograms: dict[str, Histogram] = {}
    skipped: list[tuple[str, str]] = [(str(p), r) for p, r in skipped_inputs]
    key = config.mask_key()
    for scan in tqdm(scans, desc="lung masks", unit="scan", disable=None if progress else True, leave=False):
        cached = output_paths(out_dir, scan.id)["histogram"]
        if cached.is_file():
            try:
                histogram, cached_key = _read_histogram(cached)
            except InputError:
                cached_key = ""
            if cached_key == key:
                histograms[scan.id] = histogram
                continue
        try:
            histogram, _, _ = mask_scan(scan, os.fspath(out_dir), config)
        except (RadiolabError, OSError, MemoryError) as error:  # bad scan or its file; a bug shows
            skipped.append((scan.path, str(error) or type(error).__name__))
            continue
        histograms[scan.id] = histogram
    return histograms, {"skipped": skipped, "mask_keys": [key]}


def _has_histograms(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path) and any(name.endswith(HIST_SUFFIX) for name in os.listdir(path))


def run_robustness(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    sizes: Sequence[int] = (10, 20, 30),
    repeats: int = 3,
    seed: int = 0,
    n_init: int = 6,
    tol: float = 1e-3,
    preset: str = "default",
    backend: str = "fast",
    progress: bool = False,
) -> dict[str, Any]:
    """The robustness study from a labels folder or from scans, with its outputs.

    Parameters
    ----------
    inputs : path or sequence of paths
        An output folder of ``radiolab segment`` (its ``*_hist.json`` are used), or scan
        files and folders: their lung masks and histograms are then computed first and
        written to ``<out_dir>/masks``.
    out_dir : str or os.PathLike
        Folder (created) for ``robustness.json`` (settings, every group's ids and
        parameters, the spread), ``robustness.csv`` (the spread, one row per size,
        class and parameter) and ``robustness.png`` (the Gaussians, one panel per size).
    sizes, repeats, seed, n_init, tol : optional
        As in `robustness_study`.
    preset, backend : str
        Lung-mask settings when scans are given (as ``radiolab segment``).
    progress : bool
        Show a progress bar while masking scans.

    Returns
    -------
    dict
        The contents of ``robustness.json``.

    Raises
    ------
    InputError
        If an input is missing or holds neither histograms nor scans.
    DataError, ParameterError
        As `robustness_study`.
    """
    from radiolab import __version__
    from radiolab.io import write_json_atomic, write_text_atomic
    from radiolab.plots import mixture_panels

    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise ParameterError("no input given")
    out = Path(out_dir)
    if len(paths) == 1 and _has_histograms(paths[0]):
        source = "histograms"
        histograms, info = load_histograms(paths[0])
    else:
        source = "scans"
        histograms, info = histograms_from_scans(paths, out / "masks", preset=preset, backend=backend,
                                                 progress=progress)
    if not histograms:
        reasons = "; ".join(f"{p}: {r}" for p, r in info["skipped"][:3])
        raise InputError(os.fspath(paths[0]), f"no usable scan histogram ({reasons})")
    result = robustness_study(histograms, sizes=sizes, repeats=repeats, seed=seed, n_init=n_init, tol=tol)
    spread = parameter_spread(result)
    report: dict[str, Any] = {
        "inputs": [os.fspath(p) for p in paths],
        "source": source,
        "settings": result.settings,
        "mask_keys": info["mask_keys"],
        "groups": [
            {"size": size, "group": index + 1, "ids": ids, "means_hu": fit.means.tolist(),
             "sds_hu": fit.stds.tolist(), "weights": fit.weights.tolist(), "log_likelihood": fit.log_likelihood}
            for size in sorted(result.fits)
            for index, (ids, fit) in enumerate(zip(result.groups[size], result.fits[size]))
        ],
        "spread": spread,
        "skipped_inputs": [{"input": p, "reason": r} for p, r in info["skipped"]],
        "skipped": [{"what": w, "reason": r} for w, r in result.skipped],
        "radiolab_version": __version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    mixture_panels(result.fits, out / "robustness.png")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SPREAD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in spread:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(out / "robustness.csv", buffer.getvalue())
    write_json_atomic(out / "robustness.json", report)
    return report
