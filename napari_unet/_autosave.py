"""Autosaved annotations on disk, without Qt: what the Annotate widget schedules.

Each image's annotations live in ``<folder>/<image>/``: ``labels.tif`` (the painted labels, the
smallest unsigned dtype, pixel size and unit from the layer), ``region.json`` (the training-region
shapes) and ``session.json`` (image name, shape, time of the save). Every file is written
atomically, so a crash mid-save keeps the previous version. Earlier saves of the labels are kept
as versions, ``labels.1.tif`` (the save before the newest) up to ``labels.<N-1>.tif``: a save that
overwrote good work (e.g. after "Use as annotations" replaced it) never destroys the copy before. An :class:`AnnotationSession`
records which parts changed since their last save; :class:`AutosaveStore` writes only those.

Plain Python (numpy, the engine's TIFF I/O): the layers are duck-typed (``.data``, ``.scale``,
``.shape_type``), so the store is tested without a viewer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ._pixel_size import unit_from_state
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
    versions: int = 5


def _write_bytes(data: bytes, fh) -> None:
    fh.write(data)


def version_path(folder: Path, k: int) -> Path:
    """The file of the k-th labels save before the newest: ``labels.<k>.tif``."""
    stem, dot, ext = LABELS_FILE.partition(".")
    return folder / f"{stem}.{k}{dot}{ext}"


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
    versions : int
        How many saves of the labels are kept (>= 1): ``labels.tif`` (the newest) and
        ``labels.1.tif`` ... ``labels.<versions-1>.tif`` (older and older).
    """

    def __init__(self, folder: str | Path, versions: int = 5):
        if versions < 1:
            raise ValueError(f"versions must be >= 1 (the newest save), got {versions}")
        self.folder = Path(folder).expanduser()
        self.versions = int(versions)

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
            self._keep_versions(folder)
            path = write_tiff(
                folder / LABELS_FILE, data.astype(labels_dtype(data), copy=False),
                pixel_size=tuple(float(s) for s in session.labels.scale),
                unit=unit_from_state(getattr(session.labels, "metadata", None), getattr(session.labels, "units", None)),
                overwrite=True,
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

    def _keep_versions(self, folder: Path) -> None:
        """Shift ``labels.tif`` -> ``labels.1.tif`` -> ... before a new save; drop the oldest.

        The newest file stays in place until the new save replaces it atomically (it is hard
        linked, or copied where links are impossible), so a crash at any moment keeps every
        complete save.
        """
        current = folder / LABELS_FILE
        if self.versions < 2 or not current.is_file():
            return
        for k in range(self.versions - 2, 0, -1):
            older = version_path(folder, k)
            if older.is_file():
                os.replace(older, version_path(folder, k + 1))
        previous = version_path(folder, 1)
        tmp = previous.with_name(f".{previous.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(current, tmp)
        except OSError:  # a file system without hard links
            shutil.copy2(current, tmp)
        os.replace(tmp, previous)

    def versions_of(self, image_name: str) -> list[Path]:
        """The saved labels files of ``image_name``, newest first (``labels.tif``, ``labels.1.tif``, ...)."""
        folder = self.session_dir(image_name)
        paths = [folder / LABELS_FILE] + [version_path(folder, k) for k in range(1, self.versions)]
        return [p for p in paths if p.is_file()]

    def load_labels(self, image_name: str, version: int = 0) -> np.ndarray:
        """The saved labels of ``image_name``: the newest (``version`` 0) or an older save.

        Parameters
        ----------
        version : int
            0 for ``labels.tif``, k for ``labels.<k>.tif`` (the k-th save before the newest).

        Returns
        -------
        ndarray of unsigned int, the image's spatial shape

        Raises
        ------
        InputError
            No such saved labels, or an unreadable file.
        """
        from unet_core.io import read_tiff

        folder = self.session_dir(image_name)
        data, _ = read_tiff(folder / LABELS_FILE if version == 0 else version_path(folder, version))
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
