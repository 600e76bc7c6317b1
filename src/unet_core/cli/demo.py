"""``napari-unet demo``: the whole loop on the built-in synthetic sample, headless."""

from __future__ import annotations

import argparse

from ._common import drain


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole loop on the built-in sample (no GUI)",
        description="Synthetic nuclei -> weight map -> train -> overlap-tile predict -> TIFFs in OUTPUT.",
    )
    p.add_argument("-o", "--output", default="demo-output", help="folder to write into (default demo-output)")
    p.add_argument("--iterations", type=int, default=150, help="training steps (default 150, ~1 CPU minute)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo in OUTPUT")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    files = drain(run_demo(args.output, iterations=args.iterations, overwrite=args.overwrite))
    for role, path in files.items():
        print(f"wrote {path}  ({role})")
    return 0
