"""Checkpoints: one file with weights, model config, provenance and (optionally) training state.

Format (``format_version`` 2): a ``torch.save`` dict holding only tensors, numbers, strings,
lists and dicts::

    {"format": "napari-unet-checkpoint", "format_version": 2,
     "model_config": "<ModelConfig JSON>", "meta": "<provenance JSON>",
     "state_dict": {name: tensor}, "train_state": {...} or absent,
     "digest": "<SHA-256 of everything above>"}

``meta`` holds the provenance (creation date, package version, iterations, data fingerprints,
metrics, training config); ``train_state`` what resuming needs (optimizer state, step, random
generator states). The digest detects damaged or edited files (version-1 files have none).

It is loaded with ``torch.load(weights_only=True)``, which refuses to unpickle arbitrary objects:
a tampered or foreign file is rejected with :class:`CheckpointError`, never executed. Writes are
atomic (temporary file + rename), so a crash or Stop never leaves a corrupt checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ModelConfig, config_from_json, config_to_json
from .errors import CheckpointError, InputError
from .io import atomic_path
from .models import SegmentationNet, build_model

log = logging.getLogger(__name__)

FORMAT = "napari-unet-checkpoint"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : SegmentationNet
        The network in eval mode on the CPU, weights loaded.
    config : ModelConfig
        Its configuration.
    meta : dict
        Provenance: creation date, package version, iterations, data fingerprints, metrics.
    train_state : dict or None
        Optimizer/scheduler state and step, for resuming.
    path : Path or None
        Where it was loaded from.
    """

    model: SegmentationNet
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    path: Path | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: SegmentationNet,
    *,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` (and its config, provenance and training state) atomically to ``path``."""
    meta = dict(meta or {})
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("napari_unet_version", __version__)
    meta.setdefault("n_parameters", sum(p.numel() for p in model.parameters()))
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": config_to_json(model.config),
        "meta": json.dumps(meta, default=_json_default),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    payload["digest"] = _digest(payload)
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    log.info("saved checkpoint %s", path)
    return Path(path)


def _digest(payload: dict[str, Any]) -> str:
    """SHA-256 over a checkpoint payload (all entries but 'digest'), in a canonical order."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)}".encode())
            for k in sorted(obj, key=repr):
                h.update(repr(k).encode())
                feed(obj[k])
        elif isinstance(obj, list | tuple):
            h.update(f"L{len(obj)}".encode())
            for v in obj:
                feed(v)
        else:
            h.update(f"V{obj!r}".encode())

    feed({k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, safely.

    Raises
    ------
    CheckpointError
        Missing file, not a napari-unet checkpoint, a newer format, or a file that would need
        arbitrary code to unpickle (refused).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: refused to load - the file contains Python objects that only unsafe "
            f"unpickling could restore ({first[:160]}); only load checkpoints written by napari-unet"
        ) from None
    except Exception as exc:  # zip/format errors, truncated files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a napari-unet checkpoint (no '{FORMAT}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this napari-unet "
            f"understands ({FORMAT_VERSION}); upgrade napari-unet"
        )
    if version >= 2 and payload.get("digest") != _digest(payload):
        raise CheckpointError(
            f"{path}: the checkpoint was modified or damaged after it was written (checksum "
            "mismatch); use an intact copy or train again"
        )
    try:
        config = config_from_json(ModelConfig, payload["model_config"])
        meta = json.loads(payload.get("meta", "{}"))
        model = build_model(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, InputError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc})") from None
    model.eval()
    return Checkpoint(model=model, config=config, meta=meta, train_state=payload.get("train_state"), path=path)
