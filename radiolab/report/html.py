"""The cohort report: one self-contained HTML file (``radiolab report``).

Everything is inside the file: figures and QC thumbnails as ``data:`` URIs, CSS and
the small table-sorting script inline, and a Content-Security-Policy that forbids
any other source, so the page opens offline and requests nothing from the network.
Every value taken from the cohort (ids come from file names) is HTML-escaped by the
template engine (Jinja2 with autoescaping).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io as _io
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radiolab.errors import InputError, OptionalDependencyError, ParameterError, RadiolabError
from radiolab.report.flags import FlagSettings, compute_flags, read_csv_rows
from radiolab.report.qc import QC_SUFFIX, figure_png

TEMPLATE = "report.html.j2"
CLASS_KEYS = ("air", "healthy", "ggo", "consolidation", "other")
CORRELATION_IMAGES = ("correlation_box.png", "correlation_scatter.png")


@dataclass
class ReportResult:
    """What `write_report` wrote and what it could not include.

    Attributes
    ----------
    path : pathlib.Path
        The HTML file.
    notes : list of str
        Sections left out or incomplete, with the reason (also shown in the report).
    failed : bool
        True when a requested section failed on bad input (e.g. an unreadable scores file).
    """

    path: Path
    notes: list[str] = field(default_factory=list)
    failed: bool = False


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` URI of some bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


# -- figures ------------------------------------------------------------------------

def _plain(text: str) -> str:
    """Text that matplotlib draws as is (a ``$`` would otherwise start mathtext)."""
    return text.replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def li_figure(li_pct: Sequence[float]):
    """Histogram of lung involvement (LI, %) over the cohort, with the scans as a rug.

    Parameters
    ----------
    li_pct : sequence of float
        One LI per scan, in %.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    values = np.asarray(li_pct, dtype=float)
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    top = max(100.0, float(values.max()) if values.size else 100.0)
    ax.hist(values, bins=np.linspace(0, top, 21), color="#5b8db8", edgecolor="white")
    ax.plot(values, np.zeros_like(values), "|", color="black", markersize=14, markeredgewidth=1.2)
    if values.size:
        median = float(np.median(values))
        ax.axvline(median, color="#c0392b", linestyle="--", linewidth=1.2, label=f"median {median:.1f} %")
        ax.legend(frameon=False, loc="upper right")
    ax.set_xlim(0, top)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("lung involvement LI (%): GGO + consolidation + other dense, of lung volume")
    ax.set_ylabel("scans")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def class_bars_figure(ids: Sequence[str], pct: np.ndarray):
    """Stacked bars of the five classes' share of each scan's lung, scans sorted by LI.

    Parameters
    ----------
    ids : sequence of str
        Scan ids.
    pct : numpy.ndarray
        Shape (n_scans, 5): air, healthy, GGO, consolidation, other dense, in % of lung.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from radiolab.io import TISSUE_SEGMENTS

    pct = np.asarray(pct, dtype=float).reshape(-1, 5)
    order = np.argsort(pct[:, 2:].sum(axis=1), kind="stable")
    n = len(ids)
    fig = _figure(min(14.0, max(6.0, 0.3 * n + 3.0)), 3.8)
    ax = fig.add_subplot()
    x = np.arange(n)
    bottom = np.zeros(n)
    for column, (_, name, colour) in enumerate(TISSUE_SEGMENTS):
        ax.bar(x, pct[order, column], bottom=bottom, color=colour, edgecolor="#555555",
               linewidth=0.3, width=0.85, label=name)
        bottom += pct[order, column]
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("% of lung volume")
    if n <= 60:
        # Ids come from file names: an escaped "$" is drawn as text, not as mathtext.
        ax.set_xticks(x, [_plain(ids[i]) for i in order], rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} scans, sorted by LI")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8, reverse=True)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def zones_figure(ids: Sequence[str], scores: np.ndarray, li: np.ndarray):
    """The six zone scores of every scan as a grid coloured by score, with each zone's LI.

    Parameters
    ----------
    ids : sequence of str
        Scan ids (rows, in this order).
    scores : numpy.ndarray
        Shape (n_scans, 6): zone scores 0-5 in `radiolab.zones.ZONE_NAMES` order; NaN
        for a zone without lung.
    li : numpy.ndarray
        Shape (n_scans, 6): each zone's LI in %, NaN when unknown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap

    from radiolab.report.qc import SCORE_COLOURS
    from radiolab.zones import ZONE_NAMES

    scores = np.asarray(scores, dtype=float).reshape(-1, len(ZONE_NAMES))
    li = np.asarray(li, dtype=float).reshape(scores.shape)
    n = len(ids)
    fig = _figure(7.5, min(30.0, 1.4 + 0.32 * n))
    ax = fig.add_subplot()
    shown = np.ma.masked_invalid(scores)
    image = ax.imshow(shown, cmap=ListedColormap(SCORE_COLOURS), vmin=-0.5, vmax=5.5, aspect="auto")
    if n <= 60:
        for row in range(n):
            for column in range(len(ZONE_NAMES)):
                if np.isfinite(li[row, column]):
                    ax.text(column, row, f"{li[row, column]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if scores[row, column] >= 4 else "black")
        ax.set_yticks(np.arange(n), [_plain(i) for i in ids], fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} scans")
    ax.set_xticks(np.arange(len(ZONE_NAMES)), [z.replace("_", "\n") for z in ZONE_NAMES], fontsize=8)
    ax.xaxis.tick_top()
    colorbar = fig.colorbar(image, ax=ax, ticks=range(6), fraction=0.05)
    colorbar.set_label("zone score")
    ax.set_title("zone scores; numbers: zone LI (%)", fontsize=9)
    return fig


def mixture_figure(histogram, mixture):
    """The five fitted Gaussians over the pooled lung HU histogram (linear and log scale).

    Parameters
    ----------
    histogram : radiolab.mixture.Histogram
        Pooled lung HU counts at 1 HU bins.
    mixture : radiolab.mixture.TissueMixture

    Returns
    -------
    matplotlib.figure.Figure
    """
    from radiolab.io import TISSUE_SEGMENTS

    counts = histogram.counts.astype(float)
    total = counts.sum()
    hu = histogram.values
    density = counts / total if total else counts
    cumulative = np.cumsum(density)
    lo = float(hu[0]) if hu.size else -1000.0
    hi = float(hu[min(np.searchsorted(cumulative, 0.999), hu.size - 1)]) if hu.size else 200.0
    hi = max(hi, float(mixture.means.max() + 3 * mixture.stds.max()))
    grid = np.arange(lo, hi + 1.0)
    components = [w * np.exp(-0.5 * (grid - m) ** 2 / v) / np.sqrt(2 * np.pi * v)
                  for w, m, v in zip(mixture.weights, mixture.means, mixture.variances)]
    # Bars of 5 HU (density per HU averaged over each bar) keep the plot readable.
    step = 5
    edges = np.arange(lo, hi + step, step)
    binned, _ = np.histogram(hu, bins=edges, weights=density)
    binned /= step
    fig = _figure(11.0, 3.6)
    for panel, log in enumerate((False, True)):
        ax = fig.add_subplot(1, 2, panel + 1)
        ax.stairs(binned, edges, fill=True, color="#d0d0d0", label="pooled lung voxels")
        for (_, name, colour), curve in zip(TISSUE_SEGMENTS, components):
            ax.fill_between(grid, curve, color=colour, alpha=0.35, linewidth=0)
            ax.plot(grid, curve, color=tuple(0.75 * c for c in colour), linewidth=1.2, label=name)
        ax.plot(grid, np.sum(components, axis=0), color="black", linestyle="--", linewidth=1.0,
                label="mixture")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("HU")
        ax.set_ylabel("fraction of voxels per HU")
        if log:
            ax.set_yscale("log")
            peak = max(float(binned.max()) if binned.size else 1.0, 1e-12)
            ax.set_ylim(peak * 1e-5, peak * 2)
            ax.set_title("log scale", fontsize=9)
        else:
            ax.set_title(f"{mixture.n_voxels or int(total)} voxels from {mixture.n_scans or '?'} scans",
                         fontsize=9)
            ax.legend(frameon=False, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    return fig


# -- sections -------------------------------------------------------------------------

def _format_cell(column: str, value: str) -> tuple[str, str]:
    """(shown text, sort key) of a summary cell."""
    number = _number(value)
    if number is None:
        return value, value
    if column.endswith("_pct"):
        shown = f"{number:.2f}"
    elif column.endswith("_ml"):
        shown = f"{number:.1f}"
    else:
        shown = f"{number:.4g}"
    return shown, repr(number)


def _summary_table(columns: list[str], rows: list[dict[str, str]], flag_codes: dict[str, list[str]]):
    # Flags right after the id, where they are seen without scrolling.
    columns = [c for c in columns if c == "id"] + ["flags"] + [c for c in columns if c not in ("id", "flags")]
    table = []
    for row in rows:
        scan_id = row.get("id", "")
        cells = []
        for column in columns:
            if column == "flags":
                text = "; ".join(flag_codes.get(scan_id, [])) or row.get("flags", "")
                cells.append({"text": text, "key": text, "num": False})
            else:
                text, key = _format_cell(column, row.get(column) or "")
                cells.append({"text": text, "key": key, "num": _number(row.get(column)) is not None})
        table.append({"id": scan_id, "cells": cells, "flagged": bool(flag_codes.get(scan_id))})
    return {"columns": columns, "rows": table}


def _zones_section(folder: Path, rows: list[dict[str, str]]) -> str | None:
    """The zones figure from summary.csv's zone scores and phenotypes.csv's zone LI."""
    from radiolab.zones import ZONE_NAMES

    scored = [r for r in rows if any(_number(r.get(f"zone_score_{z}")) is not None for z in ZONE_NAMES)]
    if not scored:
        return None
    li_by_zone: dict[tuple[str, str], float] = {}
    if (folder / "phenotypes.csv").exists():
        _, phenotype_rows = read_csv_rows(folder / "phenotypes.csv")
        for record in phenotype_rows:
            value = _number(record.get("LI_pct"))
            if value is not None:
                li_by_zone[(record.get("id", ""), record.get("region", ""))] = value
    scores = np.array([[_number(r.get(f"zone_score_{z}")) if _number(r.get(f"zone_score_{z}")) is not None
                        else np.nan for z in ZONE_NAMES] for r in scored])
    li = np.array([[li_by_zone.get((r.get("id", ""), z), np.nan) for z in ZONE_NAMES] for r in scored])
    return data_uri(figure_png(zones_figure([r.get("id", "") for r in scored], scores, li)))


def _load_mixture(folder: Path, notes: list[str]):
    from radiolab.mixture import TissueMixture

    gmm_path = folder / "gmm.json"
    if gmm_path.exists():
        try:
            record = json.loads(gmm_path.read_text(encoding="utf-8"))
            return TissueMixture.from_json(record, source=str(gmm_path)), record
        except (ValueError, OSError, RadiolabError) as error:
            notes.append(f"{gmm_path}: cannot read the mixture: {error}")
            return None, None
    # A run with a given model writes no gmm.json; its labels carry the mixture in the header.
    for path in sorted(folder.glob("*_labels.nrrd")):
        header = _header(path)
        if "radiolab_mixture" in header:
            try:
                record = json.loads(header["radiolab_mixture"])
                return TissueMixture.from_json(record, source=str(path)), record
            except (ValueError, RadiolabError):
                continue
    notes.append(f"{folder}: no gmm.json and no label file with a mixture; the mixture plot is left out")
    return None, None


def _header(path: Path) -> dict[str, str]:
    from radiolab.io import read_header

    try:
        return read_header(path)
    except Exception as error:  # pynrrd raises its own NRRDError; the report carries on
        return {"_error": f"{type(error).__name__}: {error}"}


def _pooled_histogram(folder: Path, scan_ids: Sequence[str] | None, notes: list[str]):
    from radiolab.mixture import Histogram, sum_histograms

    if scan_ids:
        paths = [folder / f"{i}_hist.json" for i in scan_ids]
    else:
        paths = sorted(p for p in folder.glob("*_hist.json") if not p.name.startswith("."))
    histograms = []
    for path in paths:
        try:
            histograms.append(Histogram.from_json(json.loads(path.read_text(encoding="utf-8"))["histogram"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            notes.append(f"{path}: cached histogram unreadable ({type(error).__name__}: {error}); left out of the plot")
    if not histograms:
        return None
    return sum_histograms(histograms)


def _mixture_section(folder: Path, notes: list[str]) -> dict[str, Any] | None:
    mixture, record = _load_mixture(folder, notes)
    if mixture is None:
        return None
    histogram = _pooled_histogram(folder, (record or {}).get("scans"), notes)
    from radiolab.mixture import CLASS_TITLES

    components = [{"name": name, "mean": f"{m:.1f}", "sd": f"{s:.1f}", "weight": f"{w:.4f}"}
                  for name, m, s, w in zip(CLASS_TITLES, mixture.means, mixture.stds, mixture.weights)]
    section: dict[str, Any] = {"components": components, "source": mixture.source, "image": None}
    if histogram is None or histogram.n_voxels == 0:
        notes.append(f"{folder}: no cached histograms (<id>_hist.json); the mixture is shown as a table only")
    else:
        section["image"] = data_uri(figure_png(mixture_figure(histogram, mixture)))
    return section


def _flatten(data: Any, prefix: str = "", depth: int = 0, out: list | None = None) -> list[tuple[str, str]]:
    """Scalar entries of nested dicts as (dotted key, text), for the key-numbers table."""
    out = [] if out is None else out
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and depth < 2:
                _flatten(value, name, depth + 1, out)
            elif isinstance(value, (list, tuple)):
                if len(value) <= 6 and all(isinstance(v, (int, float, str, bool)) or v is None for v in value):
                    out.append((name, ", ".join(_scalar(v) for v in value)))
            elif not isinstance(value, dict):
                out.append((name, _scalar(value)))
    return out[:60]


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _correlation_section(scores, folder: Path, *, id_col, score_col, iterations, seed,
                         notes: list[str]) -> tuple[dict[str, Any], bool]:
    """Run radiolab.stats.run_correlation into a temporary folder and embed its outputs."""
    section: dict[str, Any] = {"scores": os.fspath(scores), "images": [], "numbers": [], "note": None}
    from radiolab.stats import run_correlation

    with tempfile.TemporaryDirectory(prefix="radiolab-report-") as tmp:
        try:
            result = run_correlation(scores, folder, tmp, id_col=id_col, score_col=score_col,
                                     iterations=iterations, seed=seed)
        except (RadiolabError, OSError) as error:
            section["note"] = f"Correlation with {os.fspath(scores)} failed: {error}"
            notes.append(section["note"])
            return section, True
        section["numbers"] = _flatten(result)  # what correlation.json holds
        section["images"] = [{"name": name, "uri": data_uri((Path(tmp) / name).read_bytes())}
                             for name in CORRELATION_IMAGES]
    return section, False


def _thumbnail(path: Path, width: int) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        buffer = _io.BytesIO()
        image.save(buffer, format="JPEG", quality=82, optimize=True)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _jinja2():
    """Import Jinja2 (the ``report`` extra) or say how to install it."""
    try:
        import jinja2
    except ImportError as error:
        raise OptionalDependencyError("jinja2", "radiolab report", extra="report") from error
    return jinja2


def _provenance(folder: Path, gmm_record: dict | None) -> dict[str, Any]:
    import matplotlib

    from radiolab import __version__

    jinja2 = _jinja2()
    report = [("radiolab", __version__), ("python", platform.python_version()),
              ("numpy", np.__version__), ("matplotlib", matplotlib.__version__),
              ("jinja2", jinja2.__version__), ("platform", platform.platform()),
              ("written", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
              ("labels folder", os.fspath(folder.resolve()))]
    groups: dict[tuple[str, str], list[str]] = {}
    for path in sorted(folder.glob("*_labels.nrrd")):
        if path.name.startswith("."):
            continue
        header = _header(path)
        key = (header.get("radiolab_version", "(none)"), header.get("radiolab_parameters", "(none)"))
        groups.setdefault(key, []).append(path.name[: -len("_labels.nrrd")])
    label_runs = []
    for (version, parameters), ids in sorted(groups.items()):
        try:
            parameters = json.dumps(json.loads(parameters), indent=2, sort_keys=True)
        except ValueError:
            pass
        label_runs.append({"version": version, "parameters": parameters, "n": len(ids),
                           "ids": ", ".join(ids[:12]) + (f", ... ({len(ids) - 12} more)" if len(ids) > 12 else "")})
    gmm = None
    if gmm_record is not None:
        gmm = {"fields": [(k, _scalar(gmm_record[k])) for k in
                          ("radiolab_version", "source", "n_scans", "n_voxels", "log_likelihood", "format")
                          if k in gmm_record],
               "settings": json.dumps(gmm_record.get("settings", {}), indent=2, sort_keys=True),
               "segment_config": json.dumps(gmm_record.get("segment_config"), indent=2, sort_keys=True)
               if gmm_record.get("segment_config") is not None else None}
    return {"report": report, "label_runs": label_runs, "gmm": gmm}


def write_report(
    labels_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scans: Any = None,
    scores: str | os.PathLike[str] | None = None,
    id_col: str = "id",
    score_col: str = "S",
    iterations: int = 100,
    seed: int = 0,
    jobs: int = 1,
    thumbnail_width: int = 720,
    title: str | None = None,
    lung_masks: str | os.PathLike[str] | None = None,
    mask_format: str | None = None,
) -> ReportResult:
    """Write the cohort report: one HTML file that needs nothing else to open.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        Output folder of `radiolab segment` (summary.csv, errors.csv, gmm.json,
        ``<id>_hist.json``, label maps; ``<id>_qc.png`` and flags.csv from `radiolab qc`).
    out : str or os.PathLike
        The HTML file to write (atomically).
    scans : path, sequence of paths or of ScanInput, optional
        The scans; QC images missing from ``labels_dir`` are drawn first (and kept there).
    scores : str or os.PathLike, optional
        A CSV of clinical scores; adds the correlation section
        (`radiolab.stats.run_correlation`).
    id_col, score_col : str
        Columns of ``scores`` holding the scan id and the score.
    iterations, seed : int
        Resampling iterations and seed of the correlation.
    jobs : int
        Scans processed in parallel when drawing QC images or reading masks.
    thumbnail_width : int
        Width of the embedded QC thumbnails, in pixels (JPEG).
    title : str, optional
        Page title; the folder name by default.
    lung_masks, mask_format : optional
        External lung masks (`radiolab.external_masks`) for the QC images drawn here
        and the computed flags.

    Returns
    -------
    ReportResult

    Raises
    ------
    InputError
        If ``labels_dir`` does not exist or holds neither summary.csv nor errors.csv.
    OptionalDependencyError
        If Jinja2 (the ``report`` extra) is not installed.
    """
    jinja2 = _jinja2()

    from radiolab.report.qc import write_qc_images

    folder = Path(labels_dir)
    if not folder.is_dir():
        raise InputError(folder, "labels folder does not exist")
    if not (folder / "summary.csv").exists() and not (folder / "errors.csv").exists():
        raise InputError(folder, "no summary.csv or errors.csv: not an output folder of `radiolab segment`")
    if thumbnail_width < 64:
        raise ParameterError(f"thumbnail_width must be at least 64 pixels, got {thumbnail_width}")
    notes: list[str] = []
    failed = False
    columns, rows = read_csv_rows(folder / "summary.csv")
    rows = sorted(rows, key=lambda r: r.get("id", ""))
    _, errors = read_csv_rows(folder / "errors.csv")

    if scans is not None:
        for image in write_qc_images(folder, scans, jobs=jobs, only_missing=True, lung_masks=lung_masks,
                                     mask_format=mask_format):
            if image.error:
                notes.append(f"QC image of {image.id} not drawn: {image.error}")

    flags_path = folder / "flags.csv"
    if flags_path.exists():
        _, flag_rows = read_csv_rows(flags_path)
        flags_source = "flags.csv (written by `radiolab qc`)"
    else:
        computed = compute_flags(folder, jobs=jobs, lung_masks=lung_masks, mask_format=mask_format)
        flag_rows = [{"id": f.id, "flag": f.flag, "detail": f.detail} for f in computed]
        flags_source = "computed for this report with the default bounds (run `radiolab qc` to store them)"
    flag_codes: dict[str, list[str]] = {}
    for flag in flag_rows:
        codes = flag_codes.setdefault(flag.get("id", ""), [])
        if flag.get("flag") not in codes:
            codes.append(flag.get("flag", ""))

    figures: dict[str, str | None] = {"li": None, "classes": None, "zones": None}
    numeric = [r for r in rows if all(_number(r.get(f"{k}_pct")) is not None for k in CLASS_KEYS)]
    li = [v for v in (_number(r.get("LI_pct")) for r in rows) if v is not None]
    if li:
        figures["li"] = data_uri(figure_png(li_figure(li)))
    if numeric:
        pct = np.array([[_number(r[f"{k}_pct"]) for k in CLASS_KEYS] for r in numeric])
        figures["classes"] = data_uri(figure_png(class_bars_figure([r["id"] for r in numeric], pct)))
    figures["zones"] = _zones_section(folder, rows)
    mixture = _mixture_section(folder, notes)

    correlation = None
    if scores is not None:
        correlation, failed = _correlation_section(scores, folder, id_col=id_col, score_col=score_col,
                                                   iterations=iterations, seed=seed, notes=notes)

    ids = sorted({r.get("id", "") for r in rows} | {p.name[: -len(QC_SUFFIX)] for p in folder.glob(f"*{QC_SUFFIX}")
                                                      if not p.name.startswith(".")})
    thumbnails = []
    for scan_id in ids:
        path = folder / f"{scan_id}{QC_SUFFIX}"
        if path.exists():
            try:
                thumbnails.append({"id": scan_id, "uri": _thumbnail(path, thumbnail_width),
                                   "flags": "; ".join(flag_codes.get(scan_id, []))})
            except OSError as error:
                notes.append(f"{path}: unreadable QC image ({error})")
    if rows and not thumbnails:
        notes.append("No QC images: run `radiolab qc LABELS --scans SCANS` or pass --scans to draw them.")

    gmm_record = None
    if (folder / "gmm.json").exists():
        try:
            gmm_record = json.loads((folder / "gmm.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            gmm_record = None
    defaults = FlagSettings()
    li_array = np.asarray(li, dtype=float)
    context = {
        "title": title or f"radiolab QC report: {folder.resolve().name}",
        "overview": {
            "n_scans": len(rows), "n_errors": len(errors), "n_flagged": len(flag_codes),
            "li_median": f"{np.median(li_array):.1f}" if li_array.size else "n/a",
            "li_iqr": (f"{np.percentile(li_array, 25):.1f} to {np.percentile(li_array, 75):.1f}"
                       if li_array.size else "n/a"),
        },
        "summary": _summary_table(columns, rows, flag_codes) if rows else None,
        "figures": figures,
        "mixture": mixture,
        "correlation": correlation,
        "thumbnails": thumbnails,
        "errors": errors,
        "flags": flag_rows,
        "flags_source": flags_source,
        "flag_settings": defaults,
        "outlier_active": len(rows) >= defaults.min_cohort,
        "provenance": _provenance(folder, gmm_record),
        "notes": notes,
    }
    source = (Path(__file__).parent / "templates" / TEMPLATE).read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    html = environment.from_string(source).render(**context)
    from radiolab.io import write_text_atomic

    out = Path(out)
    write_text_atomic(out, html)
    return ReportResult(out, notes, failed)
