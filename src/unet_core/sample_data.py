"""Deterministic synthetic microscopy images with ground-truth instance labels.

Generated, not downloaded. Two kinds:

nuclei (:func:`synthetic_nuclei`, :func:`render_nuclei` with a :class:`NucleiStyle`)
    Touching elliptical nuclei of varied size, shape and brightness, with chromatin texture,
    optical blur, an uneven background and Poisson (shot) noise, like a widefield DAPI/Hoechst
    image. A style adds clusters, irregular outlines, dividing nuclei (two small bright touching
    daughters), dim nuclei, Gaussian camera read noise and blotchy background.
membranes (:func:`synthetic_membranes` with a :class:`MembraneStyle`)
    Voronoi-like cells with warped boundaries drawn as membranes of varying thickness, dark on a
    textured grey interior with dark organelles (like serial-section EM) or bright on a dark
    interior (like a stained membrane); the cells are the instances, membrane pixels are 0.

:func:`random_nuclei_style`, :func:`random_membrane_style` and :func:`randomised_sample` draw a
style per image from a seed, so that a training set covers many conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: a placed nucleus: centre y, centre x, semi-axis along the angle, the other semi-axis, angle
Ellipse = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class NucleiStyle:
    """Appearance of a synthetic nuclei image; the defaults give :func:`synthetic_nuclei`'s images.

    Attributes
    ----------
    radius : (float, float)
        Range of the semi-axes in pixels.
    aspect : (float, float) or None
        Range of minor/major axis ratio; None draws both semi-axes independently from ``radius``.
    irregularity : float
        Amplitude of the outline's 2nd/3rd harmonic wobble (0 = ellipses).
    coverage : float
        Area fraction to cover when ``n_nuclei`` is None.
    n_nuclei : int or None
        Number of nuclei to place.
    touching : float
        Fraction of nuclei placed right against an earlier one.
    clusters : int
        Number of cluster centres; ``cluster_fraction`` of the nuclei are placed around them.
    cluster_fraction : float
        Fraction of free placements drawn near a cluster centre.
    min_separation : float
        Centre distance limit in mean radii (smaller allows more overlap).
    brightness : (float, float)
        Range of a nucleus' relative brightness.
    dim_fraction : float
        Fraction of nuclei made dim (brightness drawn from ``dim_brightness``).
    dim_brightness : (float, float)
        Brightness range of dim nuclei.
    dividing_fraction : float
        Fraction of nuclei replaced by two small, bright, touching daughters.
    texture, texture_scale : float
        Strength and length scale (pixels) of the chromatin texture.
    falloff : float
        Darkening towards the nucleus edge.
    blur : float
        Gaussian optical blur (pixels).
    photons : float
        Expected photon count of an average nucleus pixel (sets the Poisson noise).
    read_noise : float
        Standard deviation of Gaussian camera read noise in photo-electrons.
    background, gradient, wave : float
        Background level and the amplitudes of its linear (y) and sinusoidal (x) unevenness.
    blotches : float
        Amplitude of a smooth random background field (out-of-focus light).
    gain, offset : float
        Camera gain (counts per photon) and offset.
    """

    radius: tuple[float, float] = (9.0, 20.0)
    aspect: tuple[float, float] | None = None
    irregularity: float = 0.0
    coverage: float = 0.30
    n_nuclei: int | None = None
    touching: float = 0.35
    clusters: int = 0
    cluster_fraction: float = 0.0
    min_separation: float = 0.75
    brightness: tuple[float, float] = (0.45, 1.0)
    dim_fraction: float = 0.0
    dim_brightness: tuple[float, float] = (0.08, 0.2)
    dividing_fraction: float = 0.0
    texture: float = 0.15
    texture_scale: float = 1.5
    falloff: float = 0.35
    blur: float = 1.6
    photons: float = 400.0
    read_noise: float = 0.0
    background: float = 0.06
    gradient: float = 0.08
    wave: float = 0.05
    blotches: float = 0.0
    gain: float = 40.0
    offset: float = 100.0


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

    See Also
    --------
    render_nuclei : the same with every appearance option (:class:`NucleiStyle`).
    """
    style = NucleiStyle(radius=radius, n_nuclei=n_nuclei, touching=touching, photons=photons)
    return render_nuclei(shape, style, seed=seed)


def render_nuclei(
    shape: tuple[int, int], style: NucleiStyle = NucleiStyle(), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic nuclei image of a given style and its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image size (Y, X).
    style : NucleiStyle
        Appearance; the default reproduces :func:`synthetic_nuclei`.
    seed : int
        Random seed (>= 0); the same seed and style always give the same image.

    Returns
    -------
    image : ndarray of uint16, shape ``shape``
    labels : ndarray of uint16, shape ``shape``
        0 = background, 1..N = nuclei (touching ones split along the Voronoi line of their overlap).
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # draws of the options the defaults leave off
    centers = _place_nuclei(rng, extra, shape, style)
    boost = np.ones(len(centers) + 1, np.float32)
    if style.dividing_fraction > 0:
        centers, boost = _divide(extra, centers, style.dividing_fraction)
    wobble = _wobble(extra, len(centers), style.irregularity) if style.irregularity > 0 else None
    labels, best = _rasterise(shape, centers, wobble)
    _drop_fragments(labels)
    pixel_boost = boost[labels] if style.dividing_fraction > 0 else None
    labels = _relabel_sequential(labels)
    image = _fluorescence(rng, extra, labels, best, style, pixel_boost)
    return image, labels


def _draw_axes(rng: np.random.Generator, style: NucleiStyle) -> tuple[float, float]:
    if style.aspect is None:
        ry, rx = rng.uniform(*style.radius, size=2)
        return float(ry), float(rx)
    r = float(rng.uniform(*style.radius))
    return r, r * float(rng.uniform(*style.aspect))


def _place_nuclei(
    rng: np.random.Generator, extra: np.random.Generator, shape: tuple[int, int], style: NucleiStyle
) -> list[Ellipse]:
    """Non-overlapping (up to ``min_separation``) ellipses, some touching, some clustered."""
    h, w = shape
    mean_r = float(np.mean(style.radius))
    n_nuclei = style.n_nuclei
    if n_nuclei is None:
        ratio = float(np.mean(style.aspect)) if style.aspect is not None else 1.0
        n_nuclei = max(1, int(style.coverage * h * w / (np.pi * mean_r**2 * ratio)))
    hubs = extra.uniform((0, 0), (h, w), size=(style.clusters, 2)) if style.clusters else None
    centers: list[Ellipse] = []
    attempts = 0
    while len(centers) < n_nuclei and attempts < n_nuclei * 60:
        attempts += 1
        ry, rx = _draw_axes(rng, style)
        angle = rng.uniform(0, np.pi)
        if centers and rng.random() < style.touching:
            # place against an existing nucleus: centre distance ~ sum of mean radii
            j = rng.integers(len(centers))
            py, px, pry, prx, _ = centers[j]
            theta = rng.uniform(0, 2 * np.pi)
            dist = 0.85 * ((pry + prx) / 2 + (ry + rx) / 2)
            cy, cx = py + dist * np.sin(theta), px + dist * np.cos(theta)
        elif hubs is not None and extra.random() < style.cluster_fraction:
            hy, hx = hubs[extra.integers(len(hubs))]
            cy, cx = extra.normal((hy, hx), 2.5 * mean_r)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if not (-0.3 * ry <= cy < h + 0.3 * ry and -0.3 * rx <= cx < w + 0.3 * rx):
            continue
        sep = style.min_separation
        ok = all(np.hypot(cy - c[0], cx - c[1]) > sep * ((ry + rx) / 2 + (c[2] + c[3]) / 2) for c in centers)
        if ok:
            centers.append((cy, cx, ry, rx, angle))
    return centers


def _divide(
    extra: np.random.Generator, centers: list[Ellipse], fraction: float
) -> tuple[list[Ellipse], np.ndarray]:
    """Replace ``fraction`` of the nuclei by two small touching daughters (anaphase/telophase).

    Returns the new ellipses and a brightness factor per id (index 0 = background): daughters
    have condensed, brighter chromatin.
    """
    out: list[Ellipse] = []
    boost = [1.0]
    for cy, cx, ry, rx, a in centers:
        if extra.random() >= fraction:
            out.append((cy, cx, ry, rx, a))
            boost.append(1.0)
            continue
        rd = 0.55 * (ry + rx) / 2
        along, across = 0.75 * rd, rd
        step = 0.95 * along
        factor = float(extra.uniform(1.2, 1.6))
        for sign in (-1.0, 1.0):
            out.append((cy + sign * step * np.cos(a), cx + sign * step * np.sin(a), along, across, a))
            boost.append(factor)
    return out, np.asarray(boost, np.float32)


def _wobble(extra: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """Per nucleus: amplitudes and phases of the 2nd and 3rd outline harmonics, shape (n, 4)."""
    amp = extra.uniform(0, amplitude, size=(n, 2))
    phase = extra.uniform(0, 2 * np.pi, size=(n, 2))
    return np.concatenate([amp, phase], axis=1)


def _rasterise(
    shape: tuple[int, int], centers: list[Ellipse], wobble: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint16) and each pixel's normalised radius in its nucleus (float32, inf outside)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # per nucleus: normalised elliptical radius; pixel goes to the nucleus with the smallest one
    best = np.full(shape, np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for i, (cy, cx, ry, rx, a) in enumerate(centers, start=1):
        reach = max(ry, rx) * (1.0 + (wobble[i - 1, :2].sum() if wobble is not None else 0.0))
        y0, y1 = max(0, int(cy - reach) - 2), min(h, int(cy + reach) + 3)
        x0, x1 = max(0, int(cx - reach) - 2), min(w, int(cx + reach) + 3)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = (dy * np.cos(a) + dx * np.sin(a)) / ry
        v = (-dy * np.sin(a) + dx * np.cos(a)) / rx
        rho = np.sqrt(u * u + v * v)
        if wobble is not None:
            a2, a3, p2, p3 = wobble[i - 1]
            phi = np.arctan2(v, u)
            rho = rho / (1.0 + a2 * np.cos(2 * phi + p2) + a3 * np.cos(3 * phi + p3))
        sub_best, sub_lab = best[y0:y1, x0:x1], labels[y0:y1, x0:x1]
        take = (rho <= 1.0) & (rho < sub_best)
        sub_best[take] = rho[take]
        sub_lab[take] = i
    return labels, best


def _drop_fragments(labels: np.ndarray) -> None:
    """Keep only the largest connected piece of every id, in place (splits can cut slivers)."""
    from scipy import ndimage as ndi

    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        piece = labels[sl] == i
        comp, n = ndi.label(piece)
        if n > 1:
            sizes = ndi.sum_labels(piece, comp, index=np.arange(1, n + 1))
            labels[sl][piece & (comp != 1 + int(np.argmax(sizes)))] = 0


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth random field in [0, 1] with features about ``scale`` pixels wide, float32."""
    from scipy import ndimage as ndi

    h, w = shape
    coarse = rng.standard_normal((int(np.ceil(h / scale)) + 3, int(np.ceil(w / scale)) + 3))
    field = ndi.zoom(coarse, scale, order=3)[:h, :w].astype(np.float32)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / (hi - lo + 1e-6)


def _fluorescence(
    rng: np.random.Generator,
    extra: np.random.Generator,
    labels: np.ndarray,
    best: np.ndarray,
    style: NucleiStyle,
    boost: np.ndarray | None,
) -> np.ndarray:
    """The camera image (uint16) of nuclei ``labels``: brightness, texture, blur, background, noise."""
    from scipy import ndimage as ndi

    shape = labels.shape
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # fluorescence: per-nucleus brightness, brighter rim-less interior, chromatin texture
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(*style.brightness, size=n)]).astype(np.float32)
    if style.dim_fraction > 0:
        dim = np.flatnonzero(extra.random(n) < style.dim_fraction) + 1
        brightness[dim] = extra.uniform(*style.dim_brightness, size=len(dim))
    signal = brightness[labels]
    if boost is not None:
        signal *= boost
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), style.texture_scale)
    texture /= texture.std() + 1e-6
    signal *= 1.0 + style.texture * texture
    signal *= np.clip(1.15 - style.falloff * np.where(labels > 0, best, 1.0) ** 2, 0.0, None)
    signal = ndi.gaussian_filter(signal, style.blur)
    # uneven illumination and background autofluorescence
    ramp = style.background + style.gradient * (yy / h) + style.wave * np.sin(np.pi * xx / w)
    if style.blotches > 0:
        ramp = ramp + style.blotches * _smooth_field(extra, shape, max(h, w) / 4)
    expected = style.photons * (signal + ramp)
    noisy = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    if style.read_noise > 0:
        noisy += extra.normal(0.0, style.read_noise, size=shape).astype(np.float32)
    return np.clip(noisy * style.gain + style.offset, 0, 65535).astype(np.uint16)  # camera gain + offset


@dataclass(frozen=True)
class MembraneStyle:
    """Appearance of a synthetic membrane image (:func:`synthetic_membranes`).

    Attributes
    ----------
    cell_diameter : float
        Typical cell diameter in pixels (seed spacing of the Voronoi tessellation).
    size_spread : float
        Relative spread of the seeds' minimum spacing (0 = regular, 0.6 = very mixed sizes).
    warp : float
        Amplitude in pixels of the smooth displacement that curves the cell boundaries.
    thickness : (float, float)
        Range of the membrane thickness in pixels; it varies smoothly over the image.
    polarity : {'dark', 'bright'}
        'dark' membranes on a grey interior (electron microscopy) or 'bright' on a dark interior
        (fluorescent membrane stain).
    contrast : float
        Membrane contrast: the relative darkening of a dark membrane, or the brightness of a
        bright one (image units 0..1).
    interior : (float, float)
        Range of a cell's mean interior intensity.
    texture, texture_scale : float
        Strength and length scale (pixels) of the cytoplasm texture.
    organelles : float
        Dark organelles (mitochondria, vesicles) per 1000 interior pixels.
    organelle_radius : (float, float)
        Range of the organelles' semi-axes in pixels.
    blur : float
        Gaussian blur in pixels.
    photons : float
        Photons of a pixel at intensity 1 (Poisson noise); 0 disables shot noise.
    read_noise : float
        Gaussian noise standard deviation (image units).
    uneven : float
        Amplitude of a smooth multiplicative illumination field.
    """

    cell_diameter: float = 32.0
    size_spread: float = 0.3
    warp: float = 6.0
    thickness: tuple[float, float] = (2.0, 5.0)
    polarity: Literal["dark", "bright"] = "dark"
    contrast: float = 0.6
    interior: tuple[float, float] = (0.6, 0.75)
    texture: float = 0.06
    texture_scale: float = 1.2
    organelles: float = 0.3
    organelle_radius: tuple[float, float] = (2.0, 6.0)
    blur: float = 1.0
    photons: float = 200.0
    read_noise: float = 0.03
    uneven: float = 0.15


def synthetic_membranes(
    shape: tuple[int, int] = (256, 256), style: MembraneStyle = MembraneStyle(), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic image of cells outlined by membranes, and the cells as instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image size (Y, X).
    style : MembraneStyle
        Appearance.
    seed : int
        Random seed (>= 0); the same seed and style always give the same image.

    Returns
    -------
    image : ndarray of uint16, shape ``shape``
        Intensities 0..4095 (12-bit).
    labels : ndarray of uint16, shape ``shape``
        Cells 1..N; membrane pixels are 0 (each cell is one connected piece).
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    owner = _warped_voronoi(rng, shape, style)
    edge = np.zeros(shape, bool)
    edge[:-1] |= owner[:-1] != owner[1:]
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    dist = ndi.distance_transform_edt(~edge).astype(np.float32)
    lo, hi = style.thickness
    half = 0.5 * (lo + (hi - lo) * _smooth_field(rng, shape, 3 * style.cell_diameter))
    membrane = dist < half
    labels = np.where(membrane, 0, owner).astype(np.uint16)
    _drop_fragments(labels)
    labels = _relabel_sequential(labels)
    profile = np.exp(-((dist / np.maximum(half, 0.5)) ** 2))  # 1 on the boundary line, fading
    image = _membrane_image(rng, labels, profile, dist, style)
    return image, labels


def _warped_voronoi(rng: np.random.Generator, shape: tuple[int, int], style: MembraneStyle) -> np.ndarray:
    """Nearest-seed map (int32, ids 1..N) of dart-thrown seeds over smoothly displaced coordinates."""
    from scipy.spatial import cKDTree

    h, w = shape
    d = style.cell_diameter
    n_target = int(1.3 * (h + d) * (w + d) / (0.87 * d * d)) + 1
    seeds: list[tuple[float, float]] = []
    for _ in range(n_target * 20):
        if len(seeds) >= n_target:
            break
        y, x = rng.uniform(-d / 2, h + d / 2), rng.uniform(-d / 2, w + d / 2)
        gap = d * (0.75 - style.size_spread * rng.random())
        if not seeds or np.min(np.hypot(*(np.asarray(seeds) - (y, x)).T)) > gap:
            seeds.append((y, x))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = 1.2 * d
    yy += style.warp * (2 * _smooth_field(rng, shape, scale) - 1)
    xx += style.warp * (2 * _smooth_field(rng, shape, scale) - 1)
    _, owner = cKDTree(np.asarray(seeds)).query(np.stack([yy.ravel(), xx.ravel()], 1))
    return (owner.reshape(shape) + 1).astype(np.int32)


def _organelles(rng: np.random.Generator, labels: np.ndarray, dist: np.ndarray, style: MembraneStyle) -> np.ndarray:
    """Mask (float32 0..1) of dark elliptical organelles inside the cells, clear of the membranes."""
    h, w = labels.shape
    out = np.zeros(labels.shape, np.float32)
    n = rng.poisson(style.organelles * float((labels > 0).sum()) / 1000.0)
    if n == 0:
        return out
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        ry, rx = rng.uniform(*style.organelle_radius, size=2)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        if labels[cy, cx] == 0 or dist[cy, cx] < max(ry, rx) + 3:
            continue
        a = rng.uniform(0, np.pi)
        r = int(max(ry, rx)) + 2
        sl = (slice(max(0, cy - r), cy + r + 1), slice(max(0, cx - r), cx + r + 1))
        dy, dx = yy[sl] - cy, xx[sl] - cx
        u = (dy * np.cos(a) + dx * np.sin(a)) / ry
        v = (-dy * np.sin(a) + dx * np.cos(a)) / rx
        blob = np.clip(1.5 - (u * u + v * v), 0.0, 1.0) * (labels[sl] == labels[cy, cx])
        out[sl] = np.maximum(out[sl], blob)
    return out


def _membrane_image(
    rng: np.random.Generator, labels: np.ndarray, profile: np.ndarray, dist: np.ndarray, style: MembraneStyle
) -> np.ndarray:
    """Render intensities (uint16, 12-bit) from the cells, the membrane profile and the style."""
    from scipy import ndimage as ndi

    shape = labels.shape
    n = int(labels.max())
    level = np.concatenate([[0.0], rng.uniform(*style.interior, size=n)]).astype(np.float32)
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), style.texture_scale)
    texture /= texture.std() + 1e-6
    organelles = _organelles(rng, labels, dist, style)
    if style.polarity == "dark":
        base = np.where(labels > 0, level[labels], float(np.mean(style.interior)))
        img = base * (1.0 + style.texture * texture) * (1.0 - style.contrast * profile)
        img *= 1.0 - 0.6 * style.contrast * organelles
    else:
        inside = 0.25 * np.where(labels > 0, level[labels], 0.0)
        img = inside * (1.0 + style.texture * texture) + style.contrast * profile * (1.0 + 0.3 * texture)
        img += 0.15 * style.contrast * organelles
    img = ndi.gaussian_filter(img.astype(np.float32), style.blur)
    img *= 1.0 + style.uneven * (2 * _smooth_field(rng, shape, max(shape) / 2) - 1)
    img = np.clip(img, 0.0, None)
    if style.photons > 0:
        img = rng.poisson(img * style.photons).astype(np.float32) / style.photons
    img += rng.normal(0.0, style.read_noise, size=shape).astype(np.float32)
    return np.clip(img * 3000.0 + 200.0, 0, 4095).astype(np.uint16)


def random_nuclei_style(rng: np.random.Generator) -> NucleiStyle:
    """Draw a varied :class:`NucleiStyle` (sizes, shapes, density, clusters, divisions, dim nuclei,
    texture, blur, shot + read noise, background) for training a general nuclei model."""
    r = float(rng.uniform(4.0, 20.0))
    return NucleiStyle(
        radius=(0.75 * r, 1.25 * r),
        aspect=(float(rng.uniform(0.55, 0.9)), 1.0),
        irregularity=float(rng.uniform(0.0, 0.12)),
        coverage=float(rng.uniform(0.1, 0.45)),
        touching=float(rng.uniform(0.1, 0.7)),
        clusters=int(rng.integers(0, 5)),
        cluster_fraction=float(rng.uniform(0.0, 0.6)),
        brightness=(float(rng.uniform(0.3, 0.6)), 1.0),
        dim_fraction=float(rng.uniform(0.0, 0.25)),
        dividing_fraction=float(rng.uniform(0.0, 0.12)),
        texture=float(rng.uniform(0.05, 0.35)),
        texture_scale=float(rng.uniform(0.8, 3.0)),
        falloff=float(rng.uniform(0.0, 0.5)),
        blur=float(rng.uniform(0.6, 2.5)),
        photons=float(np.exp(rng.uniform(np.log(15.0), np.log(1500.0)))),
        read_noise=float(rng.uniform(0.0, 6.0)),
        background=float(rng.uniform(0.02, 0.3)),
        gradient=float(rng.uniform(-0.15, 0.15)),
        wave=float(rng.uniform(0.0, 0.1)),
        blotches=float(rng.uniform(0.0, 0.25)),
    )


def random_membrane_style(rng: np.random.Generator) -> MembraneStyle:
    """Draw a varied :class:`MembraneStyle` (cell size, boundary shape, membrane thickness and
    polarity, texture, organelles, blur, noise, illumination) for training a membrane model."""
    t = float(rng.uniform(1.5, 4.0))
    d = float(rng.uniform(14.0, 70.0))
    lo = float(rng.uniform(0.5, 0.75))
    polarity: Literal["dark", "bright"] = "dark" if rng.random() < 0.7 else "bright"
    return MembraneStyle(
        cell_diameter=d,
        size_spread=float(rng.uniform(0.0, 0.6)),
        warp=float(rng.uniform(0.0, 0.3)) * d,
        thickness=(t, t * float(rng.uniform(1.2, 2.5))),
        polarity=polarity,
        contrast=float(rng.uniform(0.35, 0.8)),
        interior=(lo, lo + float(rng.uniform(0.03, 0.2))),
        texture=float(rng.uniform(0.02, 0.2)),
        texture_scale=float(rng.uniform(0.7, 2.5)),
        organelles=float(rng.uniform(0.0, 1.5)) if polarity == "dark" else 0.0,
        organelle_radius=(1.5, float(rng.uniform(2.5, 6.0))),
        blur=float(rng.uniform(0.5, 2.0)),
        photons=float(np.exp(rng.uniform(np.log(20.0), np.log(2000.0)))),
        read_noise=float(rng.uniform(0.0, 0.08)),
        uneven=float(rng.uniform(0.0, 0.3)),
    )


def randomised_sample(
    kind: Literal["nuclei", "membranes"], shape: tuple[int, int] = (256, 256), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An image of ``kind`` with a style drawn from ``seed`` (:func:`random_nuclei_style` /
    :func:`random_membrane_style`); deterministic per seed, varied across seeds.

    Returns
    -------
    image : ndarray of uint16, shape ``shape``
    labels : ndarray of uint16, shape ``shape``
    """
    style_rng = np.random.default_rng([seed, 2])
    if kind == "nuclei":
        return render_nuclei(shape, random_nuclei_style(style_rng), seed=seed)
    if kind == "membranes":
        return synthetic_membranes(shape, random_membrane_style(style_rng), seed=seed)
    from .errors import InputError

    raise InputError(f"unknown synthetic image kind {kind!r}; use 'nuclei' or 'membranes'")


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=labels.dtype)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=labels.dtype)
    return lut[labels]
