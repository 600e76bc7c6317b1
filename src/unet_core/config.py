"""Frozen dataclass configurations: the one place where the engine's defaults live.

Every config round-trips through JSON (:func:`config_to_dict` / :func:`config_from_dict`), and a
model's :class:`ModelConfig` is stored inside each checkpoint, so a model always carries the
options it was built with, including the intensity normalisation it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


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

    mode: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "minmax", "none"):
            raise InputError(
                f"normalization mode {self.mode!r} is unknown; use 'percentile', 'minmax' or 'none'"
            )
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

    Notes
    -----
    FCN and DeepLabv3+ are always padded networks: for them ``padding`` is set to 'same'
    (whatever was given), and ``depth``, ``base_channels`` and ``up_mode`` are ignored.
    """

    arch: str = "unet"
    in_channels: int = 1
    n_classes: int = 2
    depth: int = 4
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.0
    up_mode: str = "transpose"
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    class_names: tuple[str, ...] = ("background", "foreground")
    width: float = 1.0
    output_stride: int = 16

    def __post_init__(self) -> None:
        if self.arch in PADDED_ONLY_ARCHS and self.padding != "same":
            object.__setattr__(self, "padding", "same")
        if not (isinstance(self.width, int | float) and 0.0 < self.width <= 4.0):
            raise InputError(
                f"width must be a channel multiplier in (0, 4], e.g. 1.0 (published) or 0.25 (CPU); "
                f"got {self.width!r}"
            )
        if self.output_stride not in (8, 16):
            raise InputError(f"output_stride must be 8 or 16, got {self.output_stride!r}")
        if self.in_channels < 1:
            raise InputError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.n_classes < 2:
            raise InputError(
                f"n_classes must be >= 2 (background + at least one class), got {self.n_classes}"
            )
        if self.depth < 0:
            raise InputError(f"depth must be >= 0, got {self.depth}")
        if self.base_channels < 1:
            raise InputError(f"base_channels must be >= 1, got {self.base_channels}")
        if self.padding not in ("valid", "same"):
            raise InputError(f"padding must be 'valid' or 'same', got {self.padding!r}")
        if self.up_mode not in ("transpose", "bilinear"):
            raise InputError(f"up_mode must be 'transpose' or 'bilinear', got {self.up_mode!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.class_names) != self.n_classes:
            names = ("background", "foreground") if self.n_classes == 2 else tuple(
                ["background"] + [f"class {i}" for i in range(1, self.n_classes)]
            )
            object.__setattr__(self, "class_names", names)


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
class TrainConfig:
    """Options of a training (fine-tuning) run; the defaults are tuned for a laptop CPU.

    Attributes
    ----------
    model : ModelConfig
        Network for a new model (ignored when fine-tuning a checkpoint, whose own config is used).
        The default is a light 'valid' U-Net that trains usefully in minutes on a CPU.
    iterations : int
        Optimisation steps (an upper bound when ``time_limit`` is set).
    time_limit : float or None
        Wall-clock budget in seconds; training stops cleanly when it is reached.
    batch_size : int
        Tiles per step.
    tile_size : int
        Output-window edge length of a training tile in pixels (the input is larger by the
        network's border for 'valid' nets).
    learning_rate : float
        Initial learning rate.
    optimizer : {'adam', 'sgd'}
        'adam' (default) or the paper's SGD with momentum 0.99.
    loss : str
        'wce' (weighted cross-entropy, the paper), 'dice' or 'wce+dice'.
    weights : WeightMapConfig
        Boundary weight-map options.
    val_fraction : float
        Fraction of annotated regions (or slices) held out for validation.
    val_every : int
        Validate every so many steps.
    region_margin : int
        When no region mask is given, the annotated region is the bounding box of the painted
        labels grown by this many pixels.
    augment : bool
        Elastic, flip/rotation, scale and intensity augmentation.
    freeze_encoder : bool
        Fine-tuning: keep the contracting path fixed.
    seed : int
        Random seed; the same seed gives the same result on the CPU.
    device : str
        'auto' (cuda > mps > cpu), 'cuda', 'cuda:N', 'mps' or 'cpu'.
    """

    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(depth=3, base_channels=16, batch_norm=True)
    )
    iterations: int = 500
    time_limit: float | None = None
    batch_size: int = 4
    tile_size: int = 96
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    loss: str = "wce"
    weights: WeightMapConfig = field(default_factory=WeightMapConfig)
    val_fraction: float = 0.15
    val_every: int = 50
    region_margin: int = 16
    augment: bool = True
    freeze_encoder: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise InputError(f"iterations must be >= 1, got {self.iterations}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise InputError(f"time_limit must be positive seconds, got {self.time_limit}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.tile_size < 8:
            raise InputError(f"tile_size must be >= 8 pixels, got {self.tile_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
