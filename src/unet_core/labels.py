"""Validation and conversion of label images (instance ids, binary masks, class ids)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)


class BinaryLabelsWarning(UserWarning):
    """A binary mask was split into objects by connectivity: touching objects merge."""


def as_instance_labels(labels: np.ndarray, *, name: str = "labels") -> np.ndarray:
    """Validate an instance label image and return it as an unsigned integer array.

    Parameters
    ----------
    labels : ndarray, shape (Y, X) or (Z, Y, X)
        Integer instance ids (0 = background, each object its own id; ids need not be
        contiguous) or a boolean/binary (0/1 or 0/255) mask.
    name : str
        How the array is called in error messages.

    Returns
    -------
    ndarray of uint32 or uint64, same shape
        Instance ids. A binary mask is split into objects by connectivity (8-/26-connected
        per slice for 2D, full-connectivity in 3D), with a :class:`BinaryLabelsWarning`.

    Float arrays holding whole numbers (as some tools export labels) are accepted and converted.

    Raises
    ------
    InputError
        Float with non-integer (or non-finite, or beyond 2**53) values, negative ids, non-numeric
        dtypes (complex, strings, objects), empty arrays.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise InputError(f"{name} is empty; paint or load labels first")
    if labels.dtype.kind == "f":
        whole = bool(np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)))
        hint = (
            "convert them to integers first (numpy: labels.astype(np.uint32); Fiji: Image > Type > "
            "16-bit) and save them as integer TIFF"
            if whole
            else "they have non-integer values, so they are not label ids; paint or export integer labels"
        )
        raise InputError(
            f"{name} has floating-point dtype {labels.dtype}; instance labels must be integer ids "
            f"(0 = background): {hint}"
        )
    elif labels.dtype.kind not in "biu":
        raise InputError(
            f"{name} has dtype {labels.dtype}; expected integer instance ids (0 = background) - "
            "load or convert the labels as an integer image"
        )
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{name} has negative ids; use 0 for background and positive ids for objects")
    if labels.dtype == np.bool_ or _is_binary(labels):
        if labels.any():
            warnings.warn(
                f"{name} is a binary mask: objects were separated by connectivity, so touching "
                "objects are merged into one; paint instance labels to keep them apart",
                BinaryLabelsWarning,
                stacklevel=2,
            )
        return connected_components(labels != 0)
    out_dtype = np.uint64 if labels.max() > np.iinfo(np.uint32).max else np.uint32
    return labels.astype(out_dtype, copy=False)


def _is_binary(labels: np.ndarray) -> bool:
    """True for masks whose values are a subset of {0, 1} or {0, 255} (ImageJ masks)."""
    hi = labels.max()
    if hi not in (1, 255):
        return False
    if hi == 1:
        return True  # max 1 and non-negative: only 0/1
    return bool(np.all((labels == 0) | (labels == 255)))


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Label the connected components of a boolean mask (full connectivity), as uint32."""
    from scipy import ndimage as ndi

    structure = np.ones((3,) * mask.ndim, dtype=bool)
    out, _ = ndi.label(mask, structure=structure, output=np.uint32)
    return out


def check_same_shape(image_shape: tuple[int, ...], labels_shape: tuple[int, ...], *, channel_axis: int | None = None) -> None:
    """Raise :class:`InputError` unless image (minus its channel axis) and labels agree."""
    spatial = list(image_shape)
    if channel_axis is not None:
        spatial.pop(channel_axis)
    if tuple(spatial) != tuple(labels_shape):
        raise InputError(
            f"image shape {tuple(image_shape)} and labels shape {tuple(labels_shape)} differ; "
            "labels must cover the image pixel for pixel"
            + (" (channel axis excluded)" if channel_axis is not None else "")
        )
