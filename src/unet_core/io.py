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
            pixel_size, unit = _read_pixel_size(tif, axes)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc})") from None
    # tifffile names generic axes 'I'/'Q'; keep what is there, but make the array and axes agree
    if len(axes) != data.ndim:
        axes = default_axes(data.ndim)
    return data, ImageMeta(axes=axes, pixel_size=pixel_size, unit=unit)


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
