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
    options = (cfg.split_touching, cfg.min_size, cfg.min_distance)
    fg = foreground_probability(probs) > cfg.threshold
    if cfg.seeds == "interior" and cfg.split_touching:
        return interior_instances(probs, fg, cfg)
    if fg.ndim == 3:  # stack: label slice by slice, ids unique across the stack
        out = np.zeros(fg.shape, np.uint32)
        offset = 0
        for z in range(fg.shape[0]):
            lab = _instances_2d(fg[z], *options)
            out[z] = np.where(lab > 0, lab + offset, 0)
            offset = int(out[z].max(initial=offset))
        return out
    return _instances_2d(fg, *options)


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
    out = np.zeros(fg.shape, np.uint32)
    offset = 0
    for z in range(fg.shape[0]):
        lab = _interior_2d(interior[z], fg[z], cfg.min_size, cfg.threshold)
        out[z] = np.where(lab > 0, lab + offset, 0)
        offset = int(out[z].max(initial=offset))
    return out


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


def _instances_2d(fg: np.ndarray, split: bool, min_size: int, min_distance: int) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    if not fg.any():
        return np.zeros(fg.shape, np.uint32)
    labels, _ = ndi.label(fg)
    if split:
        from skimage.feature import peak_local_max

        dist = ndi.distance_transform_edt(fg)
        dist = ndi.gaussian_filter(dist, 1.0)
        peaks = peak_local_max(dist, min_distance=min_distance, labels=labels, exclude_border=False)
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
