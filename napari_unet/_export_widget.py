"""Export dock widget: every prediction (and optionally annotation/probability) layer to TIFF.

Files are named ``<layer name>.tif`` in the chosen folder and written atomically through the
same code as the npe2 writer (``napari_unet._writer``): labels as the smallest unsigned type
(never int64), the layer scale as TIFF resolution / ImageJ spacing with the layer's unit (none
when it is unknown), zlib. Existing files are only replaced after a yes to
:meth:`ExportWidget.confirm_overwrite`. (Single layers: File > Save Selected Layers..., file
type "napari-unet labels TIFF with pixel size and unit", which uses the same writer.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import napari
import napari.layers
from qtpy.QtWidgets import (
    QCheckBox,
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

from ._dock import fit_dock
from ._jobs import JobOutcome, JobRunner
from ._layers import LABELS_SUFFIX, PREDICTION_SUFFIX, PROBABILITY_SUFFIX, real_viewer
from ._project import ask_overwrite, exports_dir, safe_name

log = logging.getLogger(__name__)


class ExportWidget(QWidget):
    """Write prediction layers (and optionally annotations and probabilities) to a folder."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)
        self.folder_edit = QLineEdit(str(exports_dir()))
        self.folder_button = QPushButton("...")
        self.folder_button.setMaximumWidth(30)
        self.annotations_check = QCheckBox("also annotation layers ('<image> labels')")
        self.probability_check = QCheckBox("also probability maps")
        self.export_button = QPushButton("Export predictions")
        self.status = QLabel(
            "Single layers: File > Save Selected Layers..., file type "
            "'napari-unet labels TIFF with pixel size and unit'."
        )
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(self.folder_button)
        form = QFormLayout()
        form.addRow("folder", row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.annotations_check)
        layout.addWidget(self.probability_check)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        layout.addWidget(self._package_box())
        layout.addStretch(1)
        self.folder_button.clicked.connect(self.choose_folder)
        self.export_button.clicked.connect(self.export)
        fit_dock(self, guide="Export")  # last: scroll, fold, wheel-safe

    def _package_box(self) -> QGroupBox:
        """The "model as a bioimage.io package" group (BioImage Model Zoo, deepImageJ, ilastik)."""
        from ._model_source import ModelSourceChooser

        self.package_source = ModelSourceChooser(
            new_model=False, saved_only=True, placeholder="checkpoint to export (.pt)",
            missing_hint="train a model, or choose a checkpoint file",
        )
        self.package_author = QLineEdit()
        self.package_author.setPlaceholderText("your name (required by bioimage.io)")
        self.package_license = QLineEdit("CC-BY-4.0")
        self.package_edit = QLineEdit(str(exports_dir() / "model.zip"))
        self.package_button = QPushButton("Export model package")
        self.package_runner = JobRunner("Export model package", parent=self)
        self.package_runner.finished.connect(self._on_package_written)
        box = QGroupBox("Model as a bioimage.io package")
        form = QFormLayout(box)
        form.addRow("model", self.package_source)
        form.addRow("author", self.package_author)
        form.addRow("licence", self.package_license)
        form.addRow("package", self.package_edit)
        form.addRow(self.package_button)
        self.package_button.clicked.connect(self.export_package)
        return box

    def export_package(self) -> bool:
        """Write the chosen model as a bioimage.io package in a worker; False when not started."""
        from napari.utils.notifications import show_error

        from unet_core.errors import InputError

        try:
            checkpoint = self.package_source.source().checkpoint
            if checkpoint is None:
                raise InputError("the chosen model has no checkpoint file; save it first")
            author = self.package_author.text().strip()
            if not author:
                raise InputError("give an author name (bioimage.io packages must name one)")
        except InputError as exc:
            show_error(f"Export model package: {exc}")
            return False
        target = Path(self.package_edit.text().strip()).expanduser()
        if target.exists() and not self.confirm_overwrite([target]):
            return False
        self.package_button.setEnabled(False)
        self.package_runner.start(
            lambda: _package_job(checkpoint, target, author, self.package_license.text().strip())
        )
        return True

    def _on_package_written(self, outcome: JobOutcome) -> None:
        self.package_button.setEnabled(True)
        if outcome.ok and outcome.value is not None:
            self.status.setText(f"Wrote the model package {outcome.value}")

    def choose_folder(self) -> None:
        """Pick the export folder."""
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def layers_to_export(self) -> list:
        """Layers the current options select, in layer-list order."""
        out = []
        for layer in self.viewer.layers:
            if isinstance(layer, napari.layers.Labels) and layer.name.endswith(PREDICTION_SUFFIX):
                out.append(layer)
            elif self.annotations_check.isChecked() and isinstance(layer, napari.layers.Labels) and layer.name.endswith(LABELS_SUFFIX):
                out.append(layer)
            elif self.probability_check.isChecked() and isinstance(layer, napari.layers.Image) and layer.name.endswith(PROBABILITY_SUFFIX):
                out.append(layer)
        return out

    def confirm_overwrite(self, paths: list[Path]) -> bool:
        """Ask before replacing existing files (tests monkeypatch this)."""
        return ask_overwrite(self, paths)

    def export(self) -> list[Path]:
        """Write the selected layers as ``<folder>/<layer name>.tif``; return the written files."""
        from napari.utils.notifications import show_error, show_info, show_warning

        from ._writer import write_image, write_labels

        layers = self.layers_to_export()
        if not layers:
            show_warning("Export: no prediction layers; run the Predict widget first.")
            return []
        folder = Path(self.folder_edit.text().strip() or exports_dir()).expanduser()
        targets = [(layer, folder / f"{safe_name(layer.name)}.tif") for layer in layers]
        existing = [p for _, p in targets if p.exists()]
        if existing and not self.confirm_overwrite(existing):
            self.status.setText("Nothing exported: choose another folder, or allow replacing the files.")
            return []
        written: list[Path] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for layer, path in targets:
                meta = {
                    "scale": tuple(layer.scale),
                    "name": layer.name,
                    "rgb": getattr(layer, "rgb", False),
                    "metadata": dict(layer.metadata),  # the unit (None: unknown, none written)
                    "units": getattr(layer, "units", None),
                }
                writer = write_labels if isinstance(layer, napari.layers.Labels) else write_image
                written += [Path(p) for p in writer(str(path), layer.data, meta)]
        except OSError as exc:
            show_error(f"Export: writing to {folder} failed ({exc}); choose another folder.")
            return written
        self.status.setText("Wrote:\n" + "\n".join(str(p) for p in written))
        show_info(f"napari-unet: exported {len(written)} layer(s) to {folder}")
        return written


def _package_job(checkpoint: Path, target: Path, author: str, licence: str):
    """Worker generator: export ``checkpoint`` as a bioimage.io package at ``target``."""
    from unet_core.bmz import export_bmz
    from unet_core.progress import Progress

    yield Progress("export", 0, 1, f"writing {target.name}")
    return export_bmz(checkpoint, target, authors=[author], license=licence or "CC-BY-4.0", overwrite=True)
