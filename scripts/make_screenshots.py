"""Screenshots of the user guide (docs/images/*.png), taken from the real app.

Runs napari with the plugin, drives the dock widgets through the loop on the built-in sample and
saves a window screenshot at each stage. Needs a display; without one it re-executes itself under
``xvfb-run``::

    python scripts/make_screenshots.py [--out docs/images] [--iterations 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shoot(viewer, widgets, tab: str, path: Path) -> None:
    """Raise the dock tab ``tab`` and save a screenshot of the whole window."""
    from qtpy.QtWidgets import QApplication

    from napari_unet._demo import dismiss_notifications

    for _ in range(3):  # a tab raised before the window has settled may not show: repeat
        widgets[tab][0].raise_()
        QApplication.processEvents()
    viewer.reset_view()
    dismiss_notifications(viewer)
    for _ in range(5):
        QApplication.processEvents()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--iterations", type=int, default=60)
    args = parser.parse_args(argv)
    from napari_unet._headless import rerun_under_xvfb

    code = rerun_under_xvfb(__file__, argv or sys.argv[1:])
    if code is not None:
        return code

    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    work = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
    os.environ["NAPARI_UNET_HOME"] = str(work)
    import numpy as np

    from napari_unet._demo import WIDGETS, open_viewer_with_sample, wait_for

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer, widgets = open_viewer_with_sample()
    annotate, weights, train, predict, export = (widgets[name][1] for name in WIDGETS)
    image = viewer.layers["nuclei"]
    truth = np.asarray(viewer.layers["nuclei ground truth"].data)

    # 1. Annotate: labels painted in the upper-left quarter, a training-region rectangle
    annotate.image_combo.set_layer(image)
    annotate.region_check.setChecked(True)
    labels = annotate.create_layers()
    painted = np.zeros_like(truth)
    painted[:256, :256] = truth[:256, :256]
    labels.data = painted.astype(labels.data.dtype)
    region = viewer.layers["nuclei region"]
    region.add_rectangles(np.array([[0, 0], [255, 255]]), edge_color="yellow", face_color="transparent", edge_width=3)
    annotate.save_now()
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    shoot(viewer, widgets, "Annotate", out / "01-annotate.png")

    # 2. Weight map of the painted labels inside the region
    weights.labels_combo.set_layer(labels)
    weights.region_combo.set_layer(region)
    weights.compute()
    wait_for(weights.runner)
    labels.visible = False
    shoot(viewer, widgets, "Weight map", out / "02-weight-map.png")
    labels.visible = True
    viewer.layers["nuclei labels weights"].visible = False

    # 3. Train
    train.image_combo.set_layer(image)
    train.labels_combo.set_layer(labels)
    train.region_combo.set_layer(region)
    train.train_form.set("iterations", args.iterations)
    train.output_edit.setText(str(work / "models" / "nuclei-unet.pt"))
    widgets["Train"][0].raise_()
    train.start()
    wait_for(train.runner)
    shoot(viewer, widgets, "Train", out / "03-train.png")

    # 4. Predict the whole image with the model just trained
    predict.image_combo.set_layer(image)
    predict.predict()
    wait_for(predict.runner)
    labels.visible = False
    region.visible = False
    viewer.layers.selection.active = viewer.layers["nuclei prediction"]
    shoot(viewer, widgets, "Predict", out / "04-predict.png")

    # 5. Export
    export.folder_edit.setText(str(work / "exports"))
    export.export()
    shoot(viewer, widgets, "Export", out / "05-export.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
