"""Three-class target (background / interior / boundary) and its interior-seeded watershed."""

import numpy as np
import pytest

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, PostprocessConfig, TrainConfig, WeightMapConfig
from unet_core.errors import InputError
from unet_core.pipeline import POSTPROCESS_KEY, postprocess_for, segment_probabilities
from unet_core.postprocess import probabilities_to_instances
from unet_core.progress import run_to_end
from unet_core.training.data import TrainingPair
from unet_core.training.targets import three_class_target, training_targets
from unet_core.training.trainer import train


def touching_pair():
    lab = np.zeros((20, 30), np.uint32)
    lab[5:15, 3:13] = 1
    lab[5:15, 13:25] = 2
    return lab


def one_hot(classes, k=3):
    return np.stack([(classes == c).astype(np.float32) for c in range(k)])


def test_three_class_target_outlines_and_gaps():
    lab = touching_pair()
    t = training_targets(lab, WeightMapConfig(), region_margin=2, target_kind="three_class")
    assert set(np.unique(t.target)) == {0, 1, 2}
    assert (t.target[lab == 0] == 0).all()
    assert (t.target[5, 3:25] == 2).all() and (t.target[10, 3] == 2)  # outer outline
    assert (t.target[10, 12:14] == 2).all()                               # gap between the two
    assert t.target[10, 7] == 1 and t.target[10, 20] == 1                 # interiors
    two = training_targets(lab, WeightMapConfig(), region_margin=2)
    np.testing.assert_array_equal(two.weight, t.weight)  # the same boundary weight map
    np.testing.assert_array_equal(three_class_target(lab, lab) > 0, lab > 0)


def test_interior_seeds_split_touching_objects_and_keep_seedless_ones():
    lab = touching_pair()
    classes = three_class_target(lab, lab)
    classes[17:19, 27:29] = 2  # a small object of boundary only: no interior seed
    probs = one_hot(classes)
    out = probabilities_to_instances(probs, PostprocessConfig(seeds="interior", min_size=0))
    assert len(np.unique(out)) == 4  # two split objects + the seedless one
    assert len(np.unique(out[5:15, 3:12])) == 1 and out[10, 5] != out[10, 20]
    merged = probabilities_to_instances(probs, PostprocessConfig(seeds="interior", split_touching=False, min_size=0))
    assert len(np.unique(merged)) == 3  # no splitting: connected foreground
    stack = segment_probabilities(np.stack([probs, probs]), PostprocessConfig(seeds="interior", min_size=0)).labels
    assert stack.shape == (2, 20, 30) and len(np.unique(stack)) == 7
    with pytest.raises(InputError, match="three-class"):
        probabilities_to_instances(probs[:2], PostprocessConfig(seeds="interior"))
    with pytest.raises(InputError, match="seeds"):
        PostprocessConfig(seeds="maxima")


@pytest.mark.usefixtures("torch_one_thread")
def test_three_class_training_makes_a_three_class_model_with_interior_seeds(tmp_path):
    rng = np.random.default_rng(0)
    lab = np.zeros((48, 48), np.uint32)
    lab[8:20, 8:20], lab[8:20, 20:32], lab[30:42, 26:40] = 1, 2, 3
    image = (lab > 0).astype(np.float32) + 0.1 * rng.standard_normal(lab.shape).astype(np.float32)
    cfg = TrainConfig(model=ModelConfig(depth=1, base_channels=4, batch_norm=True), iterations=3,
                      tile_size=24, batch_size=2, val_fraction=0.0, device="cpu", warmup=0,
                      target="three_class")
    out = tmp_path / "m.pt"
    result = run_to_end(train([TrainingPair(image, lab)], cfg, output=out))
    ckpt = load_checkpoint(out)
    assert result.model.config.n_classes == 3 and ckpt.config.n_classes == 3
    assert ckpt.meta[POSTPROCESS_KEY]["seeds"] == "interior"  # even without validation
    assert postprocess_for(ckpt).seeds == "interior"
    two = tmp_path / "two.pt"
    run_to_end(train([TrainingPair(image, lab)], TrainConfig(**{**cfg.__dict__, "target": "two_class"}), output=two))
    with pytest.raises(InputError, match="three_class"):
        run_to_end(train([TrainingPair(image, lab)], cfg, init_from=two))
