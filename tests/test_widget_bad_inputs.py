"""Bad inputs through the widgets end in a napari notification that says what to do, never in a
traceback (issue 11): the same cases the CLI matrix covers, where a widget can receive them."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import add_sample, cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def notes(monkeypatch):
    """Every error/warning notification shown, as text."""
    import napari.utils.notifications as notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(str(msg)))
    monkeypatch.setattr(notifications, "show_warning", lambda msg: shown.append(str(msg)))
    return shown


def _checkpoint(tmp_path, **model):
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    return save_checkpoint(tmp_path / "m.pt", build_model(ModelConfig(depth=1, base_channels=2, padding="same", **model)))


def _predict(viewer, qtbot, checkpoint, notes):
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(checkpoint)
    if widget.predict():
        outcome = wait_job(qtbot, widget.runner)
        assert not outcome.ok
    assert notes, "no notification"
    return notes[-1]


@pytest.mark.parametrize(("case", "expected"), [
    ("png-checkpoint", "not a napari-unet checkpoint"),
    ("three-channel-model", "channel"),
    ("beyond-float32", "float32 range"),
])
def test_predict_bad_inputs_notify(make_napari_viewer, qtbot, cpu_only, project_home, registry, notes,  # noqa: F811
                                   tmp_path, case, expected):
    viewer = make_napari_viewer()
    if case == "beyond-float32":
        image = np.full((64, 64), 3.0e38)
        image[10:20, 10:20] = 3.5e38
        viewer.add_image(image, name="huge")
    else:
        add_sample(viewer, size=64)
    if case == "png-checkpoint":
        checkpoint = tmp_path / "m.pt"
        checkpoint.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    else:
        checkpoint = _checkpoint(tmp_path, in_channels=3 if case == "three-channel-model" else 1)
    message = _predict(viewer, qtbot, checkpoint, notes)
    assert expected in message and "Traceback" not in message


def test_predict_refuses_nan_threshold(make_napari_viewer, qtbot, cpu_only, project_home, registry, notes, tmp_path):  # noqa: F811
    viewer = make_napari_viewer()
    add_sample(viewer, size=64)
    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(_checkpoint(tmp_path))
    widget.post_form.set("threshold", float("nan"))
    assert not widget.predict()
    assert notes and "threshold" in notes[-1]


def test_weight_map_bad_sigma_notifies(make_napari_viewer, qtbot, project_home, notes):  # noqa: F811
    viewer = make_napari_viewer()
    _, truth = add_sample(viewer, size=64)
    viewer.add_labels(truth.astype(np.uint16), name="nuclei labels")
    widget = open_widget(viewer, "Weight map")
    widget.form.set("sigma", 1e-300)
    assert not widget.compute()
    assert notes and "sigma" in notes[-1]
