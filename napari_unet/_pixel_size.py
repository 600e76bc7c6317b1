"""A layer's pixel size and its physical unit, with "unknown" kept unknown (no Qt here).

Where the unit lives: ``layer.metadata["unit"]`` (set by the plugin's TIFF reader, copied to
prediction layers, or set with :func:`set_layer_pixel_size`) wins; else napari's own
``layer.units`` when they are not napari's default 'pixel'; else the unit is unknown (None) and
the sizes in ``layer.scale`` are relative only. Writers write no unit then, never a made-up one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The metadata key that holds a layer's physical unit (None: unknown).
UNIT_KEY = "unit"
#: The metadata key that holds a layer's axes letters (one per data axis, e.g. 'ZYX', 'YXS').
AXES_KEY = "axes"
_SPATIAL = "ZYX"


def unit_from_state(metadata: Mapping | None, units: Sequence | None = None) -> str | None:
    """The physical unit a layer's state records, normalised ('um', 'nm', ...), or None.

    Parameters
    ----------
    metadata : mapping or None
        ``layer.metadata`` (or the ``'metadata'`` entry of a layer-data tuple's meta).
    units : sequence of str or pint.Unit, optional
        ``layer.units`` (napari >= 0.5); the last (X) axis' unit is used unless it is 'pixel'.
    """
    from unet_core.io import normalize_unit

    unit = normalize_unit((metadata or {}).get(UNIT_KEY))
    if unit is None and units:
        unit = normalize_unit(str(units[-1]))
    return unit


def layer_axes(ndim: int, metadata: Mapping | None, rgb: bool = False) -> str:
    """Axis letters of a layer's data: ``metadata['axes']`` when it fits, else the defaults.

    ``ndim`` counts the data's axes including an RGB(A) axis ('S', last) when ``rgb`` is True.
    """
    from unet_core.io import default_axes

    axes = str((metadata or {}).get(AXES_KEY) or "")
    if len(axes) == ndim:
        return axes.upper()
    if rgb:
        return default_axes(ndim - 1) + "S"
    return default_axes(ndim)


def layer_pixel_size(layer) -> tuple[tuple[float, ...], str | None]:
    """``(sizes, unit)`` of a napari layer: its scale per layer axis and the unit (None: unknown)."""
    sizes = tuple(float(s) for s in layer.scale)
    return sizes, unit_from_state(layer.metadata, getattr(layer, "units", None))


def napari_units(unit: str | None) -> Any | None:
    """``unit`` as a pint unit (what napari keeps in ``Layer.units``), or None if pint cannot."""
    import pint  # a napari dependency

    if unit is None:
        return None
    try:
        return pint.get_application_registry().parse_expression(unit).units
    except (AttributeError, ValueError, TypeError, pint.errors.PintError):
        return None


def set_layer_pixel_size(layer, sizes: Sequence[float], unit: str | None) -> None:
    """Set a layer's pixel size (scale) and unit; ``unit`` None records "unknown".

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer to change.
    sizes : sequence of float
        One size per layer axis, or fewer: then they are the trailing (Y, X or Z, Y, X) axes and
        the leading axes keep their scale.
    unit : str or None
        Physical unit of ``sizes`` ('um', 'micron', 'nm', ...), or None when unknown.
    """
    from unet_core.io import normalize_unit

    sizes = [float(s) for s in sizes]
    if not sizes or len(sizes) > layer.ndim or any(s <= 0 for s in sizes):
        raise ValueError(f"pixel sizes {sizes} must be positive, at most one per axis ({layer.ndim})")
    unit = normalize_unit(unit)
    scale = [float(s) for s in layer.scale]
    scale[len(scale) - len(sizes) :] = sizes
    layer.scale = scale
    layer.metadata = {**layer.metadata, UNIT_KEY: unit}
    if hasattr(layer, "units"):  # napari >= 0.5: the scale bar and dims show the unit
        axes = layer_axes(layer.ndim, layer.metadata)
        spatial = napari_units(unit)
        if spatial is None:
            spatial = napari_units("pixel")  # napari's own "no physical unit"
        layer.units = [spatial if ax in _SPATIAL else old for ax, old in zip(axes, layer.units, strict=True)]
