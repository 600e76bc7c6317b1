"""Synthetic test images shared by several test modules (no Qt, no torch)."""

from __future__ import annotations

import numpy as np


def disks(shape=(64, 64), seed=0, n=6):
    """Bright disks on a dark noisy background: (image float32, instance labels uint16)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i in range(1, n + 1):
        cy, cx = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(9, 30)] = i
    image = (labels > 0) * 1.0 + 0.3 * rng.standard_normal(shape)
    return image.astype(np.float32), labels
