"""What every segmentation network of the engine states about itself.

The tiler, the trainer and the checkpoints only rely on this interface, so any architecture
(U-Net, FCN, DeepLabv3+) works everywhere downstream. Shapes are written for any number of
spatial axes (``config.spatial_dims``; 3 for 3D U-Nets, 2 otherwise): a network maps
``(N, C, *spatial)`` to ``(N, K, *out_spatial)``. The geometry (``border``, ``context``,
``size_multiple``, :meth:`~SegmentationNet.output_size`) is that of the y and x axes;
:meth:`~SegmentationNet.axis_geometry` gives it per axis (an anisotropic 3D U-Net has its own z
geometry; every other network is the same along every axis).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import InputError


class Geometry:
    """Input/output sizes along one spatial axis, from :meth:`output_size` and ``border``."""

    border: int = 0
    context: int = 0
    size_multiple: int = 1

    def output_size(self, n: int) -> int:
        """Output length along the axis for an input length of ``n`` pixels (raises if ``n`` is
        invalid)."""
        raise NotImplementedError

    def is_valid_input_size(self, n: int) -> bool:
        """Whether an input length of ``n`` pixels is accepted along the axis."""
        try:
            return self.output_size(n) >= 1
        except InputError:
            return False

    def valid_input_size(self, n: int) -> int:
        """Smallest valid input length whose output length is at least ``n`` pixels."""
        if n < 1:
            raise InputError(f"output size must be >= 1, got {n}")
        m = max(1, n + 2 * self.border)
        while not (self.is_valid_input_size(m) and self.output_size(m) >= n):
            m += 1
        return m

    def nearest_valid_sizes(self, n: int) -> tuple[int | None, int]:
        """The closest valid input sizes below (None if none) and above ``n``."""
        lo = n - 1
        while lo >= 1 and not self.is_valid_input_size(lo):
            lo -= 1
        hi = n + 1
        while not self.is_valid_input_size(hi):
            hi += 1
        return (lo if lo >= 1 else None), hi

    def nearest_valid_message(self, n: int) -> str:
        """'nearest valid sizes: A and B' (or 'the smallest valid size is B') for length ``n``."""
        lo, hi = self.nearest_valid_sizes(int(n))
        if lo is None:
            return f"the smallest valid size is {hi}"
        return f"nearest valid sizes: {lo} and {hi}"


class AxisGeometry(Geometry):
    """The geometry of one axis that differs from the net's own (z of an anisotropic 3D U-Net).

    Parameters
    ----------
    output : callable
        ``output(n)`` = output length for input length ``n``, or None when ``n`` is invalid.
    border, context, size_multiple : int
        As :class:`SegmentationNet`'s, along this axis.
    """

    def __init__(self, output: Callable[[int], int | None], *, border: int, context: int,
                 size_multiple: int) -> None:
        self._output = output
        self.border, self.context, self.size_multiple = border, context, size_multiple

    def is_valid_input_size(self, n: int) -> bool:
        """Whether an input length of ``n`` pixels is accepted along the axis."""
        return self._output(int(n)) is not None

    def output_size(self, n: int) -> int:
        """Output length for input length ``n``; raises :class:`InputError` naming the nearest
        valid sizes when ``n`` is invalid."""
        s = self._output(int(n))
        if s is None:
            if n < 1:
                raise InputError(f"input size must be >= 1, got {n}")
            raise InputError(f"input size {n} is not valid along z; {self.nearest_valid_message(int(n))}")
        return s


class SegmentationNet(nn.Module, Geometry):
    """Base class: ``(N, in_channels, *spatial)`` float32 -> ``(N, n_classes, *out_spatial)`` logits.

    ``spatial`` has ``config.spatial_dims`` axes and
    ``out_spatial[i] = axis_geometry(i).output_size(spatial[i])``. Subclasses set :attr:`config`
    and implement :meth:`forward` and :meth:`output_size` (and :meth:`axis_geometry` when an axis
    differs). The attributes below are those of the y and x axes (of every axis unless
    :meth:`axis_geometry` says otherwise).

    Attributes
    ----------
    config : ModelConfig
        The options the network was built with (saved in every checkpoint).
    border : int
        Pixels lost per side of every spatial axis: ``output = input - 2 * border`` ('valid'
        nets; 0 for padded nets).
    context : int
        Pixels of context a padded net needs per side of an output pixel, along every spatial
        axis, for its value not to depend on tile borders (used as the overlap of blended
        tiles); equals ``border`` for 'valid' nets.
    size_multiple : int
        Granularity of valid input sizes / tile strides along every axis (2**depth for U-Nets,
        the output stride for FCN/DeepLab).
    """

    config: ModelConfig
    border: int = 0
    context: int = 0
    size_multiple: int = 1

    @property
    def spatial_dims(self) -> int:
        """Number of spatial axes of the input (``config.spatial_dims``)."""
        return self.config.spatial_dims

    def output_size(self, n: int) -> int:
        """Output length along y and x for an input length of ``n`` pixels (raises if ``n`` is
        invalid)."""
        raise NotImplementedError

    def axis_geometry(self, axis: int) -> Geometry:
        """The geometry along spatial ``axis`` (``border``, ``context``, ``size_multiple``,
        ``output_size``, ``valid_input_size``...): the net itself unless an axis differs."""
        return self

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` naming the nearest valid sizes for a wrong input shape.

        ``x`` must be ``(N, in_channels, *spatial)`` with ``config.spatial_dims`` spatial axes.
        """
        d = self.config.spatial_dims
        if x.ndim != 2 + d:
            raise InputError(
                f"expected a (N, C, *spatial) tensor with {d} spatial axes, got shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[1] != self.config.in_channels:
            raise InputError(
                f"the model reads {self.config.in_channels} channel(s), the input has {x.shape[1]}"
            )
        for axis, n in enumerate(x.shape[2:]):
            geom = self.axis_geometry(axis)
            if not geom.is_valid_input_size(int(n)):
                raise InputError(
                    f"input size {int(n)} is not valid for this {self.config.padding!r} network; "
                    f"{geom.nearest_valid_message(int(n))} (see valid_input_size())"
                )


class PaddedNet(SegmentationNet):
    """A padded network (FCN, DeepLabv3+): the output is as large as the input, for any input size.

    Inputs whose size is not a multiple of ``size_multiple`` are padded inside :meth:`forward`
    (see :meth:`pad_to_multiple`) and the logits cropped back.
    """

    border = 0

    def output_size(self, n: int) -> int:
        """Output length for input length ``n`` (equal: the net is padded)."""
        if n < 1:
            raise InputError(f"input size must be >= 1, got {n}")
        return n

    def pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` reflected (replicated when too small) at the end of each spatial axis up to a
        multiple of ``size_multiple``; unchanged when it is one already."""
        m = self.size_multiple
        spatial = x.shape[2:]
        pads = [(-n) % m for n in spatial]
        if not any(pads):
            return x
        mode = "reflect" if all(p < n for p, n in zip(pads, spatial)) else "replicate"
        flat = [v for p in reversed(pads) for v in (0, p)]  # F.pad order: last axis first
        return torch.nn.functional.pad(x, flat, mode=mode)
