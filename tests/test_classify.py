"""Tests of radiolab.classify: small CPU models for a few steps on seeded phantoms."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from radiolab.classify.data import (
    ManifestRow,
    SliceFrame,
    bounding_box,
    chest_hull,
    check_subject_splits,
    lesion_from_labels,
    lung_window,
    read_manifest,
    select_slices,
    volume_to_slices,
)
from radiolab.classify.metrics import (
    auc_ci,
    binary_metrics,
    choose_threshold,
    compare_reader,
    delong_auc,
    mcnemar_exact,
    trimmed_subject_mean,
)
from radiolab.classify.recipes import RECIPES, ClassifyConfig, config_for
from radiolab.errors import InputError
from radiolab.io import write_volume
from radiolab.synthetic import chest_phantom

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE, SPACING = (24, 48, 48), (12.0, 6.5, 6.5)


@pytest.fixture
def torch():
    """torch (with MONAI) for the tests of models and training; the rest need only numpy."""
    torch = pytest.importorskip("torch", reason="the torch extra (torch, MONAI) is not installed: "
                                "pip install 'radiolab[torch]'")
    pytest.importorskip("monai", reason="the torch extra (torch, MONAI) is not installed: "
                        "pip install 'radiolab[torch]'")
    torch.set_num_threads(1)
    return torch


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


# -- optional dependency ---------------------------------------------------------------

def test_core_and_segment_never_import_torch():
    result = _run_python(
        "import radiolab, radiolab.segment, radiolab.cli.segment, radiolab.cli.classify, radiolab.classify, "
        "radiolab.classify.data, radiolab.classify.metrics, radiolab.classify.recipes, sys; "
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'monai' not in sys.modules, 'monai imported'"
    )
    assert result.returncode == 0, result.stderr


def test_classify_without_torch_says_how_to_install(tmp_path):
    result = _run_python(
        "import sys; sys.modules['torch'] = None\n"
        "from radiolab.cli import main\n"
        f"sys.exit(main(['classify', 'train', '--data', {str(tmp_path / 'm.csv')!r}, '--out', {str(tmp_path / 'r')!r}]))"
    )
    assert result.returncode == 2
    assert "needs the optional package 'torch'" in result.stderr
    assert "pip install 'radiolab[torch]'" in result.stderr
    assert not (tmp_path / "r").exists()


# -- recipes ---------------------------------------------------------------------------

def test_recipes_hold_the_published_settings_and_yield_to_overrides():
    zhao = config_for("zhao2020")
    assert (zhao.model, zhao.image_size, zhao.batch_size, zhao.optimizer, zhao.lr) == ("densenet169", 480, 16, "adam", 1e-4)
    assert (zhao.scheduler, zhao.cosine_period, zhao.crop_scale, zhao.hflip) == ("cosine", 10, 0.5, True)
    assert (zhao.brightness, zhao.contrast, zhao.recipe) == (0.2, 0.2, "zhao2020")
    yang = config_for("yang2020", epochs=3, threshold="youden")
    assert (yang.optimizer, yang.momentum, yang.scheduler, yang.step_size, yang.batch_size) == ("sgd", 0.9, "step", 5, 32)
    assert (yang.window_width, yang.window_level, yang.slice_step, yang.lesion_slices, yang.trim) == (1200, -600, 3, True, 0.1)
    assert (yang.epochs, yang.threshold) == (3, "youden")
    assert config_for("yang2020").epochs == 20 and config_for("yang2020").threshold == 0.8
    for recipe in RECIPES:
        config = config_for(recipe, seed=7)
        assert ClassifyConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize("kwargs, match", [
    ({"recipe": "smith2021"}, "valid recipes: zhao2020, yang2020"),
    ({"learning_rate": 0.1}, "unknown classify setting"),
    ({"lr": 0.0}, "lr must lie in"),
    ({"trim": 0.5}, "trim must lie in"),
    ({"threshold": "otsu"}, "threshold must be 'youden' or a probability"),
    ({"optimizer": "rmsprop"}, "valid: adam, sgd"),
])
def test_bad_settings_are_refused_by_name(kwargs, match):
    recipe = kwargs.pop("recipe", None)
    with pytest.raises(ValueError, match=match):
        config_for(recipe, **kwargs)


# -- metrics ---------------------------------------------------------------------------

def test_trimmed_mean_drops_the_first_and_last_tenth_by_position():
    probabilities = np.array([0.9, 0.2, 0.4, 0.6, 0.3, 0.5, 0.7, 0.1, 0.8, 0.0])
    positions = np.array([90.0, 20, 40, 60, 30, 50, 70, 10, 80, 0])  # probability = position / 100 but 0.9 at 90
    mean, used = trimmed_subject_mean(probabilities, positions, trim=0.1)
    # sorted by position: 0.0, 0.1, ..., 0.8, 0.9 -> drop 0.0 and 0.9 -> mean of 0.1..0.8
    assert used == 8 and mean == pytest.approx(0.45)
    mean, used = trimmed_subject_mean(np.arange(25.0), trim=0.1)  # floor(2.5) = 2 per end
    assert used == 21 and mean == pytest.approx(np.arange(2.0, 23.0).mean())
    mean, used = trimmed_subject_mean([0.2, 0.9, 0.4], trim=0.1)  # fewer than 10 slices: nothing dropped
    assert used == 3 and mean == pytest.approx(0.5)
    # trimming follows slice order, not values (a value-trimmed mean would give 0.2 here)
    assert trimmed_subject_mean([0.9, 0.9] + [0.1] * 16 + [0.9, 0.9], trim=0.1) == (pytest.approx(0.1), 16)


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.3, 80), 0, 1), 1)  # rounding makes ties
    auc, variance = delong_auc(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores))
    for threshold in (0.3, 0.5, 0.7):
        m = binary_metrics(y, scores, threshold)
        predicted = (scores >= threshold).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
        assert m["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
        assert m["accuracy"] == pytest.approx(accuracy_score(y, predicted))
        assert m["sensitivity"] == pytest.approx(recall_score(y, predicted))
        assert m["specificity"] == pytest.approx(recall_score(y, predicted, pos_label=0))
        assert m["f1"] == pytest.approx(f1_score(y, predicted))
    # DeLong's variance from its definition (structural components of every pair)
    pos, neg = scores[y == 1], scores[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    expected = psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)
    assert variance == pytest.approx(expected)
    a, low, high = auc_ci(y, scores)
    assert low < a < high and high - low == pytest.approx(2 * 1.959964 * math.sqrt(expected), rel=1e-4)
    _, boot_low, boot_high = auc_ci(y, scores, method="bootstrap", n_boot=400, seed=1)
    assert abs(boot_low - low) < 0.05 and abs(boot_high - high) < 0.05


def test_thresholds_youden_and_target_sensitivity():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 30)
    scores = np.concatenate([rng.normal(0.35, 0.15, 30), rng.normal(0.65, 0.15, 30)])
    fpr, tpr, thresholds = roc_curve(y, scores)
    youden = choose_threshold(y, scores)
    best = max((t - f for t, f in zip(tpr, fpr)))
    m = binary_metrics(y, scores, youden)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(best)
    target = choose_threshold(y, scores, sensitivity=0.95)
    assert binary_metrics(y, scores, target)["sensitivity"] >= 0.95
    higher = scores[scores > target].min()
    assert binary_metrics(y, scores, higher)["sensitivity"] < 0.95  # the highest threshold that reaches it
    assert choose_threshold(y, scores, rule=0.8) == 0.8


def test_exact_mcnemar_and_reader_tables():
    first = np.array([True] * 8 + [False] * 2 + [True] * 5)
    second = np.array([False] * 8 + [True] * 2 + [True] * 5)
    result = mcnemar_exact(first, second)
    assert (result["first_only"], result["second_only"], result["both_correct"]) == (8, 2, 5)
    assert result["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)  # two-sided binomial, n = 10
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    truth = [1, 1, 1, 0, 0, 0]
    table = compare_reader(truth, [1, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0])
    assert table["model"]["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert table["reader"]["confusion"] == {"tp": 1, "fp": 0, "fn": 2, "tn": 3}
    assert table["mcnemar"]["positives"]["first_only"] == 1 and table["mcnemar"]["negatives"]["second_only"] == 1


# -- manifest and slices ---------------------------------------------------------------

def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_manifest(path, rows, columns=("path", "label", "subject", "split")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_subject_in_two_splits_is_refused_by_name(tmp_path):
    manifest = _write_manifest(tmp_path / "m.csv", [
        ("a.nrrd", 1, "p01", "train"), ("b.nrrd", 0, "p02", "train"), ("c.nrrd", 1, "p01", "test"),
        ("d.nrrd", 0, "p03", "val"),
    ])
    with pytest.raises(InputError, match=r"subject 'p01' appears in test \(line 4\) and train \(line 2\)"):
        read_manifest(manifest)
    rows = [ManifestRow("x", 1, "s1", "train"), ManifestRow("y", 1, "s1", "val")]
    with pytest.raises(InputError, match="subject 's1'"):
        check_subject_splits(rows)
    check_subject_splits([ManifestRow("x", 1, "s1", "train"), ManifestRow("y", 1, "s1", "train")])


def test_manifest_rows_resolve_paths_and_bad_labels_name_the_line(tmp_path):
    rows = read_manifest(_write_manifest(tmp_path / "m.csv", [("scans/a.nrrd", 1, "", "Validation")]))
    assert rows[0].path == str(tmp_path / "scans" / "a.nrrd") and rows[0].subject == "a" and rows[0].split == "val"
    with pytest.raises(InputError, match="line 3: label must be 0 or 1, got 'covid'"):
        read_manifest(_write_manifest(tmp_path / "m2.csv", [("a.nrrd", 1, "a", "train"), ("b.nrrd", "covid", "b", "train")]))


def test_lung_window_slice_selection_and_frames():
    assert lung_window(np.array([-1300, -1200, -600, 0, 400])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    lung = np.zeros((6, 10, 10), dtype=bool)
    lung[1, :2, :2] = True      # 4 px = 16 mm^2
    lung[2:5, :5, :5] = True    # 25 px = 100 mm^2
    lesion = np.zeros_like(lung)
    lesion[3, 1, 1] = True
    spacing = (5.0, 2.0, 2.0)
    assert select_slices(lung, spacing, min_lung_area_mm2=50).tolist() == [2, 3, 4]
    assert select_slices(lung, spacing, min_lung_area_mm2=10, step=2).tolist() == [1, 3]
    assert select_slices(lung, spacing, min_lung_area_mm2=50, lesion=lesion).tolist() == [3]
    image = np.zeros((30, 40), dtype=np.float32)
    image[5:20, 10:35] = np.linspace(0.1, 1, 25)[None]
    frame = SliceFrame.for_box(image.shape, bounding_box(image > 0, margin=(2, 2)), 54)
    assert frame.box == (3, 22, 8, 37) and frame.side == 29 and frame.pad == (5, 0)
    network = frame.apply(image)
    assert network.shape == (54, 54)
    back = frame.invert(network)
    assert back.shape == image.shape
    assert np.abs(back - image)[6:19, 11:34].max() < 0.05  # away from the edges, a round trip keeps values


def test_chest_crop_drops_text_outside_the_body():
    image = np.zeros((120, 100), dtype=np.float32)
    yy, xx = np.mgrid[:120, :100]
    body = ((yy - 65) / 40) ** 2 + ((xx - 50) / 35) ** 2 <= 1
    image[body] = 0.6
    image[55:75, 30:45] = 0.1   # a dark lung inside the body: filled, kept
    image[3:8, 80:97] = 1.0     # burnt-in text in a corner
    hull = chest_hull(image)
    assert hull[body].all()
    assert not hull[3:8, 80:97].any()
    assert bounding_box(hull) == (25, 106, 15, 86)


def test_volume_slices_have_network_shape_and_follow_the_lesions():
    phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.15, seed=2)
    lesion = phantom.truth["ggo"] | phantom.truth["consolidation"]
    images, masks, indices, frame, note = volume_to_slices(phantom.volume, phantom.geometry, image_size=32,
                                                           lesion=lesion, lesion_slices=True)
    assert images.shape == masks.shape == (len(indices), 32, 32) and note == ""
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(indices.tolist()) == set(np.flatnonzero(lesion.any(axis=(1, 2))).tolist())
    assert all(masks[k].max() > 0 for k in range(len(indices)))
    all_images, _, all_indices, _, _ = volume_to_slices(phantom.volume, phantom.geometry, image_size=32, step=3)
    area = phantom.truth["lung"].sum(axis=(1, 2)) * SPACING[1] * SPACING[2]
    assert all_indices.tolist() == np.flatnonzero(area >= 1000)[::3].tolist()
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[phantom.truth["lung"]] = 2
    labels[phantom.truth["ggo"]] = 3
    labels[phantom.truth["consolidation"]] = 4
    assert np.array_equal(lesion_from_labels(labels), lesion)
    assert np.array_equal(lesion_from_labels(lesion.astype(np.uint8)), lesion)


def test_png_slices_are_cropped_to_the_chest_and_bad_rows_do_not_stop_the_batch(tmp_path):
    from PIL import Image

    from radiolab.classify.data import prepare_scans

    phantom = chest_phantom((24, 96, 96), (12.0, 3.4, 3.4), lesion_fraction=0.1, seed=1)
    grey = (lung_window(phantom.volume[14]) * 255).astype(np.uint8)
    grey[2:6, 70:94] = 255  # burnt-in text
    Image.fromarray(grey).save(tmp_path / "slice.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "colour.jpg", quality=95)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [ManifestRow(str(tmp_path / name), 1, name, "test", line=k)
            for k, name in enumerate(["slice.png", "missing.nrrd", "broken.png", "colour.jpg"], start=2)]
    scans, failures = prepare_scans(rows, config_for(None, image_size=40), training=False, cache_dir=tmp_path / "cache")
    assert [s.row.subject for s in scans] == ["slice.png", "colour.jpg"]
    assert [f.subject for f in failures] == ["missing.nrrd", "broken.png"]
    assert "does not exist" in failures[0].message and "not a readable image" in failures[1].message
    for scan in scans:
        assert scan.images.shape == (1, 40, 40) and np.isnan(scan.positions_mm).all()
        y0, y1, x0, x1 = scan.frame.box
        assert y0 > 6 and (y1 - y0) < 96  # the text row and the air around the body are cropped away
    again, _ = prepare_scans(rows[:1], config_for(None, image_size=40), training=False, cache_dir=tmp_path / "cache")
    assert isinstance(again[0].images, np.memmap) and np.array_equal(again[0].images, scans[0].images)


# -- models and checkpoints ------------------------------------------------------------

def test_model_output_shapes(torch):
    from radiolab.classify.models import build_model, class_logits

    x = torch.rand(3, 1, 64, 64)
    model = build_model(config_for(None, model="densenet-tiny")).eval()
    assert model(x).shape == (3, 1)
    joint = build_model(config_for(None, model="jcs-tiny")).eval()
    logits, seg = joint(x)
    assert logits.shape == (3, 1) and seg.shape == (3, 1, 64, 64)
    wide = build_model(config_for(None, model="densenet-tiny", in_channels=3, growth_rate=4, block_config=(1, 1, 1, 1)))
    assert wide.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    two = torch.tensor([[0.5, 2.0], [1.0, -1.0]])
    assert torch.allclose(torch.sigmoid(class_logits(two)), torch.softmax(two, dim=1)[:, 1])


def test_user_models_by_callable_and_torchscript(tmp_path, monkeypatch, torch):
    from radiolab.classify.models import build_model

    (tmp_path / "my_models.py").write_text(
        "import torch\n"
        "def small():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),\n"
        "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))\n"
        "def not_a_model():\n"
        "    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(config_for(None, model="my_models:small"))
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 2)
    with pytest.raises(ValueError, match="returned int, not a torch.nn.Module"):
        build_model(config_for(None, model="my_models:not_a_model"))
    with pytest.raises(ValueError, match="valid: densenet121, densenet169"):
        build_model(config_for(None, model="resnet50"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(tmp_path / "scripted.pt"))
    scripted = build_model(config_for(None, model=str(tmp_path / "scripted.pt")))
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(scripted(x), model(x))


def test_checkpoint_round_trip_and_refusal_of_code(tmp_path, torch):
    from radiolab.classify.models import build_model, load_checkpoint, load_weights, save_checkpoint

    config = config_for(None, model="densenet-tiny", seed=3)
    torch.manual_seed(0)
    model = build_model(config).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, config=config.to_json(), model=model.state_dict(), epoch=np.int64(4),
                    history=[{"loss": np.float64(0.5)}])
    data = load_checkpoint(path)
    assert data["epoch"] == 4 and data["history"] == [{"loss": 0.5}]
    assert ClassifyConfig.from_json(data["config"]) == config
    torch.manual_seed(1)
    other = build_model(config).eval()
    x = torch.rand(2, 1, 32, 32)
    assert not torch.allclose(other(x), model(x))
    report = load_weights(other, path, strict=True)
    assert torch.allclose(other(x), model(x)) and not report["missing"]

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    evil = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "extra": Payload()}, evil)
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_joint_losses_decrease_on_a_toy_batch(torch):
    from radiolab.classify.models import build_model
    from radiolab.classify.train import joint_loss

    config = config_for(None, model="jcs-tiny", lr=3e-3)
    torch.manual_seed(0)
    model = build_model(config)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.3, (8, 1, 32, 32)).astype(np.float32)
    masks = np.zeros_like(images)
    for k in range(4):  # positives: a bright lesion somewhere
        y, x = rng.integers(6, 22, 2)
        masks[k, 0, y:y + 8, x:x + 8] = 1.0
    images = torch.from_numpy(images + 0.5 * masks)
    masks = torch.from_numpy(masks)
    labels = torch.tensor([1.0] * 4 + [0.0] * 4)
    has_mask = torch.ones(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = []
    for _ in range(25):
        optimizer.zero_grad()
        total, cls, seg = joint_loss(model(images), labels, masks, has_mask, config)
        total.backward()
        optimizer.step()
        history.append((total.item(), cls.item(), seg.item()))
    first, last = np.mean(history[:3], axis=0), np.mean(history[-3:], axis=0)
    assert last[0] < 0.8 * first[0]
    assert last[1] < 0.5 * first[1]  # classification
    assert last[2] < 0.95 * first[2]  # segmentation (BCE + Dice)
    assert history[0][0] == pytest.approx(history[0][1] + history[0][2], rel=1e-5)  # weights 1 and 1


def test_augmentation_moves_masks_with_images(torch):
    from radiolab.classify.train import augment

    image = torch.zeros(4, 1, 32, 32)
    image[:, :, 4:12, 6:20] = 1.0
    config = config_for(None, crop_scale=0.5, hflip=True, vflip=True)
    out, mask = augment(image.clone(), image.clone(), config, torch.Generator().manual_seed(0))
    assert torch.allclose(out, mask, atol=1e-6)
    assert not torch.allclose(out, image)
    again, _ = augment(image.clone(), image.clone(), config, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


# -- end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """12 small phantoms (6 with lesions), their label maps, a manifest and reads."""
    folder = tmp_path_factory.mktemp("classify")
    rows, reads = [], []
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    for index, split in enumerate(splits):
        label = index % 2
        phantom = chest_phantom(SHAPE, SPACING, lesion_fraction=0.2 if label else 0.0, seed=40 + index)
        name = f"case{index:02d}"
        write_volume(folder / f"{name}.nrrd", phantom.volume, phantom.geometry)
        labels = np.where(phantom.truth["ggo"], 3, 0) + np.where(phantom.truth["consolidation"], 4, 0)
        write_volume(folder / f"{name}_labels.nrrd", labels.astype(np.uint8), phantom.geometry)
        rows.append((f"{name}.nrrd", label, name, split))
        if split == "test":
            reads.append((name, label if index != 9 else 1 - label))
    manifest = _write_manifest(folder / "manifest.csv", rows)
    reader = _write_manifest(folder / "reads.csv", reads, columns=("subject", "read"))
    return folder, manifest, reader


TRAIN_ARGS = ["--model", "densenet-tiny", "--image-size", "32", "--batch-size", "8", "--lr", "3e-3",
              "--crop-scale", "0.7", "--hflip", "--brightness", "0.1", "--quiet"]


@pytest.mark.usefixtures("torch")
def test_train_resume_predict_and_evaluate_from_the_command_line(cohort, tmp_path):
    import nrrd

    from radiolab.cli import main

    folder, manifest, reader = cohort
    run, resumed = tmp_path / "run", tmp_path / "resumed"
    assert main(["classify", "train", "--data", str(manifest), "--out", str(run), "--epochs", "2"] + TRAIN_ARGS) == 0
    assert main(["classify", "train", "--data", str(manifest), "--out", str(resumed), "--epochs", "1"] + TRAIN_ARGS) == 0
    assert main(["classify", "train", "--data", str(manifest), "--out", str(resumed), "--resume", "--epochs", "2",
                 "--quiet"]) == 0
    straight = _read_csv(run / "history.csv")
    continued = _read_csv(resumed / "history.csv")
    assert [r["train_loss"] for r in continued] == [r["train_loss"] for r in straight]  # resume is exact
    assert {"best.pt", "last.pt", "config.json", "threshold.json"} <= set(os.listdir(run))
    assert main(["classify", "train", "--data", str(manifest), "--out", str(run), "--epochs", "2"] + TRAIN_ARGS) == 2

    out = tmp_path / "evaluation"
    assert main(["classify", "evaluate", "--checkpoint", str(run), "--data", str(manifest), "--out", str(out),
                 "--reader", str(reader), "--cam", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    table = _read_csv(out / "predictions.csv")
    subjects = [r for r in table if r["level"] == "subject" and r["split"] == "test"]
    assert len(subjects) == 4 and metrics["subjects"] == 4
    from sklearn.metrics import roc_auc_score

    assert metrics["auc"] == pytest.approx(roc_auc_score([int(r["label"]) for r in subjects],
                                                         [float(r["probability"]) for r in subjects]), abs=1e-5)
    for subject in subjects:  # the subject probability is the trimmed mean of its slice rows
        slices = [r for r in table if r["level"] == "slice" and r["subject"] == subject["subject"]]
        expected, _ = trimmed_subject_mean([float(r["probability"]) for r in slices],
                                           [float(r["position_mm"]) for r in slices], trim=0.1)
        assert float(subject["probability"]) == pytest.approx(expected, abs=1e-5)
        assert int(subject["prediction"]) == int(float(subject["probability"]) >= metrics["threshold"])
    comparison = json.loads((out / "reader.json").read_text())
    assert comparison["reader"]["confusion"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 2}  # case09 missed
    assert comparison["n"] == 4 and 0.0 <= comparison["mcnemar"]["all"]["p_value"] <= 1.0
    assert (out / "roc.png").stat().st_size > 1000
    heat, header = nrrd.read(str(out / "cam" / "case08_cam.nrrd"), index_order="C")
    _, source = nrrd.read(str(folder / "case08.nrrd"), index_order="C")
    assert heat.shape == SHAPE and 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0
    assert np.allclose(header["space directions"], source["space directions"])
    assert np.allclose(header["space origin"], source["space origin"])
    assert (out / "cam" / "case08_cam.png").exists()

    predicted = tmp_path / "predicted"
    assert main(["classify", "predict", "--checkpoint", str(run / "best.pt"), "--data",
                 str(folder / "case10.nrrd"), str(folder / "case11.nrrd"), "--out", str(predicted),
                 "--threshold", "0.5", "--quiet"]) == 0
    rows = [r for r in _read_csv(predicted / "predictions.csv") if r["level"] == "subject"]
    assert [r["subject"] for r in rows] == ["case10", "case11"]
    assert [r["probability"] for r in rows] == [r["probability"] for r in subjects if r["subject"] in ("case10", "case11")]


@pytest.mark.usefixtures("torch")
def test_joint_model_trains_with_segment_label_maps(cohort, tmp_path):
    from radiolab.classify.train import train

    folder, manifest, _ = cohort
    config = config_for(None, model="jcs-tiny", image_size=32, batch_size=8, epochs=1, lr=3e-3)
    with pytest.raises(InputError, match="needs lesion masks of positive training scans"):
        train(manifest, tmp_path / "no-masks", config, progress=False, log=None)
    result = train(manifest, tmp_path / "jcs", config, labels_dir=folder, progress=False, log=None)
    row = result.history[0]
    assert row["train_seg_loss"] > 0 and row["train_loss"] == pytest.approx(row["train_cls_loss"] + row["train_seg_loss"])
    assert result.failures == []


def test_classify_cli_raises_a_bug_instead_of_calling_it_a_usage_error(monkeypatch, tmp_path):
    """Exit 2 is for radiolab's own input and option errors; a ValueError from a bug propagates."""
    pytest.importorskip("torch", reason="classify needs the torch extra")
    pytest.importorskip("monai", reason="classify needs the torch extra (MONAI)")
    import radiolab.cli.classify as classify_cli
    from radiolab.cli import main

    def broken(args):
        raise ValueError("shapes (3,) and (4,) not aligned")

    monkeypatch.setattr(classify_cli, "_train", broken)
    with pytest.raises(ValueError, match="not aligned"):
        main(["classify", "train", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r")])
