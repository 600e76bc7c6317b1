"""What one annotated slice teaches: the target, the loss weights and the annotated region.

:func:`training_targets` is the single definition used by training
(:func:`unet_core.training.data.prepare_pairs`) and by the Weight map widget's preview, so the
preview is exactly the map that trains. Rules:

* The *annotated region* is the explicit mask when given. Otherwise it follows
  ``TrainConfig.region_rule`` (:func:`annotated_region`): 'ring' = the painted
  objects, a ring of ``sparse_ring`` pixels around each and the background strokes (pixels
  painted with :data:`BACKGROUND_LABEL`), so objects the user skipped far from painted ones are
  never taught as background; 'box' (the default, docs/quality.md) = the bounding box of
  everything painted grown by ``region_margin`` pixels. Unpainted pixels inside the region are background, pixels outside
  it get weight 0 (never taught).
* Labels outside the region are ignored (they are not annotations); background strokes are
  background (instance mode; in semantic mode every id is a class).
* Binary (instance) mode: target = foreground with a one-pixel gap cut between touching objects
  (``WeightMapConfig.separate_touching``); weight = the boundary weight map
  (:func:`unet_core.weights.boundary_weight_map`) inside the region.
* Semantic mode: target = the class ids; weight = class balance inside the region
  (:func:`unet_core.weights.class_balance_weights`).

Numpy only (no torch), any number of spatial axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config import TrainConfig, WeightMapConfig
from ..errors import InputError
from ..weights import boundary_weight_map, class_balance_weights, separate_touching_objects

#: Label value of a background stroke in instance labels: "this is background, teach it" (the
#: largest id of the Annotate widget's uint16 labels; paint it with label 65535 in napari).
BACKGROUND_LABEL = 65535

RegionRule = Literal["ring", "box"]
TargetKind = Literal["two_class", "three_class"]


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


def annotated_region(
    labels: np.ndarray,
    margin: int,
    *,
    rule: RegionRule = "box",
    ring: int = TrainConfig.sparse_ring,
) -> np.ndarray:
    """The pixels a sparse annotation teaches (no explicit region mask), as a boolean mask.

    Parameters
    ----------
    labels : ndarray of int, any spatial shape S
        Painted labels (0 = not painted; :data:`BACKGROUND_LABEL` = a background stroke).
    margin : int
        ``rule='box'``: the bounding box of all painted pixels grown by this many pixels
        (clipped to the array).
    rule : {'ring', 'box'}
        'ring': every painted pixel (objects and background strokes) plus the pixels within
        ``ring`` pixels (Euclidean) of a painted object. 'box': the grown bounding box.
    ring : int
        Width of the ring around painted objects in pixels (``rule='ring'``).

    Returns
    -------
    ndarray of bool, shape S
        All False when nothing is painted.
    """
    painted = np.asarray(labels) != 0
    if not painted.any():
        return np.zeros(painted.shape, bool)
    if rule == "box":
        region = np.zeros(painted.shape, bool)
        idx = np.nonzero(painted)
        sl = tuple(slice(max(0, int(i.min()) - margin), int(i.max()) + margin + 1) for i in idx)
        region[sl] = True
        return region
    from scipy import ndimage as ndi

    objects = painted & (labels != BACKGROUND_LABEL)
    if ring <= 0 or not objects.any():
        return painted
    near = ndi.distance_transform_edt(~objects) <= ring
    return near | painted


def three_class_target(labels: np.ndarray, separated: np.ndarray) -> np.ndarray:
    """Background (0) / interior (1) / boundary (2) classes of instance labels.

    Parameters
    ----------
    labels : ndarray of uint, spatial shape S
        Instance labels (0 = background).
    separated : ndarray of uint, shape S
        ``labels`` with the gaps between touching objects cut
        (:func:`unet_core.weights.separate_touching_objects`), or ``labels`` itself.

    Returns
    -------
    ndarray of int64, shape S
        2 on each object's one-pixel inner outline (face-connected neighbours of another id or
        background) and on the cut gaps, 1 inside, 0 elsewhere.
    """
    from skimage.segmentation import find_boundaries

    outline = find_boundaries(separated, connectivity=1, mode="inner") & (separated > 0)
    out = np.where(separated > 0, 1, 0).astype(np.int64)
    out[outline | ((labels > 0) & (separated == 0))] = 2
    return out


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
    region_rule: RegionRule = TrainConfig.region_rule,
    sparse_ring: int = TrainConfig.sparse_ring,
    target_kind: TargetKind = TrainConfig.target,
) -> SliceTargets | None:
    """Target and loss weights of one annotated sample, exactly as training uses them.

    Parameters
    ----------
    labels : ndarray, spatial shape S
        Binary mode: instance labels (uint32, as :func:`unet_core.labels.as_instance_labels`
        returns). Semantic mode: class ids (int64, as :func:`check_class_ids` returns).
        Pixels equal to :data:`BACKGROUND_LABEL` are background strokes (binary mode).
    weights : WeightMapConfig
        Boundary weight-map options (binary mode).
    mask : ndarray of bool, shape S, optional
        Explicit annotated region; default: :func:`annotated_region` of ``labels``.
    region_margin : int
        Margin of the 'box' region in pixels (``TrainConfig.region_margin``).
    semantic : bool
        Labels are class ids (``TrainConfig.semantic``).
    sampling : tuple of float, optional
        Pixel (voxel) size per axis for the weight map's distances (e.g. a 3D stack's z, y, x
        spacing in units of the y/x pixel); default: isotropic.
    region_rule : {'ring', 'box'}
        The region without a mask (``TrainConfig.region_rule``).
    sparse_ring : int
        Ring width of the 'ring' region (``TrainConfig.sparse_ring``).
    target_kind : {'two_class', 'three_class'}
        Binary mode's target (``TrainConfig.target``): foreground, or
        :func:`three_class_target`.

    Returns
    -------
    SliceTargets or None
        None when the sample teaches nothing (empty region; or no mask and nothing painted):
        training skips it.
    """
    if mask is not None:
        region = np.asarray(mask, dtype=bool)
    else:
        region = annotated_region(labels, region_margin, rule=region_rule, ring=sparse_ring)
    if not region.any() or (mask is None and not labels.any()):
        return None
    lab = np.where(region, labels, 0)  # labels outside the region are not annotations
    if not semantic:
        lab = np.where(lab == BACKGROUND_LABEL, 0, lab)  # background strokes
    if semantic:
        target = lab.astype(np.int64)
        w = class_balance_weights(target, region)
        instances = None
    else:
        sep = separate_touching_objects(lab) if weights.separate_touching else lab
        target = three_class_target(lab, sep) if target_kind == "three_class" else (sep > 0).astype(np.int64)
        w = boundary_weight_map(
            lab, w0=weights.w0, sigma=weights.sigma, class_balance=weights.class_balance,
            mask=region, separate_touching=weights.separate_touching, sampling=sampling,
        )
        instances = lab.astype(np.uint32)
    w[~region] = 0
    return SliceTargets(target, w.astype(np.float32), region, instances)
