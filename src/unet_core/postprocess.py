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
    if fg.ndim == 3:  # stack: label slice by slice, ids unique across the stack
        out = np.zeros(fg.shape, np.uint32)
        offset = 0
        for z in range(fg.shape[0]):
            lab = instances_from_foreground(fg[z], *options)
            out[z] = np.where(lab > 0, lab + offset, 0)
            offset = int(out[z].max(initial=offset))
        return out
    return instances_from_foreground(fg, *options)


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
