"""Issue 12, trust 2 and 5 through the widgets: "Use as annotations" never destroys painted work
(merge, or replace after asking; one undo step; the autosave keeps the previous version),
post-processing from the model and re-run without a new forward pass, a re-prediction never
lands in a hidden layer, and the pixel size is shown, settable and copied to new layers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from gui_support import add_sample, cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

from napari_unet._annotations import count_objects

pytestmark = pytest.mark.gui

FITTED = {"threshold": 0.0, "split_touching": False, "min_size": 3, "min_distance": 5}


@pytest.fixture
def checkpoints(tmp_path):
    """Two tiny untrained models: one whose checkpoint carries fitted post-processing."""
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    model = build_model(ModelConfig(depth=2, base_channels=4, padding="same"))
    fitted = save_checkpoint(tmp_path / "fitted.pt", model, meta={"postprocess": FITTED})
    plain = save_checkpoint(tmp_path / "plain.pt", model)
    return fitted, plain


def _paint_twelve(labels):
    """Paint 12 objects with the brush (each stroke one undo step, like a user)."""
    labels.brush_size = 7
    for i in range(12):
        y, x = 12 + 30 * (i // 4), 12 + 30 * (i % 4)
        labels.paint((y, x), i + 1, refresh=True)
    assert count_objects(labels.data) == 12
    return np.array(labels.data, copy=True)


def _setup(viewer):
    image, truth = add_sample(viewer)
    annotate = open_widget(viewer, "Annotate")
    labels = annotate.create_layers()
    painted = _paint_twelve(labels)
    # the prediction: the true objects, many of them under painted ones
    viewer.add_labels(truth.astype(np.uint32), name="nuclei prediction", **{"scale": image.scale, "translate": image.translate})
    predict = open_widget(viewer, "Predict")
    predict.image_combo.set_layer(image)
    return annotate, predict, labels, painted, truth


def test_merge_keeps_the_painted_objects_undo_and_autosave_version(make_napari_viewer, project_home):  # noqa: F811
    """The old failure: 12 painted objects replaced without asking, the autosave overwritten,
    and Ctrl+Z applied stale history to the new data."""
    viewer = make_napari_viewer()
    annotate, predict, labels, painted, truth = _setup(viewer)
    annotate.save_now()  # the painted state on disk
    predict.confirm_replace = lambda *a: pytest.fail("merging loses nothing: it must not ask")
    assert predict.use_mode_combo.currentData() == "merge"  # the safe mode is the default
    assert predict.use_as_annotations() is labels
    merged = np.asarray(labels.data)
    np.testing.assert_array_equal(merged[painted > 0], painted[painted > 0])  # all 12 kept
    added = np.unique(merged[(painted == 0) & (merged > 0)])
    assert added.size > 0 and added.min() > 12  # predicted objects added, new ids above the painted
    assert count_objects(merged) == 12 + added.size
    assert not viewer.layers["nuclei prediction"].visible
    # the autosave after the change keeps the painted state as the previous version
    annotate.autosave_tick()
    assert [p.name for p in annotate.store.versions_of("nuclei")][:2] == ["labels.tif", "labels.1.tif"]
    np.testing.assert_array_equal(annotate.store.load_labels("nuclei"), merged)
    np.testing.assert_array_equal(annotate.store.load_labels("nuclei", 1), painted)
    # Ctrl+Z undoes the merge in one step, then the last brush stroke: the history stays valid
    labels.undo()
    np.testing.assert_array_equal(labels.data, painted)
    labels.undo()
    assert count_objects(labels.data) == 11 and not (labels.data == 12).any()
    labels.redo()
    labels.redo()
    np.testing.assert_array_equal(labels.data, merged)


def test_replace_asks_first_and_no_keeps_the_painted_objects(make_napari_viewer, project_home):  # noqa: F811
    viewer = make_napari_viewer()
    _, predict, labels, painted, truth = _setup(viewer)
    asked = []
    predict.confirm_replace = lambda name, n: asked.append((name, n)) or False
    predict.use_mode_combo.setCurrentIndex(predict.use_mode_combo.findData("replace"))
    predict.use_button.click()  # the button (its clicked signal passes a bool)
    assert asked == [("nuclei labels", 12)]
    np.testing.assert_array_equal(labels.data, painted)  # No: nothing changed
    predict.confirm_replace = lambda name, n: True
    assert predict.use_as_annotations() is labels
    np.testing.assert_array_equal(labels.data, truth)
    labels.undo()  # one undo step back to the painted objects
    np.testing.assert_array_equal(labels.data, painted)
    # with nothing painted, replacing loses nothing and does not ask
    labels.data = np.zeros_like(labels.data)
    predict.confirm_replace = lambda *a: pytest.fail("nothing painted: no question")
    assert predict.use_as_annotations("replace") is labels and count_objects(labels.data) == count_objects(truth)


def test_model_postprocessing_visible_layer_and_pixel_size(make_napari_viewer, qtbot, cpu_only, project_home, registry, checkpoints):  # noqa: F811
    """The model's post-processing fills the form; a re-prediction after "use as annotations"
    shows the (hidden) prediction layer on top; new layers carry the image's unit."""
    from unet_core.config import PostprocessConfig

    fitted, plain = checkpoints
    viewer = make_napari_viewer()
    image, _ = add_sample(viewer, size=64)
    image.metadata = {**image.metadata, "unit": "um"}
    widget = open_widget(viewer, "Predict")
    assert widget.pixel_size.label.text() == "0.5 × 0.5 um"
    widget.set_checkpoint(fitted)
    assert widget.post_form.value() == PostprocessConfig(**FITTED)
    assert widget.predict()
    assert wait_job(qtbot, widget.runner).ok
    assert widget.last_result.segmentation.postprocess == PostprocessConfig(**FITTED)
    pred = viewer.layers["nuclei prediction"]
    assert pred.metadata["unit"] == "um" and viewer.layers["nuclei probability"].metadata["unit"] == "um"
    labels = widget.use_as_annotations()
    assert labels.metadata["unit"] == "um" and not pred.visible
    assert widget.predict()
    assert wait_job(qtbot, widget.runner).ok
    assert viewer.layers["nuclei prediction"] is pred and pred.visible  # the old failure: hidden
    assert viewer.layers.index(pred) == len(viewer.layers) - 1  # on top of the annotations
    # another model: the form is reset to its (default) post-processing
    widget.set_checkpoint(plain)
    assert widget.post_form.value() == PostprocessConfig()


def test_split_touching_reruns_only_the_postprocessing(make_napari_viewer, qtbot, project_home, monkeypatch):  # noqa: F811
    """The old failure: EM cells shattered by "split touching"; turning it off must re-run only
    the post-processing from the kept probabilities, at once."""
    import unet_core.pipeline
    import unet_core.tiling
    from napari_unet._predict_widget import PredictionResult
    from unet_core.config import PostprocessConfig
    from unet_core.pipeline import segment_probabilities

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((512, 512), np.float32), name="cells")
    widget = open_widget(viewer, "Predict")
    yy, xx = np.mgrid[:512, :512]
    fg = (((yy - 256) ** 2 + (xx - 200) ** 2) < 60**2) | (((yy - 256) ** 2 + (xx - 300) ** 2) < 60**2)
    probabilities = np.stack([1.0 - fg, fg]).astype(np.float32)  # two touching discs
    split = PostprocessConfig(split_touching=True, min_distance=20)
    widget.set_postprocess(split)
    widget.last_result = PredictionResult("cells", None, segment_probabilities(probabilities, split))
    widget.show_result("cells", widget.last_result)
    assert count_objects(viewer.layers["cells prediction"].data) == 2

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("changing post-processing must not predict again")

    monkeypatch.setattr(unet_core.tiling, "iter_predict_tiled", no_forward_pass)
    monkeypatch.setattr(unet_core.pipeline, "iter_segment", no_forward_pass)
    first = widget.last_result
    start = time.perf_counter()
    widget.post_form.set("split_touching", False)
    qtbot.waitUntil(lambda: widget.last_result is not first and not widget.runner.running, timeout=10_000)
    elapsed = time.perf_counter() - start
    assert widget.runner.last_outcome.ok, widget.runner.last_outcome.error
    assert widget.last_result.segmentation.probabilities is probabilities
    assert count_objects(viewer.layers["cells prediction"].data) == 1
    assert elapsed < 5.0  # 0.4 s debounce + the post-processing (measured ~0.5 s in all)


def test_pixel_size_shown_set_and_copied(make_napari_viewer, project_home):  # noqa: F811
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 40, 50), np.float32), name="stack")
    annotate = open_widget(viewer, "Annotate")
    assert annotate.pixel_size.label.text() == "1 × 1 × 1 (unit unknown)"  # unknown stays unknown
    labels = annotate.create_layers()
    assert labels.metadata["unit"] is None
    annotate.pixel_size.size_edit.setText("0.25")
    annotate.pixel_size.unit_combo.setCurrentText("micron")
    assert annotate.pixel_size.apply()
    np.testing.assert_allclose(image.scale, (1, 0.25, 0.25))
    np.testing.assert_allclose(labels.scale, image.scale)  # the image's layers follow
    assert image.metadata["unit"] == labels.metadata["unit"] == "um"
    assert annotate.pixel_size.label.text() == "1 × 0.25 × 0.25 um"
    annotate.pixel_size.size_edit.setText("2, 0.5, 0.5")
    assert annotate.pixel_size.apply()
    np.testing.assert_allclose(labels.scale, (2, 0.5, 0.5))
    annotate.pixel_size.size_edit.setText("-1")
    assert not annotate.pixel_size.apply()  # refused, nothing changed
    np.testing.assert_allclose(image.scale, (2, 0.5, 0.5))
    predict = open_widget(viewer, "Predict")
    assert predict.pixel_size.label.text() == "2 × 0.5 × 0.5 um"
