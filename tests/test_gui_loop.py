"""The whole loop through the dock widgets, as a biologist clicks it (issue 2 / issue 6):

sample -> annotate (autosave, "crash", restore) -> weight map -> train (Stop mid-run: the
checkpoint still loads) -> predict with the model just trained -> use as annotations -> export,
checking the Labels layer and the exported TIFF; plus a screenshot check that layers render.
"""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import (  # noqa: F401
    canvas_is_drawn,
    cpu_only,
    open_widget,
    project_home,
    registry,
    tiny_training,
    wait_job,
)

pytestmark = pytest.mark.gui

CROP = 128


class StopAfter:
    """Progress slot that presses Stop after ``n`` training steps."""

    def __init__(self, widget, n: int):
        self.widget, self.n = widget, n

    def __call__(self, record) -> None:
        if record.stage == "train" and record.step >= self.n:
            self.widget.stop()


def test_whole_loop_through_widgets(make_napari_viewer, qtbot, cpu_only, project_home, registry, tmp_path):  # noqa: F811
    from unet_core.checkpoint import load_checkpoint
    from unet_core.io import read_tiff

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-unet", "nuclei")
    image = viewer.layers["nuclei"]
    truth = np.asarray(viewer.layers["nuclei ground truth"].data)[:CROP, :CROP]
    image.data = np.asarray(image.data)[:CROP, :CROP]
    viewer.layers.remove("nuclei ground truth")

    # 1. annotate: labels layer, "painting", autosave, crash, restore
    annotate = open_widget(viewer, "Annotate")
    annotate.image_combo.set_layer(image)
    labels = annotate.create_layers()
    assert labels.data.shape == (CROP, CROP)
    labels.data = truth.astype(np.uint16)  # the biologist's painting
    annotate.autosave_tick()
    saved, _ = read_tiff(annotate.session_dir("nuclei") / "labels.tif")
    np.testing.assert_array_equal(saved, truth)
    pixels = np.asarray(image.data).copy()
    viewer.layers.remove(labels)  # "crash": annotation and image gone
    viewer.layers.remove(image)
    image = viewer.add_image(pixels, name="nuclei")  # reopen the image
    assert annotate.restore_button.isVisibleTo(annotate)
    labels = annotate.restore()
    np.testing.assert_array_equal(labels.data, truth)

    # 2. weight map
    weights = open_widget(viewer, "Weight map")
    weights.labels_combo.set_layer(labels)
    assert weights.compute()
    wait_job(qtbot, weights.runner)
    assert viewer.layers["nuclei labels weights"].data.max() > 1.0

    # 3. train, stopped mid-run: a clean checkpoint that loads
    train = open_widget(viewer, "Train")
    assert train.labels_combo.currentText() == "nuclei labels"
    tiny_training(train, iterations=500)
    train.runner.progressed.connect(StopAfter(train, 3))
    assert train.start()
    outcome = wait_job(qtbot, train.runner)
    assert outcome.ok and outcome.stopped, outcome.error
    ckpt = load_checkpoint(train.checkpoint)
    assert 3 <= ckpt.meta["iterations"] < 500
    assert registry.latest().checkpoint == train.checkpoint

    # 4. predict with the model just trained
    predict = open_widget(viewer, "Predict")
    assert predict.model_combo.currentText().startswith("this session: ")
    predict.image_combo.set_layer(image)
    predict.post_form.set("threshold", 0.0)  # 3 steps of training: do not depend on quality
    assert predict.predict()
    outcome = wait_job(qtbot, predict.runner)
    assert outcome.ok, outcome.error
    pred = viewer.layers["nuclei prediction"]
    assert pred.data.shape == (CROP, CROP) and pred.data.max() >= 1

    # 5. export
    export = open_widget(viewer, "Export")
    export.folder_edit.setText(str(tmp_path / "export"))
    (written,) = export.export()
    data, _ = read_tiff(written)
    np.testing.assert_array_equal(data, pred.data)
    assert data.dtype.kind == "u"

    # 6. the layers render on the canvas
    assert canvas_is_drawn(viewer)


def test_layers_render(make_napari_viewer, qtbot):
    """Screenshot: the labels layer paints its colours over the image on the canvas."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.uint8), name="blank")
    before = viewer.screenshot(canvas_only=True, flash=False)
    lab = np.zeros((64, 64), np.uint16)
    lab[16:48, 16:48] = 1
    viewer.add_labels(lab, name="square", opacity=1.0)
    after = viewer.screenshot(canvas_only=True, flash=False)
    assert before.shape == after.shape
    changed = np.any(before[..., :3] != after[..., :3], axis=-1)
    assert 0.05 < changed.mean() < 0.95  # the square is drawn, not the whole canvas
