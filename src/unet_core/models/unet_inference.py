"""Inference-only forward graph of the U-Net for CPU prediction (used by the tiler, never for training).

:class:`FastUNet` computes the function of a :class:`~unet_core.models.unet.UNet` in eval mode
(equal to float rounding: <= 1e-5 on logits and probabilities, tested) with cheaper kernels.
Measured on the 2-core AVX-512 Xeon VM, one torch thread, 876^2 input tile of the 4-level,
16-channel net (docs/benchmarks-predict.md):

- 2x2 max-pooling as two strided ``torch.maximum`` calls in NCHW (19 ms instead of 148 ms for
  the first level: ``max_pool2d`` computes indices on the CPU) or ``max_pool2d`` in
  channels-last (20 ms);
- the 2x2 stride-2 up-convolution as one GEMM to ``4 * c_out`` channels written, together with
  the cropped skip map, straight into the concatenation buffer (channels-last), or a 1x1
  convolution + ``pixel_shuffle`` (NCHW; 55 ms instead of 178 ms for the last level);
- channels-last activations for the 3x3 convolutions (oneDNN's kernels with 16-64 channels were
  1.2-1.5x faster than NCHW), except the first convolution (one input channel: NCHW is faster);
- batch norm folded into the preceding convolution (``w * g / sqrt(v + eps)``).

The whole tile's forward pass went from 1.16-2.0 s to 0.6-1.0 s. TorchScript
(``jit.trace`` + ``jit.freeze``, ``optimize_for_inference``) was measured on top and gave no
further gain (``optimize_for_inference`` made the channels-last graph 2x slower), so the graph
runs eagerly and is rebuilt per prediction call (copying the weights takes milliseconds), which
also means a model trained further between calls is never served stale weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode batch norm)."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bn is None:
        return w.clone(), b.clone()
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return (w * scale[:, None, None, None]).contiguous(), (b - bn.running_mean) * scale + bn.bias.detach()


def _double_conv_params(seq: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """``[(weight, bias, padding)] * 2`` of a :class:`~unet_core.models.unet.DoubleConv`."""
    mods = list(seq)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            w, b = _fold(m, bn)
            out.append((w, b, int(m.padding[0])))
        elif not isinstance(m, nn.BatchNorm2d | nn.ReLU):
            raise TypeError(f"unexpected layer {type(m).__name__} in a DoubleConv")
    return out


class FastUNet(nn.Module):
    """Eval-mode :class:`~unet_core.models.unet.UNet` with inference-only kernels.

    Parameters
    ----------
    net : UNet
        The network to copy (weights are copied; later changes to ``net`` are not seen).
    channels_last : bool
        Keep activations in channels-last layout.

    Shapes
    ------
    ``(N, in_channels, H, W)`` float32 -> logits ``(N, n_classes, h, w)``, as ``net``.
    """

    def __init__(self, net: nn.Module, *, channels_last: bool = False) -> None:
        super().__init__()
        self.cl = bool(channels_last)
        self.same = net.config.padding == "same"
        self.m = int(net.size_multiple)
        fmt = torch.channels_last if self.cl else torch.contiguous_format

        def keep(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()

        def dconv(seq):
            return [(keep(w), keep(b), p) for w, b, p in _double_conv_params(seq)]

        self.enc = [dconv(e) for e in net.encoders]
        # the first convolution runs in NCHW (explicit strides: with one input channel a
        # channels-last weight also counts as contiguous, and oneDNN would pick its slow kernel)
        w0 = self.enc[0][0][0]
        self.first_w = torch.empty(w0.shape, dtype=w0.dtype, device=w0.device).copy_(w0)
        self.bottleneck = dconv(net.bottleneck)
        self.dec = []
        for d in net.decoders:
            if isinstance(d.up, nn.ConvTranspose2d):
                wt = d.up.weight.detach()  # (c_in, c_out, 2, 2)
                c_in, c_out = wt.shape[:2]
                # output channel co*4 + ky*2 + kx of the 1x1 conv -> pixel (ky, kx) of channel co
                w1 = wt.permute(1, 2, 3, 0).reshape(c_out * 4, c_in, 1, 1)
                b1 = d.up.bias.detach().repeat_interleave(4)
                # channels-last variant: rows ordered (ky, kx, co), a GEMM on the (NHW, C) view
                wcl = wt.permute(2, 3, 1, 0).reshape(4 * c_out, c_in).t().contiguous()
                bcl = d.up.bias.detach().repeat(4).contiguous()
                up = ("shuffle", keep(w1), keep(b1), wcl, bcl)
            else:  # bilinear upsampling + 1x1 convolution
                conv = d.up[1]
                up = ("bilinear", keep(conv.weight.detach()), keep(conv.bias.detach()), None, None)
            self.dec.append((up, dconv(d.conv)))
        self.head = (keep(net.head.weight.detach()), keep(net.head.bias.detach()))

    def _dconv(self, x: torch.Tensor, layers) -> torch.Tensor:
        for w, b, p in layers:
            x = torch.relu_(F.conv2d(x, w, b, padding=p))
        return x

    @staticmethod
    def _conv1x1(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """1x1 convolution of a channels-last map as one GEMM (oneDNN falls back to a slow path)."""
        n, c, h, wd = x.shape
        y = torch.addmm(b, x.permute(0, 2, 3, 1).reshape(-1, c), w.reshape(w.shape[0], c).t())
        return y.view(n, h, wd, -1).permute(0, 3, 1, 2)

    @staticmethod
    def _up_cat_cl(x: torch.Tensor, skip: torch.Tensor, wcl: torch.Tensor, bcl: torch.Tensor) -> torch.Tensor:
        """``cat([crop(skip), upconv(x)])`` in channels-last, written straight into one buffer."""
        n, c, h, wd = x.shape
        cs, co = skip.shape[1], wcl.shape[1] // 4
        y = torch.addmm(bcl, x.permute(0, 2, 3, 1).reshape(-1, c), wcl)  # (N*h*w, 4*co): (ky, kx, co)
        dy = (skip.shape[-2] - 2 * h) // 2
        dx = (skip.shape[-1] - 2 * wd) // 2
        out = torch.empty((n, 2 * h, 2 * wd, cs + co), dtype=x.dtype, device=x.device)
        out[..., :cs] = skip[..., dy : dy + 2 * h, dx : dx + 2 * wd].permute(0, 2, 3, 1)
        out.view(n, h, 2, wd, 2, cs + co)[..., cs:] = y.view(n, h, wd, 2, 2, co).permute(0, 1, 3, 2, 4, 5)
        return out.permute(0, 3, 1, 2)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.cl:
            return F.max_pool2d(x, 2)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        y = torch.maximum(x[..., 0:h:2, :], x[..., 1:h:2, :])
        return torch.maximum(y[..., 0:w:2], y[..., 1:w:2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, h, w)`` for input ``(N, in_channels, H, W)``."""
        pad = None
        if self.same:
            h, w = x.shape[-2:]
            ph, pw = (-h) % self.m, (-w) % self.m
            if ph or pw:
                pad = (h, w)
                x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        skips = []
        for level, layers in enumerate(self.enc):
            if self.cl and level == 0:
                # oneDNN's channels-last kernel for one input channel is slow: NCHW, then convert
                _, b, p = layers[0]
                x = torch.relu_(F.conv2d(x.contiguous(), self.first_w, b, padding=p))
                x = self._dconv(x.contiguous(memory_format=torch.channels_last), layers[1:])
            else:
                x = self._dconv(x, layers)
            skips.append(x)
            x = self._pool(x)
        x = self._dconv(x, self.bottleneck)
        for (up, layers), skip in zip(self.dec, reversed(skips)):
            kind, w, b, wcl, bcl = up
            if kind == "shuffle" and self.cl:
                x = self._up_cat_cl(x, skip, wcl, bcl)
            else:
                if kind == "shuffle":
                    x = F.pixel_shuffle(F.conv2d(x, w, b), 2)
                else:
                    x = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), w, b)
                dy = (skip.shape[-2] - x.shape[-2]) // 2
                dx = (skip.shape[-1] - x.shape[-1]) // 2
                skip = skip[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
                x = torch.cat([skip, x], dim=1)
            x = self._dconv(x, layers)
        x = self._conv1x1(x, self.head[0], self.head[1]) if self.cl else F.conv2d(x, self.head[0], self.head[1])
        if pad is not None:
            x = x[..., : pad[0], : pad[1]]
        return x.contiguous()
