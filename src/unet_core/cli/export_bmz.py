"""``napari-unet export-bmz``: write a checkpoint as a BioImage Model Zoo (bioimage.io) package."""

from __future__ import annotations

import argparse
import time

from ._common import check_output


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-bmz",
        help="export a model as a bioimage.io package (deepImageJ, ilastik, QuPath, Fiji, bioimage.io)",
        description="Writes a bioimage.io model package (spec 0.5 zip): PyTorch state-dict weights "
        "with a standalone architecture file, TorchScript weights, the valid input sizes, the "
        "model's normalisation as preprocessing, test tensors predicted by the model, a cover "
        "and a README with the training recipe. Needs: pip install \"napari-unet[bmz]\".",
    )
    p.add_argument("model", help="checkpoint written by 'napari-unet train' (a U-Net)")
    p.add_argument("-o", "--output", required=True, help="package to write (.zip)")
    p.add_argument("--author", action="append", required=True, metavar="NAME", help="author name (repeat for more)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id of the package (default CC-BY-4.0)")
    p.add_argument("--name", default=None, help="model name (default: from the checkpoint file name)")
    p.add_argument("--description", default=None, help="one-sentence description (default: from the model)")
    p.add_argument("--test-image", default=None, metavar="TIFF",
                   help="image to make the test tensors from (default: the built-in synthetic sample)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bmz import export_bmz

    out = check_output(args.output, args.overwrite)
    test_image = None
    if args.test_image:
        from ..io import read_tiff

        test_image, _ = read_tiff(args.test_image)
    t0 = time.perf_counter()
    export_bmz(
        args.model, out, authors=args.author, license=args.license, name=args.name,
        description=args.description, test_image=test_image, overwrite=args.overwrite,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s)")
    return 0
