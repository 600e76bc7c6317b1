"""Self-tuned post-processing: fit :class:`~unet_core.config.PostprocessConfig` on validation.

At the end of training the trainer hands the class probabilities its last validation predicted
(one :class:`ValidationOutput` per held-out region) to :func:`fit_postprocess`, which searches a
small grid of threshold, minimum size, splitting of touching objects and seed distance, scored
by AP@0.5 (one-to-one matching at IoU > 0.5, :func:`unet_core.metrics.match_instances`, counts
pooled over the regions: ``TP / (TP + FP + FN)``). The winner goes into the checkpoint's
``meta["postprocess"]`` (:data:`unet_core.pipeline.POSTPROCESS_KEY`), which prediction uses
unless the user overrides it (:func:`unet_core.pipeline.postprocess_for`).

The grid is sized by the annotated objects (median area), so it suits small and large objects
alike; ties keep the earlier candidate and the starting options come first, so they stay unless
something scores strictly better. Numpy/scipy only.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..config import PostprocessConfig
from ..metrics import match_instances
from ..pipeline import segment_probabilities

log = logging.getLogger(__name__)

#: foreground probability thresholds tried
THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.7)


@dataclass(frozen=True)
class ValidationOutput:
    """What one validation region predicted, and its truth (spatial shape ``(h, w)``).

    Attributes
    ----------
    probabilities : ndarray of float32, shape (n_classes, h, w)
    region : ndarray of bool, shape (h, w)
        Annotated pixels (scored); elsewhere predictions and truth are ignored.
    instances : ndarray of uint32, shape (h, w)
        True instance labels (0 = background).
    """

    probabilities: np.ndarray
    region: np.ndarray
    instances: np.ndarray


@dataclass(frozen=True)
class TuneResult:
    """The fitted options and their validation score.

    Attributes
    ----------
    postprocess : PostprocessConfig
        The best candidate.
    ap50 : float
        Its pooled AP@0.5 on the validation regions.
    default_ap50 : float
        The starting options' AP@0.5 (for comparison).
    n_candidates : int
        Candidates scored.
    """

    postprocess: PostprocessConfig
    ap50: float
    default_ap50: float
    n_candidates: int


def candidates(
    median_area: float, start: PostprocessConfig = PostprocessConfig()
) -> tuple[list[float], list[int], list[tuple[bool, int]]]:
    """The search axes for objects of ``median_area`` pixels, each with ``start``'s value first.

    Returns
    -------
    thresholds : list of float
        :data:`THRESHOLDS`.
    min_sizes : list of int
        0, 10 % and 25 % of the median area.
    splits : list of (bool, int)
        ``(split_touching, min_distance)``: no splitting, or splitting with seeds a quarter,
        half or one equivalent radius of the median object apart.
    """
    radius = math.sqrt(max(median_area, 1.0) / math.pi)
    sizes = [0, round(0.1 * median_area), round(0.25 * median_area)]
    dists = [max(1, round(f * radius)) for f in (0.25, 0.5, 1.0)]
    splits = [(False, start.min_distance)] + [(True, d) for d in dists]

    def first(value, values):  # start's value first, no duplicates
        return [value] + [v for v in dict.fromkeys(values) if v != value]

    return (first(start.threshold, THRESHOLDS), first(start.min_size, sizes),
            first((start.split_touching, start.min_distance), splits))


def score(outputs: Sequence[ValidationOutput], postprocess: PostprocessConfig) -> float:
    """Pooled AP@0.5 of ``postprocess`` on the validation outputs (1.0 when nothing to find)."""
    tp = fp = fn = 0
    for o in outputs:
        pred = segment_probabilities(o.probabilities, postprocess).labels
        pred[~o.region] = 0
        m = match_instances(pred, np.where(o.region, o.instances, 0), 0.5)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return tp / (tp + fp + fn) if (tp + fp + fn) else 1.0


def fit_postprocess(
    outputs: Sequence[ValidationOutput], start: PostprocessConfig = PostprocessConfig()
) -> TuneResult | None:
    """Search the axes of :func:`candidates` for the best AP@0.5 on validation outputs.

    First threshold x (splitting, seed distance) at ``start.min_size``, then the minimum size
    for the winner.

    Parameters
    ----------
    outputs : sequence of ValidationOutput
        The last validation's predictions (e.g. ``Trainer.val_outputs``).
    start : PostprocessConfig
        Scored first; kept unless another candidate scores strictly better.

    Returns
    -------
    TuneResult or None
        None when there is nothing to fit on (no outputs, or no annotated object in them).
    """
    areas = [np.bincount(o.instances[o.region].ravel())[1:] for o in outputs]
    areas = np.concatenate(areas) if areas else np.zeros(0, np.int64)
    areas = areas[areas > 0]
    if not areas.size:
        return None
    thresholds, sizes, splits = candidates(float(np.median(areas)), start)
    best, best_score = start, score(outputs, start)
    default, n = best_score, 1
    # two stages (threshold x splitting, then minimum size): ~30 candidates instead of ~80
    stage1 = [replace(start, threshold=t, split_touching=sp, min_distance=d)
              for t, (sp, d) in itertools.product(thresholds, splits)]
    for stage in (stage1, None):
        grid = stage if stage is not None else [replace(best, min_size=s) for s in sizes]
        for c in grid:
            if c == best:
                continue
            value, n = score(outputs, c), n + 1
            if value > best_score:
                best, best_score = c, value
    log.info("post-processing fitted on validation: %s (AP@0.5 %.3f, defaults %.3f, %d candidates)",
             best, best_score, default, n)
    return TuneResult(best, best_score, default, n)
