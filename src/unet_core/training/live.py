"""Live training: the trainer keeps running while the user paints (a corrective loop).

What ilastik's live update is for random forests and RootPainter's corrective loop is for CNNs:
a :class:`LiveSession` runs the real :class:`~unet_core.training.trainer.Trainer` step after
step and, between two steps, reads messages from an inbox:

- :class:`Snapshot`: the whole annotation (labels, optional region mask) as it is now. All
  annotations are replayed (:meth:`Trainer.replace_data`), not only the latest stroke; the first
  snapshot with painted objects creates the trainer.
- :class:`PredictRequest`: a window of the image (the viewer's field of view). It is predicted
  with the current weights through the overlap tiler, on a crop of the window plus the net's
  context (mirrored only at the image edge), and answered with a :class:`LivePrediction`:
  probabilities and an uncertainty map (where painting helps most). Only the newest request
  is answered; older ones are out of view anyway.
- :class:`Pause` / :class:`Resume`: training steps stop and start again (predictions still run).

Stop is the ``stop`` event of :mod:`unet_core.processes`: the session saves the last state
(atomically, only when steps were trained) and returns a :class:`LiveResult`.
:func:`live_training` is the session as a job for :class:`~unet_core.processes.DuplexJob`
(its own spawned process); the generator yields :class:`~unet_core.progress.Progress` records
and :class:`LivePrediction` results.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..arrays import as_channel_stack
from ..config import ModelConfig, TrainConfig
from ..errors import InputError
from ..progress import Progress

log = logging.getLogger(__name__)

#: seconds the session waits for a message when it has nothing to do (paused, no annotations)
IDLE_WAIT_S = 0.25

Window = tuple[tuple[int, int], ...]

#: defaults of a live session: a small U-Net and small batches, so a step takes a fraction of a
#: second on a laptop CPU and new strokes count within seconds
LIVE_DEFAULTS = TrainConfig(
    model=ModelConfig(depth=3, base_channels=16), batch_size=2, tile_size=96
)


@dataclass(frozen=True)
class Snapshot:
    """The whole annotation as it is now.

    Attributes
    ----------
    labels : ndarray of int, shape S (the image's spatial shape, e.g. (Y, X) or (Z, Y, X))
        Painted labels (0 = not painted), uint16/uint32 keeps the message small.
    mask : ndarray of bool, shape S, optional
        The annotated region (see :class:`~unet_core.training.data.TrainingPair`).
    image : ndarray, optional
        A new image (same layout as the session's); None keeps the current one.
    snapshot_id : int
        Counter of the sender, echoed in the records.
    sent_at : float
        ``time.time()`` when it was sent (the session reports how long it took to arrive).
    """

    labels: np.ndarray
    mask: np.ndarray | None = None
    image: np.ndarray | None = None
    snapshot_id: int = 0
    sent_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PredictRequest:
    """Predict a window of one image (or of slice ``index`` of a stack).

    Attributes
    ----------
    window : tuple of (start, stop) per spatial axis, e.g. ((y0, y1), (x0, x1))
        Clipped to the image.
    index : int or None
        Slice of a stack (None for a single image).
    request_id : int
        Counter of the sender, echoed in the answer.
    """

    window: Window
    index: int | None = None
    request_id: int = 0


@dataclass(frozen=True)
class Pause:
    """Stop training steps until :class:`Resume` (prediction requests are still answered)."""


@dataclass(frozen=True)
class Resume:
    """Continue training after :class:`Pause`."""


@dataclass(frozen=True)
class LivePrediction:
    """The answer to a :class:`PredictRequest`.

    Attributes
    ----------
    probabilities : ndarray of float32, shape (n_classes, h, w)
        Class probabilities of the (clipped) window.
    uncertainty : ndarray of float32, shape (h, w)
        In [0, 1], 1 where the model is least sure (:func:`uncertainty`).
    window : tuple of (start, stop) per spatial axis
        The window predicted (the request's, clipped to the image).
    index : int or None
        The slice of a stack.
    request_id : int
        The request's id.
    step : int
        Training steps done when the weights were used.
    snapshot_id : int
        The last snapshot training had received by then (-1: none).
    seconds : float
        Time the prediction took.
    """

    probabilities: np.ndarray
    uncertainty: np.ndarray
    window: Window
    index: int | None
    request_id: int
    step: int
    snapshot_id: int
    seconds: float

    @property
    def foreground(self) -> np.ndarray:
        """``1 - P(background)``, float32 of shape (h, w)."""
        return (1.0 - self.probabilities[0]).astype(np.float32)


@dataclass(frozen=True)
class LiveResult:
    """What a stopped session produced.

    Attributes
    ----------
    checkpoint : Path or None
        The last state (None without output or without training steps).
    model : SegmentationNet or None
        The network (eval mode, CPU); None when nothing was trained or loaded.
    steps : int
        Training steps done.
    snapshots : int
        Snapshots applied.
    """

    checkpoint: Path | None
    model: Any
    steps: int
    snapshots: int


class Inbox(Protocol):
    """A queue: ``queue.Queue`` or a ``multiprocessing`` queue."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...


class StopSignal(Protocol):
    """Anything with ``is_set()``."""

    def is_set(self) -> bool: ...


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Where the model is unsure: 1 at a coin toss, 0 when certain.

    Two classes: ``1 - |2 p - 1|`` of the foreground probability ``p``; more classes: the
    entropy divided by ``log(n_classes)``.

    Parameters
    ----------
    probabilities : ndarray of float, shape (n_classes, *spatial)

    Returns
    -------
    ndarray of float32, shape spatial, values in [0, 1]
    """
    p = np.asarray(probabilities, np.float32)
    if p.shape[0] == 2:
        return (1.0 - np.abs(2.0 * (1.0 - p[0]) - 1.0)).astype(np.float32)
    q = np.clip(p, 1e-7, 1.0)
    return (-(q * np.log(q)).sum(axis=0) / math.log(p.shape[0])).clip(0, 1).astype(np.float32)


def context_crop(
    shape: Sequence[int], window: Window, context: int, multiple: int
) -> tuple[tuple[slice, ...], tuple[slice, ...], Window]:
    """The crop to predict for ``window``: the window plus ``context`` pixels, inside the image.

    The crop starts on a multiple of ``multiple`` (the network's pooling grid stays that of the
    whole image), so a 'valid' net gives exactly its whole-image values in the window; beyond
    the image edge the tiler mirrors, as for the whole image.

    Parameters
    ----------
    shape : sequence of int
        The image's spatial shape.
    window : tuple of (start, stop) per axis
        The wanted window (clipped to ``shape``).
    context, multiple : int
        Pixels of context per side, and the network's ``size_multiple``.

    Returns
    -------
    crop : tuple of slice
        The crop of the image.
    inner : tuple of slice
        The window inside the crop.
    window : tuple of (start, stop)
        The clipped window.

    Raises
    ------
    InputError
        An empty window (outside the image).
    """
    if len(window) != len(shape):
        raise InputError(f"the window {window} needs one (start, stop) per image axis {tuple(shape)}")
    crop, inner, clipped = [], [], []
    for (a, b), n in zip(window, shape):
        a, b = max(0, int(a)), min(int(n), int(b))
        if b <= a:
            raise InputError(f"the window {window} lies outside the image {tuple(shape)}; look at the image")
        lo = max(0, (a - context) // multiple * multiple)
        hi = min(int(n), b + context)
        crop.append(slice(lo, hi))
        inner.append(slice(a - lo, b - lo))
        clipped.append((a, b))
    return tuple(crop), tuple(inner), tuple(clipped)


def live_config(config: TrainConfig) -> TrainConfig:
    """``config`` for a session without an end: constant learning rate, no held-out data, no
    time limit (the user's eye validates, and Stop ends it)."""
    return replace(config, schedule="constant", val_fraction=0.0, time_limit=None)


class LiveSession:
    """Training that follows the annotation; see the module docstring.

    Parameters
    ----------
    image : ndarray
        The image being annotated: ``(Y, X)``, ``(C, Y, X)`` with ``channel_axis``, or a stack
        ``(Z, Y, X)`` / ``(Z, C, Y, X)``.
    config : TrainConfig, optional
        Training options; :func:`live_config` makes them endless.
    channel_axis : int or None
        Channel axis of ``image``.
    name : str
        For messages and provenance.
    output : path, optional
        Where Stop saves the last state (atomic).
    init_from : path, optional
        A checkpoint to continue from (it also predicts before the first snapshot).

    Attributes
    ----------
    trainer : Trainer or None
        Made by the first snapshot with painted objects.
    paused : bool
    snapshot_id : int
        The last snapshot applied (-1: none).
    snapshots : int
        Snapshots applied.
    """

    def __init__(
        self,
        image: np.ndarray,
        config: TrainConfig | None = None,
        *,
        channel_axis: int | None = None,
        name: str = "image",
        output: str | os.PathLike | None = None,
        init_from: str | os.PathLike | None = None,
    ) -> None:
        self.image, self.channel_axis, self.name = image, channel_axis, name
        self.config = live_config(config or LIVE_DEFAULTS)
        self.output, self.init_from = output, init_from
        self.trainer: Any = None
        self.paused = False
        self.snapshot_id, self.snapshots = -1, 0
        self._snapshot: Snapshot | None = None
        self._request: PredictRequest | None = None
        self._slabs: dict[int, np.ndarray] = {}
        self._loaded: Any = None
        if init_from is not None:
            from ..checkpoint import load_checkpoint

            self._loaded = load_checkpoint(init_from).model

    @property
    def model(self) -> Any:
        """The network predictions use: the trainer's, else the ``init_from`` one, else None."""
        return self.trainer.model if self.trainer is not None else self._loaded

    @property
    def steps(self) -> int:
        """Training steps done."""
        return self.trainer.step if self.trainer is not None else 0

    def handle(self, message: Any) -> None:
        """Take one inbox message (the newest snapshot and request win; applied in :meth:`run`)."""
        if isinstance(message, Snapshot):
            self._snapshot = message
        elif isinstance(message, PredictRequest):
            self._request = message
        elif isinstance(message, Pause):
            self.paused = True
        elif isinstance(message, Resume):
            self.paused = False
        else:
            log.warning("live training: ignoring an unknown message %r", type(message).__name__)

    # -- snapshots -----------------------------------------------------------------------------
    def apply_snapshot(self, snap: Snapshot) -> Progress:
        """Train on ``snap``'s annotations from the next step on; a 'snapshot' record says so.

        Unusable annotations (none painted, wrong shape) keep the previous data and give a
        'warning' record instead.
        """
        from .data import TrainingPair
        from .trainer import Trainer

        if snap.image is not None:
            self.image, self._slabs = snap.image, {}
        pair = TrainingPair(self.image, snap.labels, snap.mask, self.channel_axis, self.name)
        try:
            if self.trainer is None:
                self.trainer = Trainer([pair], self.config, output=self.output, init_from=self.init_from)
                pixels = int(sum(len(c) for c in self.trainer.sampler.candidates))
            else:
                pixels = self.trainer.replace_data([pair])
        except InputError as exc:
            return Progress("warning", self.steps, 0, f"annotations not used: {exc}")
        self.snapshot_id, self.snapshots = snap.snapshot_id, self.snapshots + 1
        delay = max(0.0, time.time() - snap.sent_at)
        return Progress(
            "snapshot", self.steps, 0,
            f"snapshot {snap.snapshot_id}: training on {pixels} annotated pixels",
            metrics={"snapshot": snap.snapshot_id, "annotated_pixels": pixels, "delay_s": delay},
        )

    # -- prediction ----------------------------------------------------------------------------
    def _slab(self, index: int | None) -> np.ndarray:
        """Image (slice ``index``) as ``(C, Y, X)`` float32, normalised as for training."""
        from ..normalization import normalize

        key = -1 if index is None else int(index)
        if key not in self._slabs:
            cfg = self.model.config
            stack, single = as_channel_stack(self.image, self.channel_axis, cfg.in_channels, name=f"{self.name}")
            if not single and index is None:
                raise InputError(f"{self.name} is a stack; say which slice to predict")
            slab = stack[0 if single else int(np.clip(key, 0, len(stack) - 1))]
            self._slabs = {key: normalize(slab, cfg.normalization, channel_axis=0).astype(np.float32)}
        return self._slabs[key]

    def predict(self, request: PredictRequest) -> LivePrediction:
        """Predict ``request``'s window with the current weights (see :func:`context_crop`)."""
        from ..progress import run_to_end
        from ..tiling import iter_predict_tiled, padded_context

        t0 = time.perf_counter()
        model = self.model
        slab = self._slab(request.index)
        context = model.border if model.border else padded_context(model)
        crop, inner, window = context_crop(slab.shape[1:], request.window, context, model.size_multiple)
        device = self.trainer.device if self.trainer is not None else "cpu"
        probs = run_to_end(
            iter_predict_tiled(model, slab[(slice(None), *crop)], channel_axis=0,
                               normalize_input=False, device=device)
        )
        probs = np.ascontiguousarray(probs[(slice(None), *inner)], dtype=np.float32)
        return LivePrediction(
            probs, uncertainty(probs), window, request.index, request.request_id, self.steps,
            self.snapshot_id, time.perf_counter() - t0,
        )

    # -- the loop ------------------------------------------------------------------------------
    def train_step(self) -> Progress:
        """One training step on the current annotations; its 'train' (or 'warning') record."""
        trainer = self.trainer
        try:
            numbers = trainer.advance()
        except RuntimeError as exc:
            return trainer.recover_from_oom(exc)  # re-raises anything but out-of-memory
        return Progress(
            "train", trainer.step, 0, f"step {trainer.step} loss {trainer.loss_value:.4f}",
            metrics={**numbers, "snapshot": self.snapshot_id},
        )

    def _read(self, inbox: Inbox, wait: bool) -> None:
        """Handle every waiting message; with ``wait``, first wait up to :data:`IDLE_WAIT_S`."""
        block, timeout = wait, IDLE_WAIT_S
        while True:
            try:
                message = inbox.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return
            self.handle(message)
            block = False

    def run(self, inbox: Inbox, stop: StopSignal) -> Generator[Any, None, LiveResult]:
        """Train, take snapshots and answer requests until ``stop`` is set.

        Yields
        ------
        Progress or LivePrediction
            'train' per step (metrics 'loss', 'lr', 'snapshot'), 'snapshot' when annotations
            arrive (metrics 'snapshot', 'annotated_pixels', 'delay_s'), 'warning', 'idle'
            (paused or waiting for annotations, about every :data:`IDLE_WAIT_S` s), and a
            :class:`LivePrediction` per answered request.

        Returns
        -------
        LiveResult
            After saving the last state (see :meth:`finish`).
        """
        try:
            while not stop.is_set():
                training = self.trainer is not None and not self.paused
                self._read(inbox, wait=not training and self._snapshot is None and self._request is None)
                if stop.is_set():
                    break
                if self._snapshot is not None:
                    snap, self._snapshot = self._snapshot, None
                    yield self.apply_snapshot(snap)
                if self._request is not None and self.model is not None:
                    request, self._request = self._request, None
                    yield self.predict(request)
                if self.trainer is not None and not self.paused:
                    yield self.train_step()
                else:
                    why = "paused" if self.paused else "waiting for painted objects"
                    yield Progress("idle", self.steps, 0, why, metrics={"paused": self.paused})
        except BaseException:
            if self.trainer is not None:  # a failed session never replaces the file at output
                self.trainer.release()
            raise
        return self.finish()

    def finish(self) -> LiveResult:
        """Save the last state (atomic; not without steps) and hand the model back (CPU, eval)."""
        if self.trainer is None:
            model = self._loaded
            return LiveResult(None, model.eval() if model is not None else None, 0, self.snapshots)
        checkpoint = self.trainer.finish()
        return LiveResult(checkpoint, self.trainer.model, self.trainer.step, self.snapshots)


def live_training(
    image: np.ndarray,
    config: TrainConfig | None = None,
    *,
    stop: StopSignal,
    inbox: Inbox,
    channel_axis: int | None = None,
    name: str = "image",
    output: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    first: Snapshot | None = None,
) -> Generator[Any, None, LiveResult]:
    """A :class:`LiveSession` as a job for :class:`~unet_core.processes.DuplexJob`.

    Parameters are those of :class:`LiveSession` and :meth:`LiveSession.run`; ``first`` is a
    snapshot to start with (the annotation when the user pressed Start).
    """
    session = LiveSession(
        image, config, channel_axis=channel_axis, name=name, output=output, init_from=init_from
    )
    if first is not None:
        session.handle(first)
    return (yield from session.run(inbox, stop))
