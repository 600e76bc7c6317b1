"""Segmentation quality metrics: semantic (IoU, Dice, accuracy, boundary F1) and instance (AP).

Semantic metrics compare class-id maps pixel by pixel (:func:`segmentation_metrics`); instance
metrics match labelled objects one-to-one at an IoU threshold (:func:`match_instances`,
:func:`instance_ap`, the DSB 2018 / StarDist convention ``AP = TP / (TP + FP + FN)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csgraph

from .errors import InputError


# --------------------------------------------------------------------------------------------
# semantic metrics
# --------------------------------------------------------------------------------------------
def _as_int_array(
    a: Any,
    name: str,
    expected: str = "hold integer ids",
    hint: str = "; for probabilities take argmax over the class axis (or threshold) first",
) -> np.ndarray:
    """``a`` as an integer array (bool becomes uint8); InputError ``name must EXPECTED`` otherwise."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{name} must {expected}, got dtype {a.dtype}{hint}")
    return a


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _inner_boundary(member: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels of ``member`` with a 4-neighbour (within ``valid``, along the last two axes) outside it.

    ``member``/``valid`` bool ``(..., H, W)``. Only valid pixels are considered on both sides, so
    values outside ``valid`` cannot create or remove boundary pixels; the image edge is no
    boundary.
    """
    inside = member & valid
    out = np.zeros_like(inside)
    for axis in (-2, -1):
        n = member.shape[axis]
        if n < 2:
            continue
        a = [slice(None)] * member.ndim
        b = [slice(None)] * member.ndim
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        a_, b_ = tuple(a), tuple(b)
        # neighbour pair (p, q) both valid with different membership: the member one is a boundary
        diff = valid[a_] & valid[b_] & (member[a_] != member[b_])
        out[a_] |= diff & inside[a_]
        out[b_] |= diff & inside[b_]
    return out


def _disk_offsets(tolerance: float) -> list[tuple[int, int]]:
    r = int(math.floor(tolerance))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= tolerance**2]


def _near(boundary: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within Euclidean ``tolerance`` of a boundary pixel, per 2D image ``(..., H, W)``.

    Small tolerances (the usual 1-3 px): OR of the boundary shifted by every offset inside the
    disk (exact, a few fast passes); larger ones: exact EDT on the boundary's bounding box.
    """
    flat = boundary.reshape((-1,) + boundary.shape[-2:])
    out = np.zeros(flat.shape, bool)
    offsets = _disk_offsets(tolerance)
    h, w = flat.shape[-2:]
    if len(offsets) <= 50:
        for dy, dx in offsets:
            if abs(dy) >= h or abs(dx) >= w:
                continue
            out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= flat[
                :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
        return out.reshape(boundary.shape)
    for i, b in enumerate(flat):
        if not b.any():
            continue
        # restrict the distance transform to the bounding box grown by the tolerance
        ys, xs = np.nonzero(b.any(axis=1))[0], np.nonzero(b.any(axis=0))[0]
        r = int(math.ceil(tolerance))
        y0, y1 = max(ys[0] - r, 0), min(ys[-1] + r + 1, b.shape[0])
        x0, x1 = max(xs[0] - r, 0), min(xs[-1] + r + 1, b.shape[1])
        d = ndimage.distance_transform_edt(~b[y0:y1, x0:x1])
        out[i, y0:y1, x0:x1] = d <= tolerance
    return out.reshape(boundary.shape)


def boundary_f1_counts(
    pred_member: np.ndarray, true_member: np.ndarray, valid: np.ndarray, tolerance: float
) -> tuple[int, int, int, int]:
    """Boundary-matching counts of one class (Csurka et al. 2013 BF score).

    Parameters
    ----------
    pred_member, true_member, valid : ndarray of bool, shape (..., H, W)
        Predicted and true membership of the class, and the pixels to evaluate. Leading axes are
        independent 2D images.
    tolerance : float
        Distance (pixels, Euclidean) within which a boundary pixel counts as matched.

    Returns
    -------
    tuple of int
        ``(pred boundary pixels near a true boundary, pred boundary pixels,
        true boundary pixels near a predicted boundary, true boundary pixels)``.
    """
    pb = _inner_boundary(pred_member, valid)
    tb = _inner_boundary(true_member, valid)
    n_pb, n_tb = int(pb.sum()), int(tb.sum())
    hit_p = int((pb & _near(tb, tolerance)).sum()) if n_pb and n_tb else 0
    hit_t = int((tb & _near(pb, tolerance)).sum()) if n_pb and n_tb else 0
    return hit_p, n_pb, hit_t, n_tb


def segmentation_metrics(
    pred: Any,
    target: Any,
    *,
    n_classes: int,
    mask: Any = None,
    boundary_tolerance: float = 2,
) -> dict[str, Any]:
    """Pixel-wise quality of a class-id prediction.

    Parameters
    ----------
    pred, target : array-like of int, shape (H, W) or (..., H, W)
        Predicted and true class ids in ``[0, n_classes)`` (0 = background). Leading axes
        (a batch or a stack) are independent 2D images whose counts are pooled.
    n_classes : int
        Number of classes ``K >= 2``.
    mask : array-like of bool, same shape, optional
        Pixels to evaluate (e.g. the annotated region); all when omitted. Values outside the mask
        do not influence any metric.
    boundary_tolerance : float
        Distance tolerance in pixels for the boundary F1 score (default 2).

    Returns
    -------
    dict
        ``'iou'``: list of K floats, per-class IoU ``TP / (TP + FP + FN)``, NaN for a class absent
        from both maps; ``'miou'``: mean of the non-NaN per-class IoUs (background included);
        ``'foreground_iou'``: IoU of ``pred > 0`` vs ``target > 0`` (NaN if both are empty);
        ``'dice'``: mean per-class Dice over the foreground classes ``1..K-1`` (NaN-skipping; the
        foreground Dice for two classes); ``'dice_per_class'``: list of K floats;
        ``'foreground_dice'``; ``'pixel_accuracy'``: fraction of evaluated pixels classified
        correctly; ``'pixel_error'``: ``1 - pixel_accuracy``; ``'boundary_f1'``: mean over the
        foreground classes of the BF score (F1 of boundary precision and recall at
        ``boundary_tolerance``; boundaries are the class region's inner 4-connected rim; NaN
        for a class without boundary in both maps, 0 when only one has one);
        ``'boundary_f1_per_class'``: list of K floats (background entry NaN: it mirrors the
        foreground boundaries); ``'n_pixels'``: evaluated pixels; ``'confusion'``: K x K int64
        matrix, rows = true class, columns = predicted.

    Raises
    ------
    InputError
        Shape mismatch, non-integer maps, ids outside ``[0, n_classes)``.
    """
    pred = _as_int_array(pred, "pred")
    target = _as_int_array(target, "target")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise InputError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    k = int(n_classes)
    if pred.shape != target.shape:
        raise InputError(f"pred shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim < 2:
        raise InputError(f"pred/target must be 2D (H, W) or (..., H, W), got shape {pred.shape}")
    if mask is None:
        valid = np.ones(pred.shape, bool)
    else:
        valid = np.asarray(mask)
        if valid.shape != pred.shape:
            raise InputError(f"mask shape {valid.shape} differs from pred/target shape {pred.shape}")
        valid = valid.astype(bool, copy=False)
    scores = confusion_scores(confusion_matrix(pred[valid], target[valid], n_classes=k))
    bf1 = [math.nan] * k
    for c in range(1, k):
        hit_p, n_pb, hit_t, n_tb = boundary_f1_counts(
            pred == c, target == c, valid, boundary_tolerance
        )
        if n_pb == 0 and n_tb == 0:
            continue
        precision = _ratio(hit_p, n_pb) if n_pb else 0.0
        recall = _ratio(hit_t, n_tb) if n_tb else 0.0
        bf1[c] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {**scores, "boundary_f1": _nanmean(bf1[1:]), "boundary_f1_per_class": bf1}


def confusion_matrix(pred: np.ndarray, target: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Confusion matrix of class-id maps.

    Parameters
    ----------
    pred, target : ndarray of int, same shape (any)
        Predicted and true class ids in ``[0, n_classes)``.
    n_classes : int
        Number of classes ``K``.

    Returns
    -------
    ndarray of int64, shape (K, K)
        Pixel counts, rows = true class, columns = predicted.

    Raises
    ------
    InputError
        Ids outside ``[0, n_classes)``.
    """
    k = int(n_classes)
    for name, a in (("pred", pred), ("target", target)):
        if a.size and (int(a.min()) < 0 or int(a.max()) >= k):
            raise InputError(
                f"{name} holds ids outside [0, {k}) (min {int(a.min())}, max {int(a.max())}); "
                "check n_classes or convert instance labels with (labels > 0)"
            )
    codes = target.astype(np.int64).reshape(-1) * k + pred.astype(np.int64).reshape(-1)
    return np.bincount(codes, minlength=k * k).reshape(k, k)


def confusion_scores(conf: np.ndarray) -> dict[str, Any]:
    """Pixel scores from a (pooled) confusion matrix, NaN where a score is undefined.

    Parameters
    ----------
    conf : ndarray of int, shape (K, K)
        Rows = true class, columns = predicted (:func:`confusion_matrix`); the counts of several
        images may be summed first.

    Returns
    -------
    dict
        ``'iou'``, ``'miou'``, ``'foreground_iou'``, ``'dice'``, ``'dice_per_class'``,
        ``'foreground_dice'``, ``'pixel_accuracy'``, ``'pixel_error'``, ``'n_pixels'`` and
        ``'confusion'`` (``conf`` itself), as described in :func:`segmentation_metrics`.
    """
    k = conf.shape[0]
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    iou = [_ratio(tp[c], tp[c] + fp[c] + fn[c]) for c in range(k)]
    dice = [_ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(k)]
    fg_tp, fg_fp, fg_fn = int(conf[1:, 1:].sum()), int(conf[0, 1:].sum()), int(conf[1:, 0].sum())
    n = int(conf.sum())
    accuracy = _ratio(int(tp.sum()), n)
    return {
        "iou": iou,
        "miou": _nanmean(iou),
        "foreground_iou": _ratio(fg_tp, fg_tp + fg_fp + fg_fn),
        "dice": _nanmean(dice[1:]),
        "dice_per_class": dice,
        "foreground_dice": _ratio(2 * fg_tp, 2 * fg_tp + fg_fp + fg_fn),
        "pixel_accuracy": accuracy,
        "pixel_error": 1.0 - accuracy if not math.isnan(accuracy) else math.nan,
        "n_pixels": n,
        "confusion": conf,
    }


# --------------------------------------------------------------------------------------------
# instance metrics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class InstanceMatch:
    """Result of one-to-one matching of predicted to true objects.

    Attributes
    ----------
    tp, fp, fn : int
        Matched pairs, unmatched predictions, unmatched true objects.
    n_pred, n_true : int
        Number of predicted / true objects (distinct non-zero ids).
    mean_matched_iou : float
        Mean IoU of the matched pairs (NaN when there is none).
    iou_threshold : float
        A pair matches when its IoU is strictly greater than this.
    true_ids, pred_ids : ndarray of int64, shape (tp,)
        Ids of the matched pairs (original label values).
    ious : ndarray of float64, shape (tp,)
        IoU of each matched pair.
    """

    tp: int
    fp: int
    fn: int
    n_pred: int
    n_true: int
    mean_matched_iou: float
    iou_threshold: float
    true_ids: np.ndarray
    pred_ids: np.ndarray
    ious: np.ndarray

    @property
    def ap(self) -> float:
        """``TP / (TP + FP + FN)``; 1.0 when both images are empty."""
        den = self.tp + self.fp + self.fn
        return self.tp / den if den else 1.0

    @property
    def precision(self) -> float:
        """``TP / n_pred`` (1.0 without predictions)."""
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        """``TP / n_true`` (1.0 without true objects)."""
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)`` (1.0 when both images are empty)."""
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else 1.0


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel to ``0..n`` (0 stays background). Returns ``(compact int64 flat, original ids)``.

    ``original ids`` int64 ``(n + 1,)`` maps compact id -> label value (entry 0 = 0).
    """
    flat = labels.reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    top = int(flat.max())
    if top < 4 * flat.size + 1024:  # dense lookup table: linear time
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = True
        ids = np.flatnonzero(present).astype(np.int64)
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(ids.size)
        return lut[flat], ids
    # large ids: sort the foreground values only (no argsort), then binary-search them
    fg = flat > 0
    values = flat[fg]
    ids = np.unique(values)
    compact = np.zeros(flat.size, np.int64)
    compact[fg] = np.searchsorted(ids, values) + 1
    return compact, np.concatenate([[0], ids.astype(np.int64)])


def _check_labels(a: Any, name: str) -> np.ndarray:
    a = _as_int_array(a, name, "be an integer label image (0 = background)", "")
    if a.size and np.issubdtype(a.dtype, np.signedinteger) and int(a.min()) < 0:
        raise InputError(f"{name} holds negative ids; labels must be >= 0 (0 = background)")
    if a.dtype == np.uint64:
        if a.size and int(a.max()) > np.iinfo(np.int64).max:
            raise InputError(f"{name} holds ids above 2**63 - 1; relabel it (skimage.segmentation.relabel_sequential)")
    return a


def match_instances(pred_labels: Any, true_labels: Any, iou_threshold: float = 0.5) -> InstanceMatch:
    """Match predicted to true objects one-to-one at ``IoU > iou_threshold``.

    Parameters
    ----------
    pred_labels, true_labels : array-like of int, same shape (2D, 3D or any)
        Instance label images, 0 = background; ids need not be contiguous and may be large
        (e.g. uint32/uint64 hashes). Each id is one object (even if not connected).
    iou_threshold : float
        In ``[0, 1)``: pairs with IoU strictly above it may match.

    Returns
    -------
    InstanceMatch
        Counts (``tp``, ``fp``, ``fn``), the matched pairs and their mean IoU.

    Notes
    -----
    Overlaps are counted sparsely: only the (true, pred) id pairs that share pixels are
    tabulated (``bincount`` on compacted ids, or ``np.unique`` on pair codes when the dense table
    would be large). For ``iou_threshold >= 0.5`` every object has at most one partner with
    IoU above the threshold (IoU > 0.5 means the pair shares more than half of each object's
    pixels), so the candidate pairs are already a one-to-one matching and are taken as such;
    below 0.5 a maximum-cardinality matching (ties broken by the highest total IoU) is computed
    with ``scipy.optimize.linear_sum_assignment`` on each connected component of the candidate
    graph.
    """
    pred = _check_labels(pred_labels, "pred_labels")
    true = _check_labels(true_labels, "true_labels")
    if pred.shape != true.shape:
        raise InputError(f"pred_labels shape {pred.shape} differs from true_labels shape {true.shape}")
    thr = float(iou_threshold)
    if not 0.0 <= thr < 1.0:
        raise InputError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    pc, pred_ids = _compact(pred)
    tc, true_ids = _compact(true)
    n_p, n_t = pred_ids.size - 1, true_ids.size - 1
    area_p = np.bincount(pc, minlength=n_p + 1)
    area_t = np.bincount(tc, minlength=n_t + 1)
    both = (pc > 0) & (tc > 0)
    codes = tc[both] * (n_p + 1) + pc[both]
    if (n_t + 1) * (n_p + 1) <= max(4 * codes.size, 1 << 23):
        counts = np.bincount(codes, minlength=(n_t + 1) * (n_p + 1))
        codes = np.flatnonzero(counts)
        inter = counts[codes]
    else:
        codes, inter = np.unique(codes, return_counts=True)
    ti, pi = np.divmod(codes, n_p + 1)
    iou = inter / (area_t[ti] + area_p[pi] - inter)
    ok = iou > thr
    ti, pi, iou = ti[ok], pi[ok], iou[ok]
    if thr < 0.5 and ti.size:
        ti, pi, iou = _max_matching(ti, pi, iou, n_t, n_p)
    tp = int(ti.size)
    return InstanceMatch(
        tp=tp,
        fp=n_p - tp,
        fn=n_t - tp,
        n_pred=n_p,
        n_true=n_t,
        mean_matched_iou=float(iou.mean()) if tp else math.nan,
        iou_threshold=thr,
        true_ids=true_ids[ti],
        pred_ids=pred_ids[pi],
        ious=iou.astype(np.float64),
    )


def _max_matching(
    ti: np.ndarray, pi: np.ndarray, iou: np.ndarray, n_t: int, n_p: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-cardinality, then maximum-IoU, one-to-one matching of candidate pairs.

    ``ti``/``pi`` int64 ``(M,)`` compact ids (1-based) of candidate pairs, ``iou`` ``(M,)``.
    """
    m = ti.size
    # bipartite graph: true nodes 0..n_t-1, pred nodes n_t..n_t+n_p-1
    graph = sparse.coo_matrix((np.ones(m), (ti - 1, n_t + pi - 1)), shape=(n_t + n_p,) * 2)
    _, comp = csgraph.connected_components(graph, directed=False)
    pair_comp = comp[ti - 1]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    keep = np.zeros(m, bool)
    for idx in np.split(order, bounds):
        if idx.size == 1:
            keep[idx] = True
            continue
        rows, r_inv = np.unique(ti[idx], return_inverse=True)
        cols, c_inv = np.unique(pi[idx], return_inverse=True)
        # score: 1 per match dominates the IoU tie-break (sum of IoUs / (size + 1) < 1)
        score = np.zeros((rows.size, cols.size))
        score[r_inv, c_inv] = 1.0 + iou[idx] / (idx.size + 1)
        r, c = linear_sum_assignment(score, maximize=True)
        chosen = score[r, c] > 0
        lookup = {(a, b): j for j, a, b in zip(idx, r_inv, c_inv, strict=True)}
        for a, b in zip(r[chosen], c[chosen], strict=True):
            keep[lookup[(a, b)]] = True
    return ti[keep], pi[keep], iou[keep]


def instance_ap(pred_labels: Any, true_labels: Any, iou_threshold: float = 0.5) -> float:
    """Average precision of an instance segmentation at one IoU threshold.

    Parameters
    ----------
    pred_labels, true_labels : array-like of int, same shape
        Instance label images (0 = background), 2D or 3D, any ids.
    iou_threshold : float
        Pairs with IoU strictly above it may match (one-to-one).

    Returns
    -------
    float
        ``TP / (TP + FP + FN)`` (DSB 2018 / StarDist convention); 1.0 when both are empty.
    """
    return match_instances(pred_labels, true_labels, iou_threshold).ap
