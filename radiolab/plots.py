"""PNG figures of the scoring statistics and of the mixture-robustness study.

matplotlib is imported inside the functions, and figures are drawn on an Agg canvas
without pyplot, so no GUI backend is touched and no global state changes. Every file
is written atomically.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from radiolab.io import atomic_path
from radiolab.mixture import CLASS_TITLES

CLASS_COLOURS = ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")
LINE_STYLES = ("-", "--", ":", "-.")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="tight")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def involvement_box(li: Sequence[float], scores: Sequence[int], path: str | os.PathLike[str]) -> None:
    """Box plot of LI per expert score: median, quartiles, and whiskers at min and max.

    Parameters
    ----------
    li : sequence of float
        Lung involvement per scan, in %.
    scores : sequence of int
        Expert score per scan.
    path : str or os.PathLike
        Destination PNG.
    """
    li = np.asarray(li, dtype=float)
    scores = np.asarray(scores)
    groups = np.unique(scores)
    data = [li[scores == group] for group in groups]
    figure = _figure(5.5, 4.2)
    axes = figure.add_subplot()
    axes.boxplot(data, positions=groups, widths=0.5, whis=(0, 100), showfliers=False,
                 medianprops={"color": "tab:red", "linewidth": 2})
    jitter = np.random.default_rng(0)
    for group, values in zip(groups, data):
        axes.scatter(group + jitter.uniform(-0.12, 0.12, size=values.size), values, s=12,
                     color="tab:blue", alpha=0.6, zorder=3)
    axes.set_xticks(groups, labels=[f"{group:g}\n(n={values.size})" for group, values in zip(groups, data)])
    axes.set_xlim(groups.min() - 0.7, groups.max() + 0.7)
    axes.set_xlabel("expert score S")
    axes.set_ylabel("lung involvement LI (%)")
    axes.set_title("LI per score: median, quartiles, min-max")
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path)


def involvement_scatter(
    li: Sequence[float],
    scores: Sequence[int],
    slope: float,
    intercept: float,
    path: str | os.PathLike[str],
    *,
    pearson_r: float | None = None,
    r2: float | None = None,
) -> None:
    """Scatter of S against LI with the fitted line S = intercept + slope * LI.

    Parameters
    ----------
    li, scores : sequence
        LI (%) and S per scan.
    slope, intercept : float
        The regression line (score per %, score).
    path : str or os.PathLike
        Destination PNG.
    pearson_r, r2 : float, optional
        Shown in the legend.
    """
    li = np.asarray(li, dtype=float)
    scores = np.asarray(scores, dtype=float)
    figure = _figure(5.5, 4.2)
    axes = figure.add_subplot()
    axes.scatter(li, scores, s=16, color="tab:blue", alpha=0.7, label="scans")
    x = np.linspace(0.0, max(float(li.max()), 1.0) * 1.05, 50)
    label = f"S = {intercept:.2f} + {slope:.3f} LI"
    if pearson_r is not None:
        label += f"\nC = {pearson_r:.3f}"
    if r2 is not None:
        label += f", R² = {r2:.3f}"
    axes.plot(x, intercept + slope * x, color="tab:red", label=label)
    axes.set_xlabel("lung involvement LI (%)")
    axes.set_ylabel("expert score S")
    axes.set_yticks(range(6))
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def mixture_panels(
    fits: Mapping[int, Sequence],
    path: str | os.PathLike[str],
    *,
    hu_range: tuple[float, float] = (-1050.0, 150.0),
) -> None:
    """The five weighted Gaussians of every fit, one panel per subset size.

    Parameters
    ----------
    fits : mapping of int to sequence of TissueMixture
        Subset size (scans) -> the mixtures fitted on its groups.
    path : str or os.PathLike
        Destination PNG.
    hu_range : tuple of float
        HU axis limits.
    """
    sizes = sorted(fits)
    columns = min(len(sizes), 3)
    rows = -(-len(sizes) // columns)
    figure = _figure(4.2 * columns, 3.3 * rows)
    hu = np.linspace(hu_range[0], hu_range[1], 600)
    for panel, size in enumerate(sizes, start=1):
        axes = figure.add_subplot(rows, columns, panel)
        for repeat, mixture in enumerate(fits[size]):
            style = LINE_STYLES[repeat % len(LINE_STYLES)]
            for k in range(len(mixture.means)):
                density = (mixture.weights[k] / np.sqrt(2 * np.pi * mixture.variances[k])
                           * np.exp(-0.5 * (hu - mixture.means[k]) ** 2 / mixture.variances[k]))
                axes.plot(hu, density, style, color=CLASS_COLOURS[k % len(CLASS_COLOURS)], linewidth=1.2,
                          label=CLASS_TITLES[k] if repeat == 0 and k < len(CLASS_TITLES) else None)
        axes.set_title(f"{size} scans, {len(fits[size])} groups")
        axes.set_xlabel("HU")
        axes.set_ylabel("weight x density (1/HU)")
        axes.set_xlim(*hu_range)
        axes.grid(alpha=0.3)
        if panel == 1:
            axes.legend(fontsize=7)
    _save(figure, path)
