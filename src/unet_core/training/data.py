"""Training data: (image, labels[, region]) pairs turned into targets, weights and random tiles.

Sparse annotation is the normal case. Pixels outside the *annotated region* get loss weight 0:
they are never taught as background. The region is the explicit mask of a pair when given;
otherwise the bounding box of the painted labels (per slice) grown by ``region_margin`` pixels,
inside which unpainted pixels count as background.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..arrays import as_channel_stack, crop_reflect, crop_zero, mirror_pad
from ..config import ModelConfig, WeightMapConfig
from ..errors import InputError
from ..labels import as_instance_labels
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
        Instance labels of the spatial shape (0 = background); class ids in semantic mode.
    mask : ndarray of bool, optional
        Annotated region of the spatial shape; pixels outside get zero loss weight. When
        omitted, the bounding box of the painted labels grown by ``TrainConfig.region_margin``
        pixels, per slice (slices without labels are skipped).
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

    Attributes
    ----------
    image : ndarray (C, Y, X) float32
        Normalised image.
    target : ndarray (Y, X) int64
        Class ids (binary mode: 0 background, 1 foreground, touching objects separated).
    weight : ndarray (Y, X) float32
        Loss weights, 0 outside the annotated region (and outside the part used for this split).
    region : ndarray (Y, X) bool
        Pixels this sample teaches or evaluates.
    instances : ndarray (Y, X) uint32 or None
        Instance labels (binary mode), for instance metrics.
    name : str
    """

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    region: np.ndarray
    instances: np.ndarray | None
    name: str

    def with_region(self, region: np.ndarray, suffix: str) -> PreparedSlice:
        """The same sample restricted to ``region`` (weights zeroed outside)."""
        region = region & self.region
        return replace(
            self, weight=np.where(region, self.weight, 0).astype(np.float32), region=region,
            name=self.name + suffix,
        )


def annotated_region(labels: np.ndarray, margin: int) -> np.ndarray:
    """Bounding box of the painted labels grown by ``margin`` pixels, as a boolean mask.

    ``labels`` (Y, X) int; returns (Y, X) bool (all False when nothing is painted).
    """
    region = np.zeros(labels.shape, bool)
    idx = np.nonzero(labels)
    if not idx[0].size:
        return region
    sl = tuple(slice(max(0, int(i.min()) - margin), int(i.max()) + margin + 1) for i in idx)
    region[sl] = True
    return region


def fingerprint(*arrays: np.ndarray | None) -> str:
    """Short SHA-256 of arrays' shapes, dtypes and bytes (provenance of training data)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def _as_stack(pair: TrainingPair, in_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Image (Z, C, Y, X), labels (Z, Y, X) and mask (Z, Y, X) or None, validated."""
    labels = np.asarray(pair.labels)
    if labels.size == 0:
        raise InputError(f"{pair.name}: the labels are empty; load real data")
    img, single = as_channel_stack(pair.image, pair.channel_axis, in_channels, name=f"{pair.name}: the image")
    if single:
        img = img[0]
    spatial = img.shape[:-3] + img.shape[-2:]
    if labels.shape != spatial:
        raise InputError(
            f"{pair.name}: image shape {spatial} (without channels) and labels shape {labels.shape} "
            "differ; the labels must cover the image pixel for pixel"
        )
    mask = None
    if pair.mask is not None:
        mask = np.asarray(pair.mask)
        if mask.shape != labels.shape:
            raise InputError(
                f"{pair.name}: region mask shape {mask.shape} differs from labels {labels.shape}; "
                "the mask must cover the image pixel for pixel"
            )
        mask = mask != 0
    if labels.ndim == 2:
        img, labels = img[None], labels[None]
        mask = None if mask is None else mask[None]
    return img, labels, mask


def infer_n_classes(pairs: Sequence[TrainingPair]) -> int:
    """Number of classes of semantic (class-id) labels: ``max(label) + 1``, at least 2."""
    top = 0
    for pair in pairs:
        lab = np.asarray(pair.labels)
        if lab.size:
            if lab.dtype.kind not in "biu" or (lab.dtype.kind == "i" and lab.min() < 0):
                raise InputError(f"{pair.name}: class-id labels must be non-negative integers")
            top = max(top, int(lab.max()))
    return max(2, top + 1)


def class_balance(target: np.ndarray, region: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-pixel ``N / (K * n_k)`` over the ``K`` classes present in ``region`` (0 outside).

    ``target`` (Y, X) int class ids; returns (Y, X) float32 whose classes carry equal total weight.
    """
    w = np.zeros(target.shape, np.float32)
    counts = np.bincount(target[region].ravel(), minlength=n_classes)
    present = counts > 0
    if not present.any():
        return w
    per = np.where(present, region.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    w[region] = per[target[region]]
    return w


def prepare_pairs(
    pairs: Sequence[TrainingPair],
    model_config: ModelConfig,
    weights: WeightMapConfig,
    *,
    region_margin: int,
    semantic: bool = False,
) -> list[PreparedSlice]:
    """Validate pairs and turn them into 2D slices with targets and weight maps.

    Binary (instance) mode: target = foreground with touching objects separated, weight = the
    boundary weight map (:func:`unet_core.weights.boundary_weight_map`) inside the region.
    Semantic mode: target = the class ids, weight = class balance inside the region.

    Raises
    ------
    InputError
        Shape mismatches, wrong channel counts, class ids the model cannot output, no
        annotations at all.
    """
    if not pairs:
        raise InputError("no training images given; add at least one image with painted labels")
    out: list[PreparedSlice] = []
    for pair in pairs:
        img, labels, masks = _as_stack(pair, model_config.in_channels)
        if semantic:
            if labels.dtype.kind not in "biu" or (labels.dtype.kind == "i" and labels.min() < 0):
                raise InputError(f"{pair.name}: class-id labels must be non-negative integers")
            if int(labels.max()) >= model_config.n_classes:
                raise InputError(
                    f"{pair.name}: labels contain class id {int(labels.max())} but the model has "
                    f"{model_config.n_classes} classes; train a new model or relabel"
                )
            inst = labels.astype(np.int64)
        else:
            inst = as_instance_labels(labels, name=f"{pair.name} labels")
        for z in range(inst.shape[0]):
            lab = inst[z]
            region = masks[z] if masks is not None else annotated_region(lab, region_margin)
            if not region.any() or (masks is None and not lab.any()):
                continue
            lab = np.where(region, lab, 0)  # labels outside the region are not annotations
            if semantic:
                target = lab.astype(np.int64)
                w = class_balance(target, region, model_config.n_classes)
                instances = None
            else:
                sep = separate_touching_objects(lab) if weights.separate_touching else lab
                target = (sep > 0).astype(np.int64)
                w = boundary_weight_map(
                    lab, w0=weights.w0, sigma=weights.sigma, class_balance=weights.class_balance,
                    mask=region, separate_touching=weights.separate_touching,
                )
                instances = lab.astype(np.uint32)
            w[~region] = 0
            image = normalize(img[z], model_config.normalization, channel_axis=0)
            name = f"{pair.name}[{z}]" if inst.shape[0] > 1 else pair.name
            out.append(PreparedSlice(image, target, w.astype(np.float32), region, instances, name))
    if not out:
        raise InputError(
            "no annotations to train on: paint at least a few objects (labels > 0) or give a "
            "region mask that covers annotated pixels"
        )
    return out


def split_validation(
    slices: list[PreparedSlice], fraction: float, seed: int
) -> tuple[list[PreparedSlice], list[PreparedSlice]]:
    """Hold out part of the annotations for validation.

    When ``round(fraction * n)`` of the ``n`` annotated slices is at least 1, that many whole
    slices are held out (chosen by ``seed``, leaving at least one for training). Otherwise (few
    slices, e.g. a single annotated image) each slice's annotated region is split spatially: the
    last ``fraction`` of its bounding box along the longer axis is held out and zero-weighted for
    training (not for slices where that strip would be under 16 pixels).

    Returns
    -------
    (train, validation) lists of :class:`PreparedSlice`.
    """
    if fraction <= 0:
        return slices, []
    n_val = int(round(fraction * len(slices)))
    if n_val >= 1 and len(slices) >= 2:
        n_val = min(len(slices) - 1, n_val)
        order = np.random.default_rng(seed).permutation(len(slices))
        val_idx = set(order[:n_val].tolist())
        return (
            [s for i, s in enumerate(slices) if i not in val_idx],
            [s for i, s in enumerate(slices) if i in val_idx],
        )
    train: list[PreparedSlice] = []
    val: list[PreparedSlice] = []
    for sl in slices:
        parts = _split_spatially(sl, fraction)
        if parts is None:
            train.append(sl)
        else:
            train.append(parts[0])
            val.append(parts[1])
    if not val:
        log.info("annotated regions too small to hold out validation strips; training without validation")
    return train, val


def _split_spatially(sl: PreparedSlice, fraction: float) -> tuple[PreparedSlice, PreparedSlice] | None:
    ys, xs = np.nonzero(sl.region)
    extent = [(int(ys.min()), int(ys.max()) + 1), (int(xs.min()), int(xs.max()) + 1)]
    axis = 0 if extent[0][1] - extent[0][0] >= extent[1][1] - extent[1][0] else 1
    lo, hi = extent[axis]
    n_val = int(round(fraction * (hi - lo)))
    if n_val < 16:
        return None
    val_region = np.zeros(sl.region.shape, bool)
    idx = [slice(None), slice(None)]
    idx[axis] = slice(hi - n_val, None)
    val_region[tuple(idx)] = True
    train = sl.with_region(~val_region, "")
    if not (train.weight > 0).any():
        return None
    return train, sl.with_region(val_region, " (validation part)")


class TileSampler:
    """Random training tiles from annotated regions (CPU, numpy).

    A tile's output window is centred near a random annotated pixel (slices drawn in proportion
    to their annotated area, centre jittered by a quarter window). Image pixels beyond the image
    border are mirrored; target/weight beyond it are 0 (no loss).

    Parameters
    ----------
    slices : list of PreparedSlice
        Training samples.
    in_size, out_size, border : int
        Network input edge, output edge and per-side border (``in = out + 2 * border``).
    source : int
        Edge of the window cut per tile (>= ``in_size``, same parity): the room augmentation
        needs around the input tile.
    """

    def __init__(
        self,
        slices: list[PreparedSlice],
        in_size: int,
        out_size: int,
        border: int,
        source: int,
        device: torch.device | str | None = None,
    ) -> None:
        self.slices = slices
        self.set_sizes(in_size, out_size, border, source)
        self.candidates = [np.flatnonzero(s.weight > 0) for s in slices]
        # compact class ids: less to copy per tile (converted to int64 on the device)
        self.targets = [s.target.astype(np.int16) for s in slices]
        counts = np.array([len(c) for c in self.candidates], np.float64)
        if counts.sum() == 0:
            raise InputError("no annotated pixels left for training; paint more objects or lower val_fraction")
        self.p = counts / counts.sum()
        self.device = None if device is None else torch.device(device)
        self._pad = 0
        self._resident: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if self.device is not None:
            # whole slices live on the device, padded once (mirror / zero) by the largest window
            # reach, so a tile is a plain slice of device memory: no per-step host copies
            self._pad = source + out_size
            for sl, tgt in zip(slices, self.targets):
                pad2 = ((self._pad, self._pad), (self._pad, self._pad))
                img = mirror_pad(sl.image, pad2)
                self._resident.append((
                    torch.from_numpy(img).to(self.device),
                    torch.from_numpy(np.pad(tgt, pad2)).to(self.device),
                    torch.from_numpy(np.pad(sl.weight, pad2)).to(self.device),
                ))

    def set_sizes(self, in_size: int, out_size: int, border: int, source: int) -> None:
        """Change the tile geometry (e.g. after an out-of-memory retry)."""
        if (source - in_size) % 2 or source < in_size:
            raise ValueError("source must be >= in_size with the same parity")
        self.in_size, self.out_size, self.border, self.source = in_size, out_size, border, source

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of source windows.

        Returns
        -------
        image (n, C, S, S) float32, target (n, S, S) int16, weight (n, S, S) float32, with
        ``S = source``; the network's input tile is the central ``in_size`` window and its output
        window the central ``out_size`` window.
        """
        xs, ys, ws = [], [], []
        for i, y0, x0 in self._windows(rng, n):
            sl = self.slices[i]
            xs.append(crop_reflect(sl.image, (y0, x0), (self.source,) * 2))
            ys.append(crop_zero(self.targets[i], (y0, x0), (self.source,) * 2))
            ws.append(crop_zero(sl.weight, (y0, x0), (self.source,) * 2))
        return np.stack(xs), np.stack(ys), np.stack(ws)

    def sample_tensors(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` (same windows for the same ``rng`` state), as tensors on the device.

        With a ``device`` the windows are cut from device-resident padded slices; otherwise the
        numpy windows are converted.
        """
        if self.device is None:
            return tuple(torch.from_numpy(a) for a in self.sample(rng, n))  # type: ignore[return-value]
        xs, ys, ws = [], [], []
        s, p = self.source, self._pad
        for i, y0, x0 in self._windows(rng, n):
            img, tgt, wt = self._resident[i]
            xs.append(img[:, y0 + p : y0 + p + s, x0 + p : x0 + p + s])
            ys.append(tgt[y0 + p : y0 + p + s, x0 + p : x0 + p + s])
            ws.append(wt[y0 + p : y0 + p + s, x0 + p : x0 + p + s])
        return torch.stack(xs), torch.stack(ys), torch.stack(ws)

    def _windows(self, rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
        """(slice index, window top, window left) of ``n`` random source windows."""
        out = []
        pad = (self.source - self.out_size) // 2
        for _ in range(n):
            i = int(rng.choice(len(self.slices), p=self.p))
            sl, cand = self.slices[i], self.candidates[i]
            flat = int(cand[int(rng.integers(len(cand)))])
            cy, cx = divmod(flat, sl.weight.shape[1])
            j = self.out_size // 4
            y0 = cy - self.out_size // 2 + int(rng.integers(-j, j + 1)) - pad
            x0 = cx - self.out_size // 2 + int(rng.integers(-j, j + 1)) - pad
            out.append((i, y0, x0))
        return out


def sample_tile(
    rng: np.random.Generator,
    sl: PreparedSlice,
    in_size: int,
    out_size: int,
    border: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random tile without augmentation: image ``(C, in, in)``, target/weight ``(out, out)``."""
    sampler = TileSampler([sl], in_size, out_size, border, in_size)
    img, tgt, wt = sampler.sample(rng, 1)
    tgt = tgt.astype(np.int64)
    return img[0], tgt[0, border : border + out_size, border : border + out_size], wt[0, border : border + out_size, border : border + out_size]
