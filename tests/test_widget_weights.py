"""Weight-map widget: the map layer, live recomputation after painting, slice-wise for stacks."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import add_sample, open_widget, project_home, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


def _trained_weights(image, labels, mask=None, index=None, semantic=False):
    """The weight map that training (prepare_pairs) uses for the slice ``index`` (None: 2D)."""
    from dataclasses import replace

    from unet_core.config import TrainConfig
    from unet_core.training.data import TrainingPair, prepare_pairs

    cfg = TrainConfig()
    model = replace(cfg.model, n_classes=int(labels.max()) + 1) if semantic else cfg.model
    slices = prepare_pairs([TrainingPair(image, labels, mask, name="x")], model, cfg.weights,
                           region_margin=cfg.region_margin, semantic=semantic)
    return next(s.weight for s in slices if s.name == ("x" if index is None else f"x[{index}]"))


def test_weight_map_layer_and_live_update(make_napari_viewer, qtbot, project_home):  # noqa: F811
    from unet_core.config import TrainConfig, WeightMapConfig

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
    assert widget.train_form.get("region_margin") == TrainConfig().region_margin
    # the preview is the map that trains
    np.testing.assert_array_equal(layer.data, _trained_weights(image.data, truth))
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


def test_preview_is_the_training_map_of_a_painted_slice(make_napari_viewer, qtbot, project_home):  # noqa: F811
    rng = np.random.default_rng(0)
    image = rng.random((3, 80, 90)).astype(np.float32)
    stack = np.zeros((3, 80, 90), np.uint16)
    stack[1, 30:38, 40:48] = 1  # sparse painting: the region is its box + the margin
    stack[1, 30:38, 49:56] = 2
    stack[1, 41:45, 44:50] = 7
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    labels = viewer.add_labels(stack, name="img labels")
    viewer.dims.set_current_step(0, 1)
    widget = open_widget(viewer, "Weight map")
    widget.labels_combo.set_layer(labels)
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    data = widget.weights_layer().data
    np.testing.assert_array_equal(data[1], _trained_weights(image, stack, index=1))
    assert data[1][0].sum() == 0 and not data[0].any()  # outside the box + margin: ignored
    # with a region (Shapes layer) the region rule of training applies
    from napari_unet._layers import region_mask

    shapes = viewer.add_shapes([np.array([[1, 20, 30], [1, 20, 70], [1, 60, 70], [1, 60, 30]])],
                               shape_type="rectangle", name="img region")
    widget.region_combo.set_layer(shapes)
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    mask = region_mask(shapes, stack.shape)
    np.testing.assert_array_equal(widget.weights_layer().data[1], _trained_weights(image, stack, mask, index=1))
    # semantic mode: class balance inside the region, as semantic training
    widget.region_combo.set_layer(None)
    widget.train_form.set("semantic", True)
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    np.testing.assert_array_equal(widget.weights_layer().data[1], _trained_weights(image, stack, index=1, semantic=True))
    # an unpainted slice does not train: all zero, and the status says so
    viewer.dims.set_current_step(0, 2)
    assert widget.compute()
    wait_job(qtbot, widget.runner)
    assert not widget.weights_layer().data[2].any() and "skips" in widget.status.text()


def test_put_slice_keeps_other_slices_and_offsets_ids(make_napari_viewer):
    from napari_unet._layers import put_slice

    viewer = make_napari_viewer()
    part = np.zeros((4, 5), np.uint32)
    part[1:3, 1:3] = 1
    layer = put_slice(viewer, "labels", "p", part, 0, (3, 4, 5), offset_ids=True, opacity=0.6)
    assert layer.data.shape == (3, 4, 5) and layer.opacity == 0.6
    again = put_slice(viewer, "labels", "p", part, 2, (3, 4, 5), offset_ids=True)
    assert again is layer and len(viewer.layers) == 1  # updated in place
    assert set(np.unique(layer.data[0])) == {0, 1} and set(np.unique(layer.data[2])) == {0, 2}
    whole = put_slice(viewer, "image", "w", np.ones((4, 5), np.float32), None, (4, 5))
    assert whole.data.shape == (4, 5)
    # a layer of another shape is replaced by a fresh stack
    img = put_slice(viewer, "image", "w", np.full((4, 5), 2, np.float32), 1, (2, 4, 5))
    assert img.data.shape == (2, 4, 5) and not img.data[0].any() and img.data[1].min() == 2
