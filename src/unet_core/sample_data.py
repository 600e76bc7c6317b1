"""Deterministic synthetic fluorescence-nuclei images with ground-truth instance labels.

Generated, not downloaded: touching elliptical nuclei of varied size, shape and brightness, with
chromatin texture, optical blur, an uneven background and Poisson (shot) noise, like a widefield
DAPI/Hoechst image.
"""

from __future__ import annotations

import numpy as np


def synthetic_nuclei(
    shape: tuple[int, int] = (512, 512),
    *,
    n_nuclei: int | None = None,
    radius: tuple[float, float] = (9.0, 20.0),
    seed: int = 0,
    touching: float = 0.35,
    photons: float = 400.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic nuclei image and its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image size (Y, X).
    n_nuclei : int, optional
        Number of nuclei to place (default: about 30 % of the area covered).
    radius : (float, float)
        Range of the nuclei's semi-axes in pixels.
    seed : int
        Random seed; the same seed always gives the same image.
    touching : float
        Fraction of nuclei placed right against an earlier one (so that they touch).
    photons : float
        Expected photon count of an average nucleus pixel (sets the Poisson noise level).

    Returns
    -------
    image : ndarray of uint16, shape ``shape``
        The noisy fluorescence image.
    labels : ndarray of uint16, shape ``shape``
        Instance labels (0 = background, 1..N = nuclei), touching nuclei separated by the
        Voronoi split of their overlap.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = shape
    mean_r = float(np.mean(radius))
    if n_nuclei is None:
        n_nuclei = max(1, int(0.30 * h * w / (np.pi * mean_r**2)))
    centers: list[tuple[float, float, float, float, float]] = []  # cy, cx, ry, rx, angle
    attempts = 0
    while len(centers) < n_nuclei and attempts < n_nuclei * 60:
        attempts += 1
        ry, rx = rng.uniform(*radius, size=2)
        angle = rng.uniform(0, np.pi)
        if centers and rng.random() < touching:
            # place against an existing nucleus: centre distance ~ sum of mean radii
            j = rng.integers(len(centers))
            py, px, pry, prx, _ = centers[j]
            theta = rng.uniform(0, 2 * np.pi)
            dist = 0.85 * ((pry + prx) / 2 + (ry + rx) / 2)
            cy, cx = py + dist * np.sin(theta), px + dist * np.cos(theta)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if not (-0.3 * ry <= cy < h + 0.3 * ry and -0.3 * rx <= cx < w + 0.3 * rx):
            continue
        ok = all(
            np.hypot(cy - c[0], cx - c[1]) > 0.75 * ((ry + rx) / 2 + (c[2] + c[3]) / 2)
            for c in centers
        )
        if ok:
            centers.append((cy, cx, ry, rx, angle))

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # per nucleus: normalised elliptical radius; pixel goes to the nucleus with the smallest one
    best = np.full(shape, np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for i, (cy, cx, ry, rx, a) in enumerate(centers, start=1):
        y0, y1 = max(0, int(cy - max(ry, rx)) - 2), min(h, int(cy + max(ry, rx)) + 3)
        x0, x1 = max(0, int(cx - max(ry, rx)) - 2), min(w, int(cx + max(ry, rx)) + 3)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = (dy * np.cos(a) + dx * np.sin(a)) / ry
        v = (-dy * np.sin(a) + dx * np.cos(a)) / rx
        rho = np.sqrt(u * u + v * v)
        sub_best, sub_lab = best[y0:y1, x0:x1], labels[y0:y1, x0:x1]
        take = (rho <= 1.0) & (rho < sub_best)
        sub_best[take] = rho[take]
        sub_lab[take] = i
    # drop fragments: keep the largest connected piece of every id (overlap splits can cut slivers)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        piece = labels[sl] == i
        comp, n = ndi.label(piece)
        if n > 1:
            sizes = ndi.sum_labels(piece, comp, index=np.arange(1, n + 1))
            labels[sl][piece & (comp != 1 + int(np.argmax(sizes)))] = 0
    labels = _relabel_sequential(labels)

    # fluorescence: per-nucleus brightness, brighter rim-less interior, chromatin texture
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(0.45, 1.0, size=n)]).astype(np.float32)
    signal = brightness[labels]
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5)
    texture /= texture.std() + 1e-6
    signal *= 1.0 + 0.15 * texture
    signal *= np.clip(1.15 - 0.35 * np.where(labels > 0, best, 1.0) ** 2, 0.0, None)
    signal = ndi.gaussian_filter(signal, 1.6)
    # uneven illumination and background autofluorescence
    ramp = 0.06 + 0.08 * (yy / h) + 0.05 * np.sin(np.pi * xx / w)
    expected = photons * (signal + ramp)
    noisy = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    image = np.clip(noisy * 40.0 + 100.0, 0, 65535).astype(np.uint16)  # camera gain + offset
    return image, labels


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=labels.dtype)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=labels.dtype)
    return lut[labels]
