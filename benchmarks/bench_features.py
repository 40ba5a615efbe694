"""Seconds per region of `radiolab features`, and what the two levers change.

A 512x512x300 synthetic chest CT (0.7 x 0.7 mm in plane, 1 mm slices, 20 % lesions,
seed 0) is segmented with radiolab's own stages (lung mask, pooled mixture, voxel-wise
labels); then pyradiomics features are extracted for each region with the shipped
parameters (pipelines/radiomics.yaml), with resampling to 1 and 2 mm, and with bins
of 50 and 100 HU. For every setting the script prints seconds per region and the
relative change of a handful of first-order and texture features against the shipped
parameters, and writes everything to <work>/bench_features.json.

    python benchmarks/bench_features.py [--work bench-features] [--regions lung ggo ...]
                                        [--levers default res1 res2 bin50 bin100]

The phantom and its labels are cached in <work>; a rerun only measures.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radiolab import radiomics as rad  # noqa: E402
from radiolab.io import read_volume, write_volume  # noqa: E402
from radiolab.lung import bounding_box  # noqa: E402

SHAPE = (300, 512, 512)
SPACING = (1.0, 0.7, 0.7)
FEATURES = [
    "original_firstorder_Mean",
    "original_firstorder_90Percentile",
    "original_firstorder_Entropy",
    "original_glcm_Contrast",
    "original_glcm_Idm",
    "original_glrlm_RunLengthNonUniformityNormalized",
    "original_glszm_ZonePercentage",
    "original_gldm_DependenceNonUniformityNormalized",
    "original_ngtdm_Coarseness",
]


def lever_params(name: str, base: dict) -> dict:
    params = copy.deepcopy(base)
    setting = params.setdefault("setting", {})
    if name.startswith("res"):
        mm = float(name[3:])
        setting["resampledPixelSpacing"] = [mm, mm, mm]
    elif name.startswith("bin"):
        setting["binWidth"] = float(name[3:])
    elif name != "default":
        raise SystemExit(f"unknown lever {name!r}: use default, resN (mm) or binN (HU)")
    return rad.load_params(params)


def make_case(work: Path):
    scan, labels = work / "phantom.nrrd", work / "phantom_labels.nrrd"
    if scan.exists() and labels.exists():
        volume = read_volume(scan)
        return volume.array, read_volume(labels).array.astype(np.uint8), volume.geometry, {}
    from radiolab.lung import lung_mask
    from radiolab.mixture import fit_mixture, label_tissue, lung_histogram
    from radiolab.synthetic import chest_phantom

    timings = {}
    start = time.perf_counter()
    phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.2, seed=0)
    timings["phantom_s"] = time.perf_counter() - start
    start = time.perf_counter()
    mask = lung_mask(phantom.volume, phantom.geometry.spacing)
    mixture = fit_mixture(lung_histogram(phantom.volume, mask), seed=0)
    tissue = label_tissue(phantom.volume, mask, mixture)
    timings["segment_s"] = time.perf_counter() - start
    write_volume(scan, phantom.volume, phantom.geometry)
    write_volume(labels, tissue, phantom.geometry)
    return phantom.volume, tissue, phantom.geometry, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="bench-features", help="cache and result folder")
    parser.add_argument("--regions", nargs="+", default=list(rad.REGIONS), choices=rad.REGIONS)
    parser.add_argument("--levers", nargs="+", default=["default", "res1", "res2", "bin50", "bin100"])
    parser.add_argument("--map-voxels", nargs="*", type=int, default=[1000, 5000, 20000],
                        help="also time --voxel-maps on cubes of about this many voxels")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    volume, labels, geometry, timings = make_case(work)
    base = rad.load_params()
    voxels = {name: int(mask.sum()) for name, mask in rad.region_masks(labels, args.regions).items()}
    print(f"phantom {SHAPE} voxels at {SPACING} mm; region voxels: {voxels}; {timings}", flush=True)
    results: dict = {"shape": SHAPE, "spacing_mm": SPACING, "voxels": voxels, "setup": timings,
                     "machine": {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
                                 "python": platform.python_version(),
                                 "pyradiomics": rad.pyradiomics_version()},
                     "levers": {}}
    for lever in args.levers:
        params = lever_params(lever, base)
        rows = {}
        seconds = {}
        cpu = {}
        for region in args.regions:
            start, start_cpu = time.perf_counter(), time.process_time()
            [row] = rad.extract_features(volume, labels, geometry, params=params, regions=[region])
            seconds[region] = time.perf_counter() - start
            cpu[region] = time.process_time() - start_cpu
            rows[region] = {k: row[k] for k in FEATURES if k in row}
            rows[region]["skip_reason"] = row["skip_reason"]
            print(f"{lever:>8} {region:>13} {voxels[region]:>9} voxels {seconds[region]:7.1f} s "
                  f"(CPU {cpu[region]:.1f} s) load {os.getloadavg()[0]:.1f}", flush=True)
        results["levers"][lever] = {"seconds": seconds, "cpu_seconds": cpu, "total_s": sum(seconds.values()),
                                    "total_cpu_s": sum(cpu.values()), "features": rows,
                                    "params_sha256": rad.params_sha256(params)}
        (work / "bench_features.json").write_text(json.dumps(results, indent=2))
    if args.map_voxels:
        results["voxel_maps"] = time_voxel_maps(volume, labels, geometry, base, args.map_voxels)
        (work / "bench_features.json").write_text(json.dumps(results, indent=2))
    results["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    (work / "bench_features.json").write_text(json.dumps(results, indent=2))
    print_tables(results)
    return 0


def time_voxel_maps(volume, labels, geometry, params, sizes) -> dict:
    """Seconds for voxel-based maps of compact consolidation cubes of the given sizes."""
    from scipy import ndimage

    consolidation = labels == rad.CLASS_LABELS["consolidation"]
    box = bounding_box(consolidation)
    depth = ndimage.distance_transform_edt(consolidation[box])
    centre = np.array(np.unravel_index(np.argmax(depth), depth.shape)) + [s.start for s in box]
    timings = {}
    for size in sizes:
        half = max(1, int(round(size ** (1 / 3) / 2)))
        cube = np.zeros(labels.shape, dtype=bool)
        cube[tuple(slice(c - half, c + half + 1) for c in centre)] = True
        cube &= consolidation
        start, start_cpu = time.perf_counter(), time.process_time()
        maps, skipped = rad.voxel_feature_maps(volume, cube, geometry, params=params, max_voxels=10**6)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        timings[str(int(cube.sum()))] = {"seconds": wall, "cpu_seconds": cpu, "maps": len(maps)}
        print(f"voxel maps: {int(cube.sum())} voxels, {len(maps)} maps, {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)
    return timings


def print_tables(results: dict) -> None:
    levers = list(results["levers"])
    regions = list(results["levers"][levers[0]]["seconds"])
    print("\n| region | voxels | " + " | ".join(levers) + " |")
    print("|---|---:|" + "---:|" * len(levers))
    for region in regions:
        cells = [f"{results['levers'][lever]['seconds'].get(region, float('nan')):.1f}" for lever in levers]
        print(f"| {region} | {results['voxels'][region]:,} | " + " | ".join(cells) + " |")
    print(f"| **all {len(regions)}** | | "
          + " | ".join(f"**{results['levers'][lv]['total_s']:.0f}**" for lv in levers) + " |")
    print("| CPU s, all | | " + " | ".join(f"{results['levers'][lv].get('total_cpu_s', float('nan')):.0f}"
                                           for lv in levers) + " |")
    others = [lever for lever in levers if lever != "default"]
    if "default" not in results["levers"] or not others:
        return
    reference = results["levers"]["default"]["features"]
    print("\nRelative change against the shipped parameters, median |change| over regions "
          "(max in brackets), %:\n")
    print("| feature | " + " | ".join(others) + " |")
    print("|---|" + "---:|" * len(others))
    for feature in FEATURES:
        cells = []
        for lever in others:
            changes = []
            for region, values in results["levers"][lever]["features"].items():
                ref = reference.get(region, {}).get(feature)
                new = values.get(feature)
                if ref is None or new is None or not np.isfinite(ref) or not np.isfinite(new) or ref == 0:
                    continue
                changes.append(abs(new - ref) / abs(ref) * 100)
            cells.append(f"{np.median(changes):.1f} ({max(changes):.1f})" if changes else "n/a")
        print(f"| {feature.replace('original_', '')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
