"""Weight-map dock widget: the loss weights that training gives a Labels layer, live while painting.

The map is exactly the one that trains: :func:`unet_core.training.targets.training_targets`
(the function training calls per slice) with the chosen region (a Shapes layer, else the
painted labels' bounding box grown by *region margin*), the weight-map options and the
*semantic* switch; both default to the engine's :class:`~unet_core.config.TrainConfig`, so set
them as in the Train widget. Pixels that training ignores are 0; a slice with nothing painted
is all 0 (training skips it). The map appears as the Image layer ``"<labels> weights"``
(colormap 'magma', the labels' scale/translate). With *live update* on, each edit of the labels
(napari's ``paint`` event at the end of a stroke, or ``data`` when the array is replaced)
restarts a 400 ms debounce timer; the map of the slice being shown is then recomputed in a
worker thread, so painting never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from functools import partial

import napari
import napari.layers
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._config_form import ConfigForm
from ._dock import fit_dock
from ._jobs import JobOutcome, JobRunner
from ._layers import (
    WEIGHTS_SUFFIX,
    LayerChooser,
    current_index,
    geometry,
    put_slice,
    real_viewer,
    region_mask,
)

log = logging.getLogger(__name__)

DEBOUNCE_MS = 400


def weight_map_job(
    labels: np.ndarray, mask: np.ndarray | None, weights, train, index: int | None
) -> Generator:
    """Engine generator for the worker: one progress record, then ``(index, weights, teaches)``.

    ``labels`` (spatial shape S) one slice of the layer, ``mask`` its region or None,
    ``weights`` a :class:`~unet_core.config.WeightMapConfig`, ``train`` a
    :class:`~unet_core.config.TrainConfig` (``region_margin``, ``region_rule``, ``sparse_ring``,
    ``semantic``). Returns the
    float32 map of shape S that training uses, and whether the slice teaches at all. (One
    difference: a *binary* stack is split into objects slice by slice here, while training
    splits it in 3D; instance labels, the normal case, give identical maps.)
    """
    from unet_core.labels import as_instance_labels
    from unet_core.progress import Progress
    from unet_core.training.targets import check_class_ids, training_targets

    yield Progress("weights", 0, 1, "training weight map")
    if train.semantic:
        labels = check_class_ids(labels)
    else:
        labels = as_instance_labels(labels, name="labels")
    t = training_targets(
        labels, weights, mask=mask, region_margin=train.region_margin, semantic=train.semantic,
        region_rule=train.region_rule, sparse_ring=train.sparse_ring,
    )
    if t is None:
        return index, np.zeros(labels.shape, np.float32), False
    return index, t.weight, True


class WeightsWidget(QWidget):
    """Compute and show the boundary weight map of an annotation layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        from unet_core.config import TrainConfig, WeightMapConfig

        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.labels_combo = LayerChooser(self.viewer, napari.layers.Labels)
        self.region_combo = LayerChooser(self.viewer, napari.layers.Shapes, optional=True)
        self.form = ConfigForm(WeightMapConfig())
        self.train_form = ConfigForm(TrainConfig(), fields=("region_margin", "region_rule", "sparse_ring", "semantic"))
        self.live_check = QCheckBox("live update while painting")
        self.live_check.setChecked(True)
        self.compute_button = QPushButton("Compute weight map")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        top = QFormLayout()
        top.addRow("labels", self.labels_combo)
        top.addRow("region", self.region_combo)
        layout.addLayout(top)
        layout.addWidget(self.form)
        layout.addWidget(self.train_form)
        layout.addWidget(self.live_check)
        layout.addWidget(self.compute_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.runner = JobRunner("Weight map", parent=self)
        self.runner.finished.connect(self._on_finished)
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self._on_debounced)
        self._watched = None
        self._pending = False
        self._pending_live = False
        self.compute_button.clicked.connect(self.compute)
        self.labels_combo.currentTextChanged.connect(self._on_labels_chosen)
        self._on_labels_chosen()
        fit_dock(self, guide="Weight map")  # last: scroll, fold, wheel-safe

    def reset_choices(self, event=None) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.labels_combo.refresh()
        self.region_combo.refresh()

    # -- watching the labels ---------------------------------------------------------------------
    def _on_labels_chosen(self, *_) -> None:
        layer = self.labels_combo.layer
        if layer is self._watched:
            return
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_labels_edited)
            self._watched.events.data.disconnect(self._on_labels_edited)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_labels_edited)
            layer.events.data.connect(self._on_labels_edited)

    def _on_labels_edited(self, event=None) -> None:
        try:
            if self.live_check.isChecked() and self.weights_layer() is not None:
                self.debounce.start()  # restarts: one computation after the last edit
        except RuntimeError:  # this widget was closed (its Qt object deleted): stop listening
            event.source.events.paint.disconnect(self._on_labels_edited)
            event.source.events.data.disconnect(self._on_labels_edited)

    def _on_debounced(self) -> None:
        self.compute(live=True)

    def weights_layer(self) -> napari.layers.Image | None:
        """The ``"<labels> weights"`` layer of the chosen labels, if shown."""
        labels = self.labels_combo.layer
        if labels is None:
            return None
        from ._layers import find_layer

        return find_layer(self.viewer, labels.name + WEIGHTS_SUFFIX, napari.layers.Image)

    # -- computing -------------------------------------------------------------------------------
    def compute(self, live: bool = False) -> bool:
        """Compute the map of the shown slice (whole image for 2D) in a worker; False if not started."""
        from napari.utils.notifications import show_warning

        from unet_core.errors import InputError

        labels = self.labels_combo.layer
        if labels is None:
            show_warning("Weight map: choose a Labels layer (create one in the Annotate widget).")
            return False
        if self.runner.running:
            self._pending, self._pending_live = True, live
            return False
        index = current_index(self.viewer, labels)
        data = np.asarray(labels.data)
        plane = data[index] if index is not None else data
        mask = region_mask(self.region_combo.layer, data.shape)
        if mask is not None and index is not None:
            mask = mask[index]
        try:
            weights, train = self.form.value(), self.train_form.value()
        except InputError as exc:  # an option out of range: say which, never a traceback
            show_warning(f"Weight map: {exc}")
            return False
        self.runner.show_progress = not live
        job = partial(weight_map_job, plane.copy(), mask, weights, train, index)
        self.runner.start(job)
        self.status.setText("computing..." if index is None else f"computing slice {index}...")
        return True

    def _on_finished(self, outcome: JobOutcome) -> None:
        if outcome.ok and outcome.value is not None:
            self._show(*outcome.value)
        if self._pending:
            self._pending = False
            self.compute(live=self._pending_live)

    def _show(self, index: int | None, weights: np.ndarray, teaches: bool = True) -> None:
        labels = self.labels_combo.layer
        if labels is None:
            return
        before = self.weights_layer()
        layer = put_slice(
            self.viewer, "image", labels.name + WEIGHTS_SUFFIX, weights, index, labels.data.shape,
            colormap="magma", opacity=0.7, blending="additive", **geometry(labels),
        )
        if layer is not before:
            # keep the annotation layer on top and selected for painting
            self.viewer.layers.move(self.viewer.layers.index(layer), self.viewer.layers.index(labels))
            self.viewer.layers.selection.active = labels
        hi = float(np.max(weights)) if weights.size else 1.0
        layer.contrast_limits = (0.0, max(hi, 1e-6))
        where = "" if index is None else f"slice {index}: "
        if not teaches:
            self.status.setText(where + "nothing painted in the region: training skips it (all weights 0)")
            return
        self.status.setText(where + f"weights: min {float(weights.min()):.2f}, max {hi:.2f}")
