"""Training data: (image, labels[, region]) pairs turned into targets, weights and random tiles."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig, WeightMapConfig
from ..errors import InputError
from ..labels import as_instance_labels, check_same_shape
from ..normalization import normalize
from ..weights import boundary_weight_map, separate_touching_objects

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPair:
    """One annotated image.

    Attributes
    ----------
    image : ndarray
        ``(Y, X)``, ``(C, Y, X)`` (with ``channel_axis``), or a stack ``(Z, Y, X)`` /
        ``(Z, C, Y, X)`` whose slices become samples. Any real dtype.
    labels : ndarray of int
        Instance labels of the spatial shape (0 = background).
    mask : ndarray of bool, optional
        Annotated region; pixels outside get zero loss weight. When omitted, the bounding box of
        the painted labels grown by ``TrainConfig.region_margin`` pixels.
    channel_axis : int or None
        Channel axis of ``image``.
    name : str
        For messages and provenance.
    """

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None = None
    channel_axis: int | None = None
    name: str = "image"


@dataclass(frozen=True)
class PreparedSlice:
    """One 2D training sample, ready for tiling.

    ``image`` float32 ``(C, Y, X)`` normalised; ``target`` int64 ``(Y, X)`` class ids;
    ``weight`` float32 ``(Y, X)`` loss weights (0 outside the annotated region).
    """

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    name: str


def annotated_region(labels: np.ndarray, margin: int) -> np.ndarray:
    """Bounding box of the painted labels grown by ``margin`` pixels, as a boolean mask."""
    region = np.zeros(labels.shape, bool)
    idx = np.nonzero(labels)
    if not idx[0].size:
        return region
    sl = tuple(slice(max(0, int(i.min()) - margin), int(i.max()) + margin + 1) for i in idx)
    region[sl] = True
    return region


def prepare_pairs(
    pairs: Sequence[TrainingPair],
    model_config: ModelConfig,
    weights: WeightMapConfig,
    *,
    region_margin: int,
) -> list[PreparedSlice]:
    """Validate pairs and turn them into 2D slices with targets and weight maps.

    Raises
    ------
    InputError
        Shape mismatches, wrong channel counts, no annotations at all.
    """
    out: list[PreparedSlice] = []
    for pair in pairs:
        img = np.asarray(pair.image)
        if pair.channel_axis is not None:
            img = np.moveaxis(img, pair.channel_axis, -3)
        else:
            img = img[..., None, :, :]
        if img.shape[-3] != model_config.in_channels:
            raise InputError(
                f"{pair.name}: image has {img.shape[-3]} channel(s) but the model reads "
                f"{model_config.in_channels}; set the channel axis or choose in_channels"
            )
        labels = np.asarray(pair.labels)
        check_same_shape(img.shape[:-3] + img.shape[-2:], labels.shape)
        if labels.ndim == 2:
            img, labels = img[None], labels[None]
            masks = None if pair.mask is None else np.asarray(pair.mask, bool)[None]
        else:
            masks = None if pair.mask is None else np.asarray(pair.mask, bool)
        if masks is not None and masks.shape != labels.shape:
            raise InputError(f"{pair.name}: region mask shape {masks.shape} differs from labels {labels.shape}")
        inst = as_instance_labels(labels, name=f"{pair.name} labels")
        for z in range(inst.shape[0]):
            lab = inst[z]
            region = masks[z] if masks is not None else annotated_region(lab, region_margin)
            if not region.any() or (masks is None and not lab.any()):
                continue
            sep = separate_touching_objects(lab) if weights.separate_touching else lab
            target = (sep > 0).astype(np.int64)
            w = boundary_weight_map(
                lab, w0=weights.w0, sigma=weights.sigma, class_balance=weights.class_balance,
                mask=region, separate_touching=weights.separate_touching,
            )
            image = normalize(img[z], model_config.normalization, channel_axis=0)
            out.append(PreparedSlice(image, target, w, f"{pair.name}[{z}]" if inst.shape[0] > 1 else pair.name))
    if not out:
        raise InputError(
            "no annotations to train on: paint at least a few objects (labels > 0) or give a "
            "region mask that covers annotated pixels"
        )
    return out


def sample_tile(
    rng: np.random.Generator,
    sl: PreparedSlice,
    in_size: int,
    out_size: int,
    border: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a random tile whose output window lies over annotated (weight > 0) pixels.

    Returns
    -------
    image ``(C, in_size, in_size)`` float32, target ``(out_size, out_size)`` int64,
    weight ``(out_size, out_size)`` float32; regions past the image border are mirrored
    (image) or zero-weighted (target/weight).
    """
    h, w = sl.target.shape
    ys, xs = np.nonzero(sl.weight)
    k = int(rng.integers(len(ys)))
    cy, cx = int(ys[k]), int(xs[k])
    y0 = cy - out_size // 2 + int(rng.integers(-out_size // 4, out_size // 4 + 1))
    x0 = cx - out_size // 2 + int(rng.integers(-out_size // 4, out_size // 4 + 1))
    img = _crop_mirror(sl.image, y0 - border, x0 - border, in_size)
    tgt = _crop_zero(sl.target, y0, x0, out_size)
    wt = _crop_zero(sl.weight, y0, x0, out_size)
    return img, tgt, wt


def _crop_mirror(x: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    h, w = x.shape[-2:]
    yi = _reflect_index(np.arange(y0, y0 + size), h)
    xi = _reflect_index(np.arange(x0, x0 + size), w)
    return x[..., yi[:, None], xi[None, :]]


def _reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i >= n, period - i, i)


def _crop_zero(x: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    out = np.zeros((size, size), x.dtype)
    h, w = x.shape
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + size), min(w, x0 + size)
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = x[ys:ye, xs:xe]
    return out
