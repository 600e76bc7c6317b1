"""Native 3D: sparse 3D annotation, a short 3D training run, the CLI loop and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.cli import main
from unet_core.config import ModelConfig, TrainConfig, WeightMapConfig, resolve_train_config
from unet_core.io import read_tiff, write_tiff
from unet_core.pipeline import segment
from unet_core.progress import run_to_end
from unet_core.sample_data_3d import synthetic_nuclei_3d
from unet_core.training.data import TrainingPair, prepare_pairs
from unet_core.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

M3 = ModelConfig(depth=2, base_channels=4, batch_norm=True, spatial_dims=3, pool_z=(False, True))


@pytest.fixture(scope="module")
def stack():
    return synthetic_nuclei_3d((12, 48, 48), anisotropy=2.0, seed=3)


def test_synthetic_stack_is_deterministic_with_touching_3d_nuclei(stack):
    again = synthetic_nuclei_3d((12, 48, 48), anisotropy=2.0, seed=3)
    assert np.array_equal(stack.image, again.image) and np.array_equal(stack.labels, again.labels)
    assert stack.image.dtype == np.uint16 and stack.labels.dtype == np.uint32
    assert stack.voxel_size == (1.0, 0.5, 0.5)
    # nuclei span several slices, and some touch (different ids 6-adjacent)
    assert max(len(np.unique(np.nonzero(stack.labels == i)[0])) for i in range(1, 5)) >= 3
    big = synthetic_nuclei_3d((16, 96, 96), seed=0).labels
    touching = 0
    for axis in range(3):
        a, b = np.moveaxis(big, axis, 0)[:-1], np.moveaxis(big, axis, 0)[1:]
        touching += len({(int(u), int(v)) for u, v in zip(a[(a > 0) & (b > 0) & (a != b)], b[(a > 0) & (b > 0) & (a != b)])})
    assert touching >= 5


def test_painted_slices_are_a_sparse_3d_annotation(stack):
    painted = np.zeros_like(stack.labels)
    painted[[3, 8]] = stack.labels[[3, 8]]
    w = WeightMapConfig()
    (sample,) = prepare_pairs([TrainingPair(stack.image, painted)], M3, w, region_margin=4)
    assert sample.image.shape == (1, 12, 48, 48) and sample.weight.shape == (12, 48, 48)
    assert sample.region[[3, 8]].any() and not sample.region[[0, 1, 2, 4, 5, 6, 7, 9, 10, 11]].any()
    assert (sample.weight[~sample.region] == 0).all() and (sample.weight[sample.region] > 0).all()
    (aniso,) = prepare_pairs([TrainingPair(stack.image, painted)], M3, w, region_margin=4,
                             voxel_size=(4.0, 0.5, 0.5))
    assert not np.allclose(aniso.weight, sample.weight)  # distances follow the voxel size
    # a 2D model keeps the per-slice samples
    assert len(prepare_pairs([TrainingPair(stack.image, painted)], ModelConfig(depth=1), w, region_margin=4)) == 2


def test_3d_tile_defaults_follow_the_voxel_size():
    cfg = resolve_train_config(TrainConfig(model=M3, voxel_size=(2.0, 0.5, 0.5)), "cpu")
    assert (cfg.tile_size, cfg.batch_size, cfg.tile_z) == (32, 2, 8)
    assert resolve_train_config(TrainConfig(model=M3), "cpu").tile_z == 32


def test_3d_training_and_3d_instances(stack):
    painted = stack.labels.copy()
    painted[1::2] = 0
    cfg = TrainConfig(model=M3, iterations=3, tile_size=16, device="cpu", voxel_size=stack.voxel_size,
                      val_fraction=0.0, warmup=0)
    result = run_to_end(train([TrainingPair(stack.image, painted)], cfg))
    assert result.steps == 3 and result.model.config.spatial_dims == 3
    seg = segment(result.model, stack.image, voxel_size=stack.voxel_size)
    assert seg.probabilities.shape == (2, 12, 48, 48) and seg.labels.shape == (12, 48, 48)


def test_cli_3d_train_predict_and_bad_inputs(tmp_path, stack, capsys):
    write_tiff(tmp_path / "img.tif", stack.image, axes="ZYX", pixel_size=stack.voxel_size, unit="um")
    write_tiff(tmp_path / "lab.tif", stack.labels, axes="ZYX")
    write_tiff(tmp_path / "flat.tif", stack.image[4], axes="YX")
    write_tiff(tmp_path / "thin.tif", stack.image[:2], axes="ZYX")
    model = str(tmp_path / "m.pt")
    assert main(["train", "--dims", "3", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "-o", model, "--iterations", "2", "--depth", "2", "--base-channels", "4", "--tile-size", "16",
                 "--device", "cpu", "--val-fraction", "0"]) == 0
    assert main(["predict", model, str(tmp_path / "img.tif"), "-o", str(tmp_path / "p.tif")]) == 0
    labels, _ = read_tiff(tmp_path / "p.tif")
    assert labels.shape == stack.image.shape
    capsys.readouterr()
    assert main(["predict", model, str(tmp_path / "flat.tif"), "-o", str(tmp_path / "q.tif")]) == 2
    assert "3D model" in capsys.readouterr().err
    assert main(["predict", model, str(tmp_path / "thin.tif"), "-o", str(tmp_path / "r.tif")]) == 2
    assert "needs at least" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--dims", "3", "--voxel-size", "2,x,1", "--image", "a", "--labels", "b", "-o", "c.pt"])
    assert e.value.code == 2 and "does not parse" in capsys.readouterr().err
    assert main(["train", "--dims", "3", "--image", str(tmp_path / "flat.tif"), "--labels",
                 str(tmp_path / "flat.tif"), "-o", str(tmp_path / "n.pt"), "--iterations", "1"]) == 2
    assert "single 2D image" in capsys.readouterr().err


def test_plugin_3d_sample_has_the_voxel_scale():
    from pathlib import Path

    from npe2 import PluginManifest

    import napari_unet
    from napari_unet._sample_data import sample_nuclei_3d

    (img, img_kw, kind), (lab, lab_kw, lab_kind) = sample_nuclei_3d()
    assert (kind, lab_kind) == ("image", "labels") and img.ndim == 3 and lab.shape == img.shape
    assert img_kw["scale"] == lab_kw["scale"] and img_kw["scale"][0] > img_kw["scale"][1]
    manifest = PluginManifest.from_file(Path(napari_unet.__file__).parent / "napari.yaml")
    assert "napari-unet.sample_nuclei_3d" in [s.command for s in manifest.contributions.sample_data]
