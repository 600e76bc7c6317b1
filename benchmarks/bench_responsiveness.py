"""Event-loop responsiveness of a real napari viewer while the plugin trains and predicts.

A 10 ms ``QTimer`` (precise) runs in the viewer's event loop; each tick records how late it
fired. We measure the lateness (p50 / p99 / max, ms) while

* (a) **training** (the engine's default model and tile size, ``--train-steps`` steps on the
  synthetic sample) and
* (b) **predicting** a ``--size``\\ ² image (overlap tiles, the same default model),

each run three ways:

* ``main thread``: the same engine generator drained in the GUI thread, with
  ``processEvents()`` after every step: the best a plugin without a worker could do (the baseline);
* ``worker``: the dock widget's Start/Predict button, i.e. the engine generator in a napari
  ``thread_worker`` with the plugin's default torch threads (all cores but one);
* ``worker, all threads``: the same with torch using every core;
* ``process`` (training only): the Train widget's default, ``train()`` in its own spawned
  process (``napari_unet._jobs.in_process``); the worker thread only waits on the queue.

Then the **Stop latency**: a long training is started (thread and process), Stop is clicked
after ``--stop-after`` seconds of training, and the time until the widget has the result back
(checkpoint saved) is measured.

Goals: p99 <= 50 ms in the worker rows, p99 <= 30 ms in the process rows, Stop within 1 s.
Timings depend on the machine; the table gives ratios to the main-thread baseline measured in the
same run and the load average. Run under a display or Xvfb (it re-executes itself under
``xvfb-run`` when there is no ``$DISPLAY``)::

    python benchmarks/bench_responsiveness.py                 # training and prediction
    python benchmarks/bench_responsiveness.py --jobs train    # training rows + Stop only
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TICK_MS = 10


class LatencyProbe:
    """A precise 10 ms QTimer recording how late each tick fires (seconds)."""

    def __init__(self):
        from qtpy.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)
        self.last = None
        self.late: list[float] = []

    def tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.late.append(max(0.0, now - self.last - TICK_MS / 1000))
        self.last = now

    def start(self) -> None:
        self.late, self.last = [], None
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        return self.summarize(self.late)

    @staticmethod
    def summarize(late: list[float]) -> dict[str, float]:
        a = np.asarray(late or [0.0]) * 1000
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()), "ticks": len(late)}


def run_main_thread(gen):
    """Drain an engine generator in the GUI thread, processing events between steps."""
    from qtpy.QtWidgets import QApplication

    from unet_core.progress import run_to_end

    return run_to_end(gen, lambda _record: QApplication.processEvents())


class ProgressiveRows(list):
    """The result rows, each also printed (to stderr) as soon as it is measured."""

    def append(self, row) -> None:
        job, where, s, wall = row
        print(f"measured {job} / {where}: p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms, "
              f"{wall:.1f} s", file=sys.stderr, flush=True)
        super().append(row)


class Measurement:
    """Run one job inside the real Qt event loop while the probe ticks.

    ``start`` is called from the event loop; for a worker job it returns at once and the
    runner's ``finished`` signal ends the loop; for a main-thread job it returns when done.
    """

    def __init__(self, probe: LatencyProbe):
        from qtpy.QtCore import QEventLoop

        self.probe = probe
        self.loop = QEventLoop()
        self.t0 = 0.0

    def run(self, start, runner=None, seconds: float | None = None) -> tuple[dict[str, float], float]:
        from qtpy.QtCore import QTimer

        if runner is not None:
            runner.finished.connect(self._done)
        self.probe.start()
        self.t0 = time.perf_counter()
        QTimer.singleShot(0, partial(self._begin, start, runner is None and seconds is None))
        if seconds is not None:
            QTimer.singleShot(int(seconds * 1000), self._done)
        self.loop.exec_()
        wall = time.perf_counter() - self.t0
        if runner is not None:
            runner.finished.disconnect(self._done)
        return self.probe.stop(), wall

    def _begin(self, start, synchronous: bool) -> None:
        if start is not None:
            start()
        if synchronous:
            self._done()

    def _done(self, *_) -> None:
        self.loop.quit()


def predict_main(model, image) -> None:
    """Baseline (b): prediction and post-processing in the GUI thread."""
    from unet_core.postprocess import probabilities_to_instances
    from unet_core.tiling import iter_predict_tiled

    probs = run_main_thread(iter_predict_tiled(model, image, device="cpu"))
    probabilities_to_instances(probs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", choices=("train", "predict", "both"), default="both")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="edge of the predicted image")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--stop-after", type=float, default=3.0, help="seconds of training before Stop")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions (pooled)")
    return parser.parse_args(argv)


class Bench:
    """The viewer with the Train and Predict docks, the probe, and the pooled measurements."""

    def __init__(self, args: argparse.Namespace) -> None:
        import napari
        from qtpy.QtWidgets import QApplication

        from unet_core.config import TrainConfig
        from unet_core.models import build_model
        from unet_core.sample_data import synthetic_nuclei

        self.args = args
        self.viewer = napari.Viewer(title="responsiveness benchmark")
        self.viewer.window.resize(1400, 900)
        self.image, self.truth = synthetic_nuclei()
        reps = (args.size // self.image.shape[0] + 1, args.size // self.image.shape[1] + 1)
        self.big = np.tile(self.image, reps)[: args.size, : args.size]
        self.viewer.add_image(self.image, name="nuclei")
        self.viewer.add_labels(self.truth.astype(np.uint16), name="nuclei labels")
        self.viewer.add_image(self.big, name="big")
        window = self.viewer.window
        _, self.train_w = window.add_plugin_dock_widget("napari-unet", "Train")
        _, self.predict_w = window.add_plugin_dock_widget("napari-unet", "Predict", tabify=True)
        for _ in range(20):
            QApplication.processEvents()
            time.sleep(0.02)
        self.cfg = TrainConfig(iterations=args.train_steps, device="cpu")
        self.model = build_model(self.cfg.model).eval()
        self.outdir = Path(os.environ["NAPARI_UNET_HOME"])
        self.probe = LatencyProbe()
        self.m = Measurement(self.probe)
        self.rows = ProgressiveRows()
        self.pooled: dict[tuple[str, str], list] = {}
        self.stops: dict[str, list[float]] = {}

    def record(self, job: str, where: str, stats: dict, wall: float) -> None:
        self.rows.append((job, where, stats, wall))
        entry = self.pooled.setdefault((job, where), [[], []])
        entry[0].extend(self.probe.late)
        entry[1].append(wall)

    def warm_up(self) -> None:
        """Lazy imports (scikit-image...), torch kernels, first layers; then the idle row."""
        from unet_core.training.data import TrainingPair
        from unet_core.training.trainer import train

        pairs = [TrainingPair(self.image, self.truth, name="warm-up")]
        run_main_thread(train(pairs, replace(self.cfg, iterations=1)))
        predict_main(self.model, self.big[:256, :256])
        stats, wall = self.m.run(None, seconds=self.args.idle_seconds)
        self.record("idle", "-", stats, wall)

    def set_up_training(self, in_process: bool, threads: int, bar: bool, iterations: int, name: str):
        import napari_unet._jobs as jobs

        w = self.train_w
        jobs.WORKER_THREADS = threads
        w.in_process = in_process
        w.runner.show_progress = bar
        w.image_combo.setCurrentText("nuclei")
        w.labels_combo.setCurrentText("nuclei labels")
        w.train_form.set("iterations", iterations)
        w.train_form.set("device", "cpu")
        target = self.outdir / f"{name}.pt"
        target.unlink(missing_ok=True)
        w.output_edit.setText(str(target))

    def train_round(self, variants) -> None:
        """(a) training: in the GUI thread, then through the Train widget in each variant."""
        from unet_core.training.data import TrainingPair
        from unet_core.training.trainer import train

        def train_main():
            pairs = [TrainingPair(self.image, self.truth, name="nuclei")]
            run_main_thread(train(pairs, self.cfg, output=self.outdir / "main.pt"))

        stats, wall = self.m.run(train_main)
        self.record("train", "main thread", stats, wall)
        for label, in_process, threads, bar in variants:
            self.set_up_training(in_process, threads, bar, self.args.train_steps, label.split(",")[0])
            stats, wall = self.m.run(self.train_w.start, self.train_w.runner)
            self.record("train", f"{label} ({threads} torch thr.)", stats, wall)

    def stop_round(self, threads: int) -> None:
        """Stop latency: Stop after ``--stop-after`` s of training; time until the result is back."""
        from qtpy.QtCore import QTimer

        w = self.train_w
        for label, in_process in (("thread", False), ("process", True)):
            self.set_up_training(in_process, threads, True, 100_000, f"stop-{label}")
            seen: list[float] = []  # arrival times of the 'train' records

            def on_record(record, seen=seen):
                if record.stage == "train":
                    seen.append(time.perf_counter())
                    if len(seen) == 1:
                        QTimer.singleShot(int(self.args.stop_after * 1000), w.stop)

            w.runner.progressed.connect(on_record)
            self.m.run(w.start, w.runner)
            w.runner.progressed.disconnect(on_record)
            step = float(np.median(np.diff(seen))) if len(seen) >= 2 else float("nan")  # nan: 1 step
            self.stops.setdefault(label, []).append((w.stop_latency, step))
            print(f"measured Stop / {label}: {w.stop_latency:.3f} s (step {step:.2f} s)",
                  file=sys.stderr, flush=True)

    def predict_round(self, variants) -> None:
        """(b) prediction of a size² image: in the GUI thread, then through the Predict widget."""
        import napari_unet._jobs as jobs

        pjob = f"predict {self.args.size}²"
        stats, wall = self.m.run(partial(predict_main, self.model, self.big))
        self.record(pjob, "main thread", stats, wall)
        for label, _, threads, bar in variants:
            jobs.WORKER_THREADS = threads
            self.predict_w.runner.show_progress = bar
            stats, wall = self.m.run(self.predict_w.predict, self.predict_w.runner)
            self.record(pjob, f"{label} ({threads} torch thr.)", stats, wall)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from napari_unet._headless import rerun_under_xvfb

    code = rerun_under_xvfb(__file__, argv or sys.argv[1:])
    if code is not None:
        return code

    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    os.environ.setdefault("NAPARI_UNET_HOME", tempfile.mkdtemp(prefix="napari-unet-bench-"))
    import torch

    import napari_unet._jobs as jobs
    from napari_unet._registry import MODELS, ModelEntry

    bench = Bench(args)
    bench.warm_up()
    load_before = os.getloadavg()
    MODELS.add(ModelEntry("bench", bench.model))
    bench.predict_w.image_combo.setCurrentText("big")
    bench.predict_w.model_combo.setCurrentText("this session: bench")
    bench.predict_w.device_combo.setCurrentText("cpu")
    jobs.WORKER_THREADS = None
    default = jobs.worker_threads()
    # label, in a process, torch threads, napari activity progress bar shown
    variants = [
        ("worker", False, default, True),
        ("worker, all threads", False, torch.get_num_threads(), True),
        ("worker, no activity bar", False, default, False),
    ]
    process_variants = [("process", True, default, True), ("process, no activity bar", True, default, False)]
    # rounds interleave the variants, so slow changes in the machine's load hit all of them
    for _ in range(args.rounds):
        if args.jobs in ("train", "both"):
            bench.train_round(variants + process_variants)
            bench.stop_round(default)
        if args.jobs in ("predict", "both"):
            bench.predict_round(variants)
    jobs.WORKER_THREADS = None
    report(bench, load_before, os.getloadavg())
    bench.viewer.close()
    return 0


def report(bench: Bench, load_before: tuple, load_after: tuple) -> None:
    """Print the Markdown tables (pooled over the rounds) and the goals."""
    import napari
    import torch

    cores, cfg, args = os.cpu_count() or 1, bench.cfg, bench.args
    rows = [(job, where, LatencyProbe.summarize(late), float(np.median(walls)))
            for (job, where), (late, walls) in bench.pooled.items()]
    print()
    print(f"Event-loop lateness of a {TICK_MS} ms QTimer in a real napari {napari.__version__} viewer "
          f"(Xvfb), torch {torch.__version__}, {cores} CPU core(s), default TrainConfig model "
          f"(depth {cfg.model.depth}, {cfg.model.base_channels} base channels), CPU.")
    print("Every row includes the whole job: predict rows tile prediction + post-processing to instances; "
          "process rows the start of the training process.")
    print(f"{args.rounds} interleaved round(s), lateness pooled, wall = median. Load average (1 min) "
          f"before {load_before[0]:.1f}, after {load_after[0]:.1f} on {cores} cores"
          + (": other processes shared the CPU." if max(load_before[0], load_after[0]) > cores else "."))
    print()
    print("| job | where | p50 ms | p99 ms | max ms | ticks | median wall s | p99 vs main |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    base = {}
    for job, where, s, wall in rows:
        if where == "main thread":
            base[job] = s["p99"]
        ratio = f"{s['p99'] / base[job]:.3f}" if job in base and where != "main thread" and base[job] else "-"
        print(f"| {job} | {where} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {s['ticks']} | {wall:.1f} | {ratio} |")
    if bench.stops:
        print()
        print(f"Stop latency (Stop clicked after {args.stop_after:g} s of training until the widget has "
              "the result back, checkpoint saved), seconds:")
        print()
        print("| training in | Stop latency s (each round) | median step s (each round) |")
        print("|---|---|---|")
        for label, values in bench.stops.items():
            lat = ", ".join(f"{v:.2f}" for v, _ in values)
            steps = ", ".join(f"{s:.2f}" for _, s in values)
            print(f"| {label} | {lat} | {steps} |")
    print()
    for prefix, goal in (("worker (", 50), ("process (", 30)):
        p99 = [s["p99"] for _, where, s, _ in rows if where.startswith(prefix)]
        if p99:
            print(f"goal p99 <= {goal} ms in the '{prefix[:-2]}' rows with the default threads: "
                  f"{'met' if max(p99) <= goal else 'NOT met'} (worst {max(p99):.1f} ms)")
    if bench.stops:
        worst = max(v for values in bench.stops.values() for v, _ in values)
        print(f"goal Stop within 1 s: {'met' if worst <= 1.0 else 'NOT met'} (worst {worst:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
