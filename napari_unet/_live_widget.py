"""Live dock widget: training keeps running while you paint, the view's prediction follows.

The engine's live session (:mod:`unet_core.training.live`) runs in its own spawned process
(:class:`unet_core.processes.DuplexJob`), so the viewer never waits for it. The dock

- sends the whole labels layer (and region) as a snapshot ~1 s after the last paint stroke;
- asks for a prediction of the visible field of view ~2.5 s after the camera or the slice
  changed, and right after each snapshot reached the trainer;
- writes the answers into two layers, only in the predicted window: ``"<image> live
  prediction"`` (foreground probability) and ``"<image> uncertainty"`` (1 where the model is
  least sure: paint there next);
- Pause / Resume training explicitly; Stop saves the checkpoint (atomic; an existing file is
  replaced only after asking, at Start) and registers the model for the Predict widget.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from pathlib import Path

import napari
import napari.layers
import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._config_form import ConfigForm
from ._dock import fit_dock
from ._jobs import worker_threads
from ._layers import (
    LABELS_SUFFIX,
    REGION_SUFFIX,
    LayerChooser,
    current_index,
    find_layer,
    geometry,
    image_array,
    real_viewer,
    region_mask,
    spatial_shape,
)
from ._model_source import ModelSourceChooser
from ._project import ask_overwrite, models_dir, safe_name
from ._registry import MODELS, ModelEntry

log = logging.getLogger(__name__)

LIVE_PREDICTION_SUFFIX = " live prediction"
UNCERTAINTY_SUFFIX = " uncertainty"
#: quiet time after the last stroke before the annotation is sent (ms)
SNAPSHOT_DELAY_MS = 1000
#: quiet time after a camera/slice change before the field of view is predicted (ms)
VIEW_DELAY_MS = 2500
#: how often the session's records are collected (ms)
POLL_MS = 100

Window = tuple[tuple[int, int], ...]


def visible_window(
    center: tuple[float, float],
    zoom: float,
    canvas: tuple[int, int],
    scale: tuple[float, float],
    translate: tuple[float, float],
    shape: tuple[int, int],
) -> Window | None:
    """The pixels of a layer inside the canvas, as ``((y0, y1), (x0, x1))`` (None if none).

    Parameters
    ----------
    center : (y, x)
        ``viewer.camera.center`` of the displayed axes, world units.
    zoom : float
        Screen pixels per world unit.
    canvas : (height, width)
        Canvas size in screen pixels.
    scale, translate : (y, x)
        The layer's world placement of its last two axes.
    shape : (Y, X)
        The layer's spatial shape.
    """
    out = []
    for c, n_screen, s, t, n in zip(center, canvas, scale, translate, shape):
        half = n_screen / max(zoom, 1e-9) / 2.0
        lo = math.floor((c - half - t) / s)
        hi = math.ceil((c + half - t) / s)
        lo, hi = max(0, lo), min(int(n), hi)
        if hi <= lo:
            return None
        out.append((lo, hi))
    return tuple(out)


def put_window(viewer, name: str, value: np.ndarray, window: Window, index: int | None,
               shape: tuple[int, ...], **kwargs):
    """Write ``value`` into ``window`` (of slice ``index``) of the Image layer ``name``.

    The layer (float32 zeros of ``shape``) is created with ``kwargs`` when it is missing or no
    longer fits; only the window changes, then the layer is refreshed.
    """
    layer = find_layer(viewer, name, napari.layers.Image)
    if layer is None or layer.data.shape != tuple(shape) or layer.data.dtype != value.dtype:
        if layer is not None:
            viewer.layers.remove(layer)
        layer = viewer.add_image(np.zeros(shape, value.dtype), name=name, **kwargs)
    cut = tuple(slice(a, b) for a, b in window)
    target = layer.data if index is None else layer.data[index]
    target[cut] = value
    layer.refresh()
    return layer


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class LiveWidget(QWidget):
    """Live training on one image/labels pair, with a live prediction of the field of view."""

    #: emitted with the engine's LivePrediction once it is shown in the layers
    prediction_shown = Signal(object)
    #: emitted with the 'snapshot' record when annotations reached the trainer
    snapshot_arrived = Signal(object)
    #: emitted with the LiveResult (or None after a failure) when the session has ended
    finished = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.job = None
        self.result = None
        self.checkpoint: Path | None = None
        self.labels_layer = None
        self.image_layer = None
        self.snapshot_id = self.request_id = 0
        self.last_record = None
        self.snapshot_arrived_at: float | None = None
        self.snapshot_delay: float | None = None
        self.predictions_shown = 0
        self.last_prediction = None
        self._build()
        self.snapshot_timer = self._timer(SNAPSHOT_DELAY_MS, self.send_snapshot, single=True)
        self.view_timer = self._timer(VIEW_DELAY_MS, self.request_view, single=True)
        self.poll_timer = self._timer(POLL_MS, self.poll, single=False)
        self.status_timer = self._timer(1000, self.update_status, single=False)
        self.reap_timer = self._timer(250, self.reap, single=False)
        self._ending: list = []
        self._received: queue.Queue = queue.Queue()
        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        self.model_source.changed.connect(self._on_source_changed)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self._on_source_changed()
        self._on_image_chosen()
        fit_dock(self, guide="Live mode")  # last: scroll, fold, wheel-safe

    def _timer(self, ms: int, slot, *, single: bool) -> QTimer:
        timer = QTimer(self)
        timer.setInterval(ms)
        timer.setSingleShot(single)
        timer.timeout.connect(slot)
        return timer

    def _build(self) -> None:
        from unet_core.training.live import LIVE_DEFAULTS

        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.labels_combo = LayerChooser(self.viewer, napari.layers.Labels)
        self.region_combo = LayerChooser(self.viewer, napari.layers.Shapes, optional=True)
        data_box = QGroupBox("Data")
        data_form = QFormLayout(data_box)
        data_form.addRow("image", self.image_combo)
        data_form.addRow("labels", self.labels_combo)
        data_form.addRow("region", self.region_combo)
        self.model_source = ModelSourceChooser(
            new_model=True, saved_only=True, placeholder="checkpoint to continue (.pt)",
            missing_hint="choose a .pt file to continue training",
        )
        self.model_form = ConfigForm(LIVE_DEFAULTS.model, fields=("depth", "base_channels"))
        self.train_form = ConfigForm(LIVE_DEFAULTS, fields=("learning_rate", "batch_size", "tile_size", "device"))
        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        model_form.addRow("start from", self.model_source)
        model_form.addRow(self.model_form)
        model_form.addRow(self.train_form)
        self.output_edit = QLineEdit()
        model_form.addRow("save to", self.output_edit)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        self.status = QLabel("Paint in the labels layer; Start trains while you paint.")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(self.status.fontMetrics().lineSpacing() * 3)
        self.status.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(data_box)
        layout.addWidget(model_box)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        for w in (self.image_combo, self.labels_combo, self.region_combo, self.model_source,
                  self.model_form, self.train_form, self.output_edit):
            w.setEnabled(not running)
        if not running:
            self.pause_button.setText("Pause")
            self._on_source_changed()

    def reset_choices(self, event=None) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        for combo in (self.image_combo, self.labels_combo, self.region_combo):
            combo.refresh()

    def _on_source_changed(self, *_) -> None:
        self.model_form.setEnabled(self.job is None and self.model_source.is_new())

    def _on_image_chosen(self, *_) -> None:
        image = self.image_combo.layer
        if image is None:
            return
        labels = find_layer(self.viewer, image.name + LABELS_SUFFIX, napari.layers.Labels)
        if labels is not None:
            self.labels_combo.set_layer(labels)
        region = find_layer(self.viewer, image.name + REGION_SUFFIX, napari.layers.Shapes)
        self.region_combo.set_layer(region)
        text = self.output_edit.text()
        if not text or text.startswith(str(models_dir())):
            self.output_edit.setText(str(models_dir() / f"{safe_name(image.name)}-live.pt"))

    # -- starting --------------------------------------------------------------------------------
    def config(self, channels: int):
        """The session's TrainConfig: the live defaults with the form's values."""
        from dataclasses import replace

        from unet_core.training.live import LIVE_DEFAULTS

        model = replace(self.model_form.value(LIVE_DEFAULTS.model), in_channels=channels)
        return self.train_form.value(replace(LIVE_DEFAULTS, model=model))

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing an existing checkpoint (tests monkeypatch this)."""
        return ask_overwrite(self, [path])

    def _inputs(self):
        """Checked inputs: (image layer, labels layer, output path, init_from)."""
        from unet_core.errors import InputError

        image, labels = self.image_combo.layer, self.labels_combo.layer
        if image is None or labels is None:
            raise InputError("choose an image and its labels layer (the Annotate widget makes one)")
        if tuple(labels.data.shape) != spatial_shape(image):
            raise InputError(
                f"labels {labels.name!r} {tuple(labels.data.shape)} do not cover image "
                f"{image.name!r} {spatial_shape(image)}; choose the labels painted on this image"
            )
        text = self.output_edit.text().strip()
        if not text:
            raise InputError("choose where to save the checkpoint ('save to')")
        output = Path(text).expanduser()
        output = output if output.suffix == ".pt" else output.with_suffix(".pt")
        init = None if self.model_source.is_new() else self.model_source.source().checkpoint
        return image, labels, output, init

    def start(self) -> bool:
        """Start the live session; False when the input is not usable (a notification says why)."""
        from napari.utils.notifications import show_error

        from unet_core.errors import CheckpointError, InputError
        from unet_core.processes import DuplexJob
        from unet_core.training.live import live_training

        if self.job is not None:
            return False
        try:
            image, labels, output, init = self._inputs()
            data, channel_axis = image_array(image)
            channels = 1 if channel_axis is None else int(data.shape[channel_axis])
            config = self.config(channels)
        except (InputError, CheckpointError) as exc:
            show_error(f"Live: {exc}")
            return False
        if output.exists() and not self.confirm_overwrite(output):
            self.status.setText("Not started: choose another checkpoint file ('save to').")
            return False
        output.parent.mkdir(parents=True, exist_ok=True)
        self.image_layer, self.labels_layer, self.checkpoint = image, labels, output
        self.result, self.last_record, self.snapshot_arrived_at = None, None, None
        self.job = DuplexJob(
            live_training, np.array(data, copy=True), config, channel_axis=channel_axis,
            name=image.name, output=output, init_from=init, first=self._snapshot(),
            threads=worker_threads(),
        )
        self._connect(True)
        self._set_running(True)
        self._received = queue.Queue()
        threading.Thread(target=self._read, args=(self.job, self._received), daemon=True,
                         name="napari-unet live reader").start()
        self.poll_timer.start()
        self.status_timer.start()
        self.status.setText("Starting the live session (a separate process)...")
        return True

    def _connect(self, on: bool) -> None:
        """(Dis)connect painting, camera and slice events."""
        labels, cam, dims = self.labels_layer.events, camera(self.viewer).events, self.viewer.dims.events
        pairs = [(labels.paint, self._on_paint), (labels.data, self._on_paint),
                 (cam.center, self._on_view), (cam.zoom, self._on_view),
                 (dims.current_step, self._on_view)]
        for emitter, slot in pairs:
            (emitter.connect if on else emitter.disconnect)(slot)

    # -- snapshots and requests ------------------------------------------------------------------
    def _snapshot(self):
        """The whole annotation now, as the engine's Snapshot (labels copied, small dtype)."""
        from unet_core.training.live import Snapshot

        labels = np.array(self.labels_combo.layer.data if self.labels_layer is None else self.labels_layer.data)
        if labels.dtype.itemsize > 4 and labels.max(initial=0) <= np.iinfo(np.uint32).max:
            labels = labels.astype(np.uint32)
        region = self.region_combo.layer
        self.snapshot_id += 1
        return Snapshot(labels, region_mask(region, labels.shape), snapshot_id=self.snapshot_id)

    def _on_paint(self, event=None) -> None:
        self.snapshot_timer.start()  # restarts: sent once the user paused painting

    def _on_view(self, event=None) -> None:
        self.view_timer.start()

    def send_snapshot(self) -> None:
        """Send the annotation to the trainer now."""
        if self.job is not None and not self.job.finished:
            self.job.send(self._snapshot())

    def visible(self) -> tuple[Window, int | None] | None:
        """The image's visible window and slice, or None when nothing of it is in view."""
        image = self.image_layer
        shape = spatial_shape(image)
        canvas = tuple(int(v) for v in self.viewer.canvas.size)
        cam = camera(self.viewer)
        window = visible_window(
            tuple(cam.center[-2:]), float(cam.zoom), canvas,
            tuple(image.scale[-2:]), tuple(image.translate[-2:]), shape[-2:],
        )
        return None if window is None else (window, current_index(self.viewer, image))

    def request_view(self) -> None:
        """Ask the session to predict the field of view."""
        from unet_core.training.live import PredictRequest

        if self.job is None or self.job.finished:
            return
        view = self.visible()
        if view is not None:
            self.request_id += 1
            self.job.send(PredictRequest(view[0], view[1], self.request_id))

    # -- what comes back ---------------------------------------------------------------------------
    def poll(self) -> None:
        """Show what the reader thread received (from the poll timer; never waits)."""
        from unet_core.progress import Progress
        from unet_core.training.live import LivePrediction

        while self.job is not None:
            try:
                kind, item = self._received.get_nowait()
            except queue.Empty:
                return
            if kind == "error":
                self._end(None, item)
            elif kind == "done":
                self._end(item, None)
            elif isinstance(item, LivePrediction):
                self.show_prediction(item)
            elif isinstance(item, Progress):
                self._on_record(item)

    @staticmethod
    def _read(job, received: queue.Queue) -> None:
        """Reader thread: move the session's output to ``received`` (waiting on the pipe here,
        never in the GUI thread), then its result or error."""
        try:
            while not job.finished:
                items = job.poll()
                for item in items:
                    received.put(("item", item))
                if not items:
                    time.sleep(POLL_MS / 2000)
            received.put(("done", job.result))
        except Exception as exc:  # noqa: BLE001 - the session's error or a crash, shown to the user
            received.put(("error", exc))

    def _on_record(self, record) -> None:
        if record.stage == "warning":
            from napari.utils.notifications import show_warning

            show_warning(f"Live: {record.message}")
        elif record.stage == "snapshot":
            self.snapshot_arrived_at = time.monotonic()
            self.snapshot_delay = record.metrics.get("delay_s")
            self.snapshot_arrived.emit(record)
            self.request_view()  # show what the new annotations change
        if record.stage in ("train", "idle", "snapshot"):
            self.last_record = record

    def show_prediction(self, prediction) -> None:
        """Write a LivePrediction into the live prediction and uncertainty layers."""
        image = self.image_layer
        shape, where = spatial_shape(image), geometry(image)
        base = image.name
        fresh = find_layer(self.viewer, base + LIVE_PREDICTION_SUFFIX, napari.layers.Image) is None
        put_window(self.viewer, base + LIVE_PREDICTION_SUFFIX, prediction.foreground, prediction.window,
                   prediction.index, shape, colormap="green", blending="additive",
                   contrast_limits=(0.0, 1.0), **where)
        put_window(self.viewer, base + UNCERTAINTY_SUFFIX, prediction.uncertainty, prediction.window,
                   prediction.index, shape, colormap="magenta", blending="additive",
                   contrast_limits=(0.0, 1.0), opacity=0.6, **where)
        if fresh:
            self._keep_labels_on_top()
        self.predictions_shown += 1
        self.last_prediction = prediction
        self.prediction_shown.emit(prediction)

    def _keep_labels_on_top(self) -> None:
        """New result layers go below the labels layer, which stays selected for painting."""
        layers, labels = self.viewer.layers, self.labels_layer
        if labels not in layers:
            return
        for suffix in (UNCERTAINTY_SUFFIX, LIVE_PREDICTION_SUFFIX):
            layer = find_layer(self.viewer, self.image_layer.name + suffix)
            if layer is not None and layers.index(layer) > layers.index(labels):
                layers.move(layers.index(layer), layers.index(labels))
        layers.selection.active = labels

    def update_status(self) -> None:
        """Step, loss, and how long ago the last snapshot reached the trainer."""
        record = self.last_record
        if self.job is None or record is None:
            return
        parts = []
        if record.stage == "idle":
            parts.append(record.message)
        if record.step:
            loss = record.metrics.get("loss")
            parts.append(f"step {record.step}" + (f", loss {loss:.4f}" if loss is not None else ""))
        if self.snapshot_arrived_at is not None:
            ago = time.monotonic() - self.snapshot_arrived_at
            parts.append(f"last snapshot reached the trainer {ago:.0f} s ago")
        if self.last_prediction is not None:
            parts.append(f"view predicted in {self.last_prediction.seconds:.1f} s")
        self.status.setText("; ".join(parts) or "running")

    # -- pause, stop -------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        """Pause training steps, or resume them (the view is still predicted while paused)."""
        from unet_core.training.live import Pause, Resume

        if self.job is None:
            return
        pausing = self.pause_button.text() == "Pause"
        self.job.send(Pause() if pausing else Resume())
        self.pause_button.setText("Resume" if pausing else "Pause")

    def stop(self) -> None:
        """End the session after its current step; it saves the checkpoint, then this dock
        registers the model (see :meth:`poll`)."""
        if self.job is None:
            return
        if self.snapshot_timer.isActive():  # strokes not sent yet count too
            self.snapshot_timer.stop()
            self.send_snapshot()
        self.job.stop()
        self.pause_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after this step (saving the checkpoint)...")

    def _end(self, result, error: BaseException | None) -> None:
        """The session ended: register the model, or say what went wrong."""
        from napari.utils.notifications import show_error, show_info

        job, self.job = self.job, None
        for timer in (self.poll_timer, self.status_timer, self.snapshot_timer, self.view_timer):
            timer.stop()
        self._connect(False)
        self._ending.append(job)  # closed once its process has exited: the viewer never waits
        self.reap_timer.start()
        self._set_running(False)
        self.result = result
        if error is not None:
            self.status.setText(f"Live training failed: {error}")
            show_error(f"Live: {error}")
        elif result.checkpoint is None:
            self.status.setText("Stopped before the first step; nothing was saved.")
        else:
            MODELS.add(ModelEntry(result.checkpoint.stem, result.model, result.checkpoint, True))
            self.status.setText(f"Stopped after {result.steps} steps. Checkpoint: {result.checkpoint}")
            show_info(f"napari-unet: live model saved to {result.checkpoint}")
        self.finished.emit(result)

    def reap(self) -> None:
        """Close the ended sessions whose process has exited (from the reap timer)."""
        for job in [j for j in self._ending if not j.process.is_alive()]:
            job.close()
            self._ending.remove(job)
        if not self._ending:
            self.reap_timer.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self.job is not None:
            job, self.job = self.job, None
            self._connect(False)
            self._ending.append(job)
        for job in self._ending:
            job.close()  # asks a running session to stop and save, then ends the process
        self._ending.clear()
        self.model_source.disconnect_registry()
        super().closeEvent(event)
