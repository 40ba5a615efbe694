"""``radiolab ingest``: convert the DICOM CT series under a folder to NRRD volumes.

Prints one line per written, skipped and failed series; reading warnings (uneven spacing,
gantry tilt, missing tags) are logged with the series name. Exit status 1 if any CT series
failed or nothing was written, else 0.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from radiolab.errors import InputError


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab ingest",
        description="Find the DICOM CT series under a folder and write each as "
                    "OUT/<series name>.nrrd (int16 HU). Names and headers carry no patient tag.",
    )
    parser.add_argument("--in", dest="root", required=True, metavar="DICOM_ROOT",
                        help="folder searched recursively for DICOM files")
    parser.add_argument("--out", dest="out_dir", required=True, metavar="OUT_DIR",
                        help="output folder for the NRRD files (created if needed)")
    parser.add_argument("--compression-level", dest="compression_level", type=int, default=1,
                        choices=range(1, 10), metavar="{1..9}",
                        help="gzip level of the NRRD files (default: 1, fast)")
    parser.add_argument("--assume-ct", dest="assume_ct", action="store_true",
                        help="read series without a Modality tag as CT even when nothing else shows "
                             "CT (never overrides an explicit MR, SEG or other Modality)")
    parser.add_argument("--allow-gaps", dest="allow_gaps", action="store_true",
                        help="interpolate across gaps in the slice positions (a step of 1.5 times its "
                             "neighbours' or more) instead of refusing the series")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``radiolab ingest``; returns the exit status."""
    from radiolab.dicom import ingest
    from radiolab.io import scan_id
    from radiolab.log import scan_logger

    args = _get_parser().parse_args(argv)
    try:
        report = ingest(args.root, args.out_dir, compression_level=args.compression_level,
                        assume_ct=args.assume_ct, allow_gaps=args.allow_gaps)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in report.written:
        print(f"wrote {path}")
        for warning in report.warnings.get(path, []):
            scan_logger("radiolab.dicom", scan_id(path)).warning("%s", warning)
    for skipped in report.skipped:
        where = f" ({skipped.folder})" if skipped.folder else ""
        print(f"skipped {skipped.name or skipped.source}{where}: {skipped.reason}")
    for failed in report.failed:
        print(f"failed {failed.name}: {failed.message}", file=sys.stderr)
    if not report.written:
        print(f"error: no CT series written from {args.root}", file=sys.stderr)
    return 1 if report.failed or not report.written else 0


if __name__ == "__main__":
    sys.exit(main())
