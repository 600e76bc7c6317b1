"""Overlap-tile prediction with mirror extrapolation (Ronneberger et al. 2015, Fig. 2).

For 'valid' networks the image is mirror-extended by the network's ``border`` and cut into
input tiles whose *output* windows abut exactly. Tile starts are multiples of ``2**depth``, so the
max-pooling grid is the same in every tile and the result is identical to one forward pass over
the whole mirror-padded image, whatever the tile size. Padded ('same') networks get overlapping
tiles blended with a smooth window.

``iter_predict_tiled`` is a generator yielding :class:`~unet_core.progress.Progress` records and
returning the probabilities; it can be stopped between tiles (``.close()``). ``predict_tiled``
drains it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Iterator

import numpy as np
import torch

from .device import resolve_device
from .errors import InputError
from .models.base import SegmentationNet
from .normalization import normalize
from .progress import Progress

log = logging.getLogger(__name__)

#: default output tile edge on the CPU ('valid' nets: rounded to the network's granularity)
CPU_TILE = 256


def _as_cyx_stack(image: np.ndarray, channel_axis: int | None, in_channels: int) -> tuple[np.ndarray, bool]:
    """Return ``(S, C, Y, X)`` and whether the input was a single 2D image."""
    image = np.asarray(image)
    if image.size == 0:
        raise InputError(f"the image is empty (shape {image.shape}); load a real image")
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, -3)
    elif in_channels > 1:
        raise InputError(
            f"the model reads {in_channels} channels; pass channel_axis= to say which axis holds them"
        )
    else:
        image = image[..., None, :, :]
    if image.shape[-3] != in_channels:
        raise InputError(
            f"the image has {image.shape[-3]} channel(s), the model reads {in_channels}; "
            "choose the right channel axis or a model trained on this many channels"
        )
    if image.ndim == 3:
        return image[None], True
    if image.ndim == 4:
        return image, False
    raise InputError(
        f"expected (Y, X), (C, Y, X), (Z, Y, X) or (Z, C, Y, X) input, got shape {image.shape}"
    )


def _mirror_pad(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Reflect-pad the last two axes, repeating the reflection when the pad exceeds the size."""
    if min(x.shape[-2:]) == 1:
        mode = "symmetric"  # a single row/column reflects onto itself
    else:
        mode = "reflect"
    return np.pad(x, ((0, 0),) * (x.ndim - 2) + pads, mode=mode)


def _tile_starts(total: int, tile: int) -> list[int]:
    return list(range(0, max(total, 1), tile))


def choose_tile_size(model: SegmentationNet, image_yx: tuple[int, int], device: torch.device) -> int:
    """Output tile edge: the device default, but no larger than the image needs."""
    tile = CPU_TILE if device.type == "cpu" else 512
    need = max(image_yx)
    if model.border:  # valid: output sizes come in steps of size_multiple
        tile = min(tile, need)
        return max(1, model.output_size(model.valid_input_size(tile)))
    return min(tile, max(model.size_multiple, need))


def iter_predict_tiled(
    model: SegmentationNet,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    tta: bool = False,
    normalize_input: bool = True,
) -> Generator[Progress, None, np.ndarray]:
    """Predict class probabilities tile by tile, yielding progress.

    Parameters
    ----------
    model : SegmentationNet
        Network (its config says the normalisation and channel count).
    image : ndarray
        ``(Y, X)``, ``(C, Y, X)`` with ``channel_axis``, or stacks ``(Z, Y, X)`` /
        ``(Z, C, Y, X)`` predicted slice by slice; any real dtype.
    channel_axis : int or None
        Axis of ``image`` holding channels (required for multichannel models).
    tile_shape : int or (int, int), optional
        Output tile size (rounded up to a valid size); chosen automatically when omitted.
    batch_size : int, optional
        Tiles per forward pass (default 1 on the CPU, 4 on a GPU).
    device : str or torch.device
        'auto', 'cpu', 'cuda', 'mps'.
    tta : bool
        Average over the 8 flips/rotations (undoing each).
    normalize_input : bool
        Apply the model's intensity normalisation (set False for pre-normalised float input).

    Yields
    ------
    Progress
        One record per batch of tiles.

    Returns
    -------
    ndarray of float32
        Class probabilities ``(n_classes, Y, X)`` for a 2D image, ``(Z, n_classes, Y, X)``
        for stacks.
    """
    cfg = model.config
    stack, single = _as_cyx_stack(image, channel_axis, cfg.in_channels)
    if normalize_input:
        stack = np.stack([normalize(s, cfg.normalization, channel_axis=0) for s in stack])
    else:
        stack = stack.astype(np.float32, copy=False)
        if not np.all(np.isfinite(stack)):
            raise InputError("the image contains NaN or infinite values; replace them before predicting")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    n_slices, _, h, w = stack.shape
    if tile_shape is None:
        t = choose_tile_size(model, (h, w), dev)
        tile = (t, t)
    else:
        tile = (tile_shape, tile_shape) if isinstance(tile_shape, int) else tuple(tile_shape)
    if batch_size is None:
        batch_size = 1 if dev.type == "cpu" else 4
    out = np.zeros((n_slices, cfg.n_classes, h, w), np.float32)
    plans = [_plan_valid(model, (h, w), tile)] if model.border else [_plan_same(model, (h, w), tile)]
    plan = plans[0]
    total = n_slices * len(plan.tiles)
    done = 0
    t0 = time.perf_counter()
    for z in range(n_slices):
        padded = _mirror_pad(stack[z], plan.pads)
        weight = np.zeros((h, w), np.float32) if plan.window is not None else None
        for batch in _batches(plan.tiles, batch_size):
            inputs = np.stack([padded[:, y : y + plan.in_shape[0], x : x + plan.in_shape[1]] for y, x in batch])
            probs = _forward(model, torch.from_numpy(inputs), dev, tta)
            for (y, x), p in zip(batch, probs):
                _accumulate(out[z], weight, p, y, x, plan)
            done += len(batch)
            elapsed = time.perf_counter() - t0
            yield Progress(
                "predict", done, total, f"tile {done}/{total}",
                eta=elapsed / done * (total - done),
            )
        if weight is not None:
            out[z] /= np.maximum(weight, 1e-8)
    return out[0] if single else out


class _Plan:
    def __init__(self, tiles, in_shape, out_shape, pads, window, offset):
        self.tiles = tiles          # list of (y, x) input-tile origins in padded coords
        self.in_shape = in_shape    # input tile (ty, tx)
        self.out_shape = out_shape  # output tile (oy, ox)
        self.pads = pads            # mirror padding of the image
        self.window = window        # blending window (same nets) or None
        self.offset = offset        # output-to-image offset per tile: image = tile origin - offset


def _plan_valid(model: SegmentationNet, hw: tuple[int, int], tile: tuple[int, int]) -> _Plan:
    b = model.border
    m = model.size_multiple
    in_shape = tuple(model.valid_input_size(max(m, t)) for t in tile)
    out_shape = tuple(model.output_size(s) for s in in_shape)
    # Tile starts must be multiples of 2**depth so every tile sees the same pooling grid as the
    # whole padded image; output windows of consecutive tiles then overlap by out % m pixels,
    # where both tiles compute identical values.
    step = tuple((o // m) * m for o in out_shape)
    ny = max(1, math.ceil((hw[0] - out_shape[0]) / step[0]) + 1) if hw[0] > out_shape[0] else 1
    nx = max(1, math.ceil((hw[1] - out_shape[1]) / step[1]) + 1) if hw[1] > out_shape[1] else 1
    span = ((ny - 1) * step[0] + out_shape[0], (nx - 1) * step[1] + out_shape[1])
    pads = ((b, b + span[0] - hw[0]), (b, b + span[1] - hw[1]))
    tiles = [(iy * step[0], ix * step[1]) for iy in range(ny) for ix in range(nx)]
    return _Plan(tiles, in_shape, out_shape, pads, None, 0)


def _plan_same(model: SegmentationNet, hw: tuple[int, int], tile: tuple[int, int]) -> _Plan:
    m = model.size_multiple
    ctx = model.context
    in_shape = tuple(int(math.ceil(max(t, 2 * ctx + m) / m) * m) for t in tile)
    step = tuple(max(m, s - 2 * ctx) // m * m for s in in_shape)
    ny = max(1, math.ceil((hw[0] + 2 * ctx - in_shape[0]) / step[0]) + 1)
    nx = max(1, math.ceil((hw[1] + 2 * ctx - in_shape[1]) / step[1]) + 1)
    pads = (
        (ctx, (ny - 1) * step[0] + in_shape[0] - hw[0] - ctx),
        (ctx, (nx - 1) * step[1] + in_shape[1] - hw[1] - ctx),
    )
    tiles = [(iy * step[0], ix * step[1]) for iy in range(ny) for ix in range(nx)]
    wy = _window(in_shape[0], ctx)
    wx = _window(in_shape[1], ctx)
    return _Plan(tiles, in_shape, in_shape, pads, np.outer(wy, wx).astype(np.float32), ctx)


def _window(n: int, ramp: int) -> np.ndarray:
    """1 in the middle, a raised-cosine ramp of ``ramp`` pixels at both ends (never 0)."""
    w = np.ones(n, np.float32)
    r = min(ramp, n // 2)
    if r > 0:
        t = (np.arange(r, dtype=np.float32) + 0.5) / r
        w[:r] = 0.5 - 0.5 * np.cos(np.pi * t)
        w[n - r :] = w[:r][::-1]
    return w


def _accumulate(out: np.ndarray, weight: np.ndarray | None, p: np.ndarray, y: int, x: int, plan: _Plan) -> None:
    h, w = out.shape[-2:]
    if weight is None:
        oy, ox = plan.out_shape
        ye, xe = min(h, y + oy), min(w, x + ox)
        out[:, y:ye, x:xe] = p[:, : ye - y, : xe - x]
        return
    off = plan.offset
    y0, x0 = y - off, x - off  # image coordinates of the tile's first pixel
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + plan.in_shape[0]), min(w, x0 + plan.in_shape[1])
    if ye <= ys or xe <= xs:
        return
    win = plan.window[ys - y0 : ye - y0, xs - x0 : xe - x0]
    out[:, ys:ye, xs:xe] += p[:, ys - y0 : ye - y0, xs - x0 : xe - x0] * win
    weight[ys:ye, xs:xe] += win


def _batches(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


_TTA = [(k, flip) for flip in (False, True) for k in range(4)]


@torch.inference_mode()
def _forward(model: SegmentationNet, x: torch.Tensor, dev: torch.device, tta: bool) -> np.ndarray:
    x = x.to(dev)
    if not tta:
        return torch.softmax(model(x).float(), dim=1).cpu().numpy()
    acc = None
    for k, flip in _TTA:
        xi = torch.rot90(x, k, dims=(-2, -1))
        if flip:
            xi = torch.flip(xi, dims=(-1,))
        p = torch.softmax(model(xi).float(), dim=1)
        if flip:
            p = torch.flip(p, dims=(-1,))
        p = torch.rot90(p, -k, dims=(-2, -1))
        acc = p if acc is None else acc + p
    return (acc / len(_TTA)).cpu().numpy()


def predict_tiled(model: SegmentationNet, image: np.ndarray, **kwargs) -> np.ndarray:
    """Class probabilities of ``image``; see :func:`iter_predict_tiled` for the parameters.

    Returns
    -------
    ndarray of float32, ``(n_classes, Y, X)`` (or ``(Z, n_classes, Y, X)`` for stacks)
    """
    gen = iter_predict_tiled(model, image, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
