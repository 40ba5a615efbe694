import numpy as np
import pytest
from scipy import ndimage

from radiolab.smoothing import median_labels


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 1), (4, 4, 4), (5, 7, 9), (3, 2, 17), (13, 11, 6), (9,), (6, 7)])
@pytest.mark.parametrize("density", [1.0, 0.3])
def test_median_equals_scipy_on_random_labels(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    labels = rng.integers(0, 6, size=shape).astype(np.uint8)
    labels[rng.random(shape) > density] = 0
    assert np.array_equal(median_labels(labels), ndimage.median_filter(labels, size=4))


@pytest.mark.parametrize("size", [2, 3, 4, 5, 7, 8])
def test_other_window_sizes_equal_scipy(size):
    labels = np.random.default_rng(size).integers(0, 6, size=(9, 10, 11)).astype(np.uint8)
    assert np.array_equal(median_labels(labels, size=size), ndimage.median_filter(labels, size=size))


def test_median_of_a_label_map_in_a_large_empty_volume():
    labels = np.zeros((40, 50, 60), np.uint8)
    rng = np.random.default_rng(7)
    labels[10:30, 5:45, 0:20] = rng.integers(1, 6, size=(20, 40, 20))  # touches the x edge
    result = median_labels(labels)
    assert result.dtype == np.uint8
    assert np.array_equal(result, ndimage.median_filter(labels, size=4))
    assert np.array_equal(median_labels(np.zeros((5, 5, 5), np.uint8)), np.zeros((5, 5, 5), np.uint8))


def test_reference_backend_is_scipy():
    labels = np.random.default_rng(0).integers(0, 6, size=(6, 6, 6)).astype(np.uint8)
    assert np.array_equal(median_labels(labels, backend="reference"), ndimage.median_filter(labels, size=4))


def test_median_in_threaded_slabs_equals_scipy(monkeypatch):
    monkeypatch.setenv("RADIOLAB_KERNEL_THREADS", "3")
    labels = np.random.default_rng(3).integers(0, 6, size=(50, 7, 9)).astype(np.uint8)
    assert np.array_equal(median_labels(labels), ndimage.median_filter(labels, size=4))
