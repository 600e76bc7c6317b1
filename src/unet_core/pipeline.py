"""The prediction pipeline: image -> class probabilities (overlap-tile) -> instance labels.

:func:`iter_segment` is the one place where prediction and post-processing meet; the command
line, the Predict widget and the demos all call it (or :func:`segment`, which drains it).
:func:`segment_probabilities` re-runs only the post-processing on kept probabilities, e.g. when
the user changes the threshold after a prediction.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import PostprocessConfig
from .progress import Progress, run_to_end


@dataclass(frozen=True)
class Segmentation:
    """What the pipeline returns.

    Attributes
    ----------
    probabilities : ndarray of float32
        Class probabilities, ``(n_classes, *spatial)`` for one image, ``(Z, n_classes, Y, X)``
        for a stack predicted slice by slice.
    foreground : ndarray of float32
        ``1 - P(background)``, shape ``spatial`` (``(Z, Y, X)`` for a stack).
    labels : ndarray of uint32
        Instance ids 1..N (0 = background), the shape of ``foreground``; ids are unique across
        the slices of a stack.
    postprocess : PostprocessConfig
        The options that made ``labels`` from ``probabilities``.
    """

    probabilities: np.ndarray
    foreground: np.ndarray
    labels: np.ndarray
    postprocess: PostprocessConfig = PostprocessConfig()

    @property
    def n_objects(self) -> int:
        """Number of distinct instances in ``labels``."""
        return int(np.count_nonzero(np.unique(self.labels)))


def segment_probabilities(
    probabilities: np.ndarray, postprocess: PostprocessConfig = PostprocessConfig()
) -> Segmentation:
    """Post-process class probabilities into a :class:`Segmentation` (no network involved).

    Parameters
    ----------
    probabilities : ndarray of float, shape (n_classes, Y, X) or (Z, n_classes, Y, X)
        E.g. the ``probabilities`` of an earlier :class:`Segmentation`.
    postprocess : PostprocessConfig
        Threshold, splitting of touching objects, minimum size, seed distance.

    Returns
    -------
    Segmentation
    """
    from .postprocess import foreground_probability, probabilities_to_instances

    probabilities = np.asarray(probabilities)
    labels = probabilities_to_instances(probabilities, postprocess)
    return Segmentation(probabilities, foreground_probability(probabilities), labels, postprocess)


def iter_segment(
    model: Any,
    image: np.ndarray,
    postprocess: PostprocessConfig = PostprocessConfig(),
    **tiling_options: Any,
) -> Generator[Progress, None, Segmentation]:
    """Segment an image: overlap-tile prediction, then instance labels; yields progress.

    Parameters
    ----------
    model : SegmentationNet
        A trained network (e.g. ``load_checkpoint(path).model``).
    image : ndarray
        ``(Y, X)``, ``(C, Y, X)`` with ``channel_axis``, or stacks ``(Z, Y, X)`` /
        ``(Z, C, Y, X)``; any integer, bool or float dtype.
    postprocess : PostprocessConfig
        How probabilities become instances.
    **tiling_options
        Keyword arguments of :func:`unet_core.tiling.iter_predict_tiled`: ``channel_axis``,
        ``tile_shape``, ``batch_size``, ``device``, ``tta``, ``amp``, ...; and ``voxel_size``
        (z, y, x) for a 3D model's post-processing
        (:func:`unet_core.postprocess.volume_to_instances`; default isotropic).

    Yields
    ------
    Progress
        The tiler's ``stage='predict'`` records, then one ``stage='postprocess'`` record.
        Closing the generator between records stops the job and returns nothing.

    Returns
    -------
    Segmentation
    """
    from .tiling import iter_predict_tiled

    voxel_size = tiling_options.pop("voxel_size", None)
    probabilities = yield from iter_predict_tiled(model, image, **tiling_options)
    yield Progress("postprocess", 0, 1, "instances")
    if model.config.spatial_dims == 3:  # (K, Z, Y, X) of one volume: 3D instances
        from .postprocess import volume_to_instances

        labels = volume_to_instances(probabilities, postprocess, sampling=voxel_size)
        return Segmentation(probabilities, (1.0 - probabilities[0]).astype(np.float32), labels, postprocess)
    return segment_probabilities(probabilities, postprocess)


def segment(
    model: Any,
    image: np.ndarray,
    postprocess: PostprocessConfig = PostprocessConfig(),
    **tiling_options: Any,
) -> Segmentation:
    """:func:`iter_segment` run to the end (same parameters); returns the :class:`Segmentation`."""
    return run_to_end(iter_segment(model, image, postprocess, **tiling_options))
