"""The demo behind ``make demo``: the plugin in a real napari window.

Interactive: napari opens with the sample loaded and the five dock widgets docked (tabs).
Headless (``--headless``, under Xvfb): the same window runs the loop *through the dock widgets*,
exactly the buttons a biologist presses: Annotate (the sample's ground truth stands in for the
painting) -> Weight map -> Train (background worker) -> Predict (the model just trained) ->
Export; then it saves a screenshot of the window with the widgets docked and prints what it wrote.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

PLUGIN = "napari-unet"
#: dock widgets by manifest display name, in the order of the loop
WIDGETS = ("Annotate", "Weight map", "Train", "Predict", "Export")
WINDOW_SIZE = (1400, 900)


def open_viewer_with_sample(*, dock: bool = True):
    """A napari viewer with the sample loaded through the manifest and the widgets docked.

    Returns
    -------
    viewer : napari.Viewer
    widgets : dict
        Display name -> ``(dock widget, plugin widget)``.
    """
    import napari

    viewer = napari.Viewer(title="napari-unet demo")
    viewer.window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, "nuclei")
    widgets = {}
    if dock:
        for i, name in enumerate(WIDGETS):
            widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=i > 0)
        widgets["Annotate"][0].raise_()
    return viewer, widgets


def dismiss_notifications(viewer) -> None:
    """Close the notification toasts so that a screenshot shows the widgets, not the messages."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private napari module moved: screenshots keep their toasts
        return
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def wait_for(runner, timeout: float = 3600.0) -> None:
    """Process Qt events until ``runner`` (a JobRunner) is idle."""
    from qtpy.QtWidgets import QApplication

    t0 = time.monotonic()
    while runner.running:
        QApplication.processEvents()
        time.sleep(0.01)
        if time.monotonic() - t0 > timeout:
            runner.stop()
            raise TimeoutError(f"{runner.title} did not finish within {timeout:.0f} s")
    QApplication.processEvents()


def run_gui_demo(*, headless: bool, output: str | Path = "demo-output", iterations: int = 150) -> int:
    """Interactive: open napari and run its event loop. Headless: run the loop, save, exit."""
    import napari

    if not headless:
        open_viewer_with_sample()
        napari.run()
        return 0
    files = run_headless_loop(Path(output), iterations=iterations)
    for role, path in files.items():
        print(f"wrote {path}  ({role})")
    return 0


def run_headless_loop(out: Path, *, iterations: int = 150) -> dict[str, Path]:
    """Drive the dock widgets through the loop; return the written files by role."""
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from unet_core.demo import foreground_iou

    from ._writer import write_image

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # the demo's autosaves belong to the demo, not to the user's own project folder
    os.environ.setdefault("NAPARI_UNET_HOME", str(out / "project"))
    files = {
        "labels": out / "nuclei prediction.tif",
        "weights": out / "nuclei labels weights.tif",
        "model": out / "model.pt",
        "screenshot": out / "screenshot.png",
    }
    for path in files.values():  # the demo owns its output folder: replace its own files
        path.unlink(missing_ok=True)

    viewer, widgets = open_viewer_with_sample()
    annotate, weights, train, predict, export = (widgets[name][1] for name in WIDGETS)
    image = viewer.layers["nuclei"]
    truth = np.asarray(viewer.layers["nuclei ground truth"].data)

    # Annotate: the ground truth stands in for the biologist's painting
    annotate.image_combo.set_layer(image)
    labels = annotate.create_layers()
    labels.data = truth.astype(labels.data.dtype)
    annotate.save_now()

    # Weight map
    weights.labels_combo.set_layer(labels)
    weights.compute()
    wait_for(weights.runner)
    write_image(str(files["weights"]), viewer.layers["nuclei labels weights"].data, {"scale": labels.scale})

    # Train (background worker; the window stays live)
    train.image_combo.set_layer(image)
    train.labels_combo.set_layer(labels)
    train.train_form.set("iterations", iterations)
    train.output_edit.setText(str(files["model"]))
    widgets["Train"][0].raise_()
    if not train.start():
        raise RuntimeError("the Train widget did not start; see the notification above")
    wait_for(train.runner)
    if not train.runner.last_outcome.ok:
        raise RuntimeError(f"training failed: {train.runner.last_outcome.error}")

    # Predict with the model just trained
    predict.image_combo.set_layer(image)
    predict.predict()
    wait_for(predict.runner)
    if not predict.runner.last_outcome.ok:
        raise RuntimeError(f"prediction failed: {predict.runner.last_outcome.error}")
    prediction = viewer.layers["nuclei prediction"]
    log.info(
        "demo: foreground IoU %.3f, %d objects (truth %d)",
        foreground_iou(np.asarray(prediction.data), truth), int(np.max(prediction.data)), int(truth.max()),
    )

    # Export
    export.folder_edit.setText(str(out))
    export.export()

    # Screenshot of the window with the widgets docked
    viewer.layers["nuclei labels"].visible = False
    viewer.layers["nuclei labels weights"].visible = False
    viewer.layers.selection.active = prediction
    for _ in range(3):  # a tab raised before the window has settled may not show: repeat
        widgets["Train"][0].raise_()
        QApplication.processEvents()
    viewer.reset_view()
    dismiss_notifications(viewer)
    QApplication.processEvents()
    viewer.screenshot(str(files["screenshot"]), canvas_only=False, flash=False)
    viewer.close()
    return files
