import json

import numpy as np
import pytest
from scipy import stats

from helpers import PAPER_MEANS_HU, PAPER_STDS_HU, PAPER_WEIGHTS, paper_map_labels
from radiolab.errors import InputError
from radiolab.mixture import (
    Histogram,
    TissueMixture,
    fit_mixture,
    label_tissue,
    load_mixture,
    lung_histogram,
    sum_histograms,
)


def _sample(seed=0, n=60000):
    rng = np.random.default_rng(seed)
    means = [-930, -840, -650, -300, 30]
    sds = [30, 45, 80, 120, 150]
    sizes = rng.multinomial(n, [0.3, 0.35, 0.15, 0.08, 0.12])
    return np.rint(np.concatenate([rng.normal(m, s, k) for m, s, k in zip(means, sds, sizes)])).astype(np.int16)


def _hist(values):
    return lung_histogram(values.reshape(1, 1, -1), np.ones((1, 1, values.size), bool))


@pytest.fixture(scope="module")
def phantom_lung_voxels():
    from radiolab.synthetic import chest_phantom

    parts = []
    for seed, fraction in ((20, 0.15), (21, 0.25)):
        phantom = chest_phantom((64, 96, 96), (5.0, 3.5, 3.5), seed=seed, lesion_fraction=fraction)
        parts.append(np.maximum(phantom.volume[phantom.truth["lung"]], -1000))
    return np.concatenate(parts)


def test_histogram_em_follows_scikit_learn_from_the_same_start(phantom_lung_voxels):
    from sklearn.mixture import GaussianMixture

    values = phantom_lung_voxels
    floats = values.astype(np.float64)[:, None]
    start = TissueMixture([-950, -850, -650, -300, 0], [40.0**2, 50.0**2, 90.0**2, 150.0**2, 190.0**2],
                          [0.2, 0.4, 0.2, 0.1, 0.1])
    reference = GaussianMixture(5, tol=1e-3, weights_init=start.weights, means_init=start.means[:, None],
                                precisions_init=(1 / start.variances)[:, None, None]).fit(floats)
    ours = fit_mixture(_hist(values), tol=1e-3, init=start)
    assert ours.settings["n_iter"] == reference.n_iter_
    assert np.abs(ours.means - reference.means_.ravel()).max() < 0.01
    assert ours.log_likelihood == pytest.approx(reference.score(floats), abs=1e-9)


def test_histogram_fit_agrees_with_scikit_learn_on_the_same_voxels(phantom_lung_voxels):
    from sklearn.mixture import GaussianMixture

    values = phantom_lung_voxels
    floats = values.astype(np.float64)[:, None]
    ours = fit_mixture(_hist(values), seed=0, tol=1e-6, max_iter=1000)
    reference = GaussianMixture(5, n_init=6, tol=1e-6, max_iter=1000, random_state=0).fit(floats)
    assert np.abs(ours.means - np.sort(reference.means_.ravel())).max() < 2.0
    assert ours.log_likelihood >= reference.score(floats) - 1e-3
    # Our log-likelihood is the exact mean over all voxels.
    direct = np.log(sum(w * stats.norm.pdf(values, m, np.sqrt(v))
                        for w, m, v in zip(ours.weights, ours.means, ours.variances))).mean()
    assert ours.log_likelihood == pytest.approx(direct, abs=1e-9)
    # With the paper's settings (tol 1e-3) the fit is no worse than scikit-learn's.
    paper = fit_mixture(_hist(values), seed=0)
    paper_reference = GaussianMixture(5, n_init=6, tol=1e-3, random_state=0).fit(floats)
    assert paper.log_likelihood >= paper_reference.score(floats) - 1e-3


def test_fit_is_deterministic_for_a_seed_and_sorted():
    histogram = _hist(_sample(1))
    a, b = fit_mixture(histogram, seed=4), fit_mixture(histogram, seed=4)
    assert np.array_equal(a.means, b.means) and np.array_equal(a.variances, b.variances)
    assert np.all(np.diff(a.means) > 0)
    assert a.weights.sum() == pytest.approx(1.0)


def test_pooled_histogram_equals_concatenated_voxels():
    parts = [_sample(s, 5000) for s in range(3)]
    pooled = sum_histograms([_hist(p) for p in parts])
    direct = _hist(np.concatenate(parts))
    assert pooled.lo == direct.lo and np.array_equal(pooled.counts, direct.counts)
    assert Histogram.from_json(pooled.to_json()).n_voxels == pooled.n_voxels


def test_histogram_clips_below_minus_1000():
    values = np.array([-1200, -1000, -999, 5], dtype=np.int16).reshape(1, 1, 4)
    histogram = lung_histogram(values, np.ones_like(values, bool))
    assert histogram.lo == -1000 and histogram.counts[0] == 2 and histogram.n_voxels == 4


def test_zaffino_labels_equal_float64_map_on_every_voxel():
    mixture = load_mixture("zaffino2021")
    rng = np.random.default_rng(0)
    volume = rng.integers(-1200, 600, size=(12, 40, 40)).astype(np.int16)
    volume[0, 0, :16] = np.arange(-1010, -994)
    mask = rng.random(volume.shape) < 0.8
    labels = label_tissue(volume, mask, mixture)
    assert np.array_equal(labels[mask], paper_map_labels(np.maximum(volume[mask], -1000)))
    assert not labels[~mask].any()
    assert np.array_equal(labels, label_tissue(volume, mask, mixture, backend="reference"))


def test_class_boundaries_are_not_shifted():
    """scikit-learn's predict on integer HU shifts the class boundaries; radiolab's labels do not.

    ``GaussianMixture.predict`` (checked with scikit-learn 1.9) allocates its
    log-probabilities with the input's dtype, so integer input truncates them. The
    oracle is scipy's normal log-density plus the log weights, in float64.
    """
    from sklearn.mixture import GaussianMixture

    hu = np.arange(-1000, 400)
    expected = paper_map_labels(hu)
    true_boundaries = hu[np.flatnonzero(np.diff(expected)) + 1]
    # The first HU of each class 2..5 under the published mixture.
    assert true_boundaries.tolist() == [-893, -721, -472, -235]

    model = GaussianMixture(5)
    model.weights_ = np.array(PAPER_WEIGHTS)
    model.means_ = np.array(PAPER_MEANS_HU)[:, None]
    model.covariances_ = (np.array(PAPER_STDS_HU) ** 2)[:, None, None]
    model.precisions_cholesky_ = (1 / np.array(PAPER_STDS_HU))[:, None, None]
    on_floats = model.predict(hu.astype(np.float64)[:, None]) + 1
    on_ints = model.predict(hu.astype(np.int16)[:, None]) + 1
    assert np.array_equal(on_floats, expected)
    int_boundaries = hu[np.flatnonzero(np.diff(on_ints)) + 1]
    assert len(int_boundaries) == 4 and not np.array_equal(int_boundaries, true_boundaries), (
        "scikit-learn no longer truncates integer input; update label_tissue's docstring")

    volume = hu.astype(np.int16).reshape(1, 1, -1)
    mask = np.ones(volume.shape, bool)
    mixture = load_mixture("zaffino2021")
    for backend in ("fast", "reference"):
        assert np.array_equal(label_tissue(volume, mask, mixture, backend=backend).ravel(), expected), backend
    assert np.array_equal(mixture.label_table()[hu + 32768], expected)


def test_model_json_round_trip_and_validation(tmp_path):
    mixture = fit_mixture(_hist(_sample(2)), seed=0, n_init=2)
    path = tmp_path / "gmm.json"
    path.write_text(json.dumps(mixture.to_json()))
    loaded = load_mixture(path)
    assert np.allclose(loaded.means, mixture.means) and np.allclose(loaded.variances, mixture.variances)
    bad = mixture.to_json()
    bad["variances_hu2"][2] = -5.0
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"gmm.json.*variances.*positive"):
        load_mixture(path)
    bad = mixture.to_json()
    for key in ("means_hu", "variances_hu2", "weights", "stds_hu"):
        bad[key] = bad[key][:4]
    bad["weights"] = [0.25] * 4
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="needs 5 components, found 4"):
        load_mixture(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_mixture(path)


def test_pickle_models_need_trust(tmp_path):
    import joblib
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(5, random_state=0).fit(_sample(3).astype(float)[:, None])
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_mixture(path)
    loaded = load_mixture(path, trust_pickle=True)
    assert np.allclose(loaded.means, np.sort(model.means_.ravel()))


def test_shipped_zaffino_model_has_published_parameters():
    mixture = load_mixture("zaffino2021")
    assert isinstance(mixture, TissueMixture)
    assert mixture.means == pytest.approx(PAPER_MEANS_HU, rel=1e-12)
    assert mixture.stds == pytest.approx(PAPER_STDS_HU, rel=1e-12)
    assert mixture.variances == pytest.approx(np.square(PAPER_STDS_HU), rel=1e-12)
    assert mixture.weights == pytest.approx(PAPER_WEIGHTS, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_kmeans_matches_scikit_learn_inertia(seed):
    from sklearn.cluster import KMeans

    from radiolab.mixture import weighted_kmeans_1d

    histogram = _hist(_sample(seed))
    x, w = histogram.values, histogram.counts.astype(float)
    keep = w > 0
    x, w = x[keep], w[keep]
    assignment = weighted_kmeans_1d(x, w, 5, np.random.default_rng(seed))
    assert sorted(set(assignment.tolist())) == [0, 1, 2, 3, 4]
    centres = np.array([np.average(x[assignment == j], weights=w[assignment == j]) for j in range(5)])
    assert np.all(np.diff(centres) > 0)
    inertia = float(np.sum(w * (x - centres[assignment]) ** 2))
    reference = KMeans(5, n_init=10, random_state=seed).fit(x[:, None], sample_weight=w).inertia_
    assert inertia <= reference * 1.01


# -- the variance floor ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def clipped_cohort_histogram():
    """Three scans whose lungs hold 28% voxels clipped to -1000 HU (dark lungs, clipped)."""
    rng = np.random.default_rng(5)
    histograms = []
    for _ in range(3):
        parts = [rng.normal(mean, sd, size) for mean, sd, size in
                 ((-990, 40, 28000), (-850, 60, 6000), (-600, 110, 3200), (-200, 160, 1600), (20, 150, 1200))]
        histograms.append(_hist(np.rint(np.concatenate(parts)).astype(np.int16)))
    return sum_histograms(histograms)


def test_variance_floor_keeps_the_clip_spike_from_collapsing_a_component(clipped_cohort_histogram):
    from scipy.special import logsumexp

    histogram = clipped_cohort_histogram
    x, w = histogram.values[histogram.counts > 0], histogram.counts[histogram.counts > 0].astype(np.float64)
    assert w[x == -1000].sum() / w.sum() > 0.25
    mixture = fit_mixture(histogram, seed=0, tol=1e-10, max_iter=2000)
    # Unfloored, one component sits on the -1000 bin with variance reg_covar = 1e-6 HU².
    assert mixture.variances.min() >= 1 / 12
    spike = int(np.argmin(mixture.variances))
    assert mixture.means[spike] == pytest.approx(-1000, abs=0.01)

    # Independent check: the fit is a fixed point of EM with the floor, written here with
    # scipy's normal density, and its log-likelihood is scipy's.
    log_prob = np.log(mixture.weights) + stats.norm.logpdf(x[:, None], mixture.means, np.sqrt(mixture.variances))
    norm = logsumexp(log_prob, axis=1)
    assert mixture.log_likelihood == pytest.approx(np.dot(w, norm) / w.sum(), rel=1e-12)
    resp = np.exp(log_prob - norm[:, None]) * w[:, None]
    nk = resp.sum(axis=0)
    means = (resp * x[:, None]).sum(axis=0) / nk
    raw_variances = (resp * (x[:, None] - means) ** 2).sum(axis=0) / nk
    assert raw_variances[spike] < 0.1 / 12  # the floor holds this component up
    # EM creeps: at tol 1e-10 one more step still moves the parameters by about 1e-5.
    assert mixture.settings["converged"]
    np.testing.assert_allclose(mixture.weights, nk / w.sum(), rtol=1e-4)
    np.testing.assert_allclose(mixture.means, means, rtol=0, atol=0.01)
    np.testing.assert_allclose(mixture.variances, np.maximum(raw_variances + 1e-6, 1 / 12), rtol=1e-3)
    # The density of each component stays bounded: at most 1/sqrt(2 pi / 12) = 1.38 per HU.
    assert np.max(stats.norm.pdf(0, 0, np.sqrt(mixture.variances))) <= 1.382
    from radiolab.mixture import ROUNDING_VARIANCE_HU2

    assert ROUNDING_VARIANCE_HU2 == 1 / 12 == mixture.settings["min_variance_hu2"]


def test_variance_floor_leaves_fits_of_spread_data_unchanged():
    histogram = _hist(_sample(3))
    floored = fit_mixture(histogram, seed=3)
    unfloored = fit_mixture(histogram, seed=3, min_variance=0.0)
    np.testing.assert_array_equal(floored.variances, unfloored.variances)
    np.testing.assert_array_equal(floored.means, unfloored.means)
