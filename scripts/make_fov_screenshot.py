"""Screenshot and timing of "Predict visible field of view" on a huge lazy image.

Writes a synthetic 20000 x 20000 uint8 OME-Zarr (the nuclei sample tiled, with a pyramid) into a
temporary folder (or ``--image``), opens it lazily with the plugin's reader, zooms onto a region,
predicts the field of view with the built-in ``nuclei`` model, prints the answer times (first:
with the whole image's statistics; second: another view, statistics kept) and saves the window
as ``docs/images/predict-fov.png``. Needs a display; without one it re-runs under ``xvfb-run``::

    python scripts/make_fov_screenshot.py [--out docs/images/predict-fov.png] [--size 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_image(path: Path, size: int, tile: int = 2000) -> None:
    """A ``size`` x ``size`` uint8 OME-Zarr: the synthetic nuclei sample tiled, multiscale."""
    import dask.array as da
    import numpy as np
    import zarr
    from ome_zarr.writer import write_image

    from unet_core.sample_data import synthetic_nuclei

    image, _ = synthetic_nuclei((tile, tile), seed=7)
    block = (np.asarray(image) >> 7).astype(np.uint8)  # uint16 up to ~24000 -> 0..187
    reps = -(-size // tile)
    data = da.tile(da.from_array(block, chunks=1000), (reps, reps))[:size, :size].rechunk(1000)
    factors = tuple(2**k for k in range(1, 7))
    write_image(data, zarr.open_group(str(path), mode="w"), scale_factors=factors, axes="yx",
                storage_options={"chunks": (1000, 1000)})


def predict_view(viewer, widget, center: tuple[float, float], zoom: float) -> float:
    """Predict the field of view at ``center`` / ``zoom``; the seconds until the layers are shown."""
    from qtpy.QtWidgets import QApplication

    from napari_unet._demo import wait_for
    from napari_unet._live_widget import camera

    camera(viewer).center = center
    camera(viewer).zoom = zoom
    QApplication.processEvents()
    t0 = time.perf_counter()
    if not widget.predict_fov():
        raise RuntimeError("the field of view prediction did not start")
    wait_for(widget.runner)
    seconds = time.perf_counter() - t0
    outcome = widget.runner.last_outcome
    if not outcome.ok:
        raise RuntimeError(f"field of view failed: {outcome.error}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "predict-fov.png"))
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--image", default=None, help="an existing OME-Zarr to use instead")
    args = parser.parse_args(argv)
    from napari_unet._headless import rerun_under_xvfb

    code = rerun_under_xvfb(__file__, argv or sys.argv[1:])
    if code is not None:
        return code
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    os.environ["NAPARI_UNET_HOME"] = tempfile.mkdtemp(prefix="napari-unet-fov-")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unet._demo import WINDOW_SIZE, dismiss_notifications
    from napari_unet._reader import read_zarr_layers

    path = Path(args.image) if args.image else Path(tempfile.mkdtemp(prefix="fov-image-")) / "huge.ome.zarr"
    if not path.exists():
        t0 = time.perf_counter()
        make_image(path, args.size)
        print(f"wrote {path} ({args.size} x {args.size} uint8) in {time.perf_counter() - t0:.0f} s")
    viewer = napari.Viewer(title="napari-unet: field of view")
    viewer.window.resize(*WINDOW_SIZE)
    for data, kwargs, _ in read_zarr_layers(str(path)):
        viewer.add_image(data, **{**kwargs, "name": "huge"})
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget.model_source.combo.setCurrentText("built-in: nuclei")
    QApplication.processEvents()
    n = args.size
    first = predict_view(viewer, widget, (0.31 * n, 0.42 * n), 1.0)
    print(f"first field of view (with the image statistics): {first:.2f} s; {widget.status.text()}")
    second = predict_view(viewer, widget, (0.62 * n, 0.55 * n), 1.0)
    print(f"second field of view (statistics kept): {second:.2f} s; {widget.status.text()}")
    viewer.layers["huge fov prediction"].contour = 2
    for _ in range(5):
        QApplication.processEvents()
    dismiss_notifications(viewer)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(args.out, canvas_only=False, flash=False)
    print(f"wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
