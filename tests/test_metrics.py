"""Metrics: hand-computed cases, brute-force references (hypothesis), edges, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unet_core.errors import InputError
from unet_core.metrics import (
    boundary_f1_counts,
    confusion_matrix,
    confusion_scores,
    instance_ap,
    match_instances,
    segmentation_metrics,
)


# ---------------------------------------------------------------------------------------------
# semantic metrics
# ---------------------------------------------------------------------------------------------
def test_hand_computed_three_classes():
    target = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 1]])
    m = segmentation_metrics(pred, target, n_classes=3)
    # class 0: tp 2, fp 1 (pixel (1,2)), fn 1 (pixel (0,1)) -> 2/4
    # class 1: tp 3, fp 1, fn 0 -> 3/4 ; class 2: tp 1, fp 0, fn 1 -> 1/2
    assert m["iou"] == pytest.approx([0.5, 0.75, 0.5])
    assert m["miou"] == pytest.approx((0.5 + 0.75 + 0.5) / 3)
    assert m["dice_per_class"] == pytest.approx([4 / 6, 6 / 7, 2 / 3])
    assert m["dice"] == pytest.approx((6 / 7 + 2 / 3) / 2)
    # foreground: target fg = 5 px, pred fg = 5 px, both fg = 4 px -> 4 / 6
    assert m["foreground_iou"] == pytest.approx(4 / 6)
    assert m["foreground_dice"] == pytest.approx(8 / 10)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    assert m["pixel_error"] == pytest.approx(2 / 8)
    assert m["n_pixels"] == 8
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [0, 3, 0], [1, 0, 1]])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 4), use_mask=st.booleans())
def test_pixel_metrics_match_direct_definitions(seed, k, use_mask):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 9, 2))
    pred, target = rng.integers(0, k, shape), rng.integers(0, k, shape)
    mask = rng.random(shape) > 0.3 if use_mask else np.ones(shape, bool)
    m = segmentation_metrics(pred, target, n_classes=k, mask=mask if use_mask else None)
    p, t = pred[mask], target[mask]
    for c in range(k):
        union = np.sum((p == c) | (t == c))
        expected = np.sum((p == c) & (t == c)) / union if union else math.nan
        np.testing.assert_allclose(m["iou"][c], expected)
        denom = np.sum(p == c) + np.sum(t == c)
        np.testing.assert_allclose(m["dice_per_class"][c], 2 * np.sum((p == c) & (t == c)) / denom if denom else math.nan)
    fg_union = np.sum((p > 0) | (t > 0))
    np.testing.assert_allclose(m["foreground_iou"], np.sum((p > 0) & (t > 0)) / fg_union if fg_union else math.nan)
    np.testing.assert_allclose(m["pixel_accuracy"], np.mean(p == t) if p.size else math.nan)


def test_absent_class_is_nan_and_skipped_in_means():
    target = np.array([[0, 1], [1, 1]])
    m = segmentation_metrics(target, target, n_classes=4)
    assert m["iou"][:2] == [1.0, 1.0]
    assert math.isnan(m["iou"][2]) and math.isnan(m["iou"][3])
    assert m["miou"] == 1.0 and m["dice"] == 1.0
    empty = segmentation_metrics(np.zeros((3, 3), int), np.zeros((3, 3), int), n_classes=2)
    assert math.isnan(empty["foreground_iou"]) and math.isnan(empty["boundary_f1"])
    assert empty["pixel_accuracy"] == 1.0


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    target = (rng.random((3, 32, 40)) > 0.6).astype(np.int64) + (rng.random((3, 32, 40)) > 0.8)
    m = segmentation_metrics(target, target, n_classes=3)
    assert m["miou"] == 1.0 and m["foreground_iou"] == 1.0 and m["dice"] == 1.0
    assert m["pixel_accuracy"] == 1.0 and m["pixel_error"] == 0.0
    assert m["boundary_f1"] == 1.0


def test_mask_excludes_pixels_and_their_values():
    target = np.array([[0, 1, 1], [0, 1, 1]])
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    mask = np.array([[False, True, True], [True, True, False]])
    m = segmentation_metrics(pred, target, n_classes=2, mask=mask)
    assert m["n_pixels"] == 4
    assert m["pixel_accuracy"] == pytest.approx(3 / 4)
    # values outside the mask (even invalid ids) change nothing
    pred2, target2 = pred.copy(), target.copy()
    pred2[~mask], target2[~mask] = 7, 9
    m2 = segmentation_metrics(pred2, target2, n_classes=2, mask=mask)
    for key in ("iou", "miou", "foreground_iou", "dice", "pixel_accuracy", "boundary_f1"):
        np.testing.assert_equal(m[key], m2[key])


def test_pooled_confusion_scores_equal_the_scores_of_the_joined_images():
    """Validation pools confusion matrices over samples: the scores equal those of one big image."""
    rng = np.random.default_rng(5)
    a_pred, a_true, b_pred, b_true = (rng.integers(0, 3, (6, 9)) for _ in range(4))
    b_true[b_true == 2] = 0  # class 2 rarer in the second image
    ma = segmentation_metrics(a_pred, a_true, n_classes=3)
    mb = segmentation_metrics(b_pred, b_true, n_classes=3)
    pooled = confusion_scores(ma["confusion"] + mb["confusion"])
    joined = segmentation_metrics(np.stack([a_pred, b_pred]), np.stack([a_true, b_true]), n_classes=3)
    for key in ("iou", "miou", "foreground_iou", "dice", "foreground_dice", "pixel_error", "n_pixels"):
        np.testing.assert_allclose(pooled[key], joined[key], rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(confusion_matrix(a_pred, a_true, n_classes=3), ma["confusion"])
    empty = confusion_scores(np.zeros((2, 2), np.int64))
    assert math.isnan(empty["foreground_iou"]) and math.isnan(empty["pixel_error"])
    with pytest.raises(InputError, match="outside"):
        confusion_matrix(np.array([3]), np.array([0]), n_classes=3)


def _brute_boundary(member: np.ndarray, valid: np.ndarray) -> set[tuple[int, int]]:
    out = set()
    h, w = member.shape
    for y, x in itertools.product(range(h), range(w)):
        if not (member[y, x] and valid[y, x]):
            continue
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and valid[yy, xx] and not member[yy, xx]:
                out.add((y, x))
    return out


def _brute_bf_counts(pm, tm, valid, tol):
    pb, tb = _brute_boundary(pm, valid), _brute_boundary(tm, valid)

    def near(a, bset):
        return any(math.hypot(a[0] - b[0], a[1] - b[1]) <= tol for b in bset)

    return (sum(near(a, tb) for a in pb), len(pb), sum(near(b, pb) for b in tb), len(tb))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    tol=st.sampled_from([0, 1, 1.5, 2, 3, 4, 5.5]),
    use_mask=st.booleans(),
)
def test_boundary_counts_match_brute_force(seed, tol, use_mask):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 12, 2)
    pm, tm = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for arr in (pm, tm):
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            arr[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
    valid = rng.random((h, w)) > 0.2 if use_mask else np.ones((h, w), bool)
    assert boundary_f1_counts(pm, tm, valid, tol) == _brute_bf_counts(pm, tm, valid, tol)


def test_boundary_f1_tolerance():
    target = np.zeros((20, 20), int)
    target[5:15, 5:15] = 1
    shifted = np.roll(target, 1, axis=1)
    strict = segmentation_metrics(shifted, target, n_classes=2, boundary_tolerance=0)
    loose = segmentation_metrics(shifted, target, n_classes=2, boundary_tolerance=1)
    assert loose["boundary_f1"] == 1.0
    assert 0.0 < strict["boundary_f1"] < 1.0
    # only one map has a boundary -> 0
    none = segmentation_metrics(np.zeros_like(target), target, n_classes=2)
    assert none["boundary_f1"] == 0.0


def test_leading_axes_are_independent_images():
    a = np.zeros((2, 10, 10), int)
    a[0, 2:6, 2:6] = 1
    b = np.zeros((2, 10, 10), int)
    b[1, 2:6, 2:6] = 1  # identical in-plane, different image: no boundary match across images
    m = segmentation_metrics(b, a, n_classes=2, boundary_tolerance=3)
    assert m["boundary_f1"] == 0.0
    counts = [boundary_f1_counts(b[i] == 1, a[i] == 1, np.ones((10, 10), bool), 3) for i in range(2)]
    assert boundary_f1_counts(b == 1, a == 1, np.ones(a.shape, bool), 3) == tuple(map(sum, zip(*counts)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pred=np.zeros((3, 3), int), target=np.zeros((3, 4), int)), "differs"),
        (dict(pred=np.zeros((3, 3)), target=np.zeros((3, 3), int)), "integer"),
        (dict(pred=np.full((3, 3), 2), target=np.zeros((3, 3), int)), "outside \\[0, 2\\)"),
        (dict(pred=np.zeros(3, int), target=np.zeros(3, int)), "2D"),
        (dict(pred=np.zeros((3, 3), int), target=np.zeros((3, 3), int), mask=np.ones((2, 3))), "mask shape"),
        (dict(pred=np.zeros((3, 3), int), target=np.zeros((3, 3), int), n_classes=1), "n_classes"),
    ],
)
def test_segmentation_metric_errors(kwargs, match):
    kwargs.setdefault("n_classes", 2)
    with pytest.raises(InputError, match=match):
        segmentation_metrics(**kwargs)


# ---------------------------------------------------------------------------------------------
# instance matching
# ---------------------------------------------------------------------------------------------
def _brute_match(pred: np.ndarray, true: np.ndarray, thr: float) -> tuple[int, float]:
    """Max-cardinality (then max total IoU) matching by exhaustive search; (tp, total IoU)."""
    tids = [int(i) for i in np.unique(true) if i]
    pids = [int(i) for i in np.unique(pred) if i]
    iou = {}
    for t in tids:
        for p in pids:
            inter = np.sum((true == t) & (pred == p))
            union = np.sum((true == t) | (pred == p))
            if inter / union > thr:
                iou[t, p] = inter / union
    best = (0, 0.0)
    edges = list(iou)
    for r in range(1, min(len(tids), len(pids)) + 1):
        for combo in itertools.combinations(edges, r):
            ts, ps = [e[0] for e in combo], [e[1] for e in combo]
            if len(set(ts)) == r and len(set(ps)) == r:
                cand = (r, sum(iou[e] for e in combo))
                best = max(best, cand)
    return best


def _rect_labels(rng: np.random.Generator, shape, n: int, ids) -> np.ndarray:
    lab = np.zeros(shape, np.uint64)
    for i in range(n):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        lab[y : y + rng.integers(2, 7), x : x + rng.integers(2, 7)] = ids[i]
    return lab


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    thr=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9]),
)
def test_matching_equals_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    shape = (12, 12)
    big_ids = rng.choice(2**40, size=6, replace=False) + 1  # large, non-contiguous ids
    true = _rect_labels(rng, shape, int(rng.integers(0, 5)), big_ids)
    pred = _rect_labels(rng, shape, int(rng.integers(0, 5)), rng.permutation(big_ids))
    # a perturbed copy of the truth gives realistic high-IoU pairs
    if rng.random() < 0.5:
        pred = np.where(rng.random(shape) < 0.15, 0, true).astype(np.uint64)
    m = match_instances(pred, true, thr)
    tp, total = _brute_match(pred, true, thr)
    assert m.tp == tp
    assert float(m.ious.sum()) == pytest.approx(total)
    assert m.fp == len(np.unique(pred[pred > 0])) - tp and m.fn == len(np.unique(true[true > 0])) - tp
    den = m.tp + m.fp + m.fn
    assert instance_ap(pred, true, thr) == (m.tp / den if den else 1.0)
    # matched pairs are one-to-one, carry original ids and really overlap at IoU > thr
    assert len(set(m.true_ids.tolist())) == tp and len(set(m.pred_ids.tolist())) == tp
    for t, p, v in zip(m.true_ids, m.pred_ids, m.ious, strict=True):
        inter = np.sum((true == t) & (pred == p))
        assert v == pytest.approx(inter / np.sum((true == t) | (pred == p))) and v > thr


def test_low_threshold_prefers_more_matches():
    # true A overlaps preds 1 and 2; true B overlaps only pred 1 -> greedy-by-IoU would match A-1
    # and leave B unmatched; the maximum matching is A-2, B-1
    true = np.zeros((1, 10), int)
    pred = np.zeros((1, 10), int)
    true[0, 0:5] = 1  # A
    true[0, 5:8] = 2  # B
    pred[0, 1:7] = 11  # overlaps A by 4 (IoU 4/7), B by 2 (IoU 2/7)
    pred[0, 0:1] = 12  # overlaps A by 1 (IoU 1/5)
    m = match_instances(pred, true, 0.15)
    assert m.tp == 2 and m.fp == 0 and m.fn == 0
    assert dict(zip(m.true_ids.tolist(), m.pred_ids.tolist(), strict=True)) == {1: 12, 2: 11}


def test_ap_at_threshold_edges():
    true = np.zeros((4, 4), np.uint16)
    true[0, :4] = 5  # 4 px
    pred = np.zeros((4, 4), np.uint16)
    pred[0, :2] = 9  # IoU exactly 2/4
    assert instance_ap(pred, true, 0.5) == 0.0  # strictly greater is required
    m = match_instances(pred, true, 0.5)
    assert (m.tp, m.fp, m.fn) == (0, 1, 1) and math.isnan(m.mean_matched_iou)
    assert instance_ap(pred, true, np.nextafter(0.5, 0)) == 1.0
    assert match_instances(pred, true, 0.49).mean_matched_iou == 0.5
    pred[0, 2] = 9  # IoU 3/4
    assert instance_ap(pred, true, 0.74) == 1.0 and instance_ap(pred, true, 0.75) == 0.0
    assert instance_ap(pred, true, 0.0) == 1.0


def test_empty_cases():
    z = np.zeros((5, 5), np.int32)
    one = z.copy()
    one[1:3, 1:3] = 4
    assert instance_ap(z, z) == 1.0
    assert instance_ap(z, one) == 0.0 and instance_ap(one, z) == 0.0
    m = match_instances(one, z)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (0, 1, 0, 1, 0)
    assert match_instances(np.zeros((0, 3), int), np.zeros((0, 3), int)).ap == 1.0


def test_3d_and_id_independence():
    rng = np.random.default_rng(1)
    true = np.zeros((4, 16, 16), np.uint32)
    for i in range(1, 9):
        z, y, x = rng.integers(0, 3), rng.integers(0, 12), rng.integers(0, 12)
        true[z : z + 2, y : y + 4, x : x + 4] = i
    pred = np.where(rng.random(true.shape) < 0.1, 0, true)
    m = match_instances(pred, true)
    tp, _ = _brute_match(pred, true, 0.5)
    assert m.tp == tp
    # relabelling with huge / scattered ids and other dtypes changes nothing
    lut = np.zeros(9, np.uint64)
    lut[1:] = rng.choice(2**62, 8, replace=False) + 1
    m2 = match_instances(lut[pred].astype(np.uint64), true.astype(np.int64))
    assert (m2.tp, m2.fp, m2.fn) == (m.tp, m.fp, m.fn)
    assert m2.mean_matched_iou == pytest.approx(m.mean_matched_iou)
    assert set(m2.pred_ids.tolist()) <= set(lut[1:].tolist())
    # a perfect prediction
    assert instance_ap(true, true) == 1.0 and match_instances(true, true).mean_matched_iou == 1.0


def test_disconnected_pixels_of_one_id_are_one_object():
    true = np.array([[1, 0, 1]])
    pred = np.array([[2, 0, 2]])
    m = match_instances(pred, true)
    assert (m.tp, m.n_true, m.n_pred) == (1, 1, 1)


@pytest.mark.parametrize(
    "pred, true, thr, match",
    [
        (np.zeros((3, 3)), np.zeros((3, 3), int), 0.5, "integer label image"),
        (np.zeros((3, 3), int), np.zeros((3, 4), int), 0.5, "differs"),
        (np.full((3, 3), -1), np.zeros((3, 3), int), 0.5, "negative"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), 1.0, "iou_threshold"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), -0.1, "iou_threshold"),
        (np.full((2, 2), 2**63 + 5, np.uint64), np.zeros((2, 2), int), 0.5, "relabel"),
    ],
)
def test_instance_errors(pred, true, thr, match):
    with pytest.raises(InputError, match=match):
        match_instances(pred, true, thr)
