"""Running a long engine job in its own (spawned) process, as a progress generator.

A job is a module-level function returning a progress generator (``train``, a prediction, ...).
:func:`iter_in_process` starts it in a fresh interpreter (``spawn``: no state inherited from a
GUI, no fork of a process holding Qt or CUDA), forwards its :class:`~unet_core.progress.Progress`
records over a queue and returns the job's return value. Nothing of the job runs in the calling
process, so no Python code of the job can hold the caller's GIL (a napari viewer stays responsive
whatever the job does).

Stop: the job function receives a ``multiprocessing.Event`` as its ``stop`` keyword argument and
is expected to end between two steps when it is set (the trainer returns its result, saved).
Closing the generator sets the event and waits up to ``grace`` seconds before terminating the
process. A child that dies (killed, segfault, out of memory) ends the generator with a
:class:`~unet_core.errors.JobCrashed` error that says so, never silently.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import pickle
import queue
import time
from collections.abc import Callable, Generator
from typing import Any

from .errors import JobCrashed, UNetCoreError
from .progress import Progress

log = logging.getLogger(__name__)

#: seconds a stopped job may take to finish its step and save before it is terminated
STOP_GRACE_S = 60.0
#: how often the parent checks whether the child is still alive while waiting for records
POLL_S = 0.05


def _qualified_name(func: Callable) -> str:
    name = f"{func.__module__}:{func.__qualname__}"
    if "<" in func.__qualname__ or func.__module__ == "__main__":
        raise UNetCoreError(
            f"{name} cannot run in a separate process; pass a function defined at module level of "
            "an importable module"
        )
    return name


def _resolve(name: str) -> Callable:
    module, _, attr = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _child_main(name: str, args: tuple, kwargs: dict, q: Any, stop: Any, threads: int | None) -> None:
    """Entry point of the child process: run the job, forward records, send its outcome.

    Once the outcome is in the pipe the child ends at once (``os._exit``): the job's files are
    closed, and the interpreter's teardown with torch loaded took seconds on a busy machine,
    time a caller waiting for the process (Stop) would lose.
    """
    logging.basicConfig(level=logging.WARNING)
    _run_job(name, args, kwargs, q, stop, threads)
    q.close()
    q.join_thread()  # everything sent is in the pipe
    logging.shutdown()
    os._exit(0)


def _run_job(name: str, args: tuple, kwargs: dict, q: Any, stop: Any, threads: int | None) -> None:
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        gen = _resolve(name)(*args, stop=stop, **kwargs)
        while True:
            try:
                record = next(gen)
            except StopIteration as done:
                # plain pickle: tensors by value (torch's queue reductions would share memory that
                # dies with this process); the parent unpickles what its own child produced
                q.put(("done", pickle.dumps(done.value, protocol=pickle.HIGHEST_PROTOCOL)))
                return
            q.put(("progress", record))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        log.debug("job %s failed in the child process", name, exc_info=True)
        q.put(("error", _portable_error(exc)))


def _portable_error(exc: BaseException) -> BaseException:
    """``exc`` itself when the parent can rebuild it (project errors, OSError, ...), else a summary."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception type that does not pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def iter_in_process(
    func: Callable[..., Generator[Progress, None, Any]],
    *args: Any,
    threads: int | None = None,
    grace: float = STOP_GRACE_S,
    **kwargs: Any,
) -> Generator[Progress, None, Any]:
    """Run ``func(*args, stop=<event>, **kwargs)`` in a spawned process, yielding its records.

    Parameters
    ----------
    func : callable
        A module-level function returning a progress generator and accepting ``stop=``.
    *args, **kwargs
        Its arguments; they and the job's return value must be picklable.
    threads : int, optional
        ``torch.set_num_threads`` in the child.
    grace : float
        Seconds a stopped job may take to finish before it is terminated.

    Yields
    ------
    Progress
        The job's records, in order.

    Returns
    -------
    The job's return value. Closing this generator asks the job to stop and returns nothing;
    use :class:`ProcessJob` to stop a job and still receive its result.

    Raises
    ------
    Exception
        The job's own exception (project errors keep their type and message).
    JobCrashed
        The process ended without a result (killed, crashed, out of memory).
    """
    job = ProcessJob(func, *args, threads=threads, grace=grace, **kwargs)
    try:
        return (yield from job)
    finally:
        job.close()


class ProcessJob:
    """A job in its own process: iterate it for records, :meth:`stop` it, read its result.

    ``result = yield from job`` drives it like an engine generator; after :meth:`stop` the
    iteration continues until the job has ended between two steps and returned its result.
    ``stop_when`` (anything with ``is_set()``, e.g. a GUI's ``threading.Event``) is checked
    while waiting for records, at least every :data:`POLL_S` seconds, and calls :meth:`stop`
    once set: a caller that only waits on the records still stops the job promptly.
    """

    def __init__(self, func: Callable, *args: Any, threads: int | None = None,
                 grace: float = STOP_GRACE_S, stop_when: Any = None, **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self.grace = grace
        self.process = ctx.Process(
            target=_child_main, args=(_qualified_name(func), args, kwargs, self._queue, self._stop, threads),
            daemon=True, name=f"napari-unet {func.__name__}",
        )
        self._stop_time: float | None = None
        self._stop_when = stop_when
        self.process.start()

    def stop(self) -> None:
        """Ask the job to end between two steps (it then returns its result)."""
        if self._stop_time is None:
            self._stop_time = time.monotonic()
        self._stop.set()

    def __iter__(self) -> Generator[Progress, None, Any]:
        while True:
            kind, payload = self._next_message()
            if kind == "progress":
                yield payload
            elif kind == "done":
                self.process.join(timeout=self.grace)
                return pickle.loads(payload)  # noqa: S301 - our own child's result, not a file
            else:
                self.process.join(timeout=self.grace)
                raise payload

    def _next_message(self) -> tuple[str, Any]:
        while True:
            if self._stop_when is not None and self._stop_when.is_set():
                self.stop()
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                pass
            if not self.process.is_alive():
                try:  # the last messages may still be in the pipe
                    return self._queue.get(timeout=1.0)
                except queue.Empty:
                    raise JobCrashed(
                        f"the {self.process.name} process ended unexpectedly (exit code "
                        f"{self.process.exitcode}); the last saved checkpoint is kept. Check the log, free "
                        "memory or use a smaller tile/batch size, and start again"
                    ) from None
            if self._stop_time is not None and time.monotonic() - self._stop_time > self.grace:
                self.process.terminate()
                self.process.join(timeout=5)
                raise JobCrashed(
                    f"the {self.process.name} process did not stop within {self.grace:.0f} s and was "
                    "terminated; the last saved checkpoint is kept"
                )

    def close(self) -> None:
        """Stop the job if it still runs, wait for it (up to ``grace``), then terminate it."""
        if self.process.is_alive():
            self.stop()
            self.process.join(timeout=self.grace)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self._queue.close()


class DuplexJob(ProcessJob):
    """A :class:`ProcessJob` that also receives messages, read without blocking.

    The job function gets a second queue as its ``inbox`` keyword argument (besides ``stop``)
    and reads the messages :meth:`send` puts there (e.g. new annotations, pause, a region to
    predict). The caller collects what the job yields with :meth:`poll`, which never waits, so a
    GUI can call it from a timer. Stop and crash handling are those of :class:`ProcessJob`.

    Attributes
    ----------
    finished : bool
        True once the job has returned (its value is in ``result``) or failed.
    result : Any
        The job's return value, once ``finished``.
    """

    def __init__(self, func: Callable, *args: Any, threads: int | None = None,
                 grace: float = STOP_GRACE_S, **kwargs: Any) -> None:
        self._inbox = mp.get_context("spawn").Queue()
        self.finished = False
        self.result: Any = None
        super().__init__(func, *args, threads=threads, grace=grace, inbox=self._inbox, **kwargs)

    def send(self, message: Any) -> None:
        """Put a (picklable) message in the job's inbox."""
        self._inbox.put(message)

    def poll(self, max_items: int = 64) -> list[Any]:
        """What the job yielded since the last call (at most ``max_items``), without waiting.

        Returns
        -------
        list
            The records, in order; empty when nothing came. Once the job has returned,
            ``finished`` is True and ``result`` holds its value.

        Raises
        ------
        Exception
            The job's own exception.
        JobCrashed
            The process ended without a result, or did not stop within ``grace`` seconds.
        """
        out: list[Any] = []
        while not self.finished and len(out) < max_items:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                overdue = self._stop_time is not None and time.monotonic() - self._stop_time > self.grace
                if out or (self.process.is_alive() and not overdue):
                    break
                kind, payload = self._next_message()  # waits at most a second, or raises
            if kind == "progress":
                out.append(payload)
                continue
            self.finished = True  # the process ends by itself now; close() joins it
            if kind == "error":
                raise payload
            self.result = pickle.loads(payload)  # noqa: S301 - our own child's result
        return out

    def close(self) -> None:
        """As :meth:`ProcessJob.close`; the inbox is closed too."""
        super().close()
        self._inbox.close()
