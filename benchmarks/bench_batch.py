"""Batch benchmark: cohort throughput with 1 and 2 workers, resume, and the memory of the reduce step.

    python benchmarks/bench_batch.py [--scans 8] [--shape 150 512 512] [--dask] [--out bench-batch]

1. ``radiolab segment`` on a seeded synthetic cohort (default 8 scans of 512 x 512 x 150
   voxels at 0.7 x 0.7 x 2 mm): one worker with its kernels held to one thread, two
   joblib workers with one kernel thread each, and one worker using both cores (what
   a single-scan user gets); with ``--dask`` also Dask ``LocalCluster``s of 1 and 2
   workers. Start-up of the pool or cluster is timed apart. Wall times, scans per
   minute, the 1 -> 2 worker ratio, and a check that every backend wrote
   byte-identical outputs.
2. A rerun of the finished folder (everything skipped: the cost of hashing inputs).
3. Peak Python memory (tracemalloc, numpy included) of the reduce step, from the cached
   ``<id>_hist.json`` records of 4, 8 and 16 scans (``fit_cohort``), and for 100 and
   10,000 synthetic per-scan histograms streamed into the pooled fit. The
   paper's approach, concatenating every lung voxel, is given for scale.
"""

from __future__ import annotations

import argparse
import contextlib
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


BACKENDS = (
    # (name, executor options, kernel threads per worker: None = the executor's choice)
    ("1 worker, 1 kernel thread", {"jobs": 1}, 1),
    ("2 workers (joblib), 1 kernel thread each", {"jobs": 2}, 1),
    ("1 worker, both cores", {"jobs": 1}, 0),
)
DASK_BACKENDS = (
    ("dask local, 1 worker", {"cluster": "local", "workers": 1}, None),
    ("dask local, 2 workers", {"cluster": "local", "workers": 2}, None),
)


def run_backends(scans, out: Path, backends=BACKENDS, repeat: int = 1) -> dict:
    """Each backend ``repeat`` times, in turn (A B C A B C), keeping each one's fastest run:
    on a shared machine a burst of load then weighs on every backend alike."""
    from radiolab.executors import kernel_threads

    config = SegmentConfig()
    results = {}
    trees = {}
    for name, options, threads in [backend for _ in range(repeat) for backend in backends]:
        folder = out / name.split(" (")[0].replace(" ", "-").replace(",", "")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        # 0 = all cores; the executors themselves give each of N workers cores / N.
        with kernel_threads(threads) if threads is not None else contextlib.nullcontext():
            with make_executor(**options) as executor:
                executor.map(abs, [-1, -2])  # start the pool's processes: counted as start-up
                ready = time.perf_counter()
                report = segment_cohort(scans, folder, config, executor=executor)
                finished = time.perf_counter()
        assert not report.errors, report.errors
        run_s = finished - ready
        runs = results.get(name, {}).get("runs_s", []) + [round(run_s, 2)]
        best = min(runs)
        results[name] = {"startup_s": round(ready - start, 2), "run_s": best, "runs_s": runs,
                         "scans_per_min": round(60 * len(scans) / best, 2), "load_after": os.getloadavg()[0]}
        trees[name] = _tree(folder)
        print(f"  {name:<42} start {ready - start:6.2f} s   run {run_s:6.2f} s   "
              f"{60 * len(scans) / run_s:6.2f} scans/min   (load {os.getloadavg()[0]:.1f})", flush=True)
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
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(150, 512, 512), help="z y x voxels")
    parser.add_argument("--spacing", type=float, nargs=3, default=(2.0, 0.7, 0.7), help="z y x mm")
    parser.add_argument("--repeat", type=int, default=2, help="runs per backend, in turn; the fastest counts")
    parser.add_argument("--dask", action="store_true", help="also time Dask LocalClusters of 1 and 2 workers")
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
    backends = run_backends(scans, out, BACKENDS + (DASK_BACKENDS if args.dask else ()), repeat=args.repeat)
    one, two, both = (backends[name]["run_s"] for name, _, _ in BACKENDS)
    ratio = one / two
    print(f"  scans/min, 2 workers / 1 worker (one kernel thread each): x{ratio:.2f}; "
          f"1 worker on both cores / on one: x{one / both:.2f}; identical outputs: {backends['identical_outputs']}")
    dask_ratio = None
    if args.dask:
        dask_ratio = backends["dask local, 1 worker"]["run_s"] / backends["dask local, 2 workers"]["run_s"]
        print(f"  speed-up 1 -> 2 Dask workers: x{dask_ratio:.2f}")
    resume_s = rerun(scans, out / "1-worker-1-kernel-thread")
    print(f"rerun of the finished folder (all {len(scans)} skipped): {resume_s:.2f} s")
    print("reduce step memory:")
    counts = [n for n in (4, 8, 16) if n <= len(scans)]
    from_records = reduce_memory_from_records(out / "1-worker-1-kernel-thread", counts, out)
    template = Histogram.from_json(json.loads((out / "1-worker-1-kernel-thread" / f"{scans[0].id}_hist.json").read_text())["histogram"])
    synthetic = reduce_memory_synthetic(template, (100, 10000))
    results = {"scans": len(scans), "shape": list(args.shape), "cpu_count": os.cpu_count(),
               "backends": backends, "speedup_1_to_2_workers_one_thread_each": round(ratio, 2),
               "speedup_both_cores_over_one": round(one / both, 2),
               "speedup_dask_1_to_2_workers": None if dask_ratio is None else round(dask_ratio, 2), "rerun_all_skipped_s": round(resume_s, 2),
               "reduce_from_records": from_records, "reduce_synthetic": synthetic}
    (out / "bench_batch.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {out / 'bench_batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
