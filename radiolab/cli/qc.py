"""``radiolab qc labels/ --scans scans/``: QC images and automatic flags."""

from __future__ import annotations

import argparse
import sys

from radiolab.errors import RadiolabError


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab qc",
        description="Write <id>_qc.png (axial, coronal and sagittal slices in lung window with the "
                    "tissue classes, mask contour, LI and volumes) for every scan of a `radiolab segment` "
                    "output folder, and flag implausible results in flags.csv and summary.csv's flags column.",
    )
    parser.add_argument("labels_dir", metavar="LABELS", help="output folder of `radiolab segment`")
    parser.add_argument("--scans", nargs="+", metavar="PATH",
                        help="the scans that were segmented (what `radiolab segment --in` took); "
                             "needed for the QC images, without it only the flags are computed")
    parser.add_argument("--jobs", type=int, default=1, help="scans processed in parallel (default 1)")
    parser.add_argument("--no-images", dest="images", action="store_false",
                        help="compute the flags only, draw no QC image")
    parser.add_argument("--label-map", default="labels", choices=("labels", "median"),
                        help="overlay the voxel-wise labels (default) or the median-filtered ones")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the QC images (default 100)")
    from radiolab.cli.segment import add_mask_arguments

    add_mask_arguments(parser)
    bounds = parser.add_argument_group("flag bounds")
    bounds.add_argument("--min-volume-ml", type=float, default=1000.0,
                        help="flag lungs smaller than this, mL (default 1000)")
    bounds.add_argument("--max-volume-ml", type=float, default=10000.0,
                        help="flag lungs larger than this, mL (default 10000)")
    bounds.add_argument("--max-edge-fraction", type=float, default=0.01,
                        help="flag masks with more than this share of their surface on the volume's faces "
                             "(default 0.01)")
    bounds.add_argument("--min-component-ml", type=float, default=70.0,
                        help="smallest mask component counted as large, mL (default 70)")
    bounds.add_argument("--max-components", type=int, default=2,
                        help="flag masks with more large components than this (default 2)")
    bounds.add_argument("--outlier-z", type=float, default=3.5,
                        help="flag class shares with a robust z-score beyond this (default 3.5)")
    bounds.add_argument("--min-cohort", type=int, default=10,
                        help="fewest scans for the class-outlier check (default 10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.report.flags import run_qc

    if args.jobs < 1:
        print("radiolab qc: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        from radiolab.cli.segment import check_mask_folder

        check_mask_folder(args.lung_masks, args.mask_format)
        run = run_qc(args.labels_dir, args.scans, jobs=args.jobs, images=args.images, label_map=args.label_map,
                     dpi=args.dpi, min_volume_ml=args.min_volume_ml, max_volume_ml=args.max_volume_ml,
                     max_edge_fraction=args.max_edge_fraction, min_component_ml=args.min_component_ml,
                     max_components=args.max_components, outlier_z=args.outlier_z, min_cohort=args.min_cohort,
                     lung_masks=args.lung_masks, mask_format=args.mask_format)
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab qc: error: {error}", file=sys.stderr)
        return 2
    failed = [image for image in run.images if image.error]
    for image in failed:
        print(f"no QC image for {image.id}: {image.error}", file=sys.stderr)
    for flag in run.flags:
        print(f"FLAG {flag.id} [{flag.flag}]: {flag.detail}")
    drawn = len(run.images) - len(failed)
    if args.scans is None and args.images:
        print("no --scans given: QC images need the scans; only the flags were computed", file=sys.stderr)
    print(f"{drawn} QC image(s) written, {len(failed)} failed; {len(run.flags)} flag(s) on "
          f"{len({f.id for f in run.flags})} scan(s); see {args.labels_dir}/flags.csv")
    return 1 if failed else 0
