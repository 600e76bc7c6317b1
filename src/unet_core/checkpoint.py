"""Checkpoints: one file with weights, model config, provenance and (optionally) training state.

Format (``format_version`` 2): a ``torch.save`` dict holding only tensors, numbers, strings,
lists and dicts::

    {"format": "napari-unet-checkpoint", "format_version": 2,
     "model_config": "<ModelConfig JSON>", "meta": "<provenance JSON>",
     "state_dict": {name: tensor}, "train_state": {...} or absent,
     "digest": "<SHA-256 of everything above>"}

``meta`` holds the provenance (creation date, package version, iterations, data fingerprints,
metrics, training config); ``train_state`` what resuming needs (optimizer state, step, random
generator states). The digest detects damaged files (version-1 files have none, and loading
one logs a warning); it is no protection against a deliberate edit, since whoever edits the file
can recompute it.

The protection against hostile files is that it is loaded with ``torch.load(weights_only=True)``,
which refuses to unpickle arbitrary objects: such a file is rejected with
:class:`CheckpointError`, never executed. Files that are not checkpoints at all (images, random
bytes) are recognised by their first bytes and reported as such. Writes are atomic (temporary file
+ rename), so a crash or Stop never leaves a corrupt checkpoint, and a failed write (read-only
folder, full disk) raises :class:`~unet_core.errors.OutputError` and leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import logging
import math
import os
import pickle
import pickletools
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ModelConfig, config_from_json, config_to_json
from .errors import CheckpointError, InputError
from .io import atomic_path, write_error
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
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:  # torch's zip writer: "[enforce fail at inline_container.cc] ..."
            raise _save_error(path, tmp, payload, exc) from None
    log.info("saved checkpoint %s", path)
    return Path(path)


def _save_error(path: str | os.PathLike, tmp: Path, payload: dict[str, Any], exc: RuntimeError):
    """The :class:`OutputError` for a failed ``torch.save`` (which reports I/O errors as
    RuntimeError): a full disk when the free space is below the checkpoint's size."""
    size = sum(t.numel() * t.element_size() for t in payload["state_dict"].values())
    try:
        full = shutil.disk_usage(tmp.parent).free < 2 * size + 2**20
    except OSError:
        full = False
    if full:
        return write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return write_error(path, RuntimeError(f"torch could not write the file ({first[:160]})"))


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


#: first bytes of files that are sometimes passed by mistake
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy .npy array"),
)


def _not_a_checkpoint(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a napari-unet checkpoint ({what}); give a .pt file written by "
        "'napari-unet train' or the Train widget"
    )


def _sniff(path: Path) -> bytes:
    """Refuse files that are neither a zip (``torch.save``) nor a pickle, by their first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return head
    if not head:
        raise _not_a_checkpoint(path, "the file is empty")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _not_a_checkpoint(path, what)
    raise _not_a_checkpoint(path, f"unrecognised content, first bytes {head[:4]!r}")


def _pickle_global(path: Path) -> str | None:
    """The first global (``module.name``) a pickle stream would import; '' for a pickle of plain
    data; None when the file is not a pickle at all. The stream is only parsed, never executed."""
    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return None
    return ""


def _unpickling_detail(exc: BaseException) -> str:
    """The informative line of torch's weights-only refusal (e.g. 'Unsupported global: ...')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            return (rest or (lines[i + 1] if i + 1 < len(lines) else ""))[:160]
    return (lines[0] if lines else "")[:160]


def _read_payload(path: Path, device: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` with the failures told apart: not a checkpoint at all,
    a pickle with arbitrary objects (refused), a damaged file."""
    head = _sniff(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(exc)
        if not head.startswith(b"PK\x03\x04"):
            found = _pickle_global(path)
            if not found:
                what = "a pickle of plain Python data" if found == "" else "unrecognised content"
                raise _not_a_checkpoint(path, what) from None
            detail = f"it would import {found}"
        raise CheckpointError(
            f"{path}: refused to load - the file contains Python objects that only unsafe "
            f"unpickling could restore ({detail}); only load checkpoints written by napari-unet"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/format errors, truncated files
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable checkpoint, damaged or truncated ({type(exc).__name__}: {first}); "
            "use an intact copy or train again"
        ) from None


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, safely.

    Raises
    ------
    CheckpointError
        Missing file, not a napari-unet checkpoint (an image, random bytes, another program's
        file), a newer format, a damaged file, or a file that would need arbitrary code to
        unpickle (refused).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    payload = _read_payload(path, device)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _not_a_checkpoint(path, f"no '{FORMAT}' header")
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
    if version < 2:
        log.warning(
            "%s: format version %s checkpoint without a checksum - damage to it cannot be detected; "
            "fine-tune or save it again with this napari-unet to get one", path, version,
        )
    try:
        config = config_from_json(ModelConfig, payload["model_config"])
        meta = json.loads(payload.get("meta", "{}"))
        model = build_model(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, InputError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc})") from None
    model.eval()
    return Checkpoint(model=model, config=config, meta=meta, train_state=payload.get("train_state"), path=path)


#: what :func:`validate_train_state` requires of a training state: key -> accepted types
_TRAIN_STATE_KEYS: dict[str, tuple[type, ...]] = {
    "config": (str,),
    "step": (int,),
    "elapsed": (int, float),
    "optimizer": (dict,),
    "rng_numpy": (str,),
    "rng_torch": (torch.Tensor,),
}


def validate_train_state(state: Any, path: str | os.PathLike | None = None) -> None:
    """Check that a checkpoint's ``train_state`` can be resumed, before any of it is applied.

    Checks the keys and types the trainer reads, that the saved training config parses, that the
    optimizer state has its 'state' and 'param_groups', and that the random-generator states
    can be restored (tried on fresh generators, not the global ones).

    Parameters
    ----------
    state : dict or None
        :attr:`Checkpoint.train_state`.
    path : path-like, optional
        The checkpoint, for messages.

    Raises
    ------
    CheckpointError
        No training state (a best-model or exported checkpoint), or a damaged one; the message
        says to fine-tune it (``--from``) instead.
    """
    import numpy as np

    from .config import TrainConfig

    name = str(path) if path is not None else "the checkpoint"
    if not state:
        raise CheckpointError(
            f"{name}: has no training state to resume (a best-model or exported checkpoint); "
            "use init_from / --from to fine-tune it instead"
        )

    def damaged(what: str) -> CheckpointError:
        return CheckpointError(
            f"{name}: the training state is damaged ({what}), so the run cannot be resumed; "
            "fine-tune the weights with --from (init_from) instead, or train again"
        )

    if not isinstance(state, dict):
        raise damaged(f"a {type(state).__name__} instead of a dict")
    for key, types in _TRAIN_STATE_KEYS.items():
        if key not in state:
            raise damaged(f"'{key}' is missing")
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            raise damaged(f"'{key}' is a {type(state[key]).__name__}")
    if state["step"] < 0 or not math.isfinite(state["elapsed"]) or state["elapsed"] < 0:
        raise damaged(f"step {state['step']}, elapsed {state['elapsed']}")
    try:
        config_from_json(TrainConfig, state["config"])
    except (InputError, TypeError) as exc:
        raise damaged(f"training config: {exc}") from None
    opt = state["optimizer"]
    if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]
    ):
        raise damaged("optimizer state without 'state' and 'param_groups'")
    try:
        np.random.default_rng().bit_generator.state = json.loads(state["rng_numpy"])
    except (ValueError, TypeError, KeyError) as exc:
        raise damaged(f"numpy random state: {exc}") from None
    for key in ("rng_torch", "rng_augment"):
        if key in state:
            try:
                torch.Generator().set_state(state[key])
            except (RuntimeError, TypeError) as exc:
                raise damaged(f"{key}: {str(exc).splitlines()[0][:120]}") from None
