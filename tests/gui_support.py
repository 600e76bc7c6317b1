"""Fixtures and helpers shared by the GUI tests (imported by tests/test_widget_*.py, test_gui_*.py)."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-unet"


@pytest.fixture
def project_home(tmp_path, monkeypatch):
    """Send the plugin's project folder (autosave, models, exports) to a temporary folder."""
    home = tmp_path / "napari-unet-home"
    monkeypatch.setenv("NAPARI_UNET_HOME", str(home))
    return home


@pytest.fixture
def cpu_only(monkeypatch):
    """Force the CPU: the device list and 'auto' see no accelerator, whatever the machine has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def registry():
    """The plugin's model registry, emptied before and after the test."""
    from napari_unet._registry import MODELS

    MODELS.clear()
    yield MODELS
    MODELS.clear()


def open_widget(viewer, name: str):
    """Open a dock widget through the manifest (as Plugins > napari-unet > name does)."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def add_sample(viewer, size: int = 128):
    """The synthetic nuclei sample cropped to ``size``: returns (image layer, ground truth)."""
    from unet_core.sample_data import synthetic_nuclei

    image, truth = synthetic_nuclei((size, size), seed=3)
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5), translate=(10.0, 20.0))
    return layer, truth


def wait_job(qtbot, runner, timeout: int = 60_000):
    """Wait until ``runner`` (a JobRunner) has finished; return its outcome."""
    qtbot.waitUntil(lambda: not runner.running, timeout=timeout)
    return runner.last_outcome


def tiny_training(widget, iterations: int = 4):
    """Set the Train widget to a tiny, fast model."""
    widget.model_form.set("depth", 2)
    widget.model_form.set("base_channels", 4)
    widget.train_form.set("iterations", iterations)
    widget.train_form.set("batch_size", 2)
    widget.train_form.set("tile_size", 32)
    if "val_every" in widget.train_form.editors:
        widget.train_form.set("val_every", max(2, iterations // 2))
    widget.train_form.set("device", "cpu")


def canvas_is_drawn(viewer) -> bool:
    """True when the canvas screenshot is not a blank single colour."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    return shot.ndim == 3 and float(np.std(shot[..., :3])) > 1.0
