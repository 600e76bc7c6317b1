"""``python -m napari_unet``: open napari with the plugin docked and the sample loaded.

``--headless`` (what ``make demo`` runs when there is no display, under Xvfb) runs the whole loop
on the sample instead, writes the results and a screenshot of the viewer into ``--output``, and
prints what it wrote.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("napari_unet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_unet", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="run the loop and exit (for Xvfb)")
    parser.add_argument("--output", default="demo-output", help="output folder for --headless")
    parser.add_argument("--iterations", type=int, default=150, help="training steps for --headless")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ._demo import run_gui_demo

    return run_gui_demo(headless=args.headless, output=args.output, iterations=args.iterations)


if __name__ == "__main__":
    sys.exit(main())
