"""check_annotations: the cheap dry run of the training data checks (before any question)."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.errors import InputError
from unet_core.training.data import TrainingPair, check_annotations


def _pair(labels, mask=None, name="img"):
    return TrainingPair(np.zeros(labels.shape, np.float32), labels, mask, None, name)


def test_painted_objects_inside_the_region_pass():
    labels = np.zeros((32, 32), np.uint16)
    labels[4:8, 4:8] = 1
    mask = np.zeros((32, 32), bool)
    mask[:16, :16] = True
    check_annotations([_pair(labels, mask)])
    check_annotations([_pair(labels)])  # no region: painted anywhere is enough


def test_nothing_painted_inside_the_region_is_refused():
    labels = np.zeros((32, 32), np.uint16)
    labels[20:24, 20:24] = 1  # painted, but outside the region
    mask = np.zeros((32, 32), bool)
    mask[:16, :16] = True
    with pytest.raises(InputError, match="nothing is painted inside the region of 'img': paint"):
        check_annotations([_pair(labels, mask)])


def test_nothing_painted_at_all_is_refused():
    with pytest.raises(InputError, match="nothing is painted yet"):
        check_annotations([_pair(np.zeros((16, 16), np.uint8))])
    with pytest.raises(InputError, match="no training images"):
        check_annotations([])


def test_a_background_only_region_is_fine_next_to_painted_objects():
    labels = np.zeros((32, 32), np.uint16)
    labels[4:8, 4:8] = 1
    background = _pair(np.zeros((32, 32), np.uint16), np.ones((32, 32), bool), "bg")
    check_annotations([background, _pair(labels)])


def test_a_region_of_another_shape_is_refused():
    labels = np.ones((32, 32), np.uint16)
    with pytest.raises(InputError, match="region mask shape"):
        check_annotations([_pair(labels, np.ones((16, 16), bool))])
