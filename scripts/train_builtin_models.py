"""Train the built-in starting models ``nuclei`` and ``membranes`` and measure them.

    PYTHONPATH=src:. python scripts/train_builtin_models.py [--models nuclei,membranes]
        [--budget 420] [--padding same] [--out src/unet_core/builtin] [--isbi DIR] [--json FILE]

What it does, printed as it goes:

1. Generates the training set from seeds with the project's own generators
   (:func:`unet_core.sample_data.randomised_sample`: a style drawn per image), plus, for
   ``membranes``, ISBI 2012 slices 0-19 (``../shared/data/isbi2012``; slices 20-29 are the test
   split and are never trained on). ISBI labels: 255 = cell interior, 0 = membrane; instances are
   the connected components of the interior.
2. Trains a small U-Net with the engine's :func:`unet_core.training.trainer.train` for a budget
   of CPU seconds of this process (``time_clock='process'``) on one torch thread, validating on
   separate synthetic seeds; the best-validation weights are kept.
3. Scores the model zero-shot on held-out images it was not trained on: synthetic images of an
   unseen style (options outside the training ranges), the standard sample style, and (for
   ``membranes``) ISBI slices 20-29. Metrics: AP@0.5, AP@0.7 (one-to-one matching,
   ``TP / (TP + FP + FN)``) and foreground IoU.
4. Writes ``<out>/<name>.pt`` in the project's checkpoint format (safe loading, digest) with the
   recipe, data provenance and measured quality in its ``meta``, and a JSON of all numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SEEDS = range(1000, 1040)  # synthetic training images
VAL_SEEDS = range(2000, 2004)  # synthetic validation images (model selection only)
TEST_SEEDS = range(3000, 3004)  # synthetic held-out test images
ISBI_TRAIN, ISBI_TEST = slice(0, 20), slice(20, 30)
SIZE = (256, 256)


def unseen_styles():
    """Held-out synthetic styles with options outside the randomised training ranges."""
    from unet_core.sample_data import MembraneStyle, NucleiStyle

    nuclei = NucleiStyle(  # elongated (axis ratio 0.3-0.5), irregular, larger, coarse texture
        radius=(16.0, 28.0), aspect=(0.3, 0.5), irregularity=0.2, touching=0.5, coverage=0.3,
        photons=60.0, read_noise=3.0, blotches=0.2, blur=2.0, texture=0.4, texture_scale=3.5,
    )
    membranes = MembraneStyle(  # huge, wavy cells, dense organelles, strong texture
        cell_diameter=90.0, warp=28.0, thickness=(4.0, 8.0), organelles=2.0, texture=0.3,
        contrast=0.6, interior=(0.6, 0.7), photons=100.0,
    )
    return nuclei, membranes


def synthetic_pairs(kind: str, seeds, prefix: str):
    from unet_core.sample_data import randomised_sample
    from unet_core.training.data import TrainingPair

    pairs = []
    for s in seeds:
        img, lab = randomised_sample(kind, SIZE, seed=s)
        pairs.append(TrainingPair(img, lab, np.ones(lab.shape, bool), name=f"{prefix}{s}"))
    return pairs


def load_isbi(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """ISBI 2012 volume (30, 512, 512) uint8 and cell instances (connected components of 255)."""
    import tifffile
    from scipy import ndimage as ndi

    vol = tifffile.imread(root / "train-volume.tif")
    lab = tifffile.imread(root / "train-labels.tif")
    inst = np.stack([ndi.label(s == 255)[0] for s in lab]).astype(np.uint32)
    return vol, inst


def instance_scores(model, images, truths, *, split_touching: bool) -> dict:
    """Mean AP@0.5, AP@0.7 and pooled foreground IoU of ``model`` over 2D images."""
    from unet_core.postprocess import probabilities_to_instances
    from unet_core.tiling import predict_tiled

    try:
        from unet_core.metrics import match_instances
    except ImportError:  # before the metrics module moved out of training/
        from unet_core.training.metrics import match_instances

    ap50, ap70, inter, union, n_true, n_pred = [], [], 0, 0, 0, 0
    for img, truth in zip(images, truths):
        probs = predict_tiled(model, img, device="cpu")
        pred = probabilities_to_instances(probs, split_touching=split_touching)
        ap50.append(match_instances(pred, truth, 0.5).ap)
        ap70.append(match_instances(pred, truth, 0.7).ap)
        inter += int(np.logical_and(pred > 0, truth > 0).sum())
        union += int(np.logical_or(pred > 0, truth > 0).sum())
        n_true += int(len(np.unique(truth)) - 1)
        n_pred += int(len(np.unique(pred)) - 1)
    return {
        "ap50": round(float(np.mean(ap50)), 3), "ap70": round(float(np.mean(ap70)), 3),
        "foreground_iou": round(inter / max(union, 1), 3), "images": len(images),
        "objects_true": n_true, "objects_pred": n_pred,
    }


def evaluate(name: str, model, isbi: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """Zero-shot quality on the held-out sets of model ``name``."""
    from unet_core.sample_data import render_nuclei, synthetic_membranes, synthetic_nuclei

    nuc_style, mem_style = unseen_styles()
    split = name == "nuclei"
    out: dict = {}
    if name == "nuclei":
        unseen = [render_nuclei(SIZE, nuc_style, seed=s) for s in TEST_SEEDS]
        standard = [synthetic_nuclei(SIZE, seed=s) for s in TEST_SEEDS]
        out["synthetic standard sample style"] = instance_scores(model, *zip(*standard), split_touching=split)
    else:
        unseen = [synthetic_membranes(SIZE, mem_style, seed=s) for s in TEST_SEEDS]
    out["synthetic unseen style"] = instance_scores(model, *zip(*unseen), split_touching=split)
    if isbi is not None:
        vol, inst = isbi
        out["ISBI 2012 slices 20-29"] = instance_scores(
            model, list(vol[ISBI_TEST]), list(inst[ISBI_TEST]), split_touching=split
        )
    return out


def build_data(name: str, isbi: tuple[np.ndarray, np.ndarray] | None):
    """Training and validation pairs of model ``name`` and the provenance text."""
    from unet_core.training.data import TrainingPair

    kind = "nuclei" if name == "nuclei" else "membranes"
    pairs = synthetic_pairs(kind, TRAIN_SEEDS, f"synthetic {kind} seed ")
    val = synthetic_pairs(kind, VAL_SEEDS, f"synthetic {kind} seed ")
    provenance = [
        f"{len(pairs)} synthetic {kind} images {SIZE[0]}x{SIZE[1]} from "
        f"unet_core.sample_data.randomised_sample('{kind}', seed=s), s in "
        f"{TRAIN_SEEDS.start}..{TRAIN_SEEDS.stop - 1} (generated by this project; no external data)"
    ]
    if name == "membranes":
        if isbi is None:
            raise SystemExit("the membranes model needs ISBI 2012 (--isbi DIR)")
        vol, inst = isbi
        mask = np.ones(inst[ISBI_TRAIN].shape, bool)
        pairs.append(TrainingPair(vol[ISBI_TRAIN], inst[ISBI_TRAIN], mask, name="ISBI 2012 slices 0-19"))
        provenance.append(
            "ISBI 2012 EM segmentation challenge training set (Cardona et al. 2010), slices 0-19 "
            "only (20-29 held out for testing); labels 255 = cell interior, instances = connected "
            "components; as redistributed in the MIT-licensed repository zhixuhao/unet"
        )
    return pairs, val, provenance


DESCRIPTIONS = {
    "nuclei": "fluorescent nuclei (DAPI/Hoechst-like), 1 channel; objects = nuclei",
    "membranes": "cells outlined by membranes (EM or membrane stain), 1 channel; objects = cells",
}


def train_one(name: str, args, isbi) -> dict:
    """Generate the data, train, evaluate and save built-in model ``name``; return its record."""
    import torch

    from unet_core.checkpoint import load_checkpoint, save_checkpoint
    from unet_core.config import ModelConfig, TrainConfig, config_to_dict
    from unet_core.progress import run_to_end
    from unet_core.training.trainer import train

    t0, c0 = time.perf_counter(), time.process_time()
    pairs, val, provenance = build_data(name, isbi)
    print(f"[{name}] data: {len(pairs)} training pairs, {len(val)} validation images "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model = ModelConfig(depth=3, base_channels=16, batch_norm=True, padding=args.padding)
    cfg = TrainConfig(
        model=model, iterations=10**9, time_limit=args.budget, time_clock="process",
        device="cpu", seed=args.seed, val_every=args.val_every,
    )
    work = Path(args.work) / f"{name}-last.pt"
    work.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] training {args.padding} U-Net depth 3, 16 channels, batch norm, "
          f"{args.budget:.0f} CPU s on {torch.get_num_threads()} thread(s)", flush=True)
    gen = train(pairs, cfg, output=work, val_pairs=val)
    result = run_to_end(gen, lambda p: _report(name, p))
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    chosen = result.best_checkpoint or result.checkpoint
    ckpt = load_checkpoint(chosen)
    print(f"[{name}] {result.steps} steps, kept {chosen.name} (step {ckpt.meta.get('best_step')}); "
          "evaluating zero-shot", flush=True)
    quality = evaluate(name, ckpt.model, isbi if name == "membranes" or args.isbi_for_nuclei else None)
    recipe = {
        "command": f"PYTHONPATH=src:. python scripts/train_builtin_models.py --models {name} "
                   f"--budget {args.budget:g} --padding {args.padding} --seed {args.seed}",
        "train_config": config_to_dict(cfg), "steps": result.steps,
        "best_step": ckpt.meta.get("best_step"), "train_seeds": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop],
        "val_seeds": [VAL_SEEDS.start, VAL_SEEDS.stop], "test_seeds": [TEST_SEEDS.start, TEST_SEEDS.stop],
        "wall_s": round(train_wall, 1), "cpu_s": round(train_cpu, 1), "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
                   "shared with other jobs".strip(),
    }
    meta = {
        "kind": "builtin", "builtin_name": name, "description": DESCRIPTIONS[name],
        "provenance": provenance, "recipe": recipe, "quality": quality,
        "postprocess": {"split_touching": name == "nuclei"},
        "validation_metrics": ckpt.meta.get("metrics", {}),
    }
    dest = Path(args.out) / f"{name}.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dest, ckpt.model, meta=meta)
    size_mb = dest.stat().st_size / 1e6
    print(f"[{name}] wrote {dest} ({size_mb:.2f} MB)\n{markdown_table(quality)}", flush=True)
    return {"file": str(dest), "size_mb": round(size_mb, 2), **meta}


def markdown_table(quality: dict) -> str:
    """The zero-shot quality as a Markdown table (for the model card)."""
    rows = ["| held-out test set | images | true / predicted objects | AP@0.5 | AP@0.7 | foreground IoU |",
            "|---|---|---|---|---|---|"]
    for test, q in quality.items():
        rows.append(f"| {test} | {q['images']} | {q['objects_true']} / {q['objects_pred']} | "
                    f"{q['ap50']:.3f} | {q['ap70']:.3f} | {q['foreground_iou']:.3f} |")
    return "\n".join(rows)


def _report(name: str, p) -> None:
    if p.stage != "train" or p.step % 100 == 0:
        print(f"[{name}] {p.stage}: {p.message}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="nuclei,membranes", help="comma-separated: nuclei, membranes")
    ap.add_argument("--budget", type=float, default=420.0, help="training CPU seconds per model")
    ap.add_argument("--padding", choices=("valid", "same"), default="same",
                    help="'same' measured better per CPU second (docs/models/nuclei.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--out", default=str(ROOT / "src" / "unet_core" / "builtin"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "napari-unet-builtin"),
                    help="folder for the scratch (last/best) checkpoints of the runs")
    ap.add_argument("--isbi", type=Path, default=Path(os.environ.get(
        "NAPARI_UNET_ISBI", ROOT.parent / "shared" / "data" / "isbi2012")))
    ap.add_argument("--isbi-for-nuclei", action="store_true", help="also score nuclei on ISBI 20-29")
    ap.add_argument("--json", type=Path, help="write all numbers to this file")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    isbi = load_isbi(args.isbi) if (args.isbi / "train-volume.tif").is_file() else None
    if isbi is None:
        print(f"ISBI 2012 not found in {args.isbi}: no ISBI training or scores", file=sys.stderr)
    records = {n: train_one(n, args, isbi) for n in names}
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
