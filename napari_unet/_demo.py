"""The demo behind ``make demo``: the plugin in a real napari window."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def open_viewer_with_sample():
    """A napari viewer with the sample loaded through the plugin's manifest."""
    import napari

    viewer = napari.Viewer(title="napari-unet demo")
    viewer.open_sample("napari-unet", "nuclei")
    return viewer


def run_gui_demo(*, headless: bool, output: str | Path = "demo-output", iterations: int = 150) -> int:
    """Interactive: open napari and run its event loop. Headless: run the loop, save, exit."""
    import napari

    if not headless:
        open_viewer_with_sample()
        napari.run()
        return 0
    from unet_core.cli._common import drain
    from unet_core.demo import run_demo
    from unet_core.io import read_tiff

    out = Path(output)
    files = drain(run_demo(out, iterations=iterations))
    viewer = open_viewer_with_sample()
    weights, _ = read_tiff(files["weights"])
    labels, _ = read_tiff(files["labels"])
    viewer.add_image(weights, name="nuclei labels weights", colormap="magma", opacity=0.6, visible=False)
    viewer.add_labels(labels, name="nuclei prediction")
    shot = out / "screenshot.png"
    viewer.screenshot(str(shot), canvas_only=False)
    viewer.close()
    for role, path in {**files, "screenshot": shot}.items():
        print(f"wrote {path}  ({role})")
    return 0
