"""Frozen dataclass configurations: the one place where the engine's defaults live.

Every config round-trips through JSON (:func:`config_to_dict` / :func:`config_from_dict`), and a
model's :class:`ModelConfig` is stored inside each checkpoint, so a model always carries the
options it was built with, including the intensity normalisation it was trained with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .errors import InputError

T = TypeVar("T")

#: largest U-Net depth accepted (2**8 = 256-fold downsampling; the paper uses 4)
MAX_DEPTH = 8
#: largest random seed accepted (numpy and torch both take it)
MAX_SEED = 2**32 - 1
#: smallest border-term width accepted, in pixels (below it the border term vanishes everywhere)
MIN_SIGMA = 0.01
#: largest border-term width accepted, in pixels (the border term then reaches across any image)
MAX_SIGMA = 10_000.0


def _check_range(name: str, value: Any, lo: float, hi: float, *, integer: bool = False, text: str = "") -> None:
    """Raise :class:`InputError` unless ``lo <= value <= hi`` (finite; an integer if ``integer``)."""
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        fmt = (lambda v: str(int(v))) if integer else (lambda v: f"{v:g}")
        hi_text = "" if math.isinf(hi) else f" to {fmt(hi)}"
        allowed = text or (f"from {fmt(lo)}{hi_text}" if hi_text else f">= {fmt(lo)}")
        raise InputError(f"{name} must be {kind} {allowed}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Choices and descriptions of config fields (read by the CLI and the GUI form generators)
# --------------------------------------------------------------------------------------------
# A field's allowed values are the arguments of its ``typing.Literal`` type (fixed lists, checked
# by the config's ``__post_init__``), or, for lists that depend on what is installed or present,
# the values of a ``choices`` provider in the field's metadata (``open_choices``: other values
# are allowed too, e.g. combined losses).
def _architectures() -> list[str]:
    from .models import available_architectures

    return available_architectures()


def _losses() -> list[str]:
    from .training.losses import available_losses

    return list(available_losses())


def _devices() -> list[str]:
    from .device import available_devices

    return ["auto", *available_devices()]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def literal_values(tp: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` type (also inside ``Optional``); () for other types."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(v for arg in typing.get_args(tp) for v in literal_values(arg))
    return ()


def field_choices(cls: type, name: str) -> tuple[Any, ...]:
    """The allowed values of field ``name`` of config dataclass ``cls``; () when it is free.

    They come from the field's ``Literal`` type, or from the ``choices`` provider in its metadata
    (architectures from the model registry, losses, devices present on this machine).
    """
    provider: Callable[[], Any] | None = _field(cls, name).metadata.get("choices")
    if provider is not None:
        return tuple(provider())
    return literal_values(_type_hints(cls)[name])


def choices_are_open(cls: type, name: str) -> bool:
    """True when the choices of field ``name`` are suggestions and other values are allowed."""
    return bool(_field(cls, name).metadata.get("open_choices", False))


def _say_choices(values: tuple[Any, ...]) -> str:
    words = [repr(v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def check_choices(config: Any, prefix: str = "") -> None:
    """Raise :class:`InputError` when a ``Literal`` field of ``config`` holds another value."""
    for f in dataclasses.fields(config):
        allowed = literal_values(_type_hints(type(config))[f.name])
        value = getattr(config, f.name)
        if allowed and value not in allowed:
            raise InputError(f"{prefix}{f.name} must be {_say_choices(allowed)}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """Descriptions of a dataclass's attributes from its numpydoc ``Attributes`` section."""
    out: dict[str, str] = {}
    current: list[str] = []
    in_attrs = False
    for line in (cls.__doc__ or "").splitlines():
        stripped = line.strip()
        if stripped == "Attributes":
            in_attrs = True
            continue
        if not in_attrs or set(stripped) == {"-"}:
            continue
        m = re.match(r"^(\w+(?:, \w+)*)\s*:", stripped)
        if m and line.startswith("    ") and not line.startswith("        "):
            current = [n.strip() for n in m.group(1).split(",")]
            out.update({n: "" for n in current})
        elif current and stripped:
            for n in current:
                out[n] = (out[n] + " " + stripped).strip()
    return out


@dataclass(frozen=True)
class NormalizationConfig:
    """Intensity normalisation applied identically in training and prediction.

    Attributes
    ----------
    mode : {'percentile', 'minmax', 'none'}
        'percentile' maps the ``low``/``high`` percentiles of each image (per channel) to 0/1
        (robust to hot pixels and uneven exposure, the microscopy default); 'minmax' maps the
        minimum/maximum; 'none' only casts to float32.
    low, high : float
        Percentiles for 'percentile' mode.
    """

    mode: Literal["percentile", "minmax", "none"] = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        check_choices(self, "normalization ")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise InputError(
                f"normalization percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
            )


#: architectures that only exist as padded ('same') networks
PADDED_ONLY_ARCHS = ("fcn32s", "fcn16s", "fcn8s", "deeplabv3plus")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and data contract of a segmentation network.

    The defaults are the U-Net of Ronneberger et al. (2015): 4 poolings, 64 base channels,
    unpadded ('valid') 3x3 convolutions, transposed-convolution upsampling, two classes.

    Attributes
    ----------
    arch : str
        Architecture name, see :func:`unet_core.models.available_architectures`.
    in_channels : int
        Number of image channels the network reads.
    n_classes : int
        Number of output classes (>= 2); class 0 is background.
    depth : int
        Number of 2x2 max-poolings (U-Net levels minus one).
    base_channels : int
        Feature channels of the first level; doubled at every level.
    padding : {'valid', 'same'}
        'valid' = unpadded convolutions as in the paper (output smaller than input);
        'same' = zero-padded convolutions (output the size of the input).
    batch_norm : bool
        Batch normalisation after each convolution.
    dropout : float
        Dropout probability at the bottleneck (the paper uses dropout at the end of the
        contracting path).
    up_mode : {'transpose', 'bilinear'}
        'transpose' = 2x2 up-convolution (paper); 'bilinear' = bilinear upsampling followed by a
        2x2 convolution, free of checkerboard artifacts.
    normalization : NormalizationConfig
        Intensity normalisation of the input.
    class_names : tuple of str
        One name per class.
    width : float
        Channel-width multiplier of the FCN and DeepLabv3+ networks ('fcn32s', 'fcn16s', 'fcn8s',
        'deeplabv3plus'; U-Nets use ``base_channels`` instead). 1.0 = the published widths
        (VGG16 64..512 channels and 4096-channel fc6/fc7 for FCN); 0.25 suits a CPU.
    output_stride : {16, 8}
        DeepLabv3+ only: ratio of input to encoder-output resolution. 16 uses atrous rates
        6/12/18 in ASPP, 8 doubles them (finer, about 4x slower).
    spatial_dims : {2, 3}
        Number of spatial axes the network works on: 2 = images ``(Y, X)`` (stacks are
        predicted slice by slice), 3 = volumes ``(Z, Y, X)`` (U-Net only, Cicek et al. 2016).
        Checkpoints without it are 2D.
    pool_z : tuple of bool
        3D U-Nets: per level (``depth`` entries), whether the 2x2x2 pooling also halves z.
        A level that does not pool z (an anisotropic stack whose z spacing is still coarser
        than y/x at that level) pools (1, 2, 2), up-samples (1, 2, 2) and uses (1, 3, 3)
        convolutions. Empty = every level pools z (isotropic voxels);
        :func:`anisotropic_pool_z` chooses it from the voxel size.

    Notes
    -----
    FCN and DeepLabv3+ are always padded networks: for them ``padding`` is set to 'same'
    (whatever was given), and ``depth``, ``base_channels`` and ``up_mode`` are ignored.
    """

    arch: str = field(default="unet", metadata={"choices": _architectures})
    in_channels: int = 1
    n_classes: int = 2
    depth: int = 4
    base_channels: int = 64
    padding: Literal["valid", "same"] = "valid"
    batch_norm: bool = False
    dropout: float = 0.0
    up_mode: Literal["transpose", "bilinear"] = "transpose"
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    class_names: tuple[str, ...] = ("background", "foreground")
    width: float = 1.0
    output_stride: Literal[16, 8] = 16
    spatial_dims: Literal[2, 3] = 2
    pool_z: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        self._check_spatial()
        if self.arch in PADDED_ONLY_ARCHS and self.padding != "same":
            object.__setattr__(self, "padding", "same")
        check_choices(self)
        if not (isinstance(self.width, int | float) and 0.0 < self.width <= 4.0):
            raise InputError(
                f"width must be a channel multiplier in (0, 4], e.g. 1.0 (published) or 0.25 (CPU); "
                f"got {self.width!r}"
            )
        _check_range("in_channels", self.in_channels, 1, 4096, integer=True)
        if self.n_classes < 2:
            raise InputError(
                f"n_classes must be >= 2 (background + at least one class), got {self.n_classes}"
            )
        _check_range("n_classes", self.n_classes, 2, 65535, integer=True)
        _check_range("depth", self.depth, 0, MAX_DEPTH, integer=True)
        _check_range("base_channels", self.base_channels, 1, 4096, integer=True)
        if not (isinstance(self.dropout, numbers.Real) and 0.0 <= self.dropout < 1.0):
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.class_names) != self.n_classes:
            names = ("background", "foreground") if self.n_classes == 2 else tuple(
                ["background"] + [f"class {i}" for i in range(1, self.n_classes)]
            )
            object.__setattr__(self, "class_names", names)

    def _check_spatial(self) -> None:
        """Validate ``spatial_dims`` and ``pool_z`` (3D U-Nets only)."""
        if self.spatial_dims not in (2, 3):
            raise InputError(
                f"spatial_dims={self.spatial_dims!r}: use 2 (images; stacks slice by slice) or 3 "
                "(volumes, U-Net only)"
            )
        if self.spatial_dims == 3 and self.arch != "unet":
            raise InputError(
                f"arch {self.arch!r} is 2D only; use arch='unet' for a 3D network (spatial_dims=3)"
            )
        pool_z = tuple(bool(p) for p in self.pool_z)
        object.__setattr__(self, "pool_z", pool_z)
        if pool_z and (self.spatial_dims != 3 or len(pool_z) != self.depth):
            raise InputError(
                f"pool_z {pool_z} needs spatial_dims=3 and one entry per level (depth "
                f"{self.depth}); leave it empty for isotropic pooling"
            )


def anisotropic_pool_z(voxel_size: Sequence[float], depth: int) -> tuple[bool, ...]:
    """Per-level z pooling of a 3D U-Net for voxels of ``voxel_size`` (z, y, x).

    A level pools z only once the voxel is about isotropic (z spacing < 1.5 x the y/x spacing
    at that level); otherwise it pools (1, 2, 2), which halves the z/xy ratio. E.g. a ratio of
    4 and depth 3 gives (False, False, True). Returns ``()`` (every level pools z) when all
    levels do.
    """
    z, y, x = (float(v) for v in voxel_size)
    if not all(math.isfinite(v) and v > 0 for v in (z, y, x)):
        raise InputError(f"voxel size must be three positive numbers (z, y, x), got {tuple(voxel_size)}")
    ratio = z / min(y, x)
    out = []
    for _ in range(depth):
        pooled = ratio < 1.5
        out.append(pooled)
        ratio = ratio if pooled else ratio / 2
    return () if all(out) else tuple(out)


@dataclass(frozen=True)
class WeightMapConfig:
    """Options of the U-Net boundary weight map ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))``.

    Attributes
    ----------
    w0 : float
        Amplitude of the border term (paper: 10).
    sigma : float
        Width of the border term in pixels (paper: about 5).
    class_balance : bool
        ``w_c`` balances the total weight of background and foreground; otherwise ``w_c = 1``.
    separate_touching : bool
        Cut a one-pixel background gap between touching objects before computing the map.
    """

    w0: float = 10.0
    sigma: float = 5.0
    class_balance: bool = True
    separate_touching: bool = True

    def __post_init__(self) -> None:
        _check_range("w0", self.w0, 0.0, math.inf)
        _check_range("sigma", self.sigma, MIN_SIGMA, MAX_SIGMA,
                     text=f"from {MIN_SIGMA:g} to {MAX_SIGMA:g} pixels (paper: 5)")



@dataclass(frozen=True)
class PostprocessConfig:
    """From class probabilities to instance labels (:mod:`unet_core.postprocess`).

    Attributes
    ----------
    threshold : float
        Foreground probability threshold: pixels whose ``1 - P(background)`` exceeds it are
        foreground (0 makes every pixel with any foreground probability foreground).
    split_touching : bool
        Split touching objects with a watershed on the distance transform, seeded at its maxima.
    min_size : int
        Objects smaller than this many pixels are removed (0 or 1 keeps all).
    min_distance : int
        Minimum distance between watershed seeds in pixels.
    seeds : {'distance', 'interior'}
        Watershed seeds when splitting: maxima of the distance transform, or (models trained
        with ``TrainConfig.target='three_class'``) the connected interiors, i.e. pixels whose
        class-1 ('interior') probability exceeds ``threshold``.
    """

    threshold: float = 0.5
    split_touching: bool = True
    min_size: int = 10
    min_distance: int = 4
    seeds: Literal["distance", "interior"] = "distance"

    def __post_init__(self) -> None:
        check_choices(self)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and 0 <= t < 1):
            raise InputError(f"threshold must be a finite probability in [0, 1), e.g. 0.5; got {t!r}")
        if self.min_size < 0:
            raise InputError(f"min_size must be >= 0 pixels (0 keeps every object), got {self.min_size}")
        if self.min_distance < 1:
            raise InputError(f"min_distance must be >= 1 pixel, got {self.min_distance}")


# --------------------------------------------------------------------------------------------
# JSON round trip
# --------------------------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """Convert a (nested) config dataclass to plain JSON-compatible types."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _coerce(arg, value)
    return value


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build config dataclass ``cls`` from :func:`config_to_dict` output.

    Unknown keys raise :class:`~unet_core.errors.InputError` (a file from a newer version, or not
    a config at all); missing keys take the defaults.
    """
    if not isinstance(data, dict):
        raise InputError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(
            f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; the file may come from a "
            "newer napari-unet - upgrade the package"
        )
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)  # type: ignore[call-arg]


def config_to_json(config: Any) -> str:
    """Serialise a config dataclass to an indented JSON string."""
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True)


def config_from_json(cls: type[T], text: str) -> T:
    """Parse :func:`config_to_json` output back into ``cls``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{cls.__name__}: not valid JSON ({exc})") from None
    return config_from_dict(cls, data)


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training tiles, applied on the training device in one
    ``grid_sample`` per batch (elastic + affine composed into one sampling grid).

    Attributes
    ----------
    elastic_sigma : float
        Standard deviation in pixels of the random displacements on the coarse grid (paper: 10).
        0 disables the elastic deformation.
    elastic_grid : int
        Points per side of the coarse displacement grid (paper: 3); the per-pixel field is its
        bicubic interpolation.
    flip : bool
        Random horizontal/vertical flips.
    rot90 : bool
        Random multiples of 90 degrees.
    rotation : bool
        Random free rotation by any angle.
    scale : (float, float)
        Range of the random zoom factor (log-uniform); (1, 1) disables it.
    gamma : (float, float)
        Range of the random intensity gamma (log-uniform), applied to the normalised image.
    contrast : (float, float)
        Range of the random contrast factor around the tile mean.
    brightness : float
        Maximum random brightness offset (normalised intensity units).
    noise : float
        Maximum standard deviation of added Gaussian noise (normalised units).
    """

    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    flip: bool = True
    rot90: bool = True
    rotation: bool = True
    scale: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.7, 1.45)
    contrast: tuple[float, float] = (0.75, 1.3)
    brightness: float = 0.1
    noise: float = 0.03

    def __post_init__(self) -> None:
        if self.elastic_sigma < 0:
            raise InputError(f"elastic_sigma must be >= 0 pixels, got {self.elastic_sigma}")
        if self.elastic_grid < 2:
            raise InputError(f"elastic_grid must be >= 2 points per side, got {self.elastic_grid}")
        for name in ("scale", "gamma", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise InputError(f"augmentation {name} range must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.brightness < 0 or self.noise < 0:
            raise InputError("augmentation brightness and noise must be >= 0")


#: Per-device defaults of the options left at ``None`` ('auto') in :class:`TrainConfig`:
#: output tile edge, tiles per step, mixed precision. See docs/training.md for the reasoning.
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"tile_size": 96, "batch_size": 4, "amp": False},
    "mps": {"tile_size": 192, "batch_size": 8, "amp": False},
    "cuda": {"tile_size": 256, "batch_size": 16, "amp": True},
}

#: 3D models: smaller tiles and batches (a tile is a volume)
DEVICE_DEFAULTS_3D: dict[str, dict[str, Any]] = {
    "cpu": {"tile_size": 32, "batch_size": 2, "amp": False},
    "mps": {"tile_size": 64, "batch_size": 2, "amp": False},
    "cuda": {"tile_size": 96, "batch_size": 2, "amp": True},
}


@dataclass(frozen=True)
class TrainConfig:
    """Options of a training (fine-tuning) run; 'auto' (None) sizes are resolved per device.

    Attributes
    ----------
    model : ModelConfig
        Network for a new model (ignored when fine-tuning or resuming a checkpoint, whose own
        config is used). The default is a light 'valid' U-Net (depth 3, 16 base channels, batch
        norm) that trains usefully in minutes on a CPU.
    iterations : int
        Optimisation steps (an upper bound when ``time_limit`` is set).
    time_limit : float or None
        Time budget in seconds; training stops cleanly when it is reached, and the learning-rate
        schedule runs on ``max(step / iterations, elapsed / time_limit)``.
    time_clock : {'wall', 'process'}
        What ``time_limit`` measures: wall-clock time, or CPU time of this process (for fair
        budgets on a shared machine).
    batch_size : int or None
        Tiles per step; None = per device (:data:`DEVICE_DEFAULTS`).
    tile_size : int or None
        Output-window edge of a training tile in pixels (the input is larger by the network's
        border for 'valid' nets); None = per device.
    learning_rate : float
        Peak learning rate.
    optimizer : {'adam', 'sgd'}
        'adam' (default) or the paper's SGD with momentum 0.99.
    schedule : {'cosine', 'constant'}
        Learning rate after the warm-up: cosine decay to 0, or constant.
    warmup : int
        Linear warm-up steps (at most a tenth of ``iterations``).
    loss : str
        Loss name for :func:`unet_core.training.losses.build_loss`: 'wce' (weighted
        cross-entropy, the paper), 'dice', 'wce+dice', ...
    weights : WeightMapConfig
        Boundary weight-map options.
    semantic : bool
        Labels are class ids (0 = background, 1..K-1 classes) instead of instances; the model
        gets ``n_classes = max(label) + 1`` (or ``model.n_classes`` when larger).
    val_fraction : float
        Fraction of annotated slices held out for validation; with a single annotated slice, the
        far end of its annotated region along its longer axis is held out instead. 0 disables.
    val_every : int
        Validate every so many steps (and at the end).
    save_every : float
        Seconds of wall-clock time between periodic (atomic) writes of the last, resumable
        checkpoint, whether or not the run validates, so a killed run keeps its work; 0 = only at
        validations and at the end.
    region_margin : int
        ``region_rule='box'``: the annotated region is the bounding box of the painted labels
        grown by this many pixels (unpainted pixels inside it are background).
    region_rule : {'ring', 'box'}
        The annotated region when no region mask is given: 'ring' = the painted objects, a ring
        of ``sparse_ring`` pixels around each, and the background strokes (label
        :data:`unet_core.training.targets.BACKGROUND_LABEL`); 'box' = the painted labels'
        bounding box grown by ``region_margin`` (everything unpainted in it is background).
        'box' is the default: it measured better with 10 of ~100 nuclei painted and no
        background strokes (docs/quality.md). See docs/user-guide.md ("Sparse painting").
    sparse_ring : int
        Width in pixels of the background ring taught around each painted object
        (``region_rule='ring'``).
    target : {'two_class', 'three_class'}
        Instance mode: 'two_class' = background / foreground with the boundary weight map (the
        paper); 'three_class' = background / interior / boundary (the objects' one-pixel inner
        outline and the gaps cut between touching objects), post-processed with watershed seeds
        at the interiors (``PostprocessConfig.seeds='interior'``). Ignored in semantic mode.
    self_supervised : float
        Weight of the Noise2Void blind-spot denoising loss trained beside segmentation on the
        U-Net's last feature map (:mod:`unet_core.training.blind_spot`); 0 = off. When on, half
        of each batch's tiles are drawn anywhere in the images, so unpainted pixels teach the
        network too. U-Net only; not under torchrun.
    augment : bool
        Apply ``augmentation``.
    augmentation : AugmentConfig
        Elastic, flip/rotation, scale and intensity augmentation options.
    freeze_encoder : bool
        Fine-tuning: keep the contracting path fixed.
    amp : bool or None
        Mixed precision (float16 autocast + gradient scaling); None = on for CUDA only.
    seed : int
        Random seed; the same seed gives the same result on the CPU.
    device : str
        'auto' (cuda > mps > cpu), 'cuda', 'cuda:N', 'mps' or 'cpu'.
    voxel_size : tuple of float
        3D models: the training stacks' voxel size (z, y, x); weight-map distances use it, and
        the automatic ``tile_z`` follows it. Empty = isotropic.
    tile_z : int or None
        3D models: output depth of a training tile in slices; None = the z extent that matches
        ``tile_size`` in physical size (``tile_size * y / z`` of ``voxel_size``), at least 4.
    """

    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(depth=3, base_channels=16, batch_norm=True)
    )
    iterations: int = 500
    time_limit: float | None = None
    time_clock: Literal["wall", "process"] = "wall"
    batch_size: int | None = None
    tile_size: int | None = None
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup: int = 20
    loss: str = field(default="wce", metadata={"choices": _losses, "open_choices": True})
    weights: WeightMapConfig = field(default_factory=WeightMapConfig)
    semantic: bool = False
    val_fraction: float = 0.15
    val_every: int = 100
    save_every: float = 60.0
    region_margin: int = 16
    region_rule: Literal["ring", "box"] = "box"
    sparse_ring: int = 8
    target: Literal["two_class", "three_class"] = "two_class"
    self_supervised: float = 0.0
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    freeze_encoder: bool = False
    amp: bool | None = None
    seed: int = 0
    device: str = field(default="auto", metadata={"choices": _devices})
    voxel_size: tuple[float, ...] = ()
    tile_z: int | None = None

    def __post_init__(self) -> None:
        check_choices(self)
        if self.voxel_size:
            v = tuple(float(x) for x in self.voxel_size)
            if len(v) != 3 or not all(math.isfinite(x) and x > 0 for x in v):
                raise InputError(f"voxel_size must be three positive numbers (z, y, x), got {self.voxel_size!r}")
            object.__setattr__(self, "voxel_size", v)
        if self.tile_z is not None:
            _check_range("tile_z", self.tile_z, 1, 4096, integer=True, text="from 1 to 4096 slices")
        _check_range("iterations", self.iterations, 1, 10**9, integer=True)
        if self.time_limit is not None and not (
            isinstance(self.time_limit, numbers.Real) and math.isfinite(self.time_limit) and self.time_limit > 0
        ):
            raise InputError(f"time_limit must be a positive, finite number of seconds, got {self.time_limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.tile_size is not None:
            _check_range("tile_size", self.tile_size, 8, 8192, integer=True, text="from 8 to 8192 pixels")
        if not (isinstance(self.learning_rate, numbers.Real) and math.isfinite(self.learning_rate)
                and 0 < self.learning_rate <= 1):
            raise InputError(f"learning_rate must be a number in (0, 1], e.g. 1e-3, got {self.learning_rate}")
        if self.warmup < 0:
            raise InputError(f"warmup must be >= 0 steps, got {self.warmup}")
        if not (isinstance(self.val_fraction, numbers.Real) and 0.0 <= self.val_fraction < 1.0):
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_every < 1:
            raise InputError(f"val_every must be >= 1, got {self.val_every}")
        if not (self.save_every >= 0 and math.isfinite(self.save_every)):
            raise InputError(
                f"save_every must be >= 0 seconds (0 = save only at validations and the end), "
                f"got {self.save_every}"
            )
        if self.region_margin < 0:
            raise InputError(f"region_margin must be >= 0 pixels, got {self.region_margin}")
        _check_range("sparse_ring", self.sparse_ring, 0, 10**6, integer=True, text="from 0 to 1e6 pixels")
        _check_range("self_supervised", self.self_supervised, 0, 100, text="from 0 (off) to 100")
        _check_range("seed", self.seed, 0, MAX_SEED, integer=True)


def resolve_train_config(config: TrainConfig, device_type: str) -> TrainConfig:
    """Fill the 'auto' (None) options of ``config`` with the defaults of a device type.

    Parameters
    ----------
    config : TrainConfig
    device_type : {'cpu', 'cuda', 'mps'}
        ``torch.device.type`` of the training device (unknown types get the CPU defaults).

    Returns
    -------
    TrainConfig
        With concrete ``tile_size``, ``batch_size`` and ``amp``.
    """
    table = DEVICE_DEFAULTS_3D if config.model.spatial_dims == 3 else DEVICE_DEFAULTS
    defaults = table.get(device_type, table["cpu"])
    changes = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    if config.model.spatial_dims == 3 and config.tile_z is None:
        tile = changes.get("tile_size", config.tile_size)
        z, y, x = config.voxel_size or (1.0, 1.0, 1.0)
        changes["tile_z"] = max(4, round(tile * min(y, x) / z))
    if device_type != "cuda" and config.amp:
        changes["amp"] = False  # autocast float16 training is only supported on CUDA here
    return dataclasses.replace(config, **changes) if changes else config
