"""Batch benchmark: backends on a 16-scan cohort, resume, and the memory of the reduce step.

    python benchmarks/bench_batch.py [--scans 16] [--out bench-batch]

1. ``radiolab segment`` on a seeded synthetic cohort with each backend: this process
   (``--jobs 1``), joblib (``--jobs 2``), and a Dask ``LocalCluster`` with 1 and 2
   workers (start-up of the pool or cluster timed apart). Wall times, the 1 -> 2 worker ratio, and a
   check that every backend wrote byte-identical outputs.
2. A rerun of the finished folder (everything skipped: the cost of hashing inputs).
3. Peak Python memory (tracemalloc, numpy included) of the reduce step, from the cached
   ``<id>_hist.json`` records of 4, 8 and 16 scans (``fit_cohort``), and for 100 and
   10,000 synthetic per-scan histograms streamed into the pooled fit. The
   paper's approach, concatenating every lung voxel, is given for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radiolab.executors import make_executor  # noqa: E402
from radiolab.mixture import Histogram  # noqa: E402
from radiolab.segment import PooledHistogram, SegmentConfig, find_inputs, fit_cohort, fit_pooled, segment_cohort  # noqa: E402
from radiolab.synthetic import make_cohort  # noqa: E402


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def run_backends(scans, out: Path) -> dict:
    config = SegmentConfig()
    results = {}
    trees = {}
    for name, options in (("serial (--jobs 1)", {"jobs": 1}), ("joblib (--jobs 2)", {"jobs": 2}),
                          ("dask local, 1 worker", {"cluster": "local", "workers": 1}),
                          ("dask local, 2 workers", {"cluster": "local", "workers": 2})):
        folder = out / name.split(" (")[0].replace(" ", "-").replace(",", "")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        with make_executor(**options) as executor:
            executor.map(abs, [-1, -2])  # start the pool's processes: counted as start-up
            ready = time.perf_counter()
            report = segment_cohort(scans, folder, config, executor=executor)
            finished = time.perf_counter()
        assert not report.errors, report.errors
        results[name] = {"startup_s": round(ready - start, 2), "run_s": round(finished - ready, 2)}
        trees[name] = _tree(folder)
        print(f"  {name:<24} start {ready - start:6.2f} s   run {finished - ready:6.2f} s", flush=True)
    reference = next(iter(trees.values()))
    results["identical_outputs"] = all(tree == reference for tree in trees.values())
    return results


def rerun(scans, folder: Path) -> float:
    start = time.perf_counter()
    report = segment_cohort(scans, folder, SegmentConfig())
    assert not report.done and len(report.skipped) == len(scans)
    return time.perf_counter() - start


def reduce_memory_from_records(source: Path, counts, out: Path) -> dict:
    figures = {}
    records = sorted(source.glob("*_hist.json"))
    for n in counts:
        folder = out / f"records-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path in records[:n]:
            shutil.copy(path, folder / path.name)
        tracemalloc.start()
        start = time.perf_counter()
        fit_cohort(folder)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures[n] = {"peak_mib": round(peak / 2**20, 2), "seconds": round(elapsed, 2)}
        print(f"  fit_cohort on {n:>5} records: peak {peak / 2**20:7.2f} MiB  ({elapsed:.2f} s)", flush=True)
    return figures


def _pool_and_fit(template: Histogram, n: int, seed: int) -> PooledHistogram:
    rng = np.random.default_rng(seed)
    pooled = PooledHistogram()
    for index in range(n):  # each scan's histogram exists only while it is added
        pooled.add(f"scan_{index:05d}", Histogram(template.lo, rng.poisson(template.counts).astype(np.int64)))
    fit_pooled(pooled, SegmentConfig())
    return pooled


def reduce_memory_synthetic(template: Histogram, counts, seed: int = 0) -> dict:
    figures = {}
    for n in counts:
        start = time.perf_counter()
        _pool_and_fit(template, n, seed)  # timed without tracemalloc, which slows Python ~10x
        elapsed = time.perf_counter() - start
        tracemalloc.start()
        pooled = _pool_and_fit(template, n, seed)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        voxels = pooled.total.n_voxels
        figures[n] = {"peak_mib": round(peak / 2**20, 2), "seconds": round(elapsed, 2), "lung_voxels": voxels,
                      "concatenated_float64_gib": round(voxels * 8 / 2**30, 2)}
        print(f"  pooled fit of {n:>5} histograms: peak {peak / 2**20:7.2f} MiB  ({elapsed:.2f} s); "
              f"concatenating their {voxels:,} lung voxels as float64 would take {voxels * 8 / 2**30:.2f} GiB",
              flush=True)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 160, 160))
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 2.2, 2.2))
    parser.add_argument("--out", default="bench-batch")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scans_dir = out / "scans"
    shutil.rmtree(scans_dir, ignore_errors=True)
    make_cohort(scans_dir, args.scans, shape=tuple(args.shape), spacing=tuple(args.spacing), seed=0)
    scans, _ = find_inputs(scans_dir)
    print(f"{len(scans)} scans of {tuple(args.shape)} voxels, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    segment_cohort(scans[:1], out / "warm-up", SegmentConfig())  # imports and first-call costs
    print("backends:")
    backends = run_backends(scans, out)
    ratio = backends["dask local, 1 worker"]["run_s"] / backends["dask local, 2 workers"]["run_s"]
    joblib_ratio = backends["serial (--jobs 1)"]["run_s"] / backends["joblib (--jobs 2)"]["run_s"]
    print(f"  speed-up 1 -> 2 Dask workers: x{ratio:.2f}; --jobs 1 -> 2: x{joblib_ratio:.2f}; "
          f"identical outputs: {backends['identical_outputs']}")
    resume_s = rerun(scans, out / "serial")
    print(f"rerun of the finished folder (all {len(scans)} skipped): {resume_s:.2f} s")
    print("reduce step memory:")
    counts = [n for n in (4, 8, 16) if n <= len(scans)]
    from_records = reduce_memory_from_records(out / "serial", counts, out)
    template = Histogram.from_json(json.loads((out / "serial" / f"{scans[0].id}_hist.json").read_text())["histogram"])
    synthetic = reduce_memory_synthetic(template, (100, 10000))
    results = {"scans": len(scans), "shape": list(args.shape), "cpu_count": os.cpu_count(),
               "backends": backends, "speedup_dask_1_to_2_workers": round(ratio, 2),
               "speedup_jobs_1_to_2": round(joblib_ratio, 2), "rerun_all_skipped_s": round(resume_s, 2),
               "reduce_from_records": from_records, "reduce_synthetic": synthetic}
    (out / "bench_batch.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {out / 'bench_batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
