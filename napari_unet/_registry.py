"""The plugin-level model registry: this session's models, the model library, built-in models.

The Train widget registers each model it produces (:meth:`ModelRegistry.add`); a model with a
checkpoint is also kept in the **model library** (``<project>/models/library/<name>.pt``, see
:func:`napari_unet._project.library_dir`), copied there atomically, so it is listed again after
napari restarts. The Train and Predict widgets list session models, library models and the
built-in models (:func:`builtin_entries`). Plain Python (psygnal signal), no Qt.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from psygnal import Signal

from ._project import library_dir, safe_name

log = logging.getLogger(__name__)

Origin = Literal["session", "library", "builtin"]


@dataclass(frozen=True)
class ModelEntry:
    """A trained model available for prediction or fine-tuning.

    Attributes
    ----------
    name : str
        Display name (unique per origin).
    model : SegmentationNet or None
        The network (eval mode, CPU); None when it is only on disk (library, built-in).
    checkpoint : Path or None
        Where it is saved (built-in models: resolved when chosen, see :func:`builtin_path`).
    stopped : bool
        True when training was stopped early.
    origin : {'session', 'library', 'builtin'}
        Trained in this session, kept in the model library, or shipped with napari-unet.
    description : str
        What the model is for (built-in models), shown as a tooltip.
    """

    name: str
    model: Any = None
    checkpoint: Path | None = None
    stopped: bool = False
    origin: Origin = "session"
    description: str = ""


def builtin_entries() -> list[ModelEntry]:
    """The built-in models (``unet_core.builtin_models``); [] where that module is missing."""
    try:  # through sys.modules (not the package attribute), so tests can hide the module
        builtin_models = importlib.import_module("unet_core.builtin_models")
    except ImportError:
        return []
    return [ModelEntry(str(getattr(m, "name", m)), origin="builtin",
                       description=str(getattr(m, "description", "")))
            for m in builtin_models.list_builtin_models()]


def builtin_path(name: str) -> Path:
    """The checkpoint of built-in model ``name`` (``unet_core.builtin_models``)."""
    return Path(importlib.import_module("unet_core.builtin_models").builtin_model_path(name))


def keep_in_library(name: str, checkpoint: Path, folder: Path | None = None) -> Path:
    """Copy ``checkpoint`` into the model library as ``<name>.pt``, atomically; return the copy.

    The copy is written to a temporary file in the library and renamed over any older model of
    the same name, so a crash never leaves a half-written library model.
    """
    folder = library_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{safe_name(name)}.pt"
    if target.exists() and target.resolve() == Path(checkpoint).resolve():
        return target
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(checkpoint, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class ModelRegistry:
    """Session models (ordered, newest last) plus the model library and the built-in models.

    Parameters
    ----------
    library : Path, optional
        The library folder (default: :func:`napari_unet._project.library_dir`, read at each use).
    """

    changed = Signal()

    def __init__(self, library: Path | None = None) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._library = library

    @property
    def library_folder(self) -> Path:
        """Where library models are kept."""
        return library_dir() if self._library is None else Path(self._library)

    def add(self, entry: ModelEntry, keep: bool = True) -> ModelEntry:
        """Register session model ``entry`` (a same-named one is replaced); return it.

        With ``keep``, a model whose checkpoint file exists is also copied into the library
        (a failure to copy is logged; the session entry stays).
        """
        if keep and entry.checkpoint is not None and Path(entry.checkpoint).is_file():
            try:
                keep_in_library(entry.name, Path(entry.checkpoint), self.library_folder)
            except OSError as exc:
                log.warning("could not keep model %r in the library %s: %s", entry.name,
                            self.library_folder, exc)
        self._entries.pop(entry.name, None)
        self._entries[entry.name] = entry
        self.changed.emit()
        return entry

    def get(self, name: str, origin: Origin = "session") -> ModelEntry | None:
        """The entry called ``name`` of ``origin``, or None."""
        if origin == "session":
            return self._entries.get(name)
        pool = self.library() if origin == "library" else builtin_entries()
        return next((e for e in pool if e.name == name), None)

    def names(self) -> list[str]:
        """Session model names, newest last."""
        return list(self._entries)

    def library(self) -> list[ModelEntry]:
        """Library models by name, except those a session model of the same name stands for."""
        folder = self.library_folder
        files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        session = {safe_name(n) for n in self._entries}
        return [ModelEntry(f.stem, checkpoint=f, origin="library") for f in files
                if not f.name.startswith(".") and f.stem not in session]

    def latest(self) -> ModelEntry | None:
        """The most recently added session entry, or None."""
        return next(reversed(self._entries.values()), None)

    def reload(self) -> None:
        """Tell the listeners to list again (the library folder changed on disk)."""
        self.changed.emit()

    def clear(self) -> None:
        """Forget every session entry (the library files stay)."""
        self._entries.clear()
        self.changed.emit()


#: the one registry of the running napari session
MODELS = ModelRegistry()
