"""Predict widget on huge (lazy) images: the visible field of view, and the whole image to a file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gui_support import cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", build_model(ModelConfig(depth=2, base_channels=4, padding="valid")))


@pytest.fixture
def lazy_image(tmp_path):
    """A 1024 x 1024 uint8 zarr array, opened lazily (dask)."""
    from unet_core.sample_data import synthetic_nuclei

    image, _ = synthetic_nuclei((1024, 1024), seed=5)
    path = tmp_path / "big.zarr"
    da.from_array((np.asarray(image) >> 7).astype(np.uint8), chunks=256).to_zarr(str(path))
    return da.from_zarr(str(path))


def _widget(viewer, tiny_model):
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(tiny_model)
    widget.post_form.set("threshold", 0.5)
    widget.post_form.set("split_touching", False)
    return widget


def test_fov_adds_layers_over_the_visible_window(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, lazy_image):  # noqa: F811
    from napari_unet._fov import visible_window

    viewer = make_napari_viewer()
    image = viewer.add_image(lazy_image, name="big", scale=(0.5, 0.5), translate=(10.0, 20.0))
    viewer.scene.camera.center = (10.0 + 0.5 * 600, 20.0 + 0.5 * 300)
    viewer.scene.camera.zoom = 4.0  # 4 screen pixels per world unit: 8 per image pixel
    widget = _widget(viewer, tiny_model)
    canvas = viewer.canvas.size
    want = visible_window((310.0, 170.0), 4.0, canvas, (0.5, 0.5), (10.0, 20.0), (1024, 1024))
    assert not want.capped and want.stop[0] - want.origin[0] == pytest.approx(canvas[0] / 4.0 / 0.5, abs=2)
    assert widget.predict_fov()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    pred, prob = viewer.layers["big fov prediction"], viewer.layers["big fov probability"]
    y, x = outcome.value.origin
    m = 4  # size_multiple of a depth-2 U-Net
    assert y == want.origin[0] // m * m and x == want.origin[1] // m * m
    assert pred.data.shape == prob.data.shape == (want.stop[0] - y, want.stop[1] - x)
    for layer in (pred, prob):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, (10.0 + 0.5 * y, 20.0 + 0.5 * x))
    assert "big prediction" not in [layer.name for layer in viewer.layers]  # the whole-image result is not touched
    # a second view reuses the image statistics and replaces the layers
    stats = widget._stats_cache[2]
    viewer.scene.camera.center = (10.0 + 0.5 * 1000, 20.0 + 0.5 * 1000)  # the bottom-right corner
    assert widget.predict_fov()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.value.stats is stats
    assert [layer.name for layer in viewer.layers].count("big fov prediction") == 1
    assert viewer.layers["big fov prediction"].data.shape[0] < want.stop[0] - want.origin[0]  # clipped at the edge


def test_fov_of_a_stack_slice_and_a_cut_view(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, monkeypatch):  # noqa: F811
    import napari_unet._predict_widget as pw

    monkeypatch.setattr(pw, "visible_window", lambda *a, **k: _small_cap(*a, **k))
    viewer = make_napari_viewer()
    stack = da.from_array(np.random.default_rng(0).integers(0, 255, (3, 200, 240)).astype(np.uint8), chunks=64)
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer, tiny_model)
    assert widget.predict_fov()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    pred = viewer.layers["stack fov prediction"]
    assert pred.data.shape[0] == 1 and max(pred.data.shape[1:]) <= 64 + 3
    assert pred.translate[0] == pytest.approx(4.0)  # slice 2 at z scale 2
    assert "cut" in widget.status.text()


def test_fov_of_a_multiscale_image_is_in_level_0_pixels(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, lazy_image):  # noqa: F811
    viewer = make_napari_viewer()
    levels = [lazy_image, lazy_image[::2, ::2], lazy_image[::4, ::4]]
    image = viewer.add_image(levels, multiscale=True, name="pyramid", scale=(0.25, 0.25))
    viewer.scene.camera.center = (0.25 * 512, 0.25 * 512)
    viewer.scene.camera.zoom = 8.0  # 2 screen pixels per level-0 pixel
    widget = _widget(viewer, tiny_model)
    assert widget.predict_fov()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    pred = viewer.layers["pyramid fov prediction"]
    h, w = viewer.canvas.size
    assert pred.data.shape[0] == pytest.approx(h / 2, abs=5) and pred.data.shape[1] == pytest.approx(w / 2, abs=5)
    np.testing.assert_allclose(pred.translate, np.array(outcome.value.origin) * 0.25)
    np.testing.assert_allclose(pred.scale, image.scale)
    stats = outcome.value.stats
    assert widget.predict_fov()  # the same image again: its statistics are kept
    assert wait_job(qtbot, widget.runner).value.stats is stats


def _small_cap(*args, **kwargs):
    from napari_unet._fov import visible_window

    return visible_window(*args, **{**kwargs, "max_edge": 64})


def test_whole_image_to_file_opens_multiscale_labels(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, lazy_image, tmp_path):  # noqa: F811
    from unet_core.blockwise import as_channel_first, iter_segment_blockwise
    from unet_core.checkpoint import load_checkpoint
    from unet_core.progress import run_to_end

    viewer = make_napari_viewer()
    viewer.add_image(lazy_image, name="big", scale=(0.5, 0.5))
    widget = _widget(viewer, tiny_model)
    out = tmp_path / "result.ome.zarr"
    assert widget.predict_to_file(out)
    outcome = wait_job(qtbot, widget.runner, timeout=120_000)
    assert outcome.ok, outcome.error
    layer = viewer.layers["result.ome.zarr"]
    assert layer.multiscale and len(layer.data) > 1
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    work = tmp_path / "work"
    work.mkdir()
    ref = run_to_end(iter_segment_blockwise(
        load_checkpoint(tiny_model).model, as_channel_first(lazy_image, "YX", None), widget.post_form.value(), work,
    ))
    np.testing.assert_array_equal(np.asarray(layer.data[0]), np.asarray(ref.labels))
    assert np.asarray(ref.labels).max() >= 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".result")] == []  # no work folder left


def test_existing_output_is_refused_unless_confirmed(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, tmp_path):  # noqa: F811
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="small")
    widget = _widget(viewer, tiny_model)
    out = tmp_path / "taken.ome.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    asked = []
    widget.confirm_overwrite = lambda paths: asked.append(paths) or False
    assert not widget.predict_to_file(out)
    assert asked == [[out]] and (out / "keep.txt").read_text() == "mine" and not widget.runner.running
    assert not widget.predict_to_file(tmp_path / "wrong.png")  # an unknown ending is refused
    suggested = []
    widget.choose_output = lambda path: suggested.append(path)  # the file dialog, cancelled
    assert not widget.predict_to_file() and suggested[0].name == "small prediction.ome.zarr"
    widget.confirm_overwrite = lambda paths: True
    assert widget.predict_to_file(out)
    assert wait_job(qtbot, widget.runner).ok
    assert not (out / "keep.txt").exists() and (out / "labels" / "labels").is_dir()


def test_stopped_file_prediction_leaves_nothing(make_napari_viewer, qtbot, cpu_only, project_home, registry, tiny_model, lazy_image, tmp_path):  # noqa: F811
    viewer = make_napari_viewer()
    viewer.add_image(lazy_image, name="big")
    widget = _widget(viewer, tiny_model)
    widget.runner.progressed.connect(lambda _: widget.cancel())
    out = tmp_path / "stopped.ome.zarr"
    assert widget.predict_to_file(out)
    outcome = wait_job(qtbot, widget.runner, timeout=120_000)
    assert outcome.stopped
    assert list(tmp_path.glob("*stopped*")) == [] and "stopped.ome.zarr" not in [la.name for la in viewer.layers]


def test_visible_window_is_cut_around_its_centre_and_kept_inside():
    from napari_unet._fov import visible_window, window_translate
    from unet_core.errors import InputError

    # the whole 20000 x 20000 image in view: cut to 4096 around the centre
    whole = visible_window((10000.0, 10000.0), 0.03, (600, 800), (1.0, 1.0), (0.0, 0.0), (20000, 20000))
    assert whole.capped and whole.origin == (7952, 7952) and whole.stop == (12048, 12048)
    # a view centred near the right edge: cut around the centre of the part of the image in view
    edge = visible_window((10000.0, 19990.0), 0.03, (600, 800), (1.0, 1.0), (0.0, 0.0), (20000, 20000))
    seen = (math.floor(19990 - 400 / 0.03), 20000)
    assert edge.origin[1] == sum(seen) // 2 - 2048 and edge.stop[1] - edge.origin[1] == 4096
    small = visible_window((50.0, 60.0), 1.0, (40, 20), (2.0, 2.0), (10.0, 10.0), (100, 100))
    assert not small.capped and small.origin == (10, 20) and small.stop == (30, 30)
    with pytest.raises(InputError, match="does not show the image"):
        visible_window((-5000.0, 0.0), 1.0, (600, 800), (1.0, 1.0), (0.0, 0.0), (100, 100))
    assert window_translate((2.0, 0.5, 0.5), (1.0, 2.0, 3.0), (2,), (8, 4)) == (5.0, 6.0, 5.0)
