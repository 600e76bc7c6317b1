"""Training data: (image, labels[, region]) pairs turned into targets, weights and random tiles.

Sparse annotation is the normal case. Pixels outside the *annotated region* get loss weight 0:
they are never taught as background. The region is the explicit mask of a pair when given;
otherwise (per slice) the painted objects with a ring around each plus background strokes, or
the painted labels' bounding box grown by ``region_margin`` pixels (``TrainConfig.region_rule``);
unpainted pixels inside it count as background. Targets and weights of a slice come from
:func:`unet_core.training.targets.training_targets`, which the Weight map widget previews.

Shapes: ``S`` is a sample's spatial shape (``(Y, X)`` today); windows are origin tuples and
sizes per-axis tuples of the same length.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..arrays import as_channel_stack, crop_reflect, crop_zero, mirror_pad
from ..config import ModelConfig, TrainConfig, WeightMapConfig
from ..errors import InputError
from ..labels import as_instance_labels
from ..normalization import normalize
from .targets import (
    RegionRule,
    TargetKind,
    annotated_region,
    check_class_ids,
    max_class_id,
    training_targets,
)

__all__ = [
    "MAX_CLASSES", "PreparedSlice", "TileSampler", "TrainingPair", "annotated_region", "fingerprint",
    "infer_n_classes", "prepare_pairs", "sample_tile", "split_validation",
]

log = logging.getLogger(__name__)

#: most classes a semantic model may get from its labels (ids 0..MAX_CLASSES-1)
MAX_CLASSES = 1024


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
        omitted, the region of ``TrainConfig.region_rule`` (painted objects + ring, or the grown
        bounding box), per slice (slices without labels are skipped).
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
    """One training sample of spatial shape ``S`` (``(Y, X)`` for an image), ready for tiling.

    Attributes
    ----------
    image : ndarray (C, *S) float32
        Normalised image.
    target : ndarray S int64
        Class ids (binary mode: 0 background, 1 foreground, touching objects separated).
    weight : ndarray S float32
        Loss weights, 0 outside the annotated region (and outside the part used for this split).
    region : ndarray S bool
        Pixels this sample teaches or evaluates.
    instances : ndarray S uint32 or None
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
    """Number of classes of semantic (class-id) labels: ``max(label) + 1``, at least 2.

    Raises
    ------
    InputError
        Negative or non-integer ids, or more than :data:`MAX_CLASSES` classes (the model would
        need one output channel per id up to the largest, and validation a square confusion
        table of that size).
    """
    top = 0
    for pair in pairs:
        top = max(top, max_class_id(pair.labels, name=pair.name))
    if top + 1 > MAX_CLASSES:
        raise InputError(
            f"semantic labels contain class id {top}, which would need a model with {top + 1} "
            f"output classes (at most {MAX_CLASSES}); class ids must be 0..K-1: renumber them "
            "(e.g. np.unique(labels, return_inverse=True)), or train without semantic mode if "
            "these are instance labels"
        )
    return max(2, top + 1)


def prepare_pairs(
    pairs: Sequence[TrainingPair],
    model_config: ModelConfig,
    weights: WeightMapConfig,
    *,
    region_margin: int,
    semantic: bool = False,
    voxel_size: tuple[float, ...] | None = None,
    region_rule: RegionRule = TrainConfig.region_rule,
    sparse_ring: int = TrainConfig.sparse_ring,
    target_kind: TargetKind = TrainConfig.target,
) -> list[PreparedSlice]:
    """Validate pairs and turn them into slices with targets and weight maps.

    Each slice's target and weights are :func:`~unet_core.training.targets.training_targets`
    (binary mode: foreground with touching objects separated, boundary weight map inside the
    region; semantic mode: the class ids, class balance inside the region); slices that teach
    nothing are skipped. For a 3D model (``model_config.spatial_dims == 3``) every stack is one
    sample (:func:`_prepare_volume`; ``voxel_size`` (z, y, x) scales the weight map's distances).

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
            lab = check_class_ids(labels, model_config.n_classes, name=pair.name)
        else:
            lab = as_instance_labels(labels, name=f"{pair.name} labels")
        if model_config.spatial_dims == 3:
            out.extend(_prepare_volume(pair, img, lab, masks, model_config, weights, region_margin,
                                       semantic, voxel_size))
            continue
        for z in range(lab.shape[0]):
            t = training_targets(
                lab[z], weights, mask=None if masks is None else masks[z],
                region_margin=region_margin, semantic=semantic, region_rule=region_rule,
                sparse_ring=sparse_ring, target_kind=target_kind,
            )
            if t is None:
                continue
            image = normalize(img[z], model_config.normalization, channel_axis=0)
            name = f"{pair.name}[{z}]" if lab.shape[0] > 1 else pair.name
            out.append(PreparedSlice(image, t.target, t.weight, t.region, t.instances, name))
    if not out:
        raise InputError(
            "no annotations to train on: paint at least a few objects (labels > 0) or give a "
            "region mask that covers annotated pixels"
        )
    return out


def check_annotations(pairs: Sequence[TrainingPair]) -> None:
    """Refuse training data that teaches nothing, cheaply (no weight maps): a dry run to call
    before starting a run (or asking the user anything).

    Parameters
    ----------
    pairs : sequence of TrainingPair
        Labels of any integer dtype, spatial shape S; ``mask`` None or of shape S.

    Raises
    ------
    InputError
        A region mask whose shape differs from its labels; no painted object (label > 0) inside
        the regions (or anywhere, without regions) of all pairs. The message says what to paint.
    """
    if not pairs:
        raise InputError("no training images given; add at least one image with painted labels")
    painted_anywhere = False
    for pair in pairs:
        labels = np.asarray(pair.labels)
        painted = labels != 0
        if pair.mask is None:
            painted_anywhere |= bool(painted.any())
            continue
        mask = np.asarray(pair.mask) != 0
        if mask.shape != labels.shape:
            raise InputError(
                f"{pair.name}: region mask shape {mask.shape} differs from labels {labels.shape}; "
                "the region must cover the image pixel for pixel"
            )
        painted_anywhere |= bool(np.any(painted & mask))
    if painted_anywhere:
        return
    regions = [p.name for p in pairs if p.mask is not None]
    where = f"inside the region of {', '.join(repr(n) for n in regions)}" if regions else "yet"
    raise InputError(
        f"nothing is painted {where}: paint a few whole objects with the labels brush (a new "
        "id for each object), and draw the region around them; unpainted pixels inside a region "
        "are background"
    )


def sparse_region(labels: np.ndarray, margin: int) -> np.ndarray:
    """Annotated region of a sparsely painted stack ``(Z, Y, X)``: on every slice with painted
    labels, their bounding box grown by ``margin`` pixels in y and x; unpainted slices are not
    annotated (the 2D rule, slice by slice). Returns bool ``(Z, Y, X)``."""
    return np.stack([annotated_region(sl, margin) for sl in labels])


def _prepare_volume(
    pair: TrainingPair, img: np.ndarray, lab: np.ndarray, mask: np.ndarray | None,
    model_config: ModelConfig, weights: WeightMapConfig, region_margin: int, semantic: bool,
    voxel_size: tuple[float, ...] | None,
) -> list[PreparedSlice]:
    """A stack ``img (Z, C, Y, X)``, ``lab (Z, Y, X)`` as one 3D sample (none if nothing is
    annotated). Without ``mask`` the region is :func:`sparse_region`."""
    if lab.shape[0] < 2:
        raise InputError(
            f"{pair.name}: a 3D model trains on stacks (Z, Y, X), got a single 2D image; give a "
            "z-stack or train a 2D model (--dims 2)"
        )
    region = mask if mask is not None else sparse_region(lab, region_margin)
    if mask is None and not lab.any():
        return []
    sampling = None
    if voxel_size:
        sampling = tuple(v / min(voxel_size[1:]) for v in voxel_size)
    t = training_targets(lab, weights, mask=region, region_margin=region_margin, semantic=semantic,
                         sampling=sampling)
    if t is None:
        return []
    image = normalize(np.moveaxis(img, 1, 0), model_config.normalization, channel_axis=0)  # (C, Z, Y, X)
    return [PreparedSlice(image, t.target, t.weight, t.region, t.instances, pair.name)]


def split_validation(
    slices: list[PreparedSlice], fraction: float, seed: int
) -> tuple[list[PreparedSlice], list[PreparedSlice]]:
    """Hold out part of the annotations for validation.

    When ``round(fraction * n)`` of the ``n`` annotated slices is at least 1, that many whole
    slices are held out (chosen by ``seed``, leaving at least one for training). Otherwise (few
    slices, e.g. a single annotated image) each slice's annotated region is split spatially: the
    last ``fraction`` of its bounding box along the longest axis is held out and zero-weighted for
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
    """(train, validation) parts of ``sl``: the far ``fraction`` of its region along the longest
    axis of the region's bounding box (the first such axis on ties), or None if too small."""
    idx = np.nonzero(sl.region)
    extent = [(int(i.min()), int(i.max()) + 1) for i in idx]
    axis = int(np.argmax([hi - lo for lo, hi in extent]))
    lo, hi = extent[axis]
    n_val = int(round(fraction * (hi - lo)))
    if n_val < 16:
        return None
    val_region = np.zeros(sl.region.shape, bool)
    cut = [slice(None)] * sl.region.ndim
    cut[axis] = slice(hi - n_val, None)
    val_region[tuple(cut)] = True
    train = sl.with_region(~val_region, "")
    if not (train.weight > 0).any():
        return None
    return train, sl.with_region(val_region, " (validation part)")


Size = int | Sequence[int]


def _per_axis(size: Size, ndim: int, name: str) -> tuple[int, ...]:
    """``size`` as one int per spatial axis (an int means the same size on every axis)."""
    if isinstance(size, int | np.integer):
        return (int(size),) * ndim
    out = tuple(int(s) for s in size)
    if len(out) != ndim:
        raise ValueError(f"{name} needs {ndim} sizes (one per spatial axis), got {size!r}")
    return out


class TileSampler:
    """Random training tiles from annotated regions (CPU, numpy), for any number of spatial axes.

    A tile's output window is centred near a random annotated pixel (slices drawn in proportion
    to their annotated area, centre jittered by a quarter window per axis). Image pixels beyond
    the image border are mirrored; target/weight beyond it are 0 (no loss).

    Parameters
    ----------
    slices : list of PreparedSlice
        Training samples, all with the same number of spatial axes ``d``.
    in_size, out_size, border : int or sequence of d ints
        Network input size, output size and per-side border (``in = out + 2 * border``), per
        spatial axis; an int means the same on every axis (square tiles).
    source : int or sequence of d ints
        Size of the window cut per tile (>= ``in_size``, same parity, per axis): the room
        augmentation needs around the input tile.
    device : torch.device or str, optional
        Keep the slices resident on this device (see :meth:`sample_tensors`).
    """

    def __init__(
        self,
        slices: list[PreparedSlice],
        in_size: Size,
        out_size: Size,
        border: Size,
        source: Size,
        device: torch.device | str | None = None,
    ) -> None:
        self.slices = slices
        self.ndim = slices[0].weight.ndim if slices else 2
        self.set_sizes(in_size, out_size, border, source)
        self.candidates = [np.flatnonzero(s.weight > 0) for s in slices]
        # compact class ids: less to copy per tile (converted to int64 on the device)
        top = max((int(s.target.max(initial=0)) for s in slices), default=0)
        tdtype = np.int16 if top <= np.iinfo(np.int16).max else np.int32
        self.targets = [s.target.astype(tdtype) for s in slices]
        counts = np.array([len(c) for c in self.candidates], np.float64)
        if counts.sum() == 0:
            raise InputError("no annotated pixels left for training; paint more objects or lower val_fraction")
        self.p = counts / counts.sum()
        sizes = np.array([s.weight.size for s in slices], np.float64)
        self.p_any = sizes / sizes.sum()
        self.device = None if device is None else torch.device(device)
        self._pad = (0,) * self.ndim
        self._resident: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if self.device is not None:
            # whole slices live on the device, padded once (mirror / zero) by the largest window
            # reach, so a tile is a plain slice of device memory: no per-step host copies
            self._pad = tuple(s + o for s, o in zip(self.source, self.out_size))
            pads = tuple((p, p) for p in self._pad)
            for sl, tgt in zip(slices, self.targets):
                self._resident.append((
                    torch.from_numpy(mirror_pad(sl.image, pads)).to(self.device),
                    torch.from_numpy(np.pad(tgt, pads)).to(self.device),
                    torch.from_numpy(np.pad(sl.weight, pads)).to(self.device),
                ))

    def set_sizes(self, in_size: Size, out_size: Size, border: Size, source: Size) -> None:
        """Change the tile geometry (e.g. after an out-of-memory retry); sizes as in the class."""
        d = self.ndim
        in_size, out_size = _per_axis(in_size, d, "in_size"), _per_axis(out_size, d, "out_size")
        border, source = _per_axis(border, d, "border"), _per_axis(source, d, "source")
        if any((s - i) % 2 or s < i for s, i in zip(source, in_size)):
            raise ValueError("source must be >= in_size with the same parity")
        self.in_size, self.out_size, self.border, self.source = in_size, out_size, border, source

    def sample(
        self, rng: np.random.Generator, n: int, anywhere: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of source windows; the last ``anywhere`` of the ``n`` are centred at any pixel
        of the images, annotated or not (for the self-supervised loss).

        Returns
        -------
        image (n, C, *source) float32, target (n, *source) int16 (int32 for class ids above
        32767), weight (n, *source) float32; the network's input tile is the central
        ``in_size`` window and its output window the central ``out_size`` window.
        """
        xs, ys, ws = [], [], []
        for i, origin in self._windows(rng, n, anywhere):
            sl = self.slices[i]
            xs.append(crop_reflect(sl.image, origin, self.source))
            ys.append(crop_zero(self.targets[i], origin, self.source))
            ws.append(crop_zero(sl.weight, origin, self.source))
        return np.stack(xs), np.stack(ys), np.stack(ws)

    def sample_tensors(
        self, rng: np.random.Generator, n: int, anywhere: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` (same windows for the same ``rng`` state), as tensors on the device.

        With a ``device`` the windows are cut from device-resident padded slices; otherwise the
        numpy windows are converted.
        """
        if self.device is None:
            return tuple(torch.from_numpy(a) for a in self.sample(rng, n, anywhere))  # type: ignore[return-value]
        xs, ys, ws = [], [], []
        for i, origin in self._windows(rng, n, anywhere):
            img, tgt, wt = self._resident[i]
            win = tuple(slice(o + p, o + p + s) for o, p, s in zip(origin, self._pad, self.source))
            xs.append(img[(slice(None), *win)])
            ys.append(tgt[win])
            ws.append(wt[win])
        return torch.stack(xs), torch.stack(ys), torch.stack(ws)

    def _windows(
        self, rng: np.random.Generator, n: int, anywhere: int = 0
    ) -> list[tuple[int, tuple[int, ...]]]:
        """(slice index, window origin per spatial axis) of ``n`` random source windows.

        Random draws per window, in this order: the slice, the annotated pixel, then one jitter
        per spatial axis (first axis first). The last ``anywhere`` windows draw the slice in
        proportion to its size and any of its pixels instead of an annotated one.
        """
        out = []
        for k in range(n):
            free = k >= n - anywhere
            i = int(rng.choice(len(self.slices), p=self.p_any if free else self.p))
            sl, cand = self.slices[i], self.candidates[i]
            if free:
                flat = int(rng.integers(sl.weight.size))
            else:
                flat = int(cand[int(rng.integers(len(cand)))])
            centre = np.unravel_index(flat, sl.weight.shape)
            origin = []
            for c, o, s in zip(centre, self.out_size, self.source):
                j = o // 4
                origin.append(int(c) - o // 2 + int(rng.integers(-j, j + 1)) - (s - o) // 2)
            out.append((i, tuple(origin)))
        return out


def sample_tile(
    rng: np.random.Generator,
    sl: PreparedSlice,
    in_size: Size,
    out_size: Size,
    border: Size,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random tile without augmentation: image ``(C, *in)``, target/weight ``out`` (int64,
    float32); sizes per spatial axis (an int for every axis)."""
    sampler = TileSampler([sl], in_size, out_size, border, in_size)
    img, tgt, wt = sampler.sample(rng, 1)
    inner = tuple(slice(b, b + o) for b, o in zip(sampler.border, sampler.out_size))
    return img[0], tgt[0][inner].astype(np.int64), wt[0][inner]
