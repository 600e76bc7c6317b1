"""npe2 writers: Labels and Image layers as TIFF through tifffile.

Labels are stored as the smallest unsigned type that holds their ids (uint8/uint16/uint32, never
int64); the layer's scale becomes the TIFF resolution / ImageJ spacing; stacks are multi-page;
zlib compression; the write is atomic (temporary file + rename). napari's Save dialog has already
asked before replacing an existing file, so the writer replaces it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _axes_and_sizes(data: np.ndarray, meta: dict) -> tuple[str, tuple[float, ...]]:
    from unet_core.io import default_axes

    axes = default_axes(data.ndim)
    if meta.get("rgb"):
        axes = axes[1:] + "S"
    raw = meta.get("scale")
    scale = tuple(float(s) for s in raw) if raw is not None and len(raw) else (1.0,) * data.ndim
    scale = scale[-data.ndim :] if len(scale) >= data.ndim else (1.0,) * (data.ndim - len(scale)) + scale
    return axes, scale


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer's data to ``path`` as TIFF; return the written paths."""
    from unet_core.io import labels_dtype, write_tiff

    data = np.asarray(data)
    axes, scale = _axes_and_sizes(data, meta)
    write_tiff(path, data.astype(labels_dtype(data), copy=False), axes=axes, pixel_size=scale, overwrite=True)
    return [path]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer's data to ``path`` as TIFF (dtype kept); return the written paths."""
    from unet_core.io import write_tiff

    data = np.asarray(data)
    axes, scale = _axes_and_sizes(data, meta)
    write_tiff(path, data, axes=axes, pixel_size=scale, overwrite=True)
    return [path]
