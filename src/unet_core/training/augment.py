"""Augmentation of training tiles on the training device: one ``grid_sample`` per batch.

Every tile is cut from its slice as a larger *source* window (mirror-padded at image borders), and
one sampling grid per tile maps the network's input tile into that window. The grid composes

* the paper's elastic deformation: random displacement vectors on a coarse ``g x g`` grid
  (default 3 x 3) drawn from a Gaussian with ``elastic_sigma`` (default 10) pixels standard
  deviation, interpolated bicubically to a smooth per-pixel field;
* a random affine map: flips, multiples of 90 degrees, a free rotation and a zoom.

The image is resampled bilinearly; target (class ids) and loss weights are resampled with the
*same* grid using nearest-neighbour lookup, so a warped label image stays integer-valued and the
weights stay attached to their pixels (warped consistently rather than recomputed). Intensity
augmentation (gamma, contrast, brightness, Gaussian noise) follows on the image only.

All random numbers come from one seeded CPU :class:`torch.Generator`, so a seed gives the same
augmentation on every device; the grids and resampling run wherever the batch lives (GPU, CPU).

Tiles have two spatial axes (Y, X) with the same size on both, or three (Z, Y, X) with the same
size on Y and X: volumes get the same design with one 5-D ``grid_sample`` per batch
(:func:`sampling_grid_3d`): flips on every axis, multiples of 90 degrees, the free rotation and
the zoom in the YX plane (z spacing is often coarser than x/y, so nothing rotates into z), and an
elastic YX displacement field interpolated trilinearly from a coarse ``g x g x g`` grid. Other
inputs are refused with an :class:`~unet_core.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import AugmentConfig
from ..errors import InputError


def source_size(in_size: int | tuple[int, ...], config: AugmentConfig | None) -> int | tuple[int, ...]:
    """Size (per spatial axis) of the source window that contains every augmented view of a
    tile of ``in_size`` per spatial axis.

    Covers the tile's rotated diagonal at the smallest zoom plus four standard deviations of the
    elastic displacement on each side. Has the parity of ``in_size`` so that the identity
    transform maps tile pixels exactly onto source pixels. A 3D tile ``(z, yx, yx)`` keeps its z
    size (z is only flipped) and gets the YX source size on Y and X.
    """
    if isinstance(in_size, tuple):
        yx = source_size(in_size[-1], config)
        return (in_size[0], yx, yx)
    if config is None:
        return in_size
    zoom_out = 1.0 / min(config.scale[0], 1.0)
    reach = in_size * (math.sqrt(2.0) if (config.rotation) else 1.0) * zoom_out
    s = int(math.ceil(reach + 8 * config.elastic_sigma)) + 2
    s = max(s, in_size)
    return s + ((s - in_size) % 2)


@dataclass(frozen=True)
class AugmentParams:
    """Random parameters of one batch (CPU tensors).

    ``matrix`` (N, 2, 2) maps tile offsets (x, y) in pixels to source offsets; ``displacement``
    (N, 2, g, g) elastic displacements in pixels (x, y); ``gamma``, ``contrast``, ``brightness``,
    ``noise_std`` (N,) intensity parameters; ``noise`` (N, C, *tile) standard-normal noise or None
    (``tile`` = the input tile's spatial shape).
    """

    matrix: torch.Tensor
    displacement: torch.Tensor
    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    noise_std: torch.Tensor
    noise: torch.Tensor | None


class Augmenter:
    """Seeded random augmentation of batches of training tiles.

    Parameters
    ----------
    config : AugmentConfig
        What to randomise.
    seed : int
        Seed of the augmenter's own CPU random generator.
    """

    def __init__(self, config: AugmentConfig, seed: int = 0) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------------ random parameters
    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.generator, dtype=torch.float64)

    def _log_uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.exp(self._uniform(n, math.log(lo), math.log(hi)))

    def sample(self, n: int, channels: int, in_size: int) -> AugmentParams:
        """Draw the parameters of a batch of ``n`` tiles of ``channels`` and ``in_size`` per
        spatial axis."""
        c = self.config
        g = self.generator
        angle = torch.zeros(n, dtype=torch.float64)
        if c.rot90:
            angle += (math.pi / 2) * torch.randint(0, 4, (n,), generator=g).double()
        if c.rotation:
            angle += self._uniform(n, -math.pi, math.pi)
        zoom = self._log_uniform(n, *c.scale)
        flip = torch.ones(n, dtype=torch.float64)
        if c.flip:
            flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
        cos, sin = torch.cos(angle), torch.sin(angle)
        # source offset = R(angle) @ diag(flip, 1) @ tile offset / zoom
        matrix = torch.stack(
            [torch.stack([cos * flip, -sin], -1), torch.stack([sin * flip, cos], -1)], -2
        ) / zoom[:, None, None]
        k = c.elastic_grid
        displacement = c.elastic_sigma * torch.randn(n, 2, k, k, generator=g, dtype=torch.float64)
        gamma = self._log_uniform(n, *c.gamma)
        contrast = self._uniform(n, *c.contrast)
        brightness = self._uniform(n, -c.brightness, c.brightness)
        noise_std = self._uniform(n, 0.0, c.noise)
        noise = (
            torch.randn(n, channels, in_size, in_size, generator=g) if c.noise > 0 else None
        )
        return AugmentParams(
            matrix.float(), displacement.float(), gamma.float(), contrast.float(),
            brightness.float(), noise_std.float(), noise,
        )

    # ------------------------------------------------------------------ application
    def __call__(
        self,
        image: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor,
        *,
        in_size: int,
        border: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augment a batch of source windows and cut the network's tiles out of them.

        Parameters
        ----------
        image : Tensor (N, C, S, S) float32
            Source windows (S = :func:`source_size`), on the training device.
        target : Tensor (N, S, S) int64
            Class ids over the same windows.
        weight : Tensor (N, S, S) float32
            Loss weights (0 outside the annotated region and outside the image).
        in_size : int
            Network input size per spatial axis.
        border : int
            Pixels the network loses per side; the target/weight tiles are the central
            ``in_size - 2 * border`` window.

        Raises
        ------
        InputError
            Windows without exactly two spatial axes of equal size, or target/weight shapes that
            differ from the image's spatial shape.

        Returns
        -------
        image (N, C, in_size, in_size) float32, target (N, out, out) int64,
        weight (N, out, out) float32
        """
        if image.ndim == 5:
            return self._volumes(image, target, weight, in_size, border)
        _check_2d(image, target, weight)
        n, ch = image.shape[:2]
        params = self.sample(n, ch, in_size)
        grid = sampling_grid(params, in_size, image.shape[-1], image.device)
        return apply_grid(image, target, weight, grid, border, params)

    def _volumes(
        self, image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
        in_size: int | tuple[int, ...], border: int | tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`__call__` for volumes ``(N, C, Sz, S, S)``; ``in_size``/``border`` per axis
        (z, y, x) or one int for all."""
        sizes = in_size if isinstance(in_size, tuple) else (in_size,) * 3
        spatial = tuple(image.shape[2:])
        if spatial[1] != spatial[2] or sizes[1] != sizes[2] or tuple(target.shape[1:]) != spatial \
                or target.shape != weight.shape:
            raise InputError(
                f"3D augmentation handles windows (N, C, Sz, S, S) with target/weight (N, Sz, S, S), "
                f"got {tuple(image.shape)}, {tuple(target.shape)}, {tuple(weight.shape)}; train "
                "without augmentation (augment=False) for other data"
            )
        n, ch = image.shape[:2]
        params = self.sample(n, ch, sizes[-1])
        flip_z = self._flip_z(n)
        noise = None
        if params.noise is not None:
            noise = torch.randn(n, ch, *sizes, generator=self.generator)
        params = dataclasses.replace(params, noise=noise)
        grid = sampling_grid_3d(params, flip_z, sizes, spatial, image.device)
        return apply_grid(image, target, weight, grid, border, params)

    def _flip_z(self, n: int) -> torch.Tensor:
        """(N,) of +1 / -1: random z flips (all +1 when flips are off)."""
        if not self.config.flip:
            return torch.ones(n)
        return torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0)


def _check_2d(image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    """Refuse windows that the 2D augmentation cannot handle, saying what to do."""
    spatial = tuple(image.shape[2:])
    if image.ndim != 4 or spatial[0] != spatial[1]:
        raise InputError(
            f"augmentation handles batches of square 2D windows (N, C, S, S), got {tuple(image.shape)}; "
            "train without augmentation (augment=False) for other data"
        )
    if tuple(target.shape) != (image.shape[0], *spatial) or tuple(weight.shape) != tuple(target.shape):
        raise InputError(
            f"target {tuple(target.shape)} and weight {tuple(weight.shape)} must have the shape "
            f"(N, S, S) of the image windows {tuple(image.shape)}"
        )


@functools.lru_cache(maxsize=16)
def _base_and_basis(in_size: int, grid_points: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile pixel offsets (P, 2) as (x, y) from the tile centre, and the bicubic interpolation
    basis (g*g, P) that turns coarse-grid displacements into a per-pixel field."""
    dev = torch.device(device)
    r = torch.arange(in_size, device=dev, dtype=torch.float32) - (in_size - 1) / 2.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    base = torch.stack([xx, yy], -1).reshape(-1, 2)
    g = grid_points
    eye = torch.eye(g * g, device=dev, dtype=torch.float32).reshape(g * g, 1, g, g)
    basis = F.interpolate(eye, size=(in_size, in_size), mode="bicubic", align_corners=True)
    return base, basis.reshape(g * g, -1)


def sampling_grid(params: AugmentParams, in_size: int, src_size: int, device: torch.device) -> torch.Tensor:
    """``grid_sample`` grid (N, in_size, in_size, 2) in normalised source coordinates.

    Tile pixel offsets ``u`` from the tile centre map to source offsets
    ``matrix @ u + displacement(u)`` from the source centre, where ``displacement`` is the bicubic
    interpolation of the coarse-grid displacements; with ``align_corners=False`` a source offset
    of ``p`` pixels is the normalised coordinate ``2 p / src_size``.
    """
    n, _, g, _ = params.displacement.shape
    base, basis = _base_and_basis(in_size, g, str(device))
    m = params.matrix.to(device)
    p = torch.einsum("nij,pj->npi", m, base)  # (N, P, 2)
    if params.displacement.abs().max() > 0:
        d = params.displacement.to(device).reshape(n, 2, g * g)
        p = p + torch.einsum("nck,kp->npc", d, basis)
    return (p * (2.0 / src_size)).reshape(n, in_size, in_size, 2)


def sampling_grid_3d(
    params: AugmentParams, flip_z: torch.Tensor, in_size: tuple[int, int, int],
    src_size: tuple[int, ...], device: torch.device,
) -> torch.Tensor:
    """``grid_sample`` grid (N, iz, iy, ix, 3) for volumes: ``params.matrix`` acts in YX, z is
    flipped by ``flip_z`` (N,), the elastic YX displacement is interpolated trilinearly from a
    coarse grid (the 2D grid of ``params`` repeated over z). Normalised as :func:`sampling_grid`,
    per axis of the source window ``src_size`` (z, y, x)."""
    n = params.matrix.shape[0]
    iz, iy, ix = in_size
    axes = [torch.arange(s, device=device, dtype=torch.float32) - (s - 1) / 2.0 for s in in_size]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    xy = torch.stack([xx, yy], -1).reshape(-1, 2)
    p = torch.einsum("nij,pj->npi", params.matrix.to(device), xy)  # (N, P, 2) source (x, y)
    if params.displacement.abs().max() > 0:
        d = params.displacement.to(device)  # (N, 2, g, g): the same field on every z
        d = F.interpolate(d[:, :, None].expand(-1, -1, 2, -1, -1), size=(iz, iy, ix),
                          mode="trilinear", align_corners=True)
        p = p + d.reshape(n, 2, -1).transpose(1, 2)
    z = flip_z.to(device)[:, None] * zz.reshape(1, -1)
    scale = torch.tensor([2.0 / src_size[2], 2.0 / src_size[1]], device=device)
    grid = torch.cat([p * scale, (z * (2.0 / src_size[0]))[..., None]], -1)
    return grid.reshape(n, iz, iy, ix, 3)


def apply_grid(
    image: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    grid: torch.Tensor,
    border: int | tuple[int, ...],
    params: AugmentParams | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resample image (bilinear) and target/weight (nearest, same grid), then intensity-augment.

    Shapes as in :meth:`Augmenter.__call__`; ``grid`` (N, *in, d) for ``d`` spatial axes;
    ``border`` per spatial axis or one int for all.
    """
    borders = border if isinstance(border, tuple) else (border,) * (grid.ndim - 2)
    crop = tuple(slice(b, s - b) for b, s in zip(borders, grid.shape[1:-1]))
    out_grid = grid[(slice(None), *crop)] if any(borders) else grid
    img = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # one nearest lookup for both: stack target (exact in float32 for ids < 2**24) and weight
    tw = torch.stack([target.to(weight.dtype), weight], 1)
    tw = F.grid_sample(tw, out_grid, mode="nearest", padding_mode="zeros", align_corners=False)
    tgt = tw[:, 0].round().to(torch.int64)
    wt = tw[:, 1].contiguous()
    if params is not None:
        img = intensity(img, params)
    return img, tgt, wt


def intensity(img: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Gamma (sign-preserving, on the normalised image), contrast about the tile mean,
    brightness offset and Gaussian noise; ``img`` (N, C, *spatial) float32."""
    dev = img.device
    view = (-1,) + (1,) * (img.ndim - 1)
    gamma = params.gamma.to(dev).view(view)
    img = torch.sign(img) * img.abs().clamp_min(1e-6) ** gamma
    mean = img.mean(dim=tuple(range(2, img.ndim)), keepdim=True)
    img = (img - mean) * params.contrast.to(dev).view(view) + mean + params.brightness.to(dev).view(view)
    if params.noise is not None:
        img = img + params.noise.to(dev) * params.noise_std.to(dev).view(view)
    return img
