"""Segmentation networks and the registry that builds them from a :class:`ModelConfig`."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ModelConfig
from ..errors import InputError
from .base import SegmentationNet

# arch name -> "module:Class", imported on demand
_REGISTRY: dict[str, str] = {
    "unet": "unet_core.models.unet:UNet",
    "fcn32s": "unet_core.models.fcn:FCN",
    "fcn16s": "unet_core.models.fcn:FCN",
    "fcn8s": "unet_core.models.fcn:FCN",
    "deeplabv3plus": "unet_core.models.deeplab:DeepLabV3Plus",
}


def available_architectures() -> list[str]:
    """Names accepted by ``ModelConfig.arch`` (and the CLI's ``--arch``)."""
    return list(_REGISTRY)


def build_model(config: ModelConfig) -> SegmentationNet:
    """Instantiate the network described by ``config``."""
    import importlib

    target = _REGISTRY.get(config.arch)
    if target is None:
        raise InputError(
            f"unknown architecture {config.arch!r}; choose one of {', '.join(_REGISTRY)}"
        )
    module, cls = target.split(":")
    factory: Callable[[ModelConfig], SegmentationNet] = getattr(importlib.import_module(module), cls)
    return factory(config)


__all__ = ["SegmentationNet", "available_architectures", "build_model"]
