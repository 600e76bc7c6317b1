"""Training: a :class:`Trainer` with one method per part, and the :func:`train` generator.

One step (:meth:`Trainer.advance`): the learning rate from the schedule (:func:`learning_rate`),
a batch of source windows around annotated pixels, moved to the device and augmented there with
one ``grid_sample`` (:meth:`Trainer.next_batch`, :mod:`.augment`), then one optimisation step
(:meth:`Trainer.train_step`: forward/backward with the configured loss, mixed precision on CUDA
as a context chosen once at set-up). Out of memory halves the batch, then shrinks the tile
(:meth:`Trainer.recover_from_oom`). Every ``val_every`` steps (and at the end) the held-out
annotations are predicted tile by tile and scored (:meth:`Trainer.validate`, :mod:`.validation`);
the best-scoring weights go to ``<output>.best.pt``.

The checkpoint at ``output`` is the *last* state and carries everything needed to resume
(:meth:`Trainer.train_state`): optimizer state, step, elapsed time, the random generators' states
and the resolved config. It is written at each validation, every ``save_every`` seconds
(:meth:`Trainer.save_if_due`, with or without validation), at the end (all steps done, time limit,
Stop) and when the generator is closed; always atomically (a killed run leaves the previous file); never after a failure (an exception, a non-finite loss)
and never with non-finite weights, so a failed run does not replace a good file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from .. import __version__
from ..checkpoint import save_checkpoint
from ..config import (
    PostprocessConfig,
    TrainConfig,
    config_to_dict,
    config_to_json,
    resolve_train_config,
)
from ..device import is_out_of_memory, resolve_device
from ..errors import InputError
from ..models import SegmentationNet
from ..pipeline import POSTPROCESS_KEY
from ..progress import Progress
from .augment import Augmenter, source_size
from .blind_spot import BlindSpotHead
from .data import TileSampler, TrainingPair
from .distributed import Session, Sync
from .losses import build_loss
from .parts import (
    Clock,
    Pace,
    Precision,
    all_finite,
    build_optimizer,
    freeze_encoder,
    log_data_change,
    prepare_data,
    set_train_mode,
    shrunk_tile,
    slices_of_volumes,
    starting_point,
    tile_sizes,
)
from .tune import ValidationOutput, fit_postprocess
from .validation import evaluate

log = logging.getLogger(__name__)

#: why a run ended: all steps done, the time limit reached, or stopped by the user
StopReason = Literal["completed", "time_limit", "user"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class StopSignal(Protocol):
    """Anything with ``is_set()``: a ``threading.Event``, a ``multiprocessing.Event``, ..."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run produced.

    Attributes
    ----------
    checkpoint : Path or None
        The last state (None when no output path was given or nothing was trained); resumable.
    model : SegmentationNet
        The trained network (last state, eval mode, CPU).
    steps : int
        Optimisation steps done (in total, including those before a resume).
    stop_reason : {'completed', 'time_limit', 'user'}
        All ``iterations`` done, the time limit reached, or stopped with ``train(stop=...)``.
    metrics : dict
        Last training loss and, when validated, the last validation metrics.
    best_checkpoint : Path or None
        The weights with the best validation score (``<output stem>.best.pt``), if validated.
    """

    checkpoint: Path | None
    model: SegmentationNet
    steps: int
    stop_reason: StopReason
    metrics: dict[str, Any]
    best_checkpoint: Path | None = None

    @property
    def stopped(self) -> bool:
        """True when the run ended before ``iterations`` (time limit or user)."""
        return self.stop_reason != "completed"


def best_path(output: str | os.PathLike) -> Path:
    """Where the best-validation checkpoint of a run writing ``output`` goes: ``NAME.best.pt``."""
    p = Path(output)
    return p.with_name(p.stem + ".best" + (p.suffix or ".pt"))


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


class Trainer:
    """One training run: its set-up and one method per part; :func:`train` drives it.

    Parameters
    ----------
    pairs, config, output, init_from, resume, val_pairs, distributed
        As for :func:`train`.

    Attributes
    ----------
    config : TrainConfig
        The resolved options ('auto' sizes chosen for the device; a resumed run's saved config).
    model : SegmentationNet
        The network, on ``device``, in training mode between steps.
    step : int
        Optimisation steps done (including those before a resume).
    batch_size, tile : int
        The current batch size and output tile edge (smaller after out-of-memory retries).
    in_size, out_size, border : int (2D) or tuple of int (3D: z, y, x)
        The network's input and output tile sizes for ``tile`` (and ``tile_z``), and its border.
    loss_value : float
        The last training loss.
    val_metrics : dict
        The last validation metrics ('val_*').
    net : torch.nn.Module
        What a step runs: ``model``, or its ``DistributedDataParallel`` wrapper under torchrun.
    sync : Sync
        Agreement of loss, Stop and time limit between torchrun ranks (no-op for one process).
    """

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        config: TrainConfig | None = None,
        *,
        output: str | os.PathLike | None = None,
        init_from: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
        val_pairs: Sequence[TrainingPair] | None = None,
        distributed: Session | None = None,
    ) -> None:
        start = starting_point(
            pairs, val_pairs, config or TrainConfig(), init_from=init_from, resume=resume
        )
        self.device = resolve_device(start.config.device)
        self.config = config = resolve_train_config(start.config, self.device.type)
        self.loss_fn = build_loss(config.loss, n_classes=config.model.n_classes)
        self.train_slices, self.val_slices, self.data_info = prepare_data(pairs, val_pairs, config)
        self.model = start.model.to(self.device)
        self.frozen = freeze_encoder(self.model) if config.freeze_encoder else None
        set_train_mode(self.model, self.frozen)
        # Noise2Void head on the shared features (None = segmentation only)
        self.blind_spot = BlindSpotHead(self.model) if config.self_supervised > 0 else None
        extra = self.blind_spot.parameters() if self.blind_spot is not None else []
        self.optimizer = build_optimizer(self.model, config, extra)
        self.precision = Precision.choose(config.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.rng = np.random.default_rng(config.seed)
        self.augmenter = (
            Augmenter(config.augmentation, seed=config.seed + 1) if config.augment else None
        )
        # resolved above: no longer 'auto' (None)
        self.batch_size = int(config.batch_size)  # type: ignore[arg-type]
        self.tile = int(config.tile_size)  # type: ignore[arg-type]
        self.tile_z = config.tile_z  # 3D models (resolved); None for 2D
        self.step, self.best_score, self.best_step = 0, -math.inf, 0
        self.clock = Clock(config.time_clock)
        self.sampler: TileSampler | None = None  # made once the tile size is known
        self.loss_value, self.val_metrics = math.nan, {}
        self.val_outputs: list[ValidationOutput] = []  # the last validation's predictions
        self.postprocess: dict[str, Any] | None = None  # fitted at the end (meta["postprocess"])
        if start.state is not None:
            log_data_change(start.state, self.data_info)
            self.load_train_state(start.state, start.last_metrics)
        self.output = Path(output) if output is not None else None
        self.best_file = best_path(output) if output is not None and self.val_slices else None
        self.provenance = {
            "init_from": str(init_from) if init_from else None,
            "resumed_from": str(resume) if resume else None,
        }
        self._resize(self.tile)
        # on accelerators the slices stay on the device (no host copies per step); on the CPU the
        # windows are cut with numpy (no padded copies of every slice in memory)
        self.sampler = TileSampler(
            self.train_slices,
            self.in_size,
            self.out_size,
            self.border,
            self.source,
            device=None if self.device.type == "cpu" else self.device,
        )
        self.pace = Pace(config.iterations, config.time_limit, self.step, self.clock.elapsed())
        self.last_save = time.monotonic()  # wall clock of the last write of ``output``
        self.net: torch.nn.Module = self.model  # what a step runs: the model or its DDP wrapper
        self.sync = Sync()  # agreement between torchrun ranks; no-op for one process
        if distributed is not None:
            if self.blind_spot is not None and distributed.distributed:  # its head's gradients are not averaged over ranks
                raise InputError(
                    "self-supervised training does not run under torchrun yet: set "
                    "--self-supervised 0, or train in one process"
                )
            distributed.attach(self)

    # -- new annotations -----------------------------------------------------------------------
    def replace_data(
        self, pairs: Sequence[TrainingPair], val_pairs: Sequence[TrainingPair] | None = None
    ) -> int:
        """Train on ``pairs`` from the next step on, keeping model, optimizer, step and clock.

        The slices are prepared as at set-up (all annotations of ``pairs``, not a difference to
        the old ones) and the sampler is rebuilt at the current tile geometry. Used by live
        training (:mod:`.live`) when the user has painted.

        Returns
        -------
        int
            Annotated pixels the sampler draws training windows from.

        Raises
        ------
        InputError
            As :func:`train` for unusable annotations; the old data is then kept.
        """
        slices, val, info = prepare_data(pairs, val_pairs, self.config)
        sampler = TileSampler(
            slices, self.in_size, self.out_size, self.model.border, self.source,
            device=None if self.device.type == "cpu" else self.device,
        )
        self.train_slices, self.val_slices, self.data_info, self.sampler = slices, val, info, sampler
        return int(sum(len(c) for c in sampler.candidates))

    # -- one step ------------------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """A training batch on the device: ``(x, y, w)``.

        Returns
        -------
        x : Tensor, float32, shape (N, C, in_size, in_size)
            Augmented network inputs.
        y : Tensor, int64, shape (N, out_size, out_size)
            Class ids.
        w : Tensor, float32, shape (N, out_size, out_size)
            Pixel weights (0 = not annotated).
        """
        # with the self-supervised head, half the windows lie anywhere in the images
        anywhere = self.batch_size // 2 if self.blind_spot is not None else 0
        x, y, w = self.sampler.sample_tensors(self.rng, self.batch_size, anywhere=anywhere)
        x, y, w = x.to(self.device), y.to(self.device), w.to(self.device)
        b = self.border
        if self.augmenter is not None:
            return self.augmenter(x, y, w, in_size=self.in_size, border=b)
        y = y.long()
        if isinstance(b, tuple):  # 3D: per-axis borders
            crop = (slice(None), *(slice(bi, n - bi) for bi, n in zip(b, y.shape[1:])))
            y, w = y[crop], w[crop]
        elif b:
            y, w = y[:, b:-b, b:-b], w[:, b:-b, b:-b]
        return x, y, w

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on ``batch`` (see :meth:`next_batch`) at the current learning rate.

        Forward (under the run's autocast), the loss, backward (scaled), optimizer step. Counts
        nothing and checks nothing: :meth:`advance` does. Returns ``{'loss': float}`` (the
        total), plus 'denoise' (the blind-spot loss) with the self-supervised head.
        """
        x, y, w = batch
        head, numbers = self.blind_spot, {}
        if head is not None:
            x, spots = head.mask(x, self.border)
        with self.precision.autocast():
            logits = self.net(x)
        loss = self.loss_fn(*slices_of_volumes(logits.float(), y, w))
        if head is not None:
            denoise = head.loss(spots)
            loss = loss + self.config.self_supervised * denoise
            numbers["denoise"] = float(denoise.detach())
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        scaler.step(self.optimizer)
        scaler.update()
        return {"loss": float(loss.detach()), **numbers}

    def advance(self) -> dict[str, float]:
        """Set the scheduled learning rate, train one step on a new batch, count it.

        Returns
        -------
        dict
            'loss' and 'lr' of the step.

        Raises
        ------
        InputError
            The loss became NaN or infinite (the run cannot continue).
        RuntimeError
            Out of memory (see :meth:`recover_from_oom`) or another torch error.
        """
        lr = learning_rate(self.config, self.step, self.clock.elapsed())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        numbers = self.train_step(self.next_batch())
        numbers["loss"] = self.sync.mean(numbers["loss"])  # over the ranks: NaN on one stops all
        self.step += 1
        self.loss_value = numbers["loss"]
        if not math.isfinite(self.loss_value):
            raise InputError(
                f"the training loss became {self.loss_value} at step {self.step}; lower the "
                "learning rate (e.g. --lr 1e-4) or check the image for extreme values"
            )
        return {**numbers, "lr": lr}

    # -- out of memory -------------------------------------------------------------------------
    def recover_from_oom(self, exc: RuntimeError) -> Progress:
        """After ``exc`` ended a step: halve the batch, or at batch size 1 shrink the tile.

        Returns the 'warning' record to show; re-raises ``exc`` when it is no out-of-memory error.

        Raises
        ------
        InputError
            Out of memory even with one tile of the smallest size.
        """
        if not is_out_of_memory(exc):
            raise exc
        self.sync.no_recovery(f"out of memory on {self.device} with batch size {self.batch_size}")
        traceback.clear_frames(exc.__traceback__)  # free the failed step's tensors
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size > 1:
            self.batch_size //= 2
        else:
            smaller = shrunk_tile(self.tile, self.model.size_multiple)
            if smaller >= self.tile:
                raise InputError(
                    f"out of memory on {self.device} even with one {self.tile}-pixel tile per "
                    "step; train a smaller model (fewer base channels) or use device 'cpu'"
                ) from None
            self._resize(smaller)
        msg = (
            f"out of memory on {self.device}: continuing with batch size {self.batch_size}, "
            f"tile {self.tile} px"
        )
        log.warning(msg)
        return Progress(
            "warning",
            self.step,
            self.config.iterations,
            msg,
            metrics={"batch_size": self.batch_size, "tile_size": self.tile},
        )

    def _resize(self, tile: int) -> None:
        """Use output tiles of edge ``tile``: the network's input/output sizes and the sampler's."""
        if self.tile_z is not None and tile < self.tile:  # out of memory: shrink z alike
            self.tile_z = max(1, self.tile_z * tile // self.tile)
        self.in_size, self.out_size, self.border = tile_sizes(self.model, tile, self.tile_z)
        self.tile = tile
        self.source = source_size(self.in_size, self.config.augmentation if self.augmenter else None)
        if self.sampler is not None:
            self.sampler.set_sizes(self.in_size, self.out_size, self.border, self.source)

    # -- progress ------------------------------------------------------------------------------
    def time_up(self, elapsed: float) -> bool:
        """Whether the time limit is reached at ``elapsed`` clock seconds."""
        return self.config.time_limit is not None and elapsed >= self.config.time_limit

    def validate(self) -> dict[str, Any]:
        """Score the held-out annotations; on a new best score save the best weights.

        Returns
        -------
        dict
            The 'val_*' metrics, 'best_step', and 'best_checkpoint' when the best file was
            written now.
        """
        self.val_outputs = []
        self.val_metrics = evaluate(
            self.model,
            self.val_slices,
            self.loss_fn,
            device=self.device,
            semantic=self.config.semantic,
            outputs=self.val_outputs,
        )
        set_train_mode(self.model, self.frozen)
        score = self.val_metrics["val_miou" if self.config.semantic else "val_foreground_iou"]
        extra: dict[str, Any] = {}
        if score > self.best_score:
            self.best_score, self.best_step = score, self.step
            if self.best_file is not None and self._save(self.best_file, "best") is not None:
                extra["best_checkpoint"] = str(self.best_file)
        return {**self.val_metrics, "best_step": self.best_step, **extra}

    # -- state for resume ----------------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        """What resuming needs: config, step, clock, optimizer, random states, geometry, data."""
        state: dict[str, Any] = {
            "config": config_to_json(self.config),
            "step": self.step,
            "elapsed": self.clock.elapsed(),
            "optimizer": self.optimizer.state_dict(),
            "rng_numpy": json.dumps(self.rng.bit_generator.state),
            "rng_torch": torch.get_rng_state(),
            "best_score": self.best_score if math.isfinite(self.best_score) else -1.0,
            "best_step": self.best_step,
            "batch_size": self.batch_size,
            "tile_size": self.tile,
            "data": self.data_info,
        }
        if self.augmenter is not None:
            state["rng_augment"] = self.augmenter.generator.get_state()
        if self.precision.mixed:
            state["scaler"] = self.precision.scaler.state_dict()
        if self.blind_spot is not None:
            state["blind_spot"] = self.blind_spot.state_dict()
        return state

    def load_train_state(
        self, state: dict[str, Any], last_metrics: dict[str, Any] | None = None
    ) -> None:
        """Continue from :meth:`train_state` of an interrupted run of the same config and data.

        ``last_metrics`` (the checkpoint's ``meta['metrics']``) are reported until this run has
        numbers of its own.
        """
        self.optimizer.load_state_dict(state["optimizer"])
        if self.precision.mixed and "scaler" in state:
            self.precision.scaler.load_state_dict(state["scaler"])
        self.rng.bit_generator.state = json.loads(state["rng_numpy"])
        torch.set_rng_state(state["rng_torch"])
        if self.augmenter is not None and "rng_augment" in state:
            self.augmenter.generator.set_state(state["rng_augment"])
        if self.blind_spot is not None and "blind_spot" in state:
            self.blind_spot.load_state_dict(state["blind_spot"])
        self.step = int(state["step"])
        self.best_score = float(state.get("best_score", -math.inf))
        self.best_step = int(state.get("best_step", 0))
        self.batch_size = int(state.get("batch_size", self.batch_size))
        self._resize(int(state.get("tile_size", self.tile)))
        elapsed = float(state["elapsed"])
        self.clock = Clock(self.config.time_clock, elapsed)
        self.pace = Pace(self.config.iterations, self.config.time_limit, self.step, elapsed)
        last = last_metrics or {}
        self.loss_value = float(last.get("loss", math.nan))
        self.val_metrics = {k: v for k, v in last.items() if k.startswith("val_")}

    def meta(self, kind: str) -> dict[str, Any]:
        """Provenance written into checkpoints of ``kind`` 'last' or 'best'."""
        return {
            "kind": kind,
            "iterations": self.step,
            "best_step": self.best_step,
            "train_config": config_to_dict(self.config),
            "data": self.data_info,
            "validation": [s.name for s in self.val_slices],
            "metrics": self.metrics(),
            "device": str(self.device),
            "elapsed_s": round(self.clock.elapsed(), 2),
            "clock": self.config.time_clock,
            **self.provenance,
            "torch_version": torch.__version__,
            "napari_unet_version": __version__,
            **({POSTPROCESS_KEY: self.postprocess} if self.postprocess else {}),
        }

    def metrics(self) -> dict[str, Any]:
        """The last training loss and validation metrics."""
        return {"loss": self.loss_value, **self.val_metrics}

    # -- saving --------------------------------------------------------------------------------
    def save_last(self) -> Path | None:
        """Write the last, resumable state to ``output``.

        Returns the path, or None without output, without steps or with non-finite weights.
        """
        if self.output is None or self.step == 0:
            return None
        self.last_save = time.monotonic()
        return self._save(self.output, "last")

    def save_if_due(self) -> Path | None:
        """:meth:`save_last` when ``config.save_every`` seconds have passed since the last write.

        Returns the path when it wrote the file, else None (not due, disabled with 0, no output).
        """
        every = self.config.save_every
        if not every or time.monotonic() - self.last_save < every:
            return None
        return self.save_last()

    def _save(self, path: Path, kind: str) -> Path | None:
        if not all_finite(self.model):
            log.error(
                "not saving %s: the weights are not finite (NaN/inf); the file keeps what it held",
                path,
            )
            return None
        was_training = self.model.training
        self.model.eval()
        try:
            meta = self.meta(kind)
            state = self.train_state() if kind == "last" else None
            return save_checkpoint(path, self.model, meta=meta, train_state=state)
        finally:
            if was_training:
                set_train_mode(self.model, self.frozen)

    def finish(self) -> Path | None:
        """End a run worth keeping: :meth:`tune_postprocess`, :meth:`save_last`, :meth:`release`."""
        self.model.eval()
        try:
            self.tune_postprocess()
            return self.save_last()
        finally:
            self.release()

    def tune_postprocess(self) -> None:
        """Fit the post-processing on the last validation's predictions (instance mode).

        Stores it in :attr:`postprocess` (written to ``meta["postprocess"]``); when the last
        validation was also the best, the best checkpoint is rewritten with it.
        """
        three = self.config.target == "three_class" and not self.config.semantic
        start = PostprocessConfig(seeds="interior") if three else PostprocessConfig()
        result = fit_postprocess(self.val_outputs, start) if self.val_outputs else None
        self.val_outputs = []
        if result is None:
            self.postprocess = config_to_dict(start) if three else None
            return
        self.postprocess = config_to_dict(result.postprocess)
        if self.best_file is not None and self.best_step == self.step and self.best_file.exists():
            self._save(self.best_file, "best")

    def release(self) -> None:
        """Hand the model back in eval mode on the CPU (device memory freed, no training hooks)."""
        if self.blind_spot is not None:
            self.blind_spot.close()
            self.blind_spot = None
        self.model.eval()
        self.model.cpu()

    def result(self, stop_reason: StopReason, checkpoint: Path | None) -> TrainResult:
        """The run's :class:`TrainResult` (after :meth:`finish`)."""
        best = self.best_file
        found = best if best is not None and best.exists() and self.best_step else None
        return TrainResult(checkpoint, self.model, self.step, stop_reason, self.metrics(), found)


def train(
    pairs: Sequence[TrainingPair],
    config: TrainConfig | None = None,
    *,
    stop: StopSignal | None = None,
    **sources: Any,
) -> Generator[Progress, None, TrainResult]:
    """Train or fine-tune a network, yielding a :class:`Progress` record per step.

    Parameters
    ----------
    pairs : sequence of TrainingPair
        Annotated images (2D or stacks, any size, single or multichannel).
    config : TrainConfig, optional
        Options; 'auto' sizes are resolved for the device (:func:`resolve_train_config`).
    **sources
        Keyword-only, passed to :class:`Trainer`:

    output : path, optional
        Last-state checkpoint, written at each validation and when the run ends or the generator
        is closed (not after a failure); the best-validation weights go to :func:`best_path`.
    init_from : path, optional
        Checkpoint to fine-tune (its model config replaces ``config.model``); a fresh optimizer
        and schedule, e.g. to continue with new annotations.
    resume : path, optional
        Last-state checkpoint of an interrupted run to continue exactly where it stopped (its
        saved training config is used, except ``device``). Pass the same ``pairs``.
    val_pairs : sequence of TrainingPair, optional
        Explicit validation images; otherwise ``config.val_fraction`` of the annotations.
    distributed : Session, optional
        This process's part in a ``torchrun`` job (:func:`.distributed.session`): DDP steps,
        per-rank sampling, rank 0 alone validates and saves.
    stop : object with ``is_set()``, optional
        E.g. a ``threading.Event`` or ``multiprocessing.Event``: once set, the run ends before
        its next step, saves, and returns a result with ``stop_reason='user'``.

    Yields
    ------
    Progress
        stage 'train' per step (metrics 'loss', 'lr'), 'validate' after each validation
        (metrics 'val_*', 'best_step', 'best_checkpoint'), 'warning' after an out-of-memory
        retry, and 'save' at the end (metrics 'checkpoint', 'best_checkpoint').

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    InputError
        Empty annotations, shape mismatches, impossible options, a non-finite loss.
    CheckpointError
        Unreadable ``init_from``/``resume`` checkpoints.
    """
    trainer = Trainer(pairs, config, **sources)
    try:
        reason = yield from _steps(trainer, stop)
    except GeneratorExit:  # closed between two steps: the state is consistent, keep it
        trainer.finish()
        raise
    except BaseException:  # a failed run never replaces the file at ``output``
        trainer.release()
        raise
    trainer.sync.share_buffers(trainer.model)  # torchrun: rank 0's batch-norm statistics
    result = trainer.result(reason, trainer.finish())
    yield _saved(result)
    return result


def _saved(result: TrainResult) -> Progress:
    """The last record of a run: what it saved."""
    saved, best = result.checkpoint, result.best_checkpoint
    return Progress(
        "save",
        result.steps,
        result.steps,
        f"saved {saved}" if saved else "done",
        metrics={
            "checkpoint": str(saved) if saved else None,
            "best_checkpoint": str(best) if best else None,
        },
    )


def _steps(trainer: Trainer, stop: StopSignal | None) -> Generator[Progress, None, StopReason]:
    """The loop of :func:`train`: step, report, validate, until done, out of time or stopped."""
    config, total = trainer.config, trainer.config.iterations
    while trainer.step < total:
        if trainer.sync.any(stop is not None and stop.is_set()):
            return "user"
        try:
            numbers = trainer.advance()
        except RuntimeError as exc:
            yield trainer.recover_from_oom(exc)  # re-raises anything but out-of-memory
            continue
        elapsed = trainer.clock.elapsed()
        shown, eta = trainer.pace.estimate(trainer.step, elapsed)
        time_up = trainer.sync.any(trainer.time_up(elapsed))
        yield Progress(
            "train",
            trainer.step,
            shown,
            f"step {trainer.step}/{shown} loss {trainer.loss_value:.4f}",
            metrics=numbers,
            eta=eta,
        )
        last = trainer.step >= total or time_up
        if trainer.val_slices and (trainer.step % config.val_every == 0 or last):
            metrics = trainer.validate()
            if not last:
                trainer.save_last()  # a crash loses at most val_every steps
            text = ", ".join(f"{k[4:]} {v:.3f}" for k, v in trainer.val_metrics.items())
            yield Progress(
                "validate",
                trainer.step,
                shown,
                f"validation at step {trainer.step}: {text}",
                metrics=metrics,
                eta=eta,
            )
        if not last:
            trainer.save_if_due()  # ... and at most save_every seconds, validated or not
        if time_up:
            break
    return "completed" if trainer.step >= total else "time_limit"
