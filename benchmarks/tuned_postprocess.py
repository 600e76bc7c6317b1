"""Self-tuned post-processing vs the defaults (docs/quality.md).

Trains on a fully annotated synthetic nuclei image (validation split held out) for a fixed
CPU-time budget on one torch thread, then segments an unseen synthetic image once with the
default :class:`PostprocessConfig` and once with the one fitted on validation
(``meta["postprocess"]``); prints AP@0.5 / AP@0.7 of both. ``--target three_class`` trains
the background/interior/boundary target instead (fitted = interior seeds).

    PYTHONPATH=src python benchmarks/tuned_postprocess.py --budget 60
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from unet_core.checkpoint import load_checkpoint
from unet_core.config import PostprocessConfig, TrainConfig
from unet_core.metrics import match_instances
from unet_core.pipeline import postprocess_for, segment, segment_probabilities
from unet_core.progress import run_to_end
from unet_core.sample_data import synthetic_nuclei
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train


def ap(pred: np.ndarray, truth: np.ndarray, iou: float) -> float:
    m = match_instances(pred, truth, iou)
    return m.tp / max(1, m.tp + m.fp + m.fn)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target", choices=["two_class", "three_class"], default="two_class")
    args = p.parse_args()
    torch.set_num_threads(1)
    image, truth = synthetic_nuclei((384, 384), seed=args.seed)
    test_image, test_truth = synthetic_nuclei((384, 384), seed=args.seed + 100)
    cfg = TrainConfig(iterations=10**6, time_limit=args.budget, time_clock="process",
                      val_fraction=0.15, val_every=10**6, seed=args.seed, device="cpu",
                      target=args.target)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.pt"
        result = run_to_end(train([TrainingPair(image, truth, name="train")], cfg, output=out))
        fitted = postprocess_for(load_checkpoint(out))
    seg = segment(result.model, test_image, device="cpu")
    rows = {}
    for name, pp in (("defaults", PostprocessConfig()), ("fitted", fitted)):
        labels = segment_probabilities(seg.probabilities, pp).labels
        rows[name] = {"ap50": round(ap(labels, test_truth, 0.5), 3),
                      "ap70": round(ap(labels, test_truth, 0.7), 3), "postprocess": str(pp)}
    print(json.dumps({"target": args.target, "steps": result.steps, "budget_cpu_s": args.budget, **rows}))


if __name__ == "__main__":
    main()
