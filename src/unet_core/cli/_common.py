"""Helpers shared by the subcommands: draining progress generators, output checks."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from ..progress import Progress

R = TypeVar("R")


def drain(gen: Generator[Progress, None, R], *, quiet: bool = False) -> R:
    """Run a progress generator to the end, drawing a progress bar on stderr; return its value.

    On a terminal the bar is redrawn in place; otherwise a line is printed about every 10 %.
    Ctrl-C closes the generator (so it can save a clean state) and re-raises.
    """
    tty = sys.stderr.isatty()
    last_pct = -10
    last_draw = 0.0
    stage = None
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                if tty and not quiet:
                    sys.stderr.write("\n")
                return stop.value
            if quiet:
                continue
            if p.stage != stage:
                stage, last_pct = p.stage, -10
            pct = int(100 * p.fraction)
            now = time.monotonic()
            if tty and (now - last_draw > 0.1 or p.step == p.total):
                last_draw = now
                bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
                eta = f" eta {p.eta:4.0f}s" if p.eta is not None else ""
                sys.stderr.write(f"\r{p.stage:>8} [{bar}] {pct:3d}% {p.message}{eta}   ")
                sys.stderr.flush()
            elif not tty and pct >= last_pct + 10:
                last_pct = pct - pct % 10
                print(f"{p.stage}: {pct:3d}% {p.message}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        gen.close()
        raise


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse to overwrite an existing file unless ``--overwrite`` was given."""
    return check_outputs([path], overwrite)[0]


def check_outputs(paths: Iterable[str | Path | None], overwrite: bool) -> list[Path]:
    """Check every file a command will write, before any work: none may exist unless
    ``overwrite``, none may be a folder, and each must be writable (folder on a writable
    file system). ``None`` entries (optional outputs not requested) are skipped.

    Returns
    -------
    list of Path
        The paths that were checked, in order.

    Raises
    ------
    InputError
        An existing file without ``--overwrite``, a folder given as a file.
    OutputError
        A folder that cannot be written (read-only file system, no permission).
    """
    from ..io import check_writable

    out = [Path(p) for p in paths if p is not None]
    for path in out:
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file name")
        if path.exists() and not overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it or choose another name")
        check_writable(path)
    return out


def int_in(lo: int, hi: int):
    """An argparse ``type``: an integer from ``lo`` to ``hi`` (the message names the range)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside the allowed range {lo} to {hi}")
        return value

    parse.__name__ = "integer"
    return parse
