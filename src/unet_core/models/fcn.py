"""Fully convolutional networks FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, CVPR 2015).

Backbone: VGG16's five convolution blocks (2-2-3-3-3 layers of 3x3 convolution + ReLU, each block
ending in a 2x2 max-pooling: strides 2, 4, 8, 16, 32). The fully connected layers are
"convolutionalised": fc6 becomes a 7x7 convolution with 4096 channels, fc7 a 1x1 convolution
with 4096 channels, both with ReLU and dropout 0.5. A 1x1 convolution scores the classes at
stride 32, and transposed convolutions initialised to bilinear interpolation bring the scores
back to the input resolution:

* FCN-32s: one fixed bilinear x32 upsampling;
* FCN-16s: a learned x2 upsampling (bilinear init) added to a 1x1 score of pool4, then a fixed
  x16 upsampling;
* FCN-8s: as 16s, then another learned x2 upsampling added to a 1x1 score of pool3, then a fixed
  x8 upsampling.

The skip scorers start at zero, as in the paper, so a 16s/8s net starts out computing what the
coarser net computes. A transposed convolution with kernel ``2f`` and stride ``f`` makes
``(n + 1) f`` pixels from ``n``; cropping ``f / 2`` pixels aligns its output with the input
grid ("crop" layers of the reference implementation).

Input sizes. Instead of the original's 100-pixel zero padding of conv1 followed by cropping, all
convolutions here are 'same'-padded and the input is reflected up to a multiple of 32 and the
output cropped back, so any ``H x W`` gives an ``H x W`` output (``border`` = 0) and the
network tiles like any padded net. fc6's 7x7 kernel is zero-padded by 3 at stride 32.

Context. A pool5 unit sees 212 input pixels; fc6 (7x7 at stride 32) widens that to 404 and the
learned and fixed upsamplings add 32-56 more, so an output pixel depends on input up to 233
(32s), 241 (16s) or 245 (8s) pixels away (measured by NaN propagation, tested), and the zero
padding of every convolution makes predictions within that reach of a tile edge depend on where
the tile ends. :attr:`FCN.context` is therefore 256 pixels (the reach rounded up to a multiple
of the stride 32): the tiler blends tiles only where they saw their full receptive field, so
tiled prediction equals one pass over the whole mirror-padded image to float rounding, for any
tile size. (A context of 96 px, used before, left differences of up to 4e-2.) The price is the
overlap: a width-0.25 FCN-8s on a 1280^2 image took 50 s instead of 14 s on one CPU thread
(automatic tiles); use large tiles (a GPU) for FCNs where memory allows.

Width. ``ModelConfig.width`` scales every channel count (0.25: 16..128 convolution channels and
1024-channel fc6/fc7) for CPU training from scratch. Published VGG16 weights (torchvision
``vgg16`` state dict, a file the user already has) load into a width-1.0 net with
:func:`load_vgg16_weights`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import CheckpointError, InputError
from .base import PaddedNet

log = logging.getLogger(__name__)

#: VGG16 convolution layers per block and channels per block at width 1.0
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_CHANNELS = (64, 128, 256, 512, 512)
FC_CHANNELS = 4096
#: indices of the convolutions in torchvision's ``vgg16().features``
TORCHVISION_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

_STRIDES = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}


def bilinear_kernel(size: int) -> np.ndarray:
    """2D bilinear interpolation kernel of edge ``size`` (the FCN reference ``upsample_filt``).

    A transposed convolution with this kernel, ``size = 2 f`` and stride ``f`` interpolates
    bilinearly by a factor ``f``: the kernel's shifted copies sum to 1 everywhere.

    Returns
    -------
    ndarray of float32, shape ``(size, size)``
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size, dtype=np.float64)
    k1 = 1 - np.abs(og - center) / factor
    return np.outer(k1, k1).astype(np.float32)


def _bilinear_weight(channels: int, size: int) -> torch.Tensor:
    """``(channels, channels, size, size)`` transposed-conv weight: bilinear on the diagonal."""
    w = torch.zeros(channels, channels, size, size)
    k = torch.from_numpy(bilinear_kernel(size))
    for c in range(channels):
        w[c, c] = k
    return w


def _conv_block(c_in: int, c_out: int, n: int, *, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGGBackbone(nn.Module):
    """VGG16's convolutional part: five blocks of 3x3 convolutions (2-2-3-3-3), each + max-pool.

    ``(N, C, H, W)`` (``H``, ``W`` multiples of 32) -> ``(pool3, pool4, pool5)`` at strides
    8, 16 and 32. ``blocks[i]`` holds conv layers (+ batch norm) + ReLU and the pooling.
    """

    def __init__(self, in_channels: int, channels: list[int], *, batch_norm: bool) -> None:
        super().__init__()
        blocks = []
        c_in = in_channels
        for n, c in zip(VGG16_BLOCKS, channels):
            blocks.append(_conv_block(c_in, c, n, batch_norm=batch_norm))
            c_in = c
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for block in self.blocks[:3]:
            x = block(x)
        pool3 = x
        pool4 = self.blocks[3](pool3)
        return pool3, pool4, self.blocks[4](pool4)


def _crop(x: torch.Tensor, offset: int, size: tuple[int, int]) -> torch.Tensor:
    return x[..., offset : offset + size[0], offset : offset + size[1]]


class FCN(PaddedNet):
    """FCN-32s / FCN-16s / FCN-8s with a VGG16 backbone (``config.arch`` picks the variant).

    Parameters
    ----------
    config : ModelConfig
        ``arch`` in {'fcn32s', 'fcn16s', 'fcn8s'}; uses ``in_channels``, ``n_classes``,
        ``width``, ``batch_norm`` (not in the paper; helps training from scratch) and
        ``normalization``.

    Shapes
    ------
    input : ``(N, in_channels, H, W)`` float32, any ``H, W >= 1``
    output : ``(N, n_classes, H, W)`` logits
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch not in _STRIDES:
            raise InputError(f"FCN got a config for arch {config.arch!r}; use build_model()")
        self.config = config
        self.variant = config.arch
        self.stride = _STRIDES[config.arch]
        bn = config.batch_norm
        chans = [max(1, round(c * config.width)) for c in VGG16_CHANNELS]
        fc = max(1, round(FC_CHANNELS * config.width))
        k = config.n_classes
        self.backbone = VGGBackbone(config.in_channels, chans, batch_norm=bn)
        fc6: list[nn.Module] = [nn.Conv2d(chans[4], fc, 7, padding=3, bias=not bn)]
        fc7: list[nn.Module] = [nn.Conv2d(fc, fc, 1, bias=not bn)]
        for seq in (fc6, fc7):
            if bn:
                seq.append(nn.BatchNorm2d(fc))
            seq += [nn.ReLU(inplace=True), nn.Dropout(0.5)]
        self.fc6 = nn.Sequential(*fc6)
        self.fc7 = nn.Sequential(*fc7)
        self.score_fr = nn.Conv2d(fc, k, 1)
        if self.stride <= 16:
            self.score_pool4 = nn.Conv2d(chans[3], k, 1)
            self.upscore2 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        if self.stride == 8:
            self.score_pool3 = nn.Conv2d(chans[2], k, 1)
            self.upscore_pool4 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        # final upsampling: fixed bilinear (paper, Sec. 4.2), one kernel per class (depthwise)
        self.register_buffer(
            "upscore_final",
            torch.from_numpy(bilinear_kernel(2 * self.stride))[None, None].repeat(k, 1, 1, 1),
            persistent=False,
        )
        self.size_multiple = 32
        self.border = 0
        self.context = 256  # >= the receptive-field reach of every variant (module docstring)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        k = self.config.n_classes
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):  # zero-initialised skip scorers (paper)
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        for name in ("upscore2", "upscore_pool4"):
            if hasattr(self, name):
                with torch.no_grad():
                    getattr(self, name).weight.copy_(_bilinear_weight(k, 4))

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)`` for input ``(N, in_channels, H, W)``."""
        self.check_input(x)
        h, w = x.shape[-2:]
        x = self.pad_to_multiple(x)
        pool3, pool4, pool5 = self.backbone(x)
        score = self.score_fr(self.fc7(self.fc6(pool5)))
        if self.stride <= 16:
            score = _crop(self.upscore2(score), 1, pool4.shape[-2:]) + self.score_pool4(pool4)
        if self.stride == 8:
            score = _crop(self.upscore_pool4(score), 1, pool3.shape[-2:]) + self.score_pool3(pool3)
        s = self.stride
        up = F.conv_transpose2d(score, self.upscore_final.to(score.dtype), stride=s, groups=score.shape[1])
        return _crop(up, s // 2, (h, w))


# ------------------------------------------------------------------------------------------
# published VGG16 weights
# ------------------------------------------------------------------------------------------
def load_vgg16_weights(model: FCN, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> None:
    """Initialise an FCN's backbone and fc6/fc7 from torchvision VGG16 ImageNet weights.

    Parameters
    ----------
    model : FCN
        A width-1.0 FCN without batch norm, reading 3 channels (RGB, copied as is) or 1 channel
        (the RGB filters of conv1_1 are summed, the usual grey-scale adaptation).
    source : path or mapping
        A torchvision ``vgg16`` state dict (``features.N.weight/bias`` for the 13 convolutions,
        ``classifier.0`` = fc6 ``(4096, 25088)``, reshaped to ``(4096, 512, 7, 7)``,
        ``classifier.3`` = fc7 ``(4096, 4096)``, reshaped to 1x1), as a mapping or a file
        saved with ``torch.save`` (read with ``weights_only=True``; a ``{"state_dict": ...}``
        wrapper is accepted). The ImageNet classifier (``classifier.6``) is not used; the class
        scorers keep their initialisation.

    Raises
    ------
    InputError
        The model cannot take VGG16 weights (width != 1, batch norm, 2 or >3 channels).
    CheckpointError
        The file is missing, unsafe or not a VGG16 state dict of the expected shapes.

    Notes
    -----
    VGG16 was trained on RGB images scaled to [0, 1] and standardised with the ImageNet mean
    and std; fine-tuning adapts it to the engine's percentile normalisation.
    """
    cfg = model.config
    if not isinstance(model, FCN):
        raise InputError("VGG16 weights only fit the FCN architectures ('fcn32s', 'fcn16s', 'fcn8s')")
    if cfg.width != 1.0 or cfg.batch_norm:
        raise InputError(
            "VGG16 weights need an FCN of width 1.0 without batch norm; build it with "
            f"width=1.0, batch_norm=False (got width={cfg.width}, batch_norm={cfg.batch_norm})"
        )
    if cfg.in_channels not in (1, 3):
        raise InputError(
            f"VGG16 weights fit 3-channel (RGB) or 1-channel models, not {cfg.in_channels} channels"
        )
    state = _read_state_dict(source)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for conv, idx in zip(convs, TORCHVISION_VGG16_CONV_INDICES):
        wkey, bkey = f"features.{idx}.weight", f"features.{idx}.bias"
        wt, bt = _get(state, wkey), _get(state, bkey)
        if wkey == "features.0.weight" and cfg.in_channels == 1 and wt.shape[1:2] == (3,):
            wt = wt.sum(dim=1, keepdim=True)
        pairs += [(conv.weight, _shaped(wt, conv.weight.shape, wkey)), (conv.bias, _shaped(bt, conv.bias.shape, bkey))]
    fc6, fc7 = model.fc6[0], model.fc7[0]
    pairs += [
        (fc6.weight, _shaped(_get(state, "classifier.0.weight"), fc6.weight.shape, "classifier.0.weight")),
        (fc6.bias, _shaped(_get(state, "classifier.0.bias"), fc6.bias.shape, "classifier.0.bias")),
        (fc7.weight, _shaped(_get(state, "classifier.3.weight"), fc7.weight.shape, "classifier.3.weight")),
        (fc7.bias, _shaped(_get(state, "classifier.3.bias"), fc7.bias.shape, "classifier.3.bias")),
    ]
    with torch.no_grad():
        for dst, src in pairs:
            dst.copy_(src)
    log.info("loaded VGG16 weights into %s (%d tensors)", cfg.arch, len(pairs))


def _read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such VGG16 weights file; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unsafe pickles, zip errors, truncated files
        raise CheckpointError(
            f"{path}: not a loadable VGG16 state dict ({type(exc).__name__}); save it with "
            "torch.save(torchvision.models.vgg16(weights=...).state_dict(), path)"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a VGG16 state dict, got {type(state).__name__}")
    return state


def _get(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"not a torchvision VGG16 state dict: {key!r} is missing")
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"VGG16 state dict entry {key!r} is not a tensor")
    return value


def _shaped(t: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
    if t.numel() != int(np.prod(shape)) or (t.ndim == len(shape) and t.shape != shape):
        raise CheckpointError(
            f"VGG16 entry {key!r} has shape {tuple(t.shape)}, the FCN needs {tuple(shape)}; "
            "use torchvision's vgg16 (not vgg16_bn or vgg19) weights"
        )
    return t.reshape(shape).to(torch.float32)
