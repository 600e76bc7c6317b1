"""Layer helpers shared by the dock widgets: naming, matching geometry, pickers, replace-or-add.

Naming convention (the widgets find each other's layers by name):

* ``"<image> labels"``      the annotation Labels layer of an image
* ``"<image> region"``      the optional training-region Shapes layer
* ``"<labels> weights"``    the weight-map Image layer of a Labels layer
* ``"<image> prediction"``  the predicted instance Labels layer
* ``"<image> probability"`` the predicted foreground-probability Image layer
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QWidget

log = logging.getLogger(__name__)

LABELS_SUFFIX = " labels"
REGION_SUFFIX = " region"
WEIGHTS_SUFFIX = " weights"
PREDICTION_SUFFIX = " prediction"
PROBABILITY_SUFFIX = " probability"

#: dtype of new annotation layers (65535 objects per image; small in memory for big stacks)
ANNOTATION_DTYPE = np.uint16

_NONE = "(none)"


def real_viewer(viewer):
    """The viewer behind napari's ``PublicOnlyProxy``.

    napari hands plugin widgets a proxy that wraps every returned object (layers too), which
    breaks identity checks between layers we created and layers in events; the widgets only use
    public API, so they keep the real viewer.
    """
    return getattr(viewer, "__wrapped__", viewer)


def spatial_shape(image_layer) -> tuple[int, ...]:
    """Shape of an Image layer's pixel grid without the RGB(A) axis (level 0 if multiscale)."""
    data = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
    return tuple(int(s) for s in data.shape[: image_layer.ndim])


def image_array(image_layer) -> tuple[np.ndarray, int | None]:
    """The full-resolution pixels of an Image layer and their channel axis (-1 for RGB, else None)."""
    data = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
    return np.asarray(data), (-1 if image_layer.rgb else None)


def geometry(layer) -> dict[str, Any]:
    """Keyword arguments that place a new layer exactly over ``layer`` (scale, translate, units)."""
    out: dict[str, Any] = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    units = getattr(layer, "units", None)
    if units is not None:
        out["units"] = tuple(str(u) for u in units)
    return out


def find_layer(viewer, name: str, kind: type | None = None):
    """The layer called ``name`` (of type ``kind`` if given), or None."""
    for layer in viewer.layers:
        if layer.name == name and (kind is None or isinstance(layer, kind)):
            return layer
    return None


def replace_or_add(viewer, kind: str, data: np.ndarray, name: str, **kwargs):
    """Put ``data`` into the layer called ``name``: update it in place if it fits, else (re)add it.

    Re-running a job therefore replaces its result instead of piling up duplicates.
    """
    import napari.layers

    cls = {"image": napari.layers.Image, "labels": napari.layers.Labels}[kind]
    layer = find_layer(viewer, name)
    if layer is not None and isinstance(layer, cls) and layer.data.shape == data.shape and layer.data.dtype == data.dtype:
        layer.data = data
        for key in ("scale", "translate"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    adder = viewer.add_image if kind == "image" else viewer.add_labels
    return adder(data, name=name, **kwargs)


def put_slice(
    viewer,
    kind: str,
    name: str,
    value: np.ndarray,
    index: int | None,
    shape: tuple[int, ...],
    *,
    offset_ids: bool = False,
    **kwargs,
):
    """Put a result into the layer called ``name``: whole (``index`` None) or as slice ``index``.

    For a slice, the layer's current data is kept when it is a stack of ``shape`` with
    ``value``'s dtype (the other slices stay), otherwise a zero stack is started. The layer is
    updated in place or (re)created by :func:`replace_or_add` (``kwargs`` as there), then
    refreshed.

    Parameters
    ----------
    kind : {'image', 'labels'}
        Layer type.
    value : ndarray
        The result: of ``shape`` when ``index`` is None, else of ``shape[1:]``.
    index : int or None
        Slice along the first axis of the stack.
    shape : tuple of int
        Shape of the whole stack.
    offset_ids : bool
        Labels: shift the slice's ids past the stack's largest id, so objects found in
        different slices keep distinct ids.

    Returns
    -------
    The layer.
    """
    import napari.layers

    data = value
    if index is not None:
        cls = napari.layers.Image if kind == "image" else napari.layers.Labels
        old = find_layer(viewer, name, cls)
        fits = old is not None and old.data.shape == tuple(shape) and old.data.dtype == value.dtype
        data = old.data if fits else np.zeros(shape, value.dtype)
        if offset_ids:
            value = np.where(value > 0, value + data.max(initial=0), 0)
        data[index] = value
    layer = replace_or_add(viewer, kind, data, name, **kwargs)
    layer.refresh()
    return layer


def current_index(viewer, layer) -> int | None:
    """Index of the slice shown along ``layer``'s first axis for a 3D (stack) layer, else None."""
    if layer.ndim < 3:
        return None
    point = layer.world_to_data(viewer.dims.point)
    n = layer.data.shape[0]
    return int(np.clip(round(float(point[0])), 0, n - 1))


def region_mask(shapes_layer, shape: tuple[int, ...]) -> np.ndarray | None:
    """Rasterise a Shapes layer into a boolean region mask of ``shape`` (None when empty)."""
    if shapes_layer is None or len(shapes_layer.data) == 0:
        return None
    masks = shapes_layer.to_masks(mask_shape=shape)
    return np.asarray(masks, bool).any(axis=0)


class LayerChooser(QComboBox):
    """A combo box listing the viewer's layers of one type, refreshed by the owning widget.

    The owning dock widget calls :meth:`refresh` from its ``reset_choices`` method, which napari
    connects to layer insertion, removal, reordering and renaming.
    """

    def __init__(self, viewer, kind: type, *, optional: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = viewer
        self._kind = kind
        self._optional = optional
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.refresh()

    def names(self) -> list[str]:
        """Names of the listed layers (without the '(none)' entry)."""
        return [self.itemText(i) for i in range(self.count()) if self.itemText(i) != _NONE]

    def refresh(self) -> None:
        """Re-list the layers, keeping the current choice when it still exists."""
        current = self.currentText()
        names = [layer.name for layer in self._viewer.layers if isinstance(layer, self._kind)]
        self.blockSignals(True)
        self.clear()
        if self._optional:
            self.addItem(_NONE)
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())

    @property
    def layer(self):
        """The chosen layer, or None."""
        name = self.currentText()
        if not name or name == _NONE:
            return None
        return find_layer(self._viewer, name, self._kind)

    def set_layer(self, layer) -> None:
        """Choose ``layer`` (or '(none)' for None on an optional chooser)."""
        self.refresh()
        self.setCurrentText(_NONE if layer is None else layer.name)
