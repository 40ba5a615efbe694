"""``radiolab run pipelines/X.yaml --in scans/ --out results/ [--scores scores.csv]``."""

from __future__ import annotations

import argparse
import sys


def _get_parser() -> argparse.ArgumentParser:
    from radiolab.cli.segment import add_backend_arguments

    parser = argparse.ArgumentParser(
        prog="radiolab run",
        description="Run a pipeline file's chain of stages (ingest, segment, features, correlate) "
                    "with one backend and the resume rules of `radiolab segment`.",
    )
    parser.add_argument("pipeline", metavar="PIPELINE",
                        help="pipeline YAML file, or the name of a built-in one (zaffino2021, default)")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="PATH",
                        help="volume files/folders, or a DICOM folder (converted by the ingest stage)")
    parser.add_argument("--out", dest="out_dir", required=True, help="output folder")
    parser.add_argument("--scores", help="clinical scores CSV for the correlate stage (skipped without it)")
    parser.add_argument("--check", action="store_true", help="validate the pipeline file and stop")
    add_backend_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-scan table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.cli.segment import backend_kwargs, print_table
    from radiolab.errors import RadiolabError, StageError
    from radiolab.pipeline import load_pipeline, run_pipeline

    try:
        pipeline = load_pipeline(args.pipeline)
    except RadiolabError as error:
        print(f"radiolab run: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{pipeline.source}: valid pipeline {pipeline.name!r}: "
              + " -> ".join(spec.stage for spec in pipeline.stages))
        return 0
    try:
        report = run_pipeline(pipeline, args.inputs, args.out_dir, scores=args.scores,
                              progress=not args.quiet, **backend_kwargs(args))
    except StageError as error:
        print(f"radiolab run: stage {error.stage!r} failed: {error.message}", file=sys.stderr)
        return 1
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab run: error: {error}", file=sys.stderr)
        return 2
    if report.segment is not None and not args.quiet:
        print_table(report.segment)
    for result in report.results:
        print(f"{result.stage:<10} {result.status:<8} {result.message}")
    failed = report.segment is not None and bool(report.segment.errors)
    return 1 if failed else 0
