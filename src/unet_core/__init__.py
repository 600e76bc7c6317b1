"""unet_core: the GUI-free engine of napari-unet.

U-Net model, boundary weight maps, overlap-tile prediction, training, checkpoints, TIFF I/O and
the ``napari-unet`` command line. This package never imports napari, qtpy, magicgui or superqt.

Heavy submodules (torch) are imported lazily, so ``import unet_core`` is cheap; the public names
below are resolved on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # configs
    "ModelConfig": "unet_core.config",
    "NormalizationConfig": "unet_core.config",
    "WeightMapConfig": "unet_core.config",
    "AugmentConfig": "unet_core.config",
    "TrainConfig": "unet_core.config",
    "PostprocessConfig": "unet_core.config",
    # models and checkpoints
    "UNet": "unet_core.models.unet",
    "build_model": "unet_core.models",
    "available_architectures": "unet_core.models",
    "save_checkpoint": "unet_core.checkpoint",
    "load_checkpoint": "unet_core.checkpoint",
    "Checkpoint": "unet_core.checkpoint",
    # training
    "boundary_weight_map": "unet_core.weights",
    "TrainingPair": "unet_core.training.data",
    "train": "unet_core.training.trainer",
    "TrainResult": "unet_core.training.trainer",
    "Trainer": "unet_core.training.trainer",
    "training_targets": "unet_core.training.targets",
    # prediction
    "segment": "unet_core.pipeline",
    "iter_segment": "unet_core.pipeline",
    "segment_probabilities": "unet_core.pipeline",
    "Segmentation": "unet_core.pipeline",
    "predict_tiled": "unet_core.tiling",
    "iter_predict_tiled": "unet_core.tiling",
    "probabilities_to_instances": "unet_core.postprocess",
    "plan_tiles": "unet_core.tiling",
    "TilePlan": "unet_core.tiling",
    "Merger": "unet_core.tiling",
    "NumpyMerger": "unet_core.tiling",
    # metrics
    "segmentation_metrics": "unet_core.metrics",
    "match_instances": "unet_core.metrics",
    "instance_ap": "unet_core.metrics",
    # long-running jobs, errors, files, sample
    "Progress": "unet_core.progress",
    "run_to_end": "unet_core.progress",
    "iter_in_process": "unet_core.processes",
    "ProcessJob": "unet_core.processes",
    "UNetCoreError": "unet_core.errors",
    "JobCrashed": "unet_core.errors",
    "InputError": "unet_core.errors",
    "CheckpointError": "unet_core.errors",
    "read_tiff": "unet_core.io",
    "write_tiff": "unet_core.io",
    "synthetic_nuclei": "unet_core.sample_data",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unet_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
