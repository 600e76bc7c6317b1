"""Train U-Net (valid, same), FCN-32s/16s/8s and DeepLabv3+ on the same data and CPU budget; compare.

For each dataset and architecture the script trains with :func:`unet_core.training.trainer.train`
for the same budget of *process CPU time* (``time.process_time``, summed over torch's threads, so
the comparison is fair on a shared machine where wall time depends on the neighbours): a short
calibration run measures the CPU seconds per step, the real run gets
``iterations = budget / seconds_per_step`` (so the learning-rate schedule completes), and is cut
at 1.3x the budget should a step get slower. Then every model predicts the held-out test images
with the tiler's defaults, and the script reports

* mIoU (foreground/background) and boundary F1 of the argmax segmentation,
* AP@0.5 of the instances (:func:`unet_core.postprocess.probabilities_to_instances`),
* parameters, CPU ms per megapixel of one 512x512 forward pass ("net") and of tiled prediction
  with default tiles ("tiled", which includes the tile overlap each architecture needs),
* mIoU when forced to predict in small tiles (128 px output windows plus each net's overlap), and
  the mean |p(small tiles) - p(one tile)| of the class probabilities on the first test image
  (how much tiling changes the output).

Datasets: the built-in synthetic nuclei (train 3 images 256x256, test 2) and, when present, ISBI
2012 EM (``--isbi``, default ``../shared/data/isbi2012`` relative to the repository: train slices
0-19, test slices 25, 27, 29; foreground = cell interior, instances = its connected components).

Usage::

    python benchmarks/compare_architectures.py --budget 90 --write docs/architectures.md

The table goes between the ``<!-- results:start -->`` / ``<!-- results:end -->`` markers of the
``--write`` file; the raw numbers go to ``<work>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, TrainConfig
from unet_core.postprocess import probabilities_to_instances
from unet_core.sample_data import synthetic_nuclei
from unet_core.tiling import predict_tiled
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
#: output-window edge of the forced small tiles (tiling effect, DeepLab's input-size dependence)
SMALL_TILE = 128
BASE = TrainConfig().model  # depth 3, 16 channels, batch norm: the trainer's CPU default

ARCHS: dict[str, ModelConfig] = {
    "U-Net (valid)": replace(BASE, padding="valid"),
    "U-Net (same)": replace(BASE, padding="same"),
    "FCN-32s": ModelConfig(arch="fcn32s", width=0.25, batch_norm=True),
    "FCN-16s": ModelConfig(arch="fcn16s", width=0.25, batch_norm=True),
    "FCN-8s": ModelConfig(arch="fcn8s", width=0.25, batch_norm=True),
    "DeepLabv3+": ModelConfig(arch="deeplabv3plus", width=0.25, output_stride=16),
    "DeepLabv3+ (256 px tiles)": ModelConfig(arch="deeplabv3plus", width=0.25, output_stride=16),
}
#: training tile edge per architecture where it differs from --tile (DeepLab's ASPP reaches
#: 96-288 px; on 128 px tiles its wide branches mostly see zero padding)
TILE_OVERRIDE = {"DeepLabv3+ (256 px tiles)": 256}


# ------------------------------------------------------------------------------------ data
def synthetic_dataset() -> tuple[list[TrainingPair], list[tuple[np.ndarray, np.ndarray]]]:
    train_pairs = []
    for seed in (101, 102, 103):
        img, lab = synthetic_nuclei((256, 256), seed=seed)
        train_pairs.append(TrainingPair(img, lab, np.ones(lab.shape, bool), name=f"synthetic{seed}"))
    test = [synthetic_nuclei((256, 256), seed=s) for s in (201, 202)]
    return train_pairs, test


def isbi_dataset(root: Path) -> tuple[list[TrainingPair], list[tuple[np.ndarray, np.ndarray]]]:
    from scipy import ndimage as ndi

    from unet_core.io import read_tiff

    vol, _ = read_tiff(root / "train-volume.tif")
    lab, _ = read_tiff(root / "train-labels.tif")
    inst = np.stack([ndi.label(s > 127)[0] for s in lab]).astype(np.int32)
    train_pairs = [TrainingPair(vol[:20], inst[:20], np.ones(inst[:20].shape, bool), name="isbi[0:20]")]
    test = [(vol[z], inst[z]) for z in (25, 27, 29)]
    return train_pairs, test


# ------------------------------------------------------------------------------- training
def _cache_prepared_pairs() -> None:
    """Compute each dataset's targets and weight maps once, not once per training run."""
    from unet_core.training import trainer

    original = trainer.prepare_pairs
    cache: dict = {}

    def cached(pairs, model_config, weights, **kwargs):
        key = (tuple(id(p) for p in pairs), model_config.in_channels, model_config.normalization, weights,
               tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(pairs, model_config, weights, **kwargs)
        return cache[key]

    trainer.prepare_pairs = cached


def _cpu_steps(gen, n: int) -> list[float]:
    """Advance a training generator ``n`` steps; CPU time after each."""
    times = []
    for _ in range(n):
        next(gen)
        times.append(time.process_time())
    return times


def train_for_budget(pairs, model_cfg: ModelConfig, budget: float, out: Path, *, tile: int, batch: int, seed: int):
    cfg = TrainConfig(model=model_cfg, iterations=100000, tile_size=tile, batch_size=batch,
                      seed=seed, device="cpu")
    calib = train(pairs, cfg, output=None)
    t = _cpu_steps(calib, 5)
    calib.close()
    per_step = (t[-1] - t[1]) / (len(t) - 2)
    iterations = max(5, int(budget / per_step))
    cfg = replace(cfg, iterations=iterations)
    gen = train(pairs, cfg, output=out)
    t0 = None
    steps = 0
    loss = float("nan")
    try:
        while True:
            p = next(gen)
            if t0 is None:
                t0 = time.process_time()
            steps = p.step
            loss = p.metrics.get("loss", loss)
            if time.process_time() - t0 > 1.3 * budget:
                gen.close()  # saves a clean checkpoint
                break
    except StopIteration:
        pass
    used = time.process_time() - (t0 or time.process_time())
    return {"steps": steps, "planned_steps": iterations, "cpu_s": used, "cpu_s_per_step": per_step, "loss": loss}


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, test, *, split_touching: bool) -> dict:
    from unet_core.metrics import instance_ap, segmentation_metrics

    mious, bf1s, aps, diffs, small_mious = [], [], [], [], []
    cpu = wall = mpix = 0.0
    for k, (img, lab) in enumerate(test):
        c0, w0 = time.process_time(), time.perf_counter()
        probs = predict_tiled(model, img, device="cpu")
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        mpix += img.size / 1e6
        pred = probs.argmax(0)
        m = segmentation_metrics(pred, (lab > 0).astype(np.int64), n_classes=2)
        mious.append(m["miou"])
        bf1s.append(m["boundary_f1"])
        inst = probabilities_to_instances(probs, split_touching=split_touching)
        aps.append(instance_ap(inst, lab, iou_threshold=0.5))
        # forced small tiles (128 px output windows + each net's overlap) vs one tile for the image
        small = predict_tiled(model, img, device="cpu", tile_shape=SMALL_TILE)
        small_mious.append(segmentation_metrics(small.argmax(0), (lab > 0).astype(np.int64), n_classes=2)["miou"])
        if k == 0:
            whole = predict_tiled(model, img, device="cpu", tile_shape=4096)
            diffs.append(float(np.abs(whole - small).mean()))
    return {
        "miou": float(np.mean(mious)), "boundary_f1": float(np.mean(bf1s)), "ap50": float(np.mean(aps)),
        "tiled_cpu_ms_per_mpix": 1000 * cpu / mpix, "tiled_wall_ms_per_mpix": 1000 * wall / mpix,
        "tile_vs_whole": float(np.mean(diffs)), "miou_small_tiles": float(np.mean(small_mious)),
    }


def net_speed(model, repeats: int = 3) -> float:
    """CPU ms per MPix of a single 512x512 forward pass (best of ``repeats``)."""
    x = torch.rand(1, model.config.in_channels, 512, 512)
    if model.border:
        n = model.valid_input_size(512)
        x = torch.rand(1, model.config.in_channels, n, n)
    best = float("inf")
    with torch.inference_mode():
        model.eval()(x)
        for _ in range(repeats):
            c0 = time.process_time()
            y = model(x)
            best = min(best, time.process_time() - c0)
    return 1000 * best / (y.shape[-1] * y.shape[-2] / 1e6)


# ---------------------------------------------------------------------------------- report
def table(results: dict, dataset: str) -> str:
    rows = [
        "| architecture | params | steps | mIoU | boundary F1 | AP@0.5 | net CPU ms/MPix | tiled CPU ms/MPix "
        "| mIoU, 128 px tiles | 128 px tiles vs one tile |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, r in results[dataset].items():
        if "miou" not in r:  # trained, not evaluated yet
            continue
        rows.append(
            f"| {arch} | {r['params'] / 1e6:.2f} M | {r['steps']} | {r['miou']:.3f} | {r['boundary_f1']:.3f} | "
            f"{r['ap50']:.3f} | {r['net_cpu_ms_per_mpix']:.0f} | {r['tiled_cpu_ms_per_mpix']:.0f} | "
            f"{r.get('miou_small_tiles', float('nan')):.3f} | {r['tile_vs_whole']:.4f} |"
        )
    return "\n".join(rows)


def write_markdown(path: Path, results: dict, meta: dict) -> None:
    parts = [
        "<!-- results:start -->",
        f"Measured {meta['date']} on {meta['machine']} with torch {meta['torch']} "
        f"({meta['threads']} thread{'s' if meta['threads'] > 1 else ''}), `python benchmarks/compare_architectures.py --budget {meta['budget']:g}`: "
        f"{meta['budget']:g} CPU-seconds of training per architecture and dataset "
        f"(process CPU time, tiles {meta['tile']} px, batch {meta['batch']}, Adam lr 1e-3, weighted "
        "cross-entropy with the U-Net weight map, seed 0, no pretrained weights).",
        "",
    ]
    for ds in results:
        parts += [f"**{ds}**", "", table(results, ds), ""]
    parts.append("<!-- results:end -->")
    block = "\n".join(parts)
    text = path.read_text() if path.exists() else "# Architectures\n\n<!-- results:start -->\n<!-- results:end -->\n"
    start, end = text.find("<!-- results:start -->"), text.find("<!-- results:end -->")
    if start < 0 or end < 0:
        text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len("<!-- results:end -->"):]
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=90.0, help="CPU-seconds of training per arch and dataset")
    ap.add_argument("--tile", type=int, default=128, help="training tile (output) edge")
    ap.add_argument("--batch", type=int, default=4, help="tiles per step")
    ap.add_argument("--isbi", type=Path, default=Path(os.environ.get("NAPARI_UNET_ISBI", REPO.parent / "shared" / "data" / "isbi2012")),
                    help="ISBI 2012 folder (train-volume.tif, train-labels.tif); default $NAPARI_UNET_ISBI or "
                    "../shared/data/isbi2012 next to the repository")
    ap.add_argument("--datasets", default="synthetic,isbi", help="comma-separated: synthetic, isbi")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated subset of: " + ", ".join(ARCHS))
    ap.add_argument("--work", type=Path, default=None, help="folder for checkpoints and results.json (reused)")
    ap.add_argument("--reuse", action="store_true", help="evaluate existing checkpoints in --work, don't retrain")
    ap.add_argument("--train-only", action="store_true", help="train (and save) only; evaluate later with --reuse")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: CPU time is a clean budget)")
    ap.add_argument("--write", type=Path, default=None, help="markdown file to put the table in")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    _cache_prepared_pairs()
    work = args.work or Path(tempfile.mkdtemp(prefix="compare_arch_"))
    work.mkdir(parents=True, exist_ok=True)
    res_path = work / "results.json"
    results: dict = json.loads(res_path.read_text()) if res_path.exists() else {}
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for name in archs:
        if name not in ARCHS:
            print(f"unknown architecture {name!r}; choose from {', '.join(ARCHS)}", file=sys.stderr)
            return 2
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if ds == "synthetic":
            pairs, test = synthetic_dataset()
            split = True
        elif ds == "isbi":
            if not (args.isbi / "train-volume.tif").is_file():
                print(f"ISBI 2012 data not found in {args.isbi}; pass --isbi DIR or drop it from --datasets",
                      file=sys.stderr)
                continue
            pairs, test = isbi_dataset(args.isbi)
            split = False  # membranes already separate the cells
        else:
            print(f"unknown dataset {ds!r}", file=sys.stderr)
            return 2
        label = {"synthetic": "synthetic nuclei", "isbi": "ISBI 2012 EM"}[ds]
        for name in archs:
            ckpt = work / f"{ds}-{name.replace(' ', '_').replace('(', '').replace(')', '')}.pt"
            prev = results.get(label, {}).get(name, {})
            if args.reuse and ckpt.exists():
                tr = {k: prev[k] for k in ("steps", "planned_steps", "cpu_s", "cpu_s_per_step", "loss") if k in prev}
            else:
                print(f"[{label}] training {name} for {args.budget:g} CPU-s ...", flush=True)
                if ckpt.exists():
                    ckpt.unlink()
                tr = train_for_budget(pairs, ARCHS[name], args.budget, ckpt, tile=TILE_OVERRIDE.get(name, args.tile), batch=args.batch, seed=0)
                results.setdefault(label, {})[name] = tr
                res_path.write_text(json.dumps(results, indent=2))
                print(f"[{label}] {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in tr.items()), flush=True)
            if args.train_only:
                continue
            model = load_checkpoint(ckpt).model
            torch.manual_seed(0)
            r = {**tr, "params": sum(p.numel() for p in model.parameters()),
                 **evaluate(model, test, split_touching=split), "net_cpu_ms_per_mpix": net_speed(model)}
            results.setdefault(label, {})[name] = r
            res_path.write_text(json.dumps(results, indent=2))
            print(f"[{label}] {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()), flush=True)
    if args.train_only:
        return 0
    for ds in results:
        print(f"\n{ds}\n" + table(results, ds))
    if args.write:
        meta = {
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": f"a shared {os.cpu_count()}-core CPU VM ({platform.machine()})",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "budget": args.budget,
            "tile": args.tile, "batch": args.batch,
        }
        write_markdown(args.write, results, meta)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
