"""``napari-unet train``: train or fine-tune a model on annotated images."""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from ..config import TrainConfig
from ..errors import InputError
from ._common import check_output, drain

log = logging.getLogger(__name__)
_T = TrainConfig()
_M = _T.model


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a U-Net on annotated images",
        description="Pairs of --image/--labels (repeat for more images); labels are instance labels "
        "(0 = background). Pixels outside the annotated region get no loss.",
    )
    p.add_argument("--image", action="append", required=True, help="image TIFF (repeat)")
    p.add_argument("--labels", action="append", required=True, help="labels TIFF for the image at the same position (repeat)")
    p.add_argument("--mask", action="append", help="annotated-region TIFF per image (optional; repeat in the same order)")
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--from", dest="init_from", help="checkpoint to fine-tune")
    p.add_argument("--iterations", type=int, default=_T.iterations, help=f"training steps (default {_T.iterations})")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--batch-size", type=int, default=_T.batch_size, help=f"tiles per step (default {_T.batch_size})")
    p.add_argument("--tile-size", type=int, default=_T.tile_size, help=f"output tile edge in pixels (default {_T.tile_size})")
    p.add_argument("--lr", type=float, default=_T.learning_rate, help=f"learning rate (default {_T.learning_rate})")
    p.add_argument("--device", default=_T.device, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--seed", type=int, default=_T.seed, help=f"random seed (default {_T.seed})")
    p.add_argument("--channel-axis", type=int, default=None, help="axis of the image holding channels")
    g = p.add_argument_group("new model")
    g.add_argument("--depth", type=int, default=_M.depth, help=f"number of poolings (default {_M.depth}; paper 4)")
    g.add_argument("--base-channels", type=int, default=_M.base_channels, help=f"channels of the first level (default {_M.base_channels}; paper 64)")
    g.add_argument("--padding", choices=("valid", "same"), default=_M.padding, help="'valid' = paper (default)")
    g.add_argument("--arch", default=_M.arch, help="architecture: unet (default), fcn32s, fcn16s, fcn8s, deeplabv3plus")
    _add_arch_options(g)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io import read_tiff
    from ..training.data import TrainingPair
    from ..training.trainer import train

    out = check_output(args.output, args.overwrite)
    if len(args.image) != len(args.labels):
        raise InputError(f"got {len(args.image)} --image but {len(args.labels)} --labels; give one --labels per --image")
    if args.mask and len(args.mask) != len(args.image):
        raise InputError("give one --mask per --image, or none")
    pairs = []
    for i, (ip, lp) in enumerate(zip(args.image, args.labels)):
        image, _ = read_tiff(ip)
        labels, _ = read_tiff(lp)
        mask = (read_tiff(args.mask[i])[0] != 0) if args.mask else None
        pairs.append(TrainingPair(image, labels, mask, channel_axis=args.channel_axis, name=str(ip)))
    in_ch = 1 if args.channel_axis is None else pairs[0].image.shape[args.channel_axis]
    model = replace(_M, arch=args.arch, in_channels=in_ch, depth=args.depth, base_channels=args.base_channels,
                    padding=args.padding, width=args.width, output_stride=args.output_stride)
    init_from = args.init_from
    if args.vgg16_weights:  # the VGG16-initialised FCN becomes the checkpoint to fine-tune
        tmp = tempfile.TemporaryDirectory(prefix="napari-unet-vgg16-")
        init_from, model = _vgg16_init(model, args.vgg16_weights, init_from, Path(tmp.name) / "vgg16-init.pt")
    config = replace(
        _T, model=model, iterations=args.iterations, time_limit=args.time_limit, batch_size=args.batch_size,
        tile_size=args.tile_size, learning_rate=args.lr, device=args.device, seed=args.seed,
    )
    result = drain(train(pairs, config, output=out, init_from=init_from))
    print(f"wrote {result.checkpoint} after {result.steps} steps (final loss {result.metrics['loss']:.4f})")
    return 0


# --------------------------------------------------------------- FCN / DeepLabv3+ options
def _add_arch_options(g) -> None:
    g.add_argument("--width", type=float, default=_M.width,
                   help=f"fcn*/deeplabv3plus: channel multiplier (default {_M.width:g} = published; 0.25 suits a CPU)")
    g.add_argument("--output-stride", type=int, choices=(8, 16), default=_M.output_stride,
                   help=f"deeplabv3plus: encoder output stride (default {_M.output_stride})")
    g.add_argument("--vgg16-weights", metavar="PATH",
                   help="fcn*: start from torchvision VGG16 ImageNet weights (a state-dict file you have; "
                   "needs --width 1)")


def _vgg16_init(model, weights: str, init_from, start: Path):
    """Build the FCN, load VGG16 weights, save it as the starting checkpoint ``start``."""
    from ..checkpoint import save_checkpoint
    from ..models import build_model
    from ..models.fcn import load_vgg16_weights

    if init_from:
        raise InputError("give either --from or --vgg16-weights, not both")
    if not model.arch.startswith("fcn"):
        raise InputError(f"--vgg16-weights needs an FCN (--arch fcn32s, fcn16s or fcn8s), not {model.arch!r}")
    model = replace(model, batch_norm=False)  # VGG16 has no batch norm
    net = build_model(model)
    load_vgg16_weights(net, weights)
    save_checkpoint(start, net, meta={"init": "torchvision VGG16", "weights": str(weights)})
    log.info("VGG16-initialised %s saved to %s", model.arch, start)
    return start, model
