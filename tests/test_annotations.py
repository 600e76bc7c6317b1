"""Merging painted annotations with a prediction (issue 12, trust 2), without a viewer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet._annotations import count_objects, merge_annotations, painted_objects_lost
from unet_core.errors import InputError


def _painted_and_predicted():
    painted = np.zeros((40, 40), np.uint16)
    painted[2:8, 2:8] = 3  # a corrected object
    painted[20:24, 20:24] = 9
    predicted = np.zeros((40, 40), np.uint32)
    predicted[1:9, 1:9] = 1  # the prediction of the corrected object: overlaps it
    predicted[30:35, 2:6] = 5  # new objects where nothing is painted
    predicted[2:6, 30:38] = 2
    predicted[19:22, 19:22] = 4  # touches object 9
    return painted, predicted


def test_merge_keeps_painted_and_adds_untouched_predictions_above_them():
    painted, predicted = _painted_and_predicted()
    merged = merge_annotations(painted, predicted)
    keep = painted > 0
    np.testing.assert_array_equal(merged[keep], painted[keep])  # every painted pixel as painted
    assert set(np.unique(merged)) == {0, 3, 9, 10, 11}  # new ids above the painted ones
    assert (merged[2:6, 30:38] == 10).all() and (merged[30:35, 2:6] == 11).all()  # in predicted-id order
    assert not merged[predicted == 1][~keep[predicted == 1]].any()  # no fragment beside object 3
    assert not merged[19, 19:22].any()  # the object touching 9 is not added
    assert merged.dtype == np.uint16 and painted_objects_lost(painted, merged) == 0
    assert painted.max() == 9 and predicted.max() == 5  # inputs unchanged


def test_merge_into_nothing_is_the_prediction_and_widens_the_dtype():
    predicted = np.arange(1, 70_001, dtype=np.uint32).reshape(350, 200)
    merged = merge_annotations(np.zeros(predicted.shape, np.uint16), predicted)
    assert merged.dtype == np.uint32
    np.testing.assert_array_equal(merged, predicted)


def test_replace_counts_the_painted_objects_it_loses():
    painted, predicted = _painted_and_predicted()
    assert painted_objects_lost(painted, predicted) == 2
    assert painted_objects_lost(painted, painted.copy()) == 0
    moved = painted.copy()
    moved[30, 30] = 3  # same pixels, but id 3 now also elsewhere
    assert painted_objects_lost(painted, moved) == 1
    assert painted_objects_lost(np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)) == 0


def test_shapes_must_match():
    with pytest.raises(InputError, match="predict the image"):
        merge_annotations(np.zeros((4, 4), np.uint16), np.zeros((4, 5), np.uint16))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_merge_never_changes_a_painted_pixel(seed):
    rng = np.random.default_rng(seed)
    painted = rng.integers(0, 4, (3, 12, 12)).astype(np.uint16) * (rng.random((3, 12, 12)) < 0.2)
    predicted = rng.integers(0, 30, (3, 12, 12)).astype(np.uint32)
    merged = merge_annotations(painted, predicted)
    np.testing.assert_array_equal(merged[painted > 0], painted[painted > 0])
    assert painted_objects_lost(painted, merged) == 0
    # every added object is a whole predicted object that touched no painted pixel
    for new_id in np.unique(merged[(painted == 0) & (merged > 0)]):
        (source,) = np.unique(predicted[merged == new_id])
        assert new_id > painted.max() and not painted[predicted == source].any()
        np.testing.assert_array_equal(predicted == source, merged == new_id)
    assert count_objects(merged) <= count_objects(painted) + count_objects(predicted)
