"""Learning from the pixels nobody painted: a Noise2Void blind-spot head beside segmentation.

DenoiSeg (Buchholz et al. 2020) trains one network to segment and to denoise: the denoising
objective needs no annotation, so every pixel of the user's images teaches the shared layers.
Here (:class:`BlindSpotHead`) a 1x1 convolution reads the U-Net's last feature map (the input
of its classifier ``model.head``, taken with a forward pre-hook, so the network and its
checkpoints are unchanged) and predicts the input intensities. Noise2Void's blind spot
(Krull et al. 2019): in each training tile a small fraction of the pixels is replaced by the
value of a random neighbour (5 x 5, or 5 x 5 x 5 in 3D, never itself) before the forward pass;
the head must predict their *original* values, which it can only do from the surroundings (the
noise of one pixel is not predictable from its neighbours, the structure is). The loss is the
mean squared error at those pixels, added to the segmentation loss with the weight
``TrainConfig.self_supervised``.

The head exists only during training: it is not part of the saved network (its weights travel
in the resumable ``train_state``), so prediction costs nothing extra.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models import SegmentationNet

#: fraction of each tile's output pixels that are blind spots per step
BLIND_FRACTION = 0.01
#: neighbours a blind spot takes its value from: offsets in [-RADIUS, RADIUS] per axis, not all 0
RADIUS = 2


class BlindSpotHead:
    """The denoising head, its pixel masking and its loss for one training run.

    Parameters
    ----------
    model : SegmentationNet
        A U-Net (the head reads the input of its ``head`` layer); on the training device.
    fraction : float
        Fraction of the output pixels of each tile masked per step (at least one per tile).

    Raises
    ------
    InputError
        The network has no ``head`` 1x1 classifier to read features from (FCN, DeepLabv3+).
    """

    def __init__(self, model: SegmentationNet, fraction: float = BLIND_FRACTION) -> None:
        classifier = getattr(model, "head", None)
        if not isinstance(classifier, (nn.Conv2d, nn.Conv3d)):
            raise InputError(
                f"self-supervised training needs a U-Net; the {model.config.arch!r} network has "
                "no feature map it can read: set self_supervised to 0 (--self-supervised 0)"
            )
        conv = nn.Conv3d if isinstance(classifier, nn.Conv3d) else nn.Conv2d
        param = next(classifier.parameters())
        self.module = conv(classifier.in_channels, model.config.in_channels, 1).to(param.device)
        self.fraction = float(fraction)
        self._features: torch.Tensor | None = None
        self._hook = classifier.register_forward_pre_hook(self._capture)

    def _capture(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0]

    def parameters(self) -> list[nn.Parameter]:
        """The head's parameters (for the optimizer)."""
        return list(self.module.parameters())

    def mask(
        self, x: torch.Tensor, border: int | tuple[int, ...], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Replace random pixels of the output window by a random neighbour's value.

        Parameters
        ----------
        x : Tensor, float32, shape (N, C, *in_size)
            Network inputs (after augmentation).
        border : int or tuple of int
            The network's border per spatial axis (output pixel ``p`` sees input pixel
            ``p + border``).

        Returns
        -------
        masked : Tensor, shape of ``x``
            The inputs with the blind spots filled (a copy; ``x`` is unchanged).
        spots : dict
            'batch' (M,) int64 sample indices, 'out' (M, d) int64 output coordinates, 'target'
            (M, C) float32 original values.
        """
        n, c, *size = x.shape
        d = len(size)
        b = torch.as_tensor((border,) * d if isinstance(border, int) else border, device=x.device)
        size_t = torch.as_tensor(size, device=x.device)
        out = size_t - 2 * b
        per_tile = max(1, round(self.fraction * int(torch.prod(out))))
        batch = torch.arange(n, device=x.device).repeat_interleave(per_tile)
        pos_out = (torch.rand(len(batch), d, device=x.device, generator=generator) * out).long()
        pos_in = pos_out + b
        offset = torch.randint(-RADIUS, RADIUS + 1, (len(batch), d), device=x.device, generator=generator)
        zero = (offset == 0).all(1)
        offset[zero, 0] = 1  # never the pixel itself
        src = torch.minimum(torch.clamp(pos_in + offset, min=0), size_t - 1)
        masked = x.clone()
        idx_in = (batch, slice(None), *pos_in.unbind(1))
        target = x[idx_in]  # (M, C)
        masked[idx_in] = x[(batch, slice(None), *src.unbind(1))]
        return masked, {"batch": batch, "out": pos_out, "target": target}

    def loss(self, spots: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of the head's prediction at the blind spots (after a forward pass
        of the network on the masked inputs)."""
        if self._features is None:
            raise RuntimeError("BlindSpotHead.loss before a forward pass of the network")
        pred = self.module(self._features.float())
        self._features = None
        value = pred[(spots["batch"], slice(None), *spots["out"].unbind(1))]
        return torch.mean((value - spots["target"]) ** 2)

    def state_dict(self) -> dict[str, Any]:
        """The head's weights (tensors only: safe for ``weights_only`` loading)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (resume)."""
        self.module.load_state_dict(state)

    def close(self) -> None:
        """Remove the hook from the network (the network is as before)."""
        self._hook.remove()
        self._features = None
