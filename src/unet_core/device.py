"""Choosing the torch device: 'auto' picks cuda > mps > cpu."""

from __future__ import annotations

import logging

import torch

from .errors import InputError

log = logging.getLogger(__name__)


def available_devices() -> list[str]:
    """Devices usable here, best first (e.g. ``['cuda:0', 'cpu']``)."""
    out = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn 'auto' / 'cuda' / 'cuda:1' / 'mps' / 'cpu' into a usable :class:`torch.device`.

    Raises
    ------
    InputError
        When the requested device is not available, naming the ones that are.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use one of: auto, {', '.join(available_devices())}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"device {device!r} is not available here; use one of: auto, {', '.join(available_devices())}")
    if dev.type == "mps" and "mps" not in available_devices():
        raise InputError(f"device 'mps' is not available here; use one of: auto, {', '.join(available_devices())}")
    return dev


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error of torch (CUDA, MPS) or of the CPU allocator."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)
