"""Boundary weight map: against a brute-force O(pixels^2) reference, edge cases, CLI."""

from __future__ import annotations

import itertools
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from unet_core.cli import main
from unet_core.errors import InputError
from unet_core.io import read_tiff, write_tiff
from unet_core.labels import BinaryLabelsWarning
from unet_core.weights import (
    boundary_weight_map,
    class_balance_weights,
    class_weights,
    influence_distance,
    influence_margin,
    separate_touching_objects,
)

# --------------------------------------------------------------------------- brute force reference


def brute_separate(labels: np.ndarray) -> np.ndarray:
    """The documented gap rule, pixel by pixel: background if a neighbour has a larger id."""
    out = labels.copy()
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=labels.ndim) if any(o)]
    for p in itertools.product(*(range(n) for n in labels.shape)):
        if labels[p] == 0:
            continue
        for o in offsets:
            q = tuple(a + b for a, b in zip(p, o))
            if all(0 <= c < n for c, n in zip(q, labels.shape)) and labels[q] > labels[p]:
                out[p] = 0
                break
    return out


def brute_weights(labels, *, w0=10.0, sigma=5.0, class_balance=True, mask=None, sampling=None,
                  separate_touching=True):
    """Eq. 2 with pairwise pixel distances (numpy broadcasting), float64 throughout."""
    labels = np.asarray(labels)
    if separate_touching:
        labels = brute_separate(labels)
    spacing = np.ones(labels.ndim) if sampling is None else np.broadcast_to(np.asarray(sampling, float), (labels.ndim,))
    coords = np.indices(labels.shape).reshape(labels.ndim, -1).T * spacing  # (P, ndim)
    flat = labels.ravel()
    ids = [i for i in np.unique(flat) if i != 0]
    border = np.zeros(flat.shape)
    if len(ids) >= 2:
        dist = np.empty((len(ids), flat.size))
        for k, i in enumerate(ids):
            obj = coords[flat == i]
            dist[k] = np.sqrt(((coords[:, None, :] - obj[None, :, :]) ** 2).sum(-1)).min(1)
        dist.sort(axis=0)
        border = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
    fg = flat > 0
    border[fg] = 0
    region = np.ones(flat.shape, bool) if mask is None else np.asarray(mask, bool).ravel()
    wc = np.ones(flat.shape)
    if class_balance:
        n = region.sum()
        counts = {c: (region & (fg == c)).sum() for c in (False, True)}
        k = sum(1 for c in counts.values() if c)
        wc = np.array([n / (k * counts[c]) if counts[c] else 0.0 for c in (False, True)])[fg.astype(int)]
    w = wc + border
    w[~region] = 0
    return w.reshape(labels.shape)


def assert_close(fast, ref):
    assert fast.dtype == np.float32 and fast.shape == ref.shape
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-6)


# ids without 1 and 255 so hypothesis images are never taken for binary masks
_IDS = [0, 0, 0, 2, 3, 7, 40]


@st.composite
def label_images(draw, ndim=2, max_side=12):
    shape = draw(st.tuples(*[st.integers(1, max_side)] * ndim))
    lab = draw(hnp.arrays(np.uint16, shape, elements=st.sampled_from(_IDS)))
    if draw(st.booleans()):  # blocky objects: more touching, bigger areas
        lab = np.kron(lab, np.ones((2,) * ndim, np.uint16))
    return lab


# --------------------------------------------------------------------------- against brute force


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lab=label_images(),
    sigma=st.sampled_from([0.7, 1.5, 5.0]),
    w0=st.sampled_from([1.0, 10.0]),
    aniso=st.sampled_from([None, (1.0, 1.0), (2.0, 0.5), (0.7, 1.3)]),
    class_balance=st.booleans(),
    separate=st.booleans(),
    use_mask=st.booleans(),
    data=st.data(),
)
def test_matches_brute_force_2d(lab, sigma, w0, aniso, class_balance, separate, use_mask, data):
    mask = data.draw(hnp.arrays(bool, lab.shape)) if use_mask else None
    kw = dict(w0=w0, sigma=sigma, class_balance=class_balance, mask=mask, sampling=aniso,
              separate_touching=separate)
    assert_close(boundary_weight_map(lab, **kw), brute_weights(lab, **kw))


@settings(max_examples=20, deadline=None)
@given(lab=label_images(ndim=3, max_side=6), aniso=st.sampled_from([None, (2.5, 1.0, 1.0)]),
       sigma=st.sampled_from([1.0, 3.0]))
def test_matches_brute_force_3d(lab, aniso, sigma):
    kw = dict(sigma=sigma, sampling=aniso)
    assert_close(boundary_weight_map(lab, **kw), brute_weights(lab, **kw))


def test_banding_on_many_objects_matches_brute_force(rng):
    """Objects far apart relative to sigma, so most crops are much smaller than the image."""
    lab = np.kron(rng.choice([0, 0, 2, 3, 5, 8, 13, 21, 34], size=(24, 24)), np.ones((3, 3), np.uint16))
    for sigma, sampling in [(1.0, None), (2.0, (1.0, 1.6))]:
        kw = dict(sigma=sigma, sampling=sampling)
        assert_close(boundary_weight_map(lab, **kw), brute_weights(lab, **kw))


@settings(max_examples=40, deadline=None)
@given(lab=st.one_of(label_images(), label_images(ndim=3, max_side=5)))
def test_separation_rule(lab):
    np.testing.assert_array_equal(separate_touching_objects(lab), brute_separate(lab))


# --------------------------------------------------------------------------- edge cases


def test_no_objects():
    w = boundary_weight_map(np.zeros((20, 30), np.uint16))
    np.testing.assert_array_equal(w, np.ones((20, 30), np.float32))  # one class: N / (1 * N)
    w = boundary_weight_map(np.zeros((20, 30), np.uint16), class_balance=False, w0=5)
    np.testing.assert_array_equal(w, 1)


def test_one_object_has_no_border_term():
    lab = np.zeros((40, 40), np.uint32)
    lab[10:20, 5:25] = 9
    w = boundary_weight_map(lab, class_balance=False)
    np.testing.assert_array_equal(w, 1)
    w = boundary_weight_map(lab)
    fg = lab > 0
    assert w[fg].sum() == pytest.approx(w[~fg].sum(), rel=1e-5)  # each class carries N / 2
    assert w[fg].sum() == pytest.approx(lab.size / 2, rel=1e-5)


def _three_cells():
    lab = np.zeros((48, 64), np.uint32)
    lab[5:20, 5:30] = 1
    lab[5:20, 30:50] = 2  # touches 1
    lab[28:40, 10:40] = 3  # gap of 8 rows to 1 and 2
    return lab


def test_ids_with_gaps_and_huge_ids_give_the_same_map():
    lab = _three_cells()
    ref = boundary_weight_map(lab)
    for ids, dtype in [((3, 17, 1000), np.uint32), ((2**40, 2**40 + 5, 2**63 + 7), np.uint64),
                       ((70000, 2**31, 2**32 - 1), np.uint32), ((5, 6, 2**40), np.int64)]:
        big = np.zeros(lab.shape, dtype)
        for old, new in zip((1, 2, 3), ids):
            big[lab == old] = new
        np.testing.assert_array_equal(boundary_weight_map(big), ref)


def test_touching_objects_get_a_gap_where_the_border_term_peaks():
    lab = _three_cells()
    sep = separate_touching_objects(lab)
    gap = (lab > 0) & (sep == 0)
    assert gap.any() and np.all(np.nonzero(gap)[1] == 29)  # one column, carved out of id 1
    assert sep[5:20, 30].tolist() == [2] * 15 and np.all(sep[5:20, 28] == 1)
    w = boundary_weight_map(lab, class_balance=False, w0=10, sigma=5)
    border = w - 1
    assert np.all(border[lab > 0][sep[lab > 0] > 0] == 0)  # no border term on objects
    # the gap: d1 = d2 = 1 -> 10 * exp(-4 / 50); the maximum of the whole map
    np.testing.assert_allclose(border[gap], 10 * np.exp(-4 / 50), rtol=1e-6)
    assert border.max() == pytest.approx(border[gap].max())
    assert border[~gap].max() < border[gap].min()
    # without separation the objects still touch: no gap, no background there
    w_touch = boundary_weight_map(lab, class_balance=False, separate_touching=False)
    assert np.all(w_touch[5:20, 29] == 1)


def test_anisotropic_sampling():
    lab = _three_cells()
    iso = boundary_weight_map(lab)
    np.testing.assert_array_equal(boundary_weight_map(lab, sampling=(1, 1)), iso)
    np.testing.assert_allclose(boundary_weight_map(lab, sampling=2.0, sigma=10.0), iso, atol=1e-5)
    aniso = boundary_weight_map(lab, sampling=(3.0, 1.0))
    # 8 background rows between 1 and 3 are 3x further apart in Y: weaker border term there
    assert aniso[24, 20] < iso[24, 20] - 1
    assert_close(aniso, brute_weights(lab, sampling=(3.0, 1.0)))


def test_mask_zero_outside_and_balance_inside():
    lab = _three_cells()
    mask = np.zeros(lab.shape, bool)
    mask[:24, :40] = True
    w = boundary_weight_map(lab, mask=mask)
    assert np.all(w[~mask] == 0)
    sep = separate_touching_objects(lab)
    fg = sep > 0
    wc = boundary_weight_map(lab, mask=mask, w0=0)
    # each class inside the mask carries N/2, whatever lies outside the mask
    assert wc[mask & fg].sum() == pytest.approx(mask.sum() / 2, rel=1e-5)
    assert wc[mask & ~fg].sum() == pytest.approx(mask.sum() / 2, rel=1e-5)
    assert_close(w, brute_weights(lab, mask=mask))
    w_nb = boundary_weight_map(lab, mask=mask, class_balance=False, w0=0)
    np.testing.assert_array_equal(w_nb, mask.astype(np.float32))


def test_class_balance_of_foreground_and_of_class_ids_in_any_dimension(rng):
    classes = rng.integers(0, 4, (6, 20, 30))
    classes[classes == 2] = 0  # an absent class gets weight 0
    mask = rng.random(classes.shape) < 0.7
    per = class_weights(classes, mask)
    n = mask.sum()
    counts = [(classes[mask] == k).sum() for k in range(4)]
    want = [n / (3 * c) if c else 0.0 for c in counts]
    np.testing.assert_allclose(per, want, rtol=1e-12)
    w = class_balance_weights(classes, mask)
    assert w.dtype == np.float32 and np.all(w[~mask] == 0)
    for k in (0, 1, 3):  # every present class carries N / K in total
        assert w[mask & (classes == k)].sum() == pytest.approx(n / 3, rel=1e-5)
    # a foreground mask is the two-class case (background 0, foreground 1)
    fg = classes > 0
    np.testing.assert_array_equal(class_balance_weights(fg, mask), class_balance_weights(fg.astype(np.int64), mask))
    assert not class_weights(np.zeros((3, 3), bool), np.zeros((3, 3), bool)).any()


def test_float_labels_are_refused():
    with pytest.raises(InputError, match="floating-point"):
        boundary_weight_map(_three_cells().astype(np.float32))


def test_binary_mask_is_split_with_a_warning():
    m = np.zeros((30, 30), bool)
    m[2:10, 2:10] = True
    m[15:25, 15:25] = True
    lab = np.zeros((30, 30), np.uint16)
    lab[2:10, 2:10] = 1
    lab[15:25, 15:25] = 2
    for binary in (m, m.astype(np.uint8), m.astype(np.uint8) * 255):
        with pytest.warns(BinaryLabelsWarning, match="binary mask"):
            w = boundary_weight_map(binary)
        np.testing.assert_array_equal(w, boundary_weight_map(lab))


@pytest.mark.parametrize(
    ("labels", "kw", "match"),
    [
        (np.full((8, 8), 1.5), {}, "non-integer"),
        (np.full((8, 8), np.nan), {}, "non-integer"),
        (-np.ones((8, 8), np.int32), {}, "negative"),
        (np.ones((8, 8), np.complex64), {}, "dtype"),
        (np.full((8, 8), "a"), {}, "dtype"),
        (np.zeros((0, 4), np.uint8), {}, "empty"),
        (np.zeros(8, np.uint8), {}, "2D"),
        (np.zeros((2, 2, 2, 2), np.uint8), {}, "2D"),
        (np.zeros((8, 8), np.uint8), {"sigma": 0}, "sigma"),
        (np.zeros((8, 8), np.uint8), {"w0": -1}, "w0"),
        (np.zeros((8, 8), np.uint8), {"mask": np.ones((8, 9), bool)}, "mask shape"),
        (np.zeros((8, 8), np.uint8), {"sampling": (1, 2, 3)}, "sampling"),
        (np.zeros((8, 8), np.uint8), {"sampling": (1, 0)}, "sampling"),
        (np.zeros((8, 8), np.uint8), {"region": (slice(0, 4),)}, "region"),
        (np.zeros((8, 8), np.uint8), {"region": (slice(0, 4, 2), slice(None))}, "step"),
    ],
)
def test_bad_input_is_a_clear_error(labels, kw, match):
    with pytest.raises(InputError, match=match):
        boundary_weight_map(labels, **kw)


# --------------------------------------------------------------------------- 3D, per slice, region


def test_3d_true_and_per_slice(rng):
    lab = np.kron(rng.choice([0, 0, 2, 3, 5, 9], size=(3, 8, 8)), np.ones((2, 2, 2), np.uint16))
    true3d = boundary_weight_map(lab, sampling=(2.0, 1.0, 1.0), sigma=2.0)
    assert_close(true3d, brute_weights(lab, sampling=(2.0, 1.0, 1.0), sigma=2.0))
    per = boundary_weight_map(lab, per_slice=True, sampling=(2.0, 1.0, 1.0), sigma=2.0)
    stacked = np.stack([boundary_weight_map(s, sigma=2.0) for s in lab])
    np.testing.assert_array_equal(per, stacked)
    assert not np.allclose(per, true3d)
    mask = rng.random(lab.shape) > 0.3
    per_m = boundary_weight_map(lab, per_slice=True, mask=mask, sigma=2.0)
    np.testing.assert_array_equal(per_m, np.stack([boundary_weight_map(s, sigma=2.0, mask=m) for s, m in zip(lab, mask)]))


def test_per_slice_does_not_take_a_slice_for_a_binary_mask():
    stack = np.zeros((2, 20, 20), np.uint16)
    stack[0, 2:6, 2:6] = stack[0, 10:15, 10:15] = 1  # one object (id 1) in two pieces
    stack[1, 3:9, 3:9] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = boundary_weight_map(stack, per_slice=True, class_balance=False)
    np.testing.assert_array_equal(w[0], 1)  # a single object: no border term
    with pytest.warns(BinaryLabelsWarning):  # the 2D slice alone is ambiguous: 0/1 = a mask
        w2d = boundary_weight_map(stack[0], class_balance=False)
    assert w2d.max() > 1


def test_region_equals_crop_of_full_map(rng):
    from unet_core.sample_data import synthetic_nuclei

    _, lab = synthetic_nuclei((160, 160), seed=2)
    mask = np.zeros(lab.shape, bool)
    mask[10:150, 5:120] = True
    for kw in ({}, {"mask": mask}, {"sigma": 2.0, "sampling": (1.5, 1.0)}, {"separate_touching": False}):
        full = boundary_weight_map(lab, **kw)
        for box in [(slice(40, 90), slice(60, 100)), (slice(0, 10), slice(150, None)), (slice(None), slice(None))]:
            np.testing.assert_array_equal(boundary_weight_map(lab, region=box, **kw), full[box])
    stack = np.stack([lab, lab[::-1], lab[:, ::-1]])
    full = boundary_weight_map(stack, per_slice=True)
    box = (slice(1, 3), slice(20, 70), slice(30, 140))
    np.testing.assert_array_equal(boundary_weight_map(stack, per_slice=True, region=box), full[box])
    full3 = boundary_weight_map(stack[:, :60, :60], sigma=2.0)
    box = (slice(0, 2), slice(10, 30), slice(25, 50))
    np.testing.assert_array_equal(boundary_weight_map(stack[:, :60, :60], sigma=2.0, region=box), full3[box])


def test_influence_margin():
    assert influence_distance(5.0) == pytest.approx(5.0 * np.sqrt(2 * np.log(1e6)))
    assert influence_margin(5.0) == (28, 28)
    assert influence_margin(5.0, (2.0, 1.0)) == (15, 28)


def test_memory_is_linear_in_pixels():
    """Peak allocation per pixel stays bounded (no per-object full-size arrays)."""
    from unet_core.sample_data import synthetic_nuclei

    _, lab = synthetic_nuclei((384, 384), n_nuclei=150, seed=1)
    lab = lab.astype(np.uint32)
    tracemalloc.start()
    try:
        boundary_weight_map(lab)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / lab.size < 40  # bytes per pixel: a few float32/bool images, whatever the count


def test_training_call_signature(sample):
    _, lab = sample
    region = np.zeros(lab.shape, bool)
    region[10:100, 10:100] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = boundary_weight_map(lab, w0=10.0, sigma=5.0, class_balance=True, mask=region, separate_touching=True)
    assert w.dtype == np.float32 and w.shape == lab.shape and w.max() > 5 and np.all(w[~region] == 0)


# --------------------------------------------------------------------------- CLI


def test_cli_keeps_metadata_and_reads_sampling(tmp_path):
    lab = _three_cells().astype(np.uint16)
    write_tiff(tmp_path / "lab.tif", lab, pixel_size=(0.5, 0.5))
    assert main(["weights", str(tmp_path / "lab.tif"), "-o", str(tmp_path / "w.tif")]) == 0
    w, meta = read_tiff(tmp_path / "w.tif")
    assert w.dtype == np.float32 and meta.axes == "YX"
    assert meta.pixel_size == pytest.approx((0.5, 0.5), rel=1e-4)
    np.testing.assert_allclose(w, boundary_weight_map(lab))  # isotropic: sigma stays in pixels

    stack = np.stack([lab, lab[::-1], lab]).astype(np.uint16)
    write_tiff(tmp_path / "stack.tif", stack, axes="ZYX", pixel_size=(2.0, 0.5, 0.5))
    assert main(["weights", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "w3.tif"), "--sigma", "2"]) == 0
    w3, meta3 = read_tiff(tmp_path / "w3.tif")
    assert meta3.axes == "ZYX" and meta3.pixel_size == pytest.approx((2.0, 0.5, 0.5), rel=1e-4)
    np.testing.assert_allclose(w3, boundary_weight_map(stack, sigma=2, sampling=(4.0, 1.0, 1.0)), atol=1e-6)
    assert main(["weights", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "w3.tif"), "--overwrite",
                 "--per-slice", "--no-balance"]) == 0
    np.testing.assert_allclose(read_tiff(tmp_path / "w3.tif")[0], boundary_weight_map(stack, per_slice=True, class_balance=False))
    assert main(["weights", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "w3.tif"), "--overwrite",
                 "--sampling", "1,1,1", "--no-separate"]) == 0
    np.testing.assert_allclose(read_tiff(tmp_path / "w3.tif")[0], boundary_weight_map(stack, separate_touching=False))


def test_cli_mask_and_errors(tmp_path, capsys):
    lab = _three_cells().astype(np.uint16)
    write_tiff(tmp_path / "lab.tif", lab)
    mask = np.zeros(lab.shape, np.uint8)
    mask[:30] = 1
    write_tiff(tmp_path / "mask.tif", mask)
    assert main(["weights", str(tmp_path / "lab.tif"), "-o", str(tmp_path / "w.tif"), "--mask", str(tmp_path / "mask.tif"),
                 "--w0", "5", "--sigma", "3"]) == 0
    w, _ = read_tiff(tmp_path / "w.tif")
    np.testing.assert_allclose(w, boundary_weight_map(lab, mask=mask > 0, w0=5, sigma=3))
    capsys.readouterr()
    assert main(["weights", str(tmp_path / "lab.tif"), "-o", str(tmp_path / "w.tif")]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["weights", str(tmp_path / "lab.tif"), "-o", str(tmp_path / "x.tif"), "--sampling", "1,2,3"]) == 2
    err = capsys.readouterr().err
    assert "sampling" in err and len(err.strip().splitlines()) == 1
    write_tiff(tmp_path / "f.tif", np.full((8, 8), 0.5, np.float32))
    assert main(["weights", str(tmp_path / "f.tif"), "-o", str(tmp_path / "y.tif")]) == 2
    assert "non-integer" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()


def test_cli_series_of_2d_images_is_per_slice(tmp_path, capsys):
    stack = np.stack([_three_cells(), _three_cells()[::-1]]).astype(np.uint16)
    write_tiff(tmp_path / "t.tif", stack, axes="TYX")
    assert main(["weights", str(tmp_path / "t.tif"), "-o", str(tmp_path / "w.tif")]) == 0
    w, meta = read_tiff(tmp_path / "w.tif")
    assert meta.axes == "TYX"
    np.testing.assert_allclose(w, boundary_weight_map(stack, per_slice=True))
    write_tiff(tmp_path / "c.tif", np.zeros((2, 3, 8, 8), np.uint16), axes="CZYX")
    assert main(["weights", str(tmp_path / "c.tif"), "-o", str(tmp_path / "wc.tif")]) == 2
    assert "split channels" in capsys.readouterr().err
