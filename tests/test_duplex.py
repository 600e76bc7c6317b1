"""DuplexJob: messages in, records out without waiting, results, errors and crashes (no torch)."""

from __future__ import annotations

import os
import queue
import signal
import time

import pytest

from unet_core.errors import InputError, JobCrashed
from unet_core.processes import DuplexJob
from unet_core.progress import Progress


def echo_job(*, stop, inbox):
    """Echoes each message as a record until stopped; returns how many it echoed."""
    n = 0
    while not stop.is_set():
        try:
            message = inbox.get(timeout=0.05)
        except queue.Empty:
            continue
        if message == "fail":
            raise InputError("bad message: send another")
        if message == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        n += 1
        yield Progress("echo", n, 0, str(message))
    return n


def drain(job, until, timeout=60.0):
    """Poll ``job`` (never blocking) until ``until(items)``; the items."""
    items, end = [], time.monotonic() + timeout
    while not until(items):
        assert time.monotonic() < end, "timed out"
        items += job.poll()
        time.sleep(0.01)
    return items


def test_messages_in_records_out_then_the_result():
    job = DuplexJob(echo_job)
    try:
        assert job.poll() == [] and not job.finished  # nothing yet, and no waiting
        job.send("a")
        job.send({"b": 1})
        items = drain(job, lambda items: len(items) == 2)
        assert [i.message for i in items] == ["a", "{'b': 1}"]
        job.stop()
        drain(job, lambda _: job.finished)
        assert job.result == 2
    finally:
        job.close()
    assert not job.process.is_alive()


def test_errors_keep_their_type_and_crashes_are_reported():
    job = DuplexJob(echo_job)
    try:
        job.send("fail")
        with pytest.raises(InputError, match="send another"):
            drain(job, lambda _: False)
    finally:
        job.close()
    job = DuplexJob(echo_job)
    try:
        job.send("die")
        with pytest.raises(JobCrashed, match="ended unexpectedly"):
            drain(job, lambda _: False)
    finally:
        job.close()
