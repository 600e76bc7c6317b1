"""The training loop as a generator: yields progress, stops cleanly, always leaves a checkpoint."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import TrainConfig, config_to_dict
from ..device import resolve_device
from ..models import SegmentationNet, build_model
from ..progress import Progress
from .data import PreparedSlice, TrainingPair, prepare_pairs, sample_tile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run produced.

    Attributes
    ----------
    checkpoint : Path or None
        The saved model (None when no output path was given).
    model : SegmentationNet
        The trained network (eval mode, CPU).
    steps : int
        Optimisation steps done.
    stopped : bool
        True when the run was stopped early (Stop button, time limit).
    metrics : dict
        Last training loss and, when validated, validation metrics.
    """

    checkpoint: Path | None
    model: SegmentationNet
    steps: int
    stopped: bool
    metrics: dict[str, Any]


def train(
    pairs: Sequence[TrainingPair],
    config: TrainConfig | None = None,
    *,
    output: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train or fine-tune a network, yielding a :class:`Progress` record per step.

    Parameters
    ----------
    pairs : sequence of TrainingPair
        Annotated images.
    config : TrainConfig, optional
        Options; defaults suit a laptop CPU.
    output : path, optional
        Checkpoint file written at the end, and when the generator is closed early.
    init_from : path, optional
        Checkpoint to fine-tune (its model config replaces ``config.model``).

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if init_from is not None:
        ckpt = load_checkpoint(init_from)
        model = ckpt.model
        config = replace(config, model=ckpt.config)
    else:
        model = build_model(config.model)
    slices = prepare_pairs(pairs, config.model, config.weights, region_margin=config.region_margin)
    dev = resolve_device(config.device)
    model.to(dev).train()
    in_size = model.valid_input_size(config.tile_size) if model.border else config.tile_size
    out_size = model.output_size(in_size)
    if config.freeze_encoder and hasattr(model, "encoders"):
        for p in model.encoders.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.learning_rate, momentum=0.99)
    else:
        opt = torch.optim.Adam(params, lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.iterations) / config.iterations))
    )
    t0 = time.perf_counter()
    step, loss_value, stopped = 0, float("nan"), True
    try:
        for step in range(1, config.iterations + 1):
            x, y, w = _batch(rng, slices, config.batch_size, in_size, out_size, model.border)
            x, y, w = x.to(dev), y.to(dev), w.to(dev)
            logits = model(x)
            loss = weighted_cross_entropy(logits, y, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
            elapsed = time.perf_counter() - t0
            yield Progress(
                "train", step, config.iterations, f"step {step}/{config.iterations} loss {loss_value:.4f}",
                metrics={"loss": loss_value, "lr": sched.get_last_lr()[0]},
                eta=elapsed / step * (config.iterations - step),
            )
            if config.time_limit is not None and elapsed >= config.time_limit:
                break
        stopped = step < config.iterations
    finally:
        # also runs when the consumer closes the generator (Stop): save a clean checkpoint
        model.eval().cpu()
        ckpt_path = None
        if output is not None and step > 0:
            meta = {
                "iterations": step,
                "train_config": config_to_dict(config),
                "data": [s.name for s in slices],
                "metrics": {"loss": loss_value},
            }
            ckpt_path = save_checkpoint(output, model, meta=meta)
    return TrainResult(ckpt_path, model, step, stopped, {"loss": loss_value})


def _batch(rng, slices: list[PreparedSlice], n: int, in_size: int, out_size: int, border: int):
    xs, ys, ws = [], [], []
    for _ in range(n):
        sl = slices[int(rng.integers(len(slices)))]
        img, tgt, wt = sample_tile(rng, sl, in_size, out_size, border)
        xs.append(img)
        ys.append(tgt)
        ws.append(wt)
    return (
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.stack(ys)),
        torch.from_numpy(np.stack(ws)),
    )


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted per pixel (the paper's energy function).

    ``logits`` (N, K, H, W), ``target`` (N, H, W) int64, ``weight`` (N, H, W) float32; pixels
    with weight 0 (outside the annotated region) contribute neither loss nor gradient. Normalised
    by the total weight.
    """
    ce = F.cross_entropy(logits, target, reduction="none")
    return (ce * weight).sum() / weight.sum().clamp_min(1e-8)
