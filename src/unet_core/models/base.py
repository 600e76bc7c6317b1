"""What every segmentation network of the engine states about itself.

The tiler, the trainer and the checkpoints only rely on this interface, so any architecture
(U-Net, FCN, DeepLabv3+) works everywhere downstream.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import InputError


class SegmentationNet(nn.Module):
    """Base class: maps ``(N, in_channels, H, W)`` float32 to ``(N, n_classes, h, w)`` logits.

    Subclasses set :attr:`config` and implement :meth:`forward` and :meth:`output_size`.

    Attributes
    ----------
    config : ModelConfig
        The options the network was built with (saved in every checkpoint).
    border : int
        Pixels lost per side: ``output = input - 2 * border`` ('valid' nets; 0 for padded nets).
    context : int
        Pixels of context a padded net needs per side of an output pixel for its value not to
        depend on tile borders (used as the overlap of blended tiles); equals ``border`` for
        'valid' nets.
    size_multiple : int
        Granularity of valid input sizes / tile strides (2**depth for U-Nets, the output stride
        for FCN/DeepLab).
    """

    config: ModelConfig
    border: int = 0
    context: int = 0
    size_multiple: int = 1

    def output_size(self, n: int) -> int:
        """Output edge length for an input edge of ``n`` pixels (raises if ``n`` is invalid)."""
        raise NotImplementedError

    def is_valid_input_size(self, n: int) -> bool:
        """Whether an input edge of ``n`` pixels is accepted."""
        try:
            return self.output_size(n) >= 1
        except InputError:
            return False

    def valid_input_size(self, n: int) -> int:
        """Smallest valid input edge whose output edge is at least ``n`` pixels."""
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
        """'nearest valid sizes: A and B' (or 'the smallest valid size is B') for input edge ``n``."""
        lo, hi = self.nearest_valid_sizes(int(n))
        if lo is None:
            return f"the smallest valid size is {hi}"
        return f"nearest valid sizes: {lo} and {hi}"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` naming the nearest valid sizes for a wrong input shape."""
        if x.ndim != 4:
            raise InputError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise InputError(
                f"the model reads {self.config.in_channels} channel(s), the input has {x.shape[1]}"
            )
        for n in x.shape[2:]:
            if not self.is_valid_input_size(int(n)):
                raise InputError(
                    f"input size {int(n)} is not valid for this {self.config.padding!r} network; "
                    f"{self.nearest_valid_message(int(n))} (see valid_input_size())"
                )
