"""``radiolab robustness --in labels/ --out DIR --sizes 10 20 30 --repeats 3``."""

from __future__ import annotations

import argparse
import sys

from radiolab.lung import BACKENDS, PRESETS


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab robustness",
        description="Stability of the pooled five-class mixture (Zaffino et al. 2021, Fig. 4): fit it on random "
                    "subsets of increasing size, several groups per size; plot the Gaussians and report the "
                    "spread of every parameter (robustness.json, robustness.csv, robustness.png).",
    )
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="PATH",
                        help="an output folder of `radiolab segment` (its cached *_hist.json are used), "
                             "or scan files/folders (lung masks are computed first, into OUT/masks)")
    parser.add_argument("--out", dest="out_dir", required=True, help="output folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30],
                        help="subset sizes in scans (default 10 20 30); sizes above the cohort are skipped")
    parser.add_argument("--repeats", type=int, default=3, help="groups per size (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and fits (default 0)")
    parser.add_argument("--n-init", type=int, default=6, help="k-means initialisations per fit (default 6)")
    parser.add_argument("--tol", type=float, default=1e-3, help="EM tolerance (default 1e-3)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="lung-mask preset when scans are given (default 'default')")
    parser.add_argument("--backend", default="fast", choices=BACKENDS,
                        help="lung-mask backend when scans are given (default 'fast')")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return parser


def print_report(report: dict, out_dir: str) -> None:
    print(f"{report['settings']['n_scans']} scans ({report['source']}); spread over groups "
          "(mean +- sd [range])")
    print(f"{'size':>5} {'class':<14} {'mean HU':>26} {'sd HU':>24} {'weight':>26}")
    by_key = {(r["size"], r["class"], r["parameter"]): r for r in report["spread"]}
    # spread rows come ordered by size, then class: keep that order, once per pair
    for size, name in dict.fromkeys((r["size"], r["class"]) for r in report["spread"]):
        cells = []
        for parameter, spec in (("mean_hu", ".1f"), ("sd_hu", ".1f"), ("weight", ".3f")):
            row = by_key[(size, name, parameter)]
            cells.append(f"{row['mean']:{spec}} +- {row['sd']:{spec}} [{row['range']:{spec}}]")
        print(f"{size:>5} {name:<14} {cells[0]:>26} {cells[1]:>24} {cells[2]:>26}")
    for item in report["skipped_inputs"]:
        print(f"skipped {item['input']}: {item['reason']}", file=sys.stderr)
    for item in report["skipped"]:
        print(f"skipped {item['what']}: {item['reason']}", file=sys.stderr)
    if len(report["mask_keys"]) > 1:
        print("warning: the histograms come from different lung-mask settings", file=sys.stderr)
    print(f"outputs in {out_dir}: robustness.json, robustness.csv, robustness.png")


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.errors import RadiolabError
    from radiolab.robustness import run_robustness

    try:
        report = run_robustness(args.inputs, args.out_dir, sizes=args.sizes, repeats=args.repeats, seed=args.seed,
                                n_init=args.n_init, tol=args.tol, preset=args.preset, backend=args.backend,
                                progress=not args.quiet)
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab robustness: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_report(report, args.out_dir)
    return 0
