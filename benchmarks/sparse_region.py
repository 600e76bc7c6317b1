"""Sparse painting: 'ring' vs 'box' training region (docs/quality.md).

A synthetic nuclei image (``unet_core.sample_data.synthetic_nuclei``) with ~100 nuclei; the user
"paints" 10 of them (no region mask) and trains for a fixed CPU-time budget on one torch thread;
scored on the nuclei that were NOT painted (AP@0.5 and foreground IoU, painted nuclei and a
ring around them excluded from the score).

    PYTHONPATH=src python benchmarks/sparse_region.py --rule ring --budget 90 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import ndimage as ndi

from unet_core.config import TrainConfig
from unet_core.metrics import match_instances
from unet_core.pipeline import segment
from unet_core.progress import run_to_end
from unet_core.sample_data import synthetic_nuclei
from unet_core.training.data import TrainingPair
from unet_core.training.targets import BACKGROUND_LABEL
from unet_core.training.trainer import train


def score_unpainted(pred: np.ndarray, truth: np.ndarray, painted_ids: np.ndarray) -> dict:
    """AP@0.5 and foreground IoU outside the painted nuclei (grown by 3 pixels)."""
    excluded = ndi.binary_dilation(np.isin(truth, painted_ids), iterations=3)
    t = np.where(np.isin(truth, painted_ids), 0, truth)
    p = pred.copy()
    for i in np.unique(pred[excluded]):  # predictions of painted nuclei are not scored
        if i and (excluded[pred == i].mean() > 0.5):
            p[p == i] = 0
    m = match_instances(p, t, 0.5)
    fg_p, fg_t = (p > 0) & ~excluded, (t > 0) & ~excluded
    iou = (fg_p & fg_t).sum() / max(1, (fg_p | fg_t).sum())
    return {"ap50": m.tp / max(1, m.tp + m.fp + m.fn), "fg_iou": float(iou), "n_true": m.n_true,
            "n_pred": m.n_pred}


def add_strokes(labels: np.ndarray, truth: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Paint ``n`` horizontal background strokes (40 x 3 pixels, kept 3 pixels off nuclei)."""
    free = ~ndi.binary_dilation(truth > 0, iterations=3)
    h, w = labels.shape
    for _ in range(n):
        y, x = int(rng.integers(2, h - 3)), int(rng.integers(0, w - 40))
        sl = (slice(y - 1, y + 2), slice(x, x + 40))
        labels[sl] = np.where(free[sl], BACKGROUND_LABEL, labels[sl])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rule", choices=["ring", "box"], required=True)
    ap.add_argument("--budget", type=float, default=90.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--painted", type=int, default=10)
    ap.add_argument("--ring", type=int, default=TrainConfig.sparse_ring)
    ap.add_argument("--strokes", type=int, default=0, help="background strokes (label 65535)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    image, truth = synthetic_nuclei((512, 512), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    ids = np.setdiff1d(np.unique(truth), [0])
    painted_ids = rng.choice(ids, args.painted, replace=False)
    labels = np.where(np.isin(truth, painted_ids), truth, 0)
    add_strokes(labels, truth, args.strokes, rng)
    cfg = TrainConfig(iterations=10**6, time_limit=args.budget, time_clock="process",
                      val_fraction=0.0, region_rule=args.rule, sparse_ring=args.ring, seed=args.seed,
                      device="cpu")
    t0 = time.process_time()
    result = run_to_end(train([TrainingPair(image, labels, name="sparse")], cfg))
    seg = segment(result.model, image, device="cpu")
    out = {"rule": args.rule, "ring": args.ring, "strokes": args.strokes, "seed": args.seed, "budget_cpu_s": args.budget, "steps": result.steps,
           "n_nuclei": int(ids.size), "cpu_s": round(time.process_time() - t0, 1),
           **score_unpainted(seg.labels, truth, painted_ids)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
