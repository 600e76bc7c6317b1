"""Tile and batch sizes from a memory budget (free GPU memory, or a share of the RAM on the CPU)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..device import is_out_of_memory
from ..memory import available_ram
from ..models.base import SegmentationNet
from .splitter import TilePlan

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

_CONV_TYPES = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
               torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def activation_bytes_per_pixel(model: SegmentationNet) -> float:
    """Bytes of float32 activations per input pixel of one forward pass (an upper bound).

    Measured once per model (and cached on it) by summing the outputs of all leaf modules
    (except in-place ones) during a forward pass on a small cubic tile of
    ``model.config.spatial_dims`` axes; the inference-mode peak is lower because intermediate
    maps are freed as the pass proceeds.
    """
    cached = getattr(model, "_unet_act_bpp", None)
    if cached is not None:
        return cached
    d = model.config.spatial_dims
    k, floor = (8, 64) if d == 2 else (2, 16)  # a 3D probe of 8 multiples would take gigabytes
    geoms = [model.axis_geometry(i) for i in range(d)]
    sizes = [g.valid_input_size(k * g.size_multiple) if model.border else max(k * g.size_multiple, floor)
             for g in geoms]
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
            model(torch.zeros(1, model.config.in_channels, *sizes, device=dev))
    except Exception as exc:  # noqa: BLE001 - out of memory already: assume every map at full size
        if not is_out_of_memory(exc):
            raise
        seen = {i: 4 * math.prod(sizes) * mod.out_channels for i, mod in enumerate(model.modules())
                if isinstance(mod, _CONV_TYPES)}
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # 'valid' maps shrink through the net: per input pixel would underestimate large tiles (whose
    # input and output sizes are close), per output pixel overestimate them; take the middle
    n_out = geoms[-1].output_size(sizes[-1])
    bpp = max(64.0, sum(seen.values()) / (math.prod(sizes[:-1]) * n_out))
    object.__setattr__(model, "_unet_act_bpp", bpp)
    return bpp


def memory_budget(device: torch.device) -> int:
    """Bytes of activations one batch of tiles may use on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * GPU_BUDGET_FRACTION)
    return int(min(available_ram() / 4, CPU_BUDGET_CAP))


def choose_tile_shape(
    model: SegmentationNet,
    spatial_shape: Sequence[int],
    device: torch.device,
    *,
    batch_size: int = 1,
    budget: int | None = None,
) -> tuple[int, ...]:
    """Output tile shape that fits ``budget`` bytes of activations for ``batch_size`` tiles.

    Cubic tiles (square in 2D) of the largest edge the budget allows (capped at
    :data:`CPU_MAX_TILE` / :data:`GPU_MAX_TILE`), never larger than the image needs; one entry
    per axis of ``spatial_shape``.
    """
    if budget is None:
        budget = memory_budget(device)
    bpp = activation_bytes_per_pixel(model)
    pixels = max(budget, 1) / (bpp * max(1, batch_size))
    d = len(spatial_shape)
    edge_in = int(math.sqrt(pixels) if d == 2 else pixels ** (1.0 / d))
    cap = CPU_MAX_TILE if device.type == "cpu" else GPU_MAX_TILE
    extra = 2 * (model.border or model.context)
    m = model.size_multiple
    edge = max(m, min(cap, edge_in - extra))
    out = []
    for n in spatial_shape:
        # as few tiles as the edge allows, then split the axis evenly among them
        k = max(1, math.ceil(n / edge))
        t = -(-math.ceil(n / k) // m) * m if k > 1 else n
        out.append(max(1, min(t, n)))
    return tuple(out)


def choose_batch_size(
    model: SegmentationNet, plan: TilePlan, device: torch.device, *, budget: int | None = None
) -> int:
    """Tiles per forward pass: 1 on the CPU (no gain there); on a GPU as many as fit the budget."""
    if device.type == "cpu":
        return 1
    if budget is None:
        budget = memory_budget(device)
    per_tile = activation_bytes_per_pixel(model)
    for s in plan.in_shape:
        per_tile *= s
    return int(max(1, min(MAX_BATCH, len(plan), budget // max(per_tile, 1))))
