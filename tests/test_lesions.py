"""Lesion insertion on real anatomy (CIP's TestInput.nrrd, whole chest, 5.3 x 5.3 x 7 mm).

The input lung mask is built here with scipy alone (threshold, largest islands inside
the body, holes filled), independent of radiolab's lung mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radiolab.io import Geometry, read_volume, write_volume
from radiolab.lesions import LESION_HU, costal_pleura, grow_blob, insert_lesions

FACES = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def chest(real_data):
    scan = read_volume(real_data("cip/TestInput.nrrd"))
    air = scan.array < -400
    labels, _ = ndimage.label(air)
    # Air islands reaching the in-plane image border lie outside the body.
    outside = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(),
                                        labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    sizes[outside] = 0
    lung = ndimage.binary_fill_holes(labels == np.argmax(sizes))
    assert 3000 < lung.sum() * scan.geometry.voxel_volume_ml < 9000  # mL: a plausible adult lung pair
    return scan, lung


def _pleura(lung):
    """Mask voxels with a face neighbour outside the mask; the image border is not pleura."""
    eroded = ndimage.binary_erosion(lung, FACES, border_value=1)
    return lung & ~eroded


@pytest.mark.parametrize("kind, fraction", [("ggo", 0.1), ("consolidation", 0.3), ("ggo", 0.4)])
def test_inserted_lesions_have_the_requested_extent(chest, kind, fraction):
    scan, lung = chest
    result = insert_lesions(scan.array, scan.geometry.spacing, lung, fraction=fraction, kind=kind,
                            direction=scan.geometry.direction, blob_ml=(60.0, 250.0), seed=4)
    lesion = result.lesions
    # Hand computation of the achieved fraction: lesion voxels / mask voxels.
    achieved = lesion.sum() / lung.sum()
    assert abs(achieved - fraction) <= 1.0 / lung.sum() + 1e-12
    assert result.fraction == pytest.approx(achieved)
    assert sum(result.blob_ml) == pytest.approx(lesion.sum() * scan.geometry.voxel_volume_ml)
    assert not (lesion & ~lung).any()  # inside the mask
    # Every blob is one 6-connected piece touching the pleura.
    pleura = _pleura(lung)
    for number in range(1, int(result.blobs.max()) + 1):
        blob = result.blobs == number
        assert ndimage.label(blob, FACES)[1] == 1, number
        assert (blob & pleura).any(), number
    # HU inside the published ranges, and nothing changed outside the lesions.
    lo, hi = LESION_HU[kind]
    values = result.volume[lesion]
    assert values.min() >= lo and values.max() <= hi
    assert np.array_equal(result.volume[~lesion], scan.array[~lesion])
    assert result.volume.dtype == scan.array.dtype


def test_ggo_keeps_denser_structures(chest):
    scan, lung = chest
    result = insert_lesions(scan.array, scan.geometry.spacing, lung, fraction=0.3, kind="ggo", seed=1)
    dense = lung & (scan.array >= LESION_HU["ggo"][1])
    assert dense.any()
    assert not (result.lesions & dense).any()
    assert np.array_equal(result.volume[dense], scan.array[dense])


def test_lesions_start_at_the_costal_pleura(chest):
    scan, lung = chest
    result = insert_lesions(scan.array, scan.geometry.spacing, lung, fraction=0.15, kind="consolidation",
                            blob_ml=(30.0, 60.0), seed=2)
    # Patient x (LPS) by hand: identity direction, so x grows with the last array index.
    x_mm = np.arange(lung.shape[2]) * scan.geometry.spacing[2]
    midline = 0.5 * (x_mm[lung.any(axis=(0, 1))].min() + x_mm[lung.any(axis=(0, 1))].max())
    for number in range(1, int(result.blobs.max()) + 1):
        blob = result.blobs == number
        blob_x = x_mm[np.nonzero(blob)[2]]
        side = np.sign(blob_x.mean() - midline)
        lung_side = lung & (np.sign(x_mm - midline)[None, None, :] == side)
        side_centre = x_mm[np.nonzero(lung_side)[2]].mean()
        # Each blob reaches lateral to the centroid of its lung: it grew from the chest wall.
        assert (np.abs(blob_x - midline) > abs(side_centre - midline)).any(), number


def test_costal_pleura_follows_the_direction_cosines(chest):
    scan, lung = chest
    spacing = scan.geometry.spacing
    plain = costal_pleura(lung, spacing)
    # The same patient stored right-left reversed: array x reversed, direction x column negated.
    flipped = costal_pleura(lung[:, :, ::-1], spacing, (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    assert np.array_equal(flipped[:, :, ::-1], plain)
    # Transposed in-plane axes: array y is now patient x.
    swapped = costal_pleura(np.swapaxes(lung, 1, 2), (spacing[0], spacing[2], spacing[1]),
                            (0, 1.0, 0, 1.0, 0, 0, 0, 0, 1.0))
    assert np.array_equal(np.swapaxes(swapped, 1, 2), plain)


def test_insertion_is_seeded(chest):
    scan, lung = chest
    kwargs = dict(fraction=0.1, kind="ggo", blob_ml=(60.0, 120.0))
    a = insert_lesions(scan.array, scan.geometry.spacing, lung, seed=3, **kwargs)
    b = insert_lesions(scan.array, scan.geometry.spacing, lung, seed=3, **kwargs)
    c = insert_lesions(scan.array, scan.geometry.spacing, lung, seed=4, **kwargs)
    assert np.array_equal(a.volume, b.volume) and np.array_equal(a.blobs, b.blobs)
    assert not np.array_equal(a.lesions, c.lesions)


def test_grow_blob_is_exact_and_connected():
    rng = np.random.default_rng(0)
    region = np.zeros((30, 40, 40), dtype=bool)
    region[5:25, 5:35, 5:35] = True
    region[:, 20, :] = False  # a wall: the blob cannot cross it
    blob = grow_blob(region, (15, 10, 20), 1500, (2.0, 1.0, 1.0), rng=rng)
    assert blob.sum() == 1500
    assert not (blob & ~region).any()
    assert ndimage.label(blob, FACES)[1] == 1
    # Asked for more than the seed's side holds: the whole side, no more.
    side = grow_blob(region, (15, 10, 20), 10**6, (2.0, 1.0, 1.0), rng=rng)
    assert side.sum() == region[:, :20].sum()


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=0.95), "fraction must lie in"),
    (dict(fraction=0.1, kind="fibrosis"), "unknown lesion kind 'fibrosis'"),
    (dict(fraction=0.1, blob_ml=(50.0, 10.0)), "blob_ml must be a range"),
])
def test_bad_arguments_are_refused(kwargs, message):
    volume = np.zeros((8, 8, 8), dtype=np.int16)
    with pytest.raises(ValueError, match=message):
        insert_lesions(volume, (1.0, 1.0, 1.0), volume > -1, **kwargs)
    with pytest.raises(ValueError, match="must be 3-D arrays of one shape"):
        insert_lesions(volume, (1.0, 1.0, 1.0), np.ones((8, 8, 7), bool), fraction=0.1)


def test_insert_lesions_command_writes_ct_and_truth_with_geometry(chest, tmp_path):
    from radiolab.cli import main
    from radiolab.io import read_header

    scan, lung = chest
    mask_path = tmp_path / "TestInput_lung.nrrd"
    write_volume(mask_path, lung.astype(np.uint8), scan.geometry)
    out = tmp_path / "out"
    assert main(["insert-lesions", "--in", scan.path, "--mask", str(mask_path), "--fraction", "0.2",
                 "--kind", "consolidation", "--out", str(out), "--seed", "5"]) == 0
    new = read_volume(out / "TestInput_consolidation.nrrd")
    truth = read_volume(out / "TestInput_consolidation_truth.nrrd")
    for volume in (new, truth):
        assert volume.geometry == scan.geometry
    lesion = truth.array == 1
    assert set(np.unique(truth.array)) == {0, 1}
    assert abs(lesion.sum() / lung.sum() - 0.2) <= 1.0 / lung.sum()
    assert np.array_equal(new.array[~lesion], scan.array[~lesion])
    assert new.array[lesion].min() >= -100 and new.array[lesion].max() <= 100
    assert read_header(out / "TestInput_consolidation_truth.nrrd")["Segment0_Name"] == "consolidation"
    import json

    record = json.loads((out / "TestInput_consolidation_truth.json").read_text())
    assert record["fraction"] == pytest.approx(lesion.sum() / lung.sum())


def test_insert_lesions_command_names_a_mask_on_another_grid(chest, tmp_path, capsys):
    from radiolab.cli import main

    scan, lung = chest
    shifted = Geometry(spacing=scan.geometry.spacing, origin=(0.0, 0.0, 5.0), direction=scan.geometry.direction)
    mask_path = tmp_path / "shifted_mask.nrrd"
    write_volume(mask_path, lung.astype(np.uint8), shifted)
    assert main(["insert-lesions", "--in", scan.path, "--mask", str(mask_path), "--fraction", "0.2",
                 "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "shifted_mask.nrrd" in error and "origin" in error
    assert not (tmp_path / "out").exists()
