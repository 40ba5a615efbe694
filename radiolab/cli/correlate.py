"""``radiolab correlate scores.csv --labels labels/ --out DIR``."""

from __future__ import annotations

import argparse
import sys


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab correlate",
        description="Correlate lung involvement LI with an expert's 0-5 severity score S (Zaffino et al. 2021): "
                    "Pearson C, Spearman rho, R^2, balanced resampling, S_auto bins with quadratic-weighted "
                    "kappa; writes correlation.json, correlation_box.png and correlation_scatter.png.",
    )
    parser.add_argument("scores_csv", metavar="scores.csv",
                        help="CSV with a scan-id column and a score column (and optionally LI_pct)")
    parser.add_argument("--labels", dest="labels_dir", default="labels",
                        help="output folder of `radiolab segment` holding summary.csv (default labels/); "
                             "not read when scores.csv has an LI_pct column")
    parser.add_argument("--out", dest="out_dir", default="correlation",
                        help="output folder (default correlation/)")
    parser.add_argument("--id-col", default="id", help="scan-id column of scores.csv (default id)")
    parser.add_argument("--score-col", default="S", help="score column of scores.csv (default S)")
    parser.add_argument("--iterations", type=int, default=100, help="balanced resamples (default 100)")
    parser.add_argument("--per-group", type=int, default=None,
                        help="scans drawn per score group in each resample (default: smallest group's size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _zonal_lines(zonal: dict | None) -> list[str]:
    if zonal is None:
        return []
    if "skip_reason" in zonal:
        return [f"S vs zonal_severity      not computed ({zonal['n']} scans): {zonal['skip_reason']}"]
    return [f"S vs zonal_severity      Pearson {_fmt(zonal['pearson_r'])} (p = {_fmt(zonal['pearson_p'], '.3g')}), "
            f"Spearman {_fmt(zonal['spearman_rho'])} (p = {_fmt(zonal['spearman_p'], '.3g')}), n = {zonal['n']}"]


def print_report(result: dict, out_dir: str) -> None:
    sampling = result["resampling"]
    lines = [
        f"scans matched            {result['n']}",
        f"Pearson C                {_fmt(result['pearson_r'])}  (p = {_fmt(result['pearson_p'], '.3g')})",
        f"Spearman rho             {_fmt(result['spearman_rho'])}  (p = {_fmt(result['spearman_p'], '.3g')})",
        f"R^2 (S = a + b LI)       {_fmt(result['r2'])}  (a = {_fmt(result['intercept'])}, "
        f"b = {_fmt(result['slope'], '.4f')} per %)",
        f"resampled R^2            {_fmt(result['resampled_r2_mean'])} +- {_fmt(result['resampled_r2_sd'])}",
        f"resampled C              {_fmt(result['resampled_r_mean'])} +- {_fmt(result['resampled_r_sd'])}",
        f"  ({sampling['iterations']} iterations, {sampling['per_group']} scans per group, "
        f"groups {sampling['group_sizes']}, seed {sampling['seed']})",
        f"kappa (quadratic)        {_fmt(result['kappa_quadratic'])}",
        *_zonal_lines(result.get("zonal_severity")),
        f"exact S = S_auto         {100 * result['exact_agreement']:.1f} %",
        "",
        "confusion matrix (rows S, columns S_auto):",
        "      " + " ".join(f"{label:>4}" for label in result["confusion_matrix"]["labels"]),
    ]
    for label, row in zip(result["confusion_matrix"]["labels"], result["confusion_matrix"]["counts"]):
        lines.append(f"  {label:>2}  " + " ".join(f"{count:>4}" for count in row))
    print("\n".join(lines))
    for key, where in (("ids_missing_in_labels", "without LI"), ("ids_missing_in_scores", "without a score")):
        missing = result[key]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            print(f"{len(missing)} scan(s) {where}, left out: {shown}", file=sys.stderr)
    print(f"outputs in {out_dir}: correlation.json, correlation_box.png, correlation_scatter.png")


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.errors import RadiolabError
    from radiolab.stats import run_correlation

    try:
        result = run_correlation(args.scores_csv, args.labels_dir, args.out_dir, id_col=args.id_col,
                                 score_col=args.score_col, iterations=args.iterations, seed=args.seed,
                                 per_group=args.per_group)
    except RadiolabError as error:  # bad input or options; anything else is a bug and shows its traceback
        print(f"radiolab correlate: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_report(result, args.out_dir)
    return 0
