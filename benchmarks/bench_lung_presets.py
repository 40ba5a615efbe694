"""End-to-end time of `radiolab segment` with the ``default`` preset against ``zaffino2021``.

Makes the seeded chest phantom of ``bench_segment.py`` (512 x 512 x 300 at
0.7 x 0.7 x 1.0 mm by default; ``--shape`` for a smaller one on a loaded machine),
writes it as NRRD, and runs ``radiolab segment`` on it in fresh processes, the two
presets alternating, ``--repeats`` times each. Prints the median wall time of each and
their ratio (the target: default at most 1.5 x zaffino2021).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from radiolab.io import write_volume
from radiolab.synthetic import chest_phantom


def run(scans: Path, out: Path, preset: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "radiolab", "segment", "--in", str(scans), "--out", str(out),
                    "--preset", preset, "--force", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.7, 0.7), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scans = Path(tmp) / "scans"
        scans.mkdir()
        phantom = chest_phantom(tuple(args.shape), tuple(args.spacing), lesion_fraction=0.15, seed=0)
        write_volume(scans / "scan.nrrd", phantom.volume, phantom.geometry)
        times = {"zaffino2021": [], "default": []}
        for _ in range(args.repeats):
            for preset in times:
                times[preset].append(run(scans, Path(tmp) / f"out_{preset}", preset))
    median = {preset: statistics.median(values) for preset, values in times.items()}
    ratio = median["default"] / median["zaffino2021"]
    print(f"shape {tuple(args.shape)} at {tuple(args.spacing)} mm, {args.repeats} runs each")
    for preset, value in median.items():
        print(f"  {preset:12s} {value:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[preset])})")
    print(f"  default / zaffino2021 = {ratio:.2f}x (target <= 1.5x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"times_s": times, "median_s": median, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
