"""Benchmark: banded boundary weight map vs the straightforward method, in the same run.

The straightforward method (kept here as the baseline) computes one distance transform of
``labels != i`` over the whole image per object and keeps the two smallest distances per pixel:
O(objects x pixels). ``unet_core.weights.boundary_weight_map`` computes each object's distance
transform only on its bounding box grown by the influence distance (about 5.3 sigma).

Test images: touching cells from a Voronoi partition of uniformly random seeds, each cell clipped
to the pixels within ``0.45 * sqrt(pixels / cells)`` of its seed (so neighbouring cells touch
along Voronoi edges and others are separated by background).

Timing is interleaved (fast, baseline, fast, ...) so load on the shared machine hits both; the
fast time is the median of its runs, the baseline the mean of its runs (one run for the slowest
cases). Prints one line per case and a Markdown table at the end.

Usage::

    PYTHONPATH=src python benchmarks/bench_weights.py            # full table (about 20 min)
    PYTHONPATH=src python benchmarks/bench_weights.py --quick    # 512^2 only
    PYTHONPATH=src python benchmarks/bench_weights.py --isbi /path/to/isbi2012
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from unet_core.labels import as_instance_labels
from unet_core.weights import boundary_weight_map, class_balance_weights, separate_touching_objects

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the baseline


def border_term_straightforward(
    labels: np.ndarray, *, w0: float, sigma: float, sampling: Sequence[float] | None = None
) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))``: one full-image distance transform per object."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    out = np.zeros(labels.shape, np.float32)
    if len(ids) < 2:
        return out
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for i in ids:
        d = ndi.distance_transform_edt(labels != i, sampling=sampling)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    out[:] = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return out


def weight_map_straightforward(
    labels: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0, class_balance: bool = True,
    mask: np.ndarray | None = None, sampling: Sequence[float] | None = None, separate_touching: bool = True,
) -> np.ndarray:
    """The whole weight map with :func:`border_term_straightforward` (the first version's code)."""
    labels = as_instance_labels(labels)
    if separate_touching:
        labels = separate_touching_objects(labels)
    fg = labels > 0
    w = class_balance_weights(fg, mask) if class_balance else np.ones(labels.shape, np.float32)
    if mask is not None and not class_balance:
        w[~mask] = 0
    border = border_term_straightforward(labels, w0=w0, sigma=sigma, sampling=sampling)
    border[fg] = 0
    if mask is not None:
        border[~mask] = 0
    return (w + border).astype(np.float32)


# ----------------------------------------------------------------------------- test images


def touching_cells(shape: tuple[int, ...], n_cells: int, *, seed: int = 0, clip: float = 0.45) -> np.ndarray:
    """Voronoi cells of ``n_cells`` random seeds, clipped at ``clip * sqrt(pixels / n_cells)``.

    Returns uint32 labels (ids 1..n, some cells may be hidden by duplicates seeds).
    """
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(shape)), size=n_cells, replace=False)
    pts = np.unravel_index(flat, shape)
    not_seed = np.ones(shape, bool)
    not_seed[pts] = False
    ids = np.zeros(shape, np.uint32)
    ids[pts] = np.arange(1, n_cells + 1, dtype=np.uint32)
    dist, idx = ndi.distance_transform_edt(not_seed, return_indices=True)
    labels = ids[tuple(idx)]
    labels[dist > clip * (np.prod(shape) / n_cells) ** (1 / len(shape))] = 0
    return labels


def describe(labels: np.ndarray) -> str:
    sep = separate_touching_objects(labels)
    touching = np.unique(labels[(labels > 0) & (sep == 0)]).size
    return f"{np.unique(labels).size - 1} cells, {100 * np.mean(labels > 0):.0f}% fg, {touching} touch a larger id"


# ----------------------------------------------------------------------------- timing


def bench_case(name: str, labels: np.ndarray, *, baseline_runs: int, fast_runs: int, **kw) -> dict:
    fast_times, base_times = [], []
    fast = base = None
    for r in range(max(fast_runs, baseline_runs)):
        if r < fast_runs:
            t = time.perf_counter()
            fast = boundary_weight_map(labels, **kw)
            fast_times.append(time.perf_counter() - t)
        if r < baseline_runs:
            t = time.perf_counter()
            base = weight_map_straightforward(labels, **kw)
            base_times.append(time.perf_counter() - t)
    t = time.perf_counter()  # one more fast run after the (last) baseline
    boundary_weight_map(labels, **kw)
    fast_times.append(time.perf_counter() - t)
    tracemalloc.start()
    boundary_weight_map(labels, **kw)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row = {
        "case": name,
        "baseline_s": statistics.mean(base_times),
        "fast_s": statistics.median(fast_times),
        "max_abs_diff": float(np.abs(fast.astype(np.float64) - base).max()),
        "peak_bytes_per_px": peak / labels.size,
        "runs": f"{len(base_times)}/{len(fast_times)}",
    }
    row["speedup"] = row["baseline_s"] / row["fast_s"]
    print(
        f"{name:28s} baseline {row['baseline_s']:9.3f} s  fast {row['fast_s']:7.4f} s  "
        f"speed-up {row['speedup']:7.0f}x  max|diff| {row['max_abs_diff']:.2e}  "
        f"peak {row['peak_bytes_per_px']:.1f} B/px  (runs {row['runs']})",
        flush=True,
    )
    return row


def isbi_labels(path: Path | None) -> np.ndarray | None:
    """Slice 0 of the ISBI 2012 labels as instances (cells = connected 255 regions)."""
    if path is None:
        env = os.environ.get("UNET_ISBI_DIR")
        path = Path(env) if env else REPO.parent / "shared" / "data" / "isbi2012"
    f = Path(path) / "train-labels.tif"
    if not f.is_file():
        print(f"(ISBI 2012 row skipped: {f} not found; pass --isbi DIR or set UNET_ISBI_DIR)")
        return None
    import tifffile

    lab = tifffile.imread(f)[0]
    out, _ = ndi.label(lab > 0)
    return out.astype(np.uint32)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="512^2 only")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--cells", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--isbi", type=Path, default=None, help="folder with ISBI 2012 train-labels.tif (optional row)")
    p.add_argument("--w0", type=float, default=10.0)
    p.add_argument("--sigma", type=float, default=5.0)
    args = p.parse_args(argv)
    sizes = [512] if args.quick else args.sizes
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} logical CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")
    print(f"w0={args.w0} sigma={args.sigma}; baseline = one full-image EDT per object; fast = banded crops")
    kw = dict(w0=args.w0, sigma=args.sigma)
    rows = []
    for size in sizes:
        for n in args.cells:
            lab = touching_cells((size, size), n, seed=size + n)
            # baseline runs: enough for a stable mean where cheap, one where it takes minutes
            cost = size * size * n
            runs = 3 if cost <= 512 * 512 * 200 else 2 if cost <= 1024 * 1024 * 200 else 1
            print(f"-- {size}x{size}: {describe(lab)}", flush=True)
            rows.append(bench_case(f"{size}^2, {n} cells", lab, baseline_runs=runs, fast_runs=3, **kw))
    lab = isbi_labels(args.isbi)
    if lab is not None:
        print(f"-- ISBI 2012 labels slice 0 {lab.shape}: {describe(lab)}", flush=True)
        rows.append(bench_case("ISBI 2012 slice 0 (512^2)", lab, baseline_runs=1, fast_runs=3, **kw))
    lab3 = touching_cells((64, 128, 128), 150, seed=7)
    print(f"-- 3D 64x128x128, sampling (2,1,1): {describe(lab3)}", flush=True)
    rows.append(bench_case("3D 64x128^2, 150 cells", lab3, baseline_runs=1, fast_runs=3,
                           sampling=(2.0, 1.0, 1.0), **kw))
    print()
    print("| case | straightforward (s) | banded (s) | speed-up | max abs diff | peak B/px | runs base/fast |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['case']} | {r['baseline_s']:.2f} | {r['fast_s']:.3f} | {r['speedup']:.0f}x | "
              f"{r['max_abs_diff']:.1e} | {r['peak_bytes_per_px']:.1f} | {r['runs']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
