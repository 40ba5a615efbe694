"""Tests of the runnable scripts in examples/ (run as a user runs them, in a subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _classify_example(out: Path, *extra: str) -> list[str]:
    pytest.importorskip("torch", reason="examples/classify_synthetic.py trains a torch model; torch is not installed")
    command = [sys.executable, str(EXAMPLES / "classify_synthetic.py"), "--out", str(out), "--train", "4",
               "--val", "2", "--test", "2", "--epochs", "1", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _history_epochs(out: Path) -> list[int]:
    with open(out / "run" / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_classify_example_reruns_in_the_same_folder(tmp_path):
    out = tmp_path / "demo"
    first = _classify_example(out)
    manifest_mtime = (out / "scans" / "manifest.csv").stat().st_mtime_ns
    auc = first[-1]

    again = _classify_example(out)
    assert first[0] == f"starting a new run in {out}"
    assert again[0] == f"resuming the run in {out} after epoch 1 of 1"
    assert again[-1] == auc  # the same trained model, evaluated again
    assert _history_epochs(out) == [1]
    assert (out / "scans" / "manifest.csv").stat().st_mtime_ns == manifest_mtime  # cohort kept

    changed = _classify_example(out, "--seed", "1")
    assert changed[0] == f"starting afresh in {out}: settings differ from its run (seed)"
    assert json.loads((out / "example.json").read_text())["seed"] == 1
    assert _history_epochs(out) == [1]
    with open(out / "scans" / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 8


def test_classify_example_leaves_folders_it_did_not_write(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "mine.txt").write_text("keep")
    command = [sys.executable, str(EXAMPLES / "classify_synthetic.py"), "--out", str(tmp_path), "--epochs", "1"]
    pytest.importorskip("torch", reason="examples/classify_synthetic.py trains a torch model; torch is not installed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)})
    assert done.returncode != 0 and "not written by this example" in done.stderr
    assert (tmp_path / "scans" / "mine.txt").read_text() == "keep"
