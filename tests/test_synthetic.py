import numpy as np

from radiolab.synthetic import chest_phantom


def test_phantom_is_seeded_and_scales_with_spacing():
    a = chest_phantom((40, 64, 64), (7.0, 5.0, 5.0), lesion_fraction=0.1, seed=5)
    b = chest_phantom((40, 64, 64), (7.0, 5.0, 5.0), lesion_fraction=0.1, seed=5)
    c = chest_phantom((40, 64, 64), (7.0, 5.0, 5.0), lesion_fraction=0.1, seed=6)
    assert np.array_equal(a.volume, b.volume)
    assert not np.array_equal(a.volume, c.volume)
    fine = chest_phantom((56, 90, 90), (5.0, 3.5555, 3.5555), lesion_fraction=0.1, seed=5)
    # Same field of view, other voxels: lung volume in mL agrees within 5%.
    vol_a = a.truth["lung"].sum() * a.geometry.voxel_volume_ml
    vol_f = fine.truth["lung"].sum() * fine.geometry.voxel_volume_ml
    assert abs(vol_a - vol_f) / vol_f < 0.05


def test_phantom_ground_truth_is_consistent(phantom):
    truth = phantom.truth
    assert phantom.volume.dtype == np.int16
    for name in ("ggo", "consolidation", "vessels"):
        assert not (truth[name] & ~truth["lung"]).any(), name
    assert not (truth["ggo"] & truth["consolidation"]).any()
    lesion = (truth["ggo"] | truth["consolidation"]).sum() / truth["lung"].sum()
    assert abs(lesion - phantom.lesion_fraction) < 1e-12
    assert 0.15 < phantom.lesion_fraction < 0.3
    # Tissue densities: lesions are denser than healthy lung.
    healthy = truth["lung"] & ~truth["ggo"] & ~truth["consolidation"] & ~truth["vessels"]
    assert np.median(phantom.volume[healthy]) < np.median(phantom.volume[truth["ggo"]]) < np.median(
        phantom.volume[truth["consolidation"]])


# -- anatomical phantom: each ground truth checked on its own, at 0.7, 1.5 and 3 mm ------

import math  # noqa: E402

import pytest  # noqa: E402
from scipy import ndimage  # noqa: E402

from radiolab.synthetic import anatomical_phantom, crop_phantom, reorient_phantom  # noqa: E402

FACES = ndimage.generate_binary_structure(3, 1)
CUBE = np.ones((3, 3, 3), dtype=bool)
# Small fields of view (patient z, y, x ranges in mm) around each structure.
JUNCTION_REGION = ((95.0, 145.0), (-85.0, -30.0), (-40.0, 40.0))
AIRWAY_REGION = ((100.0, 250.0), (-60.0, 60.0), (-90.0, 90.0))
ABDOMEN_REGION = ((-110.0, 40.0), (-110.0, 60.0), (-130.0, 150.0))


def _axes_mm(phantom):
    """Patient (x, y, z) mm of the voxel centres along each array axis (identity direction)."""
    origin, spacing, shape = phantom.geometry.origin, phantom.geometry.spacing, phantom.volume.shape
    return tuple(origin[k] + np.arange(shape[2 - k]) * spacing[2 - k] for k in range(3))


def _iso(spacing):
    return (spacing, spacing, spacing)


@pytest.mark.parametrize("spacing, width", [(0.7, 2.0), (0.7, 4.0), (1.5, 2.0), (1.5, 4.0), (3.0, 3.0), (3.0, 6.0)])
def test_junction_line_separates_the_lungs_on_every_grid(spacing, width):
    phantom = anatomical_phantom(_iso(spacing), junction_mm=width, region_mm=JUNCTION_REGION, seed=0)
    right, left = phantom.truth["right_lung"], phantom.truth["left_lung"]
    junction = phantom.truth["junction"]
    assert right.any() and left.any() and junction.any()
    # The lungs never touch, not even at a corner.
    assert not (ndimage.binary_dilation(right, CUBE) & left).any()
    # Width on the grid: centre distance between the lungs minus one voxel, from an EDT in mm.
    nearest = ndimage.distance_transform_edt(~right, sampling=_iso(spacing))[left].min()
    gap_mm = nearest - spacing
    assert width - spacing - 1e-6 < gap_mm <= width + spacing + 1e-6
    assert gap_mm >= spacing - 1e-6  # at least one voxel of mediastinum on every grid
    # The truth marks the voxels of the line: within one voxel of |x| <= width / 2, and on the
    # rows where the lungs come closest, exactly the voxel centres inside the line.
    x_mm = _axes_mm(phantom)[0]
    in_line = np.abs(x_mm) <= width / 2.0
    assert (np.abs(x_mm[np.nonzero(junction)[2]]) <= width / 2.0 + spacing).all()
    per_row = junction.sum(axis=2)
    closest = per_row == per_row[per_row > 0].min()
    assert per_row[closest].min() == in_line.sum()
    assert (junction[closest] <= in_line).all()
    assert not (junction & (right | left)).any() and not (junction & ~phantom.truth["mediastinum"]).any()
    # Partial volume makes the line fainter than tissue, but it stays denser than lung.
    lung_median = np.median(phantom.volume[right | left])
    assert np.median(phantom.volume[junction]) > lung_median + 500


@pytest.mark.parametrize("spacing", [1.5, 3.0])
def test_trachea_and_bronchi_are_walled_air_joined_to_the_lungs(spacing):
    phantom = anatomical_phantom(_iso(spacing), region_mm=AIRWAY_REGION, seed=0)
    truth, volume = phantom.truth, phantom.volume
    trachea, airways = truth["trachea"], truth["airways"]
    assert not (airways & truth["lung"]).any() and not (trachea & ~airways).any()
    assert trachea[-1].any()  # reaches the top slice
    # Volume by hand: a 9 mm lumen from the carina (z = 150 mm) to the top (250 mm), round end.
    expected_ml = (math.pi * 9.0**2 * 100.0 + 2.0 / 3.0 * math.pi * 9.0**3) / 1000.0
    assert trachea.sum() * spacing**3 / 1000.0 == pytest.approx(expected_ml, rel=0.04)
    assert np.median(volume[airways]) < -950
    # A wall: at z = 200 mm the ring 0.5-2.5 mm outside the lumen is soft tissue.
    x_mm, y_mm, z_mm = _axes_mm(phantom)
    radius = np.hypot(x_mm[None, :], (y_mm - 5.0)[:, None])
    ring = (radius > 9.5) & (radius <= 11.5)
    assert np.median(volume[int(np.argmin(np.abs(z_mm - 200.0)))][ring]) > -100
    # Joined: the air connected to the trachea reaches both lungs.
    labels, _ = ndimage.label(volume < -500, FACES)
    tracheal_air = labels == np.bincount(labels[trachea]).argmax()
    assert (tracheal_air & truth["right_lung"]).sum() > 1000
    assert (tracheal_air & truth["left_lung"]).sum() > 1000


@pytest.mark.parametrize("spacing", [1.5, 3.0])
def test_gut_gas_is_walled_air_below_the_diaphragm(spacing):
    phantom = anatomical_phantom(_iso(spacing), region_mm=ABDOMEN_REGION, stomach_gas_ml=90.0,
                                 colon_gas_ml=(60.0, 30.0), seed=0)
    truth, volume = phantom.truth, phantom.volume
    voxel_ml = spacing**3 / 1000.0
    stomach, colon, gas = truth["stomach_gas"], truth["colon_gas"], truth["gut_gas"]
    assert np.array_equal(gas, stomach | colon) and not (stomach & colon).any()
    assert stomach.sum() * voxel_ml == pytest.approx(90.0, rel=0.03)
    assert colon.sum() * voxel_ml == pytest.approx(90.0, rel=0.04)
    assert ndimage.label(colon, FACES)[1] == 2
    # Pure air with a thin soft-tissue wall.
    assert np.median(volume[gas]) < -980 and (volume[gas] < -950).mean() > 0.9
    outside = ndimage.distance_transform_edt(~gas, sampling=_iso(spacing))
    assert np.median(volume[(outside > 0) & (outside <= 3.0)]) > -150
    # Below the lungs, at least 10 mm from them, never in the mediastinum.
    lung = truth["lung"]
    assert lung.any()
    assert ndimage.distance_transform_edt(~lung, sampling=_iso(spacing))[gas].min() >= 10.0
    columns = gas.any(axis=0) & lung.any(axis=0)
    lowest_lung = np.argmax(lung, axis=0)
    highest_gas = gas.shape[0] - 1 - np.argmax(gas[::-1], axis=0)
    assert (highest_gas[columns] < lowest_lung[columns]).all()
    assert not (gas & truth["mediastinum"]).any()


@pytest.mark.parametrize("spacing, region", [
    (3.0, None),
    (1.5, ((60.0, 160.0), (-95.0, 100.0), (-150.0, 0.0))),
    (0.7, ((120.0, 150.0), (-20.0, 40.0), (-120.0, -60.0))),
])
def test_emphysema_reaches_the_requested_laa950(spacing, region):
    phantom = anatomical_phantom(_iso(spacing), region_mm=region, emphysema_laa=0.3, seed=0)
    lung, emphysema, volume = phantom.truth["lung"], phantom.truth["emphysema"], phantom.volume
    laa = (volume[lung] < -950).mean()  # by hand on the stored int16 HU
    assert laa == pytest.approx(0.30, abs=0.002)
    assert laa == pytest.approx(phantom.info["laa950"])
    assert not (emphysema & ~lung).any()
    assert (volume[emphysema] < -950).mean() > 0.9
    if region is None:  # centrilobular pattern: upper zones more destroyed than lower ones
        z_index = np.nonzero(lung.any(axis=(1, 2)))[0]
        middle = (z_index[0] + z_index[-1]) // 2
        assert emphysema[middle:].sum() / lung[middle:].sum() > emphysema[:middle].sum() / lung[:middle].sum()


@pytest.mark.parametrize("spacing, region, volume_ml", [
    (3.0, None, 150.0),
    (1.5, ((-50.0, 110.0), (-100.0, 100.0), (-150.0, -10.0)), 150.0),
    (0.7, ((0.0, 60.0), (0.0, 100.0), (-150.0, -90.0)), 20.0),
])
def test_consolidation_grows_from_the_pleura(spacing, region, volume_ml):
    phantom = anatomical_phantom(_iso(spacing), region_mm=region, consolidation_ml=(volume_ml,), seed=0)
    truth, volume = phantom.truth, phantom.volume
    consolidation, lung = truth["consolidation"], truth["lung"]
    assert abs(consolidation.sum() * spacing**3 / 1000.0 - volume_ml) <= spacing**3 / 1000.0
    assert not (consolidation & ~lung).any()
    assert ndimage.label(consolidation, FACES)[1] == 1
    # It touches the chest wall: body tissue that is neither lung nor mediastinum.
    chest_wall = truth["body"] & ~lung & ~truth["mediastinum"]
    assert (ndimage.binary_dilation(consolidation, FACES) & chest_wall).any()
    # Dense, up to about +100 HU.
    values = volume[consolidation]
    assert 0 < np.median(values) < 100 and np.percentile(values, 99) <= 110
    if region is None:  # in the lower half of its lung
        z_index = np.nonzero(lung.any(axis=(1, 2)))[0]
        assert np.nonzero(consolidation)[0].mean() < (z_index[0] + z_index[-1]) / 2


@pytest.mark.parametrize("padding_hu", [-2048.0, -3024.0])
def test_outside_air_and_scanner_padding(padding_hu):
    phantom = anatomical_phantom((6.0, 3.0, 3.0), region_mm=((60.0, 120.0), (-180.0, 180.0), (-180.0, 180.0)),
                                 padding_hu=padding_hu, scan_circle_mm=175.0, seed=0)
    truth, volume = phantom.truth, phantom.volume
    x_mm, y_mm, _ = _axes_mm(phantom)
    beyond = np.hypot(x_mm[None, :], y_mm[:, None]) > 175.0
    assert np.array_equal(truth["padding"], np.broadcast_to(beyond, volume.shape))
    assert (volume[truth["padding"]] == padding_hu).all()
    assert (volume[~truth["padding"]] >= -1024).all()
    outside = truth["outside_air"]
    assert outside.sum() > 0.1 * volume.size and not (outside & truth["body"]).any()
    assert -1024 <= np.median(volume[outside]) < -980


def test_parenchyma_is_minus_850_with_denser_vessels():
    phantom = anatomical_phantom(_iso(1.5), region_mm=((60.0, 160.0), (-95.0, 100.0), (-150.0, 0.0)), seed=0)
    truth, volume = phantom.truth, phantom.volume
    near_vessels = ndimage.binary_dilation(truth["vessels"], FACES, iterations=2)
    healthy = ndimage.binary_erosion(truth["lung"] & ~near_vessels, FACES, iterations=2)
    assert volume[healthy].mean() == pytest.approx(-850, abs=15)
    assert 10 < volume[healthy].std() < 80
    y_mm = _axes_mm(phantom)[1][None, :, None]
    assert volume[healthy & (y_mm > 40)].mean() > volume[healthy & (y_mm < -40)].mean() + 20  # gravity
    assert np.median(volume[truth["vessels"]]) > volume[healthy].mean() + 500


def test_whole_anatomical_phantom_truths_are_consistent():
    phantom = anatomical_phantom(_iso(4.0), seed=3)
    truth = phantom.truth
    right, left = truth["right_lung"], truth["left_lung"]
    assert np.array_equal(truth["lung"], right | left)
    assert not (ndimage.binary_dilation(right, CUBE) & left).any()
    x_mm = _axes_mm(phantom)[0]
    # LPS: the patient's right lung lies at negative x.
    assert x_mm[np.nonzero(right)[2]].mean() < 0 < x_mm[np.nonzero(left)[2]].mean()
    for lung in (right, left):
        assert 1500 < lung.sum() * phantom.geometry.voxel_volume_ml < 3000  # mL, adult lungs
        assert ndimage.label(lung, FACES)[1] == 1  # one piece each
    for name in ("mediastinum", "airways", "gut_gas", "padding", "outside_air"):
        assert not (truth[name] & truth["lung"]).any(), name
    for name in ("vessels", "emphysema", "consolidation", "ggo"):
        assert not (truth[name] & ~truth["lung"]).any(), name
    assert not (truth["mediastinum"] & truth["airways"]).any()
    core = truth["mediastinum_core"]
    assert core.any() and not (core & ~truth["mediastinum"]).any()
    assert not (ndimage.binary_dilation(truth["lung"], CUBE) & core).any()
    assert phantom.volume.dtype == np.int16


def test_anatomical_phantom_is_seeded():
    kwargs = dict(region_mm=((40.0, 120.0), (-100.0, 100.0), (-150.0, 150.0)), consolidation_ml=(40.0,))
    a = anatomical_phantom(_iso(5.0), seed=1, **kwargs)
    b = anatomical_phantom(_iso(5.0), seed=1, **kwargs)
    c = anatomical_phantom(_iso(5.0), seed=2, **kwargs)
    assert np.array_equal(a.volume, b.volume)
    assert np.array_equal(a.truth["consolidation"], b.truth["consolidation"])
    assert not np.array_equal(a.volume, c.volume)


def test_crop_cuts_the_lungs_and_keeps_patient_positions():
    phantom = anatomical_phantom(_iso(4.0), seed=0)
    x_mm = _axes_mm(phantom)[0]
    inner = np.nonzero(np.abs(x_mm) < 120.0)[0]  # narrower than the lungs (about 280 mm)
    box = (slice(5, 70), slice(10, 80), slice(int(inner[0]), int(inner[-1]) + 1))
    cropped = crop_phantom(phantom, box)
    lung = cropped.truth["lung"]
    assert lung[:, :, 0].any() and lung[:, :, -1].any()  # the field of view cuts both lungs
    for name, mask in phantom.truth.items():
        assert np.array_equal(cropped.truth[name], mask[box]), name
    assert np.array_equal(cropped.volume, phantom.volume[box])
    # Voxel [0, 0, 0] of the crop sits where voxel [5, 10, start] of the phantom does (by hand).
    spacing = phantom.geometry.spacing
    expected = (phantom.geometry.origin[0] + box[2].start * spacing[2],
                phantom.geometry.origin[1] + 10 * spacing[1], phantom.geometry.origin[2] + 5 * spacing[0])
    assert cropped.geometry.origin == pytest.approx(expected)


@pytest.mark.parametrize("order, flip", [((0, 1, 2), (True, False, False)), ((2, 0, 1), (False, True, True))])
def test_reoriented_phantom_keeps_every_voxel_in_place(order, flip):
    phantom = anatomical_phantom(_iso(6.0), region_mm=AIRWAY_REGION, seed=0)
    turned = reorient_phantom(phantom, order=order, flip=flip)

    def patient_points(p, mask):
        index_zyx = np.argwhere(mask)
        geometry = p.geometry
        matrix = np.asarray(geometry.direction).reshape(3, 3)
        offsets = index_zyx[:, ::-1] * np.asarray(geometry.spacing)[::-1]
        return {tuple(v) for v in np.round(offsets @ matrix.T + np.asarray(geometry.origin), 3)}

    for name in ("trachea", "right_lung"):
        assert patient_points(turned, turned.truth[name]) == patient_points(phantom, phantom.truth[name])
    if flip[0] and order == (0, 1, 2):
        assert turned.geometry.direction[8] == -1.0  # feet first
        assert np.array_equal(turned.volume, phantom.volume[::-1])


def test_mediastinum_truth_is_what_lies_between_the_lungs():
    phantom = anatomical_phantom(_iso(6.0), seed=0)
    truth = phantom.truth
    right, left = truth["right_lung"], truth["left_lung"]
    between = np.zeros(right.shape, dtype=bool)
    for z, y in zip(*np.nonzero(right.any(axis=2) & left.any(axis=2))):  # row by row, by hand
        most_medial_right = np.nonzero(right[z, y])[0].max()
        most_medial_left = np.nonzero(left[z, y])[0].min()
        between[z, y, most_medial_right + 1:most_medial_left] = True
    mediastinum = truth["mediastinum"]
    assert mediastinum.sum() > 0.5 * between.sum()
    assert not (mediastinum & ~between).any()
    # What lies between the lungs but is not mediastinum: airway lumen, or below the diaphragm.
    rest = between & ~mediastinum & ~truth["airways"]
    z_mm = _axes_mm(phantom)[2]
    assert (z_mm[np.nonzero(rest)[0]] < 40.0).all()


def test_ground_glass_lesion_has_its_volume_and_hu():
    phantom = anatomical_phantom(_iso(3.0), region_mm=((-50.0, 110.0), (-100.0, 100.0), (-150.0, 150.0)),
                                 ggo_ml=(80.0,), seed=0)
    ggo, lung = phantom.truth["ggo"], phantom.truth["lung"]
    assert abs(ggo.sum() * 0.027 - 80.0) <= 0.027
    assert not (ggo & ~lung).any() and not phantom.truth["consolidation"].any()
    values = phantom.volume[ggo]
    assert -700 < np.median(values) < -500
    assert phantom.lesion_fraction == pytest.approx(ggo.sum() / lung.sum())


@pytest.mark.parametrize("z_range", [(160.0, 161.5), (160.0, 170.5)])
def test_thin_slabs_keep_every_truth(z_range):
    phantom = anatomical_phantom((1.5, 0.7, 0.7), region_mm=(z_range, (-120.0, 120.0), (-160.0, 160.0)), seed=0)
    assert phantom.volume.shape[0] == round((z_range[1] - z_range[0]) / 1.5)
    lung = phantom.truth["lung"]
    # Both lungs present in every slice, apart, and lung voxels at -850 HU or so.
    assert phantom.truth["right_lung"].any(axis=(1, 2)).all() and phantom.truth["left_lung"].any(axis=(1, 2)).all()
    assert not (ndimage.binary_dilation(phantom.truth["right_lung"], CUBE) & phantom.truth["left_lung"]).any()
    assert -900 < np.median(phantom.volume[lung]) < -780
    assert phantom.truth["trachea"].any(axis=(1, 2)).all()  # above the carina (z = 150 mm)


def test_lesions_of_a_lung_outside_the_field_of_view_go_to_the_other():
    # Only the patient's right side (x < -30 mm) is in the field of view.
    phantom = anatomical_phantom(_iso(3.0), region_mm=((0.0, 200.0), (-180.0, 180.0), (-180.0, -30.0)),
                                 consolidation_ml=(50.0, 50.0), seed=0)
    assert not phantom.truth["left_lung"].any()
    consolidation = phantom.truth["consolidation"]
    assert abs(consolidation.sum() * 0.027 - 100.0) <= 2 * 0.027
    assert not (consolidation & ~phantom.truth["right_lung"]).any()
    assert phantom.truth["lung"][:, :, -1].any()  # the field of view cuts the lung


@pytest.mark.parametrize("spacing, width", [(0.7, 2.0), (1.5, 3.0), (3.0, 3.0), (3.0, 6.0)])
def test_posterior_junction_line_on_request(spacing, width):
    region = ((150.0, 215.0), (15.0, 50.0), (-40.0, 40.0))
    plain = anatomical_phantom(_iso(spacing), region_mm=region, seed=0)
    assert not plain.truth["posterior_junction"].any()
    phantom = anatomical_phantom(_iso(spacing), posterior_junction_mm=width, region_mm=region, seed=0)
    right, left, line = phantom.truth["right_lung"], phantom.truth["left_lung"], phantom.truth["posterior_junction"]
    assert line.any() and not (line & ~phantom.truth["mediastinum"]).any()
    assert not (ndimage.binary_dilation(right, CUBE) & left).any()
    nearest = ndimage.distance_transform_edt(~right, sampling=_iso(spacing))[left].min()
    assert width - spacing - 1e-6 < nearest - spacing <= width + spacing + 1e-6
    # Behind the oesophagus (centre y = 28 mm) and in front of the vertebral bodies (y >= 38 mm).
    y_mm = _axes_mm(phantom)[1]
    assert (y_mm[np.nonzero(line)[1]] > 20.0).all() and (y_mm[np.nonzero(line)[1]] < 45.0).all()
