"""Validation during training: tiled prediction over held-out annotated regions.

Each validation sample is predicted with the same overlap-tile code as inference
(:func:`unet_core.tiling.predict_tiled`) on the bounding box of its region plus the network's
context, and scored inside the region only:

* ``val_loss``: the training loss on the predicted probabilities with the training weights;
* ``val_foreground_iou``, ``val_dice`` (foreground Dice) and ``val_pixel_error``: foreground
  (any class > 0) vs background, from the confusion matrices of
  :func:`unet_core.metrics.segmentation_metrics` pooled over all validation samples and scored by
  :func:`unet_core.metrics.confusion_scores` (an empty region scores 1: nothing to find, nothing
  found);
* ``val_boundary_f1``: boundary F1 (2-pixel tolerance), averaged over samples by pixel count;
* ``val_miou``: mean IoU over classes (semantic mode);
* ``val_ap50``: instance AP at IoU 0.5 (binary mode): predicted instances from
  :func:`unet_core.pipeline.segment_probabilities`, one-to-one matching at IoU > 0.5
  (:func:`unet_core.metrics.match_instances`), ``AP = TP / (TP + FP + FN)`` with the
  counts pooled over all validation samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..metrics import confusion_scores, match_instances, segmentation_metrics
from ..models import SegmentationNet
from ..pipeline import segment_probabilities
from ..tiling import predict_tiled
from .data import PreparedSlice
from .parts import slices_of_volumes
from .tune import ValidationOutput


def predict_region(model: SegmentationNet, sl: PreparedSlice, device: torch.device) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Class probabilities ``(K, *box)`` float32 over the bounding box of ``sl.region``.

    The prediction reads the bounding box grown by the network's context per axis (clipped to
    the image; mirrored beyond it), so pixels inside the box see the same context as in a
    whole-image prediction. Returns the probabilities and the box (one slice per axis).
    """
    box, grown = [], []
    for axis, idx in enumerate(np.nonzero(sl.region)):
        geom = model.axis_geometry(axis)
        c = max(geom.border, geom.context)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        box.append((lo, hi))
        grown.append((max(0, lo - c), min(sl.region.shape[axis], hi + c)))
    probs = predict_tiled(
        model, sl.image[(slice(None), *(slice(a, b) for a, b in grown))], channel_axis=0,
        device=device, normalize_input=False, batch_size=1 if device.type == "cpu" else 8,
    )
    probs = probs[(slice(None), *(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(box, grown)))]
    return probs, tuple(slice(lo, hi) for lo, hi in box)


def evaluate(
    model: SegmentationNet,
    slices: list[PreparedSlice],
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    semantic: bool,
    outputs: list[ValidationOutput] | None = None,
) -> dict[str, float]:
    """Validation metrics of ``model`` on held-out samples (see the module docstring).

    ``outputs``, when given, receives each instance sample's probabilities, region and truth
    (for :func:`unet_core.training.tune.fit_postprocess`).

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
    conf = np.zeros((n_classes, n_classes), np.int64)
    bf1_sum = bf1_n = 0.0
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
                loss = loss_fn(*slices_of_volumes(
                    logp, torch.from_numpy(target)[None], torch.from_numpy(weight)[None]
                ))
                loss_sum += float(loss) * w_total
                weight_sum += w_total
            pred = probs.argmax(0)
            m = segmentation_metrics(pred, target, n_classes=n_classes, mask=region)
            conf += m["confusion"]
            if not math.isnan(m["boundary_f1"]):
                bf1_sum += m["boundary_f1"] * m["n_pixels"]
                bf1_n += m["n_pixels"]
            if not semantic and sl.instances is not None:
                inst = instances_from(model, probs)
                inst[~region] = 0
                match = match_instances(inst, np.where(region, sl.instances[box], 0), 0.5)
                tp, fp, fn = tp + match.tp, fp + match.fp, fn + match.fn
                if outputs is not None:
                    outputs.append(ValidationOutput(probs, region, sl.instances[box]))
    finally:
        model.train(was_training)
    scores = confusion_scores(conf)
    out = {
        "val_loss": loss_sum / weight_sum if weight_sum else math.nan,
        "val_foreground_iou": _nan_to_one(scores["foreground_iou"]),
        "val_dice": _nan_to_one(scores["foreground_dice"]),
        "val_pixel_error": scores["pixel_error"],
        "val_boundary_f1": bf1_sum / bf1_n if bf1_n else math.nan,
    }
    if semantic:
        out["val_miou"] = _nan_to_one(scores["miou"])
    else:
        out["val_ap50"] = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return out


def instances_from(model: SegmentationNet, probs: np.ndarray) -> np.ndarray:
    """Instance labels of probabilities ``(K, *spatial)``: 3D labels for a 3D model."""
    return segment_probabilities(probs, volume=model.config.spatial_dims == 3).labels


def _nan_to_one(score: float) -> float:
    """An undefined score (no such pixels in prediction and truth) counts as perfect."""
    return 1.0 if math.isnan(score) else score
