"""Resumable `radiolab segment` runs: SIGKILL mid-run, rerun, identical outputs; what a
rerun skips and recomputes; per-scan records; `radiolab fit` and the shard CLI.

Resume lives in radiolab/segment/records.py; these tests are kept apart from the segment
stage's own tests because they drive whole runs and subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from radiolab.cli import fit as fit_cli
from radiolab.cli import segment as segment_cli
from radiolab.io import read_header, read_volume, write_volume
from radiolab.segment import SegmentConfig, ScanInput, find_inputs, fit_cohort, output_paths, segment_cohort
from radiolab.synthetic import chest_phantom, make_cohort

from helpers import file_tree

ROOT = Path(__file__).resolve().parent.parent
SHAPE, SPACING = (40, 64, 64), (7.0, 5.0, 5.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    make_cohort(folder, 5, shape=SHAPE, spacing=SPACING, seed=11)
    return folder


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans, out, SegmentConfig())
    assert len(report.rows) == 5 and not report.errors
    assert sorted(report.done) == [s.id for s in scans] and not report.skipped
    return file_tree(out)


@pytest.mark.parametrize("phase, suffix", [("lung masks", "_hist.json"), ("labels", "_summary.json")])
def test_sigkill_then_rerun_gives_identical_outputs(cohort, reference, tmp_path, phase, suffix):
    """Kill `radiolab segment` with SIGKILL once two scans finished a phase, then rerun."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "radiolab", "segment", "--in", str(cohort),
                                "--out", str(out), "--quiet"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if out.is_dir() and len(list(out.glob(f"*{suffix}"))) >= 2:
                break
            if process.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            time.sleep(0.002)
        else:
            pytest.fail(f"no two {suffix} records within 90 s")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed = file_tree(out)
    assert "summary.csv" not in killed  # the run never finished
    # Whatever the kill left is complete: every visible volume reads, every JSON parses.
    for name in killed:
        if name.endswith(".nrrd"):
            assert read_volume(out / name).array.size == np.prod(SHAPE)
        elif name.endswith(".json"):
            json.loads(killed[name])
    finished = sorted(p.name[: -len(suffix)] for p in out.glob(f"*{suffix}"))
    mask_stamps = {i: (out / f"{i}_lung.nrrd").stat().st_mtime_ns for i in finished}
    # A stale temporary from the killed write (or planted, if the kill fell between files).
    stale = out / ".case_004_lung.nrrd.abc123.part.nrrd"
    stale.write_bytes(b"NRRD0005\ntruncated")

    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans, out, SegmentConfig())
    assert not stale.exists() and not list(out.glob(".*.part*"))
    assert file_tree(out) == reference
    assert len(report.rows) == 5 and not report.errors
    assert sorted(report.skipped + report.done) == [s.id for s in scans]
    if phase == "labels":  # those scans were complete: nothing to redo
        assert set(finished) <= set(report.skipped)
    else:  # no scan was complete, but the finished masks were kept, not recomputed
        assert not report.skipped
    assert all((out / f"{i}_lung.nrrd").stat().st_mtime_ns == mask_stamps[i] for i in finished)


def test_rerun_skips_and_recomputes_exactly_what_changed(cohort, reference, tmp_path):
    scans, _ = find_inputs(cohort)
    ids = [s.id for s in scans]
    out = tmp_path / "out"
    segment_cohort(scans, out, SegmentConfig())
    again = segment_cohort(scans, out, SegmentConfig())
    assert again.skipped == ids and not again.done
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # Another median window: masks are kept (same mask key), labels are redone.
    changed = segment_cohort(scans, out, SegmentConfig(median_size=3))
    assert changed.done == ids and not changed.skipped
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.glob("*_lung.nrrd"))
    assert read_header(out / "case_000_labels_median.nrrd")["radiolab_median_size"] == "3"
    assert json.loads((out / "case_000_hist.json").read_text())["config"]["median_size"] == 3

    # Back to the defaults: the outputs equal the first run's, byte for byte.
    segment_cohort(scans, out, SegmentConfig())
    assert file_tree(out) == reference

    # --force recomputes everything, to the same bytes.
    forced = segment_cohort(scans, out, SegmentConfig(), force=True)
    assert forced.done == ids and file_tree(out) == reference


def test_changed_input_is_recomputed(cohort, tmp_path):
    scans_dir = tmp_path / "scans"
    scans_dir.mkdir()
    for path in sorted(cohort.iterdir())[:3]:
        (scans_dir / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    scans, _ = find_inputs(scans_dir)
    segment_cohort(scans, out, SegmentConfig())
    old_hash = json.loads((out / "case_001_hist.json").read_text())["input_hash"]
    phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.3, seed=99)
    write_volume(scans_dir / "case_001.nrrd", phantom.volume, phantom.geometry)
    report = segment_cohort(scans, out, SegmentConfig())
    record = json.loads((out / "case_001_hist.json").read_text())
    assert record["input_hash"] != old_hash
    assert record["input_hash"] == ScanInput("case_001", str(scans_dir / "case_001.nrrd")).content_hash()
    # The pooled fit changed with the new scan, so every label map was redone.
    assert report.done == ["case_000", "case_001", "case_002"]
    assert read_header(out / "case_000_labels.nrrd")["radiolab_input_hash"] == \
        json.loads((out / "case_000_hist.json").read_text())["input_hash"]


def test_a_deleted_output_is_remade(cohort, tmp_path):
    scans, _ = find_inputs(cohort)
    scans = scans[:2]
    segment_cohort(scans, tmp_path, SegmentConfig())
    before = file_tree(tmp_path)
    (tmp_path / "case_001_labels_median.nrrd").unlink()
    report = segment_cohort(scans, tmp_path, SegmentConfig())
    assert report.done == ["case_001"] and report.skipped == ["case_000"]
    assert file_tree(tmp_path) == before


def test_failed_scan_is_recorded_and_retried_on_rerun(cohort, tmp_path):
    scans_dir = tmp_path / "scans"
    scans_dir.mkdir()
    for path in sorted(cohort.iterdir())[:2]:
        (scans_dir / path.name).write_bytes(path.read_bytes())
    (scans_dir / "broken.nrrd").write_bytes(b"NRRD0004\ntype: short\n")
    out = tmp_path / "out"
    scans, _ = find_inputs(scans_dir)
    report = segment_cohort(scans, out, SegmentConfig())
    assert [e.id for e in report.errors] == ["broken"] and len(report.rows) == 2
    record = json.loads((out / "broken_error.json").read_text())
    assert record["stage"] == "lung_mask" and "broken.nrrd" in record["message"]
    assert "broken,lung_mask," in (out / "errors.csv").read_text()
    # Fixed input: the rerun retries it, clears the record and skips the others' masks.
    phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.1, seed=5)
    write_volume(scans_dir / "broken.nrrd", phantom.volume, phantom.geometry)
    report = segment_cohort(scans, out, SegmentConfig())
    assert not report.errors and len(report.rows) == 3
    assert not (out / "broken_error.json").exists()
    assert (out / "errors.csv").read_text() == "id,stage,message\n"


def test_dicom_series_hash_covers_sorted_slice_files(tmp_path):
    class Series:
        files = (str(tmp_path / "b.dcm"), str(tmp_path / "a.dcm"))

    (tmp_path / "a.dcm").write_bytes(b"slice a")
    (tmp_path / "b.dcm").write_bytes(b"slice b")
    scan = ScanInput("series-1", str(tmp_path), Series())
    assert scan.files() == [str(tmp_path / "a.dcm"), str(tmp_path / "b.dcm")]
    first = scan.content_hash()
    (tmp_path / "b.dcm").write_bytes(b"slice B")
    assert scan.content_hash() != first and first.startswith("sha256:")


def test_mhd_hash_includes_its_data_file(tmp_path):
    header = tmp_path / "scan.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nElementDataFile = scan.raw\n")
    (tmp_path / "scan.raw").write_bytes(b"\x00" * 8)
    scan = ScanInput("scan", str(header))
    assert scan.files() == [str(header), str(tmp_path / "scan.raw")]
    first = scan.content_hash()
    (tmp_path / "scan.raw").write_bytes(b"\x01" * 8)
    assert scan.content_hash() != first


# -- CLI: counts, shards, fit -------------------------------------------------------------------

def test_cli_prints_counts_and_table(cohort, tmp_path, capsys):
    scans_dir = tmp_path / "scans"
    scans_dir.mkdir()
    for path in sorted(cohort.iterdir())[:2]:
        (scans_dir / path.name).write_bytes(path.read_bytes())
    args = ["--in", str(scans_dir), "--out", str(tmp_path / "out")]
    assert segment_cli.main(args) == 0
    text = capsys.readouterr().out
    assert "case_000" in text and "LI %" in text and "2 scan(s) done, 0 skipped (up to date), 0 failed" in text
    assert segment_cli.main(args) == 0
    assert "0 scan(s) done, 2 skipped (up to date), 0 failed" in capsys.readouterr().out
    assert segment_cli.main(args + ["--force"]) == 0
    assert "2 scan(s) done, 0 skipped" in capsys.readouterr().out


def test_cli_shards_and_fit(cohort, reference, tmp_path, capsys):
    out = tmp_path / "out"
    for index in range(2):
        assert segment_cli.main(["--in", str(cohort), "--out", str(out), "--shard", f"{index}/2", "--quiet"]) == 0
    assert fit_cli.main([str(out)]) == 1  # fitted, but nothing labelled yet
    text = capsys.readouterr().out
    assert "mixture (fit, 5 scans)" in text and "5 awaiting labels" in text
    for index in range(2):
        assert segment_cli.main(["--in", str(cohort), "--out", str(out), "--shard", f"{index}/2"]) == 0
    assert "scan(s) done, 0 skipped" in capsys.readouterr().out
    assert fit_cli.main([str(out), "--in", str(cohort)]) == 0
    assert "5 scan(s) labelled, 0 failed" in capsys.readouterr().out
    assert file_tree(out) == reference


def test_shard_without_fit_reports_pending(cohort, tmp_path, capsys):
    assert segment_cli.main(["--in", str(cohort), "--out", str(tmp_path), "--shard", "1/2"]) == 0
    text = capsys.readouterr().out
    assert "2 awaiting labels (run `radiolab fit" in text
    assert sorted(p.name for p in tmp_path.glob("*_hist.json")) == ["case_001_hist.json", "case_003_hist.json"]
    assert not list(tmp_path.glob("*_labels.nrrd"))


def test_shard_with_fixed_model_labels_at_once(cohort, tmp_path):
    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans, tmp_path, SegmentConfig(model="zaffino2021"), shard="0/2")
    assert sorted(r["id"] for r in report.rows) == ["case_000", "case_002", "case_004"]
    assert not (tmp_path / "summary.csv").exists()
    assembled = fit_cohort(tmp_path)
    assert len(assembled.rows) == 3 and not (tmp_path / "gmm.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--shard", "2/2"], "shard index must satisfy"),
    (["--jobs", "2", "--cluster", "local"], "--jobs sets local processes"),
    (["--workers", "2"], "--workers needs --cluster"),
])
def test_cli_rejects_bad_backend_options(cohort, tmp_path, capsys, argv, message):
    pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'radiolab[dask]'")
    assert segment_cli.main(["--in", str(cohort), "--out", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err


def test_fit_rejects_mixed_settings_and_empty_folders(cohort, tmp_path, capsys):
    assert fit_cli.main([str(tmp_path)]) == 2
    assert "no <id>_hist.json records" in capsys.readouterr().err
    scans, _ = find_inputs(cohort)
    segment_cohort(scans[:1], tmp_path, SegmentConfig(), shard="0/1")
    segment_cohort(scans[1:2], tmp_path, SegmentConfig(threshold_hu=-200), shard="0/1")
    assert fit_cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "case_001_hist.json" in err and "settings different from case_000_hist.json" in err


def test_outputs_have_no_dates_and_records_name_inputs(cohort, tmp_path):
    scans, _ = find_inputs(cohort)
    segment_cohort(scans[:1], tmp_path, SegmentConfig())
    paths = output_paths(tmp_path, "case_000")
    head = paths["labels"].read_bytes()[:200]
    assert b"(GMT)" not in head and head.startswith(b"NRRD0004\n")
    record = json.loads(paths["histogram"].read_text())
    assert record["input_hash"] == scans[0].content_hash()
    assert record["mask_key"] == SegmentConfig().mask_key()
    assert read_header(paths["lung"])["radiolab_input_hash"] == record["input_hash"]


def test_transient_errors_are_retried_then_recorded(cohort, tmp_path, monkeypatch):
    import radiolab.segment.steps as segment

    real = segment.mask_scan
    calls: dict[str, int] = {}

    def flaky(scan, *args, **kwargs):
        calls[scan.id] = calls.get(scan.id, 0) + 1
        if scan.id == "case_000" and calls[scan.id] < 2:
            raise OSError("stale NFS handle")  # cured by the second attempt
        if scan.id == "case_001":
            raise OSError("stale NFS handle")  # never cured
        return real(scan, *args, **kwargs)

    monkeypatch.setattr(segment, "mask_scan", flaky)
    scans, _ = find_inputs(cohort)
    report = segment_cohort(scans[:3], tmp_path, SegmentConfig())
    assert calls == {"case_000": 2, "case_001": 3, "case_002": 1}
    assert sorted(r["id"] for r in report.rows) == ["case_000", "case_002"]
    # Not an input error: recorded as a crash of the scan's task.
    assert [(e.id, e.stage) for e in report.errors] == [("case_001", "internal")]
    line = (tmp_path / "errors.csv").read_text().splitlines()[1]
    assert line.startswith("case_001,internal,") and "lung_mask crashed: OSError: stale NFS handle (failed 3 times)" in line


def test_a_bug_is_a_crash_with_traceback_and_the_batch_completes(cohort, tmp_path, monkeypatch, caplog):
    import radiolab.segment.steps as segment

    real = segment.label_scan

    def buggy(scan, *args, **kwargs):
        if scan.id == "case_001":
            np.zeros((2, 3)) + np.zeros((4, 5))  # a shape bug: ValueError from numpy
        return real(scan, *args, **kwargs)

    monkeypatch.setattr(segment, "label_scan", buggy)
    scans, _ = find_inputs(cohort)
    with caplog.at_level("ERROR", logger="radiolab"):
        report = segment_cohort(scans[:3], tmp_path, SegmentConfig(), attempts=1)
    assert sorted(r["id"] for r in report.rows) == ["case_000", "case_002"]
    assert [(e.id, e.stage) for e in report.errors] == [("case_001", "internal")]
    assert "labels crashed: ValueError: operands could not be broadcast" in report.errors[0].message
    rows = (tmp_path / "errors.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("case_001,internal,")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Traceback (most recent call last)" in logged and "in buggy" in logged
    assert "case_002" in (tmp_path / "summary.csv").read_text()


def test_input_errors_stay_records_of_their_step(cohort, tmp_path, monkeypatch, caplog):
    import radiolab.segment.steps as segment
    from radiolab.errors import NoLungError

    real = segment.mask_scan

    def no_lung(scan, *args, **kwargs):
        if scan.id == "case_001":
            raise NoLungError(f"{scan.path}: no lung found")
        return real(scan, *args, **kwargs)

    monkeypatch.setattr(segment, "mask_scan", no_lung)
    scans, _ = find_inputs(cohort)
    with caplog.at_level("ERROR", logger="radiolab"):
        report = segment_cohort(scans[:2], tmp_path, SegmentConfig())
    assert [(e.id, e.stage) for e in report.errors] == [("case_001", "lung_mask")]
    assert not caplog.records  # an input error is no crash: no traceback


def test_cli_exit_2_is_for_usage_errors_only(cohort, tmp_path, monkeypatch, capsys):
    import radiolab.segment

    assert segment_cli.main(["--in", str(cohort), "--out", str(tmp_path / "a"), "--shard", "x", "--quiet"]) == 2
    assert "shard must read i/N" in capsys.readouterr().err

    def crash(*args, **kwargs):
        raise ValueError("a bug in radiolab")

    monkeypatch.setattr(radiolab.segment, "segment_cohort", crash)
    with pytest.raises(ValueError, match="a bug in radiolab"):
        segment_cli.main(["--in", str(cohort), "--out", str(tmp_path / "b"), "--quiet"])
