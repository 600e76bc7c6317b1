"""End to end through the CLI on an image that does not fit in memory: OME-Zarr in, OME-Zarr out.

    PYTHONPATH=src:. python benchmarks/bench_cli_huge.py --size 50000 --workers 2 --dir /path/with/space

1. A ``size``\\ ² uint8 synthetic image (bright discs on noise, ``bench_blockwise._blobs``) is
   written block by block with dask as an OME-Zarr (``scan.ome.zarr``; never whole in memory).
2. A tiny U-Net (depth 2, 4 base channels, 'valid', batch norm) is trained for 40 CPU seconds on a
   512² image of the same kind (so its foreground is realistic, unlike random weights), and saved.
3. ``napari-unet predict m.pt scan.ome.zarr -o out.ome.zarr --workers W --block-size B`` runs
   under ``/usr/bin/time -v`` (wall clock and the process's peak RSS; dask's local scheduler runs
   its workers as threads of that one process).
4. The result is opened lazily (:func:`unet_core.lazy_io.open_lazy`, as napari's reader does):
   its levels and a few pixels are read.

Prints one markdown row (and the stage times from the CLI's log) plus the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_blockwise import _blobs  # noqa: E402


def make_scan(path: Path, size: int) -> float:
    """Write the synthetic ``size``² uint8 OME-Zarr (one level); returns seconds."""
    import dask.array as da
    import zarr
    from ome_zarr.writer import write_image

    t0 = time.perf_counter()
    # generated in 1000-px chunks, so that discs cross the 1024-px prediction blocks
    x = da.zeros((size, size), np.uint8, chunks=1000).map_blocks(_blobs, dtype=np.uint8)
    root = zarr.open_group(os.fspath(path), mode="w")
    write_image(x, root, scale_factors=(), axes="yx")
    return time.perf_counter() - t0


def make_model(path: Path) -> None:
    """A tiny U-Net trained for 40 CPU seconds on a 512² image of the same kind."""
    import torch
    from scipy import ndimage as ndi

    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig, TrainConfig
    from unet_core.progress import run_to_end
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import train

    torch.set_num_threads(1)
    img = _blobs(np.zeros((512, 512), np.uint8), {None: {"array-location": [(7, 519), (0, 512)]}})
    lab = ndi.label(img > 100)[0]
    cfg = TrainConfig(
        model=ModelConfig(depth=2, base_channels=4, padding="valid", batch_norm=True),
        iterations=10**6, time_limit=40, time_clock="process", device="cpu", val_fraction=0,
    )
    save_checkpoint(path, run_to_end(train([TrainingPair(img, lab)], cfg)).model)


def run_cli(model: Path, scan: Path, out: Path, workers: int, block: int) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "unet_core.cli", "-v", "predict", str(model),
           str(scan), "-o", str(out), "--workers", str(workers), "--block-size", str(block),
           "--device", "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    objects = int(re.search(r"wrote .*: (\d+) objects", proc.stdout).group(1))
    return {"wall_s": wall, "peak_gb": rss_kb / 2**20, "objects": objects, "log": proc.stderr}


def check_output(out: Path) -> str:
    """Open the result lazily, as napari's reader does; its levels and a pixel sum."""
    from unet_core.lazy_io import open_lazy

    t0 = time.perf_counter()
    img = open_lazy(out / "labels" / "labels")
    shape = tuple(img.data.shape)
    corner = np.asarray(img.data[:512, :512])
    return f"labels {shape} {img.data.dtype} opened lazily in {time.perf_counter() - t0:.2f} s, " \
           f"{len(np.unique(corner)) - 1} objects in the 512² corner"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench_cli_huge"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    scan, model = args.dir / f"scan{args.size}.ome.zarr", args.dir / "tiny.pt"
    out = args.dir / f"out{args.size}-w{args.workers}.ome.zarr"
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    if not scan.exists():
        print(f"wrote the {args.size}² scan in {make_scan(scan, args.size):.0f} s", file=sys.stderr)
    if not model.exists():
        make_model(model)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    r = run_cli(model, scan, out, args.workers, args.block)
    stages = [ln for ln in r["log"].splitlines() if "block-wise" in ln or "objects from" in ln or "wrote" in ln]
    print("\n".join(stages), file=sys.stderr)
    mpx = args.size**2 / 1e6
    print("| image | workers | block | seconds | Mpx/s | peak RSS (GB) | objects |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.size}² | {args.workers} | {args.block} | {r['wall_s']:.0f} | {mpx / r['wall_s']:.2f} | "
          f"{r['peak_gb']:.2f} | {r['objects']} |")
    print(check_output(out))
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
