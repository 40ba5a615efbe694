"""Broken and hostile inputs (the corpus in tests/bad_inputs) through radiolab's commands.

Every case must get a message naming the file and the problem; a non-zero exit, or an
``errors.csv`` row within a batch while the good scans complete with all their
outputs; no file written or changed outside ``--out`` (the input folders and the
working directory are compared before and after); and no partial output (no hidden
temporary files, no output for a failed scan). All volume cases go through one
``radiolab segment`` batch beside two good phantoms. Patient tags of pydicom's test
files must not reach any output, and scans too large for memory are refused from
their header. The session ends with the line ``bad inputs: N tried, N handled``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import pickle
import re
import shutil
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

import radiolab.io
from bad_inputs import corpus as bad
from bad_inputs.corpus import ACCEPT, REJECT, SKIP, TALLY
from radiolab import cli
from radiolab.errors import InputError
from radiolab.pipeline import load_pipeline
from radiolab.io import MEMORY_SHARE_LIMIT, SEGMENT_PEAK_FACTOR, memory_needed_bytes, read_header, read_volume, scan_id
from radiolab.segment import OUTPUT_SUFFIXES, RUN_FILES
from radiolab.synthetic import chest_phantom, make_cohort

GOOD_SHAPE = (40, 64, 64)
GOOD_SPACING = (7.0, 5.0, 5.0)


# --------------------------------------------------------------------------- helpers


def snapshot(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (outside the ``skip`` folders) -> (size, mtime in ns)."""
    skipped = [os.path.abspath(s) for s in skip]
    files: dict[str, tuple[int, int]] = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if os.path.abspath(os.path.join(folder, d)) not in skipped]
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return files


def changes(before: dict, after: dict) -> list[str]:
    """Files created, changed or removed between two snapshots."""
    return sorted({p for p in after if before.get(p) != after[p]} | (set(before) - set(after)))


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def partial_files(folder: Path) -> list[str]:
    """Hidden or temporary files left by an interrupted atomic write."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") or ".part" in p.name] \
        if folder.exists() else []


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``radiolab ARGV`` in ``cwd``: exit status (argparse's SystemExit included), stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(cwd)
        try:
            status = cli.main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Workspace:
    """A folder for one command: inputs, an empty working directory, and ``out``."""

    root: Path

    def __post_init__(self) -> None:
        self.cwd = self.root / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.out = self.root / "out"
        self.before: dict = {}

    def freeze(self) -> None:
        self.before = snapshot(self.root)

    def outside_changes(self) -> list[str]:
        return changes(self.before, snapshot(self.root, skip=(self.out,)))


# --------------------------------------------------------------------------- volumes: one batch


@dataclass
class Batch:
    root: Path
    inputs: Path
    out: Path
    good_ids: list[str]
    cases: dict[str, bad.Case]
    status: int
    stdout: str
    stderr: str
    errors: list[dict[str, str]]
    summary: list[dict[str, str]]
    outside: list[str]


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    """Every volume case and two good phantoms in one folder, through one `radiolab segment`."""
    space = Workspace(tmp_path_factory.mktemp("batch"))
    inputs = space.root / "scans"
    good = make_cohort(inputs, 2, shape=GOOD_SHAPE, spacing=GOOD_SPACING, seed=21)
    cases = {name: make(inputs) for name, make in bad.VOLUME_CASES.items()}
    space.freeze()
    status, stdout, stderr = run_cli(["segment", "--in", str(inputs), "--out", str(space.out)], space.cwd)
    return Batch(space.root, inputs, space.out, sorted(scan_id(p) for p, _ in good), cases, status, stdout,
                 stderr, read_csv(space.out / "errors.csv"), read_csv(space.out / "summary.csv"),
                 space.outside_changes())


@pytest.mark.parametrize("name", list(bad.VOLUME_CASES))
def test_volume_case_gets_an_errors_row_and_no_output(batch, name):
    case = batch.cases[name]
    with TALLY.attempt(name):
        scan = scan_id(case.path)
        rows = [row for row in batch.errors if row["id"] == scan]
        assert len(rows) == 1, f"{scan}: {rows}"
        assert rows[0]["stage"] == "lung_mask"
        message = rows[0]["message"]
        assert str(case.path) in message, message
        assert case.expected in message, message
        assert f"FAILED {scan} [lung_mask]: {case.path}" in batch.stderr
        # The failed scan's only output is its error record, the same as its errors.csv row.
        assert [s for s in OUTPUT_SUFFIXES.values() if (batch.out / f"{scan}{s}").exists()] == ["_error.json"]
        assert json.loads((batch.out / f"{scan}_error.json").read_text()) == rows[0]


def test_batch_good_scans_complete_beside_the_bad_ones(batch):
    assert batch.status == 1  # some scans failed
    assert sorted(r["id"] for r in batch.errors) == sorted(scan_id(c.path) for c in batch.cases.values())
    assert [r["id"] for r in batch.summary] == batch.good_ids
    for row in batch.summary:
        assert float(row["lung_volume_ml"]) > 500.0
    for scan in batch.good_ids:
        lung = read_volume(batch.out / f"{scan}_lung.nrrd")
        labels = read_volume(batch.out / f"{scan}_labels.nrrd").array
        median = read_volume(batch.out / f"{scan}_labels_median.nrrd").array
        assert lung.array.shape == labels.shape == median.shape == GOOD_SHAPE
        assert lung.geometry.spacing == pytest.approx(GOOD_SPACING)
        assert set(np.unique(labels)) <= set(range(6)) and labels.max() >= 2
        assert json.loads((batch.out / f"{scan}_hist.json").read_text())["id"] == scan
        assert json.loads((batch.out / f"{scan}_summary.json").read_text())["id"] == scan
    assert json.loads((batch.out / "gmm.json").read_text())["scans"] == batch.good_ids
    # Only the documented outputs: run files, the good scans' files, the failed scans'
    # error records; nothing partial.
    good_files = {f"{scan}{suffix}" for scan in batch.good_ids for suffix in OUTPUT_SUFFIXES.values()
                  if suffix != "_error.json"}
    expected = set(RUN_FILES) | good_files | {f"{row['id']}_error.json" for row in batch.errors}
    assert sorted(p.name for p in files_under(batch.out)) == sorted(expected)
    assert partial_files(batch.out) == []
    assert batch.outside == []


def test_terabyte_header_is_refused_before_allocating(tmp_path):
    case = bad.terabyte_header(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            read_volume(case.path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    message = str(info.value)
    assert message.startswith(f"{case.path}: too large for memory: the header promises 100000 x 100000 x 100000 "
                              "= 1,000,000,000,000,000 voxels of 16-bit signed integer")
    assert f"needs about {memory_needed_bytes(10**15, 2) / 2**40:.1f} TiB" in message


# --------------------------------------------------------------------------- DICOM: radiolab ingest


def check_mixed_series(case, out, stdout, stderr):
    written = sorted(out.glob("*.nrrd"))
    assert [p.name.split("-")[:4] for p in written] == [["series", "3", "lung", "5mm"], ["series", "4", "lung", "2mm"]]
    assert [read_volume(p).array.shape[0] for p in written] == case.extra["slices"]
    assert re.search(rf"^skipped series-\S+ \({re.escape(str(case.path))}\): {case.extra['skipped']}$", stdout, re.M)
    with pytest.raises(InputError) as info:  # one scan from this folder: refused, points to ingest
        read_volume(case.path)
    assert str(info.value).startswith(f"{case.path}: {case.expected}")
    assert "run `radiolab ingest` to split them" in str(info.value)


def check_uneven_spacing(case, out, stdout, stderr):
    (path,) = out.glob("*.nrrd")
    volume = read_volume(path)
    assert volume.array.shape == case.extra["shape"]
    assert volume.geometry.spacing[0] == pytest.approx(case.extra["step"])
    assert f"radiolab ingest: WARNING: {path.name[:-len('.nrrd')]}: {case.expected}" in stderr
    assert case.expected in read_header(path)["radiolab_warnings"]


def check_gantry_tilt(case, out, stdout, stderr):
    (path,) = out.glob("*.nrrd")
    header = read_header(path)
    assert float(header["radiolab_tilt_deg"]) == pytest.approx(case.extra["tilt_deg"], abs=0.01)
    assert f"radiolab ingest: WARNING: {path.name[:-len('.nrrd')]}: {case.expected}" in stderr
    volume = read_volume(path)
    # Orthogonal grid: the direction's slice axis is the normal, rows grew to hold the shift.
    direction = np.array(volume.geometry.direction).reshape(3, 3)
    np.testing.assert_allclose(direction, np.eye(3), atol=1e-6)
    assert volume.array.shape[0] == 4 and volume.array.shape[1] > 128


def check_no_series_uid(case, out, stdout, stderr):
    written = sorted(out.glob("*.nrrd"))
    assert [p.name.split("-")[:4] for p in written] == [["series", "3", "lung", "5mm"], ["series", "4", "lung", "2mm"]]
    assert [read_volume(p).array.shape[0] for p in written] == case.extra["slices"]
    for path in written:
        assert read_header(path)["radiolab_grouped_by"].startswith("StudyInstanceUID")
        assert case.expected in read_header(path)["radiolab_warnings"]


def check_no_modality_ct(case, out, stdout, stderr):
    (path,) = out.glob("*.nrrd")
    header = read_header(path)
    assert header["radiolab_modality"] == "CT"
    assert header["radiolab_modality_source"] == "its SOP class (CT Image Storage)"
    assert f"radiolab ingest: WARNING: {path.name[:-len('.nrrd')]}: {case.expected}" in stderr


def check_jpeg2000(case, out, stdout, stderr):
    (path,) = out.glob("*.nrrd")
    ds = pydicom.dcmread(next(case.path.iterdir()))
    assert case.expected in ds.file_meta.TransferSyntaxUID.name
    expected = np.rint(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert volume.array.min() < -1000 < 0 < volume.array.max()
    assert case.expected in read_header(path)["radiolab_transfer_syntax"]


def check_inconsistent_rescale(case, out, stdout, stderr):
    (path,) = out.glob("*.nrrd")
    volume = read_volume(path)
    files = sorted(case.path.iterdir())
    stored = [pydicom.dcmread(f).pixel_array for f in files]
    # The slices really are stored differently ...
    assert not np.array_equal(stored[0], stored[1]) and not np.array_equal(stored[1], stored[2])
    assert len({(str(pydicom.dcmread(f).RescaleSlope), str(pydicom.dcmread(f).RescaleIntercept)) for f in files}) == 3
    # ... and give the same HU once each slice's own rescale is applied.
    for k in range(3):
        np.testing.assert_array_equal(volume.array[k], case.extra["hu"])


ACCEPT_CHECKS = {
    "dicom_mixed_series": check_mixed_series,
    "dicom_uneven_spacing": check_uneven_spacing,
    "dicom_gantry_tilt": check_gantry_tilt,
    "dicom_no_series_uid": check_no_series_uid,
    "dicom_no_modality_ct": check_no_modality_ct,
    "dicom_jpeg2000": check_jpeg2000,
    "dicom_inconsistent_rescale": check_inconsistent_rescale,
}


@pytest.mark.parametrize("name", list(bad.DICOM_CASES))
def test_dicom_case_through_ingest(tmp_path, name):
    space = Workspace(tmp_path)
    case = bad.DICOM_CASES[name](tmp_path / "dicom")
    space.freeze()
    with TALLY.attempt(name):
        status, stdout, stderr = run_cli(["ingest", "--in", str(case.path), "--out", str(space.out)], space.cwd)
        assert space.outside_changes() == []
        assert partial_files(space.out) == []
        if case.verdict == ACCEPT:
            assert status == 0, stderr
            ACCEPT_CHECKS[name](case, space.out, stdout, stderr)
            return
        assert status == 1
        assert files_under(space.out) == []
        if case.verdict == REJECT:
            (line,) = [ln for ln in stderr.splitlines() if ln.startswith("failed ")]
            assert re.fullmatch(rf"failed series-\S+: {re.escape(str(case.path))}: .*{re.escape(case.expected)}.*",
                                line), line
        else:
            assert case.verdict == SKIP
            assert re.search(rf"^skipped series-\S+ \({re.escape(str(case.path))}\): {re.escape(case.expected)}$",
                             stdout, re.M), stdout
            assert f"no CT series written from {case.path}" in stderr
        # Read as one scan (radiolab segment --in FOLDER): the same message, naming the folder.
        with pytest.raises(InputError) as info:
            read_volume(case.path)
        assert str(info.value).startswith(f"{case.path}: ")
        assert case.expected in str(info.value)


# --------------------------------------------------------------------------- tables: radiolab correlate


@pytest.mark.parametrize("name", list(bad.TABLE_CASES))
def test_scores_case_through_correlate(tmp_path, name):
    space = Workspace(tmp_path)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "summary.csv").write_text("id,LI_pct\ncase_000,2.5\ncase_001,20\ncase_002,45\n", encoding="utf-8")
    case = bad.TABLE_CASES[name](tmp_path / "tables")
    space.freeze()
    with TALLY.attempt(name):
        status, stdout, stderr = run_cli(
            ["correlate", str(case.path), "--labels", str(labels), "--out", str(space.out)], space.cwd)
        assert status == 2
        assert f"radiolab correlate: error: {case.path}: " in stderr
        assert case.expected in stderr, stderr
        assert not space.out.exists()
        assert space.outside_changes() == []


def test_scores_cases_are_each_the_only_problem(tmp_path):
    """The same files with the culprit line fixed are accepted (so each case tests one thing)."""
    from radiolab.stats import read_scores

    fixes = {"scores_duplicate_ids": ("case_000,3", "case_003,3"), "scores_non_numeric": ("severe", "2"),
             "scores_out_of_range": (",7", ",2"), "scores_nan": ("nan", "2"),
             "scores_dotdot_id": ("../../etc/passwd", "case_001"), "scores_absolute_id": ("/etc/passwd", "case_000")}
    for name, (culprit, fix) in fixes.items():
        case = bad.TABLE_CASES[name](tmp_path)
        case.path.write_text(case.path.read_text().replace(culprit, fix))
        assert len(read_scores(case.path).ids) == 3 + (name == "scores_duplicate_ids")


# --------------------------------------------------------------------------- configs


@pytest.fixture(scope="module")
def one_scan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one_scan")
    make_cohort(folder, 1, shape=GOOD_SHAPE, spacing=GOOD_SPACING, seed=4)
    return folder


@pytest.mark.parametrize("name", ["model_negative_variance", "model_wrong_components", "model_pickle_untrusted"])
def test_model_case_through_segment(tmp_path, one_scan, name):
    space = Workspace(tmp_path)
    case = bad.CONFIG_CASES[name](tmp_path / "model")
    space.freeze()
    with TALLY.attempt(name):
        status, stdout, stderr = run_cli(
            ["segment", "--in", str(one_scan), "--out", str(space.out), "--model", str(case.path)], space.cwd)
        assert status == 2
        assert f"radiolab segment: error: {case.path}: {case.expected}" in stderr, stderr
        assert files_under(space.out) == []  # refused before any scan is touched
        assert not case.marker.exists()
        assert space.outside_changes() == []
    if name == "model_pickle_untrusted":  # the payload is live: unsafe loading runs it
        with open(case.path, "rb") as handle:
            pickle.load(handle)
        assert case.marker.exists()


@pytest.mark.parametrize("name", ["pipeline_unknown_key", "pipeline_python_tag"])
def test_pipeline_case_through_the_project_loader(tmp_path, one_scan, name):
    space = Workspace(tmp_path)
    case = bad.CONFIG_CASES[name](tmp_path / "pipeline")
    space.freeze()
    with TALLY.attempt(name):
        with pytest.raises(InputError) as info:
            load_pipeline(case.path)
        message = str(info.value)
        assert message.startswith(f"{case.path}: ") and case.expected in message, message
        for key in case.extra.get("valid", ()):  # the valid keys are listed
            assert key in message.split(case.expected, 1)[1]
        assert not case.marker.exists()
        status, stdout, stderr = run_cli(
            ["run", str(case.path), "--in", str(one_scan), "--out", str(space.out)], space.cwd)
        assert status != 0
        assert str(case.path) in stderr and case.expected in stderr
        assert files_under(space.out) == []
        assert not case.marker.exists()
        assert space.outside_changes() == []


def test_torch_checkpoint_payload_is_refused_by_the_project_loader(tmp_path):
    pytest.importorskip("torch", reason="the torch extra is not installed; checkpoints need it")
    from radiolab.classify.models import load_checkpoint

    case = bad.torch_checkpoint_code(tmp_path)
    with TALLY.attempt(case.name):
        with pytest.raises(InputError) as info:
            load_checkpoint(case.path)
        assert str(info.value).startswith(f"{case.path}: ")
        assert case.expected in str(info.value)
        assert not case.marker.exists()


# --------------------------------------------------------------------------- privacy

PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName")
# CT_small.dcm has no birth date or accession number: the phantom series adds them.
ADDED_PHI = {"PatientBirthDate": "19380412", "AccessionNumber": "ACC7781QX"}
MIN_PHI_LENGTH = 4  # shorter values ("2", "Doe") cannot be told apart from ordinary text


def patient_values(folder: Path) -> set[str]:
    """The patient tags of every DICOM file under ``folder``, read with pydicom."""
    values: set[str] = set()
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        for keyword in PHI_KEYWORDS:
            value = str(ds.get(keyword, "") or "").strip()
            forms = {value, value.replace("^", " ").strip()}
            if keyword == "PatientName":
                forms |= set(value.split("^"))
            values |= {v for v in forms if len(v) >= MIN_PHI_LENGTH}
    return values


def test_privacy_no_patient_tag_reaches_any_output(tmp_path):
    from radiolab.report.html import write_report

    data = bad.pydicom_data_dir()
    dicom = tmp_path / "dicom"
    phantom = chest_phantom(GOOD_SHAPE, GOOD_SPACING, lesion_fraction=0.2, seed=8)
    bad.phantom_ct_series(dicom / "chest", phantom.volume, GOOD_SPACING, tags=ADDED_PHI)
    (dicom / "small").mkdir()
    shutil.copy(data / "CT_small.dcm", dicom / "small" / "ct.dcm")
    (dicom / "j2k").mkdir()
    shutil.copy(data / "693_J2KI.dcm", dicom / "j2k" / "ct.dcm")
    shutil.copytree(data / "dicomdirtests" / "77654033", dicom / "study_a")
    shutil.copytree(data / "dicomdirtests" / "98892001", dicom / "study_b")
    shutil.copytree(data / "dicomdirtests" / "98892003" / "MR700", dicom / "mr")
    # A series without any UID or study tag: its name falls back to hashed keys and folder.
    (dicom / "no_uids").mkdir()
    stripped = pydicom.dcmread(data / "CT_small.dcm")
    for keyword in ("SeriesInstanceUID", "StudyInstanceUID", "StudyDate", "StudyTime"):
        delattr(stripped, keyword)
    stripped.save_as(dicom / "no_uids" / "ct.dcm")
    phi = patient_values(dicom)
    # The sources really carry the tags (so that the test can fail).
    assert {"CompressedSamples^CT1", "1CT1", "JFK IMAGING CENTER", "CQ500-CT-310", "Doe^Peter", "98890234",
            "Doe^Archibald", "77654033", *ADDED_PHI.values()} <= phi

    space = Workspace(tmp_path / "run")
    volumes, labels, report = space.out / "volumes", space.out / "labels", space.out / "report.html"
    # --allow-gaps: study_a/CT2 has a 202.5 mm gap, which is refused without it.
    status, out1, err1 = run_cli(["ingest", "--in", str(dicom), "--out", str(volumes), "--allow-gaps"], space.cwd)
    assert status == 0, err1
    assert len(list(volumes.glob("*.nrrd"))) == 6  # chest, CT_small, J2K, CT2, CT5N, no_uids
    assert "no SeriesInstanceUID: files grouped by SeriesNumber" in err1
    status, out2, err2 = run_cli(["segment", "--in", str(dicom), "--out", str(labels)], space.cwd)
    chest = [r["id"] for r in read_csv(labels / "summary.csv") if r["id"].startswith("series-2-thorax-7mm-")]
    assert len(chest) == 1, err2
    result = write_report(labels, report, scans=[str(dicom)])
    assert not result.failed

    texts = {"ingest output": out1 + err1, "segment output": out2 + err2}
    kinds = set()
    for path in files_under(space.out):
        relative = str(path.relative_to(space.out))
        texts[f"name {relative}"] = relative
        raw = path.read_bytes()
        suffix = path.suffix.lower()
        kinds.add(suffix)
        if suffix == ".nrrd":
            texts[f"header {relative}"] = raw.split(b"\n\n", 1)[0].decode("latin-1")
        elif suffix in (".json", ".csv", ".html"):
            text = raw.decode("utf-8")
            # Embedded images are base64: checked as images below, not as text.
            texts[relative] = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", "", text)
            for uri in re.findall(r"data:[a-z/+]+;base64,([A-Za-z0-9+/=]+)", text):
                data_bytes = base64.b64decode(uri)
                for value in phi:
                    assert value.encode() not in data_bytes, (value, relative)
        else:
            for value in phi:
                assert value.encode() not in raw, (value, relative)
    assert {".nrrd", ".json", ".csv", ".html", ".png"} <= kinds
    for where, text in texts.items():
        for value in phi:
            assert value.lower() not in text.lower(), f"{value!r} found in {where}"


# --------------------------------------------------------------------------- memory guard


def test_memory_estimate_covers_the_segment_peak():
    n = 1_000_000
    assert memory_needed_bytes(n, 2) == int(2 * SEGMENT_PEAK_FACTOR * n) == 11 * n
    assert memory_needed_bytes(n, 1) == 11 * n  # a uint8 file: the int16 scan dominates
    assert memory_needed_bytes(n, 4, floating=True) == 14 * n  # float32, its rounded copy, int16
    assert memory_needed_bytes(n, 8, floating=True) == 26 * n


def test_memory_guard_refuses_with_needed_and_available(tmp_path, monkeypatch):
    ((path, _),) = make_cohort(tmp_path, 1, shape=GOOD_SHAPE, spacing=GOOD_SPACING, seed=2)
    needed = memory_needed_bytes(int(np.prod(GOOD_SHAPE)), 2)
    monkeypatch.setattr(radiolab.io, "available_memory_bytes", lambda: needed)
    with pytest.raises(InputError) as info:
        read_volume(path)
    assert str(info.value) == (
        f"{path}: too large for memory: the header promises 40 x 64 x 64 = 163,840 voxels of 16-bit signed "
        f"integer; reading and segmenting it needs about {needed / 2**20:.1f} MiB, but only "
        f"{needed / 2**20:.1f} MiB of memory is available now; refusing before reading (free memory, use a "
        "larger machine, or run fewer scans at once with --jobs 1)")
    monkeypatch.setattr(radiolab.io, "available_memory_bytes", lambda: int(needed / MEMORY_SHARE_LIMIT) + 1)
    assert read_volume(path).array.shape == GOOD_SHAPE


def test_memory_guard_in_a_batch_gives_errors_rows(tmp_path, monkeypatch):
    space = Workspace(tmp_path)
    make_cohort(tmp_path / "scans", 2, shape=GOOD_SHAPE, spacing=GOOD_SPACING, seed=6)
    monkeypatch.setattr(radiolab.io, "available_memory_bytes", lambda: 2**20)
    space.freeze()
    status, stdout, stderr = run_cli(["segment", "--in", str(tmp_path / "scans"), "--out", str(space.out)],
                                     space.cwd)
    assert status == 1
    rows = read_csv(space.out / "errors.csv")
    assert [r["id"] for r in rows] == ["case_000", "case_001"]
    for row in rows:
        assert row["message"].startswith(f"{tmp_path / 'scans' / row['id']}.nrrd: too large for memory")
        assert "needs about 1.7 MiB, but only 1.0 MiB of memory is available" in row["message"]
    assert sorted(p.name for p in files_under(space.out)) == [
        "case_000_error.json", "case_001_error.json", "errors.csv", "phenotypes.csv", "summary.csv"]
    assert space.outside_changes() == []


def test_memory_guard_for_a_dicom_series(tmp_path, monkeypatch):
    bad.write_ct_series(tmp_path / "series", bad.axial_positions([0.0, 5.0, 10.0]))
    monkeypatch.setattr(radiolab.io, "available_memory_bytes", lambda: 2**19)
    with pytest.raises(InputError) as info:
        read_volume(tmp_path / "series")
    assert str(info.value).startswith(f"{tmp_path / 'series'}: too large for memory: the header promises "
                                      "3 x 128 x 128 = 49,152 voxels of DICOM slices; reading and segmenting it "
                                      f"needs about {11 * 49152 / 2**20:.1f} MiB, but only 0.5 MiB")
