"""Overlap-tile prediction: exactness, odd shapes, channels, stacks, TTA, OOM retry, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_core.arrays import crop_reflect, crop_zero, mirror_pad, reflect_index
from unet_core.config import ModelConfig, NormalizationConfig
from unet_core.errors import InputError
from unet_core.models.base import SegmentationNet
from unet_core.models.unet import UNet
from unet_core.normalization import apply_normalization, normalization_stats, normalize
from unet_core.progress import run_to_end
from unet_core.tiling import (
    DIHEDRAL,
    Merger,
    NumpyMerger,
    choose_tile_shape,
    iter_predict_tiled,
    plan_tiles,
    predict_tiled,
    predict_whole,
    resolve_tta,
)
from unet_core.tiling.merger import overlap
from unet_core.tiling.predict import _predict_image

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _net(padding="valid", depth=2, base=4, in_channels=1, seed=0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(in_channels=in_channels, depth=depth, base_channels=base, padding=padding, **kw).eval()


@pytest.fixture(scope="module")
def valid_net():
    return _net("valid")


@pytest.fixture(scope="module")
def same_net():
    return _net("same")


def _reference(net: UNet, image: np.ndarray) -> np.ndarray:
    """One forward pass over the whole image padded with np.pad (independent of the tiler)."""
    x = normalize(image, net.config.normalization)
    h, w = x.shape
    if net.border:
        b = net.border
        sy, sx = net.valid_input_size(h), net.valid_input_size(w)
        x = np.pad(x, ((b, sy - h - b), (b, sx - w - b)), mode="reflect")
        off = 0
    else:
        m = net.size_multiple
        off = net.context + m
        sy, sx = -(-(h + 2 * off) // m) * m, -(-(w + 2 * off) // m) * m
        x = np.pad(x, ((off, sy - h - off), (off, sx - w - off)), mode="reflect")
    with torch.inference_mode():
        p = torch.softmax(net(torch.from_numpy(x)[None, None]), 1)[0].numpy()
    return p[:, off : off + h, off : off + w]


# ------------------------------------------------------------------------------ mirror extension
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_reflect_index_matches_np_pad(n):
    a = np.arange(n) * 10
    for before, after in [(0, 0), (1, 2), (7, 13), (40, 3)]:
        idx = reflect_index(-before, n + after, n)
        np.testing.assert_array_equal(a[idx], np.pad(a, (before, after), mode="reflect"))
    img = np.arange(n * 3).reshape(n, 3)
    np.testing.assert_array_equal(mirror_pad(img, ((9, 4), (5, 8))), np.pad(img, ((9, 4), (5, 8)), mode="reflect"))


# ------------------------------------------------------------------------------ exactness
def test_valid_tile_size_independent_and_equal_to_whole_pass(valid_net):
    img = np.random.default_rng(1).integers(0, 4000, (61, 83)).astype(np.uint16)
    ref = _reference(valid_net, img)
    assert ref.shape == (2, 61, 83)
    np.testing.assert_allclose(predict_whole(valid_net, img), ref, atol=TOL)
    for tile in (1, 5, 16, (23, 40), 64, None):
        got = predict_tiled(valid_net, img, tile_shape=tile, device="cpu")
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=TOL, err_msg=f"tile {tile}")
    plan = plan_tiles(valid_net, (61, 83), (16, 16))
    assert len(plan) > 4  # the small tile really was tiled
    assert all(y % valid_net.size_multiple == -valid_net.border % valid_net.size_multiple for y, _ in plan.tiles)


@pytest.mark.parametrize("shape", [(1, 1), (3, 517), (1000, 37), (4097, 5), (5, 6)])
def test_odd_shapes_and_images_smaller_than_the_border(shape):
    net = _net("valid", depth=2, base=2)  # border 20: (1, 1) and (5, 6) are far smaller
    img = np.random.default_rng(2).random(shape).astype(np.float32)
    ref = _reference(net, img)
    got = predict_tiled(net, img)
    np.testing.assert_allclose(got, ref, atol=TOL)
    got = predict_tiled(net, img, tile_shape=200)
    np.testing.assert_allclose(got, ref, atol=TOL)
    assert np.allclose(got.sum(0), 1, atol=1e-5)


def test_same_net_blending_is_exact(same_net):
    img = np.random.default_rng(3).random((70, 45)).astype(np.float32)
    ref = _reference(same_net, img)
    for tile in (4, 24, None):
        got = predict_tiled(same_net, img, tile_shape=tile)
        np.testing.assert_allclose(got, ref, atol=TOL, err_msg=f"tile {tile}")
    plan = plan_tiles(same_net, (70, 45), (24, 24))
    assert len(plan) > 1 and plan.window.min() == 0 and plan.window.max() == 1
    w = plan.window[plan.window.shape[0] // 2]
    assert np.all(np.diff(w[: len(w) // 2]) >= 0)  # smooth ramp up, then down


# ------------------------------------------------------------------------------ inputs
def test_channels(valid_net):
    net = _net("valid", in_channels=3)
    rng = np.random.default_rng(4)
    cyx = rng.random((3, 30, 41)).astype(np.float32)
    a = predict_tiled(net, cyx, channel_axis=0, tile_shape=16)
    b = predict_tiled(net, np.moveaxis(cyx, 0, -1), channel_axis=-1)
    np.testing.assert_allclose(a, b, atol=TOL)
    assert a.shape == (2, 30, 41)
    with pytest.raises(InputError, match="channel_axis"):
        predict_tiled(net, cyx)
    with pytest.raises(InputError, match="2 channel"):
        predict_tiled(net, cyx[:2], channel_axis=0)
    with pytest.raises(InputError, match="does not exist"):
        predict_tiled(net, cyx, channel_axis=3)
    with pytest.raises(InputError, match="1"):
        predict_tiled(valid_net, cyx, channel_axis=0)


def test_stacks_slice_by_slice(valid_net):
    rng = np.random.default_rng(5)
    zyx = rng.integers(0, 255, (3, 25, 30)).astype(np.uint8)
    got = predict_tiled(valid_net, zyx, tile_shape=16)
    assert got.shape == (3, 2, 25, 30)
    for z in range(3):
        np.testing.assert_allclose(got[z], _reference(valid_net, zyx[z]), atol=TOL)
    net3 = _net("valid", in_channels=2)
    zcyx = rng.random((2, 2, 20, 22)).astype(np.float32)
    got = predict_tiled(net3, zcyx, channel_axis=1)
    assert got.shape == (2, 2, 20, 22)
    np.testing.assert_allclose(got[1], predict_tiled(net3, zcyx[1], channel_axis=0), atol=TOL)


def test_any_dtype(valid_net):
    base = np.random.default_rng(6).integers(0, 200, (20, 21))
    ref = predict_tiled(valid_net, base.astype(np.float32))
    for dt in (np.uint8, np.uint16, np.int32, np.int64, np.float64, np.float16):
        np.testing.assert_allclose(predict_tiled(valid_net, base.astype(dt)), ref, atol=1e-4, err_msg=str(dt))
    assert predict_tiled(valid_net, base > 100).shape == (2, 20, 21)


def test_bad_inputs_give_clear_errors(valid_net):
    img = np.ones((20, 20), np.float32)
    for bad, match in [
        (np.where(np.eye(20, dtype=bool), np.nan, img), "NaN"),
        (np.where(np.eye(20, dtype=bool), np.inf, img), "infinite"),
        (np.zeros((0, 20), np.float32), "empty"),
        (np.zeros((20, 0, 3)), "empty"),
        (np.ones(20), "2D"),
        (np.ones((2, 2, 2, 2, 20, 20)), "expected"),
        (np.full((20, 20), "a"), "numeric"),
    ]:
        with pytest.raises(InputError, match=match):
            predict_tiled(valid_net, bad)
    with pytest.raises(InputError, match="NaN"):  # also without normalisation
        predict_tiled(valid_net, np.full((5, 5), np.nan, np.float32), normalize_input=False)
    with pytest.raises(InputError, match="not available"):
        predict_tiled(valid_net, img, device="cuda:7")
    with pytest.raises(InputError, match="tile_shape"):
        predict_tiled(valid_net, img, tile_shape=0)


def test_normalization_tilewise_equals_whole():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 60000, (3, 40, 50)).astype(np.uint16)
    for cfg in (NormalizationConfig(), NormalizationConfig(mode="minmax"), NormalizationConfig(mode="none")):
        whole = normalize(img, cfg, channel_axis=0)
        lo, sc = normalization_stats(img, cfg, channel_axis=0)
        np.testing.assert_array_equal(apply_normalization(img[:, 5:20, 7:33], lo, sc), whole[:, 5:20, 7:33])
    const = normalize(np.full((4, 4), 7, np.uint8), NormalizationConfig())
    assert np.all(const == 0)
    x = normalize(np.arange(1000, dtype=np.float32).reshape(10, 100), NormalizationConfig(low=0, high=100))
    assert x.min() == 0 and x.max() == 1


# ------------------------------------------------------------------------------ TTA
def _symmetrise(net: UNet) -> UNet:
    """Average every kernel over the 8 dihedral transforms.

    Convolutions with dihedral-symmetric kernels, 2x2 max-pooling, ReLU, symmetric 2x2
    up-convolutions and crop-and-concatenate all commute with flips and quarter turns (on valid
    sizes, whose pooling windows tile the map exactly), so the whole net is equivariant: its
    prediction of a flipped/rotated image is the flipped/rotated prediction, and TTA over the
    dihedral group must return exactly the plain prediction.
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                w = m.weight
                acc = torch.zeros_like(w)
                for k, flip in DIHEDRAL:
                    t = torch.rot90(w, k, dims=(-2, -1))
                    acc += torch.flip(t, dims=(-1,)) if flip else t
                w.copy_(acc / 8)
    return net


def test_tta_identity_on_symmetric_net():
    net = _symmetrise(_net("valid", seed=8))
    img = np.random.default_rng(8).random((37, 29)).astype(np.float32)
    plain = predict_tiled(net, img, tile_shape=16)
    np.testing.assert_allclose(predict_tiled(net, img, tile_shape=16, tta=True), plain, atol=TOL)
    same = _symmetrise(_net("same", seed=9))
    np.testing.assert_allclose(predict_tiled(same, img, tta=True), predict_tiled(same, img), atol=TOL)


def test_tta_undoes_each_transform(valid_net):
    img = np.random.default_rng(9).random((33, 40)).astype(np.float32)
    plain = predict_tiled(valid_net, img)
    hflip = predict_tiled(valid_net, img[:, ::-1].copy())[:, :, ::-1]
    got = predict_tiled(valid_net, img, tta=[0, 1])  # identity + horizontal mirror
    np.testing.assert_allclose(got, (plain + hflip) / 2, atol=TOL)
    assert np.abs(got - plain).max() > 1e-3  # a random net is not symmetric: TTA did something
    rot = predict_tiled(valid_net, np.rot90(img).copy())
    np.testing.assert_allclose(
        predict_tiled(valid_net, img, tta=[(1, False)]), np.rot90(rot, -1, axes=(1, 2)), atol=TOL
    )
    full = predict_tiled(valid_net, img, tta=True)
    assert np.allclose(full.sum(0), 1, atol=1e-5)


def test_resolve_tta():
    assert resolve_tta(False) == ((0, False),) and resolve_tta(True) == DIHEDRAL and len(set(DIHEDRAL)) == 8
    assert resolve_tta(4) == DIHEDRAL[:4] and resolve_tta([(1, True), 0]) == ((1, True), (0, False))
    for bad in (9, [8], ["x"], [], [(5, False)]):
        with pytest.raises(InputError):
            resolve_tta(bad)


# ------------------------------------------------------------------------------ memory, OOM
def test_tile_size_follows_memory_budget(valid_net):
    dev = torch.device("cpu")
    small = choose_tile_shape(valid_net, (5000, 5000), dev, budget=20 * 2**20)
    large = choose_tile_shape(valid_net, (5000, 5000), dev, budget=400 * 2**20)
    assert small[0] < large[0] <= 1024
    assert choose_tile_shape(valid_net, (30, 7), dev, budget=400 * 2**20) == (30, 7)
    img = np.random.default_rng(10).random((90, 70)).astype(np.float32)
    np.testing.assert_allclose(
        predict_tiled(valid_net, img, memory_budget_bytes=2**20), _reference(valid_net, img), atol=TOL
    )


class _FakeOOM(RuntimeError):
    pass


def _oom_above(net: UNet, limit: int, calls: list):
    """Make ``net`` raise a CUDA-style out-of-memory error for inputs with more than ``limit`` pixels."""
    forward = net.forward

    def fake(x):
        calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > limit:
            exc = getattr(torch.cuda, "OutOfMemoryError", _FakeOOM)
            raise exc("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    return fake


def test_oom_retries_with_smaller_batch_then_tiles(valid_net, monkeypatch):
    img = np.random.default_rng(11).random((120, 100)).astype(np.float32)
    ref = _reference(valid_net, img)
    calls: list = []
    net = _net("valid")
    monkeypatch.setattr(net, "forward", _oom_above(net, 70 * 70, calls))
    got = predict_tiled(net, img, tile_shape=50, batch_size=4)
    np.testing.assert_allclose(got, ref, atol=TOL)
    batches = [c[0] for c in calls]
    sides = [c[2] for c in calls]
    assert batches[0] == 4 and 1 in batches  # batch halved first ...
    assert min(sides) < sides[0]  # ... then the tiles
    calls.clear()
    monkeypatch.setattr(net, "forward", _oom_above(net, 1, calls))
    with pytest.raises(InputError, match="out of memory"):
        predict_tiled(net, img)


def test_other_errors_are_not_retried(monkeypatch):
    net = _net("valid")

    def broken(x):
        raise RuntimeError("something else")

    monkeypatch.setattr(net, "forward", broken)
    with pytest.raises(RuntimeError, match="something else"):
        predict_tiled(net, np.ones((10, 10), np.float32))


# ------------------------------------------------------------------------------ generator
def test_progress_and_cancellation(valid_net):
    img = np.random.default_rng(12).random((2, 40, 40)).astype(np.float32)
    valid_net.train()
    gen = iter_predict_tiled(valid_net, img, tile_shape=16)
    records = []
    result = run_to_end(gen, records.append)
    assert result.shape == (2, 2, 40, 40) and valid_net.training  # mode restored
    steps = [r.step for r in records]
    assert steps == sorted(steps) and steps[-1] == records[-1].total == len(records)
    assert all(r.stage == "predict" and r.eta is not None for r in records) and records[-1].eta == 0
    assert "slice 2/2" in records[-1].message

    gen = iter_predict_tiled(valid_net, img, tile_shape=16)
    next(gen)
    next(gen)
    gen.close()  # stop between tiles: no result, the generator is finished
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value is None
    assert valid_net.training
    valid_net.eval()


def test_channels_last_and_amp_on_cpu(valid_net):
    img = np.random.default_rng(13).random((40, 35)).astype(np.float32)
    ref = predict_tiled(valid_net, img, amp="auto")  # 'auto' = off on the CPU: exact
    np.testing.assert_allclose(ref, _reference(valid_net, img), atol=TOL)
    np.testing.assert_allclose(predict_tiled(valid_net, img, channels_last=True), ref, atol=TOL)
    assert valid_net.encoders[0][0].weight.is_contiguous()  # layout restored
    bf16 = predict_tiled(valid_net, img, amp="bf16")
    assert np.abs(bf16 - ref).max() < 0.1
    with pytest.raises(InputError, match="amp"):
        predict_tiled(valid_net, img, amp="fp8")


def test_model_config_normalization_is_applied():
    torch.manual_seed(0)
    net = UNet(ModelConfig(depth=1, base_channels=2, normalization=NormalizationConfig(mode="minmax"))).eval()
    img = np.random.default_rng(14).integers(0, 4000, (20, 20)).astype(np.uint16)
    scaled = (img.astype(np.float32) - img.min()) / (img.max() - img.min())
    np.testing.assert_allclose(predict_tiled(net, img), predict_tiled(net, scaled, normalize_input=False), atol=TOL)


# ------------------------------------------------------------------------------ CLI
def test_cli_predict_stack_and_channels(tmp_path):
    from unet_core.checkpoint import save_checkpoint
    from unet_core.cli import main
    from unet_core.io import read_tiff, write_tiff

    rng = np.random.default_rng(15)
    save_checkpoint(tmp_path / "m1.pt", _net("valid", base=2))
    stack = rng.integers(0, 255, (2, 30, 40)).astype(np.uint8)
    write_tiff(tmp_path / "zyx.tif", stack, axes="ZYX", pixel_size=(2.0, 0.5, 0.5))
    assert main(["predict", str(tmp_path / "m1.pt"), str(tmp_path / "zyx.tif"), "-o", str(tmp_path / "l1.tif"),
                 "--tile-size", "16", "--batch-size", "2", "--tta", "2", "--threshold", "0.4", "--no-split",
                 "--min-size", "1", "--device", "cpu", "--probabilities", str(tmp_path / "p1.tif")]) == 0
    labels, meta = read_tiff(tmp_path / "l1.tif")
    assert labels.shape == (2, 30, 40) and labels.dtype.kind == "u" and meta.axes == "ZYX"
    assert meta.pixel_size == pytest.approx((2.0, 0.5, 0.5), rel=1e-4)
    prob, _ = read_tiff(tmp_path / "p1.tif")
    expect = predict_tiled(_net("valid", base=2), stack, tta=2)[:, 1]
    np.testing.assert_allclose(prob, expect, atol=1e-5)

    save_checkpoint(tmp_path / "m2.pt", _net("valid", base=2, in_channels=2))
    write_tiff(tmp_path / "cyx.tif", rng.integers(0, 255, (2, 30, 40)).astype(np.uint8), axes="CYX")
    assert main(["predict", str(tmp_path / "m2.pt"), str(tmp_path / "cyx.tif"), "-o", str(tmp_path / "l2.tif")]) == 0
    labels, meta = read_tiff(tmp_path / "l2.tif")
    assert labels.shape == (30, 40) and meta.axes == "YX"  # channel axis taken from the TIFF, dropped


# ------------------------------------------------------------------------------ optimised CPU graph
@pytest.mark.parametrize("kw", [
    dict(padding="valid"),
    dict(padding="valid", batch_norm=True, up_mode="bilinear", in_channels=2, n_classes=3),
    dict(padding="same", batch_norm=True, depth=3),
])
def test_optimized_graph_equals_plain_module(kw):
    from unet_core.models.unet_inference import FastUNet

    net = _net(**{"depth": 2, "base": 4, **kw})
    for mod in net.modules():  # non-trivial batch-norm statistics, so folding is really tested
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    hw = (net.valid_input_size(37), net.valid_input_size(45)) if net.border else (37, 42)  # 'same': odd
    x = torch.rand(2, net.config.in_channels, *hw)
    with torch.inference_mode():
        ref = net(x)
        for cl in (False, True):
            got = FastUNet(net, channels_last=cl).eval()(x)
            assert got.shape == ref.shape and got.is_contiguous()
            torch.testing.assert_close(got, ref, atol=TOL, rtol=0, msg=f"channels_last={cl}")


def test_optimized_tiling_is_exact_and_tile_size_independent(valid_net, caplog):
    img = np.random.default_rng(14).random((75, 58)).astype(np.float32)
    ref = _reference(valid_net, img)
    plain = predict_tiled(valid_net, img, optimize=False)
    np.testing.assert_allclose(plain, ref, atol=TOL)
    for tile in (8, (21, 33), None):
        for cl in (None, False):
            got = predict_tiled(valid_net, img, tile_shape=tile, channels_last=cl)
            np.testing.assert_allclose(got, ref, atol=TOL, err_msg=f"tile {tile}, channels_last {cl}")
    # a network the optimised graph cannot copy falls back to the plain module (logged at debug)
    net = _net("valid")
    net.decoders[0].conv.append(torch.nn.Identity())  # an unexpected layer inside a DoubleConv
    with caplog.at_level("DEBUG", logger="unet_core.tiling"):
        got = predict_tiled(net, img, tile_shape=32)
    np.testing.assert_allclose(got, ref, atol=TOL)
    assert "no optimised inference graph" in caplog.text


def test_crop_helpers_nd():
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 100, (2, 5, 7, 6))
    pads = ((3, 9), (6, 2), (1, 4))
    np.testing.assert_array_equal(mirror_pad(vol, pads), np.pad(vol, ((0, 0), *pads), mode="reflect"))
    w = crop_reflect(vol, (1, 2, 0), (3, 4, 6))
    assert np.shares_memory(w, vol)  # inside: a view
    np.testing.assert_array_equal(w, vol[:, 1:4, 2:6, 0:6])
    z = crop_zero(vol, (-2, 5, 3), (4, 4, 5))
    expect = np.zeros((2, 4, 4, 5), vol.dtype)
    expect[:, 2:, :2, :3] = vol[:, :2, 5:7, 3:6]
    np.testing.assert_array_equal(z, expect)
    assert not crop_zero(vol, (10, 0, 0), (2, 2, 2)).any()


# ------------------------------------------------------------------------------ splitter / merger
class _Geometry(SegmentationNet):
    """Geometry only (no layers): a 'valid' net losing ``border`` per side on a grid of ``m``, or a
    padded net with ``context``; enough for :func:`plan_tiles` in any number of axes."""

    def __init__(self, border: int = 0, context: int = 0, m: int = 1) -> None:
        super().__init__()
        self.config = ModelConfig()
        self.border, self.context, self.size_multiple = border, context, m

    def output_size(self, n: int) -> int:
        if n - 2 * self.border < 1:
            raise InputError(f"input size {n} too small")
        return n - 2 * self.border


def _covered(plan, spatial) -> np.ndarray:
    """How many tile outputs (with nonzero window weight) cover each pixel."""
    count = np.zeros(spatial, int)
    for t in plan.tiles:
        w = np.ones(plan.out_shape) if plan.window is None else plan.window > 0
        where = overlap(plan.output_origin(t), plan.out_shape, spatial)
        if where is not None:
            count[where[0]] += w[where[1]].astype(int)
    return count


@pytest.mark.parametrize("spatial", [(40, 33, 25), (7, 90, 3, 12)])
def test_plan_3d_and_4d_shapes(valid_net, same_net, spatial):
    for net in (valid_net, same_net):
        plan = plan_tiles(net, spatial, (16,) * len(spatial))
        assert plan.ndim == len(spatial) and plan.spatial_shape == spatial
        assert len(plan.in_shape) == len(plan.out_shape) == len(spatial)
        assert all(len(t) == len(spatial) for t in plan.tiles) and len(set(plan.tiles)) == len(plan)
        # the tiles are the product of per-axis starts, and each axis is planned as in 1D
        per_axis = [sorted({t[i] for t in plan.tiles}) for i in range(len(spatial))]
        assert len(plan) == np.prod([len(a) for a in per_axis])
        for i, n in enumerate(spatial):
            one = plan_tiles(net, (n,), (16,))
            assert [t[0] for t in one.tiles] == per_axis[i] and one.in_shape[0] == plan.in_shape[i]
        assert _covered(plan, spatial).min() >= 1  # every pixel gets an output with weight
        if net.border:
            assert plan.window is None and plan.output_origin(plan.tiles[0]) == (0,) * len(spatial)
        else:
            assert plan.window.shape == plan.in_shape and plan.window.dtype == np.float32
            ones = [plan_tiles(net, (n,), (16,)).window for n in spatial]
            expect = ones[0]
            for w in ones[1:]:
                expect = np.multiply.outer(expect, w)
            np.testing.assert_array_equal(plan.window, expect)  # outer product over the axes


def test_plan_2d_window_is_the_outer_product(same_net):
    plan = plan_tiles(same_net, (70, 45), (24, 24))
    wy, wx = (plan_tiles(same_net, (n,), (24,)).window for n in (70, 45))
    np.testing.assert_array_equal(plan.window, np.outer(wy, wx))
    assert plan.tiles == [(y, x) for y in sorted({t[0] for t in plan.tiles}) for x in sorted({t[1] for t in plan.tiles})]
    with pytest.raises(InputError, match="one tile size per spatial axis"):
        plan_tiles(same_net, (70, 45), (24,))


def test_numpy_merger_abutting_write_equals_direct_placement():
    rng = np.random.default_rng(20)
    target = rng.random((3, 23, 17)).astype(np.float32)
    merger = NumpyMerger(target.shape)
    # abutting 8x6 windows on a grid starting before the image and running past its end
    for y in range(-3, 23, 8):
        for x in range(-2, 17, 6):
            tile = crop_zero(target, (y, x), (8, 6))
            merger.add(tile, (y, x))
    merger.add(np.full((3, 8, 6), 9.0, np.float32), (40, 40))  # wholly outside: dropped
    got = merger.result()
    assert got.dtype == np.float32 and got.shape == target.shape
    np.testing.assert_array_equal(got, target)
    assert merger.result() is got  # idempotent
    with pytest.raises(RuntimeError, match="new merger"):
        merger.add(target[:, :8, :6], (0, 0))


def test_numpy_merger_blends_overlapping_constants_to_the_constant(same_net):
    plan = plan_tiles(same_net, (70, 45), (16, 16))
    assert len(plan) > 4
    const = np.array([0.25, 0.75, 3.0], np.float32)
    out = np.full((3, 70, 45), np.nan, np.float32)  # caller storage, reset by the merger
    merger = NumpyMerger(out.shape, plan.window, out=out)
    tile = np.broadcast_to(const[:, None, None], (3, *plan.out_shape)).copy()
    for t in plan.tiles:
        merger.add(tile, plan.output_origin(t))
    got = merger.result()
    assert got is out
    np.testing.assert_allclose(got, np.broadcast_to(const[:, None, None], out.shape), rtol=1e-6)
    with pytest.raises(InputError, match="float32"):
        NumpyMerger((3, 70, 45), out=np.zeros((3, 70, 45)))
    with pytest.raises(InputError, match="window"):
        NumpyMerger((3, 70, 45), plan.window).add(tile[:, 1:], (0, 0))
    assert isinstance(merger, Merger)


@pytest.mark.parametrize("geometry", [_Geometry(border=3, m=4), _Geometry(context=5, m=2)])
def test_3d_plan_merger_round_trip_with_an_identity_model(geometry):
    """The splitter, the forward loop and the merger are N-D: an identity 'model' (a plain
    function on arrays) cut into 3D tiles and merged back returns the volume."""
    rng = np.random.default_rng(21)
    vol = rng.random((2, 19, 14, 11)).astype(np.float32)  # (C, Z, Y, X)
    plan = plan_tiles(geometry, vol.shape[1:], (6, 5, 4))
    assert len(plan) > 8 and len(plan.tiles[0]) == 3
    b = geometry.border

    def identity(x: np.ndarray) -> np.ndarray:  # (B, C, *in_shape) -> (B, C, *out_shape)
        return x[(Ellipsis, *(slice(b, s - b) for s in x.shape[2:]))]

    merger = NumpyMerger(vol.shape, plan.window)
    records = list(_predict_image(identity, vol, np.zeros(2), np.ones(2), plan, 3, merger, lambda i, n: (i, n)))
    assert records[-1] == (len(plan), len(plan)) and len(records) == -(-len(plan) // 3)
    got = merger.result()
    if plan.window is None:
        np.testing.assert_array_equal(got, vol)
    else:
        np.testing.assert_allclose(got, vol, rtol=1e-6)


class _Recorder:
    """A merger factory recording its calls, storing into NumpyMergers of its own."""

    def __init__(self):
        self.calls = []

    def __call__(self, index, shape, plan):
        self.calls.append((index, shape, len(plan)))
        return NumpyMerger(shape, plan.window)


def test_merger_factory_hook(valid_net, same_net):
    rng = np.random.default_rng(22)
    zyx = rng.random((3, 30, 41)).astype(np.float32)
    for net in (valid_net, same_net):
        rec = _Recorder()
        got = predict_tiled(net, zyx, tile_shape=16, merger_factory=rec)
        assert isinstance(got, list) and len(got) == 3
        np.testing.assert_array_equal(np.stack(got), predict_tiled(net, zyx, tile_shape=16))
        assert [c[:2] for c in rec.calls] == [(z, (2, 30, 41)) for z in range(3)]
        rec = _Recorder()
        one = predict_tiled(net, zyx[1], tile_shape=16, merger_factory=rec)
        np.testing.assert_array_equal(one, got[1])
        assert len(rec.calls) == 1


def test_merger_factory_called_again_after_out_of_memory(valid_net, monkeypatch):
    img = np.random.default_rng(23).random((120, 100)).astype(np.float32)
    net = _net("valid")
    calls: list = []
    monkeypatch.setattr(net, "forward", _oom_above(net, 70 * 70, calls))
    rec = _Recorder()
    got = predict_tiled(net, img, tile_shape=50, batch_size=1, merger_factory=rec)
    np.testing.assert_allclose(got, _reference(valid_net, img), atol=TOL)
    assert [c[0] for c in rec.calls] == [0, 0] and rec.calls[1][2] > rec.calls[0][2]  # smaller tiles


# ------------------------------------------------------------------------------ padded nets: context
_TINY = {
    "fcn32s": dict(arch="fcn32s", width=1 / 16, n_classes=3),
    "fcn16s": dict(arch="fcn16s", width=1 / 16, n_classes=3),
    "fcn8s": dict(arch="fcn8s", width=1 / 16, n_classes=3, batch_norm=True),
    "deeplabv3plus": dict(arch="deeplabv3plus", width=1 / 16, n_classes=3),
    "deeplabv3plus-os8": dict(arch="deeplabv3plus", width=1 / 16, n_classes=3, output_stride=8),
}


def _tiny(key: str):
    from unet_core.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(**_TINY[key])).eval()


def _reach(net) -> int:
    """Farthest distance along x from an input pixel to an output pixel that depends on it, over
    every phase of the pooling grid: NaN columns spread through the net (0 * NaN = NaN, so the
    weights' values do not matter), and the NaN output columns say which outputs depend on them."""
    m, spacing = net.size_multiple, 1280  # spacing: over twice any reach measured here
    x = torch.zeros(1, net.config.in_channels, m, (m + 1) * spacing)
    probes = [spacing // 2 + k * (spacing + 1) for k in range(m)]  # phases 0 .. m-1
    x[..., probes] = float("nan")
    with torch.inference_mode():
        nan_cols = torch.isnan(net(x)[0]).flatten(0, 1).any(0).nonzero().flatten().numpy()
    reach = 0
    for p in probes:
        near = nan_cols[np.abs(nan_cols - p) < spacing // 2]
        reach = max(reach, p - near.min(), near.max() - p)
    return int(reach)


@pytest.mark.parametrize("key", ["fcn32s", "fcn16s", "fcn8s", "unet-same", "deeplabv3plus"])
def test_padded_context_covers_the_receptive_field(key, same_net):
    from unet_core.tiling import padded_context

    net = same_net if key == "unet-same" else _tiny(key)
    reach = _reach(net)
    if key.startswith("deeplab"):  # the documented exception: ASPP and image pooling reach further
        assert reach > padded_context(net), reach
    else:  # tiles are blended only where they saw their whole receptive field
        assert reach <= padded_context(net), (reach, net.context)


@pytest.mark.parametrize("key", ["fcn32s", "fcn16s", "fcn8s"])
def test_fcn_tiling_equals_the_whole_pass(key):
    net = _tiny(key)
    img = np.random.default_rng(24).random((150, 130)).astype(np.float32)
    got = predict_tiled(net, img, tile_shape=64, device="cpu")
    np.testing.assert_allclose(got, predict_whole(net, img), atol=TOL)


@pytest.mark.parametrize("key", ["deeplabv3plus", "deeplabv3plus-os8"])
def test_deeplab_tiling_bound(key):
    """The bound stated in unet_core.tiling and the README: random weights, a nuclei image,
    32-128 px tiles: max |difference| < 0.15, mean < 0.03 against the whole pass."""
    from unet_core.sample_data import synthetic_nuclei

    net = _tiny(key)
    img = synthetic_nuclei()[0][100:250, 50:180]
    whole = predict_whole(net, img)
    for tile in (32, 96):
        diff = np.abs(predict_tiled(net, img, tile_shape=tile, device="cpu") - whole)
        assert diff.max() < 0.15 and diff.mean() < 0.03, (tile, diff.max(), diff.mean())
        assert diff.max() > 1e-3  # not exact: if it ever becomes exact, say so instead of this bound
