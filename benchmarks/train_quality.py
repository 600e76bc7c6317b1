"""How good does a model get, how fast, on CPU? Two experiments, budgets in CPU time.

    PYTHONPATH=src:. python benchmarks/train_quality.py synthetic --budget 60 [--json out.json]
    PYTHONPATH=src:. python benchmarks/train_quality.py isbi --budget 300 [--isbi DIR] [--json out.json]

Budgets are CPU seconds of this process (``time.process_time``, ``TrainConfig.time_clock =
'process'``), so runs on a shared machine are comparable; torch uses ``--threads`` intra-op
threads (default 1). Everything else is the engine's CPU default (``TrainConfig()`` resolved for
'cpu'), including validation during training, whose cost counts inside the budget.

synthetic
    The built-in 512x512 synthetic nuclei sample (seed 0). A user paints ~50 nuclei completely
    inside one window in a corner (region mask = window + the painted nuclei); the rest of the
    image is unannotated. Scored on the *unannotated* part of the same image and on a second,
    unseen synthetic image (seed 1): foreground IoU and instance AP@0.5 (instances from
    :func:`unet_core.postprocess.probabilities_to_instances`, one-to-one matching at IoU > 0.5).

isbi
    ISBI 2012 EM (``../shared/data/isbi2012`` or ``--isbi``/``$NAPARI_UNET_ISBI``): slices 0-19
    train, 20-29 test; target = cell interior (255) vs membrane (0); instances = connected
    components of the interior. U-Net trained for the budget vs a random-forest pixel classifier
    (scikit-learn, 100 trees) on ilastik-style filter features (Gaussian, Laplacian of Gaussian,
    gradient magnitude, Hessian and structure-tensor eigenvalues at sigmas 0.7-10) trained on
    the same annotations (a random 200 000-pixel subset of slices 0-19, as a user's strokes
    would be). Reported: foreground IoU, pixel error (fraction of wrong pixels at p = 0.5),
    AP@0.5 of connected components, and each method's CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def fg_iou(pred: np.ndarray, true: np.ndarray) -> float:
    inter = np.logical_and(pred, true).sum()
    union = np.logical_or(pred, true).sum()
    return float(inter / union) if union else 1.0


def ap50(pred_labels: np.ndarray, true_labels: np.ndarray) -> float:
    from unet_core.metrics import instance_ap

    return float(instance_ap(pred_labels, true_labels, 0.5))


# ------------------------------------------------------------------------------------- synthetic
def paint_window(labels: np.ndarray, n_target: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Labels of all nuclei touching the smallest top-left square window holding >= n_target
    of them, and the annotated region (window + those nuclei)."""
    for size in range(64, labels.shape[0] + 1, 8):
        ids = np.unique(labels[:size, :size])
        ids = ids[ids > 0]
        if len(ids) >= n_target:
            break
    painted = np.where(np.isin(labels, ids), labels, 0)
    region = painted > 0
    region[:size, :size] = True
    return painted, region


def synthetic(budget: float, seed: int) -> dict:
    from unet_core.config import TrainConfig
    from unet_core.postprocess import probabilities_to_instances
    from unet_core.progress import run_to_end
    from unet_core.sample_data import synthetic_nuclei
    from unet_core.tiling import predict_tiled
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import train

    image, labels = synthetic_nuclei((512, 512), seed=0)
    painted, region = paint_window(labels)
    test_image, test_labels = synthetic_nuclei((512, 512), seed=1)
    cfg = TrainConfig(iterations=10**9, time_limit=budget, time_clock="process", device="cpu", seed=seed)
    c0 = time.process_time()
    result = run_to_end(train([TrainingPair(image, painted, region, name="synthetic")], cfg))
    train_cpu = time.process_time() - c0
    out = {
        "experiment": "synthetic", "budget_cpu_s": budget, "train_cpu_s": round(train_cpu, 1),
        "steps": result.steps, "painted_nuclei": int(len(np.unique(painted)) - 1),
        "region_fraction": round(float(region.mean()), 3), "total_nuclei": int(labels.max()),
        "val": {k: round(v, 3) for k, v in result.metrics.items()},
    }
    for name, img, lab, keep in (
        ("unannotated part", image, labels, ~region),
        ("unseen image", test_image, test_labels, np.ones(labels.shape, bool)),
    ):
        probs = predict_tiled(result.model, img, device="cpu")
        inst = probabilities_to_instances(probs)
        # objects wholly in the scored part (drop those cut by the annotated region)
        true = np.where(keep, lab, 0)
        cut = np.unique(lab[~keep])
        true[np.isin(true, cut[cut > 0])] = 0
        pred = np.where(keep, inst, 0)
        pcut = np.unique(inst[~keep])
        pred[np.isin(pred, pcut[pcut > 0])] = 0
        out[name] = {
            "foreground_iou": round(fg_iou((probs[0] < 0.5) & keep, (lab > 0) & keep), 3),
            "ap50": round(ap50(pred, true), 3),
            "objects_true": int(len(np.unique(true)) - 1),
            "objects_pred": int(len(np.unique(pred)) - 1),
        }
    return out


# ------------------------------------------------------------------------------------------ isbi
SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)


def filter_features(img: np.ndarray) -> np.ndarray:
    """ilastik-style pixel features of a 2D image: (Y, X, F) float32, F = 1 + 7 * len(SIGMAS)."""
    from scipy import ndimage as ndi
    from skimage.feature import (
        hessian_matrix,
        hessian_matrix_eigvals,
        structure_tensor,
        structure_tensor_eigenvalues,
    )

    x = img.astype(np.float32) / 255.0
    feats = [x]
    for s in SIGMAS:
        feats.append(ndi.gaussian_filter(x, s))
        feats.append(ndi.gaussian_laplace(x, s))
        feats.append(ndi.gaussian_gradient_magnitude(x, s))
        h = hessian_matrix(x, sigma=s, order="rc", use_gaussian_derivatives=False)
        feats.extend(hessian_matrix_eigvals(h))
        st = structure_tensor(x, sigma=s, order="rc")
        feats.extend(structure_tensor_eigenvalues(st))
    return np.stack(feats, -1).astype(np.float32)


def isbi_scores(prob_fg: np.ndarray, truth: np.ndarray) -> dict:
    from scipy import ndimage as ndi

    pred = prob_fg > 0.5
    aps = []
    for z in range(len(truth)):
        aps.append(ap50(ndi.label(pred[z])[0], ndi.label(truth[z])[0]))
    return {
        "foreground_iou": round(fg_iou(pred, truth), 4),
        "pixel_error": round(float((pred != truth).mean()), 4),
        "ap50_components": round(float(np.mean(aps)), 3),
    }


def isbi(budget: float, seed: int, root: Path, random_forest: bool = True) -> dict:
    import tifffile
    from scipy import ndimage as ndi

    from unet_core.config import TrainConfig
    from unet_core.progress import run_to_end
    from unet_core.tiling import predict_tiled
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import train

    vol = tifffile.imread(root / "train-volume.tif")
    lab = tifffile.imread(root / "train-labels.tif") == 255
    train_idx, test_idx = slice(0, 20), slice(20, 30)
    instances = np.stack([ndi.label(s)[0] for s in lab]).astype(np.uint32)
    out: dict = {"experiment": "isbi", "budget_cpu_s": budget}

    # U-Net
    c0 = time.process_time()
    cfg = TrainConfig(iterations=10**9, time_limit=budget, time_clock="process", device="cpu",
                      seed=seed, val_fraction=0.0)
    pairs = [TrainingPair(vol[train_idx], instances[train_idx], name="isbi 0-19")]
    result = run_to_end(train(pairs, cfg))
    total_train = time.process_time() - c0
    c1 = time.process_time()
    probs = predict_tiled(result.model, vol[test_idx], device="cpu")
    unet_pred_cpu = time.process_time() - c1
    out["unet"] = {
        **isbi_scores(1.0 - probs[:, 0], lab[test_idx]), "steps": result.steps,
        "cpu_s_prepare_and_train": round(total_train, 1), "cpu_s_predict": round(unet_pred_cpu, 1),
    }

    print(json.dumps({"unet": out["unet"]}), flush=True)
    out["trivial_all_interior"] = isbi_scores(np.ones(lab[test_idx].shape), lab[test_idx])
    if not random_forest:
        return out

    # random forest on filter features, same annotations
    from sklearn.ensemble import RandomForestClassifier

    c0 = time.process_time()
    feats = np.stack([filter_features(s) for s in vol[train_idx]])
    rng = np.random.default_rng(seed)
    flat = feats.reshape(-1, feats.shape[-1])
    pick = rng.choice(flat.shape[0], 200_000, replace=False)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    rf.fit(flat[pick], lab[train_idx].reshape(-1)[pick])
    rf_train = time.process_time() - c0
    c1 = time.process_time()
    test_feats = np.stack([filter_features(s) for s in vol[test_idx]])
    p = rf.predict_proba(test_feats.reshape(-1, test_feats.shape[-1]))[:, 1].reshape(lab[test_idx].shape)
    rf_pred = time.process_time() - c1
    out["random_forest"] = {
        **isbi_scores(p, lab[test_idx]), "features": int(feats.shape[-1]), "train_pixels": 200_000,
        "cpu_s_features_and_fit": round(rf_train, 1), "cpu_s_predict": round(rf_pred, 1),
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", choices=("synthetic", "isbi"))
    ap.add_argument("--budget", type=float, default=300.0, help="training budget in CPU seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isbi", default=os.environ.get("NAPARI_UNET_ISBI", str(ROOT.parent / "shared/data/isbi2012")))
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--no-rf", action="store_true", help="isbi: skip the random-forest baseline")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    w0 = time.perf_counter()
    if args.experiment == "synthetic":
        res = synthetic(args.budget, args.seed)
    else:
        root = Path(args.isbi)
        if not (root / "train-volume.tif").is_file():
            print(f"ISBI 2012 data not found in {root}; pass --isbi DIR or set NAPARI_UNET_ISBI", file=sys.stderr)
            return 2
        res = isbi(args.budget, args.seed, root, random_forest=not args.no_rf)
    res["threads"] = torch.get_num_threads()
    res["wall_s"] = round(time.perf_counter() - w0, 1)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
