"""Tests of radiolab.report (QC images, flags, HTML report) and `radiolab qc` / `radiolab report`.

Data: a seeded synthetic cohort of four small phantoms, segmented once per module. The
report is opened in a real headless browser (chromium, which `make test` installs): it
must render, and request nothing from the network; without a browser those two tests
skip and say why.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radiolab.cli import qc as qc_cli
from radiolab.cli import report as report_cli
from radiolab.io import TISSUE_SEGMENTS
from radiolab.report.flags import (
    Flag,
    FlagSettings,
    class_outliers,
    compute_flags,
    mask_measures,
    robust_z,
    scan_flags,
    update_summary_flags,
)
from radiolab.report.html import write_report
from radiolab.report.qc import best_slices, canonical_flips, overlay, qc_figure, window, write_qc_images
from radiolab.segment import find_inputs, segment_cohort
from radiolab.synthetic import make_cohort

SHAPE = (48, 80, 80)
SPACING = (6.0, 4.0, 4.0)
N_SCANS = 4


def _read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """(scans dir, labels dir, summary.csv text before qc) after `radiolab qc` ran."""
    root = tmp_path_factory.mktemp("qc")
    scans_dir, labels_dir = root / "scans", root / "labels"
    make_cohort(scans_dir, N_SCANS, shape=SHAPE, spacing=SPACING, seed=0)
    scans, _ = find_inputs(scans_dir)
    report = segment_cohort(scans, labels_dir)
    assert not report.errors
    before = (labels_dir / "summary.csv").read_text()
    status = qc_cli.main([str(labels_dir), "--scans", str(scans_dir)])
    assert status == 0
    return scans_dir, labels_dir, before


def _png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _assert_not_uniform(pixels: np.ndarray, min_colours: int = 50) -> None:
    assert pixels.std() > 20
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    assert np.unique(packed).size >= min_colours


# -- display helpers ----------------------------------------------------------------

def test_window_maps_lung_window_to_black_grey_white():
    grey = window(np.array([-2000, -1350, -600, 150, 1000]))
    np.testing.assert_allclose(grey, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), width=0)


def test_overlay_uses_slicer_colours_and_leaves_outside_grey():
    grey = np.full((1, 6), 0.5, dtype=np.float32)
    labels = np.arange(6, dtype=np.uint8)[None, :]
    rgb = overlay(grey, labels, alpha=1.0)
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0.5, 0.5])
    for value, _, colour in TISSUE_SEGMENTS:
        np.testing.assert_allclose(rgb[0, value], colour, atol=1e-6)
    half = overlay(grey, labels, alpha=0.5)
    np.testing.assert_allclose(half[0, 2], 0.5 * 0.5 + 0.5 * np.asarray(TISSUE_SEGMENTS[1][2]), atol=1e-6)


def test_canonical_flips_follow_direction_cosines():
    assert canonical_flips(np.eye(3).ravel()) == ((False, False, False), True)
    # x and y index axes pointing to -L and -P (RAS-like storage): flip y and x.
    assert canonical_flips(np.diag([-1.0, -1.0, 1.0]).ravel()) == ((False, True, True), True)
    # z index axis pointing inferior: flip z.
    assert canonical_flips(np.diag([1.0, 1.0, -1.0]).ravel()) == ((True, False, False), True)
    permuted = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    assert canonical_flips(permuted.ravel()) == ((False, False, False), False)


def test_best_slices_pass_through_most_mask():
    mask = np.zeros((10, 12, 14), dtype=bool)
    mask[2:5, 3:4, 5:12] = True
    mask[7, 3:10, 9] = True
    assert best_slices(mask) == (2, 3, 9)
    assert best_slices(np.zeros((4, 6, 8), dtype=bool)) == (2, 3, 4)


def test_qc_figure_keeps_physical_proportions():
    shape, spacing = (20, 40, 30), (5.0, 1.0, 2.0)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[5:15, 10:30, 5:25] = 2
    volume = np.where(labels > 0, -850, 40).astype(np.int16)
    fig = qc_figure(volume, labels, spacing, title="aspect")
    width_in, height_in = fig.get_size_inches()
    expected = {  # panel: (width mm, height mm)
        0: (shape[2] * spacing[2], shape[1] * spacing[1]),  # axial: x by y
        1: (shape[2] * spacing[2], shape[0] * spacing[0]),  # coronal: x by z
        2: (shape[1] * spacing[1], shape[0] * spacing[0]),  # sagittal: y by z
    }
    assert len(fig.axes) == 3
    for index, (w_mm, h_mm) in expected.items():
        ax = fig.axes[index]
        assert abs(ax.get_xlim()[1] - ax.get_xlim()[0]) == pytest.approx(w_mm)
        assert abs(ax.get_ylim()[1] - ax.get_ylim()[0]) == pytest.approx(h_mm)
        box = ax.get_position()
        assert (box.width * width_in) / (box.height * height_in) == pytest.approx(w_mm / h_mm, rel=0.01)


@pytest.mark.parametrize("n_slices, shown", [(2, [1, 2]), (8, [1, 5, 8])])
def test_qc_figure_of_a_thin_slab_shows_axial_slices_only(n_slices, shown):
    shape, spacing = (n_slices, 40, 30), (0.5, 1.0, 2.0)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[:, 10:30, 5:25] = 2
    labels[-1, 5:35, 2:28] = 2
    if n_slices > 2:
        labels[4, 5:38, 1:29] = 2  # slice 5 (of 8) holds the most lung
    volume = np.where(labels > 0, -850, 40).astype(np.int16)
    fig = qc_figure(volume, labels, spacing, title="slab")
    names = [t.get_text() for ax in fig.axes for t in ax.texts if "=" in t.get_text()]
    assert names == [f"axial  z = {k}/{n_slices}" for k in shown]
    for ax in fig.axes:  # each panel is x by y at physical size
        assert abs(ax.get_xlim()[1] - ax.get_xlim()[0]) == pytest.approx(shape[2] * spacing[2])
        assert abs(ax.get_ylim()[1] - ax.get_ylim()[0]) == pytest.approx(shape[1] * spacing[1])


def test_qc_zone_diagram_colours_each_zone_by_score(cohort):
    from radiolab.report.qc import SCORE_COLOURS, figure_png, recorded_zones
    from radiolab.zones import ZONE_NAMES

    shape, spacing = (20, 40, 30), (5.0, 1.0, 2.0)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[5:15, 10:30, 5:25] = 2
    volume = np.where(labels > 0, -850, 40).astype(np.int16)
    zones = {name: {"LI_pct": 1.0, "lesion_pct": 0.0, "score": 0} for name in ZONE_NAMES}
    zones["right_lower"] = {"LI_pct": 90.0, "lesion_pct": 80.0, "score": 5}

    def red_pixels(fig):
        pixels = _png_array(figure_png(fig)).astype(int)[..., :3]
        target = np.array([int(SCORE_COLOURS[5][i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(pixels - target).sum(axis=-1) < 10).sum())

    with_zones = qc_figure(volume, labels, spacing, zones=zones)
    assert len(with_zones.axes) == 4
    assert red_pixels(with_zones) > 2000  # one cell of the diagram
    assert red_pixels(qc_figure(volume, labels, spacing)) == 0
    # The zones of a segmented scan come from its records: the scores of summary.csv.
    _, labels_dir, _ = cohort
    summary = _read_csv(labels_dir / "summary.csv")[1]
    for row in summary:
        table = recorded_zones(labels_dir, row["id"])
        assert [table[z]["score"] for z in ZONE_NAMES] == [int(row[f"zone_score_{z}"]) for z in ZONE_NAMES]


# -- `radiolab qc` ----------------------------------------------------------------

def test_qc_images_have_size_and_content(cohort):
    scans_dir, labels_dir, _ = cohort
    ids = sorted(scan.id for scan in find_inputs(scans_dir)[0])
    for scan_id in ids:
        path = labels_dir / f"{scan_id}_qc.png"
        assert path.stat().st_size > 20_000
        pixels = _png_array(path.read_bytes())
        height, width, _ = pixels.shape
        assert 900 <= width <= 2000 and 400 <= height <= 800
        _assert_not_uniform(pixels, min_colours=500)
        # The class overlay makes coloured (non-grey) pixels inside the lungs.
        r, g, b = (pixels[..., i].astype(int) for i in range(3))
        coloured = (np.abs(r - g) > 40) | (np.abs(g - b) > 40)
        assert coloured.sum() > 5_000


def test_qc_writes_flags_and_keeps_summary_columns(cohort):
    _, labels_dir, before = cohort
    columns, rows = _read_csv(labels_dir / "summary.csv")
    old_columns = next(csv.reader(io.StringIO(before)))
    old_rows = list(csv.DictReader(io.StringIO(before)))
    assert columns == old_columns + ["flags"]
    for new, old in zip(rows, old_rows):
        assert {k: new[k] for k in old_columns} == old
    flag_columns, flags = _read_csv(labels_dir / "flags.csv")
    assert flag_columns == ["id", "flag", "detail"]
    # Healthy-sized synthetic lungs well inside the field of view: nothing to flag.
    assert flags == []
    assert all(row["flags"] == "" for row in rows)


def test_qc_cli_flags_lung_volume_bound_and_rewrites_summary(cohort, tmp_path, capsys):
    _, labels_dir, _ = cohort
    copy = tmp_path / "labels"
    shutil.copytree(labels_dir, copy)
    _, rows = _read_csv(copy / "summary.csv")
    volumes = {row["id"]: float(row["lung_volume_ml"]) for row in rows}
    bound = float(np.median(list(volumes.values())))
    expected = {i for i, v in volumes.items() if v < bound}
    assert 0 < len(expected) < len(volumes)
    assert qc_cli.main([str(copy), "--no-images", "--jobs", "2", "--min-volume-ml", str(bound)]) == 0
    assert "FLAG" in capsys.readouterr().out
    _, flags = _read_csv(copy / "flags.csv")
    assert {f["id"] for f in flags if f["flag"] == "lung_volume_low"} == expected
    assert all(f"below {bound:g} mL" in f["detail"] for f in flags)
    _, rows = _read_csv(copy / "summary.csv")
    assert {row["id"] for row in rows if row["flags"] == "lung_volume_low"} == expected
    # A second run replaces the column rather than adding one.
    assert qc_cli.main([str(copy), "--no-images"]) == 0
    columns, rows = _read_csv(copy / "summary.csv")
    assert columns.count("flags") == 1 and all(row["flags"] == "" for row in rows)


def test_unsegmented_scan_gets_an_error_and_a_flag(cohort, tmp_path):
    _, labels_dir, _ = cohort
    extra = tmp_path / "late_scan.nrrd"
    shutil.copy(next(iter(sorted((cohort[0]).glob("*.nrrd")))), extra)
    results = write_qc_images(labels_dir, [extra])
    assert [r.id for r in results] == ["late_scan"] and results[0].path is None
    assert "late_scan_labels.nrrd" in results[0].error
    flags = compute_flags(labels_dir, [extra])
    assert [(f.id, f.flag) for f in flags] == [("late_scan", "not_segmented")]


def test_qc_cli_rejects_missing_folder(tmp_path, capsys):
    assert qc_cli.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


# -- flags ----------------------------------------------------------------------------

def test_mask_measures_surface_edge_and_components():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[0:4, 2:6, 3:8] = True  # 4 x 4 x 5 voxels on the first slice
    measures = mask_measures(mask, (2.0, 1.0, 1.0), min_component_ml=0.01)
    # Faces: z 2 x 20 x 1 mm^2, y 2 x 20 x 2 mm^2, x 2 x 16 x 2 mm^2 = 184 mm^2.
    assert measures.surface_cm2 == pytest.approx(1.84)
    assert measures.edge_cm2 == pytest.approx(0.20)
    assert measures.edge_faces == ("first slice",)
    assert measures.volume_ml == pytest.approx(80 * 2 / 1000)
    assert measures.large_components_ml == pytest.approx((0.16,))
    inside = np.zeros((10, 10, 10), dtype=bool)
    inside[2:8, 2:8, 2:8] = True
    assert mask_measures(inside, (1.0, 1.0, 1.0)).edge_cm2 == 0.0


def test_scan_flags_edge_components_and_volume():
    mask = np.zeros((12, 12, 12), dtype=bool)  # 10 mm voxels: 1 mL each
    mask[1:6, 1:6, 1:5] = True  # 100 mL
    mask[1:5, 7:11, 1:6] = True  # 80 mL
    mask[7:11, 1:5, 7:11] = True  # 64 mL
    mask[8:10, 8:10, 8:10] = True  # 8 mL: small
    measures = mask_measures(mask, (10.0, 10.0, 10.0), min_component_ml=50.0)
    assert measures.large_components_ml == pytest.approx((100.0, 80.0, 64.0))
    settings = FlagSettings(min_volume_ml=300.0, max_volume_ml=1000.0, min_component_ml=50.0)
    flags = {f.flag: f.detail for f in scan_flags("x", measures, settings)}
    assert set(flags) == {"lung_volume_low", "components"}
    assert "mask has 3 large components" in flags["components"]
    assert "252 mL is below 300 mL" in flags["lung_volume_low"]
    edge = mask.copy()
    edge[:, :, 0] = True  # a whole face of the volume
    flags = {f.flag: f.detail for f in scan_flags("x", mask_measures(edge, (10.0,) * 3), settings)}
    assert "mask_at_edge" in flags and "first column" in flags["mask_at_edge"]
    with pytest.raises(ValueError, match="min_volume_ml"):
        FlagSettings(min_volume_ml=5000.0, max_volume_ml=1000.0)


def test_robust_z_and_class_outliers():
    np.testing.assert_allclose(robust_z([1.0, 2.0, 3.0, 4.0, 100.0]),
                               [-1.349, -0.6745, 0.0, 0.6745, 65.4265], atol=1e-3)
    rng = np.random.default_rng(5)
    ggo = rng.normal(10.0, 1.0, 14)
    ggo[6] = 40.0
    rows = [{"id": f"s{i:02d}", "ggo_pct": f"{v:.4f}", "air_pct": "30"} for i, v in enumerate(ggo)]
    flags = class_outliers(rows)
    assert [(f.id, f.flag) for f in flags] == [("s06", "class_outlier")]
    assert flags[0].detail.startswith("ggo_pct 40.00 %")
    assert class_outliers(rows, FlagSettings(min_cohort=15)) == []
    # MAD of 0 (most scans without consolidation): the mean absolute deviation steps in.
    zero = [{"id": f"z{i}", "consolidation_pct": "0"} for i in range(11)] + [{"id": "z11", "consolidation_pct": "5"}]
    assert [f.id for f in class_outliers(zero)] == ["z11"]


def test_update_summary_flags_keeps_other_cells(tmp_path):
    (tmp_path / "summary.csv").write_text("id,lung_volume_ml,note\na,1.5,\"x, y\"\nb,2e3,\n")
    update_summary_flags(tmp_path, [Flag("b", "components", "..."), Flag("b", "mask_at_edge", "..."),
                                    Flag("b", "components", "again")])
    columns, rows = _read_csv(tmp_path / "summary.csv")
    assert columns == ["id", "lung_volume_ml", "note", "flags"]
    assert rows == [{"id": "a", "lung_volume_ml": "1.5", "note": "x, y", "flags": ""},
                    {"id": "b", "lung_volume_ml": "2e3", "note": "", "flags": "components;mask_at_edge"}]


# -- the report -------------------------------------------------------------------

class _Resources(HTMLParser):
    """Every URL-bearing attribute of a page."""

    URL_ATTRIBUTES = {"src", "href", "srcset", "poster", "data", "action", "formaction", "xlink:href", "background"}

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in self.URL_ATTRIBUTES]


def _external_resources(html: str) -> list[str]:
    parser = _Resources()
    parser.feed(html)
    urls = [u for u in parser.urls if not (u.startswith("data:") or u.startswith("#"))]
    urls += [u for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", html) if not u.startswith("data:")]
    urls += [u for u in re.findall(r"@import\s+['\"]?([^'\";]+)", html)]
    return urls


SCORE_ITERATIONS, SCORE_SEED = 7, 3


@pytest.fixture(scope="module")
def report(cohort, tmp_path_factory):
    """The cohort report with expert scores (1..4 in order of LI), as `radiolab report` writes it."""
    _, labels_dir, _ = cohort
    out = tmp_path_factory.mktemp("report") / "report.html"
    _, rows = _read_csv(labels_dir / "summary.csv")
    by_li = sorted(rows, key=lambda row: float(row["LI_pct"]))
    scores = out.parent / "scores.csv"
    scores.write_text("id,S\n" + "".join(f"{row['id']},{rank}\n" for rank, row in enumerate(by_li, 1)))
    assert report_cli.main([str(labels_dir), "--scores", str(scores), "--score-col", "S",
                            "--iterations", str(SCORE_ITERATIONS), "--seed", str(SCORE_SEED),
                            "--out", str(out)]) == 0
    return out, scores


def _key_numbers(html: str) -> dict[str, str]:
    section = html[html.index('<section id="correlation">'):]
    section = section[: section.index("</section>")]
    return dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", section))


def test_report_is_self_contained_with_all_sections(report, cohort):
    path, _ = report
    _, labels_dir, _ = cohort
    html = path.read_text(encoding="utf-8")
    assert _external_resources(html) == []
    assert "<link" not in html and not re.search(r"<script[^>]+src", html)
    for anchor in ("summary", "involvement", "classes", "zones", "mixture", "correlation", "qc", "issues",
                   "provenance"):
        assert f'id="{anchor}"' in html
    for column in ("zone_score_right_upper", "zone_score_left_lower", "zonal_severity"):
        assert f"<th>{column}</th>" in html  # the summary table's zonal columns
    _, rows = _read_csv(labels_dir / "summary.csv")
    for row in rows:
        assert f"<td data-key=\"{row['id']}\">{row['id']}</td>" in html
    # Figures and thumbnails: PNG figures of real size and content, one JPEG per scan.
    pngs = [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    assert len(pngs) == 6  # LI, classes, zones, mixture, two correlation plots
    for data in pngs:
        pixels = _png_array(data)
        assert pixels.shape[0] >= 250 and pixels.shape[1] >= 400
        _assert_not_uniform(pixels)
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) == len(rows)
    # Provenance from gmm.json and the NRRD headers.
    gmm = json.loads((labels_dir / "gmm.json").read_text())
    assert f"{gmm['n_voxels']}" in html and "radiolab_version" in html and "&#34;median_size&#34;: 4" in html


def test_report_correlation_section_holds_run_correlations_outputs(report, cohort, tmp_path):
    """Numbers against scipy on summary.csv and the scores; plots as run_correlation draws them."""
    from scipy import stats as scipy_stats

    from radiolab.stats import run_correlation

    path, scores = report
    _, labels_dir, _ = cohort
    html = path.read_text(encoding="utf-8")
    numbers = _key_numbers(html)
    _, rows = _read_csv(labels_dir / "summary.csv")
    li_by_id = {row["id"]: float(row["LI_pct"]) for row in rows}
    _, scored = _read_csv(scores)
    li = np.array([li_by_id[row["id"]] for row in scored])
    s = np.array([float(row["S"]) for row in scored])
    line = scipy_stats.linregress(li, s)
    assert numbers["n"] == "4"
    assert numbers["pearson_r"] == f"{scipy_stats.pearsonr(li, s).statistic:.4g}"
    assert numbers["spearman_rho"] == f"{scipy_stats.spearmanr(li, s).statistic:.4g}" == "1"
    assert numbers["slope"] == f"{line.slope:.4g}" and numbers["r2"] == f"{line.rvalue ** 2:.4g}"
    assert numbers["resampling.iterations"] == str(SCORE_ITERATIONS)
    assert numbers["resampling.seed"] == str(SCORE_SEED)
    assert numbers["score_col"] == "S"
    # The two plots are embedded as run_correlation writes them, in its order.
    direct = run_correlation(scores, labels_dir, tmp_path, score_col="S", iterations=SCORE_ITERATIONS,
                             seed=SCORE_SEED)
    assert direct["pearson_r"] == pytest.approx(scipy_stats.pearsonr(li, s).statistic, abs=1e-12)
    embedded = re.findall(r'<img class="figure" alt="(correlation_[a-z]+\.png)" src="data:image/png;base64,([^"]+)"',
                          html)
    assert [name for name, _ in embedded] == ["correlation_box.png", "correlation_scatter.png"]
    for name, data in embedded:
        np.testing.assert_array_equal(_png_array(base64.b64decode(data)),
                                      _png_array((tmp_path / name).read_bytes()))


def test_report_says_why_the_correlation_failed(cohort, tmp_path):
    _, labels_dir, _ = cohort
    scores = tmp_path / "scores.csv"
    scores.write_text("id,S\nnobody,2\n")
    result = write_report(labels_dir, tmp_path / "r.html", scores=scores, thumbnail_width=200)
    html = result.path.read_text(encoding="utf-8")
    assert result.failed  # the report is written, and says it is incomplete
    assert any(note.startswith(f"Correlation with {scores} failed: {scores}: no id matches") for note in result.notes)
    assert len(re.findall(r"data:image/png", html)) == 4  # LI, classes, zones, mixture; no correlation plots


def test_report_escapes_ids_and_messages(cohort, tmp_path):
    _, labels_dir, _ = cohort
    copy = tmp_path / "labels"
    shutil.copytree(labels_dir, copy)
    evil = '<script>alert("id")</script>'
    with open(copy / "errors.csv", "a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow([evil, "labels", "<img src=x onerror=alert(1)>"])
    columns, rows = _read_csv(copy / "summary.csv")
    rows.append({**rows[0], "id": 'x"><b>$\\oops$&amp;'})
    with open(copy / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    html = write_report(copy, tmp_path / "r.html", thumbnail_width=200).path.read_text(encoding="utf-8")
    assert evil not in html and "<img src=x" not in html and '"><b>' not in html
    assert "&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;" in html
    assert "x&#34;&gt;&lt;b&gt;$\\oops$&amp;amp;" in html
    assert _external_resources(html) == []


def test_report_of_a_cohort_where_every_scan_failed(tmp_path):
    (tmp_path / "errors.csv").write_text("id,stage,message\ncase_x,lung_mask,/data/case_x.nrrd: no lung island\n")
    result = write_report(tmp_path, tmp_path / "r.html")
    html = result.path.read_text(encoding="utf-8")
    assert "No scan was segmented" in html and "/data/case_x.nrrd: no lung island" in html
    assert any("no gmm.json" in note for note in result.notes)
    assert "data:image" not in html


def test_report_cli_rejects_folder_without_outputs(tmp_path, capsys):
    assert report_cli.main([str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "summary.csv" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


JINJA2_BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "jinja2":
            raise ModuleNotFoundError("No module named 'jinja2'", name="jinja2")
sys.meta_path.insert(0, Block())
"""


def test_segment_with_qc_needs_no_jinja2_and_report_says_how_to_install_it(tmp_path):
    scans, labels, page = tmp_path / "scans", tmp_path / "labels", tmp_path / "report.html"
    code = JINJA2_BLOCKED + f"""
from radiolab.cli import main
from radiolab.synthetic import make_cohort
make_cohort({str(scans)!r}, 1, shape=(40, 64, 64), spacing=(7.0, 5.0, 5.0), seed=1)
assert main(["segment", "--in", {str(scans)!r}, "--out", {str(labels)!r}, "--qc", "--quiet"]) == 0
sys.exit(main(["report", {str(labels)!r}, "--out", {str(page)!r}]))
"""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert (labels / "case_000_qc.png").is_file() and (labels / "flags.csv").is_file()
    assert ("radiolab report: error: radiolab report needs the optional package 'jinja2'. Install it with "
            "`make install` or `pip install 'radiolab[report]'`.") in done.stderr
    assert not page.exists()


# -- the report in a real browser ---------------------------------------------------

def _chromium() -> str:
    """A headless-capable chromium on PATH (`make test` installs Debian's), or skip saying so."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH: the browser checks of the report need it (`make test` installs "
                "Debian's chromium when run as root; or apt-get install chromium)")


def _render(browser: str, page: Path, work: Path) -> tuple[np.ndarray, list[str]]:
    """Screenshot of a page and the URLs the page itself asked the network for."""
    shot, netlog = work / "shot.png", work / "netlog.json"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={work / 'profile'}", f"--log-net-log={netlog}", f"--screenshot={shot}",
               "--window-size=1280,2000", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(work)})
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    log = json.loads(netlog.read_text())
    event_types = {value: name for name, value in log["constants"]["logEventTypes"].items()}
    requested = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event_types.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        # Requests made for the page carry its origin (file:// pages have the opaque
        # origin "null"); the browser's own background traffic has "not an origin".
        if params.get("initiator") != "not an origin" or "file://" in params.get("network_isolation_key", ""):
            requested.append(params["url"])
    return pixels, requested


def test_report_renders_in_chromium_without_network(report, tmp_path):
    browser = _chromium()
    # The check must be able to see a request: a page with a remote image shows up.
    control = tmp_path / "control.html"
    control.write_text('<html><body><h1>control</h1><img src="http://radiolab.invalid/x.png"></body></html>')
    (tmp_path / "control").mkdir()
    _, requested = _render(browser, control, tmp_path / "control")
    assert any(url.startswith("http://radiolab.invalid/") for url in requested)

    path, _ = report
    (tmp_path / "report").mkdir()
    pixels, requested = _render(browser, path, tmp_path / "report")
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []
    assert pixels.shape == (2000, 1280, 3)
    _assert_not_uniform(pixels)
    # The page's own header (dark blue band, #1d2b3a) is drawn at the top.
    np.testing.assert_allclose(pixels[5, 5], (0x1D, 0x2B, 0x3A), atol=4)
    # Figures were decoded and drawn: the Slicer yellow of healthy lung appears.
    yellow = (pixels[..., 0] > 240) & (pixels[..., 1] > 240) & (pixels[..., 2] < 30)
    assert yellow.sum() > 500


def test_summary_table_sorts_on_header_click_in_chromium(report, cohort, tmp_path):
    browser = _chromium()
    _, labels_dir, _ = cohort
    _, rows = _read_csv(labels_dir / "summary.csv")
    expected = [row["id"] for row in sorted(rows, key=lambda r: -float(r["LI_pct"]))]
    assert expected != [row["id"] for row in rows]  # unsorted, the table would fail the check
    click = """<script>
var th = Array.prototype.filter.call(document.querySelectorAll("#summary-table th"),
                                     function (h) { return h.textContent === "LI_pct"; })[0];
th.click(); th.click();
document.title = "ORDER:" + Array.prototype.map.call(document.querySelectorAll("#summary-table tbody tr"),
                                                     function (r) { return r.cells[0].textContent; }).join(",");
</script></body>"""
    page = tmp_path / "clicked.html"
    page.write_text(report[0].read_text(encoding="utf-8").replace("</body>", click), encoding="utf-8")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    order = re.search(r"<title>ORDER:([^<]*)</title>", done.stdout)
    assert order is not None and order.group(1).split(",") == expected


def test_a_bug_in_a_qc_image_is_raised_not_recorded(cohort, monkeypatch):
    """Only radiolab's own errors become a per-scan note; a ValueError from a bug propagates."""
    import radiolab.report.qc as qc_module

    scans_dir, labels_dir, _ = cohort

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(qc_module, "write_qc_image", broken)
    with pytest.raises(ValueError, match="broadcast"):
        write_qc_images(labels_dir, scans_dir)
