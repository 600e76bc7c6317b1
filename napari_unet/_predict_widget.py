"""Predict dock widget: overlap-tile prediction of an image layer in a worker, with Cancel.

Results: ``"<image> probability"`` (foreground probability, Image) and ``"<image> prediction"``
(instances, Labels), with the source's scale/translate; re-running replaces them. **Use as
annotations** copies the prediction into ``"<image> labels"`` for correction, closing the loop
predict -> correct -> fine-tune.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import napari
import napari.layers
import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._config_form import CHOICES, ConfigForm
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
from ._project import models_dir
from ._registry import MODELS

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint file"
SESSION_PREFIX = "this session: "
WHOLE = "whole image / stack"
CURRENT = "current slice"


def _postprocess_default(name: str) -> Any:
    from unet_core.postprocess import probabilities_to_instances

    return inspect.signature(probabilities_to_instances).parameters[name].default


@dataclass(frozen=True)
class PostprocessOptions:
    """Options of ``probabilities_to_instances`` (defaults read from the engine's signature).

    Attributes
    ----------
    threshold : float
        Foreground probability threshold.
    split_touching : bool
        Split touching objects with a distance-transform watershed.
    min_size : int
        Objects smaller than this many pixels are removed.
    min_distance : int
        Minimum distance between watershed seeds in pixels.
    """

    threshold: float = _postprocess_default("threshold")
    split_touching: bool = _postprocess_default("split_touching")
    min_size: int = _postprocess_default("min_size")
    min_distance: int = _postprocess_default("min_distance")


@dataclass(frozen=True)
class PredictionResult:
    """What a prediction job returns: slice index (None = whole), foreground probability, labels."""

    index: int | None
    probability: np.ndarray
    labels: np.ndarray


def predict_job(
    model: Any,
    checkpoint: Path | None,
    image: np.ndarray,
    channel_axis: int | None,
    index: int | None,
    tta: bool,
    device: str,
    options: PostprocessOptions,
) -> Generator:
    """Worker generator: load the model if needed, predict tiles, post-process."""
    from unet_core.checkpoint import load_checkpoint
    from unet_core.postprocess import foreground_probability, probabilities_to_instances
    from unet_core.progress import Progress
    from unet_core.tiling import iter_predict_tiled

    if model is None:
        model = load_checkpoint(checkpoint).model
    data = image[index] if index is not None else image
    probs = yield from iter_predict_tiled(model, data, channel_axis=channel_axis, device=device, tta=tta)
    yield Progress("postprocess", 0, 0, "instances")
    labels = probabilities_to_instances(
        probs, threshold=options.threshold, split_touching=options.split_touching,
        min_size=options.min_size, min_distance=options.min_distance,
    )
    return PredictionResult(index, foreground_probability(probs), labels)


class PredictWidget(QWidget):
    """Segment an image layer with a trained model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.model_combo = QComboBox()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("model checkpoint (.pt)")
        self.checkpoint_button = QPushButton("...")
        self.checkpoint_button.setMaximumWidth(30)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([WHOLE, CURRENT])
        self.tta_check = QCheckBox("test-time augmentation (8 flips/rotations)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(CHOICES["device"]())
        self.post_form = ConfigForm(PostprocessOptions())
        self.predict_button = QPushButton("Predict")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.use_button = QPushButton("Use as annotations (correct, then fine-tune)")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        ck_row = QHBoxLayout()
        ck_row.addWidget(self.checkpoint_edit)
        ck_row.addWidget(self.checkpoint_button)
        form.addRow(ck_row)
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
        self.checkpoint_button.clicked.connect(self.choose_checkpoint)
        self.model_combo.currentTextChanged.connect(self._on_model_changed)
        self._source_name: str | None = None
        MODELS.changed.connect(self._refresh_models)
        self._refresh_models()

    def reset_choices(self, event=None) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.image_combo.refresh()

    # -- model -----------------------------------------------------------------------------------
    def _refresh_models(self) -> None:
        try:
            self._list_models()
        except RuntimeError:  # the widget was deleted with its viewer
            MODELS.changed.disconnect(self._refresh_models)

    def _list_models(self) -> None:
        names = [SESSION_PREFIX + n for n in MODELS.names()]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems([*reversed(names), CHECKPOINT_FILE])  # newest first
        self.model_combo.setCurrentIndex(0)
        self.model_combo.blockSignals(False)
        self._on_model_changed()

    def _on_model_changed(self, *_) -> None:
        is_file = self.model_combo.currentText() == CHECKPOINT_FILE
        self.checkpoint_edit.setEnabled(is_file)
        self.checkpoint_button.setEnabled(is_file)

    def choose_checkpoint(self) -> None:
        """Pick a checkpoint file."""
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", str(models_dir()), "Checkpoints (*.pt)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        """Predict with the checkpoint at ``path``."""
        self.checkpoint_edit.setText(str(path))
        self.model_combo.setCurrentText(CHECKPOINT_FILE)

    def model_source(self) -> tuple[Any, Path | None]:
        """``(model, None)`` for a session model or ``(None, checkpoint path)``."""
        from unet_core.errors import InputError

        choice = self.model_combo.currentText()
        if choice.startswith(SESSION_PREFIX):
            entry = MODELS.get(choice[len(SESSION_PREFIX):])
            if entry is not None:
                return entry.model, entry.checkpoint
        text = self.checkpoint_edit.text().strip()
        if not text or not Path(text).expanduser().is_file():
            raise InputError(
                f"model {text or '(none)'} not found; train one in the Train widget or choose a checkpoint (.pt)"
            )
        return None, Path(text).expanduser()

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
            model, checkpoint = self.model_source()
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
                self.tta_check.isChecked(), self.device_combo.currentText(), self.post_form.value(),
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
        self.show_result(self._source_name, outcome.value)

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
