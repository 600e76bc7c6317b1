"""Running the engine's generators in the background without ever blocking the viewer.

Every long job (weight map, training, prediction) is an engine generator yielding
:class:`unet_core.progress.Progress` records. :class:`JobRunner` drives one in a napari
``thread_worker``: each record updates a progress bar in napari's activity dock (with the ETA the
engine estimates) and is passed to the widget. Stop sets an event: a job started with
``pass_stop=True`` (training) gets it as ``stop=`` and ends itself between two steps, returning
its result; any other job is closed between two steps (its ``finally`` blocks run). Exceptions
are caught in the worker and come back as a :class:`JobOutcome`, which the runner turns into a
napari notification: the viewer never freezes and never shows a traceback dialog for bad input.

:func:`in_process` makes a job run in its own spawned process (:class:`unet_core.processes.
ProcessJob`): the worker thread then only waits on the queue of progress records, so no Python
code of the job can hold the viewer's GIL; Stop reaches the child's ``multiprocessing.Event``
and the job's result comes back by value; a crashed child is reported like any other error.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

from qtpy.QtCore import QObject, Signal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended.

    Attributes
    ----------
    value : Any
        The generator's return value (None when Stop closed it).
    stopped : bool
        True when the user stopped the job.
    error : BaseException or None
        The exception that ended the job, if any.
    """

    value: Any = None
    stopped: bool = False
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the job finished or was stopped without an error."""
        return self.error is None


#: seconds between two updates of a job's progress bar (records come faster from a process)
PBAR_INTERVAL_S = 0.1

#: torch threads for background jobs; None = ``$NAPARI_UNET_WORKER_THREADS`` or all cores but one
WORKER_THREADS: int | None = None


def worker_threads() -> int:
    """Torch threads for a background job: all cores but one, which stays with the viewer.

    torch's intra-op threads otherwise take every core, and the GUI thread then waits for a
    core at every event (measured in ``benchmarks/bench_responsiveness.py``).
    """
    import os

    if WORKER_THREADS:
        return int(WORKER_THREADS)
    env = os.environ.get("NAPARI_UNET_WORKER_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 2) - 1)


def in_process(func: Callable[..., Generator], *args: Any, threads: int | None = None,
               **kwargs: Any) -> Callable[..., Generator]:
    """A factory for ``JobRunner.start(..., pass_stop=True)`` that runs the job in a process.

    Parameters
    ----------
    func : callable
        A module-level engine function returning a progress generator and accepting ``stop=``
        (e.g. ``unet_core.training.trainer.train``).
    *args, **kwargs
        Its arguments (numpy arrays included), pickled once into the spawned process.
    threads : int, optional
        torch threads in the child (e.g. :func:`worker_threads`).

    Returns
    -------
    callable
        ``factory(stop=event)``: a generator forwarding the child's records and returning its
        result; setting ``event`` stops the child between two steps (within :data:`POLL_S
        <unet_core.processes.POLL_S>` of the setting plus the rest of its current step).
    """
    return partial(_process_job, func, args, kwargs, threads)


def _process_job(func: Callable, args: tuple, kwargs: dict, threads: int | None, *,
                 stop: threading.Event) -> Generator[Any, None, Any]:
    from unet_core.processes import ProcessJob

    job = ProcessJob(func, *args, threads=threads, stop_when=stop, **kwargs)
    try:
        return (yield from job)
    finally:
        job.close()


def drive(
    factory: Callable[..., Generator],
    stop: threading.Event,
    torch_threads: int | None = None,
    pass_stop: bool = False,
) -> Generator[Any, None, JobOutcome]:
    """Run ``factory()``'s generator to the end in the calling (worker) thread.

    Yields what the engine yields. With ``pass_stop`` the generator is ``factory(stop=stop)``,
    ends itself between steps once ``stop`` is set and returns its result (a stopped training
    returns its ``TrainResult``); otherwise ``stop`` is checked between steps and then the
    generator is closed (its ``finally`` blocks run). Errors are caught and returned, never
    raised into Qt.
    """
    previous = None
    if torch_threads:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(torch_threads)
    gen = None
    try:
        gen = factory(stop=stop) if pass_stop else factory()
        while True:
            if stop.is_set() and not pass_stop:
                gen.close()
                return JobOutcome(stopped=True)
            try:
                item = next(gen)
            except StopIteration as done:
                return JobOutcome(done.value, stopped=pass_stop and stop.is_set())
            yield item
            time.sleep(0)  # hand the GIL to the GUI thread between steps
    except Exception as exc:  # reported to the user as a notification by JobRunner
        log.debug("job failed", exc_info=True)
        if gen is not None:
            gen.close()
        return JobOutcome(error=exc)
    finally:
        if previous is not None:
            import torch

            torch.set_num_threads(previous)


def _is_out_of_memory(exc: BaseException) -> bool:
    from unet_core.device import is_out_of_memory  # torch is loaded already (checked by the caller)

    return is_out_of_memory(exc)


def describe_error(exc: BaseException, what: str) -> str:
    """One line for a notification: what failed, why, and what to do."""
    from unet_core.errors import CheckpointError, InputError, JobCrashed

    if isinstance(exc, InputError | CheckpointError | JobCrashed):
        return f"{what}: {exc}"
    if "torch" in sys.modules and _is_out_of_memory(exc):
        return (
            f"{what}: out of memory. Reduce the batch size or tile size, use a smaller model, "
            "or choose the CPU device."
        )
    if isinstance(exc, MemoryError):
        return f"{what}: not enough memory; work on a smaller image or crop, or close other programs."
    if isinstance(exc, FileExistsError | PermissionError | FileNotFoundError | OSError):
        return f"{what}: {exc}"
    return f"{what} failed ({type(exc).__name__}: {exc}); see the log for details."


class JobRunner(QObject):
    """One background job at a time for a widget: progress bar, Stop, notifications.

    Signals
    -------
    progressed(object)
        Each :class:`~unet_core.progress.Progress` record, in the GUI thread.
    finished(object)
        The :class:`JobOutcome`, in the GUI thread, after the progress bar has closed.
    """

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, title: str, *, show_progress: bool = True, parent: QObject | None = None):
        super().__init__(parent)
        self.title = title
        self.show_progress = show_progress
        self.notify_errors = True
        self._worker = None
        self._stop = threading.Event()
        self._pbar = None
        self._pbar_shown = 0.0
        self._pending: deque[Any] = deque()
        self._delivering = False
        self._ended: JobOutcome | None = None
        self.last_outcome: JobOutcome | None = None

    @property
    def running(self) -> bool:
        """True while a job is in flight."""
        return self._worker is not None

    def start(
        self,
        factory: Callable[..., Generator],
        *,
        total: int = 0,
        torch_threads: int | None = None,
        pass_stop: bool = False,
    ) -> None:
        """Start ``factory()`` (an engine generator) in a worker thread.

        With ``pass_stop`` the factory takes the Stop event as ``stop=`` and ends the job itself
        (see :func:`drive`).

        Raises
        ------
        RuntimeError
            When a job is already running (the widgets disable their Start button meanwhile).
        """
        from napari.qt.threading import create_worker

        if self.running:
            raise RuntimeError(f"{self.title} is already running; stop it first")
        self._stop = threading.Event()
        self.last_outcome = None
        self._pending.clear()
        self._ended = None
        if self.show_progress:
            from napari.utils import cancelable_progress

            self._pbar = cancelable_progress(total=total or 0, desc=self.title)
        worker = create_worker(drive, factory, self._stop, torch_threads, pass_stop, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        self._worker = worker
        worker.start()

    def stop(self) -> None:
        """Ask the job to stop after its current step (the engine then cleans up)."""
        self._stop.set()

    # -- worker signals (GUI thread) -----------------------------------------------------------
    def _on_yielded(self, record: Any) -> None:
        # Records are delivered in order even when a handler processes events (napari's progress
        # bar can), which would otherwise deliver the next record inside this one: a job in its
        # own process sends records in bursts.
        self._pending.append(record)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                self._deliver(self._pending.popleft())
        finally:
            self._delivering = False
        if self._ended is not None:
            outcome, self._ended = self._ended, None
            self._finish(outcome)

    def _deliver(self, record: Any) -> None:
        pbar = self._pbar
        now = time.perf_counter()
        if pbar is not None and now - self._pbar_shown >= PBAR_INTERVAL_S:
            self._pbar_shown = now
            if getattr(pbar, "is_canceled", False):
                self.stop()
            total = int(getattr(record, "total", 0) or 0)
            if total and pbar.total != total:
                pbar.total = total
            step = int(getattr(record, "step", 0) or 0)
            if step > pbar.n:
                pbar.update(step - pbar.n)
            message = getattr(record, "message", "")
            eta = getattr(record, "eta", None)
            desc = f"{self.title}: {message}" if message else self.title
            if eta is not None:
                desc += f" (ETA {_format_seconds(eta)})"
            pbar.set_description(desc)
        self.progressed.emit(record)

    def _on_returned(self, outcome: JobOutcome) -> None:
        self._end(outcome)

    def _on_errored(self, exc: BaseException) -> None:  # only for errors outside drive()
        self._end(JobOutcome(error=exc))

    def _end(self, outcome: JobOutcome) -> None:
        if self._delivering:  # arrived inside a record's delivery: finish after the records
            self._ended = outcome
        else:
            self._finish(outcome)

    def _finish(self, outcome: JobOutcome) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        self.last_outcome = outcome
        if outcome.error is not None and self.notify_errors:
            from napari.utils.notifications import show_error

            show_error(describe_error(outcome.error, self.title))
        self.finished.emit(outcome)


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
