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
    """Keyword arguments that place a new layer exactly over ``layer``.

    Scale, translate, napari's ``units`` and the physical unit in ``metadata["unit"]`` (None when
    unknown), so that a writer of the new layer writes the image's pixel size and unit.
    """
    from ._pixel_size import UNIT_KEY, layer_pixel_size

    out: dict[str, Any] = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    units = getattr(layer, "units", None)
    if units is not None:
        out["units"] = tuple(str(u) for u in units)
    out["metadata"] = {UNIT_KEY: layer_pixel_size(layer)[1]}
    return out


def apply_geometry(layer, geo: dict[str, Any]) -> None:
    """Give an existing ``layer`` the placement :func:`geometry` returned (other metadata stays)."""
    for key in ("scale", "translate", "units"):
        if key in geo:
            setattr(layer, key, geo[key])
    if "metadata" in geo:
        layer.metadata = {**layer.metadata, **geo["metadata"]}


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
        if kind == "labels":  # the old edit history does not apply to the new data
            layer._reset_history()
        apply_geometry(layer, kwargs)
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


#: above this many changed pixels an undo step would need too much memory (3 index arrays + values)
MAX_UNDO_PIXELS = 20_000_000


def set_labels_undoable(labels, new: np.ndarray) -> bool:
    """Replace the data of a Labels layer by ``new`` as one step of its undo history (Ctrl+Z).

    Only the changed pixels are written (napari's ``data_setitem``, which records them). When
    ``new`` needs a wider dtype the layer's data is widened first (same values, so the earlier
    history stays valid). Above :data:`MAX_UNDO_PIXELS` changed pixels the data is replaced and
    the history cleared instead, so that Ctrl+Z can never apply old edits to the new data.

    Parameters
    ----------
    labels : napari.layers.Labels
        A layer with numpy data of ``new``'s shape.
    new : ndarray of int

    Returns
    -------
    bool
        True when the change can be undone, False when the history was cleared.
    """
    old = np.asarray(labels.data)
    if old.shape != new.shape:
        raise ValueError(f"new labels of shape {new.shape} for a layer of shape {old.shape}")
    if np.result_type(old.dtype, new.dtype) != old.dtype:
        old = old.astype(np.result_type(old.dtype, new.dtype))
        labels.data = old
    changed = old != new
    if np.count_nonzero(changed) > MAX_UNDO_PIXELS:
        labels.data = new.astype(old.dtype, copy=False)
        labels._reset_history()
        return False
    indices = np.nonzero(changed)
    labels.data_setitem(indices, new[indices])
    labels.refresh()
    return True


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


#: layer-name suffixes of the layers that belong to an image and share its pixel grid
_IMAGE_FAMILY = (LABELS_SUFFIX, REGION_SUFFIX, PREDICTION_SUFFIX, PROBABILITY_SUFFIX)
#: units offered by the pixel-size editor (any other can be typed)
UNIT_CHOICES = ("unknown", "nm", "um", "mm")


def format_pixel_size(layer) -> str:
    """E.g. ``'0.5 × 0.5 um'`` or ``'1 × 1 (unit unknown)'`` for ``layer``'s pixel size."""
    from ._pixel_size import layer_pixel_size

    sizes, unit = layer_pixel_size(layer)
    text = " × ".join(f"{s:g}" for s in sizes)
    return f"{text} {unit}" if unit else f"{text} (unit unknown)"


def image_family(viewer, image) -> list:
    """``image`` and its annotation, region, prediction, probability and weight-map layers."""
    names = {image.name + suffix for suffix in _IMAGE_FAMILY}
    names.add(image.name + LABELS_SUFFIX + WEIGHTS_SUFFIX)
    return [image] + [layer for layer in viewer.layers if layer.name in names and layer.ndim == image.ndim]


class PixelSizeRow(QWidget):
    """Shows an image layer's pixel size and unit, and sets them (with its family of layers).

    The size field takes one number (the Y and X size) or one per axis, comma separated
    (``'2, 0.5, 0.5'`` for Z, Y, X); the unit 'unknown' records that the physical unit is not
    known (nothing physical is written then). **Set** applies both to the image and to the
    layers that belong to it (:func:`image_family`), so they stay aligned.
    """

    def __init__(self, viewer, parent: QWidget | None = None):
        from qtpy.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton

        super().__init__(parent)
        self._viewer = viewer
        self._layer = None
        self.label = QLabel("")
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText("size")
        self.size_edit.setMaximumWidth(90)
        self.unit_combo = QComboBox()
        self.unit_combo.setEditable(True)
        self.unit_combo.addItems(UNIT_CHOICES)
        self.set_button = QPushButton("Set")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.size_edit)
        row.addWidget(self.unit_combo)
        row.addWidget(self.set_button)
        self.set_button.clicked.connect(self.apply)
        self.size_edit.returnPressed.connect(self.apply)

    def set_layer(self, layer) -> None:
        """Show the pixel size of ``layer`` (an Image layer, or None)."""
        self._layer = layer
        self.refresh()

    def refresh(self) -> None:
        """Show the current pixel size of the layer (it may have changed elsewhere)."""
        from ._pixel_size import layer_pixel_size

        layer = self._layer
        enabled = layer is not None and layer in self._viewer.layers
        for w in (self.size_edit, self.unit_combo, self.set_button):
            w.setEnabled(enabled)
        if not enabled:
            self.label.setText("(no image)")
            return
        sizes, unit = layer_pixel_size(layer)
        self.label.setText(format_pixel_size(layer))
        self.size_edit.setText(f"{sizes[-1]:g}" if len(set(sizes[-2:])) == 1 else ", ".join(f"{s:g}" for s in sizes))
        self.unit_combo.setCurrentText(unit or UNIT_CHOICES[0])

    def apply(self) -> bool:
        """Set the typed pixel size and unit; False (and a message) when the input is unusable."""
        from napari.utils.notifications import show_error

        from ._pixel_size import set_layer_pixel_size

        layer = self._layer
        if layer is None:
            return False
        try:
            sizes = [float(t) for t in self.size_edit.text().replace(";", ",").split(",") if t.strip()]
            if len(sizes) == 1:
                sizes = sizes * min(2, layer.ndim)
            unit_text = self.unit_combo.currentText().strip()
            unit = None if unit_text in ("", UNIT_CHOICES[0]) else unit_text
            for member in image_family(self._viewer, layer):
                set_layer_pixel_size(member, sizes, unit)
        except ValueError as exc:
            show_error(f"Pixel size: {exc}; type one positive number, or one per axis separated by commas.")
            return False
        self.refresh()
        return True
