"""What one annotated slice teaches: the target, the loss weights and the annotated region.

:func:`training_targets` is the single definition used by training
(:func:`unet_core.training.data.prepare_pairs`) and by the Weight map widget's preview, so the
preview is exactly the map that trains. Rules:

* The *annotated region* is the explicit mask when given, otherwise the bounding box of the
  painted labels grown by ``region_margin`` pixels (:func:`annotated_region`); unpainted pixels
  inside it are background, pixels outside it get weight 0 (never taught).
* Labels outside the region are ignored (they are not annotations).
* Binary (instance) mode: target = foreground with a one-pixel gap cut between touching objects
  (``WeightMapConfig.separate_touching``); weight = the boundary weight map
  (:func:`unet_core.weights.boundary_weight_map`) inside the region.
* Semantic mode: target = the class ids; weight = class balance inside the region
  (:func:`unet_core.weights.class_balance_weights`).

Numpy only (no torch), any number of spatial axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import WeightMapConfig
from ..errors import InputError
from ..weights import boundary_weight_map, class_balance_weights, separate_touching_objects


@dataclass(frozen=True)
class SliceTargets:
    """Target and loss weights of one annotated sample (spatial shape ``S``, e.g. (Y, X)).

    Attributes
    ----------
    target : ndarray, shape S, int64
        Class ids (binary mode: 0 background, 1 foreground, touching objects separated).
    weight : ndarray, shape S, float32
        Loss weights, 0 outside ``region``.
    region : ndarray, shape S, bool
        Pixels this sample teaches.
    instances : ndarray, shape S, uint32, or None
        Instance labels inside the region (binary mode), for instance metrics.
    """

    target: np.ndarray
    weight: np.ndarray
    region: np.ndarray
    instances: np.ndarray | None


def annotated_region(labels: np.ndarray, margin: int) -> np.ndarray:
    """Bounding box of the painted labels grown by ``margin`` pixels, as a boolean mask.

    ``labels`` int of any spatial shape; returns bool of that shape (all False when nothing is
    painted). The box is clipped to the array.
    """
    region = np.zeros(labels.shape, bool)
    idx = np.nonzero(labels)
    if not idx[0].size:
        return region
    sl = tuple(slice(max(0, int(i.min()) - margin), int(i.max()) + margin + 1) for i in idx)
    region[sl] = True
    return region


def max_class_id(labels: np.ndarray, *, name: str = "labels") -> int:
    """Largest class id of semantic labels (0 when empty), refusing negative or non-integer ids.

    Raises
    ------
    InputError
        Labels that are not non-negative integers.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu" or (labels.dtype.kind == "i" and labels.size and labels.min() < 0):
        raise InputError(f"{name}: class-id labels must be non-negative integers")
    return int(labels.max()) if labels.size else 0


def check_class_ids(labels: np.ndarray, n_classes: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Semantic labels as int64 class ids, refusing ids the model cannot output.

    Parameters
    ----------
    labels : ndarray of int, any shape
        Class ids (0 = background).
    n_classes : int, optional
        Classes the model outputs; ids must be below it (default: no limit).

    Raises
    ------
    InputError
        Non-integer or negative ids, or an id ``>= n_classes``.
    """
    top = max_class_id(labels, name=name)
    if n_classes is not None and top >= n_classes:
        raise InputError(
            f"{name}: labels contain class id {top} but the model has "
            f"{n_classes} classes; train a new model or relabel"
        )
    return np.asarray(labels).astype(np.int64)


def training_targets(
    labels: np.ndarray,
    weights: WeightMapConfig,
    *,
    mask: np.ndarray | None = None,
    region_margin: int,
    semantic: bool = False,
    sampling: tuple[float, ...] | None = None,
) -> SliceTargets | None:
    """Target and loss weights of one annotated sample, exactly as training uses them.

    Parameters
    ----------
    labels : ndarray, spatial shape S
        Binary mode: instance labels (uint32, as :func:`unet_core.labels.as_instance_labels`
        returns). Semantic mode: class ids (int64, as :func:`check_class_ids` returns).
    weights : WeightMapConfig
        Boundary weight-map options (binary mode).
    mask : ndarray of bool, shape S, optional
        Explicit annotated region; default: :func:`annotated_region` of ``labels``.
    region_margin : int
        Margin of the default region in pixels (``TrainConfig.region_margin``).
    semantic : bool
        Labels are class ids (``TrainConfig.semantic``).
    sampling : tuple of float, optional
        Pixel (voxel) size per axis for the weight map's distances (e.g. a 3D stack's z, y, x
        spacing in units of the y/x pixel); default: isotropic.

    Returns
    -------
    SliceTargets or None
        None when the sample teaches nothing (empty region; or no mask and nothing painted):
        training skips it.
    """
    region = np.asarray(mask, dtype=bool) if mask is not None else annotated_region(labels, region_margin)
    if not region.any() or (mask is None and not labels.any()):
        return None
    lab = np.where(region, labels, 0)  # labels outside the region are not annotations
    if semantic:
        target = lab.astype(np.int64)
        w = class_balance_weights(target, region)
        instances = None
    else:
        sep = separate_touching_objects(lab) if weights.separate_touching else lab
        target = (sep > 0).astype(np.int64)
        w = boundary_weight_map(
            lab, w0=weights.w0, sigma=weights.sigma, class_balance=weights.class_balance,
            mask=region, separate_touching=weights.separate_touching, sampling=sampling,
        )
        instances = lab.astype(np.uint32)
    w[~region] = 0
    return SliceTargets(target, w.astype(np.float32), region, instances)
