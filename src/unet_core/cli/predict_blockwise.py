"""``napari-unet predict`` on images larger than memory: block-wise on dask (zarr, OME-Zarr, TIFF).

:mod:`.predict` hands over here when ``--block-size``, ``--workers`` or ``--dask`` is given, when
the input or output is a zarr path, or when the image has more than
:data:`~unet_core.blockwise.AUTO_BLOCKWISE_PIXELS` pixels.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..blockwise import AUTO_BLOCKWISE_PIXELS, BlockwiseConfig
from ..config import PostprocessConfig
from ..errors import InputError
from ._common import config_from_args, drain

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The block-wise options of ``predict``."""
    g = p.add_argument_group("block-wise prediction (images larger than memory, dask)")
    g.add_argument(
        "--block-size", type=int, default=None,
        help=f"output block edge in pixels (default {BlockwiseConfig.block_size}); sets the peak memory per worker",
    )
    g.add_argument("--workers", type=int, default=None, help="local worker threads (default: all cores)")
    g.add_argument("--dask", metavar="ADDRESS", default=None, help="dask.distributed scheduler, e.g. tcp://host:8786")
    g.add_argument("--mask", default=None, help="low-resolution foreground image (TIFF/zarr): skip blocks where it is 0")


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for (or the input's size needs) the block-wise path (logged)."""
    from ..lazy_io import kind_of, open_lazy

    if args.block_size is not None or args.workers is not None or args.dask is not None or args.mask:
        log.info("block-wise prediction (asked for by --block-size/--workers/--dask/--mask)")
        return True
    paths = (args.image, args.output) + ((args.probabilities,) if args.probabilities else ())
    if any(kind_of(p) != "tiff" for p in paths):
        log.info("block-wise prediction (zarr input or output)")
        return True
    shape = open_lazy(args.image).data.shape if Path(args.image).exists() else ()
    if shape and np.prod(shape[-3:]) > AUTO_BLOCKWISE_PIXELS:
        log.warning("block-wise prediction: the image %s has more than %d pixels", shape, AUTO_BLOCKWISE_PIXELS)
        return True
    log.info("in-memory prediction (image %s)", shape)
    return False


def run(args: argparse.Namespace) -> int:
    """Block-wise prediction to ``args.output`` (written under a temporary name, then renamed)."""
    from ..blockwise import as_channel_first, connect, iter_segment_blockwise
    from ..builtin_models import resolve_model_source
    from ..checkpoint import load_checkpoint
    from ..lazy_io import open_lazy
    from ..pipeline import postprocess_for

    outputs = [Path(args.output)] + ([Path(args.probabilities)] if args.probabilities else [])
    for out in outputs:
        if out.exists() and not args.overwrite:
            raise InputError(f"{out} exists; pass --overwrite to replace it or choose another name")
    model_path = resolve_model_source(args.model).resolve()  # a checkpoint or a built-in name
    ckpt = load_checkpoint(model_path)
    postprocess = config_from_args(PostprocessConfig, args, base=postprocess_for(ckpt))
    image = open_lazy(args.image)
    data = as_channel_first(image.data, image.axes, args.channel_axis, ckpt.model.config.spatial_dims)
    config = BlockwiseConfig(
        block_size=args.block_size or BlockwiseConfig.block_size, workers=args.workers,
        address=args.dask, batch_size=args.batch_size or BlockwiseConfig.batch_size, device=args.device,
        tta=args.tta, amp=None if args.amp == "off" else args.amp,
    )
    mask = np.asarray(open_lazy(args.mask).data) if args.mask else None
    client = connect(args.dask) if args.dask else None
    workdir = Path(tempfile.mkdtemp(prefix=f".{outputs[0].name}.work.", dir=outputs[0].parent))
    try:
        result = drain(iter_segment_blockwise(
            str(model_path), data, postprocess, workdir, config, tile_shape=args.tile_size,
            mask=mask, client=client,
        ))
        axes, sizes = _label_axes(image, data.ndim - 1)
        _write(outputs[0], result.labels, image, data, axes, sizes, args.overwrite)
        print(f"wrote {outputs[0]}: {result.n_objects} objects, shape {tuple(result.labels.shape)}")
        if args.probabilities:
            _write(outputs[1], result.foreground, None, None, axes, sizes, args.overwrite)
            print(f"wrote {outputs[1]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if client is not None:
            client.close()
    return 0


def _label_axes(image, ndim: int) -> tuple[str, tuple[float, ...] | None]:
    """Axes and pixel size of the labels: the image's without its channel axis."""
    keep = [i for i, a in enumerate(image.axes) if a != "C"]
    axes = "".join(image.axes[i] for i in keep)
    if len(axes) != ndim:
        return "ZYX"[-ndim:], None
    sizes = tuple(image.pixel_size[i] for i in keep) if image.pixel_size is not None else None
    return axes, sizes


def _write(path: Path, array, image, data, axes: str, sizes, overwrite: bool) -> None:
    from ..blockwise_output import write_result

    base = data[0] if data is not None and data.shape[0] == 1 else None
    write_result(path, array, axes=axes, pixel_size=sizes, unit=image.unit if image else None, image=base,
                 overwrite=overwrite)
