"""Helpers shared by the subcommands: options generated from config dataclasses, draining
progress generators, output checks."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..config import choices_are_open, field_choices, field_docs
from ..errors import InputError
from ..progress import Progress

R = TypeVar("R")
C = TypeVar("C")


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, title: str | None = None, exclude: Sequence[str] = ()
) -> None:
    """Add one ``--field-name`` option per simple field of config dataclass ``cls``.

    Types, choices (``Literal`` fields) and defaults come from the dataclass, the help text
    from its numpydoc ``Attributes`` section, so the command line never copies a default. Bool
    fields get ``--name`` / ``--no-name``; nested configs and tuples are left out. Read the
    values back with :func:`config_from_args`.
    """
    target = parser.add_argument_group(title) if title else parser
    defaults, docs, hints = cls(), field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in exclude:
            continue
        kwargs = _option(cls, f.name, hints[f.name], getattr(defaults, f.name), docs.get(f.name, ""))
        if kwargs is not None:
            target.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def _option(cls: type, name: str, tp: Any, default: Any, doc: str) -> dict[str, Any] | None:
    if dataclasses.is_dataclass(default) or isinstance(default, tuple | list | dict):
        return None
    text = doc.replace("``", "").replace("%", "%%").rstrip(".")
    kwargs: dict[str, Any] = {"default": default, "help": f"{text} (default: %(default)s)"}
    if tp is bool:
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    choices = field_choices(cls, name)
    if choices and not choices_are_open(cls, name):
        return {**kwargs, "type": type(choices[0]), "choices": choices}
    types = [t for t in (typing.get_args(tp) or (tp,)) if t in (int, float, str)]
    return {**kwargs, "type": types[0] if types else str, "metavar": name.upper()}


def config_from_args(cls: type[C], args: argparse.Namespace, base: C | None = None) -> C:
    """``base`` (default ``cls()``) with the fields given by :func:`add_config_arguments` replaced.

    Raises
    ------
    InputError
        A value outside its allowed range (the config's own check, e.g. ``--threshold nan``).
    """
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return dataclasses.replace(cls() if base is None else base, **given)  # type: ignore[type-var]


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
