"""Train widget: defaults from TrainConfig, device list, training in a worker, overwrite question."""

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


def test_train_in_worker_registers_model(make_napari_viewer, qtbot, cpu_only, project_home, registry):  # noqa: F811
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    viewer.add_labels(truth.astype(np.uint16), name="nuclei labels")
    widget = open_widget(viewer, "Train")
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
    import napari.utils.notifications as notifications

    errors = []
    monkeypatch.setattr(notifications, "show_error", errors.append)
    viewer = make_napari_viewer()
    add_sample(viewer)
    viewer.add_labels(np.zeros((128, 128), np.uint16), name="nuclei labels")  # nothing painted
    widget = open_widget(viewer, "Train")
    tiny_training(widget)
    assert widget.start()
    outcome = wait_job(qtbot, widget.runner)
    assert not outcome.ok and errors and "paint" in errors[0]
    assert widget.start_button.isEnabled()


def test_stop_returns_the_engines_result(make_napari_viewer, qtbot, cpu_only, project_home, registry, monkeypatch):  # noqa: F811
    """Stop ends the run between steps; the widget registers the returned model (no reload)."""
    import unet_core.checkpoint as checkpoint

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
