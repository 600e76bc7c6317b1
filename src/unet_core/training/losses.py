"""Segmentation losses on per-pixel weighted targets, selectable by name.

Every loss has the signature ``loss(logits, target, weight) -> scalar tensor`` with

- ``logits`` float ``(N, K, H, W)``: raw network outputs for ``K = n_classes`` classes,
- ``target`` int64 ``(N, H, W)``: class ids in ``[0, K)`` (0 = background),
- ``weight`` float32 ``(N, H, W)``: per-pixel loss weights, ``>= 0``; 0 outside the annotated
  region.

Pixels with weight 0 contribute neither loss nor gradient in every loss, whatever their logits or
target values (targets there need not even be valid class ids). How the *value* of a positive
weight is used differs per loss:

``'wce'``
    Pixel-wise softmax cross-entropy weighted by the weight map, divided by the total weight
    (the energy function of Ronneberger et al. 2015 with the U-Net boundary weight map).
``'dice'``
    Soft Dice loss ``1 - mean_c (2 sum w p_c g_c + s) / (sum w p_c + sum w g_c + s)`` over the
    *foreground* classes ``c = 1..K-1`` (background excluded: it dominates microscopy tiles and
    would inflate the score), with sums over the whole batch and smoothing ``s = 1`` (in weight
    units). The weight map weights the pixels (a constant weight gives the plain soft Dice), so
    background gaps between touching objects, which the U-Net map up-weights, cost more when
    predicted as foreground. A class absent from a batch has Dice ``s / (sum w p_c + s)``: still
    well defined, and minimal when the class is not predicted.
``'lovasz'``
    Lovász-Softmax (Berman, Rannen Triki, Blaschko 2018), the convex Lovász extension of the
    Jaccard loss, computed *per batch* (all annotated pixels of the batch pooled, as the authors'
    default ``per_image=False``) over the classes present in the batch's target
    (``classes='present'``). Pixels with weight > 0 take part with equal weight (the weight
    value is not used: the Jaccard index counts pixels).
``'boundary'``
    Boundary loss (Kervadec et al. 2019): ``mean over annotated pixels and foreground classes of
    softmax_c * phi_c`` where ``phi_c`` is the signed Euclidean distance (pixels) to the
    boundary of class ``c``'s ground-truth region: negative inside (``-(d - 1)``, 0 on the
    region's inner rim), positive outside (distance to the nearest pixel of the class). Distances
    are computed with scipy's exact EDT on the CPU from the annotated pixels only (so targets
    outside the region cannot change the loss); a class absent from an image's annotated pixels
    gets ``phi = 0`` there, as in the authors' code. Weights > 0 act as a mask. The loss is
    negative at its optimum and, alone, has degenerate minima (it ignores absent classes), so use
    it together with a regional loss, as the authors do: e.g. ``'wce+0.01*boundary'`` (its
    magnitude grows with object size, hence the small factor; the authors increase the factor
    during training).

Combinations: ``'wce+dice'`` sums terms with weight 1, ``'wce+0.5*dice'`` or ``'0.5*wce+0.01*boundary'``
scale terms (``COEF*NAME``, spaces ignored).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

DICE_SMOOTH = 1.0


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_inputs(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate shapes/dtypes/values; return ``(logits, target int64, weight float)``.

    Target values at weight-0 pixels are replaced by 0 so that they can hold anything.
    """
    for name, t in (("logits", logits), ("target", target), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if logits.ndim != 4:
        raise InputError(
            f"logits must have shape (N, n_classes, H, W), got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise InputError(f"logits must be a floating-point tensor, got {logits.dtype}")
    n, k, h, w = logits.shape
    if k != n_classes:
        raise InputError(
            f"logits have {k} channels but the loss was built for n_classes={n_classes}; "
            "build the loss with the model's n_classes"
        )
    if tuple(target.shape) != (n, h, w):
        raise InputError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            f"expected ({n}, {h}, {w}); crop the target to the network's output window"
        )
    if tuple(weight.shape) != (n, h, w):
        raise InputError(
            f"weight shape {tuple(weight.shape)} does not match logits {tuple(logits.shape)}: "
            f"expected ({n}, {h}, {w}); crop the weight map to the network's output window"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise InputError(
            f"target must hold integer class ids (int64), got {target.dtype}; use target.long()"
        )
    if not weight.is_floating_point():
        raise InputError(f"weight must be a floating-point tensor (float32), got {weight.dtype}")
    target = target.long()
    if weight.dtype != torch.float64:
        weight = weight.to(torch.float32)
    active = weight > 0
    bad_weight = (weight < 0) | ~torch.isfinite(weight)
    bad_target = active & ((target < 0) | (target >= n_classes))
    # one device sync for both value checks
    flags = torch.stack([bad_weight.any(), bad_target.any()]).tolist()
    if flags[0]:
        raise InputError("weight must be finite and >= 0 (0 = pixel not annotated)")
    if flags[1]:
        raise InputError(
            f"target holds class ids outside [0, {n_classes}) at annotated pixels; "
            "check the labels or n_classes"
        )
    target = torch.where(active, target, torch.zeros_like(target))
    return logits, target, weight


def _compute_dtype(logits: torch.Tensor) -> torch.Tensor:
    """Half/bfloat16 logits (AMP) are computed in float32; float32/float64 stay as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _zero_with_graph(logits: torch.Tensor) -> torch.Tensor:
    """A zero loss connected to the graph (backward works, gradients are zero)."""
    return logits.sum() * 0.0


# --------------------------------------------------------------------------------------------
# the individual losses (inputs already checked)
# --------------------------------------------------------------------------------------------
def _wce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(_compute_dtype(logits), target, reduction="none")
    # where() rather than a product: exact zeros even if a logit outside the region is inf/nan
    ce = torch.where(weight > 0, ce * weight, torch.zeros_like(ce))
    return ce.sum() / weight.sum().clamp_min(1e-8)


def _softmax_masked(logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Softmax over classes; exactly 0 (with zero gradient) where weight == 0."""
    probs = torch.softmax(_compute_dtype(logits), dim=1)
    return torch.where((weight > 0).unsqueeze(1), probs, torch.zeros_like(probs))


def _dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_classes: int) -> torch.Tensor:
    probs = _softmax_masked(logits, weight)[:, 1:]  # (N, K-1, H, W)
    onehot = F.one_hot(target, n_classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    w = weight.unsqueeze(1)
    wp = probs * w
    inter = (wp * onehot).sum(dim=(0, 2, 3))
    p_sum = wp.sum(dim=(0, 2, 3))
    g_sum = (onehot * w).sum(dim=(0, 2, 3))
    dice = (2.0 * inter + DICE_SMOOTH) / (p_sum + g_sum + DICE_SMOOTH)
    return 1.0 - dice.mean()


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors.

    ``gt_sorted`` float ``(P, C)``: ground-truth membership (0/1) of each class column, with
    rows sorted by decreasing error per column. Returns float ``(P, C)``.
    """
    gts = gt_sorted.sum(dim=0, keepdim=True)
    intersection = gts - gt_sorted.cumsum(dim=0)
    union = gts + (1.0 - gt_sorted).cumsum(dim=0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.shape[0] > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    return jaccard


def _lovasz(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_classes: int) -> torch.Tensor:
    active = weight > 0
    if not bool(active.any()):
        return _zero_with_graph(logits)
    probs = torch.softmax(_compute_dtype(logits), dim=1).permute(0, 2, 3, 1)[active]  # (P, K)
    labels = target[active]  # (P,)
    fg = F.one_hot(labels, n_classes).to(probs.dtype)  # (P, K)
    present = fg.sum(dim=0) > 0
    fg, probs = fg[:, present], probs[:, present]
    errors = (fg - probs).abs()
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    fg_sorted = torch.gather(fg, 0, perm)
    per_class = (errors_sorted * _lovasz_grad(fg_sorted)).sum(dim=0)
    return per_class.mean()


def signed_distance_maps(target: np.ndarray, mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Signed distance of every pixel to each foreground class's ground-truth boundary.

    Parameters
    ----------
    target : ndarray of int, shape (N, H, W)
        Class ids.
    mask : ndarray of bool, shape (N, H, W)
        Annotated pixels; only they define the regions, and the maps are 0 elsewhere.
    n_classes : int
        Number of classes ``K``.

    Returns
    -------
    ndarray of float32, shape (N, K - 1, H, W)
        For class ``c = 1..K-1``: ``-(d_in - 1)`` inside the class (``d_in`` = distance to the
        nearest annotated pixel of another class), ``+d_out`` outside (distance to the nearest
        pixel of the class); 0 for a class absent from (or filling) an image's annotated pixels,
        and 0 outside the mask. Kervadec et al. (2019), ``one_hot2dist``.
    """
    n, h, w = target.shape
    out = np.zeros((n, n_classes - 1, h, w), np.float32)
    for i in range(n):
        m = mask[i]
        if not m.any():
            continue
        for c in range(1, n_classes):
            pos = m & (target[i] == c)
            neg = m & ~pos
            if not pos.any() or not neg.any():
                continue
            d_out = ndimage.distance_transform_edt(~pos)  # distance to the nearest class pixel
            d_in = ndimage.distance_transform_edt(~neg)  # distance to the nearest other pixel
            out[i, c - 1] = np.where(pos, -(d_in - 1.0), np.where(neg, d_out, 0.0))
    return out


def _boundary(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_classes: int) -> torch.Tensor:
    active = weight > 0
    n_active = active.sum()
    phi = signed_distance_maps(
        target.detach().cpu().numpy(), active.detach().cpu().numpy(), n_classes
    )
    phi_t = torch.from_numpy(phi).to(logits.device)
    probs = _softmax_masked(logits, weight)[:, 1:]
    total = (probs * phi_t).sum()
    return total / (n_active.clamp_min(1) * (n_classes - 1))


_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "wce": lambda lg, t, w, k: _wce(lg, t, w),
    "dice": _dice,
    "lovasz": _lovasz,
    "boundary": _boundary,
}


def available_losses() -> tuple[str, ...]:
    """Names of the single losses; combine them with ``+`` and ``COEF*`` in :func:`build_loss`."""
    return tuple(_LOSSES)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted per pixel (the paper's energy function).

    Parameters
    ----------
    logits : Tensor, float, shape (N, K, H, W)
    target : Tensor, int64, shape (N, H, W)
        Class ids in ``[0, K)`` where ``weight > 0`` (anything elsewhere).
    weight : Tensor, float32, shape (N, H, W)
        Per-pixel weights; 0 = not annotated (no loss, no gradient).

    Returns
    -------
    Tensor, float32, scalar
        ``sum(w * ce) / sum(w)`` (0 when no pixel has weight).
    """
    logits, target, weight = _check_inputs(logits, target, weight, logits.shape[1] if logits.ndim == 4 else -1)
    return _wce(logits, target, weight)


@dataclass(frozen=True)
class Loss:
    """A (possibly combined) loss built by :func:`build_loss`; call it like a function.

    Attributes
    ----------
    name : str
        Canonical spec, e.g. ``'wce+0.5*dice'``.
    n_classes : int
        Number of classes ``K`` the logits must have.
    terms : tuple of (float, str)
        ``(coefficient, loss name)`` pairs summed by :meth:`__call__`.
    """

    name: str
    n_classes: int
    terms: tuple[tuple[float, str], ...]

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for ``logits (N,K,H,W)``, ``target (N,H,W)``, ``weight (N,H,W)``."""
        return self.components(logits, target, weight)["loss"]

    def components(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each term's (unscaled) value and their weighted sum under key ``'loss'``.

        Useful for logging the parts of a combined loss; the inputs are checked once.
        """
        logits, target, weight = _check_inputs(logits, target, weight, self.n_classes)
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for coef, name in self.terms:
            value = _LOSSES[name](logits, target, weight, self.n_classes)
            parts[name] = value
            total = coef * value if total is None else total + coef * value
        assert total is not None
        parts["loss"] = total
        return parts


_TERM = re.compile(r"^(?:(?P<coef>[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\*)?(?P<name>[a-z_]+)$")


def build_loss(name: str, *, n_classes: int) -> Loss:
    """Build a loss function from its name.

    Parameters
    ----------
    name : str
        One of :func:`available_losses` (``'wce'``, ``'dice'``, ``'lovasz'``, ``'boundary'``) or a
        ``+``-combination of them, each optionally scaled: ``'wce+dice'`` (weights 1),
        ``'wce+0.5*dice'``, ``'wce+0.01*boundary'``. Case and spaces are ignored.
    n_classes : int
        Number of classes ``K >= 2`` of the network's logits.

    Returns
    -------
    Loss
        Callable ``loss(logits, target, weight) -> scalar Tensor`` with ``logits`` float
        ``(N, K, H, W)``, ``target`` int64 ``(N, H, W)`` and ``weight`` float32 ``(N, H, W)``;
        pixels with weight 0 contribute neither loss nor gradient.

    Raises
    ------
    InputError
        Unknown loss name, malformed or non-positive coefficient, a term listed twice, or
        ``n_classes < 2``.
    """
    valid = ", ".join(available_losses())
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"loss name must be a non-empty string such as 'wce' or 'wce+0.5*dice'; valid losses: {valid}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise InputError(f"n_classes must be an integer >= 2 (background + classes), got {n_classes!r}")
    spec = re.sub(r"\s+", "", name.lower())
    terms: list[tuple[float, str]] = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if m is None:
            raise InputError(
                f"cannot parse loss term {part!r} in {name!r}; write NAME or COEF*NAME joined by '+', "
                f"e.g. 'wce+0.5*dice'; valid losses: {valid}"
            )
        term = m.group("name")
        if term not in _LOSSES:
            raise InputError(f"unknown loss {term!r} in {name!r}; valid losses: {valid}")
        coef = float(m.group("coef")) if m.group("coef") is not None else 1.0
        if not math.isfinite(coef) or coef <= 0:
            raise InputError(f"loss coefficient of {term!r} must be > 0, got {coef}")
        if any(t == term for _, t in terms):
            raise InputError(f"loss {term!r} appears twice in {name!r}; give it once with a coefficient")
        terms.append((coef, term))
    canonical = "+".join(t if c == 1.0 else f"{c:g}*{t}" for c, t in terms)
    return Loss(canonical, int(n_classes), tuple(terms))
