"""Annotate widget: matching labels layer, new-object id, autosave and restore."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_support import add_sample, cpu_only, open_widget, project_home  # noqa: F401

pytestmark = pytest.mark.gui


def test_create_layers_matches_image(make_napari_viewer, project_home):  # noqa: F811
    viewer = make_napari_viewer()
    image, _ = add_sample(viewer)
    widget = open_widget(viewer, "Annotate")
    widget.region_check.setChecked(True)
    labels = widget.create_layers()
    assert labels.name == "nuclei labels"
    assert labels.data.shape == image.data.shape and labels.data.dtype == np.uint16
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert str(labels.mode) == "paint" and viewer.layers.selection.active is labels
    assert "nuclei region" in [layer.name for layer in viewer.layers]
    # creating again reuses the layer
    assert widget.create_layers() is labels
    labels.data[5:10, 5:10] = 3
    assert widget.new_object() == 4
    assert labels.selected_label == 4
    # the "new object" shortcut is bound on the labels layer
    labels.data[30:33, 30:33] = 9
    (handler,) = [f for key, f in labels.keymap.items() if str(key) == "N"]
    handler(labels)
    assert labels.selected_label == 10


def test_rgb_image_gets_2d_labels(make_napari_viewer, project_home):  # noqa: F811
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="rgb", rgb=True)
    widget = open_widget(viewer, "Annotate")
    labels = widget.create_layers()
    assert labels.data.shape == (40, 50)


def test_autosave_only_when_changed_and_restore(make_napari_viewer, project_home, qtbot):  # noqa: F811
    from unet_core.io import read_tiff

    viewer = make_napari_viewer(show=True)
    image, _ = add_sample(viewer)
    widget = open_widget(viewer, "Annotate")
    widget.interval_spin.setValue(2)
    labels = widget.create_layers()
    folder = widget.session_dir("nuclei")
    widget.autosave_tick()
    assert not (folder / "labels.tif").exists()  # nothing painted yet
    # paint through the layer API (emits the paint event like a brush stroke)
    labels.paint((20, 20), 7, refresh=True)
    qtbot.waitUntil(lambda: (folder / "labels.tif").exists(), timeout=5000)  # the 2 s timer
    saved, _ = read_tiff(folder / "labels.tif")
    assert saved.shape == labels.data.shape and saved[20, 20] == 7
    assert json.loads((folder / "session.json").read_text())["image"] == "nuclei"
    # close the image and its labels, reopen: the widget offers to restore
    viewer.layers.remove(labels)
    viewer.layers.remove(image)
    image2, _ = add_sample(viewer)
    assert widget.restore_button.isVisibleTo(widget)
    restored = widget.restore()
    assert restored.name == "nuclei labels" and restored.data[20, 20] == 7
    np.testing.assert_allclose(restored.scale, image2.scale)
    # closing the widget (or napari) saves pending changes at once, without waiting for the timer
    widget.interval_spin.setValue(3600)
    restored.paint((40, 40), 8, refresh=True)
    widget.hide()
    saved, _ = read_tiff(folder / "labels.tif")
    assert saved[40, 40] == 8 and saved[20, 20] == 7
