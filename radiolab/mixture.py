"""Pooled five-component Gaussian mixture of lung HU and maximum-a-posteriori labels.

Zaffino et al. (2021) fit one 1-D Gaussian mixture (scikit-learn, k-means
initialisation, 6 initialisations, tolerance 1e-3) on the lung voxels of the whole
cohort. HU are integers, so radiolab fits it exactly on *all* lung voxels through
per-scan HU histograms summed over the cohort: expectation-maximisation and k-means
initialisation are weighted by the bin counts, and the fit costs the same for one scan
or ten thousand. Non-integer input is rounded to 1 HU bins first.

Components sorted by mean give labels 1..5: air, healthy lung, ground-glass opacity,
consolidation, other dense tissue; 0 is outside the lung mask.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radiolab.errors import FitError, InputError

CLASS_NAMES = ("air", "healthy", "ggo", "consolidation", "other")
CLASS_TITLES = ("air", "healthy lung", "ground-glass opacity", "consolidation", "other dense tissue")
N_CLASSES = len(CLASS_NAMES)
INT16_OFFSET = 32768
# Variance of the rounding of a continuous HU value to an integer bin (uniform over one
# HU): the smallest spread integer data can resolve, and the floor of fitted variances.
ROUNDING_VARIANCE_HU2 = 1.0 / 12.0
BUILTIN_MODELS = ("zaffino2021",)  # radiolab/data/models/<name>.json


@dataclass
class Histogram:
    """Counts of integer HU values: ``counts[i]`` voxels have HU ``lo + i``."""

    lo: int
    counts: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(self.counts.sum())

    @property
    def values(self) -> np.ndarray:
        return np.arange(self.lo, self.lo + len(self.counts), dtype=np.float64)

    def __add__(self, other: "Histogram") -> "Histogram":
        lo = min(self.lo, other.lo)
        hi = max(self.lo + len(self.counts), other.lo + len(other.counts))
        counts = np.zeros(hi - lo, dtype=np.int64)
        counts[self.lo - lo: self.lo - lo + len(self.counts)] += self.counts
        counts[other.lo - lo: other.lo - lo + len(other.counts)] += other.counts
        return Histogram(lo, counts)

    def to_json(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return {"lo": 0, "counts": []}
        first, last = int(nonzero[0]), int(nonzero[-1])
        return {"lo": self.lo + first, "counts": self.counts[first: last + 1].tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Histogram":
        return cls(int(data["lo"]), np.asarray(data["counts"], dtype=np.int64))


def sum_histograms(histograms) -> Histogram:
    """Sum per-scan histograms (the reduce step of the pooled fit)."""
    total = None
    for histogram in histograms:
        total = histogram if total is None else total + histogram
    if total is None:
        raise ValueError("no histograms to sum")
    return total


def lung_histogram(volume: np.ndarray, mask: np.ndarray, *, clip_hu: float = -1000.0) -> Histogram:
    """HU histogram of the voxels inside a mask, at 1 HU bins.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU; non-integer values are rounded to the nearest HU.
    mask : numpy.ndarray
        Boolean lung mask of the same shape.
    clip_hu : float
        HU below this are counted as this value (the paper's clipping at -1000 HU).

    Returns
    -------
    Histogram
    """
    if volume.shape != mask.shape:
        raise ValueError(f"volume {volume.shape} and mask {mask.shape} differ in shape")
    values = volume[mask]
    if values.dtype.kind == "f":
        values = np.rint(values)
    values = np.maximum(values.astype(np.int64, copy=False), int(clip_hu))
    if values.size == 0:
        return Histogram(int(clip_hu), np.zeros(0, dtype=np.int64))
    lo = int(values.min())
    return Histogram(lo, np.bincount(values - lo).astype(np.int64))


@dataclass
class TissueMixture:
    """A 1-D Gaussian mixture over HU with components sorted by mean.

    Attributes
    ----------
    means, variances, weights : numpy.ndarray
        Per component: mean (HU), variance (HU^2), mixing weight (sums to 1).
    log_likelihood : float or None
        Mean log-likelihood per voxel of the data it was fitted on.
    n_voxels, n_scans : int
        Size of the data it was fitted on.
    settings : dict
        Fit settings (seed, initialisations, tolerance, ...).
    """

    means: np.ndarray
    variances: np.ndarray
    weights: np.ndarray
    log_likelihood: float | None = None
    n_voxels: int = 0
    n_scans: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "fit"

    def __post_init__(self) -> None:
        self.means = np.asarray(self.means, dtype=np.float64)
        self.variances = np.asarray(self.variances, dtype=np.float64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        _validate_parameters(self.means, self.variances, self.weights, where=self.source)
        order = np.argsort(self.means, kind="stable")
        self.means, self.variances, self.weights = self.means[order], self.variances[order], self.weights[order]

    @property
    def stds(self) -> np.ndarray:
        return np.sqrt(self.variances)

    def weighted_log_prob(self, hu: np.ndarray) -> np.ndarray:
        """log(weight_k) + log N(hu | mean_k, variance_k) in float64, shape (n, 5)."""
        x = np.asarray(hu, dtype=np.float64)[:, None]
        return (np.log(self.weights) - 0.5 * np.log(2 * np.pi * self.variances)
                - 0.5 * (x - self.means) ** 2 / self.variances)

    def mean_log_likelihood(self, histogram: Histogram) -> float:
        """Mean log-likelihood per voxel of the voxels in a histogram."""
        log_prob = _logsumexp(self.weighted_log_prob(histogram.values))
        return float(np.dot(histogram.counts, log_prob) / histogram.counts.sum())

    def label_table(self, *, clip_hu: float = -1000.0) -> np.ndarray:
        """MAP label (1..5) of every int16 HU value, indexed by ``hu + 32768``.

        Values below ``clip_hu`` get the label of ``clip_hu``, as the paper clipped.
        """
        hu = np.arange(-INT16_OFFSET, INT16_OFFSET, dtype=np.float64)
        hu = np.maximum(hu, clip_hu)
        return (np.argmax(self.weighted_log_prob(hu), axis=1) + 1).astype(np.uint8)

    def to_json(self) -> dict[str, Any]:
        from radiolab import __version__

        return {
            "format": "radiolab.TissueMixture/1",
            "classes": list(CLASS_NAMES),
            "means_hu": self.means.tolist(),
            "stds_hu": self.stds.tolist(),
            "variances_hu2": self.variances.tolist(),
            "weights": self.weights.tolist(),
            "log_likelihood": self.log_likelihood,
            "n_voxels": int(self.n_voxels),
            "n_scans": int(self.n_scans),
            "settings": self.settings,
            "source": self.source,
            "radiolab_version": __version__,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "json") -> "TissueMixture":
        try:
            means = data["means_hu"]
            if "variances_hu2" in data:
                variances = data["variances_hu2"]
            else:
                variances = [float(s) ** 2 if float(s) > 0 else -1.0 for s in data["stds_hu"]]
            weights = data["weights"]
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(source, f"not a radiolab mixture model: missing or bad field {error}") from None
        return cls(means, variances, weights, log_likelihood=data.get("log_likelihood"),
                   n_voxels=int(data.get("n_voxels") or 0), n_scans=int(data.get("n_scans") or 0),
                   settings=dict(data.get("settings") or {}), source=source)


def _validate_parameters(means, variances, weights, *, where: str) -> None:
    shapes = {means.shape, variances.shape, weights.shape}
    if len(shapes) != 1 or means.ndim != 1:
        raise InputError(where, f"means, variances and weights must be equal-length lists, got shapes {shapes}")
    if means.shape[0] != N_CLASSES:
        raise InputError(where, f"a tissue mixture needs {N_CLASSES} components, found {means.shape[0]}")
    for name, values in (("means", means), ("variances", variances), ("weights", weights)):
        if not np.all(np.isfinite(values)):
            raise InputError(where, f"{name} must be finite numbers, got {values.tolist()}")
    if np.any(variances <= 0):
        raise InputError(where, f"variances (standard deviations) must be positive, got {variances.tolist()}")
    if np.any(weights < 0) or not math.isclose(float(weights.sum()), 1.0, abs_tol=1e-6):
        raise InputError(where, f"weights must be non-negative and sum to 1, got {weights.tolist()}")


def _logsumexp(a: np.ndarray) -> np.ndarray:
    peak = a.max(axis=1, keepdims=True)
    return (peak + np.log(np.exp(a - peak).sum(axis=1, keepdims=True)))[:, 0]


def fit_mixture(
    histogram: Histogram,
    *,
    n_components: int = N_CLASSES,
    n_init: int = 6,
    tol: float = 1e-3,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    min_variance: float = ROUNDING_VARIANCE_HU2,
    seed: int = 0,
    n_scans: int = 1,
    init: TissueMixture | None = None,
) -> TissueMixture:
    """Fit the Gaussian mixture exactly on all voxels of a (pooled) HU histogram.

    The algorithm is scikit-learn's ``GaussianMixture`` (k-means initialisation,
    ``n_init`` restarts, convergence when the mean log-likelihood changes by less
    than ``tol``, best restart kept) with every sample weighted by its bin count.

    Parameters
    ----------
    histogram : Histogram
        Lung HU counts, usually summed over the cohort with `sum_histograms`.
    n_components : int
        Number of Gaussians; radiolab's tissue classes need 5.
    n_init, tol, max_iter, reg_covar : optional
        As in scikit-learn (the paper: 6 initialisations, tolerance 1e-3).
    min_variance : float
        Floor of every component's variance after each M-step, HU². The default, 1/12
        HU², is the variance of rounding to integer HU. Without it a component can
        collapse onto one HU bin, such as the spike of voxels clipped to -1000 HU,
        where scikit-learn's ``reg_covar`` (1e-6 HU²) leaves the likelihood all but
        unbounded (a density of 400 per HU); with it the density of a component stays
        below 1.4 per HU, and a component on the spike keeps a standard deviation of
        at least 0.29 HU. Data that span many HU (real lungs) never reach the floor, so
        fits there are unchanged.
    seed : int
        Random seed of the k-means initialisations; equal seeds give equal fits.
    n_scans : int
        Number of scans pooled, recorded in the model.
    init : TissueMixture, optional
        Start EM from these parameters once instead of from ``n_init`` k-means
        initialisations (scikit-learn's ``weights_init``/``means_init``/``precisions_init``).

    Returns
    -------
    TissueMixture

    Raises
    ------
    FitError
        If the histogram holds fewer distinct HU values than components.
    """
    present = np.flatnonzero(histogram.counts)
    if present.size < n_components:
        raise FitError(
            f"cannot fit {n_components} components on {present.size} distinct HU values "
            f"({histogram.n_voxels} voxels)"
        )
    x = histogram.values[present]
    w = histogram.counts[present].astype(np.float64)
    total = w.sum()
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(1 if init is not None else n_init):
        if init is not None:
            weights, means, variances = init.weights, init.means, init.variances
        else:
            assignment = weighted_kmeans_1d(x, w, n_components, rng)
            resp = np.zeros((x.size, n_components))
            resp[np.arange(x.size), assignment] = 1.0
            weights, means, variances = _m_step(x, w, resp, reg_covar, min_variance, total)
        lower_bound = -np.inf
        converged = False
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            previous = lower_bound
            log_prob = np.log(weights) - 0.5 * np.log(2 * np.pi * variances) - 0.5 * (x[:, None] - means) ** 2 / variances
            norm = _logsumexp(log_prob)
            lower_bound = float(np.dot(w, norm) / total)
            resp = np.exp(log_prob - norm[:, None])
            weights, means, variances = _m_step(x, w, resp, reg_covar, min_variance, total)
            if abs(lower_bound - previous) < tol:
                converged = True
                break
        if best is None or lower_bound > best[0]:
            best = (lower_bound, weights, means, variances, converged, n_iter)
    _, weights, means, variances, converged, n_iter = best
    settings = {"method": "histogram-weighted EM", "n_components": n_components, "n_init": n_init,
                "tol": tol, "max_iter": max_iter, "reg_covar": reg_covar,
                "min_variance_hu2": min_variance, "seed": seed,
                "init": "k-means++ and Lloyd, weighted" if init is None else "given", "converged": converged,
                "n_iter": n_iter}
    mixture = TissueMixture(means, variances, weights, n_voxels=histogram.n_voxels,
                            n_scans=n_scans, settings=settings, source="fit")
    mixture.log_likelihood = mixture.mean_log_likelihood(histogram)
    return mixture


def weighted_kmeans_1d(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator,
                       *, max_iter: int = 300) -> np.ndarray:
    """k-means of sorted 1-D points with weights: k-means++ seeding, then Lloyd.

    Returns the cluster index (0..k-1, in order of centre) of every point. In 1-D the
    nearest-centre assignment is a split of the sorted points at the centres' midpoints,
    so each Lloyd step costs a ``searchsorted`` over the histogram bins.
    """
    cumulative = np.cumsum(w)
    centres = [x[np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right").clip(0, x.size - 1)]]
    for _ in range(1, k):
        d2 = np.min((x[:, None] - np.asarray(centres)[None, :]) ** 2, axis=1) * w
        cumulative = np.cumsum(d2)
        if cumulative[-1] <= 0:
            break
        index = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
        centres.append(x[min(index, x.size - 1)])
    centres = np.unique(np.asarray(centres, dtype=np.float64))
    while centres.size < k:  # fewer distinct seeds than clusters: split the widest gap
        gaps = np.diff(np.concatenate([[x[0]], centres, [x[-1]]]))
        widest = int(np.argmax(gaps))
        lo = x[0] if widest == 0 else centres[widest - 1]
        centres = np.unique(np.append(centres, lo + gaps[widest] / 2))
    assignment = np.zeros(x.size, dtype=np.intp)
    for _ in range(max_iter):
        bounds = (centres[1:] + centres[:-1]) / 2
        assignment = np.searchsorted(bounds, x, side="left")
        mass = np.bincount(assignment, weights=w, minlength=k)
        sums = np.bincount(assignment, weights=w * x, minlength=k)
        updated = np.where(mass > 0, sums / np.where(mass > 0, mass, 1), centres)
        if np.allclose(updated, centres, rtol=0, atol=1e-9):
            break
        centres = np.sort(updated)
    return assignment


def _m_step(x, w, resp, reg_covar, min_variance, total):
    weighted = resp * w[:, None]
    nk = weighted.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = (weighted * x[:, None]).sum(axis=0) / nk
    variances = (weighted * (x[:, None] - means) ** 2).sum(axis=0) / nk + reg_covar
    return nk / total, means, np.maximum(variances, min_variance)


def fit_mixture_reference(
    voxels: np.ndarray, *, n_init: int = 6, tol: float = 1e-3, seed: int = 0, subsample: int = 4
) -> TissueMixture:
    """The paper's fit: scikit-learn GaussianMixture on every ``subsample``-th voxel as floats."""
    from sklearn.mixture import GaussianMixture

    data = np.asarray(voxels[::subsample], dtype=np.float64).reshape(-1, 1)
    model = GaussianMixture(n_components=N_CLASSES, n_init=n_init, tol=tol, random_state=seed).fit(data)
    return _from_sklearn(model, source="scikit-learn", n_voxels=data.shape[0])


def to_sklearn(mixture: TissueMixture):
    """A fitted scikit-learn GaussianMixture with these parameters (components by mean)."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n_components=len(mixture.means), covariance_type="full")
    model.weights_ = mixture.weights.copy()
    model.means_ = mixture.means[:, None].copy()
    model.covariances_ = mixture.variances[:, None, None].copy()
    model.precisions_cholesky_ = (1.0 / np.sqrt(mixture.variances))[:, None, None]
    model.precisions_ = (1.0 / mixture.variances)[:, None, None]
    return model


def _from_sklearn(model, *, source: str, n_voxels: int = 0) -> TissueMixture:
    covariances = np.asarray(model.covariances_, dtype=np.float64).reshape(-1)
    return TissueMixture(np.asarray(model.means_).reshape(-1), covariances, np.asarray(model.weights_),
                         n_voxels=n_voxels, settings={"method": "scikit-learn GaussianMixture"}, source=source)


def label_tissue(
    volume: np.ndarray,
    mask: np.ndarray,
    mixture: TissueMixture,
    *,
    clip_hu: float = -1000.0,
    backend: str = "fast",
) -> np.ndarray:
    """Maximum-a-posteriori tissue label of every lung voxel.

    Parameters
    ----------
    volume : numpy.ndarray
        CT in HU, indexed (z, y, x); non-integer values are rounded to 1 HU.
    mask : numpy.ndarray
        Boolean lung mask of the same shape.
    mixture : TissueMixture
        Components sorted by mean (labels 1..5).
    clip_hu : float
        HU below this are labelled as this value.
    backend : {"fast", "reference"}
        ``fast``: a float64 lookup table over the int16 HU range. ``reference``:
        scikit-learn's ``GaussianMixture.predict`` on float64 voxels (never on
        integers, which truncates its log-probabilities and shifts class boundaries).

    Returns
    -------
    numpy.ndarray
        uint8 labels: 0 outside the mask, 1 air, 2 healthy lung, 3 ground-glass
        opacity, 4 consolidation, 5 other dense tissue.
    """
    if volume.shape != mask.shape:
        raise ValueError(f"volume {volume.shape} and mask {mask.shape} differ in shape")
    from radiolab.lung import bounding_box

    labels = np.zeros(volume.shape, dtype=np.uint8)
    box = bounding_box(mask)
    if box is None:
        return labels
    sub_mask = mask[box]
    sub = volume[box]
    if backend == "reference":
        values = np.maximum(sub[sub_mask].astype(np.float64), clip_hu)
        labels[box][sub_mask] = to_sklearn(mixture).predict(values[:, None]) + 1
        return labels
    if sub.dtype.kind == "f":
        sub = np.clip(np.rint(sub), -INT16_OFFSET, INT16_OFFSET - 1).astype(np.int16)
    elif sub.dtype != np.int16:
        sub = np.clip(sub, -INT16_OFFSET, INT16_OFFSET - 1).astype(np.int16)
    table = mixture.label_table(clip_hu=clip_hu)
    # int16 -> uint16 with the sign bit flipped orders -32768..32767 as 0..65535.
    index = sub.view(np.uint16) ^ np.uint16(0x8000)
    labels[box] = np.where(sub_mask, table[index], np.uint8(0))
    return labels


def load_mixture(spec: str | os.PathLike[str], *, trust_pickle: bool = False) -> TissueMixture:
    """Load a mixture by built-in name (``zaffino2021``) or from a file.

    Parameters
    ----------
    spec : str or os.PathLike
        A built-in name, a radiolab JSON model, or a scikit-learn GaussianMixture saved
        with joblib/pickle (``.joblib``, ``.pkl``, ``.pickle``).
    trust_pickle : bool
        Unpickling runs code stored in the file; it is refused unless this is True.

    Raises
    ------
    InputError
        Naming the file, if it is missing, not valid, or a pickle without trust.
    """
    from radiolab.data import resource

    spec = os.fspath(spec)
    if spec in BUILTIN_MODELS:
        path = resource("models", f"{spec}.json")
        source = spec
    else:
        path = Path(spec)
        source = str(path)
    if not path.is_file():
        raise InputError(source, "model file not found; give a JSON file or one of: " + ", ".join(BUILTIN_MODELS))
    if path.name.lower().endswith((".joblib", ".pkl", ".pickle")):
        if not trust_pickle:
            raise InputError(source, "refusing to unpickle a model: unpickling runs code stored in the "
                             "file; pass --trust-pickle only for files you trust")
        import joblib

        model = joblib.load(path)
        if not hasattr(model, "means_"):
            raise InputError(source, f"pickled object {type(model).__name__} is not a fitted GaussianMixture")
        return _from_sklearn(model, source=source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(source, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InputError(source, "model JSON must be an object")
    return TissueMixture.from_json(data, source=source)
