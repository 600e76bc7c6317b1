"""Block-wise (dask) vs in-memory prediction: peak RSS per process, throughput, label agreement.

Every run is its own subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is its peak; the
local dask scheduler runs its workers as threads of that one process). The image is a synthetic
nuclei-like uint8 image generated block by block with dask into a zarr array (never whole in
memory); the net is tiny (U-Net depth 2, 4 base channels, 'valid'; trained for 40 CPU-s on this
kind of image, or ``--weights random``) so that the pipeline, not the convolutions, is measured. Both paths get the same normalisation statistics.

Usage::

    PYTHONPATH=src:. python benchmarks/bench_blockwise.py [--sizes 4096 16384] [--inmemory-max 4096]

Prints a markdown table (the rows of docs/benchmarks-blockwise.md) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _blobs(block: np.ndarray, block_info=None) -> np.ndarray:
    """Bright discs on a dark noisy background for one block (seeded by its position)."""
    loc = block_info[None]["array-location"]
    h, w = block.shape
    rng = np.random.default_rng(loc[0][0] * 100003 + loc[1][0])
    yy, xx = np.mgrid[:h, :w]
    out = rng.normal(20, 5, (h, w))
    for _ in range(h * w // 900):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 11)
        sl = (slice(max(0, cy - r), cy + r + 1), slice(max(0, cx - r), cx + r + 1))
        d = (yy[sl] - cy) ** 2 + (xx[sl] - cx) ** 2 <= r * r
        out[sl][d] = 180 + rng.normal(0, 10)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_image(path: Path, size: int) -> None:
    """A ``size``^2 uint8 zarr array written block by block with dask."""
    import dask.array as da

    x = da.zeros((size, size), np.uint8, chunks=1024).map_blocks(_blobs, dtype=np.uint8)
    da.to_zarr(x, os.fspath(path), overwrite=True)


def make_model(path: Path, weights: str = "trained") -> None:
    """The tiny U-Net: trained for 40 CPU-s on this image kind (``bench_cli_huge.make_model``:
    a realistic foreground), or with random fixed weights (~90 % foreground: a dense, hard case
    for the post-processing)."""
    if weights == "trained":
        from bench_cli_huge import make_model as trained

        return trained(path)
    import torch

    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    torch.manual_seed(0)
    save_checkpoint(path, build_model(ModelConfig(depth=2, base_channels=4, padding="valid")))


def run_one(mode: str, model: str, image: str, out: str, workers: int, block: int) -> dict:
    """One measurement in this process; returns seconds, peak RSS and the object count."""
    import dask.array as da
    import zarr

    from unet_core.blockwise import (
        BlockwiseConfig,
        as_channel_first,
        iter_segment_blockwise,
        sampled_normalization_stats,
    )
    from unet_core.checkpoint import load_checkpoint
    from unet_core.config import PostprocessConfig
    from unet_core.progress import run_to_end

    src = da.from_zarr(image)
    net = load_checkpoint(model).model
    stats = sampled_normalization_stats(as_channel_first(src, "YX", None), net.config.normalization)
    t0 = time.perf_counter()
    if mode == "inmemory":
        from unet_core.normalization import apply_normalization
        from unet_core.pipeline import segment

        x = apply_normalization(np.asarray(src)[None], *stats)[0]
        labels = segment(net, x, normalize_input=False, device="cpu").labels
        zarr.open_array(out, mode="w", shape=labels.shape, chunks=(1024, 1024), dtype=labels.dtype)[:] = labels
        n = int(labels.max())
    else:
        cfg = BlockwiseConfig(block_size=block, workers=workers, device="cpu")
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as work:
            res = run_to_end(iter_segment_blockwise(
                model, as_channel_first(src, "YX", None), PostprocessConfig(), work, cfg
            ))
            da.to_zarr(res.labels, out, overwrite=True)
            n = res.n_objects
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"mode": mode, "workers": workers, "seconds": seconds, "peak_gb": rss, "objects": n}


def agreement(a_path: str, b_path: str) -> float:
    """Share of objects of ``a`` with an object in ``b`` of IoU >= 0.9 (both read whole)."""
    import zarr
    from scipy import ndimage as ndi

    a, b = np.asarray(zarr.open_array(a_path)), np.asarray(zarr.open_array(b_path))
    ok = n = 0
    sizes_b = np.bincount(b.ravel())
    for i, sl in enumerate(ndi.find_objects(a), 1):
        if sl is None:
            continue
        n += 1
        mine = a[sl] == i
        vals, counts = np.unique(b[sl][mine], return_counts=True)
        j, inter = vals[np.argmax(counts)], counts.max()
        ok += bool(j) and inter / (mine.sum() + sizes_b[j] - inter) >= 0.9
    return ok / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--inmemory-max", type=int, default=4096, help="largest size run in memory")
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--weights", choices=["trained", "random"], default="trained")
    ap.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        mode, model, image, out, workers, block = args.one
        print(json.dumps(run_one(mode, model, image, out, int(workers), int(block))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_model(tmp / "m.pt", args.weights)
        print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
        print("| image | path | workers | seconds | Mpx/s | peak RSS (GB) | objects | agreement |")
        print("|---|---|---|---|---|---|---|---|")
        for size in args.sizes:
            make_image(tmp / f"img{size}.zarr", size)
            runs = [("blockwise", 1), ("blockwise", 2)]
            if size <= args.inmemory_max:
                runs.insert(0, ("inmemory", 1))
            for mode, w in runs:
                out = tmp / f"{mode}{w}-{size}.zarr"
                cmd = [sys.executable, __file__, "--one", mode, str(tmp / "m.pt"), str(tmp / f"img{size}.zarr"),
                       str(out), str(w), str(args.block)]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                ref = tmp / f"inmemory1-{size}.zarr"
                agree = f"{agreement(str(ref), str(out)):.4f}" if mode != "inmemory" and ref.exists() else "-"
                print(f"| {size}² | {mode} | {w} | {r['seconds']:.1f} | {size * size / 1e6 / r['seconds']:.2f} | "
                      f"{r['peak_gb']:.2f} | {r['objects']} | {agree} |", flush=True)
        print(f"load average at end: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
