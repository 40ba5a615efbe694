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
