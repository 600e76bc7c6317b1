"""A small live matplotlib plot of training loss and validation metrics for the Train widget."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

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
    """Loss (left, log scale) and validation metrics (right) against the training step.

    Redraws at most every ``min_interval`` seconds while training, so plotting never costs the
    viewer its responsiveness; :meth:`flush` draws the final state.
    """

    def __init__(self, min_interval: float = 0.5):
        fig = Figure(figsize=(4.0, 2.2), dpi=90, tight_layout=True)
        super().__init__(fig)
        self.ax_loss = fig.add_subplot(1, 2, 1)
        self.ax_val = fig.add_subplot(1, 2, 2)
        self.min_interval = min_interval
        self.curves = Curves()
        self._last_draw = 0.0
        self.setMinimumHeight(180)
        self.clear()

    def clear(self) -> None:
        """Forget all curves (a new run starts)."""
        self.curves = Curves()
        self._redraw()

    def add_record(self, record) -> None:
        """Add the metrics of one :class:`~unet_core.progress.Progress` record."""
        kind = "val" if record.stage in ("validate", "validation", "val") else "train"
        for name, value in (record.metrics or {}).items():
            if name in _SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.curves.add(kind, name, int(record.step), float(value))
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self._redraw()

    def flush(self) -> None:
        """Draw everything now."""
        self._redraw()

    def _redraw(self) -> None:
        self._last_draw = time.perf_counter()
        ax, av = self.ax_loss, self.ax_val
        ax.clear()
        av.clear()
        for name, (x, y) in self.curves.train.items():
            ax.plot(x, y, lw=1, label=name)
        for name, (x, y) in self.curves.val.items():
            target = ax if "loss" in name else av
            short = name.removeprefix("val_")
            target.plot(x, y, "o-", ms=3, lw=1, label=f"val {short}")
        if any(min(y) > 0 for _, y in self.curves.train.values() if y):
            ax.set_yscale("log")
        if not self.curves.val:
            av.text(0.5, 0.5, "no validation yet", ha="center", va="center", fontsize=8, color="0.4",
                    transform=av.transAxes)
            av.set_xticks([])
            av.set_yticks([])
        ax.set_title("loss", fontsize=8)
        av.set_title("validation", fontsize=8)
        for a in (ax, av):
            a.tick_params(labelsize=7)
            a.set_xlabel("step", fontsize=7)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=6, loc="best")
        self.draw_idle()
