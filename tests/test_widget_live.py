"""Live dock: start, paint, the snapshot reaches the session, the view is predicted, stop saves."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import add_sample, cpu_only, open_widget, project_home, registry  # noqa: F401

from napari_unet._live_widget import visible_window

pytestmark = pytest.mark.gui


def tiny_live(widget):
    widget.model_form.set("depth", 1)
    widget.model_form.set("base_channels", 4)
    widget.train_form.set("batch_size", 1)
    widget.train_form.set("tile_size", 24)
    widget.train_form.set("device", "cpu")


def test_visible_window_follows_camera_and_layer_placement():
    # 100x200 canvas, zoom 2: 50x100 world units around (30, 60); layer scale 0.5, shifted by 10
    window = visible_window((30.0, 60.0), 2.0, (100, 200), (0.5, 0.5), (10.0, 0.0), (64, 512))
    assert window == ((0, 64), (20, 220))
    assert visible_window((-500.0, 0.0), 1.0, (100, 100), (1, 1), (0, 0), (64, 64)) is None


def test_paint_snapshot_prediction_stop(make_napari_viewer, qtbot, cpu_only, project_home, registry):  # noqa: F811
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer, size=96)
    labels = viewer.add_labels(np.zeros(truth.shape, np.uint16), name="nuclei labels",
                               scale=image.scale, translate=image.translate)
    widget = open_widget(viewer, "Live")
    assert widget.labels_combo.currentText() == "nuclei labels"
    tiny_live(widget)
    arrived = []
    widget.snapshot_arrived.connect(arrived.append)
    assert widget.start()
    assert not widget.start_button.isEnabled() and widget.stop_button.isEnabled()
    labels.data = truth.astype(np.uint16)  # "paint": the data event starts the debounce timer
    assert widget.snapshot_timer.isActive()
    qtbot.waitUntil(lambda: any(r.metrics["annotated_pixels"] > 0 for r in arrived), timeout=60_000)
    qtbot.waitUntil(lambda: widget.predictions_shown > 0, timeout=30_000)
    pred = viewer.layers["nuclei live prediction"]
    unc = viewer.layers["nuclei uncertainty"]
    assert pred.data.shape == unc.data.shape == truth.shape and pred.data.dtype == np.float32
    assert tuple(pred.scale) == tuple(image.scale)
    (y0, y1), (x0, x1) = widget.last_prediction.window
    assert pred.data[y0:y1, x0:x1].any() and not pred.data[:y0].any() and not pred.data[y1:].any()
    assert viewer.layers.index(labels) > viewer.layers.index(pred)  # labels stay on top
    assert viewer.layers.selection.active is labels  # and selected: painting goes on
    widget.toggle_pause()
    assert widget.pause_button.text() == "Resume"
    with qtbot.waitSignal(widget.finished, timeout=60_000):
        widget.stop()
    assert widget.job is None and widget.start_button.isEnabled()
    assert widget.result.checkpoint == widget.checkpoint and widget.checkpoint.is_file()
    assert registry.latest().checkpoint == widget.checkpoint
    qtbot.waitUntil(lambda: not widget._ending, timeout=30_000)  # the process exited and was closed
    # a second start into the same file asks first; "no" leaves it alone
    asked = []
    widget.confirm_overwrite = lambda path: asked.append(path) or False
    assert not widget.start() and asked == [widget.checkpoint]
