"""The run's tables: ``summary.csv``, ``phenotypes.csv`` and ``errors.csv``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from radiolab.io import write_text_atomic
from radiolab.mixture import CLASS_NAMES
from radiolab.phenotypes import COLUMNS as PHENOTYPE_COLUMNS
from radiolab.scoring import ZONAL_COLUMNS
from radiolab.segment.records import output_paths

SUMMARY_COLUMNS = (
    ["id", "lung_volume_ml"]
    + [f"{name}_{unit}" for name in CLASS_NAMES for unit in ("ml", "pct")]
    + ["LI_pct"]
)


def write_summary(out: Path, report) -> None:
    """Write ``summary.csv`` (one row per scan), ``phenotypes.csv`` (one row per scan and
    region, from the ``<id>_phenotypes.json`` records) and ``errors.csv`` (one row per failure)."""
    rows = sorted(report.rows, key=lambda r: r["id"])
    present = {k for r in rows for k in r}
    # The zonal columns follow LI, in zone order; other columns after them, sorted.
    zonal = [c for c in (*ZONAL_COLUMNS, "lobar_severity") if c in present]
    columns = list(SUMMARY_COLUMNS) + zonal + sorted(present - set(SUMMARY_COLUMNS) - set(zonal))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(out / "summary.csv", buffer.getvalue())
    write_phenotypes(out, [row["id"] for row in rows])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "stage", "message"])
    for error in sorted(report.errors, key=lambda e: e.id):
        writer.writerow([error.id, error.stage, error.message])
    write_text_atomic(out / "errors.csv", buffer.getvalue())


def write_phenotypes(out: Path, ids) -> None:
    """Write ``phenotypes.csv`` from the scans' ``<id>_phenotypes.json`` records."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(PHENOTYPE_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for scan in ids:
        records = read_json_record_list(output_paths(out, scan)["phenotypes"])
        for record in records:
            writer.writerow({k: ("" if v is None else f"{v:.10g}" if isinstance(v, float) else v)
                             for k, v in record.items()})
    write_text_atomic(out / "phenotypes.csv", buffer.getvalue())


def read_json_record_list(path: Path) -> list[dict]:
    """A JSON list of rows, or [] if missing or unreadable."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
