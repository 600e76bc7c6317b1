"""Train dock widget: fine-tune or train a network on image/labels(/region) layer pairs.

Every option shown is a field of the engine's :class:`unet_core.config.TrainConfig` (and its
``ModelConfig`` / ``WeightMapConfig``), with the engine's default (one definition, read from the
dataclasses by :class:`~napari_unet._config_form.ConfigForm`).

The layers: choosing an image picks the layers that belong to it: the Annotate widget's
``"<image> labels"`` / ``"<image> region"`` (linked by name), else a Labels layer of the image's
shape that belongs to no other image. The choice follows layers added, removed or renamed later,
until the user picks a layer by hand; labels or a region that do not fit the image (shape,
placement, another image's layers) are refused with a notification.

Start checks everything first (layers, options, the annotations: :func:`unet_core.training.data.
check_annotations`) and only then asks about replacing a checkpoint. Training runs the engine's
``train()`` in its own spawned process (:func:`~napari_unet._jobs.in_process`; set
``NAPARI_UNET_TRAIN_IN=thread`` for a worker thread instead): a progress bar with ETA in napari's
activity dock, a live loss/validation plot, Stop (the engine ends between two steps, saves a clean
checkpoint and returns its result by value), a crash of the process reported as an error. The
model is registered for the Predict widget.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import napari
import napari.layers
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ._config_form import ConfigForm
from ._dock import fit_dock
from ._jobs import JobOutcome, JobRunner, in_process, worker_threads
from ._layers import (
    LABELS_SUFFIX,
    PREDICTION_SUFFIX,
    REGION_SUFFIX,
    LayerChooser,
    find_layer,
    image_array,
    real_viewer,
    region_mask,
    spatial_shape,
)
from ._model_source import ModelSourceChooser
from ._plot import TrainingPlot
from ._project import ask_overwrite, models_dir, safe_name
from ._registry import MODELS, ModelEntry

log = logging.getLogger(__name__)

#: ModelConfig fields offered for a new model
MODEL_FIELDS = ("arch", "depth", "base_channels", "padding", "batch_norm", "dropout", "up_mode")

#: environment variable choosing where training runs: 'process' (default) or 'thread'
TRAIN_IN_ENV = "NAPARI_UNET_TRAIN_IN"


def train_in_process() -> bool:
    """Whether training runs in its own process (``$NAPARI_UNET_TRAIN_IN`` is not 'thread')."""
    return os.environ.get(TRAIN_IN_ENV, "process").strip().lower() != "thread"


@dataclass(frozen=True)
class PairSpec:
    """One training pair, by layer names."""

    image: str
    labels: str
    region: str | None = None

    def describe(self) -> str:
        return f"{self.image} + {self.labels}" + (f" + {self.region}" if self.region else "")


# -- which layers belong to an image -----------------------------------------------------------
def _owner(viewer, layer, suffix: str):
    """The Image layer that ``layer`` is linked to by name (``"<image><suffix>"``), or None."""
    if not layer.name.endswith(suffix):
        return None
    return find_layer(viewer, layer.name[: -len(suffix)], napari.layers.Image)


def _same_placement(a, b) -> bool:
    return bool(np.allclose(a.scale, b.scale) and np.allclose(a.translate, b.translate))


def labels_problem(viewer, image, labels) -> str | None:
    """Why ``labels`` cannot be ``image``'s annotations (shape, another image's), or None."""
    shape = tuple(getattr(labels.data, "shape", ()))
    if shape != spatial_shape(image):
        return (
            f"labels '{labels.name}' have shape {shape} but image '{image.name}' has "
            f"{spatial_shape(image)}; choose the image's own labels (Annotate widget: Create "
            "annotation layers)"
        )
    owner = _owner(viewer, labels, LABELS_SUFFIX)
    if owner is not None and owner is not image:
        return (
            f"labels '{labels.name}' belong to image '{owner.name}', not '{image.name}'; choose "
            f"'{image.name}{LABELS_SUFFIX}' (Annotate widget: Create annotation layers)"
        )
    return None


def region_problem(viewer, image, region) -> str | None:
    """Why ``region`` cannot be ``image``'s training region (axes, placement, owner), or None."""
    owner = _owner(viewer, region, REGION_SUFFIX)
    if owner is not None and owner is not image:
        return f"region '{region.name}' belongs to image '{owner.name}', not '{image.name}'"
    if region.ndim != image.ndim or not _same_placement(region, image):
        return (
            f"region '{region.name}' does not lie on image '{image.name}' (its axes, scale or "
            "offset differ); draw the region in the layer the Annotate widget creates for it"
        )
    if len(region.data) and region_mask(region, spatial_shape(image)) is None:
        return f"region '{region.name}' lies outside image '{image.name}'; draw it over the image"
    return None


def linked_labels(viewer, image):
    """``image``'s annotations: ``"<image> labels"`` if it fits, else a Labels layer of its shape
    that is linked to no other image and is no prediction; None if there is none."""
    named = find_layer(viewer, image.name + LABELS_SUFFIX, napari.layers.Labels)
    if named is not None and labels_problem(viewer, image, named) is None:
        return named
    for layer in viewer.layers:
        if (
            isinstance(layer, napari.layers.Labels)
            and not layer.name.endswith(PREDICTION_SUFFIX)
            and labels_problem(viewer, image, layer) is None
        ):
            return layer
    return None


def linked_region(viewer, image):
    """``image``'s ``"<image> region"`` Shapes layer if it fits the image, else None."""
    region = find_layer(viewer, image.name + REGION_SUFFIX, napari.layers.Shapes)
    return region if region is not None and region_problem(viewer, image, region) is None else None


class TrainWidget(QWidget):
    """Train a new model or fine-tune a checkpoint on annotated layers."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        from unet_core.config import TrainConfig

        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        defaults = TrainConfig()
        self.pairs: list[PairSpec] = []
        self.checkpoint: Path | None = None
        self.result_model = None
        #: run training in a spawned process (default) or a worker thread (for comparison)
        self.in_process = train_in_process()
        #: seconds from Stop to the job's end, measured for the last stopped run
        self.stop_latency: float | None = None
        self._stop_clicked: float | None = None
        self._started_at = 0.0
        self._pinned: dict[str, str | None] = {"labels": None, "region": None}  # hand-picked names
        self._image_name: str | None = None  # the image the labels/region choices belong to
        boxes = [self._data_box(), self._model_box(defaults), *self._option_boxes(defaults)]
        self._assemble(boxes, self._controls())
        self.runner = JobRunner("Training", parent=self)
        self._connect()
        self._on_source_changed()
        self._on_image_chosen()
        fit_dock(self, guide="Train", folded=("Weight map", "Augmentation"))  # last: scroll, fold, wheel-safe

    # -- building --------------------------------------------------------------------------------
    def _data_box(self) -> QGroupBox:
        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.labels_combo = LayerChooser(self.viewer, napari.layers.Labels, optional=True)
        self.region_combo = LayerChooser(self.viewer, napari.layers.Shapes, optional=True)
        self.add_pair_button = QPushButton("Add pair")
        self.remove_pair_button = QPushButton("Remove")
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(70)
        box = QGroupBox("Training data")
        box.setToolTip("Trains on the chosen layers, or on every pair added to the list.")
        form = QFormLayout(box)
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        form.addRow("region", self.region_combo)
        row = QHBoxLayout()
        row.addWidget(self.add_pair_button)
        row.addWidget(self.remove_pair_button)
        form.addRow(row)
        form.addRow(self.pair_list)
        return box

    def _model_box(self, defaults) -> QGroupBox:
        self.model_form = ConfigForm(defaults.model, fields=MODEL_FIELDS)
        self.model_source = ModelSourceChooser(
            new_model=True, saved_only=True, placeholder="checkpoint to fine-tune (.pt)",
            missing_hint="choose a .pt file to fine-tune",
        )
        self.source_combo = self.model_source.combo
        self.checkpoint_edit = self.model_source.checkpoint_edit
        box = QGroupBox("Model")
        layout = QFormLayout(box)
        layout.addRow("start from", self.model_source)
        layout.addRow(self.model_form)
        return box

    def _option_boxes(self, defaults) -> list[QGroupBox]:
        """Hyperparameters straight from TrainConfig: its simple fields, weights, other groups."""
        nested = [
            f.name for f in dataclasses.fields(defaults) if dataclasses.is_dataclass(getattr(defaults, f.name))
        ]
        self.train_form = ConfigForm(defaults, exclude=nested)
        self.weights_form = ConfigForm(defaults.weights)
        boxes = []
        for title, form in (("Training", self.train_form), ("Weight map", self.weights_form)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(form)
            boxes.append(box)
        # further option groups of TrainConfig (e.g. augmentation) get their own form
        self.extra_forms: dict[str, ConfigForm] = {}
        for name in nested:
            if name in ("model", "weights"):
                continue
            form = ConfigForm(getattr(defaults, name))
            if not form.editors:
                continue
            self.extra_forms[name] = form
            box = QGroupBox(name.replace("_", " ").capitalize())
            QVBoxLayout(box).addWidget(form)
            boxes.append(box)
        return boxes

    def _controls(self) -> list[QWidget | QLayout]:
        """'save to' row, Start/Stop, plot and status (below the scrolled options)."""
        self.output_edit = QLineEdit()
        self.output_button = QPushButton("...")
        self.output_button.setMaximumWidth(30)
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("save to"))
        out_row.addWidget(self.output_edit)
        out_row.addWidget(self.output_button)
        self.start_button = QPushButton("Start training")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        self.plot = TrainingPlot()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        return [out_row, buttons, self.plot, self.status]

    def _assemble(self, boxes: list[QWidget], controls: list[QWidget | QLayout]) -> None:
        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        for w in boxes:
            inner_layout.addWidget(w)
        inner_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumWidth(360)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        for item in controls:
            if isinstance(item, QLayout):
                layout.addLayout(item)
            else:
                layout.addWidget(item)

    def _connect(self) -> None:
        self.runner.progressed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.add_pair_button.clicked.connect(self.add_pair)
        self.remove_pair_button.clicked.connect(self.remove_pair)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.output_button.clicked.connect(self.choose_output)
        self.model_source.changed.connect(self._on_source_changed)
        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        self.labels_combo.activated.connect(lambda *_: self._chosen_by_hand("labels"))
        self.region_combo.activated.connect(lambda *_: self._chosen_by_hand("region"))
        events = self.viewer.layers.events  # follow layers also when not docked by napari
        for event in (events.inserted, events.removed, events.renamed):
            event.connect(self.reset_choices)

    def reset_choices(self, event=None) -> None:
        """Refresh the layer lists and follow the chosen image's layers (on layer changes)."""
        self.image_combo.refresh()  # a new image choice re-links through _on_image_chosen
        self._follow_layers()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.model_source.disconnect_registry()
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.renamed):
            ev.disconnect(self.reset_choices)
        if self.runner.running:
            self.runner.stop()
        super().closeEvent(event)

    # -- data ------------------------------------------------------------------------------------
    def _on_image_chosen(self, *_) -> None:
        image = self.image_combo.layer
        name = image.name if image is not None else None
        if name != self._image_name:  # hand-picked layers belonged to the previous image
            self._pinned = {"labels": None, "region": None}
            self._image_name = name
        self._follow_layers()
        if image is None:
            return
        if not self.output_edit.text() or self.output_edit.text().startswith(str(models_dir())):
            self.output_edit.setText(str(models_dir() / f"{safe_name(image.name)}-unet.pt"))

    def _follow_layers(self) -> None:
        """Choose the labels and region that belong to the image, unless chosen by hand."""
        self.labels_combo.refresh()
        self.region_combo.refresh()
        image = self.image_combo.layer
        for kind, combo, pick in (
            ("labels", self.labels_combo, linked_labels),
            ("region", self.region_combo, linked_region),
        ):
            if self._pinned[kind] is not None and self._pinned[kind] != combo.currentText():
                self._pinned[kind] = None  # the hand-picked layer is gone (or renamed)
            if self._pinned[kind] is None:
                combo.set_layer(pick(self.viewer, image) if image is not None else None)

    def _chosen_by_hand(self, kind: str) -> None:
        """The user picked labels or a region: keep it if it fits the image, else refuse it."""
        from napari.utils.notifications import show_warning

        image = self.image_combo.layer
        combo = self.labels_combo if kind == "labels" else self.region_combo
        layer = combo.layer
        problem = self._problem(image, layer, kind) if image is not None and layer is not None else None
        self._pinned[kind] = combo.currentText() if problem is None else None
        if problem is not None:
            show_warning(f"Training: {problem}")
            self._follow_layers()

    def _problem(self, image, layer, kind: str) -> str | None:
        check = labels_problem if kind == "labels" else region_problem
        return check(self.viewer, image, layer)

    def current_pair(self) -> PairSpec | None:
        """The pair chosen in the combo boxes, or None."""
        image, labels = self.image_combo.layer, self.labels_combo.layer
        if image is None or labels is None:
            return None
        region = self.region_combo.layer
        return PairSpec(image.name, labels.name, region.name if region is not None else None)

    def add_pair(self) -> PairSpec | None:
        """Add the chosen image/labels(/region) to the list of training pairs (if they fit)."""
        from napari.utils.notifications import show_warning

        pair = self.current_pair()
        if pair is None or pair in self.pairs:
            return None
        try:
            self._pair_layers(pair)
        except ValueError as exc:
            show_warning(f"Training: {exc}")
            return None
        self.pairs.append(pair)
        self.pair_list.addItem(pair.describe())
        return pair

    def remove_pair(self) -> None:
        """Remove the selected pair from the list."""
        row = self.pair_list.currentRow()
        if 0 <= row < len(self.pairs):
            self.pairs.pop(row)
            self.pair_list.takeItem(row)

    def _pair_layers(self, spec: PairSpec):
        """The (image, labels, region or None) layers of ``spec``.

        Raises
        ------
        InputError
            A layer is gone, or the labels or region do not fit the image.
        """
        from unet_core.errors import InputError

        image = find_layer(self.viewer, spec.image, napari.layers.Image)
        labels = find_layer(self.viewer, spec.labels, napari.layers.Labels)
        region = find_layer(self.viewer, spec.region, napari.layers.Shapes) if spec.region else None
        if image is None or labels is None or (spec.region and region is None):
            raise InputError(f"a layer of pair '{spec.describe()}' is gone; remove the pair or reopen it")
        problem = labels_problem(self.viewer, image, labels)
        if problem is None and region is not None:
            problem = region_problem(self.viewer, image, region)
        if problem is not None:
            raise InputError(problem)
        return image, labels, region

    def training_pairs(self):
        """The engine's :class:`TrainingPair` list (copies of the layer data), checked to fit.

        Raises
        ------
        InputError
            No pair chosen, a layer gone, labels or a region that do not fit their image.
        """
        from unet_core.errors import InputError
        from unet_core.training.data import TrainingPair

        specs = self.pairs or ([self.current_pair()] if self.current_pair() else [])
        if not specs:
            raise InputError("choose an image and its labels (create them in the Annotate widget) to train on")
        out = []
        for spec in specs:
            image, labels, region = self._pair_layers(spec)
            data, channel_axis = image_array(image)
            lab = np.array(labels.data, copy=True)
            mask = region_mask(region, lab.shape)
            out.append(TrainingPair(np.array(data, copy=True), lab, mask, channel_axis, spec.image))
        return out

    # -- model source ----------------------------------------------------------------------------
    def _on_source_changed(self, *_) -> None:
        self.model_form.setEnabled(self.model_source.is_new())

    def choose_checkpoint(self) -> None:
        """Pick a checkpoint to fine-tune."""
        self.model_source.choose_checkpoint()

    def choose_output(self) -> None:
        """Pick where the checkpoint is saved."""
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint as", self.output_edit.text(), "Checkpoints (*.pt)")
        if path:
            self.output_edit.setText(path if path.endswith(".pt") else path + ".pt")

    def init_from(self) -> Path | None:
        """Checkpoint to fine-tune, or None for a new model."""
        return self.model_source.source().checkpoint

    def config(self, pairs=None):
        """The :class:`TrainConfig` the form describes (in_channels follow the data)."""
        from unet_core.config import TrainConfig

        defaults = TrainConfig()
        model = self.model_form.value(defaults.model)
        if pairs:
            first = pairs[0]
            channels = 1 if first.channel_axis is None else int(np.asarray(first.image).shape[first.channel_axis])
            model = replace(model, in_channels=channels)
        groups = {name: form.value() for name, form in self.extra_forms.items()}
        return self.train_form.value(replace(defaults, model=model, weights=self.weights_form.value(), **groups))

    # -- running ---------------------------------------------------------------------------------
    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing an existing checkpoint (tests monkeypatch this)."""
        return ask_overwrite(self, [path])

    def checked_inputs(self):
        """Everything a run needs, checked before anything is asked or started.

        Returns
        -------
        (pairs, config, output, init_from)
            The TrainingPairs, the TrainConfig, the checkpoint path (.pt) and the checkpoint
            to fine-tune (or None).

        Raises
        ------
        InputError, CheckpointError
            Layers that do not fit, nothing painted (inside the region), bad options, no output.
        """
        from unet_core.errors import InputError
        from unet_core.training.data import check_annotations

        pairs = self.training_pairs()
        check_annotations(pairs)  # cheap dry run of the engine's data checks
        init = self.init_from()
        config = self.config(pairs)
        text = self.output_edit.text().strip()
        if not text:
            raise InputError("choose where to save the checkpoint ('save to')")
        output = Path(text).expanduser()
        if output.suffix != ".pt":
            output = output.with_suffix(".pt")
        return pairs, config, output, init

    def start(self) -> bool:
        """Check the input, ask before replacing a checkpoint, then start training.

        Returns False when nothing started (a notification or the status line says why).
        """
        from napari.utils.notifications import show_error

        from unet_core.errors import CheckpointError, InputError

        if self.runner.running:
            return False
        try:
            pairs, config, output, init = self.checked_inputs()
        except (InputError, CheckpointError) as exc:
            show_error(f"Training: {exc}")
            self.status.setText(f"Not started: {exc}")
            return False
        if output.exists() and not self.confirm_overwrite(output):
            self.status.setText("Not started: choose another checkpoint file ('save to').")
            return False
        output.parent.mkdir(parents=True, exist_ok=True)
        self._launch(pairs, config, output, init)
        return True

    def _launch(self, pairs, config, output: Path, init: Path | None) -> None:
        from unet_core.training.trainer import train

        self.checkpoint = output
        self.plot.clear()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._stop_clicked, self._started_at = None, time.time()
        where = "own process" if self.in_process else "worker thread"
        self.status.setText(f"Training on {len(pairs)} image(s), {config.iterations} iterations ({where})...")
        threads = worker_threads()
        if self.in_process:  # the arrays are pickled once into the child; records come back
            factory = in_process(train, pairs, config, output=output, init_from=init, threads=threads)
            threads = None  # set in the child, not in the viewer's process
        else:
            factory = partial(train, pairs, config, output=output, init_from=init)
        # Stop ends the run between steps; the result comes back
        self.runner.start(factory, total=config.iterations, torch_threads=threads, pass_stop=True)

    def stop(self) -> None:
        """Stop after the current step; the engine saves a clean checkpoint."""
        if self.runner.running:
            if self._stop_clicked is None:
                self._stop_clicked = time.perf_counter()
            self.status.setText("Stopping after this step (saving the checkpoint)...")
            self.runner.stop()

    def _on_progress(self, record) -> None:
        if record.stage == "warning":  # e.g. the engine halved the batch after running out of memory
            from napari.utils.notifications import show_warning

            show_warning(f"Training: {record.message}")
            return
        self.plot.add_record(record)

    def _on_finished(self, outcome: JobOutcome) -> None:
        from napari.utils.notifications import show_info

        if self._stop_clicked is not None:
            self.stop_latency = time.perf_counter() - self._stop_clicked
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.plot.flush()
        if not outcome.ok:
            self.status.setText(f"Training failed: {outcome.error}{self._kept_note()}")
            return
        result = outcome.value  # the engine's TrainResult, also after Stop
        checkpoint = result.checkpoint
        if checkpoint is None:
            self.status.setText("Stopped before the first step; nothing was saved.")
            return
        self.result_model = result.model
        MODELS.add(ModelEntry(checkpoint.stem, result.model, checkpoint, result.stopped))
        how = {"completed": "Done", "time_limit": "Time limit reached", "user": "Stopped"}[result.stop_reason]
        self.status.setText(f"{how}. Checkpoint: {checkpoint}")
        show_info(f"napari-unet: model saved to {checkpoint}")

    def _kept_note(self) -> str:
        """' Last saved: <path>' when this run wrote its checkpoint before failing."""
        path = self.checkpoint
        if path is not None and path.is_file() and path.stat().st_mtime >= self._started_at:
            return f" The last periodic checkpoint of this run is kept: {path}"
        return ""
