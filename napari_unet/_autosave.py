"""Autosaved annotations on disk, without Qt: what the Annotate widget schedules.

Each image's annotations live in ``<folder>/<image>/``: ``labels.tif`` (the painted labels, the
smallest unsigned dtype, pixel size from the layer scale), ``region.json`` (the training-region
shapes) and ``session.json`` (image name, shape, time of the save). Every file is written
atomically, so a crash mid-save keeps the previous version. An :class:`AnnotationSession`
records which parts changed since their last save; :class:`AutosaveStore` writes only those.

Plain Python (numpy, the engine's TIFF I/O): the layers are duck-typed (``.data``, ``.scale``,
``.shape_type``), so the store is tested without a viewer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ._project import autosave_dir, project_home

log = logging.getLogger(__name__)

LABELS_FILE = "labels.tif"
REGION_FILE = "region.json"
SESSION_FILE = "session.json"


@dataclass
class AnnotationSession:
    """The annotation layers of one image and whether they changed since the last save.

    Attributes
    ----------
    image_name : str
    shape : tuple of int
        Spatial shape of the image (the labels' shape).
    labels : napari Labels layer or None
        Anything with ``.data`` (integer array) and ``.scale``.
    region : napari Shapes layer or None
        Anything with ``.data`` (list of vertex arrays) and ``.shape_type``.
    labels_dirty, region_dirty : bool
        Changed since the last save.
    last_saved : float or None
        ``time.time()`` of the last save.
    """

    image_name: str
    shape: tuple[int, ...]
    labels: Any = None
    region: Any = None
    labels_dirty: bool = False
    region_dirty: bool = False
    last_saved: float | None = None

    @property
    def dirty(self) -> bool:
        """True when something changed since the last save."""
        return self.labels_dirty or self.region_dirty

    def mark_present_dirty(self) -> None:
        """Mark every present layer as changed (the next save writes all of them)."""
        self.labels_dirty = self.labels_dirty or self.labels is not None
        self.region_dirty = self.region_dirty or self.region is not None


@dataclass
class AutosaveSettings:
    """Where and how often annotations are saved."""

    folder: Path = field(default_factory=lambda: project_home() / "autosave")
    interval_s: int = 30
    enabled: bool = True


def _write_bytes(data: bytes, fh) -> None:
    fh.write(data)


def find_autosave(folder: Path) -> dict | None:
    """The ``session.json`` of an autosave folder when it holds saved labels, else None."""
    session = folder / SESSION_FILE
    if not (folder / LABELS_FILE).is_file():
        return None
    try:
        return json.loads(session.read_text()) if session.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


class AutosaveStore:
    """Reads and writes the autosaved annotations of images under one folder.

    Parameters
    ----------
    folder : Path
        One subfolder per image (named after the image, made file-system safe).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def session_dir(self, image_name: str) -> Path:
        """Autosave folder of ``image_name``."""
        return autosave_dir(image_name, self.folder)

    def find(self, image_name: str) -> dict | None:
        """The saved ``session.json`` of ``image_name`` when labels were saved, else None."""
        return find_autosave(self.session_dir(image_name))

    def save(self, session: AnnotationSession) -> list[Path]:
        """Write the changed parts of ``session`` atomically; return the written data files.

        The dirty flags are cleared and ``last_saved`` set. Nothing happens when nothing changed.

        Raises
        ------
        OSError
            The folder cannot be written (the flags of parts not yet written stay set).
        """
        from unet_core.io import atomic_write, labels_dtype, write_tiff

        if not session.dirty:
            return []
        folder = self.session_dir(session.image_name)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        if session.labels_dirty and session.labels is not None:
            data = np.asarray(session.labels.data)
            path = write_tiff(
                folder / LABELS_FILE, data.astype(labels_dtype(data), copy=False),
                pixel_size=tuple(float(s) for s in session.labels.scale), overwrite=True,
            )
            written.append(Path(path))
        session.labels_dirty = False
        if session.region_dirty and session.region is not None:
            payload = {
                "shape_type": list(session.region.shape_type),
                "data": [np.asarray(d).tolist() for d in session.region.data],
            }
            text = json.dumps(payload).encode()
            written.append(atomic_write(folder / REGION_FILE, partial(_write_bytes, text), overwrite=True))
        session.region_dirty = False
        meta = {"image": session.image_name, "shape": list(session.shape), "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(folder / SESSION_FILE, partial(_write_bytes, json.dumps(meta, indent=2).encode()), overwrite=True)
        session.last_saved = time.time()
        log.debug("autosaved %s", written)
        return written

    def load_labels(self, image_name: str) -> np.ndarray:
        """The saved labels of ``image_name``.

        Raises
        ------
        InputError
            No saved labels, or an unreadable file.
        """
        from unet_core.io import read_tiff

        data, _ = read_tiff(self.session_dir(image_name) / LABELS_FILE)
        return data

    def load_region(self, image_name: str) -> dict | None:
        """The saved training region of ``image_name``: ``{'shape_type': [...], 'data': [...]}``
        with one vertex array per shape, or None when none was saved.

        Raises
        ------
        OSError, ValueError
            An unreadable or malformed ``region.json`` (``json.JSONDecodeError`` is a ValueError).
        """
        path = self.session_dir(image_name) / REGION_FILE
        if not path.is_file():
            return None
        payload = json.loads(path.read_text())
        shapes = [np.asarray(d, dtype=float) for d in payload.get("data") or []]
        kinds = payload.get("shape_type") or []
        if len(kinds) != len(shapes):
            raise ValueError(f"{path} lists {len(kinds)} shape types for {len(shapes)} shapes")
        return {"shape_type": list(kinds), "data": shapes}
