"""``napari-unet`` command line: weights, train, predict, demo.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and ``run(args)``.
User errors (bad files, shapes, options) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import UNetCoreError


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


_COMMANDS = ("weights", "train", "predict", "demo", "models", "export_bmz")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), like every other error
    of the command: ``napari-unet train: error: argument --depth: 0 is outside ...``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    import importlib

    parser = OneLineParser(
        prog="napari-unet",
        description="U-Net segmentation for microscopy: weight maps, training, overlap-tile prediction.",
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    try:
        return int(args.run(args) or 0)
    except (UNetCoreError, OSError) as exc:  # OSError: a last net under the write/read checks
        print(f"napari-unet {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-unet {args.command}: interrupted", file=sys.stderr)
        return 130


