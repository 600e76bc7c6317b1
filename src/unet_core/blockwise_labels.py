"""Instance labels of an image larger than memory, block by block, with globally unique ids.

Three dask passes, each with memory bounded by the block size:

1. every block is post-processed (:func:`~unet_core.postprocess.instances_from_foreground`:
   threshold, distance-transform watershed, small-object removal) on its foreground extended by
   a ``halo`` of real context, cropped back to the block and numbered 1..n locally; the local
   labels go to a zarr array, and the task returns n and its labels of the pixels just beyond
   each face (from the extended region);
2. global ids by running offsets (the cumulative sum of the block counts; no digit packing);
3. objects crossing block faces are merged as dask-image's ``ndmeasure.label`` does (face
   adjacency -> connected components -> relabel), except that two labels touching across a face
   are joined only when one block's extended labelling puts both pixels in the same object, so
   touching objects that the watershed separated stay apart. Each block then gets only its own
   slice of the relabel table.

Output ids are sequential 1..N, uint32 (uint64 when N does not fit). Stacks of 2D slices are
labelled slice by slice (ids unique across the stack), volumes of a 3D post-processing in 3D.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator
from typing import Any

import numpy as np

from .config import PostprocessConfig
from .progress import Progress

log = logging.getLogger(__name__)


def block_instances(
    ext: np.ndarray,
    core: tuple[slice, ...],
    postprocess: PostprocessConfig,
    per_slice: bool,
    store: Any,
    where: tuple[slice, ...],
) -> tuple[int, dict]:
    """Post-process one block with its halo; write its local labels; return ``(n, faces)``.

    Parameters
    ----------
    ext : ndarray of float32, shape ``([Z,] *ext_spatial)``, or (zarr array, tuple of slice)
        Foreground probability of the block and its halo, or where to read it.
    core : tuple of slice
        The block inside ``ext``.
    per_slice : bool
        Label every slice of a stack in 2D (else in ``ext.ndim`` dimensions).
    store : zarr array
        Local labels of the whole image (uint32); the block is written at ``where``.

    Returns
    -------
    n : int
        Objects in the block (local ids 1..n).
    faces : dict
        ``(axis, side) -> (own, beyond)``: the block's local labels on its face plane (side 0:
        first, 1: last) and its extended labelling of the plane just beyond it, in the same ids
        (0 where that object is not in the block); only for faces with a plane beyond.
    """
    from skimage.segmentation import relabel_sequential

    from .memory import release_freed_memory
    from .postprocess import foreground_to_instances

    if isinstance(ext, tuple):  # (zarr array, region): read here, so no task holds another's input
        source, region = ext
        ext = np.asarray(source[region])
    labels = foreground_to_instances(ext > postprocess.threshold, postprocess, per_slice=per_slice)
    del ext
    own = labels[core]
    local, forward, _ = relabel_sequential(own)
    kept = np.zeros(int(labels.max(initial=0)) + 1, np.uint32)
    kept[forward.in_values] = forward.out_values
    store[where] = local.astype(np.uint32)
    faces = _faces(labels, core, kept.astype(np.min_scalar_type(len(kept))), per_slice)  # the
    # faces of every block stay in the scheduler until the merge: smallest integer type
    del labels, own, local
    release_freed_memory()
    return int(kept.max(initial=0)), faces


def _faces(labels: np.ndarray, core: tuple[slice, ...], kept: np.ndarray, per_slice: bool) -> dict:
    faces = {}
    first_axis = 1 if per_slice and labels.ndim == 3 else 0
    for ax in range(first_axis, labels.ndim):
        for side in (0, 1):
            s = core[ax]
            inner = s.start if side == 0 else s.stop - 1
            outer = inner - 1 if side == 0 else inner + 1
            if not 0 <= outer < labels.shape[ax]:
                continue
            plane = list(core)
            plane[ax] = inner
            own = kept[labels[tuple(plane)]]
            plane[ax] = outer
            faces[(ax, side)] = (own, kept[labels[tuple(plane)]])
    return faces


def _face_pairs(low: dict, high: dict, ax: int, off_low: int, off_high: int) -> np.ndarray:
    """Global id pairs to merge across the face between two neighbours along ``ax``."""
    if (ax, 1) not in low or (ax, 0) not in high:
        return np.zeros((0, 2), np.int64)
    a_own, a_beyond = low[(ax, 1)]
    b_own, b_beyond = high[(ax, 0)]
    same = (a_own > 0) & (b_own > 0) & ((a_beyond == a_own) | (b_beyond == b_own))
    pairs = np.stack([a_own[same].astype(np.int64) + off_low, b_own[same].astype(np.int64) + off_high], 1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def relabel_table(counts: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Final id of every global id 0..sum(counts): connected components of the merge pairs.

    Parameters
    ----------
    counts : ndarray of int, one per block
    pairs : ndarray of int, shape (P, 2)
        Global ids to join.

    Returns
    -------
    ndarray of uint32 or uint64, shape (sum(counts) + 1,)
        0 for 0, then sequential ids 1..N ordered by each object's smallest global id.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(np.sum(counts)) + 1
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    dtype = np.uint32 if comp.max(initial=0) < 2**32 else np.uint64
    return comp.astype(dtype)  # node 0 (background) has no edges: component 0


def iter_label_blockwise(
    foreground: Any,
    postprocess: PostprocessConfig,
    store: Any,
    *,
    halo: int = 64,
    per_slice: bool = True,
    workers: int | None = None,
    client: Any = None,
    stop: Any = None,
) -> Generator[Progress, None, tuple[Any, int]]:
    """Instance labels of a lazy foreground probability, block by block (see the module doc).

    Parameters
    ----------
    foreground : dask or zarr array of float32, shape ``(Y, X)`` or ``(Z, Y, X)``
        ``1 - P(background)``; its chunks are the blocks. A zarr array is read by each block's
        task itself (its region with the halo), so the tasks share no inputs and the scheduler
        holds no block beyond the running ones.
    postprocess : PostprocessConfig
    store : zarr array of uint32, the shape of ``foreground``, chunks = its blocks
        Receives the local labels (pass 1); the returned array reads it.
    halo : int
        Context around each block along Y and X (and Z unless ``per_slice``).
    per_slice : bool
        Label ``(Z, Y, X)`` slice by slice (as the in-memory path labels stacks); False: in 3D.

    Yields
    ------
    Progress
        ``stage='postprocess'`` records from the dask graph.

    Returns
    -------
    (labels, n_objects)
        ``labels``: dask array of uint32 (uint64 when needed), sequential ids 1..N.
    """
    import dask
    import dask.array as da
    from dask.array.core import normalize_chunks

    from .blockwise import iter_compute

    chunks = normalize_chunks(foreground.chunks, foreground.shape)
    direct = not hasattr(foreground, "dask")  # a zarr array: each task reads its own region
    grid = list(itertools.product(*(range(len(c)) for c in chunks)))
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    spatial_from = 1 if per_slice and foreground.ndim == 3 else 0
    tasks = []
    for idx in grid:
        where = tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, idx))
        pad = [0 if ax < spatial_from else halo for ax in range(foreground.ndim)]
        ext = tuple(slice(max(0, w.start - p), min(n, w.stop + p)) for w, p, n in zip(where, pad, foreground.shape))
        core = tuple(slice(w.start - e.start, w.stop - e.start) for w, e in zip(where, ext))
        source = (foreground, ext) if direct else foreground[ext]
        tasks.append(dask.delayed(block_instances, pure=False)(source, core, postprocess, per_slice, store, where))
    results = yield from iter_compute(tasks, stage="postprocess", workers=workers, client=client, stop=stop)
    counts = np.array([n for n, _ in results], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pairs = _all_pairs(grid, results, offsets, spatial_from)
    table = relabel_table(counts, pairs)
    n_objects = int(table.max(initial=0))
    log.info("%d objects from %d block-local ones (%d face merges)", n_objects, counts.sum(), len(pairs))
    local = da.from_zarr(store)
    blocks = np.empty([len(c) for c in chunks], dtype=object)
    for k, (idx, d) in enumerate(zip(grid, local.to_delayed().ravel())):
        lut = table[offsets[k] : offsets[k] + counts[k] + 1].copy()
        lut[0] = 0
        shape = tuple(c[i] for c, i in zip(chunks, idx))
        blocks[idx] = da.from_delayed(dask.delayed(_apply)(d, lut), shape, table.dtype)
    return da.block(blocks.tolist()), n_objects


def _apply(local: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Local ids 0..n -> final ids (``lut[0] == 0``)."""
    return lut[local]


def _all_pairs(grid: list, results: list, offsets: np.ndarray, spatial_from: int) -> np.ndarray:
    where = {idx: k for k, idx in enumerate(grid)}
    out = [np.zeros((0, 2), np.int64)]
    for k, idx in enumerate(grid):
        for ax in range(spatial_from, len(idx)):
            nb = idx[:ax] + (idx[ax] + 1,) + idx[ax + 1 :]
            if nb in where:
                j = where[nb]
                out.append(_face_pairs(results[k][1], results[j][1], ax, offsets[k], offsets[j]))
    return np.concatenate(out)
