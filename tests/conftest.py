"""Shared fixtures. Core tests need no Qt; GUI tests are marked ``gui`` and use pytest-qt."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample():
    """The built-in synthetic sample at a small size: (image uint16 (128, 128), labels)."""
    from unet_core.sample_data import synthetic_nuclei

    return synthetic_nuclei((128, 128), seed=3)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
