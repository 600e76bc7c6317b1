"""Lazy inputs and streamed outputs for images larger than memory.

Inputs become dask arrays whose blocks are read on demand, never the whole file:

- TIFF (also BigTIFF and pyramidal OME-TIFF, level 0) through tifffile's zarr store;
- a zarr array (``.zarr``), or level 0 of an OME-Zarr multiscale image (``.ome.zarr``, read with
  ome-zarr-py);
- numpy and dask arrays given directly.

Outputs are written block by block into a temporary sibling of the final path and renamed onto it
when complete, so nothing half-written is left under the final name:

- OME-Zarr: the image at the root and the labels under ``labels/<name>``, each a multiscale
  pyramid built level by level from the stored level before it (ome-zarr-py writes the metadata;
  its own writer computes every level in one graph and held 5.2 GB at 50000²);
- a plain zarr array;
- a tiled BigTIFF, written one row of blocks at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

#: Path endings read and written as zarr (OME-Zarr when it ends in ``.ome.zarr``).
ZARR_SUFFIXES = (".zarr", ".zarr/")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class LazyImage:
    """A lazily read image.

    Attributes
    ----------
    data : dask.array.Array
        The pixels, one axis per letter of ``axes``; blocks are read when computed.
    axes : str
        One letter per axis ('YX', 'ZYX', 'CYX', ...).
    pixel_size : tuple of float or None
        Physical size per axis (1.0 for non-spatial axes), or None when unknown.
    unit : str or None
        Unit of ``pixel_size`` ('um', ...); None when the source states none.
    source : str
        Where the pixels come from (a path, or 'array').
    """

    data: Any
    axes: str
    pixel_size: tuple[float, ...] | None = None
    unit: str | None = None
    source: str = "array"


def kind_of(path: str | os.PathLike) -> str:
    """'ome-zarr', 'zarr' or 'tiff' from a path's ending; raise :class:`InputError` otherwise."""
    name = os.fspath(path).rstrip("/").lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if Path(path).is_dir() and any((Path(path) / f).exists() for f in ("zarr.json", ".zarray", ".zgroup")):
        return "zarr"
    raise InputError(f"{path}: give a .tif/.tiff, .zarr or .ome.zarr path")


def open_lazy(source: Any, *, axes: str | None = None) -> LazyImage:
    """Open ``source`` lazily as a :class:`LazyImage`.

    Parameters
    ----------
    source : path-like, ndarray, dask array or zarr array
        A TIFF, ``.zarr`` array or ``.ome.zarr`` image path, or an array.
    axes : str, optional
        Axes of an array source (default 'YX', 'ZYX', ... by its number of dimensions).

    Raises
    ------
    InputError
        Missing path, an unknown ending, or a zarr path that holds no array.
    """
    import dask.array as da

    from .io import default_axes

    if not isinstance(source, str | os.PathLike):
        data = source if isinstance(source, da.Array) else da.from_array(source, chunks="auto")
        return LazyImage(data, (axes or default_axes(data.ndim)).upper())
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    kind = kind_of(path)
    if kind == "tiff":
        return _open_tiff(path)
    if kind == "ome-zarr" or _is_multiscale(path):
        return _open_ome_zarr(path)
    return _open_zarr_array(path)


def _open_tiff(path: Path) -> LazyImage:
    import dask.array as da
    import tifffile
    import zarr

    from .io import _read_pixel_size, default_axes

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        pixel_size, unit = _read_pixel_size(tif, axes)
    store = tifffile.imread(path, aszarr=True, level=0)
    data = da.from_zarr(zarr.open(store, mode="r"))
    if len(axes) != data.ndim:
        axes = default_axes(data.ndim)
    return LazyImage(data, axes, pixel_size, unit, os.fspath(path))


def _is_multiscale(path: Path) -> bool:
    import zarr

    node = zarr.open(path, mode="r")
    attrs = dict(node.attrs)
    return "multiscales" in attrs or "multiscales" in attrs.get("ome", {})


def _open_zarr_array(path: Path) -> LazyImage:
    import dask.array as da
    import zarr

    from .io import default_axes

    node = zarr.open(path, mode="r")
    if not isinstance(node, zarr.Array):
        arrays = sorted(name for name, _ in node.arrays())
        hint = f"; it holds the arrays {arrays}: give e.g. {path / arrays[0]}" if arrays else ""
        raise InputError(f"{path} is a zarr group, not an array{hint}")
    data = da.from_zarr(node)
    return LazyImage(data, str(node.attrs.get("axes", default_axes(data.ndim))).upper(), source=os.fspath(path))


def _open_ome_zarr(path: Path) -> LazyImage:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    loc = parse_url(os.fspath(path), mode="r")
    if loc is None:
        raise InputError(f"{path} is not an OME-Zarr image; give a .zarr array or an OME-Zarr image")
    for node in Reader(loc)():
        if node.load(Multiscales) is None:
            continue
        meta = node.metadata
        axes = "".join(a["name"] if isinstance(a, dict) else str(a) for a in meta.get("axes", []))
        data = node.data[0]
        scale = _level0_scale(meta, data.ndim)
        units = [a.get("unit") for a in meta.get("axes", []) if isinstance(a, dict) and a.get("type") == "space"]
        unit = _short_unit(units[0]) if units and units[0] else None
        return LazyImage(data, (axes or "").upper() or _axes_for(data.ndim), scale, unit, os.fspath(path))
    raise InputError(f"{path} holds no multiscale image; give the path of an OME-Zarr image")


def _axes_for(ndim: int) -> str:
    from .io import default_axes

    return default_axes(ndim)


def _level0_scale(meta: dict, ndim: int) -> tuple[float, ...] | None:
    for transforms in meta.get("coordinateTransformations", [])[:1]:
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                return tuple(float(s) for s in t["scale"])
    return None


def _short_unit(unit: str) -> str | None:
    from .io import normalize_unit

    return normalize_unit(unit)


# ---------------------------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (file or folder); rename it onto ``path`` on success.

    Raises
    ------
    InputError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _space_axes(axes: str) -> list[dict[str, str]]:
    kinds = {"T": "time", "C": "channel"}
    return [{"name": a.lower(), "type": kinds.get(a, "space")} for a in axes]


def _scale_kwargs(axes: str, pixel_size, unit: str | None) -> dict:
    out: dict[str, Any] = {}
    if pixel_size is not None:
        out["scale"] = {a.lower(): float(s) for a, s in zip(axes, pixel_size, strict=True)}
    if unit in {"um": 1, "nm": 1, "mm": 1}:
        names = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter"}
        out["axes_units"] = {a.lower(): names[unit] for a in axes if a in "ZYX"}
    return out


def write_ome_zarr(
    path: str | os.PathLike,
    labels: Any,
    *,
    image: Any = None,
    axes: str,
    pixel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    name: str = "labels",
    overwrite: bool = False,
) -> Path:
    """Write ``image`` (if given) and ``labels`` as an OME-Zarr with multiscale pyramids.

    Each pyramid level is computed from the level stored before it and written block by block
    (:func:`_write_pyramid`), so memory is bounded by a few blocks per thread whatever the size.

    Parameters
    ----------
    path : path-like
        Target ``.ome.zarr`` folder (written beside it and renamed when complete).
    labels : dask array or ndarray of unsigned int, shape per ``axes`` (spatial axes only)
        Instance ids; written block by block under ``labels/<name>``.
    image : dask array or ndarray, optional
        The image at the root (same spatial shape); without it the root holds the labels as its
        image.
    axes : str
        Spatial axes of ``labels`` ('YX' or 'ZYX').
    pixel_size, unit : optional
        Physical size per axis of ``labels`` and its unit.
    """
    import dask.array as da
    import zarr
    from ome_zarr.writer import write_label_metadata

    labels = da.asarray(labels)
    levels = 1 + len(_scale_factors(labels.shape[-2:]))
    with atomic_output(path, overwrite=overwrite) as tmp:
        root = zarr.open_group(tmp, mode="w")
        base = da.asarray(image) if image is not None else labels
        _write_pyramid(root, base, levels, nearest=image is None, axes=axes, pixel_size=pixel_size,
                       unit=unit, name="image")
        group = root.create_group("labels").create_group(name)
        _write_pyramid(group, labels, levels, nearest=True, axes=axes, pixel_size=pixel_size,
                       unit=unit, name=name)
        write_label_metadata(root["labels"], name=name)
    log.info("wrote %s: labels %s %s", path, labels.shape, labels.dtype)
    return Path(path)


def _write_pyramid(group: Any, data: Any, levels: int, *, nearest: bool, axes: str,
                   pixel_size: tuple[float, ...] | None, unit: str | None, name: str) -> None:
    """Levels ``s0..s{levels-1}`` of ``data`` halved along Y and X, and their multiscale metadata.

    Level 0 is ``data`` (a dask array, computed block by block); level k is read back from the
    stored level k - 1 and halved (nearest pixel for labels, 2 x 2 mean otherwise), so each level
    is one streaming pass and no pass holds more than a few blocks per thread.
    """
    import dask.array as da
    from ome_zarr.writer import write_multiscales_metadata

    size = tuple(float(s) for s in pixel_size) if pixel_size is not None else (1.0,) * len(axes)
    chunks = tuple(int(c) for c in data.chunksize)
    datasets = []
    for k in range(levels):
        if k:
            data = _halve(da.from_zarr(group[f"s{k - 1}"]), nearest)
        level_chunks = tuple(min(c, s) for c, s in zip(chunks, data.shape))
        arr = group.create_array(f"s{k}", shape=data.shape, chunks=level_chunks, dtype=data.dtype,
                                 dimension_names=[a.lower() for a in axes])
        data.rechunk(level_chunks).store(arr, lock=False)  # aligned with the zarr chunks: no lock
        f = [2**k if a in "YX" else 1 for a in axes]
        datasets.append({"path": f"s{k}", "coordinateTransformations": [
            {"type": "scale", "scale": [s * fi for s, fi in zip(size, f)]},
            {"type": "translation", "translation": [s * (fi - 1) / 2 for s, fi in zip(size, f)]},
        ]})
    write_multiscales_metadata(group, datasets, axes=_space_axes(axes),
                               axes_units=_scale_kwargs(axes, pixel_size, unit).get("axes_units"),
                               name=name)


def _halve(a: Any, nearest: bool) -> Any:
    """``a`` at half resolution along its last two axes (odd edges dropped)."""
    import dask.array as da

    h, w = a.shape[-2:]
    a = a[..., : h - h % 2, : w - w % 2]
    if nearest:
        return a[..., ::2, ::2]
    a = a.rechunk({ax: _even_chunks(a.shape[ax], max(a.chunks[ax])) for ax in (a.ndim - 2, a.ndim - 1)})
    mean = da.coarsen(np.mean, a, {a.ndim - 2: 2, a.ndim - 1: 2})
    return mean.round().astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else mean.astype(a.dtype)


def _even_chunks(n: int, c: int) -> tuple[int, ...]:
    """Chunks of an even length ``n`` that are all even (``c`` rounded down to even)."""
    c = max(2, c - c % 2)
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def _scale_factors(yx: tuple[int, ...]) -> tuple[int, ...]:
    """Pyramid factors 2, 4, ... while the smallest level stays >= 256 pixels wide."""
    out, f = [], 2
    while min(yx) // f >= 256 and len(out) < 8:
        out.append(f)
        f *= 2
    return tuple(out)


def write_zarr(path: str | os.PathLike, data: Any, *, axes: str, overwrite: bool = False) -> Path:
    """Write ``data`` (dask array or ndarray) as one zarr array, block by block, atomically."""
    import dask.array as da

    data = da.asarray(data)
    with atomic_output(path, overwrite=overwrite) as tmp:
        da.to_zarr(data, os.fspath(tmp))
        import zarr

        zarr.open_array(tmp, mode="r+").attrs["axes"] = axes
    return Path(path)


def write_tiled_tiff(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str,
    pixel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    tile: int = 256,
    overwrite: bool = False,
) -> Path:
    """Write a 2D or 3D dask array as a tiled, zlib-compressed BigTIFF, one block row at a time.

    Memory: one row of the dask array's blocks (``block height x image width``) at a time.
    """
    import dask.array as da
    import tifffile

    data = da.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(f"a tiled TIFF takes (Y, X) or (Z, Y, X) data, got shape {data.shape}")
    kwargs: dict[str, Any] = {"metadata": {"axes": axes}}
    if pixel_size is not None and unit:
        kwargs["resolution"] = (1.0 / pixel_size[-1], 1.0 / pixel_size[-2])
        kwargs["metadata"]["unit"] = unit
    with atomic_output(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp, _tiles(data, tile), shape=data.shape, dtype=data.dtype, tile=(tile, tile),
            bigtiff=True, compression="zlib", photometric="minisblack", **kwargs,
        )
    return Path(path)


def _tiles(data: Any, tile: int) -> Iterator[np.ndarray]:
    """Tiles ``(tile, tile)`` of every plane in the order tifffile writes them (rows of tiles)."""
    planes = [data] if data.ndim == 2 else [data[z] for z in range(data.shape[0])]
    for plane in planes:
        h, w = plane.shape
        row_h = max(tile, (plane.chunksize[0] // tile) * tile)
        for y0 in range(0, h, row_h):
            rows = np.asarray(plane[y0 : y0 + row_h].compute())
            for ty in range(0, rows.shape[0], tile):
                for tx in range(0, w, tile):
                    t = np.zeros((tile, tile), rows.dtype)
                    part = rows[ty : ty + tile, tx : tx + tile]
                    t[: part.shape[0], : part.shape[1]] = part
                    yield t
