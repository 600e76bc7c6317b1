"""npe2 sample data: synthetic fluorescent nuclei with their ground-truth instance labels."""

from __future__ import annotations

from typing import Any


def sample_nuclei() -> list[tuple[Any, dict, str]]:
    """Layer data tuples: the uint16 nuclei image and its ground-truth Labels."""
    from unet_core.sample_data import synthetic_nuclei

    image, labels = synthetic_nuclei()
    return [
        (image, {"name": "nuclei", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.5, "visible": False}, "labels"),
    ]
