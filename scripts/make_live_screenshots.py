"""Screenshots of the user guide's Live mode section (docs/images/live-*.png), from the real app.

Opens napari with the Live dock on the built-in sample, paints a few nuclei (the same
``Labels.data_setitem`` the brush uses), starts live training, paints more while it trains, and
saves a window screenshot at each stage. Needs a display; without one it re-executes itself
under ``xvfb-run``::

    python scripts/make_live_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def pump(seconds: float) -> None:
    """Process Qt events for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def shot(viewer, path: Path) -> None:
    """Save a screenshot of the whole window (notifications dismissed)."""
    from napari_unet._demo import dismiss_notifications

    dismiss_notifications(viewer)
    pump(0.5)
    viewer.window._qt_window.grab().save(str(path))
    print(f"wrote {path}")


def paint(labels, truth: np.ndarray, ids) -> None:
    """Paint the ground-truth objects ``ids`` into ``labels`` (one undoable stroke each)."""
    for i in ids:
        labels.data_setitem(np.nonzero(truth == i), int(i))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--train-seconds", type=float, default=240.0)
    args = parser.parse_args(argv)
    from napari_unet._headless import rerun_under_xvfb

    code = rerun_under_xvfb(__file__, argv or sys.argv[1:])
    if code is not None:
        return code
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    os.environ.setdefault("NAPARI_UNET_HOME", tempfile.mkdtemp(prefix="napari-unet-shots-"))
    import napari

    from unet_core.sample_data import synthetic_nuclei

    out = Path(args.out)
    viewer = napari.Viewer(title="napari-unet live mode")
    viewer.window.resize(1366, 768)
    image, truth = synthetic_nuclei((512, 512), seed=3)
    viewer.add_image(image, name="nuclei")
    labels = viewer.add_labels(np.zeros(truth.shape, np.uint16), name="nuclei labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Live")
    ids = [int(i) for i in np.unique(truth) if i]
    paint(labels, truth, ids[:10])
    pump(1.0)
    viewer.reset_view()
    shot(viewer, out / "live-1-start.png")
    widget.confirm_overwrite = lambda path: True
    assert widget.start(), widget.status.text()
    end = time.perf_counter() + args.train_seconds
    more = iter(ids[10:])
    while time.perf_counter() < end:  # paint one more nucleus every few seconds, as a user would
        pump(4.0)
        paint(labels, truth, [next(more)])
    pump(8.0)
    widget.update_status()
    shot(viewer, out / "live-2-training.png")
    viewer.layers["nuclei live prediction"].visible = False
    pump(0.5)
    shot(viewer, out / "live-3-uncertainty.png")
    viewer.layers["nuclei live prediction"].visible = True
    widget.stop()
    deadline = time.perf_counter() + 120
    while widget.job is not None and time.perf_counter() < deadline:
        pump(0.2)
    shot(viewer, out / "live-4-stopped.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
