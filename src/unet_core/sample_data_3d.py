"""A deterministic synthetic 3D nuclei stack (anisotropic voxels, touching nuclei) with ground truth.

Generated, not downloaded: ellipsoidal nuclei that are round in physical space, sampled on a grid
whose z spacing is ``anisotropy`` times the y/x pixel size, many placed against a neighbour so
that they touch, with chromatin texture, a z-elongated optical blur, background and Poisson
noise, like a confocal DAPI stack. Ground truth: one label per nucleus in 3D (touching nuclei
split where their scaled distances to the two centres are equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NucleiStack:
    """A synthetic stack.

    Attributes
    ----------
    image : ndarray (Z, Y, X) uint16
        The stack.
    labels : ndarray (Z, Y, X) uint32
        Ground-truth instance labels (0 = background).
    voxel_size : (float, float, float)
        z, y, x spacing in micrometres (y/x: 0.5).
    """

    image: np.ndarray
    labels: np.ndarray
    voxel_size: tuple[float, float, float]


def synthetic_nuclei_3d(
    shape: tuple[int, int, int] = (24, 128, 128),
    *,
    anisotropy: float = 4.0,
    n_nuclei: int | None = None,
    radius: tuple[float, float] = (7.0, 11.0),
    touching: float = 0.5,
    photons: float = 300.0,
    seed: int = 0,
) -> NucleiStack:
    """Make a synthetic 3D nuclei stack and its 3D instance labels.

    Parameters
    ----------
    shape : (int, int, int)
        Stack size (Z, Y, X) in voxels.
    anisotropy : float
        z spacing over y/x spacing (1 = isotropic voxels).
    n_nuclei : int, optional
        Nuclei to place (default: about 25 % of the volume covered).
    radius : (float, float)
        Range of the nuclei's physical radii, in y/x pixels.
    touching : float
        Fraction of nuclei placed right against an earlier one.
    photons : float
        Expected photon count of a nucleus voxel (sets the shot noise).
    seed : int
        Random seed; the same seed gives the same stack.
    """
    rng = np.random.default_rng(seed)
    extent = np.array([shape[0] * anisotropy, shape[1], shape[2]], float)  # physical, in px
    if n_nuclei is None:
        mean_vol = 4.0 / 3.0 * np.pi * np.mean(radius) ** 3
        n_nuclei = max(2, int(0.25 * extent.prod() / mean_vol))
    centres, radii = _place(rng, extent, n_nuclei, radius, touching)
    labels = _rasterise(shape, anisotropy, centres, radii, rng)
    image = _render(labels, anisotropy, photons, rng)
    return NucleiStack(image, labels, (0.5 * anisotropy, 0.5, 0.5))


def _place(
    rng: np.random.Generator, extent: np.ndarray, n: int, radius: tuple[float, float], touching: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 3) and radii (n,) in physical pixels; overlaps of more than a fifth of the
    smaller radius are rejected, touching nuclei are placed at the sum of their radii."""
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(50 * n):
        if len(centres) == n:
            break
        r = rng.uniform(*radius)
        if centres and rng.random() < touching:
            k = int(rng.integers(len(centres)))
            v = rng.normal(size=3)
            v[0] *= 0.4  # mostly side by side: neighbours in the same slices are the hard case
            c = centres[k] + v / np.linalg.norm(v) * (radii[k] + r) * 0.92
        else:
            c = rng.uniform(0, 1, 3) * extent
        if np.any(c < r * 0.5) or np.any(c > extent - r * 0.5):
            continue
        if centres:
            d = np.linalg.norm(np.array(centres) - c, axis=1)
            if np.any(d < (np.array(radii) + r) * 0.85):
                continue
        centres.append(c)
        radii.append(r)
    return np.array(centres).reshape(-1, 3), np.array(radii)


def _rasterise(
    shape: tuple[int, int, int], anisotropy: float, centres: np.ndarray, radii: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Labels (Z, Y, X) uint32: each voxel inside some nucleus goes to the nucleus of smallest
    scaled distance ``|p - c| / r`` (slightly ellipsoidal, randomly stretched)."""
    labels = np.zeros(shape, np.uint32)
    best = np.full(shape, np.inf, np.float32)
    for i, (c, r) in enumerate(zip(centres, radii), start=1):
        stretch = rng.uniform(0.85, 1.15, 3)
        reach = r * stretch.max()
        lo = [max(0, int((c[a] - reach) / s)) for a, s in enumerate((anisotropy, 1, 1))]
        hi = [min(shape[a], int((c[a] + reach) / s) + 2) for a, s in enumerate((anisotropy, 1, 1))]
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            continue
        z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d = np.sqrt(((z * anisotropy - c[0]) / (r * stretch[0])) ** 2
                    + ((y - c[1]) / (r * stretch[1])) ** 2 + ((x - c[2]) / (r * stretch[2])) ** 2)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        take = (d <= 1.0) & (d < best[box])
        best[box] = np.where(take, d, best[box])
        labels[box] = np.where(take, i, labels[box])
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.uint32)


def _render(labels: np.ndarray, anisotropy: float, photons: float, rng: np.random.Generator) -> np.ndarray:
    """The microscope image (uint16) of ``labels``: textured nuclei of varied brightness with a
    dimmer rim between touching nuclei, blurred more along z, background, shot noise."""
    from scipy import ndimage as ndi

    n = int(labels.max())
    bright = np.concatenate([[0.0], rng.uniform(0.5, 1.0, n)])
    signal = bright[labels].astype(np.float32)
    texture = ndi.gaussian_filter(rng.normal(size=labels.shape).astype(np.float32), (0.5, 1.5, 1.5))
    signal *= 1.0 + 0.2 * texture / (texture.std() + 1e-6)
    edges = ndi.grey_dilation(labels, size=(1, 3, 3)) != ndi.grey_erosion(labels, size=(1, 3, 3))
    signal[edges & (labels > 0)] *= 0.55
    signal = ndi.gaussian_filter(signal, (1.2 / anisotropy + 0.4, 1.0, 1.0))
    expected = photons * (0.08 + signal.clip(0))
    return np.minimum(rng.poisson(expected), 65535).astype(np.uint16)
