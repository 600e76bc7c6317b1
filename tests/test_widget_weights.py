"""Weight-map widget: the map layer, live recomputation after painting, slice-wise for stacks."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import add_sample, open_widget, project_home, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


def test_weight_map_layer_and_live_update(make_napari_viewer, qtbot, project_home):  # noqa: F811
    from unet_core.config import WeightMapConfig
    from unet_core.weights import boundary_weight_map

    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    labels = viewer.add_labels(truth.astype(np.uint16), name="nuclei labels", scale=image.scale, translate=image.translate)
    widget = open_widget(viewer, "Weight map")
    assert widget.labels_combo.currentText() == "nuclei labels"
    # defaults come from the engine's WeightMapConfig
    assert widget.form.get("w0") == WeightMapConfig().w0 and widget.form.get("sigma") == WeightMapConfig().sigma
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    layer = widget.weights_layer()
    assert layer is not None and layer.name == "nuclei labels weights"
    expected = boundary_weight_map(truth, w0=WeightMapConfig().w0, sigma=WeightMapConfig().sigma)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5)
    np.testing.assert_allclose(layer.scale, labels.scale)
    np.testing.assert_allclose(layer.translate, labels.translate)
    assert layer.colormap.name == "magma"
    # painting (paint event) triggers a debounced recomputation in the worker
    before = layer.data.copy()
    labels.paint((64, 64), int(truth.max()) + 1, refresh=True)
    assert widget.debounce.isActive() or widget.runner.running
    qtbot.waitUntil(lambda: not np.array_equal(widget.weights_layer().data, before), timeout=10_000)
    assert widget.weights_layer() is layer  # replaced in place, no duplicate
    assert sum(1 for lay in viewer.layers if lay.name.endswith("weights")) == 1


def test_weight_map_of_current_slice(make_napari_viewer, qtbot, project_home):  # noqa: F811
    viewer = make_napari_viewer()
    stack = np.zeros((3, 40, 40), np.uint16)
    stack[1, 5:15, 5:15] = 1
    stack[1, 5:15, 16:26] = 2
    viewer.add_labels(stack, name="stack labels")
    viewer.dims.set_current_step(0, 1)
    widget = open_widget(viewer, "Weight map")
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    data = widget.weights_layer().data
    assert data.shape == stack.shape
    assert data[1].max() > 2 and not data[0].any()  # only the shown slice computed
