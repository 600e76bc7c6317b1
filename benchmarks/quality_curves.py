"""Time-to-quality curves: AP@0.5, AP@0.7 and foreground IoU against the training budget.

    PYTHONPATH=src:. python benchmarks/quality_curves.py tasks > tasks.txt      # the task list
    PYTHONPATH=src:. python benchmarks/quality_curves.py run DATASET SCENARIO CONFIG BUDGET --out DIR
    cat tasks.txt | xargs -P 2 -L 1 env PYTHONPATH=src:. python benchmarks/quality_curves.py run --out DIR
    PYTHONPATH=src:. python benchmarks/quality_curves.py table DIR             # markdown tables

Each task is one process and writes ``DIR/<dataset>-<scenario>-<config>-<budget>.json``; the
budget is CPU seconds of that process with one torch thread (``TrainConfig(time_limit=B,
time_clock='process')``), so two tasks side by side on two cores each get their full budget.
Validation during training and the post-processing fit count inside the budget.

Datasets (train on one image; score on held-out images):

isbi
    ISBI 2012 EM (``../shared/data/isbi2012`` or ``$NAPARI_UNET_ISBI``): train on slice 0; test
    on slices 20-29. Instances = cells (connected components of the label 255).
nuclei-unseen
    Synthetic nuclei of a style that the built-in ``nuclei`` model was not trained on
    (elongated, irregular, large, coarse texture: ``unseen_styles()`` of
    ``scripts/train_builtin_models.py``): train on one 512 x 512 image (seed 4000), test on four
    512 x 512 images (seeds 3000-3003).

Scenarios: ``half`` = the left half of the training image fully annotated (the rest unpainted);
``region`` = one fully annotated 160 x 160 region in its centre (the rest unpainted).

Configs: ``scratch`` (today's defaults, default post-processing), ``tuned`` (the same runs with
the post-processing fitted at the end of training: scored from the scratch run, no run of its
own), ``n2v`` (self-supervised weight 1), ``three`` (three-class target, interior seeds),
``all`` (n2v + three + fitted post-processing), ``ft-nuclei`` / ``ft-membranes`` (fine-tune the
built-in model, fitted post-processing), ``ft-nuclei+n2v`` / ``ft-membranes+n2v``,
``ft-nuclei-lr1e-4`` / ``ft-membranes-lr1e-4`` (fine-tuning at learning rate 1e-4),
``ft-*-best`` (the best-validated weights of an ``ft-*`` run, ``NAME.best.pt``, scored from
the same run), ``zero-nuclei`` / ``zero-membranes`` (built-in model, no training, its own post-processing) and
``rf`` (random-forest pixel classifier of ``benchmarks/train_quality.py`` on the same annotated
pixels, default post-processing; its budget is what it took).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (30, 60, 120, 240)
REGION = 160
TRAINED = {
    "scratch": {},
    "n2v": {"self_supervised": 1.0},
    "three": {"target": "three_class"},
    "all": {"self_supervised": 1.0, "target": "three_class"},
    "ft-nuclei": {"init_from": "nuclei"},
    "ft-membranes": {"init_from": "membranes"},
    "ft-nuclei+n2v": {"init_from": "nuclei", "self_supervised": 1.0},
    "ft-membranes+n2v": {"init_from": "membranes", "self_supervised": 1.0},
    "ft-nuclei-lr1e-4": {"init_from": "nuclei", "learning_rate": 1e-4},
    "ft-membranes-lr1e-4": {"init_from": "membranes", "learning_rate": 1e-4},
}
#: configs scored with the default post-processing (today's); the others use the fitted one
DEFAULT_POSTPROCESS = {"scratch", "n2v", "three"}


# ------------------------------------------------------------------------------------- data
def dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Training image and instances, test images and instances (2D, uint8/uint16)."""
    if name == "isbi":
        sys.path.insert(0, str(ROOT))
        from scripts.train_builtin_models import load_isbi

        root = Path(os.environ.get("NAPARI_UNET_ISBI", ROOT.parent / "shared/data/isbi2012"))
        vol, inst = load_isbi(root)
        return vol[0], inst[0], list(vol[20:30]), list(inst[20:30])
    if name == "nuclei-unseen":
        sys.path.insert(0, str(ROOT))
        from scripts.train_builtin_models import unseen_styles
        from unet_core.sample_data import render_nuclei

        style = unseen_styles()[0]
        img, lab = render_nuclei((512, 512), style, seed=4000)
        tests = [render_nuclei((512, 512), style, seed=s) for s in range(3000, 3004)]
        return img, lab, [t[0] for t in tests], [t[1] for t in tests]
    raise SystemExit(f"unknown dataset {name!r}: isbi or nuclei-unseen")


def scenario(labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The painted labels (0 outside the annotated region) and the region mask."""
    mask = np.zeros(labels.shape, bool)
    if name == "half":
        mask[:, : labels.shape[1] // 2] = True
    elif name == "region":
        y0, x0 = ((s - REGION) // 2 for s in labels.shape)
        mask[y0 : y0 + REGION, x0 : x0 + REGION] = True
    else:
        raise SystemExit(f"unknown scenario {name!r}: half or region")
    return np.where(mask, labels, 0), mask


# ------------------------------------------------------------------------------------ scoring
def scores(probabilities: list[np.ndarray], truths: list[np.ndarray], postprocess) -> dict:
    """Mean AP@0.5 / AP@0.7 over the test images and pooled foreground IoU."""
    from unet_core.metrics import match_instances
    from unet_core.pipeline import segment_probabilities

    ap50, ap70, inter, union, n_pred = [], [], 0, 0, 0
    for probs, truth in zip(probabilities, truths):
        pred = segment_probabilities(probs, postprocess).labels
        ap50.append(match_instances(pred, truth, 0.5).ap)
        ap70.append(match_instances(pred, truth, 0.7).ap)
        inter += int(np.logical_and(pred > 0, truth > 0).sum())
        union += int(np.logical_or(pred > 0, truth > 0).sum())
        n_pred += int(len(np.unique(pred)) - 1)
    return {
        "ap50": round(float(np.mean(ap50)), 3), "ap70": round(float(np.mean(ap70)), 3),
        "foreground_iou": round(inter / max(union, 1), 3), "objects_pred": n_pred,
        "objects_true": int(sum(len(np.unique(t)) - 1 for t in truths)),
    }


def predict_all(model, images: list[np.ndarray]) -> list[np.ndarray]:
    from unet_core.tiling import predict_tiled

    return [predict_tiled(model, img, device="cpu") for img in images]


# -------------------------------------------------------------------------------------- tasks
def train_run(config: str, budget: float, image, painted, mask, seed: int) -> tuple[object, object, dict, object]:
    """Train ``config`` for ``budget`` CPU seconds; the model, its fitted post-processing (from
    the checkpoint's ``meta``), the run's numbers and the best-validated model (``NAME.best.pt``;
    None when there is none)."""
    import tempfile

    from unet_core.checkpoint import load_checkpoint
    from unet_core.config import TrainConfig
    from unet_core.pipeline import postprocess_for
    from unet_core.progress import run_to_end
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import best_path, train

    options = dict(TRAINED[config])
    init_from = options.pop("init_from", None)
    cfg = replace(
        TrainConfig(), iterations=10**9, time_limit=budget, time_clock="process",
        device="cpu", seed=seed, save_every=0, **options,
    )
    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.pt"
        result = run_to_end(train([TrainingPair(image, painted, mask, name="train")], cfg,
                                  init_from=init_from, output=out))
        fitted = postprocess_for(out)
        best = load_checkpoint(best_path(out)).model if best_path(out).exists() else None
    info = {"steps": result.steps, "train_cpu_s": round(time.process_time() - c0, 1)}
    return result.model, fitted, info, best


def random_forest(image, painted, mask, tests: list[np.ndarray], seed: int) -> tuple[list, dict]:
    """Probabilities (2, Y, X) of the train_quality.py random forest, and its CPU seconds."""
    from sklearn.ensemble import RandomForestClassifier

    from benchmarks.train_quality import filter_features

    def norm(img):
        lo, hi = np.percentile(img, (1, 99.8))
        return np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255)

    c0 = time.process_time()
    feats = filter_features(norm(image))
    pix = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    pick = rng.choice(pix, min(len(pix), 200_000), replace=False)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    rf.fit(feats.reshape(-1, feats.shape[-1])[pick], (painted.reshape(-1)[pick] > 0))
    fit_s = time.process_time() - c0
    probs = []
    for img in tests:
        f = filter_features(norm(img))
        p1 = rf.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1].reshape(img.shape).astype(np.float32)
        probs.append(np.stack([1 - p1, p1]))
    return probs, {"train_cpu_s": round(fit_s, 1), "pixels": int(len(pick))}


def run_task(ds: str, sc: str, config: str, budget: float, seed: int) -> list[dict]:
    """One task's result rows (a scratch run also gives the 'tuned' row)."""
    from unet_core.config import PostprocessConfig
    from unet_core.pipeline import postprocess_for
    from unet_core.sources import load_model

    image, labels, tests, truths = dataset(ds)
    painted, mask = scenario(labels, sc)
    base = {"dataset": ds, "scenario": sc, "budget": budget, "seed": seed}
    if config == "rf":
        probs, info = random_forest(image, painted, mask, tests, seed)
        return [{**base, "config": "rf", **info, **scores(probs, truths, PostprocessConfig())}]
    if config.startswith("zero-"):
        ckpt = load_model(config[5:])  # the built-in model and its shipped post-processing
        probs = predict_all(ckpt.model, tests)
        return [{**base, "config": config, **scores(probs, truths, postprocess_for(ckpt)),
                 "postprocess": str(postprocess_for(ckpt))}]
    model, fitted, info, best = train_run(config, budget, image, painted, mask, seed)
    probs = predict_all(model, tests)
    rows = []
    if config in DEFAULT_POSTPROCESS:
        three = TRAINED[config].get("target") == "three_class"
        default = PostprocessConfig(seeds="interior") if three else PostprocessConfig()
        rows.append({**base, "config": config, **info, **scores(probs, truths, default)})
    if config not in DEFAULT_POSTPROCESS or config == "scratch":
        name = "tuned" if config == "scratch" else config
        rows.append({**base, "config": name, **info, **scores(probs, truths, fitted),
                     "postprocess": str(fitted)})
    if config.startswith("ft-") and best is not None:  # the best-validated weights instead
        rows.append({**base, "config": config + "-best", **info,
                     **scores(predict_all(best, tests), truths, fitted), "postprocess": str(fitted)})
    return rows


def task_list() -> list[str]:
    """The benchmark's tasks, most important first (so a cut-short run has the main curves):
    every budget in the ``region`` scenario, 60 and 240 s in ``half``, and each ingredient alone
    at 120 s."""
    lines = []

    def add(ds: str, sc: str, configs, budgets) -> None:
        lines.extend(f"{ds} {sc} {c} {b:g}" for c in configs for b in budgets)

    for sc, budgets in (("region", BUDGETS), ("half", (60, 240))):
        for ds, ft in (("nuclei-unseen", "ft-nuclei"), ("isbi", "ft-membranes")):
            add(ds, sc, ("zero-nuclei", "zero-membranes", "rf"), (0,))
            add(ds, sc, ("scratch", ft, "all"), budgets)
    for ds in ("nuclei-unseen", "isbi"):
        for sc in ("region", "half"):
            add(ds, sc, ("n2v", "three"), (120,))
    return lines


def table(out: Path) -> str:
    """Markdown tables of every result in ``out``: one per dataset and scenario."""
    rows = [r for f in sorted(out.glob("*.json")) for r in json.loads(f.read_text())]
    text = []
    for ds in sorted({r["dataset"] for r in rows}):
        for sc in ("half", "region"):
            sel = [r for r in rows if r["dataset"] == ds and r["scenario"] == sc]
            if not sel:
                continue
            text += [f"\n### {ds}, {sc}\n", "| config | budget (CPU s) | steps | AP@0.5 | AP@0.7 | fg IoU | objects (pred / true) |",
                     "|---|---:|---:|---:|---:|---:|---:|"]
            for r in sorted(sel, key=lambda r: (r["config"], r["budget"])):
                budget = r.get("train_cpu_s", 0) if r["config"] == "rf" else r["budget"]
                text.append(
                    f"| {r['config']} | {budget:g} | {r.get('steps', '-')} | {r['ap50']:.3f} | "
                    f"{r['ap70']:.3f} | {r['foreground_iou']:.3f} | {r['objects_pred']} / {r['objects_true']} |"
                )
    return "\n".join(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tasks")
    r = sub.add_parser("run")
    r.add_argument("dataset")
    r.add_argument("scenario")
    r.add_argument("config", choices=[*TRAINED, "rf", "zero-nuclei", "zero-membranes"])
    r.add_argument("budget", type=float)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("table")
    t.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "tasks":
        print("\n".join(task_list()))
        return 0
    if args.cmd == "table":
        print(table(args.out))
        return 0
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.dataset}-{args.scenario}-{args.config}-{args.budget:g}-s{args.seed}.json"
    w0 = time.perf_counter()
    rows = run_task(args.dataset, args.scenario, args.config, args.budget, args.seed)
    for row in rows:
        row["wall_s"] = round(time.perf_counter() - w0, 1)
    (args.out / name).write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
