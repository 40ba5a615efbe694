"""Subject aggregation, ROC analysis, thresholds and reader comparison (no torch).

* `trimmed_subject_mean`: Yang et al. 2020's subject probability, the mean over the
  subject's slices in slice order after dropping the first and last 10 %.
* `auc_ci`: AUC with a 95 % confidence interval by DeLong's method (DeLong et al.,
  Biometrics 1988; the fast form of Sun & Xu, IEEE SPL 2014) or a seeded bootstrap.
* `choose_threshold`: Youden's J, a target sensitivity, or a fixed value.
* `binary_metrics`: accuracy, sensitivity, specificity, F1 and the fourfold table.
* `mcnemar_exact` / `compare_reader`: the exact (binomial) McNemar test on the
  discordant pairs of two readings of the same subjects.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from radiolab.errors import DataError, ParameterError


def trimmed_subject_mean(probabilities: Sequence[float], order: Sequence[float] | None = None, *,
                         trim: float = 0.1) -> tuple[float, int]:
    """Mean slice probability after dropping the first and last ``trim`` of the slices.

    Parameters
    ----------
    probabilities : sequence of float
        One probability per slice.
    order : sequence of float, optional
        Slice positions (e.g. z in mm) giving the slice order; None keeps the order given.
    trim : float
        Share dropped at each end, in [0, 0.5); ``floor(trim * n)`` slices per end.

    Returns
    -------
    mean : float
    used : int
        Number of slices averaged.

    Examples
    --------
    >>> trimmed_subject_mean([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.0], trim=0.1)
    (0.45, 8)
    """
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0:
        raise ValueError("a subject needs at least one slice")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must lie in [0, 0.5), got {trim}")
    if order is not None:
        p = p[np.argsort(np.asarray(order, dtype=float), kind="stable")]
    k = int(math.floor(trim * p.size + 1e-9))
    kept = p[k:p.size - k]
    return float(kept.mean()), int(kept.size)


def _check_binary(y_true: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def delong_auc(y_true: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """AUC and its DeLong variance.

    Raises
    ------
    ValueError
        If one class is missing.
    """
    y, s = _check_binary(y_true, scores)
    pos, neg = s[y == 1], s[y == 0]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise DataError(f"AUC needs both classes; found {m} positive and {n} negative")
    ranks_all = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (ranks_all[:m] - stats.rankdata(pos)) / n          # per positive: share of negatives below
    v01 = 1.0 - (ranks_all[m:] - stats.rankdata(neg)) / m    # per negative: share of positives above
    auc = float(v10.mean())
    variance = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    return auc, float(variance)


def auc_ci(y_true: Sequence[int], scores: Sequence[float], *, level: float = 0.95, method: str = "delong",
           n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """AUC with a confidence interval.

    Parameters
    ----------
    method : {"delong", "bootstrap"}
        DeLong's normal interval clipped to [0, 1], or the percentile interval of
        ``n_boot`` stratified bootstrap resamples (seeded).

    Returns
    -------
    (auc, low, high)
    """
    auc, variance = delong_auc(y_true, scores)
    if method == "delong":
        half = stats.norm.ppf(0.5 + level / 2.0) * math.sqrt(max(variance, 0.0))
        return auc, max(0.0, auc - half), min(1.0, auc + half)
    if method != "bootstrap":
        raise ParameterError(f"unknown CI method {method!r}; valid: delong, bootstrap")
    y, s = _check_binary(y_true, scores)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    values = np.empty(n_boot)
    for b in range(n_boot):
        sample = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        values[b] = delong_auc(y[sample], s[sample])[0]
    low, high = np.quantile(values, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return auc, float(low), float(high)


def choose_threshold(y_true: Sequence[int], scores: Sequence[float], *, rule: str | float = "youden",
                     sensitivity: float | None = None) -> float:
    """Decision threshold (predict positive when score >= threshold).

    Parameters
    ----------
    rule : "youden" or float
        ``"youden"``: the ROC point maximising sensitivity + specificity - 1;
        a number is returned as is.
    sensitivity : float, optional
        Target sensitivity: the highest threshold whose sensitivity reaches it (so the
        best specificity at that sensitivity). Overrides ``rule``.
    """
    if sensitivity is None and not isinstance(rule, str):
        return float(rule)
    if sensitivity is None and rule != "youden":
        raise ParameterError(f"unknown threshold rule {rule!r}; valid: youden or a number")
    from sklearn.metrics import roc_curve

    y, s = _check_binary(y_true, scores)
    if y.min() == y.max():
        raise DataError("choosing a threshold needs both classes among the validation subjects")
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # drop the +inf start point
    if sensitivity is not None:
        reach = np.flatnonzero(tpr >= sensitivity - 1e-12)
        return float(thresholds[reach[0]])
    return float(thresholds[int(np.argmax(tpr - fpr))])


def binary_metrics(y_true: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity, F1, PPV, NPV and the fourfold table at a
    threshold (positive when score >= threshold); undefined ratios are None."""
    y, s = _check_binary(y_true, scores)
    predicted = (s >= threshold).astype(int)
    tp = int(((predicted == 1) & (y == 1)).sum())
    tn = int(((predicted == 0) & (y == 0)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    return {"threshold": float(threshold), "n": int(y.size), **fourfold_summary(tp, fp, fn, tn)}


def fourfold_summary(tp: int, fp: int, fn: int, tn: int) -> dict[str, Any]:
    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def mcnemar_exact(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of two paired readings.

    ``b`` counts subjects only the first got right, ``c`` only the second; the two-sided
    p-value is the binomial test of ``b`` successes in ``b + c`` trials at 1/2 (1.0 when
    there is no discordant pair).
    """
    first = np.asarray(first_correct, dtype=bool)
    second = np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape:
        raise DataError("both readings must cover the same subjects")
    b = int((first & ~second).sum())
    c = int((~first & second).sum())
    both = int((first & second).sum())
    neither = int((~first & ~second).sum())
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return {"both_correct": both, "first_only": b, "second_only": c, "both_wrong": neither, "p_value": p}


def compare_reader(y_true: Sequence[int], model_positive: Sequence[int], reader_positive: Sequence[int]) -> dict[str, Any]:
    """Model and human reader on the same subjects: each one's fourfold table against
    the truth, and exact McNemar tests of correctness overall, among positives
    (sensitivity) and among negatives (specificity)."""
    y = np.asarray(y_true).astype(int)
    model = np.asarray(model_positive).astype(int)
    reader = np.asarray(reader_positive).astype(int)
    result: dict[str, Any] = {}
    for name, calls in (("model", model), ("reader", reader)):
        tp = int(((calls == 1) & (y == 1)).sum())
        tn = int(((calls == 0) & (y == 0)).sum())
        fp = int(((calls == 1) & (y == 0)).sum())
        fn = int(((calls == 0) & (y == 1)).sum())
        result[name] = fourfold_summary(tp, fp, fn, tn)
    model_right, reader_right = model == y, reader == y
    result["mcnemar"] = {
        "all": mcnemar_exact(model_right, reader_right),
        "positives": mcnemar_exact(model_right[y == 1], reader_right[y == 1]),
        "negatives": mcnemar_exact(model_right[y == 0], reader_right[y == 0]),
    }
    result["n"] = int(y.size)
    return result
