"""The trainer's parts: one step, stop with a result, no save after a failure, resume after Stop."""

import copy
import multiprocessing
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, TrainConfig
from unet_core.errors import InputError
from unet_core.progress import run_to_end
from unet_core.training import trainer as trainer_module
from unet_core.training.data import TrainingPair
from unet_core.training.parts import Precision
from unet_core.training.trainer import Trainer, TrainResult, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = TrainConfig(
    model=ModelConfig(depth=1, base_channels=4, batch_norm=True),
    iterations=6,
    tile_size=24,
    batch_size=2,
    val_fraction=0.0,
    device="cpu",
    warmup=0,
)


@pytest.fixture
def pairs(sample):
    image, labels = sample
    return [TrainingPair(image[:80, :80], labels[:80, :80], name="nuclei")]


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run(gen):
    records = []
    return run_to_end(gen, records.append), records


def test_one_train_step_changes_the_weights_and_returns_a_finite_loss(pairs):
    trainer = Trainer(pairs, TINY)
    before = weights(trainer.model)
    x, y, w = batch = trainer.next_batch()
    assert x.shape == (2, 1, trainer.in_size, trainer.in_size) and x.dtype == torch.float32
    assert y.shape == w.shape == (2, trainer.out_size, trainer.out_size) and y.dtype == torch.int64
    out = trainer.train_step(batch)
    assert set(out) == {"loss"} and np.isfinite(out["loss"]) and out["loss"] > 0
    after = weights(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.step == 0  # the step counts nothing; advance() does
    assert set(trainer.advance()) == {"loss", "lr"} and trainer.step == 1


def test_precision_is_chosen_once():
    cpu = Precision.choose(True, torch.device("cpu"))  # no mixed precision off CUDA
    assert not cpu.mixed and cpu.scaler.scale(torch.tensor(2.0)) == 2.0
    with cpu.autocast():
        assert torch.ones(1).dtype == torch.float32


@pytest.mark.parametrize(
    "make_event", [threading.Event, multiprocessing.get_context("spawn").Event]
)
def test_stop_signal_ends_the_run_with_a_result(pairs, tmp_path, make_event):
    stop = make_event()

    records = []

    def press_stop(record):
        records.append(record)
        if record.stage == "train" and record.step == 3:
            stop.set()

    result = run_to_end(
        train(pairs, replace(TINY, iterations=50), output=tmp_path / "m.pt", stop=stop), press_stop
    )
    assert isinstance(result, TrainResult)
    assert result.stop_reason == "user" and result.stopped and result.steps == 3
    assert records[-1].stage == "save" and result.checkpoint == tmp_path / "m.pt"
    ck = load_checkpoint(result.checkpoint)
    assert ck.train_state["step"] == 3 and ck.meta["iterations"] == 3
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k
    assert not result.model.training


def test_stop_before_the_first_step_saves_nothing(pairs, tmp_path):
    stop = threading.Event()
    stop.set()
    result, records = run(train(pairs, TINY, output=tmp_path / "m.pt", stop=stop))
    assert result.stop_reason == "user" and result.steps == 0 and result.checkpoint is None
    assert not (tmp_path / "m.pt").exists() and [r.stage for r in records] == ["save"]


def test_resume_after_stop_equals_an_uninterrupted_run(pairs, tmp_path):
    cfg = replace(TINY, val_fraction=0.3, val_every=2)
    full, _ = run(train(pairs, cfg, output=tmp_path / "full.pt"))
    assert full.stop_reason == "completed" and not full.stopped
    stop = threading.Event()
    gen = train(pairs, cfg, output=tmp_path / "part.pt", stop=stop)
    part = run_to_end(gen, lambda r: r.stage == "train" and r.step == 3 and stop.set())
    assert part.stop_reason == "user" and part.steps == 3
    resumed, _ = run(train(pairs, cfg, output=tmp_path / "part.pt", resume=tmp_path / "part.pt"))
    assert resumed.steps == 6 and resumed.stop_reason == "completed"
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.metrics == full.metrics


REAL_BUILD_LOSS = trainer_module.build_loss


def _nan_loss(spec, n_classes):
    """A loss that becomes NaN from its second call on."""
    real = REAL_BUILD_LOSS(spec, n_classes=n_classes)
    calls = []

    def loss(logits, target, weight):
        calls.append(1)
        value = real(logits, target, weight)
        return value * float("nan") if len(calls) >= 2 else value

    return loss


@pytest.mark.parametrize("how", ["resume", "init_from"])
def test_a_nan_loss_leaves_the_output_file_untouched(pairs, tmp_path, monkeypatch, how):
    good = tmp_path / "good.pt"
    gen = train(pairs, TINY, output=good)
    for _ in range(3):
        next(gen)
    gen.close()  # a resumable good file at step 3
    before = good.read_bytes()
    monkeypatch.setattr(trainer_module, "build_loss", _nan_loss)
    with pytest.raises(InputError, match="loss became nan"):
        run(train(pairs, TINY, output=good, **{how: good}))
    assert good.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp*"))


def test_an_error_mid_run_leaves_the_output_file_untouched(pairs, tmp_path, monkeypatch):
    from unet_core.models.unet import UNet

    good = tmp_path / "good.pt"
    run(train(pairs, replace(TINY, iterations=2), output=good))
    before = good.read_bytes()
    real, calls = UNet.forward, []

    def forward(self, x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(self, x)

    monkeypatch.setattr(UNet, "forward", forward)
    with pytest.raises(RuntimeError, match="boom"):
        run(train(pairs, TINY, output=good, init_from=good))
    assert good.read_bytes() == before


def test_non_finite_weights_are_never_saved(pairs, tmp_path):
    trainer = Trainer(pairs, TINY, output=tmp_path / "m.pt")
    trainer.advance()
    assert trainer.save_last() == tmp_path / "m.pt"
    before = (tmp_path / "m.pt").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("inf"))
    assert trainer.save_last() is None and trainer.finish() is None
    assert (tmp_path / "m.pt").read_bytes() == before


def test_train_state_round_trip(pairs):
    a = Trainer(pairs, TINY)
    for _ in range(2):
        a.advance()
    b = Trainer(pairs, TINY)
    b.model.load_state_dict(a.model.state_dict())
    b.load_train_state(copy.deepcopy(a.train_state()), {"loss": a.loss_value})  # as if saved
    assert (b.step, b.loss_value, b.batch_size, b.tile) == (2, a.loss_value, a.batch_size, a.tile)
    assert a.advance() == b.advance()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
