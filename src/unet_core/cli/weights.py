"""``napari-unet weights``: the U-Net boundary weight map of a label image."""

from __future__ import annotations

import argparse
import logging
import time

from ..config import WeightMapConfig
from ..errors import InputError
from ..io import ImageMeta, read_image, read_tiff, write_tiff
from ._common import check_output

log = logging.getLogger(__name__)
_D = WeightMapConfig()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "weights",
        help="compute the U-Net boundary weight map of a label image",
        description=(
            "w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) (Ronneberger et al. 2015, eq. 2): d1/d2 are "
            "the distances to the nearest and second-nearest object, added on background pixels. "
            "2D (YX) images, ZYX stacks (true 3D, or --per-slice) and series of 2D images (e.g. TYX, "
            "always per slice). The output keeps the axes and pixel size of LABELS."
        ),
    )
    p.add_argument("labels", help="instance labels TIFF (0 = background; binary masks are split by connectivity)")
    p.add_argument("-o", "--output", required=True, help="weight map TIFF to write (float32)")
    p.add_argument("--w0", type=float, default=_D.w0, help=f"border-term amplitude (default {_D.w0})")
    p.add_argument("--sigma", type=float, default=_D.sigma,
                   help=f"border-term width in pixels (in-plane X pixels for anisotropic data; default {_D.sigma})")
    p.add_argument("--no-balance", action="store_true", help="w_c = 1 instead of class-balancing weights")
    p.add_argument("--no-separate", action="store_true", help="do not cut gaps between touching objects")
    p.add_argument("--mask", help="annotated-region TIFF (nonzero = annotated); weights are 0 outside")
    p.add_argument(
        "--sampling", default="auto", metavar="auto|none|[Z,]Y,X",
        help="relative pixel size per axis for distances: 'auto' (default) takes the TIFF's pixel "
             "size relative to its X pixel size (so sigma stays in X pixels and only anisotropy, "
             "e.g. Z steps, matters); 'none' treats pixels as isotropic; numbers such as 4,1,1 "
             "give the size per axis (sigma is then in those units)",
    )
    p.add_argument("--per-slice", action="store_true",
                   help="for ZYX stacks: compute each Z slice as an independent 2D image (as training does)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


def parse_sampling(value: str, meta: ImageMeta, ndim: int) -> tuple[float, ...] | None:
    """The ``--sampling`` option as one relative pixel size per array axis (None: isotropic)."""
    value = value.strip().lower()
    if value == "none":
        return None
    if value == "auto":
        if meta.pixel_size is None or len(meta.pixel_size) != ndim:
            return None
        sizes = dict(zip(meta.axes, meta.pixel_size))
        ref = sizes.get("X") or 1.0
        rel = tuple(sizes[a] / ref if a in "ZYX" else 1.0 for a in meta.axes)
        return None if all(abs(r - 1.0) < 1e-9 for r in rel) else rel
    try:
        nums = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise InputError(f"--sampling {value!r}: give 'auto', 'none' or numbers like 4,1,1") from None
    if len(nums) not in (1, ndim) or not all(n > 0 for n in nums):
        raise InputError(
            f"--sampling {value!r}: give one positive number or {ndim} (one per axis of the {ndim}D labels)"
        )
    return nums if len(nums) == ndim else nums * ndim


def run(args: argparse.Namespace) -> int:
    from ..weights import boundary_weight_map

    WeightMapConfig(w0=args.w0, sigma=args.sigma)  # ranges, before any work
    out = check_output(args.output, args.overwrite)
    labels, meta, channel_axis = read_image(args.labels)
    if channel_axis is not None:
        raise InputError(
            f"{args.labels}: labels have a channel axis (axes {meta.axes}, shape {labels.shape}); give a "
            "single-channel label image (split channels first)"
        )
    if labels.ndim not in (2, 3):
        raise InputError(
            f"{args.labels}: labels have axes {meta.axes} (shape {labels.shape}); give a YX image or a "
            "ZYX/TYX stack (split channels or time points first)"
        )
    if labels.ndim == 3 and meta.axes[-2:] != "YX":
        raise InputError(f"{args.labels}: expected the last two axes to be YX, got {meta.axes}")
    per_slice = args.per_slice
    if labels.ndim == 3 and meta.axes[0] != "Z" and not per_slice:
        log.info("axis %s is not Z: computing each slice as a 2D image", meta.axes[0])
        per_slice = True
    mask = None
    if args.mask:
        mask, _ = read_tiff(args.mask)
        if mask.shape != labels.shape:
            raise InputError(f"mask shape {mask.shape} differs from labels shape {labels.shape}; give a mask of the same size")
        mask = mask != 0
    sampling = parse_sampling(args.sampling, meta, labels.ndim)
    if sampling is not None:
        log.info("distances with relative pixel size %s", sampling)
    t0 = time.perf_counter()
    w = boundary_weight_map(
        labels, w0=args.w0, sigma=args.sigma, class_balance=not args.no_balance,
        separate_touching=not args.no_separate, mask=mask, sampling=sampling, per_slice=per_slice,
    )
    seconds = time.perf_counter() - t0
    write_tiff(out, w, axes=meta.axes, pixel_size=meta.pixel_size, unit=meta.unit, overwrite=args.overwrite)
    shape = "x".join(str(n) for n in w.shape[::-1])
    print(f"wrote {out} ({shape}, max weight {float(w.max()):.2f}, {seconds:.2f} s)")
    return 0
