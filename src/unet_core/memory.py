"""Memory estimates made before allocating, so a too-large job is refused with the figure.

Torch-free: the image estimates use only shapes and dtypes (read from file metadata before the
pixels), the model estimate builds the network on torch's 'meta' device (no storage).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import InputError

#: working memory per image pixel (bytes, excluding the image itself) of the whole-image arrays of
#: prediction: normalised input and class probabilities (float32), their overlap weights,
#: foreground probability, labels and the watershed's distance map and markers. Rough upper
#: bound measured on 2D images (a 20000^2 image had used 15.6 GB when it failed).
PREDICT_BYTES_PER_PIXEL = 40.0
#: per pixel of training data: normalised image, labels, weight map, region mask and their crops
TRAIN_BYTES_PER_PIXEL = 24.0


def available_ram() -> int:
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
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable figure ('9.6 GB', '512 MB')."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_image_memory(
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    channels: int = 1,
    work_bytes_per_pixel: float = 0.0,
    what: str = "read",
    name: str = "the image",
    available: int | None = None,
) -> None:
    """Refuse an image whose pixels plus working arrays would not fit into the available RAM.

    Parameters
    ----------
    shape : tuple of int
        The array's shape (channels included).
    dtype : numpy dtype
        Its dtype.
    channels : int
        Size of its channel axis (1 without one); ``work_bytes_per_pixel`` counts per pixel
        without channels.
    work_bytes_per_pixel : float
        Working memory of the task per (channel-less) pixel, e.g. :data:`PREDICT_BYTES_PER_PIXEL`.
    what : str
        The task, for the message ('read', 'predict', 'train on').
    name : str
        The file, for the message.
    available : int, optional
        Bytes available (default: :func:`available_ram`).

    Raises
    ------
    InputError
        With the estimate, the available memory and the largest square crop that would fit.
    """
    n = math.prod(int(s) for s in shape)
    per_pixel = np.dtype(dtype).itemsize * channels + work_bytes_per_pixel
    need = n / max(channels, 1) * per_pixel
    available = available_ram() if available is None else available
    if need <= available:
        return
    side = int(math.sqrt(available / per_pixel)) if per_pixel > 0 else 0
    raise InputError(
        f"{name}: to {what} a {'x'.join(map(str, shape))} {np.dtype(dtype)} image needs about "
        f"{format_bytes(need)} of memory, but {format_bytes(available)} is available; crop it into "
        f"parts of at most about {side} x {side} pixels (per slice) and process them one by one"
    )


def training_memory(model_config, tile_size: int, batch_size: int) -> int:
    """Bytes one training step of a new network needs (estimate, before building it).

    Parameters (float32) four times (weights, gradients, two Adam moments) plus the activations of
    one batch of tiles kept for the backward pass, twice (their gradients). The network is built
    on torch's 'meta' device, which allocates nothing.

    Parameters
    ----------
    model_config : ModelConfig
    tile_size : int
        Output-tile edge in pixels.
    batch_size : int
        Tiles per step.
    """
    import torch

    from .models import build_model

    try:
        with torch.device("meta"):
            net = build_model(model_config)
    except (RuntimeError, OverflowError) as exc:  # sizes beyond what torch can even describe
        raise InputError(
            f"this network is too large to build ({exc}); choose a smaller depth, base channels or width"
        ) from None
    net.eval()  # batch norm of one tile at a 1x1 map would refuse to run in training mode
    n_params = sum(p.numel() for p in net.parameters())
    m = net.size_multiple
    n_in = net.valid_input_size(tile_size) if net.border else -(-tile_size // m) * m
    total = [0]

    def hook(_mod, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    handles = [mod.register_forward_hook(hook) for mod in net.modules() if not list(mod.children())]
    try:
        with torch.no_grad():
            net(torch.empty(1, model_config.in_channels, n_in, n_in, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return int(16 * n_params + 8 * total[0] * batch_size)


#: allocations from this size up get their own memory map, returned to the system when freed
MMAP_THRESHOLD = 1 << 20


def release_freed_memory() -> None:
    """Give memory freed by the allocator back to the operating system (glibc).

    Called after each block of block-wise work. On first use it also fixes glibc's mmap threshold
    at :data:`MMAP_THRESHOLD` (``mallopt(M_MMAP_THRESHOLD)``): by default glibc raises that
    threshold each time a large buffer is freed, so that later block-sized arrays (a few MB) are
    carved from its per-thread heaps, which fragment and keep the process's RSS creeping up
    over thousands of blocks (a 16384^2 block-wise prediction: post-processing RSS 0.53 -> 0.69 GB
    with the default, flat at 0.38-0.46 GB with the fixed threshold; ``benchmarks/
    bench_cli_huge.py``). Then ``malloc_trim(0)`` returns the heaps' free pages. A no-op where
    glibc is absent.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
            _LIBC.malloc_trim  # noqa: B018 - both or neither
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
