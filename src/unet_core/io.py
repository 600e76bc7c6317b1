"""TIFF input/output through tifffile, keeping dtype, axes and pixel size; atomic writes.

Writes go to a temporary file in the target folder and are renamed into place, so a crash never
leaves a half-written file under the final name, and an existing file is only replaced when the
caller says so (``overwrite=True``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .errors import InputError

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
        Physical size per array axis in ``unit`` (1.0 for axes without a physical size), or None
        when the file has none.
    unit : str
        Physical unit of ``pixel_size`` (e.g. 'um').
    """

    axes: str
    pixel_size: tuple[float, ...] | None = None
    unit: str = "um"


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read the first series of a TIFF file.

    Returns
    -------
    data : ndarray
        The pixels in the file's dtype, shape per ``meta.axes``.
    meta : ImageMeta
        Axes (tifffile's series axes, 'S' samples kept) and pixel size when recorded.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            pixel_size = _read_pixel_size(tif, axes)
            unit = "um"
            if tif.imagej_metadata and tif.imagej_metadata.get("unit"):
                unit = str(tif.imagej_metadata["unit"]).replace("\\u00B5", "u").replace("µ", "u")
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc})") from None
    # tifffile names generic axes 'I'/'Q'; keep what is there, but make the array and axes agree
    if len(axes) != data.ndim:
        axes = default_axes(data.ndim)
    return data, ImageMeta(axes=axes, pixel_size=pixel_size, unit=unit)


def _read_pixel_size(tif, axes: str) -> tuple[float, ...] | None:
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    def _res(tag) -> float | None:
        num, den = tag.value
        return den / num if num else None
    x, y = _res(tags["XResolution"]), _res(tags["YResolution"])
    if not x or not y:
        return None
    sizes = []
    z = 1.0
    if tif.imagej_metadata and "spacing" in tif.imagej_metadata:
        z = float(tif.imagej_metadata["spacing"])
    elif tif.shaped_metadata and "spacing" in tif.shaped_metadata[0]:
        z = float(tif.shaped_metadata[0]["spacing"])
    for ax in axes:
        sizes.append({"X": x, "Y": y, "Z": z}.get(ax, 1.0))
    return tuple(sizes)


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    axes: str | None = None,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    overwrite: bool = False,
    compression: str | None = "zlib",
) -> Path:
    """Write ``data`` as a TIFF atomically, keeping dtype, axes and pixel size.

    uint8/uint16/float32 arrays with ImageJ-compatible axes are written as ImageJ hyperstacks
    (Fiji reads axes, pixel size and unit); other dtypes (uint32 labels, say) as tifffile-shaped
    TIFF with the same resolution tags and the axes in the description. Stacks are multi-page.

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
    unit : str
        Physical unit of ``pixel_size``.
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
    sizes = dict(zip(axes, pixel_size)) if pixel_size is not None else {}
    resolution = None
    if "X" in sizes and "Y" in sizes and sizes["X"] > 0 and sizes["Y"] > 0:
        resolution = (1.0 / sizes["X"], 1.0 / sizes["Y"])
    imagej_order = "TZCYXS"
    imagej_ok = (
        data.dtype.type in _IMAGEJ_DTYPES
        and set(axes) <= set(imagej_order)
        and "".join(a for a in imagej_order if a in axes) == axes
    )
    kwargs: dict = {"compression": compression} if compression else {}
    kwargs["photometric"] = "rgb" if axes.endswith("S") and data.shape[-1] in (3, 4) else "minisblack"
    if resolution is not None:
        kwargs["resolution"] = resolution
    if imagej_ok:
        md: dict = {"axes": axes}
        if resolution is not None:
            md["unit"] = unit
        if "Z" in sizes:
            md["spacing"] = float(sizes["Z"])
        kwargs.update(imagej=True, metadata=md)
    else:
        md = {"axes": axes}
        if "Z" in sizes:
            md["spacing"] = float(sizes["Z"])
        if resolution is not None:
            md["unit"] = unit
        kwargs["metadata"] = md

    def _write(fh: IO[bytes]) -> None:
        tifffile.imwrite(fh, data, **kwargs)

    out = atomic_write(path, _write, overwrite=overwrite)
    log.info("wrote %s %s %s", out, data.shape, data.dtype)
    return out
