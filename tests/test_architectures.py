"""FCN-32s/16s/8s and DeepLabv3+: shapes, gradients, checkpoints, tiling, bilinear init, VGG16 weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_core.checkpoint import load_checkpoint, save_checkpoint
from unet_core.config import ModelConfig, config_from_json, config_to_json
from unet_core.errors import CheckpointError, InputError
from unet_core.models import available_architectures, build_model
from unet_core.models.fcn import (
    FCN,
    TORCHVISION_VGG16_CONV_INDICES,
    bilinear_kernel,
    load_vgg16_weights,
)
from unet_core.progress import run_to_end
from unet_core.tiling import iter_predict_tiled, predict_tiled

pytestmark = pytest.mark.usefixtures("torch_one_thread")


TINY = 1 / 16  # FCN: 4..32 conv channels, fc 256; DeepLab: 4..32 channels

CONFIGS = {
    "fcn32s": ModelConfig(arch="fcn32s", width=TINY, n_classes=3),
    "fcn16s": ModelConfig(arch="fcn16s", width=TINY, n_classes=3),
    "fcn8s": ModelConfig(arch="fcn8s", width=TINY, n_classes=3, batch_norm=True),
    "deeplabv3plus-os16": ModelConfig(arch="deeplabv3plus", width=TINY, n_classes=3),
    "deeplabv3plus-os8": ModelConfig(arch="deeplabv3plus", width=TINY, n_classes=3, output_stride=8, in_channels=2),
}


def _blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A cheap nuclei-like test image: smoothed noise, thresholded, blurred, plus noise."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    blobs = ndi.gaussian_filter(rng.random(shape), 6) > 0.52
    return (ndi.gaussian_filter(blobs * 200.0, 1.5) + rng.normal(50, 10, shape)).astype(np.float32)


def _model(key: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(CONFIGS[key])


def test_registry_and_geometry():
    archs = available_architectures()
    for name in ("unet", "fcn32s", "fcn16s", "fcn8s", "deeplabv3plus"):
        assert name in archs
    for cfg in CONFIGS.values():
        net = build_model(cfg)
        assert net.config.padding == "same"  # padded-only archs are coerced
        assert net.border == 0 and net.context > 0
        assert net.size_multiple == (cfg.output_stride if cfg.arch == "deeplabv3plus" else 32)
        assert net.context % net.size_multiple == 0  # tiles keep the pooling grid
        assert net.output_size(37) == 37 and net.valid_input_size(5) == 5
        assert isinstance(net.backbone, torch.nn.Module)  # what freeze_encoder freezes
    with pytest.raises(InputError, match="unknown architecture"):
        build_model(ModelConfig(arch="segnet"))


def test_config_fields_validate_and_roundtrip():
    with pytest.raises(InputError, match="width"):
        ModelConfig(arch="fcn8s", width=0)
    with pytest.raises(InputError, match="width"):
        ModelConfig(arch="fcn8s", width=-1.0)
    with pytest.raises(InputError, match="output_stride"):
        ModelConfig(arch="deeplabv3plus", output_stride=32)
    cfg = ModelConfig(arch="deeplabv3plus", width=0.25, output_stride=8, n_classes=3)
    assert config_from_json(ModelConfig, config_to_json(cfg)) == cfg
    # old configs without the new keys still load, with the defaults
    assert config_from_json(ModelConfig, '{"arch": "unet"}').width == 1.0
    assert ModelConfig().padding == "valid"  # U-Net default unchanged


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("hw", [(37, 51), (1, 1), (100, 33)])
def test_forward_backward_odd_sizes(key, hw):
    net = _model(key).train()
    cfg = net.config
    x = torch.rand(2, cfg.in_channels, *hw, requires_grad=True)
    y = net(x)
    assert y.shape == (2, cfg.n_classes, *hw) and y.dtype == torch.float32
    target = torch.randint(0, cfg.n_classes, (2, *hw))
    F.cross_entropy(y, target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    first = next(iter(grads.values()))
    assert first.abs().sum() > 0  # gradients reach the first convolution


def test_wrong_channels_are_refused():
    net = _model("fcn32s")
    with pytest.raises(InputError, match="channel"):
        net(torch.zeros(1, 3, 40, 40))
    with pytest.raises(InputError, match="channel"):
        _model("deeplabv3plus-os8")(torch.zeros(1, 1, 40, 40))


def test_fcn_skip_scorers_start_at_zero_and_learn():
    net = _model("fcn8s").train()
    assert net.score_pool4.weight.abs().sum() == 0 and net.score_pool3.weight.abs().sum() == 0
    out = net(torch.rand(2, 1, 64, 64))
    F.cross_entropy(out, torch.randint(0, 3, (2, 64, 64))).backward()
    assert net.score_pool4.weight.grad.abs().sum() > 0
    assert net.score_pool3.weight.grad.abs().sum() > 0
    assert not hasattr(_model("fcn32s"), "score_pool4")
    assert hasattr(_model("fcn16s"), "score_pool4") and not hasattr(_model("fcn16s"), "score_pool3")


def test_deeplab_image_pooling_is_global_on_training_tiles_and_local_beyond():
    from unet_core.models.deeplab import ASPP

    torch.manual_seed(0)
    aspp = ASPP(4, 3, (1, 2, 3), pool_window=5).eval()
    small = torch.rand(1, 4, 3, 3)  # the window covers the whole map: global average pooling
    with torch.no_grad():
        pooled = aspp.image_pool(small.mean(dim=(-2, -1), keepdim=True))
        np.testing.assert_allclose(
            aspp.image_pool(F.avg_pool2d(small, 5, stride=1, padding=2, count_include_pad=False)).numpy(),
            pooled.expand(-1, -1, 3, 3).numpy(), atol=1e-6,
        )
        big = torch.rand(1, 4, 20, 20)
        changed = big.clone()
        changed[..., -1, -1] += 10.0  # far from the top-left corner: no effect there
        a, b = aspp(big), aspp(changed)
    assert torch.allclose(a[..., :10, :10], b[..., :10, :10], atol=1e-6)
    assert not torch.allclose(a[..., -3:, -3:], b[..., -3:, -3:])


def test_bilinear_kernel_and_upsampling_init():
    for f in (2, 8, 16, 32):
        k = bilinear_kernel(2 * f)
        # shifted copies at stride f sum to one: a partition of unity
        np.testing.assert_allclose(k.reshape(2, f, 2, f).sum(axis=(0, 2)), 1.0, atol=1e-6)
    net = _model("fcn8s")
    k = net.config.n_classes
    # learned x2 layers start as bilinear: a constant map stays constant in the interior
    const = torch.full((1, k, 6, 6), 2.5)
    with torch.no_grad():
        up = net.upscore2(const)[..., 1:-1, 1:-1]  # crop 1 = the alignment crop
    assert up.shape[-2:] == (12, 12)
    np.testing.assert_allclose(up[..., 2:-2, 2:-2].numpy(), 2.5, atol=1e-5)
    # ... and a linear ramp stays linear (it really interpolates)
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, k, 6, 6).contiguous()
    with torch.no_grad():
        r = net.upscore_pool4(ramp)[..., 1:-1, 1:-1][0, 0, 4].numpy()
    np.testing.assert_allclose(np.diff(r[2:-2]), 0.5, atol=1e-5)
    # the fixed final x8 upsampling of the 8s net
    with torch.no_grad():
        fin = F.conv_transpose2d(const, net.upscore_final, stride=8, groups=k)[..., 4:-4, 4:-4]
    np.testing.assert_allclose(fin[..., 8:-8, 8:-8].numpy(), 2.5, atol=1e-5)
    assert not any("upscore_final" in n for n, _ in net.named_parameters())
    # alignment: after the f/2 crop, feature column i peaks at the centre of its f input pixels
    for f in (2, 8, 32):
        x = torch.zeros(1, 1, 5, 5)
        x[..., 2] = 1
        kern = torch.from_numpy(bilinear_kernel(2 * f))[None, None]
        row = F.conv_transpose2d(x, kern, stride=f)[0, 0, f // 2 + 2 * f, f // 2 : f // 2 + 5 * f]
        peak = np.flatnonzero(row.numpy() == row.max().item())
        assert list(peak) == [2 * f + f // 2 - 1, 2 * f + f // 2]


@pytest.mark.parametrize("key", list(CONFIGS))
def test_checkpoint_roundtrip(tmp_path, key):
    net = _model(key).eval()
    path = save_checkpoint(tmp_path / f"{key}.pt", net, meta={"iterations": 1})
    ck = load_checkpoint(path)
    assert ck.config == net.config and type(ck.model) is type(net)
    x = torch.rand(1, net.config.in_channels, 45, 29)
    with torch.no_grad():
        np.testing.assert_allclose(ck.model(x).numpy(), net(x).numpy(), atol=1e-6)


def _predict_counting_tiles(net, image, **kwargs):
    records = []
    probs = run_to_end(iter_predict_tiled(net, image, device="cpu", **kwargs), records.append)
    return probs, (records[-1].total if records else 0)


@pytest.mark.parametrize("key", ["fcn32s", "fcn16s", "fcn8s", "deeplabv3plus-os16"])
def test_tiled_prediction(key):
    net = _model(key).eval()
    image = _blobs((150, 130))
    tiled, n_tiles = _predict_counting_tiles(net, image, tile_shape=96)
    whole, n_whole = _predict_counting_tiles(net, image, tile_shape=1024)
    assert n_tiles >= 4 and n_whole == 1
    assert tiled.shape == whole.shape == (3, 150, 130) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-4)
    assert np.all(tiled >= 0)
    diff = np.abs(tiled - whole)
    # padded nets blended over `context`: close, not identical (fc6 and the ASPP reach further;
    # measured at this seed: FCN mean 0.0004-0.0025, DeepLab 0.023)
    mean_limit, p99_limit = (0.06, 0.2) if key.startswith("deeplab") else (0.01, 0.05)
    assert diff.mean() < mean_limit, (key, diff.mean(), diff.max())
    assert np.quantile(diff, 0.99) < p99_limit, (key, np.quantile(diff, 0.99))


def test_tiled_prediction_multichannel_stack():
    net = _model("deeplabv3plus-os8").eval()
    stack = np.random.default_rng(0).random((2, 2, 40, 27)).astype(np.float32)  # (Z, C, Y, X)
    out = predict_tiled(net, stack, channel_axis=1, tile_shape=160, device="cpu")
    assert out.shape == (2, 3, 40, 27)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-4)


# ------------------------------------------------------------------------------ VGG16 weights
def _synthetic_vgg16_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    c_in = 3
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    for idx, c in zip(TORCHVISION_VGG16_CONV_INDICES, chans):
        state[f"features.{idx}.weight"] = torch.randn(c, c_in, 3, 3, generator=gen)
        state[f"features.{idx}.bias"] = torch.randn(c, generator=gen)
        c_in = c
    state["classifier.0.weight"] = torch.randn(4096, 25088, generator=gen)
    state["classifier.0.bias"] = torch.randn(4096, generator=gen)
    state["classifier.3.weight"] = torch.randn(4096, 4096, generator=gen)
    state["classifier.3.bias"] = torch.randn(4096, generator=gen)
    state["classifier.6.weight"] = torch.randn(1000, 4096, generator=gen)
    state["classifier.6.bias"] = torch.randn(1000, generator=gen)
    return state


def _uninitialised(cfg: ModelConfig):
    """A full-width net with allocated but uninitialised weights (skips the slow random init)."""
    with torch.device("meta"):
        net = build_model(cfg)
    return net.to_empty(device="cpu")


def test_vgg16_weights_load_into_full_width_fcn():
    state = _synthetic_vgg16_state(torch.Generator().manual_seed(0))
    net = _uninitialised(ModelConfig(arch="fcn16s", width=1.0, in_channels=1, n_classes=2))
    assert isinstance(net, FCN)
    load_vgg16_weights(net, state)
    np.testing.assert_array_equal(net.backbone.blocks[0][0].weight.detach().numpy(), state["features.0.weight"].sum(1, keepdim=True).numpy())
    np.testing.assert_array_equal(net.backbone.blocks[4][4].weight.detach().numpy(), state["features.28.weight"].numpy())  # conv5_3
    np.testing.assert_array_equal(net.backbone.blocks[2][2].bias.detach().numpy(), state["features.12.bias"].numpy())  # conv3_2
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    np.testing.assert_array_equal(net.fc6[0].weight[7, 100].detach().numpy(), fc6[7, 100].numpy())
    np.testing.assert_array_equal(net.fc7[0].weight[:, :, 0, 0].detach().numpy(), state["classifier.3.weight"].numpy())
    # 3-channel models take conv1 as is
    del net
    rgb = _uninitialised(ModelConfig(arch="fcn32s", width=1.0, in_channels=3, n_classes=2))
    load_vgg16_weights(rgb, state)
    np.testing.assert_array_equal(rgb.backbone.blocks[0][0].weight.detach().numpy(), state["features.0.weight"].numpy())


def test_vgg16_weights_refuse_wrong_models_and_files(tmp_path):
    with pytest.raises(InputError, match="width 1.0"):
        load_vgg16_weights(_model("fcn32s"), {})
    with torch.device("meta"):  # full-width nets without allocating their weights
        bn = build_model(ModelConfig(arch="fcn8s", batch_norm=True, width=1.0))
        net = build_model(ModelConfig(arch="fcn8s", width=1.0, in_channels=3))
    with pytest.raises(InputError, match="width 1.0"):
        load_vgg16_weights(bn, {})
    with pytest.raises(CheckpointError, match="no such"):
        load_vgg16_weights(net, tmp_path / "missing.pth")
    # a file of the wrong architecture (vgg-like keys, wrong shapes) is named as such
    bad = {f"features.{i}.weight": torch.zeros(2, 2, 3, 3) for i in TORCHVISION_VGG16_CONV_INDICES}
    bad.update({f"features.{i}.bias": torch.zeros(2) for i in TORCHVISION_VGG16_CONV_INDICES})
    torch.save({"state_dict": bad}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="shape"):
        load_vgg16_weights(net, tmp_path / "bad.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="missing"):
        load_vgg16_weights(net, tmp_path / "other.pth")


# ------------------------------------------------------------------------------------- CLI
def test_cli_trains_each_new_architecture(tmp_path, capsys):
    from unet_core.cli import main
    from unet_core.io import write_tiff

    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.uint16)
    labels[10:25, 12:30], labels[40:58, 35:50] = 1, 2
    image = (labels > 0) * 200.0 + rng.normal(50, 10, labels.shape)
    write_tiff(tmp_path / "img.tif", image.astype(np.float32), axes="YX")
    write_tiff(tmp_path / "lab.tif", labels, axes="YX")
    common = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
              "--iterations", "2", "--batch-size", "2", "--tile-size", "32", "--width", "0.0625", "--device", "cpu"]
    for arch, extra in (("fcn8s", []), ("deeplabv3plus", ["--output-stride", "8"])):
        out = tmp_path / f"{arch}.pt"
        assert main([*common, "--arch", arch, *extra, "-o", str(out)]) == 0
        cfg = load_checkpoint(out).config
        assert (cfg.arch, cfg.width, cfg.padding) == (arch, 0.0625, "same")
        if extra:
            assert cfg.output_stride == 8
    assert main([*common, "--arch", "deeplabv3plus", "--vgg16-weights", str(tmp_path / "v.pth"),
                 "-o", str(tmp_path / "x.pt")]) == 2
    assert "needs an FCN" in capsys.readouterr().err
    assert main([*common, "--arch", "fcn8s", "--vgg16-weights", str(tmp_path / "v.pth"),
                 "-o", str(tmp_path / "y.pt")]) == 2  # width 0.0625: VGG16 needs width 1
    assert "width 1.0" in capsys.readouterr().err
