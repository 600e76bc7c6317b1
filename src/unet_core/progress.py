"""Small frozen progress records yielded by the engine's long-running generators.

The CLI drains them into a progress bar, the GUI into a progress bar and plots. A job stops
between steps when its ``stop`` event is set (the trainer then returns its result) or when the
generator is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One step of a long-running job.

    Attributes
    ----------
    stage : str
        What is running ('weights', 'predict', 'train', 'validate', ...).
    step, total : int
        Steps done and steps planned (``total`` may be 0 when unknown).
    message : str
        A short human-readable status line.
    metrics : dict
        Numbers worth plotting (loss, lr, IoU, ...), JSON-compatible.
    eta : float or None
        Estimated seconds left.
    """

    stage: str
    step: int
    total: int
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    eta: float | None = None

    @property
    def fraction(self) -> float:
        """Fraction done in [0, 1] (0 when the total is unknown)."""
        return min(1.0, self.step / self.total) if self.total else 0.0


def run_to_end(
    gen: Generator[Progress, None, R], on_progress: Callable[[Progress], object] | None = None
) -> R:
    """Drain a progress generator and return its result (``StopIteration.value``).

    Parameters
    ----------
    gen : generator of Progress
        A long-running engine job (``train``, ``iter_predict_tiled``, ...).
    on_progress : callable, optional
        Called with every record, e.g. ``records.append`` or a progress-bar update.
    """
    while True:
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(record)
