"""Block-wise prediction on dask: images larger than memory, on one machine or a cluster.

The image (a dask array, see :mod:`unet_core.lazy_io`) is cut into output blocks; each block is
one dask task that reads its input with the halo the network needs, predicts it with the tiler's
own parts (:func:`~unet_core.tiling.plan_tiles`, :class:`~unet_core.tiling.TileForward`,
:class:`~unet_core.tiling.NumpyMerger`) and returns its class probabilities. Peak memory per
task is set by the block size, not the image size.

Exactness: block starts are multiples of the network's ``size_multiple`` and each block is tiled
with :func:`~unet_core.tiling.plan_tiles` on the block, at the block's image coordinates; the
halo is read from the image itself and mirrored only past the image's edges (the same
reflection as :func:`~unet_core.arrays.crop_reflect`). So for a 'valid' network every tile sees
the pixels and pooling grid of one pass over the mirror-extended image, as the in-memory tiler
does: the probabilities equal :func:`~unet_core.tiling.predict_tiled`'s to float rounding (the
same tile shape gives the same bits). Padded nets match within the tiler's bounds.

Intensity statistics are computed once for the whole image (:func:`sampled_normalization_stats`,
a strided sample of at most a few million pixels) and applied to every block: no seams. Give the
same statistics to the in-memory path (normalise the image with them and pass
``normalize_input=False``) and both agree.

The model is given as a checkpoint path and loaded lazily once per worker process (cached), or
as a model object (threads share it). Instance labels across blocks: :mod:`.blockwise_labels`.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import NormalizationConfig
from .errors import InputError
from .progress import Progress, run_to_end

log = logging.getLogger(__name__)

#: Pixels (spatial, all slices) above which the CLI leaves the in-memory path by itself.
AUTO_BLOCKWISE_PIXELS = 32 * 2**20


@dataclass(frozen=True)
class BlockwiseConfig:
    """How an image is cut into blocks and computed.

    Attributes
    ----------
    block_size : int
        Output block edge in pixels along Y and X (rounded up to the net's ``size_multiple``).
        Peak memory per task grows with its square.
    block_depth : int
        Slices per block of a volume predicted slice by slice by a 2D net.
    workers : int or None
        Worker threads of the local scheduler (None: all cores); ignored with ``address``.
    address : str or None
        A dask.distributed scheduler ('tcp://host:8786'); None: the local scheduler.
    batch_size : int
        Tiles per forward pass inside a block.
    halo : int
        Context in pixels around each block for the instance post-processing (objects up to
        about twice this wide are labelled as in memory).
    device : str
        Torch device of each worker ('auto', 'cpu', 'cuda', ...).
    tta : int
        Test-time augmentation transforms (0 or 1: none; up to 8), as the in-memory tiler.
    amp : str or None
        Mixed precision ('auto', 'bf16', 'fp16'; None: off), as the in-memory tiler.
    """

    block_size: int = 1024
    block_depth: int = 1
    workers: int | None = None
    address: str | None = None
    batch_size: int = 4
    halo: int = 64
    device: str = "auto"
    tta: int = 0
    amp: str | None = None

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_depth < 1 or self.batch_size < 1 or self.halo < 0:
            raise InputError(
                f"block_size >= 1, block_depth >= 1, batch_size >= 1, halo >= 0 needed; got "
                f"{self.block_size}, {self.block_depth}, {self.batch_size}, {self.halo}"
            )
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be >= 1, got {self.workers}")


# ---------------------------------------------------------------------------------------------
# the model, once per process

_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def worker_forward(
    model: Any, device: str = "auto", tta: int = 0, amp: str | None = None
) -> tuple[Any, Any]:
    """``(model, TileForward)`` for a checkpoint path or a model, cached per process.

    A path is loaded on first use in each worker process and kept; a model object is prepared
    once per process (threads share it).
    """
    import contextlib

    from .device import resolve_device
    from .tiling import prepared_forward

    key = (os.fspath(model) if isinstance(model, str | os.PathLike) else id(model), device, tta, amp)
    with _MODELS_LOCK:
        if key not in _MODELS:
            net = model
            if isinstance(model, str | os.PathLike):
                from .checkpoint import load_checkpoint

                net = load_checkpoint(model).model
            stack = contextlib.ExitStack()  # kept open for the life of the process
            fwd = stack.enter_context(prepared_forward(net, resolve_device(device), tta=tta, amp=amp))
            _MODELS[key] = (net, fwd, stack)
        net, fwd, _ = _MODELS[key]
    return net, fwd


def release_worker_forward(model: Any) -> None:
    """Forget this process's cached forward of ``model`` (a path or a network object), e.g.
    after a job in a long-lived process (napari), so that a network trained further or a
    checkpoint saved again is prepared afresh next time and the memory is freed."""
    name = os.fspath(model) if isinstance(model, str | os.PathLike) else id(model)
    with _MODELS_LOCK:
        for key in [k for k in _MODELS if k[0] == name]:
            _MODELS.pop(key)[2].close()


def _model_info(model: Any) -> Any:
    """The network object (loading a checkpoint path once in this process)."""
    return worker_forward(model, "cpu")[0] if isinstance(model, str | os.PathLike) else model


# ---------------------------------------------------------------------------------------------
# normalisation statistics, once per image


def sampled_normalization_stats(
    data: Any, config: NormalizationConfig, *, max_pixels: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel offset and scale of a whole ``(C, *spatial)`` image from a strided sample.

    Parameters
    ----------
    data : dask array or ndarray, shape (C, *spatial)
    config : NormalizationConfig
    max_pixels : int
        Spatial pixels sampled at most (every k-th pixel along each spatial axis).

    Returns
    -------
    offset, scale : ndarray of float64, shape (C,)
    """
    from .normalization import normalization_stats

    spatial = data.shape[1:]
    k = max(1, math.ceil((math.prod(spatial) / max_pixels) ** (1 / len(spatial))))
    sample = np.asarray(data[(slice(None), *(slice(None, None, k),) * len(spatial))])
    return normalization_stats(sample, config, channel_axis=0)


# ---------------------------------------------------------------------------------------------
# block geometry


def block_starts(n: int, block: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the blocks of edge ``block`` along an axis of ``n`` pixels."""
    return [(s, min(n, s + block)) for s in range(0, n, block)]


def check_block_size(model: Any, block_size: int) -> int:
    """``block_size`` rounded up to the net's ``size_multiple``; refuse blocks below its border."""
    need = max(int(model.border), int(getattr(model, "context", 0) or 0), 1)
    if block_size < need:
        raise InputError(
            f"--block-size {block_size} is smaller than the network's border/context of {need} "
            f"pixels; use a block size of at least {max(256, need)}"
        )
    m = int(model.size_multiple)
    return -(-block_size // m) * m


def _reflect(lo: int, hi: int, n: int) -> np.ndarray:
    from .arrays import reflect_index

    idx = reflect_index(lo, hi, n)
    return np.arange(lo, hi) if isinstance(idx, slice) else np.asarray(idx)


def read_with_halo(source: Any, lead: tuple[slice, ...], origin: Sequence[int], shape: Sequence[int]) -> tuple[Any, list]:
    """The part of ``source`` to read for a window of its last axes, and how to index it.

    Returns ``(region, index)``: ``region`` is ``source[lead + bbox]`` (lazy for dask sources)
    and ``index`` the per-axis integer arrays into it that give the window, mirrored past the
    image's edges like :func:`~unet_core.arrays.crop_reflect`.
    """
    k = len(origin)
    bbox, index = [], []
    for o, s, n in zip(origin, shape, source.shape[source.ndim - k :]):
        idx = _reflect(int(o), int(o) + int(s), int(n))
        lo, hi = int(idx.min()), int(idx.max()) + 1
        bbox.append(slice(lo, hi))
        index.append(idx - lo)
    return source[(*lead, *bbox)], index


def _take(region: np.ndarray, index: list) -> np.ndarray:
    out = np.asarray(region)
    k = len(index)
    for j, idx in enumerate(index):
        axis = out.ndim - k + j
        if not (len(idx) == out.shape[axis] and np.array_equal(idx, np.arange(len(idx)))):
            out = np.take(out, idx, axis=axis)
    return out


# ---------------------------------------------------------------------------------------------
# one block


def predict_block(
    region: np.ndarray,
    index: list,
    model: Any,
    offset: tuple[float, ...],
    scale: tuple[float, ...],
    out_shape: tuple[int, ...],
    options: dict,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Probabilities of one block: ``(K, [Z,] *out_shape)`` float32.

    Parameters
    ----------
    region, index
        From :func:`read_with_halo`: the raw input ``(C, [Z,] *bbox)`` and the indices that make
        the block's input window (mirrored at the image's edges).
    model : path or SegmentationNet
        Loaded once per process (:func:`worker_forward`).
    offset, scale : tuple of float, one per channel
        The whole image's normalisation statistics.
    out_shape : tuple of int
        The block's spatial output shape.
    options : dict
        ``device``, ``batch_size``, ``tile_shape`` (the plan's wished output tile), ``tta``,
        ``amp``.
    """
    if stop is not None and stop.is_set():
        raise InterruptedError("block-wise prediction stopped")
    from .memory import release_freed_memory

    net, fwd = worker_forward(model, options["device"], options["tta"], options["amp"])
    probs = run_to_end(_iter_block(
        net, fwd, _take(region, index), out_shape, options["tile_shape"], options["batch_size"], offset, scale
    ))
    release_freed_memory()
    return probs


def _iter_block(
    net: Any, fwd: Any, window: np.ndarray, out_shape: tuple[int, ...], tile_shape: Sequence[int],
    batch_size: int, offset: Sequence[float], scale: Sequence[float],
) -> Generator[Progress, None, np.ndarray]:
    """Probabilities ``(K, [Z,] *out_shape)`` of a block's input ``window`` (``(C, [Z,] ...)``,
    the region :func:`_block_plan` names), yielding one record per batch of tiles."""
    from .normalization import apply_normalization
    from .tiling import NumpyMerger, plan_tiles

    plan = plan_tiles(net, out_shape, tile_shape)
    lo, sc = np.asarray(offset), np.asarray(scale)
    shift = tuple(-min(t[j] for t in plan.tiles) for j in range(len(out_shape)))
    stack = window[:, None] if window.ndim == len(out_shape) + 1 else window
    out = np.empty((net.config.n_classes, stack.shape[1], *out_shape), np.float32)
    total, done = stack.shape[1] * len(plan), 0
    for z in range(stack.shape[1]):
        merger = NumpyMerger((net.config.n_classes, *out_shape), plan.window, out=out[:, z])
        for i in range(0, len(plan), batch_size):
            batch = plan.tiles[i : i + batch_size]
            x = np.stack([
                apply_normalization(_crop(stack[:, z], t, shift, plan.in_shape), lo, sc) for t in batch
            ])
            for origin, p in zip(batch, fwd(x)):
                merger.add(p, plan.output_origin(origin))
            done += len(batch)
            yield Progress("predict", done, total, f"{done}/{total} tiles")
        merger.result()
    return out if window.ndim > len(out_shape) + 1 else out[:, 0]


def _crop(x: np.ndarray, tile: Sequence[int], shift: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    sl = tuple(slice(t + s, t + s + n) for t, s, n in zip(tile, shift, shape))
    return x[(slice(None), *sl)]


def _background_block(n_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Probabilities of a block skipped by the mask: background 1, other classes 0."""
    out = np.zeros((n_classes, *shape), np.float32)
    out[0] = 1.0
    return out


# ---------------------------------------------------------------------------------------------
# one window, in memory (a field of view of a huge image)


@dataclass(frozen=True)
class WindowPrediction:
    """What :func:`iter_predict_window` returns.

    Attributes
    ----------
    origin : tuple of int
        ``(y, x)`` of the window's first pixel in the image (the asked origin rounded down to
        the network's ``size_multiple``).
    probabilities : ndarray of float32, shape (K, h, w)
        Class probabilities of the window ``image[y:y + h, x:x + w]``.
    """

    origin: tuple[int, int]
    probabilities: np.ndarray


def aligned_window(
    model: Any, origin: Sequence[int], stop: Sequence[int], image_shape: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(origin, shape)`` of the window ``[origin, stop)`` clipped to ``image_shape`` (Y, X),
    its origin rounded down to the net's ``size_multiple`` (the block grid of the whole image).

    Raises
    ------
    InputError
        The window lies outside the image.
    """
    m = int(model.size_multiple)
    o = [min(max(0, int(a)), int(n)) // m * m for a, n in zip(origin, image_shape)]
    e = [min(max(0, int(b)), int(n)) for b, n in zip(stop, image_shape)]
    if any(b <= a for a, b in zip(o, e)):
        raise InputError(
            f"the window {tuple(origin)}..{tuple(stop)} lies outside the image of shape "
            f"{tuple(image_shape)}; pan the view onto the image"
        )
    return (o[0], o[1]), (e[0] - o[0], e[1] - o[1])


def iter_predict_window(
    model: Any,
    data: Any,
    origin: Sequence[int],
    stop: Sequence[int],
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    tile_shape: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    tta: int = 0,
    amp: str | None = None,
) -> Generator[Progress, None, WindowPrediction]:
    """Probabilities of the window ``[origin, stop)`` of a ``(C, Y, X)`` (lazy) image.

    Reads only the window and the halo the network needs, mirrored only past the image's
    edges (:func:`read_with_halo`), normalises it with the **whole image's** statistics and
    predicts it with the block code of :func:`blockwise_probabilities`: the result equals the
    same region of whole-image (block-wise or in-memory, with the same statistics) prediction
    to float rounding for a 'valid' net.

    Parameters
    ----------
    model : SegmentationNet
        A 2D network.
    data : dask array or ndarray, shape (C, Y, X)
        See :func:`as_channel_first`.
    origin, stop : (int, int)
        The wished window (clipped, origin aligned: :func:`aligned_window`).
    stats : (offset, scale), optional
        Normalisation statistics; default :func:`sampled_normalization_stats` of ``data``.
    tile_shape, batch_size : int, optional
        Output tile edge and tiles per pass; default from the memory budget, as in memory.
    device, tta, amp
        As :func:`~unet_core.tiling.iter_predict_tiled`.

    Yields
    ------
    Progress
        ``stage='predict'``, one record per batch of tiles; closing the generator stops it.
    """
    from .device import resolve_device
    from .tiling import plan_tiles, prepared_forward
    from .tiling.memory import choose_batch_size, choose_tile_shape

    net = getattr(model, "model", model)
    cfg = net.config
    if cfg.spatial_dims != 2 or data.ndim != 3 or data.shape[0] != cfg.in_channels:
        raise InputError(
            f"a window takes a 2D net and a (C, Y, X) image with the net's {cfg.in_channels} "
            f"channel(s); got a {cfg.spatial_dims}D net and shape {tuple(data.shape)}"
        )
    start, shape = aligned_window(net, origin, stop, data.shape[1:])
    if stats is None:
        stats = sampled_normalization_stats(data, cfg.normalization)
    dev = resolve_device(device)
    tile = (tile_shape,) * 2 if tile_shape else choose_tile_shape(net, shape, dev)
    first, in_shape = _block_plan(net, shape, tile)
    region, index = read_with_halo(data, (slice(None),), tuple(a + f for a, f in zip(start, first)), in_shape)
    window = _take(np.asarray(region), index)
    with prepared_forward(net, dev, tta=tta, amp=amp) as fwd:
        batch = batch_size or choose_batch_size(net, plan_tiles(net, shape, tile), dev)
        probs = yield from _iter_block(net, fwd, window, shape, tile, batch, *stats)
    return WindowPrediction(start, probs)


def predict_window(
    model: Any, data: Any, origin: Sequence[int], stop: Sequence[int], **options: Any
) -> WindowPrediction:
    """:func:`iter_predict_window` run to the end (same parameters)."""
    return run_to_end(iter_predict_window(model, data, origin, stop, **options))


# ---------------------------------------------------------------------------------------------
# the graph


def as_channel_first(data: Any, axes: str, channel_axis: int | None, spatial_dims: int = 2) -> Any:
    """A dask array ``(C, [Z,] Y, X)`` from ``data`` with ``axes`` (or an explicit channel axis).

    Raises
    ------
    InputError
        More than one non-spatial axis, or an image that is not 2D or a 3D stack.
    """
    import dask.array as da

    data = da.asarray(data)
    if channel_axis is None and "C" in axes.upper() and len(axes) == data.ndim:
        channel_axis = axes.upper().index("C")
    data = data[None] if channel_axis is None else da.moveaxis(data, channel_axis, 0)
    if data.ndim - 1 not in (spatial_dims, spatial_dims + 1):
        raise InputError(
            f"block-wise prediction takes (Y, X) or (Z, Y, X) images with an optional channel axis; "
            f"got shape {tuple(data.shape[1:])} without channels"
        )
    if data.dtype.kind not in "biuf":
        raise InputError(f"image dtype {data.dtype} is not numeric; convert it to integers or floats")
    return data


def blockwise_probabilities(
    model: Any,
    data: Any,
    config: BlockwiseConfig = BlockwiseConfig(),
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    tile_shape: int | None = None,
    mask: Any = None,
    stop: threading.Event | None = None,
) -> Any:
    """Lazy class probabilities of a ``(C, [Z,] Y, X)`` dask array, one task per block.

    Parameters
    ----------
    model : path or SegmentationNet
        A checkpoint path (loaded once per worker process) or a network.
    data : dask array, shape (C, [Z,] Y, X)
        See :func:`as_channel_first`.
    config : BlockwiseConfig
    stats : (offset, scale), optional
        Normalisation statistics; default :func:`sampled_normalization_stats` of ``data``.
    tile_shape : int, optional
        Output tile edge inside a block (default: the block).
    mask : array-like, optional
        Low-resolution foreground (any shape with the image's number of spatial axes): blocks
        whose part of the mask is all zero are not predicted (background).
    stop : threading.Event, optional
        Set it to make blocks not yet started raise :class:`InterruptedError`.

    Returns
    -------
    dask array of float32, shape (K, [Z,] Y, X), chunks one block
    """
    import dask
    import dask.array as da

    net = _model_info(model)
    cfg = net.config
    if data.shape[0] != cfg.in_channels:
        raise InputError(f"the image has {data.shape[0]} channel(s), the model reads {cfg.in_channels}")
    block = check_block_size(net, config.block_size)
    if stats is None:
        stats = sampled_normalization_stats(data, cfg.normalization)
    lo, sc = tuple(float(v) for v in stats[0]), tuple(float(v) for v in stats[1])
    spatial = tuple(int(n) for n in data.shape[-2:])
    zs = block_starts(int(data.shape[1]), config.block_depth) if data.ndim == 4 else [None]
    options = {"device": config.device, "batch_size": config.batch_size, "tile_shape": (tile_shape or block,) * 2,
               "tta": config.tta, "amp": config.amp}
    mask_fn = _mask_lookup(mask, data.shape[1:]) if mask is not None else None
    rows = []
    for z in zs:
        lead = (slice(None),) if z is None else (slice(None), slice(*z))
        grid = [[None] * len(block_starts(spatial[1], block)) for _ in block_starts(spatial[0], block)]
        for (i, ys), (j, xs) in itertools.product(*(enumerate(block_starts(n, block)) for n in spatial)):
            out_shape = (ys[1] - ys[0], xs[1] - xs[0])
            shape = (cfg.n_classes, *(() if z is None else (z[1] - z[0],)), *out_shape)
            if mask_fn is not None and not mask_fn(z, ys, xs):
                task = dask.delayed(_background_block)(cfg.n_classes, shape[1:])
            else:
                plan = _block_plan(net, out_shape, options["tile_shape"])
                origin = (ys[0] + plan[0][0], xs[0] + plan[0][1])
                region, index = read_with_halo(data, lead, origin, plan[1])
                task = dask.delayed(predict_block, pure=True)(
                    region, index, model, lo, sc, out_shape, options, stop
                )
            grid[i][j] = da.from_delayed(task, shape, np.float32)
        rows.append(grid)
    if zs == [None]:
        return da.block(rows[0])
    return da.concatenate([da.block(g) for g in rows], axis=1)


def _block_plan(net: Any, out_shape: tuple[int, int], tile: tuple[int, int]) -> tuple[tuple, tuple]:
    """``(first tile origin, window shape)`` of a block: what its tiles read, relative to it."""
    from .tiling import plan_tiles

    plan = plan_tiles(net, out_shape, tile)
    first = tuple(min(t[j] for t in plan.tiles) for j in range(2))
    last = tuple(max(t[j] for t in plan.tiles) for j in range(2))
    return first, tuple(b - a + n for a, b, n in zip(first, last, plan.in_shape))


def _mask_lookup(mask: Any, shape: tuple[int, ...]) -> Callable[[Any, tuple, tuple], bool]:
    """``fn(z, ys, xs) -> bool``: whether the low-resolution ``mask`` has foreground there."""
    m = np.asarray(mask) > 0
    if m.ndim != len(shape):
        raise InputError(
            f"the mask has {m.ndim} axes, the image {len(shape)} spatial axes: give a mask of the "
            "same axes at any (lower) resolution"
        )
    f = [m.shape[i] / shape[i] for i in range(len(shape))]

    def span(a: int, b: int, ax: int) -> slice:
        return slice(int(math.floor(a * f[ax])), max(int(math.ceil(b * f[ax])), int(math.floor(a * f[ax])) + 1))

    def has_foreground(z, ys, xs) -> bool:
        lead = () if z is None else (span(*z, 0),)
        k = len(lead)
        return bool(m[(*lead, span(*ys, k), span(*xs, k + 1))].any())

    return has_foreground


# ---------------------------------------------------------------------------------------------
# running a graph: the local scheduler or a dask.distributed cluster, with progress


def connect(address: str, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``; :class:`InputError` if unreachable."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "--dask needs dask.distributed: pip install 'napari-unet[distributed]'"
        ) from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot reach the dask scheduler at {address} ({type(exc).__name__}); start one "
            "(dask scheduler / LocalCluster) or check the address"
        ) from None


def iter_compute(
    tasks: Sequence[Any], *, stage: str, workers: int | None = None, client: Any = None,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, list]:
    """Compute dask collections/delayeds, yielding progress from the dask graph; their results.

    With ``client`` (dask.distributed) the tasks run on its cluster and progress counts finished
    outputs; otherwise on the local threaded scheduler with ``workers`` threads and progress
    counts finished graph tasks. Closing the generator sets ``stop`` (blocks not yet started
    then raise) and waits for the running ones.
    """
    if client is not None:
        return (yield from _iter_distributed(tasks, stage, client))
    from dask.callbacks import Callback

    state = {"done": 0, "total": 0, "result": None, "error": None}

    class _Count(Callback):
        def _start_state(self, dsk, st):
            state["total"] = len(st["ready"]) + len(st["waiting"]) + len(st.get("finished", ()))

        def _posttask(self, key, result, dsk, st, worker_id):
            state["done"] += 1

    def work() -> None:
        import dask

        try:
            with _Count():
                state["result"] = dask.compute(*tasks, scheduler="threads", num_workers=workers)
        except BaseException as exc:  # noqa: BLE001 - handed to the generator
            state["error"] = exc

    thread = threading.Thread(target=work, name=f"dask-{stage}", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.25)
            yield _record(stage, state["done"], state["total"], t0)
    finally:
        if thread.is_alive() and stop is not None:
            stop.set()
            thread.join()
    if state["error"] is not None:
        raise state["error"]
    return list(state["result"])


def _iter_distributed(tasks: Sequence[Any], stage: str, client: Any) -> Generator[Progress, None, list]:
    futures = client.compute(list(tasks))
    t0 = time.perf_counter()
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.25)
            yield _record(stage, sum(f.done() for f in futures), len(futures), t0)
    except GeneratorExit:
        client.cancel(futures)
        raise
    return client.gather(futures)


def _record(stage: str, done: int, total: int, t0: float) -> Progress:
    elapsed = time.perf_counter() - t0
    eta = elapsed / done * (total - done) if done and total else None
    return Progress(stage, done, total, f"{done}/{total} tasks", metrics={"tasks": done}, eta=eta)


# ---------------------------------------------------------------------------------------------
# the whole pipeline


@dataclass(frozen=True)
class BlockwiseSegmentation:
    """What :func:`iter_segment_blockwise` returns (lazy arrays reading its work folder).

    Attributes
    ----------
    labels : dask array of uint32 (uint64 when needed), shape ``([Z,] Y, X)``
        Sequential instance ids 1..N.
    foreground : dask array of float32, shape of ``labels``
        ``1 - P(background)``.
    n_objects : int
    """

    labels: Any
    foreground: Any
    n_objects: int


def iter_segment_blockwise(
    model: Any,
    data: Any,
    postprocess: Any,
    workdir: str | os.PathLike,
    config: BlockwiseConfig = BlockwiseConfig(),
    *,
    tile_shape: int | None = None,
    mask: Any = None,
    client: Any = None,
) -> Generator[Progress, None, BlockwiseSegmentation]:
    """Block-wise prediction and instance labels of a ``(C, [Z,] Y, X)`` dask array.

    The foreground probability and the block-local labels are stored as zarr arrays in
    ``workdir`` (which the caller removes after writing the results), so no pass holds more
    than a few blocks per worker. See :func:`blockwise_probabilities` for the parameters;
    ``postprocess`` is a :class:`~unet_core.config.PostprocessConfig`.

    Yields
    ------
    Progress
        ``stage='predict'`` then ``stage='postprocess'`` records from the dask graphs.
    """
    import dask.array as da
    import zarr

    from .blockwise_labels import iter_label_blockwise
    from .memory import release_freed_memory

    release_freed_memory()  # fixes the allocator's mmap threshold before the first block
    stop = threading.Event() if client is None else None  # an Event does not travel to a cluster
    probs = blockwise_probabilities(model, data, config, tile_shape=tile_shape, mask=mask, stop=stop)
    fg = (1.0 - probs[0]).astype(np.float32)
    log.info("block-wise: %s image, %d blocks of %s", fg.shape, fg.npartitions, fg.chunksize)
    fg_path = os.path.join(os.fspath(workdir), "foreground.zarr")
    write = da.to_zarr(fg, fg_path, compute=False)
    yield from iter_compute([write], stage="predict", workers=config.workers, client=client, stop=stop)
    foreground = da.from_zarr(fg_path)
    store = zarr.open_array(
        os.path.join(os.fspath(workdir), "local_labels.zarr"), mode="w", shape=fg.shape,
        chunks=fg.chunksize, dtype=np.uint32,
    )
    labels, n = yield from iter_label_blockwise(
        zarr.open_array(fg_path, mode="r"), postprocess, store, halo=config.halo, per_slice=True, workers=config.workers,
        client=client, stop=stop,
    )
    return BlockwiseSegmentation(labels, foreground, n)
