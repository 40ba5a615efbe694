"""Prediction and evaluation with a trained classifier.

`predict` scores scans (a manifest or plain paths) and writes ``predictions.csv``: one
row per slice (``level=slice``) and one per subject (``level=subject``, the trimmed mean
of its slice probabilities, with the decision at the threshold).

`evaluate` does the same for a manifest and adds, on the evaluated split (``test`` by
default): AUC with its 95 % CI, accuracy, sensitivity, specificity, F1 and the
fourfold table at the threshold (``metrics.json``), the ROC curve (``roc.png``), and
optionally the comparison with a human reader (``reader.json``).

The threshold is fixed, or chosen on validation subjects (Youden's J or a target
sensitivity): the manifest's ``val`` rows when it has labelled ones, else the validation
subjects stored in the checkpoint at the best epoch.
"""

from __future__ import annotations

import csv
import io as _io
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from radiolab import __version__
from radiolab.classify.data import (
    ManifestRow,
    ScanFailure,
    ScanSlices,
    prepare_scans,
    read_manifest,
    rows_from_paths,
    write_failures,
)
from radiolab.classify.metrics import auc_ci, binary_metrics, compare_reader, delong_auc
from radiolab.classify.models import build_model, load_checkpoint, resolve_device, state_dict_of
from radiolab.classify.recipes import ClassifyConfig, parse_threshold
from radiolab.classify.train import slice_probabilities, subject_probabilities, threshold_from
from radiolab.errors import DataError, InputError
from radiolab.io import atomic_path, write_json_atomic, write_text_atomic

PREDICTION_COLUMNS = ("level", "subject", "split", "label", "path", "slice", "position_mm", "probability",
                      "prediction", "n_slices")


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with its settings and validation record."""

    model: torch.nn.Module
    config: ClassifyConfig
    path: str
    epoch: int | None
    threshold: float | None
    threshold_rule: str | None
    validation: dict[str, Any] | None


def load_trained(checkpoint: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> TrainedModel:
    """Restore a model from a run folder (its ``best.pt``) or a checkpoint file, safely
    (``torch.load(weights_only=True)``).

    Raises
    ------
    InputError
        If the file is missing, unsafe, or not a radiolab classify checkpoint.
    """
    path = os.fspath(checkpoint)
    if os.path.isdir(path):
        path = os.path.join(path, "best.pt")
    data = load_checkpoint(path)
    if "config" not in data:
        raise InputError(path, "not a radiolab classify checkpoint (no settings inside); "
                               "plain weights go to `train --weights`")
    config = ClassifyConfig.from_json(data["config"])
    model = build_model(config)
    try:
        model.load_state_dict(state_dict_of(data))
    except RuntimeError as error:
        raise InputError(path, f"weights do not fit model {config.model!r}: {str(error).splitlines()[0]}") from None
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model.to(device).eval()
    return TrainedModel(model, config, path, data.get("epoch"), data.get("threshold"), data.get("threshold_rule"),
                        data.get("validation"))


@dataclass
class PredictionReport:
    """What `predict` / `evaluate` produced."""

    out: str
    subjects: list[dict[str, Any]]
    threshold: float
    threshold_rule: str
    threshold_source: str
    metrics: dict[str, Any] | None = None
    reader: dict[str, Any] | None = None
    failures: list[ScanFailure] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


def _resolve_threshold(trained: TrainedModel, val_subjects: Sequence[dict[str, Any]], *,
                       threshold: str | float | None, sensitivity: float | None) -> tuple[float, str, str]:
    rule = trained.config.threshold if threshold is None else parse_threshold(threshold)
    target = sensitivity if sensitivity is not None else (trained.config.sensitivity if threshold is None else None)
    if target is None and not isinstance(rule, str):
        return float(rule), "fixed", "given"
    labelled = [s for s in val_subjects if s["label"] is not None]
    if len({s["label"] for s in labelled}) == 2:
        value, how = threshold_from([s["label"] for s in labelled], [s["probability"] for s in labelled],
                                    threshold=rule, sensitivity=target)
        return value, how, f"manifest val split ({len(labelled)} subjects)"
    stored = trained.validation
    if stored and len(set(stored["labels"])) == 2:
        value, how = threshold_from(stored["labels"], stored["probabilities"], threshold=rule, sensitivity=target)
        return value, how, f"checkpoint validation subjects ({len(stored['labels'])}, epoch {trained.epoch})"
    raise DataError("cannot choose a threshold: no labelled validation subjects of both classes in the data "
                     "or the checkpoint; give a fixed threshold")


def _prediction_rows(scans: Sequence[ScanSlices], probabilities: Sequence[np.ndarray],
                     subjects: Sequence[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    rows = []
    for scan, probs in zip(scans, probabilities):
        for index, position, p in zip(scan.indices, scan.positions_mm, probs):
            rows.append({"level": "slice", "subject": scan.row.subject, "split": scan.row.split,
                         "label": scan.row.label, "path": scan.row.path, "slice": int(index),
                         "position_mm": None if np.isnan(position) else round(float(position), 3),
                         "probability": round(float(p), 6)})
    for subject in subjects:
        rows.append({"level": "subject", "subject": subject["subject"], "split": subject["split"],
                     "label": subject["label"], "probability": round(subject["probability"], 6),
                     "prediction": int(subject["probability"] >= threshold), "n_slices": subject["n_slices"]})
    return rows


def _write_csv(path: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_text_atomic(path, buffer.getvalue())


def _score_rows(trained: TrainedModel, rows: Sequence[ManifestRow], out: str, *, batch_size: int,
                device: torch.device, progress: bool) -> tuple[list[ScanSlices], list[np.ndarray], list[ScanFailure]]:
    scans, failures = prepare_scans(rows, trained.config, training=False,
                                    cache_dir=os.path.join(out, "slices"), progress=progress)
    probabilities, _ = slice_probabilities(trained.model, scans, device=device, batch_size=batch_size,
                                           in_channels=trained.config.in_channels, progress=progress)
    return scans, probabilities, failures


def _write_cams(trained: TrainedModel, scans: Sequence[ScanSlices], out: str, *, device, batch_size: int,
                cam_layer: str | None, progress: bool) -> list[str]:
    from tqdm.auto import tqdm

    from radiolab.classify.cam import scan_cams, write_cam_outputs

    written = []
    for scan in tqdm(scans, desc="heat maps", unit="scan", disable=None if progress else True, leave=False):
        cams, probs = scan_cams(trained.model, scan, device=device, batch_size=batch_size,
                                in_channels=trained.config.in_channels, layer=cam_layer)
        written += write_cam_outputs(os.path.join(out, "cam"), scan, cams, probs)
    return written


def predict(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    threshold: str | float | None = None,
    sensitivity: float | None = None,
    trim: float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    cam: bool = False,
    cam_layer: str | None = None,
    progress: bool = True,
) -> PredictionReport:
    """Slice and subject probabilities of scans, written to ``<out>/predictions.csv``.

    Parameters
    ----------
    checkpoint : path
        Run folder (its ``best.pt``) or checkpoint file.
    data : path or paths
        A manifest CSV (label and split optional), or scan files, images and folders
        (subject = scan id).
    out : path
        Output folder.
    threshold : "youden", float or None
        Decision threshold or rule; None uses the checkpoint's setting.
    sensitivity : float, optional
        Choose the threshold for this validation sensitivity.
    trim : float, optional
        Share of slices dropped at each end before the subject mean (default: the
        checkpoint's setting, 0.1).
    batch_size : int, optional
        Inference batch (default: the training batch size).
    device : str
        ``auto``, ``cpu``, ``cuda``.
    cam : bool
        Also write Grad-CAM overlays (PNG) and heat maps (NRRD, volume geometry) to
        ``<out>/cam/``.
    cam_layer : str, optional
        Module name for Grad-CAM (default: the model's own choice).
    progress : bool

    Returns
    -------
    PredictionReport
    """
    out = os.fspath(out)
    torch_device = resolve_device(device)
    trained = load_trained(checkpoint, device=torch_device)
    trim = trained.config.trim if trim is None else float(trim)
    batch = batch_size or trained.config.batch_size
    if isinstance(data, (str, os.PathLike)) and os.fspath(data).lower().endswith(".csv"):
        rows = read_manifest(data, require_labels=False, require_splits=False)
    else:
        rows = rows_from_paths(data)
    os.makedirs(out, exist_ok=True)
    scans, probabilities, failures = _score_rows(trained, rows, out, batch_size=batch,
                                                 device=torch_device, progress=progress)
    subjects = subject_probabilities(scans, probabilities, trim=trim)
    value, rule, source = _resolve_threshold(trained, [s for s in subjects if s["split"] == "val"],
                                             threshold=threshold, sensitivity=sensitivity)
    path = os.path.join(out, "predictions.csv")
    _write_csv(path, PREDICTION_COLUMNS, _prediction_rows(scans, probabilities, subjects, value))
    write_failures(os.path.join(out, "errors.csv"), failures)
    written = [path]
    if cam:
        written += _write_cams(trained, scans, out, device=torch_device, batch_size=batch, cam_layer=cam_layer,
                               progress=progress)
    return PredictionReport(out, subjects, value, rule, source, failures=failures, written=written)


def read_reads(path: str | os.PathLike[str]) -> dict[str, int]:
    """A reader's calls: CSV with columns ``subject`` and ``read`` (0 or 1).

    Raises
    ------
    InputError
        Naming the file and line for a missing column, a bad value or a repeated subject.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "reads file does not exist")
    reads: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "subject" not in columns or "read" not in columns:
            raise InputError(path, f"reads need columns subject and read; found {', '.join(columns) or 'none'}")
        for line, raw in enumerate(reader, start=2):
            record = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(record.values()):
                continue
            if record["read"] not in ("0", "1"):
                raise InputError(path, f"line {line}: read must be 0 or 1, got {record['read']!r}")
            if record["subject"] in reads:
                raise InputError(path, f"line {line}: subject {record['subject']!r} read twice")
            reads[record["subject"]] = int(record["read"])
    if not reads:
        raise InputError(path, "no reads")
    return reads


def roc_png(path: str | os.PathLike[str], labels: Sequence[int], scores: Sequence[float], *, threshold: float,
            auc: tuple[float, float, float], reader: tuple[float, float] | None = None,
            title: str = "ROC, subject level") -> None:
    """ROC curve with the operating point at the threshold (and a reader's point)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    metrics = binary_metrics(labels, scores, threshold)
    figure = Figure(figsize=(4.6, 4.6), dpi=110)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(fpr, tpr, color="tab:blue", lw=2,
              label=f"model, AUC {auc[0]:.3f} (95% CI {auc[1]:.3f}-{auc[2]:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    axis.plot(1 - (metrics["specificity"] or 0.0), metrics["sensitivity"] or 0.0, "o", color="tab:red",
              label=f"threshold {threshold:.3f}")
    if reader is not None:
        axis.plot(1 - reader[1], reader[0], "s", color="tab:green", label="reader")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.set_xlim(-0.01, 1.01)
    axis.set_ylim(-0.01, 1.01)
    axis.set_title(title, fontsize=10)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def evaluate(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str = "test",
    threshold: str | float | None = None,
    sensitivity: float | None = None,
    trim: float | None = None,
    ci: str = "delong",
    reader: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    cam: bool = False,
    cam_layer: str | None = None,
    progress: bool = True,
) -> PredictionReport:
    """Subject-level evaluation of a trained model on one split of a manifest.

    Scores the ``val`` rows (to choose the threshold) and the ``split`` rows, and writes
    ``predictions.csv``, ``metrics.json``, ``roc.png``, and with ``reader`` also
    ``reader.json`` (the model's and the reader's fourfold tables and exact McNemar
    tests on the subjects both called). Parameters as in `predict`, plus:

    Parameters
    ----------
    split : str
        Split to evaluate (default ``test``).
    ci : {"delong", "bootstrap"}
        Method of the AUC's 95 % confidence interval.
    reader : path, optional
        CSV with columns ``subject, read`` (0/1): a human reader's calls.

    Raises
    ------
    InputError
        If the split has no usable labelled subject of both classes, or the reads
        cover none of its subjects.
    """
    out = os.fspath(out)
    manifest = os.fspath(data)
    torch_device = resolve_device(device)
    trained = load_trained(checkpoint, device=torch_device)
    trim = trained.config.trim if trim is None else float(trim)
    batch = batch_size or trained.config.batch_size
    rows = read_manifest(manifest)
    wanted = [r for r in rows if r.split in ("val", split)]
    if not any(r.split == split for r in rows):
        raise InputError(manifest, f"no rows in split {split!r}")
    os.makedirs(out, exist_ok=True)
    scans, probabilities, failures = _score_rows(trained, wanted, out, batch_size=batch,
                                                 device=torch_device, progress=progress)
    subjects = subject_probabilities(scans, probabilities, trim=trim)
    value, rule, source = _resolve_threshold(trained, [s for s in subjects if s["split"] == "val"],
                                             threshold=threshold, sensitivity=sensitivity)
    tested = [s for s in subjects if s["split"] == split and s["label"] is not None]
    labels = [int(s["label"]) for s in tested]
    scores = [float(s["probability"]) for s in tested]
    if len(set(labels)) != 2:
        raise InputError(manifest, f"split {split!r} needs usable subjects of both labels; found labels {sorted(set(labels))}")
    auc = auc_ci(labels, scores, method=ci, seed=trained.config.seed)
    split_scans = [(scan, p) for scan, p in zip(scans, probabilities) if scan.row.split == split]
    slice_labels = np.concatenate([np.full(len(scan), scan.row.label) for scan, _ in split_scans])
    slice_scores = np.concatenate([p for _, p in split_scans])
    metrics = {
        "radiolab_version": __version__, "checkpoint": trained.path, "epoch": trained.epoch, "split": split,
        "subjects": len(tested), "positives": int(sum(labels)), "trim": trim,
        "threshold": value, "threshold_rule": rule, "threshold_source": source,
        "auc": float(auc[0]), "auc_ci95": [float(auc[1]), float(auc[2])], "auc_ci_method": ci,
        **{k: v for k, v in binary_metrics(labels, scores, value).items() if k not in ("threshold", "n")},
        "slice_auc": delong_auc(slice_labels, slice_scores)[0] if len(set(slice_labels)) == 2 else None,
        "slices": int(len(slice_scores)),
        "failed_scans": len(failures),
    }
    written = []
    path = os.path.join(out, "predictions.csv")
    _write_csv(path, PREDICTION_COLUMNS, _prediction_rows(scans, probabilities, subjects, value))
    written.append(path)
    write_failures(os.path.join(out, "errors.csv"), failures)
    comparison = None
    reader_point = None
    if reader is not None:
        reads = read_reads(reader)
        both = [s for s in tested if s["subject"] in reads]
        if not both:
            raise InputError(reader, f"none of the {len(tested)} {split} subjects has a read")
        comparison = compare_reader([s["label"] for s in both], [int(s["probability"] >= value) for s in both],
                                    [reads[s["subject"]] for s in both])
        comparison["subjects_without_read"] = sorted(s["subject"] for s in tested if s["subject"] not in reads)
        comparison["threshold"] = value
        path = os.path.join(out, "reader.json")
        write_json_atomic(path, comparison)
        written.append(path)
        reader_point = (comparison["reader"]["sensitivity"] or 0.0, comparison["reader"]["specificity"] or 0.0)
        metrics["reader"] = {k: comparison["reader"][k] for k in ("accuracy", "sensitivity", "specificity", "f1")}
        metrics["mcnemar_p"] = comparison["mcnemar"]["all"]["p_value"]
    path = os.path.join(out, "metrics.json")
    write_json_atomic(path, metrics)
    written.append(path)
    path = os.path.join(out, "roc.png")
    roc_png(path, labels, scores, threshold=value, auc=auc, reader=reader_point,
            title=f"ROC, {split} subjects (n={len(tested)})")
    written.append(path)
    if cam:
        written += _write_cams(trained, [scan for scan, _ in split_scans], out, device=torch_device,
                               batch_size=batch, cam_layer=cam_layer, progress=progress)
    return PredictionReport(out, subjects, value, rule, source, metrics=metrics, reader=comparison,
                            failures=failures, written=written)
