"""``radiolab report labels/ --out report.html``: the self-contained cohort report."""

from __future__ import annotations

import argparse
import sys

from radiolab.errors import RadiolabError


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab report",
        description="Write one self-contained HTML file (no external resources, opens offline) with the "
                    "summary table, LI distribution, per-class bars, the fitted mixture, correlation plots, "
                    "QC thumbnails, errors, flags and provenance of a `radiolab segment` output folder.",
    )
    parser.add_argument("labels_dir", metavar="LABELS", help="output folder of `radiolab segment`")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--scans", nargs="+", metavar="PATH",
                        help="the scans; QC images missing from LABELS are drawn first")
    parser.add_argument("--scores", help="CSV of clinical scores: adds the correlation section")
    parser.add_argument("--id-col", default="id", help="scan-id column of --scores (default id)")
    parser.add_argument("--score-col", default="S", help="score column of --scores (default S)")
    parser.add_argument("--iterations", type=int, default=100,
                        help="resampling iterations of the correlation (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the correlation resampling (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="scans processed in parallel (default 1)")
    parser.add_argument("--thumbnail-width", type=int, default=720,
                        help="width of the embedded QC thumbnails in pixels (default 720)")
    parser.add_argument("--title", help="page title (default: the folder name)")
    from radiolab.cli.segment import add_mask_arguments

    add_mask_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.report.html import write_report

    if args.jobs < 1:
        print("radiolab report: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        from radiolab.cli.segment import check_mask_folder

        check_mask_folder(args.lung_masks, args.mask_format)
        result = write_report(args.labels_dir, args.out, scans=args.scans, scores=args.scores,
                              id_col=args.id_col, score_col=args.score_col, iterations=args.iterations,
                              seed=args.seed, jobs=args.jobs, thumbnail_width=args.thumbnail_width,
                              title=args.title, lung_masks=args.lung_masks, mask_format=args.mask_format)
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab report: error: {error}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report written to {result.path}")
    return 1 if result.failed else 0
