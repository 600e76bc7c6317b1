"""Where block-wise prediction spends its time: the network pass vs the instance post-processing.

    PYTHONPATH=src:. python benchmarks/bench_stages.py [--size 4096] [--workers 1] [--models tiny nuclei]

For each model, one run of :func:`unet_core.blockwise.iter_segment_blockwise` on the same
synthetic ``size``² uint8 image (``bench_cli_huge.make_scan``: discs on noise, generated in
1000-px chunks so objects cross the 1024-px blocks): seconds of the 'predict' graph (read, normalise,
network, write the foreground) and of the 'postprocess' graph (threshold, seeds, watershed,
block-local ids, face merges), and their ratio. ``tiny`` is the 40-CPU-s-trained depth-2 4-channel
U-Net of ``bench_cli_huge.py``; ``nuclei`` the built-in model (depth 3, 16 channels, 'same').
Prints a markdown table and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli_huge import make_model, make_scan  # noqa: E402


def stage_seconds(model: str, scan: Path, workers: int) -> dict[str, float]:
    from unet_core.blockwise import BlockwiseConfig, as_channel_first, iter_segment_blockwise
    from unet_core.config import PostprocessConfig
    from unet_core.lazy_io import open_lazy
    from unet_core.pipeline import postprocess_for

    img = open_lazy(scan)
    data = as_channel_first(img.data, img.axes, None, 2)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    post = postprocess_for(model) if "builtin" in Path(model).parts else PostprocessConfig()
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        gen = iter_segment_blockwise(model, data, post, work, BlockwiseConfig(block_size=1024, workers=workers, device="cpu"))
        for p in gen:
            first.setdefault(p.stage, time.perf_counter())
            last[p.stage] = time.perf_counter()
    start_predict = first["predict"]  # after the model load and the statistics
    return {
        "setup": start_predict - t0,
        "predict": last["predict"] - start_predict,
        "postprocess": last["postprocess"] - last["predict"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=["tiny", "nuclei"])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_stages")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    scan = args.dir / f"scan{args.size}.ome.zarr"
    if not scan.exists():
        make_scan(scan, args.size)
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    print("| model | image | workers | set-up s | network pass s | post-processing s | end to end / network |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        from unet_core.builtin_models import resolve_model_source

        model = str(args.dir / "tiny.pt") if name == "tiny" else str(resolve_model_source(name))
        if name == "tiny":
            model = str(args.dir / "tiny.pt")
            if not Path(model).exists():
                make_model(Path(model))
        s = stage_seconds(model, scan, args.workers)
        ratio = (s["predict"] + s["postprocess"]) / s["predict"]
        print(f"| {name} | {args.size}² | {args.workers} | {s['setup']:.1f} | {s['predict']:.1f} | "
              f"{s['postprocess']:.1f} | {ratio:.2f} |", flush=True)
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
