"""The Noise2Void blind-spot head trained beside segmentation (TrainConfig.self_supervised)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.synthetic import disks
from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, TrainConfig, WeightMapConfig
from unet_core.errors import InputError
from unet_core.models import build_model
from unet_core.progress import run_to_end
from unet_core.training.blind_spot import RADIUS, BlindSpotHead
from unet_core.training.data import TileSampler, TrainingPair, prepare_pairs
from unet_core.training.trainer import Trainer, train


def _unet(dims=2, padding="valid"):
    return build_model(ModelConfig(depth=2, base_channels=4, spatial_dims=dims, padding=padding))


@pytest.mark.parametrize("dims, border", [(2, 6), (3, (2, 3, 3))])
def test_mask_replaces_spots_by_a_neighbour_inside_the_output_window(dims, border):
    head = BlindSpotHead(_unet(dims), fraction=0.05)
    size = (8, 30, 30)[-dims:]
    x = torch.randn(3, 1, *size)
    g = torch.Generator().manual_seed(0)
    masked, spots = head.mask(x, border, generator=g)
    b = (border,) * dims if isinstance(border, int) else border
    out = torch.tensor([s - 2 * bi for s, bi in zip(size, b)])
    assert len(spots["batch"]) == 3 * max(1, round(0.05 * int(out.prod())))
    assert (spots["out"] >= 0).all() and (spots["out"] < out).all()
    pos_in = spots["out"] + torch.tensor(b)
    idx = (spots["batch"], slice(None), *pos_in.unbind(1))
    assert torch.equal(spots["target"], x[idx])  # the original values are the targets
    changed = masked != x
    assert changed.sum() <= len(spots["batch"])  # nothing but the spots changed
    spot_set = {(int(n), *map(int, p)) for n, p in zip(spots["batch"], pos_in)}
    for n, _c, *p in changed.nonzero().tolist():
        assert (n, *p) in spot_set
    # each spot's new value is one of its neighbours' (never itself: the values are distinct)
    for n, p, v in zip(spots["batch"].tolist(), pos_in.tolist(), masked[idx][:, 0].tolist()):
        lo = [max(0, q - RADIUS) for q in p]
        hood = x[(n, 0, *(slice(a, q + RADIUS + 1) for a, q in zip(lo, p)))]
        assert v != float(x[(n, 0, *p)]) and bool((hood == v).any())


def test_refuses_networks_without_a_unet_head():
    model = build_model(ModelConfig(arch="fcn8s", width=0.0625))
    with pytest.raises(InputError, match="needs a U-Net.*--self-supervised 0"):
        BlindSpotHead(model)


def test_weight_range_is_checked():
    with pytest.raises(InputError, match="self_supervised must be a number from 0"):
        TrainConfig(self_supervised=-1)
    with pytest.raises(InputError, match="self_supervised"):
        TrainConfig(self_supervised=float("nan"))


def test_sampler_draws_anywhere_windows_away_from_annotations():
    image, labels = disks((128, 128), seed=1, n=8)
    mask = np.zeros(labels.shape, bool)
    mask[:32, :32] = True
    sl = prepare_pairs([TrainingPair(image, labels, mask)], ModelConfig(depth=2, base_channels=4), WeightMapConfig(), region_margin=16)
    sampler = TileSampler(sl, 20, 8, 6, 20)
    rng = np.random.default_rng(0)
    wins = sampler._windows(rng, 400, anywhere=200)
    near = np.array([o for _, o in wins[:200]]) + 10  # window centres
    free = np.array([o for _, o in wins[200:]]) + 10
    assert near.max() < 32 + 20  # annotated windows stay by the painted corner
    assert free.max() > 100  # the others cover the whole image


def _zero_weight_batch(trainer):
    x, y, w = trainer.next_batch()
    return x, y, torch.zeros_like(w)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_unpainted_pixels_teach_the_encoder_only_with_the_head(weight):
    """With no annotated pixel in the batch, only the blind-spot loss can move the encoder."""
    image, labels = disks((96, 96), seed=2)
    cfg = TrainConfig(
        model=ModelConfig(depth=2, base_channels=4, batch_norm=False), iterations=5,
        self_supervised=weight, device="cpu", val_fraction=0, augment=False, tile_size=32,
    )
    trainer = Trainer([TrainingPair(image, labels)], cfg)
    before = [p.detach().clone() for p in trainer.model.encoders.parameters()]
    numbers = trainer.train_step(_zero_weight_batch(trainer))
    moved = any(not torch.equal(a, p) for a, p in zip(before, trainer.model.encoders.parameters()))
    assert moved == (weight > 0)
    assert ("denoise" in numbers) == (weight > 0)
    trainer.release()


def test_training_with_the_head_saves_a_plain_network_and_resumes(tmp_path):
    image, labels = disks((96, 96), seed=3)
    cfg = TrainConfig(
        model=ModelConfig(depth=2, base_channels=4), iterations=6, self_supervised=2.0,
        device="cpu", val_fraction=0, tile_size=24,
    )
    out = tmp_path / "m.pt"
    result = run_to_end(train([TrainingPair(image, labels)], cfg, output=out))
    assert not result.model.head._forward_pre_hooks  # the hook is gone after training
    ckpt = load_checkpoint(out)
    assert set(ckpt.model.state_dict()) == set(_unet().state_dict())  # no head in the network
    assert "blind_spot" in ckpt.train_state  # ... but in the resumable state
    assert ckpt.meta["train_config"]["self_supervised"] == 2.0
    trainer = Trainer([TrainingPair(image, labels)], resume=out)
    head = trainer.blind_spot.state_dict()
    for k, v in ckpt.train_state["blind_spot"].items():
        assert torch.equal(head[k], v)
    trainer.release()
