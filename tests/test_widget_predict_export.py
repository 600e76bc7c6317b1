"""Predict and Export widgets: layers named and placed like the source, replace on re-run,
cancel, use as annotations, export with overwrite question, and the npe2 writer via napari."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import add_sample, cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny_model(tmp_path):
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    model = build_model(ModelConfig(depth=2, base_channels=4, padding="same"))
    return save_checkpoint(tmp_path / "tiny.pt", model)


def test_predict_replace_use_and_export(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, tmp_path):  # noqa: F811
    from unet_core.io import read_tiff

    viewer = make_napari_viewer()
    image, _ = add_sample(viewer)
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(tiny_model)
    widget.post_form.set("threshold", 0.0)  # an untrained net: call everything foreground
    widget.post_form.set("split_touching", False)
    assert widget.predict()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    pred = viewer.layers["nuclei prediction"]
    prob = viewer.layers["nuclei probability"]
    assert pred.data.shape == prob.data.shape == image.data.shape
    assert pred.data.max() >= 1
    for layer in (pred, prob):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    n_layers = len(viewer.layers)
    assert widget.predict()
    wait_job(qtbot, widget.runner)
    assert len(viewer.layers) == n_layers  # replaced, not duplicated
    # use as annotations
    labels = widget.use_as_annotations()
    assert labels.name == "nuclei labels"
    np.testing.assert_array_equal(labels.data, viewer.layers["nuclei prediction"].data)
    # export: writes, then asks before replacing
    export = open_widget(viewer, "Export")
    export.folder_edit.setText(str(tmp_path / "out"))
    export.annotations_check.setChecked(True)
    written = export.export()
    assert sorted(p.name for p in written) == ["nuclei labels.tif", "nuclei prediction.tif"]
    data, meta = read_tiff(tmp_path / "out" / "nuclei prediction.tif")
    assert data.dtype == np.uint8 or data.dtype == np.uint16
    np.testing.assert_array_equal(data, pred.data)
    assert meta.pixel_size is not None and meta.pixel_size[-1] == pytest.approx(0.5)
    asked = []
    export.confirm_overwrite = lambda paths: asked.append(paths) or False
    assert export.export() == [] and len(asked[0]) == 2


def test_cancel_prediction(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model):  # noqa: F811
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((6, 256, 256), dtype=np.float32), name="stack")
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(tiny_model)
    widget.runner.progressed.connect(lambda _: widget.cancel())
    assert widget.predict()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.stopped and "stack prediction" not in [layer.name for layer in viewer.layers]


def test_current_slice_of_stack(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model):  # noqa: F811
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 48, 48), dtype=np.float32), name="stack")
    viewer.dims.set_current_step(0, 2)
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(tiny_model)
    widget.scope_combo.setCurrentText("current slice")
    widget.post_form.set("threshold", 0.0)
    assert widget.predict()
    wait_job(qtbot, widget.runner)
    pred = viewer.layers["stack prediction"].data
    assert pred.shape == (3, 48, 48) and pred[2].any() and not pred[:2].any()


def test_npe2_writer_through_napari_save(make_napari_viewer, tmp_path):
    import napari

    from unet_core.io import read_tiff

    viewer = make_napari_viewer()
    data = np.zeros((30, 40), np.int64)
    data[3:9, 4:12] = 300
    layer = viewer.add_labels(data, name="objects", scale=(2.0, 0.25))
    out = tmp_path / "objects.tif"
    written = napari.save_layers(str(out), [layer], plugin="napari-unet")
    assert [str(p) for p in written] == [str(out)]
    back, meta = read_tiff(out)
    assert back.dtype == np.uint16  # never int64
    np.testing.assert_array_equal(back, data)
    assert meta.pixel_size[-2:] == pytest.approx((2.0, 0.25))


def test_postprocess_form_is_the_engine_dataclass_and_reapplies(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model):  # noqa: F811
    import dataclasses

    from unet_core.config import PostprocessConfig

    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = open_widget(viewer, "Predict")
    assert list(widget.post_form.editors) == [f.name for f in dataclasses.fields(PostprocessConfig)]
    assert widget.post_form.value() == PostprocessConfig()
    assert not widget.reapply_postprocess()  # nothing predicted yet
    widget.set_checkpoint(tiny_model)
    widget.post_form.set("threshold", 0.0)
    widget.post_form.set("split_touching", False)
    assert widget.predict()
    assert wait_job(qtbot, widget.runner).ok
    first = widget.last_result
    assert first.segmentation.postprocess.threshold == 0.0 and viewer.layers["nuclei prediction"].data.max() == 1
    # changing an option post-processes the kept probabilities again (no new prediction)
    widget.post_form.set("min_size", 10**6)
    qtbot.waitUntil(lambda: widget.last_result is not first and not widget.runner.running, timeout=10_000)
    again = widget.last_result
    assert again.segmentation.probabilities is first.segmentation.probabilities
    assert again.segmentation.postprocess.min_size == 10**6
    assert viewer.layers["nuclei prediction"].data.max() == 0  # every object is now too small


def test_export_widget_writes_a_bioimageio_package(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, tmp_path):  # noqa: F811
    pytest.importorskip("bioimageio.core")
    from unet_core.bmz import load_bmz

    viewer = make_napari_viewer()
    export = open_widget(viewer, "Export")
    export.package_source.set_checkpoint(tiny_model)
    export.package_edit.setText(str(tmp_path / "tiny.zip"))
    assert not export.export_package()  # no author yet: refused with a notification
    export.package_author.setText("Test Author")
    assert export.export_package()
    outcome = wait_job(qtbot, export.package_runner, timeout=180_000)
    assert outcome.ok, outcome.error
    assert (tmp_path / "tiny.zip").is_file()
    from unet_core.checkpoint import load_checkpoint

    assert load_bmz(tmp_path / "tiny.zip").config == load_checkpoint(tiny_model).config  # loads back natively
