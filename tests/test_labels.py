"""Validation of label images: instance ids, binary masks, dtype errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from unet_core.errors import InputError
from unet_core.labels import (
    BinaryLabelsWarning,
    as_instance_labels,
    check_same_shape,
    connected_components,
)


def _quiet(labels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return as_instance_labels(labels)


def test_instance_ids_are_kept():
    lab = np.array([[0, 3, 3], [17, 0, 1000]], np.int16)
    out = _quiet(lab)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, lab)


def test_huge_ids_stay_exact_in_uint64():
    lab = np.array([[0, 2**40], [2**63 + 1, 2**40 + 1]], np.uint64)
    out = _quiet(lab)
    assert out.dtype == np.uint64
    np.testing.assert_array_equal(out, lab)
    out = _quiet(np.array([[0, 2**40]], np.int64))
    assert out.dtype == np.uint64 and out[0, 1] == 2**40


def test_float_labels_are_refused_with_a_conversion_hint():
    with pytest.raises(InputError, match="astype"):
        as_instance_labels(np.array([[0.0, 4.0], [4.0, 9.0]], np.float32))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0.0, 1.5]]), "non-integer"),
        (np.array([[0.0, np.inf]]), "non-integer"),
        (np.array([[0.0, 2.0**60]]), "floating-point"),
        (np.array([[0, -3]], np.int8), "negative"),
        (np.array([[0, 1j]]), "dtype complex"),
        (np.array([["a", "b"]]), "integer"),
        (np.array([[None, 1]], object), "dtype object"),
        (np.zeros((0, 3), np.uint8), "empty"),
    ],
)
def test_bad_labels_raise_clear_errors(labels, match):
    with pytest.raises(InputError, match=match):
        as_instance_labels(labels)


def test_error_names_the_array():
    with pytest.raises(InputError, match="^cell masks has negative"):
        as_instance_labels(np.array([[-1]]), name="cell masks")


@pytest.mark.parametrize("scale", [True, 1, 255])
def test_binary_masks_split_by_connectivity(scale):
    m = np.zeros((6, 8), bool)
    m[0:2, 0:2] = True
    m[2, 2] = True  # diagonal neighbour: same object (full connectivity)
    m[4:6, 5:8] = True
    binary = m if scale is True else m.astype(np.uint8) * scale
    with pytest.warns(BinaryLabelsWarning, match="touching objects are merged"):
        out = as_instance_labels(binary)
    assert out.dtype == np.uint32 and out.max() == 2
    assert len(np.unique(out[m])) == 2 and np.all(out[~m] == 0)


def test_all_background_is_not_a_binary_warning():
    out = _quiet(np.zeros((4, 4), np.uint8))
    assert out.dtype == np.uint32 and not out.any()


def test_values_other_than_0_1_255_are_instances():
    lab = np.array([[0, 2], [255, 1]], np.uint8)  # not a mask: 1, 2 and 255 are ids
    np.testing.assert_array_equal(_quiet(lab), lab)


def test_connected_components_3d_full_connectivity():
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = m[1, 1, 1] = m[2, 2, 2] = True
    assert connected_components(m).max() == 1


def test_check_same_shape():
    check_same_shape((3, 10, 12), (10, 12), channel_axis=0)
    with pytest.raises(InputError, match="differ"):
        check_same_shape((10, 12), (12, 10))
