import csv
import json
import os

import numpy as np
import pytest

from radiolab.cli import main as radiolab_main
from radiolab.errors import InputError
from radiolab.io import write_json_atomic, write_volume
from radiolab.mixture import Histogram, fit_mixture, lung_histogram, sum_histograms
from radiolab.robustness import load_histograms, parameter_spread, robustness_study, run_robustness
from radiolab.synthetic import chest_phantom

SHAPE, SPACING = (40, 64, 64), (7.0, 5.0, 5.0)


def assert_png(path):
    from matplotlib.image import imread

    assert os.path.getsize(path) > 5000
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05


@pytest.fixture(scope="module")
def histograms():
    result = {}
    for index in range(8):
        phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.05 * index, seed=20 + index)
        result[f"case_{index:03d}"] = lung_histogram(phantom.volume, phantom.truth["lung"])
    return result


@pytest.fixture
def labels_dir(tmp_path, histograms):
    folder = tmp_path / "labels"
    for scan, histogram in histograms.items():
        write_json_atomic(folder / f"{scan}_hist.json", {"id": scan, "mask_key": "k1",
                                                         "histogram": histogram.to_json()})
    return folder


@pytest.fixture(scope="module")
def study(histograms):
    return robustness_study(histograms, sizes=(2, 8, 20), repeats=3, seed=1, n_init=2)


def test_study_fits_every_group_on_its_subset(histograms, study):
    assert sorted(study.fits) == [2, 8]
    assert study.skipped == [("size 20", "only 8 scans available")]
    for size in (2, 8):
        assert len(study.groups[size]) == len(study.fits[size]) == 3
        for ids, fit in zip(study.groups[size], study.fits[size]):
            assert len(set(ids)) == size and set(ids) <= set(histograms)
            assert fit.n_scans == size
    assert len({tuple(ids) for ids in study.groups[2]}) > 1
    ids, fit = study.groups[2][0], study.fits[2][0]
    expected = fit_mixture(sum_histograms(histograms[i] for i in ids), seed=1, n_init=2)
    np.testing.assert_allclose(fit.means, expected.means)
    np.testing.assert_allclose(fit.weights, expected.weights)
    again = robustness_study(histograms, sizes=(2,), repeats=2, seed=1, n_init=1)
    assert again.groups[2] == study.groups[2][:2]
    other = robustness_study(histograms, sizes=(2,), repeats=2, seed=2, n_init=1)
    assert other.groups[2] != again.groups[2]


def test_parameter_spread(study):
    rows = parameter_spread(study)
    assert len(rows) == 2 * 5 * 3
    by_key = {(r["size"], r["class"], r["parameter"]): r for r in rows}
    ggo_means = np.array([fit.means[2] for fit in study.fits[2]])
    row = by_key[(2, "ggo", "mean_hu")]
    assert row["sd"] == pytest.approx(ggo_means.std(ddof=1))
    assert row["range"] == pytest.approx(np.ptp(ggo_means))
    assert row["mean"] == pytest.approx(ggo_means.mean())
    healthy_sd = np.array([fit.stds[1] for fit in study.fits[2]])
    assert by_key[(2, "healthy", "sd_hu")]["max"] == pytest.approx(healthy_sd.max())
    # the whole cohort every time: the same fit, no spread
    assert all(r["sd"] < 1e-9 and r["range"] == 0 for r in rows if r["size"] == 8)
    assert any(r["sd"] > 0.01 for r in rows if r["size"] == 2)
    # GGO of the phantoms sits at -650 HU whatever the subset
    assert -700 < row["min"] <= row["max"] < -600


def test_run_from_labels_folder(tmp_path, labels_dir, capsys):
    (labels_dir / "case_broken_hist.json").write_text("{not json")
    out = tmp_path / "robust"
    assert radiolab_main(["robustness", "--in", str(labels_dir), "--out", str(out), "--sizes", "2", "4", "9",
                          "--repeats", "2", "--n-init", "2"]) == 0
    captured = capsys.readouterr()
    assert "ggo" in captured.out
    assert "case_broken_hist.json" in captured.err and "size 9" in captured.err
    report = json.loads((out / "robustness.json").read_text())
    assert report["source"] == "histograms"
    assert report["settings"]["n_scans"] == 8
    assert [(g["size"], g["group"]) for g in report["groups"]] == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert all(len(g["means_hu"]) == 5 for g in report["groups"])
    with open(out / "robustness.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 5 * 3
    assert set(rows[0]) == {"size", "class", "parameter", "n_groups", "mean", "sd", "min", "max", "range"}
    assert float(rows[0]["sd"]) == pytest.approx(report["spread"][0]["sd"], rel=1e-5)
    assert_png(out / "robustness.png")


def test_run_from_scans_masks_once(tmp_path):
    scans = tmp_path / "scans"
    for index in range(3):
        phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.1 * index, seed=30 + index)
        write_volume(scans / f"s{index}.nrrd", phantom.volume, phantom.geometry)
    out = tmp_path / "robust"
    report = run_robustness(scans, out, sizes=(2,), repeats=2, n_init=1)
    assert report["source"] == "scans"
    # The mask step's outputs only (the default preset also writes sides and airways): no labels.
    mask_outputs = ("_hist.json", "_lung.nrrd", "_sides.nrrd", "_airways.nrrd")
    assert sorted(os.listdir(out / "masks")) == sorted(
        f"s{i}{suffix}" for i in range(3) for suffix in mask_outputs)
    stamp = os.stat(out / "masks" / "s0_hist.json").st_mtime_ns
    again = run_robustness(scans, out, sizes=(2,), repeats=2, n_init=1)
    assert os.stat(out / "masks" / "s0_hist.json").st_mtime_ns == stamp
    assert again["groups"] == report["groups"]
    # the cached histograms can be used directly
    direct = run_robustness(out / "masks", tmp_path / "direct", sizes=(2,), repeats=2, n_init=1)
    assert direct["source"] == "histograms"
    assert direct["spread"] == report["spread"]


def test_errors(tmp_path, histograms):
    with pytest.raises(InputError, match="no cached histograms"):
        load_histograms(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        load_histograms(tmp_path / "missing")
    with pytest.raises(ValueError, match="positive"):
        robustness_study(histograms, sizes=(0, 2))
    with pytest.raises(ValueError, match="repeats"):
        robustness_study(histograms, sizes=(2,), repeats=0)
    with pytest.raises(ValueError, match="only 8 scans"):
        robustness_study(histograms, sizes=(50,))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert radiolab_main(["robustness", "--in", str(empty), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    folder = tmp_path / "bad"
    write_json_atomic(folder / "a_hist.json", {"histogram": {"lo": -1000, "counts": [1, -2]}})
    write_json_atomic(folder / "b_hist.json", {"id": "b"})
    with pytest.raises(InputError, match="no usable scan histogram"):
        run_robustness(folder, tmp_path / "o", sizes=(1,))
    found, info = load_histograms(folder)
    assert found == {}
    assert [os.path.basename(path) for path, _ in info["skipped"]] == ["a_hist.json", "b_hist.json"]
    assert isinstance(Histogram.from_json({"lo": 0, "counts": [1]}), Histogram)
