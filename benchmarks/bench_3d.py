"""3D U-Net vs per-slice 2D U-Net on synthetic anisotropic nuclei stacks (docs/3d.md).

For each anisotropy, a stack from :func:`unet_core.sample_data_3d.synthetic_nuclei_3d` is split in
x: both models train on the left half (every second slice painted: sparse 3D annotation) with the
same CPU-time budget and one torch thread, and segment the right half; 3D instances are scored
against the ground truth with :func:`unet_core.metrics.match_instances` (AP = TP / (TP+FP+FN)).
The 2D baseline labels slice by slice (ids unique across the stack), as today's tool does.

Usage: ``python benchmarks/bench_3d.py quality --budget 60`` and
``python benchmarks/bench_3d.py throughput --shape 64,256,256`` (peak RSS per process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch

from unet_core.config import ModelConfig, TrainConfig, anisotropic_pool_z
from unet_core.metrics import match_instances
from unet_core.pipeline import segment
from unet_core.progress import run_to_end
from unet_core.sample_data_3d import synthetic_nuclei_3d
from unet_core.tiling import predict_tiled, predict_whole
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train


def _ap(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    for t in (0.5, 0.7):
        m = match_instances(pred, truth, t)
        out[f"AP@{t}"] = m.tp / max(1, m.tp + m.fp + m.fn)
    out["n_pred"], out["n_true"] = int(pred.max()), int(len(np.unique(truth)) - 1)
    return out


def _train(pair: TrainingPair, dims: int, voxel: tuple[float, ...], budget: float):
    if dims == 3:
        model = ModelConfig(depth=2, base_channels=8, batch_norm=True, spatial_dims=3,
                            pool_z=anisotropic_pool_z(voxel, 2))
        extra = {"tile_size": 32, "batch_size": 2}
    else:
        model = ModelConfig(depth=3, base_channels=16, batch_norm=True)
        extra = {"tile_size": 64, "batch_size": 4}
    cfg = TrainConfig(model=model, iterations=10**6, time_limit=budget, time_clock="process",
                      device="cpu", voxel_size=voxel, val_fraction=0.0, warmup=5, **extra)
    t0 = time.process_time()
    result = run_to_end(train([pair], cfg))
    return result.model, result.steps, time.process_time() - t0


def quality(budget: float, seed: int) -> list[dict]:
    rows = []
    for aniso, z in ((2.0, 32), (4.0, 16)):
        s = synthetic_nuclei_3d((z, 96, 192), anisotropy=aniso, seed=seed)
        half = s.image.shape[2] // 2
        painted = s.labels[:, :, :half].copy()
        painted[1::2] = 0  # sparse: every second slice painted, the others ignored
        pair = TrainingPair(s.image[:, :, :half], painted, name=f"aniso{aniso}")
        test_img, test_gt = s.image[:, :, half:], s.labels[:, :, half:]
        for dims in (3, 2):
            net, steps, cpu = _train(pair, dims, s.voxel_size, budget)
            t0 = time.perf_counter()
            seg = segment(net, test_img, device="cpu", **({"voxel_size": s.voxel_size} if dims == 3 else {}))
            pred_s = time.perf_counter() - t0
            row = {"anisotropy": aniso, "model": f"{dims}D", "steps": steps, "train_cpu_s": round(cpu, 1),
                   "predict_s": round(pred_s, 2), **_ap(seg.labels, test_gt)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def throughput(shape: tuple[int, ...], pool_z: tuple[bool, ...]) -> dict:
    torch.manual_seed(0)
    from unet_core.models import build_model

    net = build_model(ModelConfig(depth=2, base_channels=8, batch_norm=True, spatial_dims=3, pool_z=pool_z)).eval()
    vol = np.random.default_rng(0).random(shape).astype(np.float32)
    t0 = time.perf_counter()
    tiled = predict_tiled(net, vol, device="cpu")
    secs = time.perf_counter() - t0
    row = {"shape": list(shape), "pool_z": list(pool_z), "seconds": round(secs, 2),
           "MVoxel_per_s": round(np.prod(shape) / secs / 1e6, 3),
           "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    small = vol[:24, :96, :96]
    row["tiled_vs_whole_max_abs"] = float(np.abs(predict_tiled(net, small, tile_shape=(8, 32, 32))
                                                 - predict_whole(net, small)).max())
    del tiled
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("quality", "throughput"))
    p.add_argument("--budget", type=float, default=60.0, help="CPU seconds per training run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", default="64,256,256")
    p.add_argument("--pool-z", default="0,1")
    a = p.parse_args()
    print(json.dumps({"load_average": os.getloadavg()}), flush=True)
    if a.what == "quality":
        quality(a.budget, a.seed)
    else:
        throughput(tuple(int(v) for v in a.shape.split(",")), tuple(v == "1" for v in a.pool_z.split(",")))


if __name__ == "__main__":
    main()
