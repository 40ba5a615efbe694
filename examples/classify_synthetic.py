"""Train and evaluate a subject-level classifier on synthetic chest CT, on a CPU.

Builds a seeded cohort of small chest phantoms (radiolab.synthetic.chest_phantom):
half with ground-glass and consolidation lesions (5-25 % of the lung), half without.
Each scan gets a lesion label map (3 = GGO, 4 = consolidation, as `radiolab segment`
writes), so the yang2020 recipe can train on the lesion slices of patients and every
3rd lung slice of controls. A tiny DenseNet is trained on the train split, the best
epoch is chosen on the validation split, and the held-out test subjects are scored by
the trimmed mean of their slice probabilities.

    python examples/classify_synthetic.py --out classify-demo

The last line printed is ``subject_auc=<value>`` (test subjects).

Rerun in the same folder, it resumes the run there when the settings are the same (an
interrupted run continues from its last epoch, a finished one is evaluated again) and
otherwise starts afresh, replacing the folder's cohort, run and evaluation; it says
which on its first line. ``--fresh`` always starts afresh.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time

import numpy as np


def make_cohort(folder: str, splits: dict[str, int], *, seed: int) -> str:
    """Write phantoms, their lesion label maps and manifest.csv; returns the manifest path."""
    from radiolab.io import write_volume
    from radiolab.synthetic import chest_phantom

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    index = 0
    for split, count in splits.items():
        for k in range(count):
            label = k % 2
            fraction = float(rng.uniform(0.05, 0.25)) if label else 0.0
            phantom = chest_phantom((32, 64, 64), (10.0, 5.0, 5.0), lesion_fraction=fraction,
                                    seed=seed * 1000 + index)
            name = f"subject_{index:03d}"
            write_volume(os.path.join(folder, f"{name}.nrrd"), phantom.volume, phantom.geometry)
            labels = np.zeros(phantom.volume.shape, dtype=np.uint8)
            labels[phantom.truth["ggo"]] = 3
            labels[phantom.truth["consolidation"]] = 4
            write_volume(os.path.join(folder, f"{name}_labels.nrrd"), labels, phantom.geometry)
            rows.append({"path": f"{name}.nrrd", "label": label, "subject": name, "split": split,
                         "mask": f"{name}_labels.nrrd"})
            index += 1
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "subject", "split", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def choose_start(out: str, settings: dict, config_json: dict, *, fresh: bool) -> tuple[bool, str]:
    """Whether to resume the run under ``out``, and the line that says so."""
    from radiolab.classify.models import load_checkpoint
    from radiolab.errors import InputError

    run = os.path.join(out, "run")
    if fresh:
        return False, f"starting afresh in {out} (--fresh)"
    if not os.path.exists(run):
        return False, f"starting a new run in {out}"
    try:
        with open(os.path.join(out, "example.json"), encoding="utf-8") as handle:
            previous = json.load(handle)
        saved = load_checkpoint(os.path.join(run, "last.pt"))
    except (OSError, ValueError, InputError):
        return False, f"starting afresh in {out}: the run there never finished an epoch"
    changed = sorted(k for k in {**previous, **settings} if previous.get(k) != settings.get(k))
    changed += sorted(k for k in config_json if saved["config"].get(k) != config_json[k] and k not in settings)
    if changed:
        return False, f"starting afresh in {out}: settings differ from its run ({', '.join(changed)})"
    return True, f"resuming the run in {out} after epoch {saved['epoch']} of {config_json['epochs']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="classify-demo", help="output folder (default classify-demo/)")
    parser.add_argument("--model", default="densenet-tiny", help="model (default densenet-tiny; try jcs-tiny)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument("--train", type=int, default=32, help="training subjects (default 32)")
    parser.add_argument("--val", type=int, default=8, help="validation subjects (default 8)")
    parser.add_argument("--test", type=int, default=20, help="test subjects (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and the training (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest on a busy machine)")
    parser.add_argument("--cam", action="store_true", help="also write Grad-CAM overlays and heat maps")
    parser.add_argument("--fresh", action="store_true",
                        help="start afresh even when --out holds a run with the same settings")
    args = parser.parse_args()

    import torch

    from radiolab.classify.predict import evaluate
    from radiolab.classify.recipes import config_for
    from radiolab.classify.train import train
    from radiolab.io import write_json_atomic

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    # yang2020 at toy scale: 64 px slices, a tiny DenseNet, Adam instead of SGD for speed,
    # and the threshold chosen by Youden's J on validation instead of the paper's fixed 0.8.
    config = config_for("yang2020", model=args.model, image_size=64, epochs=args.epochs, batch_size=16,
                        optimizer="adam", lr=3e-3, scheduler="cosine", cosine_period=args.epochs,
                        threshold="youden", seed=args.seed, device="cpu")
    settings = {"model": args.model, "epochs": args.epochs, "train": args.train, "val": args.val,
                "test": args.test, "seed": args.seed}
    resume, line = choose_start(args.out, settings, config.to_json(), fresh=args.fresh)
    print(line)
    run = os.path.join(args.out, "run")
    manifest = os.path.join(args.out, "scans", "manifest.csv")
    if not resume:
        # Only this example's own folders are replaced, never files it did not write.
        present = [f for f in ("scans", "run", "evaluation") if os.path.exists(os.path.join(args.out, f))]
        owned = os.path.exists(os.path.join(args.out, "example.json")) or os.path.exists(os.path.join(run, "last.pt"))
        if present and not owned:
            raise SystemExit(f"{args.out} holds {', '.join(present)} not written by this example; "
                             "choose another --out")
        for folder in present:
            shutil.rmtree(os.path.join(args.out, folder))
        manifest = make_cohort(os.path.join(args.out, "scans"),
                               {"train": args.train, "val": args.val, "test": args.test}, seed=args.seed)
        write_json_atomic(os.path.join(args.out, "example.json"), settings)
        print(f"cohort: {args.train + args.val + args.test} phantoms in {time.perf_counter() - start:.1f} s")
    result = train(manifest, run, config, resume=resume, progress=False)
    print(f"trained in {time.perf_counter() - start:.1f} s; best epoch {result.best_epoch}")
    report = evaluate(run, manifest, os.path.join(args.out, "evaluation"), progress=False, cam=args.cam)
    m = report.metrics
    print(f"test subjects {m['subjects']}: AUC {m['auc']:.3f} (95% CI {m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}), "
          f"accuracy {m['accuracy']:.3f}, sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f} "
          f"at threshold {m['threshold']:.2f} ({m['threshold_rule']})")
    print(f"total {time.perf_counter() - start:.1f} s; outputs in {args.out}")
    print(f"subject_auc={m['auc']:.4f}")


if __name__ == "__main__":
    main()
