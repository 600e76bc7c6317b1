"""``napari-unet predict``: overlap-tile prediction to instance labels."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

from ..config import PostprocessConfig
from ..errors import InputError
from . import predict_blockwise
from ._common import add_config_arguments, check_output, config_from_args, drain, int_in
from .train import voxel_size_arg, voxel_size_of

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="segment an image with a trained model (overlap-tile, any size)",
        description="Writes instance labels (uint16/uint32) with the image's axes and pixel size.",
    )
    p.add_argument("model", help="checkpoint written by 'napari-unet train', a built-in model name (see 'napari-unet models') or a bioimage.io package (.zip)")
    p.add_argument("image", help="image TIFF: (Y, X), (Z, Y, X) or with a channel axis")
    p.add_argument("-o", "--output", required=True, help="instance labels TIFF to write")
    p.add_argument("--probabilities", help="also write the foreground probability (float32 TIFF)")
    p.add_argument(
        "--channel-axis", type=int, default=None,
        help="axis of the image holding channels (default: the TIFF's 'C' axis, if any)",
    )
    p.add_argument("--tile-size", type=int_in(16, 16384), default=None, help="output tile edge in pixels, 16 to 16384 (default: from free memory)")
    p.add_argument("--batch-size", type=int_in(1, 1024), default=None, help="tiles per forward pass, 1 to 1024 (default: automatic)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--tta", type=int, nargs="?", const=8, default=0, metavar="N",
        help="test-time augmentation: average over N of the 8 flips/rotations (--tta alone: all 8)",
    )
    p.add_argument(
        "--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
        help="mixed precision (default auto: bf16/fp16 on CUDA, off on the CPU)",
    )
    p.add_argument("--voxel-size", type=voxel_size_arg, default=None, metavar="Z,Y,X",
                   help="3D models: voxel size for the 3D post-processing (default: the TIFF's metadata, else isotropic)")
    add_config_arguments(p, PostprocessConfig, title="post-processing (probabilities -> instances)")
    # the name of --no-split-touching before the options were generated from PostprocessConfig
    p.add_argument("--no-split", dest="split_touching", action="store_false", help=argparse.SUPPRESS)
    _defaults_from_model(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    predict_blockwise.add_arguments(p)
    p.set_defaults(run=run)


def _defaults_from_model(parser: argparse.ArgumentParser) -> None:
    """Post-processing options left out stay unset: the model's values fill them in (``run``)."""
    names = {f.name for f in dataclasses.fields(PostprocessConfig)}
    for action in parser._actions:
        if action.dest in names:
            if action.help and action.help is not argparse.SUPPRESS:
                default = getattr(PostprocessConfig(), action.dest)
                action.help = action.help.replace("%(default)s", f"{default}) (the model's own, if it has one", 1)
            action.default = argparse.SUPPRESS


def run(args: argparse.Namespace) -> int:
    from ..io import labels_dtype, read_image, write_tiff
    from ..memory import PREDICT_BYTES_PER_PIXEL
    from ..pipeline import iter_segment, postprocess_for
    from ..sources import load_model

    config_from_args(PostprocessConfig, args)  # a wrong option fails before the model loads
    if predict_blockwise.wanted(args):
        return predict_blockwise.run(args)
    out = check_output(args.output, args.overwrite)
    prob_out = check_output(args.probabilities, args.overwrite) if args.probabilities else None
    ckpt = load_model(args.model)
    net = ckpt.model if hasattr(ckpt, "model") else ckpt  # a foreign package predicts by itself
    config = getattr(ckpt, "config", None)  # None for a foreign package
    n_classes, dims = (config.n_classes, config.spatial_dims) if config is not None else (2, 2)
    postprocess = config_from_args(PostprocessConfig, args, base=postprocess_for(ckpt))
    log.info("post-processing: %s", postprocess)
    image, meta, channel_axis = read_image(
        args.image, channel_axis=args.channel_axis, what="predict",
        work_bytes_per_pixel=PREDICT_BYTES_PER_PIXEL * n_classes / 2,
    )
    if image.ndim - (channel_axis is not None) not in (2, 3):
        raise InputError(
            f"the image has shape {image.shape}; expected (Y, X) or a stack (Z, Y, X), plus a "
            "channel axis given with --channel-axis"
        )
    result = drain(
        iter_segment(
            net, image, postprocess, channel_axis=channel_axis, tile_shape=args.tile_size,
            batch_size=args.batch_size, device=args.device, tta=args.tta,
            amp=None if args.amp == "off" else args.amp,
            **({"voxel_size": args.voxel_size or voxel_size_of(meta)} if dims == 3 else {}),
        )
    )
    labels = result.labels
    axes = meta.axes
    sizes = meta.pixel_size
    if channel_axis is not None:  # labels have no channel axis
        ca = channel_axis % image.ndim
        axes = axes[:ca] + axes[ca + 1 :] if axes and len(axes) == image.ndim else axes
        sizes = sizes[:ca] + sizes[ca + 1 :] if sizes is not None and len(sizes) == image.ndim else sizes
    write_tiff(out, labels.astype(labels_dtype(labels)), axes=axes, pixel_size=sizes, unit=meta.unit, overwrite=args.overwrite)
    print(f"wrote {out}: {int(labels.max())} objects, shape {labels.shape}")
    if prob_out is not None:
        write_tiff(prob_out, result.foreground.astype(np.float32), axes=axes, pixel_size=sizes, unit=meta.unit, overwrite=args.overwrite)
        print(f"wrote {prob_out}")
    return 0
