"""A small live matplotlib plot of training loss and validation metrics for the Train widget.

Drawing costs the GUI thread time, so the plot redraws at most every ``min_interval`` seconds
and only moves existing lines (``set_data``) with fixed margins: no layout pass, no new artists
except when a new series appears.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import AutoLocator

#: metrics that are not worth a curve
_SKIP = {"lr", "epoch", "best_step", "step", "batch_size", "tile_size"}


@dataclass
class Curves:
    """Plotted series: name -> (steps, values)."""

    train: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    val: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def add(self, kind: str, name: str, step: int, value: float) -> None:
        series = (self.train if kind == "train" else self.val).setdefault(name, ([], []))
        series[0].append(step)
        series[1].append(value)


class TrainingPlot(FigureCanvasQTAgg):
    """Loss (left) and validation metrics (right) against the training step.

    :meth:`flush` draws the final state at once.
    """

    def __init__(self, min_interval: float = 2.0):
        fig = Figure(figsize=(4.0, 2.2), dpi=90)
        fig.subplots_adjust(left=0.14, right=0.98, bottom=0.2, top=0.88, wspace=0.35)
        super().__init__(fig)
        self.ax_loss = fig.add_subplot(1, 2, 1)
        self.ax_val = fig.add_subplot(1, 2, 2)
        self.min_interval = min_interval
        self.curves = Curves()
        self._lines: dict[tuple[str, str], object] = {}
        self._last_draw = 0.0
        self._empty_note = None
        self.setMinimumHeight(180)
        self.clear()

    def clear(self) -> None:
        """Forget all curves (a new run starts)."""
        self.curves = Curves()
        self._lines = {}
        for ax, title in ((self.ax_loss, "loss"), (self.ax_val, "validation")):
            ax.clear()
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("step", fontsize=7)
        self.ax_val.set_xticks([])
        self.ax_val.set_yticks([])
        self._empty_note = self.ax_val.text(
            0.5, 0.5, "no validation yet", ha="center", va="center", fontsize=8, color="0.4",
            transform=self.ax_val.transAxes,
        )
        self._last_draw = time.perf_counter()
        self.draw_idle()

    def add_record(self, record) -> None:
        """Add the metrics of one :class:`~unet_core.progress.Progress` record."""
        kind = "val" if record.stage in ("validate", "validation", "val") else "train"
        for name, value in (record.metrics or {}).items():
            if name in _SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.curves.add(kind, name, int(record.step), float(value))
        if kind == "val" or time.perf_counter() - self._last_draw >= self.min_interval:
            self._redraw()

    def flush(self) -> None:
        """Draw everything now."""
        self._redraw()

    def _line(self, kind: str, name: str):
        key = (kind, name)
        line = self._lines.get(key)
        if line is None:
            if kind == "train":
                (line,) = self.ax_loss.plot([], [], lw=1, label=name)
                ax = self.ax_loss
            else:
                ax = self.ax_loss if "loss" in name else self.ax_val
                (line,) = ax.plot([], [], "o-", ms=3, lw=1, label=f"val {name.removeprefix('val_')}")
                if ax is self.ax_val and self._empty_note is not None:
                    self._empty_note.remove()
                    self._empty_note = None
                    ax.xaxis.set_major_locator(AutoLocator())
                    ax.yaxis.set_major_locator(AutoLocator())
            ax.legend(fontsize=6, loc="best")
            self._lines[key] = line
        return line

    def _redraw(self) -> None:
        self._last_draw = time.perf_counter()
        for kind, series in (("train", self.curves.train), ("val", self.curves.val)):
            for name, (x, y) in series.items():
                self._line(kind, name).set_data(x, y)
        for ax in (self.ax_loss, self.ax_val):
            ax.relim()
            ax.autoscale_view()
        self.draw_idle()
