"""The training loop as a generator: yields progress, stops cleanly, always leaves a checkpoint.

One step: draw source windows around annotated pixels (CPU, numpy), move them to the device,
augment the whole batch there with one ``grid_sample`` (:mod:`.augment`), forward/backward with
the configured loss (mixed precision on CUDA), optimizer step with warm-up + cosine learning rate.
Every ``val_every`` steps (and at the end) the held-out annotations are predicted tile by tile and
scored (:mod:`.validation`); the best-scoring weights go to ``<output>.best.pt``.

The checkpoint at ``output`` is the *last* state and carries everything needed to resume:
optimizer state, step, elapsed time, the random generators' states and the resolved config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import (
    TrainConfig,
    config_from_json,
    config_to_dict,
    config_to_json,
    resolve_train_config,
)
from ..device import is_out_of_memory, resolve_device
from ..errors import CheckpointError, InputError
from ..models import SegmentationNet, build_model
from ..progress import Progress
from .augment import Augmenter, source_size
from .data import (
    TileSampler,
    TrainingPair,
    fingerprint,
    infer_n_classes,
    prepare_pairs,
    split_validation,
)
from .losses import build_loss
from .validation import evaluate

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run produced.

    Attributes
    ----------
    checkpoint : Path or None
        The last state (None when no output path was given); resumable.
    model : SegmentationNet
        The trained network (last state, eval mode, CPU).
    steps : int
        Optimisation steps done (in total, including those before a resume).
    stopped : bool
        True when the run ended before ``iterations`` (time limit).
    metrics : dict
        Last training loss and, when validated, the last validation metrics.
    best_checkpoint : Path or None
        The weights with the best validation score (``<output stem>.best.pt``), if validated.
    """

    checkpoint: Path | None
    model: SegmentationNet
    steps: int
    stopped: bool
    metrics: dict[str, Any]
    best_checkpoint: Path | None = None


def best_path(output: str | os.PathLike) -> Path:
    """Where the best-validation checkpoint of a run writing ``output`` goes: ``NAME.best.pt``."""
    p = Path(output)
    return p.with_name(p.stem + ".best" + (p.suffix or ".pt"))


def _encoder(model: SegmentationNet) -> torch.nn.Module:
    for name in ("encoders", "encoder", "backbone"):
        part = getattr(model, name, None)
        if isinstance(part, torch.nn.Module):
            return part
    raise InputError(
        f"freeze_encoder: the {model.config.arch!r} network has no encoder to freeze; train without it"
    )


def _set_train_mode(model: SegmentationNet, frozen: torch.nn.Module | None) -> None:
    model.train()
    if frozen is not None:
        frozen.eval()  # frozen batch-norm layers keep their running statistics


class _Clock:
    def __init__(self, kind: str, offset: float = 0.0) -> None:
        self._now = time.process_time if kind == "process" else time.perf_counter
        self._t0 = self._now() - offset

    def elapsed(self) -> float:
        return self._now() - self._t0


def learning_rate(config: TrainConfig, step: int, elapsed: float) -> float:
    """Learning rate for (0-based) ``step``: linear warm-up, then cosine (or constant).

    The schedule's progress is ``max(step / iterations, elapsed / time_limit)``, so a
    time-budgeted run also ends at a low learning rate.
    """
    warm = min(config.warmup, config.iterations // 10)
    factor = (step + 1) / (warm + 1) if step < warm else 1.0
    if config.schedule == "cosine":
        p = step / config.iterations
        if config.time_limit:
            p = max(p, elapsed / config.time_limit)
        factor *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))
    return config.learning_rate * factor


def train(
    pairs: Sequence[TrainingPair],
    config: TrainConfig | None = None,
    *,
    output: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    val_pairs: Sequence[TrainingPair] | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train or fine-tune a network, yielding a :class:`Progress` record per step.

    Parameters
    ----------
    pairs : sequence of TrainingPair
        Annotated images (2D or stacks, any size, single or multichannel).
    config : TrainConfig, optional
        Options; 'auto' sizes are resolved for the device (:func:`resolve_train_config`).
    output : path, optional
        Last-state checkpoint, written at the end, at each validation, and when the generator is
        closed early; the best-validation weights go to :func:`best_path` ``(output)``.
    init_from : path, optional
        Checkpoint to fine-tune (its model config replaces ``config.model``); a fresh optimizer
        and schedule, e.g. to continue with new annotations.
    resume : path, optional
        Last-state checkpoint of an interrupted run to continue exactly where it stopped (its
        saved training config is used, except ``device``). Pass the same ``pairs``.
    val_pairs : sequence of TrainingPair, optional
        Explicit validation images; otherwise ``config.val_fraction`` of the annotations.

    Yields
    ------
    Progress
        stage 'train' per step (metrics 'loss', 'lr'), 'validate' after each validation
        (metrics 'val_*', 'best_checkpoint'), 'warning' after an out-of-memory retry, and
        'save' at the end (metrics 'checkpoint', 'best_checkpoint').

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    InputError
        Empty annotations, shape mismatches, impossible options.
    CheckpointError
        Unreadable ``init_from``/``resume`` checkpoints.
    """
    config = config or TrainConfig()
    state: dict[str, Any] | None = None
    if resume is not None and init_from is not None:
        raise InputError("give either resume (continue a run) or init_from (fine-tune), not both")
    torch.manual_seed(config.seed)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if not ckpt.train_state or "config" not in ckpt.train_state:
            raise CheckpointError(
                f"{resume}: has no training state to resume (a best-model or exported checkpoint); "
                "use init_from / --from to fine-tune it instead"
            )
        state = ckpt.train_state
        saved = config_from_json(TrainConfig, state["config"])
        config = replace(saved, device=config.device)
        model = ckpt.model
    elif init_from is not None:
        ckpt = load_checkpoint(init_from)
        model = ckpt.model
        config = replace(config, model=ckpt.config)
    else:
        if config.semantic:
            k = max(config.model.n_classes, infer_n_classes(list(pairs) + list(val_pairs or [])))
            if k != config.model.n_classes:
                config = replace(config, model=replace(config.model, n_classes=k, class_names=()))
        model = build_model(config.model)
    dev = resolve_device(config.device)
    config = resolve_train_config(config, dev.type)
    n_classes = config.model.n_classes
    loss_fn = build_loss(config.loss, n_classes=n_classes)

    slices = prepare_pairs(
        pairs, config.model, config.weights, region_margin=config.region_margin, semantic=config.semantic
    )
    if val_pairs:
        val = prepare_pairs(
            val_pairs, config.model, config.weights, region_margin=config.region_margin, semantic=config.semantic
        )
        train_slices = slices
    else:
        train_slices, val = split_validation(slices, config.val_fraction, config.seed)
    data_info = [
        {"name": p.name, "fingerprint": fingerprint(p.image, p.labels, p.mask), "shape": list(np.shape(p.image))}
        for p in pairs
    ]
    if state is not None and [d["fingerprint"] for d in state.get("data", [])] != [d["fingerprint"] for d in data_info]:
        log.warning("resuming with different training data than the interrupted run used")

    model.to(dev)
    frozen = _encoder(model) if config.freeze_encoder else None
    if frozen is not None:
        for p in frozen.parameters():
            p.requires_grad_(False)
    _set_train_mode(model, frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=config.learning_rate, momentum=0.99)
    else:
        opt = torch.optim.Adam(params, lr=config.learning_rate)
    use_amp = bool(config.amp) and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    rng = np.random.default_rng(config.seed)
    augmenter = Augmenter(config.augmentation, seed=config.seed + 1) if config.augment else None
    batch_size = int(config.batch_size)  # type: ignore[arg-type]
    tile = int(config.tile_size)  # type: ignore[arg-type]
    step, elapsed0, best_score, best_step = 0, 0.0, -math.inf, 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if use_amp and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        rng.bit_generator.state = json.loads(state["rng_numpy"])
        torch.set_rng_state(state["rng_torch"])
        if augmenter is not None and "rng_augment" in state:
            augmenter.generator.set_state(state["rng_augment"])
        step, elapsed0 = int(state["step"]), float(state["elapsed"])
        best_score, best_step = float(state.get("best_score", -math.inf)), int(state.get("best_step", 0))
        batch_size, tile = int(state.get("batch_size", batch_size)), int(state.get("tile_size", tile))

    def geometry(t: int) -> tuple[int, int, int]:
        in_size = model.valid_input_size(t) if model.border else -(-t // model.size_multiple) * model.size_multiple
        out_size = model.output_size(in_size)
        src = source_size(in_size, config.augmentation if augmenter else None)
        return in_size, out_size, src

    in_size, out_size, src = geometry(tile)
    # on accelerators the slices stay on the device (no host copies per step); on the CPU the
    # windows are cut with numpy (no padded copies of every slice in memory)
    sampler = TileSampler(train_slices, in_size, out_size, model.border, src, device=None if dev.type == "cpu" else dev)
    border = model.border
    best_file = best_path(output) if output is not None and val else None
    clock = _Clock(config.time_clock, elapsed0)
    wall0, step0 = time.perf_counter(), step
    loss_value, val_metrics = float("nan"), {}
    if state is not None:  # a resumed run reports the interrupted run's last numbers until it has its own
        last = ckpt.meta.get("metrics", {})
        loss_value = float(last.get("loss", math.nan))
        val_metrics = {k: v for k, v in last.items() if k.startswith("val_")}
    saved: Path | None = None
    completed = False

    def train_state() -> dict[str, Any]:
        ts: dict[str, Any] = {
            "config": config_to_json(config),
            "step": step,
            "elapsed": clock.elapsed(),
            "optimizer": opt.state_dict(),
            "rng_numpy": json.dumps(rng.bit_generator.state),
            "rng_torch": torch.get_rng_state(),
            "best_score": best_score if math.isfinite(best_score) else -1.0,
            "best_step": best_step,
            "batch_size": batch_size,
            "tile_size": tile,
            "data": data_info,
        }
        if augmenter is not None:
            ts["rng_augment"] = augmenter.generator.get_state()
        if use_amp:
            ts["scaler"] = scaler.state_dict()
        return ts

    def meta(kind: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "iterations": step,
            "best_step": best_step,
            "train_config": config_to_dict(config),
            "data": data_info,
            "validation": [s.name for s in val],
            "metrics": {"loss": loss_value, **val_metrics},
            "device": str(dev),
            "elapsed_s": round(clock.elapsed(), 2),
            "clock": config.time_clock,
            "init_from": str(init_from) if init_from else None,
            "resumed_from": str(resume) if resume else None,
            "torch_version": torch.__version__,
            "napari_unet_version": __version__,
        }

    def save_last() -> Path | None:
        if output is None or step == 0:
            return None
        was_training = model.training
        model.eval()
        try:
            return save_checkpoint(output, model, meta=meta("last"), train_state=train_state())
        finally:
            if was_training:
                _set_train_mode(model, frozen)

    total = config.iterations
    try:
        while step < total:
            lr = learning_rate(config, step, clock.elapsed())
            for group in opt.param_groups:
                group["lr"] = lr
            try:
                x, y, w = sampler.sample_tensors(rng, batch_size)
                x, y, w = x.to(dev), y.to(dev), w.to(dev)
                if augmenter is not None:
                    x, y, w = augmenter(x, y, w, in_size=in_size, border=border)
                else:
                    y = y.long()
                    if border:
                        y = y[:, border:-border, border:-border]
                        w = w[:, border:-border, border:-border]
                autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
                with autocast:
                    logits = model(x)
                loss = loss_fn(logits.float(), y, w)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                opt.zero_grad(set_to_none=True)
                x = y = w = logits = loss = None  # free the failed step's tensors
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                if batch_size > 1:
                    batch_size //= 2
                else:
                    smaller = max(16, (tile * 3 // 4) // model.size_multiple * model.size_multiple)
                    if smaller >= tile:
                        raise InputError(
                            f"out of memory on {dev} even with one {tile}-pixel tile per step; train a "
                            "smaller model (fewer base channels) or use device 'cpu'"
                        ) from None
                    tile = smaller
                    in_size, out_size, src = geometry(tile)
                    sampler.set_sizes(in_size, out_size, border, src)
                msg = f"out of memory on {dev}: continuing with batch size {batch_size}, tile {tile} px"
                log.warning(msg)
                yield Progress("warning", step, total, msg, metrics={"batch_size": batch_size, "tile_size": tile})
                continue
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise InputError(
                    f"the training loss became {loss_value} at step {step}; lower the learning rate "
                    "(e.g. --lr 1e-4) or check the image for extreme values"
                )
            elapsed = clock.elapsed()
            rate = (time.perf_counter() - wall0) / max(1, step - step0)
            eta = rate * (total - step)
            shown = total  # planned steps; for a time budget, the steps it will allow
            if config.time_limit is not None:
                left = max(0.0, config.time_limit - elapsed)
                budget_rate = (elapsed - elapsed0) / max(1, step - step0)
                shown = min(total, step + int(left / max(budget_rate, 1e-9)))
                eta = min(eta, left * rate / max(budget_rate, 1e-9))
            time_up = config.time_limit is not None and elapsed >= config.time_limit
            yield Progress(
                "train", step, shown, f"step {step}/{shown} loss {loss_value:.4f}",
                metrics={"loss": loss_value, "lr": lr}, eta=eta,
            )
            last = step >= total or time_up
            if val and (step % config.val_every == 0 or last):
                val_metrics = evaluate(model, val, loss_fn, device=dev, semantic=config.semantic)
                _set_train_mode(model, frozen)
                score = val_metrics["val_miou" if config.semantic else "val_foreground_iou"]
                extra: dict[str, Any] = {}
                if score > best_score:
                    best_score, best_step = score, step
                    if best_file is not None:
                        model.eval()
                        save_checkpoint(best_file, model, meta=meta("best"))
                        _set_train_mode(model, frozen)
                        extra["best_checkpoint"] = str(best_file)
                if not last:
                    save_last()  # a crash loses at most val_every steps
                text = ", ".join(f"{k[4:]} {v:.3f}" for k, v in val_metrics.items())
                yield Progress(
                    "validate", step, shown, f"validation at step {step}: {text}",
                    metrics={**val_metrics, "best_step": best_step, **extra}, eta=eta,
                )
            if time_up:
                break
        completed = True
    finally:
        # also runs when the consumer closes the generator (Stop): save a clean checkpoint
        model.eval()
        saved = save_last()
        model.cpu()
    stopped = step < total
    metrics = {"loss": loss_value, **val_metrics}
    best = best_file if best_file is not None and best_file.exists() and best_step else None
    if completed:
        yield Progress(
            "save", step, step, f"saved {saved}" if saved else "done",
            metrics={"checkpoint": str(saved) if saved else None, "best_checkpoint": str(best) if best else None},
        )
    return TrainResult(saved, model, step, stopped, metrics, best)
