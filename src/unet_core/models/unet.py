"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015).

Contracting path: two 3x3 convolutions + ReLU per level, 2x2 max-pooling with stride 2, channels
doubling. Expansive path: 2x2 up-convolution halving the channels, crop-and-concatenate of the
matching contracting-path map, two 3x3 convolutions + ReLU. A final 1x1 convolution maps to the
classes. With ``padding='valid'`` (the paper) every convolution is unpadded, so a 572x572 input
gives a 388x388 output (``border`` = 92 pixels per side for depth 4).

With ``spatial_dims=3`` the same code builds the 3D U-Net of Cicek et al. (MICCAI 2016): 3x3x3
convolutions, 2x2x2 max-pooling and up-convolution. Levels that do not pool z
(``ModelConfig.pool_z``, for anisotropic stacks) use (1, 3, 3) convolutions and (1, 2, 2)
pooling/up-convolution, so z has its own geometry (:meth:`UNet.axis_geometry`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from .base import AxisGeometry, SegmentationNet

#: layer classes per number of spatial axes (one code path for 2D and 3D, as MONAI's BasicUNet)
_LAYERS = {
    2: (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout2d, F.max_pool2d, "bilinear"),
    3: (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Dropout3d, F.max_pool3d, "trilinear"),
}

Size = int | tuple[int, ...]


def _level_shapes(dims: int, z_full: bool) -> tuple[Size, Size]:
    """(convolution kernel, pooling/up-sampling factor) of one level: 3 and 2 on every axis
    (an int, as the 2D net always had), or (1, 3, 3) and (1, 2, 2) for a 3D level that keeps z."""
    if dims == 2 or z_full:
        return 3, 2
    return (1, 3, 3), (1, 2, 2)


class DoubleConv(nn.Sequential):
    """Two 3x3 (3x3x3, or (1, 3, 3)) convolutions, each followed by (batch norm and) ReLU.

    ``(N, c_in, H, W) -> (N, c_out, H - 4, W - 4)`` unpadded, ``(N, c_out, H, W)`` padded; the
    same per axis for 3D (z loses nothing with a (1, 3, 3) kernel).
    """

    def __init__(
        self, c_in: int, c_out: int, *, padded: bool, batch_norm: bool, dims: int = 2,
        kernel: Size = 3,
    ) -> None:
        conv, _, norm, *_ = _LAYERS[dims]
        pad = (tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else 1) if padded else 0
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(conv(c, c_out, kernel, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(norm(c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample x2 halving channels, crop-and-concatenate the skip map, then :class:`DoubleConv`."""

    def __init__(
        self, c_in: int, c_out: int, *, padded: bool, batch_norm: bool, mode: str, dims: int = 2,
        kernel: Size = 3, factor: Size = 2,
    ) -> None:
        super().__init__()
        conv, convt, _, _, _, interp = _LAYERS[dims]
        if mode == "transpose":
            self.up: nn.Module = convt(c_in, c_out, factor, stride=factor)
        else:
            scale = tuple(float(f) for f in factor) if isinstance(factor, tuple) else 2
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=scale, mode=interp, align_corners=False),
                conv(c_in, c_out, 1),
            )
        self.conv = DoubleConv(2 * c_out, c_out, padded=padded, batch_norm=batch_norm, dims=dims, kernel=kernel)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        crop = tuple(
            slice((s - n) // 2, (s - n) // 2 + n) for s, n in zip(skip.shape[2:], x.shape[2:])
        )
        skip = skip[(..., *crop)]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(SegmentationNet):
    """U-Net for 2D images.

    Parameters
    ----------
    config : ModelConfig, optional
        Full configuration; keyword arguments override its fields (and build one when omitted).
    in_channels : int, default 1
        Image channels read.
    n_classes : int, default 2
        Output classes (>= 2; class 0 is background).
    depth : int, default 4 (paper)
        Number of 2x2 max-poolings.
    base_channels : int, default 64 (paper)
        Feature channels of the first level, doubled at every level.
    padding : {'valid', 'same'}, default 'valid' (paper)
        Unpadded convolutions (output smaller than the input by ``2 * border``) or zero-padded.
    batch_norm : bool, default False
        Batch normalisation after every 3x3 convolution.
    dropout : float, default 0.0
        Dropout probability at the end of the contracting path (the bottleneck).
    up_mode : {'transpose', 'bilinear'}, default 'transpose' (paper)
        2x2 up-convolution, or bilinear upsampling + 1x1 convolution (no checkerboard artifacts).
    **overrides
        Any other :class:`ModelConfig` field (``normalization``, ``class_names``).

    Examples
    --------
    >>> net = UNet(in_channels=1, n_classes=2)          # the paper's network
    >>> net.border, net.valid_input_size(388), net.output_size(572)
    (92, 572, 388)

    Shapes
    ------
    input : ``(N, in_channels, H, W)`` float32
    output : ``(N, n_classes, H - 2*border, W - 2*border)`` logits (same size when padded).
    For 'valid' nets ``H`` and ``W`` must be valid sizes (:meth:`valid_input_size`); an invalid
    size raises :class:`InputError` naming the nearest valid sizes. 'same' nets accept any size
    (inputs are reflected up to a multiple of ``2**depth`` and cropped back).
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        in_channels: int | None = None,
        n_classes: int | None = None,
        depth: int | None = None,
        base_channels: int | None = None,
        padding: str | None = None,
        batch_norm: bool | None = None,
        dropout: float | None = None,
        up_mode: str | None = None,
        **overrides,
    ) -> None:
        super().__init__()
        named = dict(
            in_channels=in_channels, n_classes=n_classes, depth=depth, base_channels=base_channels,
            padding=padding, batch_norm=batch_norm, dropout=dropout, up_mode=up_mode,
        )
        overrides.update({k: v for k, v in named.items() if v is not None})
        if config is None:
            config = ModelConfig(**overrides)
        elif overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        if config.arch != "unet":
            raise InputError(f"UNet got a config for arch {config.arch!r}; use build_model()")
        self.config = config
        self._build(config)
        self._init_weights()

    def _build(self, config: ModelConfig) -> None:
        """Layers (2D or 3D by ``config.spatial_dims``) and the per-axis geometry."""
        c, dims = config.base_channels, config.spatial_dims
        padded, bn = config.padding == "same", config.batch_norm
        z_full = self.z_pooled
        shapes = [_level_shapes(dims, z) for z in z_full]
        self.encoders = nn.ModuleList()
        c_in = config.in_channels
        for level in range(config.depth):
            self.encoders.append(DoubleConv(
                c_in, c * 2**level, padded=padded, batch_norm=bn, dims=dims, kernel=shapes[level][0]
            ))
            c_in = c * 2**level
        self.bottleneck = DoubleConv(c_in, c * 2**config.depth, padded=padded, batch_norm=bn, dims=dims)
        dropout = _LAYERS[dims][3]
        self.dropout = dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoders = nn.ModuleList(
            Up(
                c * 2 ** (lvl + 1), c * 2**lvl, padded=padded, batch_norm=bn, mode=config.up_mode,
                dims=dims, kernel=shapes[lvl][0], factor=shapes[lvl][1],
            )
            for lvl in reversed(range(config.depth))
        )
        self.head = _LAYERS[dims][0](c, config.n_classes, 1)
        self._pools = [f for _, f in shapes]
        self.size_multiple = 2**config.depth
        self.border = 0 if padded else (12 * 2**config.depth - 8) // 2
        # receptive-field reach of a padded net: the same number of 3x3 layers as a valid one
        self.context = (12 * 2**config.depth - 8) // 2
        self._z_geometry: AxisGeometry | None = None
        if not all(z_full):
            self._z_geometry = self._make_z_geometry()

    @property
    def z_pooled(self) -> tuple[bool, ...]:
        """Per level, whether the level pools (and convolves across) z; all True for 2D nets."""
        return self.config.pool_z or (True,) * self.config.depth

    def _init_weights(self) -> None:
        """He initialisation (std = sqrt(2 / fan_in)), as recommended in the paper."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Conv3d | nn.ConvTranspose3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- geometry
    def _make_z_geometry(self) -> AxisGeometry:
        """Geometry of the z axis of an anisotropic 3D net (levels that keep z lose no slices)."""
        levels = [(3 if p else 1, p) for p in self.z_pooled]
        reach, f = 0, 1
        for k, p in levels:
            reach += 2 * (k - 1) * f
            f *= 2 if p else 1
        reach += 2 * f  # bottleneck 3x3x3 convolutions

        def out(n: int) -> int | None:
            return _axis_output(n, levels, self.config.padding == "same")

        return AxisGeometry(out, border=0 if self.config.padding == "same" else reach, context=reach,
                            size_multiple=f)

    def axis_geometry(self, axis: int) -> SegmentationNet | AxisGeometry:
        """Geometry along spatial ``axis``: z of an anisotropic 3D net has its own, every other
        axis that of the net itself."""
        if self._z_geometry is not None and axis % self.config.spatial_dims == 0:
            return self._z_geometry
        return self

    def _output_or_none(self, n: int) -> int | None:
        """Output edge for input edge ``n``, or None when ``n`` is not a valid input size."""
        return _axis_output(n, [(3, True)] * self.config.depth, self.config.padding == "same")

    def is_valid_input_size(self, n: int) -> bool:
        """Whether an input edge of ``n`` pixels is accepted (along y and x)."""
        return self._output_or_none(int(n)) is not None

    def output_size(self, n: int) -> int:
        """Output edge for input edge ``n`` (along y and x; see :meth:`axis_geometry`).

        Raises
        ------
        InputError
            When ``n`` is not a valid input size; the message names the nearest valid sizes.
        """
        s = self._output_or_none(int(n))
        if s is None:
            if n < 1:
                raise InputError(f"input size must be >= 1, got {n}")
            raise InputError(
                f"input size {n} is not valid for this 'valid' U-Net (depth {self.config.depth}); "
                f"{self.nearest_valid_message(int(n))} (valid_input_size(k) gives the smallest "
                "input for an output of k pixels)"
            )
        return s

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, *out)`` for input ``(N, in_channels, *spatial)``."""
        pad = None
        if self.config.padding == "same":
            if x.shape[1] != self.config.in_channels or x.ndim != 2 + self.config.spatial_dims:
                self.check_input(x)
            spatial = tuple(x.shape[2:])
            mult = [self.axis_geometry(i).size_multiple for i in range(len(spatial))]
            pads = [(-n) % m for n, m in zip(spatial, mult)]
            if any(pads):
                pad = spatial
                mode = "reflect" if all(p < n for p, n in zip(pads, spatial)) else "replicate"
                x = F.pad(x, [v for p in reversed(pads) for v in (0, p)], mode=mode)
        elif not torch.jit.is_scripting():
            self.check_input(x)
        pool = _LAYERS[self.config.spatial_dims][4]
        skips = []
        for enc, factor in zip(self.encoders, self._pools):
            x = enc(x)
            skips.append(x)
            x = pool(x, factor)
        x = self.dropout(self.bottleneck(x))
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        x = self.head(x)
        if pad is not None:
            x = x[(..., *(slice(0, n) for n in pad))]
        return x


def _axis_output(n: int, levels: list[tuple[int, bool]], same: bool) -> int | None:
    """Output length along one axis for input ``n``: ``levels`` lists (kernel, pooled) per level
    (the bottleneck has kernel 3); None when ``n`` is not a valid input size."""
    if n < 1:
        return None
    if same:
        return n
    s = n
    for k, pooled in levels:
        s -= 2 * (k - 1)  # two unpadded convolutions
        if pooled:
            if s < 2 or s % 2:  # 2x2 pooling needs an even size
                return None
            s //= 2
        elif s < 1:
            return None
    s -= 4
    if s < 1:
        return None
    for k, pooled in reversed(levels):
        s = (2 * s if pooled else s) - 2 * (k - 1)  # up-convolution, two convolutions
    return s if s >= 1 else None
