"""Tests of radiolab.pipeline and `radiolab run`: the shipped pipeline files, schema
errors, and chains of the stages present here (ingest, segment), with the features and
correlate adapters driven through stand-in modules."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from radiolab.cli import run as run_cli
from radiolab.data import resource
from radiolab.errors import InputError, StageError
from radiolab.io import read_header
from radiolab.pipeline import (
    STAGES,
    CorrelateParams,
    FeaturesParams,
    IngestParams,
    load_pipeline,
    parse_pipeline,
    run_pipeline,
)
from radiolab.segment import SegmentConfig
from radiolab.synthetic import make_cohort

SHAPE, SPACING = (40, 64, 64), (7.0, 5.0, 5.0)
MINI = {"name": "mini", "stages": [{"stage": "ingest"}, {"stage": "segment", "params": {"seed": 0}}]}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    make_cohort(folder, 3, shape=SHAPE, spacing=SPACING, seed=21)
    return folder


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


# -- the shipped pipelines ---------------------------------------------------------------------

def test_zaffino2021_pipeline_is_paper_exact():
    pipeline = load_pipeline(resource("pipelines", "zaffino2021.yaml"))
    assert [spec.stage for spec in pipeline.stages] == ["ingest", "segment", "features", "correlate"]
    segment = pipeline.stages[1].params
    assert isinstance(segment, SegmentConfig)
    assert (segment.preset, segment.model, segment.seed, segment.n_init, segment.tol, segment.median_size) == \
        ("zaffino2021", "fit", 0, 6, 1e-3, 4)
    assert segment.lung_settings().units == "voxel"
    assert pipeline.stages[0].params == IngestParams()
    assert isinstance(pipeline.stages[2].params, FeaturesParams)
    assert pipeline.stages[3].params == CorrelateParams(id_col="id", score_col="S", iterations=100, seed=0)
    assert load_pipeline("zaffino2021") == pipeline  # built-in name


def test_default_pipeline_validates():
    pipeline = load_pipeline("default")
    assert [spec.stage for spec in pipeline.stages] == ["ingest", "segment", "features", "correlate"]
    assert pipeline.stages[1].params == SegmentConfig()


def test_every_registered_stage_has_a_parameter_model():
    assert list(STAGES) == ["ingest", "segment", "features", "correlate"]
    for key, stage in STAGES.items():
        assert stage.key == key and stage.module.startswith("radiolab.")
        stage.params()  # defaults construct


# -- schema errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({"name": "x", "stages": ["segment"], "stagez": []},
     "unknown key 'stagez'; valid keys: name, description, stages"),
    ({"stages": [{"stage": "segmnt"}]},
     "stages[0]: unknown stage 'segmnt'; valid stages: ingest, segment, features, correlate"),
    ({"stages": [{"stage": "segment", "params": {"sed": 1}}]},
     "stages[0] (segment): unknown parameter 'sed' of stage 'segment'; valid parameters: preset, backend, model"),
    ({"stages": [{"stage": "segment", "parms": {}}]}, "stages[0]: unknown key 'parms'; valid keys: stage, params"),
    ({"stages": [{"stage": "segment", "params": {"seed": "0"}}]}, "parameter 'seed' of stage 'segment' must be int"),
    ({"stages": [{"stage": "segment", "params": {"n_init": True}}]}, "must be int, got True"),
    ({"stages": [{"stage": "segment", "params": {"closing_radii": "20"}}]},
     "'closing_radii' of stage 'segment' must be a list of float or null"),
    ({"stages": [{"stage": "segment", "params": {"preset": "paper"}}]}, "unknown lung-mask preset 'paper'"),
    ({"stages": [{"stage": "segment", "params": {"backend": "gpu"}}]}, "backend must be one of fast, reference"),
    ({"stages": [{"stage": "segment", "params": [1]}]}, "params must be a mapping"),
    ({"stages": [{"stage": "features", "params": {"map": "mean"}}, "segment"]}, "map must be 'voxel' or 'median'"),
    ({"stages": ["features", "segment"]}, "stage 'features' must come after 'segment'"),
    ({"stages": ["ingest", "correlate"]}, "stage 'correlate' needs stage 'segment'"),
    ({"stages": ["segment", "segment"]}, "stage 'segment' appears twice"),
    ({"stages": []}, "'stages' must be a non-empty list; valid stages: ingest"),
    ({"name": 3, "stages": ["segment"]}, "'name' and 'description' must be strings"),
    (["segment"], "a pipeline is a mapping"),
    ({"stages": [{"stage": "ingest", "params": {"compression_level": 12}}]}, "compression_level must be 1..9"),
    ({"stages": ["segment", {"stage": "correlate", "params": {"iterations": 0}}]}, "iterations must be at least 1"),
])
def test_schema_errors_name_the_file_and_the_culprit(tmp_path, data, message):
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(InputError) as caught:
        load_pipeline(path)
    assert caught.value.path == str(path)
    assert message in caught.value.problem


def test_yaml_syntax_error_and_missing_file(tmp_path):
    path = _write(tmp_path / "broken.yaml", "stages: [segment\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_pipeline(path)
    with pytest.raises(InputError, match="pipeline file does not exist; built-in pipelines: default, zaffino2021"):
        load_pipeline(tmp_path / "nope.yaml")


def test_parse_accepts_ints_for_floats_and_lists_for_tuples():
    pipeline = parse_pipeline({"stages": [{"stage": "segment", "params": {"tol": 1, "closing_radii": [20, 13.5]}}]})
    config = pipeline.stages[0].params
    assert config.tol == 1.0 and isinstance(config.tol, float) and config.closing_radii == (20.0, 13.5)


def test_run_cli_check_and_errors(tmp_path, capsys):
    assert run_cli.main(["zaffino2021", "--in", str(tmp_path), "--out", str(tmp_path / "o"), "--check"]) == 0
    assert "ingest -> segment -> features -> correlate" in capsys.readouterr().out
    bad = _write(tmp_path / "bad.yaml", {"stages": ["segmentation"]})
    assert run_cli.main([str(bad), "--in", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'segmentation'" in err and str(bad) in err


# -- running chains ----------------------------------------------------------------------------

def test_chain_ingest_segment_on_volume_files_and_rerun(cohort, tmp_path, capsys):
    path = _write(tmp_path / "mini.yaml", MINI)
    out = tmp_path / "results"
    assert run_cli.main([str(path), "--in", str(cohort), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "ingest     skipped  the inputs are volume files" in text
    assert "segment    done     3 scan(s) done, 0 skipped" in text
    labels = out / "labels"
    assert sorted(p.name for p in labels.glob("*_labels_median.nrrd")) == [
        f"case_00{i}_labels_median.nrrd" for i in range(3)]
    assert (labels / "summary.csv").read_text().count("\n") == 4
    record = json.loads((out / "pipeline.json").read_text())
    assert record["pipeline"]["stages"][1]["params"]["preset"] == "default"
    assert record["stages"]["segment"]["status"] == "done" and record["stages"]["ingest"]["status"] == "skipped"
    report = run_pipeline(path, cohort, out)
    assert [r.status for r in report.results] == ["skipped", "skipped"]
    assert report.segment.skipped == ["case_000", "case_001", "case_002"]


def test_correlate_is_skipped_without_scores(cohort, tmp_path):
    pipeline = parse_pipeline({"name": "c", "stages": ["segment", "correlate"]})
    report = run_pipeline(pipeline, cohort, tmp_path)
    assert report.results[1].status == "skipped" and "no --scores" in report.results[1].message


def test_missing_stage_module_fails_before_any_work(cohort, tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "features", replace(STAGES["features"], module="radiolab._not_here"))
    pipeline = parse_pipeline({"name": "f", "stages": ["segment", "features"]})
    with pytest.raises(StageError) as caught:
        run_pipeline(pipeline, cohort, tmp_path / "out")
    assert caught.value.stage == "features" and "radiolab._not_here" in caught.value.message
    assert not (tmp_path / "out" / "labels").exists()


def test_ingest_of_a_non_volume_folder_is_attempted(tmp_path):
    dicom_dir = tmp_path / "dicom"
    dicom_dir.mkdir()
    (dicom_dir / "IM0001").write_bytes(b"not dicom")
    pipeline = parse_pipeline({"name": "i", "stages": ["ingest", "segment"]})
    with pytest.raises(StageError) as caught:
        run_pipeline(pipeline, dicom_dir, tmp_path / "out")
    assert caught.value.stage == "ingest"
    record = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert record["stages"]["ingest"]["status"] == "failed"


def test_features_and_correlate_adapters_call_their_modules(cohort, tmp_path, monkeypatch):
    calls = {}

    def features_main(argv):
        calls["features"] = list(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.write_text("id,feature\n")
        return 0

    def run_correlation(scores_csv, labels_dir, out_dir, **kwargs):
        calls["correlate"] = (scores_csv, labels_dir, out_dir, kwargs)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return {"rho": 0.5}

    monkeypatch.setitem(sys.modules, "radiolab.cli.features", types.SimpleNamespace(main=features_main))
    monkeypatch.setitem(sys.modules, "radiolab.stats", types.SimpleNamespace(run_correlation=run_correlation))
    scores = tmp_path / "scores.csv"
    scores.write_text("id,S\ncase_000,1\n")
    data = {"name": "full", "stages": ["segment", {"stage": "features", "params": {"map": "voxel"}},
                                        {"stage": "correlate", "params": {"score_col": "CT_score", "iterations": 7}}]}
    out = tmp_path / "out"
    report = run_pipeline(parse_pipeline(data), cohort, out, scores=scores, jobs=1)
    assert [r.status for r in report.results] == ["done", "done", "done"]
    argv = calls["features"]
    assert argv[argv.index("--labels") + 1] == str(out / "labels")
    assert argv[argv.index("--in") + 1] == str(cohort)
    assert argv[argv.index("--map") + 1] == "voxel" and argv[argv.index("--jobs") + 1] == "1"
    assert calls["correlate"] == (str(scores), str(out / "labels"), str(out / "correlation"),
                                  {"id_col": "id", "score_col": "CT_score", "iterations": 7, "seed": 0})
    # Rerun: everything up to date. A changed scores file reruns correlate only.
    calls.clear()
    again = run_pipeline(parse_pipeline(data), cohort, out, scores=scores)
    assert [r.status for r in again.results] == ["skipped", "skipped", "skipped"] and not calls
    scores.write_text("id,S\ncase_000,2\n")
    third = run_pipeline(parse_pipeline(data), cohort, out, scores=scores)
    assert [r.status for r in third.results] == ["skipped", "skipped", "done"] and list(calls) == ["correlate"]


def test_dicom_ingest_runs_once_then_is_up_to_date(tmp_path):
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm", download=False)
    if source is None:
        pytest.skip("pydicom test file CT_small.dcm is not installed")
    dicom_dir = tmp_path / "dicom"
    dicom_dir.mkdir()
    (dicom_dir / "CT_small.dcm").write_bytes(Path(source).read_bytes())
    # CT_small is one 128 x 128 slice of a chest crop around the spine: the default preset
    # finds its lung, the paper's preset (islands of 5e5 voxels) cannot.
    pipeline = parse_pipeline({"name": "i", "stages": ["ingest", {"stage": "segment",
                                                                  "params": {"preset": "zaffino2021"}}]})
    out = tmp_path / "out"
    for _ in range(2):  # segment fails, ingest is kept
        with pytest.raises(StageError) as caught:
            run_pipeline(pipeline, dicom_dir, out)
        assert caught.value.stage == "segment" and "no scan was labelled" in caught.value.message
    record = json.loads((out / "pipeline.json").read_text())["stages"]["ingest"]
    assert record["status"] == "done" and record["message"] == "up to date"
    written = record["outputs"]["written"]
    assert len(written) == 1 and Path(written[0]).parent == out / "volumes" and Path(written[0]).is_file()


# -- algorithm versions ------------------------------------------------------------------------

def test_a_bumped_algorithm_version_recomputes_only_what_it_affects(cohort, tmp_path, monkeypatch):
    calls = []

    def features_main(argv):
        calls.append("features")
        Path(argv[argv.index("--out") + 1]).write_text("id,feature\n")
        return 0

    def run_correlation(scores_csv, labels_dir, out_dir, **kwargs):
        calls.append("correlate")
        Path(out_dir).mkdir(parents=True, exist_ok=True)

    monkeypatch.setitem(sys.modules, "radiolab.cli.features", types.SimpleNamespace(main=features_main))
    monkeypatch.setitem(sys.modules, "radiolab.stats", types.SimpleNamespace(run_correlation=run_correlation))
    scores = tmp_path / "scores.csv"
    scores.write_text("id,S\ncase_000,1\n")
    pipeline = parse_pipeline({"name": "v", "stages": ["segment", "features", "correlate"]})
    out = tmp_path / "out"
    labels = out / "labels"

    def run():
        calls.clear()
        report = run_pipeline(pipeline, cohort, out, scores=scores)
        return [r.status for r in report.results], report.segment

    def mtimes(suffix):
        return {p.name: p.stat().st_mtime_ns for p in sorted(labels.glob(f"*{suffix}"))}

    assert run()[0] == ["done", "done", "done"]
    assert run()[0] == ["skipped", "skipped", "skipped"] and calls == []
    record = json.loads((out / "pipeline.json").read_text())["stages"]
    assert record["segment"]["algorithm_versions"] == {"lung_mask": 1, "mixture_fit": 1, "labels": 1}
    assert json.loads(read_header(labels / "case_000_labels.nrrd")["radiolab_algorithm_versions"]) == \
        {"lung_mask": 1, "mixture_fit": 1, "labels": 1}

    # features: only the features table is remade.
    monkeypatch.setitem(STAGES["features"].versions, "features", 2)
    assert run()[0] == ["skipped", "done", "skipped"] and calls == ["features"]
    assert json.loads((out / "pipeline.json").read_text())["stages"]["features"]["algorithm_versions"] == \
        {"features": 2}

    # labels: label maps and what reads them; masks, histograms and the fit are kept.
    masks, histograms, gmm = mtimes("_lung.nrrd"), mtimes("_hist.json"), (labels / "gmm.json").read_bytes()
    label_maps, medians = mtimes("_labels.nrrd"), mtimes("_labels_median.nrrd")
    monkeypatch.setitem(STAGES["segment"].versions, "labels", 2)
    statuses, segment = run()
    assert statuses == ["done", "done", "done"] and calls == ["features", "correlate"]
    assert sorted(segment.done) == ["case_000", "case_001", "case_002"]
    assert mtimes("_lung.nrrd") == masks and mtimes("_hist.json") == histograms
    assert json.loads((labels / "gmm.json").read_bytes())["fit_key"] == json.loads(gmm)["fit_key"]
    assert all(mtimes("_labels.nrrd")[name] != label_maps[name] for name in label_maps)
    assert all(mtimes("_labels_median.nrrd")[name] != medians[name] for name in medians)
    assert json.loads(read_header(labels / "case_000_labels.nrrd")["radiolab_algorithm_versions"])["labels"] == 2
    assert run()[0] == ["skipped", "skipped", "skipped"]

    # lung_mask: everything from the masks on.
    monkeypatch.setitem(STAGES["segment"].versions, "lung_mask", 2)
    assert run()[0] == ["done", "done", "done"]
    assert all(mtimes("_lung.nrrd")[name] != masks[name] for name in masks)
    assert json.loads((labels / "case_000_hist.json").read_text())["algorithm_versions"]["lung_mask"] == 2


def test_a_crash_inside_a_stage_is_raised_as_it_is_and_recorded(cohort, tmp_path, monkeypatch):
    def features_main(argv):
        return np.zeros(2) + np.zeros(3)  # a shape bug: ValueError from numpy

    monkeypatch.setitem(sys.modules, "radiolab.cli.features", types.SimpleNamespace(main=features_main))
    pipeline = parse_pipeline({"name": "crash", "stages": ["segment", "features"]})
    with pytest.raises(ValueError, match="broadcast") as caught:
        run_pipeline(pipeline, cohort, tmp_path)
    assert not isinstance(caught.value, StageError)
    record = json.loads((tmp_path / "pipeline.json").read_text())["stages"]
    assert record["segment"]["status"] == "done"
    assert record["features"]["status"] == "failed" and record["features"]["stage"] == "internal"
    assert "ValueError" in record["features"]["message"]
