"""``radiolab segment --in scans/ --out labels/``."""

from __future__ import annotations

import argparse
import sys

from radiolab.lung import BACKENDS, PRESETS


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab segment",
        description="Lung mask, pooled five-class Gaussian mixture, voxel-wise and median-filtered "
                    "tissue labels (Zaffino et al. 2021) for every scan, plus summary.csv.",
    )
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="PATH",
                        help="scan files (NRRD, NIfTI, MHA/MHD) and/or folders of scans or DICOM series")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="lung-mask preset: 'default' in mm/mL, 'zaffino2021' in voxels as published")
    parser.add_argument("--model", default="fit",
                        help="'fit' (pooled fit on the inputs, saved as gmm.json), 'zaffino2021', or a model file")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a pickled scikit-learn model (unpickling runs code: trusted files only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pooled fit (default 0)")
    parser.add_argument("--n-init", type=int, default=6, help="k-means initialisations of the fit (default 6)")
    parser.add_argument("--tol", type=float, default=1e-3, help="EM tolerance on mean log-likelihood (default 1e-3)")
    parser.add_argument("--median-size", type=int, default=4, help="median window edge in voxels (default 4)")
    parser.add_argument("--threshold-hu", type=float, help="override the candidate threshold, HU (preset: -155)")
    parser.add_argument("--opening", type=float,
                        help="override the opening: mm radius (default) or iterations (zaffino2021)")
    parser.add_argument("--min-island", type=float,
                        help="override the minimum island: mL (default) or voxels (zaffino2021)")
    parser.add_argument("--closing-radii", type=float, nargs="+",
                        help="override the closing ball radii: mm (default) or voxels (zaffino2021)")
    parser.add_argument("--lung-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="override a real-CT step of the default preset (docs/lung.md), e.g. "
                             "gas_max_vessel_fraction=0.02, or surface_hu=none to switch a step off; repeatable")
    add_mask_arguments(parser)
    parser.add_argument("--backend", default="fast", choices=BACKENDS,
                        help="'fast' (default) or 'reference' (the paper's library calls, slow)")
    add_backend_arguments(parser)
    parser.add_argument("--shard", metavar="i/N",
                        help="run the per-scan steps on shard i (0-based) of N of the sorted scan ids only; "
                             "labels too once `radiolab fit` has written gmm.json (see docs/batch.md)")
    parser.add_argument("--qc", action="store_true",
                        help="also write <id>_qc.png images and the automatic flags (as `radiolab qc`)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary table")
    parser.add_argument("--assume-ct", dest="assume_ct", action="store_true",
                        help="read DICOM series without a Modality tag as CT even when nothing else shows CT")
    parser.add_argument("--allow-gaps", dest="allow_gaps", action="store_true",
                        help="interpolate across gaps in a DICOM series' slice positions instead of refusing it")
    parser.add_argument("--dicom-seg", dest="dicom_seg", action="store_true",
                        help="also write <id>_labels.seg.dcm (DICOM Segmentation) for scans read directly "
                             "from a DICOM series; it carries the source's patient and study modules")
    return parser


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lung-masks`` and ``--mask-format`` (shared with features, qc and report)."""
    from radiolab.external_masks import MASK_FORMATS

    parser.add_argument("--lung-masks", metavar="DIR",
                        help="use the lung masks in DIR instead of computing them: <id>.nrrd, <id>.nii.gz, "
                             "<id>.nii, <id>.mha or a TotalSegmentator folder <id>/, matched exactly by scan id")
    parser.add_argument("--mask-format", choices=MASK_FORMATS,
                        help="convention of the --lung-masks (default: detect a TotalSegmentator folder or a "
                             "CIP map, refuse anything ambiguous)")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing where per-scan tasks run, and the resume rules (shared with `run`)."""
    group = parser.add_argument_group("backend and resume")
    group.add_argument("--jobs", type=int, default=1,
                       help="scans processed in parallel by local processes (default 1)")
    group.add_argument("--cluster", choices=("local", "slurm", "pbs"),
                       help="run on a Dask cluster: 'local' (LocalCluster of processes), "
                            "'slurm' or 'pbs' (workers started as batch jobs by dask-jobqueue)")
    group.add_argument("--workers", type=int,
                       help="Dask workers to start with --cluster (default 2 for local)")
    group.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="address of a running Dask scheduler")
    group.add_argument("--scheduler-file", metavar="FILE",
                       help="scheduler file of a running Dask scheduler (dask scheduler --scheduler-file)")
    group.add_argument("--cluster-config", metavar="FILE",
                       help="YAML job settings for --cluster slurm/pbs: queue, account, cores, memory, "
                            "walltime, job_extra_directives, job_script_prologue, ...")
    group.add_argument("--attempts", type=int, default=3,
                       help="tries per scan (an error or a dead worker) before it is recorded failed (default 3)")
    group.add_argument("--force", action="store_true",
                       help="recompute scans whose outputs are up to date (default: skip them)")


def backend_kwargs(args: argparse.Namespace) -> dict:
    """The library arguments of the backend options, by the same names."""
    return {"jobs": args.jobs, "cluster": args.cluster, "workers": args.workers, "scheduler": args.scheduler,
            "scheduler_file": args.scheduler_file, "cluster_config": args.cluster_config,
            "attempts": args.attempts, "force": args.force}


def config_from_args(args: argparse.Namespace):
    from radiolab.segment import SegmentConfig

    return SegmentConfig(
        preset=args.preset, backend=args.backend, model=args.model, trust_pickle=args.trust_pickle,
        seed=args.seed, n_init=args.n_init, tol=args.tol, median_size=args.median_size,
        threshold_hu=args.threshold_hu, opening=args.opening, min_island=args.min_island,
        closing_radii=tuple(args.closing_radii) if args.closing_radii else None,
        lung_masks=check_mask_folder(args.lung_masks, args.mask_format), mask_format=args.mask_format,
        dicom_seg=args.dicom_seg, lung_tuning=_lung_tuning(args.lung_setting),
    )


def _lung_tuning(items: list[str]) -> tuple[tuple[str, float], ...] | None:
    """``NAME=VALUE`` overrides as (name, number) pairs; a usage error names a bad one."""
    from radiolab.errors import ParameterError
    from radiolab.lung import CHEST_FIELDS, OPTIONAL_CHEST_FIELDS

    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in CHEST_FIELDS:
            raise ParameterError(f"--lung-setting {item!r}: expected NAME=VALUE with NAME one of {', '.join(CHEST_FIELDS)}")
        if value.strip().lower() == "none":
            if name not in OPTIONAL_CHEST_FIELDS:
                raise ParameterError(f"--lung-setting {item!r}: {name} cannot be none; fields that can: "
                                     f"{', '.join(OPTIONAL_CHEST_FIELDS)}")
            pairs.append((name, None))
            continue
        try:
            number = float(value)
        except ValueError:
            raise ParameterError(f"--lung-setting {item!r}: {value!r} is not a number (or none)") from None
        pairs.append((name, int(number) if name == "thin_max_slices" else number))
    return tuple(pairs) or None


def check_mask_folder(folder: str | None, mask_format: str | None = None) -> str | None:
    """The ``--lung-masks`` folder as given; an error naming it if it is not a folder."""
    import os

    from radiolab.errors import InputError, ParameterError

    if folder is None and mask_format is not None:
        raise ParameterError("--mask-format needs --lung-masks DIR")
    if folder is not None and not os.path.isdir(folder):
        raise InputError(folder, "--lung-masks folder does not exist")
    return folder


def print_summary(report, out) -> None:
    print_table(report)
    print(count_line(report, out))


def print_table(report) -> None:
    """One line per labelled scan (volumes and percentages), failures on stderr."""
    if report.rows:
        print(f"{'id':<24} {'lung mL':>9} {'GGO %':>7} {'cons %':>7} {'other %':>8} {'LI %':>7}")
    for row in sorted(report.rows, key=lambda r: r["id"]):
        print(f"{row['id']:<24} {row['lung_volume_ml']:>9.1f} {row['ggo_pct']:>7.2f} "
              f"{row['consolidation_pct']:>7.2f} {row['other_pct']:>8.2f} {row['LI_pct']:>7.2f}")
    for error in report.errors:
        print(f"FAILED {error.id} [{error.stage}]: {error.message}", file=sys.stderr)


def count_line(report, out) -> str:
    """``N done, M skipped (up to date), K failed[, P awaiting the fit]; outputs in OUT``."""
    text = (f"{len(report.done)} scan(s) done, {len(report.skipped)} skipped (up to date), "
            f"{len(report.errors)} failed")
    if report.pending:
        text += f", {len(report.pending)} awaiting labels (run `radiolab fit {out}`, then this shard again)"
    return f"{text}; outputs in {out}"


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.segment import find_inputs, segment_cohort

    from radiolab.errors import RadiolabError
    from radiolab.executors import parse_shard

    if args.jobs < 1:
        print("radiolab segment: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.shard is not None:
            parse_shard(args.shard)
        config = config_from_args(args)
        config.lung_settings()
        if config.dicom_seg:
            from radiolab.dicom.seg import require_highdicom

            require_highdicom()
        scans, skipped = find_inputs(args.inputs, assume_ct=args.assume_ct, allow_gaps=args.allow_gaps)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        report = segment_cohort(scans, args.out, config, shard=args.shard, progress=not args.quiet,
                                **backend_kwargs(args))
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab segment: error: {error}", file=sys.stderr)
        return 2
    qc_failed = 0
    if args.qc and report.rows:
        from radiolab.report.flags import run_qc

        qc = run_qc(args.out, scans, jobs=args.jobs)
        qc_failed = sum(1 for image in qc.images if image.error)
        for image in qc.images:
            if image.error:
                print(f"QC image failed for {image.id}: {image.error}", file=sys.stderr)
    if not args.quiet:
        print_summary(report, args.out)
    return 1 if report.errors or qc_failed else 0
