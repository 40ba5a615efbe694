"""``radiolab classify train | predict | evaluate``: slice and subject-level classifiers.

Needs the optional packages torch and MONAI (``make install`` or
``pip install 'radiolab[torch]'``); without them it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

# CLI option -> ClassifyConfig field (same name with dashes); None defaults keep the recipe's value.
_TRAIN_SETTINGS: list[tuple[str, dict]] = [
    ("--image-size", dict(type=int, help="network input edge, px (default 224; zhao2020 480, yang2020 512)")),
    ("--in-channels", dict(type=int, help="input channels; the grey slice is repeated (default 1)")),
    ("--init-features", dict(type=int, help="DenseNet initial features (default 64; densenet-tiny 16)")),
    ("--growth-rate", dict(type=int, help="DenseNet growth rate (default 32; densenet-tiny 8)")),
    ("--block-config", dict(type=int, nargs="+", help="DenseNet layers per block, e.g. 6 12 32 32")),
    ("--weights", dict(help="initial weights: a state dict or checkpoint file (loaded safely; never downloaded)")),
    ("--epochs", dict(type=int, help="training epochs")),
    ("--batch-size", dict(type=int, help="mini-batch size")),
    ("--optimizer", dict(choices=("adam", "sgd"), help="optimiser")),
    ("--lr", dict(type=float, help="learning rate")),
    ("--momentum", dict(type=float, help="SGD momentum (default 0.9)")),
    ("--weight-decay", dict(type=float, help="L2 weight decay (default 0)")),
    ("--scheduler", dict(choices=("cosine", "step", "none"), help="learning-rate schedule")),
    ("--cosine-period", dict(type=int, help="cosine schedule period, epochs (default 10)")),
    ("--step-size", dict(type=int, help="step schedule period, epochs (default 5)")),
    ("--step-gamma", dict(type=float, help="step schedule factor (default 0.1)")),
    ("--crop-scale", dict(type=float, help="smallest area fraction of the random resized crop (1 = off)")),
    ("--hflip", dict(action=argparse.BooleanOptionalAction, help="random horizontal flips")),
    ("--vflip", dict(action=argparse.BooleanOptionalAction, help="random vertical flips")),
    ("--brightness", dict(type=float, help="brightness jitter amplitude (0 = off)")),
    ("--contrast", dict(type=float, help="contrast jitter amplitude (0 = off)")),
    ("--window-width", dict(type=float, help="CT window width, HU (default 1200)")),
    ("--window-level", dict(type=float, help="CT window level, HU (default -600)")),
    ("--crop-margin-mm", dict(type=float, help="margin around the lung's bounding box, mm (default 10)")),
    ("--min-lung-area-mm2", dict(type=float, help="lung area that makes a slice a lung slice, mm^2 (default 1000)")),
    ("--slice-step", dict(type=int, help="training slices: every n-th lung slice (default 1; yang2020 3)")),
    ("--lesion-slices", dict(action=argparse.BooleanOptionalAction,
                             help="training slices of positive scans: those with lesion (needs masks)")),
    ("--mask-labels", dict(type=int, nargs="+", help="label values taken as lesion (default 3 4: GGO, consolidation)")),
    ("--cls-weight", dict(type=float, help="classification loss weight of joint models (default 1)")),
    ("--seg-weight", dict(type=float, help="segmentation loss weight of joint models (default 1)")),
    ("--trim", dict(type=float, help="share of slices dropped at each end before the subject mean (default 0.1)")),
    ("--threshold", dict(help="'youden' or a fixed probability (default youden; zhao2020 0.5, yang2020 0.8)")),
    ("--sensitivity", dict(type=float, help="choose the threshold for this validation sensitivity, e.g. 0.95")),
    ("--select-on", dict(choices=("auc", "loss"), help="best epoch by validation subject AUC or slice loss")),
    ("--seed", dict(type=int, help="seed of weights, shuffling and augmentation (default 0)")),
    ("--device", dict(help="auto (CUDA when available), cpu, cuda, cuda:N")),
    ("--num-workers", dict(type=int, help="DataLoader worker processes (default 0)")),
]


def _field(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", help="'youden' or a fixed probability (default: the checkpoint's setting)")
    parser.add_argument("--sensitivity", type=float, help="choose the threshold for this validation sensitivity")
    parser.add_argument("--trim", type=float, help="share of slices dropped at each end (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, help="inference batch size (default: the training batch size)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--cam", action="store_true",
                        help="write Grad-CAM overlays (PNG) and heat maps (NRRD, volume geometry) to <out>/cam/")
    parser.add_argument("--cam-layer", help="module name used for Grad-CAM (default: the model's own)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiolab classify",
        description="Slice and subject-level CT classification with torch models (DenseNet-121/169 from "
                    "MONAI, joint classification and segmentation, your own); recipes zhao2020 and yang2020.",
    )
    actions = parser.add_subparsers(dest="action", metavar="{train,predict,evaluate}")
    actions.required = True

    train = actions.add_parser("train", help="train on the train split, pick the best epoch on the val split",
                               description="Train a classifier; checkpoints every epoch, best epoch on validation.")
    train.add_argument("--data", required=True, help="manifest CSV: path, label (0/1), subject, split (train/val/test)"
                                                     "; optional mask, lung")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--model", help="densenet121, densenet169 (default), densenet-tiny, jcs, jcs-tiny, "
                                       "package.module:callable, or a TorchScript file")
    train.add_argument("--recipe", choices=("zhao2020", "yang2020"), help="preset settings; options override them")
    train.add_argument("--labels-dir", help="`radiolab segment` output folder: <id>_labels.nrrd give lesion masks")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    for option, kwargs in _TRAIN_SETTINGS:
        train.add_argument(option, **kwargs)
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")

    predict = actions.add_parser("predict", help="slice and subject probabilities of scans",
                                 description="Write predictions.csv: slice probabilities and the subject-level "
                                             "trimmed mean with its decision.")
    predict.add_argument("--checkpoint", required=True, help="run folder (uses best.pt) or checkpoint file")
    predict.add_argument("--data", required=True, nargs="+",
                         help="a manifest CSV, or scan files, 2-D images and folders")
    predict.add_argument("--out", required=True, help="output folder")
    _add_output_options(predict)

    evaluate = actions.add_parser("evaluate", help="subject-level metrics, ROC and reader comparison on a split",
                                  description="AUC with 95%% CI, accuracy, sensitivity, specificity, F1, "
                                              "fourfold table, ROC plot, optional reader comparison.")
    evaluate.add_argument("--checkpoint", required=True, help="run folder (uses best.pt) or checkpoint file")
    evaluate.add_argument("--data", required=True, help="manifest CSV with labels and splits")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--split", default="test", help="split to evaluate (default test)")
    evaluate.add_argument("--ci", default="delong", choices=("delong", "bootstrap"),
                          help="method of the AUC's 95%% confidence interval (default delong)")
    evaluate.add_argument("--reader", help="CSV with columns subject, read (0/1): compare with a human reader")
    _add_output_options(evaluate)
    return parser


def _train(args) -> int:
    from radiolab.classify.recipes import config_for
    from radiolab.classify.train import resume_config, train

    overrides = {_field(option): getattr(args, _field(option)) for option, _ in _TRAIN_SETTINGS}
    overrides["model"] = args.model
    if args.resume:
        if args.recipe is not None:
            overrides["recipe"] = args.recipe
        config = resume_config(args.out, **overrides)
    else:
        config = config_for(args.recipe, **overrides)
    result = train(args.data, args.out, config, resume=args.resume, labels_dir=args.labels_dir,
                   progress=not args.quiet, log=None if args.quiet else print)
    if not args.quiet:
        print(f"best epoch {result.best_epoch}; threshold {result.threshold:.4f} ({result.threshold_rule}); "
              f"{len(result.failures)} scan(s) skipped; outputs in {result.out}")
    return 0


def _print_subjects(subjects, threshold: float) -> None:
    print(f"{'subject':<24} {'split':<6} {'label':>5} {'probability':>11} {'call':>4} {'slices':>6}")
    for row in subjects:
        label = "" if row["label"] is None else row["label"]
        print(f"{row['subject']:<24} {row['split']:<6} {label!s:>5} {row['probability']:>11.4f} "
              f"{int(row['probability'] >= threshold):>4} {row['n_slices']:>6}")


def _predict(args) -> int:
    from radiolab.classify.predict import predict

    data = args.data[0] if len(args.data) == 1 and args.data[0].lower().endswith(".csv") else args.data
    report = predict(args.checkpoint, data, args.out, threshold=args.threshold, sensitivity=args.sensitivity,
                     trim=args.trim, batch_size=args.batch_size, device=args.device, cam=args.cam,
                     cam_layer=args.cam_layer, progress=not args.quiet)
    for failure in report.failures:
        print(f"FAILED {failure.path}: {failure.message}", file=sys.stderr)
    if not args.quiet:
        _print_subjects(report.subjects, report.threshold)
        print(f"threshold {report.threshold:.4f} ({report.threshold_rule}, from {report.threshold_source}); "
              f"outputs in {report.out}")
    return 1 if report.failures else 0


def _evaluate(args) -> int:
    from radiolab.classify.predict import evaluate

    report = evaluate(args.checkpoint, args.data, args.out, split=args.split, threshold=args.threshold,
                      sensitivity=args.sensitivity, trim=args.trim, ci=args.ci, reader=args.reader,
                      batch_size=args.batch_size, device=args.device, cam=args.cam, cam_layer=args.cam_layer,
                      progress=not args.quiet)
    for failure in report.failures:
        print(f"FAILED {failure.path}: {failure.message}", file=sys.stderr)
    if not args.quiet:
        m = report.metrics
        c = m["confusion"]

        def fmt(value):
            return "n/a" if value is None else f"{value:.3f}"

        print(f"{m['split']} subjects: {m['subjects']} ({m['positives']} positive); threshold {m['threshold']:.4f} "
              f"({m['threshold_rule']}, from {m['threshold_source']})")
        print(f"AUC {m['auc']:.3f} (95% CI {m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}, {m['auc_ci_method']}); "
              f"accuracy {fmt(m['accuracy'])}, sensitivity {fmt(m['sensitivity'])}, "
              f"specificity {fmt(m['specificity'])}, F1 {fmt(m['f1'])}")
        print(f"              truth +  truth -\n  called +  {c['tp']:>8} {c['fp']:>8}\n  called -  {c['fn']:>8} {c['tn']:>8}")
        if report.reader is not None:
            r = report.reader["reader"]["confusion"]
            print(f"reader:       truth +  truth -\n  called +  {r['tp']:>8} {r['fp']:>8}\n  called -  {r['fn']:>8} {r['tn']:>8}")
            mc = report.reader["mcnemar"]["all"]
            print(f"McNemar (exact): model only right {mc['first_only']}, reader only right {mc['second_only']}, "
                  f"p = {mc['p_value']:.4g}")
        print(f"outputs in {report.out}")
    return 1 if report.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = _get_parser().parse_args(argv)
    from radiolab.classify import require_monai, require_torch
    from radiolab.errors import OptionalDependencyError, RadiolabError

    prefix = f"radiolab classify {args.action}"
    try:
        require_torch()
        require_monai()
    except OptionalDependencyError as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return 2
    try:
        return {"train": _train, "predict": _predict, "evaluate": _evaluate}[args.action](args)
    except RadiolabError as error:  # bad input or options; a bug shows its traceback
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
