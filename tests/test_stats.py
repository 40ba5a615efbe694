import json
import os

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import r2_score

from radiolab.cli import main as radiolab_main
from radiolab.errors import InputError
from radiolab.io import write_volume
from radiolab.stats import (
    agreement,
    auto_score,
    balanced_resample_indices,
    correlate,
    read_scores,
    resampled_correlation,
    run_correlation,
)
from radiolab.synthetic import chest_phantom


def assert_png(path, min_bytes=5000):
    from matplotlib.image import imread

    assert os.path.getsize(path) > min_bytes
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.05
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 20


@pytest.fixture
def fixed():
    rng = np.random.default_rng(42)
    scores = np.repeat([0, 1, 2, 3, 4, 5], [3, 8, 12, 6, 4, 2])
    li = np.clip(scores * 13.0 + rng.normal(0, 7, scores.size) + 2, 0, 100)
    return li, scores


def test_correlate_matches_scipy_and_sklearn(fixed):
    li, scores = fixed
    result = correlate(li, scores)
    pearson = sps.pearsonr(li, scores)
    spearman = sps.spearmanr(li, scores)
    line = sps.linregress(li, scores)
    assert result["n"] == 35
    assert result["pearson_r"] == pytest.approx(pearson.statistic, rel=1e-12)
    assert result["pearson_p"] == pytest.approx(pearson.pvalue, rel=1e-9)
    assert result["spearman_rho"] == pytest.approx(spearman.statistic, rel=1e-12)
    assert result["spearman_p"] == pytest.approx(spearman.pvalue, rel=1e-9)
    assert result["slope"] == pytest.approx(line.slope, rel=1e-12)
    assert result["intercept"] == pytest.approx(line.intercept, rel=1e-12)
    prediction = result["intercept"] + result["slope"] * li
    assert result["r2"] == pytest.approx(r2_score(scores, prediction), rel=1e-10)
    assert 0.8 < result["pearson_r"] < 1.0


def test_correlate_rejects_degenerate_input():
    with pytest.raises(ValueError, match="same score"):
        correlate([1.0, 2.0, 3.0], [2, 2, 2])
    with pytest.raises(ValueError, match="same LI"):
        correlate([4.0, 4.0, 4.0], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 3"):
        correlate([1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="length"):
        correlate([1.0, 2.0, 3.0], [1, 2])


def test_balanced_resample_indices(fixed):
    _, scores = fixed
    index = balanced_resample_indices(scores, iterations=50, seed=3)
    assert index.shape == (50, 6 * 2)  # the smallest group (S=5) has 2 scans
    for row in index:
        drawn = scores[row]
        assert np.array_equal(np.bincount(drawn, minlength=6), [2] * 6)
        assert np.array_equal(drawn, np.repeat(np.arange(6), 2))
    assert np.array_equal(index, balanced_resample_indices(scores, iterations=50, seed=3))
    assert not np.array_equal(index, balanced_resample_indices(scores, iterations=50, seed=4))
    # with replacement: drawing 10 per group repeats scans of the groups smaller than 10
    big = balanced_resample_indices(scores, iterations=5, per_group=10, seed=0)
    assert big.shape == (5, 60)
    assert len(np.unique(big[0][scores[big[0]] == 0])) <= 3
    with pytest.raises(ValueError, match="two score groups"):
        balanced_resample_indices([1, 1, 1])
    with pytest.raises(ValueError, match="per_group"):
        balanced_resample_indices(scores, per_group=0)


def test_resampled_correlation_matches_scipy(fixed):
    li, scores = fixed
    result = resampled_correlation(li, scores, iterations=40, seed=11)
    index = balanced_resample_indices(scores, iterations=40, seed=11)
    expected_r, expected_r2, expected_all = [], [], []
    for row in index:
        line = sps.linregress(li[row], scores[row])
        expected_r.append(sps.pearsonr(li[row], scores[row]).statistic)
        expected_r2.append(line.rvalue ** 2)
        expected_all.append(r2_score(scores, line.intercept + line.slope * li))
    assert result["degenerate"] == 0
    np.testing.assert_allclose(result["r"], expected_r, rtol=1e-10)
    np.testing.assert_allclose(result["r2"], expected_r2, rtol=1e-10)
    np.testing.assert_allclose(result["r2_all"], expected_all, rtol=1e-9)
    assert result["per_group"] == 2
    assert result["group_sizes"] == {"0": 3, "1": 8, "2": 12, "3": 6, "4": 4, "5": 2}
    again = resampled_correlation(li, scores, iterations=40, seed=11)
    np.testing.assert_array_equal(again["r"], result["r"])


def test_auto_score_bin_edges():
    li = [0.0, 1e-9, 4.999, 5.0, 25.0, 25.0001, 50.0, 50.0001, 75.0, 75.0001, 100.0]
    assert auto_score(li).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert int(auto_score(30.0)) == 3
    with pytest.raises(ValueError):
        auto_score([101.0])
    with pytest.raises(ValueError):
        auto_score([np.nan])


def test_agreement_kappa_and_confusion():
    s = np.array([0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 1])
    auto = np.array([1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 0])
    result = agreement(s, auto)
    counts = np.zeros((6, 6), int)
    for a, b in zip(s, auto):
        counts[a, b] += 1
    assert result["confusion_matrix"]["counts"] == counts.tolist()
    # quadratic-weighted kappa from its definition
    weights = (np.subtract.outer(np.arange(6), np.arange(6)) ** 2).astype(float)
    expected = np.outer(counts.sum(1), counts.sum(0)) / counts.sum()
    kappa = 1 - (weights * counts).sum() / (weights * expected).sum()
    assert result["kappa_quadratic"] == pytest.approx(kappa, rel=1e-12)
    assert result["exact_agreement"] == pytest.approx(np.mean(s == auto))
    assert agreement(s, s)["kappa_quadratic"] == pytest.approx(1.0)


def write_scores(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_run_correlation_with_li_column(tmp_path, fixed):
    li, scores = fixed
    lines = ["id,S,LI_pct"] + [f"scan_{i:02d},{s},{v:.6f}" for i, (s, v) in enumerate(zip(scores, li))]
    scores_csv = write_scores(tmp_path / "scores.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = run_correlation(scores_csv, None, out, iterations=30, seed=5)
    on_disk = json.loads((out / "correlation.json").read_text())
    assert on_disk == result
    for key in ("n", "pearson_r", "pearson_p", "spearman_rho", "r2", "resampled_r2_mean", "resampled_r2_sd",
                "resampled_r_mean", "resampled_r_sd", "kappa_quadratic"):
        assert isinstance(result[key], (int, float)), key
    li6 = np.round(li, 6)
    assert result["pearson_r"] == pytest.approx(sps.pearsonr(li6, scores).statistic, rel=1e-9)
    resampled = resampled_correlation(li6, scores, iterations=30, seed=5)
    assert result["resampled_r_mean"] == pytest.approx(resampled["r"].mean())
    assert result["resampled_r2_sd"] == pytest.approx(resampled["r2"].std(ddof=1))
    assert result["li_source"] == scores_csv
    assert [scan["S_auto"] for scan in result["scans"]] == auto_score(li6).tolist()
    assert_png(out / "correlation_box.png")
    assert_png(out / "correlation_scatter.png")
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_semicolon_csv_and_custom_columns(tmp_path):
    summary = tmp_path / "labels"
    summary.mkdir()
    (summary / "summary.csv").write_text("id,lung_volume_ml,LI_pct\n" + "".join(
        f"c{i},1000,{v}\n" for i, v in enumerate([1.0, 8.0, 20.0, 35.0, 60.0, 3.0, 99.0])))
    scores_csv = write_scores(tmp_path / "scores.csv", "\ufeffpatient;grade\nc0;1\nc1;2\nc2;2\nc3;3\nc4;4\nc9;1\n")
    result = run_correlation(scores_csv, summary, tmp_path / "out", id_col="patient", score_col="grade",
                             iterations=10)
    assert result["n"] == 5
    assert result["ids_missing_in_labels"] == ["c9"]
    assert result["ids_missing_in_scores"] == ["c5", "c6"]
    assert result["pearson_r"] == pytest.approx(sps.pearsonr([1, 8, 20, 35, 60], [1, 2, 2, 3, 4]).statistic)


BAD_SCORES = {
    "missing score column": ("id,score\na,1\nb,2\nc,3\n", "no score column 'S'"),
    "missing id column": ("case,S\na,1\nb,2\nc,3\n", "no id column 'id'"),
    "non-numeric S": ("id,S\na,1\nb,two\nc,3\n", "line 3: 'two' in column 'S' is not a number"),
    "empty S": ("id,S\na,1\nb,\nc,3\n", "line 3: an empty cell"),
    "S above 5": ("id,S\na,1\nb,6\nc,3\n", "outside 0-5"),
    "S below 0": ("id,S\na,-1\nb,2\nc,3\n", "outside 0-5"),
    "fractional S": ("id,S\na,1\nb,2.5\nc,3\n", "not a whole number"),
    "infinite S": ("id,S\na,1\nb,inf\nc,3\n", "not a finite number"),
    "duplicate ids": ("id,S\na,1\nb,2\na,3\n", "duplicate ids: 'a' on lines 2, 4"),
    "relative path id": ("id,S\na,1\n../b,2\nc,3\n", "looks like a path"),
    "slash id": ("id,S\na,1\nscans/b,2\nc,3\n", "looks like a path"),
    "absolute path id": ("id,S\n/data/a,1\nb,2\nc,3\n", "looks like a path"),
    "backslash id": ("id,S\na,1\nb,2\nscans\\c,3\n", "looks like a path"),
    "drive id": ("id,S\nC:a,1\nb,2\nc,3\n", "looks like a path"),
    "empty id": ("id,S\na,1\n,2\nc,3\n", "empty id"),
    "empty file": ("", "file is empty"),
    "blank file": ("\n \n", "file is empty"),
    "header only": ("id,S\n", "no data rows"),
    "ragged row": ("id,S\na,1\nb,2,7\nc,3\n", "line 3: 3 fields"),
    "no id matches": ("id,S\nx,1\ny,2\nz,3\n", "no id matches"),
    "single score": ("id,S\na,2\nb,2\nc,2\n", "same score"),
    "bad LI column": ("id,S,LI_pct\na,1,3\nb,2,x\nc,3,40\n", "'x' in column 'LI_pct'"),
    "LI above 100": ("id,S,LI_pct\na,1,3\nb,2,130\nc,3,40\n", "outside 0-100"),
}


@pytest.fixture
def labels_dir(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "summary.csv").write_text("id,LI_pct\na,2.0\nb,10.0\nc,30.0\n")
    return folder


@pytest.mark.parametrize("case", sorted(BAD_SCORES))
def test_bad_scores_are_clear_errors(tmp_path, labels_dir, capsys, case):
    text, message = BAD_SCORES[case]
    scores_csv = write_scores(tmp_path / "scores.csv", text)
    with pytest.raises(InputError) as raised:
        run_correlation(scores_csv, labels_dir, tmp_path / "out")
    assert raised.value.path == scores_csv
    assert message in str(raised.value)
    assert radiolab_main(["correlate", scores_csv, "--labels", str(labels_dir), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert scores_csv in error and message in error
    assert not (tmp_path / "out").exists()


def test_a_bug_in_correlate_is_no_usage_error(tmp_path, labels_dir, monkeypatch):
    import radiolab.stats

    scores_csv = write_scores(tmp_path / "scores.csv", "id,S\na,1\nb,2\nc,3\n")

    def broken(li, scores):
        return np.zeros(2) + np.zeros(3)  # a shape bug: ValueError from numpy

    monkeypatch.setattr(radiolab.stats, "correlate", broken)
    with pytest.raises(ValueError, match="broadcast"):  # raised as it is, not turned into bad input
        radiolab_main(["correlate", scores_csv, "--labels", str(labels_dir), "--out", str(tmp_path / "o")])


def test_bad_or_missing_summary(tmp_path):
    scores_csv = write_scores(tmp_path / "scores.csv", "id,S\na,1\nb,2\nc,3\n")
    with pytest.raises(InputError, match="summary.csv: file does not exist"):
        run_correlation(scores_csv, tmp_path / "nowhere", tmp_path / "out")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "summary.csv").write_text("id,lung_volume_ml\na,1\n")
    with pytest.raises(InputError, match="no LI column 'LI_pct'") as raised:
        run_correlation(scores_csv, labels, tmp_path / "out")
    assert raised.value.path.endswith("summary.csv")
    (labels / "summary.csv").write_text("id,LI_pct\na,1\na,2\n")
    with pytest.raises(InputError, match="duplicate ids"):
        run_correlation(scores_csv, labels, tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        read_scores(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="iterations"):
        run_correlation(scores_csv, labels, tmp_path / "out", iterations=0)


def test_end_to_end_synthetic_cohort(tmp_path, capsys):
    """12 phantoms, S binned from the true lesion fraction; segment, then correlate."""
    fractions = [0.0, 0.02, 0.04, 0.08, 0.15, 0.22, 0.30, 0.38, 0.45, 0.52, 0.57, 0.60]
    lines = ["id,S"]
    for index, fraction in enumerate(fractions):
        phantom = chest_phantom((40, 64, 64), (7.0, 5.0, 5.0), lesion_fraction=fraction, seed=10 + index)
        write_volume(tmp_path / "scans" / f"case_{index:03d}.nrrd", phantom.volume, phantom.geometry)
        lines.append(f"case_{index:03d},{int(auto_score(100 * phantom.lesion_fraction))}")
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    labels = tmp_path / "labels"
    assert radiolab_main(["segment", "--in", str(tmp_path / "scans"), "--out", str(labels), "--quiet"]) == 0
    header = (labels / "summary.csv").read_text().splitlines()[0].split(",")
    for column in ("LI_pct", "right_LI_pct", "left_LI_pct", "right_lung_volume_ml", "left_ggo_pct",
                   "LAA950_pct", "HAA500_pct", "HAA250_pct", "sides_found"):
        assert column in header
    out = tmp_path / "correlation"
    assert radiolab_main(["correlate", str(tmp_path / "scores.csv"), "--labels", str(labels),
                          "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Pearson C" in printed and "kappa" in printed
    result = json.loads((out / "correlation.json").read_text())
    assert result["n"] == 12
    assert result["pearson_r"] >= 0.9
    assert result["pearson_p"] < 1e-3
    assert result["resampled_r_mean"] >= 0.9
    assert result["kappa_quadratic"] > 0.8
    assert sum(map(sum, result["confusion_matrix"]["counts"])) == 12
    assert_png(out / "correlation_box.png")
    assert_png(out / "correlation_scatter.png")


def test_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, radiolab, radiolab.segment, radiolab.stats, radiolab.robustness, radiolab.plots, "
            "radiolab.sides; print(sorted(m for m in ('matplotlib', 'sklearn', 'torch', 'dask') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert output.stdout.strip() == "[]"


def test_correlate_reports_s_against_zonal_severity(tmp_path, fixed, capsys):
    li, scores = fixed
    rng = np.random.default_rng(3)
    zonal = np.clip(scores * 4 + rng.integers(-3, 4, scores.size), 0, 30)
    labels = tmp_path / "labels"
    labels.mkdir()
    rows = ["id,LI_pct,zonal_severity"] + [f"scan_{i:02d},{v:.6f},{z if i else ''}"
                                           for i, (v, z) in enumerate(zip(li, zonal))]
    (labels / "summary.csv").write_text("\n".join(rows) + "\n")
    scores_csv = write_scores(tmp_path / "scores.csv", "id,S\n" + "".join(f"scan_{i:02d},{s}\n"
                                                                       for i, s in enumerate(scores)))
    assert radiolab_main(["correlate", scores_csv, "--labels", str(labels), "--out", str(tmp_path / "out"),
                          "--iterations", "5"]) == 0
    assert "S vs zonal_severity" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "correlation.json").read_text())
    # scan_00 has no zonal_severity: left out of this correlation only.
    expected_pearson = sps.pearsonr(zonal[1:], scores[1:])
    assert result["zonal_severity"]["n"] == scores.size - 1
    assert result["zonal_severity"]["pearson_r"] == pytest.approx(expected_pearson.statistic, rel=1e-9)
    assert result["zonal_severity"]["spearman_rho"] == pytest.approx(sps.spearmanr(zonal[1:], scores[1:]).statistic,
                                                                     rel=1e-9)
    assert result["n"] == scores.size
    assert "zonal_severity" not in result["scans"][0] and result["scans"][1]["zonal_severity"] == zonal[1]
