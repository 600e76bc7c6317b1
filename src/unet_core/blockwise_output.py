"""Block-wise segmentation of a lazy image straight into a file (OME-Zarr, zarr or tiled TIFF).

:func:`iter_segment_to_file` runs :func:`~unet_core.blockwise.iter_segment_blockwise` in a
hidden work folder beside the output and writes the instance labels with :func:`write_result`,
which writes under a temporary name and renames when complete
(:func:`~unet_core.lazy_io.atomic_output`): a stopped or failed run leaves nothing under the
output's name. The Predict widget's "Predict whole image to file" and ``napari-unet predict``
(block-wise) write through here.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .blockwise import BlockwiseConfig, iter_segment_blockwise, release_worker_forward
from .errors import InputError
from .progress import Progress

log = logging.getLogger(__name__)


def write_result(
    path: str | os.PathLike,
    array: Any,
    *,
    axes: str,
    pixel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    image: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a lazy result by the path's ending: OME-Zarr (with ``image`` at its root when
    given), a zarr array or a tiled BigTIFF; atomically (see :mod:`unet_core.lazy_io`).

    Parameters
    ----------
    path : path-like
        ``.ome.zarr``, ``.zarr`` or ``.tif``/``.tiff``.
    array : dask array or ndarray, shape per ``axes``
        Labels (unsigned int) or probabilities (float32).
    axes : str
        Its axes ('YX' or 'ZYX').
    pixel_size, unit : optional
        Physical size per axis and its unit (OME-Zarr and TIFF).
    image : dask array, optional
        The single-channel image (same shape), written at the root of an OME-Zarr.
    """
    from .lazy_io import kind_of, write_ome_zarr, write_tiled_tiff, write_zarr

    kind = kind_of(path)
    if kind == "ome-zarr":
        return write_ome_zarr(path, array, image=image, axes=axes, pixel_size=pixel_size, unit=unit,
                              overwrite=overwrite)
    if kind == "zarr":
        return write_zarr(path, array, axes=axes, overwrite=overwrite)
    return write_tiled_tiff(path, array, axes=axes, pixel_size=pixel_size, unit=unit, overwrite=overwrite)


@dataclass(frozen=True)
class FileSegmentation:
    """What :func:`iter_segment_to_file` returns.

    Attributes
    ----------
    path : Path
        The written file or folder.
    n_objects : int
    shape : tuple of int
        Spatial shape of the labels (``([Z,] Y, X)``).
    """

    path: Path
    n_objects: int
    shape: tuple[int, ...]


def iter_segment_to_file(
    model: Any,
    data: Any,
    postprocess: Any,
    output: str | os.PathLike,
    config: BlockwiseConfig = BlockwiseConfig(),
    *,
    pixel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    tile_shape: int | None = None,
    overwrite: bool = False,
) -> Generator[Progress, None, FileSegmentation]:
    """Segment a ``(C, [Z,] Y, X)`` dask array block by block into ``output``.

    Parameters
    ----------
    model : path or SegmentationNet
        As :func:`~unet_core.blockwise.blockwise_probabilities`; its cached forward is released
        at the end (a model trained further is prepared again next time).
    data : dask array, shape (C, [Z,] Y, X)
        See :func:`~unet_core.blockwise.as_channel_first`.
    postprocess : PostprocessConfig
    output : path-like
        ``.ome.zarr`` (labels under ``labels/labels``, a single-channel image at the root, both
        multiscale), ``.zarr`` or ``.tif``.
    config : BlockwiseConfig
    pixel_size, unit : optional
        Physical size per spatial axis of the labels and its unit.
    tile_shape : int, optional
        Output tile edge inside a block.
    overwrite : bool
        Replace an existing ``output`` (else :class:`InputError` before any work).

    Yields
    ------
    Progress
        'predict' and 'postprocess' records, then one 'write' record. Closing the generator
        stops the blocks not yet started and removes the work folder.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; allow overwriting or choose another name")
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.work.", dir=output.parent))
    try:
        result = yield from iter_segment_blockwise(model, data, postprocess, workdir, config, tile_shape=tile_shape)
        yield Progress("write", 0, 1, f"writing {output.name}")
        axes = "ZYX"[-(data.ndim - 1):]
        image = data[0] if data.shape[0] == 1 else None
        write_result(output, result.labels, axes=axes, pixel_size=pixel_size, unit=unit, image=image,
                     overwrite=overwrite)
        log.info("wrote %s: %d objects", output, result.n_objects)
        return FileSegmentation(output, int(result.n_objects), tuple(int(n) for n in result.labels.shape))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if config.address is None:
            release_worker_forward(model)
