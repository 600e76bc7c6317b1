"""The splitter: where the tiles of an image of any number of spatial axes lie.

A :class:`TilePlan` lists input-tile origins (tuples, one coordinate per spatial axis), the input
and output tile shapes and, for padded nets, the blending window (the outer product of one 1D
window per axis). Every axis is planned on its own; the tiles are the Cartesian product.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..models.base import Geometry, SegmentationNet


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image of shape ``spatial_shape`` lie.

    Attributes
    ----------
    tiles : list of tuple of int
        Input-tile origins in image coordinates, one per spatial axis (may be negative:
        mirrored context), in C order (the last axis varies fastest).
    in_shape, out_shape : tuple of int
        Input and output tile shapes.
    window : ndarray of float32, shape ``out_shape``, or None
        Blending window of padded ('same') nets; None for 'valid' nets, whose tiles abut.
    border : int or tuple of int
        Pixels a 'valid' net loses per side: a tile's output starts at ``origin + border``; a
        tuple (one per axis) when the axes differ (z of an anisotropic 3D U-Net).
    spatial_shape : tuple of int
        Shape of the image the plan covers.
    """

    tiles: list[tuple[int, ...]]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    window: np.ndarray | None
    border: int | tuple[int, ...]
    spatial_shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.spatial_shape)

    def output_origin(self, tile: Sequence[int]) -> tuple[int, ...]:
        """Image coordinates of the first output pixel of the tile with input origin ``tile``."""
        b = self.border if isinstance(self.border, tuple) else (self.border,) * len(tile)
        return tuple(int(o) + int(bi) for o, bi in zip(tile, b))


def plan_tiles(
    model: SegmentationNet, spatial_shape: Sequence[int], tile_shape: Sequence[int]
) -> TilePlan:
    """Tile layout for an image of shape ``spatial_shape`` and wished output tiles ``tile_shape``.

    Parameters
    ----------
    model : SegmentationNet
        Its ``border`` (valid nets: abutting output windows on the ``size_multiple`` grid) or
        ``context`` (padded nets: overlapping, blended tiles) decides the layout, per axis
        (:meth:`~unet_core.models.base.SegmentationNet.axis_geometry`).
    spatial_shape, tile_shape : sequence of int, one per spatial axis
        Image shape and wished output tile shape.
    """
    spatial_shape = tuple(int(n) for n in spatial_shape)
    if len(tile_shape) != len(spatial_shape):
        raise InputError(
            f"tile shape {tuple(tile_shape)} has {len(tile_shape)} axes, the image {spatial_shape} "
            f"{len(spatial_shape)}: give one tile size per spatial axis"
        )
    plan = _plan_valid if model.border else _plan_same
    return plan(model, spatial_shape, tuple(int(t) for t in tile_shape))


def _plan_valid(model: SegmentationNet, shape: tuple[int, ...], tile: tuple[int, ...]) -> TilePlan:
    in_shape, out_shape, starts, borders = [], [], [], []
    for axis, (n, t) in enumerate(zip(shape, tile)):
        geom = model.axis_geometry(axis)
        b, m = geom.border, geom.size_multiple
        t = max(1, min(t, n))
        s_in = geom.valid_input_size(t)
        o = geom.output_size(s_in)
        if o < n and o < m:  # several tiles: the stride (a multiple of m) must fit in a tile
            s_in = geom.valid_input_size(m)
            o = geom.output_size(s_in)
        # Starts on multiples of 2**depth keep the pooling grid of the whole padded image; output
        # windows of consecutive tiles overlap by o % m pixels, where both compute equal values.
        step = (o // m) * m
        k = 1 if n <= o else math.ceil((n - o) / step) + 1
        in_shape.append(s_in)
        out_shape.append(o)
        starts.append([i * step - b for i in range(k)])
        borders.append(b)
    tiles = list(itertools.product(*starts))
    border = borders[0] if len(set(borders)) == 1 else tuple(borders)
    return TilePlan(tiles, tuple(in_shape), tuple(out_shape), None, border, shape)


def _plan_same(model: SegmentationNet, shape: tuple[int, ...], tile: tuple[int, ...]) -> TilePlan:
    # A padded net's output pixel depends on its zero-padded tile border only within `context`
    # pixels of it. The blending window is 0 there and ramps up smoothly over the next `ramp`
    # pixels, and tiles overlap by 2 * context + ramp, so every pixel is a weighted mean of
    # values computed with full context: the result equals one pass over the mirror-padded image.
    # (pooling and up-convolution windows reach up to 2**depth - 1 pixels beyond `context`)
    in_shape, starts, windows = [], [], []
    for axis, (n, t) in enumerate(zip(shape, tile)):
        geom = model.axis_geometry(axis)
        ctx, m = padded_context(geom), geom.size_multiple
        full = -(-(n + 2 * ctx) // m) * m  # one tile covering image + context
        s_in = min(full, -(-(max(t, m) + 2 * ctx + m) // m) * m)
        interior = s_in - 2 * ctx
        ramp = max(1, min(ctx // 2, interior // 4))
        step = max(m, (interior - ramp) // m * m)
        k = 1 if n + 2 * ctx <= s_in else math.ceil((n + 2 * ctx - s_in) / step) + 1
        in_shape.append(s_in)
        windows.append(_window(s_in, ctx, ramp))
        starts.append([i * step - ctx for i in range(k)])
    tiles = list(itertools.product(*starts))
    window = functools.reduce(np.multiply.outer, windows).astype(np.float32)
    return TilePlan(tiles, tuple(in_shape), tuple(in_shape), window, 0, shape)


def padded_context(model: Geometry) -> int:
    """Mirrored context per side of a padded net's image (and zero-weight margin of its tiles).

    ``model.context`` plus one ``size_multiple`` for the reach of pooling and up-sampling
    windows; 0 for a net without context.
    """
    return model.context + model.size_multiple if model.context else 0


def _window(n: int, margin: int, ramp: int) -> np.ndarray:
    """0 on ``margin`` pixels at both ends, then a raised-cosine ramp of ``ramp`` pixels to 1."""
    w = np.ones(n, np.float32)
    margin = min(margin, (n - 1) // 2)
    r = max(0, min(ramp, n // 2 - margin))
    w[:margin] = 0.0
    w[n - margin :] = 0.0
    if r > 0:
        t = (np.arange(r, dtype=np.float32) + 0.5) / r
        w[margin : margin + r] = 0.5 - 0.5 * np.cos(np.pi * t)
        w[n - margin - r : n - margin] = w[margin : margin + r][::-1]
    return w
