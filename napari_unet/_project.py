"""Where the plugin keeps its files, and asking before anything is overwritten.

The project folder defaults to ``~/.napari-unet`` (``$NAPARI_UNET_HOME`` overrides it); each
image gets ``autosave/<image>/`` for its annotations. Checkpoints default to ``models/``, the
model library (trained models, listed in Train and Predict after a restart) is
``models/library/`` and exports go to ``exports/`` inside it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path


def project_home() -> Path:
    """The plugin's base folder: ``$NAPARI_UNET_HOME`` or ``~/.napari-unet``."""
    env = os.environ.get("NAPARI_UNET_HOME")
    return Path(env).expanduser() if env else Path.home() / ".napari-unet"


def safe_name(name: str) -> str:
    """``name`` usable as a file or folder name on every OS."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", name).strip(" .")
    return cleaned or "image"


def autosave_dir(image_name: str, base: str | os.PathLike | None = None) -> Path:
    """Autosave folder of an image's annotations (``<base>/<image>``, base default autosave/)."""
    root = Path(base).expanduser() if base else project_home() / "autosave"
    return root / safe_name(image_name)


def models_dir() -> Path:
    """Default folder for checkpoints."""
    return project_home() / "models"


def library_dir() -> Path:
    """The model library: named checkpoints kept across sessions (``models/library``)."""
    return models_dir() / "library"


def exports_dir() -> Path:
    """Default folder for exported predictions."""
    return project_home() / "exports"


def ask_overwrite(parent, paths: Sequence[Path]) -> bool:
    """Ask (a modal question) whether existing ``paths`` may be replaced."""
    from qtpy.QtWidgets import QMessageBox

    shown = "\n".join(str(p) for p in list(paths)[:8])
    more = f"\n... and {len(paths) - 8} more" if len(paths) > 8 else ""
    answer = QMessageBox.question(
        parent,
        "Replace files?",
        f"These files exist already:\n{shown}{more}\n\nReplace them?",
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes
