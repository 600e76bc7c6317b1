"""The Qt-free autosave store of the Annotate widget, without a viewer."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from napari_unet._autosave import (
    LABELS_FILE,
    REGION_FILE,
    SESSION_FILE,
    AnnotationSession,
    AutosaveStore,
)


def _layers():
    labels = SimpleNamespace(data=np.zeros((20, 30), np.uint16), scale=(0.5, 0.25))
    labels.data[2:5, 3:9] = 7
    region = SimpleNamespace(shape_type=["rectangle"], data=[np.array([[1.0, 2.0], [1, 12], [9, 12], [9, 2]])])
    return labels, region


def test_saves_only_changed_parts_and_reads_them_back(tmp_path):
    from unet_core.io import read_tiff

    store = AutosaveStore(tmp_path / "auto")
    labels, region = _layers()
    session = AnnotationSession("my image/1", (20, 30), labels=labels, region=region)
    assert store.save(session) == [] and store.find("my image/1") is None  # nothing changed yet
    session.labels_dirty = True
    (written,) = store.save(session)
    folder = store.session_dir("my image/1")
    assert written == folder / LABELS_FILE and folder.parent == tmp_path / "auto"
    assert not session.dirty and session.last_saved is not None
    assert not (folder / REGION_FILE).exists()  # the region did not change
    meta = json.loads((folder / SESSION_FILE).read_text())
    assert meta["image"] == "my image/1" and meta["shape"] == [20, 30]
    assert store.find("my image/1")["image"] == "my image/1"
    data, tiff_meta = read_tiff(written)
    assert data.dtype == np.uint8  # the smallest dtype that holds the ids
    np.testing.assert_array_equal(store.load_labels("my image/1"), labels.data)
    assert tiff_meta.pixel_size == pytest.approx((0.5, 0.25))
    assert store.load_region("my image/1") is None
    session.mark_present_dirty()
    assert len(store.save(session)) == 2
    back = store.load_region("my image/1")
    assert back["shape_type"] == ["rectangle"]
    np.testing.assert_allclose(back["data"][0], region.data[0])


def test_a_failed_save_raises_and_keeps_the_change_pending(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    labels, _ = _layers()
    session = AnnotationSession("img", (20, 30), labels=labels, labels_dirty=True)
    with pytest.raises(OSError):
        AutosaveStore(blocker).save(session)
    assert session.labels_dirty


def test_malformed_region_and_missing_labels(tmp_path):
    from unet_core.errors import InputError

    store = AutosaveStore(tmp_path)
    with pytest.raises(InputError):
        store.load_labels("none")
    folder = store.session_dir("img")
    folder.mkdir()
    (folder / REGION_FILE).write_text(json.dumps({"shape_type": ["rectangle", "polygon"], "data": [[[0, 0]]]}))
    with pytest.raises(ValueError, match="shape types"):
        store.load_region("img")
    (folder / REGION_FILE).write_text("{broken")
    with pytest.raises(ValueError):
        store.load_region("img")


def test_the_store_imports_no_qt():
    code = ("import sys, napari_unet._autosave; "
            "print(' '.join(m for m in ('qtpy', 'PyQt5', 'napari', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_versions_keep_the_previous_saves(tmp_path):
    """The old failure: the autosave after "use as annotations" overwrote the painted copy."""
    from napari_unet._autosave import version_path

    store = AutosaveStore(tmp_path / "auto", versions=3)
    labels, _ = _layers()
    session = AnnotationSession("img", (20, 30), labels=labels)
    saves = []
    for value in (7, 8, 9, 10):
        labels.data = np.full((20, 30), value, np.uint16)
        session.labels_dirty = True
        store.save(session)
        saves.append(value)
    folder = store.session_dir("img")
    assert [p.name for p in store.versions_of("img")] == ["labels.tif", "labels.1.tif", "labels.2.tif"]
    assert not version_path(folder, 3).exists()  # only the last 3 saves are kept
    assert [int(store.load_labels("img", k).max()) for k in range(3)] == [10, 9, 8]  # newest first
    assert int(store.load_labels("img").max()) == 10  # restoring offers the newest
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
    with pytest.raises(ValueError, match="versions"):
        AutosaveStore(tmp_path, versions=0)
