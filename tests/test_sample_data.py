"""Synthetic generators: pinned default output, determinism per seed, labels that match the image."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage as ndi

from unet_core.errors import InputError
from unet_core.sample_data import (
    MembraneStyle,
    NucleiStyle,
    random_membrane_style,
    random_nuclei_style,
    randomised_sample,
    render_nuclei,
    synthetic_membranes,
    synthetic_nuclei,
)


def _digest(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()[:16]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # recorded from synthetic_nuclei before the generators were extended (commit 361fdcb)
        ({"shape": (128, 128), "seed": 3}, "b64b49ecb8f32f6e"),
        ({"shape": (256, 256), "seed": 1}, "4243c051cfe80975"),
        (
            {"shape": (200, 160), "seed": 7, "n_nuclei": 12, "radius": (5.0, 9.0), "touching": 0.8, "photons": 50.0},
            "4bd591e934193c4e",
        ),
    ],
)
def test_synthetic_nuclei_output_unchanged(kwargs, expected):
    assert _digest(*synthetic_nuclei(**kwargs)) == expected


def test_render_nuclei_default_style_is_synthetic_nuclei():
    a = synthetic_nuclei((96, 96), seed=5)
    b = render_nuclei((96, 96), NucleiStyle(), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["nuclei", "membranes"])
def test_randomised_sample_deterministic_and_varied(kind):
    a = randomised_sample(kind, (96, 96), seed=11)
    b = randomised_sample(kind, (96, 96), seed=11)
    c = randomised_sample(kind, (96, 96), seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint16 and a[1].dtype == np.uint16 and a[0].shape == a[1].shape == (96, 96)


def test_random_styles_vary_with_the_generator():
    rng = np.random.default_rng(0)
    nuc = {random_nuclei_style(rng) for _ in range(5)}
    mem = {random_membrane_style(rng) for _ in range(5)}
    assert len(nuc) == 5 and len(mem) == 5
    assert {m.polarity for m in (random_membrane_style(np.random.default_rng(s)) for s in range(20))} == {"dark", "bright"}


def _check_instances(labels: np.ndarray) -> int:
    """Ids are 1..N, each one connected piece; returns N."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        assert ndi.label(labels[sl] == i)[1] == 1, f"object {i} is in pieces"
    return len(ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomised_nuclei_labels_match_image(seed):
    image, labels = randomised_sample("nuclei", (128, 128), seed=seed)
    assert _check_instances(labels) > 3
    inside = image[ndi.binary_erosion(labels > 0, iterations=2)].mean()
    outside = image[~ndi.binary_dilation(labels > 0, iterations=4)].mean()
    assert inside > outside


def test_nuclei_options_take_effect():
    shape, base = (192, 192), NucleiStyle(radius=(8.0, 10.0), touching=0.0)
    _, plain = render_nuclei(shape, base, seed=4)
    _, divided = render_nuclei(shape, NucleiStyle(radius=(8.0, 10.0), touching=0.0, dividing_fraction=1.0), seed=4)
    # every nucleus became two touching daughters: about twice the objects, each smaller
    assert divided.max() > 1.6 * plain.max()
    assert np.bincount(divided.ravel())[1:].mean() < 0.6 * np.bincount(plain.ravel())[1:].mean()
    img_bright, lab = render_nuclei(shape, base, seed=4)
    img_dim, lab_dim = render_nuclei(shape, NucleiStyle(radius=(8.0, 10.0), touching=0.0, dim_fraction=1.0), seed=4)
    assert np.array_equal(lab, lab_dim)
    assert img_dim[lab > 0].mean() < 0.5 * img_bright[lab > 0].mean()
    flat = NucleiStyle(radius=(10.0, 10.0), aspect=(0.4, 0.4), touching=0.0, n_nuclei=1)
    _, one = render_nuclei((200, 200), flat, seed=2)
    ys, xs = np.nonzero(one)
    assert ys.min() > 0 and xs.min() > 0 and ys.max() < 199 and xs.max() < 199  # not cut by the edge
    ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs])))
    assert np.sqrt(ev[0] / ev[1]) == pytest.approx(0.4, abs=0.08)  # axis ratio of the ellipse


@pytest.mark.parametrize("polarity", ["dark", "bright"])
def test_membranes_labels_match_image(polarity):
    style = MembraneStyle(cell_diameter=24.0, polarity=polarity, organelles=0.0)
    image, labels = synthetic_membranes((128, 128), style, seed=3)
    n = _check_instances(labels)
    assert n > 10
    # cells are separated by membrane pixels: no two different cells are 4-neighbours
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        assert not np.any((a > 0) & (b > 0) & (a != b))
    membrane, cells = image[labels == 0].mean(), image[labels > 0].mean()
    assert membrane < cells if polarity == "dark" else membrane > cells


def test_membrane_thickness_controls_membrane_area():
    thin = synthetic_membranes((128, 128), MembraneStyle(thickness=(1.0, 1.5)), seed=0)[1]
    thick = synthetic_membranes((128, 128), MembraneStyle(thickness=(5.0, 6.0)), seed=0)[1]
    assert (thick == 0).mean() > 2 * (thin == 0).mean()


def test_unknown_kind():
    with pytest.raises(InputError, match="nuclei"):
        randomised_sample("cells", seed=0)  # type: ignore[arg-type]
