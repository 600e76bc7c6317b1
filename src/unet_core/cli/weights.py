"""``napari-unet weights``: the U-Net boundary weight map of a label image."""

from __future__ import annotations

import argparse
import logging

from ..config import WeightMapConfig
from ..io import read_tiff, write_tiff
from ._common import check_output

log = logging.getLogger(__name__)
_D = WeightMapConfig()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "weights",
        help="compute the U-Net boundary weight map of a label image",
        description="w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) (Ronneberger et al. 2015, eq. 2).",
    )
    p.add_argument("labels", help="instance labels TIFF (0 = background; binary masks are split by connectivity)")
    p.add_argument("-o", "--output", required=True, help="weight map TIFF to write (float32)")
    p.add_argument("--w0", type=float, default=_D.w0, help=f"border-term amplitude (default {_D.w0})")
    p.add_argument("--sigma", type=float, default=_D.sigma, help=f"border-term width in pixels (default {_D.sigma})")
    p.add_argument("--no-balance", action="store_true", help="w_c = 1 instead of class-balancing weights")
    p.add_argument("--no-separate", action="store_true", help="do not cut gaps between touching objects")
    p.add_argument("--mask", help="annotated-region TIFF (nonzero = annotated); weights are 0 outside")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..weights import boundary_weight_map

    out = check_output(args.output, args.overwrite)
    labels, meta = read_tiff(args.labels)
    mask = None
    if args.mask:
        mask, _ = read_tiff(args.mask)
        if mask.shape != labels.shape:
            raise InputError(f"mask shape {mask.shape} differs from labels shape {labels.shape}")
        mask = mask != 0
    w = boundary_weight_map(
        labels, w0=args.w0, sigma=args.sigma, class_balance=not args.no_balance,
        separate_touching=not args.no_separate, mask=mask,
    )
    write_tiff(out, w, axes=meta.axes, pixel_size=meta.pixel_size, unit=meta.unit, overwrite=args.overwrite)
    print(f"wrote {out} ({w.shape[-1]}x{w.shape[-2]}, max weight {float(w.max()):.2f})")
    return 0
