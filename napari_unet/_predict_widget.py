"""Predict dock widget: overlap-tile prediction of an image layer in a worker, with Cancel.

Results: ``"<image> probability"`` (foreground probability, Image) and ``"<image> prediction"``
(instances, Labels), with the source's scale/translate/unit; re-running replaces them (and shows
the prediction layer again if it was hidden). The post-processing options start from the model's
own (:func:`unet_core.pipeline.postprocess_for`) whenever the model changes; changing them
post-processes the kept probabilities again, without a new prediction. **Use as annotations**
merges the prediction into ``"<image> labels"`` (painted objects stay; predicted objects are
added where nothing is painted) or replaces it (after asking when painted objects would be
lost), as one undoable step (Ctrl+Z), closing the loop predict -> correct -> fine-tune.

For huge (lazy: dask/zarr) images, **Predict visible field of view** segments only what the
canvas shows (at most :data:`~napari_unet._fov.MAX_FOV_EDGE` pixels per side, with the
network's halo read around it and the whole image's intensity statistics) into
``"<image> fov probability"`` / ``"<image> fov prediction"`` placed over that window, and
**Predict whole image to file...** runs the engine's block-wise prediction into an OME-Zarr
(or zarr / TIFF) and opens its labels lazily (a multiscale Labels layer).
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
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet_core.config import PostprocessConfig, TrainConfig, field_choices

from ._annotations import annotation_dtype, count_objects, merge_annotations, painted_objects_lost
from ._config_form import ConfigForm
from ._dock import fit_dock
from ._fov import (
    OUTPUT_SUFFIXES,
    FovResult,
    default_output,
    fov_job,
    to_file_job,
    visible_window,
    window_translate,
)
from ._jobs import JobOutcome, JobRunner, worker_threads
from ._layers import (
    LABELS_SUFFIX,
    PREDICTION_SUFFIX,
    PROBABILITY_SUFFIX,
    LayerChooser,
    PixelSizeRow,
    current_index,
    find_layer,
    geometry,
    image_array,
    put_slice,
    real_viewer,
    set_labels_undoable,
    spatial_shape,
)
from ._model_source import CHECKPOINT_FILE, SESSION_PREFIX, ModelSourceChooser
from ._project import ask_overwrite

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILE", "SESSION_PREFIX", "PredictWidget", "PredictionResult", "predict_job"]

WHOLE = "whole image / stack"
CURRENT = "current slice"
#: "Use as annotations" modes: keep painted objects and add predicted ones, or replace them
MERGE = "merge"
REPLACE = "replace"
USE_MODES = {MERGE: "merge: keep painted objects, add predicted ones", REPLACE: "replace painted objects"}
#: milliseconds without further edits of the post-processing options before they are re-applied
REAPPLY_DELAY_MS = 400
#: name endings of the field-of-view result layers (the whole-image ones stay untouched)
FOV_PROBABILITY_SUFFIX = " fov probability"
FOV_PREDICTION_SUFFIX = " fov prediction"


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
    from unet_core.pipeline import iter_segment
    from unet_core.sources import load_model

    if model is None:
        loaded = load_model(checkpoint)  # a checkpoint, a built-in model or a bioimage.io package
        model = getattr(loaded, "model", loaded)
    volume = getattr(getattr(model, "config", None), "spatial_dims", 2) == 3
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
    seg = segment_probabilities(  # a 3D model's volume keeps its voxel size
        result.segmentation.probabilities, postprocess,
        volume=result.voxel_size is not None, voxel_size=result.voxel_size,
    )
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
        self.use_mode_combo = QComboBox()
        for mode, text in USE_MODES.items():
            self.use_mode_combo.addItem(text, mode)
        self.pixel_size = PixelSizeRow(self.viewer)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("pixel size", self.pixel_size)
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
        layout.addLayout(self._huge_image_buttons())
        layout.addWidget(self.use_button)
        layout.addWidget(self.use_mode_combo)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.runner = JobRunner("Prediction", parent=self)
        self.runner.finished.connect(self._on_finished)
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_as_annotations)
        self.post_form.changed.connect(self.reapply_timer.start)
        self.reapply_timer.timeout.connect(self.reapply_postprocess)
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.model_source.changed.connect(self._on_model_changed)
        self.checkpoint_edit.textChanged.connect(self._on_model_changed)
        #: what the post-processing form was last reset for (a model's id or a checkpoint's path+mtime)
        self._model_key: Any = None
        self._on_image_changed()
        self._on_model_changed()
        self._source_name: str | None = None
        #: the last result, whose probabilities are post-processed again when the options change
        self.last_result: PredictionResult | None = None
        self._reapply_pending = False
        #: (level-0 data, model key, statistics) of the last field of view: sampled once per image
        self._stats_cache: tuple[Any, Any, Any] | None = None
        self._fov_capped = False
        fit_dock(self, guide="Predict")  # last: scroll, fold, wheel-safe

    def reset_choices(self, event=None) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.image_combo.refresh()
        self.pixel_size.set_layer(self.image_combo.layer)

    def _on_image_changed(self, *_) -> None:
        self.pixel_size.set_layer(self.image_combo.layer)

    # -- model -----------------------------------------------------------------------------------
    def choose_checkpoint(self) -> None:
        """Pick a checkpoint file."""
        self.model_source.choose_checkpoint()

    def set_checkpoint(self, path: str | Path) -> None:
        """Predict with the checkpoint at ``path``."""
        self.model_source.set_checkpoint(path)

    def _on_model_changed(self, *_) -> None:
        """Reset the post-processing options to the chosen model's own (once per model)."""
        from unet_core.errors import CheckpointError, InputError
        from unet_core.pipeline import postprocess_for

        try:
            model, checkpoint = self.model_source_value()
        except InputError:
            return  # no usable model chosen (yet): keep the options
        source: Any = model if getattr(model, "meta", None) is not None else checkpoint
        if source is None:
            key, source = ("model", id(model)), None
        elif isinstance(source, Path):
            if not source.is_file():
                return
            key = ("file", str(source), source.stat().st_mtime_ns)
        else:
            key = ("model", id(source))
        if key == self._model_key:
            return
        self._model_key = key
        try:
            config = postprocess_for(source)
        except CheckpointError as exc:  # the prediction will say it again, with the fix
            log.warning("cannot read the model's post-processing: %s", exc)
            config = PostprocessConfig()
        self.set_postprocess(config)

    def set_postprocess(self, config: PostprocessConfig) -> None:
        """Show ``config`` in the post-processing form (without post-processing the last result again)."""
        self.post_form.blockSignals(True)
        try:
            for name in self.post_form.editors:
                self.post_form.set(name, getattr(config, name))
        finally:
            self.post_form.blockSignals(False)

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
        self._busy()
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
        from unet_core.blockwise_output import FileSegmentation

        for button in (self.predict_button, self.fov_button, self.file_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome.stopped:
            self.status.setText("Prediction cancelled.")
            return
        if not outcome.ok or outcome.value is None:
            self.status.setText(f"Prediction failed: {outcome.error}")
            return
        if isinstance(outcome.value, FovResult):
            self.show_fov(outcome.value)
            return
        if isinstance(outcome.value, FileSegmentation):
            self.show_file_result(outcome.value)
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
        pred = put_slice(
            self.viewer, "labels", pred_name, result.labels, result.index, shape, offset_ids=True, opacity=0.6, **geo
        )
        self._bring_into_view(pred)
        n = count_objects(result.labels)
        self.status.setText(f"'{pred_name}': {n} objects" + (f" in slice {result.index}" if result.index is not None else ""))

    # -- huge (lazy) images: the field of view, the whole image to a file ------------------------
    def _huge_image_buttons(self) -> QHBoxLayout:
        """The row "Predict visible field of view" | "Predict whole image to file..."."""
        self.fov_button = QPushButton("Predict visible field of view")
        self.fov_button.setToolTip(
            "Segment only what the canvas shows (up to 4096 x 4096 pixels), for huge lazy images"
        )
        self.file_button = QPushButton("Predict whole image to file...")
        self.file_button.setToolTip(
            "Block-wise prediction of the whole image into an OME-Zarr (.zarr/.tif), opened lazily"
        )
        self.fov_button.clicked.connect(lambda: self.predict_fov())
        self.file_button.clicked.connect(lambda: self.predict_to_file())
        row = QHBoxLayout()
        row.addWidget(self.fov_button)
        row.addWidget(self.file_button)
        return row

    def _busy(self) -> None:
        for button in (self.predict_button, self.fov_button, self.file_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def _job_inputs(self) -> tuple[napari.layers.Image, Any, Path | None, PostprocessConfig, Any]:
        """``(image layer, model, checkpoint, post-processing, level-0 data)``; InputError if unusable."""
        from unet_core.errors import InputError

        image = self.image_combo.layer
        if image is None:
            raise InputError("choose an image layer to segment")
        model, checkpoint = self.model_source_value()
        postprocess = self.post_form.value()
        data = image.data[0] if getattr(image, "multiscale", False) else image.data
        return image, model, checkpoint if model is None else None, postprocess, data

    def fov_window(self, image: napari.layers.Image) -> tuple[tuple[int, ...], Any]:
        """``(lead, window)``: the slice shown (leading axes) and the level-0 pixels the canvas
        shows of ``image`` (:func:`~napari_unet._fov.visible_window`)."""
        from unet_core.errors import InputError

        from ._live_widget import camera

        dims, nd = self.viewer.dims, image.ndim
        if dims.ndisplay != 2 or tuple(dims.order[-2:]) != (dims.ndim - 2, dims.ndim - 1):
            raise InputError("the field of view needs the 2D view of the image's last two axes (View > 2D)")
        shape = tuple(int(n) for n in (image.data[0] if image.multiscale else image.data).shape)
        spatial = shape[:-1] if image.rgb else shape
        point = image.world_to_data(dims.point)
        lead = tuple(int(np.clip(round(float(point[i])), 0, spatial[i] - 1)) for i in range(nd - 2))
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9: (height, width)
        size = tuple(int(v) for v in canvas.size) if canvas is not None else None
        if size is None:  # an older napari without the canvas model: the whole image, capped
            center = tuple(image.translate[-2:] + image.scale[-2:] * np.array(spatial[-2:]) / 2)
            size, zoom = tuple(float(s) * n for s, n in zip(image.scale[-2:], spatial[-2:])), 1.0
        else:
            center, zoom = tuple(camera(self.viewer).center[-2:]), float(camera(self.viewer).zoom)
        window = visible_window(center, zoom, size, tuple(image.scale[-2:]), tuple(image.translate[-2:]), spatial[-2:])
        return lead, window

    def predict_fov(self) -> bool:
        """Segment the part of the chosen image that the canvas shows, in a worker.

        Reads only that window (plus the network's halo) of a lazy image; normalised with the
        whole image's statistics (sampled once per image and kept). False (and a notification)
        when the input is unusable or a job runs.
        """
        from napari.utils.notifications import show_error

        from unet_core.errors import InputError

        if self.runner.running:
            return False
        try:
            image, model, checkpoint, postprocess, data = self._job_inputs()
            lead, window = self.fov_window(image)
        except InputError as exc:
            show_error(f"Field of view: {exc}")
            return False
        cached = self._stats_cache
        key = self._model_key
        stats = cached[2] if cached is not None and cached[0] is data and cached[1] == key else None
        self._busy()
        self._fov_capped = window.capped
        (y0, x0), (y1, x1) = window.origin, window.stop
        note = f" (cut to {y1 - y0} x {x1 - x0} around the centre)" if window.capped else ""
        self.status.setText(f"Predicting the field of view of '{image.name}'{note}...")
        self.runner.start(
            partial(
                fov_job, model, checkpoint, data, -1 if image.rgb else None, lead, window, postprocess,
                self.device_combo.currentText(), self.tta_check.isChecked(), image.name, stats,
            ),
            torch_threads=worker_threads(),
        )
        return True

    def show_fov(self, result: FovResult) -> None:
        """Add or replace ``"<image> fov probability"`` and ``"<image> fov prediction"`` over the window."""
        image = find_layer(self.viewer, result.image_name, napari.layers.Image)
        if image is None:
            return
        data = image.data[0] if image.multiscale else image.data
        self._stats_cache = (data, self._model_key, result.stats)
        seg = result.segmentation
        lead_shape = (1,) * len(result.lead)
        geo = geometry(image)
        geo["translate"] = window_translate(image.scale, image.translate, result.lead, result.origin)
        name = result.image_name
        self.viewer.layers.selection.clear()
        for layer_name in (name + FOV_PROBABILITY_SUFFIX, name + FOV_PREDICTION_SUFFIX):
            if (old := find_layer(self.viewer, layer_name)) is not None:
                self.viewer.layers.remove(old)
        self.viewer.add_image(
            seg.foreground.reshape(lead_shape + seg.foreground.shape), name=name + FOV_PROBABILITY_SUFFIX,
            colormap="viridis", opacity=0.5, blending="additive", contrast_limits=(0.0, 1.0), visible=False, **geo,
        )
        self.viewer.add_labels(
            seg.labels.reshape(lead_shape + seg.labels.shape), name=name + FOV_PREDICTION_SUFFIX, opacity=0.6, **geo
        )
        h, w = seg.labels.shape
        y, x = result.origin
        cut = " (the view was cut to this size)" if self._fov_capped else ""
        self.status.setText(
            f"'{name + FOV_PREDICTION_SUFFIX}': {count_objects(seg.labels)} objects in the "
            f"{h} x {w} window at ({y}, {x}){cut}"
        )

    def choose_output(self, suggested: Path) -> Path | None:
        """Ask for the output path (tests monkeypatch this); None when cancelled."""
        filters = "OME-Zarr (*.ome.zarr);;zarr array (*.zarr);;tiled TIFF (*.tif *.tiff)"
        path, _ = QFileDialog.getSaveFileName(self, "Predict whole image to", str(suggested), filters)
        return Path(path) if path else None

    def confirm_overwrite(self, paths: list[Path]) -> bool:
        """Ask before replacing existing files (tests monkeypatch this)."""
        return ask_overwrite(self, paths)

    def predict_to_file(self, output: str | Path | None = None) -> bool:
        """Segment the whole chosen image block by block into a file, then open its labels lazily.

        Parameters
        ----------
        output : path, optional
            ``.ome.zarr`` (default ending), ``.zarr`` or ``.tif``; None: ask
            (:meth:`choose_output`). An existing path is replaced only after
            :meth:`confirm_overwrite`.
        """
        from napari.utils.notifications import show_error

        from unet_core.errors import InputError

        if self.runner.running:
            return False
        try:
            image, model, checkpoint, postprocess, data = self._job_inputs()
            if output is None:
                output = self.choose_output(default_output(image.metadata.get("source"), image.name))
                if output is None:
                    return False
            output = Path(output)
            if not str(output).lower().endswith(OUTPUT_SUFFIXES):
                raise InputError(f"{output.name}: give a name ending in {', '.join(OUTPUT_SUFFIXES)}")
        except InputError as exc:
            show_error(f"Predict to file: {exc}")
            return False
        if output.exists() and not self.confirm_overwrite([output]):
            self.status.setText(f"{output} kept unchanged.")
            return False
        from ._pixel_size import layer_pixel_size

        sizes, unit = layer_pixel_size(image)
        self._busy()
        self._source_name = image.name
        self.status.setText(f"Predicting '{image.name}' block by block into {output.name}...")
        self.runner.start(
            partial(
                to_file_job, model, checkpoint, data, -1 if image.rgb else None, output, postprocess,
                self.device_combo.currentText(), self.tta_check.isChecked(), sizes, unit, worker_threads(),
            ),
            torch_threads=worker_threads(),
        )
        return True

    def show_file_result(self, result: Any) -> napari.layers.Labels | None:
        """Open the written labels lazily over the image (a multiscale layer for an OME-Zarr)."""
        from ._fov import open_labels_levels

        image = find_layer(self.viewer, self._source_name or "", napari.layers.Image)
        levels, kwargs = open_labels_levels(result.path)
        name = result.path.name
        if (old := find_layer(self.viewer, name)) is not None:
            self.viewer.layers.remove(old)
        geo = geometry(image) if image is not None else {}
        layer = self.viewer.add_labels(levels, name=name, opacity=0.6, **kwargs, **geo)
        self.status.setText(f"Wrote {result.path}: {result.n_objects} objects; opened as '{name}'.")
        return layer

    def _bring_into_view(self, layer) -> None:
        """Show ``layer`` on top when it was hidden (e.g. by "Use as annotations"), so that a
        new result never lands in a layer the user does not see."""
        if layer.visible:
            return
        layer.visible = True
        layers = self.viewer.layers
        layers.move(layers.index(layer), len(layers))

    # -- human in the loop -----------------------------------------------------------------------
    def confirm_replace(self, name: str, n_lost: int) -> bool:
        """Ask before replacing painted objects (tests monkeypatch this)."""
        answer = QMessageBox.question(
            self, "Replace annotations?",
            f"Replacing '{name}' with the prediction discards {n_lost} painted object(s).\n"
            "Replace them? (Choose No and the 'merge' mode to keep them.)",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def use_as_annotations(self, mode: str | None = None) -> napari.layers.Labels | None:
        """Put ``"<image> prediction"`` into ``"<image> labels"`` for correction.

        Parameters
        ----------
        mode : {'merge', 'replace'} or None
            ``'merge'`` keeps every painted object and adds the predicted objects that touch no
            painted pixel (:func:`merge_annotations`); ``'replace'`` replaces the annotations,
            after :meth:`confirm_replace` when painted objects would be lost. None: the mode
            chosen in the widget.

        Returns
        -------
        The annotation layer, or None when nothing was changed. The change is one undo step of
        the layer (Ctrl+Z restores the painted labels).
        """
        from napari.utils.notifications import show_warning

        from unet_core.errors import InputError

        mode = mode if mode in USE_MODES else self.use_mode_combo.currentData()  # clicked passes a bool
        image = self.image_combo.layer
        pred = find_layer(self.viewer, image.name + PREDICTION_SUFFIX, napari.layers.Labels) if image else None
        if pred is None:
            show_warning("Use as annotations: predict the chosen image first.")
            return None
        predicted = np.asarray(pred.data)
        name = image.name + LABELS_SUFFIX
        labels = find_layer(self.viewer, name, napari.layers.Labels)
        if labels is None:
            labels = self.viewer.add_labels(
                predicted.astype(annotation_dtype(int(predicted.max(initial=0)))), name=name, **geometry(image)
            )
            return self._annotations_ready(pred, labels, f"Copied into '{name}'")
        painted = np.asarray(labels.data)
        try:
            if mode == MERGE:
                new = merge_annotations(painted, predicted)
            else:
                new = predicted.astype(annotation_dtype(int(predicted.max(initial=0))))
            lost = painted_objects_lost(painted, new)
        except InputError as exc:
            show_warning(f"Use as annotations: {exc}.")
            return None
        if lost and not self.confirm_replace(name, lost):
            self.status.setText(f"'{name}' kept unchanged.")
            return None
        undoable = set_labels_undoable(labels, new)
        added = count_objects(new) - count_objects(painted) if mode == MERGE else count_objects(new)
        verb = f"Merged {added} predicted object(s) into" if mode == MERGE else "Replaced"
        note = " (Ctrl+Z undoes it)" if undoable else " (too large to undo; the autosave keeps earlier versions)"
        return self._annotations_ready(pred, labels, f"{verb} '{name}'{note}")

    def _annotations_ready(self, pred, labels, done: str) -> napari.layers.Labels:
        pred.visible = False
        self.viewer.layers.selection.active = labels
        labels.selected_label = int(np.max(labels.data)) + 1
        labels.mode = "paint"
        self.status.setText(f"{done}: correct it, then fine-tune in the Train widget.")
        return labels
