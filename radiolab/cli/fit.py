"""``radiolab fit labels/``: the reduce step of a sharded ``radiolab segment`` run.

Sums the cached per-scan histograms (``<id>_hist.json``) in sorted-id order, fits the
pooled mixture with the settings recorded in them, writes ``gmm.json``, and assembles
``summary.csv`` and ``errors.csv`` from the per-scan records. Exit status 0 when every
recorded scan is labelled, 1 when scans failed or await labels, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab fit",
        description="Fit the pooled tissue mixture from the histograms that `radiolab segment --shard` "
                    "cached in an output folder; write gmm.json, summary.csv and errors.csv.",
    )
    parser.add_argument("out_dir", metavar="OUT", help="output folder shared by the shards")
    parser.add_argument("--in", dest="inputs", nargs="+", metavar="PATH",
                        help="only the scans found here (default: every record in OUT)")
    parser.add_argument("--force", action="store_true", help="refit even if gmm.json matches the histograms")
    parser.add_argument("--quiet", action="store_true", help="no summary table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.cli.segment import print_table
    from radiolab.errors import RadiolabError
    from radiolab.segment import fit_cohort, find_inputs

    try:
        ids = None
        if args.inputs:
            scans, _ = find_inputs(args.inputs)
            ids = [scan.id for scan in scans]
        report = fit_cohort(args.out_dir, ids=ids, force=args.force)
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab fit: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        mixture = report.mixture
        if mixture is not None:
            print(f"mixture ({mixture.source}, {mixture.n_scans} scans): means "
                  + ", ".join(f"{m:.0f}" for m in mixture.means) + " HU")
        print_table(report)
        line = f"{len(report.rows)} scan(s) labelled, {len(report.errors)} failed"
        if report.pending:
            line += (f", {len(report.pending)} awaiting labels (rerun their shards): "
                     + ", ".join(report.pending[:5]) + (" ..." if len(report.pending) > 5 else ""))
        print(f"{line}; wrote gmm.json, summary.csv, errors.csv in {args.out_dir}")
    return 1 if report.errors or report.pending else 0
