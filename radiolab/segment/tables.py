"""The run's tables: ``summary.csv`` and ``errors.csv``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from radiolab.io import write_text_atomic
from radiolab.mixture import CLASS_NAMES

SUMMARY_COLUMNS = (
    ["id", "lung_volume_ml"]
    + [f"{name}_{unit}" for name in CLASS_NAMES for unit in ("ml", "pct")]
    + ["LI_pct"]
)


def write_summary(out: Path, report) -> None:
    """Write ``summary.csv`` (one row per scan) and ``errors.csv`` (one row per failure)."""
    rows = sorted(report.rows, key=lambda r: r["id"])
    columns = list(SUMMARY_COLUMNS) + sorted({k for r in rows for k in r} - set(SUMMARY_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(out / "summary.csv", buffer.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "stage", "message"])
    for error in sorted(report.errors, key=lambda e: e.id):
        writer.writerow([error.id, error.stage, error.message])
    write_text_atomic(out / "errors.csv", buffer.getvalue())
