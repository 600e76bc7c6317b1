"""Shared fixtures. Core tests need no Qt; GUI tests are marked ``gui`` and use pytest-qt."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample():
    """The built-in synthetic sample at a small size: (image uint16 (128, 128), labels)."""
    from unet_core.sample_data import synthetic_nuclei

    return synthetic_nuclei((128, 128), seed=3)


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for a module of tiny-tensor tests.

    Tiny tensors gain nothing from intra-op threads, and on a loaded 2-core machine the threads'
    barriers cost a lot (measured 14-25x slower). Use with
    ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
