"""Losses: numerics against hand/reference computations, masking, gradients, parsing, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_core.errors import InputError
from unet_core.training.losses import (
    available_losses,
    build_loss,
    signed_distance_maps,
    weighted_cross_entropy,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


SINGLE = ("wce", "dice", "lovasz", "boundary")
ALL_SPECS = SINGLE + ("wce+dice", "wce+0.5*dice", "0.5*wce+0.01*boundary", "lovasz+dice+wce")


def _random_batch(seed: int, n: int = 2, k: int = 3, h: int = 12, w: int = 14, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, h, w, generator=g, dtype=dtype)
    # blobby targets so that classes form regions (boundary loss needs regions)
    target = torch.zeros(n, h, w, dtype=torch.int64)
    for i in range(n):
        for c in range(1, k):
            y, x = torch.randint(0, h - 4, (1,), generator=g).item(), torch.randint(0, w - 4, (1,), generator=g).item()
            target[i, y : y + 4 + c, x : x + 3 + c] = c
    weight = torch.rand(n, h, w, generator=g, dtype=torch.float32) + 0.5
    weight[:, :, : w // 3] = 0.0  # an unannotated band
    return logits, target, weight


def test_available_losses():
    assert set(available_losses()) == set(SINGLE)


# ---------------------------------------------------------------------------------------------
# wce
# ---------------------------------------------------------------------------------------------
def test_wce_hand_computed():
    # two pixels: logits (0, ln 3) -> p = (1/4, 3/4)
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), math.log(3.0)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    weight = torch.tensor([[[2.0, 1.0]]])
    expected = (2.0 * -math.log(0.75) + 1.0 * -math.log(0.25)) / 3.0
    value = build_loss("wce", n_classes=2)(logits, target, weight)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert weighted_cross_entropy(logits, target, weight).item() == pytest.approx(expected, rel=1e-6)


def test_wce_matches_plain_cross_entropy_for_unit_weights_and_trainer_version():
    logits, target, _ = _random_batch(0)
    ones = torch.ones(target.shape)
    value = build_loss("wce", n_classes=3)(logits, target, ones)
    torch.testing.assert_close(value, F.cross_entropy(logits, target))
    # the trainer's original function (to be replaced by this module) agrees with weights too
    from unet_core.training import trainer

    if hasattr(trainer, "weighted_cross_entropy") and trainer.weighted_cross_entropy is not weighted_cross_entropy:
        logits, target, weight = _random_batch(1)
        torch.testing.assert_close(
            build_loss("wce", n_classes=3)(logits, target, weight),
            trainer.weighted_cross_entropy(logits, target, weight),
        )


# ---------------------------------------------------------------------------------------------
# dice
# ---------------------------------------------------------------------------------------------
def test_dice_hand_computed():
    # p(fg) = 3/4 on pixel 0 and 1/4 on pixel 1 (logits 0 vs ln 3); pixel 2 has weight 0
    l3 = math.log(3.0)
    logits = torch.tensor([[[[0.0, l3, 5.0]], [[l3, 0.0, -5.0]]]])
    target = torch.tensor([[[1, 0, 1]]])
    weight = torch.tensor([[[2.0, 1.0, 0.0]]])
    inter = 2.0 * 0.75
    p_sum = 2.0 * 0.75 + 1.0 * 0.25
    g_sum = 2.0
    expected = 1.0 - (2 * inter + 1.0) / (p_sum + g_sum + 1.0)
    value = build_loss("dice", n_classes=2)(logits, target, weight)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_dice_excludes_background_and_averages_foreground_classes():
    k = 3
    target = torch.tensor([[[0, 1, 2, 2]]])
    onehot = F.one_hot(target, k).permute(0, 3, 1, 2).float()
    # class 1 perfect, class 2 half right: pixel 3 predicted as background
    pred = torch.tensor([[[0, 1, 2, 0]]])
    logits = 40.0 * F.one_hot(pred, k).permute(0, 3, 1, 2).float()
    weight = torch.ones(1, 1, 4)
    d1 = 1.0
    d2 = (2 * 1 + 1.0) / (1 + 2 + 1.0)
    value = build_loss("dice", n_classes=k)(logits, target, weight)
    assert value.item() == pytest.approx(1.0 - (d1 + d2) / 2, abs=1e-6)
    # perfect prediction: exactly zero
    assert build_loss("dice", n_classes=k)(40.0 * onehot, target, weight).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_empty_class_is_well_defined():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.zeros(2, 8, 8, dtype=torch.int64)  # no foreground at all
    weight = torch.ones(2, 8, 8)
    loss = build_loss("dice", n_classes=2)
    value = loss(logits, target, weight)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    # predicting no foreground is (near-)optimal
    assert loss(torch.stack([torch.full((2, 8, 8), 20.0), torch.zeros(2, 8, 8)], 1), target, weight) < 1e-6


# ---------------------------------------------------------------------------------------------
# lovasz
# ---------------------------------------------------------------------------------------------
def _lovasz_reference(probs: np.ndarray, labels: np.ndarray) -> float:
    """Direct Lovász extension of the Jaccard loss per present class, from the definition.

    ``probs`` (P, K), ``labels`` (P,). For class c: errors m_i = |[y_i = c] - p_ic|, sorted
    decreasingly (pi); extension = sum_i m_pi(i) * (Delta(S_i) - Delta(S_{i-1})) with
    Delta(S) = |S| / |G_c u S| (S = mispredicted set, G_c = pixels of class c).
    """
    losses = []
    for c in range(probs.shape[1]):
        g = labels == c
        if not g.any():
            continue
        m = np.abs(g.astype(float) - probs[:, c])
        order = np.argsort(-m, kind="stable")

        gset = set(np.flatnonzero(g).tolist())

        def delta(s: set, gset: set = gset) -> float:
            union = gset | s
            return len(s) / len(union) if union else 0.0

        total, prefix, prev = 0.0, set(), 0.0
        for i in order:
            prefix = prefix | {int(i)}
            cur = delta(prefix)
            total += m[i] * (cur - prev)
            prev = cur
        losses.append(total)
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_matches_reference_extension(seed):
    logits, target, weight = _random_batch(seed, n=2, k=3, h=5, w=6, dtype=torch.float64)
    value = build_loss("lovasz", n_classes=3)(logits, target, weight)
    act = (weight > 0).numpy()
    probs = torch.softmax(logits, 1).permute(0, 2, 3, 1).numpy()[act]
    assert value.item() == pytest.approx(_lovasz_reference(probs, target.numpy()[act]), rel=1e-9)


def test_lovasz_equals_jaccard_loss_on_hard_predictions():
    rng = np.random.default_rng(3)
    k = 3
    target = torch.from_numpy(rng.integers(0, k, (2, 7, 9)))
    pred = torch.from_numpy(rng.integers(0, k, (2, 7, 9)))
    target[target == 2] = 1  # class 2 absent from target: excluded ('present' classes)
    logits = 60.0 * F.one_hot(pred, k).permute(0, 3, 1, 2).double()
    weight = torch.ones(2, 7, 9)
    t, p = target.numpy(), pred.numpy()
    jacc = [1 - ((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum() for c in (0, 1)]
    value = build_loss("lovasz", n_classes=k)(logits, target, weight)
    assert value.item() == pytest.approx(float(np.mean(jacc)), abs=1e-9)
    perfect = 60.0 * F.one_hot(target, k).permute(0, 3, 1, 2).double()
    assert build_loss("lovasz", n_classes=k)(perfect, target, weight).item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# boundary
# ---------------------------------------------------------------------------------------------
def test_signed_distance_map_hand_computed():
    target = np.zeros((1, 5, 5), np.int64)
    target[0, 1:4, 1:4] = 1
    phi = signed_distance_maps(target, np.ones_like(target, bool), 2)[0, 0]
    assert phi.shape == (5, 5) and phi.dtype == np.float32
    assert phi[2, 2] == -1.0  # centre: 2 px from the background, minus 1
    assert phi[1, 1] == 0.0 and phi[1, 2] == 0.0  # inner rim
    assert phi[0, 2] == 1.0 and phi[2, 4] == 1.0
    assert phi[0, 0] == pytest.approx(math.sqrt(2))
    # absent class -> zeros (Kervadec convention)
    assert not signed_distance_maps(np.zeros((1, 5, 5), np.int64), np.ones((1, 5, 5), bool), 2).any()


def test_signed_distance_map_uses_annotated_pixels_only():
    target = np.zeros((1, 6, 8), np.int64)
    target[0, 2:4, 5:7] = 1
    mask = np.zeros((1, 6, 8), bool)
    mask[0, :, 4:] = True
    changed = target.copy()
    changed[0, :, :4] = 1  # unannotated pixels labelled as the class
    a = signed_distance_maps(target, mask, 2)
    b = signed_distance_maps(changed, mask, 2)
    np.testing.assert_array_equal(a, b)
    assert not a[0, 0][~mask[0]].any()


def test_boundary_loss_value_and_optimum():
    target = torch.zeros(1, 5, 5, dtype=torch.int64)
    target[0, 1:4, 1:4] = 1
    weight = torch.ones(1, 5, 5)
    loss = build_loss("boundary", n_classes=2)
    perfect = 50.0 * F.one_hot(target, 2).permute(0, 3, 1, 2).double()
    # sum of phi over the class = -1 (centre), normalised by 25 pixels x 1 foreground class
    assert loss(perfect, target, weight).item() == pytest.approx(-1.0 / 25.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        other = 3 * torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
        assert loss(other, target, weight).item() >= -1.0 / 25.0 - 1e-12


# ---------------------------------------------------------------------------------------------
# all losses: masking, gradients, optimum, zero weight, AMP dtypes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_weight_zero_pixels_change_neither_loss_nor_gradient(spec):
    logits, target, weight = _random_batch(4)
    loss = build_loss(spec, n_classes=3)
    outside = weight == 0
    assert outside.any() and (~outside).any()
    a = logits.clone().requires_grad_(True)
    va = loss(a, target, weight)
    va.backward()
    # change logits and targets (even to invalid ids) where weight == 0
    logits2 = torch.where(outside.unsqueeze(1), 100 * torch.randn_like(logits), logits)
    target2 = target.clone()
    target2[outside] = torch.randint(-5, 50, (int(outside.sum()),))
    b = logits2.clone().requires_grad_(True)
    vb = loss(b, target2, weight)
    vb.backward()
    assert va.item() == vb.item()
    for grad in (a.grad, b.grad):
        assert torch.all(grad.permute(0, 2, 3, 1)[outside] == 0)
        assert grad.abs().sum() > 0
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


@pytest.mark.parametrize("spec", SINGLE)
def test_gradcheck(spec):
    logits, target, weight = _random_batch(5, n=1, k=3, h=5, w=6, dtype=torch.float64)
    logits.requires_grad_(True)
    loss = build_loss(spec, n_classes=3)
    assert torch.autograd.gradcheck(
        lambda x: loss(x, target, weight.double()), (logits,), eps=1e-6, atol=1e-5, fast_mode=True
    )


@pytest.mark.parametrize("spec", ("wce", "dice", "lovasz", "wce+dice", "wce+0.01*boundary"))
def test_perfect_prediction_is_minimal(spec):
    logits, target, weight = _random_batch(6, dtype=torch.float64)
    loss = build_loss(spec, n_classes=3)
    perfect = 40.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    best = loss(perfect, target, weight).item()
    if "boundary" not in spec:
        assert best == pytest.approx(0.0, abs=1e-9)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        assert loss(2 * torch.randn(logits.shape, generator=g, dtype=torch.float64), target, weight).item() > best


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_all_zero_weight_gives_zero_loss_and_zero_gradient(spec):
    logits, target, _ = _random_batch(7)
    logits.requires_grad_(True)
    value = build_loss(spec, n_classes=3)(logits, target, torch.zeros(target.shape))
    value.backward()
    assert value.item() == 0.0
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize("spec", ("wce", "dice", "lovasz", "wce+0.01*boundary"))
def test_optimising_free_logits_learns_the_target(spec):
    _, target, weight = _random_batch(8, k=2)
    target = target.clamp(max=1)
    logits = torch.zeros(2, 2, *target.shape[1:], requires_grad=True)
    loss = build_loss(spec, n_classes=2)
    first = None
    for _ in range(40):
        value = loss(logits, target, weight)
        first = value.item() if first is None else first
        (grad,) = torch.autograd.grad(value, logits)
        with torch.no_grad():  # normalised gradient descent (no optimizer import needed)
            logits -= 0.5 * grad / grad.abs().max()
    assert value.item() < first
    act = weight > 0
    assert (logits.argmax(1)[act] == target[act]).float().mean() > 0.95


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_precision_logits_are_computed_in_float32(dtype):
    logits, target, weight = _random_batch(9)
    ref = build_loss("wce+dice+lovasz", n_classes=3)(logits.to(dtype).float(), target, weight)
    value = build_loss("wce+dice+lovasz", n_classes=3)(logits.to(dtype), target, weight)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, ref)


# ---------------------------------------------------------------------------------------------
# combinations and parsing
# ---------------------------------------------------------------------------------------------
def test_combination_is_weighted_sum():
    logits, target, weight = _random_batch(10)
    parts = {n: build_loss(n, n_classes=3)(logits, target, weight) for n in SINGLE}
    combo = build_loss(" WCE + 0.5*dice+ 2e-2 * boundary ", n_classes=3)
    assert combo.name == "wce+0.5*dice+0.02*boundary"
    assert combo.terms == ((1.0, "wce"), (0.5, "dice"), (0.02, "boundary"))
    expected = parts["wce"] + 0.5 * parts["dice"] + 0.02 * parts["boundary"]
    torch.testing.assert_close(combo(logits, target, weight), expected)
    comps = combo.components(logits, target, weight)
    assert set(comps) == {"wce", "dice", "boundary", "loss"}
    torch.testing.assert_close(comps["dice"], parts["dice"])
    torch.testing.assert_close(build_loss("wce+dice", n_classes=3)(logits, target, weight), parts["wce"] + parts["dice"])


@pytest.mark.parametrize(
    "spec, match",
    [
        ("focal", "unknown loss 'focal'.*wce, dice, lovasz, boundary"),
        ("wce+", "cannot parse"),
        ("wce+-1*dice", "cannot parse"),
        ("0*dice", "must be > 0"),
        ("wce*0.5", "cannot parse"),
        ("wce+dice+wce", "appears twice"),
        ("", "non-empty"),
    ],
)
def test_bad_loss_names(spec, match):
    with pytest.raises(InputError, match=match):
        build_loss(spec, n_classes=2)


@pytest.mark.parametrize("n_classes", [1, 0, 2.0, True])
def test_bad_n_classes(n_classes):
    with pytest.raises(InputError, match="n_classes"):
        build_loss("wce", n_classes=n_classes)


# ---------------------------------------------------------------------------------------------
# input errors
# ---------------------------------------------------------------------------------------------
def _good():
    return torch.zeros(2, 3, 4, 5), torch.zeros(2, 4, 5, dtype=torch.int64), torch.ones(2, 4, 5)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda lg, t, w: (lg[0], t, w), "shape \\(N, n_classes, H, W\\)"),
        (lambda lg, t, w: (lg[:, :2], t, w), "n_classes=3"),
        (lambda lg, t, w: (lg.long(), t, w), "floating-point"),
        (lambda lg, t, w: (lg, t[:, :3], w), "target shape"),
        (lambda lg, t, w: (lg, t, w[:1]), "weight shape"),
        (lambda lg, t, w: (lg, t.float(), w), "integer class ids"),
        (lambda lg, t, w: (lg, t.bool(), w), "integer class ids"),
        (lambda lg, t, w: (lg, t, w.long()), "floating-point"),
        (lambda lg, t, w: (lg, t, -w), ">= 0"),
        (lambda lg, t, w: (lg, t, w * float("nan")), ">= 0"),
        (lambda lg, t, w: (lg, t + 3, w), "outside \\[0, 3\\)"),
        (lambda lg, t, w: (lg, t - 1, w), "outside \\[0, 3\\)"),
        (lambda lg, t, w: (lg.numpy(), t, w), "torch.Tensor"),
    ],
)
@pytest.mark.parametrize("spec", SINGLE)
def test_input_errors(spec, change, match):
    with pytest.raises(InputError, match=match):
        build_loss(spec, n_classes=3)(*change(*_good()))


def test_smaller_integer_target_dtypes_are_accepted():
    logits, target, weight = _random_batch(11)
    ref = build_loss("wce+dice", n_classes=3)(logits, target, weight)
    torch.testing.assert_close(build_loss("wce+dice", n_classes=3)(logits, target.to(torch.uint8), weight), ref)
