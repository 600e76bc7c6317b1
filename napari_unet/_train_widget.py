"""Train dock widget: fine-tune or train a network on image/labels(/region) layer pairs.

Every option shown is a field of the engine's :class:`unet_core.config.TrainConfig` (and its
``ModelConfig`` / ``WeightMapConfig``), with the engine's default (one definition, read from the
dataclasses by :class:`~napari_unet._config_form.ConfigForm`). Training runs the engine's
``train()`` generator in a worker thread (:class:`~napari_unet._jobs.JobRunner`): a progress bar
with ETA in napari's activity dock, a live loss/validation plot, Stop (the engine ends between two
steps, saves a clean checkpoint and returns its result). The model is registered for the Predict
widget.
"""

from __future__ import annotations

import dataclasses
import logging
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
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ._config_form import ConfigForm
from ._dock import fit_dock
from ._jobs import JobOutcome, JobRunner, worker_threads
from ._layers import (
    LABELS_SUFFIX,
    REGION_SUFFIX,
    LayerChooser,
    find_layer,
    image_array,
    real_viewer,
    region_mask,
)
from ._model_source import ModelSourceChooser
from ._plot import TrainingPlot
from ._project import ask_overwrite, models_dir, safe_name
from ._registry import MODELS, ModelEntry

log = logging.getLogger(__name__)

#: ModelConfig fields offered for a new model
MODEL_FIELDS = ("arch", "depth", "base_channels", "padding", "batch_norm", "dropout", "up_mode")


@dataclass(frozen=True)
class PairSpec:
    """One training pair, by layer names."""

    image: str
    labels: str
    region: str | None = None

    def describe(self) -> str:
        return f"{self.image} + {self.labels}" + (f" + {self.region}" if self.region else "")


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

        # data
        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.labels_combo = LayerChooser(self.viewer, napari.layers.Labels)
        self.region_combo = LayerChooser(self.viewer, napari.layers.Shapes, optional=True)
        self.add_pair_button = QPushButton("Add pair")
        self.remove_pair_button = QPushButton("Remove")
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(70)
        data_box = QGroupBox("Training data")
        data_box.setToolTip("Trains on the chosen layers, or on every pair added to the list.")
        data_form = QFormLayout(data_box)
        data_form.addRow("image", self.image_combo)
        data_form.addRow("labels", self.labels_combo)
        data_form.addRow("region", self.region_combo)
        row = QHBoxLayout()
        row.addWidget(self.add_pair_button)
        row.addWidget(self.remove_pair_button)
        data_form.addRow(row)
        data_form.addRow(self.pair_list)

        # model
        self.model_form = ConfigForm(defaults.model, fields=MODEL_FIELDS)
        self.model_source = ModelSourceChooser(
            new_model=True, saved_only=True, placeholder="checkpoint to fine-tune (.pt)",
            missing_hint="choose a .pt file to fine-tune",
        )
        self.source_combo = self.model_source.combo
        self.checkpoint_edit = self.model_source.checkpoint_edit
        model_box = QGroupBox("Model")
        model_layout = QFormLayout(model_box)
        model_layout.addRow("start from", self.model_source)
        model_layout.addRow(self.model_form)

        # hyperparameters, straight from TrainConfig
        nested = [f.name for f in dataclasses.fields(defaults) if dataclasses.is_dataclass(getattr(defaults, f.name))]
        self.train_form = ConfigForm(defaults, exclude=nested)
        self.weights_form = ConfigForm(defaults.weights)
        train_box = QGroupBox("Training")
        QVBoxLayout(train_box).addWidget(self.train_form)
        weights_box = QGroupBox("Weight map")
        QVBoxLayout(weights_box).addWidget(self.weights_form)
        # further option groups of TrainConfig (e.g. augmentation) get their own form
        self.extra_forms: dict[str, ConfigForm] = {}
        extra_boxes = []
        for name in nested:
            if name in ("model", "weights"):
                continue
            form = ConfigForm(getattr(defaults, name))
            if not form.editors:
                continue
            self.extra_forms[name] = form
            box = QGroupBox(name.replace("_", " ").capitalize())
            QVBoxLayout(box).addWidget(form)
            extra_boxes.append(box)

        # output and controls
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

        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        for w in (data_box, model_box, train_box, weights_box, *extra_boxes):
            inner_layout.addWidget(w)
        inner_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumWidth(360)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(out_row)
        layout.addLayout(buttons)
        layout.addWidget(self.plot)
        layout.addWidget(self.status)

        self.runner = JobRunner("Training", parent=self)
        self.runner.progressed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.add_pair_button.clicked.connect(self.add_pair)
        self.remove_pair_button.clicked.connect(self.remove_pair)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.output_button.clicked.connect(self.choose_output)
        self.model_source.changed.connect(self._on_source_changed)
        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        self._on_source_changed()
        self._on_image_chosen()
        fit_dock(self, guide="Train", folded=("Weight map", "Augmentation"))  # last: scroll, fold, wheel-safe

    def reset_choices(self, event=None) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        for combo in (self.image_combo, self.labels_combo, self.region_combo):
            combo.refresh()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.model_source.disconnect_registry()
        super().closeEvent(event)

    # -- data ------------------------------------------------------------------------------------
    def _on_image_chosen(self, *_) -> None:
        image = self.image_combo.layer
        if image is None:
            return
        labels = find_layer(self.viewer, image.name + LABELS_SUFFIX, napari.layers.Labels)
        if labels is not None:
            self.labels_combo.set_layer(labels)
        region = find_layer(self.viewer, image.name + REGION_SUFFIX, napari.layers.Shapes)
        if region is not None:
            self.region_combo.set_layer(region)
        if not self.output_edit.text() or self.output_edit.text().startswith(str(models_dir())):
            self.output_edit.setText(str(models_dir() / f"{safe_name(image.name)}-unet.pt"))

    def current_pair(self) -> PairSpec | None:
        """The pair chosen in the combo boxes, or None."""
        image, labels = self.image_combo.layer, self.labels_combo.layer
        if image is None or labels is None:
            return None
        region = self.region_combo.layer
        return PairSpec(image.name, labels.name, region.name if region is not None else None)

    def add_pair(self) -> PairSpec | None:
        """Add the chosen image/labels(/region) to the list of training pairs."""
        pair = self.current_pair()
        if pair is None or pair in self.pairs:
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

    def training_pairs(self):
        """The engine's :class:`TrainingPair` list (copies of the layer data)."""
        from unet_core.errors import InputError
        from unet_core.training.data import TrainingPair

        specs = self.pairs or ([self.current_pair()] if self.current_pair() else [])
        if not specs:
            raise InputError("choose an image and its labels (create them in the Annotate widget) to train on")
        out = []
        for spec in specs:
            image = find_layer(self.viewer, spec.image, napari.layers.Image)
            labels = find_layer(self.viewer, spec.labels, napari.layers.Labels)
            if image is None or labels is None:
                raise InputError(f"the layer of pair '{spec.describe()}' is gone; remove the pair or reopen it")
            data, channel_axis = image_array(image)
            lab = np.array(labels.data, copy=True)
            region = find_layer(self.viewer, spec.region, napari.layers.Shapes) if spec.region else None
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

    def start(self) -> bool:
        """Start training in a worker; False when the input is not usable (a notification says why)."""
        from napari.utils.notifications import show_error

        from unet_core.errors import CheckpointError, InputError
        from unet_core.training.trainer import train

        if self.runner.running:
            return False
        try:
            pairs = self.training_pairs()
            init = self.init_from()
            config = self.config(pairs)
            text = self.output_edit.text().strip()
            if not text:
                raise InputError("choose where to save the checkpoint ('save to')")
            output = Path(text).expanduser()
            if output.suffix != ".pt":
                output = output.with_suffix(".pt")
        except (InputError, CheckpointError) as exc:
            show_error(f"Training: {exc}")
            return False
        if output.exists() and not self.confirm_overwrite(output):
            self.status.setText("Not started: choose another checkpoint file ('save to').")
            return False
        output.parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint = output
        self.plot.clear()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(f"Training on {len(pairs)} image(s), {config.iterations} iterations...")
        self.runner.start(
            partial(train, pairs, config, output=output, init_from=init),
            total=config.iterations,
            torch_threads=worker_threads(),
            pass_stop=True,  # Stop ends the run between steps; the result comes back
        )
        return True

    def stop(self) -> None:
        """Stop after the current step; the engine saves a clean checkpoint."""
        if self.runner.running:
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

        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.plot.flush()
        if not outcome.ok:
            self.status.setText(f"Training failed: {outcome.error}")
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
