"""The whole loop on the built-in synthetic sample, without a GUI.

sample -> weight map -> train a small U-Net -> overlap-tile predict -> instance labels -> TIFFs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import InputError
from .io import labels_dtype, write_tiff
from .progress import Progress

log = logging.getLogger(__name__)

#: names of the files the demo writes, relative to its output folder
DEMO_FILES = {
    "image": "sample-image.tif",
    "ground_truth": "sample-ground-truth.tif",
    "weights": "sample-weights.tif",
    "model": "model.pt",
    "labels": "sample-prediction-labels.tif",
    "probabilities": "sample-prediction-probabilities.tif",
}


def foreground_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foregrounds (> 0) of two label images."""
    p, t = pred > 0, truth > 0
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


def run_demo(
    output: str | os.PathLike,
    *,
    iterations: int = 150,
    overwrite: bool = True,
    config: TrainConfig | None = None,
) -> Generator[Progress, None, dict[str, Path]]:
    """Run the loop, yielding progress; return the written files by role (see :data:`DEMO_FILES`).

    Without ``overwrite``, every file it would write (including the best-validation checkpoint
    ``model.best.pt``) is checked before any work, and an existing one is refused.

    Raises
    ------
    InputError
        ``overwrite`` is False and some of the files exist.
    """
    from .pipeline import iter_segment
    from .sample_data import synthetic_nuclei
    from .training.data import TrainingPair
    from .training.trainer import best_path, train
    from .weights import boundary_weight_map

    out = Path(output)
    files = {k: out / v for k, v in DEMO_FILES.items()}
    existing = [p.name for p in (*files.values(), best_path(files["model"])) if p.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{out} already holds {', '.join(existing)}; pass --overwrite (overwrite=True) to replace "
            "them or choose another output folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    image, truth = synthetic_nuclei()
    write_tiff(files["image"], image, overwrite=overwrite)
    write_tiff(files["ground_truth"], truth, overwrite=overwrite)
    yield Progress("weights", 0, 1, "boundary weight map")
    cfg = replace(config or TrainConfig(), iterations=iterations)
    w = boundary_weight_map(truth, w0=cfg.weights.w0, sigma=cfg.weights.sigma)
    write_tiff(files["weights"], w, overwrite=overwrite)
    if files["model"].exists() and overwrite:
        files["model"].unlink()
    result = yield from train([TrainingPair(image, truth, name="sample")], cfg, output=files["model"])
    segmentation = yield from iter_segment(result.model, image)
    labels = segmentation.labels
    write_tiff(files["labels"], labels.astype(labels_dtype(labels)), overwrite=overwrite)
    write_tiff(files["probabilities"], segmentation.foreground, overwrite=overwrite)
    iou = foreground_iou(labels, truth)
    log.info("demo: foreground IoU %.3f, %d objects (truth %d)", iou, labels.max(), truth.max())
    yield Progress("done", 1, 1, f"foreground IoU {iou:.3f}", metrics={"iou": iou, "objects": int(labels.max()), "true_objects": int(truth.max())})
    return files
