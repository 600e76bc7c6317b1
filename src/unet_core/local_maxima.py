"""Watershed seeds: local maxima of an image restricted to each labelled object.

:func:`label_peaks` returns exactly what ``skimage.feature.peak_local_max(image, min_distance=...,
footprint=..., labels=labels, exclude_border=False)`` returns (the same peaks, in the same order),
but most of the work runs over the whole image at once instead of in skimage's Python loop over
the labels, which builds a k-d tree per label and dominated the block-wise post-processing
(0.38 s of ~1 s per 1152² block with many small objects; ``benchmarks/bench_peaks.py`` compares
the two).

How it stays exact. skimage looks for the maxima of each label on its own: pixels of other labels
inside the filter window are masked out. One maximum filter over the whole image (other labels
masked only by background) gives the same answer for every label whose pixels have no other label
within the window ("isolated" labels), and the Chebyshev spacing between the peaks of one label is
applied per label in the same greedy order. Labels with a neighbour inside the window, and the
labels that skimage treats specially (every pixel a maximum: plateaus, single pixels), go through
the per-label procedure, written lean.
"""

from __future__ import annotations

import numpy as np

#: below this many labels skimage's own loop is as fast as the whole-image pass (measured, see
#: benchmarks/bench_peaks.py), so it is used directly
MIN_LABELS_FOR_IMAGE_PASS = 100


def label_peaks(
    image: np.ndarray,
    labels: np.ndarray,
    min_distance: int,
    footprint_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Local maxima of ``image`` within each object of ``labels`` (skimage's ``peak_local_max``).

    Parameters
    ----------
    image : ndarray of float, shape (Y, X) or (Z, Y, X)
        The surface, e.g. a smoothed distance transform.
    labels : ndarray of int, same shape
        Objects 1..N (0 = background), e.g. from ``scipy.ndimage.label``.
    min_distance : int
        Peaks of one label closer than this (Chebyshev distance) are thinned, highest first; also
        the half-width of the filter window when ``footprint_shape`` is None.
    footprint_shape : tuple of int, optional
        Shape of the (all-ones) filter window; default ``(2 * min_distance + 1,) * ndim``.

    Returns
    -------
    ndarray of int, shape (n_peaks, ndim)
        Peak coordinates, label by label (ascending), highest first within a label.
    """
    from scipy import ndimage as ndi

    size = tuple(footprint_shape) if footprint_shape is not None else (2 * min_distance + 1,) * image.ndim
    n = int(labels.max()) if labels.size else 0
    if n < MIN_LABELS_FOR_IMAGE_PASS or int(np.prod(size)) == 1 or image.size == 1:
        from skimage.feature import peak_local_max

        return peak_local_max(
            image, min_distance=min_distance, footprint=np.ones(size, bool), labels=labels, exclude_border=False
        )
    threshold = image.min()
    lowest = _lowest(image.dtype)
    fg = labels > 0
    window_max = ndi.maximum_filter(np.where(fg, image, lowest), size=size, mode="nearest")
    is_max = fg & (image == window_max)
    special = _crowded_labels(labels, fg, size, n)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    special |= np.bincount(labels[is_max], minlength=n + 1) == sizes  # every pixel a maximum
    special[0] = False
    per_label = _isolated_peaks(image, labels, is_max & (image > threshold) & ~special[labels], min_distance)
    objects = ndi.find_objects(labels)
    for idx in np.flatnonzero(special):
        roi = objects[idx - 1]
        if roi is not None:
            offset = np.array([s.start for s in roi])
            per_label[int(idx)] = _roi_peaks(image[roi], labels[roi] == idx, size, threshold, min_distance) + offset
    if not per_label:
        return np.empty((0, image.ndim), np.intp)
    return np.vstack([per_label[k] for k in sorted(per_label)])


def _lowest(dtype: np.dtype):
    """The value skimage gives masked pixels (the dtype's minimum)."""
    return np.finfo(dtype).min if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def _crowded_labels(labels: np.ndarray, fg: np.ndarray, size: tuple[int, ...], n: int) -> np.ndarray:
    """bool (n + 1,): labels with a pixel of another label inside the window of one of their pixels."""
    from scipy import ndimage as ndi

    top = ndi.maximum_filter(labels, size=size, mode="nearest")
    bottom = ndi.minimum_filter(np.where(fg, labels, np.iinfo(labels.dtype).max), size=size, mode="nearest")
    crowded = np.zeros(n + 1, bool)
    crowded[labels[fg & ((top != labels) | (bottom != labels))]] = True
    return crowded


def _isolated_peaks(image: np.ndarray, labels: np.ndarray, peaks: np.ndarray, min_distance: int) -> dict:
    """{label: (k, ndim) coordinates} from a whole-image peak mask, ordered and thinned per label."""
    coords = np.argwhere(peaks)  # raster order, which skimage's stable sort keeps for ties
    owner = labels[peaks]
    order = np.lexsort((np.arange(len(coords)), -image[peaks], owner))
    coords, owner = coords[order], owner[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.empty(0, int)
    ends = np.r_[starts[1:], len(owner)]
    return {int(owner[a]): _spaced(coords[a:b], min_distance) for a, b in zip(starts, ends)}


def _roi_peaks(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, ...], threshold: float, min_distance: int
) -> np.ndarray:
    """One label's peaks inside its bounding box, as skimage computes them (ROI coordinates)."""
    from scipy import ndimage as ndi

    img = np.where(mask, image, _lowest(image.dtype))
    out = img == ndi.maximum_filter(img, size=size, mode="nearest")
    if np.all(out[mask]):  # a trivial object: skimage keeps its isolated pixels
        out[:] = False
        out[np.logical_xor(mask, ndi.binary_opening(mask))] = True
    out &= img > threshold
    coords = np.argwhere(out)
    return _spaced(coords[np.argsort(-img[out], kind="stable")], min_distance)


def _spaced(coords: np.ndarray, spacing: int) -> np.ndarray:
    """Greedy Chebyshev thinning in the given order (skimage's ``ensure_spacing``): a point is kept
    unless an earlier kept point is closer than ``spacing``."""
    n = len(coords)
    if n < 2 or spacing <= 1:
        return coords
    keep = np.ones(n, bool)
    if n <= 16:
        for i in range(n - 1):
            if keep[i]:
                keep[i + 1 :] &= np.abs(coords[i + 1 :] - coords[i]).max(axis=1) >= spacing
        return coords[keep]
    from scipy.spatial import cKDTree

    near = cKDTree(coords).query_ball_point(coords, r=spacing - 1, p=np.inf)  # integer coordinates
    for i, js in enumerate(near):
        if keep[i]:
            keep[js] = False
            keep[i] = True
    return coords[keep]
