"""The training region of sparse painting: painted objects + ring + background strokes ('ring'),
or the grown bounding box ('box'); an explicit mask always wins."""

import numpy as np
import pytest

from unet_core.config import TrainConfig, WeightMapConfig
from unet_core.errors import InputError
from unet_core.training.targets import BACKGROUND_LABEL, annotated_region, training_targets


def two_far_objects(shape=(80, 80)):
    lab = np.zeros(shape, np.uint32)
    lab[10:16, 10:16] = 3
    lab[60:66, 60:66] = 7
    return lab


def test_ring_region_is_objects_plus_ring_not_the_box_between():
    lab = two_far_objects()
    r = annotated_region(lab, 16, rule="ring", ring=3)
    assert r[lab > 0].all()
    assert r[8, 13] and r[13, 18]          # within 3 pixels of object 1
    assert not r[8 - 2, 13] and not r[13, 20]  # beyond the ring
    assert not r[38, 38]                   # the gap between far objects is not taught
    box = annotated_region(lab, 16, rule="box")
    assert box[38, 38] and box.sum() > 3 * r.sum()


def test_ring_zero_is_just_the_painted_pixels():
    lab = two_far_objects()
    np.testing.assert_array_equal(annotated_region(lab, 0, rule="ring", ring=0), lab > 0)


def test_background_strokes_join_the_region_as_background():
    lab = two_far_objects()
    lab[40:42, 30:50] = BACKGROUND_LABEL  # a stroke far from any object
    t = training_targets(lab, WeightMapConfig(), region_margin=0, region_rule="ring", sparse_ring=2)
    assert t.region[40:42, 30:50].all() and not t.region[45, 40]
    assert (t.target[40:42, 30:50] == 0).all() and (t.weight[40:42, 30:50] > 0).all()
    assert BACKGROUND_LABEL not in np.unique(t.instances)
    assert set(np.unique(t.instances)) == {0, 3, 7}
    assert (t.weight[~t.region] == 0).all()


def test_background_strokes_alone_teach_background_only():
    lab = np.zeros((20, 20), np.uint32)
    lab[5:8, 5:15] = BACKGROUND_LABEL
    t = training_targets(lab, WeightMapConfig(), region_margin=4, region_rule="ring", sparse_ring=8)
    assert t is not None and t.region.sum() == 30 and not t.target.any()


def test_explicit_mask_wins_over_the_rule():
    lab = two_far_objects()
    mask = np.zeros(lab.shape, bool)
    mask[:40, :40] = True
    for rule in ("ring", "box"):
        t = training_targets(lab, WeightMapConfig(), mask=mask, region_margin=2, region_rule=rule)
        np.testing.assert_array_equal(t.region, mask)
        assert set(np.unique(t.instances)) == {0, 3}  # object 7 is outside the mask


def test_box_rule_is_the_old_grown_bounding_box():
    lab = two_far_objects()
    t = training_targets(lab, WeightMapConfig(), region_margin=5, region_rule="box")
    np.testing.assert_array_equal(t.region, annotated_region(lab, 5))
    assert t.region[5:71, 5:71].all() and t.region.sum() == 66 * 66


def test_box_is_the_default_and_options_are_validated():
    assert TrainConfig().region_rule == "box" and TrainConfig().sparse_ring == 8
    lab = two_far_objects()
    default = training_targets(lab, WeightMapConfig(), region_margin=16)
    np.testing.assert_array_equal(default.region, annotated_region(lab, 16))
    with pytest.raises(InputError, match="sparse_ring"):
        TrainConfig(sparse_ring=-1)
    with pytest.raises(InputError, match="region_rule"):
        TrainConfig(region_rule="disk")
