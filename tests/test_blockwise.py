"""Block-wise prediction on dask: equality with the in-memory path, instances across blocks, CLI."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _net(padding="valid"):
    import torch

    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(depth=2, base_channels=4, padding=padding)).eval()


def _blockwise_probs(net, img, block, **kw):
    from unet_core.blockwise import (
        BlockwiseConfig,
        as_channel_first,
        blockwise_probabilities,
        iter_compute,
        sampled_normalization_stats,
    )
    from unet_core.progress import run_to_end

    data = as_channel_first(da.from_array(img, chunks=97), "ZYX"[-img.ndim:], None)
    stats = sampled_normalization_stats(data, net.config.normalization)
    cfg = BlockwiseConfig(block_size=block, workers=2, device="cpu", **kw)
    (got,) = run_to_end(iter_compute([blockwise_probabilities(net, data, cfg, stats=stats)], stage="p", workers=2))
    return got, stats


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_blockwise_probabilities_equal_the_in_memory_tiler(padding):
    from unet_core.normalization import apply_normalization
    from unet_core.tiling import predict_tiled

    net = _net(padding)
    img = np.random.default_rng(0).integers(0, 255, (300, 277)).astype(np.uint8)
    got, stats = _blockwise_probs(net, img, 64)
    ref = predict_tiled(net, apply_normalization(img[None], *stats)[0], normalize_input=False,
                        tile_shape=128, device="cpu")
    assert got.shape == ref.shape == (2, 300, 277)
    assert np.abs(got - ref).max() < 1e-5


def test_blockwise_stack_equals_in_memory_slices():
    from unet_core.normalization import apply_normalization
    from unet_core.tiling import predict_tiled

    net = _net()
    img = np.random.default_rng(1).integers(0, 4000, (3, 150, 133)).astype(np.uint16)
    got, stats = _blockwise_probs(net, img, 64, block_depth=2)
    ref = predict_tiled(net, apply_normalization(img[None], *stats)[0], normalize_input=False, device="cpu")
    assert got.shape == (2, 3, 150, 133)
    assert np.abs(got - np.moveaxis(ref, 1, 0)).max() < 1e-5


def test_mask_skips_empty_blocks():
    from unet_core.blockwise import BlockwiseConfig, as_channel_first, blockwise_probabilities

    net = _net()
    img = np.random.default_rng(3).integers(0, 255, (256, 256)).astype(np.uint8)
    data = as_channel_first(da.from_array(img), "YX", None)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 1  # foreground only in the first of the four 128-px blocks
    cfg = BlockwiseConfig(block_size=128, device="cpu")
    stats = (np.array([0.0]), np.array([255.0]))
    masked = blockwise_probabilities(net, data, cfg, stats=stats, mask=mask).compute(scheduler="threads")
    full = blockwise_probabilities(net, data, cfg, stats=stats).compute(scheduler="threads")
    np.testing.assert_array_equal(masked[:, :128, :128], full[:, :128, :128])
    assert (masked[0, 128:] == 1).all() and (masked[1:, :, 128:] == 0).all()
    assert (full[0, 128:] < 1).any()


def test_stats_are_the_whole_images_not_per_block():
    from unet_core.blockwise import sampled_normalization_stats
    from unet_core.config import NormalizationConfig
    from unet_core.normalization import normalization_stats

    img = np.random.default_rng(2).gamma(2.0, 100.0, (1, 600, 500)).astype(np.float32)
    cfg = NormalizationConfig()
    lo, sc = sampled_normalization_stats(da.from_array(img, chunks=100), cfg, max_pixels=10**9)
    ref = normalization_stats(img, cfg, channel_axis=0)
    np.testing.assert_allclose(lo, ref[0])
    np.testing.assert_allclose(sc, ref[1])


def _discs(shape, n, rmin, rmax, seed):
    rng = np.random.default_rng(seed)
    fg = np.zeros(shape, np.float32)
    for _ in range(n):
        r = int(rng.integers(rmin, rmax))
        grid = np.indices((2 * r + 1,) * len(shape)) - r
        ball = (grid**2).sum(0) <= r * r
        c = [int(rng.integers(0, s)) for s in shape]
        dst = tuple(slice(max(0, ci - r), min(s, ci + r + 1)) for ci, s in zip(c, shape))
        src = tuple(slice(d.start - (ci - r), d.stop - (ci - r)) for d, ci in zip(dst, c))
        fg[dst] = np.maximum(fg[dst], 0.9 * ball[src])
    return fg


def _fraction_identical(ref: np.ndarray, got: np.ndarray) -> tuple[float, int]:
    """Share of ``ref``'s objects with an object in ``got`` of IoU >= 0.9; number of objects."""
    from scipy import ndimage as ndi

    ok = n = 0
    for i, sl in enumerate(ndi.find_objects(ref), 1):
        if sl is None:
            continue
        n += 1
        mine = ref[sl] == i
        vals, counts = np.unique(got[sl][mine], return_counts=True)
        j, inter = vals[np.argmax(counts)], counts.max()
        if j:
            ok += inter / (mine.sum() + np.count_nonzero(got == j) - inter) >= 0.9
    return ok / n, n


def _label(fg, block, per_slice, tmp_path, stored=False):
    """Block-wise labels of ``fg`` given as a dask array, or (``stored``) as a zarr array that
    each block's task reads itself."""
    from unet_core.blockwise_labels import iter_label_blockwise
    from unet_core.config import PostprocessConfig
    from unet_core.progress import run_to_end

    store = zarr.open_array(tmp_path / "l.zarr", mode="w", shape=fg.shape, chunks=block, dtype=np.uint32)
    source = da.from_array(fg, chunks=block)
    if stored:
        source = zarr.open_array(tmp_path / "fg.zarr", mode="w", shape=fg.shape, chunks=block, dtype=fg.dtype)
        source[...] = fg
    lab, n = run_to_end(iter_label_blockwise(
        source, PostprocessConfig(), store, halo=24, per_slice=per_slice, workers=2
    ))
    return lab.compute(), n


@pytest.mark.parametrize("stored", [False, True], ids=["dask", "zarr"])
def test_blockwise_labels_match_in_memory_2d(tmp_path, stored):
    from unet_core.postprocess import probabilities_to_instances

    fg = _discs((768, 768), 700, 4, 13, seed=1)
    ref = probabilities_to_instances(np.stack([1 - fg, fg]))
    got, n = _label(fg, (96, 96), True, tmp_path, stored)
    crossing = sum(  # objects that cross a block face
        1 for sl in __import__("scipy.ndimage", fromlist=["x"]).find_objects(ref)
        if sl and any(s.start // 96 != (s.stop - 1) // 96 for s in sl)
    )
    assert crossing > 150
    frac, count = _fraction_identical(ref, got)
    assert frac >= 0.995 and _fraction_identical(got, ref)[0] >= 0.995
    assert n == int(got.max()) == len(np.unique(got)) - 1  # sequential ids
    assert got.dtype == np.uint32 and abs(count - n) <= count * 0.005


def test_blockwise_labels_match_in_memory_3d(tmp_path):
    from unet_core.postprocess import instances_from_foreground

    fg = _discs((48, 96, 96), 90, 3, 8, seed=2)
    ref = instances_from_foreground(fg > 0.5, True, 10, 4)
    got, n = _label(fg, (24, 48, 48), False, tmp_path, stored=True)
    assert _fraction_identical(ref, got)[0] >= 0.995 and _fraction_identical(got, ref)[0] >= 0.995


def test_touching_objects_across_a_face_stay_apart(tmp_path):
    fg = np.zeros((64, 128), np.float32)
    yy, xx = np.mgrid[:64, :128]
    fg[(yy - 32) ** 2 + (xx - 54) ** 2 <= 100] = 0.9  # two discs touching at x = 64, the face
    fg[(yy - 32) ** 2 + (xx - 74) ** 2 <= 100] = 0.9
    got, n = _label(fg, (64, 64), True, tmp_path)
    assert n == 2


def test_relabel_table_uses_running_offsets_and_merges():
    from unet_core.blockwise_labels import relabel_table

    table = relabel_table(np.array([3, 2]), np.array([[2, 4]]))
    np.testing.assert_array_equal(table, [0, 1, 2, 3, 2, 4])
    assert table.dtype == np.uint32


def _checkpoint(tmp_path):
    from unet_core.checkpoint import save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, _net())
    return path


def test_cli_blockwise_ome_zarr_roundtrip_and_bad_inputs(tmp_path, capsys):
    import tifffile

    from unet_core.cli import main
    from unet_core.lazy_io import open_lazy

    model = _checkpoint(tmp_path)
    img = np.random.default_rng(0).integers(0, 255, (300, 260)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", img)
    out = tmp_path / "out.ome.zarr"
    assert main([
        "predict", str(model), str(tmp_path / "img.tif"), "-o", str(out), "--block-size", "128",
        "--workers", "2", "--device", "cpu",
    ]) == 0
    labels = open_lazy(out / "labels" / "labels")
    image = open_lazy(out)
    assert labels.data.shape == image.data.shape == img.shape
    np.testing.assert_array_equal(np.asarray(image.data), img)
    from napari_unet._reader import get_zarr_reader

    layers = get_zarr_reader(str(out))(str(out))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    data = layers[1][0][0] if isinstance(layers[1][0], list) else layers[1][0]
    assert data.shape == img.shape and int(data.max().compute()) > 0
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "img.tif"), "-o", str(out), "--workers", "1"]) == 2
    zarr.open_group(tmp_path / "grp.zarr", mode="w")
    bad = [
        [str(tmp_path / "grp.zarr"), "-o", str(tmp_path / "a.tif")],
        [str(tmp_path / "img.tif"), "-o", str(tmp_path / "b.tif"), "--block-size", "8"],
        [str(tmp_path / "img.tif"), "-o", str(tmp_path / "c.zarr"), "--dask", "tcp://127.0.0.1:9"],
    ]
    for args in bad:
        assert main(["predict", str(model), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "exists" in err[0] and "not an array" in err[1] and "border" in err[2] and "dask" in err[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grp.zarr", "img.tif", "m.pt", "out.ome.zarr"]


def test_tiled_bigtiff_is_written_block_by_block(tmp_path):
    import tifffile

    from unet_core.lazy_io import open_lazy, write_tiled_tiff

    data = np.arange(600 * 530, dtype=np.uint32).reshape(600, 530)
    write_tiled_tiff(tmp_path / "x.tif", da.from_array(data, chunks=256), axes="YX")
    with tifffile.TiffFile(tmp_path / "x.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled
    lazy = open_lazy(tmp_path / "x.tif")
    np.testing.assert_array_equal(np.asarray(lazy.data[100:400, 7:300]), data[100:400, 7:300])


def test_ome_zarr_pyramid_levels_are_halvings_of_the_stored_level(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from unet_core.lazy_io import write_ome_zarr

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 9, (1101, 1030)).astype(np.uint32)
    image = rng.integers(0, 255, (1101, 1030)).astype(np.uint8)
    out = tmp_path / "o.ome.zarr"
    write_ome_zarr(out, da.from_array(labels, chunks=300), image=da.from_array(image, chunks=257),
                   axes="YX", pixel_size=(0.5, 0.25), unit="um")
    g = zarr.open_group(out, mode="r")
    lab1, img1 = g["labels/labels/s1"][:], g["s1"][:]
    assert lab1.shape == img1.shape == (550, 515)  # the odd row dropped
    np.testing.assert_array_equal(lab1, labels[:1100:2, ::2])
    mean = image[:1100].reshape(550, 2, 515, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(img1, np.round(mean).astype(np.uint8))
    np.testing.assert_array_equal(g["labels/labels/s2"][:], labels[:1100:4, :1028:4])
    ds = g.attrs.asdict()["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in ds] == ["s0", "s1", "s2"]
    assert ds[1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 0.5]}, {"type": "translation", "translation": [0.25, 0.125]}]
    nodes = [n for n in Reader(parse_url(out))() if n.data]
    assert [len(n.data) for n in nodes] == [3, 3]  # the image's and the labels' pyramids
