"""Overlap-tile prediction with mirror extrapolation (Ronneberger et al. 2015, Fig. 2).

Three parts, for images of any number of spatial axes:

- the splitter (:mod:`.splitter`): :func:`plan_tiles` makes a :class:`TilePlan`, the tile origins
  and shapes and, for padded nets, the blending window;
- the merger (:mod:`.merger`): a :class:`Merger` receives every tile output with ``add`` and
  gives the image with ``result``; :class:`NumpyMerger` fills one float32 array, and a
  :class:`MergerFactory` passed to :func:`iter_predict_tiled` supplies other storage;
- the forward loop (:mod:`.predict`, :mod:`.forward`): plan -> batches of mirror-cropped,
  normalised tiles -> model (TTA, AMP) -> merger, yielding progress.

For 'valid' networks the image is (virtually) mirror-extended by the network's ``border`` and cut
into input tiles whose *output* windows abut exactly. Tile starts are multiples of
``size_multiple``, so the pooling grid is the same in every tile and the result is identical to
one forward pass over the whole mirror-padded image, whatever the tile size. Padded ('same')
networks get tiles overlapping by twice their ``context`` plus a ramp, blended with a smooth
raised-cosine window that is zero where a tile's own zero padding reaches. Where ``context``
covers the network's whole receptive-field reach they too equal one pass over the mirror-padded
image, for any tile size. Bounds per architecture (tiled vs :func:`predict_whole`, tested):

- U-Net, 'valid' and 'same': within 1e-5 (float rounding, about 1e-6);
- FCN-32s/16s/8s: within 1e-5 (``context`` 256 >= their reach of 233-245 pixels);
- DeepLabv3+: not tile-size independent (ASPP and the sliding image pooling reach ~520 pixels,
  ``context`` is 64): on random weights and a nuclei image, 32-128 px tiles differ by up to 0.15
  (mean < 0.03); trained nets differ far less (docs/architectures.md). A tile covering the whole
  image (``tile_shape`` >= its shape) gives the whole pass.

Memory stays bounded: the mirror extension is never materialised (each tile is cropped from the
raw image with reflected indices and normalised on its own), so the peak is the raw image, the
float32 output and one batch of tile activations. The tile size is chosen from a memory budget
(free GPU memory on CUDA, a share of the available RAM capped at :data:`CPU_BUDGET_CAP` on the
CPU); a CUDA out-of-memory error halves the batch, then the tile, and retries.

:func:`iter_predict_tiled` is a generator yielding one :class:`~unet_core.progress.Progress`
record per batch of tiles and returning the probabilities; closing it (``.close()``) between
batches stops the job and returns nothing. :func:`predict_tiled` drains it.
"""

from .forward import DIHEDRAL, TileForward, prepared_forward, resolve_amp, resolve_tta, run_batch
from .memory import (
    CPU_BUDGET_CAP,
    CPU_MAX_TILE,
    GPU_BUDGET_FRACTION,
    GPU_MAX_TILE,
    MAX_BATCH,
    activation_bytes_per_pixel,
    choose_batch_size,
    choose_tile_shape,
    memory_budget,
)
from .merger import Merger, MergerFactory, NumpyMerger
from .predict import iter_predict_tiled, predict_tiled, predict_whole
from .splitter import TilePlan, padded_context, plan_tiles

__all__ = [
    "CPU_BUDGET_CAP", "CPU_MAX_TILE", "DIHEDRAL", "GPU_BUDGET_FRACTION", "GPU_MAX_TILE",
    "MAX_BATCH", "Merger", "MergerFactory", "NumpyMerger", "TileForward", "TilePlan",
    "activation_bytes_per_pixel", "choose_batch_size", "choose_tile_shape", "iter_predict_tiled",
    "memory_budget", "padded_context", "plan_tiles", "predict_tiled", "predict_whole",
    "prepared_forward", "resolve_amp", "resolve_tta", "run_batch",
]
