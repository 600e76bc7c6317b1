"""The U-Net: paper geometry, size errors, configuration, initialisation, forward + backward."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import unet_core
from unet_core.config import ModelConfig
from unet_core.errors import InputError
from unet_core.models import build_model
from unet_core.models.unet import UNet

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_exported_and_paper_defaults():
    assert unet_core.UNet is UNet
    net = UNet(base_channels=2)  # paper topology, thin channels for speed
    cfg = net.config
    assert (cfg.in_channels, cfg.n_classes, cfg.depth, cfg.padding, cfg.up_mode) == (1, 2, 4, "valid", "transpose")
    assert ModelConfig().base_channels == 64
    assert isinstance(net.head, torch.nn.Conv2d) and net.head.kernel_size == (1, 1)


def test_paper_geometry():
    net = UNet(base_channels=1)
    assert net.border == 92
    assert net.valid_input_size(388) == 572
    assert net.output_size(572) == 388
    assert net.size_multiple == 16
    # every valid size maps back: output(valid_input_size(n)) >= n, and it is the smallest
    for n in (1, 5, 16, 100, 389):
        s = net.valid_input_size(n)
        assert net.output_size(s) >= n
        assert all(not net.is_valid_input_size(k) or net.output_size(k) < n for k in range(1, s))


def test_geometry_matches_forward():
    for depth in (0, 1, 2, 3):
        net = UNet(depth=depth, base_channels=1).eval()
        s = net.valid_input_size(7)
        with torch.inference_mode():
            y = net(torch.zeros(1, 1, s, s + net.size_multiple))
        assert y.shape[-2:] == (net.output_size(s), net.output_size(s + net.size_multiple))
        assert s - net.output_size(s) == 2 * net.border


def test_invalid_size_error_names_nearest_sizes():
    net = UNet(base_channels=1)
    with pytest.raises(InputError, match="nearest valid sizes: 556 and 572"):
        net.output_size(570)
    with pytest.raises(InputError, match="smallest valid size is 188"):
        net.output_size(100)
    with pytest.raises(InputError, match="nearest valid sizes: 556 and 572"):
        net(torch.zeros(1, 1, 570, 572))
    with pytest.raises(InputError, match="channel"):
        net(torch.zeros(1, 3, 572, 572))


def test_same_padding_geometry():
    net = UNet(depth=2, base_channels=2, padding="same").eval()
    assert net.border == 0 and net.output_size(37) == 37 and net.valid_input_size(37) == 37
    with torch.inference_mode():
        assert net(torch.zeros(2, 1, 37, 50)).shape == (2, 2, 37, 50)


def test_keyword_arguments_and_config():
    net = UNet(in_channels=3, n_classes=4, depth=2, base_channels=8, padding="same", batch_norm=True,
               dropout=0.3, up_mode="bilinear")
    cfg = net.config
    assert (cfg.in_channels, cfg.n_classes, cfg.depth, cfg.base_channels) == (3, 4, 2, 8)
    assert (cfg.padding, cfg.batch_norm, cfg.dropout, cfg.up_mode) == ("same", True, 0.3, "bilinear")
    assert len(cfg.class_names) == 4
    base = ModelConfig(depth=3, base_channels=4)
    assert UNet(base, depth=1).config.depth == 1 and UNet(base).config.base_channels == 4
    assert type(build_model(base)) is UNet
    with pytest.raises(dataclass_frozen_error()):
        cfg.depth = 3  # frozen: saved with checkpoints, never mutated
    for bad in ({"n_classes": 1}, {"padding": "full"}, {"up_mode": "nearest"}, {"dropout": 1.0}):
        with pytest.raises(InputError):
            UNet(**bad)


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_he_initialisation():
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=32)
    conv = net.encoders[1][0]  # 32 -> 64 channels, fan_in = 32 * 9
    std = conv.weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize(
    "padding,batch_norm,up_mode,dropout",
    list(itertools.product(("valid", "same"), (False, True), ("transpose", "bilinear"), (0.0, 0.5))),
)
def test_forward_backward_every_configuration(padding, batch_norm, up_mode, dropout):
    torch.manual_seed(0)
    net = UNet(in_channels=2, n_classes=3, depth=2, base_channels=4, padding=padding,
               batch_norm=batch_norm, up_mode=up_mode, dropout=dropout)
    s = net.valid_input_size(12)
    x = torch.randn(2, 2, s, s + 4 * (padding == "valid"))
    y = net.train()(x)
    expect = (net.output_size(x.shape[2]), net.output_size(x.shape[3]))
    assert y.shape == (2, 3, *expect)
    target = torch.randint(0, 3, (2, *expect))
    loss = torch.nn.functional.cross_entropy(y, target)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.encoders[0][0].weight.grad.abs().sum() > 0
    assert net.head.weight.grad.abs().sum() > 0
    # eval mode is deterministic (dropout off, batch-norm running statistics)
    net.eval()
    with torch.inference_mode():
        assert torch.equal(net(x), net(x))


# ------------------------------------------------------------------------------ spatial axes
def test_spatial_dims_2_by_default_and_other_counts_refused_with_the_fix():
    net = UNet(depth=1, base_channels=2)
    assert ModelConfig().spatial_dims == 2 and net.spatial_dims == 2
    for bad in (4, 1, 0):
        with pytest.raises(InputError, match=r"use 2 \(images; stacks slice by slice\) or 3"):
            ModelConfig(spatial_dims=bad)
    with pytest.raises(InputError, match=r"\(N, C, \*spatial\) tensor with 2 spatial axes"):
        net(torch.zeros(1, 1, 20, 20, 20))
    with pytest.raises(InputError, match="2 spatial axes"):
        net(torch.zeros(1, 20, 20))


def test_spatial_dims_saved_and_old_checkpoints_load_as_2d(tmp_path):
    import json

    from unet_core import checkpoint as ck

    net = UNet(depth=1, base_channels=2)
    ck.save_checkpoint(tmp_path / "new.pt", net)
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    assert json.loads(payload["model_config"])["spatial_dims"] == 2
    # a checkpoint written before the field existed
    cfg = json.loads(payload["model_config"])
    del cfg["spatial_dims"]
    payload["model_config"] = json.dumps(cfg)
    payload["digest"] = ck._digest({k: v for k, v in payload.items() if k != "digest"})
    torch.save(payload, tmp_path / "old.pt")
    loaded = ck.load_checkpoint(tmp_path / "old.pt")
    assert loaded.model.config.spatial_dims == 2 and loaded.model.config == net.config
