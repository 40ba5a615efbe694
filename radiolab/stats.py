"""Agreement between automatic lung involvement and an expert's severity score.

Zaffino et al. (2021) validate the tissue labels by correlating each scan's lung
involvement LI (%, `radiolab.scoring`) with a radiologist's 0-5 score S: Pearson
C = 0.82 (p < 1e-6) on the whole cohort and, resampling to balance the S groups,
R^2 = 0.72 +- 0.03 and C = 0.89 +- 0.01 over 100 iterations.

This module computes, on arrays:

- `correlate`: Pearson C with its p-value, Spearman rho, and the least-squares line
  S = intercept + slope * LI with its R^2;
- `balanced_resample_indices` and `resampled_correlation`: the resampling against class
  imbalance. radiolab reads the paper's method as follows: every iteration draws the
  same number of scans from every S group (by default the size of the smallest group),
  with replacement, and refits the line on the drawn scans; the mean and the sample
  standard deviation (ddof=1) of R^2 and C over the iterations are reported;
- `auto_score`: the score S_auto that the radiologist's bins give to LI, see
  `SCORE_BINS`;
- `agreement`: quadratic-weighted Cohen's kappa and the S vs S_auto confusion matrix.

`run_correlation` reads ``scores.csv`` and ``summary.csv``, joins them on the scan id,
and writes ``correlation.json``, ``correlation_box.png`` and ``correlation_scatter.png``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radiolab.errors import DataError, InputError, ParameterError

SCORES = tuple(range(6))
# S_auto bins on LI in %: (score, lower bound, upper bound, bound convention).
SCORE_BINS = (
    (0, 0.0, 0.0, "LI = 0"),
    (1, 0.0, 5.0, "0 < LI < 5"),
    (2, 5.0, 25.0, "5 <= LI <= 25"),
    (3, 25.0, 50.0, "25 < LI <= 50"),
    (4, 50.0, 75.0, "50 < LI <= 75"),
    (5, 75.0, 100.0, "LI > 75"),
)
_DRIVE = re.compile(r"^[A-Za-z]:")


# -- statistics on arrays ---------------------------------------------------------------

def _paired(li: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(li, dtype=np.float64).ravel()
    y = np.asarray(scores, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise DataError(f"LI and S differ in length: {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError("LI and S must be finite numbers")
    if x.size < 3:
        raise DataError(f"a correlation needs at least 3 scans, got {x.size}")
    if np.ptp(y) == 0:
        raise DataError(f"all scans have the same score S = {y[0]:g}; a correlation needs two or more")
    if np.ptp(x) == 0:
        raise DataError(f"all scans have the same LI = {x[0]:g} %; a correlation needs two or more")
    return x, y


def correlate(li: Sequence[float], scores: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of LI with S, and the line S = a + b * LI.

    Parameters
    ----------
    li : sequence of float
        Lung involvement per scan, in %.
    scores : sequence of float
        Expert score per scan (0-5), in the same order.

    Returns
    -------
    dict
        ``n``; ``pearson_r`` and its two-sided ``pearson_p``; ``spearman_rho`` and
        ``spearman_p``; ``slope`` (score per % LI), ``intercept`` and ``r2`` of the
        least-squares regression of S on LI (R^2 = pearson_r^2 for a straight line).

    Raises
    ------
    DataError
        If the lengths differ, a value is not finite, there are fewer than 3 scans, or
        S or LI is constant.
    """
    from scipy import stats

    x, y = _paired(li, scores)
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    line = stats.linregress(x, y)
    return {
        "n": int(x.size),
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
        "r2": float(line.rvalue) ** 2,
        "slope": float(line.slope),
        "intercept": float(line.intercept),
    }


def balanced_resample_indices(
    scores: Sequence[float],
    *,
    iterations: int = 100,
    per_group: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of balanced resamples: ``per_group`` draws from every score group.

    Parameters
    ----------
    scores : sequence of float
        Score of every scan; scans with equal scores form a group.
    iterations : int
        Number of resamples.
    per_group : int, optional
        Scans drawn from every group, with replacement; default the size of the
        smallest group.
    seed : int
        Seed of ``numpy.random.default_rng``; equal seeds give equal indices.

    Returns
    -------
    numpy.ndarray
        Integer array of shape (iterations, per_group * number of groups); row ``i``
        holds the scans of resample ``i``, grouped by increasing score.

    Raises
    ------
    DataError, ParameterError
        If there are fewer than two groups, or iterations or per_group is below 1.
    """
    values = np.asarray(scores).ravel()
    groups = np.unique(values)
    if groups.size < 2:
        raise DataError(f"balanced resampling needs at least two score groups, got {groups.tolist()}")
    if int(iterations) < 1:
        raise ParameterError(f"iterations must be at least 1, got {iterations}")
    members = [np.flatnonzero(values == group) for group in groups]
    draws = min(m.size for m in members) if per_group is None else int(per_group)
    if draws < 1:
        raise ParameterError(f"per_group must be at least 1, got {per_group}")
    rng = np.random.default_rng(seed)
    blocks = [m[rng.integers(0, m.size, size=(int(iterations), draws))] for m in members]
    return np.concatenate(blocks, axis=1)


def resampled_correlation(
    li: Sequence[float],
    scores: Sequence[float],
    *,
    iterations: int = 100,
    per_group: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Pearson C and R^2 of the line S = a + b * LI refitted on balanced resamples.

    Parameters
    ----------
    li, scores : sequence of float
        LI (%) and S per scan.
    iterations, per_group, seed : optional
        As in `balanced_resample_indices`.

    Returns
    -------
    dict
        ``r``, ``r2`` (R^2 of each resample's line on its own scans), ``r2_all`` (R^2 of
        each resample's line on all scans, which can be negative), ``slope`` and
        ``intercept``: numpy arrays with one value per valid iteration; ``per_group``,
        ``group_sizes`` ({score: scans}), and ``degenerate``: iterations left out
        because every drawn scan had the same LI (no line can be fitted).

    Raises
    ------
    DataError, ParameterError
        As `correlate` and `balanced_resample_indices`.
    """
    x, y = _paired(li, scores)
    index = balanced_resample_indices(y, iterations=iterations, per_group=per_group, seed=seed)
    xs, ys = x[index], y[index]
    xc = xs - xs.mean(axis=1, keepdims=True)
    yc = ys - ys.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", xc, xc)
    syy = np.einsum("ij,ij->i", yc, yc)
    sxy = np.einsum("ij,ij->i", xc, yc)
    valid = (sxx > 0) & (syy > 0)
    r = sxy[valid] / np.sqrt(sxx[valid] * syy[valid])
    slope = sxy[valid] / sxx[valid]
    intercept = ys.mean(axis=1)[valid] - slope * xs.mean(axis=1)[valid]
    residual = ((y[None, :] - intercept[:, None] - slope[:, None] * x[None, :]) ** 2).sum(axis=1)
    r2_all = 1.0 - residual / float(((y - y.mean()) ** 2).sum())
    groups, sizes = np.unique(y, return_counts=True)
    return {
        "r": r,
        "r2": r**2,
        "r2_all": r2_all,
        "slope": slope,
        "intercept": intercept,
        "per_group": index.shape[1] // groups.size,
        "group_sizes": {_score_key(g): int(n) for g, n in zip(groups, sizes)},
        "degenerate": int(np.count_nonzero(~valid)),
    }


def _score_key(value: float) -> str:
    return f"{value:g}"


def _mean_sd(values: np.ndarray) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    sd = float(np.std(values, ddof=1)) if values.size > 1 else None
    return float(np.mean(values)), sd


def auto_score(li_pct: Sequence[float] | float) -> np.ndarray:
    """The 0-5 score that the radiologist's bins give to a lung involvement.

    Bins on LI in %: 0 for LI = 0; 1 for 0 < LI < 5; 2 for 5 <= LI <= 25; 3 for
    25 < LI <= 50; 4 for 50 < LI <= 75; 5 for LI > 75 (`SCORE_BINS`).

    Parameters
    ----------
    li_pct : float or sequence of float
        Lung involvement, in % (0-100).

    Returns
    -------
    numpy.ndarray
        Integer scores, of the input's shape.

    Raises
    ------
    DataError
        If a value is not finite or lies outside 0-100 %.

    Examples
    --------
    >>> auto_score([0.0, 4.9, 5.0, 25.0, 25.1, 50.0, 75.0, 80.0]).tolist()
    [0, 1, 2, 2, 3, 3, 4, 5]
    """
    li = np.asarray(li_pct, dtype=np.float64)
    if not np.all(np.isfinite(li)) or np.any(li < 0) or np.any(li > 100.0 + 1e-9):
        raise DataError("LI must be finite percentages in 0-100")
    bins = np.select([li <= 0.0, li < 5.0, li <= 25.0, li <= 50.0, li <= 75.0], [0, 1, 2, 3, 4], default=5)
    return bins.astype(np.int64)


def agreement(scores: Sequence[int], auto_scores: Sequence[int]) -> dict[str, Any]:
    """Quadratic-weighted Cohen's kappa and confusion matrix of S against S_auto.

    Parameters
    ----------
    scores, auto_scores : sequence of int
        Expert and automatic scores (0-5), per scan.

    Returns
    -------
    dict
        ``kappa_quadratic`` (scikit-learn's ``cohen_kappa_score`` with quadratic
        weights over the scores 0-5; None when undefined, i.e. both raters give one
        and the same score to every scan), ``exact_agreement`` (fraction of scans with
        S = S_auto), and ``confusion_matrix``: ``labels`` (0-5) and ``counts``, rows the
        expert's S and columns S_auto.
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    s = np.asarray(scores, dtype=np.int64).ravel()
    auto = np.asarray(auto_scores, dtype=np.int64).ravel()
    if s.shape != auto.shape or s.size == 0:
        raise DataError(f"need equal, non-zero numbers of scores, got {s.size} and {auto.size}")
    labels = list(SCORES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = float(cohen_kappa_score(s, auto, labels=labels, weights="quadratic"))
    matrix = confusion_matrix(s, auto, labels=labels)
    return {
        "kappa_quadratic": kappa if math.isfinite(kappa) else None,
        "exact_agreement": float(np.mean(s == auto)),
        "confusion_matrix": {"labels": labels, "rows": "S (expert)", "columns": "S_auto",
                             "counts": matrix.astype(int).tolist()},
    }


# -- reading scores.csv and summary.csv ---------------------------------------------------

@dataclass
class ScoreTable:
    """The rows of a scores file.

    Attributes
    ----------
    path : str
    ids : list of str
    scores : numpy.ndarray
        Integer expert scores 0-5.
    li : numpy.ndarray or None
        LI in % from an ``LI_pct`` column, when the file has one.
    """

    path: str
    ids: list[str]
    scores: np.ndarray
    li: np.ndarray | None = None


def _read_csv(path: str | os.PathLike[str]) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of a CSV file; comma, semicolon or tab separated."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(path, "is a folder, expected a CSV file")
    if not os.path.isfile(path):
        raise InputError(path, "file does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file; save it as CSV (UTF-8)") from None
    if not text.strip():
        raise InputError(path, "file is empty")
    first_line = text.lstrip().splitlines()[0]
    try:
        dialect: Any = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, [cell.strip() for cell in cells]))
    except csv.Error as error:
        raise InputError(path, f"line {reader.line_num}: not valid CSV: {error}") from None
    header = rows[0][1]
    seen = set()
    for name in header:
        if name in seen:
            raise InputError(path, f"column {name!r} appears twice in the header")
        seen.add(name)
    data = rows[1:]
    if not data:
        raise InputError(path, "no data rows under the header")
    for line, cells in data:
        if len(cells) != len(header):
            raise InputError(path, f"line {line}: {len(cells)} fields, but the header has {len(header)}")
    return path, header, data


def _column(path: str, header: list[str], name: str, role: str, option: str) -> int:
    if name not in header:
        raise InputError(path, f"no {role} column {name!r} (columns found: {', '.join(header) or 'none'}); "
                               f"name the column with {option}")
    return header.index(name)


def _number(path: str, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        shown = repr(text) if text else "an empty cell"
        raise InputError(path, f"line {line}: {shown} in column {column!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(path, f"line {line}: {text!r} in column {column!r} is not a finite number")
    return value


def _check_id(path: str, line: int, value: str) -> None:
    if not value:
        raise InputError(path, f"line {line}: empty id")
    if "/" in value or "\\" in value or ".." in value or value.startswith("~") or _DRIVE.match(value):
        raise InputError(path, f"line {line}: id {value!r} looks like a path; ids are scan names such as "
                               "'case_001' (no '/', '\\', '..', '~' or drive letter)")


def _check_unique(path: str, ids: list[str], lines: list[int]) -> None:
    where: dict[str, list[int]] = {}
    for scan, line in zip(ids, lines):
        where.setdefault(scan, []).append(line)
    duplicates = {scan: found for scan, found in where.items() if len(found) > 1}
    if duplicates:
        listed = "; ".join(f"{scan!r} on lines {', '.join(map(str, found))}"
                           for scan, found in list(duplicates.items())[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise InputError(path, f"duplicate ids: {listed}{more}")


def _li_value(path: str, line: int, column: str, text: str) -> float:
    value = _number(path, line, column, text)
    if not -1e-9 <= value <= 100.0 + 1e-9:
        raise InputError(path, f"line {line}: LI {value:g} in column {column!r} is outside 0-100 %")
    return min(max(value, 0.0), 100.0)


def read_scores(path: str | os.PathLike[str], *, id_col: str = "id", score_col: str = "S") -> ScoreTable:
    """Read and validate an expert-scores CSV.

    Parameters
    ----------
    path : str or os.PathLike
        CSV (comma, semicolon or tab separated, UTF-8) with a header row.
    id_col, score_col : str
        Names of the scan-id column and of the 0-5 score column.

    Returns
    -------
    ScoreTable
        Also holds ``LI_pct`` when the file has that column.

    Raises
    ------
    InputError
        Naming the file (and line), if it is missing or empty, lacks a column, has an
        empty or path-like id, a duplicate id, or a score that is not a whole number
        0-5, or an LI_pct that is not a number in 0-100.
    """
    path, header, data = _read_csv(path)
    id_index = _column(path, header, id_col, "id", "id_col (--id-col)")
    score_index = _column(path, header, score_col, "score", "score_col (--score-col)")
    li_index = header.index("LI_pct") if "LI_pct" in header else None
    ids, lines, scores, li = [], [], [], []
    for line, cells in data:
        scan = cells[id_index]
        _check_id(path, line, scan)
        value = _number(path, line, score_col, cells[score_index])
        if not 0 <= value <= 5:
            raise InputError(path, f"line {line}: score {value:g} is outside 0-5")
        if value != int(value):
            raise InputError(path, f"line {line}: score {value:g} is not a whole number 0, 1, ..., 5")
        ids.append(scan)
        lines.append(line)
        scores.append(int(value))
        if li_index is not None:
            li.append(_li_value(path, line, "LI_pct", cells[li_index]))
    _check_unique(path, ids, lines)
    return ScoreTable(path, ids, np.asarray(scores, dtype=np.int64),
                      np.asarray(li, dtype=np.float64) if li_index is not None else None)


def read_involvement(path: str | os.PathLike[str]) -> dict[str, float]:
    """LI (%) per scan id from a ``summary.csv`` written by ``radiolab segment``.

    Raises
    ------
    InputError
        Naming the file, if it is missing, lacks the ``id`` or ``LI_pct`` column, or has
        a bad or duplicate id or an LI that is not a number in 0-100.
    """
    path, header, data = _read_csv(path)
    id_index = _column(path, header, "id", "id", "the 'id' column of radiolab segment's summary.csv")
    li_index = _column(path, header, "LI_pct", "LI", "the 'LI_pct' column of radiolab segment's summary.csv")
    ids, lines, values = [], [], []
    for line, cells in data:
        _check_id(path, line, cells[id_index])
        ids.append(cells[id_index])
        lines.append(line)
        values.append(_li_value(path, line, "LI_pct", cells[li_index]))
    _check_unique(path, ids, lines)
    return dict(zip(ids, values))


def read_zonal_severity(path: str | os.PathLike[str]) -> dict[str, float]:
    """``zonal_severity`` (0-30) per scan id from ``summary.csv``; {} without that column.

    Scans whose cell is empty (no zone could be scored) are left out.

    Raises
    ------
    InputError
        Naming the file, if a cell is not a number in 0-30.
    """
    path, header, data = _read_csv(path)
    if "zonal_severity" not in header or "id" not in header:
        return {}
    id_index, zonal_index = header.index("id"), header.index("zonal_severity")
    values: dict[str, float] = {}
    for line, cells in data:
        text = cells[zonal_index].strip()
        if not text:
            continue
        value = _number(path, line, "zonal_severity", text)
        if not 0 <= value <= 30:
            raise InputError(path, f"line {line}: zonal_severity {value} lies outside 0-30")
        values[cells[id_index]] = value
    return values


def zonal_correlation(zonal: Sequence[float], scores: Sequence[float]) -> dict[str, Any]:
    """Pearson and Spearman correlation of S with ``zonal_severity``.

    Returns
    -------
    dict
        ``n``, ``pearson_r``, ``pearson_p``, ``spearman_rho``, ``spearman_p``; or ``n``
        and a ``skip_reason`` when fewer than 3 scans have both or either is constant.
    """
    try:
        basic = correlate(zonal, scores)
    except ValueError as error:
        return {"n": len(zonal), "skip_reason": str(error)}
    return {key: basic[key] for key in ("n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p")}


# -- the `radiolab correlate` run ----------------------------------------------------------

def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_correlation(
    scores_csv: str | os.PathLike[str],
    labels_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    id_col: str = "id",
    score_col: str = "S",
    iterations: int = 100,
    seed: int = 0,
    per_group: int | None = None,
) -> dict[str, Any]:
    """Correlate expert scores with LI and write the JSON report and the two plots.

    Parameters
    ----------
    scores_csv : str or os.PathLike
        Expert scores: an id column and a 0-5 score column; when it also has an
        ``LI_pct`` column, LI is taken from there and ``labels_dir`` is not read.
    labels_dir : str or os.PathLike or None
        Output folder of ``radiolab segment``; LI is read from its ``summary.csv``.
    out_dir : str or os.PathLike
        Folder (created) for ``correlation.json``, ``correlation_box.png`` (LI per S:
        median, quartiles, min-max) and ``correlation_scatter.png`` (S against LI with
        the fitted line), all written atomically.
    id_col, score_col : str
        Column names in ``scores_csv``.
    iterations : int
        Balanced resamples (`resampled_correlation`).
    seed : int
        Seed of the resampling.
    per_group : int, optional
        Scans drawn per score group in each resample; default the smallest group's size.

    Returns
    -------
    dict
        What ``correlation.json`` holds: the keys of `correlate` and of `agreement`;
        ``resampled_r2_mean``, ``resampled_r2_sd``, ``resampled_r_mean``,
        ``resampled_r_sd`` (and ``resampled_r2_all_*``, the resampled lines' R^2 on all
        scans); ``resampling`` settings; ``zonal_severity``, the correlation of S with
        ``summary.csv``'s ``zonal_severity`` (`zonal_correlation`; None when LI came
        from the scores file or the summary has no such column); ``scans`` (id, S,
        LI_pct, S_auto, and zonal_severity when known);
        ``ids_missing_in_labels`` and ``ids_missing_in_scores``; inputs and version.

    Raises
    ------
    InputError
        Naming the file, for a bad scores or summary file (see `read_scores` and
        `read_involvement`), when no id matches, or when the matched scans have fewer
        than 3 members, a single score, or a single LI value.
    ParameterError
        If iterations or per_group is below 1.
    """
    from radiolab import __version__
    from radiolab.io import write_json_atomic
    from radiolab.plots import involvement_box, involvement_scatter

    if int(iterations) < 1:
        raise ParameterError(f"iterations must be at least 1, got {iterations}")
    if per_group is not None and int(per_group) < 1:
        raise ParameterError(f"per_group must be at least 1, got {per_group}")
    table = read_scores(scores_csv, id_col=id_col, score_col=score_col)
    missing_in_scores: list[str] = []
    zonal_by_id: dict[str, float] = {}
    if table.li is not None:
        li_source = table.path
        li_by_id = dict(zip(table.ids, table.li.tolist()))
    else:
        if labels_dir is None:
            raise InputError(table.path, "has no LI_pct column and no labels folder was given to read "
                                         "summary.csv from")
        summary = os.path.join(os.fspath(labels_dir), "summary.csv")
        if not os.path.isfile(summary):
            raise InputError(summary, "file does not exist; run `radiolab segment` first, point --labels at "
                                      "its output folder, or add an LI_pct column to the scores file")
        li_by_id = read_involvement(summary)
        zonal_by_id = read_zonal_severity(summary)
        li_source = summary
        scored = set(table.ids)
        missing_in_scores = sorted(scan for scan in li_by_id if scan not in scored)
    matched = [i for i, scan in enumerate(table.ids) if scan in li_by_id]
    missing_in_labels = [scan for scan in table.ids if scan not in li_by_id]
    if not matched:
        examples = ", ".join(repr(s) for s in table.ids[:3])
        theirs = ", ".join(repr(s) for s in list(li_by_id)[:3])
        raise InputError(table.path, f"no id matches {li_source} (ids here: {examples}; there: {theirs})")
    ids = [table.ids[i] for i in matched]
    s = table.scores[matched]
    li = np.asarray([li_by_id[scan] for scan in ids], dtype=np.float64)
    try:
        basic = correlate(li, s)
        resampled = resampled_correlation(li, s, iterations=iterations, per_group=per_group, seed=seed)
    except (DataError, ParameterError) as error:
        raise InputError(table.path, f"{len(ids)} scan(s) matched {li_source}: {error}") from None
    s_auto = auto_score(li)
    result: dict[str, Any] = {"n": basic["n"]}
    result.update({k: v for k, v in basic.items() if k != "n"})
    for key, name in (("r2", "r2"), ("r", "r"), ("r2_all", "r2_all")):
        mean, sd = _mean_sd(resampled[key])
        result[f"resampled_{name}_mean"] = mean
        result[f"resampled_{name}_sd"] = sd
    result.update(agreement(s, s_auto))
    result["resampling"] = {
        "iterations": int(iterations), "per_group": resampled["per_group"], "seed": int(seed),
        "with_replacement": True, "group_sizes": resampled["group_sizes"],
        "degenerate_iterations": resampled["degenerate"], "sd_ddof": 1,
    }
    result["score_bins"] = {str(score): rule for score, _, _, rule in SCORE_BINS}
    zonal_ids = [i for i, scan in enumerate(ids) if scan in zonal_by_id]
    result["zonal_severity"] = None
    if zonal_by_id:
        result["zonal_severity"] = {key: _finite_or_none(value) for key, value in zonal_correlation(
            [zonal_by_id[ids[i]] for i in zonal_ids], s[zonal_ids]).items()}
    result["scans"] = [{"id": scan, "S": int(score), "LI_pct": float(value), "S_auto": int(auto),
                        **({"zonal_severity": zonal_by_id[scan]} if scan in zonal_by_id else {})}
                       for scan, score, value, auto in zip(ids, s, li, s_auto)]
    result["ids_missing_in_labels"] = missing_in_labels
    result["ids_missing_in_scores"] = missing_in_scores
    result["scores_csv"] = table.path
    result["li_source"] = li_source
    result["id_col"] = id_col
    result["score_col"] = score_col
    result["radiolab_version"] = __version__
    result = {key: _finite_or_none(value) for key, value in result.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    involvement_box(li, s, out / "correlation_box.png")
    involvement_scatter(li, s, basic["slope"], basic["intercept"], out / "correlation_scatter.png",
                        pearson_r=basic["pearson_r"], r2=basic["r2"])
    write_json_atomic(out / "correlation.json", result)
    return result
