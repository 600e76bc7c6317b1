"""A field of view of a lazy image: window geometry and equality with whole-image prediction."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _net(padding="valid"):
    import torch

    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(depth=2, base_channels=4, padding=padding)).eval()


def test_aligned_window_clips_and_rounds_the_origin_down():
    from unet_core.blockwise import aligned_window
    from unet_core.errors import InputError

    net = _net()
    m = net.size_multiple
    assert m > 1
    assert aligned_window(net, (-5, m + 1), (50, 10_000), (300, 277)) == ((0, m), (50, 277 - m))
    with pytest.raises(InputError, match="outside the image"):
        aligned_window(net, (400, 0), (500, 10), (300, 277))


@pytest.mark.parametrize(
    ("origin", "stop"),
    [((37, 50), (200, 261)), ((0, 0), (64, 64)), ((250, 200), (10_000, 10_000))],
    ids=["inside", "corner", "past-edge"],
)
def test_window_equals_the_same_region_of_the_whole_image(origin, stop):
    from unet_core.blockwise import (
        as_channel_first,
        iter_predict_window,
        sampled_normalization_stats,
    )
    from unet_core.normalization import apply_normalization
    from unet_core.progress import run_to_end
    from unet_core.tiling import predict_tiled

    net = _net()
    img = np.random.default_rng(0).integers(0, 255, (300, 277)).astype(np.uint8)
    data = as_channel_first(da.from_array(img, chunks=64), "YX", None)
    records = []
    got = run_to_end(iter_predict_window(net, data, origin, stop, tile_shape=48, device="cpu"), records.append)
    stats = sampled_normalization_stats(data, net.config.normalization)
    ref = predict_tiled(net, apply_normalization(img[None], *stats)[0], normalize_input=False,
                        tile_shape=128, device="cpu")
    (y, x), (h, w) = got.origin, got.probabilities.shape[1:]
    assert y % net.size_multiple == 0 and x % net.size_multiple == 0
    assert y <= origin[0] and x <= origin[1] and (y + h, x + w) == (min(stop[0], 300), min(stop[1], 277))
    assert records and records[-1].step == records[-1].total and records[-1].stage == "predict"
    assert np.abs(got.probabilities - ref[:, y : y + h, x : x + w]).max() < 1e-5


def test_window_reads_only_its_region():
    """Nothing outside the window and its halo is computed (a lazy 'poisoned' image)."""
    from unet_core.blockwise import as_channel_first, predict_window

    net = _net()
    img = da.from_array(np.random.default_rng(1).integers(0, 255, (512, 512)).astype(np.uint8), chunks=128)
    poisoned = da.map_blocks(_refuse_far_blocks, img, dtype=np.uint8)
    data = as_channel_first(poisoned, "YX", None)
    stats = (np.array([0.0]), np.array([255.0]))
    got = predict_window(net, data, (0, 0), (100, 100), stats=stats, device="cpu")
    assert got.probabilities.shape == (2, 100, 100)


def _refuse_far_blocks(block, block_info=None):
    y, x = (loc[0] for loc in block_info[0]["array-location"])
    if y >= 256 or x >= 256:
        raise AssertionError(f"block at {(y, x)} was read")
    return block
