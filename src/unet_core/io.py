"""TIFF input/output through tifffile, keeping dtype, axes and pixel size; atomic writes.

Writes go to a temporary file in the target folder and are renamed into place, so a crash never
leaves a half-written file under the final name, and an existing file is only replaced when the
caller says so (``overwrite=True``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .errors import InputError, OutputError
from .memory import check_image_memory

log = logging.getLogger(__name__)

#: dtypes ImageJ understands; others are written as plain (tifffile-shaped) TIFF.
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


@dataclass(frozen=True)
class ImageMeta:
    """What a TIFF says about its array besides the pixels.

    Attributes
    ----------
    axes : str
        One letter per array axis, e.g. 'YX', 'ZYX', 'CYX', 'TZCYX'.
    pixel_size : tuple of float or None
        Size per array axis in ``unit`` (1.0 for axes without a physical size), or None when the
        file has no resolution tags.
    unit : str or None
        Physical unit of ``pixel_size`` (normalised by :func:`normalize_unit`: 'um', 'nm', ...),
        or None when the file states none: the sizes are then relative, not physical.
    """

    axes: str
    pixel_size: tuple[float, ...] | None = None
    unit: str | None = None


#: Length units and their size in micrometres (the keys are what :func:`normalize_unit` returns).
UNIT_IN_UM = {"nm": 1e-3, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "inch": 25400.0}
_UNIT_ALIASES = {
    "um": ("um", "µm", "μm", "micron", "microns", "micrometer", "micrometre", "micrometers",
           "micrometres", "\\u00b5m", "\\u03bcm"),
    "nm": ("nm", "nanometer", "nanometre", "nanometers", "nanometres"),
    "mm": ("mm", "millimeter", "millimetre", "millimeters", "millimetres"),
    "cm": ("cm", "centimeter", "centimetre", "centimeters", "centimetres"),
    "m": ("m", "meter", "metre", "meters", "metres"),
    "inch": ("inch", "inches", "in", '"'),
}
_UNIT_NAMES = {alias: unit for unit, aliases in _UNIT_ALIASES.items() for alias in aliases}
#: Spellings that mean "no physical unit" (ImageJ writes 'pixel' for uncalibrated images).
_NO_UNIT = {"", "pixel", "pixels", "px", "none", "unknown"}
#: TIFF ResolutionUnit tag values.
_RESUNIT_NONE, _RESUNIT_INCH, _RESUNIT_CM = 1, 2, 3


def normalize_unit(unit: object) -> str | None:
    """A physical unit's short name ('um', 'nm', 'mm', 'cm', 'm', 'inch'), or None for no unit.

    Accepts the spellings of ImageJ ('micron', '\\u00B5m'), OME ('µm'), pint/napari
    ('micrometer', 'pixel') and plain strings; unknown units are returned stripped, as given.
    """
    if unit is None:
        return None
    text = str(unit).strip()
    if text.lower() in _NO_UNIT:
        return None
    return _UNIT_NAMES.get(text.lower(), _UNIT_NAMES.get(text, text))


#: a temporary file of an atomic write older than this (seconds) whose process is gone is stale
STALE_TEMPORARY_AGE = 60.0

_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write to another folder",
    errno.EROFS: "the file system is read-only: write to another folder",
    errno.EACCES: "no permission to write there: choose a folder you can write to",
    errno.EPERM: "no permission to write there: choose a folder you can write to",
}
_WRITE_HINTS[getattr(errno, "EDQUOT", errno.ENOSPC)] = _WRITE_HINTS[errno.ENOSPC]


def write_error(path: str | os.PathLike, exc: BaseException) -> OutputError:
    """An :class:`OutputError` saying that writing ``path`` failed, why, and what to do."""
    if isinstance(exc, OutputError):
        return exc
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:200]
    hint = _WRITE_HINTS.get(code, "check the folder and the free space, or write elsewhere")
    return OutputError(f"cannot write {path}: {reason}; {hint}", errno=code)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when that cannot be told)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or cannot be asked
        return True
    return True


def _temporary_pattern(path: Path) -> re.Pattern[str]:
    """Names of :func:`atomic_path` temporaries of ``path``: ``.NAME.[PID.]XXXXXXXX.tmp``."""
    return re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp$")


def remove_stale_temporaries(path: str | os.PathLike, *, age: float = STALE_TEMPORARY_AGE) -> list[Path]:
    """Delete temporaries that interrupted atomic writes of ``path`` left behind; return them.

    Only regular files named like this module's temporaries of ``path`` (``.NAME.PID.XXXXXXXX.tmp``
    or, from older versions, ``.NAME.XXXXXXXX.tmp``) that were not modified for ``age`` seconds
    and whose writing process (when the name records it) no longer runs. Nothing else is touched.
    """
    path = Path(path)
    pattern = _temporary_pattern(path)
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < age:
            continue
        if m.group(1) is not None and pid_alive(int(m.group(1))):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        log.info("removed %s, left behind by an interrupted write", entry)
        removed.append(entry)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary is ``.NAME.PID.XXXXXXXX.tmp`` in the same folder; it is removed on any error,
    and stale ones of earlier, killed writes of ``path`` are removed first
    (:func:`remove_stale_temporaries`).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    OutputError
        The folder cannot be created or written, or the disk is full (no temporary is left).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise write_error(path, exc) from None
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` could be created (its folder, or the nearest
    existing folder above it, is writable on a writable file system). Checked before long work."""
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is not a folder; choose another output path")
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows)
        read_only = False
    if read_only:
        raise write_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise write_error(path, OSError(errno.EACCES, os.strerror(errno.EACCES)))


@contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``PATH.lock`` (created exclusively, holding this process id) while writing ``path``.

    A second writer of the same ``path`` is refused while the first runs; the lock of a process
    that no longer exists (killed) is taken over; the lock is removed on exit.

    Raises
    ------
    InputError
        Another running process holds the lock.
    OutputError
        The lock cannot be created (read-only folder, full disk).
    """
    lock = Path(f"{path}.lock")
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if attempt == 0 and owner is not None and not pid_alive(owner):
                log.warning("taking over %s of process %d, which no longer runs", lock, owner)
                lock.unlink(missing_ok=True)
                continue
            raise InputError(
                f"{path} is being written by another run (process {owner}, lock file {lock}); wait "
                f"for it to end or choose another output name (delete {lock} if no such run exists)"
            ) from None
        except OSError as exc:
            raise write_error(lock, exc) from None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        except OSError as exc:
            lock.unlink(missing_ok=True)
            raise write_error(lock, exc) from None
        break
    try:
        yield lock
    finally:
        if _lock_owner(lock) == os.getpid():
            lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    """Process id written in a lock file (None when unreadable, or just created and still empty)."""
    try:
        text = lock.read_text().strip()
        if not text and time.time() - lock.stat().st_mtime > STALE_TEMPORARY_AGE:
            return 0  # empty for long: its writer died between creating and writing it
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], *, overwrite: bool = False) -> Path:
    """Write ``path`` atomically by calling ``write(fileobj)`` on a temporary file."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return Path(path)


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned dtype (uint8/uint16/uint32/uint64) that holds ``labels``' ids."""
    if labels.size == 0:
        return np.dtype(np.uint16)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise InputError("labels contain negative ids; instance ids must be >= 0 (0 = background)")
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if hi <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise InputError(f"label id {hi} does not fit into uint64")


def default_axes(ndim: int) -> str:
    """Axes for an array of ``ndim`` dimensions without further information."""
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}.get(ndim, "Q" * (ndim - 2) + "YX")


def read_tiff(
    path: str | os.PathLike, *, work_bytes_per_pixel: float = 0.0, what: str = "read"
) -> tuple[np.ndarray, ImageMeta]:
    """Read the first series of a TIFF file.

    The shape and dtype are taken from the file's metadata first, and an image that would not fit
    into the available memory (its pixels plus ``work_bytes_per_pixel`` per pixel for the task
    ``what``) is refused before any pixel is read.

    Returns
    -------
    data : ndarray
        The pixels in the file's dtype, shape per ``meta.axes``.
    meta : ImageMeta
        Axes (tifffile's series axes, 'S' samples kept) and pixel size when recorded.

    Raises
    ------
    InputError
        Missing file; a file that is not a readable TIFF (truncated, damaged, another format):
        "<path>: not a readable TIFF: <reason>"; an image too large for the memory.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("the file holds no image")
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
            channels = _channel_size(shape, axes)
            check_image_memory(shape, dtype, channels=channels, work_bytes_per_pixel=work_bytes_per_pixel,
                               what=what, name=str(path))
            data = series.asarray()
            pixel_size, unit = _read_pixel_size(tif, axes)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises anything on damaged files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(f"{path}: not a readable TIFF: {type(exc).__name__}: {reason}".rstrip(": ")) from None
    # tifffile names generic axes 'I'/'Q'; keep what is there, but make the array and axes agree
    if len(axes) != data.ndim:
        axes = default_axes(data.ndim)
    return data, ImageMeta(axes=axes, pixel_size=pixel_size, unit=unit)


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Demote tifffile's own log records (it logs each damaged tag) to debug records of ours."""

    def demote(record: logging.LogRecord) -> bool:
        log.debug("tifffile: %s", record.getMessage())
        return False

    tf_log = logging.getLogger("tifffile")
    tf_log.addFilter(demote)
    try:
        yield
    finally:
        tf_log.removeFilter(demote)


def _channel_size(shape: tuple[int, ...], axes: str) -> int:
    """Size of the channel ('C' or 'S') axes of an array (1 without)."""
    if len(axes) != len(shape):
        return 1
    return int(np.prod([n for a, n in zip(axes.upper(), shape) if a in "CS"], dtype=np.int64))


def channel_axis_of(
    axes: str, shape: tuple[int, ...], channel_axis: int | None = None, *, name: str = "the image"
) -> int | None:
    """The channel axis of an image: the one given, else the TIFF's 'C' or 'S' (samples) axis.

    Parameters
    ----------
    axes : str
        One letter per axis (:attr:`ImageMeta.axes`); an RGB TIFF is 'YXS'.
    shape : tuple of int
        The array's shape.
    channel_axis : int, optional
        Given by the user (``--channel-axis``); negative values count from the end.
    name : str
        The file, for messages.

    Returns
    -------
    int or None
        Non-negative axis index, or None for an image without channels.

    Raises
    ------
    InputError
        ``channel_axis`` outside the image's axes, or both a 'C' and an 'S' axis of size > 1.
    """
    ndim = len(shape)
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise InputError(
                f"channel axis {channel_axis} does not exist in {name} (shape {tuple(shape)}, axes "
                f"{axes}); give an axis from 0 to {ndim - 1} (or -{ndim} to -1)"
            )
        return channel_axis % ndim
    if len(axes) != ndim:
        return None
    found = [i for i, a in enumerate(axes.upper()) if a in "CS"]
    if len(found) > 1:
        found = [i for i in found if shape[i] > 1] or found[-1:]
    if len(found) > 1:
        raise InputError(
            f"{name} has two channel axes (axes {axes}, shape {tuple(shape)}); give the one to use "
            "with --channel-axis, or merge them first"
        )
    return found[0] if found else None


def read_image(
    path: str | os.PathLike,
    *,
    channel_axis: int | None = None,
    work_bytes_per_pixel: float = 0.0,
    what: str = "read",
) -> tuple[np.ndarray, ImageMeta, int | None]:
    """Read an image TIFF and find its channel axis, the same way for every command.

    The channel axis is ``channel_axis`` when given, else the TIFF's own 'C' axis or 'S' axis
    (the samples of an RGB TIFF, axes 'YXS'), else none. Memory is checked as in
    :func:`read_tiff`.

    Returns
    -------
    data : ndarray
        The pixels, e.g. shape (Y, X), (Z, Y, X), (Y, X, 3) for RGB, (C, Y, X).
    meta : ImageMeta
        Axes, pixel size, unit.
    channel_axis : int or None
        Non-negative index of the channel axis of ``data``, or None.
    """
    data, meta = read_tiff(path, work_bytes_per_pixel=work_bytes_per_pixel, what=what)
    return data, meta, channel_axis_of(meta.axes, data.shape, channel_axis, name=str(path))


def _read_pixel_size(tif, axes: str) -> tuple[tuple[float, ...] | None, str | None]:
    """Pixel size per axis of ``axes`` and its unit (None: the file states no physical unit).

    Precedence: the OME-XML ``PhysicalSize*`` attributes (unit default µm, as the OME schema
    says); else the X/YResolution tags, in the unit that the ImageJ or tifffile description
    states (``unit``, Z from ``spacing``); else in the inch/cm of the ResolutionUnit tag,
    converted to um; else relative sizes without a unit.
    """
    ome = _ome_pixel_size(tif)
    if ome is not None:
        (x, y, z), unit = ome
        return _per_axis(axes, x, y, z), unit
    tags = tif.pages[0].tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, None
    x, y = _size_from_resolution(tags["XResolution"]), _size_from_resolution(tags["YResolution"])
    if not x or not y:
        return None, None
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else _RESUNIT_INCH
    described = tif.imagej_metadata or (tif.shaped_metadata[0] if tif.shaped_metadata else None) or {}
    z = float(described.get("spacing", 1.0))
    unit = normalize_unit(described.get("unit"))
    if unit in UNIT_IN_UM and not tif.imagej_metadata and resunit == _RESUNIT_CM:
        # write_tiff's non-ImageJ files: tags per cm (for Fiji), sizes in the described unit
        x, y = (v * UNIT_IN_UM["cm"] / UNIT_IN_UM[unit] for v in (x, y))
    elif unit is None and resunit in (_RESUNIT_INCH, _RESUNIT_CM) and (x, y) != (1.0, 1.0):
        factor = UNIT_IN_UM["inch" if resunit == _RESUNIT_INCH else "cm"]
        x, y, unit = x * factor, y * factor, "um"
        z = z * factor if "spacing" in described else z
    return _per_axis(axes, x, y, z), unit


def _size_from_resolution(tag) -> float | None:
    num, den = tag.value
    return den / num if num else None


def _per_axis(axes: str, x: float, y: float, z: float) -> tuple[float, ...]:
    return tuple({"X": x, "Y": y, "Z": z}.get(ax, 1.0) for ax in axes)


def _ome_pixel_size(tif) -> tuple[tuple[float, float, float], str | None] | None:
    """(X, Y, Z) physical sizes in X's unit from a file's OME-XML, or None when it has none."""
    import xml.etree.ElementTree as ET

    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or not pixels.get("PhysicalSizeX"):
        return None
    unit = normalize_unit(pixels.get("PhysicalSizeXUnit", "µm"))
    sizes = []
    for ax, fallback in (("X", None), ("Y", "X"), ("Z", None)):
        value = pixels.get(f"PhysicalSize{ax}")
        if not value:
            sizes.append(sizes[0] if fallback else 1.0)
            continue
        try:
            size = float(value)
        except ValueError:
            return None
        ax_unit = normalize_unit(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if ax_unit != unit and ax_unit in UNIT_IN_UM and unit in UNIT_IN_UM:
            size *= UNIT_IN_UM[ax_unit] / UNIT_IN_UM[unit]
        sizes.append(size)
    return (sizes[0], sizes[1], sizes[2]), unit


def _calibration(
    axes: str, pixel_size: Sequence[float] | None, unit: str | None, imagej: bool
) -> tuple[dict, dict]:
    """tifffile arguments (resolution tags) and description entries (unit, spacing) for a write.

    With ``unit`` None no unit is written and the ResolutionUnit tag says NONE, so the file
    claims no physical size (Fiji shows the sizes without a unit). ImageJ files carry the unit
    in the description; other files (uint32 labels, say) also in the tags, as pixels per cm,
    which Fiji reads.
    """
    sizes = dict(zip(axes, pixel_size)) if pixel_size is not None else {}
    md: dict = {}
    if "Z" in sizes:
        md["spacing"] = float(sizes["Z"])
    x, y = float(sizes.get("X", 0.0)), float(sizes.get("Y", 0.0))
    if not (x > 0 and y > 0):
        return {}, md
    if unit is not None:
        md["unit"] = unit
    if unit in UNIT_IN_UM and not imagej:
        to_cm = UNIT_IN_UM[unit] / UNIT_IN_UM["cm"]
        return {"resolution": (1.0 / (x * to_cm), 1.0 / (y * to_cm)), "resolutionunit": _RESUNIT_CM}, md
    return {"resolution": (1.0 / x, 1.0 / y), "resolutionunit": _RESUNIT_NONE}, md


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    axes: str | None = None,
    pixel_size: Sequence[float] | None = None,
    unit: str | None = None,
    overwrite: bool = False,
    compression: str | None = "zlib",
) -> Path:
    """Write ``data`` as a TIFF atomically, keeping dtype, axes and pixel size.

    uint8/uint16/float32 arrays with ImageJ-compatible axes are written as ImageJ hyperstacks
    (Fiji reads axes, pixel size and unit); other dtypes (uint32 labels, say) as tifffile-shaped
    TIFF with axes, unit and spacing in the description and, for a length unit, resolution tags
    in pixels per cm (which Fiji reads). Without ``unit`` no physical unit is written, only the
    relative sizes. Stacks are multi-page.

    Parameters
    ----------
    path : path-like
        Target file.
    data : ndarray
        Any shape. The dtype is kept, except bool (written as uint8), float64 (float32) and
        64-bit integers (the smallest unsigned type that holds the ids: never int64).
    axes : str, optional
        One letter per axis of ``data`` (default from ``data.ndim``: 'YX', 'ZYX', ...).
    pixel_size : sequence of float, optional
        Physical size per axis of ``data`` (only Z, Y and X are stored).
    unit : str or None
        Physical unit of ``pixel_size`` ('um', 'nm', ...; see :func:`normalize_unit`). None (the
        default) writes no unit: the sizes stay relative, and read back with ``unit`` None.
    overwrite : bool
        Replace an existing file.
    compression : str or None
        'zlib' (default, lossless) or None.
    """
    import tifffile

    data = np.asarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:
        # 64-bit integers are label images from numpy/scipy defaults; store them compactly
        data = data.astype(labels_dtype(data))
    axes = (axes or default_axes(data.ndim)).upper()
    if len(axes) != data.ndim:
        raise InputError(f"axes {axes!r} do not match an array of {data.ndim} dimensions")
    imagej_order = "TZCYXS"
    imagej_ok = (
        data.dtype.type in _IMAGEJ_DTYPES
        and set(axes) <= set(imagej_order)
        and "".join(a for a in imagej_order if a in axes) == axes
    )
    kwargs: dict = {"compression": compression} if compression else {}
    kwargs["photometric"] = "rgb" if axes.endswith("S") and data.shape[-1] in (3, 4) else "minisblack"
    tags, calibration = _calibration(axes, pixel_size, normalize_unit(unit), imagej_ok)
    kwargs.update(tags, metadata={"axes": axes, **calibration})
    if imagej_ok:
        kwargs["imagej"] = True

    def _write(fh: IO[bytes]) -> None:
        tifffile.imwrite(fh, data, **kwargs)

    out = atomic_write(path, _write, overwrite=overwrite)
    log.info("wrote %s %s %s", out, data.shape, data.dtype)
    return out
