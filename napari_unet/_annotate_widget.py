"""Annotate dock widget: an annotation Labels layer for an image, brush ready, and autosave.

* **Create** makes ``"<image> labels"`` (uint16, the image's pixel grid without the RGB axis,
  same scale/translate) and selects it in paint mode; optionally a ``"<image> region"`` Shapes
  layer for the training region.
* **New object** (shortcut ``N`` on the labels layer) picks the next free id.
* **Pixel size**: the image's pixel size and unit ("unknown" unless the file or the user says),
  set for the image and its layers with **Set**; new layers copy it, so exports write it.
* **Autosave**: every *N* seconds (only when something changed), when a layer is removed and
  when the widget closes, the annotation layers are written atomically to
  ``<autosave folder>/<image>/`` (``labels.tif``, ``region.json``, ``session.json``). When an image
  whose autosave exists is opened (or chosen), the widget offers to restore it. A crash or a
  kill therefore never loses more than *N* seconds of painting. The files are the business of
  the Qt-free :class:`napari_unet._autosave.AutosaveStore`; this widget only schedules it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import napari
import napari.layers
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._autosave import (
    LABELS_FILE,
    REGION_FILE,
    SESSION_FILE,
    AnnotationSession,
    AutosaveSettings,
    AutosaveStore,
    find_autosave,
)
from ._dock import fit_dock
from ._layers import (
    ANNOTATION_DTYPE,
    LABELS_SUFFIX,
    REGION_SUFFIX,
    LayerChooser,
    PixelSizeRow,
    find_layer,
    geometry,
    real_viewer,
    set_labels_undoable,
    spatial_shape,
)

log = logging.getLogger(__name__)

__all__ = [
    "LABELS_FILE", "REGION_FILE", "SESSION_FILE", "AnnotateWidget", "AnnotationSession",
    "AutosaveSettings", "find_autosave",
]

NEW_OBJECT_KEY = "n"


class AnnotateWidget(QWidget):
    """Create annotation layers for an image, paint, and keep them safe on disk."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.settings = AutosaveSettings()
        self.store = AutosaveStore(self.settings.folder, self.settings.versions)
        self.sessions: dict[str, AnnotationSession] = {}
        self._restore_target: str | None = None

        self.image_combo = LayerChooser(self.viewer, napari.layers.Image)
        self.pixel_size = PixelSizeRow(self.viewer)
        self.region_check = QCheckBox("training region (Shapes layer)")
        self.create_button = QPushButton("Create annotation layers")
        self.new_object_button = QPushButton(f"New object  [{NEW_OBJECT_KEY.upper()}]")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.folder_edit = QLineEdit(str(self.settings.folder))
        self.folder_button = QPushButton("...")
        self.folder_button.setMaximumWidth(30)
        self.interval_spin = QSpinBox()
        self.interval_spin.setRange(2, 3600)
        self.interval_spin.setSuffix(" s")
        self.interval_spin.setValue(self.settings.interval_s)
        self.autosave_check = QCheckBox("autosave")
        self.autosave_check.setChecked(self.settings.enabled)
        self.save_button = QPushButton("Save now")
        self.restore_label = QLabel("")
        self.restore_label.setWordWrap(True)
        self.restore_button = QPushButton("Restore autosaved annotations")
        self.restore_button.setVisible(False)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("pixel size", self.pixel_size)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.region_check)
        layout.addWidget(self.create_button)
        layout.addWidget(self.new_object_button)
        layout.addWidget(self.status)
        box = QGroupBox("Autosave")
        box_layout = QFormLayout(box)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(self.folder_button)
        box_layout.addRow("folder", folder_row)
        interval_row = QHBoxLayout()
        interval_row.addWidget(self.autosave_check)
        interval_row.addWidget(QLabel("every"))
        interval_row.addWidget(self.interval_spin)
        box_layout.addRow(interval_row)
        box_layout.addRow(self.save_button)
        box_layout.addRow(self.restore_label)
        box_layout.addRow(self.restore_button)
        layout.addWidget(box)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.autosave_tick)
        self._apply_timer()

        self.create_button.clicked.connect(self.create_layers)
        self.new_object_button.clicked.connect(self.new_object)
        self.save_button.clicked.connect(self.save_now)
        self.restore_button.clicked.connect(self.restore)
        self.folder_button.clicked.connect(self.choose_folder)
        self.folder_edit.editingFinished.connect(self._on_folder_edited)
        self.interval_spin.valueChanged.connect(self._on_interval_changed)
        self.autosave_check.toggled.connect(self._on_autosave_toggled)
        self.image_combo.currentTextChanged.connect(self.check_restore)
        self.image_combo.currentTextChanged.connect(self._show_pixel_size)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._show_pixel_size()
        self.check_restore()
        fit_dock(self, guide="Annotate")  # last: scroll, fold, wheel-safe

    # -- napari hooks ----------------------------------------------------------------------------
    def reset_choices(self, event=None) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.image_combo.refresh()
        self._show_pixel_size()

    def _show_pixel_size(self, *_) -> None:
        self.pixel_size.set_layer(self.image_combo.layer)

    # -- layers ----------------------------------------------------------------------------------
    def create_layers(self) -> napari.layers.Labels | None:
        """Create (or select) ``"<image> labels"`` (and the region layer) for the chosen image."""
        from napari.utils.notifications import show_warning

        image = self.image_combo.layer
        if image is None:
            show_warning("Annotate: open an image first (File > Open, or File > Open Sample > napari-unet).")
            return None
        session = self._session_for(image)
        labels = find_layer(self.viewer, image.name + LABELS_SUFFIX, napari.layers.Labels)
        if labels is None:
            labels = self.viewer.add_labels(
                np.zeros(session.shape, ANNOTATION_DTYPE), name=image.name + LABELS_SUFFIX, **geometry(image)
            )
        self._track_labels(session, labels)
        if self.region_check.isChecked():
            self._ensure_region(image, session)
        self.prepare_painting(labels)
        self.status.setText(
            f"Paint objects in '{labels.name}'; press {NEW_OBJECT_KEY.upper()} (or the button) for a new object."
        )
        return labels

    def _ensure_region(self, image, session: AnnotationSession) -> napari.layers.Shapes:
        region = find_layer(self.viewer, image.name + REGION_SUFFIX, napari.layers.Shapes)
        if region is None:
            region = self.viewer.add_shapes(
                name=image.name + REGION_SUFFIX, ndim=image.ndim, edge_color="yellow",
                face_color="transparent", edge_width=3, **geometry(image),
            )
        self._track_region(session, region)
        return region

    def prepare_painting(self, labels: napari.layers.Labels) -> None:
        """Select ``labels`` in paint mode with a visible brush and the next free id."""
        self.viewer.layers.selection.active = labels
        labels.brush_size = max(labels.brush_size, 8)
        labels.selected_label = self.next_free_id(labels)
        labels.mode = "paint"

    @staticmethod
    def next_free_id(labels: napari.layers.Labels) -> int:
        """The largest id in ``labels`` plus one."""
        return int(np.max(labels.data)) + 1 if np.size(labels.data) else 1

    def new_object(self) -> int | None:
        """Switch the brush of the current annotation layer to a new object id."""
        labels = self._active_labels()
        if labels is None:
            return None
        labels.selected_label = self.next_free_id(labels)
        labels.mode = "paint"
        return int(labels.selected_label)

    def _new_object_key(self, layer) -> None:  # keybinding on the labels layer
        layer.selected_label = self.next_free_id(layer)

    def _active_labels(self) -> napari.layers.Labels | None:
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Labels):
            return active
        image = self.image_combo.layer
        if image is not None:
            return find_layer(self.viewer, image.name + LABELS_SUFFIX, napari.layers.Labels)
        return None

    # -- tracking --------------------------------------------------------------------------------
    def _session_for(self, image) -> AnnotationSession:
        session = self.sessions.get(image.name)
        if session is None:
            session = AnnotationSession(image.name, spatial_shape(image))
            self.sessions[image.name] = session
        return session

    def _track_labels(self, session: AnnotationSession, labels: napari.layers.Labels) -> None:
        if session.labels is labels:
            return
        session.labels = labels
        labels.events.paint.connect(self._on_labels_changed)
        labels.events.data.connect(self._on_labels_changed)
        labels.bind_key(NEW_OBJECT_KEY, self._new_object_key, overwrite=True)

    def _track_region(self, session: AnnotationSession, region: napari.layers.Shapes) -> None:
        if session.region is region:
            return
        session.region = region
        region.events.data.connect(self._on_region_changed)

    def _session_of_layer(self, layer) -> AnnotationSession | None:
        for session in self.sessions.values():
            if session.labels is layer or session.region is layer:
                return session
        return None

    def _on_labels_changed(self, event) -> None:
        session = self._session_of_layer(event.source)
        if session is not None:
            session.labels_dirty = True

    def _on_region_changed(self, event) -> None:
        session = self._session_of_layer(event.source)
        if session is not None:
            session.region_dirty = True

    def _on_layer_inserted(self, event) -> None:
        try:
            self._handle_inserted(event.value)
        except RuntimeError:  # this widget was closed (its Qt object deleted): stop listening
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)

    def _handle_inserted(self, layer) -> None:
        if isinstance(layer, napari.layers.Image):
            self.check_restore(layer.name, notify=True)
        elif isinstance(layer, napari.layers.Labels) and layer.name.endswith(LABELS_SUFFIX):
            # an annotation layer made elsewhere (e.g. "use as annotations"): autosave it too
            image = find_layer(self.viewer, layer.name[: -len(LABELS_SUFFIX)], napari.layers.Image)
            if image is not None and spatial_shape(image) == layer.data.shape:
                session = self._session_for(image)
                self._track_labels(session, layer)
                session.labels_dirty = session.labels_dirty or bool(np.any(layer.data))

    def _on_layer_removed(self, event) -> None:
        session = self._session_of_layer(event.value)
        if session is None:
            return
        try:
            self.save_session(session)
        except RuntimeError:  # this widget was closed: its last save happened on hide
            self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        if session.labels is event.value:
            session.labels = None
        if session.region is event.value:
            session.region = None

    # -- autosave --------------------------------------------------------------------------------
    def _apply_timer(self) -> None:
        self.timer.stop()
        if self.settings.enabled:
            self.timer.start(int(self.settings.interval_s * 1000))

    def _on_interval_changed(self, value: int) -> None:
        self.settings.interval_s = int(value)
        self._apply_timer()

    def _on_autosave_toggled(self, checked: bool) -> None:
        self.settings.enabled = bool(checked)
        self._apply_timer()

    def _on_folder_edited(self) -> None:
        self.set_folder(self.folder_edit.text())

    def choose_folder(self) -> None:
        """Pick the autosave folder with a dialog."""
        folder = QFileDialog.getExistingDirectory(self, "Autosave folder", str(self.settings.folder))
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str | Path) -> None:
        """Use ``folder`` (one subfolder per image) for autosaves."""
        self.settings.folder = Path(folder).expanduser()
        self.store = AutosaveStore(self.settings.folder, self.settings.versions)
        self.folder_edit.setText(str(self.settings.folder))
        for session in self.sessions.values():
            session.mark_present_dirty()
        self.check_restore()

    def session_dir(self, image_name: str) -> Path:
        """Autosave folder of ``image_name``."""
        return self.store.session_dir(image_name)

    def autosave_tick(self) -> None:
        """Timer: save every session that changed since its last save."""
        for session in list(self.sessions.values()):
            if session.dirty:
                self.save_session(session)

    def save_now(self) -> list[Path]:
        """Save every annotation session now, changed or not; return the written files."""
        written: list[Path] = []
        for session in self.sessions.values():
            session.mark_present_dirty()
            written += self.save_session(session)
        return written

    def save_session(self, session: AnnotationSession) -> list[Path]:
        """Write the changed layers of ``session`` (see :class:`AutosaveStore`); return the files."""
        from napari.utils.notifications import show_error

        if not session.dirty:
            return []
        try:
            written = self.store.save(session)
        except OSError as exc:
            folder = self.session_dir(session.image_name)
            show_error(f"Annotate: autosave to {folder} failed ({exc}); choose another autosave folder.")
            return []
        self.status.setText(
            f"Autosaved '{session.image_name}' at {time.strftime('%H:%M:%S')} to {self.session_dir(session.image_name)}"
        )
        return written

    # -- restore ---------------------------------------------------------------------------------
    def check_restore(self, image_name: str | None = None, notify: bool = False) -> bool:
        """Offer to restore an autosave of ``image_name`` (default: the chosen image)."""
        name = image_name or self.image_combo.currentText()
        meta = self.store.find(name) if name else None
        current = find_layer(self.viewer, name + LABELS_SUFFIX) if name else None
        if meta is None or (current is not None and np.any(current.data)):
            if name == self._restore_target or image_name is None:
                self.restore_button.setVisible(False)
                self.restore_label.setText("")
                self._restore_target = None
            return False
        self._restore_target = name
        when = meta.get("saved", "earlier")
        self.restore_label.setText(f"Autosaved annotations of '{name}' from {when} found.")
        self.restore_button.setText(f"Restore annotations of '{name}'")
        self.restore_button.setVisible(True)
        if notify:
            from napari.utils.notifications import show_info

            show_info(
                f"napari-unet: autosaved annotations of '{name}' from {when} found; "
                "use 'Restore' in the Annotate widget."
            )
        return True

    def restore(self) -> napari.layers.Labels | None:
        """Load the autosaved annotations of the offered image into its annotation layers."""
        from napari.utils.notifications import show_error

        from unet_core.errors import InputError

        name = self._restore_target or self.image_combo.currentText()
        image = find_layer(self.viewer, name, napari.layers.Image)
        if image is None:
            show_error(f"Annotate: open the image '{name}' first, then restore its annotations.")
            return None
        folder = self.session_dir(name)
        try:
            data = self.store.load_labels(name)
        except InputError as exc:
            show_error(f"Annotate: cannot restore ({exc}).")
            return None
        session = self._session_for(image)
        if data.shape != session.shape:
            show_error(
                f"Annotate: the autosave of '{name}' has shape {data.shape}, the image {session.shape}; "
                "it belongs to another image with the same name. Rename the image or the folder."
            )
            return None
        labels = find_layer(self.viewer, name + LABELS_SUFFIX, napari.layers.Labels)
        restored = data.astype(ANNOTATION_DTYPE if data.max(initial=0) <= np.iinfo(ANNOTATION_DTYPE).max else np.uint32)
        if labels is None:
            labels = self.viewer.add_labels(restored, name=name + LABELS_SUFFIX, **geometry(image))
        else:  # one undo step: the old edit history stays valid
            set_labels_undoable(labels, restored)
        self._track_labels(session, labels)
        self._restore_region(image, session)
        session.labels_dirty = session.region_dirty = False
        self.prepare_painting(labels)
        self.restore_button.setVisible(False)
        self.restore_label.setText("")
        self._restore_target = None
        self.status.setText(f"Restored annotations of '{name}' from {folder}")
        return labels

    def _restore_region(self, image, session: AnnotationSession) -> None:
        from napari.utils.notifications import show_error

        try:
            payload = self.store.load_region(image.name)
            if payload is None:
                return
            region = self._ensure_region(image, session)
            region.data = []
            if payload["data"]:
                region.add(payload["data"], shape_type=payload["shape_type"])
        except (OSError, ValueError) as exc:
            show_error(f"Annotate: the saved training region could not be read ({exc}); draw it again.")

    # -- closing ---------------------------------------------------------------------------------
    def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Save pending changes when the widget (or the whole viewer) closes."""
        self.autosave_tick()
        super().hideEvent(event)
