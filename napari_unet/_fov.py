"""Qt-free parts of the Predict widget's actions for huge (lazy) images.

- :func:`visible_window`: the image pixels the canvas shows, from the camera (centre, zoom) and
  the canvas size, clipped to the image and to :data:`MAX_FOV_EDGE` pixels per side;
- :func:`window_translate`: where a window's result layers go (the image's scale, translated
  to the window's origin);
- :func:`fov_job` and :func:`to_file_job`: the worker generators, thin wrappers around the
  engine's :func:`unet_core.blockwise.iter_predict_window` and
  :func:`unet_core.blockwise_output.iter_segment_to_file`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Largest window edge (level-0 pixels) predicted for the field of view; larger views are cut
#: to this size around their centre (the window's origin is then rounded down to the net's
#: ``size_multiple``, which may add a few pixels).
MAX_FOV_EDGE = 4096

#: Output endings offered for "Predict whole image to file" (the first is the default).
OUTPUT_SUFFIXES = (".ome.zarr", ".zarr", ".tif", ".tiff")


@dataclass(frozen=True)
class VisibleWindow:
    """The part of an image the canvas shows, in level-0 data pixels (Y, X).

    Attributes
    ----------
    origin, stop : (int, int)
        ``image[origin[0]:stop[0], origin[1]:stop[1]]``.
    capped : bool
        True when the view was larger than :data:`MAX_FOV_EDGE` and was cut around its centre.
    """

    origin: tuple[int, int]
    stop: tuple[int, int]
    capped: bool


def visible_window(
    center: Sequence[float],
    zoom: float,
    canvas_hw: Sequence[int],
    scale: Sequence[float],
    translate: Sequence[float],
    shape: Sequence[int],
    max_edge: int = MAX_FOV_EDGE,
) -> VisibleWindow:
    """The level-0 pixels of an image shown on a canvas (2D view of its last two axes), cut to
    ``max_edge`` per side around the view's centre.

    Parameters
    ----------
    center, zoom, canvas_hw, scale, translate, shape
        As :func:`napari_unet._live_widget.visible_window` (the Live widget's view, which this
        extends): the camera's centre (y, x) and zoom, the canvas (height, width), the layer's
        scale and translate of its last two axes and its level-0 shape (Y, X).
    max_edge : int
        Largest window edge; a larger view is cut around its centre.

    Raises
    ------
    InputError
        The view does not show the image.
    """
    from unet_core.errors import InputError

    from ._live_widget import visible_window as view_window

    window = view_window(tuple(center), float(zoom), tuple(canvas_hw), tuple(scale), tuple(translate), tuple(shape))
    if window is None:
        raise InputError("the view does not show the image: pan or zoom onto it (View > Reset view)")
    origin, stop, capped = [], [], False
    for (lo, hi), n in zip(window, shape):
        if hi - lo > max_edge:
            capped = True
            lo = max(0, min(int(n) - max_edge, (lo + hi) // 2 - max_edge // 2))
            hi = lo + max_edge
        origin.append(lo)
        stop.append(hi)
    return VisibleWindow((origin[0], origin[1]), (stop[0], stop[1]), capped)


def window_translate(
    scale: Sequence[float], translate: Sequence[float], lead: Sequence[int], origin: Sequence[int]
) -> tuple[float, ...]:
    """``translate`` of a result layer for the window at ``origin`` (Y, X) of slice ``lead``.

    The result has the image's ``scale``; its leading axes (one pixel thick, at ``lead``) and
    its window axes start at ``translate + index * scale``.
    """
    index = (*lead, *origin)
    if len(index) != len(scale):
        raise ValueError(f"{len(index)} indices for a layer of {len(scale)} axes")
    return tuple(float(t) + float(i) * float(s) for t, i, s in zip(translate, index, scale))


@dataclass(frozen=True)
class FovResult:
    """What :func:`fov_job` returns.

    Attributes
    ----------
    image_name : str
    lead : tuple of int
        Index of the window's slice along the image's leading axes (``()`` for a 2D image).
    origin : (int, int)
        Level-0 (y, x) of the window's first pixel.
    segmentation : unet_core.pipeline.Segmentation
        Probabilities ``(K, h, w)``, foreground and labels ``(h, w)``.
    stats : (ndarray, ndarray)
        The whole image's normalisation statistics (kept to skip the sampling next time).
    """

    image_name: str
    lead: tuple[int, ...]
    origin: tuple[int, int]
    segmentation: Any
    stats: tuple[np.ndarray, np.ndarray]


def _network(model: Any, checkpoint: Path | None) -> Any:
    """The napari-unet network of a session model or a checkpoint / built-in model."""
    from unet_core.errors import InputError
    from unet_core.sources import load_model

    if model is None:
        loaded = load_model(checkpoint)
        model = getattr(loaded, "model", loaded)
    if getattr(model, "config", None) is None or getattr(model, "size_multiple", None) is None:
        raise InputError("this needs a napari-unet model (a checkpoint or a built-in model), not a foreign package")
    if model.config.spatial_dims != 2:
        raise InputError("a 3D model segments whole volumes: use 'Predict' or 'Predict whole image to file'")
    return model


def fov_job(
    model: Any, checkpoint: Path | None, data: Any, channel_axis: int | None, lead: tuple[int, ...],
    window: VisibleWindow, postprocess: Any, device: str, tta: bool, image_name: str = "",
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> Generator[Any, None, FovResult]:
    """Worker generator: segment ``window`` of slice ``lead`` of the (lazy) ``data``.

    ``data`` is the layer's level-0 array (``channel_axis`` -1 for RGB); normalised with the
    whole image's statistics (``stats``, else sampled from every slice: what block-wise
    prediction of the whole image uses).
    """
    from unet_core.blockwise import (
        as_channel_first,
        iter_predict_window,
        sampled_normalization_stats,
    )
    from unet_core.pipeline import segment_probabilities
    from unet_core.progress import Progress

    net = _network(model, checkpoint)
    full = as_channel_first(data, "", channel_axis)
    if stats is None:
        yield Progress("normalise", 0, 1, "image statistics")
        stats = sampled_normalization_stats(full, net.config.normalization)
    plane = full[(slice(None), *lead)]
    result = yield from iter_predict_window(
        net, plane, window.origin, window.stop, stats=stats, device=device, tta=8 if tta else 0,
    )
    yield Progress("postprocess", 0, 1, "instances")
    seg = segment_probabilities(result.probabilities, postprocess)
    return FovResult(image_name, tuple(lead), result.origin, seg, stats)


def to_file_job(
    model: Any, checkpoint: Path | None, data: Any, channel_axis: int | None, output: Path,
    postprocess: Any, device: str, tta: bool, pixel_size: tuple[float, ...] | None, unit: str | None,
    workers: int | None = None,
) -> Generator[Any, None, Any]:
    """Worker generator: block-wise segmentation of the whole (lazy) ``data`` into ``output``
    (replacing it: the widget asked first); returns a
    :class:`~unet_core.blockwise_output.FileSegmentation`."""
    from unet_core.blockwise import BlockwiseConfig, as_channel_first
    from unet_core.blockwise_output import iter_segment_to_file

    net = _network(model, checkpoint)
    full = as_channel_first(data, "", channel_axis, net.config.spatial_dims)
    config = BlockwiseConfig(workers=workers, device=device, tta=8 if tta else 0)
    return (yield from iter_segment_to_file(
        net, full, postprocess, output, config, pixel_size=pixel_size, unit=unit, overwrite=True,
    ))


def open_labels_levels(path: Path) -> tuple[list[Any] | Any, dict[str, Any]]:
    """The labels written by :func:`to_file_job`, lazily: ``(levels or array, layer kwargs)``.

    An OME-Zarr gives its ``labels/labels`` pyramid as a list of dask arrays (``multiscale``
    is set when there are several levels); a zarr array or TIFF gives one dask array.
    """
    from unet_core.lazy_io import kind_of, open_lazy

    from ._reader import _ome_layer

    if kind_of(path) == "ome-zarr":
        levels, kwargs, _ = _ome_layer(str(Path(path) / "labels" / "labels"), "labels")
        return levels, {"multiscale": bool(kwargs.get("multiscale", False))}
    return open_lazy(path).data, {}


def default_output(image_source: str | None, image_name: str) -> Path:
    """A free default output path beside the image's file (else the working directory)."""
    folder = Path(image_source).parent if image_source else Path.cwd()
    base = folder / f"{image_name} prediction"
    path, i = base.with_name(base.name + OUTPUT_SUFFIXES[0]), 2
    while path.exists():
        path, i = base.with_name(f"{base.name} {i}{OUTPUT_SUFFIXES[0]}"), i + 1
    return path
