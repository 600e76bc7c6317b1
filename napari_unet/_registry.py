"""The plugin-level model registry: models trained in this session, shared between widgets.

The Train widget registers each model it produces; the Predict widget lists them next to
"checkpoint file". Plain Python (psygnal signal), no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal


@dataclass(frozen=True)
class ModelEntry:
    """A trained model available for prediction.

    Attributes
    ----------
    name : str
        Display name (unique in the registry).
    model : SegmentationNet
        The network (eval mode, CPU).
    checkpoint : Path or None
        Where it is saved.
    stopped : bool
        True when training was stopped early.
    """

    name: str
    model: Any
    checkpoint: Path | None = None
    stopped: bool = False


class ModelRegistry:
    """Ordered name -> :class:`ModelEntry`; emits ``changed`` when an entry is added."""

    changed = Signal()

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}

    def add(self, entry: ModelEntry) -> ModelEntry:
        """Register ``entry`` (a same-named entry is replaced); return it."""
        self._entries.pop(entry.name, None)
        self._entries[entry.name] = entry
        self.changed.emit()
        return entry

    def get(self, name: str) -> ModelEntry | None:
        """The entry called ``name``, or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Entry names, newest last."""
        return list(self._entries)

    def latest(self) -> ModelEntry | None:
        """The most recently added entry, or None."""
        return next(reversed(self._entries.values()), None)

    def clear(self) -> None:
        """Forget every entry (tests)."""
        self._entries.clear()
        self.changed.emit()


#: the one registry of the running napari session
MODELS = ModelRegistry()
