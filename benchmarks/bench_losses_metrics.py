"""Speed of the losses and metrics, each against a baseline timed in the same run.

Usage: ``PYTHONPATH=src python benchmarks/bench_losses_metrics.py [--size 2048] [--objects 3000]``

- Losses: forward+backward of every loss on a batch of 4 tiles (100, 150, 200 px, K=2), as a
  ratio to 'wce' (the default loss), and to a forward+backward of a small U-Net
  (depth 3, 16 base channels, 'same' padding) on the same batch, i.e. what a training step costs.
- Metrics on a synthetic ``size x size`` image with ``objects`` disc-like cells: ``match_instances``
  at IoU 0.5 and 0.3, ``segmentation_metrics`` (incl. boundary F1), against the baseline
  ``np.bincount`` over the image (one pass of memory).
Synthetic data only (no dataset needed). Timings: median of repeats of the process CPU time,
with torch limited to one thread, so that other load on a shared machine does not distort them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _median_time(fn, repeats: int) -> float:
    """Median CPU time of this process (robust on a shared VM; torch runs single-threaded here)."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def synthetic_instances(size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(true, pred)`` uint32 label images with ``n`` cells; pred = shifted/eroded/merged/missing."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.uint32)
    ys, xs = rng.integers(0, size, n), rng.integers(0, size, n)
    ids = rng.choice(2**31, n, replace=False).astype(np.uint32) + 1  # non-contiguous ids
    seeds[ys, xs] = ids
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    radius = 0.35 * size / np.sqrt(n)
    true = np.where(dist < radius * 1.3, seeds[iy, ix], 0).astype(np.uint32)
    pred = np.roll(true, (1, 2), axis=(0, 1))
    drop = rng.choice(ids, n // 10, replace=False)
    pred[np.isin(pred, drop)] = 0  # missed cells
    pred = np.where(rng.random(pred.shape) < 0.02, 0, pred)  # noise
    return true, pred


def bench_losses(repeats: int) -> None:
    from unet_core.config import ModelConfig
    from unet_core.models import build_model
    from unet_core.training.losses import available_losses, build_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=3, base_channels=16, padding="same"))
    print("\nlosses: forward+backward, batch of 4 tiles, K=2 (median CPU ms of", repeats, "runs, 1 thread)")
    print(f"{'tile':>6} {'loss':>18} {'ms':>8} {'x wce':>7} {'x U-Net step':>13}")
    for tile in (100, 152, 200):
        x = torch.randn(4, 1, tile, tile)
        target = torch.zeros(4, tile, tile, dtype=torch.int64)
        for i in range(4):
            yy, xx = np.ogrid[:tile, :tile]
            for cy, cx in np.random.default_rng(i).integers(0, tile, (12, 2)):
                target[i][torch.from_numpy((yy - cy) ** 2 + (xx - cx) ** 2 < (tile / 10) ** 2)] = 1
        weight = torch.ones(4, tile, tile)
        weight[:, :, : tile // 4] = 0

        def net_step(x=x, target=target, weight=weight):
            model.zero_grad()
            out = model(x)
            build_loss("wce", n_classes=2)(out, target, weight).backward()

        net_t = _median_time(net_step, max(3, repeats // 3))
        times = {}
        for name in (*available_losses(), "wce+0.01*boundary", "wce+dice"):
            loss = build_loss(name, n_classes=2)
            logits = torch.randn(4, 2, tile, tile, requires_grad=True)

            def step(loss=loss, logits=logits, target=target, weight=weight):
                loss(logits, target, weight).backward()

            step()
            times[name] = _median_time(step, repeats)
        for name, t in times.items():
            print(f"{tile:>6} {name:>18} {1e3 * t:8.2f} {t / times['wce']:7.2f} {t / net_t:13.3f}")
        print(f"{tile:>6} {'(U-Net step)':>18} {1e3 * net_t:8.2f}")


def bench_metrics(size: int, objects: int, repeats: int) -> None:
    from unet_core.metrics import match_instances, segmentation_metrics

    true, pred = synthetic_instances(size, objects)
    n_true = len(np.unique(true)) - 1
    base = _median_time(lambda: np.bincount(true.reshape(-1) & 0xFFFF), repeats)
    print(f"\nmetrics on {size}x{size}, {n_true} true objects (median CPU ms of {repeats} runs)")
    print(f"{'function':>36} {'ms':>9} {'x bincount':>11}")
    print(f"{'np.bincount (baseline)':>36} {1e3 * base:9.1f} {1.0:11.1f}")
    rows = {
        "match_instances(thr=0.5)": lambda: match_instances(pred, true, 0.5),
        "match_instances(thr=0.3)": lambda: match_instances(pred, true, 0.3),
        "match_instances(thr=0.1)": lambda: match_instances(pred, true, 0.1),
        "segmentation_metrics(K=2)": lambda: segmentation_metrics(
            (pred > 0).astype(np.uint8), (true > 0).astype(np.uint8), n_classes=2
        ),
    }
    for name, fn in rows.items():
        t = _median_time(fn, repeats)
        print(f"{name:>36} {1e3 * t:9.1f} {t / base:11.1f}")
    m = match_instances(pred, true, 0.5)
    print(f"(check: AP@0.5 = {m.ap:.3f}, TP {m.tp}, FP {m.fp}, FN {m.fn}, mean IoU {m.mean_matched_iou:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--objects", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench_losses(args.repeats)
    bench_metrics(args.size, args.objects, max(3, args.repeats // 3))


if __name__ == "__main__":
    main()
