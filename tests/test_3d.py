"""Native 3D: geometry of 3D U-Nets (isotropic and anisotropic), tiler exactness on volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_core.config import ModelConfig, anisotropic_pool_z
from unet_core.errors import InputError
from unet_core.models.unet import UNet
from unet_core.tiling import predict_tiled, predict_whole

torch.set_num_threads(1)


def _net(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(**{"depth": 2, "base_channels": 2, "spatial_dims": 3, **kw}).eval()


def test_anisotropic_pool_z_follows_the_voxel_size():
    assert anisotropic_pool_z((1.0, 1.0, 1.0), 3) == ()
    assert anisotropic_pool_z((2.0, 1.0, 1.0), 3) == (False, True, True)
    assert anisotropic_pool_z((4.0, 0.5, 0.5), 3) == (False, False, False)
    assert anisotropic_pool_z((4.0, 1.0, 1.0), 3) == (False, False, True)
    with pytest.raises(InputError, match="three positive numbers"):
        anisotropic_pool_z((0.0, 1.0, 1.0), 2)


def test_3d_config_is_checked():
    with pytest.raises(InputError, match="one entry per level"):
        ModelConfig(spatial_dims=3, depth=2, pool_z=(True,))
    with pytest.raises(InputError, match="needs spatial_dims=3"):
        ModelConfig(depth=2, pool_z=(True, False))
    with pytest.raises(InputError, match="2D only"):
        ModelConfig(arch="fcn8s", spatial_dims=3)
    with pytest.raises(InputError, match="use 2"):
        ModelConfig(spatial_dims=4)


def test_isotropic_3d_geometry_matches_2d_per_axis():
    net, net2d = _net(), UNet(depth=2, base_channels=2)
    assert net.border == net2d.border == 20 and net.axis_geometry(0) is net
    n = net.valid_input_size(4)
    out = net(torch.zeros(1, 1, n, n + 4, n))
    assert tuple(out.shape) == (1, 2, 4, 8, 4)
    assert isinstance(net.encoders[0][0], torch.nn.Conv3d)


def test_anisotropic_geometry_is_per_axis_and_exact():
    net = _net(depth=3, pool_z=(False, False, True))
    z = net.axis_geometry(0)
    assert (z.border, z.size_multiple) == (8, 2) and (net.border, net.size_multiple) == (44, 8)
    assert net.encoders[0][0].kernel_size == (1, 3, 3) and net.encoders[2][0].kernel_size == (3, 3, 3)
    for nz in range(1, 40):
        if z.is_valid_input_size(nz):
            shape = (nz, net.valid_input_size(4), net.valid_input_size(4))
            out = net(torch.zeros(1, 1, *shape))
            assert out.shape[2] == z.output_size(nz) == nz - 2 * z.border
    with pytest.raises(InputError, match="not valid"):
        net(torch.zeros(1, 1, 21, 92, 92))


def test_same_3d_net_any_size():
    net = _net(padding="same", pool_z=(False, True))
    assert tuple(net(torch.zeros(1, 1, 5, 13, 11)).shape) == (1, 2, 5, 13, 11)
    assert net.axis_geometry(0).size_multiple == 2 and net.size_multiple == 4


@pytest.mark.parametrize("kw", [{}, {"pool_z": (False, True)}, {"padding": "same", "pool_z": (False, True)}])
def test_tiled_3d_equals_whole_volume(kw):
    net = _net(**kw)
    vol = np.random.default_rng(0).random((11, 37, 29)).astype(np.float32)
    whole = predict_whole(net, vol)
    tiled = predict_tiled(net, vol, tile_shape=(6, 12, 12))
    assert tiled.shape == whole.shape == (2, 11, 37, 29)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
