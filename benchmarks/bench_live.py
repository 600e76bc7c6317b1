"""Live mode in a real napari viewer: stroke -> updated field-of-view prediction, and lateness.

The Live dock trains the live default model (``unet_core.training.live.LIVE_DEFAULTS``) in its
own process on a synthetic nuclei image while "strokes" are painted: each stroke paints one more
ground-truth nucleus through ``Labels.data_setitem`` (the same undo history and ``paint`` event
as the brush). Measured per stroke: the time until the dock shows a field-of-view prediction
made after that stroke's snapshot reached the trainer (debounce ~1 s + transfer + the next
prediction of the view). The canvas is fixed at 512 x 512 screen pixels at zoom 1, so the view
is a 512² window of the image. A 10 ms ``QTimer`` (precise) in the viewer's event loop records
how late it fires (p50 / p99 / max) while idle and while live mode trains and refreshes.

Target: median stroke -> view <= 10 s on the CPU. Run under a display or Xvfb:

    xvfb-run -a python benchmarks/bench_live.py

(it re-executes itself under ``xvfb-run`` when there is no ``$DISPLAY``).
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
sys.path[:0] = [str(ROOT / "benchmarks")]

from bench_responsiveness import TICK_MS, LatencyProbe  # noqa: E402


def pump(seconds: float) -> None:
    """Process Qt events for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def wait_for(condition, timeout: float) -> bool:
    """Process events until ``condition()`` (True) or ``timeout`` seconds (False)."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.005)
    return False


def stroke(widget, labels, truth: np.ndarray, object_id: int, timeout: float) -> dict[str, float]:
    """Paint ground-truth object ``object_id``; time until a prediction made after it is shown."""
    target = widget.snapshot_id + 1  # the snapshot the debounce timer will send for this stroke
    t0 = time.perf_counter()
    labels.data_setitem(np.nonzero(truth == object_id), object_id)
    HANDLERS.setdefault("(the stroke itself: napari data_setitem)", []).append(time.perf_counter() - t0)
    ok = wait_for(lambda: widget.last_prediction is not None
                  and widget.last_prediction.snapshot_id >= target, timeout)
    total = time.perf_counter() - t0
    pred = widget.last_prediction
    return {
        "total": total if ok else float("nan"),
        "transfer": float(widget.snapshot_delay or 0.0),
        "predict": float(pred.seconds) if pred is not None else float("nan"),
        "pixels": int(np.prod([b - a for a, b in pred.window])) if pred is not None else 0,
        "step": pred.step if pred is not None else 0,
    }


#: GUI-thread seconds per call of the dock's handlers, by name (filled by :func:`time_handlers`)
HANDLERS: dict[str, list[float]] = {}


def time_handlers() -> None:
    """Wrap the Live dock's GUI-thread handlers (before it is created) to time every call."""
    from functools import wraps

    from napari_unet._live_widget import LiveWidget

    def timed(name, func):
        @wraps(func)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                HANDLERS.setdefault(name, []).append(time.perf_counter() - t0)

        return wrapper

    for name in ("poll", "show_prediction", "send_snapshot", "request_view", "update_status"):
        setattr(LiveWidget, name, timed(name, getattr(LiveWidget, name)))


def setup(size: int):
    """A viewer with a 512² canvas at zoom 1, the sample image, sparse labels and the Live dock."""
    import napari

    from unet_core.sample_data import synthetic_nuclei

    viewer = napari.Viewer(title="live benchmark")
    image, truth = synthetic_nuclei((size, size), seed=3)
    viewer.add_image(image, name="nuclei")
    ids = [int(i) for i in np.unique(truth) if i]
    start = np.where(np.isin(truth, ids[:6]), truth, 0).astype(np.uint16)
    labels = viewer.add_labels(start, name="nuclei labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Live")
    viewer.window._qt_viewer.canvas.native.setFixedSize(512, 512)
    pump(0.5)
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    cam.center = (size / 2, size / 2)
    cam.zoom = 1.0
    pump(0.5)
    return viewer, widget, labels, truth, ids[6:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="edge of the image (the view is 512²)")
    parser.add_argument("--strokes", type=int, default=5)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between strokes")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    from napari_unet._headless import rerun_under_xvfb

    code = rerun_under_xvfb(__file__, argv or sys.argv[1:])
    if code is not None:
        return code
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    os.environ.setdefault("NAPARI_UNET_HOME", tempfile.mkdtemp(prefix="napari-unet-bench-"))
    import napari
    import torch

    time_handlers()
    viewer, widget, labels, truth, ids = setup(args.size)
    probe = LatencyProbe()
    probe.start()
    pump(args.idle_seconds)
    idle = probe.stop()
    load_before = os.getloadavg()
    widget.confirm_overwrite = lambda path: True
    assert widget.start(), widget.status.text()
    t_start = time.perf_counter()
    wait_for(lambda: widget.last_prediction is not None, 600)  # first view: process start-up
    first = time.perf_counter() - t_start
    HANDLERS.clear()  # from here on: the same window as the lateness probe
    probe.start()
    rows = [stroke(widget, labels, truth, ids[0], 120)]  # warm-up stroke, not counted
    for object_id in ids[1 : 1 + args.strokes]:
        pump(args.pause)
        rows.append(stroke(widget, labels, truth, object_id, 120))
    live = probe.stop()
    load_after = os.getloadavg()
    t_stop = time.perf_counter()
    widget.stop()
    wait_for(lambda: widget.job is None, 120)
    stop_s = time.perf_counter() - t_stop
    report(args, rows, idle, live, first, stop_s, (load_before, load_after), widget)
    print(f"\nnapari {napari.__version__}, torch {torch.__version__}, {os.cpu_count()} CPU core(s)")
    viewer.close()
    return 0


def report(args, rows, idle, live, first, stop_s, loads, widget) -> None:
    """Print the markdown tables."""
    from unet_core.training.live import LIVE_DEFAULTS

    m = LIVE_DEFAULTS.model
    cores = os.cpu_count() or 1
    print(f"Live default model (U-Net depth {m.depth}, {m.base_channels} base channels, batch "
          f"{LIVE_DEFAULTS.batch_size}, tile {LIVE_DEFAULTS.tile_size}), CPU, {args.size}² image, "
          f"512² canvas at zoom 1. Load average (1 min) before {loads[0][0]:.1f}, after "
          f"{loads[1][0]:.1f} on {cores} cores.")
    print(f"\nSession start to first view prediction: {first:.1f} s; Stop to saved + registered: {stop_s:.1f} s.")
    print("\n| stroke | stroke -> view s | snapshot transfer s | view predict s | window px | step |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rows):
        name = "warm-up" if i == 0 else str(i)
        print(f"| {name} | {r['total']:.2f} | {r['transfer']:.3f} | {r['predict']:.2f} | {r['pixels']} | {r['step']} |")
    totals = [r["total"] for r in rows[1:]]
    med = float(np.nanmedian(totals)) if totals else float("nan")
    print(f"\nmedian stroke -> updated view over {len(totals)} strokes: {med:.2f} s "
          f"(target <= 10 s: {'met' if med <= 10 else 'NOT met'})")
    print(f"\n| event loop ({TICK_MS} ms QTimer) | p50 ms | p99 ms | max ms | ticks |")
    print("|---|---:|---:|---:|---:|")
    for name, s in (("idle", idle), ("live mode training + refreshing", live)):
        print(f"| {name} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {s['ticks']} |")
    print(f"\nview predictions shown: {widget.predictions_shown}")
    print("\nGUI-thread time per call while the probe ran (poll includes show_prediction):")
    print("\n| GUI-thread handler of the dock | calls | median ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, times in HANDLERS.items():
        a = np.asarray(times) * 1000
        print(f"| {name} | {len(a)} | {np.median(a):.1f} | {a.max():.1f} |")


if __name__ == "__main__":
    sys.exit(main())
