"""``radiolab insert-lesions``: grow GGO or consolidation from the pleura of a real CT.

Writes, in the output folder, ``<id>_<kind>.nrrd`` (the CT with the lesions, its
geometry kept), ``<id>_<kind>_truth.nrrd`` (uint8, 1 = lesion voxel, a 3D Slicer segment)
and ``<id>_<kind>_truth.json`` (achieved fraction, blob volumes in mL, HU range, seed).
Exit status 1 with a message naming the file on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from radiolab.errors import InputError, RadiolabError

# Geometry of mask and CT must agree this closely (mm).
GEOMETRY_TOLERANCE_MM = 1e-3


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab insert-lesions",
        description="Grow ground-glass (-700..-500 HU) or consolidation (-100..+100 HU) blobs from "
                    "the costal pleura inward, to a fraction of the lung mask, and write the new CT "
                    "with its lesion truth.",
    )
    parser.add_argument("--in", dest="ct", required=True, metavar="CT", help="CT volume (NRRD, NIfTI, MHA)")
    parser.add_argument("--mask", required=True, metavar="MASK",
                        help="lung mask on the CT's grid (any non-zero voxel is lung)")
    parser.add_argument("--fraction", type=float, required=True,
                        help="lesion volume / lung-mask volume, 0..0.9")
    parser.add_argument("--kind", choices=("ggo", "consolidation"), default="ggo",
                        help="lesion kind (default: ggo)")
    parser.add_argument("--out", dest="out_dir", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--blob-ml", dest="blob_ml", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        default=None, help="range of one blob's volume in mL (default: 20 150)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def _check_same_grid(ct, mask) -> None:
    if ct.array.shape != mask.array.shape:
        raise InputError(mask.path, f"mask grid {mask.array.shape} differs from the CT's {ct.array.shape} "
                                    f"({ct.path})")
    for name in ("spacing", "origin", "direction"):
        a = np.asarray(getattr(ct.geometry, name))
        b = np.asarray(getattr(mask.geometry, name))
        if not np.allclose(a, b, atol=GEOMETRY_TOLERANCE_MM, rtol=0):
            raise InputError(mask.path, f"mask {name} {tuple(b)} differs from the CT's {tuple(a)} ({ct.path})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``radiolab insert-lesions``; returns the exit status."""
    from radiolab.io import read_volume, scan_id, slicer_segment_fields, write_json_atomic, write_volume
    from radiolab.lesions import DEFAULT_BLOB_ML, insert_lesions

    args = _get_parser().parse_args(argv)
    if not 0.0 <= args.fraction <= 0.9:
        print(f"error: --fraction must lie in [0, 0.9], got {args.fraction}", file=sys.stderr)
        return 1
    try:
        ct = read_volume(args.ct)
        mask = read_volume(args.mask)
        _check_same_grid(ct, mask)
        lung = mask.array != 0
        if not lung.any():
            raise InputError(mask.path, "lung mask is empty")
        result = insert_lesions(ct.array, ct.geometry.spacing, lung, fraction=args.fraction, kind=args.kind,
                                direction=ct.geometry.direction, blob_ml=tuple(args.blob_ml or DEFAULT_BLOB_ML),
                                seed=args.seed)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RadiolabError as error:  # e.g. a mask with no pleural surface inside the image
        print(f"error: {args.mask}: {error}", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{scan_id(args.ct)}_{args.kind}"
    provenance = {"radiolab_source": "insert-lesions", "radiolab_lesion_kind": args.kind,
                  "radiolab_lesion_fraction": round(result.fraction, 6), "radiolab_seed": args.seed}
    write_volume(out / f"{stem}.nrrd", result.volume, ct.geometry, fields=provenance)
    segment = ((1, "ggo" if args.kind == "ggo" else "consolidation",
                (0.55, 0.8, 1.0) if args.kind == "ggo" else (0.6, 0.36, 0.15)),)
    write_volume(out / f"{stem}_truth.nrrd", result.lesions.astype(np.uint8), ct.geometry,
                 fields={**slicer_segment_fields(result.lesions.shape, segment), **provenance})
    write_json_atomic(out / f"{stem}_truth.json", {
        "ct": str(args.ct), "mask": str(args.mask), "kind": args.kind, "requested_fraction": args.fraction,
        "fraction": result.fraction, "lesion_ml": sum(result.blob_ml), "blob_ml": result.blob_ml,
        "lung_ml": float(lung.sum()) * ct.geometry.voxel_volume_ml, "hu_range": list(result.hu_range),
        "seed": args.seed,
    })
    print(f"wrote {out / stem}.nrrd: {args.kind} in {result.fraction:.1%} of the lung "
          f"({sum(result.blob_ml):.1f} mL in {len(result.blob_ml)} blobs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
