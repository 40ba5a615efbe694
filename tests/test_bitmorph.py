import numpy as np
import pytest
from scipy import ndimage

from radiolab import _bitmorph
from radiolab.lung import ball

SHAPES = [(5, 6, 7), (9, 8, 16), (4, 5, 3), (7, 9, 40), (3, 3, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_octahedron_equals_iterated_scipy_cross(shape, iterations):
    mask = np.random.default_rng(iterations).random(shape) < 0.75
    element = _bitmorph.octahedron(iterations)
    width = shape[-1]
    packed = _bitmorph.pack(mask)
    assert np.array_equal(_bitmorph.opening(mask, element), ndimage.binary_opening(mask, iterations=iterations))
    assert np.array_equal(_bitmorph.unpack(_bitmorph.erode(packed, element, width), width),
                          ndimage.binary_erosion(mask, iterations=iterations))
    assert np.array_equal(_bitmorph.unpack(_bitmorph.dilate(packed, element, width), width),
                          ndimage.binary_dilation(mask, iterations=iterations))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius, spacing", [(2.0, (1.0, 0.7, 0.7)), (3.0, (2.0, 1.0, 0.8)), (9.5, (1, 1, 1)),
                                             (2.1, (0.7, 0.7, 0.7))])
def test_physical_ball_equals_scipy_structure(shape, radius, spacing):
    mask = np.random.default_rng(len(shape)).random(shape) < 0.8
    element = _bitmorph.ball_element(radius, spacing)
    structure = ball(radius, spacing)
    assert sum(2 * w + 1 for w in element.values()) == structure.sum()
    assert np.array_equal(_bitmorph.opening(mask, element), ndimage.binary_opening(mask, structure=structure))
    packed = _bitmorph.pack(mask)
    assert np.array_equal(_bitmorph.unpack(_bitmorph.dilate(packed, element, shape[-1]), shape[-1]),
                          ndimage.binary_dilation(mask, structure=structure))


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_opening_in_threaded_slabs_equals_scipy(threads):
    mask = np.random.default_rng(threads).random((61, 9, 13)) < 0.8
    for element, kwargs in ((_bitmorph.octahedron(2), {"iterations": 2}),
                            (_bitmorph.ball_element(2.0, (1.0, 0.7, 0.7)), {"structure": ball(2.0, (1.0, 0.7, 0.7))})):
        assert np.array_equal(_bitmorph.opening(mask, element, threads=threads), ndimage.binary_opening(mask, **kwargs))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_opening_of_a_threshold_packed_in_slabs_equals_scipy(threads):
    volume = np.random.default_rng(threads).normal(0, 300, (61, 9, 13)).astype(np.int16)
    expected = ndimage.binary_opening(volume < 250, iterations=2)
    below = _bitmorph.BelowThreshold(volume, 250)
    packed = _bitmorph.opening(below, _bitmorph.octahedron(2), threads=threads, packed=True)
    assert packed.shape == (61, 9, 2)
    assert np.array_equal(_bitmorph.unpack(packed, 13), expected)
    assert np.array_equal(_bitmorph.opening(below, _bitmorph.octahedron(2), threads=threads), expected)


@pytest.mark.parametrize("shape", [(3, 4, 5), (9, 1, 16), (70, 600, 17)])
def test_below_threshold_packs_like_packbits(shape):
    volume = np.random.default_rng(0).normal(0, 300, shape)
    below = _bitmorph.BelowThreshold(volume, 10.0)
    for start, stop in ((0, shape[0]), (1, shape[0]), (shape[0] // 2, shape[0])):
        assert np.array_equal(below.pack(start, stop), np.packbits(volume[start:stop] < 10.0, axis=-1))


def test_below_threshold_with_a_floor_leaves_out_what_lies_below_it():
    volume = np.random.default_rng(1).normal(-900, 600, (70, 600, 17)).astype(np.int16)
    below = _bitmorph.BelowThreshold(volume, -155, floor=-1500)
    expected = (volume < -155) & (volume >= -1500)
    assert 0 < expected.sum() < (volume < -155).sum()
    assert np.array_equal(below.pack(0, 70), np.packbits(expected, axis=-1))
