"""npe2 writers: Labels and Image layers as TIFF through tifffile.

Labels are stored as the smallest unsigned type that holds their ids (uint8/uint16/uint32, never
int64); the layer's scale becomes the TIFF resolution / ImageJ spacing, with the layer's physical
unit (``metadata['unit']``, else napari's ``units`` unless 'pixel'; see ``_pixel_size``) and with
no unit at all when it is unknown, never a made-up 'um'; the axes come from ``metadata['axes']``
(set by the plugin's reader) when they fit; stacks are multi-page; zlib compression; the write
is atomic (temporary file + rename). napari's Save dialog has already asked before replacing an
existing file, so the writer replaces it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _axes_sizes_unit(data: np.ndarray, meta: dict) -> tuple[str, tuple[float, ...], str | None]:
    """Axes, size per axis of ``data`` and physical unit (None: unknown) from a layer's meta."""
    from ._pixel_size import layer_axes, unit_from_state

    rgb = bool(meta.get("rgb"))
    axes = layer_axes(data.ndim, meta.get("metadata"), rgb=rgb)
    raw = meta.get("scale")
    scale = tuple(float(s) for s in raw) if raw is not None and len(raw) else ()
    if rgb and len(scale) == data.ndim - 1:
        scale += (1.0,)  # the RGB(A) samples axis, last, has no scale in napari
    scale = scale[-data.ndim :] if len(scale) >= data.ndim else (1.0,) * (data.ndim - len(scale)) + scale
    return axes, scale, unit_from_state(meta.get("metadata"), meta.get("units"))


def _tiff_path(path: str) -> str:
    """``path``, with '.tif' appended when the name typed into the Save dialog has no TIFF suffix."""
    return path if path.lower().endswith((".tif", ".tiff")) else path + ".tif"


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer's data to ``path`` as TIFF; return the written paths."""
    from unet_core.io import labels_dtype, write_tiff

    path, data = _tiff_path(path), np.asarray(data)
    axes, scale, unit = _axes_sizes_unit(data, meta)
    labels = data.astype(labels_dtype(data), copy=False)
    write_tiff(path, labels, axes=axes, pixel_size=scale, unit=unit, overwrite=True)
    return [path]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer's data to ``path`` as TIFF (dtype kept); return the written paths."""
    from unet_core.io import write_tiff

    path, data = _tiff_path(path), np.asarray(data)
    axes, scale, unit = _axes_sizes_unit(data, meta)
    write_tiff(path, data, axes=axes, pixel_size=scale, unit=unit, overwrite=True)
    return [path]
