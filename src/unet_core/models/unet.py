"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015).

Contracting path: two 3x3 convolutions + ReLU per level, 2x2 max-pooling with stride 2, channels
doubling. Expansive path: 2x2 up-convolution halving the channels, crop-and-concatenate of the
matching contracting-path map, two 3x3 convolutions + ReLU. A final 1x1 convolution maps to the
classes. With ``padding='valid'`` (the paper) every convolution is unpadded, so a 572x572 input
gives a 388x388 output (``border`` = 92 pixels per side for depth 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from .base import SegmentationNet


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU.

    ``(N, c_in, H, W) -> (N, c_out, H - 4, W - 4)`` unpadded, ``(N, c_out, H, W)`` padded.
    """

    def __init__(self, c_in: int, c_out: int, *, padded: bool, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(nn.Conv2d(c, c_out, 3, padding=1 if padded else 0, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample x2 halving channels, crop-and-concatenate the skip map, then :class:`DoubleConv`."""

    def __init__(self, c_in: int, c_out: int, *, padded: bool, batch_norm: bool, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 1),
            )
        self.conv = DoubleConv(2 * c_out, c_out, padded=padded, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = (skip.shape[-2] - x.shape[-2]) // 2
        dx = (skip.shape[-1] - x.shape[-1]) // 2
        skip = skip[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
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
        c = config.base_channels
        padded = config.padding == "same"
        bn = config.batch_norm
        self.encoders = nn.ModuleList()
        c_in = config.in_channels
        for level in range(config.depth):
            self.encoders.append(DoubleConv(c_in, c * 2**level, padded=padded, batch_norm=bn))
            c_in = c * 2**level
        self.bottleneck = DoubleConv(c_in, c * 2**config.depth, padded=padded, batch_norm=bn)
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoders = nn.ModuleList(
            Up(c * 2 ** (lvl + 1), c * 2**lvl, padded=padded, batch_norm=bn, mode=config.up_mode)
            for lvl in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(c, config.n_classes, 1)
        self.size_multiple = 2**config.depth
        self.border = 0 if padded else (12 * 2**config.depth - 8) // 2
        # receptive-field reach of a padded net: the same number of 3x3 layers as a valid one
        self.context = (12 * 2**config.depth - 8) // 2
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation (std = sqrt(2 / fan_in)), as recommended in the paper."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- geometry
    def _output_or_none(self, n: int) -> int | None:
        """Output edge for input edge ``n``, or None when ``n`` is not a valid input size."""
        if n < 1:
            return None
        if self.config.padding == "same":
            return n
        s = n
        for _ in range(self.config.depth):
            s -= 4  # two unpadded 3x3 convolutions
            if s < 2 or s % 2:  # 2x2 pooling needs an even size
                return None
            s //= 2
        s -= 4
        if s < 1:
            return None
        for _ in range(self.config.depth):
            s = 2 * s - 4  # 2x2 up-convolution, two 3x3 convolutions
        return s if s >= 1 else None

    def is_valid_input_size(self, n: int) -> bool:
        """Whether an input edge of ``n`` pixels is accepted."""
        return self._output_or_none(int(n)) is not None

    def output_size(self, n: int) -> int:
        """Output edge for input edge ``n``.

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
        """Logits ``(N, n_classes, h, w)`` for input ``(N, in_channels, H, W)``."""
        pad = None
        if self.config.padding == "same":
            if x.shape[1] != self.config.in_channels:
                self.check_input(x)
            m = self.size_multiple
            h, w = x.shape[-2:]
            ph, pw = (-h) % m, (-w) % m
            if ph or pw:
                pad = (h, w)
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = F.pad(x, (0, pw, 0, ph), mode=mode)
        elif not torch.jit.is_scripting():
            self.check_input(x)
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.bottleneck(x))
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        x = self.head(x)
        if pad is not None:
            x = x[..., : pad[0], : pad[1]]
        return x


