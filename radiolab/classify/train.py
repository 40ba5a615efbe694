"""Training of slice classifiers and joint classification/segmentation models.

`train` reads a manifest, turns the ``train`` and ``val`` rows into slices (cached under
``<out>/slices``), and trains for ``config.epochs`` epochs, seeded: weights from
``config.seed``, the shuffling and augmentation of epoch ``e`` from ``(seed, e)``, so an
interrupted run resumed from ``last.pt`` continues exactly as it would have.

After every epoch the validation subjects are scored (trimmed mean of slice
probabilities) and ``last.pt`` (model, optimiser, schedule, history) is written; when
the validation score improves, ``best.pt`` (model, settings, validation subject
probabilities and the decision threshold chosen on them) is written too. All files are
written atomically.
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from radiolab import __version__
from radiolab.classify.data import (
    ScanFailure,
    ScanSlices,
    prepare_scans,
    read_manifest,
    write_failures,
)
from radiolab.classify.metrics import choose_threshold, delong_auc
from radiolab.classify.models import (
    build_model,
    class_logits,
    load_checkpoint,
    load_weights,
    resolve_device,
    save_checkpoint,
    segmentation_logits,
)
from radiolab.classify.recipes import ClassifyConfig
from radiolab.errors import FitError, InputError, ParameterError
from radiolab.io import write_json_atomic, write_text_atomic

RESUMABLE_FIELDS = ("epochs", "device", "num_workers")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_cls_loss", "train_seg_loss", "val_loss", "val_slice_auc",
                   "val_subject_auc", "lr", "seconds", "best")


class SliceDataset(Dataset):
    """Slices of several scans as (image, label, mask, has_mask) samples.

    ``image`` is (in_channels, S, S) float32 in [0, 1]; ``mask`` (1, S, S) float32,
    zeros with ``has_mask = 0`` when the scan has no lesion mask.
    """

    def __init__(self, scans: Sequence[ScanSlices], *, in_channels: int = 1) -> None:
        self.scans = list(scans)
        self.in_channels = in_channels
        self.index = [(s, j) for s, scan in enumerate(self.scans) for j in range(len(scan))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        s, j = self.index[item]
        scan = self.scans[s]
        image = torch.from_numpy(np.asarray(scan.images[j], dtype=np.float32))[None]
        if self.in_channels > 1:
            image = image.expand(self.in_channels, -1, -1).contiguous()
        if scan.masks is not None:
            mask = torch.from_numpy(np.asarray(scan.masks[j], dtype=np.float32))[None]
            has_mask = 1.0
        else:
            mask = torch.zeros((1,) + image.shape[-2:])
            has_mask = 0.0
        label = float(scan.row.label if scan.row.label is not None else -1)
        return {"image": image, "label": torch.tensor(label), "mask": mask, "has_mask": torch.tensor(has_mask)}


def augment(images: torch.Tensor, masks: torch.Tensor, config: ClassifyConfig,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop (area ``crop_scale``-1, aspect 3/4-4/3), flips, brightness and
    contrast jitter; masks follow the geometric part. Draws from ``generator`` only."""
    n = images.shape[0]
    if n == 0:
        return images, masks

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    geometric = config.crop_scale < 1.0 or config.hflip or config.vflip
    if geometric:
        area = uniform(config.crop_scale, 1.0)
        ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (uniform(-1.0, 1.0)) * (1.0 - sx)
        ty = (uniform(-1.0, 1.0)) * (1.0 - sy)
        flip_x = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.hflip else torch.ones(n)
        flip_y = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.vflip else torch.ones(n)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = sx * flip_x
        theta[:, 0, 2] = tx
        theta[:, 1, 1] = sy * flip_y
        theta[:, 1, 2] = ty
        theta = theta.to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        grid_m = F.affine_grid(theta, list(masks.shape), align_corners=False)
        masks = F.grid_sample(masks, grid_m, mode="bilinear", padding_mode="zeros", align_corners=False)
    if config.brightness > 0:
        factor = uniform(1 - config.brightness, 1 + config.brightness).to(images.device).view(n, 1, 1, 1)
        images = images * factor
    if config.contrast > 0:
        factor = uniform(1 - config.contrast, 1 + config.contrast).to(images.device).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = mean + (images - mean) * factor
    return images.clamp(0.0, 1.0), masks


def joint_loss(output: Any, labels: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor,
               config: ClassifyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``cls_weight`` x classification BCE + ``seg_weight`` x (BCE + soft Dice) over the
    samples that have a lesion mask. Returns (total, classification, segmentation)."""
    cls = F.binary_cross_entropy_with_logits(class_logits(output), labels)
    seg_logits = segmentation_logits(output)
    seg = torch.zeros((), device=cls.device)
    if seg_logits is not None and bool(has_mask.any()):
        keep = has_mask > 0
        logits, target = seg_logits[keep], masks[keep]
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        probability = torch.sigmoid(logits)
        dice = 1.0 - (2.0 * (probability * target).sum() + 1.0) / (probability.sum() + target.sum() + 1.0)
        seg = F.binary_cross_entropy_with_logits(logits, target) + dice
    total = config.cls_weight * cls + config.seg_weight * seg
    return total, cls.detach(), seg.detach()


def make_optimizer(model: nn.Module, config: ClassifyConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: ClassifyConfig):
    """Per-epoch schedule: cosine annealing over ``cosine_period`` epochs (continuing as
    a cosine of period ``2 x cosine_period``, as torch's CosineAnnealingLR does), a step
    schedule, or none."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.cosine_period)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.step_gamma)
    return None


def slice_probabilities(model: nn.Module, scans: Sequence[ScanSlices], *, device: torch.device,
                        batch_size: int, in_channels: int = 1, progress: bool = False,
                        desc: str = "predict") -> tuple[list[np.ndarray], float | None]:
    """Slice probabilities of every scan (model in eval mode), and the mean slice BCE
    when all scans have labels (else None)."""
    from tqdm.auto import tqdm

    model.eval()
    dataset = SliceDataset(scans, in_channels=in_channels)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    logits = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, unit="batch", disable=None if progress else True, leave=False):
            logits.append(class_logits(model(batch["image"].to(device))).float().cpu())
    all_logits = torch.cat(logits) if logits else torch.zeros(0)
    loss = None
    labels = torch.tensor([float(scan.row.label) for scan in scans for _ in range(len(scan))
                           if scan.row.label is not None])
    if len(labels) == len(all_logits) and len(labels):
        loss = float(F.binary_cross_entropy_with_logits(all_logits, labels))
    probabilities = torch.sigmoid(all_logits).numpy().astype(np.float64)
    out, start = [], 0
    for scan in scans:
        out.append(probabilities[start:start + len(scan)])
        start += len(scan)
    return out, loss


def subject_probabilities(scans: Sequence[ScanSlices], probabilities: Sequence[np.ndarray], *,
                          trim: float) -> list[dict[str, Any]]:
    """Subject-level rows: trimmed mean of the subject's slice probabilities, slices
    ordered by manifest line, then slice position.

    Returns
    -------
    list of dict with ``subject``, ``split``, ``label``, ``probability``, ``n_slices``,
    ``n_used``, in order of first appearance.
    """
    from radiolab.classify.metrics import trimmed_subject_mean

    grouped: dict[str, list[tuple[int, int, float, ScanSlices]]] = {}
    for scan, probs in zip(scans, probabilities):
        for index, p in zip(scan.indices, probs):
            grouped.setdefault(scan.row.subject, []).append((scan.row.line, int(index), float(p), scan))
    rows = []
    for subject, items in grouped.items():
        items.sort(key=lambda item: (item[0], item[1]))
        mean, used = trimmed_subject_mean([p for _, _, p, _ in items], trim=trim)
        labels = {item[3].row.label for item in items}
        label = labels.pop() if len(labels) == 1 else None
        rows.append({"subject": subject, "split": items[0][3].row.split, "label": label,
                     "probability": mean, "n_slices": len(items), "n_used": used})
    return rows


def threshold_from(labels: Sequence[int], probabilities: Sequence[float], *, threshold: str | float,
                   sensitivity: float | None) -> tuple[float, str]:
    """The decision threshold and how it was chosen."""
    if sensitivity is not None:
        return choose_threshold(labels, probabilities, sensitivity=sensitivity), f"sensitivity>={sensitivity:g}"
    if isinstance(threshold, str):
        return choose_threshold(labels, probabilities, rule=threshold), threshold
    return float(threshold), "fixed"


@dataclass
class TrainResult:
    """What `train` produced."""

    out: str
    best_epoch: int
    best_score: float
    threshold: float | None
    threshold_rule: str
    history: list[dict[str, Any]] = field(default_factory=list)
    failures: list[ScanFailure] = field(default_factory=list)


def resume_config(out: str | os.PathLike[str], **overrides: Any) -> ClassifyConfig:
    """The settings of the run in ``out`` with some of ``RESUMABLE_FIELDS`` replaced.

    Raises
    ------
    InputError
        If ``out`` holds no run.
    ValueError
        If an override other than epochs, device or num_workers is given.
    """
    path = os.path.join(os.fspath(out), "last.pt")
    data = load_checkpoint(path)
    config = ClassifyConfig.from_json(data["config"])
    changed = {k: v for k, v in overrides.items() if v is not None and v != getattr(config, k, None)}
    fixed = sorted(set(changed) - set(RESUMABLE_FIELDS))
    if fixed:
        raise ParameterError(f"cannot change {', '.join(fixed)} when resuming; only {', '.join(RESUMABLE_FIELDS)} may change")
    return replace(config, **changed)


def _history_text(history: Sequence[dict[str, Any]]) -> str:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_COLUMNS})
    return buffer.getvalue()


def _score(auc: float | None, loss: float | None, select_on: str) -> float:
    if select_on == "auc" and auc is not None:
        return auc - 1e-6 * (loss or 0.0)  # ties go to the lower loss
    return -(loss if loss is not None else math.inf)


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: ClassifyConfig,
    *,
    resume: bool = False,
    labels_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train a classifier on the ``train`` rows of a manifest, choosing the best epoch
    on the ``val`` rows.

    Parameters
    ----------
    data : path
        Manifest CSV with ``path, label, subject, split`` (see
        `radiolab.classify.data.read_manifest`).
    out : path
        Run folder: ``config.json``, ``history.csv``, ``last.pt``, ``best.pt``,
        ``threshold.json``, ``errors.csv`` (scans that could not be used), ``slices/``.
    config : ClassifyConfig
        Settings (a recipe plus overrides, see `radiolab.classify.recipes.config_for`).
    resume : bool
        Continue the run in ``out`` from ``last.pt``; ``config`` may differ from the
        saved settings only in epochs, device and num_workers.
    labels_dir : path, optional
        ``radiolab segment`` output folder; ``<id>_labels.nrrd`` there are the lesion
        masks (labels 3 and 4, see ``mask_labels``) of joint models and lesion-slice
        selection, unless the manifest's ``mask`` column names one.
    progress : bool
        Progress bars.
    log : callable or None
        Receives one line per epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Bad manifest, subject leakage, no usable train or val scan, a train split with
        one class only, a joint model without any lesion mask of a positive training
        scan, an existing run without ``resume``, an unsafe weights file.
    ValueError
        Unknown model or settings, or a training loss that is not finite.
    """
    out = os.fspath(out)
    say = log or (lambda line: None)
    last_path, best_path = os.path.join(out, "last.pt"), os.path.join(out, "best.pt")
    saved = None
    if resume:
        saved = load_checkpoint(last_path)
        old = ClassifyConfig.from_json(saved["config"])
        differing = [k for k in old.to_json() if k not in RESUMABLE_FIELDS
                     and old.to_json()[k] != config.to_json()[k]]
        if differing:
            raise ParameterError(f"cannot resume with changed settings {', '.join(differing)}; "
                             f"only {', '.join(RESUMABLE_FIELDS)} may change")
    elif os.path.exists(last_path):
        raise InputError(out, "already holds a training run (last.pt); resume it or choose another folder")

    manifest = os.fspath(data)
    rows = read_manifest(manifest)
    train_rows = [r for r in rows if r.split == "train"]
    val_rows = [r for r in rows if r.split == "val"]
    if not train_rows or not val_rows:
        raise InputError(manifest, f"training needs rows in both 'train' and 'val' splits; found "
                                   f"{len(train_rows)} train and {len(val_rows)} val")
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, "config.json"),
                      {"radiolab_version": __version__, "manifest": os.path.abspath(manifest),
                       "labels_dir": None if labels_dir is None else os.path.abspath(labels_dir),
                       "config": config.to_json()})
    cache = os.path.join(out, "slices")
    train_scans, failures = prepare_scans(train_rows, config, training=True, labels_dir=labels_dir,
                                          cache_dir=cache, progress=progress)
    val_scans, val_failures = prepare_scans(val_rows, config, training=False, cache_dir=cache, progress=progress)
    failures += val_failures
    write_failures(os.path.join(out, "errors.csv"), failures)
    for failure in failures:
        say(f"skipped {failure.path}: {failure.message}")
    train_labels = {scan.row.label for scan in train_scans}
    if train_labels != {0, 1}:
        raise InputError(manifest, f"the usable train scans hold label(s) {sorted(train_labels)} only; both 0 and 1 are needed")
    if not val_scans:
        raise InputError(manifest, "no usable val scan")
    for scan in train_scans:
        if scan.note:
            say(f"note {scan.row.path}: {scan.note}")
    if config.is_joint and not any(scan.masks is not None for scan in train_scans if scan.row.label == 1):
        raise InputError(manifest, f"model {config.model!r} needs lesion masks of positive training scans and "
                                   "found none: pass the `radiolab segment` output folder as labels_dir "
                                   "(--labels-dir) or give a mask column")

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.weights and not resume:
        report = load_weights(model, config.weights)
        say(f"weights: {len(report['loaded'])} tensors loaded from {config.weights}, "
            f"{len(report['skipped'])} skipped, {len(report['missing'])} left as initialised")
    model.to(device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "score": -math.inf}
    start_epoch = 1
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler"):
            scheduler.load_state_dict(saved["scheduler"])
        history = list(saved.get("history", []))
        best = dict(saved.get("best", best))
        start_epoch = int(saved["epoch"]) + 1
        say(f"resuming after epoch {saved['epoch']}")

    dataset = SliceDataset(train_scans, in_channels=config.in_channels)
    drop_last = len(dataset) > config.batch_size and len(dataset) % config.batch_size == 1
    from tqdm.auto import tqdm

    for epoch in range(start_epoch, config.epochs + 1):
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                            num_workers=config.num_workers, drop_last=drop_last)
        model.train()
        totals = np.zeros(3)
        count = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=None if progress else True,
                   leave=False)
        for batch in bar:
            images, masks = augment(batch["image"], batch["mask"], config, generator)
            images, masks = images.to(device), masks.to(device)
            labels, has_mask = batch["label"].to(device), batch["has_mask"].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, cls_loss, seg_loss = joint_loss(model(images), labels, masks, has_mask, config)
            if not torch.isfinite(loss):
                raise FitError(f"epoch {epoch}: the training loss is {loss.item()}; lower the learning rate "
                                 f"(last.pt keeps epoch {epoch - 1})")
            loss.backward()
            optimizer.step()
            size = images.shape[0]
            totals += np.array([loss.item(), cls_loss.item(), seg_loss.item()]) * size
            count += size
            bar.set_postfix(loss=f"{totals[0] / count:.4f}")
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()

        val_probs, val_loss = slice_probabilities(model, val_scans, device=device, batch_size=config.batch_size,
                                                  in_channels=config.in_channels, progress=progress, desc="validate")
        subjects = subject_probabilities(val_scans, val_probs, trim=config.trim)
        subject_auc = slice_auc = None
        slice_labels = np.concatenate([np.full(len(s), s.row.label) for s in val_scans])
        if len(set(slice_labels)) == 2:
            slice_auc = delong_auc(slice_labels, np.concatenate(val_probs))[0]
        labelled = [s for s in subjects if s["label"] is not None]
        if len({s["label"] for s in labelled}) == 2:
            subject_auc = delong_auc([s["label"] for s in labelled], [s["probability"] for s in labelled])[0]
        score = _score(subject_auc, val_loss, config.select_on)
        improved = score > best["score"]
        row = {"epoch": epoch, "train_loss": totals[0] / max(count, 1), "train_cls_loss": totals[1] / max(count, 1),
               "train_seg_loss": totals[2] / max(count, 1) if config.is_joint else None, "val_loss": val_loss,
               "val_slice_auc": slice_auc, "val_subject_auc": subject_auc, "lr": lr,
               "seconds": round(time.perf_counter() - began, 2), "best": int(improved)}
        history.append(row)
        if improved:
            best = {"epoch": epoch, "score": score}
            _save_best(best_path, model, config, epoch, labelled)
        save_checkpoint(last_path, config=config.to_json(), epoch=epoch, model=model.state_dict(),
                        optimizer=optimizer.state_dict(),
                        scheduler=None if scheduler is None else scheduler.state_dict(),
                        history=history, best=best, radiolab_version=__version__)
        write_text_atomic(os.path.join(out, "history.csv"), _history_text(history))
        say(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, val loss "
            f"{val_loss if val_loss is None else round(val_loss, 4)}, val subject AUC "
            f"{'n/a' if subject_auc is None else f'{subject_auc:.3f}'}{' (best)' if improved else ''}")

    best_data = load_checkpoint(best_path)
    threshold_info = {"threshold": best_data.get("threshold"), "rule": best_data.get("threshold_rule"),
                      "epoch": best_data.get("epoch")}
    write_json_atomic(os.path.join(out, "threshold.json"), threshold_info)
    return TrainResult(out=out, best_epoch=int(best["epoch"]), best_score=float(best["score"]),
                       threshold=threshold_info["threshold"], threshold_rule=str(threshold_info["rule"]),
                       history=history, failures=failures)


def _save_best(path: str, model: nn.Module, config: ClassifyConfig, epoch: int,
               subjects: Sequence[dict[str, Any]]) -> None:
    labels = [int(s["label"]) for s in subjects]
    probabilities = [float(s["probability"]) for s in subjects]
    try:
        threshold, rule = threshold_from(labels, probabilities, threshold=config.threshold,
                                         sensitivity=config.sensitivity)
    except ValueError as error:  # one class among validation subjects
        threshold, rule = 0.5, f"0.5 (fallback: {error})"
    save_checkpoint(path, config=config.to_json(), epoch=epoch, model=model.state_dict(),
                    threshold=threshold, threshold_rule=rule, radiolab_version=__version__,
                    validation={"subjects": [str(s["subject"]) for s in subjects], "labels": labels,
                                "probabilities": probabilities})
