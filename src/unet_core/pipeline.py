"""The prediction pipeline: image -> class probabilities (overlap-tile) -> instance labels.

:func:`iter_segment` is the one place where prediction and post-processing meet; the command
line, the Predict widget and the demos all call it (or :func:`segment`, which drains it).
:func:`segment_probabilities` re-runs only the post-processing on kept probabilities, e.g. when
the user changes the threshold after a prediction. :func:`postprocess_for` gives the
post-processing a model was fitted with (``meta["postprocess"]`` of its checkpoint), the default
of every caller that does not choose its own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import PostprocessConfig, config_from_dict
from .errors import InputError
from .progress import Progress, run_to_end

log = logging.getLogger(__name__)

#: the key of a checkpoint's ``meta`` that holds the model's post-processing (a PostprocessConfig dict)
POSTPROCESS_KEY = "postprocess"


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
    probabilities: np.ndarray,
    postprocess: PostprocessConfig = PostprocessConfig(),
    *,
    volume: bool = False,
    voxel_size: tuple[float, ...] | None = None,
) -> Segmentation:
    """Post-process class probabilities into a :class:`Segmentation` (no network involved).

    Parameters
    ----------
    probabilities : ndarray of float
        ``(n_classes, Y, X)`` or a stack ``(Z, n_classes, Y, X)`` (2D instances per slice); with
        ``volume``, one volume ``(n_classes, Z, Y, X)`` of a 3D model (3D instances).
        E.g. the ``probabilities`` of an earlier :class:`Segmentation`.
    postprocess : PostprocessConfig
        Threshold, splitting of touching objects, minimum size, seed distance.
    volume : bool
        The probabilities are one 3D volume.
    voxel_size : (float, float, float), optional
        ``(z, y, x)`` of a volume, for the anisotropy-aware watershed (default isotropic).

    Returns
    -------
    Segmentation
    """
    from .postprocess import foreground_probability, probabilities_to_instances, volume_to_instances

    probabilities = np.asarray(probabilities)
    if volume:
        labels = volume_to_instances(probabilities, postprocess, sampling=voxel_size)
        foreground = (1.0 - probabilities[0]).astype(np.float32)
        return Segmentation(probabilities, foreground, labels, postprocess)
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
    model : SegmentationNet or BmzPredictor
        A trained network (e.g. ``load_model(path).model``), or a foreign bioimage.io model
        (:class:`unet_core.bmz.BmzPredictor`, which predicts each slice in one pass and ignores
        the tiling options other than ``channel_axis``).
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
    voxel_size = tiling_options.pop("voxel_size", None)
    if hasattr(model, "iter_predict"):  # a foreign bioimage.io model (unet_core.bmz.BmzPredictor)
        probabilities = yield from model.iter_predict(image, channel_axis=tiling_options.get("channel_axis"))
    else:
        from .tiling import iter_predict_tiled

        probabilities = yield from iter_predict_tiled(model, image, **tiling_options)
    yield Progress("postprocess", 0, 1, "instances")
    volume = getattr(getattr(model, "config", None), "spatial_dims", 2) == 3  # (K, Z, Y, X)
    return segment_probabilities(probabilities, postprocess, volume=volume, voxel_size=voxel_size)


def segment(
    model: Any,
    image: np.ndarray,
    postprocess: PostprocessConfig = PostprocessConfig(),
    **tiling_options: Any,
) -> Segmentation:
    """:func:`iter_segment` run to the end (same parameters); returns the :class:`Segmentation`."""
    return run_to_end(iter_segment(model, image, postprocess, **tiling_options))


def postprocess_for(source: Any) -> PostprocessConfig:
    """The post-processing that belongs to a model: its ``meta["postprocess"]``, else the defaults.

    A checkpoint may carry the :class:`PostprocessConfig` fitted for its model (e.g. on the
    validation split at the end of training) as a dict in ``meta["postprocess"]``; prediction
    uses it unless the user chooses other options. Unknown keys (a newer napari-unet) are
    ignored and invalid values fall back to the defaults, each with a warning.

    Parameters
    ----------
    source : Checkpoint, path, mapping, model or None
        A loaded :class:`~unet_core.checkpoint.Checkpoint` (or anything with a ``meta`` dict,
        e.g. a network that carries one), a checkpoint file (loaded), the ``meta`` mapping
        itself, or None.

    Returns
    -------
    PostprocessConfig
    """
    if isinstance(source, str | os.PathLike):
        from .sources import load_model

        source = load_model(source)
    meta = source if isinstance(source, Mapping) else getattr(source, "meta", None)
    data = meta.get(POSTPROCESS_KEY) if isinstance(meta, Mapping) else None
    if not isinstance(data, Mapping):
        if data is not None:
            log.warning("ignoring meta['postprocess'] of type %s (expected a dict)", type(data).__name__)
        return PostprocessConfig()
    names = {f.name for f in dataclasses.fields(PostprocessConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        log.warning("ignoring unknown post-processing option(s) %s of the model", ", ".join(unknown))
    try:
        return config_from_dict(PostprocessConfig, {k: v for k, v in data.items() if k in names})
    except (InputError, TypeError) as exc:
        log.warning("the model's post-processing is invalid (%s); using the defaults", exc)
        return PostprocessConfig()
