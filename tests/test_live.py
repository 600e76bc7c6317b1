"""Live training without Qt: snapshots reach the sampler, predictions of a window, pause, stop."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from synthetic import disks

from unet_core.config import ModelConfig, TrainConfig
from unet_core.errors import InputError
from unet_core.processes import DuplexJob
from unet_core.progress import Progress
from unet_core.tiling import predict_tiled
from unet_core.training.live import (
    LivePrediction,
    LiveResult,
    LiveSession,
    Pause,
    PredictRequest,
    Resume,
    Snapshot,
    context_crop,
    live_training,
    uncertainty,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = TrainConfig(
    model=ModelConfig(depth=1, base_channels=4), tile_size=24, batch_size=1, device="cpu",
    warmup=0, augment=False,
)


def take(gen, kind, n=200):
    """Advance ``gen`` until it yields ``kind`` (a Progress stage or a type); that item."""
    for _ in range(n):
        item = next(gen)
        if (isinstance(kind, str) and isinstance(item, Progress) and item.stage == kind) or (
            isinstance(kind, type) and isinstance(item, kind)
        ):
            return item
    raise AssertionError(f"no {kind} in {n} items")


def test_snapshots_replace_what_training_sees(tmp_path):
    image, labels = disks()
    first = np.where(labels <= 2, labels, 0).astype(np.uint16)
    inbox, stop = queue.Queue(), threading.Event()
    gen = live_training(image, TINY, stop=stop, inbox=inbox, output=tmp_path / "live.pt",
                        first=Snapshot(np.zeros_like(labels)))
    assert "waiting" in take(gen, "warning").message + take(gen, "idle").message
    inbox.put(Snapshot(first, snapshot_id=1))
    one = take(gen, "snapshot")
    assert one.metrics["snapshot"] == 1
    assert take(gen, "train").metrics["snapshot"] == 1
    inbox.put(Snapshot(labels, snapshot_id=2))  # all objects: replayed, not only the new ones
    two = take(gen, "snapshot")
    assert two.metrics["annotated_pixels"] > one.metrics["annotated_pixels"]
    assert take(gen, "train").metrics["snapshot"] == 2
    stop.set()
    with pytest.raises(StopIteration) as done:
        next(gen)
    result = done.value.value
    assert isinstance(result, LiveResult) and result.snapshots == 2 and result.steps >= 2
    assert result.checkpoint == tmp_path / "live.pt" and result.checkpoint.is_file()


def test_a_request_gives_probabilities_and_uncertainty_of_the_window():
    image, labels = disks((80, 72))
    session = LiveSession(image, TINY)
    session.apply_snapshot(Snapshot(labels))
    session.train_step()
    answer = session.predict(PredictRequest(((10, 50), (-5, 30)), request_id=7))
    assert isinstance(answer, LivePrediction) and answer.request_id == 7
    assert answer.window == ((10, 50), (0, 30))
    assert answer.probabilities.shape == (2, 40, 30) and answer.probabilities.dtype == np.float32
    assert answer.uncertainty.shape == (40, 30) and answer.uncertainty.dtype == np.float32
    # the crop carries the net's context: the window equals the whole-image prediction there
    model = session.model
    whole = predict_tiled(model, image, device="cpu")
    np.testing.assert_allclose(answer.probabilities, whole[:, 10:50, 0:30], atol=1e-5)


def test_pause_stops_steps_and_resume_restarts_them():
    image, labels = disks()
    inbox, stop = queue.Queue(), threading.Event()
    gen = live_training(image, TINY, stop=stop, inbox=inbox, first=Snapshot(labels))
    take(gen, "train")
    inbox.put(Pause())
    steps = [item.step for item in (next(gen) for _ in range(4)) if isinstance(item, Progress)]
    assert take(gen, "idle").metrics["paused"]
    held = max(steps)
    inbox.put(PredictRequest(((0, 32), (0, 32))))  # still answered while paused
    answer = take(gen, LivePrediction)
    assert answer.step == held
    for _ in range(3):
        assert take(gen, "idle").step == held
    inbox.put(Resume())
    assert take(gen, "train").step == held + 1
    gen.close()


def test_uncertainty_and_crop_geometry():
    p = np.array([[[1.0, 0.5, 0.0]], [[0.0, 0.5, 1.0]]], np.float32)
    np.testing.assert_allclose(uncertainty(p), [[0.0, 1.0, 0.0]])
    three = np.full((3, 1, 1), 1 / 3, np.float32)
    np.testing.assert_allclose(uncertainty(three), [[1.0]], atol=1e-5)
    crop, inner, window = context_crop((100, 100), ((40, 60), (0, 10)), 8, 4)
    assert crop == (slice(32, 68), slice(0, 18)) and inner == (slice(8, 28), slice(0, 10))
    assert window == ((40, 60), (0, 10))
    with pytest.raises(InputError, match="outside the image"):
        context_crop((100, 100), ((120, 130), (0, 10)), 8, 4)


def test_session_in_its_own_process(tmp_path):
    image, labels = disks()
    job = DuplexJob(live_training, image, replace(TINY, seed=1), output=tmp_path / "p.pt",
                    first=Snapshot(labels, snapshot_id=3), threads=1)
    try:
        job.send(PredictRequest(((0, 16), (0, 16)), request_id=1))
        items = []
        while not any(isinstance(i, LivePrediction) for i in items):
            items += job.poll()
            time.sleep(0.02)
        assert any(isinstance(i, Progress) and i.stage == "snapshot" for i in items)
        job.stop()
        while not job.finished:
            job.poll()
            time.sleep(0.02)
        assert job.result.checkpoint.is_file() and job.result.snapshots == 1
    finally:
        job.close()
    assert not job.process.is_alive()
