"""Combining painted annotations with a prediction, without Qt or napari (pure numpy).

"Use as annotations" in the Predict widget either *merges* the prediction into the painted
annotations (:func:`merge_annotations`: every painted object stays as it is; predicted objects
are added only where nothing is painted) or *replaces* them (after asking, when painted objects
would be lost; :func:`painted_objects_lost` counts them).
"""

from __future__ import annotations

import numpy as np

from unet_core.errors import InputError

__all__ = ["annotation_dtype", "count_objects", "merge_annotations", "painted_objects_lost"]


def annotation_dtype(max_id: int) -> np.dtype:
    """uint16 for annotation ids up to 65535, else uint32 (the dtypes of annotation layers)."""
    return np.dtype(np.uint16 if max_id <= np.iinfo(np.uint16).max else np.uint32)


def count_objects(labels: np.ndarray) -> int:
    """Number of distinct non-zero ids in ``labels``."""
    return int(np.count_nonzero(np.unique(np.asarray(labels))))


def _check_shapes(painted: np.ndarray, predicted: np.ndarray) -> None:
    if painted.shape != predicted.shape:
        raise InputError(
            f"the annotations have shape {painted.shape}, the prediction {predicted.shape}; "
            "predict the image the annotations belong to (or rename the annotation layer)"
        )


def merge_annotations(painted: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Add the predicted objects that touch no painted pixel to the painted annotations.

    Every painted object keeps its id and pixels. A predicted object is added whole when none
    of its pixels is painted, and dropped when any is (the painted object there is the user's
    correction of it: adding the rest would leave fragments beside it). Added objects get new
    ids above the largest painted id, numbered in the order of their predicted ids.

    Parameters
    ----------
    painted : ndarray of int, shape (Y, X) or (Z, Y, X)
        The annotations (0 = unpainted).
    predicted : ndarray of int, the same shape
        Predicted instance labels (0 = background).

    Returns
    -------
    ndarray of uint16 (or uint32 when the ids need it), the same shape
        A new array; the inputs are not changed.

    Raises
    ------
    InputError
        The shapes differ.
    """
    painted, predicted = np.asarray(painted), np.asarray(predicted)
    _check_shapes(painted, predicted)
    ids = np.unique(predicted)
    ids = ids[ids > 0]
    touched = np.unique(predicted[(painted > 0) & (predicted > 0)])
    keep = np.setdiff1d(ids, touched, assume_unique=True)
    base = int(painted.max(initial=0))
    dtype = np.promote_types(annotation_dtype(base + keep.size), painted.dtype if painted.dtype.kind == "u" else np.uint16)
    merged = painted.astype(dtype, copy=True)
    added = np.isin(predicted, keep)
    merged[added] = base + 1 + np.searchsorted(keep, predicted[added])
    return merged


def painted_objects_lost(painted: np.ndarray, result: np.ndarray) -> int:
    """How many painted objects ``result`` does not keep intact (same pixels, same id).

    Parameters
    ----------
    painted, result : ndarray of int, the same shape
        The annotations before and after a change.
    """
    painted, result = np.asarray(painted), np.asarray(result)
    _check_shapes(painted, result)
    ids = np.unique(painted)
    ids = ids[ids > 0]
    if ids.size == 0:
        return 0
    changed = np.unique(painted[(painted > 0) & (painted != result)])
    # an object also counts as lost when its id now also covers pixels it did not have
    grown = np.unique(result[(result > 0) & (painted != result)])
    return int(np.union1d(changed, np.intersect1d(grown, ids)).size)
