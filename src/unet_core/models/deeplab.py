"""DeepLabv3+ (Chen, Zhu, Papandreou, Schroff and Adam, ECCV 2018) with a small ResNet encoder.

Encoder: a ResNet-18-style backbone sized for the CPU by ``ModelConfig.width`` (width 1.0:
a 3x3 "deep stem" of 32/64 channels with stride 2, a 3x3 max-pooling with stride 2, then four
stages of two basic residual blocks with 64, 128, 256 and 512 channels). Stage 1 runs at stride 4
and gives the low-level features; stage 2 at stride 8. For output stride 16 stage 3 downsamples to
16 and stage 4 keeps it with atrous (dilated) convolutions of rate 2; for output stride 8 stages 3
and 4 keep stride 8 with rates 2 and 4 (atrous convolution instead of downsampling, Sec. 3.1).

ASPP (atrous spatial pyramid pooling, DeepLabv3): parallel 1x1 convolution, three 3x3 atrous
convolutions with rates 6/12/18 (output stride 16; doubled to 12/24/36 at output stride 8) and
an image-pooling branch (global average -> 1x1 convolution -> broadcast), concatenated and
projected by a 1x1 convolution to 256 channels (x width), with dropout 0.1.

Decoder (the "+" of v3+): the ASPP output is upsampled bilinearly x4 to stride 4, concatenated
with the low-level features reduced to 48 channels (x width) by a 1x1 convolution, refined by two
3x3 convolutions (256 x width channels), scored by a 1x1 convolution and upsampled bilinearly to
the input size. Every convolution is followed by batch normalisation and ReLU (DeepLab always
uses batch norm), except in the image-pooling branch, whose single 1x1 value per channel cannot
be batch-normalised when a batch holds one tile.

Input sizes: any ``H x W``; the input is reflected up to a multiple of the output stride and the
output cropped back (``border`` = 0).

Image pooling over a window: as with the reference implementation's
``image_pooling_crop_size``, the image-pooling branch averages over a window of about
``IMAGE_POOL_WINDOW`` = 256 input pixels (17 feature pixels at output stride 16, 33 at 8). On
training tiles up to ~136-144 px the window covers the whole map, i.e. plain global average
pooling; on larger tiles it slides (edges: mean over the part inside), so the branch reaches
~128 px instead of the whole tile.

Tiling and context: the atrous rates reach up to 18 x 16 = 288 pixels at output stride 16 and
the pooling window 128 pixels, so :attr:`DeepLabV3Plus.context` = 64 is a practical compromise,
not the full reach: tiles are blended over it. Measured on trained models, the remaining
tiled-vs-single-tile difference comes mostly from the training tiles: a net trained on tiles
smaller than its ASPP reach learned wide branches that mostly saw zero padding, and behaves
differently on larger inputs. Train DeepLabv3+ on tiles of 256 px or more (see
docs/architectures.md for the numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from .base import PaddedNet

#: channels at width 1.0
STEM_CHANNELS = (32, 64)
STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
DECODER_CHANNELS = 256
#: input pixels averaged by the image-pooling branch (cf. ``image_pooling_crop_size`` of the
#: reference implementation): global for tiles up to this size, a sliding window beyond
IMAGE_POOL_WINDOW = 256


def _conv_bn_relu(c_in: int, c_out: int, k: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions (batch norm) with an identity/projection shortcut.

    ``(N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride))``
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def _stage(c_in: int, c_out: int, *, stride: int, dilation: int) -> nn.Sequential:
    blocks = [BasicBlock(c_in, c_out, stride=stride, dilation=max(1, dilation // 2) if stride == 1 else 1)]
    blocks += [BasicBlock(c_out, c_out, dilation=dilation) for _ in range(BLOCKS_PER_STAGE - 1)]
    return nn.Sequential(*blocks)


class ResNetLite(nn.Module):
    """ResNet-18-style atrous encoder.

    ``(N, C, H, W)`` (multiples of ``output_stride``) -> ``(low, high)``: low-level features at
    stride 4 (stage 1) and the encoder output at stride ``output_stride`` (stage 4).
    """

    def __init__(self, in_channels: int, width: float, *, output_stride: int) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(1, round(c * width))

        s0, s1 = (ch(c) for c in STEM_CHANNELS)
        c1, c2, c3, c4 = (ch(c) for c in STAGE_CHANNELS)
        self.stem = nn.Sequential(
            _conv_bn_relu(in_channels, s0, 3, stride=2),
            _conv_bn_relu(s0, s1, 3),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stage1 = _stage(s1, c1, stride=1, dilation=1)  # stride 4: low-level features
        self.stage2 = _stage(c1, c2, stride=2, dilation=1)  # stride 8
        if output_stride == 16:
            self.stage3 = _stage(c2, c3, stride=2, dilation=1)  # stride 16
            self.stage4 = _stage(c3, c4, stride=1, dilation=2)
        else:  # atrous instead of downsampling: stays at stride 8
            self.stage3 = _stage(c2, c3, stride=1, dilation=2)
            self.stage4 = _stage(c3, c4, stride=1, dilation=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.stage1(self.stem(x))
        return low, self.stage4(self.stage3(self.stage2(low)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three 3x3 atrous branches, image pooling; 1x1 projection.

    ``(N, c_in, h, w) -> (N, c_out, h, w)``
    """

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, int, int], *, pool_window: int | None = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(c_in, c_out, 1)] + [_conv_bn_relu(c_in, c_out, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(_conv_bn_relu(5 * c_out, c_out, 1), nn.Dropout(0.1))
        self.rates = rates
        self.pool_window = pool_window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        k = self.pool_window
        if k is None or (x.shape[-2] <= (k + 1) // 2 and x.shape[-1] <= (k + 1) // 2):
            # every window covers the whole map: plain global average pooling
            pooled = x.mean(dim=(-2, -1), keepdim=True)
            feats.append(self.image_pool(pooled).expand(-1, -1, x.shape[-2], x.shape[-1]))
        else:  # sliding window of k x k feature pixels (edges: mean over the part inside)
            pooled = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
            feats.append(self.image_pool(pooled))
        return self.project(torch.cat(feats, dim=1))


class DeepLabV3Plus(PaddedNet):
    """DeepLabv3+ with a ResNet-18-style atrous encoder, ASPP and the low-level-feature decoder.

    Parameters
    ----------
    config : ModelConfig
        ``arch='deeplabv3plus'``; uses ``in_channels``, ``n_classes``, ``width``,
        ``output_stride`` (8 or 16) and ``normalization``.

    Shapes
    ------
    input : ``(N, in_channels, H, W)`` float32, any ``H, W >= 1`` (training needs more than one
    value per channel at stride ``output_stride`` for batch norm: ``N * H * W > output_stride**2``)
    output : ``(N, n_classes, H, W)`` logits
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "deeplabv3plus":
            raise InputError(f"DeepLabV3Plus got a config for arch {config.arch!r}; use build_model()")
        self.config = config

        def ch(c: int) -> int:
            return max(1, round(c * config.width))

        os_ = config.output_stride
        c1, c4 = ch(STAGE_CHANNELS[0]), ch(STAGE_CHANNELS[3])
        self.backbone = ResNetLite(config.in_channels, config.width, output_stride=os_)
        rates = (6, 12, 18) if os_ == 16 else (12, 24, 36)
        # image pooling over a window of ~IMAGE_POOL_WINDOW input pixels (odd, in feature pixels)
        window = (IMAGE_POOL_WINDOW // os_) // 2 * 2 + 1
        self.aspp = ASPP(c4, ch(ASPP_CHANNELS), rates, pool_window=window)
        self.reduce_low = _conv_bn_relu(c1, ch(LOW_LEVEL_CHANNELS), 1)
        self.decoder = nn.Sequential(
            _conv_bn_relu(ch(ASPP_CHANNELS) + ch(LOW_LEVEL_CHANNELS), ch(DECODER_CHANNELS), 3),
            _conv_bn_relu(ch(DECODER_CHANNELS), ch(DECODER_CHANNELS), 3),
        )
        self.classifier = nn.Conv2d(ch(DECODER_CHANNELS), config.n_classes, 1)
        self.size_multiple = os_
        self.border = 0
        self.context = 64
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)`` for input ``(N, in_channels, H, W)``."""
        self.check_input(x)
        h, w = x.shape[-2:]
        x = self.pad_to_multiple(x)
        size = x.shape[-2:]
        low, high = self.backbone(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, self.reduce_low(low)], dim=1))
        y = F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)
        return y[..., :h, :w]
