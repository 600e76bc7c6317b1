"""Jobs in their own process: records forwarded, results and errors returned, Stop, crashes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from unet_core.errors import InputError, JobCrashed, UNetCoreError
from unet_core.processes import ProcessJob, iter_in_process
from unet_core.progress import Progress, run_to_end


def counting_job(n, *, stop, delay=0.0):
    """Counts to n (or until stopped); returns (steps done, pid, stopped)."""
    done = 0
    for i in range(n):
        if stop.is_set():
            return done, os.getpid(), True
        time.sleep(delay)
        done = i + 1
        yield Progress("count", done, n, f"{done}/{n}")
    return done, os.getpid(), False


def failing_job(*, stop):
    yield Progress("fail", 0, 1)
    raise InputError("bad input: paint more objects")


def dying_job(*, stop):
    yield Progress("die", 0, 1)
    os.kill(os.getpid(), signal.SIGKILL)
    yield Progress("never", 1, 1)


def test_records_and_result_come_from_another_process():
    records = []
    steps, pid, stopped = run_to_end(iter_in_process(counting_job, 5), records.append)
    assert [r.step for r in records] == [1, 2, 3, 4, 5]
    assert steps == 5 and not stopped
    assert pid != os.getpid()


def test_project_errors_keep_type_and_message():
    with pytest.raises(InputError, match="paint more objects"):
        run_to_end(iter_in_process(failing_job))


def test_a_killed_process_is_reported_not_silent():
    with pytest.raises(JobCrashed, match="ended unexpectedly"):
        run_to_end(iter_in_process(dying_job))


def test_stop_ends_between_steps_and_returns_the_result():
    job = ProcessJob(counting_job, 10_000, delay=0.01)
    gen = iter(job)
    next(gen)
    t0 = time.monotonic()
    job.stop()
    steps, _, stopped = run_to_end(gen)
    assert stopped and 1 <= steps < 10_000
    assert time.monotonic() - t0 < 5
    job.close()
    assert not job.process.is_alive()


def test_closing_the_generator_ends_the_process():
    gen = iter_in_process(counting_job, 10_000, delay=0.01)
    next(gen)
    gen.close()  # no result, but the child must not be left running
    assert not multiprocessing.active_children()


def test_local_functions_are_refused():
    def local(*, stop):
        yield Progress("x", 0, 1)

    with pytest.raises(UNetCoreError, match="module level"):
        run_to_end(iter_in_process(local))


def tensor_job(*, stop):
    import torch

    yield Progress("t", 0, 1)
    net = torch.nn.Conv2d(1, 2, 3)
    torch.nn.init.constant_(net.weight, 0.5)
    return net


def test_a_module_comes_back_by_value():
    import torch

    net = run_to_end(iter_in_process(tensor_job))
    assert isinstance(net, torch.nn.Conv2d)
    assert torch.all(net.weight == 0.5)


def test_an_outside_stop_signal_stops_the_job():
    """``stop_when``: a thread that only waits on the records still stops the job promptly."""
    import threading

    outside = threading.Event()
    job = ProcessJob(counting_job, 10_000, delay=0.01, stop_when=outside)
    gen = iter(job)
    next(gen)
    outside.set()
    steps, _, stopped = run_to_end(gen)
    assert stopped and steps < 10_000
    job.close()
