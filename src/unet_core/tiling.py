"""Overlap-tile prediction with mirror extrapolation (Ronneberger et al. 2015, Fig. 2).

For 'valid' networks the image is (virtually) mirror-extended by the network's ``border`` and cut
into input tiles whose *output* windows abut exactly. Tile starts are multiples of
``2**depth``, so the max-pooling grid is the same in every tile and the result is identical to
one forward pass over the whole mirror-padded image, whatever the tile size. Padded ('same')
networks get tiles overlapping by twice their receptive-field reach plus a ramp, blended with a
smooth raised-cosine window that is zero where a tile's own zero padding reaches, so they too
equal one pass over the mirror-padded image.

Memory stays bounded: the mirror extension is never materialised (each tile is cropped from the
raw image with reflected indices and normalised on its own), so the peak is the raw image, the
float32 output and one batch of tile activations. The tile size is chosen from a memory budget
(free GPU memory on CUDA, a share of the available RAM capped at :data:`CPU_BUDGET_CAP` on the
CPU); a CUDA out-of-memory error halves the batch, then the tile, and retries.

:func:`iter_predict_tiled` is a generator yielding one :class:`~unet_core.progress.Progress`
record per batch of tiles and returning the probabilities; closing it (``.close()``) between
batches stops the job and returns nothing. :func:`predict_tiled` drains it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .arrays import as_channel_stack, crop_reflect
from .device import is_out_of_memory, resolve_device
from .errors import InputError
from .models.base import SegmentationNet
from .normalization import apply_normalization, check_image_values, normalization_stats
from .progress import Progress, run_to_end

log = logging.getLogger(__name__)

#: largest automatic output tile edge on the CPU (bigger tiles gain little, cost latency)
CPU_MAX_TILE = 1024
#: largest automatic output tile edge on a GPU
GPU_MAX_TILE = 2048
#: activation-memory budget on the CPU, at most this many bytes (and 1/4 of the available RAM);
#: 512 MiB gives 700^2 -> 516^2 tiles for the 4-level, 16-channel U-Net: with the optimised CPU
#: graph these were within 5 % of the 876^2 tiles of a 768 MiB budget at 150 MB less peak RSS,
#: below MONAI's (docs/benchmarks-predict.md, run 7)
CPU_BUDGET_CAP = 512 * 2**20
#: share of the free GPU memory used for one batch of activations
GPU_BUDGET_FRACTION = 0.6
#: largest automatic batch size (GPU)
MAX_BATCH = 16

# The 8 elements of the dihedral group as (quarter turns, horizontal flip), ordered so that a
# prefix is a useful subset: identity, the two mirrors, the half turn, then the rest.
DIHEDRAL: tuple[tuple[int, bool], ...] = (
    (0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True),
)


# ------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one ``(Y, X)`` image lie.

    Attributes
    ----------
    tiles : list of (int, int)
        Input-tile origins in image coordinates (may be negative: mirrored context).
    in_shape, out_shape : (int, int)
        Input and output tile sizes.
    window : ndarray of float32 (ty, tx) or None
        Blending window of 'same' nets (None for 'valid' nets, whose tiles abut).
    """

    tiles: list[tuple[int, int]]
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    window: np.ndarray | None
    border: int

    def __len__(self) -> int:
        return len(self.tiles)


def plan_tiles(model: SegmentationNet, hw: tuple[int, int], tile: tuple[int, int]) -> TilePlan:
    """Tile layout for an image of shape ``hw`` and requested output tiles ``tile``."""
    return _plan_valid(model, hw, tile) if model.border else _plan_same(model, hw, tile)


def _plan_valid(model: SegmentationNet, hw: tuple[int, int], tile: tuple[int, int]) -> TilePlan:
    b, m = model.border, model.size_multiple
    in_shape, out_shape, starts = [], [], []
    for n, t in zip(hw, tile):
        t = max(1, min(int(t), n))
        s_in = model.valid_input_size(t)
        o = model.output_size(s_in)
        if o < n and o < m:  # several tiles: the stride (a multiple of m) must fit in a tile
            s_in = model.valid_input_size(m)
            o = model.output_size(s_in)
        # Starts on multiples of 2**depth keep the pooling grid of the whole padded image; output
        # windows of consecutive tiles overlap by o % m pixels, where both compute equal values.
        step = (o // m) * m
        k = 1 if n <= o else math.ceil((n - o) / step) + 1
        in_shape.append(s_in)
        out_shape.append(o)
        starts.append([i * step - b for i in range(k)])
    tiles = [(y, x) for y in starts[0] for x in starts[1]]
    return TilePlan(tiles, tuple(in_shape), tuple(out_shape), None, b)


def _plan_same(model: SegmentationNet, hw: tuple[int, int], tile: tuple[int, int]) -> TilePlan:
    # A padded net's output pixel depends on its zero-padded tile border only within `context`
    # pixels of it. The blending window is 0 there and ramps up smoothly over the next `ramp`
    # pixels, and tiles overlap by 2 * context + ramp, so every pixel is a weighted mean of
    # values computed with full context: the result equals one pass over the mirror-padded image.
    # (pooling and up-convolution windows reach up to 2**depth - 1 pixels beyond `context`)
    m = model.size_multiple
    ctx = model.context + m if model.context else 0
    in_shape, starts, ramps = [], [], []
    for n, t in zip(hw, tile):
        full = -(-(n + 2 * ctx) // m) * m  # one tile covering image + context
        s_in = min(full, -(-(max(int(t), m) + 2 * ctx + m) // m) * m)
        interior = s_in - 2 * ctx
        ramp = max(1, min(ctx // 2, interior // 4))
        step = max(m, (interior - ramp) // m * m)
        k = 1 if n + 2 * ctx <= s_in else math.ceil((n + 2 * ctx - s_in) / step) + 1
        in_shape.append(s_in)
        ramps.append(ramp)
        starts.append([i * step - ctx for i in range(k)])
    tiles = [(y, x) for y in starts[0] for x in starts[1]]
    window = np.outer(
        _window(in_shape[0], ctx, ramps[0]), _window(in_shape[1], ctx, ramps[1])
    ).astype(np.float32)
    return TilePlan(tiles, tuple(in_shape), tuple(in_shape), window, 0)


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


# ------------------------------------------------------------------------------------- memory
def activation_bytes_per_pixel(model: SegmentationNet) -> float:
    """Bytes of float32 activations per input pixel of one forward pass (an upper bound).

    Measured once per model (and cached on it) by summing the outputs of all leaf modules
    (except in-place ones) during a forward pass on a small tile; the inference-mode peak is
    lower because intermediate maps are freed as the pass proceeds.
    """
    cached = getattr(model, "_unet_act_bpp", None)
    if cached is not None:
        return cached
    m = model.size_multiple
    n = model.valid_input_size(8 * m) if model.border else max(8 * m, 64)
    seen: dict[int, int] = {}

    def hook(_mod, inp, out):
        in_place = bool(inp) and isinstance(inp[0], torch.Tensor) and inp[0].data_ptr() == out.data_ptr()
        if isinstance(out, torch.Tensor) and not in_place:
            seen[len(seen)] = out.numel() * 4

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if not list(mod.children())]
    dev = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, model.config.in_channels, n, n, device=dev))
    except Exception as exc:  # noqa: BLE001 - out of memory already: assume every map at full size
        if not is_out_of_memory(exc):
            raise
        seen = {i: 4 * n * n * mod.out_channels for i, mod in enumerate(model.modules())
                if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d)}
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # 'valid' maps shrink through the net: per input pixel would underestimate large tiles (whose
    # input and output sizes are close), per output pixel overestimate them; take the middle
    n_out = model.output_size(n)
    bpp = max(64.0, sum(seen.values()) / (n * n_out))
    object.__setattr__(model, "_unet_act_bpp", bpp)
    return bpp


def _available_ram() -> int:
    """Available RAM in bytes (MemAvailable on Linux; psutil or sysconf elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def memory_budget(device: torch.device) -> int:
    """Bytes of activations one batch of tiles may use on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * GPU_BUDGET_FRACTION)
    return int(min(_available_ram() / 4, CPU_BUDGET_CAP))


def choose_tile_shape(
    model: SegmentationNet,
    hw: tuple[int, int],
    device: torch.device,
    *,
    batch_size: int = 1,
    budget: int | None = None,
) -> tuple[int, int]:
    """Output tile shape that fits ``budget`` bytes of activations for ``batch_size`` tiles.

    Square tiles of the largest edge the budget allows (capped at :data:`CPU_MAX_TILE` /
    :data:`GPU_MAX_TILE`), never larger than the image needs.
    """
    if budget is None:
        budget = memory_budget(device)
    bpp = activation_bytes_per_pixel(model)
    edge_in = int(math.sqrt(max(budget, 1) / (bpp * max(1, batch_size))))
    cap = CPU_MAX_TILE if device.type == "cpu" else GPU_MAX_TILE
    extra = 2 * (model.border or model.context)
    m = model.size_multiple
    edge = max(m, min(cap, edge_in - extra))
    out = []
    for n in hw:
        # as few tiles as the edge allows, then split the axis evenly among them
        k = max(1, math.ceil(n / edge))
        t = -(-math.ceil(n / k) // m) * m if k > 1 else n
        out.append(max(1, min(t, n)))
    return tuple(out)  # type: ignore[return-value]


def choose_batch_size(
    model: SegmentationNet, plan: TilePlan, device: torch.device, *, budget: int | None = None
) -> int:
    """Tiles per forward pass: 1 on the CPU (no gain there); on a GPU as many as fit the budget."""
    if device.type == "cpu":
        return 1
    if budget is None:
        budget = memory_budget(device)
    per_tile = activation_bytes_per_pixel(model) * plan.in_shape[0] * plan.in_shape[1]
    return int(max(1, min(MAX_BATCH, len(plan), budget // max(per_tile, 1))))


# ------------------------------------------------------------------------------------- options
def resolve_tta(tta: bool | int | Sequence[int] | Sequence[tuple[int, bool]] | None) -> tuple[tuple[int, bool], ...]:
    """The dihedral transforms ``(quarter_turns, flip)`` to average over.

    ``False``/``None``/``0``/``1``: identity only; ``True``: all 8 flips/rotations; an int ``n``:
    the first ``n`` of :data:`DIHEDRAL`; a sequence of indices into :data:`DIHEDRAL` or of
    ``(quarter_turns, flip)`` pairs.
    """
    if tta is None or tta is False:
        return DIHEDRAL[:1]
    if tta is True:
        return DIHEDRAL
    if isinstance(tta, int | np.integer):
        if not 0 <= int(tta) <= 8:
            raise InputError(f"tta={tta}: give True/False, a number of transforms 1..8 or a list")
        return DIHEDRAL[: max(1, int(tta))]
    out = []
    for t in tta:
        if isinstance(t, int | np.integer) and 0 <= int(t) < 8:
            out.append(DIHEDRAL[int(t)])
        elif isinstance(t, tuple | list) and len(t) == 2 and int(t[0]) % 4 == t[0] and isinstance(t[1], bool):
            out.append((int(t[0]), bool(t[1])))
        else:
            raise InputError(
                f"tta entry {t!r} is not an index 0..7 or a (quarter_turns 0..3, flip bool) pair"
            )
    if not out:
        raise InputError("tta=[] selects no transform; use tta=False for plain prediction")
    return tuple(dict.fromkeys(out))


def _resolve_amp(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    if amp is None or amp is False or amp in ("off", "none", "no"):
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        return torch.float16
    raise InputError(f"amp={amp!r}: use 'auto', 'bf16', 'fp16', True or False")


# ------------------------------------------------------------------------------------- forward
def _run_batch(
    model: SegmentationNet,
    x: torch.Tensor,
    transforms: Sequence[tuple[int, bool]],
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> torch.Tensor:
    """Softmax probabilities ``(B, K, oy, ox)`` float32, averaged over the TTA transforms."""
    acc = None
    for k, flip in transforms:
        xi = torch.rot90(x, k, dims=(-2, -1)) if k else x
        if flip:
            xi = torch.flip(xi, dims=(-1,))
        xi = xi.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        ctx = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
        with ctx:
            logits = model(xi)
        p = torch.softmax(logits.float(), dim=1)
        if flip:
            p = torch.flip(p, dims=(-1,))
        if k:
            p = torch.rot90(p, -k, dims=(-2, -1))
        acc = p if acc is None else acc.add_(p)
    assert acc is not None
    if len(transforms) > 1:
        acc /= len(transforms)
    return acc


def iter_predict_tiled(
    model: SegmentationNet,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    tta: bool | int | Sequence = False,
    normalize_input: bool = True,
    amp: bool | str | None = "auto",
    channels_last: bool | None = None,
    memory_budget_bytes: int | None = None,
    optimize: bool = True,
) -> Generator[Progress, None, np.ndarray]:
    """Predict class probabilities tile by tile, yielding progress.

    Parameters
    ----------
    model : SegmentationNet
        Network (its config says the normalisation and channel count). It is moved to
        ``device``; its train/eval mode is restored afterwards.
    image : ndarray
        ``(Y, X)``, ``(C, Y, X)`` with ``channel_axis``, or stacks ``(Z, Y, X)`` /
        ``(Z, C, Y, X)`` predicted slice by slice; any integer, bool or float dtype.
    channel_axis : int or None
        Axis of ``image`` holding channels (required for multichannel models).
    tile_shape : int or (int, int), optional
        Output tile size ('valid' nets round it up to a valid size, 'same' nets to a multiple
        of ``2**depth``); chosen from the memory budget when omitted.
    batch_size : int, optional
        Tiles per forward pass (default: 1 on the CPU, as many as fit the budget on a GPU).
    device : str or torch.device
        'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:N', 'mps'.
    tta : bool, int or sequence
        Test-time augmentation: True = average over the 8 flips/rotations, an int = that many
        of them, or a list (see :func:`resolve_tta`). Each transform is undone before averaging.
    normalize_input : bool
        Apply the model's intensity normalisation (set False for pre-normalised float input).
    amp : 'auto', 'bf16', 'fp16', bool or None
        Mixed precision. 'auto' = bf16 (fp16 where unsupported) on CUDA, off elsewhere.
    channels_last : bool, optional
        Run convolutions in channels-last layout; default: on for CUDA; on the CPU on in the
        optimised graph (``optimize=True``, 1.1x faster there) and off for the plain module
        (where it measured 16 % slower, see docs/benchmarks-predict.md).
    memory_budget_bytes : int, optional
        Activation memory for one batch of tiles; default :func:`memory_budget`.
    optimize : bool, default True
        On the CPU (without AMP), run a U-Net through :class:`unet_core.models.unet_inference.FastUNet`, an
        inference-only graph computing the same function with faster kernels (batch norm
        folded, channels-last 3x3 convolutions unless ``channels_last=False``); equal to the
        plain module to float rounding (<= 1e-5). Other architectures, other devices or a
        failure to build it use the plain module. False: always the plain module.

    Yields
    ------
    Progress
        ``stage='predict'``, one record per batch of tiles, with an ETA.

    Returns
    -------
    ndarray of float32
        Class probabilities ``(n_classes, Y, X)`` for a 2D image, ``(Z, n_classes, Y, X)`` for
        stacks. Nothing is returned when the generator is closed early.

    Raises
    ------
    InputError
        Empty, non-numeric or non-finite images, wrong channel count or axes.
    """
    cfg = model.config
    stack, single = as_channel_stack(image, channel_axis, cfg.in_channels)
    transforms = resolve_tta(tta)
    dev = resolve_device(device)
    amp_dtype = _resolve_amp(amp, dev)
    use_cl = (dev.type == "cuda") if channels_last is None else bool(channels_last)
    n_slices, _, h, w = stack.shape
    if isinstance(tile_shape, int | np.integer):
        tile_shape = (int(tile_shape), int(tile_shape))
    if tile_shape is not None and (len(tile_shape) != 2 or min(tile_shape) < 1):
        raise InputError(f"tile_shape must be a positive int or (int, int), got {tile_shape!r}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")

    was_training = model.training
    model.to(dev).eval()
    net = _inference_net(model, dev, amp_dtype, channels_last) if optimize else None
    if net is not None:
        use_cl = False  # the optimised graph chooses its own layout
    elif use_cl:
        model.to(memory_format=torch.channels_last)
    try:
        tile = tuple(tile_shape) if tile_shape is not None else choose_tile_shape(
            model, (h, w), dev, batch_size=batch_size or 1, budget=memory_budget_bytes
        )
        plan = plan_tiles(model, (h, w), tile)
        batch = batch_size or choose_batch_size(model, plan, dev, budget=memory_budget_bytes)
        log.info(
            "predicting %s with %d tile(s) of %s -> %s per slice, batch %d, %d TTA transform(s) on %s",
            stack.shape, len(plan), plan.in_shape, plan.out_shape, batch, len(transforms), dev,
        )
        out = np.zeros((n_slices, cfg.n_classes, h, w), np.float32)
        t0 = time.perf_counter()
        done_slices = 0
        for z in range(n_slices):
            slab = stack[z]
            if normalize_input:
                lo, sc = normalization_stats(slab, cfg.normalization, channel_axis=0)
            else:
                check_image_values(slab)
                lo, sc = np.zeros(cfg.in_channels), np.ones(cfg.in_channels)
            while True:
                try:
                    yield from _predict_slice(
                        model if net is None else net, slab, lo, sc, out[z], plan, batch, dev, transforms, amp_dtype, use_cl,
                        z, n_slices, done_slices, t0,
                    )
                    break
                except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
                    if not is_out_of_memory(exc):
                        raise
                    plan, batch = _shrink(model, (h, w), plan, batch, dev, exc)
            done_slices += 1
    finally:
        if use_cl:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return out[0] if single else out


def _inference_net(model: SegmentationNet, dev: torch.device, amp_dtype, channels_last: bool | None):
    """The optimised CPU inference graph of ``model``, or None to use the module itself."""
    if dev.type != "cpu" or amp_dtype is not None:
        return None
    from .models.unet_inference import FastUNet
    from .models.unet import UNet

    if not isinstance(model, UNet) or type(model).forward is not UNet.forward or "forward" in vars(model):
        return None  # another architecture, or a forward replaced on a subclass or the instance
    try:
        return FastUNet(model, channels_last=True if channels_last is None else bool(channels_last)).eval()
    except Exception as exc:  # noqa: BLE001 - an unexpected layer layout: the plain module is exact
        log.debug("no optimised inference graph for %s (%s); using the module", type(model).__name__, exc)
        return None


def _shrink(model, hw, plan: TilePlan, batch: int, dev: torch.device, exc: BaseException) -> tuple[TilePlan, int]:
    """After an out-of-memory error: halve the batch, else the tile; raise when at the minimum."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if batch > 1:
        log.warning("out of memory with batch %d; retrying with batch %d", batch, batch // 2)
        return plan, batch // 2
    m = model.size_multiple
    new = tuple(max(m, o // 2) for o in plan.out_shape)
    new_plan = plan_tiles(model, hw, new)
    if new_plan.in_shape == plan.in_shape:
        raise InputError(
            f"out of memory on {dev} even with {plan.in_shape} tiles, batch 1; free memory, "
            "use a smaller model or device='cpu'"
        ) from exc
    log.warning("out of memory with tiles %s; retrying with %s", plan.in_shape, new_plan.in_shape)
    return new_plan, 1


def _predict_slice(
    model, slab, lo, sc, out, plan: TilePlan, batch: int, dev, transforms, amp_dtype, use_cl,
    z: int, n_slices: int, done_slices: int, t0: float,
) -> Iterator[Progress]:
    """Fill ``out`` (n_classes, Y, X) for one slice, yielding after each batch."""
    h, w = out.shape[-2:]
    weight = np.zeros((h, w), np.float32) if plan.window is not None else None
    if weight is not None:
        out[...] = 0.0
    n = len(plan)
    total = n * n_slices
    for i in range(0, n, batch):
        origins = plan.tiles[i : i + batch]
        x = np.stack([apply_normalization(crop_reflect(slab, (y, x), plan.in_shape), lo, sc) for y, x in origins])
        with torch.inference_mode():
            probs = _run_batch(model, torch.from_numpy(x).to(dev), transforms, amp_dtype, use_cl)
            probs = probs.cpu().numpy()
        if probs.shape[-2:] != plan.out_shape:
            raise InputError(
                f"the network returned {probs.shape[-2:]} for {plan.in_shape} tiles, expected "
                f"{plan.out_shape}; its stated geometry (border/output_size) is wrong"
            )
        for (y, x0), p in zip(origins, probs):
            _accumulate(out, weight, p, y, x0, plan)
        done = done_slices * n + min(i + batch, n)
        elapsed = time.perf_counter() - t0
        where = f"slice {z + 1}/{n_slices}, " if n_slices > 1 else ""
        yield Progress(
            "predict", done, total, f"{where}tile {min(i + batch, n)}/{n}",
            metrics={"tiles": done, "mpix_per_s": done / total * n_slices * h * w / 1e6 / max(elapsed, 1e-9)},
            eta=elapsed / done * (total - done),
        )
    if weight is not None:
        out /= weight


def _accumulate(out: np.ndarray, weight: np.ndarray | None, p: np.ndarray, y: int, x: int, plan: TilePlan) -> None:
    """Write (valid) or blend (same) one tile's probabilities ``p`` into ``out`` (K, Y, X)."""
    h, w = out.shape[-2:]
    y0, x0 = y + plan.border, x + plan.border  # image coordinates of the tile's first output pixel
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + plan.out_shape[0]), min(w, x0 + plan.out_shape[1])
    if ye <= ys or xe <= xs:
        return
    src = p[:, ys - y0 : ye - y0, xs - x0 : xe - x0]
    if weight is None:
        out[:, ys:ye, xs:xe] = src
        return
    win = plan.window[ys - y0 : ye - y0, xs - x0 : xe - x0]
    out[:, ys:ye, xs:xe] += src * win
    weight[ys:ye, xs:xe] += win


def predict_tiled(model: SegmentationNet, image: np.ndarray, **kwargs) -> np.ndarray:
    """Class probabilities of ``image``; see :func:`iter_predict_tiled` for the parameters.

    Returns
    -------
    ndarray of float32, ``(n_classes, Y, X)`` (or ``(Z, n_classes, Y, X)`` for stacks)
    """
    return run_to_end(iter_predict_tiled(model, image, **kwargs))


def predict_whole(model: SegmentationNet, image: np.ndarray, *, normalize_input: bool = True) -> np.ndarray:
    """Reference: one forward pass over the whole mirror-padded 2D image ``(Y, X)`` / ``(C, Y, X)``.

    The image is mirror-extended by ``border`` ('valid' nets, plus up to the next valid size) or
    by ``context`` ('same' nets, up to a multiple of ``2**depth``) and the output cropped back;
    :func:`predict_tiled` equals this to float precision. Memory grows with
    the image: use it for tests and benchmarks, not for large images.

    Returns
    -------
    ndarray of float32, ``(n_classes, Y, X)``
    """
    cfg = model.config
    stack, _ = as_channel_stack(image, 0 if np.ndim(image) == 3 else None, cfg.in_channels)
    slab = stack[0]
    lo, sc = (normalization_stats(slab, cfg.normalization, channel_axis=0) if normalize_input
              else (np.zeros(cfg.in_channels), np.ones(cfg.in_channels)))
    h, w = slab.shape[-2:]
    if model.border:
        b = model.border
        x = crop_reflect(slab, (-b, -b), (model.valid_input_size(h), model.valid_input_size(w)))
        off = 0
    else:  # padded net: mirror context on all sides, up to a multiple of 2**depth
        m = model.size_multiple
        off = model.context + m if model.context else 0
        x = crop_reflect(slab, (-off, -off), (-(-(h + 2 * off) // m) * m, -(-(w + 2 * off) // m) * m))
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            p = torch.softmax(model(torch.from_numpy(apply_normalization(x, lo, sc)[None]).to(dev)).float(), 1)
    finally:
        model.train(was_training)
    return p[0, :, off : off + h, off : off + w].cpu().numpy()
