"""The model side of tiled prediction: a batch of tiles in, softmax probabilities out.

:func:`prepared_forward` puts the model on its device in eval mode (or builds the optimised CPU
graph of a U-Net), and restores mode and memory layout afterwards; the :class:`TileForward` it
yields applies test-time augmentation and mixed precision.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..models.base import SegmentationNet

log = logging.getLogger(__name__)

# The 8 elements of the dihedral group as (quarter turns, horizontal flip), ordered so that a
# prefix is a useful subset: identity, the two mirrors, the half turn, then the rest.
DIHEDRAL: tuple[tuple[int, bool], ...] = (
    (0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True),
)


def resolve_tta(tta: bool | int | Sequence[int] | Sequence[tuple[int, bool]] | None) -> tuple[tuple[int, bool], ...]:
    """The dihedral transforms ``(quarter_turns, flip)`` to average over.

    ``False``/``None``/``0``/``1``: identity only; ``True``: all 8 flips/rotations; an int ``n``:
    the first ``n`` of :data:`DIHEDRAL`; a sequence of indices into :data:`DIHEDRAL` or of
    ``(quarter_turns, flip)`` pairs. They act on the last two spatial axes.
    """
    if tta is None or tta is False:
        return DIHEDRAL[:1]
    if tta is True:
        return DIHEDRAL
    if isinstance(tta, int | np.integer):
        if not 0 <= int(tta) <= 8:
            raise InputError(f"tta={tta}: give True/False, a number of transforms 1..8 or a list")
        return DIHEDRAL[: max(1, int(tta))]
    out = []
    for t in tta:
        if isinstance(t, int | np.integer) and 0 <= int(t) < 8:
            out.append(DIHEDRAL[int(t)])
        elif isinstance(t, tuple | list) and len(t) == 2 and int(t[0]) % 4 == t[0] and isinstance(t[1], bool):
            out.append((int(t[0]), bool(t[1])))
        else:
            raise InputError(
                f"tta entry {t!r} is not an index 0..7 or a (quarter_turns 0..3, flip bool) pair"
            )
    if not out:
        raise InputError("tta=[] selects no transform; use tta=False for plain prediction")
    return tuple(dict.fromkeys(out))


def resolve_amp(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision)."""
    if amp is None or amp is False or amp in ("off", "none", "no"):
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        return torch.float16
    raise InputError(f"amp={amp!r}: use 'auto', 'bf16', 'fp16', True or False")


def run_batch(
    model: torch.nn.Module,
    x: torch.Tensor,
    transforms: Sequence[tuple[int, bool]],
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> torch.Tensor:
    """Softmax probabilities ``(B, K, *out_shape)`` float32 of tiles ``x`` ``(B, C, *in_shape)``,
    averaged over the TTA transforms (each undone before averaging)."""
    acc = None
    for k, flip in transforms:
        xi = torch.rot90(x, k, dims=(-2, -1)) if k else x
        if flip:
            xi = torch.flip(xi, dims=(-1,))
        xi = xi.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        ctx = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
        with ctx:
            logits = model(xi)
        p = torch.softmax(logits.float(), dim=1)
        if flip:
            p = torch.flip(p, dims=(-1,))
        if k:
            p = torch.rot90(p, -k, dims=(-2, -1))
        acc = p if acc is None else acc.add_(p)
    assert acc is not None
    if len(transforms) > 1:
        acc /= len(transforms)
    return acc


@dataclass(frozen=True)
class TileForward:
    """Callable: normalised tiles ``(B, C, *in_shape)`` float32 -> probabilities ``(B, K, *out_shape)``.

    Attributes
    ----------
    net : torch.nn.Module
        The model in eval mode on ``device``, or its optimised inference graph.
    device : torch.device
    transforms : tuple of (int, bool)
        TTA transforms (:func:`resolve_tta`).
    amp_dtype : torch.dtype or None
        Autocast dtype; None = full precision.
    channels_last : bool
        Feed the net channels-last tensors.
    """

    net: torch.nn.Module
    device: torch.device
    transforms: tuple[tuple[int, bool], ...]
    amp_dtype: torch.dtype | None
    channels_last: bool

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(tiles).to(self.device)
            return run_batch(self.net, x, self.transforms, self.amp_dtype, self.channels_last).cpu().numpy()


@contextlib.contextmanager
def prepared_forward(
    model: SegmentationNet,
    device: torch.device,
    *,
    tta: bool | int | Sequence = False,
    amp: bool | str | None = "auto",
    channels_last: bool | None = None,
    optimize: bool = True,
) -> Iterator[TileForward]:
    """The model ready for tiles on ``device`` (see :func:`~unet_core.tiling.iter_predict_tiled`
    for the options); its train/eval mode and memory layout are restored on exit."""
    transforms = resolve_tta(tta)
    amp_dtype = resolve_amp(amp, device)
    use_cl = (device.type == "cuda") if channels_last is None else bool(channels_last)
    use_cl = use_cl and model.config.spatial_dims == 2  # channels_last is a 4-D memory format
    was_training = model.training
    model.to(device).eval()
    net = _inference_net(model, device, amp_dtype, channels_last) if optimize else None
    if net is not None:
        use_cl = False  # the optimised graph chooses its own layout
    elif use_cl:
        model.to(memory_format=torch.channels_last)
    try:
        yield TileForward(model if net is None else net, device, transforms, amp_dtype, use_cl)
    finally:
        if use_cl:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def _inference_net(model: SegmentationNet, dev: torch.device, amp_dtype, channels_last: bool | None):
    """The optimised CPU inference graph of ``model``, or None to use the module itself."""
    if dev.type != "cpu" or amp_dtype is not None or model.config.spatial_dims != 2:
        return None  # FastUNet is a 2D graph: 3D nets run as the plain module
    from ..models.unet import UNet
    from ..models.unet_inference import FastUNet

    if not isinstance(model, UNet) or type(model).forward is not UNet.forward or "forward" in vars(model):
        return None  # another architecture, or a forward replaced on a subclass or the instance
    try:
        return FastUNet(model, channels_last=True if channels_last is None else bool(channels_last)).eval()
    except Exception as exc:  # noqa: BLE001 - an unexpected layer layout: the plain module is exact
        log.debug("no optimised inference graph for %s (%s); using the module", type(model).__name__, exc)
        return None
