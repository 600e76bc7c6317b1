"""Small frozen progress records yielded by the engine's long-running generators.

The CLI drains them into a progress bar, the GUI into a progress bar and plots; both stop a job
by closing the generator (or calling ``.close()``) between steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
