"""label_peaks must equal skimage's peak_local_max(labels=...) exactly: same peaks, same order."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

from unet_core import local_maxima
from unet_core.local_maxima import MIN_LABELS_FOR_IMAGE_PASS, label_peaks


def _surface(fg: np.ndarray, plateaus: bool) -> np.ndarray:
    dist = ndi.distance_transform_edt(fg)
    # rounded distances have plateaus and ties, the cases where order and skimage's special rules matter
    return np.round(dist) if plateaus else ndi.gaussian_filter(dist, 1.0)


def _blobs(shape: tuple[int, ...], sigma: float, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.normal(size=shape), sigma) > level


def _reference(image, labels, min_distance, footprint_shape=None):
    footprint = None if footprint_shape is None else np.ones(footprint_shape, bool)
    return peak_local_max(image, min_distance=min_distance, footprint=footprint, labels=labels, exclude_border=False)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("min_distance", [1, 2, 4, 13])
@pytest.mark.parametrize("plateaus", [False, True])
@pytest.mark.parametrize("band_rows", [17, 512])
def test_many_small_objects_2d(seed, min_distance, plateaus, band_rows, monkeypatch):
    monkeypatch.setattr(local_maxima, "BAND_ROWS", band_rows)  # 17: many bands, halos crossing objects
    fg = _blobs((300, 280), sigma=2.0, level=0.1 + 0.05 * seed, seed=seed)
    fg[0, :7] = True  # objects touching the image edge
    fg[-1, -1] = True  # a single pixel in the corner
    labels, n = ndi.label(fg)
    assert n >= MIN_LABELS_FOR_IMAGE_PASS  # the whole-image pass runs
    image = _surface(fg, plateaus)
    got = label_peaks(image, labels, min_distance)
    ref = _reference(image, labels, min_distance)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("min_distance", [2, 4])
def test_large_objects_with_many_peaks(min_distance):
    """Few large objects with many maxima each (the k-d tree branch of the spacing)."""
    fg = _blobs((256, 256), sigma=1.5, level=-0.3, seed=5)
    labels, n = ndi.label(fg)
    extra = _blobs((256, 256), sigma=3.0, level=0.3, seed=6) & ~ndi.binary_dilation(fg, iterations=14)
    labels = np.where(extra, ndi.label(extra)[0] + n, labels).astype(np.int32)  # enough labels for the pass
    image = ndi.gaussian_filter(np.random.default_rng(7).random(fg.shape), 1.0) * (labels > 0)
    np.testing.assert_array_equal(label_peaks(image, labels, min_distance), _reference(image, labels, min_distance))


@pytest.mark.parametrize("footprint_shape", [None, (3, 9, 9)])
def test_volume(footprint_shape, monkeypatch):
    monkeypatch.setattr(local_maxima, "BAND_ROWS", 5)
    fg = _blobs((24, 64, 64), sigma=1.2, level=0.25, seed=2)
    labels, n = ndi.label(fg)
    assert n >= MIN_LABELS_FOR_IMAGE_PASS
    image = _surface(fg, plateaus=False)
    got = label_peaks(image, labels, 3 if footprint_shape is None else 1, footprint_shape)
    ref = _reference(image, labels, 3 if footprint_shape is None else 1, footprint_shape)
    np.testing.assert_array_equal(got, ref)


def test_few_labels_and_empty():
    fg = np.zeros((40, 40), bool)
    labels = ndi.label(fg)[0]
    assert label_peaks(fg.astype(float), labels, 4).shape == (0, 2)
    fg[5:15, 5:15] = True
    labels = ndi.label(fg)[0]
    image = _surface(fg, plateaus=False)
    np.testing.assert_array_equal(label_peaks(image, labels, 4), _reference(image, labels, 4))
