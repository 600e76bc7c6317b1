"""The trainer's stateless parts: where a run starts, its data, optimizer, precision and pace.

:class:`~unet_core.training.trainer.Trainer` assembles them once at set-up; each is a plain
function or a small object that can be tested on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint, validate_train_state
from ..config import TrainConfig, config_from_json
from ..errors import InputError
from ..models import SegmentationNet, build_model
from ..sources import load_trainable
from .data import (
    PreparedSlice,
    TrainingPair,
    fingerprint,
    infer_n_classes,
    prepare_pairs,
    split_validation,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Start:
    """Where a run starts.

    Attributes
    ----------
    model : SegmentationNet
        The network to train (fresh, fine-tuned from ``init_from``, or resumed).
    config : TrainConfig
        The run's options ('auto' sizes not yet resolved).
    state : dict or None
        The resumed checkpoint's ``train_state`` (None for a new run).
    last_metrics : dict
        The resumed run's last numbers (reported until the run has its own).
    """

    model: SegmentationNet
    config: TrainConfig
    state: dict[str, Any] | None = None
    last_metrics: dict[str, Any] = field(default_factory=dict)


def starting_point(
    pairs: Sequence[TrainingPair],
    val_pairs: Sequence[TrainingPair] | None,
    config: TrainConfig,
    *,
    init_from: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> Start:
    """The model and config a run starts from: new, fine-tuned (``init_from``) or resumed.

    Seeds torch with ``config.seed`` first, so a new model's initial weights follow the seed.

    Raises
    ------
    InputError
        Both ``init_from`` and ``resume`` given.
    CheckpointError
        Unreadable checkpoints, or a ``resume`` file without training state.
    """
    if resume is not None and init_from is not None:
        raise InputError("give either resume (continue a run) or init_from (fine-tune), not both")
    torch.manual_seed(config.seed)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        validate_train_state(ckpt.train_state, resume)
        saved = config_from_json(TrainConfig, ckpt.train_state["config"])
        return Start(
            ckpt.model,
            replace(saved, device=config.device),
            ckpt.train_state,
            ckpt.meta.get("metrics", {}),
        )
    if init_from is not None:
        ckpt = load_trainable(init_from)  # a checkpoint, a built-in name or our bioimage.io package
        if not config.semantic and config.target == "three_class" and ckpt.config.n_classes < 3:
            raise InputError(
                f"{init_from} outputs {ckpt.config.n_classes} classes but target='three_class' "
                "needs 3 (background/interior/boundary): train it with target='two_class', or "
                "start from a three-class model or from scratch"
            )
        return Start(ckpt.model, replace(config, model=ckpt.config))
    if config.semantic:
        k = max(config.model.n_classes, infer_n_classes(list(pairs) + list(val_pairs or [])))
        if k != config.model.n_classes:
            config = replace(config, model=replace(config.model, n_classes=k, class_names=()))
    elif config.target == "three_class" and config.model.n_classes < 3:
        config = replace(config, model=replace(config.model, n_classes=3, class_names=()))
    return Start(build_model(config.model), config)


def prepare_data(
    pairs: Sequence[TrainingPair], val_pairs: Sequence[TrainingPair] | None, config: TrainConfig
) -> tuple[list[PreparedSlice], list[PreparedSlice], list[dict[str, Any]]]:
    """Training slices, validation slices and the data's provenance (name, fingerprint, shape).

    The validation slices are ``val_pairs`` when given, otherwise ``config.val_fraction`` of the
    annotations (:func:`~unet_core.training.data.split_validation`).
    """

    def prepare(some: Sequence[TrainingPair]) -> list[PreparedSlice]:
        return prepare_pairs(
            some,
            config.model,
            config.weights,
            region_margin=config.region_margin,
            semantic=config.semantic,
            voxel_size=config.voxel_size,
            region_rule=config.region_rule,
            sparse_ring=config.sparse_ring,
            target_kind=config.target,
        )

    slices = prepare(pairs)
    if val_pairs:
        train_slices, val = slices, prepare(val_pairs)
    else:
        train_slices, val = split_validation(slices, config.val_fraction, config.seed)
    info = [
        {
            "name": p.name,
            "fingerprint": fingerprint(p.image, p.labels, p.mask),
            "shape": list(np.shape(p.image)),
        }
        for p in pairs
    ]
    return train_slices, val, info


def freeze_encoder(model: SegmentationNet) -> torch.nn.Module:
    """Stop the gradients of ``model``'s encoder (contracting path); returns the encoder.

    Raises
    ------
    InputError
        The architecture has no encoder part.
    """
    for name in ("encoders", "encoder", "backbone"):
        part = getattr(model, name, None)
        if isinstance(part, torch.nn.Module):
            for p in part.parameters():
                p.requires_grad_(False)
            return part
    raise InputError(
        f"freeze_encoder: the {model.config.arch!r} network has no encoder to freeze; "
        "train without it"
    )


def set_train_mode(model: SegmentationNet, frozen: torch.nn.Module | None) -> None:
    """Training mode, except a frozen encoder, whose batch-norm layers keep their statistics."""
    model.train()
    if frozen is not None:
        frozen.eval()


def build_optimizer(
    model: SegmentationNet, config: TrainConfig, extra: Sequence[torch.nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.99 (the paper), over the parameters that train (the model's,
    then ``extra``: a training-only head's)."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.99)
    return torch.optim.Adam(params, lr=config.learning_rate)


@dataclass(frozen=True)
class Precision:
    """Mixed precision, chosen once per run: an autocast context and a gradient scaler.

    Without mixed precision the context is :func:`contextlib.nullcontext` and the scaler a
    disabled ``GradScaler`` (``scale`` returns the loss unchanged, ``step`` calls
    ``optimizer.step()``), so the training step has no branches.
    """

    autocast: Callable[[], AbstractContextManager[Any]]
    scaler: torch.amp.GradScaler

    @classmethod
    def choose(cls, amp: bool | None, device: torch.device) -> Precision:
        """float16 autocast with loss scaling when ``amp`` and the device is CUDA; else float32."""
        if amp and device.type == "cuda":
            return cls(
                partial(torch.autocast, "cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
            )
        return cls(contextlib.nullcontext, torch.amp.GradScaler("cuda", enabled=False))

    @property
    def mixed(self) -> bool:
        """Whether mixed precision is on."""
        return self.scaler.is_enabled()


class Clock:
    """Seconds a run has trained: wall-clock or CPU time of this process, from ``offset``."""

    def __init__(self, kind: str, offset: float = 0.0) -> None:
        self._now = time.process_time if kind == "process" else time.perf_counter
        self._t0 = self._now() - offset

    def elapsed(self) -> float:
        """Seconds since the run started (including ``offset``)."""
        return self._now() - self._t0


class Pace:
    """The ETA and the step count the progress bar shows.

    Parameters
    ----------
    total : int
        Planned steps.
    time_limit : float or None
        The run's time budget (seconds on its :class:`Clock`).
    step0, elapsed0 : int, float
        Steps done and clock seconds at the start of this session (non-zero when resumed).
    """

    def __init__(
        self, total: int, time_limit: float | None, step0: int = 0, elapsed0: float = 0.0
    ) -> None:
        self.total, self.time_limit = total, time_limit
        self.step0, self.elapsed0 = step0, elapsed0
        self.wall0 = time.perf_counter()

    def estimate(self, step: int, elapsed: float) -> tuple[int, float]:
        """``(shown total, ETA in seconds)`` after ``step`` steps at ``elapsed`` clock seconds.

        With a time budget the shown total is the number of steps the budget allows at the
        pace so far (never more than planned).
        """
        done = max(1, step - self.step0)
        rate = (time.perf_counter() - self.wall0) / done
        eta = rate * (self.total - step)
        shown = self.total
        if self.time_limit is not None:
            left = max(0.0, self.time_limit - elapsed)
            budget_rate = (elapsed - self.elapsed0) / done
            shown = min(self.total, step + int(left / max(budget_rate, 1e-9)))
            eta = min(eta, left * rate / max(budget_rate, 1e-9))
        return shown, eta


def all_finite(model: torch.nn.Module) -> bool:
    """Whether every floating-point weight and buffer of ``model`` is finite (no NaN/inf)."""
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


def slices_of_volumes(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3D batches as batches of 2D slices for the (2D) losses: logits ``(N, K, Z, Y, X)`` ->
    ``(N*Z, K, Y, X)``, target/weight ``(N, Z, Y, X)`` -> ``(N*Z, Y, X)``; 2D batches unchanged.

    The pixel-wise losses (weighted cross-entropy, Dice over the batch) are sums over all
    voxels, so they are the same on the slices as on the volumes.
    """
    if logits.ndim != 5:
        return logits, target, weight
    n, k, z, y, x = logits.shape
    return (logits.permute(0, 2, 1, 3, 4).reshape(n * z, k, y, x),
            target.reshape(n * z, y, x), weight.reshape(n * z, y, x))


def tile_sizes(model: SegmentationNet, tile: int, tile_z: int | None) -> tuple[Any, Any, Any]:
    """Network input size, output size and border of a training tile, per spatial axis.

    2D: ints (square tiles of output edge ``tile``). 3D: tuples (z, y, x) with output depth
    ``tile_z`` and edge ``tile`` in y and x, each axis sized by its own geometry
    (:meth:`~unet_core.models.base.SegmentationNet.axis_geometry`).
    """
    if model.config.spatial_dims == 2:
        geoms, wanted = [model], [tile]
    else:
        geoms, wanted = [model.axis_geometry(i) for i in range(3)], [tile_z or tile, tile, tile]
    ins, outs, borders = [], [], []
    for g, t in zip(geoms, wanted):
        n_in = g.valid_input_size(t) if model.border else -(-t // g.size_multiple) * g.size_multiple
        ins.append(n_in)
        outs.append(g.output_size(n_in))
        borders.append(g.border)
    if model.config.spatial_dims == 2:
        return ins[0], outs[0], borders[0]
    return tuple(ins), tuple(outs), tuple(borders)


def shrunk_tile(tile: int, size_multiple: int) -> int:
    """The next smaller training tile after running out of memory with one tile per step.

    Three quarters of ``tile``, rounded down to the network's size multiple, at least 16 pixels.
    """
    return max(16, (tile * 3 // 4) // size_multiple * size_multiple)


def log_data_change(state: dict[str, Any], data_info: list[dict[str, Any]]) -> None:
    """Warn when a resumed run gets other training data than the interrupted run had."""
    before = [d["fingerprint"] for d in state.get("data", [])]
    if before != [d["fingerprint"] for d in data_info]:
        log.warning("resuming with different training data than the interrupted run used")
