"""Validation during training: tiled prediction over held-out annotated regions.

Each validation sample is predicted with the same overlap-tile code as inference
(:func:`unet_core.tiling.predict_tiled`) on the bounding box of its region plus the network's
context, and scored inside the region only:

* ``val_loss``: the training loss on the predicted probabilities with the training weights;
* ``val_foreground_iou`` and ``val_dice``: foreground (any class > 0) vs background;
* ``val_miou``: mean IoU over classes (semantic mode);
* ``val_ap50``: instance AP at IoU 0.5 (binary mode): predicted instances from
  :func:`unet_core.postprocess.probabilities_to_instances`, one-to-one matching at IoU > 0.5,
  ``AP = TP / (TP + FP + FN)``, counts pooled over all validation samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..models import SegmentationNet
from ..postprocess import probabilities_to_instances
from ..tiling import predict_tiled
from .data import PreparedSlice


def _bbox(region: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def predict_region(model: SegmentationNet, sl: PreparedSlice, device: torch.device) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Class probabilities ``(K, h, w)`` float32 over the bounding box of ``sl.region``.

    The prediction reads the bounding box grown by the network's context (clipped to the image;
    mirrored beyond it), so pixels inside the box see the same context as in a whole-image
    prediction. Returns the probabilities and the box as a pair of slices.
    """
    y0, y1, x0, x1 = _bbox(sl.region)
    c = max(model.border, model.context)
    h, w = sl.region.shape
    cy0, cy1, cx0, cx1 = max(0, y0 - c), min(h, y1 + c), max(0, x0 - c), min(w, x1 + c)
    probs = predict_tiled(
        model, sl.image[:, cy0:cy1, cx0:cx1], channel_axis=0, device=device, normalize_input=False,
        batch_size=1 if device.type == "cpu" else 8,
    )
    probs = probs[:, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    return probs, (slice(y0, y1), slice(x0, x1))


def match_counts(pred: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) of a one-to-one matching of instance labels at IoU > ``iou_threshold``.

    With a threshold >= 0.5 every object can overlap at most one other by more than half, so
    thresholding the IoU matrix gives the unique optimal matching.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    true = np.asarray(true).ravel().astype(np.int64)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    t_ids, t_inv = np.unique(true, return_inverse=True)
    n_p, n_t = int((p_ids > 0).sum()), int((t_ids > 0).sum())
    if n_p == 0 or n_t == 0:
        return 0, n_p, n_t
    inter = np.zeros((len(p_ids), len(t_ids)), np.int64)
    np.add.at(inter, (p_inv, t_inv), 1)
    area_p, area_t = inter.sum(1), inter.sum(0)
    union = area_p[:, None] + area_t[None, :] - inter
    iou = inter / np.maximum(union, 1)
    iou = iou[p_ids > 0][:, t_ids > 0]
    if iou_threshold < 0.5:
        raise ValueError("match_counts needs iou_threshold >= 0.5 for a unique matching")
    tp = int((iou > iou_threshold).sum())
    return tp, n_p - tp, n_t - tp


def evaluate(
    model: SegmentationNet,
    slices: list[PreparedSlice],
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    semantic: bool,
) -> dict[str, float]:
    """Validation metrics of ``model`` on held-out samples (see the module docstring).

    Returns
    -------
    dict
        'val_loss', 'val_foreground_iou', 'val_dice', and 'val_ap50' (binary mode) or
        'val_miou' (semantic mode).
    """
    n_classes = model.config.n_classes
    was_training = model.training
    model.eval()
    loss_sum = weight_sum = 0.0
    fg_inter = fg_union = fg_sum = 0
    cls_inter = np.zeros(n_classes, np.int64)
    cls_union = np.zeros(n_classes, np.int64)
    tp = fp = fn = 0
    try:
        for sl in slices:
            probs, box = predict_region(model, sl, device)
            region = sl.region[box]
            target = sl.target[box]
            weight = sl.weight[box]
            logp = torch.from_numpy(np.log(np.clip(probs, 1e-7, 1.0)))[None]
            w_total = float(weight.sum())
            if w_total > 0:
                loss = loss_fn(logp, torch.from_numpy(target)[None], torch.from_numpy(weight)[None])
                loss_sum += float(loss) * w_total
                weight_sum += w_total
            pred = probs.argmax(0)
            p_fg, t_fg = (pred > 0) & region, (target > 0) & region
            fg_inter += int((p_fg & t_fg).sum())
            fg_union += int((p_fg | t_fg).sum())
            fg_sum += int(p_fg.sum() + t_fg.sum())
            for k in range(n_classes):
                pk, tk = (pred == k) & region, (target == k) & region
                cls_inter[k] += int((pk & tk).sum())
                cls_union[k] += int((pk | tk).sum())
            if not semantic and sl.instances is not None:
                inst = probabilities_to_instances(probs)
                inst[~region] = 0
                true = np.where(region, sl.instances[box], 0)
                a, b, c = match_counts(inst, true)
                tp, fp, fn = tp + a, fp + b, fn + c
    finally:
        model.train(was_training)
    out = {
        "val_loss": loss_sum / weight_sum if weight_sum else float("nan"),
        "val_foreground_iou": fg_inter / fg_union if fg_union else 1.0,
        "val_dice": 2 * fg_inter / fg_sum if fg_sum else 1.0,
    }
    if semantic:
        present = cls_union > 0
        out["val_miou"] = float((cls_inter[present] / cls_union[present]).mean()) if present.any() else 1.0
    else:
        out["val_ap50"] = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return out
