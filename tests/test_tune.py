"""Self-tuned post-processing: the grid search on validation outputs, and the trainer writing
its result into the checkpoint meta."""

from dataclasses import replace

import numpy as np
import pytest

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, PostprocessConfig, TrainConfig
from unet_core.pipeline import POSTPROCESS_KEY, postprocess_for
from unet_core.progress import run_to_end
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train
from unet_core.training.tune import ValidationOutput, candidates, fit_postprocess, score


def as_probs(foreground):
    """Two-class probabilities (2, Y, X) of a foreground probability map."""
    fg = np.asarray(foreground, np.float32)
    return np.stack([1 - fg, fg])


def disks(centres, r, shape=(64, 96)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint32)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (lab == 0)] = i
    return lab


def output(truth, foreground):
    return ValidationOutput(as_probs(foreground), np.ones(truth.shape, bool), truth)


def test_one_big_irregular_blob_is_not_split():
    blob = disks([(32, 25), (32, 48), (32, 71)], 14) > 0  # three merged lobes, one object
    truth = blob.astype(np.uint32)
    out = output(truth, blob * 0.9)
    assert score([out], PostprocessConfig()) < 1.0  # the default splitting cuts the lobes apart
    result = fit_postprocess([out])
    assert result.postprocess.split_touching is False
    assert result.ap50 == 1.0 and result.default_ap50 < 1.0


def test_touching_disks_are_split():
    truth = disks([(32, 30), (32, 58)], 14)  # two disks touching along a short chord
    out = output(truth, (truth > 0) * 0.9)
    result = fit_postprocess([out], replace(PostprocessConfig(), split_touching=False))
    assert result.postprocess.split_touching is True and result.ap50 == 1.0


def test_threshold_follows_the_probabilities():
    truth = disks([(20, 20), (44, 70)], 9)
    fg = np.where(truth > 0, 0.45, 0.05)  # a timid network: objects at 0.45
    result = fit_postprocess([output(truth, fg)])
    assert result.postprocess.threshold < 0.45 and result.ap50 == 1.0


def test_grid_is_sized_by_the_objects_and_starts_with_the_start():
    start = PostprocessConfig()
    thresholds, sizes, splits = candidates(400.0, start)
    assert thresholds[0] == start.threshold and sizes[0] == start.min_size
    assert splits[0] == (start.split_touching, start.min_distance)
    assert 100 in sizes and (True, 11) in splits  # 25 % of the area; radius of a 400-pixel disk
    assert fit_postprocess([]) is None
    empty = ValidationOutput(as_probs(np.zeros((8, 8))), np.ones((8, 8), bool), np.zeros((8, 8), np.uint32))
    assert fit_postprocess([empty]) is None


@pytest.mark.usefixtures("torch_one_thread")
def test_training_with_validation_writes_the_fitted_postprocess(tmp_path):
    truth = disks([(16, 16), (16, 48), (44, 30), (48, 74), (20, 80)], 7)
    image = (truth > 0).astype(np.float32) + 0.1 * np.random.default_rng(0).standard_normal(truth.shape)
    cfg = TrainConfig(model=ModelConfig(depth=1, base_channels=4, batch_norm=True), iterations=6,
                      tile_size=24, batch_size=2, val_fraction=0.0, val_every=3, device="cpu", warmup=0)
    pairs = [TrainingPair(image, truth, name="a")]
    out = tmp_path / "m.pt"
    result = run_to_end(train(pairs, cfg, output=out, val_pairs=[TrainingPair(image, truth, name="v")]))
    meta = load_checkpoint(out).meta
    assert isinstance(meta[POSTPROCESS_KEY], dict)
    assert postprocess_for(meta) == PostprocessConfig(**meta[POSTPROCESS_KEY])
    best = load_checkpoint(result.best_checkpoint).meta if result.best_checkpoint else None
    if best is not None and best["best_step"] == result.steps:
        assert best[POSTPROCESS_KEY] == meta[POSTPROCESS_KEY]
    no_val = run_to_end(train(pairs, cfg, output=tmp_path / "n.pt"))
    assert POSTPROCESS_KEY not in load_checkpoint(no_val.checkpoint).meta
