"""``radiolab features --in scans/ --labels labels/ --out features.csv``."""

from __future__ import annotations

import argparse
import logging
import sys

from radiolab.radiomics import (
    CROP_MARGIN_MM,
    FORMATS,
    LABEL_MAPS,
    MAX_MAP_VOXELS,
    MIN_TEXTURE_VOXELS,
    REGIONS,
)


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab features",
        description="pyradiomics features of each tissue class (air, healthy, ggo, consolidation, other), "
                    "the whole lung and the involved lung of every scan, from the label maps of "
                    "`radiolab segment`: one row per scan and region.",
    )
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="PATH",
                        help="scan files (NRRD, NIfTI, MHA/MHD) and/or folders of scans or DICOM series")
    parser.add_argument("--labels", required=True,
                        help="folder of `radiolab segment` outputs (<id>_labels.nrrd, <id>_labels_median.nrrd)")
    parser.add_argument("--out", required=True,
                        help="feature table (.csv or .parquet); errors.csv and <stem>_provenance.json go beside it")
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="pyradiomics parameter file (YAML/JSON), validated with pyradiomics' schema "
                             "(default: pipelines/radiomics.yaml)")
    parser.add_argument("--regions", nargs="+", default=list(REGIONS), choices=REGIONS, metavar="REGION",
                        help=f"regions to measure (default all): {' '.join(REGIONS)}")
    parser.add_argument("--map", default="voxel", choices=tuple(LABEL_MAPS),
                        help="label map: 'voxel' (voxel-wise, default) or 'median' (median-filtered)")
    parser.add_argument("--format", default="csv", choices=FORMATS, help="table format (default csv)")
    parser.add_argument("--jobs", type=int, default=1, help="scans processed in parallel (default 1)")
    parser.add_argument("--voxel-maps", action="store_true",
                        help="also write pyradiomics voxel-based feature maps (NRRD) of small regions into "
                             "<stem>_voxel_maps/")
    parser.add_argument("--max-map-voxels", type=int, default=MAX_MAP_VOXELS,
                        help="--voxel-maps refuses regions whose bounding box (which every map covers) holds "
                             f"more voxels (default {MAX_MAP_VOXELS})")
    parser.add_argument("--min-texture-voxels", type=int, default=MIN_TEXTURE_VOXELS,
                        help=f"texture classes are skipped for smaller regions, in voxels (default {MIN_TEXTURE_VOXELS})")
    parser.add_argument("--crop-margin-mm", type=float, default=CROP_MARGIN_MM,
                        help=f"image kept around each region for pyradiomics, in mm (default {CROP_MARGIN_MM:g})")
    from radiolab.cli.segment import add_mask_arguments

    add_mask_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, skipped regions not listed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.errors import RadiolabError
    from radiolab.log import configure_logging
    from radiolab.radiomics import extract_cohort
    from radiolab.segment import find_inputs

    if args.jobs < 1:
        print("radiolab features: --jobs must be at least 1", file=sys.stderr)
        return 2
    configure_logging("radiolab features", logging.ERROR if args.quiet else None)  # skipped regions: warnings
    try:
        from radiolab.cli.segment import check_mask_folder

        check_mask_folder(args.lung_masks, args.mask_format)
        scans, skipped = find_inputs(args.inputs)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        report = extract_cohort(
            scans, args.labels, args.out, params=args.params, regions=args.regions, map=args.map,
            format=args.format, jobs=args.jobs, voxel_maps=args.voxel_maps, max_map_voxels=args.max_map_voxels,
            min_texture_voxels=args.min_texture_voxels, crop_margin_mm=args.crop_margin_mm,
            progress=not args.quiet, lung_masks=args.lung_masks, mask_format=args.mask_format,
        )
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab features: error: {error}", file=sys.stderr)
        return 2
    scans_done = len({row["id"] for row in report.rows})
    skipped_rows = sum(1 for row in report.rows if row["skip_reason"])
    if not args.quiet:
        print(f"{len(report.rows)} row(s) from {scans_done} scan(s), {skipped_rows} with skips (see skip_reason), "
              f"{len(report.errors)} failure(s) in {report.errors_path}; table {report.out}"
              + (f"; {len(report.maps)} voxel map(s)" if args.voxel_maps else ""))
    return 1 if report.errors else 0
