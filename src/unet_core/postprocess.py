"""From class probabilities to instance labels (options: :class:`~unet_core.config.PostprocessConfig`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import PostprocessConfig
from .errors import InputError


def foreground_probability(probs: np.ndarray) -> np.ndarray:
    """``1 - P(background)`` for ``(n_classes, Y, X)`` (or ``(Z, n_classes, Y, X)``) input, float32."""
    probs = np.asarray(probs)
    if probs.ndim not in (3, 4):
        raise InputError(f"expected (n_classes, Y, X) or (Z, n_classes, Y, X) probabilities, got {probs.shape}")
    bg = probs[0] if probs.ndim == 3 else probs[:, 0]
    return (1.0 - bg).astype(np.float32)


def probabilities_to_instances(
    probs: np.ndarray,
    config: PostprocessConfig = PostprocessConfig(),
    *,
    threshold: float | None = None,
    split_touching: bool | None = None,
    min_size: int | None = None,
    min_distance: int | None = None,
) -> np.ndarray:
    """Instance labels from class probabilities.

    Foreground (``1 - P(background) > threshold``) becomes objects by connectivity; with
    ``split_touching`` each component is further split by a watershed on its distance transform,
    seeded at the distance maxima (so two touching round cells become two objects).

    Prediction front ends call :func:`unet_core.pipeline.iter_segment` (or
    :func:`unet_core.pipeline.segment_probabilities`), which calls this.

    Parameters
    ----------
    probs : ndarray of float, shape (n_classes, Y, X) or (Z, n_classes, Y, X)
    config : PostprocessConfig
        Threshold, splitting, minimum object size and seed distance (the defaults live there).
    threshold, split_touching, min_size, min_distance : optional
        Override the field of the same name in ``config`` (None: keep it).

    Returns
    -------
    ndarray of uint32, shape (Y, X) or (Z, Y, X)
        Instance ids 1..N (0 = background), per slice for stacks.

    Raises
    ------
    InputError
        Probabilities of another shape, or an option out of its range.
    """
    given = {"threshold": threshold, "split_touching": split_touching, "min_size": min_size,
             "min_distance": min_distance}
    overrides = {k: v for k, v in given.items() if v is not None}
    cfg = replace(config, **overrides) if overrides else config
    fg = foreground_probability(probs) > cfg.threshold
    if cfg.seeds == "interior" and cfg.split_touching:
        return interior_instances(probs, fg, cfg)
    return foreground_to_instances(fg, cfg, per_slice=fg.ndim == 3)


def foreground_to_instances(fg: np.ndarray, config: PostprocessConfig, *, per_slice: bool) -> np.ndarray:
    """Instance labels of a boolean foreground ``fg`` (spatial shape S), uint32 ``S``.

    With ``per_slice`` a stack ``(Z, Y, X)`` is labelled slice by slice, with ids unique across
    the stack (running offsets); otherwise ``fg`` is labelled as one N-D image.
    """
    options = (config.split_touching, config.min_size, config.min_distance)
    if not (per_slice and fg.ndim == 3):
        return instances_from_foreground(fg, *options)
    return _label_slices(fg.shape, lambda z: instances_from_foreground(fg[z], *options))


def _label_slices(shape: tuple[int, ...], label_slice) -> np.ndarray:
    """uint32 labels of shape ``(Z, ...)`` from ``label_slice(z)``, ids made unique across the
    slices by running offsets."""
    out = np.zeros(shape, np.uint32)
    offset = 0
    for z in range(shape[0]):
        lab = label_slice(z)
        out[z] = np.where(lab > 0, lab + offset, 0)
        offset = int(out[z].max(initial=offset))
    return out


def interior_instances(probs: np.ndarray, fg: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    """Instances of a three-class model: watershed of the foreground seeded at the interiors.

    Seeds are the connected components of ``P(interior) > cfg.threshold`` (class 1; needs at
    least 3 classes); each foreground pixel goes to the seed it reaches first flooding by
    ``-P(interior)``; foreground components without a seed stay one object each.

    Parameters
    ----------
    probs : ndarray of float, shape (n_classes, Y, X) or (Z, n_classes, Y, X), n_classes >= 3
    fg : ndarray of bool, shape (Y, X) or (Z, Y, X)
        Foreground (``1 - P(background) > threshold``).
    cfg : PostprocessConfig
        ``threshold`` and ``min_size`` are used.

    Returns
    -------
    ndarray of uint32, the shape of ``fg``; ids unique across the slices of a stack.
    """
    probs = np.asarray(probs)
    axis = 0 if probs.ndim == 3 else 1
    if probs.shape[axis] < 3:
        raise InputError(
            f"seeds='interior' needs a three-class model (background/interior/boundary); these "
            f"probabilities have {probs.shape[axis]} classes: use seeds='distance'"
        )
    interior = np.take(probs, 1, axis=axis)
    if fg.ndim == 2:
        return _interior_2d(interior, fg, cfg.min_size, cfg.threshold)
    return _label_slices(fg.shape, lambda z: _interior_2d(interior[z], fg[z], cfg.min_size, cfg.threshold))


def _interior_2d(interior: np.ndarray, fg: np.ndarray, min_size: int, threshold: float) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential, watershed

    seeds, n = ndi.label((interior > threshold) & fg)
    components, _ = ndi.label(fg)
    orphans = np.setdiff1d(np.unique(components[fg]), np.unique(components[seeds > 0]))
    markers = seeds.copy()
    for k, comp in enumerate(orphans, start=n + 1):  # no interior: the component is one object
        markers[components == comp] = k
    labels = watershed(-interior, markers, mask=fg) if fg.any() else markers
    if min_size > 1:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)


def instances_from_foreground(fg: np.ndarray, split: bool, min_size: int, min_distance: int) -> np.ndarray:
    """Instance labels of a boolean foreground mask of any dimension (2D slices or 3D volumes).

    Parameters
    ----------
    fg : ndarray of bool, shape (Y, X) or (Z, Y, X)
    split, min_size, min_distance
        As :class:`~unet_core.config.PostprocessConfig`'s ``split_touching``, ``min_size`` and
        ``min_distance``.

    Returns
    -------
    ndarray of uint32, shape of ``fg``
        Sequential ids 1..N (0 = background).
    """
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    if not fg.any():
        return np.zeros(fg.shape, np.uint32)
    labels, _ = ndi.label(fg)
    if split:
        from .local_maxima import label_peaks

        dist = ndi.distance_transform_edt(fg)
        dist = ndi.gaussian_filter(dist, 1.0)
        peaks = label_peaks(dist, labels, min_distance)
        markers = np.zeros(fg.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        # components without a peak keep one seed so that no object is lost
        missing = np.setdiff1d(np.unique(labels[fg]), np.unique(labels[tuple(peaks.T)]))
        if missing.size:
            com = ndi.maximum_position(dist, labels, missing)
            for k, pos in enumerate(com, start=len(peaks) + 1):
                markers[pos] = k
        labels = watershed(-dist, markers, mask=fg)
    if min_size > 1:
        labels = remove_small_objects(labels, max_size=min_size - 1) if _has_max_size() else remove_small_objects(labels, min_size=min_size)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)


def _has_max_size() -> bool:
    import inspect

    from skimage.morphology import remove_small_objects

    return "max_size" in inspect.signature(remove_small_objects).parameters


def volume_to_instances(
    probs: np.ndarray,
    config: PostprocessConfig = PostprocessConfig(),
    *,
    sampling: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """3D instance labels from a 3D model's class probabilities ``(n_classes, Z, Y, X)``.

    Foreground (``1 - P(background) > threshold``) becomes objects by 3D connectivity; with
    ``split_touching`` each component is split by a 3D seeded watershed on its distance
    transform, which is anisotropy-aware: distances use ``sampling`` (the voxel size z, y, x),
    the smoothing and the seeds' minimum distance (``min_distance`` y/x pixels) are scaled per
    axis by it, so one nucleus spanning few coarse slices keeps one seed.

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        Instance ids 1..N (0 = background), one id per 3D object.

    Raises
    ------
    InputError
        Probabilities that are not ``(n_classes, Z, Y, X)``, or a bad ``sampling``.
    """
    probs = np.asarray(probs)
    if probs.ndim != 4:
        raise InputError(f"expected (n_classes, Z, Y, X) probabilities of a 3D model, got {probs.shape}")
    if sampling is None:
        sampling = (1.0, 1.0, 1.0)
    if len(sampling) != 3 or not all(np.isfinite(s) and s > 0 for s in sampling):
        raise InputError(f"sampling must be the voxel size (z, y, x), three positive numbers; got {sampling}")
    unit = min(sampling[1:])
    rel = tuple(float(s) / unit for s in sampling)  # in y/x pixels
    fg = (1.0 - probs[0]) > config.threshold
    return _instances_3d(fg, config, rel)


def _instances_3d(fg: np.ndarray, config: PostprocessConfig, rel: tuple[float, ...]) -> np.ndarray:
    """Labels of a 3D foreground mask (see :func:`volume_to_instances`); ``rel`` = voxel size in
    y/x pixels."""
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    from .local_maxima import label_peaks

    if not fg.any():
        return np.zeros(fg.shape, np.uint32)
    labels, _ = ndi.label(fg)
    if config.split_touching:
        dist = ndi.distance_transform_edt(fg, sampling=rel)
        dist = ndi.gaussian_filter(dist, tuple(1.0 / r for r in rel))
        half = tuple(max(1, int(round(config.min_distance / r))) for r in rel)
        peaks = label_peaks(dist, labels, 1, tuple(2 * h + 1 for h in half))
        markers = np.zeros(fg.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        missing = np.setdiff1d(np.unique(labels[fg]), np.unique(labels[tuple(peaks.T)]))
        if missing.size:  # components without a peak keep one seed
            for k, pos in enumerate(ndi.maximum_position(dist, labels, missing), start=len(peaks) + 1):
                markers[pos] = k
        labels = watershed(-dist, markers, mask=fg)
    if config.min_size > 1:
        if _has_max_size():
            labels = remove_small_objects(labels, max_size=config.min_size - 1)
        else:
            labels = remove_small_objects(labels, min_size=config.min_size)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)
