"""Predict dock widget: overlap-tile prediction of an image layer in a worker, with Cancel.

Results: ``"<image> probability"`` (foreground probability, Image) and ``"<image> prediction"``
(instances, Labels), with the source's scale/translate; re-running replaces them. **Use as
annotations** copies the prediction into ``"<image> labels"`` for correction, closing the loop
predict -> correct -> fine-tune.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import napari
import napari.layers
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet_core.config import PostprocessConfig, TrainConfig, field_choices

from ._config_form import ConfigForm
from ._jobs import JobOutcome, JobRunner, worker_threads
from ._layers import (
    ANNOTATION_DTYPE,
    LABELS_SUFFIX,
    PREDICTION_SUFFIX,
    PROBABILITY_SUFFIX,
    LayerChooser,
    current_index,
    find_layer,
    geometry,
    image_array,
    put_slice,
    real_viewer,
    spatial_shape,
)
from ._model_source import CHECKPOINT_FILE, SESSION_PREFIX, ModelSourceChooser

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILE", "SESSION_PREFIX", "PredictWidget", "PredictionResult", "predict_job"]

WHOLE = "whole image / stack"
CURRENT = "current slice"
#: milliseconds without further edits of the post-processing options before they are re-applied
REAPPLY_DELAY_MS = 400


@dataclass(frozen=True)
class PredictionResult:
    """What a prediction job returns: the image, slice index (None = whole) and segmentation."""

    image_name: str
    index: int | None
    segmentation: Any  # unet_core.pipeline.Segmentation
    voxel_size: tuple[float, ...] | None = None  # set for a 3D model's volume (3D instances)

    @property
    def probability(self) -> np.ndarray:
        """Foreground probability, float32, the spatial shape of the image (or slice)."""
        return self.segmentation.foreground

    @property
    def labels(self) -> np.ndarray:
        """Instance labels, uint32, the spatial shape of the image (or slice)."""
        return self.segmentation.labels


def predict_job(
    model: Any,
    checkpoint: Path | None,
    image: np.ndarray,
    channel_axis: int | None,
    index: int | None,
    tta: bool,
    device: str,
    postprocess: PostprocessConfig,
    image_name: str = "",
    voxel_size: tuple[float, ...] | None = None,
) -> Generator:
    """Worker generator: load the model if needed, then the engine's pipeline (tiles, instances).

    A 3D model segments the whole stack (``index`` ignored) into 3D instances, with the layer's
    ``voxel_size`` (z, y, x) for the anisotropic post-processing."""
    from unet_core.checkpoint import load_checkpoint
    from unet_core.pipeline import iter_segment

    if model is None:
        model = load_checkpoint(checkpoint).model
    volume = model.config.spatial_dims == 3
    if volume:
        index, options = None, {"voxel_size": voxel_size}
    else:
        options, voxel_size = {}, None
    data = image[index] if index is not None else image
    segmentation = yield from iter_segment(
        model, data, postprocess, channel_axis=channel_axis, device=device, tta=tta, **options
    )
    return PredictionResult(image_name, index, segmentation, voxel_size if volume else None)


def reapply_job(result: PredictionResult, postprocess: PostprocessConfig) -> Generator:
    """Worker generator: post-process the kept probabilities of ``result`` again."""
    from unet_core.pipeline import segment_probabilities
    from unet_core.progress import Progress

    yield Progress("postprocess", 0, 1, "instances")
    probs = result.segmentation.probabilities
    if result.voxel_size is not None:  # a 3D model's volume
        from unet_core.pipeline import Segmentation
        from unet_core.postprocess import volume_to_instances

        labels = volume_to_instances(probs, postprocess, sampling=result.voxel_size)
        seg = Segmentation(probs, result.segmentation.foreground, labels, postprocess)
    else:
        seg = segment_probabilities(probs, postprocess)
    return PredictionResult(result.image_name, result.index, seg, result.voxel_size)


class PredictWidget(QWidget):
    """Segment an image layer with a trained model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.model_source = ModelSourceChooser(
            new_model=False, saved_only=False, placeholder="model checkpoint (.pt)",
            missing_hint="train one in the Train widget or choose a checkpoint (.pt)",
        )
        self.model_combo = self.model_source.combo
        self.checkpoint_edit = self.model_source.checkpoint_edit
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([WHOLE, CURRENT])
        self.tta_check = QCheckBox("test-time augmentation (8 flips/rotations)")
        self.device_combo = QComboBox()
        self.device_combo.addItems([str(d) for d in field_choices(TrainConfig, "device")])
        self.post_form = ConfigForm(PostprocessConfig())
        self.reapply_timer = QTimer(self)
        self.reapply_timer.setSingleShot(True)
        self.reapply_timer.setInterval(REAPPLY_DELAY_MS)
        self.predict_button = QPushButton("Predict")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.use_button = QPushButton("Use as annotations (correct, then fine-tune)")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_source)
        form.addRow("predict", self.scope_combo)
        form.addRow("device", self.device_combo)
        form.addRow(self.tta_check)
        post_box = QGroupBox("Post-processing")
        QVBoxLayout(post_box).addWidget(self.post_form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.predict_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(post_box)
        layout.addLayout(buttons)
        layout.addWidget(self.use_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.runner = JobRunner("Prediction", parent=self)
        self.runner.finished.connect(self._on_finished)
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_as_annotations)
        self.post_form.changed.connect(self.reapply_timer.start)
        self.reapply_timer.timeout.connect(self.reapply_postprocess)
        self._source_name: str | None = None
        #: the last result, whose probabilities are post-processed again when the options change
        self.last_result: PredictionResult | None = None
        self._reapply_pending = False

    def reset_choices(self, event=None) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.image_combo.refresh()

    # -- model -----------------------------------------------------------------------------------
    def choose_checkpoint(self) -> None:
        """Pick a checkpoint file."""
        self.model_source.choose_checkpoint()

    def set_checkpoint(self, path: str | Path) -> None:
        """Predict with the checkpoint at ``path``."""
        self.model_source.set_checkpoint(path)

    def model_source_value(self) -> tuple[Any, Path | None]:
        """``(model, checkpoint)`` of a session model or ``(None, checkpoint path)``."""
        source = self.model_source.source()
        return source.model, source.checkpoint

    # -- running ---------------------------------------------------------------------------------
    def predict(self) -> bool:
        """Start the prediction in a worker; False (and a notification) when the input is unusable."""
        from napari.utils.notifications import show_error

        from unet_core.errors import InputError

        if self.runner.running:
            return False
        image = self.image_combo.layer
        try:
            if image is None:
                raise InputError("choose an image layer to segment")
            model, checkpoint = self.model_source_value()
            postprocess = self.post_form.value()
        except InputError as exc:
            show_error(f"Prediction: {exc}")
            return False
        data, channel_axis = image_array(image)
        index = current_index(self.viewer, image) if self.scope_combo.currentText() == CURRENT else None
        self._source_name = image.name
        self.predict_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Predicting '{image.name}'" + (f" slice {index}" if index is not None else "") + "...")
        self.runner.start(
            partial(
                predict_job, model, checkpoint if model is None else None, data, channel_axis, index,
                self.tta_check.isChecked(), self.device_combo.currentText(), postprocess, image.name,
                tuple(float(v) for v in image.scale[-3:]) if image.ndim >= 3 else None,
            ),
            torch_threads=worker_threads(),
        )
        return True

    def cancel(self) -> None:
        """Cancel the prediction after the current tile."""
        self.runner.stop()

    def _on_finished(self, outcome: JobOutcome) -> None:
        self.predict_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome.stopped:
            self.status.setText("Prediction cancelled.")
            return
        if not outcome.ok or outcome.value is None:
            self.status.setText(f"Prediction failed: {outcome.error}")
            return
        self.last_result = outcome.value
        self.show_result(outcome.value.image_name or self._source_name, outcome.value)
        if self._reapply_pending:
            self.reapply_postprocess()

    def reapply_postprocess(self) -> bool:
        """Post-process the last prediction again with the current options (no new prediction).

        Runs in the worker; called when the post-processing options change. False when there is
        nothing to redo, the options are out of range (the status says why), or a job runs (it
        is redone when that job ends).
        """
        from unet_core.errors import InputError

        result = self.last_result
        if result is None or find_layer(self.viewer, result.image_name, napari.layers.Image) is None:
            return False
        if self.runner.running:
            self._reapply_pending = True
            return False
        self._reapply_pending = False
        try:
            postprocess = self.post_form.value()
        except InputError as exc:
            self.status.setText(f"Post-processing: {exc}")
            return False
        if postprocess == result.segmentation.postprocess:
            return False
        self.predict_button.setEnabled(False)
        self.status.setText(f"Post-processing '{result.image_name}' again...")
        self.runner.start(partial(reapply_job, result, postprocess))
        return True

    def show_result(self, image_name: str, result: PredictionResult) -> None:
        """Add or replace the probability and prediction layers of ``image_name``."""
        image = find_layer(self.viewer, image_name, napari.layers.Image)
        if image is None:
            return
        shape = spatial_shape(image)
        prob_name, pred_name = image_name + PROBABILITY_SUFFIX, image_name + PREDICTION_SUFFIX
        geo = geometry(image)
        put_slice(
            self.viewer, "image", prob_name, result.probability, result.index, shape, colormap="viridis",
            opacity=0.5, blending="additive", contrast_limits=(0.0, 1.0), visible=False, **geo,
        )
        put_slice(self.viewer, "labels", pred_name, result.labels, result.index, shape, offset_ids=True, opacity=0.6, **geo)
        n = int(np.unique(result.labels).size - (1 if (result.labels == 0).any() else 0))
        self.status.setText(f"'{pred_name}': {n} objects" + (f" in slice {result.index}" if result.index is not None else ""))

    # -- human in the loop -----------------------------------------------------------------------
    def use_as_annotations(self) -> napari.layers.Labels | None:
        """Copy ``"<image> prediction"`` into ``"<image> labels"`` for correction."""
        from napari.utils.notifications import show_warning

        image = self.image_combo.layer
        pred = find_layer(self.viewer, image.name + PREDICTION_SUFFIX, napari.layers.Labels) if image else None
        if pred is None:
            show_warning("Use as annotations: predict the chosen image first.")
            return None
        data = np.asarray(pred.data)
        dtype = ANNOTATION_DTYPE if data.max(initial=0) <= np.iinfo(ANNOTATION_DTYPE).max else np.uint32
        name = image.name + LABELS_SUFFIX
        labels = find_layer(self.viewer, name, napari.layers.Labels)
        if labels is None:
            labels = self.viewer.add_labels(data.astype(dtype), name=name, **geometry(image))
        else:
            labels.data = data.astype(labels.data.dtype if data.max(initial=0) <= np.iinfo(labels.data.dtype).max else dtype)
        pred.visible = False
        self.viewer.layers.selection.active = labels
        labels.selected_label = int(np.max(labels.data)) + 1
        labels.mode = "paint"
        self.status.setText(f"Copied into '{name}': correct it, then fine-tune in the Train widget.")
        return labels
