"""From probabilities to uint32 instance labels: connectivity, watershed split, stacks."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.errors import InputError
from unet_core.postprocess import foreground_probability, probabilities_to_instances


def _probs(fg: np.ndarray) -> np.ndarray:
    p = fg.astype(np.float32)
    return np.stack([1 - p, p])


def _two_touching_discs(shape=(60, 90), r=15):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = (yy - 30) ** 2 + (xx - 30) ** 2 <= r**2
    b = (yy - 30) ** 2 + (xx - 57) ** 2 <= r**2  # centres 27 px apart: the discs overlap
    return a, b


def test_touching_discs_are_split_and_nothing_is_lost():
    a, b = _two_touching_discs()
    fg = a | b
    lab = probabilities_to_instances(_probs(fg), min_size=1)
    assert lab.dtype == np.uint32
    assert lab.max() == 2 and set(np.unique(lab)) == {0, 1, 2}
    np.testing.assert_array_equal(lab > 0, fg)  # every foreground pixel labelled, no background
    # each object is mostly one disc
    for disc in (a & ~b, b & ~a):
        ids, counts = np.unique(lab[disc], return_counts=True)
        assert counts.max() / counts.sum() > 0.95
    merged = probabilities_to_instances(_probs(fg), split_touching=False, min_size=1)
    assert merged.max() == 1 and np.array_equal(merged > 0, fg)


def test_separate_objects_and_small_ones():
    fg = np.zeros((40, 40), bool)
    fg[2:12, 2:12] = True
    fg[20:30, 25:35] = True
    fg[35, 5] = True  # one-pixel speck
    for split in (True, False):
        lab = probabilities_to_instances(_probs(fg), split_touching=split, min_size=5)
        assert lab.max() == 2 and lab[35, 5] == 0
        lab = probabilities_to_instances(_probs(fg), split_touching=split, min_size=0)
        assert lab.max() == 3 and np.array_equal(lab > 0, fg)


def test_threshold_and_multiclass():
    p = np.zeros((3, 10, 10), np.float32)
    p[0] = 1.0
    p[:, 2:5, 2:5] = [[[0.3]], [[0.3]], [[0.4]]]  # foreground 0.7 split over two classes
    np.testing.assert_allclose(foreground_probability(p)[3, 3], 0.7)
    assert probabilities_to_instances(p, threshold=0.5, min_size=1).max() == 1
    assert probabilities_to_instances(p, threshold=0.8, min_size=1).max() == 0


def test_stack_ids_unique_and_empty():
    a, b = _two_touching_discs()
    fg = np.stack([a | b, np.zeros_like(a), a])
    p = np.stack([_probs(f) for f in fg])
    lab = probabilities_to_instances(p, min_size=1)
    assert lab.shape == fg.shape and lab.dtype == np.uint32
    assert set(np.unique(lab[0])) == {0, 1, 2} and lab[1].max() == 0
    assert set(np.unique(lab[2])) == {0, 3}
    empty = probabilities_to_instances(_probs(np.zeros((8, 8), bool)))
    assert empty.dtype == np.uint32 and empty.max() == 0


def test_bad_shape():
    with pytest.raises(InputError, match="n_classes"):
        probabilities_to_instances(np.zeros((5, 5)))
