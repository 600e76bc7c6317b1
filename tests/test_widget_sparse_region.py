"""The Weight map widget previews the sparse-painting rule: objects + ring + background strokes."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import open_widget, project_home, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


def test_preview_shows_ring_region_and_background_strokes(make_napari_viewer, qtbot, project_home):  # noqa: F811
    from unet_core.config import TrainConfig
    from unet_core.training.targets import BACKGROUND_LABEL

    ring = TrainConfig().sparse_ring
    lab = np.zeros((120, 120), np.uint16)
    lab[10:20, 10:20] = 1          # two painted nuclei far apart
    lab[90:100, 90:100] = 2
    lab[60:62, 20:40] = BACKGROUND_LABEL  # a background stroke away from both
    viewer = make_napari_viewer()
    viewer.add_labels(lab, name="sparse labels")
    widget = open_widget(viewer, "Weight map")
    assert widget.train_form.get("region_rule") == TrainConfig().region_rule
    widget.train_form.set("region_rule", "ring")
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    w = widget.weights_layer().data
    assert (w[10:20, 10:20] > 0).all() and (w[90:100, 90:100] > 0).all()
    assert w[15, 20 + ring - 1] > 0 and w[15, 20 + ring + 2] == 0  # the ring, and no further
    assert (w[60:62, 20:40] > 0).all()       # the stroke teaches background
    assert w[50, 50] == 0 and w[60, 45] == 0  # the unpainted rest is not taught
    widget.train_form.set("region_rule", "box")  # the bounding box: the gap is taught
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    assert widget.weights_layer().data[50, 50] > 0
