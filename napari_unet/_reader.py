"""npe2 reader: TIFF files with their pixel size, unit and axis layout (``unet_core.io``).

napari's built-in reader drops a TIFF's pixel size (layers get scale 1 in 'pixel' units); this
reader keeps what the file says (ImageJ, OME or resolution tags, see
:func:`unet_core.io.read_tiff`):

- ``scale`` per spatial axis from the pixel size (1 for other axes), and ``units`` when the file
  states a physical unit;
- a channel axis ('C', or samples that are not RGB) becomes ``channel_axis``: one image layer
  per channel, as napari does;
- 8-bit RGB(A) samples (axes ending 'S') become ``rgb=True``;
- everything is an image layer (integer images are not guessed to be labels);
- ``metadata = {"unit": <unit or None>, "axes": <the layer's axes>, "source": <path>}``; the
  plugin's writers write this unit back, and no unit when it is None.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._pixel_size import AXES_KEY, UNIT_KEY, napari_units

#: File name endings this reader accepts (the manifest's filename_patterns say the same).
TIFF_SUFFIXES = (".tif", ".tiff")
_SPATIAL = "ZYX"

LayerData = tuple[Any, dict, str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader function for one TIFF path, or None (other files, or several paths to stack)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).lower().endswith(TIFF_SUFFIXES):
        return None
    return read_tiff_layers


def read_tiff_layers(path: str | list[str]) -> list[LayerData]:
    """Read a TIFF into napari layer data: ``[(data, layer keyword arguments, 'image')]``."""
    from unet_core.io import read_tiff

    if isinstance(path, (list, tuple)):
        path = path[0]
    data, meta = read_tiff(path)
    return [tiff_layer_data(data, meta.axes, meta.pixel_size, meta.unit, source=os.fspath(path))]


def _layer_name(source: str) -> str:
    name = Path(source).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(source).stem


def tiff_layer_data(
    data: np.ndarray,
    axes: str,
    pixel_size: tuple[float, ...] | None,
    unit: str | None,
    *,
    source: str,
) -> LayerData:
    """Layer data for an array read from a TIFF.

    Parameters
    ----------
    data : ndarray
        The pixels, shape per ``axes``.
    axes : str
        One letter per axis of ``data`` ('YX', 'CZYX', 'YXS', ...).
    pixel_size : tuple of float or None
        Size per axis of ``data`` in ``unit`` (None: 1 everywhere).
    unit : str or None
        Physical unit, None when the file states none.
    source : str
        The file's path (kept in the layer metadata and used for the name).

    Returns
    -------
    (data, kwargs, 'image')
        ``kwargs`` for ``viewer.add_image``; with ``channel_axis`` the per-layer entries
        (name, scale, units, metadata) are lists with one item per channel.
    """
    axes = axes.upper()
    sizes = tuple(float(s) for s in pixel_size) if pixel_size is not None else (1.0,) * data.ndim
    rgb = "S" in axes and "C" not in axes and data.dtype == np.uint8 and data.shape[axes.index("S")] in (3, 4)
    if rgb:  # samples last, as napari wants them
        i = axes.index("S")
        data = np.moveaxis(data, i, -1)
        axes, sizes = axes[:i] + axes[i + 1 :] + "S", sizes[:i] + sizes[i + 1 :] + (1.0,)
    channel_letter = "C" if "C" in axes else ("S" if "S" in axes and not rgb else None)
    channel = axes.index(channel_letter) if channel_letter else None
    if channel is not None and data.shape[channel] < 2:
        data, axes = np.take(data, 0, axis=channel), axes.replace(channel_letter, "")
        sizes, channel = sizes[:channel] + sizes[channel + 1 :], None
    layer_axes = axes if channel is None else axes.replace(channel_letter, "")
    dims = [(ax, s) for ax, s in zip(axes, sizes, strict=True) if ax != channel_letter and ax != "S"]
    scale = tuple(s for _, s in dims)
    metadata = {UNIT_KEY: unit, AXES_KEY: layer_axes, "source": source}
    kwargs: dict[str, Any] = {"name": _layer_name(source), "scale": scale, "metadata": metadata, "rgb": rgb}
    pint_unit = napari_units(unit)
    if pint_unit is not None:
        pixel = napari_units("pixel")
        kwargs["units"] = tuple(pint_unit if ax in _SPATIAL else pixel for ax, _ in dims)
    if channel is None:
        return data, kwargs, "image"
    n = data.shape[channel]
    per_channel = {
        "name": [f"{kwargs['name']} ch{i}" for i in range(n)],
        "metadata": [{**metadata, "channel": i} for i in range(n)],
        "scale": [scale] * n,
    }
    if "units" in kwargs:
        per_channel["units"] = [kwargs["units"]] * n
    return data, {**kwargs, **per_channel, "channel_axis": channel}, "image"


#: Folder endings the zarr reader accepts (OME-Zarr images and plain zarr arrays).
ZARR_SUFFIXES = (".zarr", ".ome.zarr")


def get_zarr_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The lazy reader for one ``.zarr`` / ``.ome.zarr`` folder, or None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).rstrip("/").lower().endswith(ZARR_SUFFIXES):
        return None
    return read_zarr_layers


def read_zarr_layers(path: str | list[str]) -> list[LayerData]:
    """Layers of a zarr array or OME-Zarr image, read lazily (dask; pyramids stay multiscale).

    An OME-Zarr gives its image (all pyramid levels) and each ``labels/<name>`` as a Labels
    layer; a plain zarr array gives one image layer. Nothing is read until napari draws it.
    """
    import zarr

    from unet_core.lazy_io import open_lazy

    if isinstance(path, (list, tuple)):
        path = path[0]
    source = os.fspath(path).rstrip("/")
    node = zarr.open(source, mode="r")
    attrs = dict(node.attrs)
    if isinstance(node, zarr.Array) or ("multiscales" not in attrs and "multiscales" not in attrs.get("ome", {})):
        image = open_lazy(source)
        return [(image.data, {"name": _zarr_name(source), "metadata": {AXES_KEY: image.axes, "source": source}}, "image")]
    layers = [_ome_layer(source, "image")]
    if "labels" in node:
        for name in sorted(dict(node["labels"].attrs).get("labels", []) or _ome_labels(node["labels"])):
            layers.append(_ome_layer(os.path.join(source, "labels", name), "labels"))
    return layers


def _ome_labels(group) -> list[str]:
    attrs = dict(group.attrs)
    return list(attrs.get("ome", {}).get("labels", []))


def _ome_layer(source: str, kind: str) -> LayerData:
    """One OME-Zarr multiscale image as (list of dask levels, kwargs, kind)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    node = next(n for n in Reader(parse_url(source, mode="r"))() if n.load(Multiscales) is not None)
    levels = list(node.data)
    axes = "".join(a["name"] if isinstance(a, dict) else str(a) for a in node.metadata.get("axes", [])).upper()
    kwargs: dict[str, Any] = {"name": _zarr_name(source), "metadata": {AXES_KEY: axes, "source": source}}
    scale = node.metadata.get("coordinateTransformations", [[]])[0]
    for t in scale:
        if t.get("type") == "scale":
            kwargs["scale"] = tuple(float(s) for s in t["scale"])
    if len(levels) > 1:
        kwargs["multiscale"] = True
    return (levels if len(levels) > 1 else levels[0]), kwargs, kind


def _zarr_name(source: str) -> str:
    name = Path(source).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
