"""Speed, memory and agreement of `radiolab segment` against the paper's steps written with its libraries.

Run with ``make bench`` (or ``python benchmarks/bench_segment.py``). In one process it:

1. makes a seeded 512 x 512 x 300 chest phantom at 0.7 x 0.7 x 1.0 mm and saves it as
   gzip NRRD;
2. times the **reference**: the paper's steps as a careful user writes them with the
   libraries it names, preset ``zaffino2021`` and the published model: SimpleITK read;
   scipy ``binary_opening`` (3 iterations) and ``label``; SimpleITK
   ``BinaryMorphologicalClosing`` (balls of 30 and 20 voxels) on the mask's bounding
   box plus 20 voxels in-plane; the published mixture's MAP by scikit-learn
   ``predict`` on float64 HU; ``scipy.ndimage.median_filter(size=4)``; SimpleITK
   writes of the three maps. A second line replaces the box closings by the paper
   scripts' full-volume closings;
3. runs ``radiolab segment --model zaffino2021 --preset zaffino2021`` as a fresh
   process (``--runs`` times) and takes its wall time from start to exit and its peak
   resident memory (VmHWM, interpreter included); the same with ``--preset default``;
4. times radiolab's stages in this process (the per-stage table), and checks the
   agreement: labels equal to the reference's, median map identical to scipy's, mask
   identical.

Ratios are measured in the same run on the same machine; absolute seconds depend on
the machine and its load, which is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radiolab import _bitmorph, lung
from radiolab.io import read_volume, slicer_segment_fields, write_volume
from radiolab.mixture import label_tissue, load_mixture, lung_histogram
from radiolab.scoring import summary_row
from radiolab.smoothing import median_labels
from radiolab.synthetic import chest_phantom

SHAPE = (300, 512, 512)
SPACING = (1.0, 0.7, 0.7)
PRESET = "zaffino2021"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# -- the reference: the paper's steps with the libraries it names ----------------------

def sitk_read(path: Path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def sitk_write(out_dir: Path, image, mask, labels, smoothed) -> None:
    import SimpleITK as sitk

    for name, array in (("lung", mask.astype(np.uint8)), ("labels", labels), ("labels_median", smoothed)):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(out_dir / f"scan_{name}.nrrd"), useCompression=True)


def sitk_full_volume_closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """The paper scripts' closing: a SimpleITK ball on the whole volume."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    closed = sitk.BinaryMorphologicalClosing(image, [radius] * 3, sitk.sitkBall, 1, True)
    return sitk.GetArrayFromImage(closed).astype(bool)


def run_reference(scan_path: Path, out_dir: Path, full_volume_closings: bool) -> tuple[dict, dict]:
    from scipy import ndimage

    cpu_start = time.process_time()

    settings = lung.settings_for(PRESET)
    model = load_mixture("zaffino2021")
    times: dict[str, float] = {}
    (image, volume), times["read"] = timed(sitk_read, scan_path)
    spacing = tuple(reversed(image.GetSpacing()))
    start = time.perf_counter()
    candidates = np.maximum(volume, settings.clip_hu) < settings.threshold_hu
    opened = ndimage.binary_opening(candidates, iterations=int(settings.opening))
    times["opening"] = time.perf_counter() - start
    islands, times["islands"] = timed(lung._lung_islands, opened, spacing, settings, "reference")
    start = time.perf_counter()
    mask = islands
    for radius in settings.closing_radii:
        mask = lung._sitk_closing(mask, radius)
    times["closings"] = time.perf_counter() - start
    full = {}
    if full_volume_closings:
        start, cpu = time.perf_counter(), time.process_time()
        full_mask = islands
        for radius in settings.closing_radii:
            full_mask = sitk_full_volume_closing(full_mask, int(radius))
        full["closings"] = time.perf_counter() - start
        full["cpu"] = time.process_time() - cpu
        full["same_mask"] = bool(np.array_equal(full_mask, mask))
    labels, times["labels (MAP)"] = timed(label_tissue, volume, mask, model, backend="reference")
    smoothed, times["median 4x4x4"] = timed(ndimage.median_filter, labels, size=4)
    _, times["write"] = timed(sitk_write, out_dir, image, mask, labels, smoothed)
    cpu = time.process_time() - cpu_start - full.get("cpu", 0.0)
    return times, {"mask": mask, "labels": labels, "median": smoothed, "full": full, "cpu": cpu}


# -- radiolab, stage by stage in this process ------------------------------------------

def run_fast_stages(scan_path: Path, out_dir: Path) -> dict[str, float]:
    settings = lung.settings_for(PRESET)
    model = load_mixture("zaffino2021")
    times: dict[str, float] = {}
    volume, times["read"] = timed(read_volume, scan_path)
    spacing = volume.geometry.spacing
    start = time.perf_counter()
    # As lung_mask does it: thresholded, packed and opened slab by slab, kept packed.
    below = _bitmorph.BelowThreshold(volume.array, settings.threshold_hu)
    opened = lung._opening(below, spacing, settings, "fast", packed=True)
    times["opening"] = time.perf_counter() - start
    mask, times["islands"] = timed(lung._lung_islands, opened, spacing, settings, "fast",
                                   width=volume.array.shape[-1])
    del opened
    start = time.perf_counter()
    for radius in settings.closing_radii:
        mask = lung._closing(mask, spacing, radius, settings, "fast")
    times["closings"] = time.perf_counter() - start
    _, times["histogram"] = timed(lung_histogram, volume.array, mask)
    labels, times["labels (MAP)"] = timed(label_tissue, volume.array, mask, model)
    smoothed, times["median 4x4x4"] = timed(median_labels, labels)
    _, times["summary row"] = timed(summary_row, labels, volume.array, mask, spacing,
                                    direction=volume.geometry.direction)
    start = time.perf_counter()
    fields = slicer_segment_fields(labels.shape)
    write_volume(out_dir / "scan_lung.nrrd", mask.view(np.uint8), volume.geometry)
    write_volume(out_dir / "scan_labels.nrrd", labels, volume.geometry, fields=fields)
    write_volume(out_dir / "scan_labels_median.nrrd", smoothed, volume.geometry, fields=fields)
    times["write"] = time.perf_counter() - start
    return times


# -- radiolab segment as a fresh process -----------------------------------------------

def run_cli(scan_path: Path, out_dir: Path, preset: str) -> tuple[float, float, float]:
    """Wall seconds from process start to exit, peak RSS (MiB) and CPU seconds of `radiolab segment`."""
    # The console script's own code, plus a report of VmHWM at exit (ru_maxrss would
    # carry this process's size over to the child across exec).
    code = (
        "import atexit, sys\n"
        "def peak():\n"
        "    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "    sys.stderr.write('VmHWM ' + line.split()[1] + '\\n')\n"
        "atexit.register(peak)\n"
        "from radiolab.cli import main\n"
        f"sys.exit(main(['segment', '--in', {str(scan_path)!r}, '--out', {str(out_dir)!r}, "
        f"'--model', 'zaffino2021', '--preset', {preset!r}, '--quiet', '--force']))\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"radiolab segment failed:\n{result.stderr}")
    peak_kib = int([line for line in result.stderr.splitlines() if line.startswith("VmHWM ")][-1].split()[1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, peak_kib / 1024, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3, help="fresh `radiolab segment` processes per preset")
    parser.add_argument("--skip-reference", action="store_true", help="time radiolab only")
    parser.add_argument("--skip-full-volume", action="store_true",
                        help="leave out the full-volume closings of the paper's scripts (30-90 s)")
    parser.add_argument("--work", help="folder for the phantom and outputs (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="radiolab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scan_path = work / "scan.nrrd"
    phantom, seconds = timed(chest_phantom, SHAPE, SPACING, lesion_fraction=0.2, seed=args.seed)
    write_volume(scan_path, phantom.volume, phantom.geometry)
    scan_mib = phantom.volume.nbytes / 2**20
    del phantom
    print(f"phantom {SHAPE} at {SPACING} mm ({scan_mib:.0f} MiB int16), made in {seconds:.1f} s")
    print(f"start: {load_text()}", flush=True)
    figures: dict = {"shape": SHAPE, "spacing_mm": SPACING, "cpu_count": os.cpu_count(),
                     "load_at_start": os.getloadavg()}

    runs: dict[str, list] = {PRESET: [], "default": []}

    def cli_runs(count: int) -> None:
        for _ in range(count):
            for preset in runs:
                runs[preset].append(run_cli(scan_path, work / f"cli-{preset}", preset))

    # Half the runs before the reference and half after, so that a drifting load
    # weighs on both sides alike.
    cli_runs((args.runs + 1) // 2)
    fast_dir = work / "fast-stages"
    fast_dir.mkdir(exist_ok=True)
    fast = run_fast_stages(scan_path, fast_dir)
    figures["fast_stages_s"] = fast
    print(f"\nradiolab stages in one process ({load_text()}):")
    for stage, seconds in fast.items():
        print(f"  {stage:<16}{seconds:>7.2f} s")
    print(f"  {'sum':<16}{sum(fast.values()):>7.2f} s")

    ref = None
    if not args.skip_reference:
        ref_dir = work / "reference"
        ref_dir.mkdir(exist_ok=True)
        ref_times, ref = run_reference(scan_path, ref_dir, not args.skip_full_volume)
        total_ref = sum(ref_times.values())
    cli_runs(args.runs // 2)
    cli = {}
    for preset, results in runs.items():
        cli[preset] = {"seconds": [round(s, 3) for s, _, _ in results],
                       "median_s": statistics.median(s for s, _, _ in results),
                       "cpu_s": statistics.median(c for _, _, c in results),
                       "peak_rss_mib": max(p for _, p, _ in results)}
        print(f"`radiolab segment --preset {preset}`: {', '.join(f'{s:.2f}' for s, _, _ in results)} s "
              f"(median {cli[preset]['median_s']:.2f} s, {cli[preset]['cpu_s']:.2f} CPU s), peak RSS "
              f"{cli[preset]['peak_rss_mib']:.0f} MiB = {cli[preset]['peak_rss_mib'] / scan_mib:.2f}x "
              "the scan's int16 size", flush=True)
    figures["cli"] = cli
    paper_s = cli[PRESET]["median_s"]
    default_ratio = cli["default"]["median_s"] / paper_s
    print(f"default preset / paper preset, end to end: {default_ratio:.2f}x")
    figures["default_over_paper"] = default_ratio
    if ref is not None:
        figures["reference_s"] = ref_times
        print(f"\nreference ({load_text()}):")
        print(f"{'stage':<16}{'reference s':>13}{'radiolab s':>12}{'ratio':>9}")
        for stage, seconds in ref_times.items():
            ours = fast.get(stage)
            ratio = f"{seconds / ours:>8.1f}x" if ours else ""
            print(f"{stage:<16}{seconds:>13.2f}{ours if ours is not None else float('nan'):>12.2f}{ratio}")
        print(f"{'end to end':<16}{total_ref:>13.2f}{paper_s:>12.2f}{total_ref / paper_s:>8.1f}x"
              "   (radiolab: `radiolab segment`, process start to exit)")
        cpu_ratio = ref["cpu"] / cli[PRESET]["cpu_s"]
        print(f"{'CPU seconds':<16}{ref['cpu']:>13.2f}{cli[PRESET]['cpu_s']:>12.2f}{cpu_ratio:>8.1f}x"
              "   (less sensitive to other processes' load)")
        figures.update(end_to_end_ratio=total_ref / paper_s, reference_cpu_s=ref["cpu"], cpu_ratio=cpu_ratio)
        if ref["full"]:
            total_full = total_ref - ref_times["closings"] + ref["full"]["closings"]
            del ref["full"]["cpu"]
            print(f"{'with full-volume closings (paper scripts)':<16} {total_full:.2f} s = "
                  f"{total_full / paper_s:.1f}x; closings {ref['full']['closings']:.2f} s, "
                  f"same mask as the box closings: {ref['full']['same_mask']}")
            figures.update(reference_full_volume_s=total_full, end_to_end_ratio_full_volume=total_full / paper_s,
                           full_volume_same_mask=ref["full"]["same_mask"])
        ours = {key: read_volume(work / f"cli-{PRESET}" / f"scan_{name}.nrrd").array
                for key, name in (("mask", "lung"), ("labels", "labels"), ("median", "labels_median"))}
        from scipy import ndimage

        mask_identical = bool(np.array_equal(ours["mask"].astype(bool), ref["mask"]))
        labels_equal = float((ours["labels"] == ref["labels"]).mean() * 100)
        median_identical = bool(np.array_equal(ours["median"], ndimage.median_filter(ours["labels"], size=4)))
        print(f"\nmask identical to the reference's: {mask_identical}")
        print(f"labels equal to the reference's: {labels_equal:.4f}% of voxels")
        print(f"median map identical to scipy's median of the same labels: {median_identical}")
        figures.update(mask_identical=mask_identical, labels_equal_pct=labels_equal,
                       median_identical=median_identical)
    print(f"\nend: {load_text()}")
    figures["load_at_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
