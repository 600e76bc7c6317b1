"""The U-Net boundary weight map (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``d1``/``d2`` are the Euclidean distances from ``x`` to the nearest and the second-nearest object
(0 on an object itself: the distance transform of ``labels != i``). The border term is applied to
background pixels, where touching cells are separated.

Speed: the border term is below ``rel_tol * w0`` (default ``1e-6 * w0``) once
``d1 + d2 > sigma * sqrt(2 ln(1 / rel_tol))`` (about 5.3 sigma), so an object only matters within
that distance of itself. Each object's distance transform is therefore computed on its bounding
box grown by that cutoff (exact there, because the whole object lies inside the crop) and the two
smallest distances per pixel are kept. A pixel outside the crop of either of its two nearest objects has
a true border term below ``rel_tol * w0`` and gets at most that (often 0). Cost: O(sum of crop sizes) instead of
O(objects x pixels); memory O(pixels) (two float32 distance images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .config import WeightMapConfig
from .errors import InputError
from .labels import as_instance_labels

_D = WeightMapConfig()

#: border-term values below ``REL_TOL * w0`` are dropped (set to 0)
REL_TOL = 1e-6

Region = tuple[slice, ...]


def separate_touching_objects(labels: np.ndarray) -> np.ndarray:
    """Cut a background gap between objects that touch.

    Deterministic rule: a foreground pixel becomes background when any of its 8-neighbours
    (26 in 3D; the image edge counts as "no neighbour") belongs to a *different* object with a
    *larger* id. The gap is thus one pixel wide, always carved out of the lower-id object, and
    depends only on the order of the ids (relabelling that keeps the order keeps the result).
    Objects of one pixel next to a larger id vanish.

    Parameters
    ----------
    labels : ndarray of unsigned int, shape (Y, X) or (Z, Y, X)
        Instance labels (0 = background).

    Returns
    -------
    ndarray, same shape and dtype
    """
    import itertools

    labels = np.asarray(labels)
    larger = np.zeros(labels.shape, bool)  # has a neighbour with a larger id
    for off in itertools.product((-1, 0, 1), repeat=labels.ndim):
        if off <= (0,) * labels.ndim:
            continue  # each neighbour pair once: lexicographically positive offsets
        here = tuple(slice(0, n - o) if o >= 0 else slice(-o, n) for o, n in zip(off, labels.shape))
        there = tuple(slice(o, n) if o >= 0 else slice(0, n + o) for o, n in zip(off, labels.shape))
        a, b = labels[here], labels[there]
        larger[here] |= a < b
        larger[there] |= b < a
    out = labels.copy()
    out[larger & (labels > 0)] = 0
    return out


def class_weights(classes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-class balance weights ``N / (K * n_k)`` over the ``K`` classes present inside ``mask``.

    The one definition of class balance, used by the boundary weight map (background and
    foreground) and by semantic training (class ids).

    Parameters
    ----------
    classes : ndarray of bool or non-negative int, any shape (spatial, e.g. (Y, X) or (Z, Y, X))
        Class of each pixel: foreground (True) / background, or class ids.
    mask : ndarray of bool, same shape, optional
        The annotated region; ``N`` (pixels) and ``n_k`` (pixels of class ``k``) count only
        pixels inside it. Default: every pixel.

    Returns
    -------
    ndarray of float64, shape (max class + 1,) (at least 2 entries)
        Weight of class ``k`` (0 for classes absent inside ``mask``); each class present then
        carries the same total weight ``N / K``.
    """
    classes = np.asarray(classes)
    inside = classes if mask is None else classes[np.asarray(mask, dtype=bool)]
    if inside.dtype == bool:  # no int copy of a (possibly huge) foreground mask
        n_fg = int(np.count_nonzero(inside))
        counts = np.array([inside.size - n_fg, n_fg], np.int64)
    else:
        counts = np.bincount(inside.ravel().astype(np.intp, copy=False), minlength=2)
    present = counts > 0
    k = int(present.sum())
    if k == 0:
        return np.zeros(counts.shape, np.float64)
    n = int(counts.sum())
    return np.where(present, n / (k * np.maximum(counts, 1)), 0.0)


def class_balance_weights(classes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``w_c``: the :func:`class_weights` of each pixel's class, 0 outside ``mask``.

    Parameters
    ----------
    classes : ndarray of bool or non-negative int, any shape
        Foreground (object) pixels, or class ids.
    mask : ndarray of bool, same shape, optional
        The annotated region (see :func:`class_weights`); ``w_c`` is 0 outside it.

    Returns
    -------
    ndarray of float32, shape of ``classes``
    """
    classes = np.asarray(classes)
    lut = class_weights(classes, mask).astype(np.float32)
    wc = lut[classes.view(np.uint8) if classes.dtype == bool else classes]
    if mask is not None:
        wc[~np.asarray(mask, dtype=bool)] = 0
    return wc


def influence_distance(sigma: float, *, rel_tol: float = REL_TOL) -> float:
    """``d1 + d2`` beyond which the border term is below ``rel_tol * w0``: ``sigma sqrt(2 ln(1/rel_tol))``.

    In the units of ``sigma`` (pixels, or physical units when ``sampling`` is used).
    """
    return float(sigma) * math.sqrt(2.0 * math.log(1.0 / rel_tol))


def influence_margin(sigma: float, sampling: Sequence[float] | None = None, *, ndim: int = 2) -> tuple[int, ...]:
    """Pixels per axis around a region that the weights inside it depend on.

    The border term of a pixel depends only on labels within :func:`influence_distance` of it,
    plus one pixel for the touching-objects rule. A caller that recomputes a sub-region (an
    edited area) can pass ``labels`` cropped to the region grown by this margin, or simply use
    the ``region`` argument of :func:`boundary_weight_map`.

    Returns
    -------
    tuple of int, one per axis
    """
    s = _check_sampling(sampling, ndim)
    c = influence_distance(sigma)
    return tuple(int(math.ceil(c / si)) + 1 for si in s)


def boundary_weight_map(
    labels: np.ndarray,
    *,
    w0: float = _D.w0,
    sigma: float = _D.sigma,
    class_balance: bool = _D.class_balance,
    mask: np.ndarray | None = None,
    sampling: Sequence[float] | float | None = None,
    separate_touching: bool = _D.separate_touching,
    per_slice: bool = False,
    region: Region | None = None,
) -> np.ndarray:
    """Per-pixel loss weights that emphasise the thin background between touching objects.

    ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` where ``d1``/``d2`` are the Euclidean
    distances to the nearest and second-nearest object. The border term is added on background
    pixels only and is 0 where fewer than two objects exist; values below ``1e-6 * w0`` are
    dropped (set to 0), so the map differs from the infinitely exact one by less than that.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X) or (Z, Y, X)
        Instance labels: 0 = background, each object its own id (ids need not be contiguous and
        may be large, uint32/uint64). A boolean/binary (0/1, 0/255) mask is split into objects by
        connectivity with a :class:`~unet_core.labels.BinaryLabelsWarning`. Float labels with
        non-integer values, negative ids and non-numeric dtypes raise :class:`InputError`.
    w0 : float
        Border-term amplitude (>= 0).
    sigma : float
        Border-term width, in pixels; in the physical units of ``sampling`` when it is given.
    class_balance : bool
        ``w_c = N / (K * n_class)`` over the K classes (background, foreground) present, counted
        inside ``mask`` when given (each class then carries equal total weight); ``w_c = 1``
        otherwise. Counted over the whole image, or per slice with ``per_slice``.
    mask : ndarray of bool, shape of ``labels``, optional
        The annotated region; weights are 0 outside it.
    sampling : float or sequence of float, optional
        Pixel size per axis (Y, X) or (Z, Y, X) for anisotropic data; distances are physical.
        With ``per_slice`` a 3-sequence's first entry (Z) is ignored.
    separate_touching : bool
        First cut a one-pixel background gap between touching objects with
        :func:`separate_touching_objects` (a pixel next to a larger id becomes background).
        Distances, classes and the background on which the border term is added are then those
        of the separated labels, so the border term peaks in the gap.
    per_slice : bool
        For 3D labels: treat each Z slice as an independent 2D image (2D separation, distances
        within the slice, class balance per slice), as training on slices does. Default: true
        3D distances (with ``sampling`` for anisotropic voxels). Ignored for 2D labels.
    region : tuple of slice, optional
        Compute only this box (e.g. ``(slice(100, 300), slice(0, 256))``, or with a leading
        Z slice for 3D); the result has the box's shape and equals ``full_map[region]``. Only
        the labels within :func:`influence_margin` of the box are read for the border term (the
        class balance still counts the whole image), so a small edited area is cheap to update.

    Returns
    -------
    ndarray of float32
        Shape of ``labels`` (of the ``region`` box when given).

    Raises
    ------
    InputError
        Invalid labels, mask shape, ``sigma``/``w0``/``sampling`` or ``region``.
    """
    labels, mask = _check_inputs(labels, mask, w0=w0, sigma=sigma)
    labels = _relabel_ordered(labels)
    box = _check_region(region, labels.shape)
    kw = dict(w0=float(w0), sigma=float(sigma), class_balance=class_balance, separate_touching=separate_touching)
    if labels.ndim == 3 and per_slice:
        if sampling is not None and np.ndim(sampling) == 1 and len(sampling) == 3:
            sampling = tuple(sampling)[1:]
        spacing = _check_sampling(sampling, 2)
        out = np.zeros(tuple(b.stop - b.start for b in box), np.float32)
        for k, z in enumerate(range(box[0].start, box[0].stop)):
            out[k] = _weight_map(labels[z], None if mask is None else mask[z], spacing, box[1:], **kw)
        return out
    return _weight_map(labels, mask, _check_sampling(sampling, labels.ndim), box, **kw)


def _check_inputs(
    labels: np.ndarray, mask: np.ndarray | None, *, w0: float, sigma: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated instance labels (2D or 3D) and bool mask of :func:`boundary_weight_map`."""
    labels = as_instance_labels(labels, name="labels")
    if labels.ndim not in (2, 3):
        raise InputError(
            f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {labels.shape}; "
            "pass one image or one stack at a time"
        )
    WeightMapConfig(w0=w0, sigma=sigma)  # the ranges of w0 and sigma (finite, sigma >= MIN_SIGMA)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise InputError(f"mask shape {mask.shape} differs from labels shape {labels.shape}; give a mask of the same size")
        mask = mask.astype(bool, copy=False)
    return labels, mask


def _weight_map(
    labels: np.ndarray,
    mask: np.ndarray | None,
    spacing: tuple[float, ...],
    box: Region,
    *,
    w0: float,
    sigma: float,
    class_balance: bool,
    separate_touching: bool,
) -> np.ndarray:
    """:func:`boundary_weight_map` of validated uint32 ``labels`` on the step-1 ``box``."""
    # the border term of the box needs the labels within the influence margin (+1 for the gap rule)
    margin = influence_margin(sigma, spacing, ndim=labels.ndim)
    outer = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, labels.shape))
    whole = all(o.start == 0 and o.stop == n for o, n in zip(outer, labels.shape))
    sub = labels[outer]
    if separate_touching:
        sub = separate_touching_objects(sub)
    if class_balance:  # counted over the whole image (inside the mask)
        fg_all = (sub if whole else separate_touching_objects(labels) if separate_touching else labels) > 0
        w_bg, w_fg = class_weights(fg_all, mask)[:2]
        del fg_all
    else:
        w_bg = w_fg = 1.0
    inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
    border = border_term(sub, w0=w0, sigma=sigma, sampling=spacing)[inner]
    fg = sub[inner] > 0
    w = np.where(fg, np.float32(w_fg), np.float32(w_bg))
    border[fg] = 0
    w += border
    if mask is not None:
        w[~mask[box]] = 0
    return w


def border_term(
    labels: np.ndarray,
    *,
    w0: float,
    sigma: float,
    sampling: Sequence[float] | float | None = None,
    rel_tol: float = REL_TOL,
) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` at every pixel (0 with fewer than two objects).

    Banded: values below ``rel_tol * w0`` are 0 (see the module docstring). Evaluated on object
    pixels too (where ``d1 = 0``); :func:`boundary_weight_map` keeps it on background only.

    Parameters
    ----------
    labels : ndarray of unsigned int, shape (Y, X) or (Z, Y, X)
        Instance labels (0 = background); ids may have gaps.
    w0, sigma : float
        Amplitude and width (physical units with ``sampling``).
    sampling : float or sequence of float, optional
        Pixel size per axis.
    rel_tol : float
        Relative truncation level of the band.

    Returns
    -------
    ndarray of float32, shape of ``labels``
    """
    d1, d2 = two_nearest_distances(labels, cutoff=influence_distance(sigma, rel_tol=rel_tol), sampling=sampling)
    if d1 is None:
        return np.zeros(labels.shape, np.float32)
    s = d1
    s += d2  # inf where fewer than two objects are within the band
    del d2
    s *= s
    s *= np.float32(-1.0 / (2.0 * float(sigma) ** 2))
    np.exp(s, out=s)
    s *= np.float32(w0)
    return s


def two_nearest_distances(
    labels: np.ndarray,
    *,
    cutoff: float,
    sampling: Sequence[float] | float | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Distances to the nearest and second-nearest object, exact wherever they are <= ``cutoff``.

    One Euclidean distance transform per object on its bounding box grown by ``cutoff`` (exact
    inside that crop, since the whole object lies in it); a running two-minimum per pixel.

    Parameters
    ----------
    labels : ndarray of unsigned int, shape (Y, X) or (Z, Y, X)
        Instance labels (0 = background); ids may have gaps (missing ids are skipped), but very
        large ids cost memory here: relabel first (:func:`boundary_weight_map` does).
    cutoff : float
        Band width, in the units of ``sampling``.
    sampling : float or sequence of float, optional
        Pixel size per axis.

    Returns
    -------
    d1, d2 : ndarray of float32, shape of ``labels``, or (None, None) with fewer than two objects
        ``d1 <= d2``. A distance greater than ``cutoff`` may be reported as ``inf`` (or as any
        value >= the true one beyond the band).
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    spacing = _check_sampling(sampling, labels.ndim)
    if labels.size == 0 or not labels.any():
        return None, None
    if labels.dtype.kind != "u" or labels.dtype.itemsize > 4:
        labels = labels.astype(np.uint32) if int(labels.max()) <= np.iinfo(np.uint32).max else _relabel_ordered(labels)
    boxes = ndi.find_objects(labels)
    if sum(b is not None for b in boxes) < 2:
        return None, None
    grow = [int(math.ceil(cutoff / s)) for s in spacing]
    shape = labels.shape
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    isotropic = all(s == spacing[0] for s in spacing)
    for idx, bb in enumerate(boxes, start=1):
        if bb is None:
            continue
        crop = tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(bb, grow, shape))
        d = ndi.distance_transform_edt(labels[crop] != idx, sampling=None if isotropic else spacing)
        d = d.astype(np.float32)
        if isotropic and spacing[0] != 1.0:
            d *= np.float32(spacing[0])
        a = d1[crop]
        b = d2[crop]
        np.minimum(b, np.maximum(a, d), out=b)
        np.minimum(a, d, out=a)
    return d1, d2


def _relabel_ordered(labels: np.ndarray) -> np.ndarray:
    """Labels as uint32 with ids kept when small, else renumbered 1..n keeping their order.

    Order-preserving, so :func:`separate_touching_objects` gives the same gaps. Ids larger than
    the number of pixels (e.g. 2**40) are renumbered so per-id tables stay small.
    """
    hi = int(labels.max()) if labels.size else 0
    if hi <= max(labels.size, 1 << 16) and hi <= np.iinfo(np.uint32).max:
        return labels.astype(np.uint32, copy=False)
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.uint32)
    if ids[0] != 0:
        inverse += 1
    return inverse


def _check_sampling(sampling, ndim: int) -> tuple[float, ...]:
    """``sampling`` as one positive float per axis (default 1.0)."""
    if sampling is None:
        return (1.0,) * ndim
    arr = np.atleast_1d(np.asarray(sampling, dtype=float))
    if arr.ndim != 1 or (arr.size != 1 and arr.size != ndim):
        raise InputError(f"sampling must be one number or {ndim} numbers (pixel size per axis), got {sampling!r}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise InputError(f"sampling must be positive pixel sizes, got {sampling!r}")
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    return tuple(float(v) for v in arr)


def _check_region(region: Region | None, shape: tuple[int, ...]) -> Region:
    """``region`` as one step-1 slice per axis with explicit, clipped bounds (whole image if None)."""
    if region is None:
        return tuple(slice(0, n) for n in shape)
    if not isinstance(region, tuple):
        region = tuple(region) if isinstance(region, list) else (region,)
    if len(region) != len(shape) or not all(isinstance(r, slice) for r in region):
        raise InputError(
            f"region must be a tuple of {len(shape)} slices (one per axis), got {region!r}; "
            "e.g. (slice(0, 256), slice(0, 256))"
        )
    out = []
    for r, n in zip(region, shape):
        start, stop, step = r.indices(n)
        if step != 1:
            raise InputError(f"region slices must have step 1, got {r}")
        out.append(slice(start, max(start, stop)))
    return tuple(out)
