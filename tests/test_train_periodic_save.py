"""Periodic last checkpoints: a killed run without validation keeps a loadable, resumable file."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, TrainConfig
from unet_core.errors import InputError, JobCrashed
from unet_core.processes import ProcessJob
from unet_core.progress import run_to_end
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CFG = TrainConfig(
    model=ModelConfig(depth=1, base_channels=4, batch_norm=True),
    iterations=100_000, tile_size=24, batch_size=2, val_fraction=0.0, device="cpu",
    save_every=0.3, augment=False,
)


@pytest.fixture
def pair(sample):
    image, labels = sample
    return TrainingPair(image[:64, :64], labels[:64, :64], name="nuclei")


class StopAfter:
    """A stop signal that is set after ``n`` checks (one check per step)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_save_every_is_validated(bad):
    with pytest.raises(InputError, match="save_every"):
        TrainConfig(save_every=bad)


def test_save_if_due_follows_the_clock(tmp_path, pair):
    trainer = Trainer([pair], replace(CFG, save_every=3600.0), output=tmp_path / "m.pt")
    trainer.advance()
    assert trainer.save_if_due() is None and not (tmp_path / "m.pt").exists()  # not due yet
    trainer.last_save -= 3601.0
    assert trainer.save_if_due() == tmp_path / "m.pt"
    assert trainer.save_if_due() is None  # the write restarted the clock
    off = Trainer([pair], replace(CFG, save_every=0.0), output=tmp_path / "off.pt")
    off.advance()
    off.last_save -= 1e9
    assert off.save_if_due() is None  # 0 disables periodic saves


def test_killed_run_without_validation_keeps_a_resumable_checkpoint(tmp_path, pair):
    out = tmp_path / "long.pt"
    job = ProcessJob(train, [pair], CFG, output=out, threads=1)
    records = iter(job)
    deadline = time.monotonic() + 120
    while not out.exists():  # the first periodic save (val_fraction 0: no validation saves)
        next(records)
        assert time.monotonic() < deadline, "no periodic checkpoint within 120 s"
    os.kill(job.process.pid, signal.SIGKILL)
    with pytest.raises(JobCrashed, match="ended unexpectedly"):
        for _ in records:
            pass
    job.close()
    ck = load_checkpoint(out)  # complete: written atomically
    saved_step = ck.train_state["step"]
    assert ck.meta["kind"] == "last" and saved_step >= 1
    assert np.isfinite(ck.meta["metrics"]["loss"])
    result = run_to_end(train([pair], CFG, output=out, resume=out, stop=StopAfter(2)))
    assert result.stop_reason == "user" and result.steps == saved_step + 2
    assert load_checkpoint(out).train_state["step"] == saved_step + 2
