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

#: below this many labels skimage's own loop is used directly: it was as fast or faster with 52
#: labels (512², min_distance 4 and 13: 0.015-0.018 s vs 0.021-0.028 s) and mixed with 17 large
#: ones (1152²), while the whole-image pass was 2-5x faster with 2824 labels (1152²); measured in
#: a one-off comparison while writing this module (not in benchmarks/bench_peaks.py, whose cases
#: all have more labels), so 100 is a rough cut between those points, not a tuned value
MIN_LABELS_FOR_IMAGE_PASS = 100

#: the whole-image filters run over bands of this many rows (first axis) plus the window's halo, so
#: that their temporaries stay small however large the image (the in-memory path labels whole images)
BAND_ROWS = 512


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
    is_max, crowded, sizes = _pixel_tests(image, labels, size, n)
    special = np.zeros(n + 1, bool)
    special[labels[crowded]] = True  # another object inside the window of one of its pixels
    del crowded
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


def _pixel_tests(
    image: np.ndarray, labels: np.ndarray, size: tuple[int, ...], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel tests and object sizes, computed band by band (:data:`BAND_ROWS`).

    Returns ``is_max`` (bool, image shape: object pixels equal to the maximum of the object pixels
    in their window, other objects not masked), ``crowded`` (bool, image shape: object pixels with
    a pixel of another object in their window) and ``sizes`` (int, ``(n + 1,)``: pixels per label).
    """
    from scipy import ndimage as ndi

    lowest, highest = _lowest(image.dtype), np.iinfo(labels.dtype).max
    is_max = np.empty(image.shape, bool)
    crowded = np.empty(image.shape, bool)
    sizes = np.zeros(n + 1, np.intp)
    halo, rows = size[0] // 2, image.shape[0]
    for start in range(0, rows, BAND_ROWS):
        stop = min(start + BAND_ROWS, rows)
        lo, hi = max(0, start - halo), min(rows, stop + halo)
        core = slice(start - lo, stop - lo)  # the band's own rows; the halo only feeds the filters
        img, lab = image[lo:hi], labels[lo:hi]
        fg = lab > 0
        window_max = ndi.maximum_filter(np.where(fg, img, lowest), size=size, mode="nearest")[core]
        is_max[start:stop] = fg[core] & (img[core] == window_max)
        del window_max
        other = ndi.maximum_filter(lab, size=size, mode="nearest")[core] != lab[core]
        other |= ndi.minimum_filter(np.where(fg, lab, highest), size=size, mode="nearest")[core] != lab[core]
        crowded[start:stop] = fg[core] & other
        sizes += np.bincount(lab[core].ravel(), minlength=n + 1)
    return is_max, crowded, sizes


def _isolated_peaks(image: np.ndarray, labels: np.ndarray, peaks: np.ndarray, min_distance: int) -> dict:
    """{label: (k, ndim) coordinates} from a whole-image peak mask, ordered and thinned per label."""
    coords = np.argwhere(peaks)  # raster order, which skimage's stable sort keeps for ties
    owner = labels[peaks]
    order = np.lexsort((np.arange(len(coords)), -image[peaks], owner))
    coords, owner = coords[order], owner[order]
    starts = np.flatnonzero(np.diff(owner, prepend=0))  # labels are >= 1, so the first one starts a run
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
