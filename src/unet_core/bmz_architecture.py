"""Standalone U-Net for BioImage Model Zoo packages: this file imports only torch.

It is copied verbatim into every package written by :func:`unet_core.bmz.export_bmz` as the
``pytorch_state_dict`` architecture, so that bioimage.io tools (``bioimageio.core``, deepImageJ,
ilastik, ...) can rebuild the network without napari-unet installed. Its state-dict keys are
those of :class:`unet_core.models.unet.UNet` (a test checks it), and it computes the same
function in eval mode, followed by a softmax over the classes: the package outputs class
probabilities. Keep it free of any import but ``torch``; keep it scriptable
(``torch.jit.script``), which is how the TorchScript weights of a package are made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(c_in: int, c_out: int, padded: bool, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU; the U-Net's ``DoubleConv``."""
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1 if padded else 0, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Up(nn.Module):
    """Upsample x2 halving channels, crop-and-concatenate the skip map, two 3x3 convolutions."""

    def __init__(self, c_in: int, c_out: int, padded: bool, batch_norm: bool, up_mode: str) -> None:
        super().__init__()
        if up_mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 1),
            )
        self.conv = _double_conv(2 * c_out, c_out, padded, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = (skip.shape[-2] - x.shape[-2]) // 2
        dx = (skip.shape[-1] - x.shape[-1]) // 2
        skip = skip[:, :, dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) returning class probabilities.

    Parameters
    ----------
    in_channels, n_classes, depth, base_channels : int
        As in napari-unet's ``ModelConfig``.
    padding : {'valid', 'same'}
        'valid': unpadded convolutions, the output is smaller than the input by ``2 * border``
        with ``border = (12 * 2**depth - 8) // 2``; 'same': the output has the input's size.
    batch_norm : bool
        Batch normalisation after every 3x3 convolution.
    up_mode : {'transpose', 'bilinear'}
        2x2 up-convolution, or bilinear upsampling + 1x1 convolution.
    softmax : bool, default True
        Apply a softmax over the classes (probabilities); False returns the logits.

    Shapes
    ------
    ``(N, in_channels, H, W)`` float32 -> ``(N, n_classes, h, w)`` float32.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        padding: str = "valid",
        batch_norm: bool = False,
        up_mode: str = "transpose",
        softmax: bool = True,
    ) -> None:
        super().__init__()
        padded = padding == "same"
        c = base_channels
        self.encoders = nn.ModuleList()
        c_in = in_channels
        for level in range(depth):
            self.encoders.append(_double_conv(c_in, c * 2**level, padded, batch_norm))
            c_in = c * 2**level
        self.bottleneck = _double_conv(c_in, c * 2**depth, padded, batch_norm)
        self.decoders = nn.ModuleList(
            [_Up(c * 2 ** (lvl + 1), c * 2**lvl, padded, batch_norm, up_mode) for lvl in reversed(range(depth))]
        )
        self.head = nn.Conv2d(c, n_classes, 1)
        self.padded = padded
        self.size_multiple = 2**depth
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (or logits) ``(N, n_classes, h, w)`` for ``(N, in_channels, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = 0, 0
        if self.padded:
            m = self.size_multiple
            ph, pw = (m - h % m) % m, (m - w % m) % m
            if ph > 0 or pw > 0:
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = F.pad(x, [0, pw, 0, ph], mode=mode)
        skips: list[torch.Tensor] = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        n = len(skips)
        for i, dec in enumerate(self.decoders):
            x = dec(x, skips[n - 1 - i])
        x = self.head(x)
        if ph > 0 or pw > 0:
            x = x[:, :, :h, :w]
        return torch.softmax(x, dim=1) if self.softmax else x
