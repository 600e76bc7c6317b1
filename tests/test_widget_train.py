"""Train widget: defaults from TrainConfig, device list, training in its own process (or a worker
thread), Stop, crashes, overwrite question, the layers that belong together, validation first."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gui_support import (  # noqa: F401
    add_sample,
    cpu_only,
    open_widget,
    project_home,
    registry,
    tiny_training,
    wait_job,
)

pytestmark = pytest.mark.gui


def test_form_reads_engine_defaults(make_napari_viewer, cpu_only, project_home, registry):  # noqa: F811
    from unet_core.config import TrainConfig
    from unet_core.models import available_architectures

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Train")
    defaults = TrainConfig()
    # every simple TrainConfig field has an editor holding the engine default
    assert widget.config() == defaults
    for f in dataclasses.fields(TrainConfig):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):  # option groups: model, weights, and e.g. augmentation
            assert f.name in ("model", "weights") or f.name in widget.extra_forms, f.name
        elif not isinstance(value, tuple):
            assert f.name in widget.train_form.editors, f.name
    arch = widget.model_form.editors["arch"]
    assert [arch.itemText(i) for i in range(arch.count())] == available_architectures()
    device = widget.train_form.editors["device"]
    assert [device.itemText(i) for i in range(device.count())] == ["auto", "cpu"]


@pytest.mark.parametrize("where", ["process", "thread"])
def test_train_in_worker_registers_model(make_napari_viewer, qtbot, cpu_only, project_home, registry, monkeypatch, where):  # noqa: F811,E501
    monkeypatch.setenv("NAPARI_UNET_TRAIN_IN", where)
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="nuclei labels")
    widget = open_widget(viewer, "Train")
    assert widget.in_process == (where == "process")
    assert widget.labels_combo.currentText() == "nuclei labels"  # paired by name
    tiny_training(widget, iterations=3)
    assert widget.start()
    assert not widget.start_button.isEnabled() and widget.stop_button.isEnabled()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok and not outcome.stopped, outcome.error
    assert widget.checkpoint.is_file() and str(widget.checkpoint) in widget.status.text()
    assert registry.latest().checkpoint == widget.checkpoint
    assert widget.plot.curves.train["loss"][0] == [1, 2, 3]
    # a second start into the same file asks first; "no" leaves it alone
    stamp = widget.checkpoint.stat().st_mtime_ns
    asked = []
    widget.confirm_overwrite = lambda path: asked.append(path) or False
    assert not widget.start()
    assert asked == [widget.checkpoint] and widget.checkpoint.stat().st_mtime_ns == stamp


def test_bad_input_becomes_notification(make_napari_viewer, qtbot, cpu_only, project_home, registry, monkeypatch):  # noqa: F811
    """Nothing painted: refused at once (before any question), with a notification saying what to paint."""
    import napari.utils.notifications as notifications

    errors = []
    monkeypatch.setattr(notifications, "show_error", errors.append)
    viewer = make_napari_viewer()
    add_sample(viewer)
    viewer.add_labels(np.zeros((128, 128), np.uint16), name="nuclei labels")  # nothing painted
    widget = open_widget(viewer, "Train")
    tiny_training(widget)
    assert not widget.start() and not widget.runner.running
    assert errors and "paint" in errors[0]
    assert widget.start_button.isEnabled()


def test_stop_returns_the_engines_result(make_napari_viewer, qtbot, cpu_only, project_home, registry, monkeypatch):  # noqa: F811
    """Stop ends the run between steps; the widget registers the returned model (no reload)."""
    import unet_core.checkpoint as checkpoint

    load = checkpoint.load_checkpoint
    viewer = make_napari_viewer()
    _, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="nuclei labels")
    widget = open_widget(viewer, "Train")
    tiny_training(widget, iterations=500)
    widget.runner.progressed.connect(lambda r: r.stage == "train" and r.step >= 2 and widget.stop())
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("reloaded from disk"))
    assert widget.start()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok and outcome.stopped, outcome.error
    result = outcome.value
    assert result.stop_reason == "user" and 2 <= result.steps < 500
    assert result.checkpoint == widget.checkpoint and result.checkpoint.is_file()
    assert registry.latest().model is result.model and registry.latest().stopped
    assert widget.status.text().startswith("Stopped.")
    assert widget.in_process and widget.stop_latency is not None
    assert widget.stop_latency < 3.0  # 0.2-0.5 s measured; generous for a loaded machine
    monkeypatch.undo()
    assert load(result.checkpoint).train_state["step"] == result.steps  # loadable, resumable


def _record_notifications(monkeypatch):
    import napari.utils.notifications as notifications

    shown = {"error": [], "warning": []}
    monkeypatch.setattr(notifications, "show_error", shown["error"].append)
    monkeypatch.setattr(notifications, "show_warning", shown["warning"].append)
    return shown


def _annotation_layers(viewer, image_layer, truth=None, region=None):
    """What the Annotate widget makes for ``image_layer``: "<image> labels" and "<image> region"."""
    from napari_unet._layers import geometry

    labels = viewer.add_labels(
        np.zeros(image_layer.data.shape, np.uint16) if truth is None else truth.astype(np.uint16),
        name=image_layer.name + " labels", **geometry(image_layer),
    )
    shapes = viewer.add_shapes(
        [] if region is None else [np.array(region, float)], shape_type="rectangle",
        name=image_layer.name + " region", ndim=image_layer.ndim, **geometry(image_layer),
    )
    return labels, shapes


def test_layers_created_after_the_widget_are_picked_by_link(make_napari_viewer, cpu_only, project_home, registry):  # noqa: F811
    """Old failure: opened first, Train kept "ground truth" as labels and no region."""
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="ground truth")
    widget = open_widget(viewer, "Train")
    assert widget.labels_combo.currentText() == "ground truth"  # the only labels of its shape
    assert widget.region_combo.layer is None
    annotate = open_widget(viewer, "Annotate")
    annotate.region_check.setChecked(True)
    annotate.create_layers()
    assert widget.labels_combo.currentText() == "nuclei labels"
    assert widget.region_combo.currentText() == "nuclei region"
    # followed through removal and renaming too
    viewer.layers.remove("nuclei region")
    assert widget.region_combo.layer is None
    viewer.layers["nuclei labels"].name = "renamed"
    assert widget.labels_combo.currentText() in ("ground truth", "renamed")
    viewer.layers["renamed"].name = "nuclei labels"
    assert widget.labels_combo.currentText() == "nuclei labels"


def test_a_layer_picked_by_hand_is_kept(make_napari_viewer, cpu_only, project_home, registry):  # noqa: F811
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="ground truth")
    _annotation_layers(viewer, image)
    widget = open_widget(viewer, "Train")
    assert widget.labels_combo.currentText() == "nuclei labels"
    combo = widget.labels_combo
    combo.setCurrentText("ground truth")
    combo.activated.emit(combo.currentIndex())  # as a click in the list does
    viewer.add_points(name="unrelated")  # a layer change re-links only what was not hand-picked
    assert combo.currentText() == "ground truth"


def test_switching_images_switches_labels_and_region(make_napari_viewer, cpu_only, project_home, registry):  # noqa: F811
    """Old failure: after switching the image, Train kept the other image's region."""
    viewer = make_napari_viewer()
    a, truth = add_sample(viewer)
    b = viewer.add_image(a.data.copy(), name="second", **{"scale": a.scale, "translate": a.translate})
    _annotation_layers(viewer, a, truth, region=[[0, 0], [60, 60]])
    _annotation_layers(viewer, b, truth, region=[[10, 10], [90, 90]])
    widget = open_widget(viewer, "Train")
    widget.image_combo.setCurrentText("nuclei")
    assert (widget.labels_combo.currentText(), widget.region_combo.currentText()) == (
        "nuclei labels", "nuclei region")
    widget.image_combo.setCurrentText("second")
    assert (widget.labels_combo.currentText(), widget.region_combo.currentText()) == (
        "second labels", "second region")
    viewer.layers.remove("second region")
    assert widget.region_combo.layer is None  # never the other image's region
    assert widget.current_pair().region is None


def test_layers_that_do_not_fit_the_image_are_refused(make_napari_viewer, cpu_only, project_home, registry, monkeypatch):  # noqa: F811,E501
    shown = _record_notifications(monkeypatch)
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    viewer.add_labels(np.zeros((64, 64), np.uint16), name="small labels")
    viewer.add_shapes([np.array([[0, 0], [50, 50]], float)], shape_type="rectangle", name="stray")
    widget = open_widget(viewer, "Train")
    assert widget.labels_combo.layer is None  # the only labels do not fit: not chosen
    widget.labels_combo.setCurrentText("small labels")
    widget.labels_combo.activated.emit(widget.labels_combo.currentIndex())
    assert "shape (64, 64)" in shown["warning"][-1] and "(128, 128)" in shown["warning"][-1]
    assert widget.labels_combo.layer is None  # refused
    # a region drawn with another scale and offset than the image's pixels
    labels, _ = _annotation_layers(viewer, image, truth)
    widget.region_combo.setCurrentText("stray")
    widget.region_combo.activated.emit(widget.region_combo.currentIndex())
    assert "does not lie on image" in shown["warning"][-1]
    assert widget.region_combo.currentText() == "nuclei region"
    # a pair whose layers no longer fit is refused at Start, before anything is asked
    widget.pairs = [dataclasses.replace(widget.current_pair(), region="stray")]
    asked = []
    widget.confirm_overwrite = lambda path: asked.append(path) or True
    assert not widget.start()
    assert "does not lie on image" in shown["error"][-1] and not asked


def test_empty_labels_in_a_region_refused_before_any_question(make_napari_viewer, cpu_only, project_home, registry, monkeypatch):  # noqa: F811,E501
    """Old failure: trained silently on a region with nothing painted, after asking to overwrite."""
    shown = _record_notifications(monkeypatch)
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    painted_outside = np.where(np.arange(128)[None, :] >= 100, truth, 0)
    _annotation_layers(viewer, image, painted_outside, region=[[0, 0], [90, 90]])
    widget = open_widget(viewer, "Train")
    tiny_training(widget)
    output = project_home / "existing.pt"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(b"keep me")
    widget.output_edit.setText(str(output))
    asked = []
    widget.confirm_overwrite = lambda path: asked.append(path) or True
    assert not widget.start() and not widget.runner.running
    assert not asked and output.read_bytes() == b"keep me"
    message = shown["error"][-1]
    assert "inside the region of 'nuclei'" in message and "paint" in message
    assert "Not started" in widget.status.text()


def test_a_crashed_training_process_is_reported(make_napari_viewer, qtbot, cpu_only, project_home, registry, monkeypatch):  # noqa: F811,E501
    import multiprocessing
    import os
    import signal

    shown = _record_notifications(monkeypatch)
    viewer = make_napari_viewer()
    _, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="nuclei labels")
    widget = open_widget(viewer, "Train")
    tiny_training(widget, iterations=100_000)
    steps = []
    widget.runner.progressed.connect(lambda r: steps.append(r.step))
    assert widget.start()
    qtbot.waitUntil(lambda: bool(steps), timeout=60_000)
    (child,) = [p for p in multiprocessing.active_children() if p.name.startswith("napari-unet")]
    os.kill(child.pid, signal.SIGKILL)
    outcome = wait_job(qtbot, widget.runner)
    assert not outcome.ok and type(outcome.error).__name__ == "JobCrashed"
    assert "ended unexpectedly" in shown["error"][-1]
    assert widget.status.text().startswith("Training failed") and widget.start_button.isEnabled()
