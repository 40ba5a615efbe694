"""Quality control: per-scan overlay images, automatic flags, and the cohort HTML report.

- `radiolab.report.qc`: ``<id>_qc.png`` overlays (`qc_figure`, `write_qc_images`).
- `radiolab.report.flags`: automatic flags (`compute_flags`, `run_qc`).
- `radiolab.report.html`: the self-contained cohort report (`write_report`).

Matplotlib (Agg canvas, no pyplot) and Jinja2 are imported inside the functions that
draw or render, so importing this package costs numpy only.
"""

from __future__ import annotations

from radiolab.report.flags import Flag, compute_flags, run_qc
from radiolab.report.html import write_report
from radiolab.report.qc import QCImage, qc_figure, write_qc_image, write_qc_images

__all__ = [
    "Flag",
    "QCImage",
    "compute_flags",
    "qc_figure",
    "run_qc",
    "write_qc_image",
    "write_qc_images",
    "write_report",
]
