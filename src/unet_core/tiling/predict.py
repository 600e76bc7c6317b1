"""The forward loop: plan -> batches of tiles -> model -> merger, one image (or slice) at a time."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..arrays import as_channel_stack, crop_reflect
from ..config import ModelConfig
from ..device import is_out_of_memory, resolve_device
from ..errors import InputError
from ..models.base import SegmentationNet
from ..normalization import apply_normalization, check_image_values, normalization_stats
from ..progress import Progress, run_to_end
from .forward import TileForward, prepared_forward
from .memory import choose_batch_size, choose_tile_shape
from .merger import Merger, MergerFactory, NumpyMerger
from .splitter import TilePlan, padded_context, plan_tiles

log = logging.getLogger(__name__)


def iter_predict_tiled(
    model: SegmentationNet,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    tta: bool | int | Sequence = False,
    normalize_input: bool = True,
    amp: bool | str | None = "auto",
    channels_last: bool | None = None,
    memory_budget_bytes: int | None = None,
    optimize: bool = True,
    merger_factory: MergerFactory | None = None,
) -> Generator[Progress, None, Any]:
    """Predict class probabilities tile by tile, yielding progress.

    Parameters
    ----------
    model : SegmentationNet
        Network (its config gives normalisation, channels, ``spatial_dims``). Moved to
        ``device``; its train/eval mode is restored afterwards.
    image : ndarray
        ``spatial``, ``(C, *spatial)`` with ``channel_axis``, or stacks ``(S, *spatial)`` /
        ``(S, C, *spatial)`` predicted image by image; ``spatial`` has ``spatial_dims`` axes
        (``(Y, X)`` for 2D networks); any integer, bool or float dtype.
    channel_axis : int or None
        Axis of ``image`` holding channels (required for multichannel models).
    tile_shape : int or tuple of int, optional
        Output tile size, one for all axes or one per axis ('valid' nets round it up to a valid
        size, padded nets to a multiple of ``size_multiple``); default: from the memory budget.
    batch_size : int, optional
        Tiles per forward pass (default: 1 on the CPU, as many as fit the budget on a GPU).
    device : str or torch.device
        'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:N', 'mps'.
    tta : bool, int or sequence
        Test-time augmentation over flips/rotations of the last two axes (:func:`resolve_tta`).
    normalize_input : bool
        Apply the model's intensity normalisation (False for pre-normalised float input).
    amp : 'auto', 'bf16', 'fp16', bool or None
        Mixed precision. 'auto' = bf16 (fp16 where unsupported) on CUDA, off elsewhere.
    channels_last : bool, optional
        Channels-last convolutions (default: for CUDA and the optimised CPU graph, not else).
    memory_budget_bytes : int, optional
        Activation memory for one batch of tiles; default :func:`memory_budget`.
    optimize : bool, default True
        On the CPU without AMP run a U-Net as :class:`~unet_core.models.unet_inference.FastUNet`
        (same function to <= 1e-5, faster kernels); otherwise the plain module.
    merger_factory : MergerFactory, optional
        ``merger_factory(index, shape, plan) -> Merger`` for image ``index`` of the stack
        (:mod:`unet_core.tiling.merger`); default: one float32 numpy array.

    Yields
    ------
    Progress
        ``stage='predict'``, one record per batch of tiles, with an ETA.

    Returns
    -------
    ndarray of float32 or merger results
        Probabilities ``(n_classes, *spatial)``, for stacks ``(S, n_classes, *spatial)``; with
        ``merger_factory`` its mergers' ``result()`` (a list for stacks). Nothing when closed early.

    Raises
    ------
    InputError
        Empty, non-numeric or non-finite images, wrong channel count or axes.
    """
    cfg = model.config
    if cfg.spatial_dims == 3:
        check_volume(model, np.shape(image), channel_axis)
    stack, single = as_channel_stack(image, channel_axis, cfg.in_channels, spatial_dims=cfg.spatial_dims)
    tile = _check_tiling_options(tile_shape, batch_size, cfg.spatial_dims)
    out, factory = _default_storage(merger_factory, (len(stack), cfg.n_classes, *stack.shape[2:]))
    dev = resolve_device(device)
    with prepared_forward(model, dev, tta=tta, amp=amp, channels_last=channels_last, optimize=optimize) as fwd:
        plan, batch = _first_plan(model, fwd, stack.shape, tile, batch_size, memory_budget_bytes)
        results = yield from _predict_stack(model, fwd, stack, plan, batch, normalize_input, factory)
    return (results if out is None else out)[0 if single else slice(None)]


def min_slices(model: SegmentationNet) -> int:
    """Fewest z slices a 3D model segments: more than its z border ('valid' nets: the stack is
    mirrored once at each end), at least 2."""
    return max(2, model.axis_geometry(0).border + 1)


def check_volume(model: SegmentationNet, shape: tuple[int, ...], channel_axis: int | None) -> None:
    """Refuse, saying what to do, an image a 3D model cannot segment: a 2D image, or a stack
    thinner than :func:`min_slices`. ``shape`` is the image's shape (with ``channel_axis``)."""
    spatial = [n for i, n in enumerate(shape) if channel_axis is None or i != channel_axis % len(shape)]
    if len(spatial) < 3:
        raise InputError(
            f"this is a 3D model (it segments z-stacks) but the image {tuple(shape)} is 2D; give a "
            "stack (Z, Y, X) or use a 2D model"
        )
    need = min_slices(model)
    if spatial[-3] < need:
        raise InputError(
            f"the stack has {spatial[-3]} slice(s) but this 3D model needs at least {need} (its "
            "z border); give a stack with more slices or use a 2D model (slice by slice)"
        )


def _first_plan(
    model: SegmentationNet, forward: TileForward, shape: tuple[int, ...], tile: tuple[int, ...] | None,
    batch_size: int | None, budget: int | None,
) -> tuple[TilePlan, int]:
    """Tile plan and batch size for a stack of ``shape`` ``(S, C, *spatial)`` (logged)."""
    spatial, dev = tuple(shape[2:]), forward.device
    if tile is None:
        tile = choose_tile_shape(model, spatial, dev, batch_size=batch_size or 1, budget=budget)
    plan = plan_tiles(model, spatial, tile)
    batch = batch_size or choose_batch_size(model, plan, dev, budget=budget)
    log.info(
        "predicting %s with %d tile(s) of %s -> %s per image, batch %d, %d TTA transform(s) on %s",
        shape, len(plan), plan.in_shape, plan.out_shape, batch, len(forward.transforms), dev,
    )
    return plan, batch


def _check_tiling_options(
    tile_shape: int | Sequence[int] | None, batch_size: int | None, ndim: int
) -> tuple[int, ...] | None:
    """``tile_shape`` as one int per spatial axis (None: automatic); refuse bad values."""
    if isinstance(tile_shape, int | np.integer):
        tile_shape = (int(tile_shape),) * ndim
    if tile_shape is not None and (len(tile_shape) != ndim or min(tile_shape) < 1):
        raise InputError(
            f"tile_shape must be a positive int or {ndim} positive ints (one per spatial axis), "
            f"got {tile_shape!r}"
        )
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return None if tile_shape is None else tuple(int(t) for t in tile_shape)


def _default_storage(
    merger_factory: MergerFactory | None, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, MergerFactory]:
    """``(None, merger_factory)``, or a zero float32 array of ``shape`` ``(S, K, *spatial)`` and
    a factory writing image ``index`` into ``array[index]``."""
    if merger_factory is not None:
        return None, merger_factory
    out = np.zeros(shape, np.float32)

    def factory(index: int, shape: tuple[int, ...], plan: TilePlan) -> Merger:
        return NumpyMerger(shape, plan.window, out=out[index])

    return out, factory


def _predict_stack(
    model: SegmentationNet,
    forward: TileForward,
    stack: np.ndarray,
    plan: TilePlan,
    batch: int,
    normalize_input: bool,
    merger_factory: MergerFactory,
) -> Generator[Progress, None, list]:
    """Every image of ``stack`` ``(S, C, *spatial)`` through its own merger; their results.

    An out-of-memory error halves the batch, then the tiles, and restarts the image (with a new
    merger); the smaller plan is kept for the images after it.
    """
    cfg = model.config
    spatial = tuple(stack.shape[2:])
    clock = _ProgressClock(len(stack), math.prod(spatial))
    results = []
    for z, slab in enumerate(stack):
        lo, sc = _input_scaling(slab, cfg, normalize_input)
        while True:
            merger = merger_factory(z, (cfg.n_classes, *spatial), plan)
            try:
                yield from _predict_image(forward, slab, lo, sc, plan, batch, merger, clock.at(z))
                break
            except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
                if not is_out_of_memory(exc):
                    raise
                plan, batch = _shrink(model, spatial, plan, batch, forward.device, exc)
        results.append(merger.result())
    return results


def _predict_image(
    forward: TileForward,
    slab: np.ndarray,
    lo: np.ndarray,
    scale: np.ndarray,
    plan: TilePlan,
    batch: int,
    merger: Merger,
    progress: Callable[[int, int], Progress],
) -> Iterator[Progress]:
    """Tiles of one image ``(C, *spatial)`` -> ``merger``, yielding after each batch."""
    n = len(plan)
    for i in range(0, n, batch):
        origins = plan.tiles[i : i + batch]
        x = np.stack([apply_normalization(crop_reflect(slab, o, plan.in_shape), lo, scale) for o in origins])
        probs = forward(x)
        if probs.shape[2:] != plan.out_shape:
            raise InputError(
                f"the network returned {probs.shape[2:]} for {plan.in_shape} tiles, expected "
                f"{plan.out_shape}; its stated geometry (border/output_size) is wrong"
            )
        for origin, p in zip(origins, probs):
            merger.add(p, plan.output_origin(origin))
        yield progress(min(i + batch, n), n)


def _input_scaling(
    slab: np.ndarray, cfg: ModelConfig, normalize_input: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel offset and scale of ``slab`` ``(C, *spatial)`` (identity when not normalising)."""
    if normalize_input:
        return normalization_stats(slab, cfg.normalization, channel_axis=0)
    check_image_values(slab)
    return np.zeros(cfg.in_channels), np.ones(cfg.in_channels)


@dataclass
class _ProgressClock:
    """Progress records of a stack of ``n_images`` images of ``pixels`` pixels each."""

    n_images: int
    pixels: int
    t0: float = field(default_factory=time.perf_counter)

    def at(self, z: int) -> Callable[[int, int], Progress]:
        """``record(tiles_done, n_tiles)`` for image ``z``."""
        return lambda tiles_done, n_tiles: self.record(z, tiles_done, n_tiles)

    def record(self, z: int, tiles_done: int, n_tiles: int) -> Progress:
        total = n_tiles * self.n_images
        done = z * n_tiles + tiles_done
        elapsed = time.perf_counter() - self.t0
        where = f"slice {z + 1}/{self.n_images}, " if self.n_images > 1 else ""
        rate = done / total * self.n_images * self.pixels / 1e6 / max(elapsed, 1e-9)
        return Progress(
            "predict", done, total, f"{where}tile {tiles_done}/{n_tiles}",
            metrics={"tiles": done, "mpix_per_s": rate}, eta=elapsed / done * (total - done),
        )


def _shrink(
    model: SegmentationNet, spatial: tuple[int, ...], plan: TilePlan, batch: int, dev: torch.device,
    exc: BaseException,
) -> tuple[TilePlan, int]:
    """After an out-of-memory error: halve the batch, else the tile; raise when at the minimum."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if batch > 1:
        log.warning("out of memory with batch %d; retrying with batch %d", batch, batch // 2)
        return plan, batch // 2
    mult = [model.axis_geometry(i).size_multiple for i in range(len(spatial))]
    new_plan = plan_tiles(model, spatial, tuple(max(m, o // 2) for m, o in zip(mult, plan.out_shape)))
    if new_plan.in_shape == plan.in_shape:
        raise InputError(
            f"out of memory on {dev} even with {plan.in_shape} tiles, batch 1; free memory, "
            "use a smaller model or device='cpu'"
        ) from exc
    log.warning("out of memory with tiles %s; retrying with %s", plan.in_shape, new_plan.in_shape)
    return new_plan, 1


def predict_tiled(model: SegmentationNet, image: np.ndarray, **kwargs) -> Any:
    """Class probabilities of ``image``; see :func:`iter_predict_tiled` for the parameters.

    Returns
    -------
    ndarray of float32, ``(n_classes, *spatial)`` (or ``(S, n_classes, *spatial)`` for stacks;
    the mergers' results with ``merger_factory``)
    """
    return run_to_end(iter_predict_tiled(model, image, **kwargs))


def predict_whole(model: SegmentationNet, image: np.ndarray, *, normalize_input: bool = True) -> np.ndarray:
    """Reference: one forward pass over the whole mirror-padded image ``spatial`` / ``(C, *spatial)``.

    The image is mirror-extended by ``border`` ('valid' nets, plus up to the next valid size) or
    by the padded context (:func:`~unet_core.tiling.splitter.padded_context`, up to a multiple of
    ``size_multiple``) and the output cropped back; :func:`predict_tiled` equals this to float
    precision (padded nets: see the per-architecture bounds in :mod:`unet_core.tiling`). Memory
    grows with the image: use it for tests and benchmarks, not for large images.

    Returns
    -------
    ndarray of float32, ``(n_classes, *spatial)``
    """
    cfg = model.config
    d = cfg.spatial_dims
    stack, _ = as_channel_stack(image, 0 if np.ndim(image) == d + 1 else None, cfg.in_channels, spatial_dims=d)
    slab = stack[0]
    lo, sc = _input_scaling(slab, cfg, normalize_input)
    spatial = slab.shape[1:]
    geoms = [model.axis_geometry(i) for i in range(d)]
    if model.border:
        x = crop_reflect(slab, tuple(-g.border for g in geoms),
                         tuple(g.valid_input_size(n) for g, n in zip(geoms, spatial)))
        offs = (0,) * d
    else:  # padded net: mirror context on all sides, up to a multiple of size_multiple
        offs = tuple(padded_context(g) for g in geoms)
        x = crop_reflect(slab, tuple(-o for o in offs), tuple(
            -(-(n + 2 * o) // g.size_multiple) * g.size_multiple for g, n, o in zip(geoms, spatial, offs)
        ))
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            p = torch.softmax(model(torch.from_numpy(apply_normalization(x, lo, sc)[None]).to(dev)).float(), 1)
    finally:
        model.train(was_training)
    return p[(0, slice(None), *(slice(o, o + n) for o, n in zip(offs, spatial)))].cpu().numpy()
