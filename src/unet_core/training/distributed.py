"""Training across processes and GPUs: PyTorch's DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc-per-node N -m unet_core.cli train ...`` starts N copies of the command; each
finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment (:func:`detect`) and joins
the process group in :func:`session` (backend gloo on the CPU, nccl on CUDA with device
``cuda:LOCAL_RANK``). :meth:`Session.attach` then adapts a
:class:`~unet_core.training.trainer.Trainer`:

- the optimisation step runs through a ``DistributedDataParallel`` wrapper (``trainer.net``;
  its construction broadcasts rank 0's weights), while ``trainer.model`` stays the plain network
  that is validated and saved, so no ``module.`` prefix reaches a checkpoint;
- every rank but 0 draws its own windows and augmentations (generators seeded from
  ``(seed, rank, step)``); rank 0 keeps the run's own generators, so one process is a plain run
  and rank 0 resumes exactly;
- only rank 0 validates and writes checkpoints (the best/last decisions are its own);
- the loss, Stop and the time limit are agreed by all-reducing them each step (:class:`Sync`),
  so every rank stops on the same step, and a NaN loss on any rank ends all of them.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) :func:`session` yields a one-process
session whose methods do nothing, and :class:`Sync` makes no collective calls.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import InputError

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger(__name__)

#: how long a rank waits in a collective (e.g. while rank 0 validates) before giving up
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a ``torchrun`` job.

    Attributes
    ----------
    rank : int
        0 .. world_size - 1 over all nodes; rank 0 logs, validates and saves.
    world_size : int
        Number of processes in the job.
    local_rank : int
        Rank on this node: the GPU index a CUDA process uses.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def detect(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """The ``torchrun`` environment of this process, or None when not launched by it.

    Raises
    ------
    InputError
        ``WORLD_SIZE`` set but ``RANK``/``LOCAL_RANK`` missing or not integers.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        info = RankInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise InputError(
            "WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers; start "
            "distributed training with torchrun, or unset WORLD_SIZE for one process"
        ) from None
    if not 0 <= info.rank < info.world_size:
        raise InputError(f"RANK {info.rank} is outside 0..WORLD_SIZE-1 ({info.world_size}); start with torchrun")
    return info


def rank_device(device: str, info: RankInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for 'cuda'/'auto' with GPUs, else the CPU.

    Raises
    ------
    InputError
        A device other than CPU or CUDA, or fewer GPUs on this node than processes.
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise InputError(
            f"distributed training runs on the CPU (gloo) or CUDA GPUs (nccl), not {dev.type}; "
            "give --device cpu or --device cuda"
        )
    if info.local_rank >= torch.cuda.device_count():
        raise InputError(
            f"rank {info.rank} has LOCAL_RANK {info.local_rank} but this node has "
            f"{torch.cuda.device_count()} GPUs; give --nproc-per-node at most the number of GPUs"
        )
    if dev.index not in (None, info.local_rank):
        log.warning("under torchrun each process uses cuda:LOCAL_RANK; --device %s is ignored", device)
    return torch.device("cuda", info.local_rank)


class Sync:
    """Agreement between the ranks: numbers and flags all-reduced over the process group.

    Parameters
    ----------
    device : torch.device, optional
        Where the reduced tensors live (the rank's device: nccl reduces CUDA tensors). None: one
        process, no collective calls (every method returns its argument).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    @property
    def ranks(self) -> int:
        """Number of processes agreeing (1 without a process group)."""
        return 1 if self.device is None else dist.get_world_size()

    def _sum(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        return bool(flag) if self.device is None else self._sum(float(bool(flag))) > 0

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (NaN when it is NaN on any rank)."""
        return value if self.device is None else self._sum(value) / self.ranks

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics, which DDP only broadcasts
        before each forward pass, so each rank's last batch leaves its own)."""
        if self.device is not None:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def no_recovery(self, what: str) -> None:
        """Refuse a per-rank recovery (e.g. a smaller batch after out of memory) between ranks.

        Raises
        ------
        InputError
            When there are several ranks: one cannot change its step alone.
        """
        if self.device is not None:
            raise InputError(
                f"{what}; under torchrun one rank cannot shrink its batch alone: give a smaller "
                "--batch-size or --tile-size"
            )


@dataclass
class Session:
    """This process's part in a training job (see :func:`session`).

    Attributes
    ----------
    info : RankInfo
        Rank, world size, local rank (0, 1, 0 for one process).
    device : str
        The device to train on: ``cuda:LOCAL_RANK`` or ``cpu`` under torchrun; otherwise the
        device asked for, unchanged.
    sync : Sync
        Agreement between ranks (no collectives for one process).
    """

    info: RankInfo = field(default_factory=RankInfo)
    device: str = "auto"
    sync: Sync = field(default_factory=Sync)

    @property
    def distributed(self) -> bool:
        """Whether this process is part of a process group."""
        return self.sync.device is not None

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0 (always for one process)."""
        return self.info.is_main

    @contextlib.contextmanager
    def main_only(
        self,
        prepare: Callable[[contextlib.ExitStack], None],
        report: Callable[[Exception], None] | None = None,
    ) -> Iterator[None]:
        """Run ``prepare(stack)`` on rank 0 alone (checks; locks it enters into ``stack`` are
        held for the ``with`` block); its failure ends every rank.

        Under torchrun rank 0 first calls ``report(failure)`` (e.g. prints it: before any other
        rank exits, as torchrun then ends the rest), then every rank exits with status 2
        (``SystemExit(2)``); without ``report`` rank 0 re-raises the failure. For one process
        this is ``prepare`` in an ``ExitStack`` (failures raised).
        """
        with contextlib.ExitStack() as stack:
            failure: Exception | None = None
            if self.is_main:
                try:
                    prepare(stack)
                except Exception as exc:  # handed on below, after every rank knows
                    failure = exc
                    if report is not None and self.distributed:
                        report(exc)
            if self.sync.any(failure is not None):
                if failure is not None and (report is None or not self.distributed):
                    raise failure
                raise SystemExit(2)
            yield

    def attach(self, trainer: Trainer) -> None:
        """Make ``trainer`` one rank of the job (see the module's description); no-op alone."""
        if not self.distributed:
            return
        rank = self.info.rank
        if rank:
            _reseed(trainer, rank)
            trainer.output = trainer.best_file = None  # rank 0 alone saves ...
            trainer.val_slices = []  # ... and validates
        device_ids = [trainer.device.index] if trainer.device.type == "cuda" else None
        trainer.net = torch.nn.parallel.DistributedDataParallel(trainer.model, device_ids=device_ids)
        trainer.sync = self.sync
        trainer.provenance["world_size"] = self.info.world_size


def _reseed(trainer: Trainer, rank: int) -> None:
    """Own generators for ``rank`` > 0 (sampling, augmentation, torch), from (seed, rank, step)."""
    seq = np.random.SeedSequence([trainer.config.seed, rank, trainer.step])
    augment_seed, torch_seed = (int(s) for s in seq.generate_state(2))
    trainer.rng = np.random.default_rng(seq)
    if trainer.augmenter is not None:
        trainer.augmenter.generator.manual_seed(augment_seed)
    torch.manual_seed(torch_seed)


@contextlib.contextmanager
def session(device: str = "auto", *, environ: Mapping[str, str] | None = None) -> Iterator[Session]:
    """Join the ``torchrun`` job of this process for the ``with`` block (or run alone).

    Under torchrun: the process group (gloo for the CPU, nccl for CUDA, this rank's GPU made
    current) is initialised from torchrun's environment, and destroyed at the end; a block that
    ends without an error first waits for every rank (a barrier), so no rank exits before rank 0
    has saved. Without torchrun: a one-process :class:`Session` with ``device`` unchanged.

    Raises
    ------
    InputError
        A device distributed training cannot use, more processes than GPUs on a node.
    """
    info = detect(environ)
    if info is None:
        yield Session(device=device)
        return
    dev = rank_device(device, info)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size, timeout=TIMEOUT)
    log.info("rank %d of %d on %s (%s)", info.rank, info.world_size, dev, backend)
    try:
        yield Session(info, str(dev), Sync(dev))
        dist.barrier()
    finally:
        dist.destroy_process_group()
