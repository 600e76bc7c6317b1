"""Where a model comes from: one chooser for the Train and Predict widgets.

A combo box lists the sources (a new model, a checkpoint file, the models trained in this
session, the model library kept across sessions and the built-in models, see
:data:`napari_unet._registry.MODELS`) above a checkpoint path with a "..." button;
:meth:`ModelSourceChooser.source` says what was chosen as a plain :class:`ModelSource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._project import models_dir
from ._registry import MODELS, builtin_entries, builtin_path

NEW_MODEL = "new model"
CHECKPOINT_FILE = "checkpoint file"
SESSION_PREFIX = "this session: "
LIBRARY_PREFIX = "library: "
BUILTIN_PREFIX = "built-in: "


@dataclass(frozen=True)
class ModelSource:
    """The chosen model.

    Attributes
    ----------
    kind : {'new', 'checkpoint', 'session', 'library', 'builtin'}
        A network built from the form, a checkpoint file, a model trained in this session, a
        model of the library, or a built-in model.
    checkpoint : Path or None
        The checkpoint file (a session model's own file, when it was saved).
    model : SegmentationNet or None
        The network in memory (session models only).
    """

    kind: Literal["new", "checkpoint", "session", "library", "builtin"]
    checkpoint: Path | None = None
    model: Any = None


class ModelSourceChooser(QWidget):
    """Combo box of model sources plus a checkpoint path, kept in step with the session registry.

    Parameters
    ----------
    new_model : bool
        Offer "new model" first (training) and keep the user's choice when the registry
        changes; otherwise the session models come first, newest on top, and a newly trained
        model becomes the choice (prediction).
    saved_only : bool
        List only session models that were saved to a checkpoint (fine-tuning reads the file).
    placeholder : str
        Grey text of the empty checkpoint path.
    missing_hint : str
        What to do when no usable checkpoint is given (ends the error message).
    """

    #: emitted with the combo text when the choice changes
    changed = Signal(str)

    def __init__(self, *, new_model: bool, saved_only: bool, placeholder: str, missing_hint: str,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self._new_model, self._saved_only, self._hint = new_model, saved_only, missing_hint
        self.combo = QComboBox()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText(placeholder)
        self.checkpoint_button = QPushButton("...")
        self.checkpoint_button.setMaximumWidth(30)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint_edit)
        row.addWidget(self.checkpoint_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addLayout(row)
        self.checkpoint_button.clicked.connect(self.choose_checkpoint)
        self.combo.currentTextChanged.connect(self._on_changed)
        MODELS.changed.connect(self.refresh)
        self.refresh()

    # -- listing ---------------------------------------------------------------------------------
    def items(self) -> list[str]:
        """The sources offered now, in display order."""
        names = [n for n in MODELS.names() if not self._saved_only or MODELS.get(n).checkpoint]
        session = [SESSION_PREFIX + n for n in names]
        kept = [LIBRARY_PREFIX + e.name for e in MODELS.library()]
        kept += [BUILTIN_PREFIX + e.name for e in builtin_entries()]
        if self._new_model:
            return [NEW_MODEL, CHECKPOINT_FILE, *session, *kept]
        return [*reversed(session), *kept, CHECKPOINT_FILE]  # newest first

    def refresh(self) -> None:
        """Re-list the sources (the registry changed)."""
        try:
            current = self.combo.currentText()
        except RuntimeError:  # the widget was deleted with its viewer
            MODELS.changed.disconnect(self.refresh)
            return
        items = self.items()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(items)
        self._describe_items()
        if self._new_model:
            self.combo.setCurrentText(current if current in items else NEW_MODEL)
        else:
            self.combo.setCurrentIndex(0)
        self.combo.blockSignals(False)
        self._on_changed()

    def _describe_items(self) -> None:
        """Tooltips of the listed models: where a kept model lives, what a built-in one is for."""
        tips = {BUILTIN_PREFIX + e.name: e.description for e in builtin_entries()}
        tips.update({LIBRARY_PREFIX + e.name: str(e.checkpoint) for e in MODELS.library()})
        for i in range(self.combo.count()):
            tip = tips.get(self.combo.itemText(i))
            if tip:
                self.combo.setItemData(i, tip, Qt.ToolTipRole)

    def disconnect_registry(self) -> None:
        """Stop following the registry (the owning widget closes)."""
        MODELS.changed.disconnect(self.refresh)

    def _on_changed(self, *_) -> None:
        is_file = self.combo.currentText() == CHECKPOINT_FILE
        self.checkpoint_edit.setEnabled(is_file)
        self.checkpoint_button.setEnabled(is_file)
        self.changed.emit(self.combo.currentText())

    # -- checkpoint file ---------------------------------------------------------------------------
    def choose_checkpoint(self) -> None:
        """Pick a checkpoint file with a dialog."""
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", str(models_dir()), "Models: checkpoints and bioimage.io packages (*.pt *.zip)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        """Choose the checkpoint file at ``path``."""
        self.checkpoint_edit.setText(str(path))
        self.combo.setCurrentText(CHECKPOINT_FILE)

    # -- reading -----------------------------------------------------------------------------------
    def is_new(self) -> bool:
        """True when "new model" is chosen."""
        return self.combo.currentText() == NEW_MODEL

    def source(self) -> ModelSource:
        """The chosen source.

        Raises
        ------
        InputError
            A missing checkpoint file, or a session model that is gone or was never saved
            (where a file is needed).
        """
        from unet_core.errors import InputError

        choice = self.combo.currentText()
        if choice == NEW_MODEL:
            return ModelSource("new")
        if choice.startswith(SESSION_PREFIX):
            entry = MODELS.get(choice[len(SESSION_PREFIX):])
            if entry is None:
                raise InputError(f"{choice} is no longer available; choose another model")
            if self._saved_only and entry.checkpoint is None:
                raise InputError(f"{choice} has no saved checkpoint; choose another model")
            return ModelSource("session", entry.checkpoint, entry.model)
        if choice.startswith((LIBRARY_PREFIX, BUILTIN_PREFIX)):
            return self._kept_source(choice)
        text = self.checkpoint_edit.text().strip()
        if not text or not Path(text).expanduser().is_file():
            raise InputError(f"checkpoint {text or '(none)'} not found; {self._hint}")
        return ModelSource("checkpoint", Path(text).expanduser())

    def _kept_source(self, choice: str) -> ModelSource:
        """A library or built-in model chosen as ``choice`` (its checkpoint file)."""
        from unet_core.errors import InputError

        if choice.startswith(LIBRARY_PREFIX):
            entry = MODELS.get(choice[len(LIBRARY_PREFIX):], origin="library")
            if entry is None or not entry.checkpoint.is_file():
                raise InputError(f"{choice} is no longer in the model library "
                                 f"({MODELS.library_folder}); choose another model")
            return ModelSource("library", entry.checkpoint)
        from unet_core.errors import CheckpointError

        try:
            return ModelSource("builtin", builtin_path(choice[len(BUILTIN_PREFIX):]))
        except CheckpointError as exc:  # the file is missing: say so like any other input problem
            raise InputError(str(exc)) from exc
