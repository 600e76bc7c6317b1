"""The merger: where tile outputs go (the other half of the split/merge seam).

The forward loop only calls :meth:`Merger.add` for every tile output and :meth:`Merger.result`
once per image, so storage (a numpy array today; a zarr array, dask blocks or a live layer
later) is chosen by whoever supplies the merger, without touching the loop. Tiles of 'valid'
nets abut and are written; tiles of padded nets overlap and are blended with the plan's window
(weighted sum and sum of weights, divided in :meth:`~Merger.result`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from .splitter import TilePlan


@runtime_checkable
class Merger(Protocol):
    """Assembles the outputs of the tiles of one image.

    Any object with these two methods is a merger.
    """

    def add(self, tile_output: np.ndarray, origin: Sequence[int]) -> None:
        """Take one tile's output ``(n_classes, *out_shape)`` float32 whose first pixel lies at
        image coordinates ``origin`` (one per spatial axis; may be negative or run past the
        image: the part outside is dropped)."""

    def result(self) -> Any:
        """The assembled ``(n_classes, *spatial)`` output, after the last :meth:`add`."""


class MergerFactory(Protocol):
    """Makes the merger of one image: ``factory(index, shape, plan) -> Merger``.

    ``index`` is the image's position in a stack (0 for a single image), ``shape`` the output
    shape ``(n_classes, *spatial)`` and ``plan`` the tile plan (its ``window`` is None for
    abutting tiles). The tiler calls it again for the same index when it restarts an image with
    smaller tiles after an out-of-memory error; the new merger must forget what the previous
    one received.
    """

    def __call__(self, index: int, shape: tuple[int, ...], plan: TilePlan) -> Merger: ...


class NumpyMerger:
    """Tiles written (abutting) or blended (overlapping) into one float32 numpy array.

    Parameters
    ----------
    shape : tuple of int
        Output shape ``(n_classes, *spatial)``.
    window : ndarray of float32, shape ``out_shape``, or None
        Blending window (:attr:`TilePlan.window`): None writes each tile's output over what is
        there; otherwise the window-weighted outputs and the weights are summed and divided by
        :meth:`result`.
    out : ndarray of float32, optional
        Array of ``shape`` to write into (e.g. one slice of a caller's stack); reset to 0 when
        blending. A new array by default.
    """

    def __init__(
        self, shape: Sequence[int], window: np.ndarray | None = None, *, out: np.ndarray | None = None
    ) -> None:
        shape = tuple(int(n) for n in shape)
        if out is None:
            out = np.zeros(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise InputError(
                f"the output array is {out.dtype} {out.shape}; the merger needs float32 {shape}"
            )
        elif window is not None:
            out[...] = 0.0
        if window is not None and window.ndim != len(shape) - 1:
            raise InputError(
                f"a {window.ndim}-D blending window cannot merge into {len(shape) - 1}-D outputs"
            )
        self.out = out
        self.window = window
        self.weight = np.zeros(shape[1:], np.float32) if window is not None else None
        self._finished = False

    @classmethod
    def for_plan(cls, index: int, shape: tuple[int, ...], plan: TilePlan) -> NumpyMerger:
        """A :class:`MergerFactory`: a new array per image, blended with ``plan.window``."""
        return cls(shape, plan.window)

    def add(self, tile_output: np.ndarray, origin: Sequence[int]) -> None:
        """Write or blend ``tile_output`` ``(n_classes, *tile)`` at image coordinates ``origin``."""
        if self._finished:
            raise RuntimeError("NumpyMerger.add after result(): make a new merger for a new image")
        if tile_output.ndim != self.out.ndim or len(origin) != self.out.ndim - 1:
            raise InputError(
                f"tile output {tile_output.shape} at {tuple(origin)} does not fit an output of "
                f"shape {self.out.shape}"
            )
        if self.window is not None and tile_output.shape[1:] != self.window.shape:
            raise InputError(
                f"tile output {tile_output.shape[1:]} differs from the window {self.window.shape}"
            )
        where = overlap(origin, tile_output.shape[1:], self.out.shape[1:])
        if where is None:
            return
        dst, src = where
        values = tile_output[(slice(None), *src)]
        if self.window is None:
            self.out[(slice(None), *dst)] = values
            return
        win = self.window[src]
        self.out[(slice(None), *dst)] += values * win
        self.weight[dst] += win  # type: ignore[index]

    def result(self) -> np.ndarray:
        """The merged ``(n_classes, *spatial)`` float32 array (divided by the weights once)."""
        if not self._finished and self.weight is not None:
            self.out /= self.weight
        self._finished = True
        return self.out


def overlap(
    origin: Sequence[int], tile: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices ``(into the image, into the tile)`` of a tile of shape ``tile`` at ``origin``.

    None when the tile lies wholly outside an image of shape ``shape``.
    """
    dst, src = [], []
    for o, t, n in zip(origin, tile, shape):
        lo, hi = max(0, int(o)), min(int(n), int(o) + int(t))
        if hi <= lo:
            return None
        dst.append(slice(lo, hi))
        src.append(slice(lo - int(o), hi - int(o)))
    return tuple(dst), tuple(src)
