"""Speed, memory and agreement of `radiolab segment`: the paper's library calls against radiolab's kernels.

Run with ``make bench`` (or ``python benchmarks/bench_segment.py``). In one process it:

1. makes a seeded 512 x 512 x 300 chest phantom at 0.7 x 0.7 x 1.0 mm and saves it as NRRD;
2. times every stage with two backends on it, preset ``zaffino2021`` (the paper's sizes):
   ``reference`` = scipy ``binary_opening`` and ``label``, SimpleITK
   ``BinaryMorphologicalClosing`` (balls of 30 and 20 voxels), scikit-learn
   ``GaussianMixture`` on every 4th lung voxel as floats (n_init=6) and its ``predict``,
   ``scipy.ndimage.median_filter(size=4)``; ``fast`` = radiolab's default backend;
3. prints a table (stage, reference s, fast s, ratio), the end-to-end ratio, agreement
   (mask Dice, % of label voxels equal, median maps identical) and the peak RSS of a
   separate fast ``radiolab segment`` process;
4. with ``--fit-scaling``, times the pooled fit on 1 and on 20 scans' histograms.

Ratios are measured in the same process on the same machine; absolute seconds depend
on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radiolab.io import read_volume, slicer_segment_fields, write_volume
from radiolab.lung import lung_mask
from radiolab.mixture import (
    fit_mixture,
    fit_mixture_reference,
    label_tissue,
    lung_histogram,
    sum_histograms,
)
from radiolab.smoothing import median_labels
from radiolab.synthetic import chest_phantom

SHAPE = (300, 512, 512)
SPACING = (1.0, 0.7, 0.7)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def write_outputs(out_dir: Path, mask, labels, smoothed, geometry) -> None:
    fields = slicer_segment_fields(labels.shape)
    write_volume(out_dir / "scan_lung.nrrd", mask.view(np.uint8), geometry)
    write_volume(out_dir / "scan_labels.nrrd", labels, geometry, fields=fields)
    write_volume(out_dir / "scan_labels_median.nrrd", smoothed, geometry, fields=fields)


def run_backend(backend: str, scan_path: Path, out_dir: Path, seed: int) -> tuple[dict, dict]:
    times: dict[str, float] = {}
    volume, times["read"] = timed(read_volume, scan_path)
    mask, times["lung mask"] = timed(lung_mask, volume.array, volume.spacing, preset="zaffino2021", backend=backend)
    if backend == "reference":
        start = time.perf_counter()
        voxels = np.maximum(volume.array[mask], -1000)
        mixture = fit_mixture_reference(voxels, seed=seed)
        times["mixture fit"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        mixture = fit_mixture(lung_histogram(volume.array, mask), seed=seed)
        times["mixture fit"] = time.perf_counter() - start
    labels, times["labels (MAP)"] = timed(label_tissue, volume.array, mask, mixture, backend=backend)
    smoothed, times["median 4x4x4"] = timed(median_labels, labels, backend=backend)
    _, times["write"] = timed(write_outputs, out_dir, mask, labels, smoothed, volume.geometry)
    return times, {"mask": mask, "labels": labels, "median": smoothed, "mixture": mixture, "volume": volume}


def peak_rss_of_fast_segment(scan_path: Path, out_dir: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time of `radiolab segment` on the scan, in a fresh process."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    code = (
        "import sys, time; from radiolab.cli import main; t = time.perf_counter(); "
        f"status = main(['segment', '--in', {str(scan_path)!r}, '--out', {str(out_dir)!r}, "
        "'--preset', 'zaffino2021', '--quiet']); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]; "
        "print(int(hwm) / 1024, time.perf_counter() - t); "
        "sys.exit(status)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, seconds = result.stdout.split()[-2:]
    return float(peak), float(seconds)


def fit_scaling(seed: int, phantom) -> None:
    mask = phantom.truth["lung"]
    base = phantom.volume[mask].astype(np.int32)
    rng = np.random.default_rng(seed)
    one = lung_histogram(phantom.volume, mask)
    scans = []
    for index in range(20):
        # Each extra "scan": the same lung with its own noise and density offset.
        values = base + np.rint(rng.normal(rng.integers(-20, 20), 10, base.size)).astype(np.int32)
        scans.append(lung_histogram(values.reshape(1, 1, -1), np.ones((1, 1, values.size), bool)))
    pooled = sum_histograms(scans)
    _, t1 = timed(fit_mixture, one, seed=seed)
    _, t20 = timed(fit_mixture, pooled, seed=seed, n_scans=20)
    print(f"\npooled fit, 1 scan  ({one.n_voxels:>11,d} voxels, {len(one.counts)} bins): {t1:.3f} s")
    print(f"pooled fit, 20 scans ({pooled.n_voxels:>11,d} voxels, {len(pooled.counts)} bins): {t20:.3f} s")
    print(f"time ratio 20 / 1 scans: {t20 / t1:.2f} for {pooled.n_voxels / one.n_voxels:.1f}x the voxels")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-scaling", action="store_true", help="also time the pooled fit on 1 and 20 scans")
    parser.add_argument("--skip-reference", action="store_true", help="time the fast backend only")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="radiolab-bench-"))
    phantom, seconds = timed(chest_phantom, SHAPE, SPACING, lesion_fraction=0.2, seed=args.seed)
    scan_path = work / "scan.nrrd"
    write_volume(scan_path, phantom.volume, phantom.geometry)
    scan_mib = phantom.volume.nbytes / 2**20
    print(f"phantom {SHAPE} at {SPACING} mm ({scan_mib:.0f} MiB int16), made in {seconds:.1f} s")

    results = {}
    backends = ["fast"] if args.skip_reference else ["fast", "reference"]
    for backend in backends:
        out = work / backend
        out.mkdir()
        results[backend] = run_backend(backend, scan_path, out, args.seed)

    fast_times, fast = results["fast"]
    figures: dict = {"shape": SHAPE, "spacing_mm": SPACING, "fast_s": fast_times}
    print(f"\n{'stage':<16}{'reference s':>13}{'fast s':>10}{'ratio':>9}")
    if "reference" in results:
        ref_times, ref = results["reference"]
        figures["reference_s"] = ref_times
        for stage in fast_times:
            print(f"{stage:<16}{ref_times[stage]:>13.2f}{fast_times[stage]:>10.2f}{ref_times[stage] / fast_times[stage]:>8.1f}x")
        total_ref, total_fast = sum(ref_times.values()), sum(fast_times.values())
        print(f"{'end to end':<16}{total_ref:>13.2f}{total_fast:>10.2f}{total_ref / total_fast:>8.1f}x")
        dice = 2 * np.logical_and(fast["mask"], ref["mask"]).sum() / (fast["mask"].sum() + ref["mask"].sum())
        lung = fast["mask"] | ref["mask"]
        equal_all = float((fast["labels"] == ref["labels"]).mean() * 100)
        equal_lung = float((fast["labels"][lung] == ref["labels"][lung]).mean() * 100)
        same_model = label_tissue(fast["volume"].array, fast["mask"], ref["mixture"])
        equal_same_model = float((same_model == label_tissue(fast["volume"].array, fast["mask"], ref["mixture"],
                                                             backend="reference")).mean() * 100)
        median_identical = bool(np.array_equal(median_labels(fast["labels"]),
                                               median_labels(fast["labels"], backend="reference")))
        print(f"\nmask Dice fast vs reference: {dice:.5f}")
        print(f"labels equal: {equal_all:.3f}% of all voxels, {equal_lung:.3f}% of lung voxels "
              f"(each backend with its own fit)")
        print(f"labels equal with the same mixture (lookup table vs scikit-learn predict): {equal_same_model:.4f}%")
        print(f"median maps identical to scipy's: {median_identical}")
        print("mixture means, fast:      " + " ".join(f"{m:8.1f}" for m in fast["mixture"].means))
        print("mixture means, reference: " + " ".join(f"{m:8.1f}" for m in ref["mixture"].means))
        figures.update(end_to_end_ratio=total_ref / total_fast, dice=dice, labels_equal_pct=equal_all,
                       labels_equal_lung_pct=equal_lung, labels_equal_same_model_pct=equal_same_model,
                       median_identical=median_identical,
                       stage_ratio={s: ref_times[s] / fast_times[s] for s in fast_times})
    io_only = fast_times["read"] + fast_times["write"]
    print(f"\nfast end to end {sum(fast_times.values()):.2f} s = {sum(fast_times.values()) / io_only:.2f}x "
          f"the read + write time ({io_only:.2f} s)")
    peak, cli_seconds = peak_rss_of_fast_segment(scan_path, work / "cli")
    print(f"`radiolab segment` (fast, one process): {cli_seconds:.2f} s, peak RSS {peak:.0f} MiB = "
          f"{peak / scan_mib:.2f}x the scan's int16 size")
    figures.update(cli_seconds=cli_seconds, peak_rss_mib=peak, peak_rss_ratio=peak / scan_mib,
                   io_ratio=sum(fast_times.values()) / io_only)
    if args.fit_scaling:
        fit_scaling(args.seed, phantom)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
