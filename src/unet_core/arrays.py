"""Small array mechanisms shared by prediction and training: mirror extension, crops, image axes.

Everything here works on the trailing *spatial* axes of an array, for any number of them
(2 for images, 3 for volumes), so the tiler, the training sampler and the weight-map paths cut
windows and read channel axes the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError


def reflect_index(start: int, stop: int, n: int) -> slice | np.ndarray:
    """Indices ``start..stop-1`` of an axis of length ``n`` extended by repeated reflection.

    The same extension as ``np.pad(..., mode='reflect')`` for any pad width (period ``2n - 2``;
    an axis of length 1 repeats its only pixel). Returns a slice when no reflection is needed.
    """
    if 0 <= start and stop <= n:
        return slice(start, stop)
    i = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    i = np.mod(i, period)
    return np.where(i >= n, period - i, i)


def crop_reflect(x: np.ndarray, origin: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Window ``x[..., o0:o0+s0, o1:o1+s1, ...]`` of the reflection-extended trailing axes.

    Parameters
    ----------
    x : ndarray, shape (..., *spatial)
        Any dtype; the leading axes (channels) are kept whole.
    origin, shape : sequence of int, one per trailing spatial axis
        Window start (may be negative or run past the end: mirrored) and size.

    Returns
    -------
    ndarray, shape (..., *shape)
        A view when the window lies inside ``x``, otherwise a copy; same dtype.
    """
    k = len(origin)
    out = x
    for j, (o, s) in enumerate(zip(origin, shape)):
        axis = x.ndim - k + j
        idx = reflect_index(int(o), int(o) + int(s), x.shape[axis])
        out = out[(slice(None),) * axis + (idx,)]
    return out


def crop_zero(x: np.ndarray, origin: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Window of the trailing axes of ``x`` like :func:`crop_reflect`, but zero past the borders.

    Returns
    -------
    ndarray, shape (..., *shape)
        A new array of ``x``'s dtype.
    """
    k = len(origin)
    lead = x.shape[: x.ndim - k]
    out = np.zeros(lead + tuple(int(s) for s in shape), x.dtype)
    src, dst = [], []
    for o, s, n in zip(origin, shape, x.shape[x.ndim - k :]):
        lo, hi = max(0, int(o)), min(n, int(o) + int(s))
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(o), hi - int(o)))
    out[(Ellipsis, *dst)] = x[(Ellipsis, *src)]
    return out


def mirror_pad(x: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """Reflect-pad the trailing ``len(pads)`` axes (repeating the reflection for wide pads).

    Reference for the virtual extension that :func:`crop_reflect` performs (tests, benchmarks).
    """
    k = len(pads)
    origin = [-p[0] for p in pads]
    shape = [n + p[0] + p[1] for p, n in zip(pads, x.shape[x.ndim - k :])]
    return crop_reflect(x, origin, shape)


def check_numeric_image(image: np.ndarray, name: str = "the image") -> np.ndarray:
    """``image`` as an array, refusing empty and non-numeric ones with a message saying the fix."""
    image = np.asarray(image)
    if image.size == 0:
        raise InputError(f"{name} is empty (shape {image.shape}); load a real image")
    if image.dtype.kind not in "biuf":
        raise InputError(f"{name}: dtype {image.dtype} is not numeric; convert it to integers or floats")
    return image


def as_channel_stack(
    image: np.ndarray,
    channel_axis: int | None,
    in_channels: int,
    *,
    spatial_dims: int = 2,
    name: str = "the image",
) -> tuple[np.ndarray, bool]:
    """A view ``(S, C, *spatial)`` of ``image`` and whether it was a single (unstacked) image.

    Parameters
    ----------
    image : ndarray
        ``spatial``, ``(C, *spatial)`` with ``channel_axis``, or a stack ``(S, *spatial)`` /
        ``(S, C, *spatial)`` of such images; for ``spatial_dims=2`` spatial is ``(Y, X)``.
    channel_axis : int or None
        Axis holding channels (any position; it is moved before the spatial axes). Required
        when ``in_channels > 1``.
    in_channels : int
        Channels the model reads.
    spatial_dims : int
        Number of trailing spatial axes.

    Raises
    ------
    InputError
        Empty or non-numeric image, a channel axis that does not exist, a channel count that
        differs from ``in_channels``, or too few/many axes.
    """
    image = check_numeric_image(image, name)
    d = spatial_dims
    if channel_axis is not None:
        if not -image.ndim <= channel_axis < image.ndim:
            raise InputError(f"{name}: channel_axis={channel_axis} does not exist in an image of shape {image.shape}")
        if image.ndim < d + 1:
            raise InputError(f"{name}: channel_axis given but the image {image.shape} has only {image.ndim} axes")
        image = np.moveaxis(image, channel_axis, -(d + 1))
    elif in_channels > 1:
        raise InputError(
            f"the model reads {in_channels} channels; pass channel_axis= to say which axis of "
            f"{name} {image.shape} holds them"
        )
    else:
        if image.ndim < d:
            axes = "(Y, X)" if d == 2 else "(Z, Y, X)"
            raise InputError(f"{name}: expected a {d}D image {axes} or a stack of them, got shape {image.shape}")
        image = np.expand_dims(image, -(d + 1))
    if image.shape[-(d + 1)] != in_channels:
        raise InputError(
            f"{name} has {image.shape[-(d + 1)]} channel(s), the model reads {in_channels}; "
            "choose the right channel axis or a model trained on this many channels"
        )
    if image.ndim == d + 1:
        return image[None], True
    if image.ndim == d + 2:
        return image, False
    axes = "(Y, X)" if d == 2 else "(Z, Y, X)"
    raise InputError(
        f"{name}: expected {axes} plus optional channel and stack axes, got shape "
        f"{image.shape}; set the channel axis for multichannel images"
    )
